//! Parse and compile time for large policies; run by `cargo xtask bench compile`.
//! Prints a Markdown table of medians.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A policy with `rules` rules and one set of `entries` addresses (every other
/// address, so nothing merges), used by every rule.
fn policy(rules: usize, entries: u32) -> String {
    let mut text = String::from("[guard]\ninterfaces = [\"eth0\", \"eth1\"]\n[sets]\nbig = [");
    for i in 0..entries {
        let _ = write!(text, "\"{}\",", Ipv4Addr::from(0x0a00_0000 + 2 * i));
    }
    text.push_str("\"2001:db8::/48\"]\n");
    for i in 0..rules {
        let port = 1000 + i;
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\ninterfaces = [\"eth0\"]\nfrom = [\"@big\"]\nports = [\"{port}\", \"{}-{}/udp\"]\n",
            port + 2000,
            port + 2010
        );
    }
    text
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    println!(
        "| rules | set entries | policy size | parse + validate | compile | kernel rules | set intervals |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (rules, entries) in [
        (10, 1_000),
        (100, 1_000),
        (1_000, 1_000),
        (10, 10_000),
        (10, 100_000),
    ] {
        let text = policy(rules, entries);
        let (mut parse_times, mut compile_times) = (Vec::new(), Vec::new());
        let mut ruleset = None;
        for _ in 0..runs {
            let start = Instant::now();
            let parsed = dockfw_core::parse("bench.toml", &text).expect("valid policy");
            parse_times.push(start.elapsed());
            let start = Instant::now();
            ruleset = Some(dockfw_core::compile(&parsed.policy, &[]));
            compile_times.push(start.elapsed());
        }
        let ruleset = ruleset.expect("at least one run");
        println!(
            "| {rules} | {entries} | {} KiB | {:.1} ms | {:.1} ms | {} | {} |",
            text.len() / 1024,
            median(parse_times).as_secs_f64() * 1e3,
            median(compile_times).as_secs_f64() * 1e3,
            ruleset.rule_count(),
            ruleset.element_count(),
        );
    }
}
