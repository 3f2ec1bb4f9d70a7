//! Applying from what was installed, without reading the table again: an
//! apply plans from the image of its last apply while nf_tables is still at
//! the generation that image holds in; another program's commit to the
//! table makes it read again and converge; commits elsewhere, fed through
//! `Nft::note_commit`, keep the image trusted. Reads are counted with the
//! `testing` counter of dump requests. Each test in a namespace of its own.

mod common;

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{Ruleset, SetElements};
use dockfw_nft::monitor::{Event, Monitor};
use dockfw_nft::testing::TestNetns;
use dockfw_nft::{Change, Nft, TransactionKind};
use std::net::Ipv4Addr;
use std::time::Duration;

fn big_v4(ruleset: &mut Ruleset) -> &mut Vec<Interval<Ipv4Addr>> {
    match &mut ruleset.sets[0].elements {
        SetElements::Ipv4(intervals) => intervals,
        _ => unreachable!("large() starts with the IPv4 set"),
    }
}

fn kinds(report: &dockfw_nft::ApplyReport) -> Vec<TransactionKind> {
    report.transactions.iter().map(|t| t.kind).collect()
}

fn setup() -> (TestNetns, Nft, Ruleset) {
    dockfw_nft::testing::require_root();
    let ns = TestNetns::new().expect("cannot create a network namespace");
    let mut nft = ns.nft().unwrap();
    let ruleset = common::large("dockfw", 10, 1000);
    assert_eq!(nft.apply(&ruleset).unwrap().change, Change::Created);
    (ns, nft, ruleset)
}

#[test]
#[ignore = "needs root"]
fn reapplies_with_a_valid_image_read_nothing() {
    let (_ns, mut nft, ruleset) = setup();
    let before = nft.dump_requests();
    // Unchanged: nothing sent, nothing read (one GETGEN).
    let report = nft.apply(&ruleset).unwrap();
    assert_eq!(report.change, Change::Unchanged);
    assert_eq!((report.reads, report.transactions.len()), (0, 0));
    assert_eq!(nft.dump_requests(), before, "an unchanged re-apply dumped");

    // One interval added to the set rules use, apart from the others: one
    // element-only transaction, and the table is known without reading.
    let mut added = ruleset.clone();
    big_v4(&mut added).push(Interval::single(Ipv4Addr::new(192, 0, 2, 1)));
    let report = nft.apply(&added).unwrap();
    assert_eq!(kinds(&report), [TransactionKind::Update]);
    assert_eq!(report.reads, 0);
    assert_eq!(
        nft.dump_requests(),
        before,
        "an element-only update read the table"
    );
    assert_eq!(nft.installed("dockfw").unwrap(), Some(added.clone()));

    // A rule changes: one Switch, and only the structure is read back.
    let before = nft.dump_requests();
    let mut renamed = added.clone();
    renamed.chains[1].rules[0].comment.push_str(" (renamed)");
    let report = nft.apply(&renamed).unwrap();
    assert_eq!(kinds(&report), [TransactionKind::Switch]);
    assert_eq!((report.reads, report.element_reads), (1, 0));
    assert_eq!(nft.dump_requests().1, before.1, "set elements were dumped again");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(renamed.clone()));

    // The interval removed again: back in one Update.
    let mut removed = renamed.clone();
    big_v4(&mut removed).pop();
    let report = nft.apply(&removed).unwrap();
    assert_eq!(kinds(&report), [TransactionKind::Update]);
    assert_eq!(nft.installed("dockfw").unwrap(), Some(removed));
}

#[test]
#[ignore = "needs root"]
fn a_foreign_commit_to_the_table_makes_apply_read_again_and_converge() {
    let (ns, mut nft, ruleset) = setup();
    ns.exec("nft", ["add element inet dockfw big-v4 { 192.0.2.9 }"]);
    let report = nft.apply(&ruleset).unwrap();
    assert_eq!(report.change, Change::Updated, "{report:?}");
    assert!(report.reads >= 1 && report.element_reads >= 1, "{report:?}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(ruleset.clone()));

    // A rule deleted behind our back, then an update planned from the image
    // would delete by stale handles: read again instead.
    let handle = ns
        .exec("nft", ["-a", "list", "chain", "inet", "dockfw", "rule-0"])
        .lines()
        .filter(|line| !line.trim_start().starts_with("chain") && !line.trim_start().starts_with("table"))
        .find_map(|line| line.split("# handle ").nth(1).map(str::trim).map(str::to_string))
        .unwrap();
    ns.exec(
        "nft",
        ["delete", "rule", "inet", "dockfw", "rule-0", "handle", &handle],
    );
    let mut want = ruleset.clone();
    big_v4(&mut want).push(Interval::single(Ipv4Addr::new(192, 0, 2, 1)));
    let report = nft.apply(&want).unwrap();
    assert!(report.reads >= 1, "{report:?}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));

    // Any commit elsewhere, not told: the image is not trusted either.
    ns.exec("nft", ["add table ip other"]);
    let report = nft.apply(&ruleset).unwrap();
    assert!(report.reads >= 1, "{report:?}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(ruleset));
}

/// Feeds every commit the monitor reports until none comes for a while.
fn follow(nft: &mut Nft, monitor: &mut Monitor) -> usize {
    let mut seen = 0;
    while let Some(event) = monitor.next(Some(Duration::from_millis(300))).unwrap() {
        match event {
            Event::Commit(commit) => nft.note_commit(&commit),
            _ => nft.forget_installed(),
        }
        seen += 1;
    }
    seen
}

#[test]
#[ignore = "needs root"]
fn commits_elsewhere_noted_from_the_monitor_keep_the_image() {
    dockfw_nft::testing::require_root();
    let ns = TestNetns::new().expect("cannot create a network namespace");
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    let mut nft = ns.nft().unwrap();
    let ruleset = common::large("dockfw", 10, 1000);
    nft.apply(&ruleset).unwrap();
    // Docker-like commits to tables of their own, seen through the monitor.
    ns.exec("nft", ["add table ip docker-like"]);
    ns.exec("nft", ["add chain ip docker-like DOCKER"]);
    ns.exec(
        "nft",
        ["add rule ip docker-like DOCKER ip daddr 172.17.0.2 tcp dport 80 accept"],
    );
    assert!(
        follow(&mut nft, &mut monitor) >= 3,
        "our commits and three of nft's"
    );
    let before = nft.dump_requests();
    let report = nft.apply(&ruleset).unwrap();
    assert_eq!((report.change, report.reads), (Change::Unchanged, 0));
    let mut added = ruleset.clone();
    big_v4(&mut added).push(Interval::single(Ipv4Addr::new(192, 0, 2, 1)));
    let report = nft.apply(&added).unwrap();
    assert_eq!((kinds(&report), report.reads), (vec![TransactionKind::Update], 0));
    assert_eq!(nft.dump_requests(), before, "commits elsewhere made apply read");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(added.clone()));

    // A commit to our table, noted: read again, and repaired.
    follow(&mut nft, &mut monitor);
    ns.exec("nft", ["flush chain inet dockfw rule-0"]);
    follow(&mut nft, &mut monitor);
    let report = nft.apply(&added).unwrap();
    assert_eq!(report.change, Change::Updated);
    assert!(report.reads >= 1, "{report:?}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(added));
}

/// Dump requests that listed set elements, since `before`.
fn element_dumps(nft: &Nft, before: (u64, u64)) -> u64 {
    nft.dump_requests().1 - before.1
}

#[test]
#[ignore = "needs root"]
fn tampering_followed_from_the_monitor_is_repaired_without_dumping_elements() {
    dockfw_nft::testing::require_root();
    let ns = TestNetns::new().expect("cannot create a network namespace");
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    let mut nft = ns.nft().unwrap();
    let ruleset = common::large("dockfw", 10, 1000);
    nft.apply(&ruleset).unwrap();
    follow(&mut nft, &mut monitor);
    // Each kind of tampering the notifications describe exactly: the
    // structure is read again, no set's elements are dumped, and the
    // repair leaves exactly the ruleset (checked by a fresh connection,
    // which reads everything).
    let tampering = [
        "insert rule inet dockfw forward accept",
        "flush chain inet dockfw rule-0",
        "delete element inet dockfw big-v4 { 10.0.0.0-10.0.0.1 }",
        "add element inet dockfw big-v4 { 192.0.2.77 }",
        "add element inet dockfw big-v4 { 198.51.100.0/24 }",
    ];
    for command in tampering {
        ns.exec("nft", [command]);
        follow(&mut nft, &mut monitor);
        let before = nft.dump_requests();
        let report = nft.apply(&ruleset).unwrap_or_else(|e| panic!("{command}: {e}"));
        assert_eq!(report.change, Change::Updated, "{command}: {report:?}");
        assert_eq!(element_dumps(&nft, before), 0, "{command}: elements dumped");
        follow(&mut nft, &mut monitor);
        assert_eq!(
            ns.nft().unwrap().installed("dockfw").unwrap().as_ref(),
            Some(&ruleset),
            "{command}: not repaired"
        );
        // And the image is exact again: nothing to do, nothing read.
        let report = nft.apply(&ruleset).unwrap();
        assert_eq!((report.change, report.reads), (Change::Unchanged, 0), "{command}");
    }

    // Several commits in a row, followed, then one apply.
    ns.exec("nft", ["delete element inet dockfw big-v4 { 10.0.0.8-10.0.0.9 }"]);
    ns.exec("nft", ["add element inet dockfw big-v4 { 192.0.2.55 }"]);
    ns.exec("nft", ["add rule inet dockfw rule-1 drop"]);
    follow(&mut nft, &mut monitor);
    let before = nft.dump_requests();
    assert_eq!(nft.apply(&ruleset).unwrap().change, Change::Updated);
    assert_eq!(element_dumps(&nft, before), 0);
    assert_eq!(
        ns.nft().unwrap().installed("dockfw").unwrap(),
        Some(ruleset.clone())
    );

    // An element with more than a key (a timeout) is not followed: that
    // set is dumped again, and the table still repaired.
    follow(&mut nft, &mut monitor);
    ns.exec(
        "nft",
        ["add set inet dockfw extra { type ipv4_addr; flags timeout; }"],
    );
    ns.exec("nft", ["add element inet dockfw extra { 192.0.2.1 timeout 1h }"]);
    follow(&mut nft, &mut monitor);
    nft.apply(&ruleset).unwrap();
    follow(&mut nft, &mut monitor);
    assert_eq!(
        ns.nft().unwrap().installed("dockfw").unwrap(),
        Some(ruleset.clone())
    );

    // A commit the monitor did not report to us (not followed): a full read.
    ns.exec(
        "nft",
        ["delete element inet dockfw big-v4 { 10.0.0.12-10.0.0.13 }"],
    );
    let before = nft.dump_requests();
    assert_eq!(nft.apply(&ruleset).unwrap().change, Change::Updated);
    assert!(element_dumps(&nft, before) >= 1);
    assert_eq!(ns.nft().unwrap().installed("dockfw").unwrap(), Some(ruleset));
}

/// A scratch directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dockfw-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    /// The one image file in it.
    fn image(&self) -> std::path::PathBuf {
        let mut files: Vec<_> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "image"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.pop().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root"]
fn another_process_takes_set_elements_from_disk_while_nothing_was_committed() {
    dockfw_nft::testing::require_root();
    let ns = TestNetns::new().expect("cannot create a network namespace");
    let dir = Scratch::new("images");
    let ruleset = common::large("dockfw", 10, 1000);
    let connect = || {
        let mut nft = ns.nft().unwrap();
        nft.keep_images_on_disk(&dir.0);
        nft
    };
    connect().apply(&ruleset).unwrap();

    // A new connection (as a new process): nothing committed since, so the
    // elements come from disk; the structure is read.
    let mut nft = connect();
    let report = nft.apply(&ruleset).unwrap();
    assert_eq!(report.change, Change::Unchanged);
    assert_eq!((report.reads, report.element_reads), (1, 0), "{report:?}");
    // Assigning drops the connection before: its image is on disk.
    nft = connect();
    assert_eq!(nft.installed("dockfw").unwrap(), Some(ruleset.clone()));
    assert_eq!(nft.inspect("dockfw").unwrap().unwrap().ruleset(), Some(&ruleset));
    assert_eq!(nft.dump_requests().1, 0, "elements were dumped");

    // One interval added by a new connection: one transaction, no dump.
    let mut added = ruleset.clone();
    big_v4(&mut added).push(Interval::single(Ipv4Addr::new(192, 0, 2, 1)));
    nft = connect();
    let report = nft.apply(&added).unwrap();
    assert_eq!(kinds(&report), [TransactionKind::Update]);
    assert_eq!(report.element_reads, 0, "{report:?}");

    // Someone committed since: the file is not believed.
    ns.exec("nft", ["delete element inet dockfw big-v4 { 10.0.0.0-10.0.0.1 }"]);
    nft = connect();
    let report = nft.apply(&added).unwrap();
    assert_eq!(report.change, Change::Updated);
    assert!(report.element_reads >= 1, "{report:?}");
    assert_eq!(
        ns.nft().unwrap().installed("dockfw").unwrap(),
        Some(added.clone())
    );

    // A file saved in another namespace (the same generation, by chance or
    // copied there) is not believed either: the namespace's cookie differs.
    let other = TestNetns::new().expect("cannot create a network namespace");
    let other_dir = Scratch::new("images-other");
    let mut there = other.nft().unwrap();
    there.keep_images_on_disk(&other_dir.0);
    there.apply(&added).unwrap();
    drop(there);
    std::fs::copy(dir.image(), other_dir.image()).unwrap();
    there = other.nft().unwrap();
    there.keep_images_on_disk(&other_dir.0);
    assert!(there.apply(&added).unwrap().element_reads >= 1);

    // Nor is a damaged file.
    drop(nft);
    std::fs::write(dir.image(), b"not an image").unwrap();
    nft = connect();
    let report = nft.apply(&added).unwrap();
    assert_eq!(report.change, Change::Unchanged);
    assert!(report.element_reads >= 1, "{report:?}");
}

#[test]
#[ignore = "needs root"]
fn a_set_flooded_with_junk_is_written_anew_not_edited_element_by_element() {
    let (ns, mut nft, ruleset) = setup();
    // 5,000 addresses someone added to the 1,000-interval set.
    let junk: Vec<String> = (0..5000u32)
        .map(|i| Ipv4Addr::from(0xc612_0000 + 2 * i).to_string())
        .collect();
    ns.exec(
        "nft",
        [format!("add element inet dockfw big-v4 {{ {} }}", junk.join(", ")).as_str()],
    );
    let report = nft.apply(&ruleset).unwrap();
    // Deleting them would be one Update of 10,000 kernel elements; the
    // set's copy holds the 1,000 wanted intervals (2,000 elements), written
    // whole, and the original is then written anew.
    assert_ne!(kinds(&report), [TransactionKind::Update], "{report:?}");
    let deleting = 10_000 * 8;
    assert!(report.batch_bytes < 2 * deleting, "{report:?}");
    assert_eq!(ns.nft().unwrap().installed("dockfw").unwrap(), Some(ruleset));
}
