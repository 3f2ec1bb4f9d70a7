//! The lab itself: topology, dockerd, published ports and the probe's three
//! outcomes. Needs root and docker.io; skipped otherwise (fails under CI=true).

use dockfw_e2e::{Client, Lab, LabConfig, Outcome, Probe, Proto, addr};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One dockerd at a time: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn probe(from: Client, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, port: u16, proto: Proto) -> Probe {
    Probe {
        from,
        src: src.into(),
        dst: dst.into(),
        port,
        proto,
    }
}

fn check(lab: &Lab, cases: &[(Probe, Outcome)]) {
    let probes: Vec<Probe> = cases.iter().map(|(p, _)| *p).collect();
    let start = Instant::now();
    let got = lab.probe_all(&probes).expect("probes run");
    // Concurrent, so the whole batch takes about one probe timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "probes too slow: {:?}",
        start.elapsed()
    );
    let wrong: Vec<String> = cases
        .iter()
        .zip(&got)
        .filter(|((_, want), got)| want != *got)
        .map(|((p, want), got)| format!("{p}: want {want}, got {got}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "unexpected probe outcomes:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn published_ports_open_closed_and_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = dockfw_e2e::up_or_skip(LabConfig::for_test("dfwt-lab").unwrap()) else {
        return;
    };
    lab.run_echo(
        "web",
        &["8081:8000/tcp", "8081:8000/udp", "9000:9000/tcp"],
        &[(Proto::Tcp, 8000), (Proto::Udp, 8000), (Proto::Tcp, 9000)],
    )
    .unwrap();

    let inet = addr::INET_SOURCES;
    let host = addr::HOST_INET_A;
    use Outcome::*;
    use Proto::*;
    check(
        &lab,
        &[
            // Published, host port != container port, TCP and UDP.
            (probe(Client::Internet, inet[0], host, 8081, Tcp), Open),
            (probe(Client::Internet, inet[0], host, 8081, Udp), Open),
            // Published with equal ports.
            (probe(Client::Internet, inet[0], host, 9000, Tcp), Open),
            // The second host address and the LAN side.
            (
                probe(Client::Internet, inet[1], addr::HOST_INET_B, 8081, Tcp),
                Open,
            ),
            (
                probe(Client::Lan, addr::LAN_SOURCES[0], addr::HOST_LAN, 8081, Tcp),
                Open,
            ),
            // Nothing listens on the host: RST and ICMP port unreachable.
            (probe(Client::Internet, inet[0], host, 8000, Tcp), Refused),
            (probe(Client::Internet, inet[0], host, 8082, Udp), Refused),
        ],
    );

    // Test scaffolding inside the lab's docker-host namespace only: a
    // forward-hook chain before Docker's (priority < 0), as dockfw's is.
    // After DNAT the forward hook sees the container port, 8000.
    lab.nft(&format!(
        "table inet dfwlabtest {{
            chain labfwd {{
                type filter hook forward priority -10; policy accept;
                ip saddr {} tcp dport 8000 drop
                ip saddr {} udp dport 8000 reject with icmpx admin-prohibited
            }}
        }}",
        inet[1], inet[2]
    ))
    .unwrap();
    check(
        &lab,
        &[
            (probe(Client::Internet, inet[1], host, 8081, Tcp), TimedOut),
            (probe(Client::Internet, inet[0], host, 8081, Tcp), Open),
            (probe(Client::Internet, inet[2], host, 8081, Udp), Refused),
            (probe(Client::Internet, inet[0], host, 8081, Udp), Open),
        ],
    );

    // One probe alone stays well under a second.
    let start = Instant::now();
    assert_eq!(
        lab.probe(Client::Internet, inet[1].into(), host.into(), 8081, Tcp)
            .unwrap(),
        TimedOut
    );
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );

    let config = lab.config().clone();
    lab.teardown().expect("teardown");
    let status = Lab::status(&config);
    assert!(status.is_empty(), "left behind:\n{status}");
}
