//! Per-source limits with real traffic: `limit` (rate of new connections,
//! with a burst) and `max_connections` (concurrent connections). The excess
//! is dropped (times out) while the allowed part passes, each source and
//! family counted on its own, and established connections are untouched.
//!
//! Needs root and docker.io: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use common::{Firewall, check, expect, tcp};
use dockfw_core::layout::{default_counter, rule_chain};
use dockfw_e2e::addr::{
    HOST_INET_A, HOST_INET6_A, HOST_LAN, INET_SOURCES as INET, INET6_SOURCES as INET6, LAN_SOURCES as LAN,
};
use dockfw_e2e::{Client, HeldConnection, Lab, Probe, ProbeResult, Proto};
use std::time::{Duration, Instant};

use Client::{Internet, Lan};
use ProbeResult::{Open, TimedOut};

#[test]
#[ignore = "needs root and the Docker lab"]
fn rate_limits_and_connection_limits() {
    let (_serial, lab) = common::lab("dfwe-limits");
    let started = Instant::now();
    lab.run_echo(
        "web",
        &["8081:8000/tcp", "8443:8443/tcp"],
        &[(Proto::Tcp, 8000), (Proto::Tcp, 8443)],
    )
    .unwrap();
    let mut fw = Firewall::new(&lab);
    burst_then_rate(&lab, &mut fw);
    rate_refills(&lab, &mut fw);
    concurrent_connections(&lab, &mut fw);
    eprintln!("limits suite: {:?}", started.elapsed());
}

/// Outcomes of `p` repeated `n` times at once, Open first.
fn repeated(lab: &Lab, p: Probe, n: usize) -> Vec<ProbeResult> {
    let mut got = lab.probe_all(&vec![p; n]).unwrap();
    got.sort_by_key(|o| *o != Open);
    got
}

/// `limit = { rate = "1/minute", burst = 3 }`: three new connections per
/// source pass, the rest are dropped; each source (and each family) has its
/// own budget; other rules are not limited.
fn burst_then_rate(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "limited"
        ports = [8081]
        limit = { rate = "1/minute", burst = 3 }

        [[rule]]
        name = "unlimited"
        ports = [8443]
        "#,
    );
    let want = [Open, Open, Open, TimedOut, TimedOut];
    for (from, src, dst) in [
        (Internet, INET[0].into(), HOST_INET_A.into()),
        (Internet, INET[1].into(), HOST_INET_A.into()),
        (Internet, INET6[0].into(), HOST_INET6_A.into()),
        (Lan, LAN[0].into(), HOST_LAN.into()),
    ] {
        let p = tcp(from, src, dst, 8081);
        assert_eq!(repeated(lab, p, 5), want, "{p}: burst 3");
        // The budget is spent: a later connection is dropped too.
        assert_eq!(
            lab.probe(from, src, dst, 8081, Proto::Tcp).unwrap(),
            TimedOut,
            "{p}"
        );
    }
    let unlimited = tcp(Internet, INET[0], HOST_INET_A, 8443);
    assert_eq!(repeated(lab, unlimited, 8), vec![Open; 8], "{unlimited}");

    // The rule's chain: its heading counter saw every new connection (4
    // sources x 6), the IPv4 and IPv6 over-limit drops the excess (3 x 3
    // and 1 x 3); the jump to the label chain and the accept carry no
    // counter (one per decision: the heading one).
    let chain: Vec<u64> = fw
        .counters()
        .into_iter()
        .filter(|c| c.chain == rule_chain(0))
        .map(|c| c.packets)
        .collect();
    assert_eq!(chain, [24, 9, 3, 0, 0], "counters of the limited rule's chain");
    assert_eq!(fw.decided(&default_counter()), 0);
}

/// `limit = { rate = "2/second", burst = 2 }`: of six connections at once
/// two pass; a second later the bucket has refilled and two pass again.
fn rate_refills(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "two a second"
        ports = [8081]
        limit = { rate = "2/second", burst = 2 }
        "#,
    );
    let p = tcp(Internet, INET[2], HOST_INET_A, 8081);
    let want = [Open, Open, TimedOut, TimedOut, TimedOut, TimedOut];
    let first = Instant::now();
    assert_eq!(repeated(lab, p, 6), want, "{p}: first second");
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(first.elapsed()));
    assert_eq!(repeated(lab, p, 6), want, "{p}: after refilling");
}

/// `max_connections = 2`: with two connections held open a third from the
/// same source is dropped, while other sources (and the other family)
/// connect; the held ones keep working; closing one frees a place.
fn concurrent_connections(lab: &Lab, fw: &mut Firewall) {
    fw.apply(
        r#"
        [guard]
        interfaces = ["eth0", "eth1"]
        default = "drop"

        [[rule]]
        name = "two at a time"
        ports = [8081]
        max_connections = 2
        "#,
    );
    let v4 = tcp(Internet, INET[0], HOST_INET_A, 8081);
    let v6 = tcp(Internet, INET6[0], HOST_INET6_A, 8081);
    let hold = |p: Probe| -> HeldConnection { lab.hold(p).unwrap_or_else(|e| panic!("{e}")) };
    let mut held: Vec<HeldConnection> = vec![hold(v4), hold(v4), hold(v6), hold(v6)];
    check(
        lab,
        "a third connection",
        &[
            (v4, TimedOut),
            (v6, TimedOut),
            (tcp(Internet, INET[1], HOST_INET_A, 8081), Open),
            (tcp(Lan, LAN[0], HOST_LAN, 8081), Open),
        ],
    );
    for connection in &mut held {
        assert_eq!(
            connection.exchange(Duration::from_secs(2)).unwrap(),
            Open,
            "{} still works",
            connection.probe()
        );
    }
    // Closing one connection per family frees a place (once conntrack has
    // seen the close), and the limit holds again with two.
    held.remove(0);
    held.remove(1);
    for p in [v4, v6] {
        let deadline = Instant::now() + Duration::from_secs(3);
        let again = loop {
            match lab.hold(p) {
                Ok(connection) => break connection,
                Err(e) if Instant::now() > deadline => panic!("no place freed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        held.push(again);
    }
    check(lab, "two held again", &expect([v4, v6], TimedOut));
    assert_eq!(held.len(), 4);
}
