//! Apply, read back, counters, remove — each test in a network namespace of its own.

mod common;

use dockfw_nft::testing::TestNetns;
use dockfw_nft::{Change, TransactionKind};

#[test]
#[ignore = "needs root"]
fn realistic_ruleset_round_trips() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let want = common::realistic("dockfw");
    let report = nft.apply(&want).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.change, Change::Created);
    assert_eq!(report.attempts, 2);
    let kinds: Vec<_> = report.transactions.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TransactionKind::Prepare, TransactionKind::Switch]);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want.clone()));
    // Applying again finds it installed and sends nothing.
    assert_eq!(nft.apply(&want).unwrap().change, Change::Unchanged);
    // Replacing it builds the same table anew in one transaction.
    let report = nft.replace(&want).unwrap();
    assert_eq!(report.change, Change::Replaced);
    assert_eq!(report.transactions.len(), 1);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}
