//! Another program changing nf_tables between our read of the table and our
//! commit makes the kernel refuse the batch (ERESTART): apply reads the table
//! again, plans the step anew and retries.

mod common;

use dockfw_core::ruleset::{Ruleset, SetElements};
use dockfw_nft::testing::{TestNetns, require_root};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn apply_retries_when_someone_else_commits_meanwhile() {
    if !require_root("apply_retries_when_someone_else_commits_meanwhile") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    // Two rulesets a step apart: the set rules use changes, so each apply
    // takes four transactions, each planned from a read of the table.
    let first = common::realistic("dockfw");
    let mut second = first.clone();
    second.sets[0].elements = SetElements::Ipv4(vec![dockfw_core::interval::Interval::single(
        std::net::Ipv4Addr::new(192, 0, 2, 99),
    )]);
    let (stop, started) = (AtomicBool::new(false), AtomicBool::new(false));
    let (busy, retried, commits) = std::thread::scope(|scope| {
        // Someone else: commits to its own table every few milliseconds, as
        // Docker does when containers start (one commit per iptables-nft
        // command, each command a process taking some milliseconds).
        let noise = scope.spawn(|| {
            let mut other = ns.nft().unwrap();
            let table = Ruleset {
                table: "other".into(),
                sets: vec![],
                chains: vec![],
            };
            let mut commits = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // Our own commits can make the noise give up too; it only
                // needs to keep committing.
                match other.replace(&table) {
                    Ok(_) | Err(dockfw_nft::Error::Busy { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                other.remove("other").unwrap();
                commits += 2;
                started.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            commits
        });
        // Stops the noise however this thread leaves the scope.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&stop);
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let (mut retried, mut busy) = (0, 0);
        for round in 0..60 {
            let want = if round % 2 == 0 { &first } else { &second };
            match nft.apply(want) {
                Ok(report) => {
                    retried += usize::from(report.attempts as usize > report.transactions.len());
                    assert_eq!(nft.installed("dockfw").unwrap().as_ref(), Some(want));
                }
                Err(dockfw_nft::Error::Busy { .. }) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        (busy, retried, noise.join().unwrap())
    });
    eprintln!("{commits} concurrent commits; {retried} applies retried, {busy} gave up");
    // Every apply either committed (perhaps after re-planning) or gave up
    // cleanly with Busy; most must get through, and some must have retried.
    assert!(busy < 10, "{busy} of 60 applies gave up");
    assert!(retried > 0, "no apply met a concurrent commit");
}
