//! `cargo xtask bench [apply|compile|compare|heal] [--quick]`: benchmarks,
//! written into docs/benchmarks.md.
//!
//! - `apply` runs the `bench_apply` example of dockfw-nft (release build, as
//!   root: it creates a fresh network namespace per size).
//! - `compile` runs the `bench_compile` example of dockfw-core (no privilege).
//! - `compare` ([`compare()`]) runs the release `dockfw-nft` binary, `nft`,
//!   `iptables-restore`, `ipset` and iperf3 in network namespaces, and draws
//!   the charts (docs/*.svg).
//! - `heal` starts `dockfw-nft watch` in network namespaces, tampers with
//!   its table and times the repair.
//! - no subcommand: all four; with `--quick`, `compare --quick` only.
//!
//! Each writes its own section of docs/benchmarks.md, with the command and the
//! machine it ran on.

use crate::flags::{Bench, BenchPart};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

mod chart;
mod compare;
mod load;
mod ns;
mod stats;

const RUNS: &str = "5";

pub fn run(root: &Path, bench: Bench) -> Result<()> {
    match bench.part {
        Some(BenchPart::Apply) => apply(root),
        Some(BenchPart::Compile) => compile(root),
        Some(BenchPart::Compare) => compare(
            root,
            bench.quick,
            if bench.quick {
                "cargo xtask bench compare --quick"
            } else {
                "cargo xtask bench compare"
            },
        ),
        Some(BenchPart::Heal) => heal(
            root,
            bench.quick,
            if bench.quick {
                "cargo xtask bench heal --quick"
            } else {
                "cargo xtask bench heal"
            },
        ),
        Some(BenchPart::Measure {
            netns,
            command,
            timeout,
        }) => ns::measure(&netns, &command, timeout),
        None if bench.quick => compare(root, true, "cargo xtask bench --quick"),
        None => {
            compile(root)?;
            apply(root)?;
            compare(root, false, "cargo xtask bench")?;
            heal(root, false, "cargo xtask bench")
        }
    }
}

/// The packages `compare` runs besides those of .ci/packages.
const COMPARE_PACKAGES: &[&str] = &["ipset", "iperf3"];

fn compare(root: &Path, quick: bool, command: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("cargo xtask bench compare needs root (network namespaces)");
    }
    crate::packages::ensure(root)?;
    crate::packages::ensure_these(COMPARE_PACKAGES)?;
    crate::run("cargo", &["build", "--release", "--quiet", "-p", "dockfw-cli"])?;
    let binary = crate::target_dir()?.join("release/dockfw-nft");
    let plan = compare::Plan::new(quick);
    let load_before = load_average();
    let started = std::time::Instant::now();
    let results = compare::run(&binary, &plan)?;
    let took = started.elapsed();
    let load = format!("{load_before}; after: {}", load_average());
    draw_charts(root, &results)?;
    let section = format!(
        "## dockfw against the alternatives (`{command}`)\n\n\
         Command: `{command}` (as root; took {:.0} s). {}\n\n\
         ![apply time against entries](apply-time.svg)\n\n\
         ![new connections per second against entries](connections.svg)\n\n\
         {}\n\
         Machine: {}; {}, {}, {}, {}. Load average (1, 5, 15 min) before the run: {load}: \
         on 2 shared cores, treat differences under a factor of about 1.5 between rows as noise.\n",
        took.as_secs_f64(),
        compare::METHOD,
        compare::report(&results, &plan),
        machine(),
        describe("nft", &["--version"]),
        describe("iptables", &["--version"]),
        describe("ipset", &["--version"])
            .lines()
            .next()
            .unwrap_or("ipset"),
        describe("iperf3", &["--version"])
            .lines()
            .next()
            .unwrap_or("iperf3"),
    );
    write_section(root, "compare", &section)
}

/// The machine's load average (1, 5 and 15 minutes), as /proc/loadavg says:
/// how busy it was is part of what a figure means.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "unknown".into())
}

fn heal(root: &Path, quick: bool, command: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("cargo xtask bench heal needs root (network namespaces)");
    }
    crate::packages::ensure(root)?;
    crate::run("cargo", &["build", "--release", "--quiet", "-p", "dockfw-cli"])?;
    let binary = crate::target_dir()?.join("release/dockfw-nft");
    let plan = compare::Plan::new(quick);
    let load = load_average();
    let started = std::time::Instant::now();
    let rows = compare::run_heal(&binary, &plan)?;
    let section = format!(
        "## Repairing tampering (`{command}`)\n\n\
         Command: `{command}` (as root; took {:.0} s). {}\n\n{}\n\
         Machine: {}; {}. Load average (1, 5, 15 min) before the run: {load}.\n",
        started.elapsed().as_secs_f64(),
        compare::HEAL_METHOD,
        compare::heal_report(&rows, &plan),
        machine(),
        describe("nft", &["--version"]),
    );
    write_section(root, "heal", &section)
}

/// apply-time.svg (log-log, every tool) and connections.svg.
fn draw_charts(root: &Path, results: &compare::Results) -> Result<()> {
    let series = |tool: &str, rows: &[compare::Row]| chart::Series {
        name: tool.to_string(),
        points: rows
            .iter()
            .filter(|r| r.tool == tool)
            .filter_map(|r| Some((r.size as f64, r.wall_ms.median()?)))
            .collect(),
    };
    let apply: Vec<chart::Series> = compare::TOOLS
        .iter()
        .map(|t| series(t, &results.entries))
        .filter(|s| !s.points.is_empty())
        .collect();
    chart::log_log(
        &root.join("docs/apply-time.svg"),
        "Loading an allow-list of N sources (median wall time)",
        "entries",
        "ms",
        &apply,
    )?;
    let sizes: Vec<usize> = results
        .data
        .iter()
        .filter(|r| r.guard != compare::NO_GUARD)
        .map(|r| r.size)
        .collect();
    let (lo, hi) = (
        sizes.iter().copied().min().unwrap_or(10),
        sizes.iter().copied().max().unwrap_or(10),
    );
    let conns: Vec<chart::Series> = [
        compare::NO_GUARD,
        compare::DOCKFW,
        compare::DOCKER_USER,
        compare::IPSET_GUARD,
    ]
    .iter()
    .map(|guard| chart::Series {
        name: guard.to_string(),
        points: results
            .data
            .iter()
            .filter(|r| r.guard == *guard)
            .filter_map(|r| r.conns.median().map(|c| (r.size, c)))
            .flat_map(|(size, c)| {
                // No guard has no size: a flat line across the chart.
                if *guard == compare::NO_GUARD {
                    vec![(lo as f64, c), (hi as f64, c)]
                } else {
                    vec![(size as f64, c)]
                }
            })
            .collect(),
    })
    .filter(|s| !s.points.is_empty())
    .collect();
    chart::log_log(
        &root.join("docs/connections.svg"),
        "New TCP connections per second through a published port (client last in the list)",
        "entries",
        "connections/s",
        &conns,
    )
}

fn apply(root: &Path) -> Result<()> {
    let cargo_args = [
        "run",
        "--release",
        "--quiet",
        "-p",
        "dockfw-nft",
        "--features",
        "testing",
        "--example",
        "bench_apply",
        "--",
        RUNS,
    ];
    let table = run_example(root, &cargo_args).context("the apply benchmark needs root")?;
    let section = format!(
        "## Applying a ruleset (`cargo xtask bench apply`)\n\n\
         Command: `cargo xtask bench apply` (runs `cargo {}` as root).\n\n\
         Each size runs in a fresh network namespace; times are medians of {RUNS} runs.\n\
         The ruleset is `large()` from `crates/dockfw-nft/tests/common`: rules matching\n\
         interface, address set and dialled port, spread over regular chains jumped to\n\
         from a forward base chain; one IPv4 interval set (two kernel elements per\n\
         interval) and a 100-interval port set.\n\n\
         - *dockfw commit*: `Nft::apply` sending the whole batch with one `sendto` and\n\
           reading every ack (the kernel transaction).\n\
         - *dockfw apply + verify*: the full `Nft::apply` call, including reading the\n\
           table back and comparing it with the ruleset.\n\
         - *`nft -f`*: the `nft` binary loading `dockfw_core::render` of the same ruleset\n\
           (process start, parsing and the transaction; the table it builds is checked\n\
           to decode to the same ruleset).\n\n\
         {table}\n\
         Machine: {}, {}.\n",
        cargo_args.join(" "),
        machine(),
        describe("nft", &["--version"]),
    );
    write_section(root, "apply", &section)?;
    print!("{table}");
    Ok(())
}

/// Runs a benchmark example through cargo; returns the table it prints.
fn run_example(root: &Path, cargo_args: &[&str]) -> Result<String> {
    eprintln!("xtask: cargo {}", cargo_args.join(" "));
    let output = Command::new("cargo")
        .args(cargo_args)
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("the benchmark failed ({})", output.status);
    }
    String::from_utf8(output.stdout).context("benchmark output is not UTF-8")
}

fn describe(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    format!(
        "{} CPUs, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        describe("uname", &["-r"])
    )
}

fn compile(root: &Path) -> Result<()> {
    let cargo_args = [
        "run",
        "--release",
        "--quiet",
        "-p",
        "dockfw-core",
        "--example",
        "bench_compile",
        "--",
        RUNS,
    ];
    let table = run_example(root, &cargo_args)?;
    let section = format!(
        "## Parsing and compiling a policy (`cargo xtask bench compile`)\n\n\
         Command: `cargo xtask bench compile` (runs `cargo {}`). No privilege needed.\n\n\
         Medians of {RUNS} runs. Each policy has one named set of N IPv4 addresses\n\
         (every other address, so none merge) plus an IPv6 network, used by every rule;\n\
         each rule matches an interface, the set, a TCP port and a UDP range.\n\
         The rows without set entries (16,000, 32,000 and 500,000 rules, the sizes of\n\
         issue 10) are rules of one TCP port each and nothing else, ports repeating\n\
         past 65,535 rules, so that the later rules are warned about as never matching\n\
         (*warnings*): the lint at its busiest. The *list file* row is the 100,000-entry\n\
         set read from a list file (`big = {{ file = \"big.netset\" }}`, one address a line\n\
         under a FireHOL-style header) instead of the policy: its *parse + validate*\n\
         includes parsing the list (already in memory) and recording each entry's origin.\n\
         *parse + validate* is TOML text to a checked, linted policy; *compile* is policy to\n\
         ruleset (sets normalised into sorted, disjoint intervals).\n\n\
         {table}\n\
         Machine: {}.\n",
        cargo_args.join(" "),
        machine(),
    );
    write_section(root, "compile", &section)?;
    print!("{table}");
    Ok(())
}

/// Replaces this benchmark's section of docs/benchmarks.md (between markers),
/// keeping the other benchmarks' sections.
fn write_section(root: &Path, name: &str, section: &str) -> Result<()> {
    let path = root.join("docs/benchmarks.md");
    let begin = format!("<!-- begin {name} -->\n");
    let end = format!("<!-- end {name} -->\n");
    let mut doc = std::fs::read_to_string(&path).unwrap_or_default();
    if !doc.starts_with("# Benchmarks") {
        doc = "# Benchmarks\n\n".to_string();
    }
    let block = format!("{begin}{section}{end}");
    doc = match (doc.find(&begin), doc.find(&end)) {
        (Some(start), Some(stop)) if start < stop => {
            format!("{}{block}{}", &doc[..start], &doc[stop + end.len()..])
        }
        _ => format!("{}\n{block}", doc.trim_end()),
    };
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
