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

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Where outside traffic arrives, and what happens when no rule decides.
    pub guard: Guard,
    /// Named address lists, by name.
    pub sets: BTreeMap<String, Set>,
    /// Rules, judged top to bottom; the first that matches decides.
    pub rules: Vec<Rule>,
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
        self.selects_containers()
            && self.container.as_ref().is_none_or(|name| *name == container.name)
            && self.labels.as_ref().is_none_or(|labels| {
                labels
                    .iter()
                    .all(|(key, value)| container.labels.get(key) == Some(value))
            })
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
}
