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
//!   | only one set rules use changes, by whole intervals | Update: the elements, in the live set (see "Elements alone") |
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
//!   step planned anew. After each transaction the table is checked to be
//!   exactly what that step should leave (see "What apply reads"). If a later transaction
//!   fails, those already committed are undone the same way, but never over
//!   another program's work (see [`Nft::apply`]).
//! * **What apply reads.** Each [`Nft`] keeps, per table, the image of what
//!   its last apply left there (what a read would return, rule handles
//!   included) and the generation that holds in: our last commit's, or the
//!   one the table was read in. An apply first asks the generation
//!   (`GETGEN`, one small request); if it is still the image's, nobody has
//!   committed since, and the apply plans from the image without dumping
//!   anything: an unchanged re-apply then sends nothing and reads nothing
//!   but the generation. Every batch carries that generation, so if anyone
//!   committed in between the kernel refuses it (`ERESTART`) and the table
//!   is read in full, as without an image. An embedder that sees every
//!   commit through a [`Monitor`](monitor::Monitor) (the CLI's `watch`)
//!   feeds them to [`Nft::note_commit`]: a commit right after the trusted
//!   generation that did not touch the table moves the trust on. One that
//!   did is followed: the notifications name every object it added or
//!   deleted, and each set element with its key and flags, so the image's
//!   set elements are updated from them, and the next apply reads the
//!   table's structure (chains, set definitions, rules) but dumps the
//!   elements only of sets the notifications could not account for (a set
//!   created or deleted, an element holding more than a key). A missed
//!   commit, a change the monitor cannot read, or lost notifications
//!   ([`Nft::forget_installed`]) drop the image, and the next apply reads in
//!   full. Any error, [`Nft::replace`], [`Nft::adopt`] and [`Nft::remove`]
//!   drop it too.
//! * **Between processes.** With [`Nft::keep_images_on_disk`] (the CLI's
//!   one-shot commands use `/run/dockfw-nft`), the set elements of each
//!   image are also saved, with the generation they hold in, the boot's id
//!   and the namespace's cookie; a later process's apply, [`Nft::installed`]
//!   or [`Nft::inspect`] takes them from there, and reads only the table's
//!   structure, while nf_tables is still at that generation in that
//!   namespace (nobody committed since), for sets whose definition, handle
//!   included, is the saved one. Otherwise it reads in full. The files are
//!   root's, 0600, written whole (renamed into place), and at most 16 are
//!   kept; the temporary file of a writer killed before its rename is
//!   removed by a later save once it is a minute old. A file is written on
//!   a thread of its own while the caller goes on (the apply returns
//!   without waiting for it); it is finished before the [`Nft`] reads,
//!   saves or forgets again, or is dropped. A late file can never be
//!   believed over a newer commit: its generation is older.
//! * **Rules dockfw does not write** (`nft insert rule inet dockfw forward
//!   accept`) in a table of ours are deleted in place, by handle, in a
//!   Switch; the table is rebuilt in one transaction only for what cannot be
//!   edited that way (stateful objects, flowtables, chains or sets of kinds
//!   dockfw does not write, a dormant table).
//!
//!   After a transaction, what is verified: nf_tables commits a batch
//!   atomically, all or nothing, and ours was pinned to the generation it
//!   was planned in; when the kernel acked every message without error, the
//!   batch committed whole as the next generation, over exactly the table
//!   it was planned from. So the elements of the sets it wrote are what it
//!   sent, and the others are what they were. The read-back then dumps only
//!   the structure (table flags and marker, chains, set definitions, rules
//!   with every expression, objects, flowtables) in that very generation,
//!   takes the elements from what was sent (and, for sets the step did not
//!   write, from the previous read or image), and holds the decoded whole
//!   to what the step should leave; this also yields the handles of new
//!   rules for the image. A transaction that only added or removed elements
//!   of one set (an Update, below) changes no structure: nothing is read
//!   back at all, the image is updated with what was sent. If a message
//!   went unacked (acks lost for lack of room) or the generation moved, the
//!   written sets' elements are dumped again; if someone else committed,
//!   everything is. [`Nft::installed`] and [`Nft::inspect`] always read in
//!   full.
//! * **Elements alone.** When all that changes is the elements of one set
//!   rules use, by whole intervals (each added or removed one neither
//!   overlaps nor adjoins another added or removed one, so no neighbour is
//!   reshaped), the change is one transaction on the live set
//!   ([`TransactionKind::Update`]) instead of a staging copy: the rules do
//!   not change, and the set publishes its new elements at once (6.18
//!   swaps in the lookup array it builds at commit), so each packet meets
//!   the set as it was or as it is wanted, and the other elements never
//!   stop matching (`tests/reapply_traffic.rs` probes this under traffic).
//!   Two sets changing would publish one after the other; intervals that
//!   merge with a neighbour, or any rule change, still go through staging.
//!   A large hash of addresses has a size
//!   ([`SetElements::hash_size`](dockfw_core::ruleset::SetElements::hash_size):
//!   the kernel makes the table that large at once instead of growing it
//!   while 100,000 elements arrive, which cost more than adding them); a
//!   change of elements that would need another size goes through staging
//!   too, and a read holds a hash's size to the one its elements call for
//!   (another is [`Error::Unrecognised`], and the set is written anew).
//! * **Counters** are where the ruleset puts them
//!   ([`Statement::Counter`](dockfw_core::ruleset::Statement::Counter)):
//!   encoded, decoded and compared like any statement, so a counter added
//!   or removed by someone else is a difference. [`Nft::counters`] lists
//!   every rule, with 0 for those without one.
//! * **Run-time sets.** [`SetElements::Runtime`](dockfw_core::ruleset::SetElements::Runtime)
//!   sets (a policy's `dynamic` sets) are created like any set, but their
//!   elements belong to run time: no read dumps them, nothing compares them,
//!   and the image ignores their notifications (a commit that only adds or
//!   deletes such elements keeps it trusted). They are listed first, by
//!   name, so no other set coming or going can force one to be recreated;
//!   only a change of its own flags or timeout does
//!   ([`ApplyReport::recreated_runtime_sets`]). [`Nft::replace`] puts their
//!   elements back into the rebuilt table with the time each had left.
//!   [`Nft::runtime_elements`], [`Nft::add_runtime_elements`],
//!   [`Nft::delete_runtime_elements`] and [`Nft::flush_runtime_sets`] read
//!   and change them, one transaction each, without the writer lock.
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
//! # Where things are
//!
//! ```text
//!              Ruleset (dockfw-core)                       kernel
//!                  │                                          ▲
//!   apply.rs ──────┤ read.rs: consistent dump.rs ◀─ ffi/parse ┤ (replies)
//!   (engine)       │   decode.rs: dump → Ruleset              │
//!                  │   owner.rs: whose table                  │
//!                  │   inspect/compare.rs: every Difference   │
//!                  │   inspect/text.rs: as nft-like text      │
//!                  ▼                                          │
//!   plan.rs: installed + wanted → steps of op::Op             │
//!                  ▼                                          │
//!   encode.rs: Op/Rule → expr::Expr → ffi/writer (messages) ──┤
//!                  ▼                                          │
//!   transact.rs: batch + generation, sendto, acks ────────────┘
//!                  ▼ on a kernel error
//!   describe.rs: the object and expression at fault, in words
//! ```
//!
//! A policy field reaches the kernel as: parsed and compiled in dockfw-core
//! (`compile.rs`) into a [`Ruleset`] match or statement, encoded into
//! expressions by `encode.rs`, written as netlink by `ffi/writer.rs` and
//! `ffi/expr.rs`; read back by `ffi/parse.rs`, decoded by `decode.rs`
//! (which must re-encode exactly). Tests: `tests/roundtrip.rs` and
//! `tests/policy_roundtrip.rs` (encode ↔ decode through the kernel),
//! `tests/packets.rs` (real packets), `tests/tampering.rs` (what others
//! change), `tests/inplace.rs` and `tests/concurrency.rs` (the engine).
//! Other modules: `lock.rs` (writers take turns), `monitor.rs`
//! (notifications), `conntrack.rs` (revoke), `netlink.rs` (the socket).
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
#![warn(missing_docs)]

mod apply;
mod cache;
pub mod conntrack;
mod decode;
mod describe;
mod dump;
mod encode;
mod error;
mod expr;
mod ffi;
mod inspect;
mod lock;
pub mod monitor;
mod netlink;
pub mod nflog;
mod op;
mod owner;
mod plan;
mod read;
mod report;
mod runtime;
mod sysctl;
#[cfg(feature = "testing")]
pub mod testing;
mod transact;

pub use error::{Error, Failure, Result};
pub use inspect::{Comparison, Difference, InstalledTable, table_text};
pub use lock::GuardHolder;
pub use owner::{MARKER, Owner};

pub use report::{ApplyReport, BaseChain, Change, RuleCounter, Transaction, TransactionKind};
pub use runtime::{RuntimeElement, RuntimeEntry};
pub use sysctl::{interface_names, read_sysctl};

use apply::Owners;
use dockfw_core::ruleset::Ruleset;
use ffi::MsgWriter;
use lock::{NetnsId, WriterLock};
use netlink::{RECV_BYTES, Socket};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

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
    /// Per table, what our last apply left there, exact, and the
    /// generation that holds in (see the crate docs, "What apply reads").
    images: HashMap<String, read::Image>,
    /// Where images are also kept on disk for other processes
    /// ([`Nft::keep_images_on_disk`]).
    disk: Option<cache::DiskImages>,
    /// Reads made so far.
    reads: read::Reads,
    /// Where tests inject other programs' commits and crashes.
    #[cfg(feature = "testing")]
    hooks: testing::Hooks,
}

/// A held claim on guarding one table ([`Nft::claim_guard`]); released when
/// dropped or when the process dies.
#[derive(Debug)]
pub struct GuardClaim {
    lock: WriterLock,
}

impl GuardClaim {
    /// Says something about this guard (one line) to whoever asks
    /// [`Nft::guard_of`]: e.g. which policy it follows.
    pub fn note(&mut self, note: &str) -> std::io::Result<()> {
        self.lock.note(note)
    }
}

/// The public face of each job; the work is done in the private modules
/// `transact` (requests, batches, acks), `read` (consistent reads and
/// decoding), `apply` (planning and committing, undo, replace, remove) and
/// `describe` (kernel errors and differences in words).
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
            images: HashMap::new(),
            disk: None,
            reads: read::Reads::default(),
            #[cfg(feature = "testing")]
            hooks: testing::Hooks::default(),
        }
    }

    /// Keeps the set elements each apply leaves on disk too, in `dir`
    /// (created 0755 if missing; it must be owned by root or us and not
    /// writable by others, as the writer lock's `/run/dockfw-nft`), so that
    /// the next process's apply, `inspect` or `installed` of the table need
    /// not dump them again while nobody has committed anything since:
    /// nf_tables' generation and the namespace's cookie prove it. For
    /// one-shot commands; a long-lived connection keeps its image in memory
    /// anyway. See the crate docs, "What apply reads".
    pub fn keep_images_on_disk(&mut self, dir: impl Into<std::path::PathBuf>) {
        self.disk = Some(cache::DiskImages::new(dir.into()));
    }

    /// Stops [`Nft::keep_images_on_disk`]: images are kept in memory only
    /// (the default; for long-lived connections, for which saving after
    /// every apply would cost more than the reads it saves others).
    pub fn keep_images_in_memory_only(&mut self) {
        self.disk = None;
    }

    /// The default directory of [`Nft::keep_images_on_disk`]:
    /// `/run/dockfw-nft`, beside the writer locks (a tmpfs, emptied at boot).
    pub const IMAGE_DIR: &'static str = lock::LOCK_DIR;

    /// Claims the guard of `table` in this connection's network namespace
    /// for as long as the returned claim lives (an `flock` beside the writer
    /// locks, released when the process dies): for a long-lived guard such
    /// as `dockfw-nft watch`, so that a second one on the same table is
    /// refused ([`Error::Guarded`]) instead of fighting the first.
    pub fn claim_guard(&self, table: &str) -> Result<GuardClaim> {
        WriterLock::claim_guard(self.netns, table).map(|lock| GuardClaim { lock })
    }

    /// Whether a guard ([`Nft::claim_guard`], e.g. `dockfw-nft watch`)
    /// guards `table` in this connection's network namespace: `Some` with
    /// its pid (if it wrote it yet) and its [`GuardClaim::note`]. A guard puts back its own policy over
    /// any other writer's apply, so a one-shot writer asks first.
    pub fn guard_of(&self, table: &str) -> Result<Option<GuardHolder>> {
        WriterLock::guard_of(self.netns, table)
    }

    /// Whether table `table` (family inet) exists, and its flags (e.g.
    /// `NFT_TABLE_F_DORMANT`, `NFT_TABLE_F_OWNER`): one small request, for a
    /// guard's periodic look (some changes come with no notification: a
    /// table whose owner process exits is deleted silently).
    pub fn table_flags(&mut self, table: &str) -> Result<Option<u32>> {
        const ACTION: &str = "look at the table";
        let seq = self.take_seqs(1);
        let msg = self.writer.get_table(seq, table);
        let mut flags = 0;
        let outcome = self.request(ACTION, &msg, seq, |reply| {
            flags = ffi::parse_table(reply)
                .map_err(|detail| Error::Protocol {
                    action: ACTION,
                    detail,
                })?
                .flags;
            Ok(())
        })?;
        match outcome {
            transact::RequestOutcome::Done { .. } => Ok(Some(flags)),
            transact::RequestOutcome::Refused(libc::ENOENT) => Ok(None),
            transact::RequestOutcome::Refused(errno) => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
        }
    }

    /// Every base chain in the namespace, of every table and family: for
    /// telling whether another table hooks where ours does, at the same
    /// priority (the order of two base chains at one priority is
    /// undefined).
    pub fn base_chains(&mut self) -> Result<Vec<BaseChain>> {
        const ACTION: &str = "list the base chains";
        let seq = self.take_seqs(1);
        let msg = self.writer.all_chains(seq);
        let mut chains = Vec::new();
        let outcome = self.request(ACTION, &msg, seq, |reply| {
            let family = reply.get(16).copied().unwrap_or(0);
            let info = ffi::parse_chain(reply).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })?;
            if let Some((hook, priority, ..)) = info.hook {
                chains.push(BaseChain {
                    family: monitor::NfFamily::from(family),
                    table: info.table,
                    chain: info.name,
                    hook,
                    priority,
                });
            }
            Ok(())
        })?;
        match outcome {
            transact::RequestOutcome::Done { .. } => Ok(chains),
            transact::RequestOutcome::Refused(errno) => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
        }
    }

    /// The current nf_tables ruleset generation id.
    pub fn generation(&mut self) -> Result<u32> {
        self.read_generation()
    }

    /// Tells this connection about a commit seen through a
    /// [`Monitor`](monitor::Monitor) of the same namespace, so that what it
    /// installed stays trusted across other programs' commits elsewhere:
    /// [`Nft::apply`] plans from what it installed itself, without reading
    /// the table, only while nf_tables is at the generation of our last
    /// commit (see the crate docs, "What apply reads"). A commit that did
    /// not touch a table we installed (by [`Commit::touches`](monitor::Commit::touches),
    /// which also counts lost notifications and changes it cannot
    /// understand) and that comes right after the generation we trust moves
    /// that trust on to it; one touching the table drops it, so the next
    /// apply reads the table. Commits must be fed in the order the monitor
    /// reports them, every one of them (ours included: they are recognised
    /// by generation and change nothing); after [`Event::Overflow`](monitor::Event::Overflow)
    /// call [`Nft::forget_installed`].
    pub fn note_commit(&mut self, commit: &monitor::Commit) {
        self.images.retain(|table, image| {
            let seen = image.seen();
            let after = commit.generation.wrapping_sub(seen) as i32 > 0;
            if !after {
                // Ours, or older than what we trust: already seen.
                return true;
            }
            if commit.generation != transact::next_generation(seen) {
                // A commit was missed.
                return false;
            }
            // Elements added to or deleted from run-time sets (`set add`,
            // fail2ban) are not the image's business: as if elsewhere.
            let beyond_runtime = commit.touches(monitor::NfFamily::Inet, table)
                && (!commit.complete
                    || commit
                        .changes
                        .iter()
                        .any(|c| matches!(c.kind, monitor::Kind::Unknown(_)))
                    || commit
                        .changes_to(monitor::NfFamily::Inet, table)
                        .any(|c| !image.is_runtime_element(c)));
            if !beyond_runtime {
                match &mut image.stale {
                    Some(stale) => stale.seen = commit.generation,
                    None => image.generation = commit.generation,
                }
                return true;
            }
            let changes: Vec<_> = commit.changes_to(monitor::NfFamily::Inet, table).collect();
            // `touches` also counts lost notifications and changes it cannot
            // place: then nothing in the image can be vouched for.
            commit.complete
                && !commit
                    .changes
                    .iter()
                    .any(|c| matches!(c.kind, monitor::Kind::Unknown(_)))
                && image.follow(commit.generation, &changes)
        });
    }

    /// Forgets what this connection installed: the next [`Nft::apply`] of
    /// each table reads it from the kernel first.
    pub fn forget_installed(&mut self) {
        self.images.clear();
    }

    /// Tells this connection that a [`Monitor`](monitor::Monitor) lost
    /// notifications ([`Event::Overflow`](monitor::Event::Overflow)): what
    /// it installed stays trusted only where nf_tables is still at the
    /// generation it is exact in, i.e. nobody committed since (the lost
    /// notifications were of commits it already accounts for, typically
    /// its own large commit, whose element notifications overflowed the
    /// buffer). Everything else is forgotten, as by
    /// [`Nft::forget_installed`].
    ///
    /// Returns whether anything it installed is still trusted: then nothing
    /// was committed since, and the monitor can be told so
    /// ([`Monitor::loss_accounted_for`](monitor::Monitor::loss_accounted_for)).
    pub fn note_lost_notifications(&mut self) -> Result<bool> {
        let now = match self.read_generation() {
            Ok(now) => now,
            Err(error) => {
                self.images.clear();
                return Err(error);
            }
        };
        self.images
            .retain(|_, image| image.stale.is_none() && image.generation == now);
        Ok(!self.images.is_empty())
    }

    /// How many dump requests (a table's get included) this connection has
    /// made, and how many of them dumped set elements.
    #[cfg(feature = "testing")]
    pub fn dump_requests(&self) -> (u64, u64) {
        (self.reads.requests, self.reads.element_requests)
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
    /// the table must be exactly what the step should leave; at the end it
    /// equals `ruleset`. What is read, and when the table is not read at
    /// all (the image of our last apply), is in the crate docs, "What apply
    /// reads".
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
        let started = Instant::now();
        // A ruleset nf_tables cannot hold is refused before waiting for anyone.
        encode::check(ruleset)?;
        self.exclusively(|nft| nft.apply_unlocked(ruleset))
            .map(|report| report.timed(started))
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
        let started = Instant::now();
        encode::check(ruleset)?;
        self.images.remove(&ruleset.table);
        self.exclusively(|nft| nft.rebuild(ruleset, Owners::OursOnly, None))
            .map(|report| report.timed(started))
    }

    /// Asks the kernel whether it would accept `ruleset` as a new table,
    /// without installing anything: every message (table, sets, chains,
    /// rules) is sent in one batch that lacks its end, which nf_tables
    /// checks message by message and then aborts (as `nft --check` does).
    /// Nothing is committed, so nothing changes and no one is notified,
    /// whatever `ruleset.table` is called. For finding out at start whether
    /// the kernel has the nf_tables features a ruleset uses:
    /// [`Error::Rejected`] names each rule (by its comment) the kernel
    /// refused, with the kernel's errno and message.
    pub fn validate(&mut self, ruleset: &Ruleset) -> Result<()> {
        const ACTION: &str = "check the ruleset with the kernel";
        let batch = encode::validation(ruleset, self.seq, &mut self.writer)?;
        self.take_seqs(batch.msgs.len());
        self.socket
            .grow_buffers(
                batch.bytes.len() + (64 << 10),
                (batch.msgs.len() * 2048).max(4 << 20),
            )
            .map_err(|e| Error::io("size the netlink socket buffers", e))?;
        self.socket.send(&batch.bytes).map_err(|e| Error::io(ACTION, e))?;
        let (failures, _) = self.collect_acks(&batch)?;
        if failures.iter().any(|f| f.errno == libc::EPERM) {
            return Err(Error::PermissionDenied { action: ACTION });
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Rejected {
            table: ruleset.table.clone(),
            failures: failures
                .into_iter()
                .map(|f| describe::describe_failure(ruleset, &batch, f))
                .collect(),
        })
    }

    /// [`Nft::replace`], whoever the table belongs to: a table dockfw did
    /// not create is replaced (everything in it is lost) and becomes
    /// dockfw's. For taking over a table deliberately. Holds the writer lock.
    pub fn adopt(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        let started = Instant::now();
        encode::check(ruleset)?;
        self.images.remove(&ruleset.table);
        self.exclusively(|nft| nft.rebuild(ruleset, Owners::Any, None))
            .map(|report| report.timed(started))
    }

    /// The table `table` as installed, decoded; `None` if there is no such table.
    ///
    /// The read is consistent: the table was dumped within one ruleset
    /// generation, or (when other programs keep committing elsewhere) two
    /// successive complete reads agreed.
    pub fn installed(&mut self, table: &str) -> Result<Option<Ruleset>> {
        self.read_installed(table)
    }

    /// Everything table `table` holds, read completely (see [`InstalledTable`]);
    /// `None` if there is no such table. Consistent as [`Nft::installed`] is.
    pub fn inspect(&mut self, table: &str) -> Result<Option<InstalledTable>> {
        self.inspect_table(table)
    }

    /// Packet and byte counts of every rule in `table`, in chain and rule
    /// order (empty if the table does not exist); 0 and 0 for a rule
    /// without a counter (only those the ruleset gives a
    /// [`Statement::Counter`](dockfw_core::ruleset::Statement::Counter) count).
    pub fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>> {
        self.read_counters(table)
    }

    /// Deletes table `table` with everything in it, if it is dockfw's.
    /// Returns whether it existed; an absent table is not an error. A table
    /// dockfw did not create ([`Owner::Foreign`]) is left alone:
    /// [`Error::NotOwned`] (see [`Nft::remove_foreign`]). The deletion
    /// carries the generation of the read that found the table dockfw's.
    /// Holds this namespace's writer lock, as [`Nft::apply`] does.
    pub fn remove(&mut self, table: &str) -> Result<bool> {
        self.forget_image(table);
        self.exclusively(|nft| nft.remove_checked(table, Owners::OursOnly))
    }

    /// Deletes table `table` whoever it belongs to (for removing a table
    /// dockfw did not create, deliberately). Returns whether it existed.
    /// Holds the writer lock.
    pub fn remove_foreign(&mut self, table: &str) -> Result<bool> {
        self.forget_image(table);
        self.exclusively(|nft| nft.remove_checked(table, Owners::Any))
    }

    /// Forgets what we know of `table`, in memory and on disk.
    fn forget_image(&mut self, table: &str) {
        self.images.remove(table);
        if let Some(disk) = &mut self.disk {
            disk.forget(self.netns, table);
        }
    }
}
