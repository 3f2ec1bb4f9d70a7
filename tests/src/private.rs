//! Programs that keep their state in fixed system paths (ufw in /etc/ufw,
//! firewalld in /etc/firewalld and /run, the D-Bus system bus in /run/dbus)
//! run in a lab namespace with those paths replaced by the lab's own
//! copies, so the machine's files are never read for state nor written:
//! each command enters the namespace, then a mount namespace of its own
//! (`unshare --mount`, private propagation) where every copy is
//! bind-mounted over its original. Commands share the copies (and so a
//! unix socket one of them creates), not their mount namespaces.

use crate::cmd;
use crate::error::{LabError, Result, io_err};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What stands in for one system path.
#[derive(Debug, Clone, Copy)]
pub enum Stand {
    /// A copy of the machine's file or directory, made once (`cp -a`).
    Copy,
    /// An empty directory (the original must be a directory).
    Empty,
}

/// System paths replaced by private copies under a directory of the lab's.
#[derive(Debug)]
pub struct PrivatePaths {
    dir: PathBuf,
    binds: Vec<(PathBuf, PathBuf)>,
}

impl PrivatePaths {
    /// Makes the stand-ins under `dir` (emptied first): each of `paths` is a
    /// system path that exists, and how it is stood in for.
    pub fn new(dir: &Path, paths: &[(&str, Stand)]) -> Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        let mut binds = Vec::new();
        for (i, (target, stand)) in paths.iter().enumerate() {
            let target = PathBuf::from(target);
            let copy = dir.join(format!("{i}{}", target.to_string_lossy().replace('/', "_")));
            match stand {
                Stand::Copy => {
                    cmd::run(Command::new("cp").arg("-a").arg(&target).arg(&copy))?;
                }
                Stand::Empty => {
                    std::fs::create_dir(&copy).map_err(io_err(format!("create {}", copy.display())))?;
                }
            }
            binds.push((copy, target));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            binds,
        })
    }

    /// The stand-in for system path `target` (to read what the program wrote).
    pub fn copy_of(&self, target: &str) -> Option<&Path> {
        self.binds
            .iter()
            .find(|(_, t)| t == Path::new(target))
            .map(|(c, _)| c.as_path())
    }

    /// `program` in network namespace `netns` with the stand-ins mounted.
    pub fn command(&self, netns: &Path, program: impl AsRef<OsStr>) -> Command {
        let mut script = String::from("set -e; ");
        for (i, _) in self.binds.iter().enumerate() {
            script.push_str(&format!(
                "mount --bind \"$PRIVATE_COPY_{i}\" \"$PRIVATE_TARGET_{i}\"; "
            ));
        }
        script.push_str("exec \"$@\"");
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", netns.display()))
            .args([
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "sh",
            ])
            .arg(program);
        for (i, (copy, target)) in self.binds.iter().enumerate() {
            command
                .env(format!("PRIVATE_COPY_{i}"), copy)
                .env(format!("PRIVATE_TARGET_{i}"), target);
        }
        command
    }

    /// A mount namespace with the stand-ins mounted, held open (by a
    /// `sleep` in network namespace `netns`) until the [`Held`] is dropped,
    /// for programs whose commands must share mounts they make, not just
    /// files (Podman bind-mounts each container's network namespace under
    /// /run/netns, and later commands enter it there).
    pub fn hold(&self, netns: &Path) -> Result<Held> {
        let mut command = self.command(netns, "sleep");
        command
            .arg("infinity")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let describe = cmd::describe(&command);
        let child = command.spawn().map_err(|source| LabError::Spawn {
            cmd: describe,
            source,
        })?;
        let held = Held {
            child,
            netns: netns.to_path_buf(),
        };
        // The mounts are made before `sleep` runs: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let exe = std::fs::read_link(format!("/proc/{}/exe", held.child.id())).unwrap_or_default();
            if exe.file_name().is_some_and(|n| n == "sleep") {
                return Ok(held);
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Unexpected {
                    cmd: "unshare --mount … sleep infinity".into(),
                    output: "the mount namespace holder did not start".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs `program args` like [`Self::command`]; its standard output, or
    /// an error with its standard error.
    pub fn run(&self, netns: &Path, program: &str, args: &[&str]) -> Result<String> {
        cmd::run(self.command(netns, program).args(args))
    }

    /// Removes the stand-ins.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| LabError::Io {
            what: format!("remove {}", self.dir.display()),
            source,
        })
    }
}

/// A mount namespace with private paths, held open by a process of its
/// own (killed when dropped); commands run in it and in a network
/// namespace.
#[derive(Debug)]
pub struct Held {
    child: std::process::Child,
    netns: PathBuf,
}

impl Held {
    /// `program` in the held mount namespace and the network namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns.display()))
            .arg(format!("--mount=/proc/{}/ns/mnt", self.child.id()))
            .arg("--")
            .arg(program);
        command
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
