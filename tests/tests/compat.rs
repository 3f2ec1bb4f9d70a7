//! Compatibility with hosts unlike the lab's default (Debian's docker.io on
//! iptables-nft), with a real dockerd and real packets. Needs root and
//! docker.io: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use common::{Firewall, check, expect, lab, lab_with, tcp};
use dockfw_core::layout::{default_counter, rule_counter};
use dockfw_e2e::addr::{HOST_INET_A, HOST_INET6_A, INET_SOURCES, INET6_SOURCES};
use dockfw_e2e::{Client::Internet, LabConfig, Ns, ProbeResult::*, Proto, Stand};
use std::time::Duration;

const POLICY: &str = r#"
[guard]
interfaces = ["eth0", "eth1"]
default = "drop"

[[rule]]
name = "web for one source"
from = ["198.51.100.10", "2001:db8:100::10"]
ports = [8081]
"#;

/// Docker on iptables-legacy: its rules live in xtables (ip_tables,
/// ip6_tables), which hook netfilter beside nf_tables at their own fixed
/// priorities (filter 0, nat -100): dockfw's chains at -5 still decide
/// first, and a drop there is final whatever Docker's FORWARD accepts.
#[test]
#[ignore = "needs root and the Docker lab"]
fn docker_on_iptables_legacy_our_chains_decide_first() {
    let (_serial, lab) = lab_with(LabConfig {
        iptables_legacy: true,
        ..LabConfig::for_test("dfwt-legacy").unwrap()
    });
    lab.run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();

    // dockerd really wrote xtables rules, and none through nf_tables.
    for save in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        let rules = lab.exec(Ns::DockerHost, save, &[]).unwrap();
        assert!(
            rules.contains("-A DOCKER "),
            "{save} shows no Docker rules:\n{rules}"
        );
        assert!(
            rules.contains("--dport 8081 -j DNAT"),
            "{save}: no DNAT of 8081:\n{rules}"
        );
    }
    let ruleset = lab.exec(Ns::DockerHost, "nft", &["list", "ruleset"]).unwrap();
    assert!(
        !ruleset.contains("DOCKER"),
        "Docker's chains are in nf_tables, not legacy:\n{ruleset}"
    );

    let allowed = [
        tcp(Internet, INET_SOURCES[0], HOST_INET_A, 8081),
        tcp(Internet, INET6_SOURCES[0], HOST_INET6_A, 8081),
    ];
    let denied = [
        tcp(Internet, INET_SOURCES[1], HOST_INET_A, 8081),
        tcp(Internet, INET6_SOURCES[1], HOST_INET6_A, 8081),
    ];
    // Docker alone (legacy FORWARD accepts the published port) opens it to all.
    check(
        &lab,
        "Docker on iptables-legacy alone",
        &[expect(allowed, Open), expect(denied, Open)].concat(),
    );

    let mut fw = Firewall::new(&lab);
    fw.apply(POLICY);
    check(
        &lab,
        "with dockfw",
        &[expect(allowed, Open), expect(denied, TimedOut)].concat(),
    );
    // Each verdict came from our chains: the rule served the two allowed
    // connections, the default dropped the two denied SYNs.
    assert_eq!(fw.decided(&rule_counter(0)), 2);
    assert_eq!(fw.decided(&default_counter()), 2);

    // Without our table Docker's legacy rules alone decide again.
    assert!(fw.remove());
    check(&lab, "removed", &expect(denied, Open));
}

/// Panics, saying what to install, when `program` cannot run.
fn require(program: &str, package: &str) {
    let ran = std::process::Command::new(program).arg("--version").output();
    assert!(
        ran.is_ok(),
        "this test needs `{program}`: apt-get install {package} (listed in .ci/packages)"
    );
}

/// ufw enabled on the Docker host (its state in private copies of
/// /etc/ufw and /etc/default/ufw, its rules written with iptables into the
/// lab's namespace only): ufw's INPUT rules keep deciding the host's own
/// services, but a published port is DNATed to the forward path where
/// Docker accepts it before ufw's chains, so `ufw deny` cannot close it.
/// dockfw's chains decide published ports, and `ufw reload`/`disable`
/// leave our table alone.
#[test]
#[ignore = "needs root, the Docker lab and ufw"]
fn ufw_beside_docker_and_us() {
    require("ufw", "ufw");
    let (_serial, lab) = lab("dfwt-ufw");
    lab.run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    let state = lab
        .private_paths(
            "ufw",
            &[("/etc/ufw", Stand::Copy), ("/etc/default/ufw", Stand::Copy)],
        )
        .unwrap();
    let ufw = |args: &[&str]| {
        state
            .run(lab.netns_path(), "ufw", args)
            .unwrap_or_else(|e| panic!("ufw {}: {e}", args.join(" ")))
    };
    // Two services of the host's own: ufw admits one, its default denies the other.
    let _admitted = lab
        .serve_echo(Ns::DockerHost, (HOST_INET_A, 2222).into(), Proto::Tcp)
        .unwrap();
    let _refused = lab
        .serve_echo(Ns::DockerHost, (HOST_INET_A, 2223).into(), Proto::Tcp)
        .unwrap();
    ufw(&["--force", "enable"]);
    ufw(&["allow", "2222/tcp"]);
    // An admin's attempt to close the published port with ufw.
    ufw(&["deny", "8081/tcp"]);
    let status = ufw(&["status", "verbose"]);
    assert!(
        status.contains("Status: active") && status.contains("8081/tcp"),
        "{status}"
    );
    let ruleset = lab.exec(Ns::DockerHost, "nft", &["list", "ruleset"]).unwrap();
    assert!(
        ruleset.contains("ufw-user-input") && ruleset.contains("DOCKER"),
        "{ruleset}"
    );

    let allowed = [
        tcp(Internet, INET_SOURCES[0], HOST_INET_A, 8081),
        tcp(Internet, INET6_SOURCES[0], HOST_INET6_A, 8081),
    ];
    let denied = [
        tcp(Internet, INET_SOURCES[1], HOST_INET_A, 8081),
        tcp(Internet, INET6_SOURCES[1], HOST_INET6_A, 8081),
    ];
    let admitted = tcp(Internet, INET_SOURCES[1], HOST_INET_A, 2222);
    let refused = tcp(Internet, INET_SOURCES[1], HOST_INET_A, 2223);
    check(
        &lab,
        "ufw and Docker, no dockfw: ufw's deny 8081 does not hold",
        &[
            expect(allowed, Open),
            expect(denied, Open),
            vec![(admitted, Open), (refused, TimedOut)],
        ]
        .concat(),
    );

    let mut fw = Firewall::new(&lab);
    let ruleset = fw.apply(POLICY);
    let with_us = [
        expect(allowed, Open),
        expect(denied, TimedOut),
        vec![(admitted, Open), (refused, TimedOut)],
    ]
    .concat();
    check(&lab, "ufw, Docker and dockfw", &with_us);
    assert_eq!(fw.decided(&rule_counter(0)), 2);
    assert_eq!(fw.decided(&default_counter()), 2);

    // ufw rewrites only its own chains: our table is untouched.
    ufw(&["reload"]);
    assert_eq!(
        fw.installed(&ruleset.table).as_ref(),
        Some(&ruleset),
        "after ufw reload"
    );
    check(&lab, "after ufw reload", &with_us);
    ufw(&["disable"]);
    assert_eq!(
        fw.installed(&ruleset.table).as_ref(),
        Some(&ruleset),
        "after ufw disable"
    );
    check(
        &lab,
        "ufw disabled",
        &[
            expect(allowed, Open),
            expect(denied, TimedOut),
            vec![(refused, Open)],
        ]
        .concat(),
    );
    state.remove().unwrap();
}

/// A process of the test's own (a private D-Bus system bus, firewalld),
/// killed when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `ready` holds, panicking with `what` after 30 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// firewalld (Debian's 1.3, nftables backend) running on the Docker host
/// with a D-Bus system bus of its own, both in the lab's namespace with
/// /etc/firewalld and /run replaced by the lab's copies; the lab's dockerd
/// is started after it and told that bus, so it meets firewalld as on a
/// real host (it puts docker0 in firewalld's `docker` zone).
#[test]
#[ignore = "needs root, the Docker lab and firewalld"]
fn firewalld_beside_docker_and_us() {
    require("firewalld", "firewalld");
    require("dbus-daemon", "dbus");
    let prefix = "dfwt-fwd";
    let bus_dir = format!("/var/lib/dockfw-lab/{prefix}/private/firewalld");
    // Where the private bus's socket will be (the stand-in for /run is the
    // second of the private paths below).
    let bus = format!("unix:path={bus_dir}/1_run/dbus/system_bus_socket");
    let (_serial, lab) = lab_with(LabConfig {
        dockerd: false,
        dockerd_env: vec![("DBUS_SYSTEM_BUS_ADDRESS".into(), bus)],
        ..LabConfig::for_test(prefix).unwrap()
    });
    let state = lab
        .private_paths(
            "firewalld",
            &[("/etc/firewalld", Stand::Copy), ("/run", Stand::Empty)],
        )
        .unwrap();
    assert!(state.copy_of("/run").unwrap().starts_with(&bus_dir));
    let run = state.copy_of("/run").unwrap().to_path_buf();
    std::fs::create_dir(run.join("dbus")).unwrap();
    let log = |name: &str| std::fs::File::create(format!("{bus_dir}/{name}.log")).unwrap();
    let spawn = |program: &str, args: &[&str]| {
        let mut command = state.command(lab.netns_path(), program);
        command
            .args(args)
            .stdout(log(program))
            .stderr(log(&format!("{program}.err")));
        Daemon(command.spawn().unwrap())
    };
    let _bus = spawn("dbus-daemon", &["--system", "--nofork", "--nopidfile"]);
    wait_for("the private D-Bus system bus did not start", || {
        run.join("dbus/system_bus_socket").exists()
    });
    let firewalld_log = format!("{bus_dir}/firewalld-own.log");
    let _firewalld = spawn(
        "firewalld",
        &["--nofork", "--nopid", "--log-file", &firewalld_log],
    );
    let firewall_cmd = |args: &[&str]| {
        state
            .run(lab.netns_path(), "firewall-cmd", args)
            .unwrap_or_else(|e| panic!("firewall-cmd {}: {e}", args.join(" ")))
    };
    wait_for("firewalld did not start", || {
        state
            .run(lab.netns_path(), "firewall-cmd", &["--state"])
            .is_ok_and(|s| s.trim() == "running")
    });
    lab.start_dockerd().unwrap();
    lab.run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();

    // Docker met this firewalld: docker0 is in its `docker` zone. firewalld's
    // forward chain (priority filter + 10) accepts what was DNATed, so its
    // zones never judge a published port.
    let zones = firewall_cmd(&["--get-active-zones"]);
    assert!(zones.contains("docker") && zones.contains("docker0"), "{zones}");
    let forward = lab
        .exec(
            Ns::DockerHost,
            "nft",
            &["list", "chain", "inet", "firewalld", "filter_FORWARD"],
        )
        .unwrap();
    assert!(forward.contains("ct status dnat accept"), "{forward}");

    let allowed = [
        tcp(Internet, INET_SOURCES[0], HOST_INET_A, 8081),
        tcp(Internet, INET6_SOURCES[0], HOST_INET6_A, 8081),
    ];
    let denied = [
        tcp(Internet, INET_SOURCES[1], HOST_INET_A, 8081),
        tcp(Internet, INET6_SOURCES[1], HOST_INET6_A, 8081),
    ];
    check(
        &lab,
        "firewalld and Docker, no dockfw",
        &[expect(allowed, Open), expect(denied, Open)].concat(),
    );
    let mut fw = Firewall::new(&lab);
    let ruleset = fw.apply(POLICY);
    let with_us = [expect(allowed, Open), expect(denied, TimedOut)].concat();
    check(&lab, "firewalld, Docker and dockfw", &with_us);
    assert_eq!(fw.decided(&rule_counter(0)), 2);
    assert_eq!(fw.decided(&default_counter()), 2);

    // A reload rebuilds firewalld's own table only; ours stays as it was.
    // Docker 20.10 writes its rules through firewalld's passthrough, which
    // a reload removes until Docker, told by firewalld's signal, writes
    // them again: published ports fail for a moment (Docker's and
    // firewalld's affair), and denied sources never get through meanwhile.
    for reload in ["--reload", "--complete-reload"] {
        let watch = lab.probe_loop(&denied, Duration::from_millis(5)).unwrap();
        firewall_cmd(&[reload]);
        assert_eq!(
            fw.installed(&ruleset.table).as_ref(),
            Some(&ruleset),
            "our table after firewall-cmd {reload}"
        );
        for probe in allowed {
            let back = lab.probe_until(probe, Open, Duration::from_secs(20)).unwrap();
            assert_eq!(back, Open, "Docker's rules came back after {reload}");
        }
        for tally in watch.stop().unwrap() {
            assert_eq!(
                tally.count(Open),
                0,
                "{:?} got through during {reload}",
                tally.probe
            );
        }
        check(&lab, &format!("after firewall-cmd {reload}"), &with_us);
    }
}
