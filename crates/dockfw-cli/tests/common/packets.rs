//! Real packets between test namespaces: a veth link, a TCP server that
//! answers, and a probe that says whether it was served, refused or met
//! silence. For the compatibility tests, which load other software's
//! rulesets beside dockfw's table.

use dockfw_nft::testing::TestNetns;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A dropped connection attempt takes this long to give up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(400);

/// What a client met.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Probe {
    /// Connected and got the server's answer.
    Served,
    /// Refused at once (a TCP reset or an ICMP error).
    Refused,
    /// No answer within the timeout.
    TimedOut,
}

/// Runs `ip ARGS` in `ns`.
pub fn ip(ns: &TestNetns, args: &[&str]) {
    ns.exec("ip", args);
}

/// Loopback up, no duplicate address detection (addresses usable at once).
pub fn prepare(ns: &TestNetns) {
    ip(ns, &["link", "set", "lo", "up"]);
    ns.exec("sysctl", ["-qw", "net.ipv6.conf.default.accept_dad=0"]);
    ns.exec("sysctl", ["-qw", "net.ipv6.conf.all.accept_dad=0"]);
}

/// A veth pair: `a_dev` in `a`, `b_dev` in `b`, both up, each with its
/// addresses (`"10.0.0.1/24"`, `"fd00::1/64"`); waits for both carriers.
pub fn veth(a: &TestNetns, a_dev: &str, a_addrs: &[&str], b: &TestNetns, b_dev: &str, b_addrs: &[&str]) {
    let status = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            a_dev,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_dev,
        ])
        .args(["netns", b.name()])
        .status()
        .unwrap();
    assert!(status.success(), "ip link add {a_dev}");
    for (ns, dev, addrs) in [(a, a_dev, a_addrs), (b, b_dev, b_addrs)] {
        for addr in addrs {
            ip(ns, &["addr", "add", addr, "dev", dev, "nodad"]);
        }
        ip(ns, &["link", "set", dev, "up"]);
    }
    wait_up(a, a_dev);
    wait_up(b, b_dev);
}

/// Waits until `dev` in `ns` has its carrier (a veth passes packets only then).
pub fn wait_up(ns: &TestNetns, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ns.exec("ip", ["-o", "link", "show", "dev", dev]);
        if out.contains("LOWER_UP") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{dev} in {} did not come up: {out}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serves a short answer on `port` at each address, from `ns`, until the
/// process ends (the listeners' threads stay in `ns`).
pub fn serve(ns: &TestNetns, addresses: &[&str], port: u16) {
    let listeners = ns
        .run(|| {
            addresses
                .iter()
                .map(|a| TcpListener::bind(SocketAddr::new(a.parse().unwrap(), port)).unwrap())
                .collect::<Vec<_>>()
        })
        .unwrap();
    for listener in listeners {
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(b"ok").is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
}

/// Connects from `ns` to `addr:port`, sends a request and reads the answer.
pub fn probe(ns: &TestNetns, addr: &str, port: u16) -> Probe {
    probe_from(ns, None, addr, port)
}

/// Like [`probe`], bound to `from` when given.
pub fn probe_from(ns: &TestNetns, from: Option<&str>, addr: &str, port: u16) -> Probe {
    probe_to(ns, from, SocketAddr::new(addr.parse().unwrap(), port))
}

/// Like [`probe`], to a link-local IPv6 address through `ns`'s `dev`.
pub fn probe_link_local(ns: &TestNetns, address: std::net::Ipv6Addr, dev: &str, port: u16) -> Probe {
    // Interface indexes are per namespace: ask inside it.
    let scope = ns.run(|| nix::net::if_::if_nametoindex(dev).unwrap()).unwrap();
    probe_to(
        ns,
        None,
        SocketAddr::V6(std::net::SocketAddrV6::new(address, port, 0, scope)),
    )
}

/// Connects from `ns` to `target` (bound to `from` when given), sends a
/// request and reads the answer.
pub fn probe_to(ns: &TestNetns, from: Option<&str>, target: SocketAddr) -> Probe {
    ns.run(|| {
        let socket = match target {
            SocketAddr::V4(_) => socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None),
            SocketAddr::V6(_) => socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None),
        }
        .unwrap();
        if let Some(from) = from {
            socket
                .bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
                .unwrap_or_else(|e| panic!("binding {from}: {e}"));
        }
        match socket.connect_timeout(&target.into(), CONNECT_TIMEOUT) {
            Ok(()) => {
                let mut stream: TcpStream = socket.into();
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                stream.write_all(b"hi").unwrap();
                let mut buf = [0u8; 2];
                match stream.read_exact(&mut buf) {
                    Ok(()) => Probe::Served,
                    Err(e) => panic!("connected to {target} but no answer: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
            Err(e)
                if e.raw_os_error() == Some(libc::EHOSTUNREACH) || e.raw_os_error() == Some(libc::EACCES) =>
            {
                Probe::Refused
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Probe::TimedOut
            }
            Err(e) => panic!("connecting to {target}: {e}"),
        }
    })
    .unwrap()
}

/// The packets counted by the rule of `table`'s `chain` whose comment is
/// `comment` (`nft list chain`, run in `ns`).
pub fn nft_counter(ns: &TestNetns, family_table: &str, chain: &str, comment: &str) -> u64 {
    let mut words: Vec<&str> = family_table.split_whitespace().collect();
    words.insert(0, "chain");
    words.insert(0, "list");
    words.push(chain);
    let listing = ns.exec("nft", &words);
    let line = listing
        .lines()
        .find(|l| l.contains(&format!("comment \"{comment}\"")))
        .unwrap_or_else(|| panic!("no rule \"{comment}\" in {family_table} {chain}:\n{listing}"));
    let after = line
        .split("packets ")
        .nth(1)
        .unwrap_or_else(|| panic!("no counter: {line}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}
