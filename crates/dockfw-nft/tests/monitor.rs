//! nf_tables notifications from the real kernel, in a fresh namespace:
//! changes made with the `nft` binary, our own commits, overflow.

mod common;

use dockfw_nft::Change;
use dockfw_nft::monitor::{Action, Commit, Event, Kind, Monitor, NfFamily, ObjectChange};
use dockfw_nft::testing::TestNetns;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

/// Runs `nft` with `args` (or, with `script`, `nft -f -` reading it) in the
/// namespace; returns the pid of the `nft` process (nsenter execs it).
fn nft(ns: &TestNetns, args: &[&str], script: Option<&str>) -> u32 {
    let mut child = ns
        .command("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsenter/nft not runnable");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(script) = script {
        stdin.write_all(script.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

/// The next commit, within a generous time.
fn commit(monitor: &mut Monitor) -> Commit {
    match monitor.next(Some(Duration::from_secs(5))).unwrap() {
        Some(Event::Commit(commit)) => commit,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Every event until none arrives for a while.
fn drain(monitor: &mut Monitor) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(event) = monitor.next(Some(Duration::from_millis(300))).unwrap() {
        events.push(event);
    }
    events
}

fn summary(changes: &[ObjectChange]) -> Vec<(Kind, Action, Option<&str>)> {
    changes
        .iter()
        .map(|c| (c.kind, c.action, c.name.as_deref()))
        .collect()
}

/// Checks that `commit` was made by the `nft` process `pid` and touched table `t`.
fn by_nft(commit: &Commit, pid: u32) {
    assert_eq!(commit.process.as_deref(), Some("nft"), "{commit:?}");
    assert_eq!(commit.pid, Some(pid), "{commit:?}");
    assert!(commit.complete);
    assert!(commit.touches(NfFamily::Inet, "t"), "{commit:?}");
    assert!(!commit.touches(NfFamily::Ip, "t"));
    assert!(!commit.touches(NfFamily::Inet, "dockfw"));
}

#[test]
#[ignore = "needs root"]
fn changes_made_with_nft_arrive_as_commits() {
    let ns = TestNetns::new().unwrap();
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    assert_eq!(monitor.try_next().unwrap(), None);

    let pid = nft(&ns, &["add table inet t"], None);
    let first = commit(&mut monitor);
    by_nft(&first, pid);
    assert_eq!(summary(&first.changes), [(Kind::Table, Action::Added, None)]);
    assert_eq!(first.changes[0].family, NfFamily::Inet);
    assert_eq!(first.changes[0].table, "t");

    let pid = nft(
        &ns,
        &["add chain inet t c { type filter hook input priority 0; }"],
        None,
    );
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(c.generation, first.generation.wrapping_add(1));
    assert_eq!(summary(&c.changes), [(Kind::Chain, Action::Added, Some("c"))]);

    let pid = nft(&ns, &["add rule inet t c tcp dport 22 accept"], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(summary(&c.changes), [(Kind::Rule, Action::Added, Some("c"))]);
    let handle = c.changes[0]
        .handle
        .expect("a rule notification carries its handle");

    let pid = nft(&ns, &["delete rule inet t c handle", &handle.to_string()], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(summary(&c.changes), [(Kind::Rule, Action::Deleted, Some("c"))]);
    assert_eq!(c.changes[0].handle, Some(handle));

    let pid = nft(&ns, &["add set inet t s { type ipv4_addr; }"], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(summary(&c.changes), [(Kind::Set, Action::Added, Some("s"))]);

    let pid = nft(&ns, &["add element inet t s { 192.0.2.1, 192.0.2.2 }"], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(c.changes.len(), 2, "one notification per element: {c:?}");
    assert!(
        c.changes
            .iter()
            .all(|x| (x.kind, x.action, x.name.as_deref()) == (Kind::Element, Action::Added, Some("s")))
    );

    let pid = nft(&ns, &["add table inet t { flags dormant; }"], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(summary(&c.changes), [(Kind::Table, Action::Added, None)]);

    // Another table, then flush ruleset: every table is deleted.
    let pid = nft(&ns, &["add table ip other"], None);
    let c = commit(&mut monitor);
    assert_eq!(c.pid, Some(pid));
    assert!(!c.touches(NfFamily::Inet, "t"));
    assert!(c.touches(NfFamily::Ip, "other"));

    let pid = nft(&ns, &["flush ruleset"], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    let deleted_tables: Vec<_> = c
        .changes
        .iter()
        .filter(|x| x.kind == Kind::Table)
        .map(|x| (x.action, x.family, x.table.as_str()))
        .collect();
    assert!(
        deleted_tables.contains(&(Action::Deleted, NfFamily::Inet, "t")),
        "{c:?}"
    );
    assert!(
        deleted_tables.contains(&(Action::Deleted, NfFamily::Ip, "other")),
        "{c:?}"
    );

    nft(&ns, &["add table inet t"], None);
    commit(&mut monitor);
    let pid = nft(&ns, &["delete table inet t"], None);
    let c = commit(&mut monitor);
    by_nft(&c, pid);
    assert_eq!(summary(&c.changes), [(Kind::Table, Action::Deleted, None)]);

    assert_eq!(drain(&mut monitor), []);
}

#[test]
#[ignore = "needs root"]
fn our_own_commits_are_recognised_by_generation() {
    let ns = TestNetns::new().unwrap();
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    let mut backend = ns.nft().unwrap();
    let tid = nix::unistd::gettid().as_raw() as u32;

    let mut ruleset = common::realistic("dockfw");
    for round in 0..2 {
        let report = backend.apply(&ruleset).unwrap();
        let ours: Vec<u32> = report.committed_generations().collect();
        assert!(!ours.is_empty());
        let commits: Vec<Commit> = drain(&mut monitor)
            .into_iter()
            .map(|e| match e {
                Event::Commit(c) => c,
                other => panic!("round {round}: unexpected {other:?}"),
            })
            .collect();
        let seen: Vec<u32> = commits.iter().map(|c| c.generation).collect();
        assert_eq!(seen, ours, "round {round}: one commit per transaction, in order");
        for c in &commits {
            assert!(c.touches(NfFamily::Inet, "dockfw"));
            assert!(c.complete);
            // nf_tables records the committing thread, not the process.
            assert_eq!(c.pid, Some(tid));
        }
        // Change one rule for the next round.
        ruleset.chains[0].rules[0].comment.push_str(" changed");
    }

    // An unchanged apply commits nothing, so nothing arrives.
    let comment = &mut ruleset.chains[0].rules[0].comment;
    comment.truncate(comment.len() - " changed".len());
    let report = backend.apply(&ruleset).unwrap();
    assert_eq!(report.change, Change::Unchanged);
    assert_eq!(report.committed_generations().count(), 0);
    assert_eq!(drain(&mut monitor), []);

    // A foreign commit in between is told apart from ours.
    let pid = nft(&ns, &["add table inet intruder"], None);
    let report = backend.apply(&common::realistic("dockfw")).unwrap();
    let ours: Vec<u32> = report.committed_generations().collect();
    let commits: Vec<Commit> = drain(&mut monitor)
        .into_iter()
        .filter_map(|e| match e {
            Event::Commit(c) => Some(c),
            Event::Overflow => panic!("overflow"),
            _ => None,
        })
        .collect();
    let (mine, foreign): (Vec<&Commit>, Vec<&Commit>) =
        commits.iter().partition(|c| ours.contains(&c.generation));
    assert_eq!(mine.len(), ours.len());
    assert_eq!(foreign.len(), 1);
    assert_eq!(foreign[0].pid, Some(pid));
    assert!(!foreign[0].touches(NfFamily::Inet, "dockfw"));
}

#[test]
#[ignore = "needs root"]
fn overflow_is_reported_and_the_monitor_recovers() {
    let ns = TestNetns::new().unwrap();
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    monitor.set_receive_buffer(4096).unwrap();

    // One commit with thousands of element notifications, unread meanwhile.
    let elements: Vec<String> = (0..4000)
        .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
        .collect();
    let script = format!(
        "add table inet t\nadd set inet t s {{ type ipv4_addr; }}\nadd element inet t s {{ {} }}\n",
        elements.join(", ")
    );
    nft(&ns, &["-f", "-"], Some(&script));
    let events = drain(&mut monitor);
    assert!(events.contains(&Event::Overflow), "no overflow among {events:?}");
    // Whatever arrived after the loss is marked incomplete.
    for event in events.iter().skip_while(|e| **e != Event::Overflow) {
        if let Event::Commit(c) = event {
            assert!(!c.complete);
            assert!(c.touches(NfFamily::Inet, "anything"));
        }
    }

    // Back to a normal buffer. If the lost notifications included the big
    // commit's NEWGEN, the next commit is still marked incomplete (nothing
    // tells where the loss ended); the one after it arrives whole.
    monitor.set_receive_buffer(1 << 20).unwrap();
    nft(&ns, &["add table inet u"], None);
    let c = commit(&mut monitor);
    assert!(c.touches(NfFamily::Inet, "u"));
    let pid = nft(&ns, &["delete table inet t"], None);
    let c = commit(&mut monitor);
    assert!(c.complete);
    assert_eq!(c.pid, Some(pid));
    assert!(
        c.changes
            .iter()
            .any(|x| (x.kind, x.action, x.table.as_str()) == (Kind::Table, Action::Deleted, "t"))
    );
}

#[test]
#[ignore = "needs root"]
fn a_waker_ends_the_wait() {
    let ns = TestNetns::new().unwrap();
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    let waker = monitor.waker();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        waker.wake();
    });
    // Without the waker this would wait forever.
    assert_eq!(monitor.next(None).unwrap(), None);
    thread.join().unwrap();
    // A timeout ends it too.
    assert_eq!(monitor.next(Some(Duration::from_millis(50))).unwrap(), None);
}
