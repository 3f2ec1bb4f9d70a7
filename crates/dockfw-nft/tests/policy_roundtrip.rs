//! Property: any sequence of valid policies, each compiled for a changing
//! set of running containers (containers come and go, as `watch` sees them)
//! and applied onto one table, reads back exactly as compiled after each
//! apply. Where roundtrip.rs feeds the backend arbitrary rulesets, this feeds
//! it what the compiler really produces (its set names, meters, verdict
//! chains, the docker-proxy input chain, routed and label-selected
//! alternatives, ...), and the changes it makes between applies. The random
//! policies and containers are dockfw-core's shared generator.

use dockfw_core::layout::CHAIN_PROXY;
use dockfw_core::testing::{containers, policy_text};
use dockfw_core::{compile, parse};
use dockfw_nft::Change;
use dockfw_nft::testing::TestNetns;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::{Cell, RefCell};

#[test]
#[ignore = "needs root"]
fn random_policies_round_trip() {
    let ns = TestNetns::new().unwrap();
    let nft = RefCell::new(ns.nft().unwrap());
    let (rules, sets) = (Cell::new(0), Cell::new(0));
    // Rules of the docker-proxy chain, and sets of routed alternatives.
    let (proxied, routed) = (Cell::new(0), Cell::new(0));
    let updates = Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(
            &(
                prop::collection::vec(policy_text(), 1..3),
                prop::collection::vec(containers(), 2..5),
            ),
            |(texts, steps)| {
                // Each case starts without a table, so that failures shrink.
                nft.borrow_mut().remove("dockfw").unwrap();
                for (step, containers) in steps.iter().enumerate() {
                    let text = &texts[step % texts.len()];
                    let parsed = parse("random.toml", text)
                        .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                    let want = compile(&parsed.policy, containers);
                    rules.set(rules.get() + want.rule_count());
                    sets.set(sets.get() + want.sets.len());
                    proxied.set(proxied.get() + want.chain(CHAIN_PROXY).map_or(0, |c| c.rules.len()));
                    routed
                        .set(routed.get() + want.sets.iter().filter(|s| s.name.contains("-routed-")).count());
                    let applied = nft.borrow_mut().apply(&want);
                    prop_assert!(applied.is_ok(), "{}\npolicy:\n{}", applied.unwrap_err(), text);
                    updates.set(updates.get() + usize::from(applied.unwrap().change == Change::Updated));
                    let installed = nft.borrow_mut().installed(&want.table).unwrap();
                    prop_assert_eq!(
                        installed,
                        Some(want),
                        "policy:\n{}\ncontainers: {:?}",
                        text,
                        containers
                    );
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "applied {} rules and {} sets in total ({} docker-proxy rules, {} routed sets), {} in-place updates",
        rules.get(),
        sets.get(),
        proxied.get(),
        routed.get(),
        updates.get()
    );
    assert!(
        rules.get() > 500 && sets.get() > 100 && proxied.get() > 20 && routed.get() > 0 && updates.get() > 40,
        "strategy generates too little"
    );
    let mut nft = nft.into_inner();
    assert!(nft.remove("dockfw").unwrap());
    assert_eq!(nft.installed("dockfw").unwrap(), None);
}
