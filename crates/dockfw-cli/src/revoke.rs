//! Revoke after an apply: delete the tracked connections the new policy no
//! longer admits, so their next packet is judged as new and meets it.
//!
//! Candidates carry a dockfw connection label bit: one of an interface
//! (set by the `rules` chain, so only connections from a guarded interface
//! to a container), or the bit of a container's own connection admitted by
//! an outbound or between rule or default. `dockfw_core::revoke` rebuilds
//! each into what the evaluator takes. Deletes are id-pinned: a newer
//! connection reusing the tuple is left alone. In audit mode nothing is
//! deleted: what would be is reported.

use crate::session::Session;
use dockfw_core::layout::{CT_LABEL_BITS, CT_LABEL_FROM_CONTAINER, CT_LABEL_FROM_CONTAINER_PROXIED};
use dockfw_core::revoke::{Tracked, TrackedFromContainer, judge, judge_from_container};
use dockfw_core::ruleset::IfName;
use dockfw_core::{Container, Decision, Direction, Policy, Proto};
use dockfw_nft::conntrack::{CtEntry, Status};
use serde::Serialize;
use std::collections::BTreeMap;

/// One connection cut (in audit mode: that would have been).
#[derive(Debug, Clone, Serialize)]
pub struct Cut {
    /// `tcp 198.51.100.7:40000 -> 203.0.113.5:8081` (original direction).
    pub tuple: String,
    /// Inbound (left out), or a container's own: outbound or between.
    #[serde(skip_serializing_if = "is_inbound")]
    pub direction: Direction,
    /// Inbound: `published`, `proxied` or `routed` (left out for containers' own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<dockfw_core::Via>,
    /// The interface patterns it arrived on (from its labels; empty for
    /// containers' own).
    pub interfaces: Vec<String>,
    /// What decides it under the new policy.
    pub decision: Decision,
}

fn is_inbound(direction: &Direction) -> bool {
    *direction == Direction::Inbound
}

/// What revoke did after one apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Revoked {
    /// Tracked connections carrying a dockfw label.
    pub labelled: usize,
    /// The connections deleted.
    pub cut: Vec<Cut>,
    /// Why revoke could not run (or not completely), if so.
    pub problem: Option<String>,
    /// `net.netfilter.nf_conntrack_tcp_loose` is 0 (readable only without `--netns`).
    pub tcp_loose_off: bool,
    /// Audit mode: nothing was deleted; `cut` lists what enforcing would cut.
    pub audit: bool,
}

impl Revoked {
    /// How many were cut, per deciding rule or default, in first-seen order.
    pub fn by_decision(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for cut in &self.cut {
            let what = cut.decision.to_string();
            match counts.iter_mut().find(|(known, _)| *known == what) {
                Some((_, count)) => *count += 1,
                None => counts.push((what, 1)),
            }
        }
        counts
    }

    /// The counts as a JSON-friendly map.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.by_decision().into_iter().collect()
    }
}

/// A container's own connection, admitted by an outbound or between rule
/// (or default): TCP or UDP, labelled [`CT_LABEL_FROM_CONTAINER`].
fn tracked_from_container(entry: &CtEntry) -> Option<TrackedFromContainer> {
    let proto = match entry.original.protocol {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    let labels = entry.labels.as_ref()?;
    if !labels.contains(usize::from(CT_LABEL_FROM_CONTAINER)) {
        return None;
    }
    // To a port the host publishes, answered by docker-proxy.
    let proxied = labels.contains(usize::from(CT_LABEL_FROM_CONTAINER_PROXIED));
    // Docker NATed it (a published port dialled from a container): what
    // the rules judged is where it went, the reply's source.
    let (destination, port) = if entry.status.contains(Status::DstNat) {
        (entry.reply.src, entry.reply.src_port?)
    } else {
        (entry.original.dst, entry.original.dst_port?)
    };
    Some(TrackedFromContainer {
        source: entry.original.src,
        destination,
        port,
        proto,
        proxied,
    })
}

/// The conntrack entry as revoke sees it; `None` unless it is TCP or UDP
/// with ports (what rules can match).
fn tracked(entry: &CtEntry) -> Option<Tracked> {
    let proto = match entry.original.protocol {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    let labels = entry.labels.as_ref()?;
    let label_bits: Vec<u8> = CT_LABEL_BITS
        .filter(|&bit| labels.contains(usize::from(bit)))
        .collect();
    if label_bits.is_empty() {
        return None;
    }
    Some(Tracked {
        source: entry.original.src,
        dialled: entry.original.dst,
        port: entry.original.dst_port?,
        proto,
        dnat: entry.status.contains(Status::DstNat),
        label_bits,
    })
}

/// Dumps conntrack in the session's namespace and deletes the connections
/// `policy` (with `containers`) no longer admits. `labelled_by` is the label
/// map of the ruleset installed before this apply. Never fails: a problem is
/// reported in the result (the apply itself succeeded).
pub fn revoke(
    session: &Session,
    policy: &Policy,
    containers: &[Container],
    labelled_by: &[(IfName, u8)],
) -> Revoked {
    let mut revoked = Revoked {
        audit: policy.guard.audit(),
        ..Revoked::default()
    };
    // Judged with what the dynamic sets hold now; one that cannot be read
    // stays unknown, and no connection is cut on a guess about it.
    let mut policy = policy.clone();
    crate::dynamic_sets::fill_runtime(session, &mut policy);
    let policy = &policy;
    let mut conntrack = match session.conntrack() {
        Ok(conntrack) => conntrack,
        Err(error) => {
            revoked.problem = Some(format!("cannot open conntrack: {error:#}"));
            return revoked;
        }
    };
    let entries = match conntrack.dump() {
        Ok(entries) => entries,
        Err(error) => {
            revoked.problem = Some(format!("cannot list tracked connections: {error}"));
            return revoked;
        }
    };
    for entry in &entries {
        let cut = if let Some(tracked) = tracked(entry) {
            revoked.labelled += 1;
            let Some(verdict) = judge(policy, containers, labelled_by, &tracked) else {
                continue;
            };
            Cut {
                tuple: entry.original.to_string(),
                direction: Direction::Inbound,
                path: Some(verdict.path),
                interfaces: verdict.arrived_on.iter().map(ToString::to_string).collect(),
                decision: verdict.decision,
            }
        } else if let Some(tracked) = tracked_from_container(entry) {
            revoked.labelled += 1;
            let Some(verdict) = judge_from_container(policy, containers, &tracked) else {
                continue;
            };
            Cut {
                tuple: entry.original.to_string(),
                direction: verdict.direction,
                path: None,
                interfaces: Vec::new(),
                decision: verdict.decision,
            }
        } else {
            continue;
        };
        // Audit mode denies nothing: it only says what it would cut.
        if revoked.audit {
            revoked.cut.push(cut);
            continue;
        }
        match conntrack.delete(entry) {
            // Gone meanwhile (closed or timed out): nothing to cut.
            Ok(false) => {}
            Ok(true) => revoked.cut.push(cut),
            Err(error) => {
                revoked.problem.get_or_insert(format!(
                    "cannot delete the tracked connection {}: {error}",
                    entry.original
                ));
            }
        }
    }
    revoked.tcp_loose_off = conntrack.tcp_loose_off();
    revoked
}
