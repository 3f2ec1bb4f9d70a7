//! Property: any valid Ruleset applied in a fresh namespace reads back equal.

mod common;

use dockfw_nft::testing::{TestNetns, require_root};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[test]
fn random_rulesets_round_trip() {
    if !require_root("random_rulesets_round_trip") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let nft = std::cell::RefCell::new(ns.nft().unwrap());
    let (rules, elements) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&common::strategy::ruleset("dockfw"), |want| {
            rules.set(rules.get() + want.rule_count());
            elements.set(elements.get() + want.element_count());
            // `apply` itself verifies installed == desired; check it again here.
            let applied = nft.borrow_mut().apply(&want);
            prop_assert!(applied.is_ok(), "{}", applied.unwrap_err());
            prop_assert_eq!(nft.borrow_mut().installed("dockfw").unwrap(), Some(want));
            Ok(())
        })
        .unwrap();
    eprintln!(
        "applied {} rules and {} intervals in total",
        rules.get(),
        elements.get()
    );
    assert!(
        rules.get() > 500 && elements.get() > 500,
        "strategy generates too little"
    );
    let mut nft = nft.into_inner();
    assert!(nft.remove("dockfw").unwrap());
    assert_eq!(nft.installed("dockfw").unwrap(), None);
}
