//! Real packets, IPv4 and IPv6: client -> router -> server, three network
//! namespaces joined by veth pairs. The router runs a ruleset compiled from a
//! real policy (guarding its outside veth) and a DNAT rule standing in for
//! Docker: dialled port 8080 is published as the server's port 80.
//!
//! One source per family is allowed to the published port 8080 and gets
//! through; the other source is denied by the default fate: with `drop` its
//! connection times out, with `reject` it is refused at once (TCP reset).
//! Matching is on the dialled (pre-DNAT) port: even the allowed source is
//! denied when it dials the server's own port 80 directly (routed onto the
//! `br-*` interface, which the ruleset also judges).

use dockfw_core::compile::{CHAIN_DEFAULT, rule_chain};
use dockfw_nft::Nft;
use dockfw_nft::testing::require_root;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// Connect timeout of a probe: a dropped connection takes this long.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(400);

const POLICY: &str = r#"
[guard]
interfaces = ["ext0"]
default = "DEFAULT"

[sets]
admins = ["10.1.0.2", "fd00:1::2"]

[[rule]]
name = "web"
from = ["@admins"]
ports = [8080]
"#;

/// Addresses of one family in the lab.
struct Family {
    /// The allowed client source (in the policy's set `admins`).
    allowed: &'static str,
    /// A client source no rule allows.
    denied: &'static str,
    /// The router's outside address, where the port is published.
    router: &'static str,
    /// The server ("container") address.
    server: &'static str,
    /// Prefix length of both links.
    prefix: &'static str,
    /// The router's address on the server link.
    router_inside: &'static str,
}

const V4: Family = Family {
    allowed: "10.1.0.2",
    denied: "10.1.0.3",
    router: "10.1.0.1",
    server: "10.2.0.2",
    prefix: "24",
    router_inside: "10.2.0.1",
};

const V6: Family = Family {
    allowed: "fd00:1::2",
    denied: "fd00:1::3",
    router: "fd00:1::1",
    server: "fd00:2::2",
    prefix: "64",
    router_inside: "fd00:2::1",
};

fn url(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}/")
    } else {
        format!("http://{addr}:{port}/")
    }
}

fn sock(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
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

/// What a probe saw.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected and got the server's answer.
    Served,
    /// Refused at once (a TCP reset).
    Refused,
    /// No answer within the connect timeout.
    TimedOut,
    /// Anything else: curl's exit code.
    Other(i32),
}

/// Named namespaces client, router, server, deleted on drop.
struct Lab {
    client: String,
    router: String,
    server: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in [&self.client, &self.router, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Lab {
    /// Builds the namespaces, links, addresses and routes of both families,
    /// Docker's stand-in DNAT on the router, and a server listening on port 80.
    fn new(tag: &str) -> Self {
        let pid = std::process::id();
        let lab = Lab {
            client: format!("dfw-{tag}-c-{pid}"),
            router: format!("dfw-{tag}-r-{pid}"),
            server: format!("dfw-{tag}-s-{pid}"),
        };
        let (c, r, s) = (lab.client.as_str(), lab.router.as_str(), lab.server.as_str());
        for ns in [c, r, s] {
            sh(&["ip", "netns", "add", ns]);
            in_ns(ns, &["ip", "link", "set", "lo", "up"]);
            // No duplicate address detection: IPv6 addresses usable at once.
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
            in_ns(ns, &["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
        }
        sh(&[
            "ip", "link", "add", "dfwc", "netns", c, "type", "veth", "peer", "name", "ext0", "netns", r,
        ]);
        sh(&[
            "ip", "link", "add", "dfws", "netns", s, "type", "veth", "peer", "name", "br-test", "netns", r,
        ]);
        let add = |ns: &str, addr: &str, prefix: &str, dev: &str| {
            in_ns(
                ns,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{addr}/{prefix}"),
                    "dev",
                    dev,
                    "nodad",
                ],
            );
        };
        for f in [V4, V6] {
            add(c, f.allowed, f.prefix, "dfwc");
            add(c, f.denied, f.prefix, "dfwc");
            add(r, f.router, f.prefix, "ext0");
            add(r, f.router_inside, f.prefix, "br-test");
            add(s, f.server, f.prefix, "dfws");
        }
        in_ns(c, &["ip", "link", "set", "dfwc", "up"]);
        in_ns(r, &["ip", "link", "set", "ext0", "up"]);
        in_ns(r, &["ip", "link", "set", "br-test", "up"]);
        in_ns(s, &["ip", "link", "set", "dfws", "up"]);
        // A veth passes packets only once the kernel has noticed its carrier
        // (linkwatch, up to a second later): wait for that.
        for (ns, dev) in [(c, "dfwc"), (r, "ext0"), (r, "br-test"), (s, "dfws")] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let out = Command::new("ip")
                    .args(["-n", ns, "-o", "link", "show", "dev", dev])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains(" state UP ") {
                    break;
                }
                assert!(Instant::now() < deadline, "{dev} in {ns} did not come up");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for f in [V4, V6] {
            // The client may also try the server's own address (no DNAT).
            let server_net = if f.prefix == "24" {
                "10.2.0.0/24"
            } else {
                "fd00:2::/64"
            };
            in_ns(c, &["ip", "route", "add", server_net, "via", f.router]);
            in_ns(s, &["ip", "route", "add", "default", "via", f.router_inside]);
        }
        in_ns(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        in_ns(r, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        // Docker's part: publish 8080 on the router as the server's port 80.
        in_ns(
            r,
            &[
                "nft",
                "add table ip nat; add chain ip nat pre { type nat hook prerouting priority -100; }; \
                 add rule ip nat pre tcp dport 8080 dnat to 10.2.0.2:80; \
                 add table ip6 nat; add chain ip6 nat pre { type nat hook prerouting priority -100; }; \
                 add rule ip6 nat pre tcp dport 8080 dnat to [fd00:2::2]:80",
            ],
        );

        // The "container": listeners in the server namespace.
        let listeners = std::thread::spawn({
            let path = format!("/run/netns/{s}");
            move || {
                let ns = std::fs::File::open(path).unwrap();
                // SAFETY: setns on a namespace fd we hold; affects only this thread.
                assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                [V4, V6].map(|f| TcpListener::bind(sock(f.server, 80)).unwrap())
            }
        })
        .join()
        .unwrap();
        for listener in listeners {
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
        lab
    }

    /// Connects from `source` to `addr:port` with curl; also returns how long it took.
    fn probe(&self, source: &str, addr: &str, port: u16) -> (Outcome, Duration) {
        let start = Instant::now();
        let timeout = format!("{}", CONNECT_TIMEOUT.as_secs_f64());
        let code = Command::new("ip")
            .args(["netns", "exec", &self.client, "curl", "-gs", "-o", "/dev/null"])
            .args(["--connect-timeout", &timeout, "--max-time", "5"])
            .args(["--interface", source, &url(addr, port)])
            .status()
            .unwrap()
            .code()
            .unwrap_or(-1);
        let outcome = match code {
            0 => Outcome::Served,
            7 => Outcome::Refused,
            28 => Outcome::TimedOut,
            other => Outcome::Other(other),
        };
        (outcome, start.elapsed())
    }
}

/// Sets up a lab, checks it works without dockfw, applies the policy with
/// `default` as its default fate, and checks each family: the allowed source
/// gets through on the published port, the denied source meets `denied`, and
/// the allowed source dialling the server's own port does too.
fn run(test: &str, default: &str, denied: Outcome) {
    if !require_root(test) {
        return;
    }
    let lab = Lab::new(&default[..3]);
    for f in [V4, V6] {
        assert_eq!(
            lab.probe(f.denied, f.router, 8080).0,
            Outcome::Served,
            "lab broken: no connectivity from {} without dockfw",
            f.denied
        );
    }

    let text = POLICY.replace("DEFAULT", default);
    let parsed = dockfw_core::parse("packets.toml", &text).unwrap();
    let ruleset = dockfw_core::compile(&parsed.policy, &[]);
    let mut nft = Nft::in_netns(format!("/run/netns/{}", lab.router)).unwrap();
    nft.apply(&ruleset).unwrap();

    for f in [V4, V6] {
        let (outcome, _) = lab.probe(f.allowed, f.router, 8080);
        assert_eq!(
            outcome,
            Outcome::Served,
            "allowed source {} must get through",
            f.allowed
        );
        for (source, addr, port) in [(f.denied, f.router, 8080), (f.allowed, f.server, 80)] {
            let (outcome, took) = lab.probe(source, addr, port);
            assert_eq!(
                outcome,
                denied,
                "{source} dialling {} with default {default}",
                sock(addr, port)
            );
            match denied {
                Outcome::TimedOut => assert!(took >= CONNECT_TIMEOUT, "{took:?}"),
                _ => assert!(took < CONNECT_TIMEOUT, "a reject must be at once, took {took:?}"),
            }
        }
    }

    let counters = nft.counters(&ruleset.table).unwrap();
    // The counter rule heading a verdict chain: packets of new connections it decided.
    let count = |chain: &str| {
        counters
            .iter()
            .find(|c| c.chain == chain && c.index == 0)
            .map(|c| c.packets)
            .unwrap_or_else(|| panic!("no counter in {chain}: {counters:?}"))
    };
    // One SYN per allowed probe; the denied ones may be retransmitted (drop).
    assert_eq!(count(&rule_chain(0)), 2, "{counters:?}");
    assert!(count(CHAIN_DEFAULT) >= 4, "{counters:?}");
}

#[test]
fn ipv4_and_ipv6_default_drop_times_out() {
    run("ipv4_and_ipv6_default_drop_times_out", "drop", Outcome::TimedOut);
}

#[test]
fn ipv4_and_ipv6_default_reject_is_refused() {
    run(
        "ipv4_and_ipv6_default_reject_is_refused",
        "reject",
        Outcome::Refused,
    );
}
