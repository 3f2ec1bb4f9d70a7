//! dockfw-nft: the nftables backend. Installs a
//! [`Ruleset`] by speaking nf_tables netlink
//! directly (libnftnl through the `nftnl` crate; no `nft` binary), reads it
//! back, reports counters and removes it.
//!
//! * [`Nft::apply`] brings the table to the ruleset **without a glitch**:
//!   every packet is decided by the old policy or by the new one, never by
//!   a half-built table or a mix of the two. It reads what is installed and
//!   changes only what differs, in a few transactions (each one batch, sent
//!   with a single `sendto`, all or nothing), none of which changes rules
//!   together with the elements of a set they use. Why: nf_tables switches
//!   all rules at one instant of a commit, but the kernels this was built on
//!   (6.18) publish an interval set's elements slightly later in the same
//!   commit, so a rule switched to a set changed in that very transaction
//!   misses for packets in between (it met the default fate in the
//!   end-to-end suite). The sequences:
//!
//!   | installed | transactions |
//!   |---|---|
//!   | the same ruleset | none: nothing is sent, counters and meters carry on |
//!   | no table, ruleset without sets | Create: table, chains, rules |
//!   | no table | Prepare: table and sets; Switch: chains and rules |
//!   | only rules or chains differ | Switch: changed rules, new and dropped chains, dropped sets |
//!   | new sets needed | Prepare: create them; Switch |
//!   | a set rules use changes | Prepare: a staging copy `NAME.next` (and new sets); Switch: rules use the copy; Prepare: update the original (only the intervals that differ), unused now; Switch: rules back, copy deleted |
//!   | something dockfw does not write, or table flags (dormant) | Replace (as [`Nft::replace`]) |
//!
//!   Every state between transactions enforces the old or the new policy:
//!   a Prepare only touches sets no rule uses; a Switch uses only sets
//!   filled by an earlier transaction. What survives an update: the table,
//!   every set and chain still wanted (same kernel object, an updated set
//!   included), meters whose parameters did not change (with their
//!   per-source state), and unchanged rules of a chain with their handles
//!   and counters. Counters restart for rules that were added or changed
//!   (including rules that use a set changed through a staging copy, which
//!   are rewritten twice). A set whose type or meter parameters change, and
//!   a base chain whose hook or priority changes, are recreated; so are
//!   sets and chains listed after one that had to be created, as the
//!   kernel keeps creation order and [`Nft::installed`] must read back the
//!   ruleset exactly. Each batch carries the ruleset generation it was
//!   planned from, so a concurrent change by another program makes the
//!   kernel refuse it (`ERESTART`); the table is then read again and the
//!   step planned anew. After each transaction the table is read back and
//!   must be exactly what that step should leave (elements are dumped again
//!   only for the sets the step wrote, when the generation shows that
//!   nothing else committed since the last read). If a later transaction
//!   fails, those already committed are undone the same way, but never over
//!   another program's work (see [`Nft::apply`]).
//! * **Writers take turns.** [`Nft::apply`], [`Nft::replace`] and
//!   [`Nft::remove`] hold the network namespace's writer lock while they
//!   run: an `flock` on `/run/dockfw-nft/netns-DEV-INODE.lock` (DEV and
//!   INODE of the namespace's nsfs file, so every path to one namespace
//!   names one lock; the directory is created, 0755, if missing, and
//!   refused unless it is a directory owned by root or the effective user
//!   that group and others cannot write to). Every
//!   dockfw writer of a namespace, the command's `apply`, `remove` and
//!   `watch` and any embedder, thus runs alone, so no update is ever planned
//!   over, or undone over, another dockfw writer's half-done work. A writer
//!   waits for the lock up to 30 s ([`Nft::set_lock_wait`]), then fails with
//!   [`Error::Locked`], naming the holder's pid (which the holder writes into
//!   the file). The kernel drops the lock when its holder's file closes,
//!   however it ends (`kill -9` included). Reads take no lock. Programs that
//!   are not dockfw (Docker, `nft`) take none either; the generation each
//!   batch carries guards against them.
//! * [`Nft::installed`] decodes the table exactly (order included), so
//!   "is our ruleset installed" is `installed == Some(desired)`; it fails
//!   with [`Error::Unrecognised`] on anything dockfw does not write.
//! * [`Nft::inspect`] reads everything in the table, whoever wrote it: table
//!   flags and comment, chains (type, hook, priority, policy, devices, flags,
//!   comment), sets (any type and flags, with elements), rules with every
//!   expression, stateful objects and flowtables. [`InstalledTable::compare`]
//!   lists every [`Difference`] from a ruleset and renders both as nft-like
//!   text for a diff; see [`inspect`](InstalledTable) for what counts.
//! * Ownership: every table dockfw creates carries the comment [`MARKER`],
//!   written in the creating transaction. [`Nft::apply`], [`Nft::replace`]
//!   and [`Nft::remove`] refuse a table that is not dockfw's
//!   ([`Error::NotOwned`], see [`Owner`]) in a batch pinned to the generation
//!   of the read that decided it; [`Nft::adopt`] and [`Nft::remove_foreign`]
//!   act on it deliberately. A table of an earlier version (no marker) is
//!   dockfw's when all of it decodes as dockfw's layout, core chains
//!   included ([`Owner::Unmarked`]). The marker is a safety net, not
//!   authentication: any program may write the same comment.
//! * Kernel errors name the object at fault (table, set, chain, or rule by
//!   chain, position and comment, and the match when the kernel points at
//!   an expression) and say what the errno means there.
//!
//! ```no_run
//! use dockfw_core::ruleset::{Chain, Rule, Ruleset, Verdict};
//! # fn main() -> Result<(), dockfw_nft::Error> {
//! let ruleset = Ruleset {
//!     table: "dockfw".into(),
//!     sets: vec![],
//!     chains: vec![Chain {
//!         name: "forward".into(),
//!         hook: Some(dockfw_core::ruleset::BaseHook {
//!             hook: dockfw_core::ruleset::Hook::Forward,
//!             priority: -5,
//!         }),
//!         rules: vec![Rule {
//!             comment: "count everything".into(),
//!             matches: vec![],
//!             statements: vec![],
//!             verdict: Some(Verdict::Accept),
//!         }],
//!     }],
//! };
//! let mut nft = dockfw_nft::Nft::open()?; // or Nft::in_netns("/run/netns/test")?
//! let report = nft.apply(&ruleset)?;
//! println!(
//!     "{:?} in {} transaction(s), {:?} ({} messages)",
//!     report.change,
//!     report.transactions.len(),
//!     report.commit_time,
//!     report.messages
//! );
//! assert_eq!(nft.installed("dockfw")?, Some(ruleset));
//! for counter in nft.counters("dockfw")? {
//!     println!("{} #{} {:?}: {} packets", counter.chain, counter.index, counter.comment, counter.packets);
//! }
//! nft.remove("dockfw")?;
//! # Ok(())
//! # }
//! ```

pub mod conntrack;
mod decode;
mod encode;
mod error;
mod expr;
mod ffi;
mod inspect;
mod lock;
pub mod monitor;
mod netlink;
mod owner;
mod plan;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Failure, Result};
pub use inspect::{Comparison, Difference, InstalledTable, table_text};
pub use owner::{MARKER, Owner};

use dockfw_core::ruleset::Ruleset;
use encode::{Batch, Object, Part};
use expr::Expr;
use ffi::{Dump, MsgWriter};
use lock::{NetnsId, WriterLock};
use netlink::{NLM_F_DUMP_INTR, RECV_BYTES, Reply, Socket};
use plan::{Installed, StepKind};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// How many times a transaction or a consistent read is tried when another
/// program keeps changing nf_tables.
const ATTEMPTS: u32 = 5;
/// Reads are cheap and only need two agreeing results; allow more tries.
const READ_ATTEMPTS: u32 = 20;
/// Committed transactions one in-place update may take: the planner needs at
/// most four (see [`plan`]); more means someone else keeps changing the table.
const MAX_STEPS: usize = 8;

/// A connection to nf_tables in one network namespace.
#[derive(Debug)]
pub struct Nft {
    socket: Socket,
    writer: MsgWriter,
    seq: u32,
    recv: Vec<u32>,
    /// The namespace the socket is in, naming its writer lock.
    netns: NetnsId,
    /// How long a writing method waits for the writer lock.
    lock_wait: Duration,
    /// Where tests inject other programs' commits and crashes.
    #[cfg(feature = "testing")]
    hooks: testing::Hooks,
}

/// How [`Nft::apply`] brought the table to the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The table already held exactly the ruleset: nothing was sent, so
    /// counters, rate limits and meters carry on untouched.
    Unchanged,
    /// The table did not exist and was created.
    Created,
    /// The table was updated in place, touching only what differs.
    Updated,
    /// The whole table was replaced in one transaction ([`Nft::replace`], or
    /// `apply` finding a table it cannot update in place).
    Replaced,
}

/// What a committed transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionKind {
    /// First install of a ruleset without sets: table, chains and rules.
    Create,
    /// Sets created or updated that no installed rule uses (and, on a first
    /// install, the table).
    Prepare,
    /// Rules rewritten, chains created or deleted, unused sets deleted; no
    /// set's elements change.
    Switch,
    /// The table deleted and created anew with everything in it.
    Replace,
}

/// One committed transaction (one batch, sent with one `sendto`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transaction {
    /// What it did.
    pub kind: TransactionKind,
    /// Netlink messages in the batch, batch begin and end included.
    pub messages: usize,
    /// Size of the batch.
    pub bytes: usize,
    /// Ruleset generation the batch was based on (it committed as the next one).
    pub generation: u32,
    /// Time to send the batch and read every ack (the kernel commit).
    pub commit_time: Duration,
}

/// What [`Nft::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// How the table got there.
    pub change: Change,
    /// The transactions committed, in order (none when unchanged).
    pub transactions: Vec<Transaction>,
    /// Batches sent: the committed ones and those the kernel refused because
    /// someone else changed nf_tables meanwhile (then re-planned and retried).
    pub attempts: u32,
    /// Netlink messages of all committed batches.
    pub messages: usize,
    /// Bytes of all committed batches.
    pub batch_bytes: usize,
    /// Ruleset generation the last committed batch was based on (when
    /// unchanged: the generation the table was read in).
    pub generation: u32,
    /// Time to send the batches and read every ack (the kernel commits).
    pub commit_time: Duration,
    /// Time to read the table (before and after each transaction) and compare it.
    pub verify_time: Duration,
}

impl ApplyReport {
    fn new(change: Change) -> Self {
        Self {
            change,
            transactions: Vec::new(),
            attempts: 0,
            messages: 0,
            batch_bytes: 0,
            generation: 0,
            commit_time: Duration::ZERO,
            verify_time: Duration::ZERO,
        }
    }

    fn record(&mut self, transaction: Transaction) {
        self.messages += transaction.messages;
        self.batch_bytes += transaction.bytes;
        self.generation = transaction.generation;
        self.commit_time += transaction.commit_time;
        self.transactions.push(transaction);
    }
}

/// Packet and byte counts of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// The chain holding the rule.
    pub chain: String,
    /// Position of the rule in its chain (0-based, as in `Chain::rules`).
    pub index: usize,
    /// The kernel's handle of the rule.
    pub handle: u64,
    /// The rule's comment.
    pub comment: String,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// How a request ended: completed (dumps: with or without interruption), or
/// refused with an errno.
enum Outcome {
    Done { interrupted: bool },
    Refused(i32),
}

/// A message of a batch the kernel answered with an error.
struct KernelError {
    seq: u32,
    errno: i32,
    text: Option<String>,
    offset: Option<u32>,
}

/// One attempt at reading a table.
enum Read {
    Absent,
    /// A dump saw a concurrent change (or the table vanished midway).
    Interrupted,
    Table(TableDump),
}

/// The raw contents of a table, read in one consistent generation (counter
/// values zeroed: they are not part of what was applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableDump {
    pub(crate) flags: u32,
    /// Table userdata: dockfw's ownership marker (see [`owner`]).
    pub(crate) userdata: Vec<u8>,
    pub(crate) chains: Vec<ffi::ChainInfo>,
    pub(crate) sets: Vec<(ffi::SetSpec, ffi::Elems)>,
    pub(crate) rules: Vec<ffi::RuleInfo>,
    /// Stateful objects; dockfw writes none.
    pub(crate) objects: Vec<ffi::ObjectInfo>,
    /// Flowtables; dockfw writes none.
    pub(crate) flowtables: Vec<ffi::FlowtableInfo>,
}

impl TableDump {
    /// Whether a chain or set name appears twice, which no committed table
    /// can hold (see [`Nft::read`]).
    fn repeats_a_name(&self) -> bool {
        let mut chains = HashSet::new();
        let mut sets = HashSet::new();
        !self.chains.iter().all(|c| chains.insert(c.name.as_str()))
            || !self.sets.iter().all(|(s, _)| sets.insert(s.name.as_str()))
    }
}

/// A read table: raw, and decoded (or why it cannot be).
struct Snapshot {
    dump: TableDump,
    decoded: Result<Installed>,
}

impl Snapshot {
    /// Whose the table is.
    fn owner(&self) -> Owner {
        owner_of(&self.dump, &self.decoded)
    }
}

fn owner_of(dump: &TableDump, decoded: &Result<Installed>) -> Owner {
    let what = match decoded {
        Err(Error::Unrecognised { what, .. }) => what.clone(),
        Err(other) => other.to_string(),
        Ok(_) => String::new(),
    };
    owner::owner(
        dump,
        decoded.as_ref().map(|i| &i.ruleset).map_err(|_| what.as_str()),
    )
}

/// [`Error::NotOwned`] unless the snapshot is of a table dockfw may change
/// (or of no table).
fn ensure_ours(table: &str, snapshot: Option<&Snapshot>) -> Result<()> {
    match snapshot.map(Snapshot::owner) {
        Some(Owner::Foreign { why }) => Err(Error::NotOwned {
            table: table.to_string(),
            why,
        }),
        _ => Ok(()),
    }
}

/// Set elements a read may take from an earlier read instead of dumping them
/// again: those of every set but `fresh`, if the ruleset generation is still
/// `generation` when the read starts (nothing but the transaction that led
/// there has committed since `previous` was read, and it wrote only `fresh`).
struct Reuse<'a> {
    generation: u32,
    previous: &'a TableDump,
    fresh: HashSet<&'a str>,
}

/// Whether [`Nft::converge`] brings the table to a ruleset (re-planning
/// over whatever it finds), or undoes our own steps (only over our own work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Undo,
}

/// How [`Nft::converge`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The table holds the ruleset.
    Done,
    /// ([`Mode::Undo`]) another program changed the table; stopped there.
    Overtaken,
}

/// How [`Nft::restore`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// The table holds the original ruleset again (or nothing needed undoing).
    Done,
    /// Another program changed nf_tables since our last commit; the table
    /// was left as is after `undone` transactions of the undo.
    Overtaken { undone: usize },
}

/// Where our own commits of one [`Nft::converge`] left nf_tables, so that
/// an undo is never sent over another program's work.
#[derive(Debug, Default)]
struct Trail {
    /// Transactions committed.
    committed: usize,
    /// The table our first commit was planned from (and committed over:
    /// the batch carried the generation it was read in), inner `None`:
    /// absent. What an undo goes back to.
    before: Option<Option<Ruleset>>,
    /// Whether another program changed the table between our commits (we
    /// planned anew over its work), so going back to `before` would erase it.
    interleaved: bool,
    /// The generation our last commit moved nf_tables to.
    generation: Option<u32>,
    /// The table as read back in exactly that generation (inner `None`:
    /// absent), if it was.
    table: Option<Option<TableDump>>,
}

/// The generation nf_tables moves to when a batch based on `generation`
/// commits (the kernel skips 0).
fn next_generation(generation: u32) -> u32 {
    match generation.wrapping_add(1) {
        0 => 1,
        next => next,
    }
}

impl Nft {
    /// Connects to nf_tables in the caller's network namespace.
    pub fn open() -> Result<Self> {
        // The socket joins the calling thread's namespace: name that one.
        let netns = NetnsId::current().map_err(|e| Error::io("identify the network namespace", e))?;
        Socket::open()
            .map(|socket| Self::with_socket(socket, netns))
            .map_err(|e| Error::io("open a netfilter netlink socket", e))
    }

    /// Connects to nf_tables in the network namespace at `path` (e.g.
    /// `/run/netns/NAME` or `/proc/PID/ns/net`). The socket is opened by a
    /// helper thread that enters the namespace; the caller's threads stay put.
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Self> {
        let netns = NetnsId::of(path.as_ref())
            .map_err(|e| Error::io("open a netlink socket in the network namespace", e))?;
        Socket::open_in_netns(path.as_ref())
            .map(|socket| Self::with_socket(socket, netns))
            .map_err(|e| Error::io("open a netlink socket in the network namespace", e))
    }

    /// How long [`Nft::apply`], [`Nft::replace`] and [`Nft::remove`] wait
    /// for another dockfw writer of this network namespace to finish before
    /// giving up with [`Error::Locked`] (default 30 s). See "Writers take
    /// turns" in the crate docs.
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = wait;
    }

    /// Runs `write` holding this namespace's writer lock.
    fn exclusively<T>(&mut self, write: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let lock = WriterLock::acquire(self.netns, self.lock_wait)?;
        let result = write(self);
        drop(lock);
        result
    }

    fn with_socket(socket: Socket, netns: NetnsId) -> Self {
        // Start sequence numbers somewhere arbitrary so replies to another
        // socket's requests could never look like ours.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Self {
            socket,
            writer: MsgWriter::new(),
            seq,
            recv: vec![0; RECV_BYTES / 4],
            netns,
            lock_wait: lock::DEFAULT_WAIT,
            #[cfg(feature = "testing")]
            hooks: testing::Hooks::default(),
        }
    }

    fn take_seqs(&mut self, count: usize) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(count as u32);
        first
    }

    /// Sends one request and feeds each data reply to `each` until the dump
    /// ends or the request is acked.
    fn request(
        &mut self,
        action: &'static str,
        msg: &[u8],
        seq: u32,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Outcome> {
        self.socket.send(msg).map_err(|e| Error::io(action, e))?;
        let mut interrupted = false;
        loop {
            let buf = self
                .socket
                .recv(&mut self.recv, true)
                .map_err(|e| Error::io(action, e))?
                .unwrap_or_default();
            let replies = netlink::parse_replies(buf).map_err(|e| Error::Protocol {
                action,
                detail: e.to_string(),
            })?;
            for reply in replies {
                match reply {
                    Reply::Data { seq: s, flags, msg } if s == seq => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        each(msg)?;
                    }
                    Reply::Done { seq: s } if s == seq => return Ok(Outcome::Done { interrupted }),
                    Reply::Ack { seq: s, errno: 0, .. } if s == seq => {
                        return Ok(Outcome::Done { interrupted });
                    }
                    Reply::Ack { seq: s, errno, .. } if s == seq => {
                        if errno == libc::EPERM {
                            return Err(Error::PermissionDenied { action });
                        }
                        return Ok(Outcome::Refused(errno));
                    }
                    // Leftovers of an earlier, abandoned exchange.
                    _ => {}
                }
            }
        }
    }

    /// The current nf_tables ruleset generation id.
    pub fn generation(&mut self) -> Result<u32> {
        const ACTION: &str = "read the nf_tables generation";
        let seq = self.take_seqs(1);
        let msg = self.writer.get_gen(seq);
        let mut genid = None;
        let outcome = self.request(ACTION, &msg, seq, |reply| {
            genid = Some(ffi::parse_gen(reply).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })?);
            Ok(())
        })?;
        match (outcome, genid) {
            (Outcome::Done { .. }, Some(genid)) => Ok(genid),
            (Outcome::Refused(errno), _) => Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno))),
            _ => Err(Error::Protocol {
                action: ACTION,
                detail: "no generation in the reply".into(),
            }),
        }
    }

    /// Brings table `ruleset.table` to exactly `ruleset`, changing only what
    /// differs, so that every packet is decided by the old policy or by the
    /// new one, never by a mix of the two or by a half-built table.
    ///
    /// * Installed table equal to `ruleset`: nothing is sent
    ///   ([`Change::Unchanged`]); counters and meters carry on.
    /// * No table: sets are created first, then chains and rules (one
    ///   transaction if there are no sets) ([`Change::Created`]).
    /// * Otherwise the table is updated in place in at most four
    ///   transactions ([`Change::Updated`]): sets the rules will need are
    ///   created or copied first, rules are switched to them, then sets
    ///   changed under a copy are updated and the rules switched back. A
    ///   transaction never changes rules together with the elements of a set
    ///   they use (the crate docs say why). Unchanged chains, sets, rules,
    ///   their handles and counters, and meters' contents are left alone.
    /// * A table holding something dockfw does not write, or with table
    ///   flags set (e.g. dormant), is replaced as [`Nft::replace`] does
    ///   ([`Change::Replaced`]).
    ///
    /// Each transaction carries the generation it was planned from (read
    /// from a dump the generation held still for): if another program
    /// changed nf_tables meanwhile the kernel refuses it; the table is read
    /// again and, if it is unchanged, the same batch is sent at once under
    /// the new generation, else the step is planned anew. Another program
    /// committing so often that no read fits in between (thousands of
    /// commits a second) makes `apply` give up with [`Error::Busy`]. After each transaction
    /// the table is read back and must be exactly what the step should leave
    /// (set elements are dumped again only for the sets the step wrote, when
    /// nothing else committed since); at the end it equals `ruleset`.
    ///
    /// If the first transaction fails, nothing was changed. If a later one
    /// fails (e.g. the kernel rejects a rule after the sets it needs were
    /// created), the ones already committed are undone the same glitch-free
    /// way, back to what the table held before our first commit,
    /// [`Error::Undone`] — but only over our own work: nobody else may have
    /// changed the table between our commits, and each undo batch carries
    /// the generation our own last commit moved nf_tables to (or one in which
    /// the table still reads exactly as we left it, others having committed
    /// elsewhere), so the kernel refuses it if anyone committed meanwhile.
    /// Otherwise the table is left as is, [`Error::LeftAsIs`]. Other errors after a
    /// commit: [`Error::Mismatch`] (a transaction committed but the table
    /// read back is not what it should be; left as is) and
    /// [`Error::RollbackFailed`] (undoing failed too). Each names how many
    /// transactions had committed.
    ///
    /// Holds this namespace's writer lock throughout (see the crate docs):
    /// [`Error::Locked`] if another dockfw writer held it for the whole wait.
    pub fn apply(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        // A ruleset nf_tables cannot hold is refused before waiting for anyone.
        encode::check(ruleset)?;
        self.exclusively(|nft| nft.apply_unlocked(ruleset))
    }

    /// [`Nft::apply`] of a checked ruleset, the writer lock held by the caller.
    fn apply_unlocked(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        let table = ruleset.table.as_str();
        let started = Instant::now();
        let (generation, snapshot) = self.read(table, None, true)?;
        // Ownership is decided on this read, and every batch below carries
        // its generation: a table swapped meanwhile makes the kernel refuse.
        ensure_ours(table, snapshot.as_ref())?;
        let mut report = ApplyReport::new(Change::Unchanged);
        report.generation = generation;
        let installed = match snapshot {
            None => None,
            Some(snapshot) if snapshot.dump.flags != 0 => {
                return self.rebuild(ruleset, false, Some(generation));
            }
            Some(Snapshot { dump, decoded }) => match decoded {
                Ok(installed) => Some((dump, installed)),
                Err(Error::Unrecognised { .. }) => return self.rebuild(ruleset, false, Some(generation)),
                Err(e) => return Err(e),
            },
        };
        report.verify_time += started.elapsed();
        match &installed {
            Some((_, installed)) if installed.ruleset == *ruleset => return Ok(report),
            Some(_) => report.change = Change::Updated,
            None => report.change = Change::Created,
        }
        let mut trail = Trail::default();
        let error = match self.converge(
            ruleset,
            generation,
            installed,
            &mut report,
            Mode::Apply,
            &mut trail,
        ) {
            Ok(_) => return Ok(report),
            Err(error) => error,
        };
        if trail.committed == 0 || matches!(error, Error::Mismatch { .. } | Error::NotOwned { .. }) {
            return Err(error);
        }
        let (table, committed, cause) = (table.to_string(), trail.committed, Box::new(error));
        #[cfg(feature = "testing")]
        if let Some(hook) = &mut self.hooks.before_undo {
            (hook.0)();
        }
        let before = trail.before.clone().flatten();
        let undo = if trail.interleaved {
            // Our later steps were planned over another program's work:
            // going back to before our first would erase it.
            Ok(Undo::Overtaken { undone: 0 })
        } else {
            self.restore(&table, before.as_ref(), &trail)
        };
        Err(match undo {
            Ok(Undo::Done) => Error::Undone {
                table,
                committed,
                cause,
            },
            Ok(Undo::Overtaken { undone }) => {
                let now = self.describe_table(&table, ruleset, before.as_ref());
                Error::LeftAsIs {
                    table,
                    committed,
                    cause,
                    undone,
                    now,
                }
            }
            Err(rollback) => Error::RollbackFailed {
                table,
                committed,
                cause,
                rollback: Box::new(rollback),
            },
        })
    }

    /// What `table` holds, compared with the ruleset an apply wanted and the
    /// one it started from, for an error that leaves it as is.
    fn describe_table(&mut self, table: &str, want: &Ruleset, original: Option<&Ruleset>) -> String {
        match self.installed(table) {
            Ok(Some(now)) if now == *want => "the table holds the ruleset applied".into(),
            Ok(Some(now)) if Some(&now) == original => "the table holds the ruleset it held before".into(),
            Ok(Some(_)) => "the table holds neither the ruleset applied nor the one before (a state \
                            between our transactions, with the other program's changes)"
                .into(),
            Ok(None) if original.is_none() => "there is no table, as before".into(),
            Ok(None) => "the table is gone".into(),
            Err(Error::Unrecognised { .. }) => "the table holds something dockfw does not write".into(),
            Err(e) => format!("the table could not be read back ({e})"),
        }
    }

    /// Replaces table `ruleset.table` with `ruleset` in one transaction
    /// (delete the table and create it with everything in it, marked as
    /// dockfw's), then reads it back and checks it is exactly `ruleset`.
    /// Counters, rate limits and meters start afresh.
    ///
    /// Unlike [`Nft::apply`] this is not glitch-free: on kernels whose set
    /// backend publishes a new set's elements after the rules (6.18 does),
    /// packets crossing the hook while the transaction commits may miss the
    /// sets and meet the default fate. Use it to start over deliberately.
    ///
    /// A table that is not dockfw's ([`Owner::Foreign`]) is left alone:
    /// [`Error::NotOwned`] (see [`Nft::adopt`]).
    ///
    /// On error nothing was changed, except for [`Error::Mismatch`]. Holds
    /// this namespace's writer lock throughout, as [`Nft::apply`] does.
    pub fn replace(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        encode::check(ruleset)?;
        self.exclusively(|nft| nft.rebuild(ruleset, false, None))
    }

    /// [`Nft::replace`], whoever the table belongs to: a table dockfw did
    /// not create is replaced (everything in it is lost) and becomes
    /// dockfw's. For taking over a table deliberately. Holds the writer lock.
    pub fn adopt(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        encode::check(ruleset)?;
        self.exclusively(|nft| nft.rebuild(ruleset, true, None))
    }

    /// Replaces the table in one transaction, the writer lock held by the
    /// caller. Each attempt is based on a settled read that found the table
    /// dockfw's (unless `adopt`), and carries that read's generation, so the
    /// table cannot change hands between the decision and the write;
    /// `read_in` is a generation such a read was already made in.
    fn rebuild(&mut self, ruleset: &Ruleset, adopt: bool, mut read_in: Option<u32>) -> Result<ApplyReport> {
        const ACTION: &str = "replace the table";
        let table = ruleset.table.as_str();
        let mut report = ApplyReport::new(Change::Replaced);
        let mut batch = encode::replace(ruleset, self.seq, &mut self.writer)?;
        self.take_seqs(batch.msgs.len());
        for attempt in 1..=ATTEMPTS {
            let generation = match read_in.take() {
                Some(generation) => generation,
                None if adopt => self.generation()?,
                None => {
                    let (generation, snapshot) = self.read(table, None, true)?;
                    ensure_ours(table, snapshot.as_ref())?;
                    generation
                }
            };
            report.attempts += 1;
            let Some(transaction) = self.commit(&mut batch, TransactionKind::Replace, generation, ruleset)?
            else {
                std::thread::sleep(Duration::from_millis(5 << attempt));
                continue;
            };
            report.record(transaction);
            let started = Instant::now();
            let installed = self.installed(table)?;
            report.verify_time += started.elapsed();
            if installed.as_ref() != Some(ruleset) {
                return Err(Error::Mismatch {
                    table: table.to_string(),
                    difference: difference(ruleset, installed.as_ref()),
                });
            }
            return Ok(report);
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: ATTEMPTS,
        })
    }

    /// Runs planned steps from `installed` (read in `generation`, raw and
    /// decoded) until the table is `want`, recording each transaction in
    /// `report` and where our commits left nf_tables in `trail`.
    ///
    /// [`Mode::Undo`] goes on only over our own work: when another program
    /// changed the table since the read a step was planned from, or
    /// committed between our step and its read-back and the table is not
    /// what our step left, it stops ([`Flow::Overtaken`]) instead of
    /// planning anew.
    fn converge(
        &mut self,
        want: &Ruleset,
        mut generation: u32,
        mut installed: Option<(TableDump, Installed)>,
        report: &mut ApplyReport,
        mode: Mode,
        trail: &mut Trail,
    ) -> Result<Flow> {
        const ACTION: &str = "apply the ruleset";
        let table = want.table.as_str();
        let mut steps = 0;
        loop {
            let step =
                plan::plan(installed.as_ref().map(|(_, i)| i), want).map_err(|detail| Error::Protocol {
                    action: ACTION,
                    detail,
                })?;
            let Some(step) = step else {
                return Ok(Flow::Done);
            };
            if steps == MAX_STEPS {
                return Err(Error::Busy {
                    action: ACTION,
                    attempts: steps as u32,
                });
            }
            let mut batch = encode::ops(table, &step.ops, self.seq, &mut self.writer)?;
            self.take_seqs(batch.msgs.len());
            let kind = match step.kind {
                StepKind::Create => TransactionKind::Create,
                StepKind::Prepare => TransactionKind::Prepare,
                StepKind::Switch => TransactionKind::Switch,
            };
            // Send the batch; while the kernel refuses it because another
            // program committed since the read it was planned from, read the
            // table again and, if it is still exactly that, send the same
            // batch at once under the new generation (planning and encoding
            // again would leave the same opening for the next commit).
            let mut refused = 0;
            let transaction = loop {
                report.attempts += 1;
                if let Some(transaction) = self.commit(&mut batch, kind, generation, want)? {
                    break Some(transaction);
                }
                // Once a step has committed, giving up means undoing it,
                // which meets the same contention: finishing is better.
                refused += 1;
                let patience = if steps == 0 { ATTEMPTS } else { 4 * ATTEMPTS };
                if refused == patience {
                    return Err(Error::Busy {
                        action: ACTION,
                        attempts: patience,
                    });
                }
                std::thread::sleep(Duration::from_millis(1 << refused.min(5)));
                let started = Instant::now();
                let (now, read) = self.read_decoded(table, None)?;
                report.verify_time += started.elapsed();
                if let Some((dump, installed)) = &read
                    && let Owner::Foreign { why } = owner_of(dump, &Ok(installed.clone()))
                {
                    // Someone put a table of their own in its place.
                    return Err(Error::NotOwned {
                        table: table.to_string(),
                        why,
                    });
                }
                let unchanged =
                    read.as_ref().map(|(dump, _)| dump) == installed.as_ref().map(|(dump, _)| dump);
                (generation, installed) = (now, read);
                if !unchanged {
                    trail.interleaved |= trail.committed > 0;
                    break None;
                }
            };
            let Some(transaction) = transaction else {
                if mode == Mode::Undo {
                    // Someone else's work now: not ours to undo.
                    return Ok(Flow::Overtaken);
                }
                // The table itself changed: plan again from what is there.
                continue;
            };
            steps += 1;
            let ours = next_generation(transaction.generation);
            if trail.committed == 0 {
                trail.before = Some(installed.as_ref().map(|(_, i)| i.ruleset.clone()));
            }
            trail.committed += 1;
            (trail.generation, trail.table) = (Some(ours), None);
            // Read back what the step wrote; the rest cannot have changed if
            // nothing else committed since the last read.
            let started = Instant::now();
            let reuse = installed.as_ref().map(|(previous, _)| Reuse {
                generation: next_generation(transaction.generation),
                previous,
                fresh: step.written_sets().collect(),
            });
            let (now, read) = self.read_decoded(table, reuse)?;
            report.verify_time += started.elapsed();
            // Only when nobody else committed since can the table be held to
            // what this step should leave.
            let got = read.as_ref().map(|(_, r)| &r.ruleset);
            if now == ours && got != Some(&step.after) {
                return Err(Error::Mismatch {
                    table: table.to_string(),
                    difference: difference(&step.after, got),
                });
            }
            if now == ours {
                trail.table = Some(read.as_ref().map(|(dump, _)| dump.clone()));
            } else if got != Some(&step.after) || read.as_ref().is_some_and(|(dump, _)| dump.flags != 0) {
                // Someone else changed the table right after our commit.
                if mode == Mode::Undo {
                    return Ok(Flow::Overtaken);
                }
                trail.interleaved = true;
            }
            report.record(transaction);
            (generation, installed) = (now, read);
            #[cfg(feature = "testing")]
            if mode == Mode::Apply
                && let Some(hook) = &mut self.hooks.after_commit
            {
                (hook.0)();
            }
        }
    }

    /// Undoes a partly applied update whose commits `trail` followed:
    /// brings the table back to `original`, what it held before our first
    /// commit (removes it if there was none),
    /// the same glitch-free way, but only over our own work. The undo
    /// starts only if nothing committed since our last commit, or if the
    /// table still reads exactly as that commit left it (others committed
    /// elsewhere); each of its batches carries the generation it was planned
    /// in, so a commit by anyone else meanwhile makes the kernel refuse it.
    fn restore(&mut self, table: &str, original: Option<&Ruleset>, trail: &Trail) -> Result<Undo> {
        let Some(ours) = trail.generation else {
            return Ok(Undo::Done);
        };
        let (mut generation, snapshot) = self.read(table, None, true)?;
        let left_by_us = |generation: u32, dump: Option<&TableDump>| {
            generation == ours || trail.table.as_ref().is_some_and(|left| left.as_ref() == dump)
        };
        if !left_by_us(generation, snapshot.as_ref().map(|s| &s.dump)) {
            return Ok(Undo::Overtaken { undone: 0 });
        }
        let Some(original) = original else {
            if snapshot.is_none() {
                return Ok(Undo::Done);
            }
            let mine = snapshot.map(|s| s.dump);
            for _ in 0..ATTEMPTS {
                if self.delete_table(table, generation)?.is_some() {
                    return Ok(Undo::Done);
                }
                // Refused: someone committed. Go on only if it was elsewhere.
                let (now, read) = self.read(table, None, true)?;
                if read.map(|s| s.dump) != mine {
                    return Ok(Undo::Overtaken { undone: 0 });
                }
                generation = now;
            }
            return Err(Error::Busy {
                action: "undo the update (delete the table it created)",
                attempts: ATTEMPTS,
            });
        };
        let installed = snapshot
            .map(|Snapshot { dump, decoded }| decoded.map(|installed| (dump, installed)))
            .transpose()?;
        let mut report = ApplyReport::new(Change::Updated);
        let mut undo = Trail::default();
        match self.converge(
            original,
            generation,
            installed,
            &mut report,
            Mode::Undo,
            &mut undo,
        )? {
            Flow::Done => Ok(Undo::Done),
            Flow::Overtaken => Ok(Undo::Overtaken {
                undone: undo.committed,
            }),
        }
    }

    /// Sends `batch` based on `generation` and reads every ack. `None`: the
    /// kernel refused it because nf_tables changed since (`ERESTART`).
    /// Failures are described with the rules of `described`.
    fn commit(
        &mut self,
        batch: &mut Batch,
        kind: TransactionKind,
        generation: u32,
        described: &Ruleset,
    ) -> Result<Option<Transaction>> {
        const ACTION: &str = "apply the ruleset";
        // One sendto needs a send buffer larger than the batch; every message
        // is acked, and the acks must all fit in the receive buffer.
        let recv_bytes = (batch.msgs.len() * 2048).max(4 << 20);
        self.socket
            .grow_buffers(batch.bytes.len() + (64 << 10), recv_bytes)
            .map_err(|e| Error::io("size the netlink socket buffers", e))?;
        batch.set_genid(generation);
        let started = Instant::now();
        self.socket.send(&batch.bytes).map_err(|e| match e.raw_os_error() {
            Some(libc::EMSGSIZE) | Some(libc::ENOBUFS) => Error::Io {
                action: "send the batch (too large for the socket buffer; raising it needs CAP_NET_ADMIN)",
                source: e,
            },
            _ => Error::io(ACTION, e),
        })?;
        let failures = self.collect_acks(batch)?;
        let commit_time = started.elapsed();
        let restarted = failures.iter().any(|f| {
            f.errno == libc::ERESTART && batch.msg(f.seq).is_some_and(|m| m.object == Object::BatchBegin)
        });
        if restarted {
            return Ok(None);
        }
        if failures.iter().any(|f| f.errno == libc::EPERM) {
            return Err(Error::PermissionDenied { action: ACTION });
        }
        if !failures.is_empty() {
            return Err(Error::Rejected {
                table: described.table.clone(),
                failures: failures
                    .into_iter()
                    .map(|f| describe_failure(described, batch, f))
                    .collect(),
            });
        }
        Ok(Some(Transaction {
            kind,
            messages: batch.msgs.len(),
            bytes: batch.bytes.len(),
            generation,
            commit_time,
        }))
    }

    /// Reads every reply to a batch already sent. The kernel processes a
    /// batch inside `sendto`, so all replies are queued by now; we drain the
    /// socket without waiting. Returns the failed messages as
    /// with their ext-ack details.
    fn collect_acks(&mut self, batch: &Batch) -> Result<Vec<KernelError>> {
        const ACTION: &str = "read the kernel's answers to the batch";
        let mut failures = Vec::new();
        loop {
            let buf = match self.socket.recv(&mut self.recv, false) {
                Ok(Some(buf)) => buf,
                Ok(None) => break,
                // Acks were dropped for lack of room; errors are never
                // silently lost this way without the read-back noticing.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(Error::io(ACTION, e)),
            };
            let replies = netlink::parse_replies(buf).map_err(|e| Error::Protocol {
                action: ACTION,
                detail: e.to_string(),
            })?;
            for reply in replies {
                if let Reply::Ack {
                    seq,
                    errno,
                    text,
                    offset,
                } = reply
                    && errno != 0
                    && batch.msg(seq).is_some_and(|m| m.seq == seq)
                {
                    failures.push(KernelError {
                        seq,
                        errno,
                        text,
                        offset,
                    });
                }
            }
        }
        Ok(failures)
    }

    /// The table `table` as installed, decoded; `None` if there is no such table.
    ///
    /// The read is consistent: the table was dumped within one ruleset
    /// generation, or (when other programs keep committing elsewhere) two
    /// successive complete reads agreed.
    pub fn installed(&mut self, table: &str) -> Result<Option<Ruleset>> {
        let (_, snapshot) = self.read(table, None, false)?;
        snapshot
            .map(|snapshot| snapshot.decoded.map(|installed| installed.ruleset))
            .transpose()
    }

    /// Everything table `table` holds, read completely (see [`InstalledTable`]);
    /// `None` if there is no such table. Consistent as [`Nft::installed`] is.
    pub fn inspect(&mut self, table: &str) -> Result<Option<InstalledTable>> {
        let (_, snapshot) = self.read(table, None, false)?;
        Ok(snapshot.map(|snapshot| {
            let what = match &snapshot.decoded {
                Err(Error::Unrecognised { what, .. }) => what.clone(),
                Err(other) => other.to_string(),
                Ok(_) => String::new(),
            };
            let decoded = snapshot
                .decoded
                .as_ref()
                .map(|i| &i.ruleset)
                .map_err(|_| what.as_str());
            InstalledTable::new(table, &snapshot.dump, decoded)
        }))
    }

    /// [`Nft::read`] of a settled table, failing if it cannot be decoded.
    fn read_decoded(
        &mut self,
        table: &str,
        reuse: Option<Reuse<'_>>,
    ) -> Result<(u32, Option<(TableDump, Installed)>)> {
        let (generation, snapshot) = self.read(table, reuse, true)?;
        let read = snapshot
            .map(|Snapshot { dump, decoded }| decoded.map(|installed| (dump, installed)))
            .transpose()?;
        Ok((generation, read))
    }

    /// A consistent read of `table` and the generation it was read in,
    /// taking set elements from `reuse` where it allows.
    ///
    /// Consistent: dumped within one generation, or the same (handles
    /// included) twice in a row while others keep committing. A dump taken
    /// while another program's transaction is under way can show what no
    /// committed table holds although the generation did not move: the
    /// kernel's chain dump, resuming after inactive (pending) chains, lists
    /// some chains twice; and nf_tables moves the generation a moment before
    /// it switches to the new objects (a reader during applies saw a set's
    /// interval starts without their ends). So a dump naming a chain or set
    /// twice is never believed, and one that cannot be decoded only when two
    /// reads in a row, each within one generation, agree.
    ///
    /// With `settled`, the table must have been dumped within one generation
    /// (the one returned), as a transaction planned from it carries that
    /// generation: a read the generation moved under is of no use to it, even
    /// if it agrees with the one before.
    fn read(
        &mut self,
        table: &str,
        reuse: Option<Reuse<'_>>,
        settled: bool,
    ) -> Result<(u32, Option<Snapshot>)> {
        const ACTION: &str = "read the table back";
        // The previous attempt's dump, and whether its generation held.
        let mut previous: Option<(Option<TableDump>, bool)> = None;
        for _ in 0..READ_ATTEMPTS {
            let before = self.generation()?;
            let reusable = reuse.as_ref().filter(|r| r.generation == before);
            let dump = match self.dump_table(table, reusable)? {
                Read::Interrupted => continue,
                Read::Absent => None,
                Read::Table(dump) => Some(dump),
            };
            if dump.as_ref().is_some_and(TableDump::repeats_a_name) {
                previous = None;
                continue;
            }
            let decoded = dump.as_ref().map(|dump| decode_table(table, dump));
            let believable = decoded.as_ref().is_none_or(Result::is_ok);
            let stable = self.generation()? == before;
            let agreed = previous
                .as_ref()
                .is_some_and(|(p, held)| *p == dump && (believable || *held));
            let accept = if settled {
                stable && (believable || agreed)
            } else {
                (believable && stable) || (agreed && (believable || stable))
            };
            if accept {
                let snapshot = dump
                    .zip(decoded)
                    .map(|(dump, decoded)| Snapshot { dump, decoded });
                return Ok((before, snapshot));
            }
            previous = Some((dump, stable));
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: READ_ATTEMPTS,
        })
    }

    /// Dumps everything in `table`: its flags, chains, sets with their
    /// elements (unless `reuse` has them), rules.
    fn dump_table(&mut self, table: &str, reuse: Option<&Reuse<'_>>) -> Result<Read> {
        const ACTION: &str = "read the table back";
        let protocol = |detail: String| Error::Protocol {
            action: ACTION,
            detail,
        };
        let seq = self.take_seqs(1);
        let msg = self.writer.get_table(seq, table);
        let mut info = ffi::TableInfo::default();
        match self.request(ACTION, &msg, seq, |reply| {
            info = ffi::parse_table(reply).map_err(protocol)?;
            Ok(())
        })? {
            Outcome::Refused(libc::ENOENT) => return Ok(Read::Absent),
            Outcome::Refused(errno) => {
                return Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)));
            }
            Outcome::Done { .. } => {}
        }
        let mut interrupted = false;

        let mut chains = Vec::new();
        interrupted |= self.dump(Dump::Chains, table, |msg| {
            chains.push(ffi::parse_chain(msg).map_err(protocol)?);
            Ok(())
        })?;
        let mut specs = Vec::new();
        interrupted |= self.dump(Dump::Sets, table, |msg| {
            specs.push(ffi::parse_set(msg).map_err(protocol)?);
            Ok(())
        })?;
        specs.retain(|s| s.table == table);
        let mut sets = Vec::new();
        for mut spec in specs {
            let mut elems = Vec::new();
            let earlier = reuse
                .filter(|r| !r.fresh.contains(spec.name.as_str()))
                .and_then(|r| r.previous.sets.iter().find(|(s, _)| *s == spec));
            if let Some((_, known)) = earlier {
                elems = known.clone();
            } else if spec.flags & libc::NFT_SET_EVAL as u32 == 0 {
                // Meters are filled by the packet path; their elements are not ours.
                let mut extra = Vec::new();
                interrupted |= self.dump(Dump::Elements(&spec.name), table, |msg| {
                    ffi::parse_elems(msg, &mut elems, &mut extra).map_err(protocol)
                })?;
                // Kept with the set, so a set whose elements hold more than
                // keys is not dockfw's (and is never reused as one).
                spec.extra.extend(extra);
            }
            sets.push((spec, elems));
        }
        let mut rules = Vec::new();
        interrupted |= self.dump(Dump::Rules, table, |msg| {
            let mut rule = ffi::parse_rule(msg).map_err(protocol)?;
            for expr in &mut rule.exprs {
                if let Expr::Counter { packets, bytes } = expr {
                    (*packets, *bytes) = (0, 0);
                }
            }
            rules.push(rule);
            Ok(())
        })?;
        let mut objects = Vec::new();
        interrupted |= self.dump(Dump::Objects, table, |msg| {
            objects.push(ffi::parse_object(msg).map_err(protocol)?);
            Ok(())
        })?;
        let mut flowtables = Vec::new();
        interrupted |= self.dump(Dump::Flowtables, table, |msg| {
            flowtables.push(ffi::parse_flowtable(msg).map_err(protocol)?);
            Ok(())
        })?;
        chains.retain(|c| c.table == table);
        rules.retain(|r| r.table == table);
        objects.retain(|o| o.table == table);
        flowtables.retain(|f| f.table == table);
        if interrupted {
            return Ok(Read::Interrupted);
        }
        Ok(Read::Table(TableDump {
            flags: info.flags,
            userdata: info.userdata,
            chains,
            sets,
            rules,
            objects,
            flowtables,
        }))
    }

    /// One dump; returns whether it was interrupted. A vanished table
    /// (`ENOENT`) counts as interrupted.
    fn dump(&mut self, what: Dump<'_>, table: &str, each: impl FnMut(&[u8]) -> Result<()>) -> Result<bool> {
        const ACTION: &str = "read the table back";
        let seq = self.take_seqs(1);
        let msg = self.writer.dump(seq, what, table);
        match self.request(ACTION, &msg, seq, each)? {
            Outcome::Done { interrupted } => Ok(interrupted),
            Outcome::Refused(libc::ENOENT) => Ok(true),
            Outcome::Refused(errno) => Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno))),
        }
    }

    /// Packet and byte counts of every rule in `table`, in chain and rule
    /// order (empty if the table does not exist).
    pub fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>> {
        const ACTION: &str = "read rule counters";
        let mut rules = Vec::new();
        let protocol = |detail: String| Error::Protocol {
            action: ACTION,
            detail,
        };
        self.dump(Dump::Rules, table, |msg| {
            rules.push(ffi::parse_rule(msg).map_err(protocol)?);
            Ok(())
        })?;
        let mut out: Vec<RuleCounter> = Vec::with_capacity(rules.len());
        for rule in rules.into_iter().filter(|r| r.table == table) {
            let index = out.iter().filter(|c| c.chain == rule.chain).count();
            let (packets, bytes) = rule
                .exprs
                .iter()
                .find_map(|e| match e {
                    Expr::Counter { packets, bytes } => Some((*packets, *bytes)),
                    _ => None,
                })
                .unwrap_or_default();
            out.push(RuleCounter {
                comment: decode::comment(&rule.userdata).unwrap_or_default(),
                chain: rule.chain,
                index,
                handle: rule.handle,
                packets,
                bytes,
            });
        }
        Ok(out)
    }

    /// Deletes table `table` with everything in it, if it is dockfw's.
    /// Returns whether it existed; an absent table is not an error. A table
    /// dockfw did not create ([`Owner::Foreign`]) is left alone:
    /// [`Error::NotOwned`] (see [`Nft::remove_foreign`]). The deletion
    /// carries the generation of the read that found the table dockfw's.
    /// Holds this namespace's writer lock, as [`Nft::apply`] does.
    pub fn remove(&mut self, table: &str) -> Result<bool> {
        self.exclusively(|nft| nft.remove_checked(table, false))
    }

    /// Deletes table `table` whoever it belongs to (for removing a table
    /// dockfw did not create, deliberately). Returns whether it existed.
    /// Holds the writer lock.
    pub fn remove_foreign(&mut self, table: &str) -> Result<bool> {
        self.exclusively(|nft| nft.remove_checked(table, true))
    }

    /// [`Nft::remove`] / [`Nft::remove_foreign`], the writer lock held by the caller.
    fn remove_checked(&mut self, table: &str, any_owner: bool) -> Result<bool> {
        const ACTION: &str = "remove the table";
        for attempt in 1..=ATTEMPTS {
            let generation = if any_owner {
                self.generation()?
            } else {
                let (generation, snapshot) = self.read(table, None, true)?;
                if snapshot.is_none() {
                    return Ok(false);
                }
                ensure_ours(table, snapshot.as_ref())?;
                generation
            };
            match self.delete_table(table, generation)? {
                Some(existed) => return Ok(existed),
                None => std::thread::sleep(Duration::from_millis(1 << attempt)),
            }
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: ATTEMPTS,
        })
    }

    /// Deletes table `table` in a batch based on `generation` (0: whatever
    /// it is). `Some(existed)`, or `None` if the kernel refused the batch
    /// because nf_tables changed since `generation` (`ERESTART`).
    fn delete_table(&mut self, table: &str, generation: u32) -> Result<Option<bool>> {
        const ACTION: &str = "remove the table";
        let mut batch = Batch::new(self.seq);
        let seq = batch.next_seq();
        let msg = self.writer.table(false, libc::NLM_F_ACK, seq, table).to_vec();
        batch.push(seq, &msg, Object::Table("delete table"));
        batch.finish();
        batch.set_genid(generation);
        self.take_seqs(batch.msgs.len());
        self.socket.send(&batch.bytes).map_err(|e| Error::io(ACTION, e))?;
        let failures = self.collect_acks(&batch)?;
        match failures.first().map(|f| f.errno) {
            None => Ok(Some(true)),
            Some(libc::ENOENT) => Ok(Some(false)),
            Some(libc::ERESTART) if generation != 0 => Ok(None),
            Some(libc::EPERM) => Err(Error::PermissionDenied { action: ACTION }),
            Some(errno) => Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno))),
        }
    }
}

/// Decodes a dumped table; [`Error::Unrecognised`] if it holds anything
/// dockfw does not write.
pub(crate) fn decode_table(table: &str, dump: &TableDump) -> Result<Installed> {
    let unrecognised = |what: String| Error::Unrecognised {
        table: table.to_string(),
        what,
    };
    if let Some(object) = dump.objects.first() {
        return Err(unrecognised(format!("object {}", object.text)));
    }
    if let Some(flowtable) = dump.flowtables.first() {
        return Err(unrecognised(format!("flowtable `{}`", flowtable.name)));
    }
    let mut ruleset = Ruleset {
        table: table.to_string(),
        sets: Vec::new(),
        chains: Vec::new(),
    };
    for (spec, elems) in &dump.sets {
        if ruleset.set(&spec.name).is_some() {
            return Err(unrecognised(format!("two sets called `{}`", spec.name)));
        }
        ruleset
            .sets
            .push(decode::set(spec, elems.clone()).map_err(unrecognised)?);
    }
    for info in &dump.chains {
        if ruleset.chain(&info.name).is_some() {
            return Err(unrecognised(format!("two chains called `{}`", info.name)));
        }
        ruleset.chains.push(decode::chain(info).map_err(unrecognised)?);
    }
    let mut handles = vec![Vec::new(); ruleset.chains.len()];
    for info in &dump.rules {
        let comment = decode::comment(&info.userdata).map_err(unrecognised)?;
        let rule = decode::rule(&info.exprs, comment.clone())
            .map_err(|e| unrecognised(format!("in chain `{}`, rule {comment:?}: {e}", info.chain)))?;
        let at = ruleset
            .chains
            .iter()
            .position(|c| c.name == info.chain)
            .ok_or_else(|| unrecognised(format!("a rule in unknown chain `{}`", info.chain)))?;
        ruleset.chains[at].rules.push(rule);
        handles[at].push(info.handle);
    }
    Ok(Installed { ruleset, handles })
}

/// The first difference between what was applied and what is installed.
fn difference(want: &Ruleset, got: Option<&Ruleset>) -> String {
    let Some(got) = got else {
        return "the table is missing".into();
    };
    let names = |r: &Ruleset| {
        (
            r.sets.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            r.chains.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        )
    };
    if names(want) != names(got) {
        return format!("sets/chains {:?} instead of {:?}", names(got), names(want));
    }
    for (w, g) in want.sets.iter().zip(&got.sets) {
        if w != g {
            return format!("set `{}`: {:?} instead of {:?}", w.name, g.elements, w.elements);
        }
    }
    for (w, g) in want.chains.iter().zip(&got.chains) {
        if w.hook != g.hook {
            return format!("chain `{}` hook {:?} instead of {:?}", w.name, g.hook, w.hook);
        }
        if w.rules.len() != g.rules.len() {
            return format!(
                "chain `{}` has {} rules instead of {}",
                w.name,
                g.rules.len(),
                w.rules.len()
            );
        }
        for (i, (wr, gr)) in w.rules.iter().zip(&g.rules).enumerate() {
            if wr != gr {
                return format!("chain `{}` rule {i}: {gr:?} instead of {wr:?}", w.name);
            }
        }
    }
    "unknown difference".into()
}

fn describe_part(kind: &str, index: usize, what: Option<&impl std::fmt::Debug>) -> String {
    match what {
        Some(what) => format!("{kind} {index} {what:?}"),
        None => format!("{kind} {index}"),
    }
}

/// Turns a kernel error on message `seq` into a [`Failure`] naming the object.
fn describe_failure(ruleset: &Ruleset, batch: &Batch, error: KernelError) -> Failure {
    let KernelError {
        seq,
        errno,
        text: kernel_message,
        offset,
    } = error;
    let table = &ruleset.table;
    let mut expression = None;
    let mut failing_expr: Option<&'static str> = None;
    let object = match batch.msg(seq).map(|m| (&m.object, m.range.len())) {
        None => format!("message {seq} (not part of the batch)"),
        Some((Object::BatchBegin, _)) => "the batch".to_string(),
        Some((Object::BatchEnd, _)) => "the end of the batch".to_string(),
        Some((Object::Table(step), _)) => format!("table `{table}` ({step})"),
        Some((Object::Set(label), _)) => label.clone(),
        Some((Object::Elements { set, first, count }, _)) => {
            format!(
                "{set} elements {first}..{} (kernel elements: interval starts and ends)",
                first + count
            )
        }
        Some((Object::Chain(name), _)) => format!("chain `{name}`"),
        Some((Object::Removal(what), _)) => what.clone(),
        Some((
            Object::Rule {
                chain,
                index,
                comment,
                exprs,
            },
            _,
        )) => {
            if let Some(offset) = offset
                && let Some((number, (_, part, name))) = exprs
                    .iter()
                    .enumerate()
                    .find(|(_, (range, ..))| range.contains(&(offset as usize)))
            {
                failing_expr = Some(name);
                let rule = ruleset.chain(chain).and_then(|c| c.rules.get(*index));
                let part = match part {
                    Part::Match(i) => describe_part("match", *i, rule.and_then(|r| r.matches.get(*i))),
                    Part::Statement(i) => {
                        describe_part("statement", *i, rule.and_then(|r| r.statements.get(*i)))
                    }
                    Part::Counter => "the counter".to_string(),
                    Part::Verdict => match rule.and_then(|r| r.verdict.as_ref()) {
                        Some(verdict) => format!("verdict {verdict:?}"),
                        None => "the verdict".to_string(),
                    },
                };
                expression = Some(format!("expression {number} (`{name}`) of {part}"));
            }
            format!("rule {index} \"{comment}\" in chain `{chain}`")
        }
    };
    let explanation = match (errno, failing_expr) {
        (libc::ENOENT, Some("lookup" | "dynset")) => "it refers to a set that does not exist".to_string(),
        (libc::ENOENT, Some("immediate")) => "it jumps to a chain that does not exist".to_string(),
        (libc::ENOENT | libc::EOPNOTSUPP, Some(name)) => format!(
            "the kernel lacks the `{name}` expression (nf_tables module nft_{name} not built or not loadable), \
             or does not support it here"
        ),
        (libc::ENOENT, None) => "something it refers to (table, chain or set) does not exist".to_string(),
        (libc::EOPNOTSUPP, None) => "the kernel does not support this".to_string(),
        (libc::ELOOP, _) => "jumps and gotos between chains form a loop".to_string(),
        (libc::EEXIST, _) => "an object of that name already exists".to_string(),
        (libc::EBUSY, _) => "the object is in use".to_string(),
        (libc::EINVAL, _) => {
            "the kernel considers the arguments invalid (e.g. a set of the wrong type)".to_string()
        }
        (libc::ENOSPC | libc::E2BIG, _) => "a size limit was exceeded".to_string(),
        (libc::ERANGE | libc::EOVERFLOW, _) => "a value is out of range".to_string(),
        (libc::ERESTART, _) => "nf_tables changed since the generation the batch was based on".to_string(),
        _ => String::new(),
    };
    Failure {
        object,
        expression,
        errno,
        kernel_message,
        explanation,
    }
}
