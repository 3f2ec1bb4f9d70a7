//! Project tasks: `cargo xtask <task>`; `cargo xtask --help` lists them and
//! flags.rs defines every task and flag.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::Parser;
use flags::{Task, Xtask};
use std::path::PathBuf;
use std::process::Command;

mod bench;
mod deb;
mod demo;
mod dist;
mod flags;
mod lab;
mod packages;
mod vm;

fn main() -> Result<()> {
    let root = workspace_root();
    match Xtask::parse().task {
        Task::Test(args) => test(&args),
        Task::Demo => {
            packages::ensure(&root)?;
            demo::run()
        }
        Task::Lab(args) => lab::run(args),
        Task::VmTest(args) => vm::run(&root, args),
        Task::Bench(bench) => bench::run(&root, bench),
        Task::Dist => dist::run(&root),
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

/// Test-name part of the tests `cargo xtask test` never runs: ignored for
/// another reason than privilege (a slow size, a kernel-dependent control, a
/// helper process), kept in a `mod manual` of their test file.
pub(crate) const MANUAL_TESTS: &str = "manual::";

fn test(flags: &flags::Test) -> Result<()> {
    let root = nix::unistd::geteuid().is_root();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !root && ci {
        bail!(
            "cargo xtask test runs the privileged tests (network namespaces, the Docker lab) and \
             needs root; CI=true, so running without them would be a false pass: run it as root"
        );
    }
    packages::ensure(&workspace_root())?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )?;
    let args = flags.cargo_test(root);
    run("cargo", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    if !root {
        let not_run = privileged_tests(flags);
        let count = not_run.map_or_else(|e| format!("some ({e:#})"), |n| n.to_string());
        eprintln!(
            "\nxtask: NOT ROOT: {count} privileged tests were NOT run (reported as ignored above); \
             run `cargo xtask test` as root to run them\nxtask: skipping the demo: it needs root"
        );
        return Ok(());
    }
    // The README's first command must keep working: run it too (it needs root).
    demo::run()
}

/// How many privileged tests (ignored, and not manual) the selection holds.
fn privileged_tests(flags: &flags::Test) -> Result<usize> {
    let mut args = vec!["test".to_string(), "--workspace".to_string()];
    args.extend(flags.cargo_test_args.iter().cloned());
    args.extend(
        [
            "--",
            "--list",
            "--format",
            "terse",
            "--ignored",
            "--skip",
            MANUAL_TESTS,
        ]
        .map(String::from),
    );
    let output = Command::new("cargo")
        .args(&args)
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::null())
        .output()
        .context("cannot run cargo test --list")?;
    if !output.status.success() {
        bail!("cargo {} failed ({})", args.join(" "), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.ends_with(": test"))
        .count())
}
