//! `cargo xtask vm-test`: the end-to-end suite inside throwaway VMs, one per
//! Debian release, so the developer's own host and firewall are never
//! touched. See tests/README.md ("Running the suite in a VM").
//!
//! Steps per distro: make (or reuse) a cached Debian image with its own
//! kernel, boot it with qemu sharing the checkout and the cargo target
//! directory read-only at the same paths, run every integration test of
//! dockfw-e2e and dockfw-nft with `CI=true`, read the results the guest
//! wrote to a shared job directory, power off.

use crate::flags::VmTest;
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod guest;
mod image;
mod qemu;
mod suite;

use guest::{Report, Share};
use qemu::{Accel, End};
use suite::{Suite, TestBinary};

/// `--accel`: how the VMs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// The Debian releases the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Distro {
    /// Debian 12: kernel 6.1, Docker 20.10.
    Bookworm,
    /// Debian 13: kernel 6.12, Docker 26.
    Trixie,
}

impl Distro {
    const ALL: [Distro; 2] = [Distro::Bookworm, Distro::Trixie];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Distro::Bookworm => "bookworm",
            Distro::Trixie => "trixie",
        }
    }

    /// Packages only this release needs.
    pub(crate) fn extra_packages(self) -> &'static [&'static str] {
        match self {
            Distro::Bookworm => &[],
            // Debian 13 moved the docker CLI out of docker.io.
            Distro::Trixie => &["docker-cli"],
        }
    }
}

/// What one distro's run came to.
#[derive(Debug)]
struct Outcome {
    distro: Distro,
    elapsed: Duration,
    verdict: Result<Verdict>,
}

#[derive(Debug)]
struct Verdict {
    accel: Accel,
    /// The test boot, then the package boot (with the whole suite).
    boots: Vec<Boot>,
}

/// One boot of a VM and what its job reported.
#[derive(Debug)]
struct Boot {
    /// "tests" or "package".
    what: &'static str,
    end: End,
    report: Report,
    /// The labels this boot must report as passed.
    expected: Vec<String>,
}

impl Boot {
    /// Why the boot failed, or None when every expected step passed.
    fn problem(&self, timeout: Duration) -> Option<String> {
        let incomplete = match &self.end {
            End::Interrupted => Some("interrupted".to_owned()),
            End::TimedOut => Some(format!("timed out after {}", humantime::format_duration(timeout))),
            End::KvmFailed => Some("KVM could not run the guest (try --accel tcg)".to_owned()),
            End::Exited(_) | End::Stopped if !self.report.booted => {
                Some("the VM did not boot (see the console output)".to_owned())
            }
            End::Exited(_) | End::Stopped if !self.report.finished => {
                Some("the VM stopped before its job finished".to_owned())
            }
            End::Exited(_) | End::Stopped => None,
        };
        let expected: Vec<&str> = self.expected.iter().map(String::as_str).collect();
        let failures = self.report.failures(&expected);
        let what = self.what;
        match (incomplete, failures.is_empty()) {
            (None, true) => None,
            (None, false) => Some(format!("{what}: failed: {}", failures.join(", "))),
            (Some(why), _) => Some(format!(
                "{what}: {why}; failed or missing: {}",
                failures.join(", ")
            )),
        }
    }
}

/// Settings shared by every distro's run.
#[derive(Debug)]
struct Plan {
    args: VmTest,
    qemu: PathBuf,
    cache: PathBuf,
    mirror: String,
    ci_packages: Vec<String>,
    suite: Suite,
    shares: Vec<Share>,
    /// The Debian packages the package boot installs (the whole suite only).
    packages: Option<Packages>,
    /// Where each distro's job directories, logs and console are kept
    /// (`TARGET/vm-test/DISTRO/`), until the next run.
    jobs: PathBuf,
    /// Becomes TCG for the remaining boots once KVM failed to boot one.
    accel: Mutex<Accel>,
}

/// The two packages of [`crate::deb::PACKAGE_CHECKS`], built on the host
/// from the suite's (release) binary.
#[derive(Debug)]
struct Packages {
    /// Holds them; removed when dropped.
    _dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
}

impl Packages {
    fn build(root: &Path, binary: &Path) -> Result<Self> {
        crate::packages::ensure_these(&["dpkg-dev", "binutils"])?;
        let dir = tempfile::Builder::new()
            .prefix("dockfw-vm-deb-")
            .tempdir()
            .context("cannot create a directory for the packages")?;
        eprintln!("vm-test: building the Debian packages for the package boot");
        let (old, new) = crate::deb::check_packages(root, binary, dir.path())?;
        Ok(Self { _dir: dir, old, new })
    }

    /// Puts them, the checks and the job into the job directory.
    fn stage(&self, job: &Path) -> Result<()> {
        fs::copy(&self.old, job.join("old.deb")).context("cannot copy the package")?;
        fs::copy(&self.new, job.join("new.deb")).context("cannot copy the package")?;
        fs::write(job.join("package.sh"), crate::deb::PACKAGE_CHECKS).context("cannot write package.sh")?;
        fs::write(job.join("systemd.sh"), crate::deb::SYSTEMD_CHECKS).context("cannot write systemd.sh")?;
        guest::stage_package_job(job)
    }
}

pub(crate) fn run(root: &Path, args: VmTest) -> Result<()> {
    qemu::catch_interrupts()?;
    let qemu = qemu::program()?;
    let cache = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => default_cache_dir()?,
    };
    let mirror = match &args.mirror {
        Some(m) => m.clone(),
        None => image::host_mirror()?,
    };
    let accel = match args.accel {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto if qemu::kvm_available() => Accel::Kvm,
        AccelChoice::Auto => {
            eprintln!("vm-test: /dev/kvm is not usable: using TCG (slow)");
            Accel::Tcg
        }
    };
    let ci_packages = image::ci_packages(root)?;
    let suite = if args.package_only {
        suite::command_only(root)?
    } else {
        suite::build(root, &args.tests)?
    };
    if qemu::interrupted() {
        bail!("interrupted");
    }
    let shares = shares(root, &suite.target_dir);
    // With the whole suite only: `--test NAME` asks for those tests alone.
    let packages = if args.tests.is_empty() && args.test_args.is_empty() {
        Some(Packages::build(root, &suite.command())?)
    } else {
        None
    };
    let distros: Vec<Distro> = Distro::ALL
        .into_iter()
        .filter(|d| args.distros.is_empty() || args.distros.contains(d))
        .collect();
    // Images are built one at a time (debootstrap), before any VM runs.
    for &distro in &distros {
        image::ensure(&cache, &recipe(distro, &mirror, &ci_packages), args.rebuild_image)?;
        if qemu::interrupted() {
            bail!("interrupted");
        }
    }
    let plan = Plan {
        jobs: suite.target_dir.join("vm-test"),
        args,
        qemu,
        cache,
        mirror,
        ci_packages,
        suite,
        shares,
        packages,
        accel: Mutex::new(accel),
    };

    let run_one = |distro: Distro| {
        let started = Instant::now();
        let verdict = plan.run_distro(distro);
        Outcome {
            distro,
            elapsed: started.elapsed(),
            verdict,
        }
    };
    let outcomes: Vec<Outcome> = if plan.args.one_at_a_time {
        distros.into_iter().map(run_one).collect()
    } else {
        // Side by side: most of a VM's time under TCG is spent waiting
        // (dockerd, timeouts), so two share two cores well.
        std::thread::scope(|scope| {
            let running: Vec<_> = distros
                .into_iter()
                .map(|distro| scope.spawn(move || run_one(distro)))
                .collect();
            running
                .into_iter()
                .map(|r| r.join().expect("a distro's run panicked"))
                .collect()
        })
    };
    let failed = plan.print_summary(&outcomes);
    if failed > 0 {
        bail!("vm-test: {failed} of {} distro runs failed", outcomes.len());
    }
    Ok(())
}

fn recipe(distro: Distro, mirror: &str, ci_packages: &[String]) -> image::Recipe {
    image::Recipe {
        distro,
        mirror: mirror.to_owned(),
        ci_packages: ci_packages.to_vec(),
    }
}

impl Plan {
    fn run_distro(&self, distro: Distro) -> Result<Verdict> {
        let name = distro.name();
        let image = image::ensure(
            &self.cache,
            &recipe(distro, &self.mirror, &self.ci_packages),
            false,
        )?;
        qemu::check_readable(&image)?;
        let dir = self.jobs.join(name);
        let tests_dir = dir.join("tests");
        // The last run's times order the binaries, longest first, so the
        // lanes end together.
        let previous = Report::read(&tests_dir).map(|r| r.results).unwrap_or_default();
        // `--package-only` keeps the last tests boot's results.
        let stale = if self.args.package_only {
            dir.join("package")
        } else {
            dir.clone()
        };
        if stale.exists() {
            fs::remove_dir_all(&stale).with_context(|| format!("cannot empty {}", stale.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut boots = Vec::new();
        let mut accel = *self.accel.lock().expect("accel lock");
        if !self.args.package_only {
            let (tests_accel, boot) = self.tests_boot(distro, &image, &tests_dir, &previous)?;
            accel = tests_accel;
            boots.push(boot);
        }
        if let Some(packages) = &self.packages {
            if qemu::interrupted() {
                bail!("interrupted");
            }
            let package_dir = dir.join("package");
            fs::create_dir_all(&package_dir)
                .with_context(|| format!("cannot create {}", package_dir.display()))?;
            packages.stage(&package_dir)?;
            let (package_accel, end) = self.boot(distro, &image, &package_dir, "package")?;
            if self.args.package_only {
                accel = package_accel;
            }
            boots.push(Boot {
                what: "package",
                end,
                report: Report::read(&package_dir)?,
                expected: guest::PACKAGE_LABELS.iter().map(|l| (*l).to_owned()).collect(),
            });
        }
        Ok(Verdict { accel, boots })
    }

    /// The tests boot: the binaries `distro` runs, in lanes.
    fn tests_boot(
        &self,
        distro: Distro,
        image: &image::Image,
        tests_dir: &Path,
        previous: &[guest::BinaryResult],
    ) -> Result<(Accel, Boot)> {
        fs::create_dir_all(tests_dir).with_context(|| format!("cannot create {}", tests_dir.display()))?;
        let chosen = !self.args.tests.is_empty();
        let runs = self.suite.for_distro(distro, chosen);
        let binaries = longest_first(&runs, previous);
        let script = guest::tests_job(&self.shares, &binaries, &self.args.test_args, self.args.lanes);
        fs::write(tests_dir.join("run.sh"), script).context("cannot write the job script")?;
        let (accel, end) = self.boot(distro, image, tests_dir, "tests")?;
        Ok((
            accel,
            Boot {
                what: "tests",
                end,
                report: Report::read(tests_dir)?,
                expected: runs.iter().map(|b| b.label.clone()).collect(),
            },
        ))
    }

    /// Boots `image` on the job in `job`, falling back from KVM to TCG when
    /// KVM cannot boot it.
    fn boot(&self, distro: Distro, image: &image::Image, job: &Path, what: &str) -> Result<(Accel, End)> {
        let name = format!("{} {what}", distro.name());
        loop {
            let accel = *self.accel.lock().expect("accel lock");
            let vm = qemu::Vm {
                qemu: &self.qemu,
                image,
                shares: &self.shares,
                job_dir: job,
                memory_mib: self.args.memory_mib,
                cpus: self.cpus(),
                timeout: self.args.timeout,
                name: &name,
                console_log: &job.join("console.log"),
            };
            eprintln!(
                "vm-test: booting {name} ({}, {} CPUs, {} MiB, timeout {}; job in {})",
                accel.name(),
                vm.cpus,
                vm.memory_mib,
                humantime::format_duration(vm.timeout),
                job.display()
            );
            let end = vm.run(accel)?;
            let booted = job.join("booted").exists();
            let kvm_broke = matches!(end, End::KvmFailed | End::Exited(_)) && !booted;
            if accel == Accel::Kvm && self.args.accel == AccelChoice::Auto && kvm_broke {
                eprintln!("vm-test: KVM could not boot the guest; retrying with TCG (--accel tcg skips KVM)");
                *self.accel.lock().expect("accel lock") = Accel::Tcg;
                for leftover in ["booted", "facts", "finished"] {
                    let _ = fs::remove_file(job.join(leftover));
                }
                continue;
            }
            return Ok((accel, end));
        }
    }

    fn cpus(&self) -> u32 {
        self.args
            .cpus
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4) as u32))
    }

    /// Prints one block per distro; returns how many failed.
    fn print_summary(&self, outcomes: &[Outcome]) -> usize {
        let mut failed = 0;
        println!("\nvm-test summary:");
        for outcome in outcomes {
            let name = outcome.distro.name();
            let took = format_secs(outcome.elapsed);
            let verdict = match &outcome.verdict {
                Ok(v) => v,
                Err(e) => {
                    failed += 1;
                    println!("  {name:<9} FAIL  ({took}) {e:#}");
                    continue;
                }
            };
            let problems: Vec<String> = verdict
                .boots
                .iter()
                .filter_map(|b| b.problem(self.args.timeout))
                .collect();
            failed += usize::from(!problems.is_empty());
            let report = &verdict.boots[0].report;
            println!(
                "  {name:<9} {}  ({took}, {}) kernel {}, {}; logs in {}",
                if problems.is_empty() { "PASS" } else { "FAIL" },
                verdict.accel.name(),
                report.kernel.as_deref().unwrap_or("?"),
                report.docker.as_deref().unwrap_or("docker ?"),
                self.jobs.join(name).display(),
            );
            for boot in &verdict.boots {
                for r in &boot.report.results {
                    let status = if r.exit_code == 0 { "ok" } else { "FAILED" };
                    println!("      {status:<6} {:<36} {:>4}s", r.label, r.seconds);
                }
            }
            for problem in problems {
                println!("      {problem}");
            }
        }
        println!("vm-test: {} passed, {failed} failed", outcomes.len() - failed);
        failed
    }
}

/// `binaries` ordered by their time in `previous` (a former run's results),
/// longest first; binaries it does not know come first of all.
fn longest_first(binaries: &[TestBinary], previous: &[guest::BinaryResult]) -> Vec<TestBinary> {
    let seconds = |b: &TestBinary| {
        previous
            .iter()
            .find(|r| r.label == b.label)
            .map_or(u64::MAX, |r| r.seconds)
    };
    let mut ordered = binaries.to_vec();
    ordered.sort_by_key(|b| std::cmp::Reverse(seconds(b)));
    ordered
}

/// The checkout, and the target directory when it lies elsewhere, shared
/// read-only at their own paths.
fn shares(root: &Path, target_dir: &Path) -> Vec<Share> {
    let mut shares = vec![Share {
        tag: "src".into(),
        path: root.to_path_buf(),
    }];
    if !target_dir.starts_with(root) {
        shares.push(Share {
            tag: "target".into(),
            path: target_dir.to_path_buf(),
        });
    }
    shares
}

fn default_cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir")?;
    Ok(base.join("dockfw-vm"))
}

/// Finds a host program (sbin directories included), or names the Debian
/// package that provides it.
pub(crate) fn require_program(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let search = format!("{path}:/usr/local/sbin:/usr/sbin:/sbin");
    which::which_in(program, Some(search), "/")
        .with_context(|| format!("`{program}` not found: apt-get install {package}"))
}

/// [`require_program`], installing `package` first if `program` is missing
/// and we can (as root with apt, as `test` and `demo` install `.ci/packages`).
pub(crate) fn install_program(program: &str, package: &str) -> Result<PathBuf> {
    if let Ok(found) = require_program(program, package) {
        return Ok(found);
    }
    crate::packages::ensure_these(&[package])?;
    require_program(program, package)
}

fn format_secs(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_inside_the_checkout_is_not_shared_twice() {
        let inside = shares(Path::new("/src"), Path::new("/src/target"));
        assert_eq!(inside.len(), 1);
        let outside = shares(Path::new("/src"), Path::new("/build"));
        assert_eq!(outside[1].path, Path::new("/build"));
        assert_eq!(outside[1].tag, "target");
    }

    #[test]
    fn missing_program_names_its_package() {
        let err = require_program("no-such-program-dockfw", "some-pkg").unwrap_err();
        assert!(err.to_string().contains("apt-get install some-pkg"), "{err}");
    }
}
