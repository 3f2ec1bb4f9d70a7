//! Large rulesets install in two transactions (sets, then rules), each one
//! batch sent with one `sendto`; a concurrent reader never sees a partial
//! transaction, and every table it sees enforces the old or the new ruleset.

mod common;

use dockfw_nft::TransactionKind;
use dockfw_nft::testing::TestNetns;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[test]
#[ignore = "needs root"]
fn thousand_rules_and_100k_elements_install_in_two_transactions() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let want = common::large("dockfw", 1000, 100_000);
    let started = Instant::now();
    let report = nft.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("applied in {:?}: {report:?}", started.elapsed());
    assert_eq!(report.attempts, 2);
    let kinds: Vec<_> = report.transactions.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TransactionKind::Prepare, TransactionKind::Switch]);
    // The last transaction moved the ruleset generation once, and nothing after it.
    assert_eq!(nft.generation().unwrap(), report.generation.wrapping_add(1));
    assert!(
        report.transactions.iter().all(|t| t.bytes > 128 * 1024),
        "each batch should exceed mnl's 128 KiB send_all split"
    );
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}

#[test]
#[ignore = "needs root"]
fn concurrent_reader_sees_the_old_or_the_new_policy_never_a_mix() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let small = common::large("dockfw", 10, 10);
    let big = common::large("dockfw", 200, 100_000);
    nft.apply(&small).unwrap();

    // The big set changes under the rules using it: each switch goes
    // through a staging copy, so the reader also sees tables between the
    // transactions, which enforce one ruleset or the other.
    let (small_policy, big_policy) = (common::effective(&small), common::effective(&big));
    let done = AtomicBool::new(false);
    let (snapshots, saw_big, between) = std::thread::scope(|scope| {
        let observer = scope.spawn(|| {
            let mut reader = ns.nft().unwrap();
            let (mut snapshots, mut saw_big, mut between) = (0, false, 0);
            while !done.load(Ordering::SeqCst) || snapshots == 0 {
                let seen = reader.installed("dockfw").unwrap().expect("table vanished");
                let (rules, elements) = (seen.rule_count(), seen.element_count());
                let policy = common::effective(&seen);
                assert!(
                    policy == small_policy || policy == big_policy,
                    "a table enforcing neither ruleset seen: {rules} rules, {elements} intervals"
                );
                saw_big |= policy == big_policy;
                between += usize::from(seen != small && seen != big);
                snapshots += 1;
            }
            (snapshots, saw_big, between)
        });
        // Alternate so the observer reads across several replacements.
        for round in 0..6 {
            nft.apply(if round % 2 == 0 { &big } else { &small }).unwrap();
        }
        nft.apply(&big).unwrap();
        done.store(true, Ordering::SeqCst);
        observer.join().unwrap()
    });
    eprintln!(
        "observer took {snapshots} consistent snapshots, {between} between transactions \
         (saw the big ruleset: {saw_big})"
    );
    assert!(snapshots > 0);
}
