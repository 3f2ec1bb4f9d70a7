//! Large rulesets apply in one transaction, and a concurrent reader never
//! sees a partial table.

mod common;

use dockfw_nft::testing::{TestNetns, require_root};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[test]
fn thousand_rules_and_100k_elements_apply_in_one_transaction() {
    if !require_root("thousand_rules_and_100k_elements_apply_in_one_transaction") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let want = common::large("dockfw", 1000, 100_000);
    let started = Instant::now();
    let report = nft.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("applied in {:?}: {report:?}", started.elapsed());
    assert_eq!(report.attempts, 1);
    // One transaction bumps the ruleset generation exactly once.
    assert_eq!(nft.generation().unwrap(), report.generation.wrapping_add(1));
    assert!(
        report.batch_bytes > 128 * 1024,
        "batch should exceed mnl's 128 KiB send_all split"
    );
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}

#[test]
fn concurrent_reader_sees_old_or_new_table_never_a_mix() {
    if !require_root("concurrent_reader_sees_old_or_new_table_never_a_mix") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let small = common::large("dockfw", 10, 10);
    let big = common::large("dockfw", 200, 100_000);
    nft.apply(&small).unwrap();

    let done = AtomicBool::new(false);
    let (snapshots, saw_big) = std::thread::scope(|scope| {
        let observer = scope.spawn(|| {
            let mut reader = ns.nft().unwrap();
            let (mut snapshots, mut saw_big) = (0, false);
            while !done.load(Ordering::SeqCst) || snapshots == 0 {
                let seen = reader.installed("dockfw").unwrap().expect("table vanished");
                let (rules, elements) = (seen.rule_count(), seen.element_count());
                assert!(
                    seen == small || seen == big,
                    "partial table seen: {rules} rules, {elements} intervals"
                );
                saw_big |= seen == big;
                snapshots += 1;
            }
            (snapshots, saw_big)
        });
        // Alternate so the observer reads across several replacements.
        for round in 0..6 {
            nft.apply(if round % 2 == 0 { &big } else { &small }).unwrap();
        }
        nft.apply(&big).unwrap();
        done.store(true, Ordering::SeqCst);
        observer.join().unwrap()
    });
    eprintln!("observer took {snapshots} consistent snapshots (saw the big table: {saw_big})");
    assert!(snapshots > 0);
}
