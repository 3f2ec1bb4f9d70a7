//! Project tasks: `cargo xtask <task>`; `cargo xtask --help` lists them and
//! flags.rs defines every task and flag.

use anyhow::{Context, Result, bail};
use clap::Parser;
use flags::{Task, Xtask};
use std::path::PathBuf;
use std::process::Command;

mod bench;
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

fn test(flags: &flags::Test) -> Result<()> {
    packages::ensure(&workspace_root())?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )?;
    let passed_on = flags.passed_on();
    let mut args = vec!["test", "--workspace"];
    args.extend(passed_on.iter().map(String::as_str));
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
