//! Apply-time benchmark, run by `cargo xtask bench apply` (needs root).
//!
//! For each size, in a fresh network namespace, the median time of:
//! `Nft::apply` creating the table (the kernel commits alone, and the whole
//! call with its read-backs), re-applying it unchanged, applying it with one
//! rule changed, and with one interval added to the big set the rules use
//! (the update that takes four transactions); `Nft::replace` (the whole
//! table in one transaction); and `nft -f` on the script `dockfw_core::render`
//! makes of the same ruleset. Prints a Markdown table and notes on stdout.

#[path = "../tests/common/mod.rs"]
mod common;

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{Ruleset, SetElements};
use dockfw_nft::testing::TestNetns;
use dockfw_nft::{ApplyReport, Change, Nft};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn timed(f: impl FnOnce() -> ApplyReport) -> (Duration, ApplyReport) {
    let started = Instant::now();
    let report = f();
    (started.elapsed(), report)
}

/// Median time of `runs` applies alternating between `a` and `b` (each one
/// a real change), checking every one took `transactions` transactions; the
/// table is left at `a`.
fn alternate(nft: &mut Nft, a: &Ruleset, b: &Ruleset, runs: usize, transactions: usize) -> Duration {
    let mut times = Vec::new();
    for run in 0..runs {
        let want = if run % 2 == 0 { b } else { a };
        let (took, report) = timed(|| nft.apply(want).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(report.change, Change::Updated);
        assert_eq!(report.transactions.len(), transactions, "{report:?}");
        times.push(took);
    }
    // Leave the table at `a`, so the next measurement starts from it.
    nft.apply(a).unwrap_or_else(|e| panic!("{e}"));
    median(times)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("size") {
        let elements = std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        return size_row(elements);
    }
    if std::env::args().nth(1).as_deref() == Some("follow") {
        let runs = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(5);
        return follow_rows(runs);
    }
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let script = std::env::temp_dir().join(format!("dockfw-bench-{}.nft", std::process::id()));
    println!(
        "| rules | set intervals | batches | dockfw commit | dockfw apply + verify | unchanged | one rule changed | one interval added | `Nft::replace` | `nft -f` |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (rules, elements) in [
        (10, 100),
        (100, 100),
        (1000, 100),
        (10, 900),
        (10, 9_900),
        (10, 99_900),
    ] {
        let ruleset = common::large("dockfw", rules, elements);
        let ns = TestNetns::new().expect("cannot create a network namespace (run as root)");
        let mut nft = ns.nft().expect("cannot open nf_tables");

        // Creating the table: sets, then rules.
        let (mut commit, mut total) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..runs {
            nft.remove("dockfw").unwrap();
            let (took, report) = timed(|| nft.apply(&ruleset).unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(report.change, Change::Created);
            total.push(took);
            commit.push(report.commit_time);
            bytes = report.batch_bytes;
        }

        let unchanged = median(
            (0..runs)
                .map(|_| {
                    let (took, report) = timed(|| nft.apply(&ruleset).unwrap());
                    assert_eq!(report.change, Change::Unchanged);
                    took
                })
                .collect(),
        );

        let mut one_rule = ruleset.clone();
        let last = one_rule.chains.last_mut().unwrap();
        last.rules[0].comment.push_str(" (changed)");
        let rule_changed = alternate(&mut nft, &ruleset, &one_rule, runs, 1);

        let mut one_interval = ruleset.clone();
        let SetElements::Ipv4(big) = &mut one_interval.sets[0].elements else {
            unreachable!("large() starts with the IPv4 set")
        };
        big.push(Interval::single(Ipv4Addr::new(192, 0, 2, 1)));
        // A whole interval, apart from the others: one element-only Update.
        let interval_added = alternate(&mut nft, &ruleset, &one_interval, runs, 1);

        let replaced = median(
            (0..runs)
                .map(|_| timed(|| nft.replace(&ruleset).unwrap_or_else(|e| panic!("{e}"))).0)
                .collect(),
        );

        std::fs::write(&script, dockfw_core::render::render(&ruleset)).unwrap();
        let mut cli = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status = Command::new("nsenter")
                .arg(format!("--net={}", ns.path().display()))
                .args(["nft", "-f"])
                .arg(&script)
                .status()
                .expect("cannot run nsenter/nft");
            cli.push(started.elapsed());
            assert!(status.success(), "nft -f failed");
        }
        // The script must have built exactly the same table.
        assert_eq!(
            nft.installed("dockfw").unwrap(),
            Some(ruleset.clone()),
            "nft -f built a different table"
        );
        println!(
            "| {rules} | {} | {} KiB | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms |",
            ruleset.element_count(),
            bytes / 1024,
            ms(median(commit)),
            ms(median(total)),
            ms(unchanged),
            ms(rule_changed),
            ms(interval_added),
            ms(replaced),
            ms(median(cli)),
        );
    }
    let _ = std::fs::remove_file(&script);
    follow_rows(runs);
    println!(
        "\n`Nft::apply` is not one transaction (see the dockfw-nft crate docs): the \
         columns *dockfw commit* and *dockfw apply + verify* measure creating the table, \
         which takes two (sets, then rules); *batches* is their total size; *dockfw \
         commit* is the sum of their kernel commits, *apply + verify* the whole call \
         (after each transaction the table's structure is read back; the elements of the \
         sets just written are known from what the kernel acked, not dumped). The other \
         columns apply through the connection that created the table, which keeps an \
         image of it: *unchanged* is one generation check, nothing read or sent; *one \
         rule changed* is one transaction and a structure read; *one interval added* to \
         the big set the rules use is one element-only transaction on the live set, \
         nothing read back. *`Nft::replace`* replaces the whole table in one \
         transaction (not glitch-free) and reads it all back, elements included: the \
         kernel dumps 100,000 intervals (200,000 elements) in 0.3 to 1.5 s on this \
         machine (O(n²/batch)), which is what every apply cost before the image."
    );
}

/// The second table (issue 12): re-applies of a 100,000-interval policy by a
/// connection that installed it (a valid image: nothing committed since, or
/// only elsewhere): a container start (one rule more, as a published port
/// adds) and an unchanged re-apply, with the reads each made.
fn follow_rows(runs: usize) {
    let ruleset = common::large("dockfw", 10, 99_900);
    let ns = TestNetns::new().expect("cannot create a network namespace (run as root)");
    let mut nft = ns.nft().expect("cannot open nf_tables");
    nft.apply(&ruleset).unwrap();
    let mut started = ruleset.clone();
    let chain = started.chains.last_mut().unwrap();
    let mut published = chain.rules[0].clone();
    published.comment = "published port".into();
    chain.rules.push(published);
    let (mut start, mut unchanged) = (Vec::new(), Vec::new());
    let (mut start_reads, mut unchanged_reads) = ((0, 0), (0, 0));
    for _ in 0..runs {
        let (took, report) = timed(|| nft.apply(&started).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(report.transactions.len(), 1, "{report:?}");
        start.push(took);
        start_reads = (report.reads, report.element_reads);
        let (took, report) = timed(|| nft.apply(&started).unwrap());
        assert_eq!((report.change, report.messages), (Change::Unchanged, 0));
        unchanged.push(took);
        unchanged_reads = (report.reads, report.element_reads);
        nft.apply(&ruleset).unwrap();
    }
    println!(
        "\n| set intervals | container start (one rule more) | its table reads (with elements) | unchanged re-apply | its table reads |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} ms | {} ({}) | {} ms | {} ({}) |",
        ruleset.element_count(),
        ms(median(start)),
        start_reads.0,
        start_reads.1,
        ms(median(unchanged)),
        unchanged_reads.0,
        unchanged_reads.1,
    );
}

/// `bench_apply size N`: one policy of N intervals created, one interval
/// added, re-applied unchanged, each timed once; run it under
/// `/usr/bin/time -v` for the peak RSS.
fn size_row(elements: usize) {
    let ruleset = common::large("dockfw", 10, elements);
    let ns = TestNetns::new().expect("cannot create a network namespace (run as root)");
    let mut nft = ns.nft().expect("cannot open nf_tables");
    let (create, report) = timed(|| nft.apply(&ruleset).unwrap_or_else(|e| panic!("{e}")));
    let commit = report.commit_time;
    let mut added = ruleset.clone();
    let SetElements::Ipv4(big) = &mut added.sets[0].elements else {
        unreachable!("large() starts with the IPv4 set")
    };
    big.push(Interval::single(Ipv4Addr::new(192, 0, 2, 1)));
    let (add, _) = timed(|| nft.apply(&added).unwrap_or_else(|e| panic!("{e}")));
    let (unchanged, _) = timed(|| nft.apply(&added).unwrap());
    println!(
        "{} intervals: create {} ms (kernel commits {} ms), one interval added {} ms, unchanged {} ms",
        ruleset.element_count(),
        ms(create),
        ms(commit),
        ms(add),
        ms(unchanged)
    );
}
