//! The lab's network: three namespaces joined by two veth pairs.
//!
//! ```text
//!  {p}-inet  eth0 ──veth── eth0  {p}-host  eth1 ──veth── eth0  {p}-lan
//!  "internet" client      docker host (dockerd, docker0)      LAN client
//! ```
//!
//! All addresses come from documentation/benchmark ranges and exist only
//! inside the lab namespaces.

use crate::cmd::ip;
use crate::error::Result;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A lab network namespace. `Client` is an alias used for probe sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    /// The docker host: runs dockerd; the firewall goes here.
    DockerHost,
    /// The "internet" side, reached through the host's eth0.
    Internet,
    /// The LAN side, reached through the host's eth1.
    Lan,
}

impl Ns {
    /// All namespaces, host first.
    pub const ALL: [Ns; 3] = [Ns::DockerHost, Ns::Internet, Ns::Lan];

    /// Suffix appended to the lab prefix to name the namespace.
    pub fn suffix(self) -> &'static str {
        match self {
            Ns::DockerHost => "host",
            Ns::Internet => "inet",
            Ns::Lan => "lan",
        }
    }

    /// Source addresses this namespace can send from (IPv4 then IPv6).
    pub fn sources(self) -> Vec<IpAddr> {
        let (v4, v6): (&[Ipv4Addr], &[Ipv6Addr]) = match self {
            Ns::DockerHost => (
                &[addr::HOST_INET_A, addr::HOST_LAN],
                &[addr::HOST_INET6_A, addr::HOST_LAN6],
            ),
            Ns::Internet => (&addr::INET_SOURCES, &addr::INET6_SOURCES),
            Ns::Lan => (&addr::LAN_SOURCES, &addr::LAN6_SOURCES),
        };
        v4.iter()
            .copied()
            .map(IpAddr::V4)
            .chain(v6.iter().copied().map(IpAddr::V6))
            .collect()
    }
}

/// Fixed lab addresses.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// First docker-host address on eth0 ("internet").
    pub const HOST_INET_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    /// Second docker-host address on eth0, to test matching the dialled address.
    pub const HOST_INET_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    /// First docker-host IPv6 address on eth0.
    pub const HOST_INET6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    /// Second docker-host IPv6 address on eth0.
    pub const HOST_INET6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
    /// Docker-host address on eth1 ("LAN").
    pub const HOST_LAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// Docker-host IPv6 address on eth1.
    pub const HOST_LAN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

    /// Internet client's on-link address (next hop for its routed sources).
    pub const INET_LINK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
    /// Internet client's on-link IPv6 address.
    pub const INET6_LINK: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
    /// Internet source addresses (routed via [`INET_LINK`]).
    pub const INET_SOURCES: [Ipv4Addr; 3] = [
        Ipv4Addr::new(198, 51, 100, 10),
        Ipv4Addr::new(198, 51, 100, 20),
        Ipv4Addr::new(198, 51, 100, 30),
    ];
    /// The network holding [`INET_SOURCES`].
    pub const INET_SOURCE_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 0), 24);
    /// Internet IPv6 source addresses (routed via [`INET6_LINK`]).
    pub const INET6_SOURCES: [Ipv6Addr; 3] = [
        Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10),
        Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x20),
        Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x30),
    ];
    /// The network holding [`INET6_SOURCES`].
    pub const INET6_SOURCE_NET: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0), 48);

    /// LAN source addresses (on-link on the host's eth1 network).
    pub const LAN_SOURCES: [Ipv4Addr; 3] = [
        Ipv4Addr::new(192, 0, 2, 10),
        Ipv4Addr::new(192, 0, 2, 11),
        Ipv4Addr::new(192, 0, 2, 12),
    ];
    /// LAN IPv6 source addresses.
    pub const LAN6_SOURCES: [Ipv6Addr; 3] = [
        Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10),
        Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x11),
        Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x12),
    ];

    /// docker0's address and prefix (`--bip`), kept out of private ranges.
    pub const DOCKER_BIP: &str = "198.18.0.1/24";
    /// Pool for user-defined Docker networks.
    pub const DOCKER_POOL: &str = "base=198.18.64.0/18,size=24";
    /// docker0's IPv6 network (`--fixed-cidr-v6`).
    pub const DOCKER_V6: &str = "2001:db8:d0c::/64";
}

/// Names of the three namespaces for a prefix.
pub(crate) fn ns_name(prefix: &str, ns: Ns) -> String {
    format!("{prefix}-{}", ns.suffix())
}

/// Creates (or completes) the namespaces, links, addresses and routes.
/// Every step tolerates existing state, so `up` can run again.
pub(crate) fn build(prefix: &str) -> Result<()> {
    let host = ns_name(prefix, Ns::DockerHost);
    let inet = ns_name(prefix, Ns::Internet);
    let lan = ns_name(prefix, Ns::Lan);
    for name in [&host, &inet, &lan] {
        if !crate::netns_file(name).exists() {
            ip(["netns", "add", name])?;
        }
        // No duplicate address detection, set before the links exist: their
        // link-local addresses would otherwise stay "tentative" for a second
        // or two after `up`, a phase in which early IPv6 traffic was seen to
        // stall.
        crate::cmd::run(crate::cmd::nsenter(&crate::netns_file(name), "sysctl").args([
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]))?;
        ip(["-n", name, "link", "set", "lo", "up"])?;
    }
    // Created from inside the host namespace with the peer placed directly in
    // the client namespace: nothing ever appears in the machine's own netns.
    for (host_if, client) in [("eth0", &inet), ("eth1", &lan)] {
        if !crate::cmd::ip_ok(&["-n", &host, "link", "show", host_if]) {
            ip([
                "-n", &host, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", client,
            ])?;
        }
        ip(["-n", &host, "link", "set", host_if, "up"])?;
        ip(["-n", client, "link", "set", "eth0", "up"])?;
    }

    let v4 = |ns: &str, dev: &str, a: Ipv4Addr, len: u8| -> Result<()> {
        ip(["-n", ns, "addr", "replace", &format!("{a}/{len}"), "dev", dev]).map(drop)
    };
    // nodad: no 1-2 s "tentative" phase during which binding would fail.
    let v6 = |ns: &str, dev: &str, a: Ipv6Addr, len: u8| -> Result<()> {
        ip([
            "-n",
            ns,
            "-6",
            "addr",
            "replace",
            &format!("{a}/{len}"),
            "dev",
            dev,
            "nodad",
        ])
        .map(drop)
    };

    v4(&host, "eth0", addr::HOST_INET_A, 24)?;
    v4(&host, "eth0", addr::HOST_INET_B, 24)?;
    v6(&host, "eth0", addr::HOST_INET6_A, 64)?;
    v6(&host, "eth0", addr::HOST_INET6_B, 64)?;
    v4(&host, "eth1", addr::HOST_LAN, 24)?;
    v6(&host, "eth1", addr::HOST_LAN6, 64)?;
    let (net4, len4) = addr::INET_SOURCE_NET;
    let (net6, len6) = addr::INET6_SOURCE_NET;
    ip([
        "-n",
        &host,
        "route",
        "replace",
        &format!("{net4}/{len4}"),
        "via",
        &addr::INET_LINK.to_string(),
    ])?;
    ip([
        "-n",
        &host,
        "-6",
        "route",
        "replace",
        &format!("{net6}/{len6}"),
        "via",
        &addr::INET6_LINK.to_string(),
    ])?;

    v4(&inet, "eth0", addr::INET_LINK, 24)?;
    v6(&inet, "eth0", addr::INET6_LINK, 64)?;
    for a in addr::INET_SOURCES {
        v4(&inet, "eth0", a, 32)?;
    }
    for a in addr::INET6_SOURCES {
        v6(&inet, "eth0", a, 128)?;
    }
    ip([
        "-n",
        &inet,
        "route",
        "replace",
        "default",
        "via",
        &addr::HOST_INET_A.to_string(),
    ])?;
    ip([
        "-n",
        &inet,
        "-6",
        "route",
        "replace",
        "default",
        "via",
        &addr::HOST_INET6_A.to_string(),
    ])?;

    for a in addr::LAN_SOURCES {
        v4(&lan, "eth0", a, 24)?;
    }
    for a in addr::LAN6_SOURCES {
        v6(&lan, "eth0", a, 64)?;
    }
    ip([
        "-n",
        &lan,
        "route",
        "replace",
        "default",
        "via",
        &addr::HOST_LAN.to_string(),
    ])?;
    ip([
        "-n",
        &lan,
        "-6",
        "route",
        "replace",
        "default",
        "via",
        &addr::HOST_LAN6.to_string(),
    ])?;
    Ok(())
}
