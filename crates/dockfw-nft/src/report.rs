//! What the writing methods of [`Nft`](crate::Nft) report: how the table got
//! to the ruleset, each committed transaction, and rule counters.

use std::time::Duration;

/// How [`Nft::apply`](crate::Nft::apply) brought the table to the ruleset.
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
    /// The whole table was replaced in one transaction ([`Nft::replace`](crate::Nft::replace), or
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
    /// Whole intervals added to or removed from one set rules use, and
    /// nothing else: the set is seen as it was or as it is wanted, whole.
    Update,
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
    /// Whether every message of the batch was acked without error (what
    /// lets the read-back take set elements from what was sent).
    pub(crate) acked: bool,
}

/// What [`Nft::apply`](crate::Nft::apply) did.
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
    /// The whole call: waiting for the writer lock, reading, planning,
    /// encoding, the commits, the verification and keeping the table's
    /// image in memory. What creating or changing the table costs beyond
    /// `commit_time` is this minus it, except the image file of
    /// [`Nft::keep_images_on_disk`](crate::Nft::keep_images_on_disk): that
    /// is written on a thread of its own, after this, and the next call on
    /// the same [`Nft`](crate::Nft), or dropping it, waits for it.
    pub call_time: Duration,
    /// Reads of the table from the kernel: full ones, and after a
    /// transaction the read-back of its structure (0 when `apply` planned
    /// from what it had installed itself and read nothing back; see the
    /// crate docs).
    pub reads: u32,
    /// Reads among `reads` that dumped set elements.
    pub element_reads: u32,
    /// Sets whose elements belong to run time (a policy's `dynamic` sets)
    /// that this apply had to delete and create anew because their type or
    /// flags changed (e.g. another default timeout): what run time had put
    /// in them is gone. Say so loudly.
    pub recreated_runtime_sets: Vec<String>,
    /// Elements of run-time sets a rebuild ([`Change::Replaced`]) put back
    /// into the new table, each with the time it had left.
    pub runtime_elements_kept: usize,
}

impl ApplyReport {
    pub(crate) fn new(change: Change) -> Self {
        Self {
            change,
            transactions: Vec::new(),
            attempts: 0,
            messages: 0,
            batch_bytes: 0,
            generation: 0,
            commit_time: Duration::ZERO,
            verify_time: Duration::ZERO,
            call_time: Duration::ZERO,
            reads: 0,
            element_reads: 0,
            recreated_runtime_sets: Vec::new(),
            runtime_elements_kept: 0,
        }
    }

    pub(crate) fn timed(self, started: std::time::Instant) -> Self {
        Self {
            call_time: started.elapsed(),
            ..self
        }
    }

    pub(crate) fn record(&mut self, transaction: Transaction) {
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

/// A base chain of any table in the namespace (see [`crate::Nft::base_chains`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BaseChain {
    /// The table's family.
    pub family: crate::monitor::NfFamily,
    /// Its table.
    pub table: String,
    /// Its name.
    pub chain: String,
    /// The hook number (`NF_INET_*` for ip, ip6 and inet: 1 input, 2 forward).
    pub hook: u32,
    /// Its priority.
    pub priority: i32,
}
