//! Project tasks: `cargo xtask <task>`.
//!
//! - `test`: formatting check, clippy with warnings denied, and every test
//!   (privileged tests included when run as root, as CI does).
//! - `bench apply|compile`: benchmarks (see docs/benchmarks.md).
//! - `lab up|down|status|probe`: the Docker lab (see tests/README.md).
//! - `demo`: dockfw-nft at work in a throwaway Docker lab (the README's "see it work").
//! - `dist`: release tarball with man pages, completions and the systemd unit.
//! - `vm-test`: the end-to-end suite in throwaway Debian VMs (see
//!   tests/README.md).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

mod bench;
mod demo;
mod dist;
mod lab;
mod packages;
mod vm;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench::run(&workspace_root(), &args[1..]),
        Some("lab") => lab::run(&args[1..]),
        Some("dist") => dist::run(&workspace_root()),
        Some("vm-test") => vm::run(&workspace_root(), &args[1..]),
        Some("demo") => {
            packages::ensure(&workspace_root())?;
            demo::run()
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <test [cargo test args…] | bench apply|compile | lab up|down|status | dist | demo | vm-test [--help]>"
            );
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory (honours CARGO_TARGET_DIR and config), from `cargo metadata`.
pub(crate) fn target_dir() -> Result<PathBuf> {
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata output")?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata gave no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Runs a command in the workspace root, failing if it fails.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    packages::ensure(&workspace_root())?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )?;
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    run("cargo", &args)?;
    // The README's first command must keep working: run it too (it needs root).
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        demo::run()
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("the demo needs root; CI must run `cargo xtask test` as root")
    } else {
        eprintln!("xtask: skipping the demo: it needs root");
        Ok(())
    }
}
