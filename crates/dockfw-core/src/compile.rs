//! Policy → ruleset.
//!
//! The layout, in table `inet <guard.table>`:
//!
//! ```text
//! chain forward   hook forward, priority <guard.priority>, policy accept
//!     ct state != new accept            replies and established traffic: not ours to judge
//!     iifname <guarded> goto guarded    one rule per guarded interface
//! chain guarded   is it going to a container?
//!     ct status dnat goto rules         published by Docker
//!     oifname "docker0" goto rules      routed onto a Docker bridge
//!     oifname "br-*" goto rules
//! chain rules     the rules, in order; each alternative of a rule is one nft rule
//!     <matches> goto rule-N
//!     goto default-fate
//! chain rule-N    what rule N decides: counter, [log], [per-source limits], verdict
//! chain default-fate  the default fate: counter, [log], verdict
//! ```
//!
//! An `accept` ends only our base chain: Docker's chains still run afterwards,
//! so "allow" never opens more than Docker itself would.

use crate::interval::{self, Interval};
use crate::policy::{Action, AddrMatch, Container, Policy, PortSet, Rule as PolicyRule};
use crate::ruleset::{
    BaseHook, Chain, CtState, Family, Hook, IfName, Match, Meter, PortMatch, Proto, Rate, RateUnit,
    RejectWith, Rule, Ruleset, Set, SetElements, Statement, Verdict,
};
use crate::values::AddrSet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The base chain on the forward hook.
pub const CHAIN_FORWARD: &str = "forward";
/// Traffic from a guarded interface: is it bound for a container?
pub const CHAIN_GUARDED: &str = "guarded";
/// The policy's rules, in order.
pub const CHAIN_POLICY: &str = "rules";
/// The default fate.
pub const CHAIN_DEFAULT: &str = "default-fate";
/// Comment of the default fate's rules.
pub const DEFAULT_COMMENT: &str = "default";
/// Interfaces of Docker bridges (the default bridge, and user-defined networks).
pub const DOCKER_BRIDGES: [&str; 2] = ["docker0", "br-*"];
/// Logging is rate-limited per rule so a flood cannot fill the kernel log.
pub const LOG_RATE: Rate = Rate {
    count: 5,
    unit: RateUnit::Second,
};
/// Burst of the log rate limit.
pub const LOG_BURST: u32 = 10;
/// How many sources a per-source limit tracks at once.
pub const METER_SIZE: u32 = 65535;

/// Name of the chain deciding for the rule at `index` (0-based).
pub fn rule_chain(index: usize) -> String {
    format!("rule-{}", index + 1)
}

/// Compiles `policy` into a ruleset. `containers` is what Docker runs: a
/// `container` rule matches the ports its container publishes, and nothing
/// while the container is not running (or Docker is not known).
///
/// Deterministic: the same inputs give the same ruleset.
pub fn compile(policy: &Policy, containers: &[Container]) -> Ruleset {
    let mut compiler = Compiler { sets: Vec::new() };
    let guard = &policy.guard;

    let mut forward = vec![rule(
        "only new connections are judged",
        vec![Match::CtState(CtState::NotNew)],
        Verdict::Accept,
    )];
    forward.extend(guard.interfaces.iter().map(|name| {
        rule(
            "guarded interface",
            vec![Match::IifName(name.clone())],
            Verdict::Goto(CHAIN_GUARDED.into()),
        )
    }));

    let mut guarded = vec![rule(
        "published by Docker (DNAT)",
        vec![Match::CtStatusDnat],
        Verdict::Goto(CHAIN_POLICY.into()),
    )];
    guarded.extend(DOCKER_BRIDGES.iter().map(|bridge| {
        rule(
            "routed to a Docker bridge",
            vec![Match::OifName(ifname(bridge))],
            Verdict::Goto(CHAIN_POLICY.into()),
        )
    }));

    let mut policy_rules = Vec::new();
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
            rules: compiler.decide(index, policy_rule, &families),
            name: chain,
            hook: None,
        });
    }
    policy_rules.push(rule(DEFAULT_COMMENT, vec![], Verdict::Goto(CHAIN_DEFAULT.into())));

    let mut default = vec![counter_rule(DEFAULT_COMMENT)];
    if guard.log {
        default.push(log_rule(DEFAULT_COMMENT, "dockfw: "));
    }
    default.extend(verdict_rules(DEFAULT_COMMENT, guard.default));

    let mut chains = vec![
        Chain {
            name: CHAIN_FORWARD.into(),
            hook: Some(BaseHook {
                hook: Hook::Forward,
                priority: guard.priority,
            }),
            rules: forward,
        },
        Chain {
            name: CHAIN_GUARDED.into(),
            hook: None,
            rules: guarded,
        },
        Chain {
            name: CHAIN_POLICY.into(),
            hook: None,
            rules: policy_rules,
        },
    ];
    chains.extend(verdict_chains);
    chains.push(Chain {
        name: CHAIN_DEFAULT.into(),
        hook: None,
        rules: default,
    });
    Ruleset {
        table: guard.table.clone(),
        sets: compiler.sets,
        chains,
    }
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

fn counter_rule(comment: &str) -> Rule {
    Rule {
        comment: comment.into(),
        matches: vec![],
        statements: vec![],
        verdict: None,
    }
}

fn log_rule(comment: &str, prefix: &str) -> Rule {
    Rule {
        comment: comment.into(),
        matches: vec![Match::Limit {
            rate: LOG_RATE,
            burst: LOG_BURST,
        }],
        statements: vec![Statement::Log {
            prefix: prefix.into(),
        }],
        verdict: None,
    }
}

fn verdict_rules(comment: &str, action: Action) -> Vec<Rule> {
    match action {
        Action::Allow => vec![rule(comment, vec![], Verdict::Accept)],
        Action::Drop => vec![rule(comment, vec![], Verdict::Drop)],
        // A TCP client gets a reset (connection refused); anything else an
        // ICMP(v6) administratively-prohibited.
        Action::Reject => vec![
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
    to: Option<AddrSet>,
    ports: Option<PortSet>,
}

struct Compiler {
    sets: Vec<Set>,
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

    fn addr_set(&mut self, base: &str, family: Family, addrs: &AddrSet) -> String {
        let elements = match family {
            Family::Ipv4 => SetElements::Ipv4(addrs.v4.clone()),
            Family::Ipv6 => SetElements::Ipv6(addrs.v6.clone()),
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
    /// families × protocols. Empty when the rule can match nothing (e.g. its
    /// container is not running).
    fn alternatives(&mut self, index: usize, rule: &PolicyRule, containers: &[Container]) -> Vec<Vec<Match>> {
        let interfaces: Vec<Option<&IfName>> = match &rule.interfaces {
            Some(names) => names.iter().map(Some).collect(),
            None => vec![None],
        };
        let from = rule.from.as_ref().map(|f| &f.addrs);
        let from_base = Self::addr_base(index, "from", rule.from.as_ref());
        let dialled = dialled_targets(rule, containers);
        let to_base = Self::addr_base(index, "to", rule.to.as_ref());
        let port_base = rule_chain(index);

        let mut out = Vec::new();
        for (target_index, target) in dialled.iter().enumerate() {
            // Container targets restrict the address per published binding:
            // their sets are named apart from the plain `to` set.
            let to_base = if rule.container.is_some() && target.to.is_some() {
                format!("{}-to-{}", rule_chain(index), target_index + 1)
            } else {
                to_base.clone()
            };
            let families: Vec<Option<Family>> = if from.is_none() && target.to.is_none() {
                vec![None]
            } else {
                [Family::Ipv4, Family::Ipv6]
                    .into_iter()
                    .filter(|&f| {
                        from.is_none_or(|s| s.has_family(f))
                            && target.to.as_ref().is_none_or(|s| s.has_family(f))
                    })
                    .map(Some)
                    .collect()
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
                    if let Some(from) = from {
                        let set = self.addr_set(&from_base, family, from);
                        addr_matches.push(Match::SourceIn { family, set });
                    }
                    if let Some(to) = &target.to {
                        let set = self.addr_set(&to_base, family, to);
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
        out
    }

    /// The rules of a rule's own chain: count, log, enforce limits, decide.
    fn decide(&mut self, index: usize, policy_rule: &PolicyRule, families: &BTreeSet<Family>) -> Vec<Rule> {
        let name = &policy_rule.name;
        let mut rules = vec![counter_rule(name)];
        if policy_rule.log {
            rules.push(log_rule(name, &format!("dockfw {name}: ")));
        }
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
                rules.push(rule(name, vec![Match::NfProto(family), over], Verdict::Drop));
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
                let over = Match::SourceConnectionsOver { family, set, count };
                rules.push(rule(name, vec![Match::NfProto(family), over], Verdict::Drop));
            }
        }
        rules.extend(verdict_rules(name, policy_rule.action));
        rules
    }
}

/// The dialled targets of a rule: its own `to` and `ports`, narrowed for a
/// `container` rule to each address binding of the container's published ports.
fn dialled_targets(rule: &PolicyRule, containers: &[Container]) -> Vec<Dialled> {
    let to = rule.to.as_ref().map(|t| t.addrs.clone());
    let Some(name) = &rule.container else {
        return vec![Dialled {
            to,
            ports: rule.ports.clone(),
        }];
    };
    let Some(container) = containers.iter().find(|c| &c.name == name) else {
        return vec![];
    };
    // Group the published ports by the host addresses they are bound to.
    let mut groups: Vec<(Option<AddrSet>, PortSet)> = Vec::new();
    for published in &container.published {
        let bound = published.host_addr.map(host_binding);
        let position = match groups.iter().position(|(addrs, _)| *addrs == bound) {
            Some(position) => position,
            None => {
                groups.push((bound, PortSet::default()));
                groups.len() - 1
            }
        };
        let ports = &mut groups[position].1;
        let list = match published.proto {
            Proto::Tcp => &mut ports.tcp,
            Proto::Udp => &mut ports.udp,
        };
        list.push(Interval::single(published.host_port));
        *list = interval::normalize(std::mem::take(list));
    }
    groups
        .into_iter()
        .filter_map(|(bound, ports)| {
            let to = match (&to, bound) {
                (None, bound) => bound,
                (Some(to), None) => Some(to.clone()),
                (Some(to), Some(bound)) => Some(to.intersection(&bound)),
            };
            let ports = match &rule.ports {
                Some(wanted) => wanted.intersection(&ports),
                None => ports,
            };
            let empty = ports.is_empty() || to.as_ref().is_some_and(AddrSet::is_empty);
            (!empty).then_some(Dialled {
                to,
                ports: Some(ports),
            })
        })
        .collect()
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
