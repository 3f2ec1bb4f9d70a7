//! `cargo xtask bench apply`: apply-time benchmark of the nftables backend.
//!
//! Runs the `bench_apply` example of dockfw-nft (release build, as root: it
//! creates a fresh network namespace per size) and writes its table, with the
//! command and the machine it ran on, to docs/benchmarks.md.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

const RUNS: &str = "5";

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("apply") => apply(root),
        other => bail!("no benchmark called {other:?}; try `cargo xtask bench apply`"),
    }
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
    eprintln!("xtask: cargo {}", cargo_args.join(" "));
    let output = Command::new("cargo")
        .args(cargo_args)
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("the benchmark failed ({}); it needs root", output.status);
    }
    let table = String::from_utf8(output.stdout).context("benchmark output is not UTF-8")?;
    let describe = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let doc = format!(
        "# Benchmarks\n\n\
         ## Applying a ruleset (`cargo xtask bench apply`)\n\n\
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
         Machine: {} CPUs, kernel {}, {}.\n",
        cargo_args.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        describe("uname", &["-r"]),
        describe("nft", &["--version"]),
    );
    let path = root.join("docs/benchmarks.md");
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    print!("{table}");
    Ok(())
}
