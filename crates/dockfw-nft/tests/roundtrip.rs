//! Property: any sequence of valid rulesets applied one after the other onto
//! one table reads back equal after each apply, and a reader looking at the
//! table meanwhile only ever sees tables that enforce the ruleset before or
//! the ruleset after the apply (staging copies and not yet deleted sets
//! aside), never something in between.

mod common;

use dockfw_core::ruleset::Ruleset;
use dockfw_nft::testing::TestNetns;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

type Effective = Vec<(
    String,
    Option<dockfw_core::ruleset::BaseHook>,
    Vec<dockfw_core::ruleset::Rule>,
)>;

/// What the reader may see while the current apply runs (no table enforces
/// what a table without chains does: nothing).
struct Allowed {
    before: Effective,
    after: Effective,
    after_ruleset: Ruleset,
}

#[test]
#[ignore = "needs root"]
fn random_sequences_of_rulesets_apply_onto_one_table() {
    let ns = TestNetns::new().unwrap();
    let nft = RefCell::new(ns.nft().unwrap());
    let (rules, elements) = (Cell::new(0), Cell::new(0));
    let changes = RefCell::new(BTreeMap::<String, usize>::new());
    let allowed: Mutex<Option<Allowed>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let (snapshots, between, torn) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reader = ns.nft().unwrap();
            let (mut snapshots, mut between, mut torn) = (0u64, 0u64, 0u64);
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                // The lock is held for a whole read, so that the applying
                // thread cannot move on meanwhile; between reads it must get
                // its turn (std's mutex is not fair: re-locking at once can
                // starve it for minutes).
                if !std::mem::take(&mut first) {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                let allowed = allowed.lock().unwrap();
                let Some(allowed) = allowed.as_ref() else { continue };
                let read = |reader: &mut dockfw_nft::Nft| {
                    let generation = reader.generation().unwrap();
                    let seen = reader.installed("dockfw");
                    (generation, seen, reader.generation().unwrap())
                };
                let (generation, seen, after) = read(&mut reader);
                let seen = match seen {
                    Ok(seen) => seen,
                    Err(dockfw_nft::Error::Busy { .. }) => continue,
                    Err(e) => return Err(e.to_string()),
                };
                let effective = seen.as_ref().map(common::effective).unwrap_or_default();
                if effective != allowed.after && effective != allowed.before {
                    // A table that was committed reads the same again while
                    // the generation stays; a dump torn by a transaction
                    // under way (see `Nft::read`) does not. Only the first
                    // is a failure.
                    let (again_generation, again, again_after) = read(&mut reader);
                    let stable = [after, again_generation, again_after]
                        .iter()
                        .all(|g| *g == generation);
                    if stable && again.as_ref().ok() == Some(&seen) {
                        return Err(format!(
                            "a reader saw a table enforcing neither ruleset:\n{seen:#?}"
                        ));
                    }
                    torn += 1;
                    continue;
                }
                snapshots += 1;
                between +=
                    u64::from(seen.as_ref() != Some(&allowed.after_ruleset) && effective == allowed.after);
            }
            Ok((snapshots, between, torn))
        });
        let mut runner = TestRunner::new(Config {
            cases: 64,
            ..Config::default()
        });
        runner
            .run(&common::strategy::sequence("dockfw", 5), |sequence| {
                // Each case starts without a table, so that failures shrink.
                *allowed.lock().unwrap() = None;
                nft.borrow_mut().remove("dockfw").unwrap();
                let mut previous: Option<&Ruleset> = None;
                for want in &sequence {
                    rules.set(rules.get() + want.rule_count());
                    elements.set(elements.get() + want.element_count());
                    *allowed.lock().unwrap() = Some(Allowed {
                        before: previous.map(common::effective).unwrap_or_default(),
                        after: common::effective(want),
                        after_ruleset: want.clone(),
                    });
                    // `apply` verifies each transaction and the end result itself.
                    let applied = nft.borrow_mut().apply(want);
                    prop_assert!(applied.is_ok(), "{}", applied.unwrap_err());
                    let report = applied.unwrap();
                    *changes
                        .borrow_mut()
                        .entry(format!("{:?} {}", report.change, report.transactions.len()))
                        .or_default() += 1;
                    prop_assert_eq!(nft.borrow_mut().installed("dockfw").unwrap(), Some(want.clone()));
                    previous = Some(want);
                }
                Ok(())
            })
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap().unwrap_or_else(|e| panic!("{e}"))
    });
    eprintln!(
        "applied {} rules and {} intervals in total; changes (kind, transactions): {:?}; \
         the reader took {snapshots} snapshots, {between} of them between transactions \
         ({torn} torn by a transaction under way, read again)",
        rules.get(),
        elements.get(),
        changes.borrow()
    );
    assert!(
        rules.get() > 500 && elements.get() > 500,
        "strategy generates too little"
    );
    let changes = changes.into_inner();
    for (shape, least) in [
        ("Created 2", 10),
        ("Updated 1", 10),
        ("Updated 2", 1),
        ("Updated 4", 10),
    ] {
        assert!(
            changes.get(shape).is_some_and(|&n| n >= least),
            "too few {shape}: {changes:?}"
        );
    }
    let mut nft = nft.into_inner();
    assert!(nft.remove("dockfw").unwrap());
    assert_eq!(nft.installed("dockfw").unwrap(), None);
}
