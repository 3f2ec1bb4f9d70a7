//! Planning an in-place update: from what the kernel holds to the wanted
//! ruleset, one transaction at a time.
//!
//! # Why not one transaction
//!
//! nf_tables switches every chain's rules at one instant of a commit (the
//! generation flip), but a set backend may publish its new elements a little
//! later in the same commit: the kernels this was developed on (6.18) build
//! the lookup array of an interval set in the set's commit callback, after the
//! flip. Until then a set created in the transaction matches nothing and a
//! changed set still matches its old elements. A rule switched to such a set
//! in the same transaction is decided by the wrong elements for packets in
//! between (the end-to-end suite saw denied connections let through by
//! `default = "accept"` while the table was replaced).
//!
//! # The invariant
//!
//! **A transaction never changes both rules and the elements of a set a rule
//! uses.** Each transaction is one of:
//!
//! * [`StepKind::Prepare`]: creates sets, updates (deleting and adding only
//!   the intervals that differ) or recreates sets that no installed rule
//!   refers to, and (first install) the table. Rules and
//!   chains are untouched, so every packet meets the installed policy.
//! * [`StepKind::Switch`]: rewrites rules (only the rules that differ),
//!   creates and deletes chains, deletes sets no rule will use. The sets the
//!   new rules use are not touched: they hold their elements since an earlier
//!   transaction. Every packet is decided wholly by the old rules with their
//!   sets, or wholly by the new rules with theirs (a packet's walk through
//!   the chains uses one generation; deleted sets and chains stay intact for
//!   packets still walking the old generation).
//! * [`StepKind::Create`]: the first install of a ruleset without sets.
//!
//! A set that rules use and whose elements (or type, or meter parameters)
//! must change cannot be changed in place. It is copied instead, under a
//! staging name (`NAME.next`, see [`staging_names`]), in a Prepare; the
//! Switch points the rules at the copy; the next Prepare updates the
//! original, now unused; the last Switch points the rules back and deletes
//! the copy. So a full update is at most four transactions:
//!
//! | step | does | packets meet |
//! |---|---|---|
//! | Prepare 1 | new sets, staging copies | the old policy |
//! | Switch 1 | changed rules, new and dropped chains, dropped sets; rules use the copies | the new policy |
//! | Prepare 2 | updates the originals (unused now) | the new policy |
//! | Switch 2 | rules back to the originals, copies deleted | the new policy |
//!
//! Steps with nothing to do are skipped: an update that changes only rules
//! is one Switch; one that adds sets is Prepare + Switch; a set no rule uses
//! is updated in one Prepare.
//!
//! Deleting a set or chain in a Switch is safe for packets still walking the
//! old generation: deletion changes no set's elements, and the objects are
//! freed only after an RCU grace period.
//!
//! # Order
//!
//! The kernel lists sets and chains in creation order, and a [`Ruleset`]
//! read back must equal the wanted one, order included. Objects are kept
//! in place only as far as their order agrees with the wanted order (the
//! longest wanted prefix found in the installed order); the rest are created
//! anew at the end, in wanted order (sets through staging when rules use
//! them). Rules within a kept chain are edited in place: unchanged rules keep
//! their handle and counters, new ones are inserted at their position.
//!
//! The planner is pure: it reads an [`Installed`] snapshot and returns the
//! next [`Step`] together with the state that step must leave, which the
//! caller checks against the kernel after committing.

use crate::encode;
use crate::expr::Expr;
use crate::op::Op;
use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{BaseHook, Match, Rule, Ruleset, Set, SetElements, Verdict};
use std::collections::{HashMap, HashSet};

/// Longest object name (`NFT_NAME_MAXLEN` less the NUL).
const MAX_NAME: usize = 255;

/// A decoded table with the kernel handle of every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    pub ruleset: Ruleset,
    /// `handles[c][r]` is the handle of `ruleset.chains[c].rules[r]`.
    pub handles: Vec<Vec<u64>>,
}

/// The comment of [`foreign_rule`]: a control character, which no rule
/// dockfw writes holds (`dockfw_core::names`).
const FOREIGN_RULE: &str = "\u{1}a rule dockfw does not write";

/// A stand-in for a rule dockfw does not write, found in a table of ours
/// (see [`crate::read::decode_tolerant`]): never equal to a wanted rule, so
/// the planner deletes it by its handle.
pub(crate) fn foreign_rule() -> Rule {
    Rule {
        comment: FOREIGN_RULE.to_string(),
        matches: Vec::new(),
        statements: Vec::new(),
        verdict: None,
    }
}

/// Whether `rule` is a [`foreign_rule`] stand-in.
pub(crate) fn is_foreign(rule: &Rule) -> bool {
    rule.comment == FOREIGN_RULE
}

/// What kind of transaction a step is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StepKind {
    /// First install without sets: table, chains and rules at once.
    Create,
    /// Sets only, none of them used by an installed rule.
    Prepare,
    /// Rules and chains, and deletion of sets; no set elements change.
    Switch,
    /// Whole intervals added to or removed from one set rules use, and
    /// nothing else (see [`in_place`]).
    Update,
}

/// The next transaction and the table it must leave behind.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub kind: StepKind,
    pub ops: Vec<Op>,
    pub after: Ruleset,
}

impl Step {
    /// The sets whose elements this step writes.
    pub(crate) fn written_sets(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().filter_map(|op| match op {
            Op::CreateSet { name, .. } | Op::UpdateSet { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// The next transaction towards `want`, or `None` when `installed` already
/// is `want`. An error means the planner cannot make progress (a bug).
pub(crate) fn plan(installed: Option<&Installed>, want: &Ruleset) -> Result<Option<Step>, String> {
    let mut step = next_step(installed, want)?;
    if let Some(step) = &mut step {
        // As a read lists them (see `Ruleset::runtime_sets_first`).
        step.after.runtime_sets_first();
    }
    Ok(step)
}

/// The sets whose elements belong to run time that `step` deletes while
/// `want` has them: recreated, so what run time had put in them is gone.
pub(crate) fn recreated_runtime_sets<'a>(
    step: &'a Step,
    installed: Option<&'a Installed>,
    want: &'a Ruleset,
) -> impl Iterator<Item = &'a str> {
    step.ops.iter().filter_map(move |op| match op {
        Op::DeleteSet(name)
            if want.set(name).is_some_and(Set::is_runtime)
                && installed.is_some_and(|i| i.ruleset.set(name).is_some_and(Set::is_runtime)) =>
        {
            Some(name.as_str())
        }
        _ => None,
    })
}

fn next_step(installed: Option<&Installed>, want: &Ruleset) -> Result<Option<Step>, String> {
    let Some(have) = installed else {
        return Ok(Some(first_install(want)));
    };
    if have.ruleset == *want {
        return Ok(None);
    }
    if let Some(step) = in_place(have, want) {
        return Ok(Some(step));
    }
    if let Some(step) = prepare(have, want) {
        return Ok(Some(step));
    }
    let step = switch(have, want)?;
    if step.ops.is_empty() {
        return Err(format!(
            "no transaction leads from the installed table `{}` to the wanted one",
            want.table
        ));
    }
    Ok(Some(step))
}

/// The update in one transaction when all that changes is one set's
/// elements, by whole intervals: each one removed or added neither overlaps
/// nor adjoins one added or removed (so no neighbour is reshaped, as it is
/// when an added interval merges with an installed one). Rules are not
/// touched, so the invariant holds: the set is the only thing that changes,
/// and a set publishes its new elements all at once (6.18's interval sets
/// swap in the lookup array built at commit; earlier kernels flip each
/// element's generation bit at the commit), so every packet meets the set
/// as it was or as it is wanted, and the other elements never stop
/// matching (`tests/reapply_traffic.rs` probes this under traffic). Two sets
/// changing would publish one after the other, a moment of one old and one
/// new: those still go through staging copies.
fn in_place(have: &Installed, want: &Ruleset) -> Option<Step> {
    let installed = &have.ruleset;
    if installed.chains != want.chains || installed.sets.len() != want.sets.len() {
        return None;
    }
    let mut changed = None;
    for (old, new) in installed.sets.iter().zip(&want.sets) {
        if old.name != new.name || !same_kind(&old.elements, &new.elements) {
            return None;
        }
        if old.elements != new.elements {
            if changed.is_some() {
                return None;
            }
            changed = Some((old, new));
        }
    }
    let (old, new) = changed?;
    if !referenced(installed).contains(old.name.as_str()) {
        // No rule uses it: a Prepare updates it, as any unused set.
        return None;
    }
    let (remove, add) = set_delta(&old.elements, &new.elements)?;
    if reshapes(&remove, &add) || rewriting_is_cheaper(&remove, &add, &new.elements) {
        return None;
    }
    let mut after = installed.clone();
    if let Some(set) = after.sets.iter_mut().find(|s| s.name == new.name) {
        set.elements = new.elements.clone();
    }
    Some(Step {
        kind: StepKind::Update,
        ops: vec![Op::UpdateSet {
            name: new.name.clone(),
            remove,
            add,
            elements: new.elements.clone(),
            copy_of: None,
        }],
        after,
    })
}

/// Whether writing the set anew (`new`, whole) is cheaper than editing it by
/// `remove` and `add`: when someone filled a small set with many elements
/// (300,000 junk addresses in a 3-address allow-list), deleting them one by
/// one is a large batch; the set written whole is small.
fn rewriting_is_cheaper(remove: &SetElements, add: &SetElements, new: &SetElements) -> bool {
    remove.len() + add.len() > 2 * new.len() + 64
}

/// Whether an interval of `remove` overlaps or adjoins one of `add` (both
/// sorted and normalised, as [`set_delta`] leaves them).
fn reshapes(remove: &SetElements, add: &SetElements) -> bool {
    fn touch<T: dockfw_core::interval::Point>(remove: &[Interval<T>], add: &[Interval<T>]) -> bool {
        // Intervals of one side never touch each other; a removed interval
        // touching an added one is then next to it in order of start.
        let before = |a: &Interval<T>, b: &Interval<T>| a.last.successor().is_some_and(|s| s < b.first);
        let mut all: Vec<(&Interval<T>, bool)> = remove
            .iter()
            .map(|i| (i, false))
            .chain(add.iter().map(|i| (i, true)))
            .collect();
        all.sort_by_key(|(i, _)| i.first);
        all.windows(2)
            .any(|w| w[0].1 != w[1].1 && !before(w[0].0, w[1].0))
    }
    match (remove, add) {
        (SetElements::Ipv4(r), SetElements::Ipv4(a)) => touch(r, a),
        (SetElements::Ipv6(r), SetElements::Ipv6(a)) => touch(r, a),
        (SetElements::Port(r), SetElements::Port(a)) => touch(r, a),
        // Single addresses in a hash never merge with their neighbours.
        (SetElements::Ipv4Addrs(_), SetElements::Ipv4Addrs(_))
        | (SetElements::Ipv6Addrs(_), SetElements::Ipv6Addrs(_)) => false,
        _ => true,
    }
}

/// The table does not exist: sets first (nothing uses them yet), then the
/// chains and rules in a Switch; without sets, everything at once.
fn first_install(want: &Ruleset) -> Step {
    let mut ops = vec![Op::CreateTable];
    if want.sets.is_empty() {
        for chain in &want.chains {
            ops.push(Op::CreateChain {
                name: chain.name.clone(),
                hook: chain.hook,
            });
        }
        for chain in &want.chains {
            ops.extend(appended(&chain.name, &chain.rules));
        }
        return Step {
            kind: StepKind::Create,
            ops,
            after: want.clone(),
        };
    }
    ops.extend(want.sets.iter().map(|set| Op::CreateSet {
        name: set.name.clone(),
        elements: set.elements.clone(),
        copy_of: None,
    }));
    Step {
        kind: StepKind::Prepare,
        ops,
        after: Ruleset {
            table: want.table.clone(),
            sets: want.sets.clone(),
            chains: Vec::new(),
        },
    }
}

fn appended(chain: &str, rules: &[Rule]) -> impl Iterator<Item = Op> {
    rules.iter().enumerate().map(move |(index, rule)| Op::AddRule {
        chain: chain.to_string(),
        index,
        rule: rule.clone(),
        before: None,
    })
}

/// The sets a rule looks up or updates.
pub(crate) fn set_refs(rule: &Rule) -> impl Iterator<Item = &str> {
    rule.matches.iter().filter_map(Match::set)
}

fn referenced(ruleset: &Ruleset) -> HashSet<&str> {
    ruleset
        .chains
        .iter()
        .flat_map(|chain| &chain.rules)
        .flat_map(set_refs)
        .collect()
}

fn jump_target(rule: &Rule) -> Option<&str> {
    match &rule.verdict {
        Some(Verdict::Jump(chain) | Verdict::Goto(chain)) => Some(chain),
        _ => None,
    }
}

/// Whether a set of kind `a` can be updated into kind `b` (same key type;
/// meters: the very same parameters, as meters cannot be changed).
fn same_kind(a: &SetElements, b: &SetElements) -> bool {
    match (a, b) {
        (SetElements::Ipv4(_), SetElements::Ipv4(_))
        | (SetElements::Ipv6(_), SetElements::Ipv6(_))
        | (SetElements::Port(_), SetElements::Port(_))
        | (SetElements::Ipv4Addrs(_), SetElements::Ipv4Addrs(_))
        | (SetElements::Ipv6Addrs(_), SetElements::Ipv6Addrs(_)) => true,
        (SetElements::Meter(a), SetElements::Meter(b)) => a == b,
        // Its elements are not ours to copy: another type or default
        // timeout means a new, empty set.
        (SetElements::Runtime(a), SetElements::Runtime(b)) => a == b,
        _ => false,
    }
}

/// The intervals to delete from and to add to constant set elements `old`
/// to make them `new` (`None` unless both are constant sets of one kind).
/// Only what differs is sent: a changed interval is deleted and added whole.
/// `None` too when a hash would need another size ([`SetElements::hash_size`]).
fn set_delta(old: &SetElements, new: &SetElements) -> Option<(SetElements, SetElements)> {
    // A hash's size cannot change: another size is another set.
    if old.hash_size() != new.hash_size() {
        return None;
    }
    fn delta<T: Copy + Ord + std::hash::Hash>(
        old: &[Interval<T>],
        new: &[Interval<T>],
    ) -> (Vec<Interval<T>>, Vec<Interval<T>>) {
        let key = |i: &Interval<T>| (i.first, i.last);
        let sorted = |v: &[Interval<T>]| v.is_sorted_by_key(key);
        if !(sorted(old) && sorted(new)) {
            let (olds, news): (HashSet<_>, HashSet<_>) = (old.iter().collect(), new.iter().collect());
            return (
                old.iter().filter(|i| !news.contains(i)).copied().collect(),
                new.iter().filter(|i| !olds.contains(i)).copied().collect(),
            );
        }
        // Both in order (as compiled and as read): one merge, no hashing
        // (100,000 intervals each side).
        let (mut remove, mut add) = (Vec::new(), Vec::new());
        let (mut o, mut n) = (0, 0);
        while o < old.len() && n < new.len() {
            match key(&old[o]).cmp(&key(&new[n])) {
                std::cmp::Ordering::Equal => (o, n) = (o + 1, n + 1),
                std::cmp::Ordering::Less => {
                    remove.push(old[o]);
                    o += 1;
                }
                std::cmp::Ordering::Greater => {
                    add.push(new[n]);
                    n += 1;
                }
            }
        }
        remove.extend_from_slice(&old[o..]);
        add.extend_from_slice(&new[n..]);
        (remove, add)
    }
    Some(match (old, new) {
        (SetElements::Ipv4(old), SetElements::Ipv4(new)) => {
            let (remove, add) = delta(old, new);
            (SetElements::Ipv4(remove), SetElements::Ipv4(add))
        }
        (SetElements::Ipv6(old), SetElements::Ipv6(new)) => {
            let (remove, add) = delta(old, new);
            (SetElements::Ipv6(remove), SetElements::Ipv6(add))
        }
        (SetElements::Ipv4Addrs(old), SetElements::Ipv4Addrs(new)) => {
            let (remove, add) = delta(old, new);
            (SetElements::Ipv4Addrs(remove), SetElements::Ipv4Addrs(add))
        }
        (SetElements::Ipv6Addrs(old), SetElements::Ipv6Addrs(new)) => {
            let (remove, add) = delta(old, new);
            (SetElements::Ipv6Addrs(remove), SetElements::Ipv6Addrs(add))
        }
        (SetElements::Port(old), SetElements::Port(new)) => {
            let (remove, add) = delta(old, new);
            (SetElements::Port(remove), SetElements::Port(add))
        }
        _ => return None,
    })
}

/// How many of `want`'s objects, from the first, the installed ones can stay
/// as they are placed: each found by name, `compatible`, and after the
/// previous one in installed order.
fn kept_prefix<T>(
    have: &[T],
    want: &[T],
    name: impl Fn(&T) -> &str,
    compatible: impl Fn(&T, &T) -> bool,
) -> usize {
    let position: HashMap<&str, usize> = have.iter().enumerate().map(|(i, x)| (name(x), i)).collect();
    let mut last = None;
    want.iter()
        .take_while(|wanted| match position.get(name(wanted)) {
            Some(&at) if last < Some(at) && compatible(&have[at], wanted) => {
                last = Some(at);
                true
            }
            _ => false,
        })
        .count()
}

/// How many of `want`'s sets, from the first, stay in place. Run-time sets
/// come first and their order does not count (see
/// [`Ruleset::runtime_sets_first`]): one is never recreated, emptying it,
/// because a set before it came or went.
fn set_prefix(have: &Ruleset, want: &Ruleset) -> usize {
    let runtime = want.sets.iter().take_while(|set| set.is_runtime()).count();
    let later = |sets: &[Set]| -> Vec<Set> { sets.iter().filter(|s| !s.is_runtime()).cloned().collect() };
    runtime
        + kept_prefix(
            &later(&have.sets),
            &want.sets[runtime..],
            |s| &s.name,
            |a, b| same_kind(&a.elements, &b.elements),
        )
}

/// Candidate staging names for set `name`: `NAME.next`, `NAME.next2`, …
/// (the name shortened to fit the kernel's limit).
pub(crate) fn staging_names(name: &str) -> impl Iterator<Item = String> + '_ {
    (1u32..).map(move |n| {
        let suffix = if n == 1 {
            ".next".to_string()
        } else {
            format!(".next{n}")
        };
        let mut keep = name.len().min(MAX_NAME - suffix.len());
        while !name.is_char_boundary(keep) {
            keep -= 1;
        }
        format!("{}{suffix}", &name[..keep])
    })
}

/// Picks staging names deterministically: the first candidate that is no
/// wanted set's name, not picked for another set, and not a set installed
/// rules use with other elements. A Prepare and the Switch after it pick the
/// same names, since a Prepare changes no rules and no set rules use.
struct Staging<'a> {
    have: &'a Ruleset,
    refs: HashSet<&'a str>,
    wanted: HashSet<&'a str>,
    taken: HashSet<String>,
}

impl<'a> Staging<'a> {
    fn new(have: &'a Ruleset, want: &'a Ruleset) -> Self {
        Self {
            have,
            refs: referenced(have),
            wanted: want.sets.iter().map(|s| s.name.as_str()).collect(),
            taken: HashSet::new(),
        }
    }

    fn pick(&mut self, set: &Set) -> String {
        staging_names(&set.name)
            .find(|candidate| {
                !self.wanted.contains(candidate.as_str())
                    && !self.taken.contains(candidate)
                    && !self.have.set(candidate).is_some_and(|installed| {
                        self.refs.contains(candidate.as_str()) && installed.elements != set.elements
                    })
            })
            .inspect(|name| {
                self.taken.insert(name.clone());
            })
            .unwrap_or_default()
    }
}

/// Sets to create or update before rules can switch to them, or `None`.
fn prepare(have: &Installed, want: &Ruleset) -> Option<Step> {
    let installed = &have.ruleset;
    let refs = referenced(installed);
    let mut staging = Staging::new(installed, want);
    let mut ops = Vec::new();
    // Makes set `name` (absent, unused, or already right) hold `elements`.
    let make = |ops: &mut Vec<Op>, name: String, elements: &SetElements, copy_of: Option<&str>| {
        let copy_of = copy_of.map(str::to_string);
        match installed.set(&name) {
            Some(existing) if existing.elements == *elements => {}
            Some(existing)
                if let Some((remove, add)) = set_delta(&existing.elements, elements)
                    && !rewriting_is_cheaper(&remove, &add, elements) =>
            {
                ops.push(Op::UpdateSet {
                    name,
                    remove,
                    add,
                    elements: elements.clone(),
                    copy_of,
                })
            }
            Some(_) => {
                ops.push(Op::DeleteSet(name.clone()));
                ops.push(Op::CreateSet {
                    name,
                    elements: elements.clone(),
                    copy_of,
                });
            }
            None => ops.push(Op::CreateSet {
                name,
                elements: elements.clone(),
                copy_of,
            }),
        }
    };
    let kept = set_prefix(installed, want);
    for set in &want.sets[..kept] {
        if refs.contains(set.name.as_str()) {
            if installed
                .set(&set.name)
                .is_some_and(|s| s.elements != set.elements)
            {
                let copy = staging.pick(set);
                make(&mut ops, copy, &set.elements, Some(&set.name));
            }
        } else {
            make(&mut ops, set.name.clone(), &set.elements, None);
        }
    }
    // The rest are created at the end in wanted order, as long as their
    // names are free or unused; from the first one rules still use, copies.
    let mut blocked = false;
    for set in &want.sets[kept..] {
        blocked = blocked || refs.contains(set.name.as_str());
        if blocked {
            let copy = staging.pick(set);
            make(&mut ops, copy, &set.elements, Some(&set.name));
        } else {
            if installed.set(&set.name).is_some() {
                ops.push(Op::DeleteSet(set.name.clone()));
            }
            ops.push(Op::CreateSet {
                name: set.name.clone(),
                elements: set.elements.clone(),
                copy_of: None,
            });
        }
    }
    if ops.is_empty() {
        return None;
    }
    let mut after = installed.clone();
    for op in &ops {
        match op {
            Op::CreateSet { name, elements, .. } => after.sets.push(Set {
                name: name.clone(),
                elements: elements.clone(),
            }),
            Op::UpdateSet { name, elements, .. } => {
                if let Some(set) = after.sets.iter_mut().find(|s| s.name == *name) {
                    set.elements = elements.clone();
                }
            }
            Op::DeleteSet(name) => after.sets.retain(|s| s.name != *name),
            _ => {}
        }
    }
    Some(Step {
        kind: StepKind::Prepare,
        ops,
        after,
    })
}

/// The rule with its set names replaced per `subst`.
fn substituted(rule: &Rule, subst: &HashMap<&str, String>) -> Rule {
    let mut rule = rule.clone();
    for m in &mut rule.matches {
        let Some(set) = m.set_mut() else { continue };
        if let Some(copy) = subst.get(set.as_str()) {
            *set = copy.clone();
        }
    }
    rule
}

/// Rules and chains to the wanted ones (using staging copies for sets not
/// ready under their own name), and deletion of sets nothing will use.
fn switch(have: &Installed, want: &Ruleset) -> Result<Step, String> {
    let installed = &have.ruleset;
    let kept_sets = set_prefix(installed, want);
    let mut staging = Staging::new(installed, want);
    let mut subst: HashMap<&str, String> = HashMap::new();
    let mut keep: HashSet<String> = HashSet::new();
    for (index, set) in want.sets.iter().enumerate() {
        let in_place = index < kept_sets;
        if in_place {
            keep.insert(set.name.clone());
        }
        if in_place && installed.set(&set.name) == Some(set) {
            continue;
        }
        let copy = staging.pick(set);
        if installed.set(&copy).map(|s| &s.elements) != Some(&set.elements) {
            return Err(format!("set `{}` has no ready copy `{copy}`", set.name));
        }
        keep.insert(copy.clone());
        subst.insert(&set.name, copy);
    }
    let target: Vec<(&str, Option<BaseHook>, Vec<Rule>)> = want
        .chains
        .iter()
        .map(|chain| {
            let rules = chain.rules.iter().map(|rule| substituted(rule, &subst)).collect();
            (chain.name.as_str(), chain.hook, rules)
        })
        .collect();

    let kept_chains = kept_prefix(
        &installed
            .chains
            .iter()
            .map(|c| (c.name.as_str(), c.hook))
            .collect::<Vec<_>>(),
        &target
            .iter()
            .map(|(name, hook, _)| (*name, *hook))
            .collect::<Vec<_>>(),
        |(name, _)| name,
        |a, b| a.1 == b.1,
    );
    let kept: HashSet<&str> = target[..kept_chains].iter().map(|(name, ..)| *name).collect();
    let dropped: Vec<&str> = installed
        .chains
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| !kept.contains(name))
        .collect();
    let dropped_set: HashSet<&str> = dropped.iter().copied().collect();

    let mut ops = Vec::new();
    // Rules go first: nothing may refer to a chain or set when it is deleted.
    for chain in &installed.chains {
        if dropped_set.contains(chain.name.as_str()) && !chain.rules.is_empty() {
            ops.push(Op::FlushChain(chain.name.clone()));
        }
    }
    let mut inserts = Vec::new();
    for (name, _, rules) in &target[..kept_chains] {
        let at = installed
            .chains
            .iter()
            .position(|c| c.name == *name)
            .ok_or_else(|| format!("kept chain `{name}` is not installed"))?;
        let old = &installed.chains[at].rules;
        let handles = &have.handles[at];
        // A rule jumping to a chain that is recreated must go too, even if
        // it reads the same: it refers to the old chain object.
        let stale =
            |rule: &Rule| is_foreign(rule) || jump_target(rule).is_some_and(|t| dropped_set.contains(t));
        let edits = rule_edits(old, rules, stale);
        for old_index in edits.deleted {
            ops.push(Op::DeleteRule {
                chain: name.to_string(),
                handle: handles[old_index],
                comment: old[old_index].comment.clone(),
            });
        }
        for (index, before) in edits.inserted {
            inserts.push(Op::AddRule {
                chain: name.to_string(),
                index,
                rule: rules[index].clone(),
                before: before.map(|old_index| handles[old_index]),
            });
        }
    }
    ops.extend(dropped.iter().map(|name| Op::DeleteChain(name.to_string())));
    let mut sets_after = installed.sets.clone();
    for set in &installed.sets {
        if !keep.contains(&set.name) {
            ops.push(Op::DeleteSet(set.name.clone()));
        }
    }
    sets_after.retain(|s| keep.contains(&s.name));
    for (name, hook, _) in &target[kept_chains..] {
        ops.push(Op::CreateChain {
            name: name.to_string(),
            hook: *hook,
        });
    }
    ops.extend(inserts);
    for (name, _, rules) in &target[kept_chains..] {
        ops.extend(appended(name, rules));
    }
    let after = Ruleset {
        table: want.table.clone(),
        sets: sets_after,
        chains: target
            .into_iter()
            .map(|(name, hook, rules)| dockfw_core::ruleset::Chain {
                name: name.to_string(),
                hook,
                rules,
            })
            .collect(),
    };
    Ok(Step {
        kind: StepKind::Switch,
        ops,
        after,
    })
}

/// How a chain's rules change: old rules to delete (by index), and new rules
/// to add (by new index) with the old rule they go before (`None`: at the end).
#[derive(Debug, Default, PartialEq, Eq)]
struct RuleEdits {
    deleted: Vec<usize>,
    inserted: Vec<(usize, Option<usize>)>,
}

/// A minimal edit (Myers diff) from `old` to `new`; rules `stale` says so of
/// are never kept.
fn rule_edits(old: &[Rule], new: &[Rule], stale: impl Fn(&Rule) -> bool) -> RuleEdits {
    // Rules compare by their exact kernel encoding; intern them as numbers.
    let mut ids: HashMap<(String, Vec<Expr>), u32> = HashMap::new();
    let mut next = 0u32;
    let mut id = |rule: &Rule, unique: bool| -> u32 {
        let fresh = |next: &mut u32| {
            *next += 1;
            *next - 1
        };
        match encode::rule_key(rule) {
            Some(key) if !unique => *ids.entry(key).or_insert_with(|| fresh(&mut next)),
            _ => fresh(&mut next),
        }
    };
    let old_ids: Vec<u32> = old.iter().map(|rule| id(rule, stale(rule))).collect();
    let new_ids: Vec<u32> = new.iter().map(|rule| id(rule, false)).collect();
    let mut old_kept = vec![false; old.len()];
    let mut new_to_old: Vec<Option<usize>> = vec![None; new.len()];
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &old_ids, &new_ids) {
        if let similar::DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = op
        {
            for i in 0..len {
                old_kept[old_index + i] = true;
                new_to_old[new_index + i] = Some(old_index + i);
            }
        }
    }
    let deleted = (0..old.len()).filter(|&i| !old_kept[i]).collect();
    let inserted = (0..new.len())
        .filter(|&index| new_to_old[index].is_none())
        .map(|index| (index, new_to_old[index + 1..].iter().find_map(|kept| *kept)))
        .collect();
    RuleEdits { deleted, inserted }
}

#[cfg(test)]
mod tests;
