//! The tests the VM runs: built on the host, found through cargo's JSON
//! messages (so new files in tests/tests/ are picked up without a list here).

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

    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .args(["test", "--no-run", "--message-format=json-render-diagnostics"]);
    for package in PACKAGES {
        cmd.args(["--package", package]);
    }
    if only.is_empty() {
        cmd.args(["--test", "*"]);
    }
    for name in only {
        cmd.args(["--test", name]);
    }
    eprintln!("vm-test: building the test binaries on the host");
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
    if binaries.is_empty() {
        bail!("no test binaries matched in {}", PACKAGES.join(", "));
    }
    binaries.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(Suite {
        binaries,
        target_dir: metadata.target_directory.into(),
    })
}
