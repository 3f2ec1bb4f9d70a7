//! Every policy field and matching rule of the README's policy reference,
//! with real packets through a real Docker: sources (address, CIDR, range,
//! `@set`), ports (single, range, protocol), interfaces (exact, wildcard,
//! unguarded), dialled address (`to`), published vs container port (and
//! routed access to the container address), actions and default fates,
//! first match and address families, `table`, `priority`, `log`,
//! `version`. After each batch of probes the deciding rule's counter must
//! have risen by exactly the number of connections it decided.
//!
//! Needs root and docker.io: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use common::{Firewall, probe, tcp, udp};
use dockfw_core::layout::{self, default_counter, rule_counter};
use dockfw_e2e::addr::{
    HOST_INET_A, HOST_INET_B, HOST_INET6_A, HOST_INET6_B, HOST_LAN, HOST_LAN6, INET_SOURCES as INET,
    INET6_SOURCES as INET6, LAN_SOURCES as LAN, LAN6_SOURCES as LAN6,
};
use dockfw_e2e::{Client, Lab, Probe, ProbeResult, Proto};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use Client::{Internet, Lan};
use ProbeResult::{Open, Refused, TimedOut};

/// Which chain of ours decides a probe's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// The policy rule with this number (1-based, as in "rule N").
    Rule(usize),
    /// `guard.default`.
    Default,
    /// Nothing of ours: the connection is not judged.
    Nobody,
}

type Case = (Probe, ProbeResult, By);

/// Runs the probes at once, asserts their outcomes, and asserts that each
/// rule's counter (and the default fate's) rose by the number of
/// connections it decided: one packet each (a SYN or a datagram), and for a
/// TCP probe that times out up to two more (the client retransmits its SYN
/// after a second, which a machine busy with other work can let happen
/// within the probe's timeout).
fn check(lab: &Lab, fw: &mut Firewall, what: &str, cases: &[Case]) {
    let before = decided_per_chain(fw);
    let plain: Vec<(Probe, ProbeResult)> = cases.iter().map(|&(p, o, _)| (p, o)).collect();
    common::check(lab, what, &plain);
    let after = decided_per_chain(fw);
    let mut want: BTreeMap<String, (u64, u64)> = after.keys().map(|chain| (chain.clone(), (0, 0))).collect();
    for &(probe, outcome, by) in cases {
        let chain = match by {
            By::Rule(n) => rule_counter(n - 1).chain,
            By::Default => default_counter().chain,
            By::Nobody => continue,
        };
        let retransmits = if outcome == TimedOut && probe.proto == Proto::Tcp {
            2
        } else {
            0
        };
        let (least, most) = want.entry(chain).or_default();
        *least += 1;
        *most += 1 + retransmits;
    }
    let got: BTreeMap<String, u64> = after
        .iter()
        .map(|(chain, packets)| (chain.clone(), packets - before.get(chain).copied().unwrap_or(0)))
        .collect();
    let wrong: Vec<String> = want
        .iter()
        .filter(|(chain, (least, most))| {
            let got = got.get(*chain).copied().unwrap_or(0);
            got < *least || got > *most
        })
        .map(|(chain, (least, most))| {
            format!(
                "{chain}: {} (want {least}..={most})",
                got.get(chain).copied().unwrap_or(0)
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: packets decided per chain: {wrong:?} (all: {got:?})"
    );
}

/// Packets counted by each policy rule and the default fate of the table
/// installed last, by chain.
fn decided_per_chain(fw: &mut Firewall) -> BTreeMap<String, u64> {
    let installed = fw.installed(&fw.table()).expect("the table is installed");
    let deciders: Vec<_> = layout::policy_rules(&installed)
        .into_iter()
        .chain(layout::default_fate(&installed))
        .map(|decider| decider.counter)
        .collect();
    fw.counters()
        .into_iter()
        .filter(|c| deciders.iter().any(|at| at.is(&c.chain, c.index)))
        .map(|c| (c.chain, c.packets))
        .collect()
}

/// The host address a client dials on its side, in the family of `src`.
fn host_for(from: Client, src: IpAddr) -> IpAddr {
    match (from, src.is_ipv4()) {
        (Internet, true) => HOST_INET_A.into(),
        (Internet, false) => HOST_INET6_A.into(),
        (_, true) => HOST_LAN.into(),
        (_, false) => HOST_LAN6.into(),
    }
}

/// Every source address of both clients (IPv4 and IPv6).
fn every_source() -> Vec<(Client, IpAddr)> {
    [Internet, Lan]
        .into_iter()
        .flat_map(|c| c.sources().into_iter().map(move |a| (c, a)))
        .collect()
}

/// The container's ports: 8081 published as 8000 (TCP and UDP), 8443 and
/// 9001-9003 as themselves.
const PUBLISH: [&str; 5] = [
    "8081:8000/tcp",
    "8081:8000/udp",
    "8443:8443/tcp",
    "9001-9003:9001-9003/tcp",
    // Bound to one host address only (see `published_vs_container_port`).
    "203.0.113.2:8082:8000/tcp",
];
const LISTEN: [(Proto, u16); 6] = [
    (Proto::Tcp, 8000),
    (Proto::Udp, 8000),
    (Proto::Tcp, 8443),
    (Proto::Tcp, 9001),
    (Proto::Tcp, 9002),
    (Proto::Tcp, 9003),
];

#[test]
#[ignore = "needs root and the Docker lab"]
fn every_policy_field_with_real_traffic() {
    let (_serial, lab) = common::lab("dfwe-policy");
    let started = Instant::now();
    lab.run_echo("web", &PUBLISH, &LISTEN).unwrap();
    let container = lab.container_addrs("web").unwrap();
    let mut fw = Firewall::new(&lab);

    docker_alone(&lab, &container);
    sources(&lab, &mut fw);
    ports(&lab, &mut fw);
    interfaces(&lab, &mut fw);
    dialled_address(&lab, &mut fw);
    published_vs_container_port(&lab, &mut fw, &container);
    actions_and_default_accept(&lab, &mut fw);
    first_match_and_families(&lab, &mut fw);
    table_priority_log_version(&lab, &mut fw);
    eprintln!("policy suite: {:?}", started.elapsed());
}

/// Without dockfw, Docker publishes to everyone, and even routes to the
/// container's own address from outside: what the policy has to close.
fn docker_alone(lab: &Lab, container: &[IpAddr]) {
    let mut cases = Vec::new();
    for (from, src) in every_source() {
        let host = host_for(from, src);
        cases.push((tcp(from, src, host, 8081), Open));
        cases.push((udp(from, src, host, 8081), Open));
        cases.push((tcp(from, src, host, 9003), Open));
    }
    // 8082 is published on the second address only.
    cases.push((tcp(Internet, INET[0], HOST_INET_B, 8082), Open));
    cases.push((tcp(Internet, INET[0], HOST_INET_A, 8082), Refused));
    for &c in container {
        cases.push((tcp(Internet, same_family(c, INET[0], INET6[0]), c, 8000), Open));
    }
    common::check(lab, "Docker alone", &cases);
}

fn same_family(like: IpAddr, v4: impl Into<IpAddr>, v6: impl Into<IpAddr>) -> IpAddr {
    if like.is_ipv4() { v4.into() } else { v6.into() }
}

/// `from`: a single address, a CIDR network, a range, a named set mixing
/// families and interfaces; everything else meets the default drop.
fn sources(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [sets]
        friends = ["198.51.100.30", "2001:db8:100::20", "192.0.2.12"]

        [[rule]]
        name = "single address"
        from = ["198.51.100.10", "2001:db8:100::10"]
        ports = ["8081/tcp", "8081/udp"]

        [[rule]]
        name = "cidr"
        from = ["198.51.100.16/29", "2001:db8:100::20/125"]
        ports = [8443]

        [[rule]]
        name = "range"
        from = ["198.51.100.25-198.51.100.35", "[2001:db8:100::25]-[2001:db8:100::35]"]
        ports = [9001]

        [[rule]]
        name = "named set"
        from = "@friends"
        ports = [9002]
        "#,
    );
    let allowed: [(u16, Proto, Vec<IpAddr>); 5] = [
        (8081, Proto::Tcp, vec![INET[0].into(), INET6[0].into()]),
        (8081, Proto::Udp, vec![INET[0].into(), INET6[0].into()]),
        (8443, Proto::Tcp, vec![INET[1].into(), INET6[1].into()]),
        (9001, Proto::Tcp, vec![INET[2].into(), INET6[2].into()]),
        (
            9002,
            Proto::Tcp,
            vec![INET[2].into(), INET6[1].into(), LAN[2].into()],
        ),
    ];
    let rule_of = [1, 1, 2, 3, 4];
    let mut cases = Vec::new();
    for ((port, proto, admitted), rule) in allowed.iter().zip(rule_of) {
        for (from, src) in every_source() {
            let p = probe(from, src, host_for(from, src), *port, *proto);
            cases.push(if admitted.contains(&src) {
                (p, Open, By::Rule(rule))
            } else {
                (p, TimedOut, By::Default)
            });
        }
    }
    check(lab, fw, "sources", &cases);
}

/// `ports`: one protocol only, a range, a bare number (TCP); the default
/// reject refuses the rest at once, TCP and UDP.
fn ports(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "reject"

        [[rule]]
        name = "udp only"
        ports = ["8081/udp"]

        [[rule]]
        name = "tcp range"
        ports = ["9001-9002/tcp"]

        [[rule]]
        name = "bare number"
        ports = 8443
        "#,
    );
    let mut cases = Vec::new();
    for (from, src) in [
        (Internet, INET[0].into()),
        (Internet, INET6[0].into()),
        (Lan, LAN[0].into()),
    ] {
        let host = host_for(from, src);
        cases.extend([
            (tcp(from, src, host, 8081), Refused, By::Default),
            (udp(from, src, host, 8081), Open, By::Rule(1)),
            (tcp(from, src, host, 9001), Open, By::Rule(2)),
            (tcp(from, src, host, 9002), Open, By::Rule(2)),
            (tcp(from, src, host, 9003), Refused, By::Default),
            (tcp(from, src, host, 8443), Open, By::Rule(3)),
            // Not published over UDP: the host itself answers, unjudged.
            (udp(from, src, host, 8443), Refused, By::Nobody),
        ]);
    }
    check(lab, fw, "ports", &cases);
}

/// Rule `interfaces`; an unguarded interface is not judged at all; a
/// wildcard guards every matching interface.
fn interfaces(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "lan side"
        interfaces = ["eth1"]
        ports = [8081]

        [[rule]]
        name = "internet side"
        interfaces = "eth0"
        ports = [8443]
        "#,
    );
    let mut cases = Vec::new();
    for (from, src) in [
        (Internet, IpAddr::from(INET[0])),
        (Internet, INET6[0].into()),
        (Lan, LAN[0].into()),
        (Lan, LAN6[0].into()),
    ] {
        let host = host_for(from, src);
        let (lan_rule, inet_rule) = if from == Lan {
            ((Open, By::Rule(1)), (TimedOut, By::Default))
        } else {
            ((TimedOut, By::Default), (Open, By::Rule(2)))
        };
        cases.push((tcp(from, src, host, 8081), lan_rule.0, lan_rule.1));
        cases.push((tcp(from, src, host, 8443), inet_rule.0, inet_rule.1));
    }
    check(lab, fw, "rule interfaces", &cases);

    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0"]
        default = "drop"
        "#,
    );
    check(
        lab,
        fw,
        "only eth0 guarded",
        &[
            (tcp(Internet, INET[0], HOST_INET_A, 8081), TimedOut, By::Default),
            (tcp(Internet, INET6[0], HOST_INET6_A, 8081), TimedOut, By::Default),
            (tcp(Lan, LAN[0], HOST_LAN, 8081), Open, By::Nobody),
            (udp(Lan, LAN6[0], HOST_LAN6, 8081), Open, By::Nobody),
        ],
    );

    fw.apply(
        r#"
        [guard]
        interfaces = ["eth*"]
        default = "drop"

        [[rule]]
        name = "lan under a wildcard guard"
        interfaces = ["eth1"]
        ports = [8081]
        "#,
    );
    check(
        lab,
        fw,
        "wildcard guard",
        &[
            (tcp(Internet, INET[0], HOST_INET_A, 8081), TimedOut, By::Default),
            (tcp(Lan, LAN[0], HOST_LAN, 8081), Open, By::Rule(1)),
            (tcp(Lan, LAN[0], HOST_LAN, 8443), TimedOut, By::Default),
            (tcp(Lan, LAN6[0], HOST_LAN6, 8081), Open, By::Rule(1)),
        ],
    );
}

/// `to`: the host address the client dialled (the host has two on its
/// internet side); Docker publishes on all of them.
fn dialled_address(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "first address only"
        to = ["203.0.113.1", "2001:db8:1::1", "192.0.2.1"]
        ports = [8081]
        "#,
    );
    check(
        lab,
        fw,
        "to",
        &[
            (tcp(Internet, INET[0], HOST_INET_A, 8081), Open, By::Rule(1)),
            (tcp(Internet, INET[0], HOST_INET_B, 8081), TimedOut, By::Default),
            (tcp(Internet, INET6[0], HOST_INET6_A, 8081), Open, By::Rule(1)),
            (tcp(Internet, INET6[0], HOST_INET6_B, 8081), TimedOut, By::Default),
            (tcp(Lan, LAN[0], HOST_LAN, 8081), Open, By::Rule(1)),
            (tcp(Lan, LAN6[0], HOST_LAN6, 8081), TimedOut, By::Default),
        ],
    );
}

/// Users write the published port (8081), not the container's (8000): a
/// rule on 8000 must not admit 8081. Routed access to the container's own
/// address (which Docker accepts) is judged too, by the port dialled there.
fn published_vs_container_port(lab: &Lab, fw: &mut Firewall, container: &[IpAddr]) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "container port"
        ports = ["8000/tcp", "8000/udp"]
        "#,
    );
    let mut cases = vec![
        (tcp(Internet, INET[0], HOST_INET_A, 8081), TimedOut, By::Default),
        (udp(Internet, INET[0], HOST_INET_A, 8081), TimedOut, By::Default),
        (tcp(Internet, INET6[0], HOST_INET6_A, 8081), TimedOut, By::Default),
        (tcp(Lan, LAN[0], HOST_LAN, 8081), TimedOut, By::Default),
        (tcp(Internet, INET[0], HOST_INET_B, 8082), TimedOut, By::Default),
    ];
    for &c in container {
        let src = same_family(c, INET[0], INET6[0]);
        cases.push((tcp(Internet, src, c, 8000), Open, By::Rule(1)));
        cases.push((udp(Internet, src, c, 8000), Open, By::Rule(1)));
    }
    check(lab, fw, "a rule on the container port", &cases);

    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "published ports"
        ports = ["8081/tcp", "8081/udp", "8082"]
        "#,
    );
    let mut cases = vec![
        (tcp(Internet, INET[0], HOST_INET_A, 8081), Open, By::Rule(1)),
        (udp(Internet, INET[0], HOST_INET_A, 8081), Open, By::Rule(1)),
        (tcp(Internet, INET6[0], HOST_INET6_A, 8081), Open, By::Rule(1)),
        (udp(Lan, LAN6[0], HOST_LAN6, 8081), Open, By::Rule(1)),
        // 8082 is published on 203.0.113.2 only.
        (tcp(Internet, INET[0], HOST_INET_B, 8082), Open, By::Rule(1)),
    ];
    for &c in container {
        let src = same_family(c, INET[0], INET6[0]);
        cases.push((tcp(Internet, src, c, 8000), TimedOut, By::Default));
    }
    check(lab, fw, "a rule on the published port", &cases);
}

/// `action` drop (times out), reject (refused at once, TCP and UDP) and
/// allow, under a default accept.
fn actions_and_default_accept(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "accept"

        [[rule]]
        name = "dropped"
        from = ["198.51.100.20", "2001:db8:100::20"]
        ports = ["8081/tcp", "8081/udp"]
        action = "drop"

        [[rule]]
        name = "rejected"
        from = ["198.51.100.30", "2001:db8:100::30"]
        ports = ["8081/tcp", "8081/udp"]
        action = "reject"

        [[rule]]
        name = "allowed"
        ports = [8443]
        action = "allow"
        "#,
    );
    let mut cases = Vec::new();
    for (i, src) in [
        (0, IpAddr::from(INET[0])),
        (1, INET[1].into()),
        (2, INET[2].into()),
        (0, INET6[0].into()),
        (1, INET6[1].into()),
        (2, INET6[2].into()),
    ] {
        let host = host_for(Internet, src);
        let (outcome, by) = [
            (Open, By::Default),
            (TimedOut, By::Rule(1)),
            (Refused, By::Rule(2)),
        ][i];
        cases.push((tcp(Internet, src, host, 8081), outcome, by));
        cases.push((udp(Internet, src, host, 8081), outcome, by));
        cases.push((tcp(Internet, src, host, 8443), Open, By::Rule(3)));
    }
    check(lab, fw, "actions", &cases);

    // A reject answers at once; a drop leaves the client waiting.
    let p = |src: IpAddr| tcp(Internet, src, HOST_INET_A, 8081);
    let timed = |src: IpAddr| {
        let start = Instant::now();
        let outcome = lab
            .probe(Internet, src, HOST_INET_A.into(), 8081, Proto::Tcp)
            .unwrap();
        (outcome, start.elapsed())
    };
    let (outcome, took) = timed(INET[2].into());
    assert_eq!(outcome, Refused, "{}", p(INET[2].into()));
    assert!(took < Duration::from_millis(150), "reject took {took:?}");
    let (outcome, took) = timed(INET[1].into());
    assert_eq!(outcome, TimedOut, "{}", p(INET[1].into()));
    // poll(2) counts whole milliseconds.
    assert!(took >= lab.config().probe_timeout * 9 / 10, "drop took {took:?}");
}

/// The first rule whose fields all match decides; an IPv4 source list does
/// not match IPv6 clients; a rule without match fields matches everything.
fn first_match_and_families(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "refuse one"
        from = "198.51.100.20"
        ports = [8081]
        action = "reject"

        [[rule]]
        name = "internet v4"
        from = ["198.51.100.0/24"]
        ports = [8081]
        "#,
    );
    check(
        lab,
        fw,
        "first match, IPv4 list",
        &[
            (tcp(Internet, INET[0], HOST_INET_A, 8081), Open, By::Rule(2)),
            (tcp(Internet, INET[1], HOST_INET_A, 8081), Refused, By::Rule(1)),
            (tcp(Internet, INET[2], HOST_INET_B, 8081), Open, By::Rule(2)),
            (tcp(Internet, INET6[0], HOST_INET6_A, 8081), TimedOut, By::Default),
            (tcp(Lan, LAN[0], HOST_LAN, 8081), TimedOut, By::Default),
        ],
    );

    // The same rules the other way round: the broad rule now decides first.
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "internet v4"
        from = ["198.51.100.0/24"]
        ports = [8081]

        [[rule]]
        name = "refuse one"
        from = "198.51.100.20"
        ports = [8081]
        action = "reject"

        [[rule]]
        name = "everything"
        "#,
    );
    check(
        lab,
        fw,
        "order reversed, catch-all rule",
        &[
            (tcp(Internet, INET[1], HOST_INET_A, 8081), Open, By::Rule(1)),
            (tcp(Internet, INET6[1], HOST_INET6_A, 8081), Open, By::Rule(3)),
            (tcp(Lan, LAN[0], HOST_LAN, 9003), Open, By::Rule(3)),
            (udp(Lan, LAN6[0], HOST_LAN6, 8081), Open, By::Rule(3)),
        ],
    );
}

/// `table` and `priority` (shown against a witness chain that counts what
/// reaches priority -10), `log` on a rule and on the default fate
/// (kernel log lines with the documented prefixes), `version`.
fn table_priority_log_version(lab: &Lab, fw: &mut Firewall) {
    fw.remove();
    // Test scaffolding: counts the container-bound SYNs that reach -10.
    lab.nft(
        "table inet dfwewitness {
            chain witness {
                type filter hook forward priority -10; policy accept;
                tcp dport 8000 tcp flags syn counter comment \"reached -10\"
            }
        }",
    )
    .unwrap();
    let policy = |priority: i32| {
        format!(
            r#"
            version = 1

            [guard]
            interfaces = ["eth0", "eth1"]
            default = "drop"
            log = true
            log_to = "kernel"
            table = "dfwe-lab"
            priority = {priority}

            [[rule]]
            name = "logged {prefix}"
            from = "198.51.100.20"
            ports = [8081]
            log = true
            "#,
            prefix = lab.prefix()
        )
    };
    let log_before = kernel_log();
    let ruleset = fw.apply(&policy(-20));
    assert_eq!(ruleset.table, "dfwe-lab");
    assert!(fw.installed("dockfw").is_none(), "only the named table exists");
    assert_eq!(fw.installed("dfwe-lab").as_ref(), Some(&ruleset));
    let cases = [
        (tcp(Internet, INET[1], HOST_INET_A, 8081), Open, By::Rule(1)),
        (tcp(Internet, INET[2], HOST_INET_A, 8081), TimedOut, By::Default),
    ];
    check(lab, fw, "table dfwe-lab, priority -20", &cases);
    assert_eq!(witness(lab), 1, "at -20 the dropped SYN never reaches -10");

    fw.apply(&policy(-1));
    check(lab, fw, "priority -1", &cases);
    assert_eq!(witness(lab), 1 + 2, "at -1 both SYNs pass -10 first");

    // Both rules logged to the kernel log (log_to = "kernel") with their
    // prefixes (the kernel log is global: match this lab's rule name and
    // the sources).
    let rule_line = format!("dockfw rule-1 allow logged {}: ", lab.prefix());
    let deadline = Instant::now() + Duration::from_secs(3);
    let (logged_rule, logged_default) = loop {
        let new: Vec<String> = kernel_log()
            .into_iter()
            .filter(|l| !log_before.contains(l))
            .collect();
        let found = |prefix: &str, src: &str| {
            new.iter()
                .filter(|l| l.contains(prefix) && l.contains(&format!("SRC={src} ")))
                .count()
        };
        let seen = (
            found(&rule_line, "198.51.100.20"),
            found("dockfw default-fate drop: ", "198.51.100.30"),
        );
        if (seen.0 >= 2 && seen.1 >= 2) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (logged_rule, logged_default),
        (2, 2),
        "kernel log lines for the logged rule and the default fate"
    );

    fw.remove();
    lab.nft("delete table inet dfwewitness").unwrap();
}

/// Packets counted by the witness chain.
fn witness(lab: &Lab) -> u64 {
    let mut nft = dockfw_nft::Nft::in_netns(lab.netns_path()).unwrap();
    let counters = nft.counters("dfwewitness").unwrap();
    assert_eq!(counters.len(), 1, "{counters:?}");
    counters[0].packets
}

/// The kernel log, one line a message.
fn kernel_log() -> Vec<String> {
    let out = std::process::Command::new("dmesg").output().expect("run dmesg");
    assert!(
        out.status.success(),
        "dmesg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}
