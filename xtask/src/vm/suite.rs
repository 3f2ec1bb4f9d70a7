//! The tests the VM runs: built on the host, found through cargo's JSON
//! messages (so new files in tests/tests/ are picked up without a list here).

use super::Distro;
use anyhow::{Context, Result, bail};
use cargo_metadata::{Message, MetadataCommand, TargetKind};
use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Packages whose integration tests (`tests/*.rs`) make up the VM suite
/// (their privileged tests: those depend on the kernel, Docker and the
/// distribution's nft, firewalld, ufw and Podman): the end-to-end tests,
/// the netlink backend, the command as users run it (also against the
/// lab's dockerd), the Docker API client against a real dockerd, and
/// core's rendering fed to the distribution's `nft`.
const PACKAGES: [&str; 5] = [
    "dockfw-e2e",
    "dockfw-nft",
    "dockfw-cli",
    "dockfw-docker",
    "dockfw-core",
];

/// One integration-test executable.
#[derive(Debug, Clone)]
pub(crate) struct TestBinary {
    /// `package/target`, e.g. `dockfw-nft/packets`.
    pub label: String,
    pub exe: PathBuf,
    /// The package directory: the test's cwd and `CARGO_MANIFEST_DIR`.
    pub manifest_dir: PathBuf,
}

/// The built suite and the cargo target directory holding it.
#[derive(Debug)]
pub(crate) struct Suite {
    pub binaries: Vec<TestBinary>,
    pub target_dir: PathBuf,
}

impl Suite {
    /// The binaries `distro`'s VM runs: all of them when `chosen` (the user
    /// named the targets), else those [`PLACES`] gives it.
    pub(crate) fn for_distro(&self, distro: Distro, chosen: bool) -> Vec<TestBinary> {
        self.binaries
            .iter()
            .filter(|b| chosen || place(&b.label).runs_on(distro))
            .cloned()
            .collect()
    }

    /// The release `dockfw-nft` binary the tests ran (built with them).
    pub(crate) fn command(&self) -> PathBuf {
        self.target_dir.join("release/dockfw-nft")
    }
}

/// Where a test binary runs. Under TCG emulation the whole privileged suite
/// takes hours per distro; each VM runs what depends on what it has that
/// CI's Debian 12 host lacks. Bookworm's VM brings kernel 6.1 (its
/// userland, Docker 20.10 included, is CI's own); trixie's brings kernel
/// 6.12 and newer Docker (26), nft, firewalld, ufw and Podman.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Kernel features and packets: both kernels.
    Both,
    Only(Distro),
    /// Run by CI only (said in tests/README.md).
    Neither,
}

impl Place {
    fn runs_on(self, distro: Distro) -> bool {
        match self {
            Place::Both => true,
            Place::Only(d) => d == distro,
            Place::Neither => false,
        }
    }
}

/// Binaries not run on both distros, and why; every other one with
/// privileged tests (the netlink backend's, core's nft test, new files)
/// runs on both. Binaries without any never run in a VM.
const PLACES: &[(&str, Place)] = &[
    // The command against the kernel: nf_tables, conntrack, NFLOG through
    // the binary users run. Bookworm's 6.1 is the oldest kernel we claim.
    ("dockfw-cli/kernel", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/directions_kernel", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/dynamic_kernel", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/log_kernel", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/ownership", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/sources", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/watch", Place::Only(Distro::Bookworm)),
    ("dockfw-cli/systemd_unit", Place::Only(Distro::Bookworm)),
    // Swarm: in the VMs dockerd's IPVS request loads ip_vs, and the test's
    // probe of Docker's real routing mesh times out there, cause not yet
    // known (README, "Fleet: Docker Swarm"); CI's kernel has no IPVS and
    // runs the stand-in.
    ("dockfw-cli/swarm", Place::Neither),
    // Docker 26, ufw 0.36.2, firewalld 2, Podman 5 with netavark: the
    // versions CI does not have.
    ("dockfw-e2e/lab", Place::Only(Distro::Trixie)),
    ("dockfw-e2e/policy", Place::Only(Distro::Trixie)),
    ("dockfw-e2e/compat", Place::Only(Distro::Trixie)),
    ("dockfw-docker/lab", Place::Only(Distro::Trixie)),
    ("dockfw-cli/compat_podman", Place::Only(Distro::Trixie)),
    // The command's many runs against a dockerd (13 labs; over half an hour
    // under emulation): CI runs it with Docker 20.10, trixie's Docker 26 is
    // met by the e2e lab above.
    ("dockfw-cli/docker_lab", Place::Neither),
    // Lab scenarios (reboot and restarts, limits, applies under traffic,
    // failed applies) whose Docker interplay e2e/lab and e2e/policy already
    // meet on Docker 26 in trixie; a quarter of an hour more under
    // emulation. CI runs them.
    ("dockfw-e2e/lifecycle", Place::Neither),
    ("dockfw-e2e/limits", Place::Neither),
    ("dockfw-e2e/unbroken", Place::Neither),
    ("dockfw-e2e/failures", Place::Neither),
    // A million set entries: the kernel's scale, the same on every version;
    // many minutes under emulation.
    ("dockfw-nft/large", Place::Neither),
];

/// No tests: the release `dockfw-nft` binary alone, for the package boot
/// (`--package-only`).
pub(crate) fn command_only(root: &Path) -> Result<Suite> {
    eprintln!("vm-test: building the release dockfw-nft on the host");
    let status = cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", "dockfw-cli", "--bin", "dockfw-nft"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building dockfw-nft failed ({status})");
    }
    Ok(Suite {
        binaries: Vec::new(),
        target_dir: crate::target_dir()?,
    })
}

/// The cargo running xtask (`$CARGO`), else the one on PATH.
fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// How many ignored (privileged) tests `binary` has, `manual::` ones aside.
fn privileged_tests(binary: &TestBinary) -> Result<usize> {
    let out = Command::new(&binary.exe)
        .args(["--list", "--ignored", "--format", "terse"])
        .current_dir(&binary.manifest_dir)
        .output()
        .with_context(|| format!("cannot run {}", binary.exe.display()))?;
    if !out.status.success() {
        bail!("{} --list failed ({})", binary.label, out.status);
    }
    Ok(count_listed(&String::from_utf8_lossy(&out.stdout)))
}

/// Tests in a `--list --format terse` listing (`NAME: test`), `manual::` aside.
fn count_listed(listing: &str) -> usize {
    listing
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|name| !name.contains(crate::MANUAL_TESTS))
        .count()
}

/// Where the binary labelled `label` runs.
pub(crate) fn place(label: &str) -> Place {
    PLACES
        .iter()
        .find(|(l, _)| *l == label)
        .map_or(Place::Both, |(_, p)| *p)
}

/// Builds the integration tests of [`PACKAGES`] (only the targets named in
/// `only`, when given) and lists their executables.
pub(crate) fn build(root: &Path, only: &[String]) -> Result<Suite> {
    let metadata = MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let package_names: HashMap<_, _> = metadata
        .packages
        .iter()
        .map(|p| (p.id.clone(), p.name.to_string()))
        .collect();

    let mut cmd = cargo();
    // Optimised: under emulation every instruction costs, and the tests run
    // the command (and compile policies) many times.
    cmd.current_dir(root).args([
        "test",
        "--release",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for package in PACKAGES {
        cmd.args(["--package", package]);
    }
    if only.is_empty() {
        cmd.args(["--test", "*"]);
    }
    for name in only {
        cmd.args(["--test", name]);
    }
    eprintln!("vm-test: building the test binaries on the host (release profile)");
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("cannot run cargo")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut binaries = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let Message::CompilerArtifact(artifact) = message.context("reading cargo's output")? else {
            continue;
        };
        let Some(exe) = artifact.executable else {
            continue;
        };
        if !artifact.profile.test || !artifact.target.kind.contains(&TargetKind::Test) {
            continue;
        }
        let package = package_names
            .get(&artifact.package_id)
            .map_or("?", String::as_str);
        binaries.push(TestBinary {
            label: format!("{package}/{}", artifact.target.name),
            exe: exe.into(),
            manifest_dir: artifact
                .manifest_path
                .parent()
                .context("manifest path has no parent")?
                .into(),
        });
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building the test binaries failed ({status})");
    }
    // Only binaries with privileged tests: the others have nothing to run
    // in a VM.
    let mut privileged = Vec::new();
    for binary in binaries {
        if privileged_tests(&binary)? > 0 {
            privileged.push(binary);
        }
    }
    let mut binaries = privileged;
    if binaries.is_empty() {
        bail!("no privileged tests matched in {}", PACKAGES.join(", "));
    }
    binaries.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(Suite {
        binaries,
        target_dir: metadata.target_directory.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_count_tests_but_not_manual_ones_or_benches() {
        let listing = "a::b: test\nmanual::slow: test\nc: test\nd: bench\n";
        assert_eq!(count_listed(listing), 2);
        assert_eq!(count_listed(""), 0);
    }

    #[test]
    fn binaries_run_on_both_distros_unless_placed() {
        assert_eq!(place("dockfw-nft/packets"), Place::Both);
        assert!(place("dockfw-cli/kernel").runs_on(Distro::Bookworm));
        assert!(!place("dockfw-cli/kernel").runs_on(Distro::Trixie));
        assert!(!place("dockfw-nft/large").runs_on(Distro::Trixie));
        assert!(!place("dockfw-nft/large").runs_on(Distro::Bookworm));
    }
}
