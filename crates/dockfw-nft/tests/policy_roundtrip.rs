//! Property: any valid policy, compiled for any set of running containers and
//! applied in a fresh namespace, reads back exactly as compiled. Where
//! roundtrip.rs feeds the backend arbitrary rulesets, this feeds it what the
//! compiler really produces (its set names, meters, verdict chains, ...).

use dockfw_core::{Container, Proto, PublishedPort, compile, parse};
use dockfw_nft::testing::{TestNetns, require_root};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::{Config, TestRunner};
use std::cell::{Cell, RefCell};

const SOURCES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3",
    "192.0.2.10-192.0.2.20",
    "0.0.0.0/0",
    "255.255.255.255",
    "2001:db8::/32",
    "2001:db8:1::5-2001:db8:1::9",
    "::/0",
    "ffff::/16",
];
const HOSTS: &[&str] = &["203.0.113.5", "203.0.113.0/30", "2001:db8:ff::5", "0.0.0.0/0"];
const PORTS: &[&str] = &[
    "80",
    "443/tcp",
    "8000-8100",
    "53/udp",
    "1000-2000/udp",
    "8081",
    "5432",
    "65535",
    "1-1024/tcp",
];
const INTERFACES: &[&str] = &["eth0", "eth1", "wg*", "wg0"];
const RATES: &[&str] = &["5/second", "100/minute", "1000/hour", "10000/day"];

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

prop_compose! {
    fn rule_text(index: usize)(
        interfaces in proptest::option::of(subsequence(INTERFACES.to_vec(), 1..3)),
        from in proptest::option::of(subsequence([SOURCES, &["@a", "@b"]].concat(), 1..4)),
        to in proptest::option::of(subsequence(HOSTS.to_vec(), 1..3)),
        ports in proptest::option::of(subsequence(PORTS.to_vec(), 1..4)),
        container in proptest::option::of(select(vec!["web", "db", "gone"])),
        action in select(vec!["allow", "drop", "reject"]),
        log in any::<bool>(),
        limit in proptest::option::of((select(RATES.to_vec()), proptest::option::of(1u32..100))),
        max_connections in proptest::option::of(1u32..1000),
    ) -> String {
        let mut text = format!("[[rule]]\nname = \"r{index}\"\naction = \"{action}\"\nlog = {log}\n");
        if let Some(i) = interfaces { text += &format!("interfaces = {}\n", list(&i)); }
        if let Some(f) = from { text += &format!("from = {}\n", list(&f)); }
        if let Some(t) = to { text += &format!("to = {}\n", list(&t)); }
        if let Some(p) = ports { text += &format!("ports = {}\n", list(&p)); }
        if let Some(c) = container { text += &format!("container = \"{c}\"\n"); }
        if action == "allow" {
            match limit {
                Some((rate, Some(burst))) => text += &format!("limit = {{ rate = \"{rate}\", burst = {burst} }}\n"),
                Some((rate, None)) => text += &format!("limit = {{ rate = \"{rate}\" }}\n"),
                None => {}
            }
            if let Some(n) = max_connections { text += &format!("max_connections = {n}\n"); }
        }
        text
    }
}

fn policy_text() -> impl Strategy<Value = String> {
    (
        select(vec!["drop", "reject", "accept"]),
        any::<bool>(),
        -99i32..=-1,
        subsequence(SOURCES.to_vec(), 1..4),
        subsequence(SOURCES.to_vec(), 1..4),
        (0..7usize).prop_flat_map(|n| (0..n).map(rule_text).collect::<Vec<_>>()),
    )
        .prop_map(|(default, log, priority, a, b, rules)| {
            format!(
                "[guard]\ninterfaces = {}\ndefault = \"{default}\"\nlog = {log}\npriority = {priority}\n\
                 [sets]\na = {}\nb = {}\n{}",
                list(&["eth0", "eth1", "wg*"]),
                list(&a),
                list(&b),
                rules.concat()
            )
        })
}

fn published() -> impl Strategy<Value = PublishedPort> {
    (
        proptest::option::of(select(vec![
            "0.0.0.0",
            "::",
            "203.0.113.5",
            "203.0.113.6",
            "2001:db8:ff::5",
        ])),
        prop_oneof![
            select(vec![53u16, 80, 443, 1500, 5432, 8081, 65535]),
            1u16..=65535
        ],
        1u16..=65535,
        select(vec![Proto::Tcp, Proto::Udp]),
    )
        .prop_map(|(host_addr, host_port, container_port, proto)| PublishedPort {
            host_addr: host_addr.map(|a| a.parse().unwrap()),
            host_port,
            container_port,
            proto,
        })
}

/// Running containers: some of web, db and an unrelated one, each publishing
/// a few random ports (policies also name a container "gone" that never runs).
fn containers() -> impl Strategy<Value = Vec<Container>> {
    subsequence(vec!["web", "db", "other"], 0..=3).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|name| {
                proptest::collection::vec(published(), 0..4).prop_map(move |published| Container {
                    name: name.into(),
                    labels: Default::default(),
                    published,
                    addresses: vec![],
                })
            })
            .collect::<Vec<_>>()
    })
}

#[test]
fn random_policies_round_trip() {
    if !require_root("random_policies_round_trip") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let nft = RefCell::new(ns.nft().unwrap());
    let (rules, sets) = (Cell::new(0), Cell::new(0));
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(&(policy_text(), containers()), |(text, containers)| {
            let parsed =
                parse("random.toml", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let want = compile(&parsed.policy, &containers);
            rules.set(rules.get() + want.rule_count());
            sets.set(sets.get() + want.sets.len());
            let applied = nft.borrow_mut().apply(&want);
            prop_assert!(applied.is_ok(), "{}\npolicy:\n{}", applied.unwrap_err(), text);
            let installed = nft.borrow_mut().installed(&want.table).unwrap();
            prop_assert_eq!(
                installed,
                Some(want),
                "policy:\n{}\ncontainers: {:?}",
                text,
                containers
            );
            Ok(())
        })
        .unwrap();
    eprintln!("applied {} rules and {} sets in total", rules.get(), sets.get());
    assert!(
        rules.get() > 500 && sets.get() > 100,
        "strategy generates too little"
    );
    let mut nft = nft.into_inner();
    assert!(nft.remove("dockfw").unwrap());
    assert_eq!(nft.installed("dockfw").unwrap(), None);
}
