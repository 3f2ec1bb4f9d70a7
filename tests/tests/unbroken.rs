//! What a policy must never break, under the strictest one (both client
//! interfaces guarded, default reject): containers' own connections out to
//! the internet and LAN (whose replies arrive on guarded interfaces),
//! container-to-container traffic on the default bridge and on a
//! user-defined network, a container reaching a published port, and
//! established connections, which survive re-applying the policy.
//!
//! Needs root and docker.io: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use common::{Firewall, check, expect, tcp, udp};
use dockfw_e2e::addr::{
    HOST_INET_A, HOST_INET6_A, HOST_LAN, INET_SOURCES as INET, INET6_SOURCES as INET6, LAN_SOURCES as LAN,
};
use dockfw_e2e::{Client, EchoServer, Lab, ProbeResult, Proto};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use Client::{Internet, Lan};
use ProbeResult::{Open, Refused};

const STRICT: &str = r#"
    [guard]
    interfaces = ["eth0", "eth1"]
    default = "reject"

    [[rule]]
    name = "web"
    from = ["198.51.100.10", "2001:db8:100::10", "192.0.2.10"]
    ports = ["8081/tcp", "8081/udp", 8090]
"#;

/// STRICT plus one more rule: still allows the same.
const STRICT_PLUS: &str = r#"
    [guard]
    interfaces = ["eth0", "eth1"]
    default = "reject"

    [[rule]]
    name = "admin"
    from = "198.51.100.30"
    ports = [9999]

    [[rule]]
    name = "web"
    from = ["198.51.100.10", "2001:db8:100::10", "192.0.2.10"]
    ports = ["8081/tcp", "8081/udp", 8090]
"#;

/// Allows nobody.
const NOBODY: &str = r#"
    [guard]
    interfaces = ["eth0", "eth1"]
    default = "reject"
"#;

#[test]
#[ignore = "needs root and the Docker lab"]
fn outbound_container_to_container_and_established_connections() {
    let (_serial, lab) = common::lab("dfwe-unbrkn");
    let started = Instant::now();
    let echo: [(Proto, u16); 2] = [(Proto::Tcp, 7000), (Proto::Udp, 7000)];
    lab.run_echo(
        "web",
        &["8081:8000/tcp", "8081:8000/udp"],
        &[(Proto::Tcp, 8000), (Proto::Udp, 8000)],
    )
    .unwrap();
    lab.run_echo("peer", &[], &echo).unwrap();
    lab.docker(&["network", "create", "labnet"]).unwrap();
    lab.run_echo_with("net-a", &["--network", "labnet", "-p", "8090:7000"], &echo)
        .unwrap();
    lab.run_echo_with("net-b", &["--network", "labnet"], &echo)
        .unwrap();

    // The far ends of containers' own connections.
    let servers: Vec<EchoServer> = [
        (Internet, SocketAddr::new(INET[0].into(), 7000)),
        (Internet, SocketAddr::new(INET6[0].into(), 7000)),
        (Lan, SocketAddr::new(LAN[0].into(), 7000)),
    ]
    .into_iter()
    .flat_map(|(ns, at)| [Proto::Tcp, Proto::Udp].map(|proto| lab.serve_echo(ns, at, proto).unwrap()))
    .collect();

    // Docker alone: all of it works (so a failure below is the policy's).
    container_traffic(&lab, &servers, "Docker alone");

    let mut fw = Firewall::new(&lab);
    fw.apply(STRICT);
    let inbound = [
        (tcp(Internet, INET[0], HOST_INET_A, 8081), Open),
        (udp(Internet, INET6[0], HOST_INET6_A, 8081), Open),
        (tcp(Internet, INET[1], HOST_INET_A, 8081), Refused),
        (tcp(Internet, INET[0], HOST_INET_A, 8090), Open),
        (tcp(Internet, INET[1], HOST_INET_A, 8090), Refused),
        (tcp(Lan, LAN[0], HOST_LAN, 8090), Open),
        (tcp(Lan, LAN[1], HOST_LAN, 8090), Refused),
    ];
    check(&lab, "inbound under the strict policy", &inbound);
    container_traffic(&lab, &servers, "strict policy");

    established_across_reapply(&lab, &mut fw);
    eprintln!("unbroken suite: {:?}", started.elapsed());
}

/// Connections containers open, to the clients' echo servers and to each
/// other, all answered (`lab-echo ask` waits for the echo).
fn container_traffic(lab: &Lab, servers: &[EchoServer], what: &str) {
    let served_before: Vec<usize> = servers.iter().map(EchoServer::served).collect();
    for server in servers {
        let got = lab
            .ask_from_container("web", server.proto(), server.addr())
            .unwrap();
        assert_eq!(
            got,
            Open,
            "{what}: container web -> {} {}",
            server.proto(),
            server.addr()
        );
    }
    for (server, before) in servers.iter().zip(served_before) {
        assert!(
            server.served() > before,
            "{what}: {} {} was not reached",
            server.proto(),
            server.addr()
        );
    }

    let container = |name: &str| -> Vec<IpAddr> { lab.container_addrs(name).unwrap() };
    let mut asks: Vec<(&str, Proto, SocketAddr)> = Vec::new();
    for addr in container("peer") {
        asks.push(("web", Proto::Tcp, SocketAddr::new(addr, 7000)));
        asks.push(("web", Proto::Udp, SocketAddr::new(addr, 7000)));
    }
    for addr in container("net-a") {
        asks.push(("net-b", Proto::Tcp, SocketAddr::new(addr, 7000)));
        asks.push(("net-b", Proto::Udp, SocketAddr::new(addr, 7000)));
    }
    // A container dialling a published port of the host (TCP only: over
    // UDP docker-proxy answers from another address, even without dockfw).
    asks.push(("peer", Proto::Tcp, SocketAddr::new(HOST_INET_A.into(), 8081)));
    for (from, proto, to) in asks {
        let got = lab.ask_from_container(from, proto, to).unwrap();
        assert_eq!(got, Open, "{what}: container {from} -> {proto} {to}");
    }
}

/// Connections held open keep exchanging data while the policy is
/// re-applied (the same, a changed one that still allows them), and even
/// under a policy that would refuse them now: only new connections are
/// judged (README, "What is judged").
fn established_across_reapply(lab: &Lab, fw: &mut Firewall) {
    let mut held = [
        tcp(Internet, INET[0], HOST_INET_A, 8081),
        tcp(Internet, INET6[0], HOST_INET6_A, 8081),
        tcp(Lan, LAN[0], HOST_LAN, 8090),
    ]
    .map(|p| lab.hold(p).unwrap_or_else(|e| panic!("{e}")));
    let exchange_all = |held: &mut [dockfw_e2e::HeldConnection], when: &str| {
        for connection in held {
            assert_eq!(
                connection.exchange(Duration::from_secs(2)).unwrap(),
                Open,
                "{when}: held connection {}",
                connection.probe()
            );
        }
    };
    exchange_all(&mut held, "before re-applying");
    fw.apply(STRICT);
    exchange_all(&mut held, "after re-applying the same policy");
    fw.apply(STRICT_PLUS);
    exchange_all(
        &mut held,
        "after applying a changed policy that still allows them",
    );

    fw.apply(NOBODY);
    let new_ones: Vec<_> = held.iter().map(|c| c.probe()).collect();
    check(
        lab,
        "new connections under a policy allowing nobody",
        &expect(new_ones, Refused),
    );
    exchange_all(&mut held, "under a policy allowing nobody");
    assert!(fw.remove());
    exchange_all(&mut held, "after remove");
}
