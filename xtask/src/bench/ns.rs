//! Throwaway network namespaces for the benchmarks, and commands run inside
//! them with their wall time, kernel CPU time and peak RSS measured.

use super::stats::Measurement;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Result<Netns> {
        let name = format!(
            "dfwb-{}-{role}{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ok(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n NAME …`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ok(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A command run inside the namespace (`ip netns exec`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `program args` inside the namespace, failing if it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        ok(self.cmd(program).args(args))
    }

    /// Runs `program args` in the namespace as a child of a fresh
    /// `cargo xtask bench measure` process, so that its peak RSS and kernel
    /// time are its own (`getrusage(RUSAGE_CHILDREN)` there).
    /// A command that takes longer than `timeout` is killed and reported
    /// as timed out (not as a failure).
    pub fn measured(&self, timeout: Duration, program: &str, args: &[&str]) -> Result<(Measurement, String)> {
        let exe = std::env::current_exe().context("cannot find the xtask binary")?;
        let timeout = format!("{}s", timeout.as_secs());
        let output = Command::new(exe)
            .args(["bench", "measure", "--netns", &self.name, "--timeout", &timeout])
            .args(["--", program])
            .args(args)
            .output()
            .context("cannot run xtask bench measure")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let measurement = Measurement::parse(&stdout).with_context(|| {
            format!(
                "{program} {}: no measurement\n{stdout}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        if !measurement.success && !measurement.timed_out {
            bail!(
                "{program} {} failed in {}:\n{stdout}{}",
                args.join(" ").chars().take(300).collect::<String>(),
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok((measurement, stdout))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs a command, failing with its stderr if it fails; its stdout.
pub fn ok(command: &mut Command) -> Result<String> {
    let output: Output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `cargo xtask bench measure`: joins the namespace, runs the command,
/// prints what it cost. The child's output passes through first.
pub fn measure(netns: &str, command: &[String], timeout: Option<Duration>) -> Result<()> {
    use nix::sched::{CloneFlags, setns};
    use nix::sys::resource::{UsageWho, getrusage};
    let file = std::fs::File::open(PathBuf::from("/run/netns").join(netns))
        .with_context(|| format!("no network namespace {netns}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
    let (program, args) = command.split_first().context("no command to measure")?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    // A watchdog thread, so that waiting stays a plain blocking wait (no
    // polling that would add to short measurements).
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watchdog = timeout.map(|limit| {
        std::thread::spawn(move || {
            let expired = finished.recv_timeout(limit).is_err();
            if expired {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            expired
        })
    });
    let status = child.wait().context("wait")?;
    let wall = started.elapsed();
    let _ = done.send(());
    let timed_out = watchdog.is_some_and(|w| w.join().unwrap_or(false));
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let system = usage.system_time();
    let measurement = Measurement {
        wall,
        system: Duration::new(
            system.tv_sec().max(0) as u64,
            (system.tv_usec().max(0) as u32) * 1000,
        ),
        max_rss_kib: usage.max_rss().max(0) as u64,
        success: status.success(),
        timed_out,
    };
    println!("{}", measurement.line());
    Ok(())
}
