//! Other writers. Another program changing nf_tables between our read of
//! the table and our commit makes the kernel refuse the batch (ERESTART):
//! apply reads the table again, plans the step anew and retries. An undo
//! is never sent over another program's commit. Other dockfw writers wait
//! for the namespace's writer lock, which dies with its holder.

mod common;

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::SetElements;
use dockfw_nft::testing::{self, TestNetns};
use dockfw_nft::{Error, Nft};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
#[ignore = "needs root"]
fn apply_retries_when_someone_else_commits_meanwhile() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    // Two rulesets a step apart: the set rules use changes, so each apply
    // takes four transactions, each planned from a read of the table.
    let first = common::realistic("dockfw");
    let mut second = first.clone();
    second.sets[0].elements = SetElements::Ipv4(vec![dockfw_core::interval::Interval::single(
        std::net::Ipv4Addr::new(192, 0, 2, 99),
    )]);
    // The noise commits every 2 ms, or, on a machine slower to read the
    // table back (a VM under emulation), every five reads' time: a commit
    // during nearly every read would make every apply give up, which is
    // another test's subject (Busy), not this one's.
    nft.apply(&first).unwrap();
    let reading = std::time::Instant::now();
    nft.installed("dockfw").unwrap();
    let period = (reading.elapsed() * 5).max(Duration::from_millis(2));
    let (stop, started) = (AtomicBool::new(false), AtomicBool::new(false));
    let (busy, retried, commits) = std::thread::scope(|scope| {
        // Someone else: commits to its own table every `period`, as
        // Docker does when containers start (one commit per iptables-nft
        // command). Not a dockfw writer (those wait for the writer lock):
        // `nft -i`, one command, so one commit, per line.
        let noise = scope.spawn(|| {
            let mut other = ns
                .command("nft")
                .arg("-i")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("nsenter/nft not runnable");
            let mut stdin = other.stdin.take().unwrap();
            let mut commits = 0u64;
            while !stop.load(Ordering::SeqCst) {
                stdin
                    .write_all(b"add table inet other\ndelete table inet other\n")
                    .unwrap();
                stdin.flush().unwrap();
                commits += 2;
                started.store(true, Ordering::SeqCst);
                std::thread::sleep(period);
            }
            drop(stdin);
            assert!(other.wait().unwrap().success(), "nft -i failed");
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

/// Another program commits (in a table of its own) between our first
/// transaction and our failing second: our table is still exactly what our
/// commit left, so the undo goes ahead and the table holds the old ruleset.
#[test]
#[ignore = "needs root"]
fn an_undo_goes_ahead_when_others_committed_only_elsewhere() {
    // Shared with the hook, which must own what it uses.
    let ns = Arc::new(TestNetns::new().unwrap());
    let mut nft = ns.nft().unwrap();
    let base = common::realistic("dockfw");
    nft.apply(&base).unwrap();
    let hook_ns = Arc::clone(&ns);
    testing::after_each_commit(&mut nft, move || {
        hook_ns.exec("nft", ["add table inet other"]);
    });
    let err = nft.apply(&common::failing_after_one_transaction()).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    let Error::Undone { committed, cause, .. } = &err else {
        panic!("expected Undone, got {err:?}")
    };
    assert_eq!(*committed, 1);
    assert!(matches!(**cause, Error::Rejected { .. }), "{cause:?}");
    assert!(
        text.contains("failed after 1 transaction had committed; they were undone"),
        "{text}"
    );
    assert!(!text.contains("nothing was changed"), "{text}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base));
    assert!(ns.exec("nft", ["list tables"]).contains("table inet other"));
}

/// Another program commits to our table between our failure and our undo:
/// an undo would overwrite its work, so the table is left as is, and the
/// error says exactly that.
#[test]
#[ignore = "needs root"]
fn an_undo_is_never_sent_over_a_foreign_commit() {
    // Shared with the hook, which must own what it uses.
    let ns = Arc::new(TestNetns::new().unwrap());
    let mut nft = ns.nft().unwrap();
    let base = common::realistic("dockfw");
    nft.apply(&base).unwrap();
    let generation = nft.generation().unwrap();
    let hook_ns = Arc::clone(&ns);
    testing::before_undo(&mut nft, move || {
        hook_ns.exec("nft", ["add element inet dockfw admins-v4 { 203.0.113.99 }"]);
    });
    let err = nft.apply(&common::failing_after_one_transaction()).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    let Error::LeftAsIs {
        committed,
        undone,
        cause,
        ..
    } = &err
    else {
        panic!("expected LeftAsIs, got {err:?}")
    };
    assert_eq!((*committed, *undone), (1, 0));
    assert!(matches!(**cause, Error::Rejected { .. }), "{cause:?}");
    for expected in [
        "failed after 1 transaction had committed",
        "rule 2 \"broken-rule\" in chain `policy`",
        "another program changed nf_tables after our first commit, so they were not undone",
        "the table holds neither the ruleset applied nor the one before",
        "run apply again",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(!text.contains("nothing was changed"), "{text}");
    // Nothing was sent after the other program's commit: our Prepare and
    // its element are both still there.
    assert_eq!(nft.generation().unwrap(), generation.wrapping_add(2));
    let table = ns.exec("nft", ["list table inet dockfw"]);
    assert!(table.contains("203.0.113.99"), "{table}");
    assert!(table.contains("set new-v4"), "{table}");
    // Applying again converges.
    nft.apply(&base).unwrap();
    assert_eq!(nft.installed("dockfw").unwrap(), Some(base));
}

/// Tests `--include-ignored` must not run (`cargo xtask test` skips
/// `manual::`): helper processes started by the tests above.
mod manual {
    use super::*;

    /// The child process [`super::a_writer_waits_for_the_lock_and_kill_9_releases_it`]
    /// starts: applies in the namespace its environment names and stops for
    /// good after the first transaction, holding the writer lock.
    #[test]
    #[ignore = "manual: a helper process of a_writer_waits_for_the_lock_and_kill_9_releases_it"]
    fn lock_holder() {
        let netns = std::env::var(HOLDER_ENV).unwrap_or_else(|_| {
            panic!(
                "manual::lock_holder is a helper process, not a test: \
                 a_writer_waits_for_the_lock_and_kill_9_releases_it starts it with \
                 {HOLDER_ENV} set; skip it with `--skip manual::` (as `cargo xtask test` does)"
            )
        });
        let mut nft = Nft::in_netns(netns).unwrap();
        testing::after_each_commit(&mut nft, || {
            println!("{HOLDING}");
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        });
        nft.apply(&common::realistic("dockfw")).unwrap();
    }
}

const HOLDER_ENV: &str = "DOCKFW_TEST_LOCK_HOLDER_NETNS";
const HOLDING: &str = "lock holder: committed, holding the lock";

/// Kills the child however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root"]
fn a_writer_waits_for_the_lock_and_kill_9_releases_it() {
    let ns = TestNetns::new().unwrap();
    let mut holder = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["manual::lock_holder", "--exact", "--ignored", "--nocapture"])
            .env(HOLDER_ENV, ns.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    let mut lines = BufReader::new(holder.0.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|line| line.unwrap() == HOLDING),
        "the lock holder ended before committing"
    );

    let mut want = common::realistic("dockfw");
    want.sets[0].elements = SetElements::Ipv4(vec![Interval::single(Ipv4Addr::new(192, 0, 2, 99))]);
    let mut nft = ns.nft().unwrap();
    nft.set_lock_wait(Duration::from_millis(300));
    let err = nft.apply(&want).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        matches!(err, Error::Locked { holder: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert!(
        text.contains(&format!(
            "another dockfw writer (pid {pid}) holds the lock for this network namespace"
        )),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(matches!(nft.remove("dockfw"), Err(Error::Locked { .. })));
    assert!(matches!(nft.replace(&want), Err(Error::Locked { .. })));
    // Readers take no lock: the holder's first transaction (the sets) is there.
    let partial = nft.installed("dockfw").unwrap().expect("the holder's Prepare");
    assert!(partial.chains.is_empty(), "{partial:?}");

    // A writer with a long enough wait blocks until the holder dies.
    nft.set_lock_wait(Duration::from_secs(30));
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| nft.apply(&want));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!writer.is_finished(), "the writer did not wait for the lock");
        // SIGKILL: the kernel closes the holder's lock file.
        holder.0.kill().unwrap();
        holder.0.wait().unwrap();
        writer.join().unwrap().unwrap();
    });
    assert_eq!(nft.installed("dockfw").unwrap(), Some(want));
}
