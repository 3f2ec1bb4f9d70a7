//! Apply, read back, counters, remove — each test in a network namespace of its own.

mod common;

use dockfw_nft::testing::{TestNetns, require_root};

#[test]
fn realistic_ruleset_round_trips() {
    if !require_root("realistic_ruleset_round_trips") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let want = common::realistic("dockfw");
    let report = nft.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.attempts, 1);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want.clone()));
    // Applying again replaces the table with the same content.
    nft.apply(&want).unwrap();
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}
