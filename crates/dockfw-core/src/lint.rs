//! Warnings about a valid policy: rules that can never match, sets never used.

use crate::diag::{Collector, Diagnostic, Severity};
use crate::policy::{AddrMatch, Guard, Policy, PortSet, Rule};
use crate::values::AddrSet;
use std::collections::BTreeSet;

pub(crate) fn lint(policy: &Policy, out: &mut Collector<'_>) {
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(earlier) = policy.rules[..index]
            .iter()
            .find(|earlier| catches_all(earlier, rule, &policy.guard))
        {
            let line = earlier
                .location
                .as_ref()
                .map_or(String::new(), |l| format!(" (line {})", l.line));
            out.diagnostics.push(Diagnostic {
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
    }
    let used: BTreeSet<&str> = policy
        .rules
        .iter()
        .flat_map(|rule| rule.from.iter().chain(rule.to.iter()))
        .flat_map(|addrs| addrs.entries.iter())
        .filter_map(|entry| entry.strip_prefix('@'))
        .collect();
    for name in policy.sets.keys().filter(|name| !used.contains(name.as_str())) {
        out.diagnostics.push(Diagnostic {
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
