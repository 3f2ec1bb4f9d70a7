//! Running Rust code inside a lab network namespace.

use crate::error::{LabError, Result};
use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::path::Path;

/// Runs `f` on a fresh thread that first joins the network namespace at
/// `netns`. setns(CLONE_NEWNET) only affects the calling thread, and the
/// thread ends afterwards, so the rest of the process stays where it was.
/// Sockets created in `f` belong to that namespace for their whole life.
pub fn in_netns<T, F>(netns: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_in_netns(netns, f)?.join()
}

/// A thread running inside a network namespace.
#[derive(Debug)]
pub struct NetnsThread<T>(std::thread::JoinHandle<Result<T>>);

impl<T> NetnsThread<T> {
    /// Waits for the thread's result.
    pub fn join(self) -> Result<T> {
        match self.0.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Like [`in_netns`] but returns at once; join the handle for the result.
pub fn spawn_in_netns<T, F>(netns: &Path, f: F) -> Result<NetnsThread<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // Opened here so that a missing namespace is reported to the caller.
    let file = File::open(netns).map_err(|source| LabError::Io {
        what: format!("cannot open network namespace {}", netns.display()),
        source,
    })?;
    let what = format!("setns({})", netns.display());
    let handle = std::thread::Builder::new()
        .name("dockfw-lab-netns".into())
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Io {
                what,
                source: std::io::Error::from(e),
            })?;
            drop(file);
            Ok(f())
        })
        .map_err(crate::error::io_err("cannot spawn namespace thread"))?;
    Ok(NetnsThread(handle))
}
