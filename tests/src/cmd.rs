//! Running external programs (ip, nsenter, docker) with useful errors.

use crate::error::{LabError, Result};
use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Human-readable command line, for errors and logs.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` (optionally feeding `stdin`) and returns its output, whatever
/// its exit status.
pub(crate) fn output(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<Output> {
    let text = describe(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        cmd: text.clone(),
        source,
    })?;
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A writer thread avoids a deadlock when the child fills its stdout
        // pipe before reading all of its input.
        let data = data.to_vec();
        let writer = std::thread::spawn(move || pipe.write_all(&data));
        let out = child.wait_with_output().map_err(|source| LabError::Spawn {
            cmd: text.clone(),
            source,
        })?;
        let _ = writer.join();
        return Ok(out);
    }
    child
        .wait_with_output()
        .map_err(|source| LabError::Spawn { cmd: text, source })
}

/// Runs `cmd` and returns its trimmed stdout, failing on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    run_with_stdin(cmd, None)
}

pub(crate) fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<String> {
    let out = output(cmd, stdin)?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `ip <args>`.
pub(crate) fn ip<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").args(args))
}

/// Whether `ip <args>` succeeds (used to test for existing objects).
pub(crate) fn ip_ok(args: &[&str]) -> bool {
    output(Command::new("ip").args(args), None).is_ok_and(|o| o.status.success())
}

/// A command that runs `program` inside the network namespace at `netns`.
/// nsenter only switches the network namespace, unlike `ip netns exec`, which
/// also remounts /sys (that breaks dockerd's cgroup handling).
pub(crate) fn nsenter(netns: &Path, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(program);
    cmd
}

/// Finds `program` on PATH (or accepts an existing path).
pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
