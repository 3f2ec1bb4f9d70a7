//! Errors of the nftables backend.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to nf_tables.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused for lack of privilege.
    #[error(
        "nf_tables refused to {action}: operation not permitted. Changing or listing \
         the firewall needs CAP_NET_ADMIN in the target network namespace (run as root)"
    )]
    PermissionDenied {
        /// What we were doing.
        action: &'static str,
    },
    /// A system call on the netlink socket (or namespace file) failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The ruleset cannot be expressed in nf_tables (e.g. a name too long).
    #[error("ruleset cannot be encoded for nf_tables: {0}")]
    Invalid(String),
    /// The kernel rejected the transaction; nothing was changed.
    #[error("nf_tables rejected the ruleset for table `{table}`; nothing was changed:{}", Bulleted(.failures))]
    Rejected {
        /// The table being applied.
        table: String,
        /// Every failed message, in batch order.
        failures: Vec<Failure>,
    },
    /// nf_tables kept changing under us (another program updating the
    /// firewall) before anything was committed. (Giving up after a commit
    /// is reported as [`Error::Undone`], [`Error::LeftAsIs`] or
    /// [`Error::RollbackFailed`] with this as the cause.)
    #[error(
        "nf_tables was changed by someone else during each of {attempts} attempts to {action}; \
         gave up (nothing was changed by us)"
    )]
    Busy {
        /// What we were doing.
        action: &'static str,
        /// How many times we tried.
        attempts: u32,
    },
    /// After a successful transaction the table read back differs from what was applied.
    #[error("table `{table}` read back after applying differs from the ruleset applied: {difference}")]
    Mismatch {
        /// The table.
        table: String,
        /// The first difference found.
        difference: String,
    },
    /// The table holds something dockfw never writes, so it cannot be decoded.
    #[error("table `{table}` holds something dockfw does not write: {what}")]
    Unrecognised {
        /// The table.
        table: String,
        /// What could not be decoded, and where.
        what: String,
    },
    /// The table exists and is not dockfw's (see [`crate::Owner`]); it was
    /// left as it was.
    #[error("table `{table}` is not dockfw's ({why}); it was left unchanged")]
    NotOwned {
        /// The table.
        table: String,
        /// Why it is not dockfw's.
        why: String,
    },
    /// An update spanning several transactions failed part-way (`cause`)
    /// after `committed` of them had committed; those were undone, so the
    /// table holds the ruleset it held before again (rules that were
    /// rewritten and rewritten back count afresh).
    #[error(
        "applying table `{table}` failed after {} had committed; they were undone, so the \
         table holds the ruleset it held before: {}",
        transactions(*.committed),
        Summary(cause)
    )]
    Undone {
        /// The table.
        table: String,
        /// How many transactions had committed before the failure.
        committed: usize,
        /// Why the update failed.
        cause: Box<Error>,
    },
    /// An update spanning several transactions failed part-way (`cause`)
    /// after `committed` of them had committed, and another program changed
    /// nf_tables after our first commit (our table between our commits, or
    /// anything after our last), so they were not undone: an undo could
    /// have overwritten that program's work. Every state between our
    /// transactions enforces the old or the new policy, never a mix; `now`
    /// says what the table holds. Applying again converges.
    #[error(
        "applying table `{table}` failed after {} had committed: {}\n  another program \
         changed nf_tables after our first commit, so {}; {now}; run apply again",
        transactions(*.committed),
        Summary(cause),
        match undone {
            0 => "they were not undone (that could overwrite its work)".to_string(),
            n => format!("undoing them stopped after {} (going on could overwrite its work)", transactions(*n)),
        }
    )]
    LeftAsIs {
        /// The table.
        table: String,
        /// How many transactions had committed before the failure.
        committed: usize,
        /// Why the update failed.
        cause: Box<Error>,
        /// Transactions of the undo that had committed when another
        /// program's commit stopped it (usually none).
        undone: usize,
        /// What the table holds now, as read after giving up.
        now: String,
    },
    /// An update spanning several transactions failed part-way (`cause`)
    /// after `committed` of them had committed, and undoing them failed too
    /// (`rollback`). Every state the table passed through enforced the old
    /// or the new policy, never a mix, but it now holds neither exactly;
    /// applying again converges.
    #[error(
        "applying table `{table}` failed after {} had committed, and undoing them failed too, \
         so the table holds neither the old nor the new ruleset exactly (it enforces one of \
         them; run apply again):\n  failure: {}\n  undoing: {}",
        transactions(*.committed),
        Summary(cause),
        Summary(rollback)
    )]
    RollbackFailed {
        /// The table.
        table: String,
        /// How many transactions had committed before the failure.
        committed: usize,
        /// Why the update failed.
        cause: Box<Error>,
        /// Why undoing it failed.
        rollback: Box<Error>,
    },
    /// Another dockfw writer (`apply`, `remove`, `watch`, or a program using
    /// this library) held the network namespace's writer lock for the whole
    /// wait. Nothing was changed.
    #[error(
        "another dockfw writer{} holds the lock for this network namespace ({}); gave up \
         after waiting {:.1?}; nothing was changed",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        path.display(),
        waited
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The pid the holder wrote into the lock file, if it had yet.
        holder: Option<u32>,
        /// How long we waited.
        waited: Duration,
    },
    /// Another guard (`dockfw-nft watch`, or a program using
    /// [`crate::Nft::claim_guard`]) already guards the table in this network
    /// namespace: two would fight over every change.
    #[error(
        "another dockfw-nft watch{} already guards table inet {table} in this network namespace",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Guarded {
        /// The table.
        table: String,
        /// The other guard's pid, if it wrote it yet.
        holder: Option<u32>,
    },
    /// The writer lock file could not be created, opened or locked. Nothing
    /// was changed.
    #[error(
        "cannot take the lock that makes dockfw writers take turns ({}): {source}; nothing \
         was changed",
        path.display()
    )]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// There is no table of that name (family inet).
    #[error("table `{table}` does not exist")]
    NoTable {
        /// The table.
        table: String,
    },
    /// The table has no set of that name.
    #[error("table `{table}` has no set `{set}`")]
    NoSet {
        /// The table.
        table: String,
        /// The set.
        set: String,
    },
    /// The set exists, but is not one whose elements belong to run time in
    /// dockfw's form (`flags timeout`, an address key): its elements are
    /// not for run time to change.
    #[error("set `{set}` of table `{table}` is not a set of addresses added at run time: {why}")]
    NotRuntimeSet {
        /// The table.
        table: String,
        /// The set.
        set: String,
        /// What it is instead.
        why: String,
    },
    /// Another socket (ulogd, another `dockfw-nft log`) is bound to the
    /// NFLOG group: only one can be, per network namespace.
    #[error(
        "NFLOG group {group} is already followed by another process in this network namespace \
         (ulogd, or another `dockfw-nft log`); only one can bind a group: stop it, or give \
         dockfw its own group ([guard] log_group)"
    )]
    LogGroupBusy {
        /// The group.
        group: u16,
    },
    /// The kernel answered in a way we did not expect.
    #[error("unexpected nf_tables reply while trying to {action}: {detail}")]
    Protocol {
        /// What we were doing.
        action: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::EPERM) {
            Self::PermissionDenied { action }
        } else {
            Self::Io { action, source }
        }
    }
}

/// "1 transaction", "3 transactions".
fn transactions(count: usize) -> String {
    match count {
        1 => "1 transaction".to_string(),
        n => format!("{n} transactions"),
    }
}

/// An error without the assurance that nothing was changed.
struct Summary<'a>(&'a Error);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::Rejected { table, failures } => {
                write!(
                    f,
                    "nf_tables rejected the ruleset for table `{table}`:{}",
                    Bulleted(failures)
                )
            }
            Error::Busy { action, attempts } => write!(
                f,
                "nf_tables was changed by someone else during each of {attempts} attempts to {action}"
            ),
            other => write!(f, "{other}"),
        }
    }
}

struct Bulleted<'a>(&'a [Failure]);

impl fmt::Display for Bulleted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in self.0 {
            write!(f, "\n  - {failure}")?;
        }
        Ok(())
    }
}

/// One message of a transaction that the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The object the message created, e.g. `rule 2 "web" in chain policy`.
    pub object: String,
    /// The expression at fault, when the kernel pointed at one, e.g.
    /// `expression 4 (lookup) of match 3 DialledPort(Set("rule-1-tcp"))`.
    pub expression: Option<String>,
    /// The errno the kernel returned.
    pub errno: i32,
    /// The kernel's extended-ack text, if any.
    pub kernel_message: Option<String>,
    /// Our reading of what the errno means here.
    pub explanation: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if let Some(expression) = &self.expression {
            write!(f, ", {expression}")?;
        }
        write!(f, ": {} ({})", errno_text(self.errno), errno_name(self.errno))?;
        if let Some(text) = &self.kernel_message {
            write!(f, ", kernel says \"{text}\"")?;
        }
        if !self.explanation.is_empty() {
            write!(f, " — {}", self.explanation)?;
        }
        Ok(())
    }
}

/// The C library's text for `errno`, without Rust's "(os error N)" suffix.
pub(crate) fn errno_text(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The symbolic name of the errnos nf_tables returns.
pub(crate) fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::E2BIG => "E2BIG",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ERESTART => "ERESTART",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}
