//! Re-applying under traffic, with real packets: while a client sends UDP
//! as fast as it can through the router (IPv4 and IPv6), the router's policy
//! is changed again and again, in ways that leave every one of those packets
//! its fate: addresses added to and removed from sets the deciding rules use
//! (a staging copy each time), rules inserted above them (chains and sets
//! renamed, recreated), a named set used by a new rule. Every packet is
//! counted by a witness table just before dockfw's chain and just after it:
//! a packet that should pass and is missing after, or a packet that should
//! be dropped and shows up after, met the wrong fate while a change committed.
//!
//! The fates cover both ways a set lookup that misses goes wrong:
//!
//! | source, dialled port | decided by | fate | if the set lookup misses |
//! |---|---|---|---|
//! | admin, 8080 | `web` (set `admins`) | passes | default drop: dropped |
//! | banned, 8081 | `banned` (set `banned`) | dropped | `open`: passes |
//! | admin, 8081 | `open` | passes | |
//! | banned, 8080 | default | dropped | |
//!
//! `Nft::replace` (the old whole-table transaction) is the control: on the
//! 6.18 kernel it lets packets through and drops others (ignored test).

#[path = "common/lab.rs"]
mod lab;

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{
    BaseHook, Chain, Family, Hook, Match, PortMatch, Proto, Rule, Ruleset, Set, SetElements, Statement,
    Verdict,
};
use dockfw_nft::{Change, Nft};
use lab::{Lab, V4, V6};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The tests here saturate a CPU each; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const POLICY: &str = r#"
[guard]
interfaces = ["ext0"]
default = "drop"

[sets]
admins = ["10.1.0.2", "fd00:1::2" EXTRA_ADMINS]
banned = ["10.1.0.3", "fd00:1::3" EXTRA_BANNED]
TOP_RULE
[[rule]]
name = "web"
from = ["@admins"]
ports = ["8080/udp"]

[[rule]]
name = "banned"
from = ["@banned"]
ports = ["8081/udp"]
action = "drop"
MIDDLE_RULE
[[rule]]
name = "open"
ports = ["8081/udp"]
"#;

const EXTRA_ADMINS: [&str; 3] = ["", r#", "10.9.0.1""#, r#", "10.9.0.0/24", "fd00:9::/64""#];
const EXTRA_BANNED: [&str; 3] = ["", r#", "10.8.0.7""#, r#", "fd00:8::1", "10.8.1.0/24""#];
const TOP_RULE: [&str; 2] = [
    "",
    r#"
[[rule]]
name = "top"
from = ["10.7.0.0/16", "fd00:7::/48"]
ports = ["9000/udp", "9001-9010/tcp"]
action = "reject"
"#,
];
const MIDDLE_RULE: [&str; 2] = [
    "",
    r#"
[[rule]]
name = "middle"
from = ["10.6.0.1", "fd00:6::1"]
ports = ["8080/udp", "8081/udp"]
action = "drop"
"#,
];

/// The policy with variant `n` of each optional part.
fn policy(n: usize) -> Ruleset {
    let text = POLICY
        .replace("EXTRA_ADMINS", EXTRA_ADMINS[n % 3])
        .replace("EXTRA_BANNED", EXTRA_BANNED[n / 3 % 3])
        .replace("TOP_RULE", TOP_RULE[n / 9 % 2])
        .replace("MIDDLE_RULE", MIDDLE_RULE[n / 18 % 2]);
    let parsed = dockfw_core::parse("traffic.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    dockfw_core::compile(&parsed.policy, &[])
}

const VARIANTS: usize = 36;

/// One kind of packet: a source, a dialled port, and whether the policy lets
/// it through.
#[derive(Debug, Clone, Copy)]
struct Class {
    name: &'static str,
    family: Family,
    source: &'static str,
    router: &'static str,
    port: u16,
    passes: bool,
}

fn classes() -> Vec<Class> {
    let mut out = Vec::new();
    for (family, f, tag) in [(Family::Ipv4, V4, "v4"), (Family::Ipv6, V6, "v6")] {
        for (source, who) in [(f.allowed, "admin"), (f.denied, "banned")] {
            for port in [8080, 8081] {
                out.push(Class {
                    name: Box::leak(format!("{who} {tag} :{port}").into_boxed_str()),
                    family,
                    source,
                    router: f.router,
                    port,
                    passes: who == "admin",
                });
            }
        }
    }
    out
}

/// Counts each class just before dockfw's chain (priority -100) and just
/// after it (100), where it then drops everything: no packet goes further,
/// so each one is a new connection and is judged.
fn witness(classes: &[Class]) -> Ruleset {
    let mut sets = Vec::new();
    let counting: Vec<Rule> = classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let name = format!("source-{i}");
            let addr: IpAddr = class.source.parse().unwrap();
            sets.push(Set {
                name: name.clone(),
                elements: match addr {
                    IpAddr::V4(a) => SetElements::Ipv4(vec![Interval::single(a)]),
                    IpAddr::V6(a) => SetElements::Ipv6(vec![Interval::single(a)]),
                },
            });
            Rule {
                comment: class.name.into(),
                matches: vec![
                    Match::NfProto(class.family),
                    Match::SourceIn {
                        family: class.family,
                        set: name,
                    },
                    Match::L4Proto(Proto::Udp),
                    Match::DialledPort(PortMatch::Single(class.port)),
                ],
                statements: vec![Statement::Counter],
                verdict: None,
            }
        })
        .collect();
    let chain = |name: &str, priority, rules: Vec<Rule>| Chain {
        name: name.into(),
        hook: Some(BaseHook {
            hook: Hook::Forward,
            priority,
        }),
        rules,
    };
    let mut after = counting.clone();
    after.push(Rule {
        comment: "no further".into(),
        matches: vec![],
        statements: vec![],
        verdict: Some(Verdict::Drop),
    });
    Ruleset {
        table: "witness".into(),
        sets,
        chains: vec![chain("before", -100, counting), chain("after", 100, after)],
    }
}

/// Packets of each class counted before and after dockfw's chain.
fn counts(nft: &mut Nft, classes: &[Class]) -> Vec<(u64, u64)> {
    let counters = nft.counters("witness").unwrap();
    let at = |chain: &str, index: usize| {
        counters
            .iter()
            .find(|c| c.chain == chain && c.index == index)
            .map_or(0, |c| c.packets)
    };
    (0..classes.len())
        .map(|i| (at("before", i), at("after", i)))
        .collect()
}

/// Sends UDP for every class, round robin over four sockets (flows) each,
/// from a thread inside the client namespace, until `stop`.
fn blast(lab: &Lab, classes: &[Class], stop: &AtomicBool, sent: &AtomicU64) {
    lab.client
        .run(|| {
            let sockets: Vec<(UdpSocket, SocketAddr)> = classes
                .iter()
                .flat_map(|class| {
                    (0..4).map(move |_| {
                        let source: IpAddr = class.source.parse().unwrap();
                        let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
                        socket.set_nonblocking(true).unwrap();
                        (socket, SocketAddr::new(class.router.parse().unwrap(), class.port))
                    })
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                for (socket, to) in &sockets {
                    // A full queue or an unreachable answer only means fewer packets.
                    if socket.send_to(b"probe", to).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .unwrap();
}

/// How many changes to make: `default`, or env `DOCKFW_TRAFFIC_ROUNDS`.
fn rounds(default: usize) -> usize {
    std::env::var("DOCKFW_TRAFFIC_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Deterministic pseudo-random numbers (xorshift).
fn walk(mut state: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Some((state % VARIANTS as u64) as usize)
    })
}

/// Runs `change` `rounds` times while traffic flows; returns, per class,
/// packets counted before and after dockfw's chain during that time.
fn under_traffic(
    lab: &Lab,
    classes: &[Class],
    rounds: usize,
    mut change: impl FnMut(usize),
) -> Vec<(u64, u64)> {
    let mut witness_nft = Nft::in_netns(lab.router.path()).unwrap();
    let start = counts(&mut witness_nft, classes);
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let began = Instant::now();
    /// Stops the traffic however the changes end: a change that panics
    /// must not leave the scope waiting for the sender forever.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| blast(lab, classes, &stop, &sent));
        // Let traffic start before the first change.
        std::thread::sleep(Duration::from_millis(50));
        for round in 0..rounds {
            change(round);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let end = counts(&mut witness_nft, classes);
    eprintln!(
        "{rounds} changes in {:?}, {} packets sent",
        began.elapsed(),
        sent.load(Ordering::Relaxed)
    );
    start
        .iter()
        .zip(&end)
        .map(|(s, e)| (e.0 - s.0, e.1 - s.1))
        .collect()
}

/// Packets that met the wrong fate, per class (printed with the counts).
fn wrong(classes: &[Class], counted: &[(u64, u64)], only_passing: bool) -> u64 {
    let mut total = 0;
    for (class, (before, after)) in classes.iter().zip(counted) {
        let wrong = if class.passes {
            before - after
        } else if only_passing {
            0
        } else {
            *after
        };
        eprintln!(
            "  {:<18} {:>8} before, {:>8} after: {wrong} wrong",
            class.name, before, after
        );
        assert!(*before > 500, "too few packets of class {}", class.name);
        total += wrong;
    }
    total
}

fn setup() -> (Lab, Vec<Class>, Nft) {
    let lab = Lab::new();
    let classes = classes();
    let mut nft = Nft::in_netns(lab.router.path()).unwrap();
    nft.apply(&witness(&classes)).unwrap();
    (lab, classes, nft)
}

#[test]
#[ignore = "needs root"]
fn in_place_updates_give_every_packet_its_fate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, classes, mut nft) = setup();
    let first = policy(0);
    assert_eq!(nft.apply(&first).unwrap().change, Change::Created);
    let mut variants = walk(0x9e37_79b9_7f4a_7c15);
    let mut shapes = std::collections::BTreeMap::new();
    let counted = under_traffic(&lab, &classes, rounds(400), |_| {
        let want = policy(variants.next().unwrap());
        let report = nft.apply(&want).unwrap();
        let kinds: Vec<_> = report.transactions.iter().map(|t| t.kind).collect();
        *shapes.entry(format!("{kinds:?}")).or_insert(0) += 1;
    });
    eprintln!("updates by transactions: {shapes:?}");
    assert!(
        shapes.keys().any(|k| k.matches("Switch").count() == 2),
        "no update went through staging copies: {shapes:?}"
    );
    assert_eq!(wrong(&classes, &counted, false), 0, "packets met the wrong fate");

    // Installing from scratch (no table: everything passes) never drops
    // what the policy lets through either: sets are filled before rules use them.
    let counted = under_traffic(&lab, &classes, rounds(100), |round| {
        assert!(nft.remove(&first.table).unwrap());
        std::thread::sleep(Duration::from_millis(2));
        let report = nft.apply(&policy(round % VARIANTS)).unwrap();
        assert_eq!(report.change, Change::Created);
    });
    assert_eq!(
        wrong(&classes, &counted, true),
        0,
        "packets the policy lets through were dropped"
    );
}

/// The policy with `admins` and `banned` (IPv4) holding extra whole
/// intervals, apart from the probed addresses and from each other.
fn element_variant(admins: bool, banned: bool) -> Ruleset {
    // `admins` stays an interval set (it always holds a network), `banned`
    // a hash of single addresses: each kind is edited in place.
    let text = POLICY
        .replace(
            "EXTRA_ADMINS",
            if admins {
                r#", "10.200.0.0/24", "10.1.0.5", "10.9.0.0/24", "10.1.0.0""#
            } else {
                r#", "10.200.0.0/24""#
            },
        )
        .replace(
            "EXTRA_BANNED",
            if banned { r#", "10.1.0.7", "10.8.1.9""# } else { "" },
        )
        .replace("TOP_RULE", "")
        .replace("MIDDLE_RULE", "");
    let parsed = dockfw_core::parse("traffic.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    dockfw_core::compile(&parsed.policy, &[])
}

/// Elements added to and removed from the live sets the deciding rules use,
/// one set per apply, in one transaction each (no staging copy): the other
/// elements (the probed sources) never stop matching.
#[test]
#[ignore = "needs root"]
fn element_only_updates_give_every_packet_its_fate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, classes, mut nft) = setup();
    let (mut admins, mut banned) = (false, false);
    assert_eq!(
        nft.apply(&element_variant(admins, banned)).unwrap().change,
        Change::Created
    );
    let counted = under_traffic(&lab, &classes, rounds(400), |round| {
        if round % 2 == 0 {
            admins = !admins;
        } else {
            banned = !banned;
        }
        let report = nft.apply(&element_variant(admins, banned)).unwrap();
        let kinds: Vec<_> = report.transactions.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [dockfw_nft::TransactionKind::Update], "{report:?}");
    });
    assert_eq!(wrong(&classes, &counted, false), 0, "packets met the wrong fate");
}

/// Tests `--include-ignored` must not run (`cargo xtask test` skips
/// `manual::`): run them by hand, as root, with
/// `cargo test -p dockfw-nft --test reapply_traffic -- --ignored manual::`.
mod manual {
    use super::*;

    /// The control: the same changes by replacing the whole table. Not a
    /// property of dockfw but of the kernel (6.18 shows it, older ones may
    /// not), hence ignored; run it to see the harness catch the race.
    #[test]
    #[ignore = "manual: demonstrates the kernel race apply avoids; kernel-dependent"]
    fn replacing_the_table_lets_packets_meet_the_wrong_fate() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (lab, classes, mut nft) = setup();
        nft.replace(&policy(0)).unwrap();
        let mut variants = walk(0x9e37_79b9_7f4a_7c15);
        let counted = under_traffic(&lab, &classes, rounds(600), |_| {
            nft.replace(&policy(variants.next().unwrap())).unwrap();
        });
        let wrong = wrong(&classes, &counted, false);
        eprintln!("replace: {wrong} packets met the wrong fate");
        assert!(wrong > 0, "the race did not show");
    }
}
