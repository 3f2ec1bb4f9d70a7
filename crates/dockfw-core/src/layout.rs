//! The layout of the compiled table: which chain holds what, and where a
//! policy rule's counter and verdict sit. [`crate::compile()`] writes it; the
//! command (status) and the tests read an installed table through the
//! functions here instead of reverse-engineering it.
//!
//! In table `inet <guard.table>`:
//!
//! ```text
//! chain forward   hook forward, priority <guard.priority>, policy accept
//!     ct state established ct direction original ct label ! 96,…,127 iifname <guarded> goto guarded
//!                                           never judged (see below): judge now; one per guarded interface
//!     ct state established,related accept   replies and judged connections: the fast path
//!     iifname <guarded> goto guarded        one rule per guarded interface
//! chain input     hook input, priority <guard.priority>, policy accept
//!     ct state established ct direction original ct label ! 96,…,127 iifname <guarded> goto docker-proxy
//!     ct state established,related accept
//!     iifname <guarded> goto docker-proxy
//! chain guarded   is it going to a container?
//!     ct status dnat goto rules         published by Docker (first: the common path)
//!     ct state untracked oifname "docker0" goto untracked   (and "br-*")
//!     oifname "docker0" goto rules      routed onto a Docker bridge
//!     oifname "br-*" goto rules
//! chain docker-proxy   is it for a port a running container publishes (not NATed)?
//!     [meta nfproto F] [ct original ip daddr @proxy-addr-K-F] meta l4proto P ct original proto-dst @proxy…-P goto rules
//!     ct state untracked [meta nfproto F] [ip daddr @proxy-addr-K-F] meta l4proto P th dport @proxy…-P goto untracked
//! chain untracked  counter drop: untracked packets the guard would judge
//! chain rules     the rules, in order; each alternative of a rule is one nft rule
//!     <matches> goto rule-N
//!     goto default-fate
//! chain label     jumped to by every allow, before its accept
//!     iifname <pattern> ct label set <bit>   one per interface pattern (see below)
//! chain rule-N    what rule N decides: counter, [log], [per-source limits
//!                 (rate: `ct state new` only)], verdict
//!                 (a plain drop is one rule, `counter drop`; a plain allow
//!                 two, `counter jump label`, `accept`: the first counts)
//! chain default-fate  the default fate: counter, [log], verdict (likewise)
//! ```
//!
//! Containers' own new connections, only when the policy judges them
//! ([`Policy::judges`](crate::policy::Policy::judges): `[[outbound]]`/`[[between]]` rules, or their
//! default not accept); otherwise none of this is in the table:
//!
//! ```text
//! chain forward   (after the rules above)
//!     iifname "docker0" ct state new goto from-containers    (and "br-*")
//! chain from-containers   where does it go?
//!     oifname "docker0" goto between     (and "br-*"; `return` when between is not judged)
//!     goto outbound                      (left out when outbound is not judged)
//! chain outbound  the [[outbound]] rules, in order, on the packet's own
//!                 addresses and port (ip saddr, ip daddr, th dport)
//!     <matches> goto outbound-N
//!     goto outbound-default
//! chain between   likewise: between-N, between-default
//! chain input     (after the rules above, when between is judged)
//!     iifname "docker0" ct state new goto between-proxied    (and "br-*")
//! chain between-proxied   a container dialling a port the host publishes,
//!                 answered by docker-proxy (Docker's default: it does not
//!                 NAT that): each between rule's source containers and
//!                 the host ports its `to` containers publish (whose
//!                 container port is in its `ports`), at the addresses
//!                 they are bound to
//!     <matches> ct label set 94 goto between-N
//!     <every published port> ct label set 94 goto between-default
//!                 (anything else is for the host itself: not judged)
//! chain outbound-N / between-N / outbound-default / between-default
//!                 counter, [log], verdict; an allow is one rule,
//!                 `ct label set 95 accept` (see below)
//! ```
//!
//! A container's new connection leaves its bridge on the forward hook:
//! onto a Docker bridge (the same one, which netfilter sees only with
//! `br_netfilter` and `bridge-nf-call-iptables`, or another) is between
//! containers, anything else outbound. No NAT has happened to it yet but
//! Docker's DNAT of a published port a container dials (then the
//! destination is the container reached, at its container port), so the
//! rules match the packet's own addresses and port. Allowed ones are
//! labelled with [`CT_LABEL_FROM_CONTAINER`] (bit 95, below the interface
//! bits), which revoke looks for.
//!
//! Audit mode (`[guard] mode = "audit"`): a decision chain that would drop
//! or reject counts (its first rule), logs with the prefix `dockfw CHAIN would-drop NAME: ` and
//! then admits (labels and accepts) like an allow; per-source limits log
//! instead of dropping; the untracked chain logs and accepts.
//! [`audited_action`] reads back what a chain would have done.
//!
//! Log prefixes ([`LogPrefix`]) name the decision's chain first (a short id
//! that maps back to the rule, [`decided_by_chain`]), then what it did,
//! then the rule's name: `dockfw rule-2 drop admin panel: `,
//! `dockfw default-fate drop: `, `dockfw outbound-1 would-reject web: `.
//!
//! The judged path is kept short: a new connection published by Docker
//! passes `forward` (one rule per guarded interface for unlabelled
//! established packets, which a new one fails at its first expression, then
//! 2), `guarded` (1), `rules` (the alternatives up to the deciding one) and
//! its decision's chain, whose first rule counts it: one counter per
//! decision (an allow then labels it in `label`). No other rule has a
//! counter ([`Statement::Counter`]): not the fast path (every packet of
//! every connection passes it), nor the dispatch and `label` rules; only
//! the drops of per-source limits count too, which only the connections
//! they stop reach. [`CounterAt`] names each counter status reads.
//!
//! Every path into a container ends in the same `rules` chain, which matches
//! what the client dialled (conntrack's original tuple): through Docker's DNAT
//! and to docker-proxy that is a host address and a published host port; routed
//! without NAT, a container address and a container port.
//!
//! Untracked packets (exempted from conntrack by a `notrack` rule, in anyone's
//! table) have no original tuple, so no rule could judge them, and are never
//! NATed: a packet for a published host port is then for the host. Those the
//! guard would judge (from a guarded interface, routed to a Docker bridge or
//! for a host port a running container publishes, on its address) are
//! dropped and counted in the `untracked` chain; other untracked traffic
//! (an admin's `notrack` for the host's ssh) is never touched.
//!
//! Connection labels for revoke: only connections that arrive on a guarded
//! interface and take one of the three paths reach `rules`, and every allow
//! jumps to `label` before accepting, so it marks exactly the connections
//! dockfw judged and admitted (a denied new connection's entry dies with its
//! packet; a denied one judged late, see below, must stay unlabelled). Every interface
//! pattern the policy names (each `guard.interfaces` entry, then each
//! rule's `interfaces` entry not already listed, in order of appearance) has
//! a label bit, from 127 downwards ([`CT_LABEL_BITS`]); a connection gets the
//! bit of every pattern its input interface matches. A rule may name an
//! interface more finely than the guard (`wg0` under a guarded `wg*`), so
//! bits per guard entry alone would not tell the evaluator enough; with a
//! bit per pattern it learns exactly which of the policy's patterns matched,
//! which is all [`crate::evaluate_via`] looks at. At most
//! `MAX_CT_LABELLED_PATTERNS` patterns (the parser refuses more). `ct label
//! set` only ORs bits in, so other users of labels (OVS, in their own zones,
//! usually low bits) keep theirs.
//!
//! Connections no `rules` chain judged carry none of those bits: opened
//! before the first apply, or while the table was deleted, flushed, dormant
//! or bypassed by someone's accept. The first rules of both base chains send
//! their packets in the original direction (client to server), from a
//! guarded interface, down the same path as a new connection: denied, the
//! packet is dropped or rejected, and so is every later one; allowed, it is
//! accepted and the `label` chain tries to mark it. The kernel adds label
//! storage to a connection only when it is created, and only if some rule
//! using labels exists then: a connection created while no dockfw table
//! existed (before the first apply, or while it was deleted) can never be
//! labelled, so its original-direction packets are judged on every packet
//! until it ends. Allow or deny is right; the decision's counter counts those
//! packets; the per-source rate limit matches `ct state new` first, so it
//! meters new connections only and never drops them (`max_connections`
//! counts a tracked connection once however often it sees it). Replies,
//! related packets and connections from other interfaces never take it.
//! Packets that reach no `rules` (ssh to the host, routed elsewhere) are
//! never labelled, so they pass these few rules on every packet.
//!
//! An `accept` ends only our base chain: Docker's chains still run afterwards,
//! so "allow" never opens more than Docker itself would.

use crate::policy::{Action, Direction, Policy};
use crate::ruleset::{Chain, Family, IfName, Match, Ruleset, Statement, Verdict};

/// The base chain on the forward hook.
pub const CHAIN_FORWARD: &str = "forward";
/// The base chain on the input hook (connections to the host: docker-proxy).
pub const CHAIN_INPUT: &str = "input";
/// Traffic from a guarded interface: is it bound for a container?
pub(crate) const CHAIN_GUARDED: &str = "guarded";
/// Traffic from a guarded interface to the host: is it for a port a running
/// container publishes, which docker-proxy answers?
pub const CHAIN_PROXY: &str = "docker-proxy";
/// Drops and counts untracked packets the guard would judge.
pub const CHAIN_UNTRACKED: &str = "untracked";
/// Comment of the rules sending untracked packets to [`CHAIN_UNTRACKED`], and of its rule.
pub(crate) const UNTRACKED_COMMENT: &str = "untracked (notrack): cannot be judged";
/// Comment of the base chains' rules sending established connections no
/// dockfw rules chain has judged (no label bit) to be judged late.
pub(crate) const UNJUDGED_COMMENT: &str = "established, never judged: judge now";
/// Labels an allowed connection for revoke (jumped to by every allow).
pub const CHAIN_LABEL: &str = "label";
/// The policy's rules, in order.
pub const CHAIN_RULES: &str = "rules";
/// The default fate.
pub const CHAIN_DEFAULT: &str = "default-fate";
/// Comment of the default fate's rules.
pub(crate) const DEFAULT_COMMENT: &str = "default";
/// Comment of the docker-proxy chain's rules.
pub(crate) const PROXY_COMMENT: &str = "published port (docker-proxy)";
/// Interfaces of Docker bridges (the default bridge, and user-defined networks).
pub(crate) const DOCKER_BRIDGES: [&str; 2] = ["docker0", "br-*"];
/// The connection label bits dockfw sets (see the module doc): 96 to 127,
/// handed out from 127 downwards.
pub const CT_LABEL_BITS: std::ops::RangeInclusive<u8> = 96..=127;
/// How many distinct interface patterns a policy may name (one label bit each).
pub(crate) const MAX_CT_LABELLED_PATTERNS: usize = 32;
/// Comment of the rules setting a connection's label bit.
pub(crate) const CT_LABEL_COMMENT: &str = "label for revoke";
/// New connections from a Docker bridge: onto a bridge (between) or out (outbound)?
pub const CHAIN_FROM_CONTAINERS: &str = "from-containers";
/// The `[[outbound]]` rules, in order.
pub const CHAIN_OUTBOUND: &str = "outbound";
/// The `[[between]]` rules, in order.
pub const CHAIN_BETWEEN: &str = "between";
/// The `[[between]]` rules for a container dialling a port the host
/// publishes, which docker-proxy answers (input hook).
pub const CHAIN_BETWEEN_PROXIED: &str = "between-proxied";
/// Packets from a Docker bridge that conntrack calls invalid (no
/// connection they could belong to: a SYN with FIN, a bad checksum, an ICMP
/// error about nothing): onto a bridge or out, as [`CHAIN_FROM_CONTAINERS`].
pub const CHAIN_FROM_CONTAINERS_INVALID: &str = "from-containers-invalid";
/// Drops and counts what containers send that no outbound or between rule
/// could be held to: invalid packets, and connections between containers
/// from or to IPv6 link-local addresses (which Docker does not report, so
/// they name no container).
pub const CHAIN_UNATTRIBUTED: &str = "unattributed";
/// Comment of [`CHAIN_UNATTRIBUTED`]'s rules.
pub(crate) const UNATTRIBUTED_COMMENT: &str = "from a container, judged by no rule";
/// Comment of the rules sending invalid packets from a Docker bridge on.
pub(crate) const INVALID_FROM_CONTAINER_COMMENT: &str = "invalid packet from a container";
/// Comment of the rules sending broadcasts and multicasts between
/// containers to [`CHAIN_UNATTRIBUTED`].
pub(crate) const BROADCAST_COMMENT: &str = "broadcast or multicast: names no container";
/// Comment of the rules sending connections from or to an IPv6 link-local
/// address to [`CHAIN_UNATTRIBUTED`].
pub(crate) const LINK_LOCAL_COMMENT: &str = "IPv6 link-local: names no container";
/// Comment of the rules sending new connections from a Docker bridge to [`CHAIN_FROM_CONTAINERS`].
pub(crate) const FROM_CONTAINERS_COMMENT: &str = "new connection from a container";
/// The connection label bit an allowed outbound or between connection gets
/// (below the interface bits, [`CT_LABEL_BITS`]): revoke judges those again.
pub const CT_LABEL_FROM_CONTAINER: u8 = 95;
/// The connection label bit a container's connection to a published port
/// that docker-proxy answers gets when judged (with
/// [`CT_LABEL_FROM_CONTAINER`] once allowed): revoke judges it as between
/// through docker-proxy.
pub const CT_LABEL_FROM_CONTAINER_PROXIED: u8 = 94;

/// Name of the chain deciding for the rule at `index` (0-based).
pub fn rule_chain(index: usize) -> String {
    format!("rule-{}", index + 1)
}

/// The chain holding `direction`'s rules (`rules`, `outbound`, `between`).
pub fn direction_chain(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => CHAIN_RULES,
        Direction::Outbound => CHAIN_OUTBOUND,
        Direction::Between => CHAIN_BETWEEN,
    }
}

/// Name of the chain deciding for `direction`'s rule at `index` (0-based):
/// `rule-N`, `outbound-N`, `between-N`.
pub fn decision_chain(direction: Direction, index: usize) -> String {
    match direction {
        Direction::Inbound => rule_chain(index),
        _ => format!("{}-{}", direction.name(), index + 1),
    }
}

/// Name of the chain of `direction`'s default fate: `default-fate`,
/// `outbound-default`, `between-default`.
pub fn default_chain(direction: Direction) -> String {
    match direction {
        Direction::Inbound => CHAIN_DEFAULT.into(),
        _ => format!("{}-default", direction.name()),
    }
}

/// The comment of `direction`'s default fate's rules: `default`,
/// `outbound default`, `between default`.
pub fn default_comment(direction: Direction) -> String {
    match direction {
        Direction::Inbound => DEFAULT_COMMENT.into(),
        _ => format!("{} default", direction.name()),
    }
}

/// What chain `name` decides: a rule of a direction (its index), or a
/// direction's default (`None`); `None` for any other chain.
pub fn decided_by_chain(name: &str) -> Option<(Direction, Option<usize>)> {
    for direction in [Direction::Inbound, Direction::Outbound, Direction::Between] {
        if name == default_chain(direction) {
            return Some((direction, None));
        }
        let prefix = match direction {
            Direction::Inbound => "rule-",
            Direction::Outbound => "outbound-",
            Direction::Between => "between-",
        };
        if let Some(n) = name.strip_prefix(prefix)
            && !n.is_empty()
            && !n.starts_with('0')
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return Some((direction, n.parse::<usize>().ok().map(|n| n - 1)));
        }
    }
    None
}

/// The denial an audited decision chain only logs: its log statement's
/// prefix (`dockfw CHAIN would-drop NAME: `) tells. `None` when it enforces what it decides.
pub fn audited_action(chain: &Chain) -> Option<Action> {
    chain
        .rules
        .iter()
        .flat_map(|rule| &rule.statements)
        .find_map(|statement| match statement {
            Statement::Log { prefix, .. } => match LogPrefix::parse(prefix)?.logged {
                Logged::WouldDeny(action) => Some(action),
                _ => None,
            },
            Statement::CtLabelSet(_) | Statement::Counter => None,
        })
}

/// The decision a chain of `policy` makes, as a log line names it: its
/// direction, the rule's name (a default's or the untracked drop's status
/// row name) and its action. `None` for a chain that decides nothing, or
/// a rule the policy does not have (the table is of another policy).
pub fn decision_of_chain(policy: &Policy, chain: &str) -> Option<(Direction, String, Action)> {
    if chain == CHAIN_UNTRACKED {
        return Some((Direction::Inbound, "untracked".into(), Action::Drop));
    }
    if chain == CHAIN_UNATTRIBUTED {
        return Some((Direction::Outbound, "unattributed".into(), Action::Drop));
    }
    let (direction, index) = decided_by_chain(chain)?;
    let Some(index) = index else {
        return Some((
            direction,
            default_comment(direction),
            policy.guard.default_of(direction),
        ));
    };
    match direction {
        Direction::Inbound => policy
            .rules
            .get(index)
            .map(|rule| (direction, rule.name.clone(), rule.action)),
        _ => policy
            .container_rules(direction)
            .get(index)
            .map(|rule| (direction, rule.name.clone(), rule.action)),
    }
}

/// What a logged packet's decision did, as its log prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Logged {
    /// The decision's action, enforced (`allow`, `drop`, `reject`).
    Decided(Action),
    /// Audit mode: what enforcing would have done (`would-drop`,
    /// `would-reject`); the connection went on.
    WouldDeny(Action),
    /// Audit mode: a per-source limit would have dropped it (`over-limit`).
    OverLimit,
}

impl Logged {
    /// The word in the prefix.
    pub fn word(self) -> &'static str {
        match self {
            Self::Decided(action) => action.name(),
            Self::WouldDeny(Action::Reject) => "would-reject",
            Self::WouldDeny(_) => "would-drop",
            Self::OverLimit => "over-limit",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "allow" => Self::Decided(Action::Allow),
            "drop" => Self::Decided(Action::Drop),
            "reject" => Self::Decided(Action::Reject),
            "would-drop" => Self::WouldDeny(Action::Drop),
            "would-reject" => Self::WouldDeny(Action::Reject),
            "over-limit" => Self::OverLimit,
            _ => return None,
        })
    }

    /// Whether the packet was let through (an allow, or audit mode's note).
    pub fn admitted(self) -> bool {
        !matches!(self, Self::Decided(Action::Drop | Action::Reject))
    }
}

/// What starts every dockfw log prefix.
const LOG_PREFIX_START: &str = "dockfw ";

/// A log statement's prefix: `dockfw CHAIN WORD[ NAME]: `. The chain
/// (`rule-2`, `outbound-1`, `default-fate`, `untracked`) comes first, a
/// short id that maps back to the decision ([`decided_by_chain`]) even when
/// a long name had to be cut to the kernel's limit
/// ([`NF_LOG_PREFIX_MAXLEN`](crate::names::NF_LOG_PREFIX_MAXLEN)); the name is there for a
/// human reading the log, and absent for the defaults and untracked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPrefix {
    /// The decision's chain.
    pub chain: String,
    /// What it did.
    pub logged: Logged,
    /// The rule's name (perhaps cut short when read back); `None` for a
    /// default or the untracked drop.
    pub name: Option<String>,
}

impl LogPrefix {
    /// The prefix text, at most [`crate::names::NF_LOG_PREFIX_MAXLEN`]
    /// bytes: a name that would not fit is cut (at a character boundary),
    /// never the chain.
    pub fn render(&self) -> String {
        let head = format!("{LOG_PREFIX_START}{} {}", self.chain, self.logged.word());
        let Some(name) = &self.name else {
            return format!("{head}: ");
        };
        let room = crate::names::NF_LOG_PREFIX_MAXLEN.saturating_sub(head.len() + " : ".len());
        let mut cut = name.len().min(room);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{head} {}: ", &name[..cut])
    }

    /// Reads a prefix [`LogPrefix::render`] made (also one the kernel cut
    /// short, without its closing `: `); `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(LOG_PREFIX_START)?;
        let rest = rest
            .strip_suffix(": ")
            .or_else(|| rest.strip_suffix(':'))
            .unwrap_or(rest);
        let (chain, rest) = rest.split_once(' ')?;
        let (word, name) = match rest.split_once(' ') {
            Some((word, name)) => (word, Some(name.to_string())),
            None => (rest, None),
        };
        let known =
            chain == CHAIN_UNTRACKED || chain == CHAIN_UNATTRIBUTED || decided_by_chain(chain).is_some();
        if !known {
            return None;
        }
        Some(Self {
            chain: chain.to_string(),
            logged: Logged::from_word(word)?,
            name: name.filter(|name| !name.is_empty()),
        })
    }
}

/// The kernel set holding the `family` addresses of the policy's dynamic
/// set `set`: `set-NAME-v4` or `set-NAME-v6`.
pub fn runtime_set_name(set: &str, family: Family) -> String {
    let suffix = match family {
        Family::Ipv4 => "v4",
        Family::Ipv6 => "v6",
    };
    format!("set-{set}-{suffix}")
}

/// One kernel set of a policy's dynamic set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSetName {
    /// The set's name in the policy.
    pub set: String,
    /// The family of the addresses it holds.
    pub family: Family,
    /// Its name in the kernel ([`runtime_set_name`]).
    pub kernel: String,
}

/// The kernel sets of the policy's dynamic sets (two each: IPv4, IPv6), in
/// the order the compiled ruleset lists them (by kernel name).
pub fn runtime_sets(policy: &Policy) -> Vec<RuntimeSetName> {
    let mut names: Vec<RuntimeSetName> = policy
        .sets
        .iter()
        .filter(|(_, set)| set.is_dynamic())
        .flat_map(|(name, _)| {
            [Family::Ipv4, Family::Ipv6].map(|family| RuntimeSetName {
                set: name.clone(),
                family,
                kernel: runtime_set_name(name, family),
            })
        })
        .collect();
    names.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    names
}

/// Chains every compiled table has, in every version's layout: a table
/// without them is not in dockfw's layout, whatever its chains are called.
pub const CORE_CHAINS: [&str; 2] = [CHAIN_RULES, CHAIN_DEFAULT];

/// Whether `name` is a chain the compiler writes (any version's layout), so a
/// table of only such chains can be told from another program's.
pub fn is_layout_chain(name: &str) -> bool {
    [
        CHAIN_FORWARD,
        CHAIN_INPUT,
        CHAIN_GUARDED,
        CHAIN_PROXY,
        CHAIN_UNTRACKED,
        CHAIN_RULES,
        CHAIN_LABEL,
        CHAIN_DEFAULT,
        CHAIN_FROM_CONTAINERS,
        CHAIN_FROM_CONTAINERS_INVALID,
        CHAIN_UNATTRIBUTED,
        CHAIN_OUTBOUND,
        CHAIN_BETWEEN,
        CHAIN_BETWEEN_PROXIED,
    ]
    .contains(&name)
        || decided_by_chain(name).is_some()
}

/// Every interface pattern the policy names, in order (guard entries first,
/// then rules' entries not listed yet), each with its connection label bit.
/// At most [`MAX_CT_LABELLED_PATTERNS`] for a parsed policy; extra ones get no bit.
pub(crate) fn interface_ct_labels(policy: &Policy) -> Vec<(IfName, u8)> {
    let mut patterns: Vec<&IfName> = Vec::new();
    for pattern in policy.interface_patterns() {
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    patterns
        .into_iter()
        .zip(CT_LABEL_BITS.rev())
        .map(|(pattern, bit)| (pattern.clone(), bit))
        .collect()
}

/// Where a counter sits in the compiled table: the rule at `index` (0-based)
/// of `chain`, the one rule that counts what a decision decided (the
/// compiler puts a [`Statement::Counter`] there and on no other rule of a
/// decision's path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterAt {
    /// The chain.
    pub chain: String,
    /// The rule's position in the chain, from 0.
    pub index: usize,
}

impl CounterAt {
    /// Whether the counter of rule `index` of `chain` is this one.
    pub fn is(&self, chain: &str, index: usize) -> bool {
        self.chain == chain && self.index == index
    }
}

/// The counter of the policy rule at `index` (0-based): the rule heading its
/// own chain, which counts every connection the rule decided (a plain allow
/// or drop: the chain's only rule, which also decides).
pub fn rule_counter(index: usize) -> CounterAt {
    CounterAt {
        chain: rule_chain(index),
        index: 0,
    }
}

/// The counter of the default fate: every connection no rule decided.
pub fn default_counter() -> CounterAt {
    CounterAt {
        chain: CHAIN_DEFAULT.into(),
        index: 0,
    }
}

/// The counter of the untracked drop: every untracked packet the guard would
/// have judged.
pub fn untracked_counter() -> CounterAt {
    CounterAt {
        chain: CHAIN_UNTRACKED.into(),
        index: 0,
    }
}

/// A decision the compiled table takes and counts: a policy rule, the
/// default fate, or the untracked drop, as a table (compiled or installed)
/// holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    /// The policy rule's name; `default` or `untracked` for the others
    /// (`outbound default`, `between default`).
    pub name: String,
    /// Which way the connections it decides go.
    pub direction: Direction,
    /// What its chain decides (in audit mode: what it would decide); `None`
    /// when the chain ends in no verdict dockfw writes (a table changed by
    /// someone else).
    pub action: Option<Action>,
    /// Whether it only logs and counts the drop or reject it stands for
    /// (audit mode): the connections it counts went on.
    pub audit: bool,
    /// Where it counts what it decided.
    pub counter: CounterAt,
}

impl Decider {
    fn of(chain: &Chain, name: String, direction: Direction, counter: CounterAt) -> Self {
        let audited = audited_action(chain);
        Self {
            name,
            direction,
            action: audited.or_else(|| chain_action(chain)),
            audit: audited.is_some(),
            counter,
        }
    }
}

/// The inbound policy rules of `ruleset`, in order: one per `rule-N` chain,
/// named by the comment of its first rule.
pub fn policy_rules(ruleset: &Ruleset) -> Vec<Decider> {
    direction_rules(ruleset, Direction::Inbound)
}

/// The policy rules of `direction` in `ruleset`, in order: one per
/// `rule-N`, `outbound-N` or `between-N` chain, named by the comment of
/// its first rule. Empty for a direction the table does not judge.
pub fn direction_rules(ruleset: &Ruleset, direction: Direction) -> Vec<Decider> {
    (0..)
        .map_while(|index| Some((index, ruleset.chain(&decision_chain(direction, index))?)))
        .map(|(index, chain)| {
            let name = chain
                .rules
                .first()
                .map_or_else(|| chain.name.clone(), |rule| rule.comment.clone());
            Decider::of(chain, name, direction, decision_counter(direction, index))
        })
        .collect()
}

/// The counter of `direction`'s rule at `index` (0-based): the first rule
/// of its chain (see [`rule_counter`]).
pub fn decision_counter(direction: Direction, index: usize) -> CounterAt {
    CounterAt {
        chain: decision_chain(direction, index),
        index: 0,
    }
}

/// The counter of `direction`'s default fate.
pub fn direction_default_counter(direction: Direction) -> CounterAt {
    CounterAt {
        chain: default_chain(direction),
        index: 0,
    }
}

/// The default fate of `ruleset`, if it has its chain.
pub fn default_fate(ruleset: &Ruleset) -> Option<Decider> {
    direction_default(ruleset, Direction::Inbound)
}

/// The default fate of `direction` in `ruleset`, if it has its chain (for
/// outbound and between: if the table judges that direction).
pub fn direction_default(ruleset: &Ruleset, direction: Direction) -> Option<Decider> {
    let chain = ruleset.chain(&default_chain(direction))?;
    Some(Decider::of(
        chain,
        default_comment(direction),
        direction,
        direction_default_counter(direction),
    ))
}

/// The untracked drop of `ruleset`, if it has its chain.
pub fn untracked_drop(ruleset: &Ruleset) -> Option<Decider> {
    let chain = ruleset.chain(CHAIN_UNTRACKED)?;
    Some(Decider::of(
        chain,
        CHAIN_UNTRACKED.into(),
        Direction::Inbound,
        untracked_counter(),
    ))
}

/// fe80::/10, IPv6 link-local unicast: the addresses between containers
/// that [`CHAIN_UNATTRIBUTED`] takes (Docker reports none of them).
pub fn link_local_interval() -> crate::interval::Interval<std::net::Ipv6Addr> {
    let first = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0);
    let last = std::net::Ipv6Addr::from(u128::from(first) | (u128::MAX >> 10));
    crate::interval::Interval::new(first, last).expect("first <= last")
}

/// Whether the table knows the interface `name` as a Docker bridge by its
/// name alone: Docker's own names, `docker0` and `br-*`. A bridge Docker
/// was told to name (a network created with `-o
/// com.docker.network.bridge.name=…`) is known only when given to
/// [`compile_with_bridges`](crate::compile_with_bridges).
///
/// ```
/// use dockfw_core::layout::is_docker_bridge;
/// assert!(is_docker_bridge("docker0") && is_docker_bridge("br-0123456789ab"));
/// assert!(!is_docker_bridge("dmz0") && !is_docker_bridge("docker1"));
/// ```
pub fn is_docker_bridge(name: &str) -> bool {
    DOCKER_BRIDGES
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        })
}

/// Whether `address` is IPv6 link-local (see [`link_local_interval`]).
pub fn is_link_local(address: std::net::IpAddr) -> bool {
    let range = link_local_interval();
    matches!(address, std::net::IpAddr::V6(v6) if range.first <= v6 && v6 <= range.last)
}

/// The counter of the unattributed drop (see [`CHAIN_UNATTRIBUTED`]).
pub fn unattributed_counter() -> CounterAt {
    CounterAt {
        chain: CHAIN_UNATTRIBUTED.into(),
        index: 0,
    }
}

/// The unattributed drop of `ruleset`, if it has its chain (when the table
/// judges containers' own connections).
pub fn unattributed_drop(ruleset: &Ruleset) -> Option<Decider> {
    let chain = ruleset.chain(CHAIN_UNATTRIBUTED)?;
    Some(Decider::of(
        chain,
        CHAIN_UNATTRIBUTED.into(),
        Direction::Outbound,
        unattributed_counter(),
    ))
}

/// Whether `ruleset` is in audit mode: a decision chain of it only logs
/// the denial it stands for.
pub fn is_audit(ruleset: &Ruleset) -> bool {
    ruleset
        .chains
        .iter()
        .any(|chain| chain.hook.is_none() && audited_action(chain).is_some())
}

/// The interfaces whose traffic `ruleset` guards: those its forward chain
/// sends on to be judged, in order.
pub fn guarded_interfaces(ruleset: &Ruleset) -> Vec<IfName> {
    let Some(forward) = ruleset.chain(CHAIN_FORWARD) else {
        return Vec::new();
    };
    // The rules for new connections: the interface alone (the rules judging
    // unlabelled established connections name each interface again).
    forward
        .rules
        .iter()
        .filter_map(|rule| match rule.matches.as_slice() {
            [Match::IifName(name)] => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// What a verdict chain decides: its last rule's verdict, as the compiler
/// writes an action (a reject ends in an ICMP reject after the TCP reset).
fn chain_action(chain: &Chain) -> Option<Action> {
    match chain.rules.last()?.verdict.as_ref()? {
        Verdict::Accept => Some(Action::Allow),
        Verdict::Drop => Some(Action::Drop),
        Verdict::Reject(_) => Some(Action::Reject),
        _ => None,
    }
}

#[cfg(test)]
mod log_prefix_tests {
    use super::*;

    fn prefix(chain: &str, logged: Logged, name: Option<&str>) -> LogPrefix {
        LogPrefix {
            chain: chain.into(),
            logged,
            name: name.map(Into::into),
        }
    }

    #[test]
    fn renders_chain_word_and_name_and_reads_back() {
        let cases = [
            (
                prefix("rule-2", Logged::Decided(Action::Drop), Some("admin panel")),
                "dockfw rule-2 drop admin panel: ",
            ),
            (
                prefix("default-fate", Logged::Decided(Action::Reject), None),
                "dockfw default-fate reject: ",
            ),
            (
                prefix("outbound-1", Logged::WouldDeny(Action::Reject), Some("web: api")),
                "dockfw outbound-1 would-reject web: api: ",
            ),
            (
                prefix("between-default", Logged::WouldDeny(Action::Drop), None),
                "dockfw between-default would-drop: ",
            ),
            (
                prefix("rule-12", Logged::OverLimit, Some("r")),
                "dockfw rule-12 over-limit r: ",
            ),
            (
                prefix("untracked", Logged::WouldDeny(Action::Drop), None),
                "dockfw untracked would-drop: ",
            ),
            (
                prefix("rule-1", Logged::Decided(Action::Allow), Some("x")),
                "dockfw rule-1 allow x: ",
            ),
        ];
        for (prefix, text) in cases {
            assert_eq!(prefix.render(), text);
            assert_eq!(LogPrefix::parse(text), Some(prefix), "{text}");
        }
    }

    #[test]
    fn a_long_name_is_cut_never_the_chain() {
        let name = "ä".repeat(100);
        let long = prefix("outbound-99999", Logged::WouldDeny(Action::Reject), Some(&name));
        let text = long.render();
        assert!(text.len() <= crate::names::NF_LOG_PREFIX_MAXLEN, "{}", text.len());
        let read = LogPrefix::parse(&text).unwrap();
        assert_eq!(
            (read.chain.as_str(), read.logged),
            ("outbound-99999", long.logged)
        );
        assert!(name.starts_with(read.name.as_deref().unwrap()));
        // The kernel cutting what it kept (no closing ": ") still reads.
        let cut = LogPrefix::parse("dockfw rule-3 drop some long na").unwrap();
        assert_eq!(
            (cut.chain.as_str(), cut.name.as_deref()),
            ("rule-3", Some("some long na"))
        );
    }

    #[test]
    fn other_prefixes_are_not_dockfw_s() {
        for text in [
            "",
            "dockfw: ",
            "dockfw web: ",
            "dockfw rule-0 drop: ",
            "dockfw rule-1 deny x: ",
            "ulogd: ",
            "dockfw forward drop: ",
        ] {
            assert_eq!(LogPrefix::parse(text), None, "{text}");
        }
    }
}
