//! Policy → ruleset, in the layout [`crate::layout`] describes.
//!
//! Each policy rule becomes one kernel rule per alternative (interfaces ×
//! dialled targets × families × protocols) in the `rules` chain, jumping to
//! the rule's own chain, which counts, logs, enforces the per-source limits
//! and decides.

use crate::interval::Interval;
use crate::layout::{
    BROADCAST_COMMENT, CHAIN_BETWEEN_PROXIED, CHAIN_DEFAULT, CHAIN_FORWARD, CHAIN_FROM_CONTAINERS,
    CHAIN_FROM_CONTAINERS_INVALID, CHAIN_GUARDED, CHAIN_INPUT, CHAIN_LABEL, CHAIN_PROXY, CHAIN_RULES,
    CHAIN_UNATTRIBUTED, CHAIN_UNTRACKED, CT_LABEL_COMMENT, CT_LABEL_FROM_CONTAINER,
    CT_LABEL_FROM_CONTAINER_PROXIED, DEFAULT_COMMENT, DOCKER_BRIDGES, FROM_CONTAINERS_COMMENT,
    INVALID_FROM_CONTAINER_COMMENT, LINK_LOCAL_COMMENT, LogPrefix, Logged, PROXY_COMMENT,
    UNATTRIBUTED_COMMENT, UNJUDGED_COMMENT, UNTRACKED_COMMENT, decision_chain, default_chain,
    default_comment, direction_chain, interface_ct_labels, link_local_interval, rule_chain, runtime_set_name,
    runtime_sets,
};
use crate::policy::{
    Action, AddrMatch, Container, ContainerRule, Destination, Direction, LogTarget, Policy, PortSet,
    PublishedPort, Rule as PolicyRule,
};
use crate::ruleset::{
    BaseHook, Chain, CtState, Family, Hook, IfName, Match, Meter, PacketType, PortMatch, Proto, Rate,
    RateUnit, RejectWith, Rule, Ruleset, RuntimeSet, Set, SetElements, Statement, Verdict,
};
use crate::values::AddrSet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Base name of the sets holding every address but running containers'.
const NOT_CONTAINERS: &str = "not-containers";
/// Logging is rate-limited per rule so a flood cannot fill the kernel log.
const LOG_RATE: Rate = Rate {
    count: 5,
    unit: RateUnit::Second,
};
/// Burst of the log rate limit.
const LOG_BURST: u32 = 10;
/// How many sources a per-source limit tracks at once.
const METER_SIZE: u32 = 65535;

/// Compiles `policy` into a ruleset. `containers` is what Docker runs: a
/// `container` or `labels` rule matches what the containers it selects
/// publish, and nothing while none of them runs (or Docker is not known); the
/// docker-proxy chain judges the host ports running containers publish.
///
/// A `dynamic` set becomes two kernel sets ([`SetElements::Runtime`],
/// `set-NAME-v4` and `set-NAME-v6`), first in the ruleset, whether rules use
/// it or not (so it can be filled before they do); a rule naming it in
/// `from` gets alternatives matching those sets.
///
/// Deterministic: the same inputs give the same ruleset.
pub fn compile(policy: &Policy, containers: &[Container]) -> Ruleset {
    compile_with_bridges(policy, containers, &[])
}

/// [`compile`], knowing `bridges` as Docker's too, besides Docker's own
/// names (`docker0`, `br-*`): the interfaces of Docker networks whose bridge
/// was named with `-o com.docker.network.bridge.name=…` (names Docker's
/// own patterns already cover are left out). Traffic routed onto them, and
/// untracked traffic to them, is judged as on Docker's own bridges, and so
/// are their containers' own connections.
///
/// A bridge the policy guards (a host's LAN bridge Docker was given, with
/// `interfaces = ["br0"]`) is left out too: what arrives on it is judged as
/// coming from outside, and taking it as Docker's as well would judge its
/// containers' connections to their own LAN as inbound ones.
pub fn compile_with_bridges(policy: &Policy, containers: &[Container], bridges: &[String]) -> Ruleset {
    let named: BTreeSet<&str> = bridges
        .iter()
        .map(String::as_str)
        .filter(|bridge| !bridge.is_empty() && !crate::layout::is_docker_bridge(bridge))
        .filter(|bridge| !policy.guard.guards(bridge))
        .collect();
    let bridges: Vec<IfName> = DOCKER_BRIDGES
        .iter()
        .map(|bridge| ifname(bridge))
        .chain(named.into_iter().map(|bridge| IfName::Exact(bridge.into())))
        .collect();
    let mut compiler = Compiler {
        sets: Vec::new(),
        log_to: policy.guard.log_to,
    };
    let guard = &policy.guard;
    for runtime in runtime_sets(policy) {
        let timeout = policy
            .sets
            .get(&runtime.set)
            .and_then(|set| set.dynamic_timeout());
        compiler.add_set(
            runtime.kernel,
            SetElements::Runtime(RuntimeSet {
                family: runtime.family,
                // Whole seconds, which every kernel HZ converts exactly
                // (1500 ms would read back as 1504 ms at HZ=250).
                timeout_ms: timeout
                    .map(|t| (t.as_secs() + u64::from(t.subsec_nanos() > 0)).saturating_mul(1000)),
            }),
        );
    }

    let audit = guard.audit();
    let mut forward = base_rules(&guard.interfaces, CHAIN_GUARDED);
    let mut input = base_rules(&guard.interfaces, CHAIN_PROXY);

    // Published by Docker first: most new connections take that path, and an
    // untracked packet never matches it (it has no conntrack entry, so no
    // `ct status`). Untracked packets are never NATed: on this hook only
    // routed ones reach a container.
    let mut guarded = vec![rule(
        "published by Docker (DNAT)",
        vec![Match::CtStatusDnat],
        Verdict::Goto(CHAIN_RULES.into()),
    )];
    guarded.extend(bridges.iter().map(|bridge| {
        rule(
            UNTRACKED_COMMENT,
            vec![Match::CtState(CtState::Untracked), Match::OifName(bridge.clone())],
            Verdict::Goto(CHAIN_UNTRACKED.into()),
        )
    }));
    guarded.extend(bridges.iter().map(|bridge| {
        rule(
            "routed to a Docker bridge",
            vec![Match::OifName(bridge.clone())],
            Verdict::Goto(CHAIN_RULES.into()),
        )
    }));

    let label: Vec<Rule> = interface_ct_labels(policy)
        .into_iter()
        .map(|(pattern, bit)| Rule {
            comment: CT_LABEL_COMMENT.into(),
            matches: vec![Match::IifName(pattern)],
            statements: vec![Statement::CtLabelSet(bit)],
            verdict: None,
        })
        .collect();
    let mut policy_rules: Vec<Rule> = Vec::new();
    let mut verdict_chains = Vec::new();
    for (index, policy_rule) in policy.rules.iter().enumerate() {
        let alternatives = compiler.alternatives(index, policy_rule, containers);
        let families = families_reaching(&alternatives);
        let chain = rule_chain(index);
        policy_rules.extend(alternatives.into_iter().map(|matches| Rule {
            comment: policy_rule.name.clone(),
            matches,
            statements: vec![],
            verdict: Some(Verdict::Goto(chain.clone())),
        }));
        verdict_chains.push(Chain {
            rules: compiler.decide(index, policy_rule, &families, audit),
            name: chain,
            hook: None,
        });
    }
    policy_rules.push(rule(DEFAULT_COMMENT, vec![], Verdict::Goto(CHAIN_DEFAULT.into())));

    let default = decision_rules(
        DEFAULT_COMMENT,
        Logging {
            chain: CHAIN_DEFAULT,
            name: None,
            wanted: guard.log,
            target: guard.log_to,
        },
        vec![],
        guard.default,
        Admit::Label,
        audit,
    );
    let proxy = compiler.proxy_rules(containers);

    let mut chains = vec![
        Chain {
            name: CHAIN_FORWARD.into(),
            hook: Some(BaseHook {
                hook: Hook::Forward,
                priority: guard.priority,
            }),
            rules: forward.clone(),
        },
        Chain {
            name: CHAIN_INPUT.into(),
            hook: Some(BaseHook {
                hook: Hook::Input,
                priority: guard.priority,
            }),
            rules: input.clone(),
        },
        Chain {
            name: CHAIN_GUARDED.into(),
            hook: None,
            rules: guarded,
        },
        Chain {
            name: CHAIN_PROXY.into(),
            hook: None,
            rules: proxy,
        },
        Chain {
            name: CHAIN_UNTRACKED.into(),
            hook: None,
            rules: drop_rules(CHAIN_UNTRACKED, UNTRACKED_COMMENT, audit, guard.log_to),
        },
        Chain {
            name: CHAIN_RULES.into(),
            hook: None,
            rules: policy_rules,
        },
        Chain {
            name: CHAIN_LABEL.into(),
            hook: None,
            rules: label,
        },
    ];
    chains.extend(verdict_chains);
    chains.push(Chain {
        name: CHAIN_DEFAULT.into(),
        hook: None,
        rules: default,
    });
    // Containers' own new connections, only when the policy judges them:
    // without outbound or between rules (and with their defaults allow)
    // the table is what it was before these directions existed.
    let judged: Vec<Direction> = [Direction::Outbound, Direction::Between]
        .into_iter()
        .filter(|&direction| policy.judges(direction))
        .collect();
    if !judged.is_empty() {
        forward.extend(bridges.iter().map(|bridge| {
            rule(
                FROM_CONTAINERS_COMMENT,
                vec![Match::IifName(bridge.clone()), Match::CtState(CtState::New)],
                Verdict::Goto(CHAIN_FROM_CONTAINERS.into()),
            )
        }));
        // Invalid packets belong to no connection a rule could judge; left
        // alone they would leave un-NATed, judged by nobody.
        forward.extend(bridges.iter().map(|bridge| {
            rule(
                INVALID_FROM_CONTAINER_COMMENT,
                vec![Match::IifName(bridge.clone()), Match::CtState(CtState::Invalid)],
                Verdict::Goto(CHAIN_FROM_CONTAINERS_INVALID.into()),
            )
        }));
        chains[0].rules = forward;
        chains.push(Chain {
            name: CHAIN_FROM_CONTAINERS.into(),
            hook: None,
            rules: from_containers_rules(&judged, &bridges, None),
        });
        chains.push(Chain {
            name: CHAIN_FROM_CONTAINERS_INVALID.into(),
            hook: None,
            rules: from_containers_rules(&judged, &bridges, Some(CHAIN_UNATTRIBUTED)),
        });
        chains.push(Chain {
            name: CHAIN_UNATTRIBUTED.into(),
            hook: None,
            rules: drop_rules(
                CHAIN_UNATTRIBUTED,
                UNATTRIBUTED_COMMENT,
                guard.audit(),
                guard.log_to,
            ),
        });
        for &direction in &judged {
            chains.extend(compiler.container_chains(policy, direction, containers));
        }
        // A container dialling a port the host publishes reaches
        // docker-proxy on the host when Docker does not NAT it (its
        // default): judged as between the containers, on the input hook.
        if judged.contains(&Direction::Between) {
            input.extend(bridges.iter().map(|bridge| {
                rule(
                    FROM_CONTAINERS_COMMENT,
                    vec![Match::IifName(bridge.clone()), Match::CtState(CtState::New)],
                    Verdict::Goto(CHAIN_BETWEEN_PROXIED.into()),
                )
            }));
            chains[1].rules = input;
            chains.push(Chain {
                name: CHAIN_BETWEEN_PROXIED.into(),
                hook: None,
                rules: compiler.between_proxied_rules(policy, containers),
            });
        }
    }
    Ruleset {
        table: guard.table.clone(),
        sets: compiler.sets,
        chains,
    }
}

/// A base chain's rules, sending what `interfaces` bring to `judge`: first
/// the established connections no dockfw `rules` chain has judged (opened
/// before the first apply, or while the table was deleted, flushed, dormant
/// or bypassed), in their original direction, so the rules judge them late
/// (an allowed one is labelled there and takes the fast path afterwards, a
/// denied one is cut); then the fast path for everything else established or
/// related; then new connections.
fn base_rules(interfaces: &[IfName], judge: &str) -> Vec<Rule> {
    let unjudged = interfaces.iter().map(|name| {
        rule(
            UNJUDGED_COMMENT,
            vec![
                Match::CtState(CtState::Established),
                Match::CtDirectionOriginal,
                Match::CtUnlabelled,
                Match::IifName(name.clone()),
            ],
            Verdict::Goto(judge.into()),
        )
    });
    let fast_path = rule(
        "only new connections are judged",
        vec![Match::CtState(CtState::EstablishedOrRelated)],
        Verdict::Accept,
    );
    let new = interfaces.iter().map(|name| {
        rule(
            "guarded interface",
            vec![Match::IifName(name.clone())],
            Verdict::Goto(judge.into()),
        )
    });
    unjudged.chain([fast_path]).chain(new).collect()
}

/// Suffix of per-family set names.
fn family_suffix(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "v4",
        Family::Ipv6 => "v6",
    }
}

fn ifname(text: &str) -> IfName {
    match text.strip_suffix('*') {
        Some(prefix) => IfName::Prefix(prefix.into()),
        None => IfName::Exact(text.into()),
    }
}

fn rule(comment: &str, matches: Vec<Match>, verdict: Verdict) -> Rule {
    Rule {
        comment: comment.into(),
        matches,
        statements: vec![],
        verdict: Some(verdict),
    }
}

/// How an allowed connection is marked for revoke before it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Inbound: `jump label`, which sets the bit of its interface.
    Label,
    /// Outbound and between: `ct label set` [`CT_LABEL_FROM_CONTAINER`].
    FromContainer,
}

/// The rules of a decision's chain: its first rule counts every connection
/// it decides ([`crate::layout::rule_counter`]), then `log`, `limits`, and
/// the verdict. With nothing between, an allow or drop is a single rule that
/// counts and decides: one rule, one counter per decision.
///
/// In audit mode a drop or reject is counted, logged (always, rate-limited,
/// [`Logged::WouldDeny`]) and then admitted like an allow; per-source
/// limits are logged ([`Logged::OverLimit`]), not enforced.
fn decision_rules(
    comment: &str,
    logging: Logging<'_>,
    limits: Vec<Rule>,
    action: Action,
    admit: Admit,
    audit: bool,
) -> Vec<Rule> {
    if audit && action != Action::Allow {
        let mut rules = vec![
            counter_rule(comment),
            logging.rule(comment, Logged::WouldDeny(action)),
        ];
        rules.extend(verdict_rules(comment, Action::Allow, admit));
        return rules;
    }
    let limits: Vec<Rule> = if audit {
        limits
            .into_iter()
            .map(|mut limit| {
                limit.verdict = None;
                limit.matches.push(Match::Limit {
                    rate: LOG_RATE,
                    burst: LOG_BURST,
                });
                // Before its counter: a counter is the last statement.
                limit.statements.insert(0, logging.statement(Logged::OverLimit));
                limit
            })
            .collect()
    } else {
        limits
    };
    let log = logging
        .wanted
        .then(|| logging.rule(comment, Logged::Decided(action)));
    let verdicts = verdict_rules(comment, action, admit);
    // The first verdict rule always matches for allow (`jump label`, or
    // `ct label set`) and drop, so it counts every decision; a reject's
    // first rule is TCP only.
    if log.is_none() && limits.is_empty() && action != Action::Reject {
        return counted(verdicts);
    }
    let mut rules = vec![counter_rule(comment)];
    rules.extend(log);
    rules.extend(limits);
    rules.extend(verdicts);
    rules
}

/// The `untracked` and `unattributed` chains: drop (in audit mode:
/// count, log, accept).
fn drop_rules(chain: &str, comment: &str, audit: bool, target: LogTarget) -> Vec<Rule> {
    if !audit {
        return counted(vec![rule(comment, vec![], Verdict::Drop)]);
    }
    let logging = Logging {
        chain,
        name: None,
        wanted: false,
        target,
    };
    vec![
        counter_rule(comment),
        logging.rule(comment, Logged::WouldDeny(Action::Drop)),
        rule(comment, vec![], Verdict::Accept),
    ]
}

/// The `from-containers` chain: onto a Docker bridge is between
/// containers, anything else outbound. A direction not judged returns
/// (the base chain's policy accepts; Docker's chains still run). With
/// `only_to`, every judged direction goes there instead
/// (`from-containers-invalid`).
fn from_containers_rules(judged: &[Direction], bridges: &[IfName], only_to: Option<&str>) -> Vec<Rule> {
    let target = |direction| only_to.unwrap_or(direction_chain(direction)).to_string();
    let mut rules: Vec<Rule> = bridges
        .iter()
        .map(|bridge| {
            let verdict = if judged.contains(&Direction::Between) {
                Verdict::Goto(target(Direction::Between))
            } else {
                Verdict::Return
            };
            rule("to a container", vec![Match::OifName(bridge.clone())], verdict)
        })
        .collect();
    if judged.contains(&Direction::Outbound) {
        rules.push(rule(
            "to the outside",
            vec![],
            Verdict::Goto(target(Direction::Outbound)),
        ));
    }
    rules
}

/// A per-source limit's drop. It counts what it stops, besides the
/// decision's counter: only connections over the limit reach its counter,
/// so it costs the others nothing.
fn limit_rule(comment: &str, matches: Vec<Match>) -> Rule {
    Rule {
        statements: vec![Statement::Counter],
        ..rule(comment, matches, Verdict::Drop)
    }
}

/// A rule that only counts: the first of a decision's chain when more
/// than its verdict follows.
fn counter_rule(comment: &str) -> Rule {
    Rule {
        comment: comment.into(),
        matches: vec![],
        statements: vec![Statement::Counter],
        verdict: None,
    }
}

/// `rules` with a counter on the first, which always matches and so counts
/// every decision (see [`crate::layout::CounterAt`]): the only counter on a
/// decision's path.
fn counted(mut rules: Vec<Rule>) -> Vec<Rule> {
    if let Some(first) = rules.first_mut() {
        first.statements.push(Statement::Counter);
    }
    rules
}

/// How a decision's chain logs: its prefix names the chain and the rule
/// ([`LogPrefix`]); lines go to the policy's [`LogTarget`].
#[derive(Debug, Clone, Copy)]
struct Logging<'a> {
    /// The decision's chain.
    chain: &'a str,
    /// The rule's name; `None` for a default.
    name: Option<&'a str>,
    /// Whether the policy asks to log what it decides (`log = true`).
    wanted: bool,
    target: LogTarget,
}

impl Logging<'_> {
    fn statement(&self, logged: Logged) -> Statement {
        let prefix = LogPrefix {
            chain: self.chain.to_string(),
            logged,
            name: self.name.map(str::to_string),
        };
        Statement::Log {
            prefix: prefix.render(),
            group: self.target.group(),
        }
    }

    /// A rate-limited log rule.
    fn rule(&self, comment: &str, logged: Logged) -> Rule {
        Rule {
            comment: comment.into(),
            matches: vec![Match::Limit {
                rate: LOG_RATE,
                burst: LOG_BURST,
            }],
            statements: vec![self.statement(logged)],
            verdict: None,
        }
    }
}

fn verdict_rules(comment: &str, action: Action, admit: Admit) -> Vec<Rule> {
    match (action, admit) {
        // Labelled only once allowed: a connection judged late (established,
        // never labelled) and denied must stay unlabelled, or its next
        // packet would take the fast path.
        (Action::Allow, Admit::Label) => vec![
            rule(comment, vec![], Verdict::Jump(CHAIN_LABEL.into())),
            rule(comment, vec![], Verdict::Accept),
        ],
        (Action::Allow, Admit::FromContainer) => vec![Rule {
            comment: comment.into(),
            matches: vec![],
            statements: vec![Statement::CtLabelSet(CT_LABEL_FROM_CONTAINER)],
            verdict: Some(Verdict::Accept),
        }],
        (Action::Drop, _) => vec![rule(comment, vec![], Verdict::Drop)],
        // A TCP client gets a reset (connection refused); anything else an
        // ICMP(v6) administratively-prohibited.
        (Action::Reject, _) => vec![
            rule(
                comment,
                vec![Match::L4Proto(Proto::Tcp)],
                Verdict::Reject(RejectWith::TcpReset),
            ),
            rule(comment, vec![], Verdict::Reject(RejectWith::IcmpxAdminProhibited)),
        ],
    }
}

/// The families a rule's alternatives can match (an alternative with no
/// family match admits both).
fn families_reaching(alternatives: &[Vec<Match>]) -> BTreeSet<Family> {
    let mut families = BTreeSet::new();
    for matches in alternatives {
        match matches.iter().find_map(|m| match m {
            Match::NfProto(family) => Some(*family),
            _ => None,
        }) {
            Some(family) => {
                families.insert(family);
            }
            None => families.extend([Family::Ipv4, Family::Ipv6]),
        }
    }
    families
}

/// What the client dialled: an address restriction and ports, one alternative
/// of a rule. `None` means any.
struct Dialled {
    /// Only this family; `None`: whichever `from` and `to` allow.
    family: Option<Family>,
    /// Addresses the client may have dialled.
    to: Option<AddrSet>,
    /// Base name of the kernel sets holding `to`.
    to_base: String,
    /// Ports the client may have dialled.
    ports: Option<PortSet>,
}

/// What a published port is bound to, as docker-proxy listens on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Binding {
    /// Every address of both families (no host address given).
    Any,
    /// Every address of one family (`0.0.0.0`, `::`).
    AnyOf(Family),
    /// One address.
    Addr(IpAddr),
}

impl Binding {
    /// How `host_addr` binds; `None` for loopback, which never arrives from outside.
    pub(crate) fn of(host_addr: Option<IpAddr>) -> Option<Self> {
        match host_addr {
            None => Some(Self::Any),
            Some(addr) if addr.is_loopback() => None,
            Some(addr) if addr.is_unspecified() => Some(Self::AnyOf(Family::of(addr))),
            Some(addr) => Some(Self::Addr(addr)),
        }
    }

    /// Whether a connection of `family` that dialled `dialled` reaches it.
    pub(crate) fn admits(self, family: Family, dialled: Option<IpAddr>) -> bool {
        match self {
            Self::Any => true,
            Self::AnyOf(bound) => bound == family,
            Self::Addr(addr) => Family::of(addr) == family && dialled == Some(addr),
        }
    }
}

/// Every address of every running container.
pub(crate) fn container_addresses(containers: &[Container]) -> AddrSet {
    AddrSet::from_addrs(containers.iter().flat_map(|c| c.addresses.iter().copied()))
}

struct Compiler {
    sets: Vec<Set>,
    /// Where decisions log (`[guard] log_to`).
    log_to: LogTarget,
}

/// Where a rule's sources are: anywhere, the addresses written, or a
/// dynamic set.
enum Source<'a> {
    Any,
    Written {
        addrs: &'a AddrSet,
        /// Base name of the kernel sets holding them.
        base: String,
    },
    /// A dynamic set, by name: both families, filled at run time.
    Dynamic(&'a str),
}

impl Source<'_> {
    fn has_family(&self, family: Family) -> bool {
        match self {
            Self::Any | Self::Dynamic(_) => true,
            Self::Written { addrs, .. } => addrs.has_family(family),
        }
    }
}

impl Compiler {
    /// Adds a set called `name`, or reuses an identical one of that name; a
    /// different one of that name gets a numbered name instead.
    fn add_set(&mut self, name: String, elements: SetElements) -> String {
        let mut candidate = name.clone();
        for n in 2.. {
            match self.sets.iter().find(|set| set.name == candidate) {
                Some(existing) if existing.elements == elements => return candidate,
                Some(_) => candidate = format!("{name}-{n}"),
                None => break,
            }
        }
        self.sets.push(Set {
            name: candidate.clone(),
            elements,
        });
        candidate
    }

    /// The set of IPv6 link-local addresses (fe80::/10).
    fn link_local_set(&mut self) -> String {
        self.add_set(
            "link-local-v6".into(),
            SetElements::Ipv6(vec![link_local_interval()]),
        )
    }

    fn addr_set(&mut self, base: &str, family: Family, addrs: &AddrSet) -> String {
        let elements = match family {
            Family::Ipv4 => SetElements::addresses_v4(addrs.v4.clone()),
            Family::Ipv6 => SetElements::addresses_v6(addrs.v6.clone()),
        };
        self.add_set(format!("{base}-{}", family_suffix(family)), elements)
    }

    fn port_match(&mut self, base: &str, proto: Proto, ports: &[Interval<u16>]) -> PortMatch {
        match ports {
            [single] if single.first == single.last => PortMatch::Single(single.first),
            [range] => PortMatch::Range(range.first, range.last),
            _ => PortMatch::Set(self.add_set(
                format!("{base}-{}", proto.name()),
                SetElements::Port(ports.to_vec()),
            )),
        }
    }

    /// Kernel set name for an address list: shared `set-NAME` when the list is
    /// exactly one named set, else private to the rule.
    fn addr_base(index: usize, field: &str, addrs: Option<&AddrMatch>) -> String {
        match addrs.and_then(|a| a.only_set.as_deref()) {
            Some(name) => format!("set-{name}"),
            None => format!("{}-{field}", rule_chain(index)),
        }
    }

    /// The match lists of a rule's alternatives: interfaces × dialled targets ×
    /// sources × families × protocols. Empty when the rule can match nothing
    /// (e.g. its container is not running).
    fn alternatives(&mut self, index: usize, rule: &PolicyRule, containers: &[Container]) -> Vec<Vec<Match>> {
        let interfaces: Vec<Option<&IfName>> = match &rule.interfaces {
            Some(names) => names.iter().map(Some).collect(),
            None => vec![None],
        };
        // The sources: any, or the addresses written (and in sets written in
        // the policy or files), and each dynamic set on its own (its kernel
        // sets are filled at run time, so they cannot be merged).
        let sources: Vec<Source<'_>> = match &rule.from {
            None => vec![Source::Any],
            Some(from) => {
                let written = (!from.addrs.is_empty() || from.dynamic.is_empty()).then(|| Source::Written {
                    addrs: &from.addrs,
                    base: Self::addr_base(index, "from", rule.from.as_ref()),
                });
                written
                    .into_iter()
                    .chain(from.dynamic.iter().map(|name| Source::Dynamic(name)))
                    .collect()
            }
        };
        let dialled = dialled_targets(index, rule, containers);
        let port_base = rule_chain(index);

        let mut out = Vec::new();
        for target in &dialled {
            for source in &sources {
                let allowed =
                    |f: Family| source.has_family(f) && target.to.as_ref().is_none_or(|s| s.has_family(f));
                let families: Vec<Option<Family>> = match target.family {
                    Some(family) if allowed(family) => vec![Some(family)],
                    Some(_) => vec![],
                    None if matches!(source, Source::Any) && target.to.is_none() => vec![None],
                    None => [Family::Ipv4, Family::Ipv6]
                        .into_iter()
                        .filter(|&f| allowed(f))
                        .map(Some)
                        .collect(),
                };
                let protos: Vec<Option<Proto>> = match &target.ports {
                    None => vec![None],
                    Some(ports) => [Proto::Tcp, Proto::Udp]
                        .into_iter()
                        .filter(|&p| !ports.of(p).is_empty())
                        .map(Some)
                        .collect(),
                };
                for family in &families {
                    let mut addr_matches = Vec::new();
                    if let Some(family) = *family {
                        addr_matches.push(Match::NfProto(family));
                        match source {
                            Source::Any => {}
                            Source::Written { addrs, base } => {
                                let set = self.addr_set(base, family, addrs);
                                addr_matches.push(Match::SourceIn { family, set });
                            }
                            Source::Dynamic(name) => {
                                let set = runtime_set_name(name, family);
                                addr_matches.push(Match::SourceIn { family, set });
                            }
                        }
                        if let Some(to) = &target.to {
                            let set = self.addr_set(&target.to_base, family, to);
                            addr_matches.push(Match::DialledAddrIn { family, set });
                        }
                    }
                    for proto in &protos {
                        let mut port_matches = Vec::new();
                        if let (Some(proto), Some(ports)) = (*proto, &target.ports) {
                            port_matches.push(Match::L4Proto(proto));
                            port_matches.push(Match::DialledPort(self.port_match(
                                &port_base,
                                proto,
                                ports.of(proto),
                            )));
                        }
                        for interface in &interfaces {
                            let mut matches: Vec<Match> =
                                interface.map(|i| Match::IifName(i.clone())).into_iter().collect();
                            matches.extend(addr_matches.iter().cloned());
                            matches.extend(port_matches.iter().cloned());
                            out.push(matches);
                        }
                    }
                }
            }
        }
        out
    }

    /// The docker-proxy chain: connections for a host port some running
    /// container publishes, on an address it is bound to, go to the rules.
    /// Each binding's ports are a named set per protocol.
    fn proxy_rules(&mut self, containers: &[Container]) -> Vec<Rule> {
        let mut bindings: BTreeMap<Binding, Vec<(Proto, u16)>> = BTreeMap::new();
        for published in containers.iter().flat_map(|c| c.published.iter()) {
            if let Some(binding) = Binding::of(published.host_addr) {
                bindings
                    .entry(binding)
                    .or_default()
                    .push((published.proto, published.host_port));
            }
        }
        let mut rules = Vec::new();
        let mut untracked = Vec::new();
        let mut addresses = 0;
        for (binding, ports) in bindings {
            let ports = PortSet::from_ports(ports);
            // What the client dialled, from conntrack; and the same, from the
            // packet itself, for untracked packets (never NATed).
            let (base, matches, own) = match binding {
                Binding::Any => ("proxy".to_string(), vec![], vec![]),
                Binding::AnyOf(family) => (
                    format!("proxy-{}", family_suffix(family)),
                    vec![Match::NfProto(family)],
                    vec![Match::NfProto(family)],
                ),
                Binding::Addr(addr) => {
                    addresses += 1;
                    let base = format!("proxy-addr-{addresses}");
                    let family = Family::of(addr);
                    let set = self.addr_set(&base, family, &AddrSet::from_addrs([addr]));
                    (
                        base,
                        vec![
                            Match::NfProto(family),
                            Match::DialledAddrIn {
                                family,
                                set: set.clone(),
                            },
                        ],
                        vec![Match::NfProto(family), Match::DestAddrIn { family, set }],
                    )
                }
            };
            for proto in [Proto::Tcp, Proto::Udp] {
                if ports.of(proto).is_empty() {
                    continue;
                }
                let set = self.add_set(
                    format!("{base}-{}", proto.name()),
                    SetElements::Port(ports.of(proto).to_vec()),
                );
                let mut matches = matches.clone();
                matches.push(Match::L4Proto(proto));
                matches.push(Match::DialledPort(PortMatch::Set(set.clone())));
                rules.push(rule(PROXY_COMMENT, matches, Verdict::Goto(CHAIN_RULES.into())));
                let mut own = own.clone();
                own.insert(0, Match::CtState(CtState::Untracked));
                own.push(Match::L4Proto(proto));
                own.push(Match::DestPort(PortMatch::Set(set)));
                untracked.push(rule(
                    UNTRACKED_COMMENT,
                    own,
                    Verdict::Goto(CHAIN_UNTRACKED.into()),
                ));
            }
        }
        rules.extend(untracked);
        rules
    }

    /// The rules of a rule's own chain: count, log, enforce limits, decide
    /// (see [`decision_rules`]).
    fn decide(
        &mut self,
        index: usize,
        policy_rule: &PolicyRule,
        families: &BTreeSet<Family>,
        audit: bool,
    ) -> Vec<Rule> {
        let name = &policy_rule.name;
        let chain = rule_chain(index);
        let logging = Logging {
            chain: &chain,
            name: Some(name),
            wanted: policy_rule.log,
            target: self.log_to,
        };
        let mut rules = Vec::new();
        for &family in families {
            let suffix = family_suffix(family);
            if let Some(limit) = policy_rule.limit {
                let set = self.add_set(
                    format!("{}-rate-{suffix}", rule_chain(index)),
                    SetElements::Meter(Meter {
                        family,
                        size: METER_SIZE,
                        // Long enough for the bucket to refill before an idle source is forgotten.
                        timeout_secs: Some(limit.rate.unit.seconds().max(60) as u32),
                    }),
                );
                let over = Match::SourceRateOver {
                    family,
                    set,
                    rate: limit.rate,
                    burst: limit.burst,
                };
                // New connections only: a connection created while no dockfw
                // table existed can never be labelled, so each of its packets
                // is judged again and must not feed (or be dropped by) a meter
                // of connection attempts.
                rules.push(limit_rule(
                    name,
                    vec![Match::NfProto(family), Match::CtState(CtState::New), over],
                ));
            }
            if let Some(count) = policy_rule.max_connections {
                let set = self.add_set(
                    format!("{}-conns-{suffix}", rule_chain(index)),
                    SetElements::Meter(Meter {
                        family,
                        size: METER_SIZE,
                        // Conntrack forgets closed connections; no timeout needed.
                        timeout_secs: None,
                    }),
                );
                // Every packet, new or judged late: the kernel counts a tracked
                // connection once however often it is seen (nf_conncount skips
                // a tuple it already holds).
                let over = Match::SourceConnectionsOver { family, set, count };
                rules.push(limit_rule(name, vec![Match::NfProto(family), over]));
            }
        }
        decision_rules(name, logging, rules, policy_rule.action, Admit::Label, audit)
    }

    /// The chains of a judged outbound or between direction: its rules
    /// chain (each rule's alternatives, then its default), each rule's
    /// decision chain, and the default's.
    fn container_chains(
        &mut self,
        policy: &Policy,
        direction: Direction,
        containers: &[Container],
    ) -> Vec<Chain> {
        let guard = &policy.guard;
        let mut dispatch = Vec::new();
        if direction == Direction::Between {
            // A broadcast or multicast reaches every container on the
            // bridge, whatever its destination address names: no rule
            // naming containers can judge it, and a deny rule would be
            // passed by broadcasting.
            for kind in [PacketType::Broadcast, PacketType::Multicast] {
                dispatch.push(rule(
                    BROADCAST_COMMENT,
                    vec![Match::PacketType(kind)],
                    Verdict::Goto(CHAIN_UNATTRIBUTED.into()),
                ));
            }
            // Docker reports no link-local address, so no rule naming
            // containers could match one: such a connection would slip past
            // every between rule.
            let link_local = self.link_local_set();
            for m in [
                Match::SourceIn {
                    family: Family::Ipv6,
                    set: link_local.clone(),
                },
                Match::DestAddrIn {
                    family: Family::Ipv6,
                    set: link_local,
                },
            ] {
                dispatch.push(rule(
                    LINK_LOCAL_COMMENT,
                    vec![Match::NfProto(Family::Ipv6), m],
                    Verdict::Goto(CHAIN_UNATTRIBUTED.into()),
                ));
            }
        }
        let mut chains = Vec::new();
        for (index, container_rule) in policy.container_rules(direction).iter().enumerate() {
            let chain = decision_chain(direction, index);
            let alternatives = self.container_alternatives(&chain, container_rule, containers);
            dispatch.extend(alternatives.into_iter().map(|matches| Rule {
                comment: container_rule.name.clone(),
                matches,
                statements: vec![],
                verdict: Some(Verdict::Goto(chain.clone())),
            }));
            let name = &container_rule.name;
            chains.push(Chain {
                rules: decision_rules(
                    name,
                    Logging {
                        chain: &chain,
                        name: Some(name),
                        wanted: container_rule.log,
                        target: guard.log_to,
                    },
                    vec![],
                    container_rule.action,
                    Admit::FromContainer,
                    guard.audit(),
                ),
                name: chain,
                hook: None,
            });
        }
        let comment = default_comment(direction);
        dispatch.push(rule(&comment, vec![], Verdict::Goto(default_chain(direction))));
        chains.insert(
            0,
            Chain {
                name: direction_chain(direction).into(),
                hook: None,
                rules: dispatch,
            },
        );
        let chain = default_chain(direction);
        chains.push(Chain {
            rules: decision_rules(
                &comment,
                Logging {
                    chain: &chain,
                    name: None,
                    wanted: guard.log,
                    target: guard.log_to,
                },
                vec![],
                guard.default_of(direction),
                Admit::FromContainer,
                guard.audit(),
            ),
            name: chain,
            hook: None,
        });
        chains
    }

    /// The `between-proxied` chain: each between rule's alternatives for a
    /// container dialling a port the host publishes (docker-proxy), then
    /// every published port for the default. Each marks the connection
    /// ([`CT_LABEL_FROM_CONTAINER_PROXIED`]) before its decision, so revoke
    /// knows the path (a denied new connection's entry dies with its packet).
    fn between_proxied_rules(&mut self, policy: &Policy, containers: &[Container]) -> Vec<Rule> {
        let mark = |comment: &str, matches: Vec<Match>, chain: String| Rule {
            comment: comment.into(),
            matches,
            statements: vec![Statement::CtLabelSet(CT_LABEL_FROM_CONTAINER_PROXIED)],
            verdict: Some(Verdict::Goto(chain)),
        };
        let mut rules = Vec::new();
        // From a link-local address (which names no container) to a port a
        // container publishes: as on the forward hook, no rule can judge it.
        let link_local = AddrSet {
            v4: Vec::new(),
            v6: vec![link_local_interval()],
        };
        let everything = containers.iter().flat_map(|k| k.published.iter());
        for matches in self.published_alternatives(CHAIN_UNATTRIBUTED, Some(&link_local), everything) {
            rules.push(rule(
                LINK_LOCAL_COMMENT,
                matches,
                Verdict::Goto(CHAIN_UNATTRIBUTED.into()),
            ));
        }
        for (index, between) in policy.between.iter().enumerate() {
            let chain = decision_chain(Direction::Between, index);
            let source = match &between.from {
                None => None,
                Some(selector) => {
                    let addrs = selector.addresses(containers);
                    if addrs.is_empty() {
                        continue;
                    }
                    Some(addrs)
                }
            };
            let to = match &between.to {
                Some(Destination::Containers(selector)) => Some(selector),
                _ => None,
            };
            let published = containers
                .iter()
                .filter(|k| to.is_none_or(|selector| selector.selects(k)))
                .flat_map(|k| k.published.iter())
                .filter(|p| {
                    between
                        .ports
                        .as_ref()
                        .is_none_or(|ports| ports.contains(p.proto, p.container_port))
                });
            let alternatives = self.published_alternatives(&chain, source.as_ref(), published);
            rules.extend(
                alternatives
                    .into_iter()
                    .map(|matches| mark(&between.name, matches, chain.clone())),
            );
        }
        let default = default_chain(Direction::Between);
        let everything = containers.iter().flat_map(|k| k.published.iter());
        let alternatives = self.published_alternatives(&default, None, everything);
        let comment = default_comment(Direction::Between);
        rules.extend(
            alternatives
                .into_iter()
                .map(|matches| mark(&comment, matches, default.clone())),
        );
        rules
    }

    /// Matches for a connection from `source` (any: `None`) to one of
    /// `published`'s host ports at an address it is bound to, on the
    /// packet itself (docker-proxy's connections are not NATed): one
    /// alternative per binding, family and protocol. Sets are named from
    /// `base` (`base-from-v4`, `base-host-K-v4`, `base-host-K-tcp`).
    fn published_alternatives<'p>(
        &mut self,
        base: &str,
        source: Option<&AddrSet>,
        published: impl Iterator<Item = &'p PublishedPort>,
    ) -> Vec<Vec<Match>> {
        let mut bindings: BTreeMap<Binding, Vec<(Proto, u16)>> = BTreeMap::new();
        for p in published {
            if let Some(binding) = Binding::of(p.host_addr) {
                bindings.entry(binding).or_default().push((p.proto, p.host_port));
            }
        }
        let mut out = Vec::new();
        for (group, (binding, ports)) in bindings.into_iter().enumerate() {
            let ports = PortSet::from_ports(ports);
            let host = format!("{base}-host-{}", group + 1);
            let has = |family: Family| source.is_none_or(|s| s.has_family(family));
            let families: Vec<Option<Family>> = match binding {
                Binding::Any if source.is_none() => vec![None],
                Binding::Any => [Family::Ipv4, Family::Ipv6]
                    .into_iter()
                    .filter(|&f| has(f))
                    .map(Some)
                    .collect(),
                Binding::AnyOf(family) => has(family).then_some(Some(family)).into_iter().collect(),
                Binding::Addr(addr) => {
                    let family = Family::of(addr);
                    has(family).then_some(Some(family)).into_iter().collect()
                }
            };
            for family in families {
                let mut matches = Vec::new();
                if let Some(family) = family {
                    matches.push(Match::NfProto(family));
                    if let Some(source) = source {
                        let set = self.addr_set(&format!("{base}-from"), family, source);
                        matches.push(Match::SourceIn { family, set });
                    }
                    if let Binding::Addr(addr) = binding {
                        let set = self.addr_set(&host, family, &AddrSet::from_addrs([addr]));
                        matches.push(Match::DestAddrIn { family, set });
                    }
                }
                for proto in [Proto::Tcp, Proto::Udp] {
                    if ports.of(proto).is_empty() {
                        continue;
                    }
                    let mut alternative = matches.clone();
                    alternative.push(Match::L4Proto(proto));
                    alternative.push(Match::DestPort(self.port_match(&host, proto, ports.of(proto))));
                    out.push(alternative);
                }
            }
        }
        out
    }

    /// The match lists of an outbound or between rule's alternatives:
    /// sources × destinations × families × protocols, on the packet's own
    /// addresses and ports (no NAT has happened to a container's new
    /// connection on the forward hook but Docker's DNAT, after which the
    /// destination is the container). Empty when the rule can match
    /// nothing (a container it names is not running).
    fn container_alternatives(
        &mut self,
        chain: &str,
        rule: &ContainerRule,
        containers: &[Container],
    ) -> Vec<Vec<Match>> {
        let source = match &rule.from {
            None => None,
            Some(selector) => {
                let addrs = selector.addresses(containers);
                if addrs.is_empty() {
                    return Vec::new();
                }
                Some(addrs)
            }
        };
        let to_base = |addrs: &AddrMatch| match addrs.only_set.as_deref() {
            Some(name) => format!("set-{name}"),
            None => format!("{chain}-to"),
        };
        // The selected containers' addresses, when `to` selects containers.
        let selected = match &rule.to {
            Some(Destination::Containers(selector)) => {
                let addrs = selector.addresses(containers);
                if addrs.is_empty() {
                    return Vec::new();
                }
                addrs
            }
            _ => AddrSet::default(),
        };
        let destinations: Vec<Source<'_>> = match &rule.to {
            None => vec![Source::Any],
            Some(Destination::Addresses(to)) => {
                let written = (!to.addrs.is_empty() || to.dynamic.is_empty()).then(|| Source::Written {
                    addrs: &to.addrs,
                    base: to_base(to),
                });
                written
                    .into_iter()
                    .chain(to.dynamic.iter().map(|name| Source::Dynamic(name)))
                    .collect()
            }
            Some(Destination::Containers(_)) => vec![Source::Written {
                addrs: &selected,
                base: format!("{chain}-to"),
            }],
        };
        let protos: Vec<Option<Proto>> = match &rule.ports {
            None => vec![None],
            Some(ports) => [Proto::Tcp, Proto::Udp]
                .into_iter()
                .filter(|&p| !ports.of(p).is_empty())
                .map(Some)
                .collect(),
        };
        let mut out = Vec::new();
        for destination in &destinations {
            let allowed =
                |f: Family| source.as_ref().is_none_or(|s| s.has_family(f)) && destination.has_family(f);
            let families: Vec<Option<Family>> = if source.is_none() && matches!(destination, Source::Any) {
                vec![None]
            } else {
                [Family::Ipv4, Family::Ipv6]
                    .into_iter()
                    .filter(|&f| allowed(f))
                    .map(Some)
                    .collect()
            };
            for family in families {
                let mut addr_matches = Vec::new();
                if let Some(family) = family {
                    addr_matches.push(Match::NfProto(family));
                    if let Some(source) = &source {
                        let set = self.addr_set(&format!("{chain}-from"), family, source);
                        addr_matches.push(Match::SourceIn { family, set });
                    }
                    match destination {
                        Source::Any => {}
                        Source::Written { addrs, base } => {
                            let set = self.addr_set(base, family, addrs);
                            addr_matches.push(Match::DestAddrIn { family, set });
                        }
                        Source::Dynamic(name) => {
                            let set = runtime_set_name(name, family);
                            addr_matches.push(Match::DestAddrIn { family, set });
                        }
                    }
                }
                for proto in &protos {
                    let mut matches = addr_matches.clone();
                    if let (Some(proto), Some(ports)) = (*proto, &rule.ports) {
                        matches.push(Match::L4Proto(proto));
                        matches.push(Match::DestPort(self.port_match(chain, proto, ports.of(proto))));
                    }
                    out.push(matches);
                }
            }
        }
        out
    }
}

/// Ports and their protocols, unsorted.
type PortList = Vec<(Proto, u16)>;

/// The dialled targets of a rule: its own `to` and `ports`; for a rule that
/// selects containers, what they publish, on every path:
///
/// - through Docker's DNAT or to docker-proxy, a host address each published
///   port is bound to and its host port. Where running containers have
///   addresses, those are excluded: a client dialling a container's own
///   address is routed, not published, and must not match by host port;
/// - routed without NAT, a selected container's address and the container
///   port of what it publishes (the same service, untranslated).
///
/// `ports` picks published ports by host port on both paths; `to` limits the
/// dialled address on both.
fn dialled_targets(index: usize, rule: &PolicyRule, containers: &[Container]) -> Vec<Dialled> {
    let to = rule.to.as_ref().map(|t| t.addrs.clone());
    if !rule.selects_containers() {
        return vec![Dialled {
            family: None,
            to,
            to_base: Compiler::addr_base(index, "to", rule.to.as_ref()),
            ports: rule.ports.clone(),
        }];
    }
    let chain = rule_chain(index);
    let selected = rule.selected(containers);
    let covered = |p: &&PublishedPort| {
        rule.ports
            .as_ref()
            .is_none_or(|ports| ports.contains(p.proto, p.host_port))
    };
    let mut out = Vec::new();

    // Published: the host ports grouped by the host addresses they are bound
    // to (`None`: every address).
    let mut groups: Vec<(Option<AddrSet>, PortList)> = Vec::new();
    for published in selected.iter().flat_map(|c| c.published.iter()).filter(covered) {
        let bound = published.host_addr.map(host_binding);
        let position = match groups.iter().position(|(addrs, _)| *addrs == bound) {
            Some(position) => position,
            None => {
                groups.push((bound, Vec::new()));
                groups.len() - 1
            }
        };
        groups[position].1.push((published.proto, published.host_port));
    }
    let in_containers = container_addresses(containers);
    let not_containers = AddrSet::everything().difference(&in_containers);
    for (group, (bound, ports)) in groups.into_iter().enumerate() {
        let ports = PortSet::from_ports(ports);
        // Per family: the addresses the client may have dialled (`None`: any).
        let mut limits: Vec<(Family, Option<AddrSet>)> = Vec::new();
        for family in [Family::Ipv4, Family::Ipv6] {
            let restrictions = [
                bound.as_ref(),
                to.as_ref(),
                in_containers.has_family(family).then_some(&not_containers),
            ];
            let limit = restrictions
                .into_iter()
                .flatten()
                .fold(None, |limit: Option<AddrSet>, set| {
                    Some(match limit {
                        None => set.of_family(family),
                        Some(limit) => limit.intersection(set),
                    })
                });
            if limit.as_ref().is_none_or(|set| !set.is_empty()) {
                limits.push((family, limit));
            }
        }
        if limits.len() == 2 && limits.iter().all(|(_, limit)| limit.is_none()) {
            out.push(Dialled {
                family: None,
                to: None,
                to_base: String::new(),
                ports: Some(ports),
            });
            continue;
        }
        for (family, limit) in limits {
            // The bare exclusion of container addresses is one shared set.
            let to_base = if in_containers.has_family(family)
                && limit.as_ref() == Some(&not_containers.of_family(family))
            {
                NOT_CONTAINERS.to_string()
            } else {
                format!("{chain}-to-{}", group + 1)
            };
            out.push(Dialled {
                family: Some(family),
                to: limit,
                to_base,
                ports: Some(ports.clone()),
            });
        }
    }

    // Routed: each container's addresses at its container ports; containers
    // with the same ports share one alternative.
    let mut routed: Vec<(PortSet, AddrSet)> = Vec::new();
    for container in &selected {
        let ports = PortSet::from_ports(
            container
                .published
                .iter()
                .filter(covered)
                .map(|p| (p.proto, p.container_port)),
        );
        let mut addrs = AddrSet::from_addrs(container.addresses.iter().copied());
        if let Some(to) = &to {
            addrs = addrs.intersection(to);
        }
        if ports.is_empty() || addrs.is_empty() {
            continue;
        }
        match routed.iter_mut().find(|(known, _)| *known == ports) {
            Some((_, known)) => *known = known.union(&addrs),
            None => routed.push((ports, addrs)),
        }
    }
    out.extend(
        routed
            .into_iter()
            .enumerate()
            .map(|(group, (ports, addrs))| Dialled {
                family: None,
                to: Some(addrs),
                to_base: format!("{chain}-routed-{}", group + 1),
                ports: Some(ports),
            }),
    );
    out
}

/// The host addresses a published port answers on: an unspecified address
/// (0.0.0.0, ::) means every address of that family.
pub(crate) fn host_binding(addr: IpAddr) -> AddrSet {
    let everything = AddrSet::everything();
    match addr {
        IpAddr::V4(a) if a.is_unspecified() => AddrSet {
            v4: everything.v4,
            v6: vec![],
        },
        IpAddr::V6(a) if a.is_unspecified() => AddrSet {
            v4: vec![],
            v6: everything.v6,
        },
        IpAddr::V4(a) => AddrSet {
            v4: vec![Interval::single(a)],
            v6: vec![],
        },
        IpAddr::V6(a) => AddrSet {
            v4: vec![],
            v6: vec![Interval::single(a)],
        },
    }
}
