//! What runs inside the VM: the image's init (part of the image recipe) and
//! the per-run job script, plus reading back what the job wrote.
//!
//! Protocol between host and guest, over the read-write 9p share `job`
//! (mounted at /job in the guest):
//! - init creates `booted` as soon as the share is mounted;
//! - the job writes `facts` (`kernel …`, `docker …`), then one line per test
//!   binary to `results.LANE` (`EXIT_CODE SECONDS LABEL`; a file per lane of
//!   binaries run side by side), each binary's output to `logs/`, then
//!   `finished`.
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

/// Labels of the package boot's steps in the results.
pub(crate) const PACKAGE_LABELS: [&str; 2] = ["package/deb", "package/systemd"];

/// The unit that runs the package boot's job under systemd, then powers the
/// VM off whatever the job's outcome. After Docker: the steps publish a
/// container port.
const PACKAGE_UNIT: &str = "[Unit]
Description=dockfw vm-test: the Debian package under systemd
Wants=docker.service
After=docker.service containerd.service

[Service]
Type=oneshot
ExecStart=/bin/sh /job/run.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate
";

/// The unit's name; `systemd/` in the job directory holds it and the
/// symlink that makes multi-user.target want it.
pub(crate) const PACKAGE_UNIT_NAME: &str = "dockfw-vm-job.service";

/// The shell functions both kinds of job use: `step LABEL LANE COMMAND…`
/// runs a command with its output in `/job/logs/LABEL.log` (slashes become
/// `_`) and records `EXIT_CODE SECONDS LABEL` in `/job/results.LANE` (a file
/// per lane: appends from two lanes over 9p could interleave), saying on the
/// console when it starts and how it ended, with the log's tail on failure.
const STEP_FUNCTIONS: &str = r#"set -u
# The job directory: /job in the guest (another for xtask's own tests).
JOB=${JOB:-/job}
export CI=true HOME=/root RUST_BACKTRACE=1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$JOB/logs"
step() {
    label=$1 lane=$2
    shift 2
    log="$JOB/logs/$(echo "$label" | tr / _).log"
    echo "vm-test: $label started (lane $lane)"
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    echo "$rc $took $label" >> "$JOB/results.$lane"
    if [ "$rc" = 0 ]; then
        echo "vm-test: $label ok (${took}s)"
    else
        echo "vm-test: $label FAILED (exit $rc, ${took}s); the end of $log:"
        tail -n 60 "$log"
    fi
}
facts() {
    {
        echo "kernel $(uname -r)"
        echo "docker $(dockerd --version 2>/dev/null)"
    } > "$JOB/facts"
    printf 'vm-test: kernel %s, %s\n' "$(uname -r)" "$(dockerd --version 2>/dev/null)"
}
"#;

/// The job for one VM run of the tests: mount the shares, record facts, run
/// the test binaries the way `cargo test` would (cwd and
/// `CARGO_MANIFEST_DIR` = the package directory) with `CI=true`, in `lanes`
/// parallel lanes that each take the next binary not yet taken (most of a
/// test's time in a VM is waiting: for dockerd, for timeouts). `binaries`
/// come longest first. Only the privileged (ignored) tests run, never the
/// `manual::` ones: the others touch neither the kernel nor Docker, and CI
/// runs them on the host.
pub(crate) fn tests_job(
    shares: &[Share],
    binaries: &[TestBinary],
    test_args: &[String],
    lanes: u32,
) -> String {
    let chooses = test_args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored");
    let mut all_args: Vec<&str> = Vec::new();
    if !chooses {
        all_args.push("--ignored");
    }
    all_args.extend(["--skip", crate::MANUAL_TESTS]);
    all_args.extend(test_args.iter().map(String::as_str));
    let mut s =
        String::from("#!/bin/sh\n# One VM run of `cargo xtask vm-test`, started by the image's init.\n");
    s.push_str(STEP_FUNCTIONS);
    // Emulation is slow: the lab waits longer for its dockerds.
    s.push_str("export DOCKFW_LAB_READY_TIMEOUT=600\n");
    s.push_str(
        r#"share() {
    mkdir -p "$2" && mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 "$1" "$2" \
        || { echo "vm-test: cannot mount share $1 at $2" >&2; exit 1; }
}
test_binary() {
    dir=$1
    shift
    (cd "$dir" && CARGO_MANIFEST_DIR="$dir" exec "$@")
}
# mkdir is atomic: the lane that makes $claims/N runs binary N.
claims=$(mktemp -d)
claim() {
    mkdir "$claims/$1" 2>/dev/null
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
    // The module a Docker host has loaded (dockerd loads br_netfilter when
    // it starts; the tests that build bridges of their own expect it, and
    // may run before any dockerd). (Only in the guest: xtask's own tests
    // run this script on the host.)
    s.push_str(
        "if [ \"$JOB\" = /job ]; then\n    \
         modprobe -q br_netfilter || echo 'vm-test: no br_netfilter module'\nfi\n",
    );
    s.push_str("facts\nlane() {\n");
    for (i, bin) in binaries.iter().enumerate() {
        let _ = write!(
            s,
            "    claim {i} && step {} \"$1\" test_binary {} {}",
            quote(&bin.label),
            quote_path(&bin.manifest_dir),
            quote_path(&bin.exe)
        );
        for arg in &all_args {
            let _ = write!(s, " {}", quote(arg));
        }
        s.push('\n');
    }
    s.push_str("    :\n}\n");
    for lane in 1..=lanes.max(1) {
        let _ = writeln!(s, "lane {lane} &");
    }
    s.push_str("wait\n: > \"$JOB/finished\"\n");
    s
}

/// The package boot's job, run by [`PACKAGE_UNIT`] under systemd: the
/// Debian package's checks (`package.sh`, xtask's `deb::PACKAGE_CHECKS`:
/// install, upgrade, remove, purge, in a network namespace of its own since
/// it applies the shipped policy), then `systemd.sh` (`deb::SYSTEMD_CHECKS`:
/// `systemctl start` guards a published port, with packets), both on the
/// guest's own root (a throwaway snapshot).
pub(crate) const PACKAGE_JOB: &str = r#"#!/bin/sh
# The package boot of `cargo xtask vm-test`, run by a unit under systemd.
"#;

/// [`PACKAGE_JOB`]'s steps, after [`STEP_FUNCTIONS`].
const PACKAGE_STEPS: &str = r#"facts
step package/deb 1 unshare --net sh "$JOB/package.sh" / "$JOB/old.deb" "$JOB/new.deb"
step package/systemd 1 sh "$JOB/systemd.sh" "$JOB/old.deb" "$JOB/new.deb"
: > "$JOB/finished"
"#;

/// Writes the package boot's job into `job`: `run.sh`, and the unit in
/// `systemd/` (which makes the image's init hand over to systemd).
pub(crate) fn stage_package_job(job: &Path) -> Result<()> {
    let units = job.join("systemd");
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("cannot create {}", wants.display()))?;
    fs::write(units.join(PACKAGE_UNIT_NAME), PACKAGE_UNIT).context("cannot write the job's unit")?;
    std::os::unix::fs::symlink(format!("../{PACKAGE_UNIT_NAME}"), wants.join(PACKAGE_UNIT_NAME))
        .context("cannot link the job's unit")?;
    fs::write(
        job.join("run.sh"),
        format!("{PACKAGE_JOB}{STEP_FUNCTIONS}{PACKAGE_STEPS}"),
    )
    .context("cannot write the package job")
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
            results: read_results(job_dir)?,
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

/// Every `results.LANE` file's lines, in the order of the file names.
fn read_results(job_dir: &Path) -> Result<Vec<BinaryResult>> {
    let mut files: Vec<PathBuf> = fs::read_dir(job_dir)
        .with_context(|| format!("cannot list {}", job_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("results."))
        })
        .collect();
    files.sort();
    let mut results = Vec::new();
    for file in files {
        results.extend(parse_results(&read_optional(&file)?)?);
    }
    Ok(results)
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

    /// A fake test binary: records its arguments, fails when named `bad`.
    fn fake_binary(dir: &Path, name: &str) -> TestBinary {
        let exe = dir.join(name);
        let exit = if name == "bad" { 101 } else { 0 };
        fs::write(
            &exe,
            format!("#!/bin/sh\necho \"$PWD $CARGO_MANIFEST_DIR $*\" > \"$JOB/ran.{name}\"\nexit {exit}\n"),
        )
        .unwrap();
        fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        TestBinary {
            label: format!("pkg/{name}"),
            exe,
            manifest_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn tests_job_runs_every_binary_once_across_lanes_and_reports_each() {
        let job = tempfile::tempdir().unwrap();
        let bins: Vec<TestBinary> = ["a", "bad", "c", "d", "e"]
            .iter()
            .map(|n| fake_binary(job.path(), n))
            .collect();
        let script = tests_job(&[], &bins, &["a filter".into()], 2);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("JOB", job.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let console = String::from_utf8_lossy(&out.stdout);
        assert!(console.contains("vm-test: pkg/bad FAILED (exit 101"), "{console}");
        let report = Report::read(job.path()).unwrap();
        assert!(report.finished);
        let mut labels: Vec<&str> = report.results.iter().map(|r| r.label.as_str()).collect();
        labels.sort_unstable();
        assert_eq!(labels, ["pkg/a", "pkg/bad", "pkg/c", "pkg/d", "pkg/e"]);
        assert_eq!(report.failures(&[]), ["pkg/bad (exit 101)"]);
        let ran = fs::read_to_string(job.path().join("ran.a")).unwrap();
        let dir = job.path().display();
        assert_eq!(
            ran.trim(),
            format!("{dir} {dir} --ignored --skip manual:: a filter")
        );
        assert!(job.path().join("logs/pkg_bad.log").is_file());
    }

    #[test]
    fn tests_job_mounts_the_shares_and_names_the_workspace_for_insta() {
        let shares = [Share {
            tag: "src".into(),
            path: PathBuf::from("/src"),
        }];
        let script = tests_job(&shares, &[], &["--include-ignored".into()], 1);
        assert!(script.contains("share 'src' '/src'\n"));
        assert!(script.contains("export INSTA_WORKSPACE_ROOT='/src'\n"));
        assert!(script.ends_with(": > \"$JOB/finished\"\n"));
    }

    #[test]
    fn package_job_hands_the_boot_to_systemd_with_its_unit() {
        let job = tempfile::tempdir().unwrap();
        stage_package_job(job.path()).unwrap();
        let unit = job.path().join("systemd").join(PACKAGE_UNIT_NAME);
        assert!(
            fs::read_to_string(&unit)
                .unwrap()
                .contains("SuccessAction=poweroff-immediate")
        );
        let wanted = job
            .path()
            .join("systemd/multi-user.target.wants")
            .join(PACKAGE_UNIT_NAME);
        assert_eq!(fs::canonicalize(wanted).unwrap(), fs::canonicalize(unit).unwrap());
        let run = fs::read_to_string(job.path().join("run.sh")).unwrap();
        for label in PACKAGE_LABELS {
            assert!(run.contains(&format!("step {label} 1 ")), "{run}");
        }
    }
}
