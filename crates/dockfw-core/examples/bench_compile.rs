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

/// A policy of `rules` rules of one TCP port each, without names or sets
/// (about 21 bytes a rule, like the 10 MB, 500,000-rule policy of issue 10).
/// Ports repeat past 65,535 rules, so later rules are warned about as never
/// matching: the "never matches" check at its busiest.
fn port_per_rule_policy(rules: usize) -> String {
    let mut text = String::from("[guard]\ninterfaces = [\"eth0\"]\n");
    for i in 0..rules {
        let _ = write!(text, "[[rule]]\nports = [{}]\n", 1 + i % 65_535);
    }
    text
}

/// The same policy with the set's entries in a list file (`file = ...`):
/// the policy text, and the list with a FireHOL-style header.
fn list_policy(rules: usize, entries: u32) -> (String, String) {
    let mut policy =
        String::from("[guard]\ninterfaces = [\"eth0\", \"eth1\"]\n[sets]\nbig = { file = \"big.netset\" }\n");
    for i in 0..rules {
        let port = 1000 + i;
        let _ = write!(
            policy,
            "[[rule]]\nname = \"r{i}\"\ninterfaces = [\"eth0\"]\nfrom = [\"@big\"]\nports = [\"{port}\", \"{}-{}/udp\"]\n",
            port + 2000,
            port + 2010
        );
    }
    let mut list = String::from("#\n# big\n#\n# ipv4 hash:ip ipset\n#\n");
    for i in 0..entries {
        let _ = writeln!(list, "{}", Ipv4Addr::from(0x0a00_0000 + 2 * i));
    }
    list.push_str("2001:db8::/48 ; and one network of the other family\n");
    (policy, list)
}

/// Reads a policy whose one set comes from `list`, as the command line does
/// (the file's bytes handed to `Draft::resolve`).
fn parse_with_list(policy: &str, list: &str) -> dockfw_core::Parsed {
    let draft = dockfw_core::Draft::parse("bench.toml", policy).expect("valid policy");
    let mut loaded = dockfw_core::sets::Loaded::new();
    loaded.insert(
        "big",
        0,
        dockfw_core::sets::Content::List {
            name: "big.netset".to_string(),
            bytes: list.as_bytes().to_vec(),
        },
    );
    draft.resolve(loaded).expect("valid list")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    println!(
        "| rules | set entries | policy size | parse + validate | compile | kernel rules | set intervals | warnings |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let shapes = [
        (10, 1_000),
        (100, 1_000),
        (1_000, 1_000),
        (10, 10_000),
        (10, 100_000),
    ]
    .map(|(rules, entries)| (rules, entries, policy(rules, entries)))
    .into_iter()
    .chain([16_000, 32_000, 500_000].map(|rules| (rules, 0, port_per_rule_policy(rules))));
    for (rules, entries, text) in shapes {
        let (mut parse_times, mut compile_times) = (Vec::new(), Vec::new());
        let mut result = None;
        for _ in 0..runs {
            let start = Instant::now();
            let parsed = dockfw_core::parse("bench.toml", &text).expect("valid policy");
            parse_times.push(start.elapsed());
            let start = Instant::now();
            let ruleset = dockfw_core::compile(&parsed.policy, &[]);
            compile_times.push(start.elapsed());
            result = Some((ruleset, parsed.warnings.len()));
        }
        let (ruleset, warnings) = result.expect("at least one run");
        println!(
            "| {rules} | {entries} | {} KiB | {:.1} ms | {:.1} ms | {} | {} | {warnings} |",
            text.len() / 1024,
            median(parse_times).as_secs_f64() * 1e3,
            median(compile_times).as_secs_f64() * 1e3,
            ruleset.rule_count(),
            ruleset.element_count(),
        );
    }
    // The 100,000-entry set again, read from a list file: parse + validate
    // includes reading the list (parse_list) and the sets' origins.
    let (rules, entries) = (10, 100_000);
    let (policy, list) = list_policy(rules, entries);
    let (mut parse_times, mut compile_times) = (Vec::new(), Vec::new());
    let mut result = None;
    for _ in 0..runs {
        let start = Instant::now();
        let parsed = parse_with_list(&policy, &list);
        parse_times.push(start.elapsed());
        let start = Instant::now();
        let ruleset = dockfw_core::compile(&parsed.policy, &[]);
        compile_times.push(start.elapsed());
        result = Some((ruleset, parsed.warnings.len()));
    }
    let (ruleset, warnings) = result.expect("at least one run");
    println!(
        "| {rules} | {entries} (list file) | {} KiB + {} KiB | {:.1} ms | {:.1} ms | {} | {} | {warnings} |",
        policy.len() / 1024,
        list.len() / 1024,
        median(parse_times).as_secs_f64() * 1e3,
        median(compile_times).as_secs_f64() * 1e3,
        ruleset.rule_count(),
        ruleset.element_count(),
    );
}
