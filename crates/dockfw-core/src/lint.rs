//! Warnings about a valid policy: rules that can never match, sets never used.

use crate::diag::{Diagnostic, Severity};
use crate::policy::{AddrMatch, ContainerRule, Destination, Guard, Policy, PortSet, Rule};
use crate::ruleset::Proto;
use crate::values::AddrSet;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

/// Upper bound on rule-to-rule comparisons of the "can never match" check,
/// so a huge policy of rules without ports (each compared with every rule
/// above it) still checks in about a second; past it, one warning says so.
const MAX_SHADOW_COMPARISONS: usize = 50_000_000;
/// A rule with at most this many ports is indexed port by port.
const PORTS_INDEXED_ONE_BY_ONE: u32 = 64;
/// Ports per block of the coarser index.
const PORT_BLOCK: u32 = 64;
/// A rule touching more blocks than this is compared with every later rule.
const BLOCKS_INDEXED: u32 = 64;

/// The rules seen so far, indexed by the ports they match, so that a rule is
/// compared only with earlier rules that could cover it.
///
/// An earlier rule can only cover a later one if it matches the later rule's
/// first port (or, when the later rule has no ports, every port): so the
/// candidates are the rules holding that port, the rules holding its block,
/// and the rules with no ports or too many to index. Each list is in rule
/// order, and [`ShadowIndex::candidates`] merges them in rule order, so the
/// first candidate that covers a rule is the first rule above it that does,
/// exactly as comparing with every earlier rule would find.
#[derive(Debug, Default)]
struct ShadowIndex {
    by_port: HashMap<(Proto, u16), Vec<usize>>,
    by_block: HashMap<(Proto, u32), Vec<usize>>,
    /// Rules without ports, or with too many to index.
    broad: Vec<usize>,
}

impl ShadowIndex {
    fn insert(&mut self, index: usize, rule: &Rule) {
        let Some(ports) = &rule.ports else {
            self.broad.push(index);
            return;
        };
        let intervals = || {
            [Proto::Tcp, Proto::Udp]
                .into_iter()
                .flat_map(|proto| ports.of(proto).iter().map(move |interval| (proto, *interval)))
        };
        let count: u32 = intervals()
            .map(|(_, i)| u32::from(i.last) - u32::from(i.first) + 1)
            .sum();
        if count <= PORTS_INDEXED_ONE_BY_ONE {
            for (proto, interval) in intervals() {
                for port in interval.first..=interval.last {
                    self.by_port.entry((proto, port)).or_default().push(index);
                }
            }
            return;
        }
        let blocks = || {
            intervals().flat_map(|(proto, i)| {
                (u32::from(i.first) / PORT_BLOCK..=u32::from(i.last) / PORT_BLOCK).map(move |b| (proto, b))
            })
        };
        let mut touched: Vec<(Proto, u32)> = blocks().collect();
        touched.dedup();
        if touched.len() > BLOCKS_INDEXED as usize {
            self.broad.push(index);
            return;
        }
        for block in touched {
            self.by_block.entry(block).or_default().push(index);
        }
    }

    /// The earlier rules that could cover `rule`, in rule order.
    fn candidates(&self, rule: &Rule) -> impl Iterator<Item = usize> + '_ {
        let first_port = rule.ports.as_ref().and_then(|ports| {
            [Proto::Tcp, Proto::Udp]
                .into_iter()
                .find_map(|proto| ports.of(proto).first().map(|i| (proto, i.first)))
        });
        let (by_port, by_block): (&[usize], &[usize]) = match first_port {
            Some((proto, port)) => (
                self.by_port.get(&(proto, port)).map_or(&[], Vec::as_slice),
                self.by_block
                    .get(&(proto, u32::from(port) / PORT_BLOCK))
                    .map_or(&[], Vec::as_slice),
            ),
            // Only a rule matching every port covers a rule without ports.
            None => (&[], &[]),
        };
        merge(
            merge(by_port.iter().copied(), by_block.iter().copied()),
            self.broad.iter().copied(),
        )
    }
}

/// Merges two ascending sequences into one.
fn merge(
    a: impl IntoIterator<Item = usize>,
    b: impl IntoIterator<Item = usize>,
) -> impl Iterator<Item = usize> {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x <= y => a.next(),
        (Some(_), Some(_)) | (None, _) => b.next(),
        (Some(_), None) => a.next(),
    })
}

pub(crate) fn lint(policy: &Policy, out: &mut Vec<Diagnostic>) {
    let mut earlier_rules = ShadowIndex::default();
    let mut comparisons = 0usize;
    for (index, rule) in policy.rules.iter().enumerate() {
        let mut shadowing = None;
        let compared = comparable(rule, policy);
        for candidate in earlier_rules.candidates(rule) {
            comparisons += 1;
            if comparisons > MAX_SHADOW_COMPARISONS {
                break;
            }
            if catches_all(&policy.rules[candidate], &compared, &policy.guard) {
                shadowing = Some(&policy.rules[candidate]);
                break;
            }
        }
        if comparisons > MAX_SHADOW_COMPARISONS {
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: rule.location.clone(),
                rule: Some(rule.name.clone()),
                message: format!(
                    "this rule and those below it were not checked for rules that can never match: \
                     comparing them with the rules above took more than {MAX_SHADOW_COMPARISONS} comparisons"
                ),
                hint: Some(
                    "give rules ports: rules with ports are compared only with rules sharing a port"
                        .to_string(),
                ),
            });
            break;
        }
        if let Some(earlier) = shadowing {
            let line = earlier
                .location
                .as_ref()
                .map_or(String::new(), |l| format!(" (line {})", l.line));
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: rule.location.clone(),
                rule: Some(rule.name.clone()),
                message: format!(
                    "this rule can never match: rule \"{}\"{line} above it already decides every connection it would match",
                    earlier.name
                ),
                hint: Some(format!("move it above \"{}\", narrow \"{}\", or remove it", earlier.name, earlier.name)),
            });
        }
        earlier_rules.insert(index, rule);
    }
    for rules in [&policy.outbound, &policy.between] {
        lint_container_rules(rules, policy, out);
    }
    let used: BTreeSet<&str> = policy
        .rules
        .iter()
        .flat_map(|rule| rule.from.iter().chain(rule.to.iter()))
        .chain(policy.outbound.iter().filter_map(ContainerRule::to_addresses))
        .flat_map(|addrs| addrs.entries.iter())
        .filter_map(|entry| entry.strip_prefix('@'))
        .collect();
    for name in policy.sets.keys().filter(|name| !used.contains(name.as_str())) {
        out.push(Diagnostic {
            severity: Severity::Warning,
            location: None,
            rule: None,
            message: format!("set \"{name}\" is defined but no rule uses it"),
            hint: Some(format!(
                "refer to it as \"@{name}\" in a rule's from or to, or remove it"
            )),
        });
    }
}

/// "Can never match" for `[[outbound]]` or `[[between]]` rules (one
/// direction's list): each is compared with every rule above it, up to
/// [`MAX_SHADOW_COMPARISONS`] (such lists are short; no index needed).
fn lint_container_rules(rules: &[ContainerRule], policy: &Policy, out: &mut Vec<Diagnostic>) {
    let mut comparisons = 0usize;
    for (index, rule) in rules.iter().enumerate() {
        let compared = comparable_container_rule(rule, policy);
        let mut shadowing = None;
        for earlier in &rules[..index] {
            comparisons += 1;
            if comparisons > MAX_SHADOW_COMPARISONS {
                break;
            }
            if container_rule_catches_all(earlier, &compared) {
                shadowing = Some(earlier);
                break;
            }
        }
        if comparisons > MAX_SHADOW_COMPARISONS {
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: rule.location.clone(),
                rule: Some(rule.name.clone()),
                message: format!(
                    "this rule and those below it were not checked for rules that can never match: \
                     comparing them with the rules above took more than {MAX_SHADOW_COMPARISONS} comparisons"
                ),
                hint: None,
            });
            return;
        }
        if let Some(earlier) = shadowing {
            let line = earlier
                .location
                .as_ref()
                .map_or(String::new(), |l| format!(" (line {})", l.line));
            out.push(Diagnostic {
                severity: Severity::Warning,
                location: rule.location.clone(),
                rule: Some(rule.name.clone()),
                message: format!(
                    "this rule can never match: {} rule \"{}\"{line} above it already decides every connection it would match",
                    rule.direction, earlier.name
                ),
                hint: Some(format!("move it above \"{}\", narrow \"{}\", or remove it", earlier.name, earlier.name)),
            });
        }
    }
}

/// An outbound rule as the "can never match" check compares it: a `to`
/// naming a set whose addresses are not all known counts as any address.
fn comparable_container_rule<'r>(rule: &'r ContainerRule, policy: &Policy) -> Cow<'r, ContainerRule> {
    let unknown = rule.to_addresses().is_some_and(|addrs| {
        addrs.entries.iter().any(|entry| {
            entry
                .strip_prefix('@')
                .and_then(|name| policy.sets.get(name))
                .is_some_and(|set| !set.complete || set.is_dynamic())
        })
    });
    if !unknown {
        return Cow::Borrowed(rule);
    }
    let mut widened = rule.clone();
    widened.to = None;
    Cow::Owned(widened)
}

/// Whether every connection `later` would match is already matched by
/// `earlier` (two rules of one direction).
pub(crate) fn container_rule_catches_all(earlier: &ContainerRule, later: &ContainerRule) -> bool {
    let from = match (&earlier.from, &later.from) {
        (None, _) => true,
        (Some(outer), Some(inner)) => outer.covers(inner),
        (Some(_), None) => false,
    };
    let to = || match (&earlier.to, &later.to) {
        (None, _) => true,
        (Some(Destination::Addresses(outer)), None) => outer.addrs.covers(&AddrSet::everything()),
        (Some(Destination::Addresses(outer)), Some(Destination::Addresses(inner))) => {
            outer.entries == inner.entries || outer.addrs.covers(&inner.addrs)
        }
        (Some(Destination::Containers(outer)), Some(Destination::Containers(inner))) => outer.covers(inner),
        _ => false,
    };
    let ports = || match (&earlier.ports, &later.ports) {
        (None, _) => true,
        (Some(outer), None) => outer.covers(&PortSet::everything()),
        (Some(outer), Some(inner)) => outer.covers(inner),
    };
    from && to() && ports()
}

/// `rule` as the "can never match" check compares it with earlier rules:
/// an address list naming a set whose addresses are not all known (skipped
/// by `check`, or dynamic: filled at run time) could hold any address, so it
/// counts as any. Only a rule above that decides every address then hides
/// it (`from = "@banned"` below an allow for everyone never drops anyone).
pub(crate) fn comparable<'r>(rule: &'r Rule, policy: &Policy) -> Cow<'r, Rule> {
    let unknown = |addrs: &Option<AddrMatch>| {
        addrs.iter().flat_map(|a| a.entries.iter()).any(|entry| {
            entry
                .strip_prefix('@')
                .and_then(|name| policy.sets.get(name))
                .is_some_and(|set| !set.complete || set.is_dynamic())
        })
    };
    let (from, to) = (unknown(&rule.from), unknown(&rule.to));
    if !from && !to {
        return Cow::Borrowed(rule);
    }
    let mut widened = rule.clone();
    if from {
        widened.from = None;
    }
    if to {
        widened.to = None;
    }
    Cow::Owned(widened)
}

/// Whether every connection `later` would match is already matched by `earlier`.
///
/// Called for every pair of rules, so the cheap fields are compared first and
/// address lists written the same way are not compared address by address.
pub(crate) fn catches_all(earlier: &Rule, later: &Rule, guard: &Guard) -> bool {
    let containers = if earlier.selects_containers() {
        // Every container `later` selects must be one `earlier` selects.
        later.selects_containers()
            && earlier
                .container
                .as_ref()
                .is_none_or(|name| later.container.as_ref() == Some(name))
            && earlier.labels.as_ref().is_none_or(|outer| {
                later
                    .labels
                    .as_ref()
                    .is_some_and(|inner| outer.iter().all(|(k, v)| inner.get(k) == Some(v)))
            })
    } else {
        // A rule selecting containers also matches routed traffic at their
        // container ports, which only Docker knows: a plain rule restricted
        // to some ports cannot be shown to cover it.
        !later.selects_containers() || earlier.ports.is_none()
    };
    let ports = || match (&earlier.ports, &later.ports) {
        (None, _) => true,
        (Some(outer), None) => outer.covers(&PortSet::everything()),
        (Some(outer), Some(inner)) => outer.covers(inner),
    };
    let interfaces = || match (&earlier.interfaces, &later.interfaces) {
        (None, _) => true,
        (Some(outer), inner) => inner
            .as_ref()
            .unwrap_or(&guard.interfaces)
            .iter()
            .all(|name| outer.iter().any(|o| name.is_covered_by(o))),
    };
    let addresses = |outer: &Option<AddrMatch>, inner: &Option<AddrMatch>| match (outer, inner) {
        (None, _) => true,
        (Some(outer), None) => outer.addrs.covers(&AddrSet::everything()),
        (Some(outer), Some(inner)) => outer.entries == inner.entries || outer.addrs.covers(&inner.addrs),
    };
    containers
        && ports()
        && interfaces()
        && addresses(&earlier.from, &later.from)
        && addresses(&earlier.to, &later.to)
}

#[cfg(all(test, feature = "proptest"))]
mod tests {
    use super::{catches_all, comparable};
    use crate::testing::rule_text;
    use proptest::prelude::*;

    /// The first earlier rule that covers each rule, comparing every pair:
    /// what the indexed check must find.
    fn shadowed_by_brute_force(policy: &crate::Policy) -> Vec<(String, String)> {
        let rules = &policy.rules;
        rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                rules[..i]
                    .iter()
                    .find(|earlier| catches_all(earlier, &comparable(rule, policy), &policy.guard))
                    .map(|earlier| (rule.name.clone(), earlier.name.clone()))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn indexed_shadowing_finds_what_comparing_every_pair_finds(
            rules in (0..24usize).prop_flat_map(|n| (0..n).map(rule_text).collect::<Vec<_>>()),
        ) {
            let text = format!(
                "[guard]\ninterfaces = [\"eth0\", \"eth1\", \"wg*\"]\n[sets]\na = [\"10.0.0.0/8\"]\nb = [\"192.0.2.0/24\"]\nd = {{ dynamic = true }}\n{}",
                rules.concat()
            );
            let parsed = crate::parse("p.toml", &text).unwrap();
            let found: Vec<(String, String)> = parsed
                .warnings
                .iter()
                .filter(|w| w.message.contains("can never match"))
                .map(|w| {
                    let earlier = w.message.split('"').nth(1).unwrap().to_string();
                    (w.rule.clone().unwrap(), earlier)
                })
                .collect();
            prop_assert_eq!(found, shadowed_by_brute_force(&parsed.policy));
        }
    }
}
