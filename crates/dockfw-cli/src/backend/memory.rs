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
//! * Run-time sets (a policy's `dynamic` sets) hold what `set add` put in
//!   them, kept by `apply` (unless the set's flags change) and by
//!   `replace`; nothing expires.
//! * Conntrack holds no connections (revoke finds nothing to cut);
//!   notifications are refused, so `watch` cannot run on it.
//!
//! What it does not model: rulesets nf_tables would reject, the writer lock,
//! other programs committing meanwhile, and tables holding what dockfw does
//! not write (only flags and a comment can be foreign).

use super::{Backend, Connections, Tables};
use dockfw_core::Ruleset;
use dockfw_core::layout::CounterAt;
use dockfw_core::ruleset::{Family, RuntimeSet, SetElements};
use dockfw_nft::conntrack::CtEntry;
use dockfw_nft::monitor::Monitor;
use dockfw_nft::{
    ApplyReport, Change, Error, InstalledTable, MARKER, Result, RuleCounter, RuntimeElement, RuntimeEntry,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

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
    /// A rule (by comment) the "kernel" refuses in every ruleset it is asked
    /// to validate, as an old kernel lacking a feature would.
    lacking: Option<String>,
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
    /// What run time put in the run-time sets (a policy's `dynamic` sets):
    /// by set, each address with its own timeout. Time does not pass here:
    /// nothing expires.
    pub runtime: BTreeMap<String, BTreeMap<IpAddr, Option<Duration>>>,
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
            runtime: BTreeMap::new(),
        }
    }

    /// The family of run-time set `set`, or why it is none (as the kernel
    /// answers).
    fn runtime_set(&self, set: &str) -> Result<RuntimeSet> {
        let table = &self.ruleset.table;
        match self.ruleset.set(set).map(|s| &s.elements) {
            None => Err(Error::NoSet {
                table: table.clone(),
                set: set.to_string(),
            }),
            Some(SetElements::Runtime(runtime)) => Ok(*runtime),
            Some(_) => Err(Error::NotRuntimeSet {
                table: table.clone(),
                set: set.to_string(),
                why: "a set of the policy's own addresses or ports".into(),
            }),
        }
    }

    /// Keeps the run-time elements of the sets `ruleset` keeps as they are;
    /// the run-time sets it has with other flags are new and empty: their
    /// names.
    fn keep_runtime(&mut self, ruleset: &Ruleset) -> Vec<String> {
        let old = std::mem::take(&mut self.runtime);
        let mut recreated = Vec::new();
        for set in ruleset.sets.iter().filter(|s| s.is_runtime()) {
            match (self.ruleset.set(&set.name), old.get(&set.name)) {
                (Some(had), Some(elements)) if had == set => {
                    self.runtime.insert(set.name.clone(), elements.clone());
                }
                (Some(had), _) if had.is_runtime() => recreated.push(set.name.clone()),
                _ => {}
            }
        }
        recreated
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

    /// Makes [`Tables::validate`] refuse the rule whose comment is `rule`
    /// (EOPNOTSUPP), as a kernel lacking the feature it uses would.
    pub fn lack_feature(&self, rule: &str) {
        self.state.borrow_mut().lacking = Some(rule.to_string());
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
        let mut table = MemoryTable::dockfw(ruleset.clone());
        // As the kernel's rebuild: run-time elements go into the new table
        // (not when adopting a table that was not dockfw's).
        let mut kept = 0;
        if owners == Owners::OursOnly
            && let Some(old) = state.tables.get(&ruleset.table)
        {
            for set in ruleset.sets.iter().filter(|s| s.is_runtime()) {
                if old.ruleset.set(&set.name).is_some_and(|had| had.is_runtime())
                    && let Some(elements) = old.runtime.get(&set.name)
                {
                    kept += elements.len();
                    table.runtime.insert(set.name.clone(), elements.clone());
                }
            }
        }
        state.tables.insert(ruleset.table.clone(), table);
        let mut report = ApplyReport::without_transactions(change, state.generation);
        report.runtime_elements_kept = kept;
        Ok(report)
    }
}

impl Memory {
    /// Checks as the kernel does (table there and dockfw's, sets run-time
    /// sets of the entries' families), then applies `change` to each entry:
    /// all or nothing.
    fn change_runtime(
        &self,
        table: &str,
        entries: &[RuntimeEntry],
        change: impl Fn(&mut BTreeMap<IpAddr, Option<Duration>>, &RuntimeEntry),
    ) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let installed = state.tables.get_mut(table).ok_or_else(|| Error::NoTable {
            table: table.to_string(),
        })?;
        installed.refuse_unless_ours()?;
        for entry in entries {
            let runtime = installed.runtime_set(&entry.set)?;
            if Family::of(entry.addr) != runtime.family {
                return Err(Error::Invalid(format!(
                    "{} cannot go into set `{}`, which holds other addresses",
                    entry.addr, entry.set
                )));
            }
        }
        for entry in entries {
            change(installed.runtime.entry(entry.set.clone()).or_default(), entry);
        }
        state.generation += 1;
        Ok(())
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

    fn validate(&mut self, ruleset: &Ruleset) -> Result<()> {
        let Some(lacking) = self.state.borrow().lacking.clone() else {
            return Ok(());
        };
        let failures: Vec<dockfw_nft::Failure> = ruleset
            .chains
            .iter()
            .flat_map(|chain| {
                chain
                    .rules
                    .iter()
                    .enumerate()
                    .map(move |(i, rule)| (chain, i, rule))
            })
            .filter(|(_, _, rule)| rule.comment == lacking)
            .map(|(chain, index, rule)| dockfw_nft::Failure {
                object: format!("rule {index} \"{}\" in chain `{}`", rule.comment, chain.name),
                expression: None,
                errno: libc::EOPNOTSUPP,
                kernel_message: None,
                explanation: String::new(),
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Rejected {
            table: ruleset.table.clone(),
            failures,
        })
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
        let recreated = table.keep_runtime(ruleset);
        // Rules left as they were keep their counters; the rest start at 0.
        let old = std::mem::replace(&mut table.ruleset, ruleset.clone());
        table.counters.retain(|(chain, index), _| {
            let rule = |r: &Ruleset| r.chain(chain).and_then(|c| c.rules.get(*index)).cloned();
            rule(&old).is_some() && rule(&old) == rule(ruleset)
        });
        state.generation += 1;
        let mut report = ApplyReport::without_transactions(Change::Updated, state.generation);
        report.recreated_runtime_sets = recreated;
        Ok(report)
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

    fn runtime_elements(&mut self, table: &str, set: &str) -> Result<Vec<RuntimeElement>> {
        let installed = self.table(table).ok_or_else(|| Error::NoTable {
            table: table.to_string(),
        })?;
        let runtime = installed.runtime_set(set)?;
        let default = runtime.timeout_ms.map(Duration::from_millis);
        Ok(installed
            .runtime
            .get(set)
            .into_iter()
            .flatten()
            .map(|(addr, timeout)| RuntimeElement::stand_in(Some(*addr), *timeout, timeout.or(default)))
            .collect())
    }

    fn add_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()> {
        self.change_runtime(table, entries, |elements, entry| {
            elements.insert(entry.addr, entry.timeout);
        })
    }

    fn delete_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()> {
        self.change_runtime(table, entries, |elements, entry| {
            elements.remove(&entry.addr);
        })
    }

    fn flush_runtime_sets(&mut self, table: &str, sets: &[&str]) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let installed = state.tables.get_mut(table).ok_or_else(|| Error::NoTable {
            table: table.to_string(),
        })?;
        installed.refuse_unless_ours()?;
        for set in sets {
            installed.runtime_set(set)?;
        }
        for set in sets {
            installed.runtime.remove(*set);
        }
        state.generation += 1;
        Ok(())
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
