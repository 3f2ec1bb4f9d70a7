//! Real packets (IPv4): client -> router (dockfw + a DNAT rule standing in
//! for Docker) -> server, namespaces joined by veth pairs. An allowed source
//! reaches the server through the published port; a denied one is rejected
//! with a TCP reset. Matching is on the dialled (pre-DNAT) port.

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::*;
use dockfw_nft::Nft;
use dockfw_nft::testing::require_root;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::Command;

/// Named namespaces, deleted on drop.
struct Lab {
    names: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all);
}

/// curl's exit code connecting from `source` to the published port.
fn curl(ns: &str, source: &str) -> i32 {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--connect-timeout",
            "2",
        ])
        .args(["--interface", source, "http://10.1.0.1:8080/"])
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

fn policy() -> Ruleset {
    let rule = |comment: &str, matches, verdict| Rule {
        comment: String::from(comment),
        matches,
        statements: vec![],
        verdict,
    };
    Ruleset {
        table: "dockfw".into(),
        sets: vec![Set {
            name: "admins-v4".into(),
            elements: SetElements::Ipv4(vec![Interval::single(Ipv4Addr::new(10, 1, 0, 2))]),
        }],
        chains: vec![
            Chain {
                name: "forward".into(),
                hook: Some(BaseHook {
                    hook: Hook::Forward,
                    priority: -5,
                }),
                rules: vec![
                    rule(
                        "established",
                        vec![Match::CtState(CtState::NotNew)],
                        Some(Verdict::Accept),
                    ),
                    rule(
                        "from ext",
                        vec![Match::IifName(IfName::Exact("ext0".into()))],
                        Some(Verdict::Goto("guarded".into())),
                    ),
                ],
            },
            Chain {
                name: "guarded".into(),
                hook: None,
                rules: vec![rule(
                    "dnat",
                    vec![Match::CtStatusDnat],
                    Some(Verdict::Goto("policy".into())),
                )],
            },
            Chain {
                name: "policy".into(),
                hook: None,
                rules: vec![
                    rule(
                        "web",
                        vec![
                            Match::NfProto(Family::Ipv4),
                            Match::SourceIn {
                                family: Family::Ipv4,
                                set: "admins-v4".into(),
                            },
                            Match::L4Proto(Proto::Tcp),
                            Match::DialledPort(PortMatch::Single(8080)),
                        ],
                        Some(Verdict::Accept),
                    ),
                    rule(
                        "default",
                        vec![Match::L4Proto(Proto::Tcp)],
                        Some(Verdict::Reject(RejectWith::TcpReset)),
                    ),
                    rule("default", vec![], Some(Verdict::Drop)),
                ],
            },
        ],
    }
}

#[test]
fn allowed_source_gets_through_denied_is_reset() {
    if !require_root("allowed_source_gets_through_denied_is_reset") {
        return;
    }
    let pid = std::process::id();
    let (c, r, s) = (
        format!("dfw-c-{pid}"),
        format!("dfw-r-{pid}"),
        format!("dfw-s-{pid}"),
    );
    let _lab = Lab {
        names: vec![c.clone(), r.clone(), s.clone()],
    };
    for ns in [&c, &r, &s] {
        sh(&["ip", "netns", "add", ns]);
        in_ns(ns, &["ip", "link", "set", "lo", "up"]);
    }
    sh(&[
        "ip", "link", "add", "dfwc", "netns", &c, "type", "veth", "peer", "name", "ext0", "netns", &r,
    ]);
    sh(&[
        "ip", "link", "add", "dfws", "netns", &s, "type", "veth", "peer", "name", "br-test", "netns", &r,
    ]);
    in_ns(&c, &["ip", "addr", "add", "10.1.0.2/24", "dev", "dfwc"]);
    in_ns(&c, &["ip", "addr", "add", "10.1.0.3/24", "dev", "dfwc"]);
    in_ns(&c, &["ip", "link", "set", "dfwc", "up"]);
    in_ns(&r, &["ip", "addr", "add", "10.1.0.1/24", "dev", "ext0"]);
    in_ns(&r, &["ip", "addr", "add", "10.2.0.1/24", "dev", "br-test"]);
    in_ns(&r, &["ip", "link", "set", "ext0", "up"]);
    in_ns(&r, &["ip", "link", "set", "br-test", "up"]);
    in_ns(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    in_ns(&s, &["ip", "addr", "add", "10.2.0.2/24", "dev", "dfws"]);
    in_ns(&s, &["ip", "link", "set", "dfws", "up"]);
    in_ns(&s, &["ip", "route", "add", "default", "via", "10.2.0.1"]);
    // Docker's part: publish 8080 on the router as the server's port 80.
    in_ns(
        &r,
        &[
            "nft",
            "add table ip nat; add chain ip nat pre { type nat hook prerouting priority -100; }; add rule ip nat pre tcp dport 8080 dnat to 10.2.0.2:80",
        ],
    );

    // The "container": a listener in the server namespace.
    let listener = std::thread::spawn({
        let path = format!("/run/netns/{s}");
        move || {
            let ns = std::fs::File::open(path).unwrap();
            // SAFETY: setns on a namespace fd we hold; affects only this thread.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            TcpListener::bind("10.2.0.2:80").unwrap()
        }
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });

    // Without dockfw both sources get through.
    assert_eq!(
        curl(&c, "10.1.0.3"),
        0,
        "lab broken: no connectivity without dockfw"
    );

    let mut nft = Nft::in_netns(format!("/run/netns/{r}")).unwrap();
    nft.apply(&policy()).unwrap();
    assert_eq!(curl(&c, "10.1.0.2"), 0, "allowed source must get through");
    // curl exit 7: connection refused, i.e. the TCP reset from `reject`.
    assert_eq!(
        curl(&c, "10.1.0.3"),
        7,
        "denied source must be rejected with a reset"
    );

    let counters = nft.counters("dockfw").unwrap();
    let count = |comment: &str| {
        counters
            .iter()
            .filter(|c| c.comment == comment)
            .map(|c| c.packets)
            .sum::<u64>()
    };
    assert!(count("web") >= 1, "{counters:?}");
    assert!(count("default") >= 1, "{counters:?}");
}
