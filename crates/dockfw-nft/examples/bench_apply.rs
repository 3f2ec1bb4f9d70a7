//! Apply-time benchmark, run by `cargo xtask bench apply` (needs root).
//!
//! For each size, in a fresh network namespace: median time of
//! `Nft::apply` (kernel commit alone, and with the read-back check), and of
//! `nft -f` on the script `dockfw_core::render` makes of the same ruleset.
//! Prints a Markdown table on stdout.

#[path = "../tests/common/mod.rs"]
mod common;

use dockfw_nft::testing::TestNetns;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let script = std::env::temp_dir().join(format!("dockfw-bench-{}.nft", std::process::id()));
    println!("| rules | set intervals | batch | dockfw commit | dockfw apply + verify | `nft -f` |");
    println!("|---:|---:|---:|---:|---:|---:|");
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
        let (mut commit, mut total, mut cli) = (Vec::new(), Vec::new(), Vec::new());
        let mut batch = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let report = nft.apply(&ruleset).unwrap_or_else(|e| panic!("{e}"));
            total.push(started.elapsed());
            commit.push(report.commit_time);
            batch = report.batch_bytes;
        }
        std::fs::write(&script, dockfw_core::render::render(&ruleset)).unwrap();
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
            "| {rules} | {} | {} KiB | {} ms | {} ms | {} ms |",
            ruleset.element_count(),
            batch / 1024,
            ms(median(commit)),
            ms(median(total)),
            ms(median(cli)),
        );
    }
    let _ = std::fs::remove_file(&script);
}
