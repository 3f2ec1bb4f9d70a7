//! Proptest strategies for random policies, running containers and
//! connections (feature `proptest`). One generator for every property test
//! that needs policies: the evaluator/ruleset agreement test here, and the
//! netlink round trip in dockfw-nft.
//!
//! Policies use every field of the language with values chosen to overlap
//! (networks inside networks, hosts and container addresses, ports inside
//! ranges), containers publish on every kind of binding, and connections
//! dial host addresses, container addresses and unknown ones, so that rules
//! both match and miss.

use crate::eval::{Connection, ContainerConnection, Via};
use crate::policy::{Container, Direction, PublishedPort};
use crate::ruleset::Proto;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Sources for `from` and `[sets]`: nested and overlapping, both families,
/// the extremes of the address space.
const SOURCES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.3",
    "192.0.2.10-192.0.2.20",
    "0.0.0.0/0",
    "255.255.255.255",
    "2001:db8::/32",
    "2001:db8::1",
    "2001:db8:1::5-2001:db8:1::9",
    "::/0",
    "ffff::/16",
];
/// Dialled addresses for `to`: host addresses and container networks.
const HOSTS: &[&str] = &[
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.0/30",
    "2001:db8:ff::5",
    "0.0.0.0/0",
    "172.17.0.0/16",
    "fd00:d0c::2",
];
/// Port entries: single, ranges, both protocols, the top port.
const PORTS: &[&str] = &[
    "80",
    "443/tcp",
    "8000-8100",
    "53/udp",
    "1000-2000/udp",
    "22",
    "8081",
    "5432",
    "65535",
    "1-1024/tcp",
];
/// Rule interfaces (all covered by the guarded `eth0`, `eth1`, `wg*`).
const INTERFACES: &[&str] = &["eth0", "eth1", "wg*", "wg0"];
/// Rates for `limit`.
const RATES: &[&str] = &["5/second", "100/minute", "1000/hour", "10000/day"];
/// Labels rules select by and containers carry (key, value).
const LABELS: &[(&str, &str)] = &[("tier", "web"), ("tier", "db"), ("env", "prod")];
/// Container names rules name; "gone" never runs.
const RULE_CONTAINERS: &[&str] = &["web", "db", "gone"];
/// Running containers, and the addresses each may have.
const CONTAINERS: &[(&str, &[&str])] = &[
    ("web", &["172.17.0.2", "fd00:d0c::2"]),
    ("db", &["172.18.0.3", "fd00:d0c::3"]),
    ("other", &["172.17.0.4"]),
];
/// Host addresses published ports may be bound to (loopback never arrives from outside).
const BINDINGS: &[&str] = &[
    "0.0.0.0",
    "::",
    "203.0.113.5",
    "203.0.113.6",
    "2001:db8:ff::5",
    "127.0.0.1",
];
/// Ports that policies, containers and connections share, so they meet.
const COMMON_PORTS: &[u16] = &[22, 53, 80, 443, 1500, 5432, 8000, 8050, 8081, 8443, 65535];

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A label table holding at most one value per key.
fn label_table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

prop_compose! {
    /// One `[[rule]]`, named `r<index>`, using any of the rule fields (its
    /// `from` may name sets `a`, `b` and the dynamic set `d`).
    pub fn rule_text(index: usize)(
        interfaces in proptest::option::of(subsequence(INTERFACES.to_vec(), 1..3)),
        from in proptest::option::of(subsequence([SOURCES, &["@a", "@b", "@d", "any"]].concat(), 1..4)),
        to in proptest::option::of(subsequence(HOSTS.to_vec(), 1..3)),
        ports in proptest::option::of(subsequence(PORTS.to_vec(), 1..4)),
        container in proptest::option::of(select(RULE_CONTAINERS.to_vec())),
        labels in proptest::option::of(subsequence(LABELS.to_vec(), 1..3)),
        action in select(vec!["allow", "drop", "reject"]),
        log in any::<bool>(),
        limit in proptest::option::of((select(RATES.to_vec()), proptest::option::of(1u32..100))),
        max_connections in proptest::option::of(1u32..1000),
    ) -> String {
        let mut text = format!("[[rule]]\nname = \"r{index}\"\naction = \"{action}\"\nlog = {log}\n");
        if let Some(i) = interfaces { text += &format!("interfaces = {}\n", list(&i)); }
        if let Some(f) = from { text += &format!("from = {}\n", list(&f)); }
        if let Some(t) = to { text += &format!("to = {}\n", list(&t)); }
        if let Some(p) = ports { text += &format!("ports = {}\n", list(&p)); }
        if let Some(c) = container { text += &format!("container = \"{c}\"\n"); }
        if let Some(labels) = labels {
            // Two values of one key select nothing; keep the last, as TOML would refuse both.
            let table: Vec<String> = label_table(&labels).iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"")).collect();
            text += &format!("labels = {{ {} }}\n", table.join(", "));
        }
        if action == "allow" {
            match limit {
                Some((rate, Some(burst))) => text += &format!("limit = {{ rate = \"{rate}\", burst = {burst} }}\n"),
                Some((rate, None)) => text += &format!("limit = {{ rate = \"{rate}\" }}\n"),
                None => {}
            }
            if let Some(n) = max_connections { text += &format!("max_connections = {n}\n"); }
        }
        text
    }
}

/// Outside addresses containers connect to, for outbound rules' `to`.
const OUTSIDE: &[&str] = &[
    "203.0.113.99",
    "203.0.113.0/24",
    "198.51.100.1-198.51.100.9",
    "0.0.0.0/0",
    "2001:db8:99::/48",
    "2001:db8:99::1",
    "::/0",
    "172.17.0.0/16",
];

/// `{ container = "…" }`, `{ labels = {…} }` or both: a between rule's
/// `from` or `to`.
fn selector_text() -> impl Strategy<Value = String> {
    (
        proptest::option::of(select(RULE_CONTAINERS.to_vec())),
        proptest::option::of(subsequence(LABELS.to_vec(), 1..3)),
    )
        .prop_filter("names containers", |(c, l)| c.is_some() || l.is_some())
        .prop_map(|(container, labels)| {
            let mut parts = Vec::new();
            if let Some(c) = container {
                parts.push(format!("container = \"{c}\""));
            }
            if let Some(labels) = labels {
                let table: Vec<String> = label_table(&labels)
                    .iter()
                    .map(|(k, v)| format!("\"{k}\" = \"{v}\""))
                    .collect();
                parts.push(format!("labels = {{ {} }}", table.join(", ")));
            }
            format!("{{ {} }}", parts.join(", "))
        })
}

prop_compose! {
    /// One `[[outbound]]` rule, named `o<index>`: any container, name or
    /// labels; `to` outside addresses, sets `a` and the dynamic `d`.
    pub fn outbound_text(index: usize)(
        container in proptest::option::of(select(RULE_CONTAINERS.to_vec())),
        labels in proptest::option::of(subsequence(LABELS.to_vec(), 1..3)),
        to in proptest::option::of(subsequence([OUTSIDE, &["@a", "@d", "any"]].concat(), 1..4)),
        ports in proptest::option::of(subsequence(PORTS.to_vec(), 1..4)),
        action in select(vec!["allow", "drop", "reject"]),
        log in any::<bool>(),
    ) -> String {
        let mut text = format!("[[outbound]]\nname = \"o{index}\"\naction = \"{action}\"\nlog = {log}\n");
        if let Some(c) = container { text += &format!("container = \"{c}\"\n"); }
        if let Some(labels) = labels {
            let table: Vec<String> = label_table(&labels).iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"")).collect();
            text += &format!("labels = {{ {} }}\n", table.join(", "));
        }
        if let Some(t) = to { text += &format!("to = {}\n", list(&t)); }
        if let Some(p) = ports { text += &format!("ports = {}\n", list(&p)); }
        text
    }
}

prop_compose! {
    /// One `[[between]]` rule, named `b<index>`.
    pub fn between_text(index: usize)(
        from in proptest::option::of(selector_text()),
        to in proptest::option::of(selector_text()),
        ports in proptest::option::of(subsequence(PORTS.to_vec(), 1..4)),
        action in select(vec!["allow", "drop", "reject"]),
        log in any::<bool>(),
    ) -> String {
        let mut text = format!("[[between]]\nname = \"b{index}\"\naction = \"{action}\"\nlog = {log}\n");
        if let Some(f) = from { text += &format!("from = {f}\n"); }
        if let Some(t) = to { text += &format!("to = {t}\n"); }
        if let Some(p) = ports { text += &format!("ports = {}\n", list(&p)); }
        text
    }
}

/// A whole valid policy: a guard on `eth0`, `eth1` and `wg*` with any
/// default (inbound, outbound, between), logging, priority and mode, sets
/// `a` and `b`, the dynamic set `d` (rules name it in `from`, outbound
/// rules in `to`), up to six rules, and up to four outbound and four
/// between rules.
pub fn policy_text() -> impl Strategy<Value = String> {
    (
        (
            select(vec!["drop", "reject", "accept"]),
            select(vec!["drop", "reject", "accept"]),
            select(vec!["drop", "reject", "accept"]),
            select(vec!["enforce", "audit"]),
        ),
        any::<bool>(),
        -99i32..=-1,
        subsequence(SOURCES.to_vec(), 1..4),
        subsequence(SOURCES.to_vec(), 1..4),
        (0..7usize).prop_flat_map(|n| (0..n).map(rule_text).collect::<Vec<_>>()),
        (0..5usize).prop_flat_map(|n| (0..n).map(outbound_text).collect::<Vec<_>>()),
        (0..5usize).prop_flat_map(|n| (0..n).map(between_text).collect::<Vec<_>>()),
    )
        .prop_map(
            |(
                (default, outbound, between, mode),
                log,
                priority,
                a,
                b,
                rules,
                outbound_rules,
                between_rules,
            )| {
                format!(
                    "[guard]\ninterfaces = {}\ndefault = \"{default}\"\nlog = {log}\npriority = {priority}\n\
                     outbound = \"{outbound}\"\nbetween = \"{between}\"\nmode = \"{mode}\"\n\
                     [sets]\na = {}\nb = {}\nd = {{ dynamic = true, timeout = \"1h\" }}\n{}{}{}",
                    list(&["eth0", "eth1", "wg*"]),
                    list(&a),
                    list(&b),
                    rules.concat(),
                    outbound_rules.concat(),
                    between_rules.concat(),
                )
            },
        )
}

/// Outside addresses containers' connections go to.
const DESTINATIONS: &[&str] = &[
    "203.0.113.99",
    "203.0.113.7",
    "198.51.100.5",
    "8.8.8.8",
    "10.1.2.3",
    "2001:db8:99::1",
    "2001:4860::8888",
];

/// Connections containers open, with their direction: from one of
/// `containers`' addresses (or an address no container has), to an
/// outside address (outbound), to one of their addresses (between), or to
/// a host address at a port (often one they publish) through docker-proxy
/// (between, `proxied`).
pub fn container_connections(
    containers: &[Container],
    count: usize,
) -> impl Strategy<Value = Vec<(ContainerConnection, Direction)>> + use<> {
    let mut inside: Vec<IpAddr> = containers
        .iter()
        .flat_map(|c| c.addresses.iter().copied())
        .collect();
    inside.extend(["172.17.0.9", "fd00:d0c::9"].map(|a| a.parse::<IpAddr>().expect("an address")));
    let outside: Vec<IpAddr> = DESTINATIONS
        .iter()
        .map(|a| a.parse().expect("an address"))
        .collect();
    // Host addresses a container may dial; and what running containers
    // publish there (a bound address, or any host address).
    let hosts: Vec<IpAddr> = ["203.0.113.5", "203.0.113.6", "2001:db8:ff::5", "172.17.0.1"]
        .iter()
        .map(|a| a.parse().expect("an address"))
        .collect();
    let mut published: Vec<(IpAddr, u16, Proto)> = Vec::new();
    for p in containers.iter().flat_map(|c| c.published.iter()) {
        match p.host_addr.filter(|a| !a.is_unspecified()) {
            Some(bound) => published.push((bound, p.host_port, p.proto)),
            None => published.extend(hosts.iter().map(|&h| (h, p.host_port, p.proto))),
        }
    }
    let mut proxied: Vec<(IpAddr, Option<(u16, Proto)>)> = published
        .into_iter()
        .map(|(a, port, proto)| (a, Some((port, proto))))
        .collect();
    proxied.extend(hosts.iter().map(|&h| (h, None)));
    let connection = (
        select(inside.clone()),
        prop_oneof![
            2 => select(outside).prop_map(|d| (d, Direction::Outbound, false, None)),
            2 => select(inside).prop_map(|d| (d, Direction::Between, false, None)),
            1 => select(proxied).prop_map(|(d, fixed)| (d, Direction::Between, true, fixed)),
        ],
        port(),
        select(vec![Proto::Tcp, Proto::Udp]),
    )
        .prop_map(
            |(source, (destination, direction, proxied, fixed), port, proto)| {
                let (port, proto) = fixed.unwrap_or((port, proto));
                (
                    ContainerConnection {
                        source,
                        destination,
                        port,
                        proto,
                        proxied,
                    },
                    direction,
                )
            },
        );
    proptest::collection::vec(connection, count)
}

/// Running containers, `count` connections from outside (with paths) and
/// `count` connections containers open (with directions).
#[allow(clippy::type_complexity)]
pub fn containers_and_all_connections(
    count: usize,
) -> impl Strategy<
    Value = (
        Vec<Container>,
        Vec<(Connection, Via)>,
        Vec<(ContainerConnection, Direction)>,
    ),
> {
    containers().prop_flat_map(move |containers| {
        let inbound = proptest::collection::vec((connection_to(&containers), path()), count);
        let own = container_connections(&containers, count);
        (Just(containers), inbound, own)
    })
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => select(COMMON_PORTS.to_vec()), 1 => 1u16..=65535]
}

/// One published port: any binding (or none), host and container ports
/// mostly from a few common ones, either protocol.
pub fn published() -> impl Strategy<Value = PublishedPort> {
    (
        proptest::option::of(select(BINDINGS.to_vec())),
        port(),
        port(),
        select(vec![Proto::Tcp, Proto::Udp]),
    )
        .prop_map(|(host_addr, host_port, container_port, proto)| PublishedPort {
            host_addr: host_addr.map(|a| a.parse().expect("a valid binding")),
            host_port,
            container_port,
            proto,
        })
}

/// Running containers: some of `web`, `db` and `other`, each publishing up to three
/// ports, carrying some of the labels rules select by, with at least one of its addresses.
pub fn containers() -> impl Strategy<Value = Vec<Container>> {
    subsequence(CONTAINERS.to_vec(), 0..=CONTAINERS.len()).prop_flat_map(|chosen| {
        chosen
            .into_iter()
            .map(|(name, addresses)| {
                (
                    proptest::collection::vec(published(), 0..4),
                    subsequence(LABELS.to_vec(), 0..=LABELS.len()),
                    subsequence(addresses.to_vec(), 1..=addresses.len()),
                )
                    .prop_map(move |(published, labels, addresses)| Container {
                        name: name.into(),
                        labels: label_table(&labels),
                        published,
                        addresses: addresses
                            .iter()
                            .map(|a| a.parse().expect("a valid address"))
                            .collect(),
                    })
            })
            .collect::<Vec<_>>()
    })
}

const CLIENTS: &[&str] = &[
    "10.1.2.3",
    "10.200.0.1",
    "192.0.2.15",
    "192.0.2.21",
    "8.8.8.8",
    "2001:db8::1",
    "2001:db8:1::7",
    "2001:4860::8888",
];
const DIALLED: &[&str] = &[
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.9",
    "2001:db8:ff::5",
    "2001:db8:ff::6",
    "172.17.0.2",
    "172.18.0.3",
    "172.17.0.4",
    "fd00:d0c::2",
    "fd00:d0c::3",
];

/// Connections from any client on (mostly) guarded interfaces, dialling one
/// of `targets` (address or none, port, protocol).
fn connection_from(targets: Vec<(Option<IpAddr>, u16, Proto)>) -> impl Strategy<Value = Connection> + use<> {
    (
        prop_oneof![
            4 => select(vec!["eth0", "eth1", "wg0", "wg7"]),
            // Not guarded. (What arrives from a Docker bridge is a container's
            // own connection: `container_connections`.)
            1 => select(vec!["lo", "eth9"]),
        ],
        select(CLIENTS.to_vec()),
        select(targets),
    )
        .prop_map(|(interface, source, (dialled, port, proto))| Connection {
            interface: interface.into(),
            source: source.parse().expect("a valid source"),
            dialled,
            port,
            proto,
        })
}

/// A new connection: mostly from a guarded interface, from inside and outside
/// the generated sources, dialling a host address, a container's address,
/// another address or none, at a common port.
pub fn connection() -> impl Strategy<Value = Connection> + use<> {
    let mut targets = Vec::new();
    for dialled in DIALLED
        .iter()
        .map(|a| Some(a.parse().expect("a valid address")))
        .chain([None])
    {
        for &port in COMMON_PORTS {
            targets.extend([(dialled, port, Proto::Tcp), (dialled, port, Proto::Udp)]);
        }
    }
    connection_from(targets)
}

/// Like [`connection`], but half of the time dialling what one of
/// `containers` publishes: a host port at an address it is bound to (or any
/// host address), or a container port at the container's own address.
pub fn connection_to(containers: &[Container]) -> impl Strategy<Value = Connection> + use<> {
    let hosts: Vec<IpAddr> = DIALLED
        .iter()
        .map(|a| a.parse().expect("a valid address"))
        .filter(|a: &IpAddr| !containers.iter().any(|c| c.addresses.contains(a)))
        .collect();
    let mut targets = Vec::new();
    for container in containers {
        for p in &container.published {
            match p.host_addr.filter(|a| !a.is_unspecified()) {
                Some(bound) => targets.push((Some(bound), p.host_port, p.proto)),
                None => targets.extend(hosts.iter().map(|h| (Some(*h), p.host_port, p.proto))),
            }
            targets.extend(
                container
                    .addresses
                    .iter()
                    .map(|a| (Some(*a), p.container_port, p.proto)),
            );
        }
    }
    if targets.is_empty() {
        return connection().boxed();
    }
    prop_oneof![connection(), connection_from(targets)].boxed()
}

/// Running containers and `count` connections with paths, many of which
/// reach the containers.
pub fn containers_and_connections(
    count: usize,
) -> impl Strategy<Value = (Vec<Container>, Vec<(Connection, Via)>)> {
    containers().prop_flat_map(move |containers| {
        let connections = proptest::collection::vec((connection_to(&containers), path()), count);
        (Just(containers), connections)
    })
}

/// Any path into a container.
pub fn path() -> impl Strategy<Value = Via> {
    select(vec![Via::Published, Via::Proxied, Via::Routed])
}

/// Crate internals the integration tests check directly; not part of the
/// API (the table layout and the evaluator may change without notice).
pub mod internals {
    use crate::eval::{Packet, PacketOutcome, Via};
    use crate::names::NameError;
    use crate::policy::{Container, Policy};
    use crate::revoke::Tracked;
    use crate::ruleset::{Hook, IfName, Ruleset};

    /// [`crate::layout`]'s chain for traffic from a guarded interface.
    pub const CHAIN_GUARDED: &str = crate::layout::CHAIN_GUARDED;
    /// How many interface patterns get a conntrack label bit.
    pub const MAX_CT_LABELLED_PATTERNS: usize = crate::layout::MAX_CT_LABELLED_PATTERNS;
    /// The comment of the rules that set conntrack label bits.
    pub const CT_LABEL_COMMENT: &str = crate::layout::CT_LABEL_COMMENT;

    /// The conntrack label bit of each interface pattern of `policy`.
    pub fn interface_ct_labels(policy: &Policy) -> Vec<(IfName, u8)> {
        crate::layout::interface_ct_labels(policy)
    }

    /// Checks a rule name as the parser does.
    pub fn check_rule_name(name: &str) -> Result<(), NameError> {
        crate::names::check_rule_name(name)
    }

    /// The way a tracked connection reached its destination.
    pub fn path_of(tracked: &Tracked, containers: &[Container]) -> Via {
        crate::revoke::path_of(tracked, containers)
    }

    /// Runs `packet` through the base chains of `hook`, as the kernel would.
    pub fn simulate_packet(ruleset: &Ruleset, hook: Hook, packet: &Packet) -> PacketOutcome {
        crate::eval::simulate_packet(ruleset, hook, packet)
    }
}
