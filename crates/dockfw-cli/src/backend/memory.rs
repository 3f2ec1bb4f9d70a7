//! A backend in memory, for tests: tables kept in a map, answering the
//! commands as the kernel does for what they ask.
//!
//! * `apply`: `Created`, `Unchanged` (nothing touched: counters keep
//!   counting), `Updated` (counters of rules left as they were carry on),
//!   `Replaced` when the table has flags (e.g. dormant); a table that is not
//!   dockfw's is refused with [`Error::NotOwned`]. `replace` and `adopt`
//!   rebuild the table marked as dockfw's with counters at zero; `adopt`
//!   takes any table.
//! * `inspect` reads a table as [`InstalledTable::holding`] describes it;
//!   `counters` gives every rule's, 0 unless a test set it.
//! * `remove` deletes dockfw's table and refuses another's; `remove_foreign`
//!   deletes any.
//! * Conntrack holds no connections (revoke finds nothing to cut);
//!   notifications are refused, so `watch` cannot run on it.
//!
//! What it does not model: rulesets nf_tables would reject, the writer lock,
//! other programs committing meanwhile, and tables holding what dockfw does
//! not write (only flags and a comment can be foreign).

use super::{Backend, Connections, Tables};
use dockfw_core::Ruleset;
use dockfw_core::layout::CounterAt;
use dockfw_nft::conntrack::CtEntry;
use dockfw_nft::monitor::Monitor;
use dockfw_nft::{ApplyReport, Change, Error, InstalledTable, MARKER, Result, RuleCounter};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

/// Tables in memory. Clones share them: a test keeps one to arrange and
/// look at the tables, and gives another to [`crate::run`].
#[derive(Debug, Clone, Default)]
pub struct Memory {
    state: Rc<RefCell<State>>,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, MemoryTable>,
    /// The ruleset generation: one more with each change, as nf_tables counts.
    generation: u32,
}

/// A table as [`Memory`] holds it (family inet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryTable {
    /// Its chains, sets and rules; `ruleset.table` is its name.
    pub ruleset: Ruleset,
    /// `NFT_TABLE_F_*` (1: dormant).
    pub flags: u32,
    /// The table comment: [`MARKER`] on the tables dockfw creates.
    pub comment: Option<String>,
    /// Packets and bytes per rule, by chain and position; absent: 0.
    pub counters: HashMap<(String, usize), (u64, u64)>,
}

impl MemoryTable {
    /// A table as dockfw creates it: marked, no flags, counters at zero.
    pub fn dockfw(ruleset: Ruleset) -> Self {
        Self::commented(ruleset, Some(MARKER))
    }

    /// A table with `comment` (`None`: none, as an earlier dockfw wrote
    /// them; another comment: not dockfw's), no flags, counters at zero.
    pub fn commented(ruleset: Ruleset, comment: Option<&str>) -> Self {
        Self {
            ruleset,
            flags: 0,
            comment: comment.map(str::to_string),
            counters: HashMap::new(),
        }
    }

    fn inspected(&self) -> InstalledTable {
        InstalledTable::holding(&self.ruleset, self.flags, self.comment.as_deref())
    }

    fn refuse_unless_ours(&self) -> Result<()> {
        match self.inspected().owner() {
            dockfw_nft::Owner::Foreign { why } => Err(Error::NotOwned {
                table: self.ruleset.table.clone(),
                why: why.clone(),
            }),
            _ => Ok(()),
        }
    }
}

impl Memory {
    /// No tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table `name`, if there is one.
    pub fn table(&self, name: &str) -> Option<MemoryTable> {
        self.state.borrow().tables.get(name).cloned()
    }

    /// Puts `table` in place of any of its name, as another program (or an
    /// earlier run) would have.
    pub fn put(&self, table: MemoryTable) {
        let mut state = self.state.borrow_mut();
        state.generation += 1;
        state.tables.insert(table.ruleset.table.clone(), table);
    }

    /// Sets table `name`'s flags (1: dormant), as `nft add table inet NAME
    /// { flags dormant; }` does. Panics if there is no such table.
    pub fn set_flags(&self, name: &str, flags: u32) {
        let mut state = self.state.borrow_mut();
        state.generation += 1;
        state.tables.get_mut(name).expect("no such table").flags = flags;
    }

    /// Sets counter `at` (e.g. [`rule_counter`](dockfw_core::layout::rule_counter) or
    /// [`default_counter`](dockfw_core::layout::default_counter)) of table `name`, as traffic would.
    /// Panics if there is no such table.
    pub fn count(&self, name: &str, at: &CounterAt, packets: u64, bytes: u64) {
        let mut state = self.state.borrow_mut();
        let table = state.tables.get_mut(name).expect("no such table");
        table
            .counters
            .insert((at.chain.clone(), at.index), (packets, bytes));
    }

    /// Creates or replaces the table with `ruleset`, marked as dockfw's.
    fn rebuild(&self, ruleset: &Ruleset, owners: Owners) -> Result<ApplyReport> {
        let mut state = self.state.borrow_mut();
        if owners == Owners::OursOnly
            && let Some(table) = state.tables.get(&ruleset.table)
        {
            table.refuse_unless_ours()?;
        }
        let change = if state.tables.contains_key(&ruleset.table) {
            Change::Replaced
        } else {
            Change::Created
        };
        state.generation += 1;
        state
            .tables
            .insert(ruleset.table.clone(), MemoryTable::dockfw(ruleset.clone()));
        Ok(ApplyReport::without_transactions(change, state.generation))
    }
}

/// Whose table [`Memory::rebuild`] may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owners {
    /// Only dockfw's own.
    OursOnly,
    /// Whoever created it (`adopt`).
    Any,
}

impl Backend for Memory {
    fn tables(&self, _netns: Option<&Path>) -> Result<Box<dyn Tables>> {
        Ok(Box::new(self.clone()))
    }

    fn connections(&self, _netns: Option<&Path>) -> Result<Box<dyn Connections>> {
        Ok(Box::new(NoConnections))
    }

    fn monitor(&self, _netns: Option<&Path>) -> anyhow::Result<Monitor> {
        anyhow::bail!("the in-memory backend has no nf_tables notifications")
    }

    fn counter_reader(&self, _netns: Option<&Path>) -> anyhow::Result<Box<dyn super::CounterReader>> {
        // Its tables are not shared across threads; watch cannot run on it anyway.
        anyhow::bail!("the in-memory backend has no counters for other threads")
    }
}

impl Tables for Memory {
    fn generation(&mut self) -> Result<u32> {
        Ok(self.state.borrow().generation)
    }

    fn apply(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        let mut state = self.state.borrow_mut();
        let Some(table) = state.tables.get_mut(&ruleset.table) else {
            drop(state);
            return self.rebuild(ruleset, Owners::OursOnly);
        };
        table.refuse_unless_ours()?;
        if table.flags != 0 {
            // The kernel cannot clear a table's flags in place either.
            drop(state);
            return self.rebuild(ruleset, Owners::OursOnly);
        }
        if table.ruleset == *ruleset {
            let generation = state.generation;
            return Ok(ApplyReport::without_transactions(Change::Unchanged, generation));
        }
        // Rules left as they were keep their counters; the rest start at 0.
        let old = std::mem::replace(&mut table.ruleset, ruleset.clone());
        table.counters.retain(|(chain, index), _| {
            let rule = |r: &Ruleset| r.chain(chain).and_then(|c| c.rules.get(*index)).cloned();
            rule(&old).is_some() && rule(&old) == rule(ruleset)
        });
        state.generation += 1;
        Ok(ApplyReport::without_transactions(
            Change::Updated,
            state.generation,
        ))
    }

    fn replace(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        self.rebuild(ruleset, Owners::OursOnly)
    }

    fn adopt(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        self.rebuild(ruleset, Owners::Any)
    }

    fn installed(&mut self, table: &str) -> Result<Option<Ruleset>> {
        Ok(self.table(table).map(|t| t.ruleset))
    }

    fn inspect(&mut self, table: &str) -> Result<Option<InstalledTable>> {
        Ok(self.table(table).map(|t| t.inspected()))
    }

    fn counters(&mut self, table: &str) -> Result<Vec<RuleCounter>> {
        let Some(table) = self.table(table) else {
            return Ok(Vec::new());
        };
        let mut handle = 0;
        let mut out = Vec::new();
        for chain in &table.ruleset.chains {
            for (index, rule) in chain.rules.iter().enumerate() {
                handle += 1;
                let (packets, bytes) = table
                    .counters
                    .get(&(chain.name.clone(), index))
                    .copied()
                    .unwrap_or_default();
                out.push(RuleCounter {
                    chain: chain.name.clone(),
                    index,
                    handle,
                    comment: rule.comment.clone(),
                    packets,
                    bytes,
                });
            }
        }
        Ok(out)
    }

    fn remove(&mut self, table: &str) -> Result<bool> {
        if let Some(installed) = self.table(table) {
            installed.refuse_unless_ours()?;
        }
        self.remove_foreign(table)
    }

    fn remove_foreign(&mut self, table: &str) -> Result<bool> {
        let mut state = self.state.borrow_mut();
        let existed = state.tables.remove(table).is_some();
        if existed {
            state.generation += 1;
        }
        Ok(existed)
    }
}

/// A connection tracker tracking nothing.
struct NoConnections;

impl Connections for NoConnections {
    fn dump(&mut self) -> Result<Vec<CtEntry>> {
        Ok(Vec::new())
    }

    fn delete(&mut self, _entry: &CtEntry) -> Result<bool> {
        Ok(false)
    }

    fn tcp_loose_off(&self) -> bool {
        false
    }
}
