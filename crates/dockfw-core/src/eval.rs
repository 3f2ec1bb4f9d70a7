//! "Which rule decides this connection?" — answered twice, independently: on
//! the policy (with the reason each earlier rule did not match), and by
//! interpreting the compiled ruleset the way the kernel runs it. Property
//! tests check that the two always agree.

use crate::compile::{CHAIN_DEFAULT, host_binding};
use crate::interval;
use crate::policy::{Action, AddrMatch, Container, Policy, Rule as PolicyRule};
use crate::ruleset::{CtState, Family, Hook, Match, Proto, Ruleset, SetElements, Verdict};
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// A new connection from outside to a published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Interface it arrives on.
    pub interface: String,
    /// Client address.
    pub source: IpAddr,
    /// Host address the client dialled; `None` if unknown (rules with `to`
    /// then do not match).
    pub dialled: Option<IpAddr>,
    /// Host port the client dialled (the published port).
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

impl Connection {
    fn family(&self) -> Family {
        family_of(self.source)
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

/// What happens to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decided_by")]
pub enum Decision {
    /// dockfw does not judge it (it does not arrive on a guarded interface).
    NotJudged,
    /// A rule decides.
    Rule {
        /// The rule's name.
        name: String,
        /// What it does.
        action: Action,
    },
    /// No rule matched: the default fate.
    Default {
        /// The default action.
        action: Action,
    },
}

impl Decision {
    /// The resulting action (`Allow` when not judged).
    pub fn action(&self) -> Action {
        match self {
            Self::NotJudged => Action::Allow,
            Self::Rule { action, .. } | Self::Default { action } => *action,
        }
    }
}

/// Why a rule did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Miss {
    /// The rule's name.
    pub rule: String,
    /// The first of its fields that did not match, in words.
    pub reason: String,
}

/// A decision and the reasons the rules before it did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// What happens.
    pub decision: Decision,
    /// The rules before the deciding one, and why each did not match.
    pub misses: Vec<Miss>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJudged => f.write_str("not judged by dockfw (not from a guarded interface)"),
            Self::Rule { name, action } => write!(f, "{action} by rule \"{name}\""),
            Self::Default { action } => write!(f, "{action} by default (no rule matched)"),
        }
    }
}

/// Which rule decides `connection`, on the policy itself.
pub fn evaluate(policy: &Policy, containers: &[Container], connection: &Connection) -> Decision {
    explain(policy, containers, connection).decision
}

/// Like [`evaluate`], with the reason each earlier rule did not match.
pub fn explain(policy: &Policy, containers: &[Container], connection: &Connection) -> Explanation {
    if !policy
        .guard
        .interfaces
        .iter()
        .any(|name| name.matches(&connection.interface))
    {
        return Explanation {
            decision: Decision::NotJudged,
            misses: vec![],
        };
    }
    let mut misses = Vec::new();
    for rule in &policy.rules {
        match miss_reason(rule, containers, connection) {
            Some(reason) => misses.push(Miss {
                rule: rule.name.clone(),
                reason,
            }),
            None => {
                return Explanation {
                    decision: Decision::Rule {
                        name: rule.name.clone(),
                        action: rule.action,
                    },
                    misses,
                };
            }
        }
    }
    Explanation {
        decision: Decision::Default {
            action: policy.guard.default,
        },
        misses,
    }
}

fn entries(addrs: &AddrMatch) -> String {
    addrs.entries.join(", ")
}

/// `None` if `rule` matches `connection`, else why not.
fn miss_reason(rule: &PolicyRule, containers: &[Container], c: &Connection) -> Option<String> {
    if let Some(names) = &rule.interfaces
        && !names.iter().any(|name| name.matches(&c.interface))
    {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        return Some(format!("arrives on {}, not on {}", c.interface, names.join(", ")));
    }
    if let Some(from) = &rule.from
        && !from.addrs.contains(c.source)
    {
        return Some(format!(
            "source {} is not in from = [{}]",
            c.source,
            entries(from)
        ));
    }
    if let Some(to) = &rule.to {
        match c.dialled {
            None => {
                return Some(format!(
                    "the rule needs a dialled address in [{}] (none given)",
                    entries(to)
                ));
            }
            Some(dialled) if !to.addrs.contains(dialled) || family_of(dialled) != c.family() => {
                return Some(format!(
                    "dialled address {dialled} is not in to = [{}]",
                    entries(to)
                ));
            }
            Some(_) => {}
        }
    }
    let port = format!("{}/{}", c.port, c.proto.name());
    if let Some(ports) = &rule.ports
        && !ports.contains(c.proto, c.port)
    {
        return Some(format!("port {port} is not in the rule's ports"));
    }
    if let Some(name) = &rule.container {
        let Some(container) = containers.iter().find(|k| &k.name == name) else {
            return Some(format!(
                "container \"{name}\" is not running (or Docker is not known)"
            ));
        };
        let published = container.published.iter().any(|p| {
            p.proto == c.proto
                && p.host_port == c.port
                && p.host_addr.is_none_or(|bound| {
                    c.dialled
                        .is_some_and(|d| family_of(d) == c.family() && host_binding(bound).contains(d))
                })
        });
        if !published {
            return Some(format!(
                "container \"{name}\" publishes no port {port} on that address"
            ));
        }
    }
    None
}

/// A packet as the forward hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Input interface.
    pub iif: String,
    /// Output interface.
    pub oif: String,
    /// Source address.
    pub source: IpAddr,
    /// Conntrack original destination address (what the client dialled).
    pub dialled: Option<IpAddr>,
    /// Conntrack original destination port.
    pub dialled_port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// Whether conntrack sees a new connection.
    pub ct_new: bool,
    /// Whether the connection was destination-NATed.
    pub ct_dnat: bool,
}

impl Packet {
    /// The first packet of `connection`, published by Docker (DNAT) to a
    /// container on the default bridge.
    pub fn from_connection(connection: &Connection) -> Self {
        Self {
            iif: connection.interface.clone(),
            oif: "docker0".into(),
            source: connection.source,
            dialled: connection.dialled,
            dialled_port: connection.port,
            proto: connection.proto,
            ct_new: true,
            ct_dnat: true,
        }
    }
}

/// The final verdict of a packet in a ruleset, and the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Accept` also when no rule decided (the base chain's policy).
    pub verdict: Verdict,
    /// Chain of the deciding rule (`None` for the base chain policy).
    pub chain: Option<String>,
    /// Comment of the deciding rule.
    pub comment: Option<String>,
}

/// Which rule decides `connection`, by running the compiled ruleset.
pub fn evaluate_ruleset(ruleset: &Ruleset, connection: &Connection) -> Decision {
    let outcome = run(ruleset, Hook::Forward, &Packet::from_connection(connection));
    let action = match outcome.verdict {
        Verdict::Drop => Action::Drop,
        Verdict::Reject(_) => Action::Reject,
        _ => Action::Allow,
    };
    match (outcome.chain.as_deref(), outcome.comment) {
        (Some(CHAIN_DEFAULT), _) => Decision::Default { action },
        (Some(chain), Some(comment)) if chain.starts_with("rule-") => Decision::Rule {
            name: comment,
            action,
        },
        _ => Decision::NotJudged,
    }
}

/// Runs `packet` through the base chains of `hook`, lowest priority first,
/// as the kernel would (assuming no per-source limit is exceeded).
pub fn run(ruleset: &Ruleset, hook: Hook, packet: &Packet) -> Outcome {
    let mut bases: Vec<_> = ruleset
        .chains
        .iter()
        .filter(|c| c.hook.is_some_and(|h| h.hook == hook))
        .collect();
    bases.sort_by_key(|c| c.hook.map(|h| h.priority));
    let mut last_accept = None;
    for base in bases {
        match run_chain(ruleset, &base.name, packet, 0) {
            Flow::Final(outcome) if outcome.verdict == Verdict::Accept => last_accept = Some(outcome),
            Flow::Final(outcome) => return outcome,
            Flow::Continue => {}
        }
    }
    last_accept.unwrap_or(Outcome {
        verdict: Verdict::Accept,
        chain: None,
        comment: None,
    })
}

enum Flow {
    Continue,
    Final(Outcome),
}

/// nftables allows 16 nested jumps; the compiler needs three.
const MAX_DEPTH: usize = 16;

fn run_chain(ruleset: &Ruleset, name: &str, packet: &Packet, depth: usize) -> Flow {
    let Some(chain) = ruleset.chain(name) else {
        return Flow::Continue;
    };
    if depth > MAX_DEPTH {
        return Flow::Continue;
    }
    for rule in &chain.rules {
        if !rule.matches.iter().all(|m| holds(ruleset, m, packet)) {
            continue;
        }
        match &rule.verdict {
            None => {}
            Some(Verdict::Return) => return Flow::Continue,
            Some(Verdict::Jump(target)) => {
                if let Flow::Final(outcome) = run_chain(ruleset, target, packet, depth + 1) {
                    return Flow::Final(outcome);
                }
            }
            Some(Verdict::Goto(target)) => return run_chain(ruleset, target, packet, depth + 1),
            Some(verdict) => {
                return Flow::Final(Outcome {
                    verdict: verdict.clone(),
                    chain: Some(chain.name.clone()),
                    comment: Some(rule.comment.clone()),
                });
            }
        }
    }
    Flow::Continue
}

fn in_addr_set(ruleset: &Ruleset, set: &str, addr: IpAddr) -> bool {
    match (ruleset.set(set).map(|s| &s.elements), addr) {
        (Some(SetElements::Ipv4(v4)), IpAddr::V4(a)) => interval::contains(v4, a),
        (Some(SetElements::Ipv6(v6)), IpAddr::V6(a)) => interval::contains(v6, a),
        _ => false,
    }
}

fn holds(ruleset: &Ruleset, m: &Match, p: &Packet) -> bool {
    let family = family_of(p.source);
    match m {
        Match::IifName(name) => name.matches(&p.iif),
        Match::OifName(name) => name.matches(&p.oif),
        Match::NfProto(f) => *f == family,
        Match::L4Proto(proto) => *proto == p.proto,
        Match::CtState(CtState::New) => p.ct_new,
        Match::CtState(CtState::NotNew) => !p.ct_new,
        Match::CtStatusDnat => p.ct_dnat,
        Match::SourceIn { family: f, set } => *f == family && in_addr_set(ruleset, set, p.source),
        Match::DialledAddrIn { family: f, set } => {
            *f == family
                && p.dialled
                    .is_some_and(|d| family_of(d) == family && in_addr_set(ruleset, set, d))
        }
        Match::DialledPort(ports) => ports.matches(p.dialled_port, ruleset),
        // Logging's rate limit: assume under the rate.
        Match::Limit { .. } => true,
        // Per-source limits: assume the source stays within them.
        Match::SourceRateOver { .. } | Match::SourceConnectionsOver { .. } => false,
    }
}
