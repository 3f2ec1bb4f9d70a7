//! What runs inside the VM: the image's init (part of the image recipe) and
//! the per-run job script, plus reading back what the job wrote.
//!
//! Protocol between host and guest, over the read-write 9p share `job`
//! (mounted at /job in the guest):
//! - init creates `booted` as soon as the share is mounted;
//! - the job writes `facts` (`kernel …`, `docker …`), then one line per test
//!   binary to `results` (`EXIT_CODE SECONDS LABEL`), then `finished`.
//!
//! The console only carries the live output for people to read; the verdict
//! comes from these files.

use super::suite::TestBinary;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the image's init lives (given to the kernel as `init=`).
pub(crate) const INIT_PATH: &str = "/usr/local/sbin/dockfw-vm-init";

/// The image's PID 1. Mounts the kernel file systems (cgroup v2 only, as
/// systemd does on Debian 12 and 13), runs the job from the host under
/// `tini -s` so that orphaned processes (dockerd, containerd shims) are
/// reaped, then powers off. No systemd: nothing else runs in the VM. When
/// the job directory holds `systemd/` (units), it execs systemd instead,
/// which runs the job's unit and powers off (the package's boot).
pub(crate) const INIT: &str = r#"#!/bin/sh
# PID 1 of the dockfw test VM (written by `cargo xtask vm-test`).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -o remount,rw /
ip link set lo up
mkdir -p /job
if mount -t 9p -o trans=virtio,version=9p2000.L job /job; then
    : > /job/booted
    if [ -d /job/systemd ]; then
        # A boot under systemd (the package's step): the job's units go to
        # the runtime unit directory and systemd becomes PID 1.
        mkdir -p /run/systemd/system
        cp -R /job/systemd/. /run/systemd/system/
        exec /lib/systemd/systemd
    fi
    tini -s -- /bin/sh /job/run.sh
else
    echo "dockfw-vm-init: cannot mount the job share" >&2
fi
sync
busybox poweroff -f
"#;

/// A host directory the guest mounts read-only at the same absolute path,
/// so test binaries find their sources (`CARGO_MANIFEST_DIR`) and fixtures.
#[derive(Debug, Clone)]
pub(crate) struct Share {
    /// The 9p mount tag.
    pub tag: String,
    /// The directory, on the host and in the guest.
    pub path: PathBuf,
}

/// Label of the Debian package's step in the results.
pub(crate) const PACKAGE_LABEL: &str = "package/deb";

/// The Debian package's step, run after the test binaries when the job
/// directory holds `package.sh` (xtask's `deb::PACKAGE_CHECKS`) and the two
/// packages it installs: dpkg install, upgrade, remove and purge on the
/// guest's own root (its disk is a throwaway snapshot), in a network
/// namespace of its own, since it applies the shipped policy.
const PACKAGE_STEP: &str = r#"printf '\n===== vm-test: package/deb\n'
start=$(date +%s)
unshare --net sh /job/package.sh / /job/old.deb /job/new.deb
echo "$? $(($(date +%s) - start)) package/deb" >> /job/results
"#;

/// The job for one VM run: mount the shares, record facts, run every test
/// binary the way `cargo test` would (cwd and `CARGO_MANIFEST_DIR` = the
/// package directory) with `CI=true`, recording each exit status, then,
/// with `package`, the Debian package's step ([`PACKAGE_STEP`]). The guest
/// runs as root, so the privileged (ignored) tests run too, never the
/// `manual::` ones, as in `cargo xtask test`.
pub(crate) fn job_script(
    shares: &[Share],
    binaries: &[TestBinary],
    test_args: &[String],
    package: bool,
) -> String {
    let chooses = test_args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored");
    let mut all_args: Vec<&str> = Vec::new();
    if !chooses {
        all_args.push("--include-ignored");
    }
    all_args.extend(["--skip", crate::MANUAL_TESTS]);
    all_args.extend(test_args.iter().map(String::as_str));
    let mut s = String::from(
        r#"#!/bin/sh
# One VM run of `cargo xtask vm-test`, started by the image's init.
set -u
export CI=true HOME=/root RUST_BACKTRACE=1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
share() {
    mkdir -p "$2" && mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 "$1" "$2" \
        || { echo "vm-test: cannot mount share $1 at $2" >&2; exit 1; }
}
test_binary() {
    label=$1 dir=$2
    shift 2
    printf '\n===== vm-test: %s\n' "$label"
    start=$(date +%s)
    (cd "$dir" && CARGO_MANIFEST_DIR="$dir" exec "$@")
    rc=$?
    echo "$rc $(($(date +%s) - start)) $label" >> /job/results
}
"#,
    );
    for share in shares {
        let _ = writeln!(s, "share {} {}", quote(&share.tag), quote_path(&share.path));
    }
    // Snapshot tests (insta) find the workspace with `cargo metadata`, and
    // there is no cargo in the guest: name it (the first share, the checkout).
    if let Some(checkout) = shares.first() {
        let _ = writeln!(s, "export INSTA_WORKSPACE_ROOT={}", quote_path(&checkout.path));
    }
    s.push_str(
        r#"{
    echo "kernel $(uname -r)"
    echo "docker $(dockerd --version)"
} > /job/facts
printf 'vm-test: kernel %s, %s\n' "$(uname -r)" "$(dockerd --version)"
"#,
    );
    for bin in binaries {
        let _ = write!(
            s,
            "test_binary {} {} {}",
            quote(&bin.label),
            quote_path(&bin.manifest_dir),
            quote_path(&bin.exe)
        );
        for arg in &all_args {
            let _ = write!(s, " {}", quote(arg));
        }
        s.push('\n');
    }
    if package {
        s.push_str(PACKAGE_STEP);
    }
    s.push_str(": > /job/finished\n");
    s
}

/// One test binary's outcome, as the guest recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinaryResult {
    pub label: String,
    pub exit_code: i32,
    pub seconds: u64,
}

/// What a VM run left in the job directory.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Init mounted the job share (the kernel booted).
    pub booted: bool,
    /// The job ran to its end.
    pub finished: bool,
    pub kernel: Option<String>,
    pub docker: Option<String>,
    pub results: Vec<BinaryResult>,
}

impl Report {
    /// Reads the files the guest wrote into `job_dir`.
    pub(crate) fn read(job_dir: &Path) -> Result<Report> {
        let facts = read_optional(&job_dir.join("facts"))?;
        let fact = |key: &str| {
            facts
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .map(str::to_owned)
        };
        Ok(Report {
            booted: job_dir.join("booted").exists(),
            finished: job_dir.join("finished").exists(),
            kernel: fact("kernel"),
            docker: fact("docker"),
            results: parse_results(&read_optional(&job_dir.join("results"))?)?,
        })
    }

    /// The steps that failed, and those of `expected` (labels) that never reported.
    pub(crate) fn failures(&self, expected: &[&str]) -> Vec<String> {
        let mut failed: Vec<String> = self
            .results
            .iter()
            .filter(|r| r.exit_code != 0)
            .map(|r| format!("{} (exit {})", r.label, r.exit_code))
            .collect();
        failed.extend(
            expected
                .iter()
                .filter(|label| !self.results.iter().any(|r| r.label == **label))
                .map(|label| format!("{label} (no result)")),
        );
        failed
    }
}

fn read_optional(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Parses `results` lines: `EXIT_CODE SECONDS LABEL`.
fn parse_results(text: &str) -> Result<Vec<BinaryResult>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (Some(code), Some(secs), Some(label)) = (parts.next(), parts.next(), parts.next()) else {
                bail!("malformed result line from the VM: {line:?}");
            };
            Ok(BinaryResult {
                label: label.to_owned(),
                exit_code: code
                    .parse()
                    .with_context(|| format!("bad exit code in {line:?}"))?,
                seconds: secs
                    .parse()
                    .with_context(|| format!("bad duration in {line:?}"))?,
            })
        })
        .collect()
}

/// Quotes a word for the POSIX shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn results_are_parsed_and_labels_may_contain_spaces() {
        let r = parse_results("0 12 dockfw-nft/apply\n101 3 odd label\n\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].label, "odd label");
        assert_eq!(r[1].exit_code, 101);
        assert_eq!(r[0].seconds, 12);
        assert!(parse_results("zero 1 x").is_err());
        assert!(parse_results("0 1").is_err());
    }

    #[test]
    fn missing_and_failed_binaries_are_failures() {
        let report = Report {
            results: parse_results("0 1 a\n101 1 b\n").unwrap(),
            ..Report::default()
        };
        assert_eq!(
            report.failures(&["a", "b", "c"]),
            ["b (exit 101)", "c (no result)"]
        );
    }

    #[test]
    fn job_script_runs_each_binary_with_the_filter() {
        let bins = [TestBinary {
            label: "dockfw-e2e/lab".into(),
            exe: PathBuf::from("/t/debug/deps/lab-1"),
            manifest_dir: PathBuf::from("/src/tests"),
        }];
        let shares = [Share {
            tag: "src".into(),
            path: PathBuf::from("/src"),
        }];
        let script = job_script(&shares, &bins, &["published ports".into()], false);
        assert!(!script.contains("package"));
        let with_package = job_script(&shares, &bins, &[], true);
        assert!(with_package.contains(
            "unshare --net sh /job/package.sh / /job/old.deb /job/new.deb\n\
             echo \"$? $(($(date +%s) - start)) package/deb\" >> /job/results\n\
             : > /job/finished\n"
        ));
        assert!(script.contains("share 'src' '/src'\n"));
        assert!(script.contains("export INSTA_WORKSPACE_ROOT='/src'\n"));
        assert!(script.contains(
            "test_binary 'dockfw-e2e/lab' '/src/tests' '/t/debug/deps/lab-1' \
                 '--include-ignored' '--skip' 'manual::' 'published ports'\n"
        ));
        assert!(script.ends_with(": > /job/finished\n"));
    }
}
