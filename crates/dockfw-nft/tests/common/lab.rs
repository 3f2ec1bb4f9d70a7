//! A three-namespace lab for tests with real packets, IPv4 and IPv6:
//! client -> router -> server joined by veth pairs. The router stands for the
//! Docker host: `ext0` is its guarded outside link, `br-test` a Docker bridge,
//! and a DNAT rule in its own tables publishes dialled port 8080 (TCP, UDP) as
//! the server's port 80 and 8081 (UDP) as port 81.
#![allow(dead_code)]

use dockfw_nft::testing::TestNetns;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// Connect timeout of a probe: a dropped connection takes this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(400);

/// Addresses of one family in the lab.
pub struct Family {
    /// The allowed client source (in the policy's set `admins`).
    pub allowed: &'static str,
    /// A client source no rule allows.
    pub denied: &'static str,
    /// The router's outside address, where the port is published.
    pub router: &'static str,
    /// The server ("container") address.
    pub server: &'static str,
    /// Prefix length of both links.
    pub prefix: &'static str,
    /// The router's address on the server link.
    pub router_inside: &'static str,
}

pub const V4: Family = Family {
    allowed: "10.1.0.2",
    denied: "10.1.0.3",
    router: "10.1.0.1",
    server: "10.2.0.2",
    prefix: "24",
    router_inside: "10.2.0.1",
};

pub const V6: Family = Family {
    allowed: "fd00:1::2",
    denied: "fd00:1::3",
    router: "fd00:1::1",
    server: "fd00:2::2",
    prefix: "64",
    router_inside: "fd00:2::1",
};

pub fn url(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}/")
    } else {
        format!("http://{addr}:{port}/")
    }
}

pub fn sock(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a probe saw.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Connected and got the server's answer.
    Served,
    /// Refused at once (a TCP reset).
    Refused,
    /// No answer within the connect timeout.
    TimedOut,
    /// Anything else: curl's exit code.
    Other(i32),
}

/// Namespaces client, router, server, deleted on drop.
pub struct Lab {
    pub client: TestNetns,
    pub router: TestNetns,
    pub server: TestNetns,
}

impl Lab {
    /// Builds the namespaces, links, addresses and routes of both families,
    /// Docker's stand-in DNAT on the router, and a server listening on port 80.
    /// Panics when not root.
    pub fn new() -> Self {
        let lab = Lab {
            client: TestNetns::new().unwrap(),
            router: TestNetns::new().unwrap(),
            server: TestNetns::new().unwrap(),
        };
        let (c, r, s) = (&lab.client, &lab.router, &lab.server);
        for ns in [c, r, s] {
            ns.exec("ip", ["link", "set", "lo", "up"]);
            // No duplicate address detection: IPv6 addresses usable at once.
            ns.exec("sysctl", ["-qw", "net.ipv6.conf.default.accept_dad=0"]);
            ns.exec("sysctl", ["-qw", "net.ipv6.conf.all.accept_dad=0"]);
        }
        sh(&[
            "ip",
            "link",
            "add",
            "dfwc",
            "netns",
            c.name(),
            "type",
            "veth",
            "peer",
            "name",
            "ext0",
            "netns",
            r.name(),
        ]);
        sh(&[
            "ip",
            "link",
            "add",
            "dfws",
            "netns",
            s.name(),
            "type",
            "veth",
            "peer",
            "name",
            "br-test",
            "netns",
            r.name(),
        ]);
        let add = |ns: &TestNetns, addr: &str, prefix: &str, dev: &str| {
            ns.exec(
                "ip",
                ["addr", "add", &format!("{addr}/{prefix}"), "dev", dev, "nodad"],
            );
        };
        for f in [V4, V6] {
            add(c, f.allowed, f.prefix, "dfwc");
            add(c, f.denied, f.prefix, "dfwc");
            add(r, f.router, f.prefix, "ext0");
            add(r, f.router_inside, f.prefix, "br-test");
            add(s, f.server, f.prefix, "dfws");
        }
        c.exec("ip", ["link", "set", "dfwc", "up"]);
        r.exec("ip", ["link", "set", "ext0", "up"]);
        r.exec("ip", ["link", "set", "br-test", "up"]);
        s.exec("ip", ["link", "set", "dfws", "up"]);
        // A veth passes packets only once the kernel has noticed its carrier
        // (linkwatch, up to a second later): wait for that.
        for (ns, dev) in [(c, "dfwc"), (r, "ext0"), (r, "br-test"), (s, "dfws")] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let out = Command::new("ip")
                    .args(["-n", ns.name(), "-o", "link", "show", "dev", dev])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains(" state UP ") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dev} in {} did not come up",
                    ns.name()
                );
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
            c.exec("ip", ["route", "add", server_net, "via", f.router]);
            s.exec("ip", ["route", "add", "default", "via", f.router_inside]);
        }
        r.exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
        r.exec("sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
        // Docker's part: publish 8080 (TCP and UDP) on the router as the
        // server's port 80, and 8081 (UDP) as port 81.
        r.exec(
            "nft",
            [
                "add table ip nat; add chain ip nat pre { type nat hook prerouting priority -100; }; \
                 add rule ip nat pre tcp dport 8080 dnat to 10.2.0.2:80; \
                 add rule ip nat pre udp dport 8080 dnat to 10.2.0.2:80; \
                 add rule ip nat pre udp dport 8081 dnat to 10.2.0.2:81; \
                 add table ip6 nat; add chain ip6 nat pre { type nat hook prerouting priority -100; }; \
                 add rule ip6 nat pre tcp dport 8080 dnat to [fd00:2::2]:80; \
                 add rule ip6 nat pre udp dport 8080 dnat to [fd00:2::2]:80; \
                 add rule ip6 nat pre udp dport 8081 dnat to [fd00:2::2]:81",
            ],
        );

        // The "container": listeners in the server namespace.
        let listeners = lab
            .server
            .run(|| [V4, V6].map(|f| TcpListener::bind(sock(f.server, 80)).unwrap()))
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
    pub fn probe(&self, source: &str, addr: &str, port: u16) -> (ProbeResult, Duration) {
        let start = Instant::now();
        let timeout = format!("{}", CONNECT_TIMEOUT.as_secs_f64());
        let code = self
            .client
            .command("curl")
            .args(["-gs", "-o", "/dev/null"])
            .args(["--connect-timeout", &timeout, "--max-time", "5"])
            .args(["--interface", source, &url(addr, port)])
            .status()
            .unwrap()
            .code()
            .unwrap_or(-1);
        let outcome = match code {
            0 => ProbeResult::Served,
            7 => ProbeResult::Refused,
            28 => ProbeResult::TimedOut,
            other => ProbeResult::Other(other),
        };
        (outcome, start.elapsed())
    }
}
