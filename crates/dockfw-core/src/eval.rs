//! "Which rule decides this connection?" — answered twice, independently: on
//! the policy (with the reason each earlier rule did not match), and by
//! interpreting the compiled ruleset the way the kernel runs it. Property
//! tests check that the two always agree, on every [`Via`].

use crate::compile::{Binding, container_addresses, host_binding};
use crate::interval;
use crate::layout::{CounterAt, audited_action, decided_by_chain};
use crate::policy::{
    Action, AddrMatch, Container, ContainerRule, Destination, Direction, Policy, PublishedPort,
    Rule as PolicyRule, Selector,
};
use crate::ruleset::{CtState, Family, Hook, Match, Proto, Ruleset, SetElements, Statement, Verdict};
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// A new connection from outside, to a published port or a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Interface it arrives on.
    pub interface: String,
    /// Client address.
    pub source: IpAddr,
    /// Address the client dialled: a host address, or on the routed path a
    /// container's; `None` if unknown (rules that need it then do not match).
    pub dialled: Option<IpAddr>,
    /// Port the client dialled: the published host port, or on the routed
    /// path the container port.
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

impl Connection {
    fn family(&self) -> Family {
        Family::of(self.source)
    }

    /// The dialled address, if known and of the connection's family.
    fn dialled_in_family(&self) -> Option<IpAddr> {
        self.dialled.filter(|d| Family::of(*d) == self.family())
    }
}

/// How a new connection from outside reaches a container, and so which of
/// dockfw's base chains judges it. All paths end in the same rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// To a published port that Docker destination-NATs to a container
    /// (forward hook). The connection's address and port are the host's.
    #[default]
    Published,
    /// To a published port Docker does not NAT, such as an IPv6 client of an
    /// IPv4-only Docker: docker-proxy on the host answers it (input hook). The
    /// connection's address and port are the host's. Judged only when a
    /// running container publishes that port on that address.
    Proxied,
    /// Routed to a container's address without NAT (forward hook, onto a
    /// Docker bridge). The connection's address and port are the container's.
    Routed,
}

impl Via {
    /// The netfilter hook the path passes.
    pub fn hook(self) -> Hook {
        match self {
            Self::Published | Self::Routed => Hook::Forward,
            Self::Proxied => Hook::Input,
        }
    }
}

/// What happens to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decided_by")]
pub enum Decision {
    /// dockfw does not judge it: it does not arrive on a guarded interface,
    /// or (to docker-proxy) no running container publishes what it dialled.
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
    /// Why dockfw does not judge the connection, when it does not.
    pub not_judged: Option<String>,
    /// The rules before the deciding one, and why each did not match.
    pub misses: Vec<Miss>,
    /// Dynamic sets those rules name whose addresses are not known (not
    /// read from the kernel: [`crate::sets::Set::fill_runtime`]): the
    /// decision assumes the address is in none of them, and may be wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_sets: Vec<String>,
    /// The guard is in audit mode and the decision is a drop or reject: it
    /// is only logged and counted, and the connection goes on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
}

impl Explanation {
    fn decided(policy: &Policy, decision: Decision, misses: Vec<Miss>, unknown_sets: Vec<String>) -> Self {
        let audit = policy.guard.audit() && decision.action() != Action::Allow;
        Self {
            decision,
            not_judged: None,
            misses,
            unknown_sets,
            audit,
        }
    }

    fn not_judged(why: String) -> Self {
        Self {
            decision: Decision::NotJudged,
            not_judged: Some(why),
            misses: vec![],
            unknown_sets: vec![],
            audit: false,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJudged => f.write_str("not judged by dockfw"),
            Self::Rule { name, action } => write!(f, "{action} by rule \"{name}\""),
            Self::Default { action } => write!(f, "{action} by default (no rule matched)"),
        }
    }
}

/// The decision (with why it is not judged, if so), then one line per rule
/// that did not match.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.decision)?;
        if let Some(why) = &self.not_judged {
            write!(f, " ({why})")?;
        }
        if self.audit {
            f.write_str(" (audit mode: only logged and counted; the connection goes on)")?;
        }
        for miss in &self.misses {
            write!(f, "\n  rule \"{}\" did not match: {}", miss.rule, miss.reason)?;
        }
        Ok(())
    }
}

/// Which rule decides `connection`, on the policy itself, for a connection
/// Docker publishes by DNAT ([`Via::Published`]).
pub fn evaluate(policy: &Policy, containers: &[Container], connection: &Connection) -> Decision {
    explain(policy, containers, connection).decision
}

/// Like [`evaluate`], with the reason each earlier rule did not match.
pub fn explain(policy: &Policy, containers: &[Container], connection: &Connection) -> Explanation {
    explain_via(policy, containers, connection, Via::Published)
}

/// Which rule decides `connection` arriving by `path`, on the policy itself.
pub fn evaluate_via(
    policy: &Policy,
    containers: &[Container],
    connection: &Connection,
    path: Via,
) -> Decision {
    explain_via(policy, containers, connection, path).decision
}

/// Like [`evaluate_via`], with the reason each earlier rule did not match.
///
/// ```
/// use dockfw_core::Via;
/// use dockfw_core::{Connection, Container, Decision, Proto, PublishedPort};
///
/// let policy = dockfw_core::parse("p.toml", r#"
///     [guard]
///     interfaces = ["eth0"]
///     [[rule]]
///     name = "app"
///     container = "django"
/// "#).unwrap().policy;
/// let django = Container {
///     name: "django".into(),
///     labels: Default::default(),
///     published: vec![PublishedPort { host_addr: None, host_port: 8081, container_port: 8000, proto: Proto::Tcp }],
///     addresses: vec!["172.17.0.2".parse().unwrap()],
/// };
/// let to = |addr: &str, port| Connection {
///     interface: "eth0".into(),
///     source: "198.51.100.7".parse().unwrap(),
///     dialled: Some(addr.parse().unwrap()),
///     port,
///     proto: Proto::Tcp,
/// };
/// let app = Decision::Rule { name: "app".into(), action: dockfw_core::Action::Allow };
/// let containers = [django];
/// // The same service on every path: host port 8081, or container port 8000 routed.
/// assert_eq!(dockfw_core::evaluate_via(&policy, &containers, &to("203.0.113.5", 8081), Via::Proxied), app);
/// assert_eq!(dockfw_core::evaluate_via(&policy, &containers, &to("172.17.0.2", 8000), Via::Routed), app);
/// // ssh on the host is no published port: docker-proxy is not involved, dockfw does not judge it.
/// assert_eq!(dockfw_core::evaluate_via(&policy, &containers, &to("203.0.113.5", 22), Via::Proxied), Decision::NotJudged);
/// ```
pub fn explain_via(
    policy: &Policy,
    containers: &[Container],
    connection: &Connection,
    path: Via,
) -> Explanation {
    let not_judged = Explanation::not_judged;
    if !policy.guard.guards(&connection.interface) {
        return not_judged(format!(
            "it arrives on {}, which guard.interfaces does not list",
            connection.interface
        ));
    }
    if path == Via::Proxied && !reaches_docker_proxy(containers, connection) {
        return not_judged(format!(
            "no running container publishes port {}/{} on that address: it is for the host itself",
            connection.port,
            connection.proto.name()
        ));
    }
    let mut misses = Vec::new();
    let mut unknown_sets = Vec::new();
    for rule in &policy.rules {
        match miss_reason(policy, rule, containers, connection, &mut unknown_sets) {
            Some(reason) => misses.push(Miss {
                rule: rule.name.clone(),
                reason,
            }),
            None => {
                let decision = Decision::Rule {
                    name: rule.name.clone(),
                    action: rule.action,
                };
                return Explanation::decided(policy, decision, misses, unknown_sets);
            }
        }
    }
    let decision = Decision::Default {
        action: policy.guard.default,
    };
    Explanation::decided(policy, decision, misses, unknown_sets)
}

/// A new connection a container opens: to the outside (outbound) or to
/// another container (between).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerConnection {
    /// The container's address (the source).
    pub source: IpAddr,
    /// Where it goes: an outside address, or (between) the other
    /// container's address (after Docker's DNAT, when it dialled a port
    /// the host publishes); with `proxied`, the host address it dialled.
    pub destination: IpAddr,
    /// The destination port (between: the container port; with `proxied`,
    /// the published host port it dialled).
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// Between containers through `docker-proxy`: the container dialled a
    /// port the host publishes and Docker does not NAT it (its default,
    /// the userland proxy), so it reaches the host (input hook) and
    /// docker-proxy connects to the publishing container. Judged only
    /// when a running container publishes that port on that address.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub proxied: bool,
}

impl ContainerConnection {
    /// The published ports docker-proxy connects this (proxied) connection
    /// to, with their containers: those publishing its protocol and host
    /// port on an address (or every address) it dialled.
    pub fn proxied_to<'c>(&self, containers: &'c [Container]) -> Vec<(&'c Container, &'c PublishedPort)> {
        let family = Family::of(self.source);
        containers
            .iter()
            .flat_map(|c| c.published.iter().map(move |p| (c, p)))
            .filter(|(_, p)| {
                p.proto == self.proto
                    && p.host_port == self.port
                    && Binding::of(p.host_addr).is_some_and(|b| b.admits(family, Some(self.destination)))
            })
            .collect()
    }
}

/// Which rule decides a container's new connection going `direction`
/// (outbound or between), on the policy itself. Inbound connections are
/// for [`evaluate_via`]: going `Direction::Inbound`, this says not judged.
pub fn evaluate_container(
    policy: &Policy,
    containers: &[Container],
    connection: &ContainerConnection,
    direction: Direction,
) -> Decision {
    explain_container(policy, containers, connection, direction).decision
}

/// Like [`evaluate_container`], with the reason each earlier rule did not match.
///
/// ```
/// use dockfw_core::policy::Direction;
/// use dockfw_core::{Action, Container, ContainerConnection, Decision, Proto};
///
/// let policy = dockfw_core::parse("p.toml", r#"
///     [guard]
///     interfaces = ["eth0"]
///     outbound = "drop"
///     [[outbound]]
///     name = "web calls the API"
///     container = "web"
///     to = "203.0.113.99"
///     ports = [443]
/// "#).unwrap().policy;
/// let web = Container {
///     name: "web".into(),
///     labels: Default::default(),
///     published: vec![],
///     addresses: vec!["172.17.0.2".parse().unwrap()],
/// };
/// let to = |addr: &str| ContainerConnection {
///     source: "172.17.0.2".parse().unwrap(),
///     destination: addr.parse().unwrap(),
///     port: 443,
///     proto: Proto::Tcp,
///     proxied: false,
/// };
/// let explained = dockfw_core::explain_container(&policy, &[web.clone()], &to("203.0.113.99"), Direction::Outbound);
/// assert_eq!(explained.decision, Decision::Rule { name: "web calls the API".into(), action: Action::Allow });
/// let explained = dockfw_core::explain_container(&policy, &[web], &to("198.51.100.1"), Direction::Outbound);
/// assert_eq!(explained.decision, Decision::Default { action: Action::Drop });
/// assert_eq!(explained.misses[0].reason, "destination 198.51.100.1 is not in to = [203.0.113.99]");
/// ```
pub fn explain_container(
    policy: &Policy,
    containers: &[Container],
    connection: &ContainerConnection,
    direction: Direction,
) -> Explanation {
    if direction == Direction::Inbound {
        return Explanation::not_judged(
            "an inbound connection comes from outside, not from a container".into(),
        );
    }
    let to_itself = connection.source == connection.destination
        || containers.iter().any(|c| {
            c.addresses.contains(&connection.source) && c.addresses.contains(&connection.destination)
        });
    if to_itself && !connection.proxied {
        return Explanation::not_judged(
            "a container's connection to its own address stays inside it: the host never sees it".into(),
        );
    }
    if !policy.judges(direction) {
        return Explanation::not_judged(format!(
            "the policy has no [[{name}]] rules, and [guard] {name} = \"accept\"",
            name = direction.name()
        ));
    }
    if connection.proxied {
        if direction != Direction::Between {
            return Explanation::not_judged(
                "through docker-proxy a container reaches another container: only between rules judge it"
                    .into(),
            );
        }
        if connection.proxied_to(containers).is_empty() {
            return Explanation::not_judged(format!(
                "no running container publishes port {}/{} on that address: it is for the host itself",
                connection.port,
                connection.proto.name()
            ));
        }
    }
    let mut misses = Vec::new();
    let mut unknown_sets = Vec::new();
    for rule in policy.container_rules(direction) {
        let miss = if connection.proxied {
            proxied_miss(rule, containers, connection)
        } else {
            container_miss(policy, rule, containers, connection, &mut unknown_sets)
        };
        match miss {
            Some(reason) => misses.push(Miss {
                rule: rule.name.clone(),
                reason,
            }),
            None => {
                let decision = Decision::Rule {
                    name: rule.name.clone(),
                    action: rule.action,
                };
                return Explanation::decided(policy, decision, misses, unknown_sets);
            }
        }
    }
    let decision = Decision::Default {
        action: policy.guard.default_of(direction),
    };
    Explanation::decided(policy, decision, misses, unknown_sets)
}

/// Why `address` is not one of the containers `selector` selects, if it is not.
fn selector_miss(
    selector: &Selector,
    containers: &[Container],
    what: &str,
    address: IpAddr,
) -> Option<String> {
    let selected = selector.selected(containers);
    if selected.is_empty() {
        return Some(format!(
            "no running container has {} (or Docker is not known)",
            selector.describe()
        ));
    }
    if selected.iter().any(|c| c.addresses.contains(&address)) {
        return None;
    }
    let has: Vec<String> = selected
        .iter()
        .map(|c| {
            let addresses: Vec<String> = c.addresses.iter().map(ToString::to_string).collect();
            format!("{} has {}", c.name, addresses.join(", "))
        })
        .collect();
    Some(format!(
        "{what} {address} is not an address of {} ({})",
        selector.describe(),
        has.join("; ")
    ))
}

/// Whether `address` is in `addrs` (its written addresses, or a dynamic set
/// it names): `Ok(true)`, `Ok(false)`, or `Err` with the dynamic sets whose
/// addresses are not known (assumed not to hold it).
fn in_addresses<'p>(policy: &'p Policy, addrs: &'p AddrMatch, address: IpAddr) -> Result<bool, Vec<&'p str>> {
    if addrs.addrs.contains(address) {
        return Ok(true);
    }
    let mut unknown = Vec::new();
    for name in &addrs.dynamic {
        match policy.sets.get(name).and_then(|set| set.holds(address)) {
            Some(true) => return Ok(true),
            Some(false) => {}
            None => unknown.push(name.as_str()),
        }
    }
    if unknown.is_empty() {
        Ok(false)
    } else {
        Err(unknown)
    }
}

/// `None` if the between `rule` matches `c`, a connection through
/// docker-proxy: from a container it selects, to a published port of a
/// container its `to` selects whose container port is in its `ports`.
fn proxied_miss(rule: &ContainerRule, containers: &[Container], c: &ContainerConnection) -> Option<String> {
    if let Some(from) = &rule.from
        && let Some(reason) = selector_miss(from, containers, "source", c.source)
    {
        return Some(reason);
    }
    let to = match &rule.to {
        Some(Destination::Containers(to)) => Some(to),
        _ => None,
    };
    let reached = c.proxied_to(containers);
    let covered = |p: &PublishedPort| {
        rule.ports
            .as_ref()
            .is_none_or(|ports| ports.contains(p.proto, p.container_port))
    };
    if reached
        .iter()
        .any(|(k, p)| to.is_none_or(|to| to.selects(k)) && covered(p))
    {
        return None;
    }
    let names: Vec<String> = reached
        .iter()
        .map(|(k, p)| format!("{} (container port {})", k.name, p.container_port))
        .collect();
    let port = format!("{}/{}", c.port, c.proto.name());
    Some(match to {
        Some(to) if !reached.iter().any(|(k, _)| to.selects(k)) => format!(
            "host port {port} is published by {}, not by a container of {}",
            names.join(", "),
            to.describe()
        ),
        _ => format!(
            "host port {port} is published by {}, whose port is not in the rule's ports",
            names.join(", ")
        ),
    })
}

/// `None` if the outbound or between `rule` matches `c`, else why not.
fn container_miss(
    policy: &Policy,
    rule: &ContainerRule,
    containers: &[Container],
    c: &ContainerConnection,
    unknown_sets: &mut Vec<String>,
) -> Option<String> {
    if let Some(from) = &rule.from
        && let Some(reason) = selector_miss(from, containers, "source", c.source)
    {
        return Some(reason);
    }
    // A destination is matched in the connection's family (the source's),
    // as the kernel's `ip daddr` / `ip6 daddr` are.
    let same_family = Family::of(c.destination) == Family::of(c.source);
    match &rule.to {
        None => {}
        Some(Destination::Containers(to)) => {
            if let Some(reason) = selector_miss(to, containers, "destination", c.destination) {
                return Some(reason);
            }
            if !same_family {
                return Some(format!(
                    "destination {} is not of the source's address family",
                    c.destination
                ));
            }
        }
        Some(Destination::Addresses(to)) => match in_addresses(policy, to, c.destination) {
            Ok(true) if same_family => {}
            Ok(_) => {
                return Some(format!(
                    "destination {} is not in to = [{}]",
                    c.destination,
                    entries(to)
                ));
            }
            Err(unknown) => {
                let named: Vec<String> = unknown.iter().map(|name| format!("@{name}")).collect();
                for name in unknown {
                    if !unknown_sets.iter().any(|known| known == name) {
                        unknown_sets.push(name.to_string());
                    }
                }
                return Some(format!(
                    "destination {} is not in to = [{}], unless it is in {}: dynamic, filled at run time, not read (assumed not to hold it)",
                    c.destination,
                    entries(to),
                    named.join(", ")
                ));
            }
        },
    }
    if let Some(ports) = &rule.ports
        && !ports.contains(c.proto, c.port)
    {
        return Some(format!(
            "port {}/{} is not in the rule's ports",
            c.port,
            c.proto.name()
        ));
    }
    None
}

/// Whether docker-proxy answers `c`: a running container publishes its port
/// on an address it dialled (what the docker-proxy chain tests).
fn reaches_docker_proxy(containers: &[Container], c: &Connection) -> bool {
    containers.iter().flat_map(|k| k.published.iter()).any(|p| {
        p.proto == c.proto
            && p.host_port == c.port
            && Binding::of(p.host_addr).is_some_and(|b| b.admits(c.family(), c.dialled))
    })
}

fn entries(addrs: &AddrMatch) -> String {
    addrs.entries.join(", ")
}

/// `None` if `rule` matches `connection`, else why not. Dynamic sets of
/// unknown contents it had to consult go to `unknown_sets`.
fn miss_reason(
    policy: &Policy,
    rule: &PolicyRule,
    containers: &[Container],
    c: &Connection,
    unknown_sets: &mut Vec<String>,
) -> Option<String> {
    if let Some(names) = &rule.interfaces
        && !names.iter().any(|name| name.matches(&c.interface))
    {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        return Some(format!("arrives on {}, not on {}", c.interface, names.join(", ")));
    }
    if let Some(from) = &rule.from
        && !from.addrs.contains(c.source)
    {
        let mut unknown = Vec::new();
        let in_dynamic =
            from.dynamic.iter().any(
                |name| match policy.sets.get(name).and_then(|set| set.holds(c.source)) {
                    Some(holds) => holds,
                    None => {
                        unknown.push(name.as_str());
                        false
                    }
                },
            );
        if !in_dynamic {
            if unknown.is_empty() {
                return Some(format!(
                    "source {} is not in from = [{}]",
                    c.source,
                    entries(from)
                ));
            }
            let named: Vec<String> = unknown.iter().map(|name| format!("@{name}")).collect();
            for name in unknown {
                if !unknown_sets.iter().any(|known| known == name) {
                    unknown_sets.push(name.to_string());
                }
            }
            return Some(format!(
                "source {} is not in from = [{}], unless it is in {}: dynamic, filled at run time, not read (assumed not to hold it)",
                c.source,
                entries(from),
                named.join(", ")
            ));
        }
    }
    if let Some(to) = &rule.to {
        match c.dialled {
            None => {
                return Some(format!(
                    "the rule needs a dialled address in [{}] (none given)",
                    entries(to)
                ));
            }
            Some(dialled) if !to.addrs.contains(dialled) || Family::of(dialled) != c.family() => {
                return Some(format!(
                    "dialled address {dialled} is not in to = [{}]",
                    entries(to)
                ));
            }
            Some(_) => {}
        }
    }
    if rule.selects_containers() {
        return selection_miss(rule, containers, c);
    }
    if let Some(ports) = &rule.ports
        && !ports.contains(c.proto, c.port)
    {
        return Some(format!(
            "port {}/{} is not in the rule's ports",
            c.port,
            c.proto.name()
        ));
    }
    None
}

/// Which containers a rule selects, in words (`container "web"`, `labels tier="db"`).
pub(crate) fn describe_selection(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &rule.container {
        parts.push(format!("container \"{name}\""));
    }
    if let Some(labels) = &rule.labels {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        parts.push(format!("labels {}", labels.join(", ")));
    }
    parts.join(" with ")
}

/// For a rule that selects containers (its interfaces, `from` and `to` already
/// matched): `None` if one of them publishes what `c` dialled, on the path it
/// took, else why not.
fn selection_miss(rule: &PolicyRule, containers: &[Container], c: &Connection) -> Option<String> {
    let selected = rule.selected(containers);
    if selected.is_empty() {
        return Some(format!(
            "no running container has {} (or Docker is not known)",
            describe_selection(rule)
        ));
    }
    let covered = |p: &PublishedPort| {
        rule.ports
            .as_ref()
            .is_none_or(|ports| ports.contains(p.proto, p.host_port))
    };
    let family = c.family();
    let dialled = c.dialled_in_family();
    // Published (DNAT, docker-proxy): a host port, on an address it is bound
    // to that is no container's (those are routed).
    let in_containers = container_addresses(containers);
    let dialled_host =
        !in_containers.has_family(family) || dialled.is_some_and(|d| !in_containers.contains(d));
    let publishes = |p: &PublishedPort| {
        p.proto == c.proto
            && p.host_port == c.port
            && p.host_addr
                .is_none_or(|bound| dialled.is_some_and(|d| host_binding(bound).contains(d)))
    };
    let published = dialled_host
        && selected
            .iter()
            .flat_map(|k| k.published.iter())
            .any(|p| covered(p) && publishes(p));
    // Routed: a container port, at that container's own address.
    let routed = dialled.is_some_and(|d| {
        selected.iter().any(|k| {
            k.addresses.contains(&d)
                && k.published
                    .iter()
                    .any(|p| covered(p) && p.proto == c.proto && p.container_port == c.port)
        })
    });
    if published || routed {
        return None;
    }
    let names: Vec<&str> = selected.iter().map(|k| k.name.as_str()).collect();
    let port = format!("{}/{}", c.port, c.proto.name());
    let same_port = |p: &&PublishedPort| covered(p) && p.proto == c.proto && p.host_port == c.port;
    if dialled.is_none()
        && selected
            .iter()
            .flat_map(|k| k.published.iter())
            .any(|p| same_port(&p))
    {
        return Some(format!(
            "{} {} port {port}, but which address was dialled decides (none given)",
            names.join(", "),
            if names.len() == 1 { "publishes" } else { "publish" }
        ));
    }
    let uncovered = selected
        .iter()
        .flat_map(|k| k.published.iter())
        .any(|p| !covered(p) && (publishes(p) || p.proto == c.proto && p.container_port == c.port));
    Some(if uncovered {
        format!(
            "port {port} of {} is not among the rule's ports",
            names.join(", ")
        )
    } else {
        format!(
            "{} {} no port {port} there (a host port on an address it is bound to, or a container port at the container's own address)",
            names.join(", "),
            if names.len() == 1 { "publishes" } else { "publish" }
        )
    })
}

/// A packet as a hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Input interface.
    pub iif: String,
    /// Output interface (empty on the input hook).
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
    /// Whether conntrack relates it to another connection (ICMP error, FTP
    /// data): `ct state related`. Only meaningful when not `ct_new`.
    pub ct_related: bool,
    /// Whether it goes the reply way (server to client): `ct direction reply`.
    pub ct_reply: bool,
    /// Whether its connection carries one of dockfw's label bits (a dockfw
    /// `rules` chain judged it).
    pub ct_labelled: bool,
    /// Whether conntrack was told not to track it (`notrack`): then it has
    /// no original tuple (`dialled`, `dialled_port` are its own destination)
    /// and no NAT.
    pub untracked: bool,
    /// Whether the connection was destination-NATed.
    pub ct_dnat: bool,
    /// Whether its source is over every per-source rate (`limit`) a rule
    /// sets; the rate rule only meters new connections.
    pub over_rate: bool,
}

impl Packet {
    /// The first packet of `connection` arriving by `path`: DNATed to the
    /// default bridge, for the host (docker-proxy), or routed to the bridge.
    pub fn via(connection: &Connection, path: Via) -> Self {
        Self {
            iif: connection.interface.clone(),
            oif: match path {
                Via::Published | Via::Routed => "docker0".into(),
                Via::Proxied => String::new(),
            },
            source: connection.source,
            dialled: connection.dialled,
            dialled_port: connection.port,
            proto: connection.proto,
            ct_new: true,
            ct_related: false,
            ct_reply: false,
            ct_labelled: false,
            ct_dnat: path == Via::Published,
            untracked: false,
            over_rate: false,
        }
    }

    /// A later packet of `connection` arriving by `path`, from the client
    /// (established, original direction); `labelled`: whether a dockfw
    /// `rules` chain judged the connection when it was new.
    pub fn established(connection: &Connection, path: Via, labelled: bool) -> Self {
        Self {
            ct_new: false,
            ct_labelled: labelled,
            ..Self::via(connection, path)
        }
    }

    /// The first packet of a container's new connection going `direction`:
    /// from the default bridge, out through `eth0` (outbound) or onto the
    /// default bridge (between; `Direction::Inbound` is taken as between).
    /// Through docker-proxy (`proxied`) it is for the host: no output
    /// interface, judged on the input hook.
    pub fn from_container(connection: &ContainerConnection, direction: Direction) -> Self {
        Self {
            iif: "docker0".into(),
            oif: match direction {
                _ if connection.proxied => String::new(),
                Direction::Outbound => "eth0".into(),
                _ => "docker0".into(),
            },
            source: connection.source,
            dialled: Some(connection.destination),
            dialled_port: connection.port,
            proto: connection.proto,
            ct_new: true,
            ct_related: false,
            ct_reply: false,
            ct_labelled: false,
            untracked: false,
            ct_dnat: false,
            over_rate: false,
        }
    }

    /// `connection`'s first packet arriving by `path` after a `notrack` rule
    /// (in anyone's table) exempted it from conntrack: no DNAT happens, so
    /// a packet for a published host port is for the host (docker-proxy).
    pub fn untracked(connection: &Connection, path: Via) -> Self {
        let path = match path {
            Via::Published => Via::Proxied,
            other => other,
        };
        Self {
            ct_new: false,
            ct_dnat: false,
            untracked: true,
            ..Self::via(connection, path)
        }
    }
}

/// The final verdict of a packet in a ruleset, and the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOutcome {
    /// `Accept` also when no rule decided (the base chain's policy).
    pub verdict: Verdict,
    /// Chain of the deciding rule (`None` for the base chain policy).
    pub chain: Option<String>,
    /// Comment of the deciding rule.
    pub comment: Option<String>,
    /// In audit mode, the drop or reject the deciding chain stands for
    /// but only logged: the packet was accepted.
    pub would: Option<Action>,
    /// Every counter the packet passed, in order: the rules that matched
    /// it and carry a [`Statement::Counter`].
    pub counted: Vec<CounterAt>,
}

/// Which rule decides `connection`, by running the compiled ruleset, for a
/// connection Docker publishes by DNAT ([`Via::Published`]).
pub fn evaluate_ruleset(ruleset: &Ruleset, connection: &Connection) -> Decision {
    evaluate_ruleset_via(ruleset, connection, Via::Published)
}

/// Which rule decides `connection` arriving by `path`, by running the
/// compiled ruleset's base chains on that path's hook.
pub fn evaluate_ruleset_via(ruleset: &Ruleset, connection: &Connection, path: Via) -> Decision {
    simulate_packet(ruleset, path.hook(), &Packet::via(connection, path)).decision()
}

/// Which rule decides a container's new connection going `direction`, by
/// running the compiled ruleset's forward chains.
pub fn evaluate_ruleset_container(
    ruleset: &Ruleset,
    connection: &ContainerConnection,
    direction: Direction,
) -> Decision {
    let hook = if connection.proxied {
        Hook::Input
    } else {
        Hook::Forward
    };
    simulate_packet(ruleset, hook, &Packet::from_container(connection, direction)).decision()
}

impl PacketOutcome {
    /// The decision this outcome stands for: a policy rule's or the
    /// default's chain decided, or nothing dockfw judges did.
    ///
    /// In audit mode the action is the denial the chain only logged.
    pub fn decision(&self) -> Decision {
        let action = self.would.unwrap_or(match self.verdict {
            Verdict::Drop => Action::Drop,
            Verdict::Reject(_) => Action::Reject,
            _ => Action::Allow,
        });
        match (self.chain.as_deref().and_then(decided_by_chain), &self.comment) {
            (Some((_, None)), _) => Decision::Default { action },
            (Some((_, Some(_))), Some(comment)) => Decision::Rule {
                name: comment.clone(),
                action,
            },
            _ => Decision::NotJudged,
        }
    }
}

/// Runs `packet` through the base chains of `hook`, lowest priority first,
/// as the kernel would (assuming no `max_connections` is exceeded, and a
/// `limit` only when `packet.over_rate`).
pub(crate) fn simulate_packet(ruleset: &Ruleset, hook: Hook, packet: &Packet) -> PacketOutcome {
    let mut bases: Vec<_> = ruleset
        .chains
        .iter()
        .filter(|c| c.hook.is_some_and(|h| h.hook == hook))
        .collect();
    bases.sort_by_key(|c| c.hook.map(|h| h.priority));
    let mut last_accept = None;
    let mut counted = Vec::new();
    for base in bases {
        match run_chain(ruleset, &base.name, packet, 0, &mut counted) {
            Flow::Final(outcome) if outcome.verdict == Verdict::Accept => last_accept = Some(outcome),
            Flow::Final(outcome) => return PacketOutcome { counted, ..outcome },
            Flow::Continue => {}
        }
    }
    let outcome = last_accept.unwrap_or(PacketOutcome {
        verdict: Verdict::Accept,
        chain: None,
        comment: None,
        would: None,
        counted: Vec::new(),
    });
    PacketOutcome { counted, ..outcome }
}

enum Flow {
    Continue,
    Final(PacketOutcome),
}

/// nftables allows 16 nested jumps; the compiler needs three.
const MAX_DEPTH: usize = 16;

fn run_chain(
    ruleset: &Ruleset,
    name: &str,
    packet: &Packet,
    depth: usize,
    counted: &mut Vec<CounterAt>,
) -> Flow {
    let Some(chain) = ruleset.chain(name) else {
        return Flow::Continue;
    };
    if depth > MAX_DEPTH {
        return Flow::Continue;
    }
    for (index, rule) in chain.rules.iter().enumerate() {
        if !rule.matches.iter().all(|m| holds(ruleset, m, packet)) {
            continue;
        }
        if rule.statements.contains(&Statement::Counter) {
            counted.push(CounterAt {
                chain: chain.name.clone(),
                index,
            });
        }
        match &rule.verdict {
            None => {}
            Some(Verdict::Return) => return Flow::Continue,
            Some(Verdict::Jump(target)) => {
                if let Flow::Final(outcome) = run_chain(ruleset, target, packet, depth + 1, counted) {
                    return Flow::Final(outcome);
                }
            }
            Some(Verdict::Goto(target)) => return run_chain(ruleset, target, packet, depth + 1, counted),
            Some(verdict) => {
                let would = (*verdict == Verdict::Accept)
                    .then(|| audited_action(chain))
                    .flatten();
                return Flow::Final(PacketOutcome {
                    verdict: verdict.clone(),
                    chain: Some(chain.name.clone()),
                    comment: Some(rule.comment.clone()),
                    would,
                    counted: Vec::new(),
                });
            }
        }
    }
    Flow::Continue
}

fn in_addr_set(ruleset: &Ruleset, set: &str, addr: IpAddr) -> bool {
    match (ruleset.set(set).map(|s| &s.elements), addr) {
        (Some(SetElements::Ipv4(v4) | SetElements::Ipv4Addrs(v4)), IpAddr::V4(a)) => {
            interval::contains(v4, a)
        }
        (Some(SetElements::Ipv6(v6) | SetElements::Ipv6Addrs(v6)), IpAddr::V6(a)) => {
            interval::contains(v6, a)
        }
        _ => false,
    }
}

fn holds(ruleset: &Ruleset, m: &Match, p: &Packet) -> bool {
    let family = Family::of(p.source);
    match m {
        Match::IifName(name) => name.matches(&p.iif),
        Match::OifName(name) => name.matches(&p.oif),
        Match::NfProto(f) => *f == family,
        Match::L4Proto(proto) => *proto == p.proto,
        // The simulated packets are unicast.
        Match::PacketType(_) => false,
        Match::CtState(CtState::New) => !p.untracked && p.ct_new,
        Match::CtState(CtState::EstablishedOrRelated) => !p.untracked && !p.ct_new,
        Match::CtState(CtState::Established) => !p.untracked && !p.ct_new && !p.ct_related,
        Match::CtState(CtState::Untracked) => p.untracked,
        // The simulated packets are valid ones.
        Match::CtState(CtState::Invalid) => false,
        Match::CtState(CtState::NotNew) => !p.ct_new,
        // An untracked packet has no conntrack entry: every `ct` match fails.
        Match::CtStatusDnat => !p.untracked && p.ct_dnat,
        Match::CtDirectionOriginal => !p.untracked && !p.ct_reply,
        Match::CtUnlabelled => !p.untracked && !p.ct_labelled,
        Match::SourceIn { family: f, set } => *f == family && in_addr_set(ruleset, set, p.source),
        Match::DialledAddrIn { family: f, set } => {
            !p.untracked
                && *f == family
                && p.dialled
                    .is_some_and(|d| Family::of(d) == family && in_addr_set(ruleset, set, d))
        }
        Match::DialledPort(ports) => !p.untracked && ports.matches(p.dialled_port, ruleset),
        // The packet's own destination is the dialled one unless it was NATed.
        Match::DestAddrIn { family: f, set } => {
            !p.ct_dnat
                && *f == family
                && p.dialled
                    .is_some_and(|d| Family::of(d) == family && in_addr_set(ruleset, set, d))
        }
        Match::DestPort(ports) => !p.ct_dnat && ports.matches(p.dialled_port, ruleset),
        // Logging's rate limit: assume under the rate.
        Match::Limit { .. } => true,
        Match::SourceRateOver { .. } => p.over_rate,
        // Assume the source stays within its connection count.
        Match::SourceConnectionsOver { .. } => false,
    }
}
