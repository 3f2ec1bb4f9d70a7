//! The Debian packages the build, tests and demo need (listed once, in
//! .ci/packages): on a fresh machine `cargo xtask test|demo` installs the
//! missing ones, as .ci/run does.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

pub fn ensure(root: &Path) -> Result<()> {
    let list = std::fs::read_to_string(root.join(".ci/packages")).context("cannot read .ci/packages")?;
    let wanted: Vec<&str> = list
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .collect();
    ensure_these(&wanted)
}

/// Installs those of `wanted` that are missing (as root, with apt-get), or
/// says how to.
pub fn ensure_these(wanted: &[&str]) -> Result<()> {
    let wanted = wanted.iter().copied();
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get install --no-install-recommends {}", missing.join(" "));
    let root_user = nix::unistd::geteuid().is_root();
    if !root_user || Command::new("apt-get").arg("--version").output().is_err() {
        bail!(
            "missing packages: {}; install them with: {command}",
            missing.join(", ")
        );
    }
    eprintln!("xtask: installing missing packages: {}", missing.join(" "));
    apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.ends_with(b"install ok installed"))
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}
