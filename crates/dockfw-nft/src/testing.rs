//! Helpers for privileged tests: a fresh network namespace per test, so a
//! test never touches the host's own firewall. Enabled by the `testing`
//! feature, which also adds the constructors stand-ins of the kernel need
//! in tests ([`InstalledTable::holding`](crate::InstalledTable::holding),
//! [`ApplyReport::without_transactions`]).
//!
//! ```no_run
//! use dockfw_nft::testing::{TestNetns, require_root};
//! if !require_root("my_test") {
//!     return;
//! }
//! let ns = TestNetns::new().unwrap();
//! let mut nft = ns.nft().unwrap();
//! assert_eq!(nft.installed("dockfw").unwrap(), None);
//! ```

use crate::{ApplyReport, Change, Nft, Result};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// Whether privileged tests can run. As non-root: with `CI=true` this panics
/// (CI must run them), otherwise it prints a notice and returns `false`.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces); CI must run privileged tests as root"
        );
    }
    eprintln!("skipping {test}: needs root (set CI=true to make this a failure)");
    false
}

/// A new, empty network namespace that lives as long as this value.
#[derive(Debug)]
pub struct TestNetns {
    ns: OwnedFd,
}

impl TestNetns {
    /// Creates the namespace from a helper thread (`unshare(CLONE_NEWNET)`
    /// changes only that thread) and keeps a descriptor to it.
    pub fn new() -> io::Result<Self> {
        std::thread::spawn(|| {
            // SAFETY: unshare(2) affects only this helper thread, which ends
            // right after opening its namespace file.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let file = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok(Self { ns: file.into() })
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    }

    /// A path other processes (and [`Nft::in_netns`]) can open to enter the
    /// namespace, e.g. for `nsenter --net=PATH nft list ruleset`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.ns.as_raw_fd()))
    }

    /// A connection to nf_tables inside the namespace.
    pub fn nft(&self) -> Result<Nft> {
        Nft::in_netns(self.path())
    }

    /// Runs `f` on a thread that has entered the namespace (for sockets,
    /// links and the like), returning its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on a namespace descriptor we own; it
                    // changes only this scoped helper thread.
                    if unsafe { libc::setns(self.ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }
}

/// A hook [`Nft`] runs at one point of an apply.
pub(crate) struct Hook(pub(crate) Box<dyn FnMut() + Send>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook(..)")
    }
}

/// Where [`Nft`] runs the hooks tests set.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    pub(crate) after_commit: Option<Hook>,
    pub(crate) before_undo: Option<Hook>,
}

/// Makes `nft` call `hook` after each transaction [`Nft::apply`] commits
/// (and has read back), before planning the next: where a test lets another
/// program commit, or the process die, between two steps of an update. The
/// hook runs with the namespace's writer lock held.
pub fn after_each_commit(nft: &mut Nft, hook: impl FnMut() + Send + 'static) {
    nft.hooks.after_commit = Some(Hook(Box::new(hook)));
}

/// Makes `nft` call `hook` when [`Nft::apply`] failed after committing and
/// is about to undo its transactions: where a test lets another program
/// commit between the failure and the undo.
pub fn before_undo(nft: &mut Nft, hook: impl FnMut() + Send + 'static) {
    nft.hooks.before_undo = Some(Hook(Box::new(hook)));
}

impl ApplyReport {
    /// The report of an apply that brought a table to its ruleset by
    /// `change` without any transaction (no batches sent, no time spent),
    /// `generation` being the ruleset generation it left: for stand-ins of
    /// the kernel in tests.
    pub fn without_transactions(change: Change, generation: u32) -> Self {
        Self {
            change,
            transactions: Vec::new(),
            attempts: 0,
            messages: 0,
            batch_bytes: 0,
            generation,
            commit_time: Duration::ZERO,
            verify_time: Duration::ZERO,
        }
    }
}
