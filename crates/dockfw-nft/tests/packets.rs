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

#[path = "common/lab.rs"]
mod lab;

use dockfw_core::compile::{CHAIN_DEFAULT, rule_chain};
use dockfw_nft::Nft;
use dockfw_nft::testing::require_root;
use lab::{CONNECT_TIMEOUT, Lab, Outcome, V4, V6, sock};

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
