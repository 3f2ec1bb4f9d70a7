//! Booting one VM with qemu: the console streams to our stdout, the run is
//! time-boxed, and qemu is always killed (timeout, Ctrl-C, error, panic).

use super::guest::Share;
use super::image::Image;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by the Ctrl-C / SIGTERM handler.
/// How long a KVM guest may take to mount the job share (seconds under
/// KVM; TCG, which has no such limit, boots in under a minute here).
const KVM_BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a guest whose job finished may take to power off.
const POWER_OFF_GRACE: Duration = Duration::from_secs(60);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Routes Ctrl-C and SIGTERM to a flag, so that a run can kill qemu and
/// remove its temporary files instead of dying at once. Children in our
/// process group (cargo, debootstrap) still get the signal themselves.
pub(crate) fn catch_interrupts() -> Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How the guest CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            // multi-threaded TCG: one host thread per vCPU.
            Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }
}

/// Whether /dev/kvm can be opened for use.
pub(crate) fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// One VM run's settings.
#[derive(Debug)]
pub(crate) struct Vm<'a> {
    pub qemu: &'a Path,
    pub image: &'a Image,
    /// Read-only shares at their host paths.
    pub shares: &'a [Share],
    /// The read-write job directory (mounted by the guest's init at /job).
    pub job_dir: &'a Path,
    pub memory_mib: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// Prefixes each console line printed (VMs may run side by side).
    pub name: &'a str,
    /// The console's output is also written here.
    pub console_log: &'a Path,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// qemu exited (the guest powered off, or qemu gave up).
    Exited(std::process::ExitStatus),
    TimedOut,
    /// The job finished; the guest did not power off within a minute and
    /// was stopped.
    Stopped,
    Interrupted,
    /// KVM could not run the guest ("KVM internal error"; qemu then hangs).
    KvmFailed,
}

impl Vm<'_> {
    fn command(&self, accel: Accel) -> Command {
        let mut cmd = Command::new(self.qemu);
        cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
            // A guest panic (panic=1 reboots) ends qemu instead of looping.
            .arg("-no-reboot")
            .args(accel.args())
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &self.memory_mib.to_string()])
            .arg("-kernel")
            .arg(self.image.kernel())
            .arg("-initrd")
            .arg(self.image.initrd())
            .arg("-append")
            .arg(format!(
                "root=/dev/vda rw console=ttyS0 quiet loglevel=3 panic=1 init={}",
                super::guest::INIT_PATH
            ))
            // snapshot=on: writes go to a temporary file qemu deletes, so
            // the cached image stays pristine and every run starts clean.
            .arg("-drive")
            .arg(drive_arg(&self.image.rootfs()))
            .args(["-serial", "stdio"]);
        for share in self.shares {
            cmd.arg("-virtfs").arg(virtfs_arg(&share.tag, &share.path, true));
        }
        cmd.arg("-virtfs").arg(virtfs_arg("job", self.job_dir, false));
        cmd
    }

    /// Boots the VM and waits until it powers off, times out, is
    /// interrupted, or KVM fails.
    pub(crate) fn run(&self, accel: Accel) -> Result<End> {
        let mut cmd = self.command(accel);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: Ctrl-C reaches us, and we stop qemu.
            .process_group(0);
        let mut child = Guard(
            cmd.spawn()
                .with_context(|| format!("cannot start {}", self.qemu.display()))?,
        );
        let kvm_failed = watch_stderr(&mut child.0)?;
        copy_console(&mut child.0, self.name, self.console_log)?;
        let started = Instant::now();
        let deadline = started + self.timeout;
        let booted = self.job_dir.join("booted");
        let finished = self.job_dir.join("finished");
        let mut finished_at: Option<Instant> = None;
        loop {
            if let Some(status) = child.0.try_wait().context("waiting for qemu")? {
                return Ok(End::Exited(status));
            }
            // A nested KVM that cannot run the guest either says so on
            // stderr or hangs before the kernel is up (no message at all).
            let kvm_hung = accel == Accel::Kvm && started.elapsed() > KVM_BOOT_TIMEOUT && !booted.exists();
            // The job is done but the guest has not powered off (a service
            // slow to stop under systemd): its results are in; stop it.
            if finished_at.is_none() && finished.exists() {
                finished_at = Some(Instant::now());
            }
            if finished_at.is_some_and(|at| at.elapsed() > POWER_OFF_GRACE) {
                child.kill();
                return Ok(End::Stopped);
            }
            let end = if interrupted() {
                End::Interrupted
            } else if Instant::now() >= deadline {
                End::TimedOut
            } else if kvm_failed.load(Ordering::SeqCst) || kvm_hung {
                End::KvmFailed
            } else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            child.kill();
            return Ok(end);
        }
    }
}

fn drive_arg(rootfs: &Path) -> String {
    format!("file={},format=raw,if=virtio,snapshot=on", escape_option(rootfs))
}

fn virtfs_arg(tag: &str, path: &Path, readonly: bool) -> String {
    format!(
        "local,path={},mount_tag={tag},security_model=none{}",
        escape_option(path),
        if readonly { ",readonly=on" } else { "" }
    )
}

/// qemu option values escape a comma by doubling it.
fn escape_option(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Copies qemu's stderr to ours; the returned flag is raised when KVM
/// reports an internal error (qemu then stops the guest and waits forever).
fn watch_stderr(child: &mut Child) -> Result<Arc<AtomicBool>> {
    let stderr = child.stderr.take().context("qemu's stderr")?;
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("KVM internal error") {
                raised.store(true, Ordering::SeqCst);
            }
            eprintln!("{line}");
        }
    });
    Ok(flag)
}

/// Prints the serial console's lines prefixed with `name`, and writes them
/// to `log`.
fn copy_console(child: &mut Child, name: &str, log: &Path) -> Result<()> {
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let mut file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let prefix = format!("[{name}] ");
    std::thread::spawn(move || {
        use std::io::Write as _;
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            println!("{prefix}{line}");
            let _ = writeln!(file, "{line}");
        }
    });
    Ok(())
}

/// Kills and reaps qemu when dropped, whatever path we leave by.
struct Guard(Child);

impl Guard {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// qemu-system-x86_64 on PATH.
pub(crate) fn program() -> Result<PathBuf> {
    super::install_program("qemu-system-x86_64", "qemu-system-x86")
}

/// Fails unless the cached kernel is readable (vmlinuz is 0600 root).
pub(crate) fn check_readable(image: &Image) -> Result<()> {
    for path in [image.kernel(), image.initrd(), image.rootfs()] {
        if std::fs::File::open(&path).is_err() {
            bail!(
                "cannot read {}: run as the user who built the image (root)",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_escape_commas() {
        assert_eq!(
            virtfs_arg("src", Path::new("/a,b"), true),
            "local,path=/a,,b,mount_tag=src,security_model=none,readonly=on"
        );
        assert_eq!(
            drive_arg(Path::new("/c/r.img")),
            "file=/c/r.img,format=raw,if=virtio,snapshot=on"
        );
    }
}
