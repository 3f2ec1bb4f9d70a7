//! The validated policy: what a user's TOML file means.
//!
//! Build one with [`crate::parse`]; every value in it has been checked, so
//! compiling and evaluating it cannot fail.

use crate::diag::Location;
use crate::interval::{self, Interval};
use crate::ruleset::{IfName, Proto, Rate};
use crate::sets::Set;
use crate::values::AddrSet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Default path of the policy file.
pub const DEFAULT_PATH: &str = "/etc/dockfw/policy.toml";
/// Default name of dockfw's nftables table.
pub const DEFAULT_TABLE: &str = "dockfw";
/// Default priority of dockfw's base chains, forward and input (Docker's filter chains run at 0).
pub(crate) const DEFAULT_PRIORITY: i32 = -5;
/// Default NFLOG group dockfw logs to (`[guard] log_group`); ulogd's
/// example stacks use groups 0 to 2, so this one is left to dockfw.
pub const DEFAULT_LOG_GROUP: u16 = 23;

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Where outside traffic arrives, and what happens when no rule decides.
    pub guard: Guard,
    /// Named address lists, by name.
    pub sets: BTreeMap<String, Set>,
    /// Rules, judged top to bottom; the first that matches decides.
    pub rules: Vec<Rule>,
    /// `[[outbound]]` rules: new connections from containers to the
    /// outside, judged top to bottom.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<ContainerRule>,
    /// `[[between]]` rules: new connections from one container to another,
    /// judged top to bottom.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub between: Vec<ContainerRule>,
}

/// The `[guard]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guard {
    /// Interfaces outside traffic arrives on; only traffic from these is judged.
    pub interfaces: Vec<IfName>,
    /// Fate of a new connection that no rule decides.
    pub default: Action,
    /// Log connections that get the default fate (rate-limited).
    pub log: bool,
    /// Name of dockfw's nftables table (family inet).
    pub table: String,
    /// Priority of the forward- and input-hook chains, between -99 and -1.
    pub priority: i32,
    /// After each apply, cut established connections the policy no longer
    /// admits (default true).
    pub revoke: bool,
    /// Fate of a new connection from a container to the outside that no
    /// `[[outbound]]` rule decides (default allow: not judged).
    pub outbound: Action,
    /// Fate of a new connection from one container to another that no
    /// `[[between]]` rule decides (default allow: not judged).
    pub between: Action,
    /// Enforce the policy, or only log and count what it would deny.
    pub mode: Mode,
    /// Where log lines go (`log = true`, audit mode): an NFLOG group that
    /// `dockfw-nft log` follows, or the kernel log.
    pub log_to: LogTarget,
}

/// `[guard] log_to` and `log_group`: where the guard's log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogTarget {
    /// NFLOG group N (`log group N`): read by `dockfw-nft log` (or ulogd);
    /// lines nobody listens to are lost, and nothing reaches dmesg.
    Group(u16),
    /// The kernel log (dmesg, journald), as iptables' LOG does.
    Kernel,
}

impl Default for LogTarget {
    fn default() -> Self {
        Self::Group(DEFAULT_LOG_GROUP)
    }
}

impl LogTarget {
    /// The NFLOG group, or `None` for the kernel log.
    pub fn group(self) -> Option<u16> {
        match self {
            Self::Group(group) => Some(group),
            Self::Kernel => None,
        }
    }
}

impl Guard {
    /// The default fate of `direction`.
    pub fn default_of(&self, direction: Direction) -> Action {
        match direction {
            Direction::Inbound => self.default,
            Direction::Outbound => self.outbound,
            Direction::Between => self.between,
        }
    }

    /// Whether traffic arriving on the interface `name` is judged: one of
    /// [`Guard::interfaces`] matches it.
    pub fn guards(&self, name: &str) -> bool {
        self.interfaces.iter().any(|pattern| pattern.matches(name))
    }

    /// Whether the guard only logs and counts what it would deny.
    pub fn audit(&self) -> bool {
        self.mode == Mode::Audit
    }
}

/// `[guard] mode`: whether drops and rejects happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Drops and rejects happen.
    #[default]
    Enforce,
    /// Every drop and reject (rules, defaults, limits, the untracked drop)
    /// is only logged and counted; the packet goes on as if allowed. For
    /// trying a policy on a live host before enforcing it.
    Audit,
}

impl Mode {
    /// The word the policy uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Audit => "audit",
        }
    }
}

/// Which way a judged connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a guarded interface to a container (`[[rule]]`).
    Inbound,
    /// From a container to the outside (`[[outbound]]`): from a Docker
    /// bridge, leaving through an interface that is no Docker bridge.
    Outbound,
    /// From one container to another (`[[between]]`): from a Docker bridge
    /// onto a Docker bridge (the same one, or another).
    Between,
}

impl Direction {
    /// The word the policy and the command use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Between => "between",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which containers: by `container` name, by `labels`, or both (a
/// container must satisfy both). At least one is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selector {
    /// Only the container of this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Only containers carrying all these labels (with these values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Selector {
    /// Whether `container` is one this selector selects.
    pub fn selects(&self, container: &Container) -> bool {
        selects(self.container.as_deref(), self.labels.as_ref(), container)
    }

    /// The running containers it selects, in the order given.
    pub fn selected<'c>(&self, containers: &'c [Container]) -> Vec<&'c Container> {
        containers.iter().filter(|c| self.selects(c)).collect()
    }

    /// Every address of the running containers it selects.
    pub fn addresses(&self, containers: &[Container]) -> AddrSet {
        AddrSet::from_addrs(
            self.selected(containers)
                .into_iter()
                .flat_map(|c| c.addresses.iter().copied()),
        )
    }

    /// In words: `container "web"`, `labels tier="db"`, or both.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.container {
            parts.push(format!("container \"{name}\""));
        }
        if let Some(labels) = &self.labels {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            parts.push(format!("labels {}", labels.join(", ")));
        }
        parts.join(" with ")
    }

    /// Whether every container `inner` selects is one this selects.
    pub(crate) fn covers(&self, inner: &Selector) -> bool {
        self.container
            .as_ref()
            .is_none_or(|name| inner.container.as_ref() == Some(name))
            && self.labels.as_ref().is_none_or(|outer| {
                inner
                    .labels
                    .as_ref()
                    .is_some_and(|labels| outer.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
    }
}

/// Whether `container` has the name `name` (if given) and carries all of `labels` (if given).
fn selects(name: Option<&str>, labels: Option<&BTreeMap<String, String>>, container: &Container) -> bool {
    name.is_none_or(|name| name == container.name)
        && labels.is_none_or(|labels| {
            labels
                .iter()
                .all(|(key, value)| container.labels.get(key) == Some(value))
        })
}

/// Where an `[[outbound]]` or `[[between]]` rule's connections go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// Outbound: addresses, networks, ranges and sets.
    Addresses(AddrMatch),
    /// Between: the selected running containers' addresses.
    Containers(Selector),
}

/// One `[[outbound]]` or `[[between]]` rule: new connections that a
/// container opens. Fields that are `None` match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRule {
    /// Unique name in the policy (default "outbound N" or "between N").
    pub name: String,
    /// Outbound or between.
    pub direction: Direction,
    /// The containers opening the connection (their addresses are the
    /// source); `None`: any container (anything arriving from a Docker bridge).
    pub from: Option<Selector>,
    /// Where the connection goes (the packet's own destination: between
    /// containers, the container's address, whatever NAT happened before).
    pub to: Option<Destination>,
    /// Destination ports (between containers: the container port).
    pub ports: Option<PortSet>,
    /// The entries of `ports` as written, each with its place.
    pub port_entries: Vec<PortEntry>,
    /// What happens to matching connections.
    pub action: Action,
    /// Log what this rule decides (rate-limited).
    pub log: bool,
    /// Where the rule starts in the policy file.
    pub location: Option<Location>,
    /// Where each field's value starts in the policy file, by key
    /// (`from.container`, `to.labels`, … for between rules).
    pub field_locations: BTreeMap<String, Location>,
}

impl ContainerRule {
    /// The selectors naming containers, each with the field it is written
    /// in (`container`/`labels` for outbound, `from`/`to` for between).
    pub fn selectors(&self) -> Vec<(&'static str, &Selector)> {
        let mut out = Vec::new();
        if let Some(from) = &self.from {
            out.push(("from", from));
        }
        if let Some(Destination::Containers(to)) = &self.to {
            out.push(("to", to));
        }
        out
    }

    /// The addresses `to` lists, for an outbound rule.
    pub fn to_addresses(&self) -> Option<&AddrMatch> {
        match &self.to {
            Some(Destination::Addresses(addrs)) => Some(addrs),
            _ => None,
        }
    }
}

/// What a rule (or the default) does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// dockfw does not stop it; Docker's own rules still run after ours.
    Allow,
    /// Discard silently: the client times out.
    Drop,
    /// Discard and answer: TCP reset, or ICMP/ICMPv6 administratively prohibited.
    Reject,
}

impl Action {
    /// The word the policy uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Drop => "drop",
            Self::Reject => "reject",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[[rule]]`. Fields that are `None` match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Unique name (default "rule N").
    pub name: String,
    /// Interfaces the connection must arrive on (a subset of the guarded ones).
    pub interfaces: Option<Vec<IfName>>,
    /// Source addresses.
    pub from: Option<AddrMatch>,
    /// Addresses the client dialled, before any NAT: host addresses, or
    /// (routed without NAT) container addresses.
    pub to: Option<AddrMatch>,
    /// Ports the client dialled: published host ports (or, for traffic
    /// routed to a container without NAT, container ports). For a rule that
    /// selects containers, which of their published ports (by host port) it covers.
    pub ports: Option<PortSet>,
    /// The entries of `ports` as written, each with its place (for messages).
    pub port_entries: Vec<PortEntry>,
    /// Only containers of this name.
    pub container: Option<String>,
    /// Only containers carrying all these labels (with these values).
    pub labels: Option<BTreeMap<String, String>>,
    /// What happens to matching connections.
    pub action: Action,
    /// Log what this rule decides (rate-limited).
    pub log: bool,
    /// Allow rules: per-source rate of new connections above which they are dropped.
    pub limit: Option<Limit>,
    /// Allow rules: per-source concurrent connections above which new ones are dropped.
    pub max_connections: Option<u32>,
    /// Where the rule starts in the policy file.
    pub location: Option<Location>,
    /// Where each field's value starts in the policy file, by key.
    pub field_locations: BTreeMap<String, Location>,
}

impl Rule {
    /// Whether the rule names containers (`container` or `labels`): it then
    /// applies only to what the containers it selects publish.
    pub fn selects_containers(&self) -> bool {
        self.container.is_some() || self.labels.is_some()
    }

    /// Whether `container` is one this rule selects: it has the rule's
    /// `container` name and carries all of its `labels`. A rule that names no
    /// containers selects none.
    pub fn selects(&self, container: &Container) -> bool {
        self.selects_containers() && selects(self.container.as_deref(), self.labels.as_ref(), container)
    }

    /// The running containers this rule selects, in the order given.
    pub fn selected<'c>(&self, containers: &'c [Container]) -> Vec<&'c Container> {
        containers.iter().filter(|c| self.selects(c)).collect()
    }
}

/// One entry of a rule's `ports` (`443`, `"8000-8100/tcp"`), with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortEntry {
    /// Its protocol.
    pub proto: Proto,
    /// Its ports.
    pub ports: Interval<u16>,
    /// Where it is written.
    pub location: Option<Location>,
}

/// A list of addresses as written, and the addresses it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddrMatch {
    /// The entries as written (for messages).
    pub entries: Vec<String>,
    /// When the list is exactly one `@set`: that set's name.
    pub only_set: Option<String>,
    /// The addresses, normalised: every entry's, but the dynamic sets'.
    pub addrs: AddrSet,
    /// The dynamic sets the list names (`@banned`): their addresses are
    /// known only at run time, so they are not in `addrs`. Only `from`
    /// names dynamic sets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic: Vec<String>,
}

/// Ports per protocol, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PortSet {
    /// TCP ports.
    pub tcp: Vec<Interval<u16>>,
    /// UDP ports.
    pub udp: Vec<Interval<u16>>,
}

impl PortSet {
    /// The set of exactly these ports.
    pub(crate) fn from_ports(ports: impl IntoIterator<Item = (Proto, u16)>) -> Self {
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for (proto, port) in ports {
            match proto {
                Proto::Tcp => tcp.push(Interval::single(port)),
                Proto::Udp => udp.push(Interval::single(port)),
            }
        }
        Self {
            tcp: interval::normalize(tcp),
            udp: interval::normalize(udp),
        }
    }

    /// Every port of both protocols.
    pub(crate) fn everything() -> Self {
        let all = vec![Interval {
            first: 1,
            last: 65535,
        }];
        Self {
            tcp: all.clone(),
            udp: all,
        }
    }

    /// The ports of `proto`.
    pub fn of(&self, proto: Proto) -> &[Interval<u16>] {
        match proto {
            Proto::Tcp => &self.tcp,
            Proto::Udp => &self.udp,
        }
    }

    /// Whether `port/proto` is in the set.
    pub fn contains(&self, proto: Proto, port: u16) -> bool {
        interval::contains(self.of(proto), port)
    }

    /// Whether every port of `other` is in this set.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        interval::covers(&self.tcp, &other.tcp) && interval::covers(&self.udp, &other.udp)
    }

    /// Whether no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty()
    }
}

/// A per-source rate limit on new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// Sustained rate.
    pub rate: Rate,
    /// Connections allowed in a burst above the rate.
    pub burst: u32,
}

/// What Docker runs, as far as a policy cares: the input for `container` and
/// `labels` rules, and for the docker-proxy and routed paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Container name (without the leading '/').
    pub name: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Ports published on the host.
    pub published: Vec<PublishedPort>,
    /// The container's addresses on its networks: where routed (un-NATed)
    /// traffic to it is addressed.
    pub addresses: Vec<IpAddr>,
}

/// One published port: what clients dial on the host, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    /// The host address the port is bound to; `None` for all addresses.
    pub host_addr: Option<IpAddr>,
    /// The host port clients dial.
    pub host_port: u16,
    /// The container's own port.
    pub container_port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

impl Policy {
    /// Every interface pattern the policy names: the guarded ones, then each
    /// rule's `interfaces` (repeats included), in file order.
    pub fn interface_patterns(&self) -> impl Iterator<Item = &IfName> {
        let rules = self
            .rules
            .iter()
            .filter_map(|rule| rule.interfaces.as_ref())
            .flatten();
        self.guard.interfaces.iter().chain(rules)
    }

    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name == name)
    }

    /// The `[[outbound]]` or `[[between]]` rules.
    pub fn container_rules(&self, direction: Direction) -> &[ContainerRule] {
        match direction {
            Direction::Inbound => &[],
            Direction::Outbound => &self.outbound,
            Direction::Between => &self.between,
        }
    }

    /// Whether dockfw judges connections going `direction` at all: inbound
    /// always; outbound and between when the policy has rules for them or
    /// their default is not allow (else the table has no chains for them,
    /// as before these directions existed).
    pub fn judges(&self, direction: Direction) -> bool {
        match direction {
            Direction::Inbound => true,
            _ => {
                !self.container_rules(direction).is_empty()
                    || self.guard.default_of(direction) != Action::Allow
            }
        }
    }
}
