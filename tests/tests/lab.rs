//! The lab itself: topology, dockerd, published ports and the probe's three
//! outcomes. Needs root and docker.io: `#[ignore]`d, run by `cargo xtask test` as root.

use dockfw_e2e::{Client, Lab, LabConfig, Probe, ProbeResult, Proto, addr};
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

fn check(lab: &Lab, cases: &[(Probe, ProbeResult)]) {
    let start = Instant::now();
    let wrong = lab.wrong_outcomes(cases).expect("probes run");
    // Concurrent, so the whole batch takes about one probe timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "probes too slow: {:?}",
        start.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "unexpected probe outcomes:\n{}",
        wrong.join("\n")
    );
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn published_ports_open_closed_and_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let docker_in_root_before = root_ruleset_mentions_docker();
    let lab = dockfw_e2e::up_for_test(LabConfig::for_test("dfwt-lab").unwrap());
    lab.run_echo(
        "web",
        &["8081:8000/tcp", "8081:8000/udp", "9000:9000/tcp"],
        &[(Proto::Tcp, 8000), (Proto::Udp, 8000), (Proto::Tcp, 9000)],
    )
    .unwrap();

    let inet = addr::INET_SOURCES;
    let host = addr::HOST_INET_A;
    use ProbeResult::*;
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
            // IPv6 (Docker 20.10's experimental ip6tables DNAT).
            (
                probe(
                    Client::Internet,
                    addr::INET6_SOURCES[0],
                    addr::HOST_INET6_A,
                    8081,
                    Tcp,
                ),
                Open,
            ),
            (
                probe(
                    Client::Internet,
                    addr::INET6_SOURCES[0],
                    addr::HOST_INET6_B,
                    8081,
                    Udp,
                ),
                Open,
            ),
            (
                probe(Client::Lan, addr::LAN6_SOURCES[0], addr::HOST_LAN6, 9000, Tcp),
                Open,
            ),
            (
                probe(
                    Client::Internet,
                    addr::INET6_SOURCES[0],
                    addr::HOST_INET6_A,
                    8000,
                    Tcp,
                ),
                Refused,
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

    // Docker's rules went into the lab namespace, not the machine's ruleset.
    if !docker_in_root_before {
        assert!(
            !root_ruleset_mentions_docker(),
            "Docker wrote into the machine's own ruleset"
        );
    }

    let config = lab.config().clone();
    lab.teardown().expect("teardown");
    let status = Lab::status(&config);
    assert!(status.is_empty(), "left behind:\n{status}");
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn idempotent_up_dockerd_restart_and_crash_cleanup() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = LabConfig::for_test("dfwt-rst").unwrap();
    let lab = dockfw_e2e::up_for_test(config.clone());
    lab.run_echo_with(
        "svc",
        &["-p", "8081:8000", "--restart", "always"],
        &[(Proto::Tcp, 8000)],
    )
    .unwrap();
    let p = probe(
        Client::Internet,
        addr::INET_SOURCES[0],
        addr::HOST_INET_A,
        8081,
        Proto::Tcp,
    );
    let p6 = probe(
        Client::Lan,
        addr::LAN6_SOURCES[0],
        addr::HOST_LAN6,
        8081,
        Proto::Tcp,
    );
    let until_open = |lab: &Lab, p: Probe| {
        lab.probe_until(p, ProbeResult::Open, Duration::from_secs(15))
            .unwrap()
    };
    assert_eq!(until_open(&lab, p), ProbeResult::Open);
    assert_eq!(
        until_open(&lab, p6),
        ProbeResult::Open,
        "IPv6 through Docker's ip6tables DNAT"
    );

    // A second `up` of the same lab reuses everything.
    let pid = lab.dockerd_pid().expect("dockerd runs");
    let again = Lab::up_with(LabConfig {
        fresh: false,
        teardown_on_drop: false,
        ..config.clone()
    })
    .unwrap();
    assert_eq!(again.dockerd_pid(), Some(pid));
    assert_eq!(again.image(), lab.image());
    drop(again);

    lab.restart_dockerd().unwrap();
    assert_ne!(lab.dockerd_pid(), Some(pid), "a new dockerd");
    assert_eq!(
        until_open(&lab, p),
        ProbeResult::Open,
        "restart policy brings the container back"
    );

    lab.stop_dockerd().unwrap();
    assert_eq!(lab.dockerd_pid(), None);
    lab.start_dockerd().unwrap();
    assert_eq!(until_open(&lab, p), ProbeResult::Open);

    // A crash: dockerd dies without cleaning up; down still removes it all
    // (shim and container processes, mounts, cgroups, namespaces, dirs).
    let pid = lab.dockerd_pid().expect("dockerd runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    Lab::down(&config).unwrap();
    let status = Lab::status(&config);
    assert!(status.is_empty(), "left behind:\n{status}");
}

fn root_ruleset_mentions_docker() -> bool {
    std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("DOCKER"))
}
