//! Another program changing nf_tables between our generation read and our
//! commit makes the kernel refuse the batch (ERESTART); apply retries.

mod common;

use dockfw_core::ruleset::Ruleset;
use dockfw_nft::testing::{TestNetns, require_root};
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn apply_retries_when_someone_else_commits_meanwhile() {
    if !require_root("apply_retries_when_someone_else_commits_meanwhile") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let want = common::realistic("dockfw");
    let stop = AtomicBool::new(false);
    let busy = std::thread::scope(|scope| {
        // Someone else: commits to its own table as fast as it can.
        let noise = scope.spawn(|| {
            let mut other = ns.nft().unwrap();
            let mut commits = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let table = Ruleset {
                    table: "other".into(),
                    sets: vec![],
                    chains: vec![],
                };
                // Our own retries can make the noise give up too; it only
                // needs to keep committing.
                match other.apply(&table) {
                    Ok(_) | Err(dockfw_nft::Error::Busy { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                other.remove("other").unwrap();
                commits += 2;
            }
            commits
        });
        let (mut retried, mut busy) = (0, 0);
        for _ in 0..40 {
            match nft.apply(&want) {
                Ok(report) => retried += usize::from(report.attempts > 1),
                Err(dockfw_nft::Error::Busy { .. }) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        let commits = noise.join().unwrap();
        eprintln!("{commits} concurrent commits; {retried} applies retried, {busy} gave up");
        busy
    });
    // Every apply either committed (perhaps after retrying) or gave up
    // cleanly with Busy; under this much noise a give-up is legitimate, but
    // most must get through.
    assert!(busy < 10, "{busy} of 40 applies gave up");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}
