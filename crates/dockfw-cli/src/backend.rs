//! The seam between the commands and the kernel.
//!
//! The commands never open a netlink socket themselves: they ask the
//! session, which asks its [`Backend`]. [`Kernel`] is the only backend the
//! binary has: nf_tables ([`dockfw_nft::Nft`]) and conntrack
//! ([`dockfw_nft::conntrack::Conntrack`]) in the network namespace given.
//! Tests (with the `testing` feature) use `Memory`, which holds tables in
//! memory and answers as the kernel does, so the output of `status`, `diff`,
//! `apply` and `remove` is tested without privilege; they run the command
//! through [`crate::run`]. Nothing in the binary (no option, no
//! environment variable) selects it: a firewall command that silently did
//! not touch the firewall would be a trap.
//!
//! `watch` applies and repairs through the backend too, but it also follows
//! nf_tables notifications ([`Backend::monitor`]), which only the kernel has:
//! `Memory` refuses them, so `watch` runs against the kernel only.

#[cfg(feature = "testing")]
mod memory;

#[cfg(feature = "testing")]
pub use memory::{Memory, MemoryTable};

use anyhow::Context;
use dockfw_core::Ruleset;
use dockfw_nft::conntrack::{Conntrack, CtEntry};
use dockfw_nft::monitor::Monitor;
use dockfw_nft::nflog::LogListener;
use dockfw_nft::{ApplyReport, InstalledTable, Nft, Result, RuleCounter, RuntimeElement, RuntimeEntry};
use std::fmt;
use std::path::Path;

/// Where the firewall lives: opens the connections a command needs, in a
/// network namespace (`None`: the command's own).
pub trait Backend: fmt::Debug {
    /// A connection to nf_tables.
    fn tables(&self, netns: Option<&Path>) -> Result<Box<dyn Tables>>;
    /// A connection to the connection tracker, for revoke.
    fn connections(&self, netns: Option<&Path>) -> Result<Box<dyn Connections>>;
    /// A subscription to nf_tables notifications, for `watch`.
    fn monitor(&self, netns: Option<&Path>) -> anyhow::Result<Monitor>;
    /// The NFLOG group `group`, bound for `log`. Only the kernel has one.
    fn log_listener(&self, _netns: Option<&Path>, _group: u16) -> Result<LogListener> {
        Err(dockfw_nft::Error::Invalid(
            "this backend has no NFLOG groups".to_string(),
        ))
    }
    /// The value of a sysctl under `/proc/sys` (`net/bridge/…`) in the
    /// namespace ([`dockfw_nft::read_sysctl`]). None by default: an
    /// error, so nothing is said about it.
    fn sysctl(&self, _netns: Option<&Path>, key: &str) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{key}: no sysctls here"),
        ))
    }

    /// The names of the namespace's network interfaces
    /// ([`dockfw_nft::interface_names`]). None by default: an error, so
    /// nothing is said about them.
    fn interfaces(&self, _netns: Option<&Path>) -> std::io::Result<Vec<String>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no interfaces here",
        ))
    }

    /// A connection of its own that only reads counters, for the thread
    /// serving `watch --metrics`.
    fn counter_reader(&self, netns: Option<&Path>) -> anyhow::Result<Box<dyn CounterReader>>;
}

/// Reads rule counters ([`Nft::counters`]) from a thread of its own.
pub trait CounterReader: Send {
    /// Every rule's packets and bytes in `table` (none if it does not exist).
    fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>>;
}

impl CounterReader for Nft {
    fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>> {
        Nft::counters(self, table)
    }
}

/// What the commands do with nf_tables: the methods of [`Nft`] they use,
/// documented there.
pub trait Tables {
    /// [`Nft::apply`]: brings the table to `ruleset`, glitch-free; refuses a
    /// table that is not dockfw's.
    fn apply(&mut self, ruleset: &Ruleset) -> Result<ApplyReport>;
    /// [`Nft::validate`]: whether the kernel would take `ruleset`; nothing
    /// is installed (nothing to ask by default).
    fn validate(&mut self, _ruleset: &Ruleset) -> Result<()> {
        Ok(())
    }
    /// [`Nft::replace`]: replaces dockfw's table in one transaction.
    fn replace(&mut self, ruleset: &Ruleset) -> Result<ApplyReport>;
    /// [`Nft::adopt`]: replaces the table whoever it belongs to.
    fn adopt(&mut self, ruleset: &Ruleset) -> Result<ApplyReport>;
    /// [`Nft::installed`]: the table decoded as a dockfw ruleset.
    fn installed(&mut self, table: &str) -> Result<Option<Ruleset>>;
    /// [`Nft::inspect`]: everything the table holds, with its owner.
    fn inspect(&mut self, table: &str) -> Result<Option<InstalledTable>>;
    /// [`Nft::counters`]: every rule's packets and bytes.
    fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>>;
    /// [`Nft::remove`]: deletes dockfw's table; whether it existed.
    fn remove(&mut self, table: &str) -> Result<bool>;
    /// [`Nft::remove_foreign`]: deletes the table whoever it belongs to.
    fn remove_foreign(&mut self, table: &str) -> Result<bool>;
    /// [`Nft::claim_guard`]: the claim of the one guard of `table` (none
    /// needed by default).
    fn claim_guard(&mut self, _table: &str) -> Result<Option<dockfw_nft::GuardClaim>> {
        Ok(None)
    }
    /// [`Nft::guard_of`]: whether a guard (watch) guards `table`, and what
    /// it says of itself (none by default).
    fn guard_of(&mut self, _table: &str) -> Result<Option<dockfw_nft::GuardHolder>> {
        Ok(None)
    }
    /// [`Nft::table_flags`]: whether `table` exists, and its flags.
    fn table_flags(&mut self, _table: &str) -> Result<Option<u32>> {
        Ok(Some(0))
    }
    /// [`Nft::base_chains`]: every base chain in the namespace (none by default).
    fn base_chains(&mut self) -> Result<Vec<dockfw_nft::BaseChain>> {
        Ok(Vec::new())
    }
    /// [`Nft::keep_images_in_memory_only`]: for a long-lived connection.
    fn keep_images_in_memory_only(&mut self) {}
    /// [`Nft::generation`]: the current ruleset generation.
    fn generation(&mut self) -> Result<u32>;
    /// [`Nft::runtime_elements`]: what run time put in a run-time set.
    fn runtime_elements(&mut self, table: &str, set: &str) -> Result<Vec<RuntimeElement>>;
    /// [`Nft::add_runtime_elements`]: one transaction; present ones are no error.
    fn add_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()>;
    /// [`Nft::delete_runtime_elements`]: one transaction; absent ones are no error.
    fn delete_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()>;
    /// [`Nft::flush_runtime_sets`]: empties run-time sets, in one transaction.
    fn flush_runtime_sets(&mut self, table: &str, sets: &[&str]) -> Result<()>;
    /// [`Nft::note_commit`]: a commit the monitor saw, so that what was
    /// installed stays trusted across commits elsewhere (none by default).
    fn note_commit(&mut self, _commit: &dockfw_nft::monitor::Commit) {}
    /// [`Nft::note_lost_notifications`]: notifications were lost.
    fn note_lost_notifications(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// What revoke does with the connection tracker: the methods of
/// [`Conntrack`] it uses, documented there.
pub trait Connections {
    /// [`Conntrack::dump`]: every tracked connection.
    fn dump(&mut self) -> Result<Vec<CtEntry>>;
    /// [`Conntrack::delete`]: deletes one; whether it was still there.
    fn delete(&mut self, entry: &CtEntry) -> Result<bool>;
    /// Whether `net.netfilter.nf_conntrack_tcp_loose` is known to be 0 (a
    /// cut TCP connection's next packet is then invalid, not new).
    fn tcp_loose_off(&self) -> bool;
}

/// The kernel: nf_tables and conntrack over netlink.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kernel;

impl Backend for Kernel {
    fn tables(&self, netns: Option<&Path>) -> Result<Box<dyn Tables>> {
        let mut nft = match netns {
            None => Nft::open()?,
            Some(path) => Nft::in_netns(path)?,
        };
        // One-shot commands hand what they installed on to the next (see
        // `Nft::keep_images_on_disk`); watch keeps it in memory.
        nft.keep_images_on_disk(Nft::IMAGE_DIR);
        Ok(Box::new(nft))
    }

    fn connections(&self, netns: Option<&Path>) -> Result<Box<dyn Connections>> {
        let conntrack = match netns {
            None => Conntrack::open()?,
            Some(path) => Conntrack::in_netns(path)?,
        };
        Ok(Box::new(KernelConnections {
            conntrack,
            // The sysctl under /proc is the namespace of this process's.
            own_netns: netns.is_none(),
        }))
    }

    fn monitor(&self, netns: Option<&Path>) -> anyhow::Result<Monitor> {
        match netns {
            None => Ok(Monitor::open()?),
            Some(path) => Monitor::in_netns(path)
                .with_context(|| format!("cannot enter network namespace {}", path.display())),
        }
    }

    fn sysctl(&self, netns: Option<&Path>, key: &str) -> std::io::Result<String> {
        dockfw_nft::read_sysctl(netns, key)
    }

    fn log_listener(&self, netns: Option<&Path>, group: u16) -> Result<LogListener> {
        LogListener::bind(netns, group)
    }

    fn interfaces(&self, netns: Option<&Path>) -> std::io::Result<Vec<String>> {
        dockfw_nft::interface_names(netns)
    }

    fn counter_reader(&self, netns: Option<&Path>) -> anyhow::Result<Box<dyn CounterReader>> {
        // No images kept: it never applies.
        let nft = match netns {
            None => Nft::open()?,
            Some(path) => Nft::in_netns(path)
                .with_context(|| format!("cannot enter network namespace {}", path.display()))?,
        };
        Ok(Box::new(nft))
    }
}

impl Tables for Nft {
    fn apply(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        Nft::apply(self, ruleset)
    }

    /// Asks the kernel once per boot (see [`crate::features`]).
    fn validate(&mut self, ruleset: &Ruleset) -> Result<()> {
        let key = crate::features::boot_key(ruleset);
        if key.as_deref().is_some_and(crate::features::passed_this_boot) {
            return Ok(());
        }
        Nft::validate(self, ruleset)?;
        if let Some(key) = key {
            crate::features::note_passed(&key);
        }
        Ok(())
    }

    fn replace(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        Nft::replace(self, ruleset)
    }

    fn adopt(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        Nft::adopt(self, ruleset)
    }

    fn installed(&mut self, table: &str) -> Result<Option<Ruleset>> {
        Nft::installed(self, table)
    }

    fn inspect(&mut self, table: &str) -> Result<Option<InstalledTable>> {
        Nft::inspect(self, table)
    }

    fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>> {
        Nft::counters(self, table)
    }

    fn remove(&mut self, table: &str) -> Result<bool> {
        Nft::remove(self, table)
    }

    fn remove_foreign(&mut self, table: &str) -> Result<bool> {
        Nft::remove_foreign(self, table)
    }
    fn generation(&mut self) -> Result<u32> {
        Nft::generation(self)
    }

    fn keep_images_in_memory_only(&mut self) {
        Nft::keep_images_in_memory_only(self);
    }

    fn base_chains(&mut self) -> Result<Vec<dockfw_nft::BaseChain>> {
        Nft::base_chains(self)
    }

    fn claim_guard(&mut self, table: &str) -> Result<Option<dockfw_nft::GuardClaim>> {
        Nft::claim_guard(self, table).map(Some)
    }

    fn guard_of(&mut self, table: &str) -> Result<Option<dockfw_nft::GuardHolder>> {
        Nft::guard_of(self, table)
    }

    fn table_flags(&mut self, table: &str) -> Result<Option<u32>> {
        Nft::table_flags(self, table)
    }

    fn runtime_elements(&mut self, table: &str, set: &str) -> Result<Vec<RuntimeElement>> {
        Nft::runtime_elements(self, table, set)
    }

    fn add_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()> {
        Nft::add_runtime_elements(self, table, entries)
    }

    fn delete_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()> {
        Nft::delete_runtime_elements(self, table, entries)
    }

    fn flush_runtime_sets(&mut self, table: &str, sets: &[&str]) -> Result<()> {
        Nft::flush_runtime_sets(self, table, sets)
    }

    fn note_commit(&mut self, commit: &dockfw_nft::monitor::Commit) {
        Nft::note_commit(self, commit);
    }
    fn note_lost_notifications(&mut self) -> Result<bool> {
        Nft::note_lost_notifications(self)
    }
}

/// The kernel's connection tracker.
struct KernelConnections {
    conntrack: Conntrack,
    own_netns: bool,
}

impl Connections for KernelConnections {
    fn dump(&mut self) -> Result<Vec<CtEntry>> {
        self.conntrack.dump()
    }

    fn delete(&mut self, entry: &CtEntry) -> Result<bool> {
        self.conntrack.delete(entry)
    }

    fn tcp_loose_off(&self) -> bool {
        self.own_netns
            && std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_loose")
                .is_ok_and(|value| value.trim() == "0")
    }
}
