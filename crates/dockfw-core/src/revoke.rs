//! Revoke: which tracked connections a new policy no longer admits.
//!
//! Conntrack does not record where a connection arrived, so the compiled
//! ruleset labels every new connection that reaches the `rules` chain with
//! one bit per interface pattern its input interface matches (see
//! [`crate::layout`]). A tracked connection is then rebuilt here as a
//! [`Connection`] and a [`Via`] and judged by [`crate::evaluate_via`], the
//! evaluator `explain` uses, so the two can never disagree.
//!
//! Connections containers open (outbound, between) are labelled with one
//! bit when admitted ([`CT_LABEL_FROM_CONTAINER`](crate::layout::CT_LABEL_FROM_CONTAINER));
//! their tuple says the rest, and [`judge_from_container`] judges them
//! with the evaluator `explain --from-container` uses.
//!
//! No I/O: the caller dumps conntrack, says what each entry is as a
//! [`Tracked`] (or [`TrackedFromContainer`]), and deletes what [`judge`]
//! (or [`judge_from_container`]) says to cut.

use crate::compile::container_addresses;
use crate::eval::{Connection, ContainerConnection, Decision, Via, explain_container, explain_via};
use crate::layout::{CHAIN_LABEL, CHAIN_RULES, CT_LABEL_COMMENT};
use crate::policy::{Action, Container, Direction, Policy};
use crate::ruleset::{IfName, Match, Proto, Ruleset, Statement};
use std::net::IpAddr;

/// Which label bit stands for which interface pattern.
pub type CtLabelMap = Vec<(IfName, u8)>;

/// One tracked connection, as conntrack describes its original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// The client (original source).
    pub source: IpAddr,
    /// What the client dialled (original destination, before any NAT).
    pub dialled: IpAddr,
    /// The port it dialled (original destination port).
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// Whether conntrack destination-NATed it (`IPS_DST_NAT`: Docker published it).
    pub dnat: bool,
    /// The dockfw label bits ([`CT_LABEL_BITS`](crate::layout::CT_LABEL_BITS)) set on it.
    pub label_bits: Vec<u8>,
}

/// A connection the new policy does not admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The connection as the evaluator saw it (its interface is a stand-in
    /// when the labels only tell a wildcard pattern: see [`judge`]).
    pub connection: Connection,
    /// How it reached its container.
    pub path: Via,
    /// What decides it now (drop or reject).
    pub decision: Decision,
    /// The interface patterns its labels say it arrived on.
    pub arrived_on: Vec<IfName>,
}

/// The label map a ruleset sets: its `label` chain's label rules (or, in
/// tables of earlier versions, those at the top of `rules`).
pub fn ct_label_map(ruleset: &Ruleset) -> CtLabelMap {
    [CHAIN_LABEL, CHAIN_RULES]
        .into_iter()
        .filter_map(|name| ruleset.chain(name))
        .flat_map(|chain| &chain.rules)
        .filter(|rule| rule.comment == CT_LABEL_COMMENT)
        .filter_map(
            |rule| match (rule.matches.as_slice(), rule.statements.as_slice()) {
                ([Match::IifName(pattern)], [Statement::CtLabelSet(bit)]) => Some((pattern.clone(), *bit)),
                _ => None,
            },
        )
        .collect()
}

/// The path a tracked connection took, from its tuple: destination-NATed
/// is published; to a running container's address is routed; else it went to
/// the host (docker-proxy).
pub(crate) fn path_of(tracked: &Tracked, containers: &[Container]) -> Via {
    if tracked.dnat {
        Via::Published
    } else if container_addresses(containers).contains(tracked.dialled) {
        Via::Routed
    } else {
        Via::Proxied
    }
}

/// Judges a tracked connection against the new `policy` and `containers`.
/// `labelled_by` is the label map of the ruleset that labelled it (the one
/// installed before this apply). `None`: keep it (not ours, or admitted).
///
/// The labels tell exactly which of that ruleset's interface patterns the
/// connection's interface matched. When the new policy names a pattern the
/// old one did not (say `wg1` under a labelled `wg*`), whether it matches is
/// unknown: every interface consistent with the labels is tried, and the
/// connection is cut only if the policy denies it on all of them. A decision
/// that rests on a dynamic set whose addresses the caller did not read
/// ([`crate::sets::Set::fill_runtime`]) keeps the connection.
pub fn judge(
    policy: &Policy,
    containers: &[Container],
    labelled_by: &[(IfName, u8)],
    tracked: &Tracked,
) -> Option<Revocation> {
    let (matched, unmatched): (Vec<&IfName>, Vec<&IfName>) = labelled_by
        .iter()
        .map(|(pattern, bit)| (pattern, tracked.label_bits.contains(bit)))
        .fold((Vec::new(), Vec::new()), |(mut yes, mut no), (pattern, set)| {
            if set {
                yes.push(pattern)
            } else {
                no.push(pattern)
            }
            (yes, no)
        });
    if matched.is_empty() {
        return None;
    }
    let path = path_of(tracked, containers);
    let connection = |interface: String| Connection {
        interface,
        source: tracked.source,
        dialled: Some(tracked.dialled),
        port: tracked.port,
        proto: tracked.proto,
    };
    let mut decision = None;
    for interface in interfaces_consistent(&matched, &unmatched, policy) {
        let explanation = explain_via(policy, containers, &connection(interface.clone()), path);
        // A decision resting on a dynamic set whose addresses were not read
        // may be wrong: never cut on a guess.
        if explanation.decision.action() == Action::Allow || !explanation.unknown_sets.is_empty() {
            return None;
        }
        let verdict = explanation.decision;
        decision.get_or_insert((interface, verdict));
    }
    let (interface, decision) = decision?;
    Some(Revocation {
        connection: connection(interface),
        path,
        decision,
        arrived_on: matched.into_iter().cloned().collect(),
    })
}

/// Interface names standing for every case that matters: each matches all
/// of `matched`, none of `unmatched`, and together they cover each way the
/// new policy's patterns could match the real (unknown) name.
fn interfaces_consistent(matched: &[&IfName], unmatched: &[&IfName], policy: &Policy) -> Vec<String> {
    if let Some(IfName::Exact(name)) = matched.iter().find(|p| matches!(p, IfName::Exact(_))) {
        return vec![name.clone()];
    }
    // The real name starts with every matched prefix; they nest, so the longest decides.
    let longest = matched
        .iter()
        .filter_map(|p| match p {
            IfName::Prefix(prefix) => Some(prefix.as_str()),
            IfName::Exact(_) => None,
        })
        .max_by_key(|prefix| prefix.len())
        .unwrap_or_default();
    // '/' is never part of an interface name: the stand-in names no pattern
    // does, beyond those it must match.
    let stand_in = |prefix: &str| format!("{prefix}/");
    let consistent = |name: &str| name.starts_with(longest) && !unmatched.iter().any(|p| p.matches(name));
    let mut names = vec![stand_in(longest)];
    for pattern in policy.interface_patterns() {
        let name = match pattern {
            IfName::Exact(name) => name.clone(),
            IfName::Prefix(prefix) => stand_in(prefix),
        };
        if consistent(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// A tracked connection a container opened, which an outbound or between
/// rule (or default) admitted: it carries
/// [`CT_LABEL_FROM_CONTAINER`](crate::layout::CT_LABEL_FROM_CONTAINER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedFromContainer {
    /// The container's address (original source).
    pub source: IpAddr,
    /// Where it went: the original destination; when Docker
    /// destination-NATed it (a container dialling a port the host
    /// publishes), the container it reached (the reply's source).
    pub destination: IpAddr,
    /// The destination port, likewise (the reply's source port when NATed).
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// To a port the host publishes, answered by docker-proxy (it carries
    /// [`CT_LABEL_FROM_CONTAINER_PROXIED`](crate::layout::CT_LABEL_FROM_CONTAINER_PROXIED)):
    /// `destination` and `port` are the host's, and it is between containers.
    pub proxied: bool,
}

/// A container's connection the new policy does not admit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRevocation {
    /// The connection as the evaluator saw it.
    pub connection: ContainerConnection,
    /// Outbound, or between (its destination is a running container's address).
    pub direction: Direction,
    /// What decides it now (drop or reject).
    pub decision: Decision,
}

/// Judges a container's tracked connection against the new `policy` and
/// `containers`, as [`crate::explain_container`] does: between when it went
/// through docker-proxy or its destination is a running container's
/// address, else outbound. `None`:
/// keep it (admitted, not judged, or resting on a dynamic set whose
/// addresses were not read).
pub fn judge_from_container(
    policy: &Policy,
    containers: &[Container],
    tracked: &TrackedFromContainer,
) -> Option<ContainerRevocation> {
    let direction = if tracked.proxied || container_addresses(containers).contains(tracked.destination) {
        Direction::Between
    } else {
        Direction::Outbound
    };
    let connection = ContainerConnection {
        source: tracked.source,
        destination: tracked.destination,
        port: tracked.port,
        proto: tracked.proto,
        proxied: tracked.proxied,
    };
    let explanation = explain_container(policy, containers, &connection, direction);
    if explanation.decision.action() == Action::Allow || !explanation.unknown_sets.is_empty() {
        return None;
    }
    Some(ContainerRevocation {
        connection,
        direction,
        decision: explanation.decision,
    })
}
