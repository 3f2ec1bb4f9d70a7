//! Helpers for privileged tests, enabled by the `testing` feature: the one
//! network-namespace helper every test crate uses ([`TestNetns`]), so a test
//! never touches the host's own firewall, and the root check.
//!
//! Privileged tests are marked `#[ignore = "needs root"]` (or a reason that
//! names what else they need), so a `cargo test` without privilege reports
//! them as ignored, never as passed; `cargo xtask test` runs them as root
//! with `--include-ignored`. Run by hand without root they fail at once:
//! [`TestNetns::new`] and [`require_root`] panic rather than let a test pass
//! without running.
//!
//! The feature also adds the constructors stand-ins of the kernel need in
//! tests ([`InstalledTable::holding`](crate::InstalledTable::holding),
//! [`ApplyReport::without_transactions`]).
//!
//! ```no_run
//! use dockfw_nft::testing::TestNetns;
//! let ns = TestNetns::new().unwrap();
//! let mut nft = ns.nft().unwrap();
//! assert_eq!(nft.installed("dockfw").unwrap(), None);
//! ```

use crate::{ApplyReport, Change, Nft, Result};
use nix::sched::{CloneFlags, setns};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Panics unless this process runs as root: a privileged test that runs
/// without privilege must fail, never pass without testing anything.
pub fn require_root() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "this test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, for network namespaces), \
         but runs as uid {euid}. Privileged tests are #[ignore]d so that `cargo test` skips \
         them without root; run them as root: `cargo xtask test`, or \
         `cargo test -- --include-ignored`"
    );
}

/// A new, empty, named network namespace (as `ip netns add` makes it, under
/// `/run/netns`), deleted when this value is dropped, also when a test panics.
/// Names are unique per process and call: `dfwt-<pid>-<n>`.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
    /// Held open for [`TestNetns::run`].
    ns: OwnedFd,
}

impl TestNetns {
    /// Creates the namespace. Panics when not root (see [`require_root`]).
    pub fn new() -> io::Result<Self> {
        require_root();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dfwt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip").args(["netns", "add", &name]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            )));
        }
        match std::fs::File::open(Path::new("/run/netns").join(&name)) {
            Ok(file) => Ok(Self {
                name,
                ns: file.into(),
            }),
            Err(e) => {
                delete(&name);
                Err(e)
            }
        }
    }

    /// The name, for `ip netns exec NAME`, `ip link … netns NAME` and the
    /// command's `--netns NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path other processes (and [`Nft::in_netns`]) open to enter the
    /// namespace, e.g. for `nsenter --net=PATH nft list ruleset`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// A connection to nf_tables inside the namespace.
    pub fn nft(&self) -> Result<Nft> {
        Nft::in_netns(self.path())
    }

    /// `program` to be run inside the namespace (through `nsenter`, which
    /// leaves /sys alone, unlike `ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `program args` inside the namespace and returns its standard
    /// output; panics with its standard error if it fails.
    pub fn exec<I, S>(&self, program: &str, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let out = self
            .command(program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name));
        assert!(
            out.status.success(),
            "{program} {:?} in {}: {}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>(),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread that has entered the namespace (for sockets,
    /// links and the like), returning its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // Changes only this scoped helper thread.
                    setns(&self.ns, CloneFlags::CLONE_NEWNET)?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// `ip netns del NAME`; the kernel frees the namespace once nothing (no
/// process, no open descriptor) is left in it.
fn delete(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).status();
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
    /// Delete run-time elements as on kernels before 6.3 (no DESTROYSETELEM).
    pub(crate) without_destroy: bool,
}

/// Makes `nft` delete run-time set elements as on kernels before 6.3, which
/// lack `DESTROYSETELEM`: only those present, looked up first.
pub fn delete_without_destroy(nft: &mut Nft) {
    nft.hooks.without_destroy = true;
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
            generation,
            ..Self::new(change)
        }
    }
}
