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
    let _no_start = missing
        .iter()
        .any(|p| NOT_STARTED.contains(p))
        .then(NoServiceStarts::new)
        .transpose()?;
    apt(&args)
}

/// Packages whose installation would start a service that changes the
/// machine's own firewall (Debian starts firewalld as it installs it): the
/// tests run their own instances in namespaces, so it is installed without
/// starting (Debian still enables it for the next boot).
const NOT_STARTED: [&str; 1] = ["firewalld"];

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while it
/// lives, so that maintainer scripts start no service (invoke-rc.d and
/// deb-systemd-invoke ask it); left alone when the machine has one already.
struct NoServiceStarts(Option<&'static Path>);

impl NoServiceStarts {
    fn new() -> Result<Self> {
        let path = Path::new("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(Self(None));
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# written by cargo xtask while it installs packages\nexit 101\n",
        )
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self(Some(path)))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
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
