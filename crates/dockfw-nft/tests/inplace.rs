//! In-place updates: what `apply` keeps, what it changes, in how many
//! transactions, and that a change the kernel rejects is undone even when it
//! spans several transactions. Each test in a network namespace of its own.

mod common;

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::*;
use dockfw_nft::testing::TestNetns;
use dockfw_nft::{Change, Error, Nft, TransactionKind};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use TransactionKind::{Prepare, Switch};

/// Kernel handles of the table's sets and chains, by kind and name, from
/// `nft -a list table`.
fn handles(ns: &TestNetns) -> BTreeMap<String, u64> {
    ns.exec("nft", ["-a", "list", "table", "inet", "dockfw"])
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (kind, rest) = line.split_once(' ')?;
            if kind != "set" && kind != "chain" {
                return None;
            }
            let (name, handle) = rest.split_once(" { # handle ")?;
            Some((format!("{kind} {}", name.trim_matches('"')), handle.parse().ok()?))
        })
        .collect()
}

fn kinds(report: &dockfw_nft::ApplyReport) -> Vec<TransactionKind> {
    report.transactions.iter().map(|t| t.kind).collect()
}

fn set_mut<'a>(ruleset: &'a mut Ruleset, name: &str) -> &'a mut Set {
    ruleset.sets.iter_mut().find(|s| s.name == name).unwrap()
}

fn chain_mut<'a>(ruleset: &'a mut Ruleset, name: &str) -> &'a mut Chain {
    ruleset.chains.iter_mut().find(|c| c.name == name).unwrap()
}

fn v4(a: [u8; 4]) -> Interval<Ipv4Addr> {
    Interval::single(Ipv4Addr::from(a))
}

fn setup() -> (TestNetns, Nft, Ruleset) {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let base = common::realistic("dockfw");
    let report = nft.apply(&base).unwrap();
    assert_eq!(report.change, Change::Created);
    assert_eq!(kinds(&report), [Prepare, Switch], "sets first, then rules");
    (ns, nft, base)
}

#[test]
#[ignore = "needs root"]
fn reapplying_the_installed_ruleset_sends_nothing() {
    let (_ns, mut nft, base) = setup();
    let generation = nft.generation().unwrap();
    let report = nft.apply(&base).unwrap();
    assert_eq!(report.change, Change::Unchanged);
    assert!(report.transactions.is_empty());
    assert_eq!((report.attempts, report.messages, report.batch_bytes), (0, 0, 0));
    assert_eq!(report.generation, generation);
    assert_eq!(nft.generation().unwrap(), generation, "nothing was committed");
}

#[test]
#[ignore = "needs root"]
fn an_update_leaves_what_did_not_change_alone() {
    let (ns, mut nft, base) = setup();
    let before = handles(&ns);
    let counters_before = nft.counters("dockfw").unwrap();

    // A set rules use gets another element, one rule of a chain changes.
    let mut want = base.clone();
    let SetElements::Ipv4(admins) = &mut set_mut(&mut want, "admins-v4").elements else {
        unreachable!()
    };
    admins.push(v4([203, 0, 113, 7]));
    chain_mut(&mut want, "policy").rules[2].comment = "range, renamed".into();
    let report = nft.apply(&want).unwrap();
    assert_eq!(report.change, Change::Updated);
    assert_eq!(
        kinds(&report),
        [Prepare, Switch, Prepare, Switch],
        "the set rules use changed through a staging copy"
    );
    assert_eq!(report.transactions.len(), 4);
    assert_eq!(report.attempts, 4);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want.clone()));
    // Every set and chain is the same kernel object as before, the changed
    // set included (updated in place while no rule used it).
    assert_eq!(handles(&ns), before);

    // Rules: the unchanged ones keep their handles; the renamed one and
    // those using the changed set were replaced.
    let counters = nft.counters("dockfw").unwrap();
    let handle = |counters: &[dockfw_nft::RuleCounter], chain: &str, index: usize| {
        counters
            .iter()
            .find(|c| c.chain == chain && c.index == index)
            .unwrap()
            .handle
    };
    for chain in &base.chains {
        for index in 0..chain.rules.len() {
            // Rule 0 of `policy` uses admins-v4; rule 2 was renamed.
            let replaced = chain.name == "policy" && (index == 0 || index == 2);
            assert_eq!(
                handle(&counters, &chain.name, index) != handle(&counters_before, &chain.name, index),
                replaced,
                "rule {index} of chain {}",
                chain.name
            );
        }
    }
}

#[test]
#[ignore = "needs root"]
fn counters_of_untouched_rules_survive_an_update() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let rule = |comment: &str, port| Rule {
        comment: comment.into(),
        matches: vec![
            Match::NfProto(Family::Ipv4),
            Match::L4Proto(Proto::Udp),
            Match::DialledPort(PortMatch::Single(port)),
        ],
        statements: vec![Statement::Counter],
        verdict: None,
    };
    let ruleset = |rules| Ruleset {
        table: "dockfw".into(),
        sets: vec![],
        chains: vec![Chain {
            name: "input".into(),
            hook: Some(BaseHook {
                hook: Hook::Input,
                priority: 0,
            }),
            rules,
        }],
    };
    let first = ruleset(vec![rule("counted", 9), rule("other", 10)]);
    assert_eq!(kinds(&nft.apply(&first).unwrap()), [TransactionKind::Create]);
    ns.exec("ip", ["link", "set", "lo", "up"]);
    ns.run(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            socket.send_to(b"x", "127.0.0.1:9").unwrap();
        }
    })
    .unwrap();
    let counted = |nft: &mut Nft| nft.counters("dockfw").unwrap()[0].packets;
    assert_eq!(counted(&mut nft), 5);
    // Another rule changes, one is added: the counting rule keeps its count.
    let second = ruleset(vec![rule("counted", 9), rule("renamed", 10), rule("added", 11)]);
    assert_eq!(kinds(&nft.apply(&second).unwrap()), [Switch]);
    assert_eq!(counted(&mut nft), 5);
    // Unchanged: nothing sent, nothing reset.
    assert_eq!(nft.apply(&second).unwrap().change, Change::Unchanged);
    assert_eq!(counted(&mut nft), 5);
    // The counting rule itself changes: it is a new rule, counting from 0.
    let third = ruleset(vec![rule("counted, renamed", 9), rule("renamed", 10)]);
    nft.apply(&third).unwrap();
    assert_eq!(counted(&mut nft), 0);
}

#[test]
#[ignore = "needs root"]
fn sets_and_chains_come_and_go() {
    let (ns, mut nft, base) = setup();
    let before = handles(&ns);
    // Drop chain rule-3 (and the rules going there, and the sets and meters
    // only it used); add a set and a chain using it.
    let mut want = base.clone();
    want.chains.retain(|c| c.name != "rule-3");
    chain_mut(&mut want, "policy")
        .rules
        .retain(|r| r.verdict != Some(Verdict::Goto("rule-3".into())));
    want.sets
        .retain(|s| !["rule-3-from-v6", "rule-3-rate-v4", "rule-3-conn-v6"].contains(&s.name.as_str()));
    want.sets.push(Set {
        name: "blocked-v4".into(),
        elements: SetElements::Ipv4(vec![v4([192, 0, 2, 99])]),
    });
    want.chains.push(Chain {
        name: "blocked".into(),
        hook: None,
        rules: vec![Rule {
            comment: "blocked".into(),
            matches: vec![Match::SourceIn {
                family: Family::Ipv4,
                set: "blocked-v4".into(),
            }],
            statements: vec![],
            verdict: Some(Verdict::Drop),
        }],
    });
    chain_mut(&mut want, "forward").rules.insert(
        1,
        Rule {
            comment: "blocklist".into(),
            matches: vec![Match::NfProto(Family::Ipv4)],
            statements: vec![],
            verdict: Some(Verdict::Jump("blocked".into())),
        },
    );
    let report = nft.apply(&want).unwrap();
    assert_eq!(kinds(&report), [Prepare, Switch], "new set first, then the rules");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want.clone()));
    let after = handles(&ns);
    for (object, handle) in &before {
        match after.get(object) {
            Some(kept) => assert_eq!(kept, handle, "{object} was recreated"),
            None => assert!(object.contains("rule-3"), "{object} vanished though still wanted"),
        }
    }
    assert!(after.contains_key("set blocked-v4") && after.contains_key("chain blocked"));

    // And back: the new set and chain go, the dropped ones return.
    let report = nft.apply(&base).unwrap();
    assert_eq!(report.change, Change::Updated);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base));
}

/// The broken change needs a new set, and another set rules use changes
/// (so it would take four transactions); the kernel refuses its rules in
/// the second. The first had created the new set and a staging copy: sets
/// no rule used, so it changed no packet's fate, and the rollback deletes
/// them. The table ends as it was, every object the same kernel object.
#[test]
#[ignore = "needs root"]
fn a_rejected_change_is_undone_even_after_its_first_transaction() {
    let (ns, mut nft, base) = setup();
    let before = handles(&ns);
    let generation = nft.generation().unwrap();
    let broken = common::failing_after_one_transaction();
    let err = nft.apply(&broken).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    // The Prepare had committed, so the error says it was undone rather
    // than that nothing was changed.
    let Error::Undone {
        committed: 1, cause, ..
    } = &err
    else {
        panic!("expected Undone after 1 transaction, got {err:?}")
    };
    let Error::Rejected { failures, .. } = &**cause else {
        panic!("expected Rejected, got {cause:?}")
    };
    assert!(failures.iter().any(|f| f.errno == libc::ENOENT), "{failures:?}");
    assert!(
        text.contains("rule 2 \"broken-rule\" in chain `policy`"),
        "{text}"
    );
    assert!(text.contains("jumps to a chain that does not exist"), "{text}");
    assert!(
        text.contains("they were undone, so the table holds the ruleset it held before"),
        "{text}"
    );
    // Two transactions committed: the Prepare, and the rollback deleting
    // what it created.
    assert_eq!(nft.generation().unwrap(), generation.wrapping_add(2));
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base));
    assert_eq!(handles(&ns), before);
}

#[test]
#[ignore = "needs root"]
fn a_rejected_first_install_leaves_no_table() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let mut broken = common::realistic("dockfw");
    chain_mut(&mut broken, "guarded").rules[0].verdict = Some(Verdict::Goto("nowhere".into()));
    let err = nft.apply(&broken).unwrap_err();
    // Sets first (committed), then the rejected rules: the table is removed again.
    assert!(
        matches!(&err, Error::Undone { cause, .. } if matches!(**cause, Error::Rejected { .. })),
        "{err:?}"
    );
    assert_eq!(nft.installed("dockfw").unwrap(), None);
}

#[test]
#[ignore = "needs root"]
fn changed_base_chains_and_meters_are_recreated() {
    let (_ns, mut nft, base) = setup();
    // A meter's timeout changes: a new meter under a staging name first.
    let mut want = base.clone();
    let SetElements::Meter(meter) = &mut set_mut(&mut want, "rule-3-rate-v4").elements else {
        unreachable!()
    };
    meter.timeout_secs = Some(120);
    let report = nft.apply(&want).unwrap();
    assert_eq!(kinds(&report), [Prepare, Switch, Prepare, Switch]);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want.clone()));

    // A base chain moves to another priority: recreated (with every chain
    // listed after it, to keep their order) in one transaction.
    chain_mut(&mut want, "forward").hook = Some(BaseHook {
        hook: Hook::Forward,
        priority: -20,
    });
    let report = nft.apply(&want).unwrap();
    assert_eq!(kinds(&report), [Switch]);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}

#[test]
#[ignore = "needs root"]
fn a_table_apply_cannot_update_in_place_is_replaced() {
    let (ns, mut nft, base) = setup();
    // A rule dockfw does not write.
    ns.exec(
        "nft",
        [
            "add", "rule", "inet", "dockfw", "forward", "meta", "mark", "1", "counter",
        ],
    );
    assert!(matches!(nft.installed("dockfw"), Err(Error::Unrecognised { .. })));
    // ... is deleted in place, by its handle: the rest stays as it is.
    let report = nft.apply(&base).unwrap();
    assert_eq!(report.change, Change::Updated);
    assert_eq!(kinds(&report), [TransactionKind::Switch]);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base.clone()));

    // Something else dockfw does not write (a stateful object): rebuilt.
    ns.exec("nft", ["add", "counter", "inet", "dockfw", "extra"]);
    assert!(matches!(nft.installed("dockfw"), Err(Error::Unrecognised { .. })));
    let report = nft.apply(&base).unwrap();
    assert_eq!(report.change, Change::Replaced);
    assert_eq!(kinds(&report), [TransactionKind::Replace]);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base.clone()));

    // A dormant table enforces nothing, though its contents are right.
    ns.exec(
        "nft",
        [
            "add", "table", "inet", "dockfw", "{", "flags", "dormant", ";", "}",
        ],
    );
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base.clone()));
    assert_eq!(nft.apply(&base).unwrap().change, Change::Replaced);
    let listing = ns.exec("nft", ["list", "table", "inet", "dockfw"]);
    assert!(!listing.contains("dormant"), "{listing}");
}

#[test]
#[ignore = "needs root"]
fn leftovers_of_an_interrupted_update_are_cleaned_up() {
    let (ns, mut nft, base) = setup();
    // What an update interrupted after its first Switch leaves: rules using
    // a staging copy holding the new elements, the original still there.
    let mut want = base.clone();
    set_mut(&mut want, "admins-v4").elements = SetElements::Ipv4(vec![v4([198, 51, 100, 1])]);
    let mut interrupted = base.clone();
    interrupted.sets.push(Set {
        name: "admins-v4.next".into(),
        elements: want.set("admins-v4").unwrap().elements.clone(),
    });
    for rule in &mut chain_mut(&mut interrupted, "policy").rules {
        for m in &mut rule.matches {
            if let Match::SourceIn { set, .. } = m
                && set == "admins-v4"
            {
                *set = "admins-v4.next".into();
            }
        }
    }
    nft.apply(&interrupted).unwrap();
    let report = nft.apply(&want).unwrap();
    assert_eq!(
        kinds(&report),
        [Prepare, Switch],
        "update the original, switch back"
    );
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
    assert!(!handles(&ns).contains_key("set admins-v4.next"));
}

/// A large hash of addresses is created with a size (`hash_size`): changes
/// that keep it are element-only updates on the live set; one that needs
/// another size writes the set anew through a staging copy. Each time the
/// table reads back as wanted, and `nft` lists the size.
#[test]
#[ignore = "needs root"]
fn a_sized_hash_is_updated_in_place_until_it_needs_another_size() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let addresses = |n: u32| {
        SetElements::Ipv4Addrs(
            (0..n)
                .map(|i| Interval::single(Ipv4Addr::from(0x0a00_0000 + 2 * i)))
                .collect(),
        )
    };
    let ruleset = |n: u32| Ruleset {
        table: "dockfw".into(),
        sets: vec![Set {
            name: "clients-v4".into(),
            elements: addresses(n),
        }],
        chains: vec![Chain {
            name: "input".into(),
            hook: Some(BaseHook {
                hook: Hook::Input,
                priority: 0,
            }),
            rules: vec![Rule {
                comment: "clients".into(),
                matches: vec![
                    Match::NfProto(Family::Ipv4),
                    Match::SourceIn {
                        family: Family::Ipv4,
                        set: "clients-v4".into(),
                    },
                ],
                statements: vec![Statement::Counter],
                verdict: Some(Verdict::Accept),
            }],
        }],
    };
    let size_listed = || {
        let listing = ns.exec("nft", ["list", "set", "inet", "dockfw", "clients-v4"]);
        listing
            .lines()
            .find_map(|line| line.trim().strip_prefix("size ")?.parse::<u32>().ok())
    };
    // Below SIZED_FROM: no size.
    let want = ruleset(1023);
    assert_eq!(want.sets[0].elements.hash_size(), None);
    nft.apply(&want).unwrap();
    assert_eq!(size_listed(), None);
    // From SIZED_FROM on: the size of 1024..=1639 addresses is 2048.
    for (n, size, kind) in [
        (1024, 2048, Prepare),
        (1025, 2048, TransactionKind::Update),
        (1639, 2048, TransactionKind::Update),
        (1640, 4096, Prepare),
        (1500, 2048, Prepare),
    ] {
        let want = ruleset(n);
        assert_eq!(want.sets[0].elements.hash_size(), Some(size), "{n}");
        let report = nft.apply(&want).unwrap();
        assert_eq!(kinds(&report)[0], kind, "{n} addresses");
        assert_eq!(nft.installed("dockfw").unwrap(), Some(want.clone()), "{n}");
        assert_eq!(size_listed(), Some(size), "{n}");
        // A fresh connection reads it from the kernel, not from an image.
        assert_eq!(ns.nft().unwrap().installed("dockfw").unwrap(), Some(want), "{n}");
    }
}
