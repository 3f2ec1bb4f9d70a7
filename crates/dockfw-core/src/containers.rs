//! What a policy means for the containers Docker runs: which containers each
//! rule reaches ([`resolve`]), and warnings about rules that reach nothing or
//! name a container's internal port where clients dial another ([`diagnose`]).
//!
//! Pure functions of a [`Policy`] and the running [`Container`]s; the caller
//! asks Docker.
//!
//! ```
//! use dockfw_core::{Container, Proto, PublishedPort};
//!
//! let policy = dockfw_core::parse("p.toml", r#"
//!     [guard]
//!     interfaces = ["eth0"]
//!     [[rule]]
//!     name = "app"
//!     ports = [8000]
//! "#).unwrap().policy;
//! let django = Container {
//!     name: "django".into(),
//!     labels: Default::default(),
//!     published: vec![PublishedPort { host_addr: None, host_port: 8081, container_port: 8000, proto: Proto::Tcp }],
//!     addresses: vec![],
//! };
//! let warnings = dockfw_core::containers::diagnose(&policy, &[django]);
//! assert_eq!(
//!     warnings[0].to_string(),
//!     "p.toml:6:14: warning: rule \"app\": 8000/tcp is django's container port; clients dial 8081\n  \
//!      hint: ports are what clients dial: the published host port (docker ps shows HOST:PORT->CONTAINER_PORT); \
//!      write 8081. A container port matches only clients routed to the container's own address, without NAT"
//! );
//! ```

use crate::compile::host_binding;
use crate::diag::{Diagnostic, Location, Severity};
use crate::policy::{
    Container, ContainerRule, Destination, Direction, Policy, PortEntry, PublishedPort, Rule, Selector,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// A rule and the running containers it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The rule's name.
    pub rule: String,
    /// Whether the rule selects containers (`container` or `labels`). A rule
    /// that does not reaches whichever containers publish its ports.
    pub selects: bool,
    /// The containers the rule reaches, in the order given.
    pub containers: Vec<Reached>,
}

/// A container a rule reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reached {
    /// The container's name.
    pub name: String,
    /// Its published ports the rule matches (by host port and binding
    /// address; routed clients reach the same services at the container ports).
    pub published: Vec<PublishedPort>,
}

/// Per rule, in policy order: the running containers it reaches.
///
/// A rule that selects containers reaches each container it selects (even
/// one whose published ports its `ports` and `to` leave out: `published` is
/// then empty). Any other rule reaches each container publishing a port the
/// rule's `ports` and `to` cover.
pub fn resolve(policy: &Policy, containers: &[Container]) -> Vec<Resolution> {
    policy
        .rules
        .iter()
        .map(|rule| {
            let selects = rule.selects_containers();
            let reached = containers
                .iter()
                .filter(|container| !selects || rule.selects(container))
                .filter_map(|container| {
                    let published: Vec<PublishedPort> = container
                        .published
                        .iter()
                        .filter(|p| covers(rule, p))
                        .copied()
                        .collect();
                    (selects || !published.is_empty()).then(|| Reached {
                        name: container.name.clone(),
                        published,
                    })
                })
                .collect();
            Resolution {
                rule: rule.name.clone(),
                selects,
                containers: reached,
            }
        })
        .collect()
}

/// Whether `rule`'s `ports` and `to` cover the published port `p`.
fn covers(rule: &Rule, p: &PublishedPort) -> bool {
    let port = rule
        .ports
        .as_ref()
        .is_none_or(|ports| ports.contains(p.proto, p.host_port));
    let address = match (&rule.to, p.host_addr) {
        (None, _) | (Some(_), None) => true,
        (Some(to), Some(bound)) => !to.addrs.intersection(&host_binding(bound)).is_empty(),
    };
    port && address
}

/// Warnings about `policy` given the running `containers`, in file order:
///
/// - a `container`/`labels` rule that selects no running container;
/// - a `ports` entry no running container (of those the rule selects)
///   publishes as a host port, and above all one that is a container's
///   internal port whose published port differs ("8000 is django's container
///   port; clients dial 8081").
///
/// Each points at the rule's field (file:line:column) and says how to fix it.
pub fn diagnose(policy: &Policy, containers: &[Container]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for rule in &policy.rules {
        let candidates: Vec<&Container> = if rule.selects_containers() {
            let selected = rule.selected(containers);
            if selected.is_empty() {
                out.push(selects_nothing(rule, containers));
                continue;
            }
            selected
        } else {
            containers.iter().collect()
        };
        for entry in &rule.port_entries {
            if let Some(warning) = port_warning(rule, entry, &candidates) {
                out.push(warning);
            }
        }
    }
    for rule in policy.outbound.iter().chain(&policy.between) {
        for (field, selector) in rule.selectors() {
            if selector.selected(containers).is_empty() {
                out.push(container_rule_selects_nothing(rule, field, selector, containers));
            }
        }
    }
    for rule in &policy.between {
        let targets: Vec<&Container> = match &rule.to {
            Some(Destination::Containers(selector)) => selector.selected(containers),
            _ => containers.iter().collect(),
        };
        for entry in &rule.port_entries {
            if let Some(warning) = between_port_warning(rule, entry, &targets) {
                out.push(warning);
            }
        }
    }
    out
}

/// A `[[between]]` port entry that is a published host port of the
/// containers it goes to but none of their container ports: containers
/// reach each other at container ports (no NAT between them), so the rule
/// would match nothing but the hairpin through the host.
fn between_port_warning(
    rule: &ContainerRule,
    entry: &PortEntry,
    targets: &[&Container],
) -> Option<Diagnostic> {
    let proto = entry.proto;
    let published = || {
        targets
            .iter()
            .flat_map(|c| c.published.iter().map(move |p| (c, p)))
            .filter(move |(_, p)| p.proto == proto)
    };
    if published().any(|(_, p)| entry.ports.contains(p.container_port)) {
        return None;
    }
    let host_ports: Vec<(&str, &PublishedPort)> = published()
        .filter(|(_, p)| entry.ports.contains(p.host_port) && p.host_port != p.container_port)
        .map(|(c, p)| (c.name.as_str(), p))
        .collect();
    if host_ports.is_empty() {
        return None;
    }
    let owners: Vec<String> = host_ports
        .iter()
        .map(|(name, p)| {
            format!(
                "{}/{} is the host port {name} publishes; its container port is {}",
                p.host_port,
                proto.name(),
                p.container_port
            )
        })
        .collect();
    let mut container_ports: Vec<String> = host_ports
        .iter()
        .map(|(_, p)| p.container_port.to_string())
        .collect();
    container_ports.dedup();
    Some(Diagnostic {
        severity: Severity::Warning,
        location: entry.location.clone().or_else(|| rule.location.clone()),
        rule: Some(rule.name.clone()),
        message: owners.join("; "),
        hint: Some(format!(
            "between containers there is no NAT: a container dials the other's container port; write {}",
            list(&container_ports)
        )),
    })
}

/// Why a selector of an `[[outbound]]` or `[[between]]` rule selects no
/// running container (`field`: `from` or `to`).
fn container_rule_selects_nothing(
    rule: &ContainerRule,
    field: &str,
    selector: &Selector,
    containers: &[Container],
) -> Diagnostic {
    // An outbound rule writes its selector's keys at the top of the rule.
    let prefix = match rule.direction {
        Direction::Between => format!("{field}."),
        _ => String::new(),
    };
    let (key, message, hint) =
        nothing_selected(selector.container.as_ref(), selector.labels.as_ref(), containers);
    let message = match rule.direction {
        Direction::Between => format!("{field}: {message}"),
        _ => message,
    };
    let at = rule
        .field_locations
        .get(&format!("{prefix}{key}"))
        .or(rule.location.as_ref())
        .cloned();
    Diagnostic {
        severity: Severity::Warning,
        location: at,
        rule: Some(rule.name.clone()),
        message,
        hint: Some(hint),
    }
}

fn warning(rule: &Rule, at: Option<&Location>, message: String, hint: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        location: at.or(rule.location.as_ref()).cloned(),
        rule: Some(rule.name.clone()),
        message,
        hint: Some(hint),
    }
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Why a selecting rule selects no running container, and what runs instead.
fn selects_nothing(rule: &Rule, containers: &[Container]) -> Diagnostic {
    let (field, message, hint) = nothing_selected(rule.container.as_ref(), rule.labels.as_ref(), containers);
    warning(rule, rule.field_locations.get(field), message, hint)
}

/// The field to blame (`container` or `labels`), the message and the hint
/// for a selection (`container` name, `labels`) no running container meets.
fn nothing_selected(
    container: Option<&String>,
    labels: Option<&BTreeMap<String, String>>,
    containers: &[Container],
) -> (&'static str, String, String) {
    let labels = labels.into_iter().flatten();
    let named = container.and_then(|name| containers.iter().find(|c| &c.name == name));
    match (container, named) {
        // Running, so the labels are what exclude it.
        (Some(name), Some(container)) => {
            let has: Vec<String> = labels
                .clone()
                .map(|(key, _)| match container.labels.get(key) {
                    Some(value) => format!("{key}={value:?}"),
                    None => format!("no label {key:?}"),
                })
                .collect();
            (
                "labels",
                format!(
                    "container \"{name}\" runs but does not carry {}",
                    describe_labels(labels)
                ),
                format!("it has {}; fix \"labels\" or \"container\"", list(&has)),
            )
        }
        (Some(name), None) => {
            let running: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            let close = crate::names::closest(name, running.iter().copied());
            let hint = match close {
                Some(close) => format!("did you mean \"{close}\"?"),
                None if running.is_empty() => {
                    "no container is running; the rule matches nothing until it runs".into()
                }
                None => format!(
                    "the rule matches nothing until it runs; running: {}",
                    running.join(", ")
                ),
            };
            ("container", format!("container \"{name}\" is not running"), hint)
        }
        (None, _) => {
            let keys: Vec<&String> = labels.clone().map(|(key, _)| key).collect();
            let near: Vec<String> = keys
                .iter()
                .flat_map(|key| {
                    containers
                        .iter()
                        .filter_map(move |c| c.labels.get(*key).map(|v| format!("{key}={v:?} on {}", c.name)))
                })
                .collect();
            let hint = if near.is_empty() {
                let keys: Vec<String> = keys.iter().map(|key| format!("{key:?}")).collect();
                format!(
                    "no running container has a label {}; the rule matches nothing until one runs",
                    keys.join(" or ")
                )
            } else {
                format!("a container must carry all of them; running: {}", list(&near))
            };
            (
                "labels",
                format!("no running container carries {}", describe_labels(labels)),
                hint,
            )
        }
    }
}

/// `the label k="v"`, or `the labels a="1", b="2"`.
fn describe_labels<'l>(labels: impl Iterator<Item = (&'l String, &'l String)>) -> String {
    let labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v:?}")).collect();
    format!(
        "the label{} {}",
        if labels.len() == 1 { "" } else { "s" },
        labels.join(", ")
    )
}

/// A warning for a `ports` entry none of `candidates` publishes as a host port.
fn port_warning(rule: &Rule, entry: &PortEntry, candidates: &[&Container]) -> Option<Diagnostic> {
    let proto = entry.proto;
    let same_proto = |p: &&PublishedPort| p.proto == proto;
    let published = candidates
        .iter()
        .flat_map(|c| c.published.iter())
        .filter(same_proto)
        .any(|p| entry.ports.contains(p.host_port));
    if published {
        return None;
    }
    let single = entry.ports.first == entry.ports.last;
    let what = if single {
        format!("{}/{}", entry.ports.first, proto.name())
    } else {
        format!("{}-{}/{}", entry.ports.first, entry.ports.last, proto.name())
    };
    // Container ports in the entry that clients reach at another host port.
    let mut internal: Vec<(&str, &PublishedPort)> = Vec::new();
    for container in candidates {
        for p in container.published.iter().filter(same_proto) {
            if entry.ports.contains(p.container_port) && p.host_port != p.container_port {
                internal.push((&container.name, p));
            }
        }
    }
    if !internal.is_empty() {
        let mut dialled: Vec<String> = internal.iter().map(|(_, p)| p.host_port.to_string()).collect();
        dialled.dedup();
        let message = if single {
            let owners: Vec<String> = internal
                .iter()
                .map(|(name, p)| format!("{name}'s container port; clients dial {}", p.host_port))
                .collect();
            format!("{what} is {}", owners.join(", and "))
        } else {
            let owners: Vec<String> = internal
                .iter()
                .map(|(name, p)| {
                    format!(
                        "{name}'s container port {} (clients dial {})",
                        p.container_port, p.host_port
                    )
                })
                .collect();
            format!(
                "no running container publishes a port in {what}, but it holds {}",
                list(&owners)
            )
        };
        let hint = format!(
            "ports are what clients dial: the published host port (docker ps shows HOST:PORT->CONTAINER_PORT); write {}. \
             A container port matches only clients routed to the container's own address, without NAT",
            list(&dialled)
        );
        return Some(warning(rule, entry.location.as_ref(), message, hint));
    }
    let (message, hint) = if rule.selects_containers() {
        let names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
        let theirs: Vec<String> = candidates
            .iter()
            .flat_map(|c| c.published.iter())
            .map(|p| format!("{}/{}", p.host_port, p.proto.name()))
            .collect();
        let verb = if names.len() == 1 { "publishes" } else { "publish" };
        let message = if single {
            format!("{} {verb} no port {what}", list(&names))
        } else {
            format!("{} {verb} no port in {what}", list(&names))
        };
        let hint = if theirs.is_empty() {
            format!("{} {verb} no ports at all", list(&names))
        } else {
            format!("{} {verb} {}", list(&names), list(&theirs))
        };
        (message, hint)
    } else {
        let message = if single {
            format!("no running container publishes port {what}")
        } else {
            format!("no running container publishes a port in {what}")
        };
        (
            message,
            "this entry matches nothing published until a container publishes it (docker ps shows HOST:PORT->CONTAINER_PORT)"
                .to_string(),
        )
    };
    Some(warning(rule, entry.location.as_ref(), message, hint))
}
