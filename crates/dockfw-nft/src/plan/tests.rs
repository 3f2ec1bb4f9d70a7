//! The planner against a model of the kernel: each op is checked the way
//! nf_tables checks it (names free or present, nothing deleted while in
//! use, jumps and lookups resolve), and each step against the invariant.

use super::*;
use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{Chain, Family, Hook, Meter, RuntimeSet};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[path = "../../tests/common/mod.rs"]
mod common;

/// A chain of the model: name, hook, rules with their handles.
type ModelChain = (String, Option<BaseHook>, Vec<(u64, Rule)>);

/// The kernel's view: sets, and chains whose rules carry handles.
#[derive(Debug, Clone)]
struct Model {
    table: String,
    sets: Vec<Set>,
    chains: Vec<ModelChain>,
    next_handle: u64,
}

impl Model {
    fn from(installed: &Installed, next_handle: u64) -> Self {
        Self {
            table: installed.ruleset.table.clone(),
            sets: installed.ruleset.sets.clone(),
            chains: installed
                .ruleset
                .chains
                .iter()
                .zip(&installed.handles)
                .map(|(c, h)| {
                    (
                        c.name.clone(),
                        c.hook,
                        h.iter().copied().zip(c.rules.clone()).collect(),
                    )
                })
                .collect(),
            next_handle,
        }
    }

    fn installed(&self) -> Installed {
        let mut installed = Installed {
            ruleset: Ruleset {
                table: self.table.clone(),
                sets: self.sets.clone(),
                chains: self
                    .chains
                    .iter()
                    .map(|(name, hook, rules)| Chain {
                        name: name.clone(),
                        hook: *hook,
                        rules: rules.iter().map(|(_, r)| r.clone()).collect(),
                    })
                    .collect(),
            },
            handles: self
                .chains
                .iter()
                .map(|(_, _, rules)| rules.iter().map(|(h, _)| *h).collect())
                .collect(),
        };
        // As a read lists them.
        installed.ruleset.runtime_sets_first();
        installed
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.chains
            .iter()
            .flat_map(|(_, _, rules)| rules.iter().map(|(_, r)| r))
    }

    fn chain(&mut self, name: &str) -> Result<&mut ModelChain, String> {
        self.chains
            .iter_mut()
            .find(|c| c.0 == name)
            .ok_or(format!("no chain {name}"))
    }

    /// Applies one op as nf_tables would while preparing a transaction.
    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::CreateTable => return Err("table exists".into()),
            Op::CreateSet { name, elements, .. } => {
                if self.sets.iter().any(|s| s.name == *name) {
                    return Err(format!("set {name} exists"));
                }
                self.sets.push(Set {
                    name: name.clone(),
                    elements: elements.clone(),
                });
            }
            Op::UpdateSet {
                name, remove, add, ..
            } => {
                let set = self
                    .sets
                    .iter_mut()
                    .find(|s| s.name == *name)
                    .ok_or(format!("no set {name}"))?;
                set.elements = updated(&set.elements, remove, add).ok_or(format!("bad update of {name}"))?;
            }
            Op::DeleteSet(name) => {
                if self.rules().flat_map(set_refs).any(|s| s == name) {
                    return Err(format!("set {name} deleted while in use"));
                }
                let before = self.sets.len();
                self.sets.retain(|s| s.name != *name);
                if self.sets.len() == before {
                    return Err(format!("no set {name}"));
                }
            }
            Op::CreateChain { name, hook } => {
                if self.chains.iter().any(|c| c.0 == *name) {
                    return Err(format!("chain {name} exists"));
                }
                self.chains.push((name.clone(), *hook, Vec::new()));
            }
            Op::FlushChain(name) => self.chain(name)?.2.clear(),
            Op::DeleteChain(name) => {
                if self.rules().any(|r| jump_target(r) == Some(name)) {
                    return Err(format!("chain {name} deleted while jumped to"));
                }
                self.chain(name)?;
                self.chains.retain(|c| c.0 != *name);
            }
            Op::DeleteRule { chain, handle, .. } => {
                let rules = &mut self.chain(chain)?.2;
                let at = rules
                    .iter()
                    .position(|(h, _)| h == handle)
                    .ok_or(format!("no rule {handle} in {chain}"))?;
                rules.remove(at);
            }
            Op::AddRule {
                chain, rule, before, ..
            } => {
                for set in set_refs(rule) {
                    if !self.sets.iter().any(|s| s.name == set) {
                        return Err(format!("rule uses missing set {set}"));
                    }
                }
                if let Some(target) = jump_target(rule) {
                    match self.chains.iter().find(|c| c.0 == target) {
                        Some((_, None, _)) => {}
                        Some(_) => return Err(format!("jump to base chain {target}")),
                        None => return Err(format!("jump to missing chain {target}")),
                    }
                }
                let handle = self.next_handle;
                self.next_handle += 1;
                let rules = &mut self.chain(chain)?.2;
                let at = match before {
                    None => rules.len(),
                    Some(h) => rules
                        .iter()
                        .position(|(x, _)| x == h)
                        .ok_or(format!("no rule {h} to insert before in {chain}"))?,
                };
                rules.insert(at, (handle, rule.clone()));
            }
        }
        Ok(())
    }
}

/// `elements` less the intervals of `remove` (each must be there) plus
/// those of `add` (none may overlap what is there), as the kernel would.
fn updated(elements: &SetElements, remove: &SetElements, add: &SetElements) -> Option<SetElements> {
    fn apply<T: Copy + Ord>(
        old: &[Interval<T>],
        remove: &[Interval<T>],
        add: &[Interval<T>],
    ) -> Option<Vec<Interval<T>>> {
        let mut out: Vec<Interval<T>> = old.to_vec();
        for gone in remove {
            let at = out.iter().position(|i| i == gone)?;
            out.remove(at);
        }
        for new in add {
            if out.iter().any(|i| i.first <= new.last && new.first <= i.last) {
                return None;
            }
            out.push(*new);
        }
        out.sort();
        Some(out)
    }
    Some(match (elements, remove, add) {
        (SetElements::Ipv4(o), SetElements::Ipv4(r), SetElements::Ipv4(a)) => {
            SetElements::Ipv4(apply(o, r, a)?)
        }
        (SetElements::Ipv6(o), SetElements::Ipv6(r), SetElements::Ipv6(a)) => {
            SetElements::Ipv6(apply(o, r, a)?)
        }
        (SetElements::Port(o), SetElements::Port(r), SetElements::Port(a)) => {
            SetElements::Port(apply(o, r, a)?)
        }
        (SetElements::Ipv4Addrs(o), SetElements::Ipv4Addrs(r), SetElements::Ipv4Addrs(a)) => {
            SetElements::Ipv4Addrs(apply(o, r, a)?)
        }
        (SetElements::Ipv6Addrs(o), SetElements::Ipv6Addrs(r), SetElements::Ipv6Addrs(a)) => {
            SetElements::Ipv6Addrs(apply(o, r, a)?)
        }
        _ => return None,
    })
}

/// Runs the planner from `start` (`None`: no table) to `want` on the model,
/// checking each step; returns the steps' kinds.
fn converge(start: Option<&Ruleset>, want: &Ruleset) -> Result<Vec<StepKind>, String> {
    converge_steps(start, want).map(|steps| steps.iter().map(|(step, _)| step.kind).collect())
}

/// [`converge`], returning each step with the sets whose elements belong to
/// run time it recreated.
fn converge_steps(start: Option<&Ruleset>, want: &Ruleset) -> Result<Vec<(Step, Vec<String>)>, String> {
    let mut next_handle = 1000;
    let mut state: Option<Installed> = start.map(|r| Installed {
        handles: r
            .chains
            .iter()
            .map(|c| {
                c.rules
                    .iter()
                    .map(|_| {
                        next_handle += 1;
                        next_handle - 1
                    })
                    .collect()
            })
            .collect(),
        ruleset: r.clone(),
    });
    // No table enforces what a table without chains does: nothing.
    let old = start.map(common::effective).unwrap_or_default();
    let new = common::effective(want);
    let mut kinds = Vec::new();
    while let Some(step) = plan(state.as_ref(), want)? {
        if kinds.len() == 4 {
            let kinds: Vec<StepKind> = kinds.iter().map(|(step, _): &(Step, _)| step.kind).collect();
            return Err(format!("more than four steps: {kinds:?}"));
        }
        let mut model = match &state {
            Some(installed) => Model::from(installed, next_handle),
            None => {
                if step.ops.first() != Some(&Op::CreateTable) {
                    return Err("first step does not create the table".into());
                }
                Model {
                    table: want.table.clone(),
                    sets: Vec::new(),
                    chains: Vec::new(),
                    next_handle,
                }
            }
        };
        let before_refs: HashSet<String> = model.rules().flat_map(set_refs).map(str::to_string).collect();
        let skip = usize::from(state.is_none());
        for op in &step.ops[skip..] {
            // The invariant: a Prepare touches no rule and no set a rule
            // uses; a Switch changes no set's elements.
            match (step.kind, op) {
                (
                    StepKind::Prepare,
                    Op::CreateSet { name, .. } | Op::UpdateSet { name, .. } | Op::DeleteSet(name),
                ) if !before_refs.contains(name) => {}
                (StepKind::Prepare, op) => return Err(format!("Prepare does {op:?}")),
                (StepKind::Switch, Op::CreateSet { .. } | Op::UpdateSet { .. } | Op::CreateTable) => {
                    return Err(format!("Switch does {op:?}"));
                }
                (StepKind::Create, Op::CreateSet { .. } | Op::UpdateSet { .. }) => {
                    return Err(format!("Create does {op:?}"));
                }
                // An Update changes one set's elements and nothing else.
                (StepKind::Update, Op::UpdateSet { .. }) if step.ops.len() == 1 => {}
                (StepKind::Update, op) => return Err(format!("Update does {op:?}")),
                _ => {}
            }
            model
                .apply(op)
                .map_err(|e| format!("{:?} step: {e}", step.kind))?;
        }
        next_handle = model.next_handle;
        let reached = model.installed();
        if reached.ruleset != step.after {
            return Err(format!(
                "{:?} step left\n{:#?}\ninstead of\n{:#?}",
                step.kind, reached.ruleset, step.after
            ));
        }
        // Every state between transactions enforces the old or the new policy.
        let now = common::effective(&reached.ruleset);
        if now != new && now != old {
            return Err(format!("after {:?} the table enforces neither policy", step.kind));
        }
        let recreated = recreated_runtime_sets(&step, state.as_ref(), want)
            .map(str::to_string)
            .collect();
        kinds.push((step, recreated));
        state = Some(reached);
    }
    let end = state.map(|s| s.ruleset);
    if end.as_ref() != Some(want) {
        return Err(format!("ended at {end:#?}"));
    }
    Ok(kinds)
}

#[test]
fn random_sequences_converge_one_safe_step_at_a_time() {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    let seen = std::cell::RefCell::new(HashMap::<Vec<StepKind>, usize>::new());
    runner
        .run(&common::strategy::sequence("t", 6), |rulesets| {
            let mut previous = None;
            for want in &rulesets {
                let result = converge(previous, want);
                prop_assert!(result.is_ok(), "{}", result.as_ref().unwrap_err());
                *seen.borrow_mut().entry(result.unwrap()).or_default() += 1;
                previous = Some(want);
            }
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner();
    eprintln!("step sequences seen: {seen:?}");
    use StepKind::{Prepare, Switch};
    // Every shape of update is exercised, the staging one included.
    for shape in [
        vec![],
        vec![Switch],
        vec![Prepare],
        vec![Prepare, Switch],
        vec![Prepare, Switch, Prepare, Switch],
    ] {
        assert!(
            seen.get(&shape).is_some_and(|&n| n >= 10),
            "{shape:?} seen too rarely"
        );
    }
}

fn v4(a: u8) -> SetElements {
    SetElements::Ipv4(vec![Interval::single(std::net::Ipv4Addr::new(10, 0, 0, a))])
}

fn lookup(set: &str) -> Rule {
    Rule {
        comment: set.into(),
        matches: vec![Match::SourceIn {
            family: dockfw_core::ruleset::Family::Ipv4,
            set: set.into(),
        }],
        statements: vec![],
        verdict: Some(Verdict::Drop),
    }
}

fn ruleset(sets: &[(&str, SetElements)], rules: Vec<Rule>) -> Ruleset {
    Ruleset {
        table: "t".into(),
        sets: sets
            .iter()
            .map(|(name, elements)| Set {
                name: name.to_string(),
                elements: elements.clone(),
            })
            .collect(),
        chains: vec![Chain {
            name: "forward".into(),
            hook: Some(BaseHook {
                hook: Hook::Forward,
                priority: -5,
            }),
            rules,
        }],
    }
}

#[test]
fn the_documented_sequences() {
    use StepKind::{Create, Prepare, Switch};
    let base = ruleset(&[("a", v4(1))], vec![lookup("a")]);
    // First install: sets, then rules; without sets, one transaction.
    assert_eq!(converge(None, &base), Ok(vec![Prepare, Switch]));
    assert_eq!(converge(None, &ruleset(&[], vec![])), Ok(vec![Create]));
    // Only rules change: one Switch.
    let mut renamed = base.clone();
    renamed.chains[0].rules[0].comment = "renamed".into();
    assert_eq!(converge(Some(&base), &renamed), Ok(vec![Switch]));
    // A new set: Prepare (create it), Switch (use it).
    let added = ruleset(&[("a", v4(1)), ("b", v4(2))], vec![lookup("a"), lookup("b")]);
    assert_eq!(converge(Some(&base), &added), Ok(vec![Prepare, Switch]));
    // A set rules use changes, an interval merging with its neighbour
    // (10.0.0.1 becomes 10.0.0.1-2): copy, switch, update, switch back.
    let merged = ruleset(
        &[(
            "a",
            SetElements::Ipv4(vec![
                Interval::new(
                    std::net::Ipv4Addr::new(10, 0, 0, 1),
                    std::net::Ipv4Addr::new(10, 0, 0, 2),
                )
                .unwrap(),
            ]),
        )],
        vec![lookup("a")],
    );
    assert_eq!(
        converge(Some(&base), &merged),
        Ok(vec![Prepare, Switch, Prepare, Switch])
    );
    // Adjoining intervals swapped (10.0.0.1 out, 10.0.0.2 in) reshape too.
    let adjoining = ruleset(&[("a", v4(2))], vec![lookup("a")]);
    assert_eq!(
        converge(Some(&base), &adjoining),
        Ok(vec![Prepare, Switch, Prepare, Switch])
    );
    // Whole intervals added or removed, nothing else: one Update in place.
    let changed = ruleset(&[("a", v4(3))], vec![lookup("a")]);
    assert_eq!(converge(Some(&base), &changed), Ok(vec![StepKind::Update]));
    // Two sets rules use changing: staging copies, switched at once.
    let two = ruleset(&[("a", v4(1)), ("b", v4(2))], vec![lookup("a"), lookup("b")]);
    let two_changed = ruleset(&[("a", v4(3)), ("b", v4(5))], vec![lookup("a"), lookup("b")]);
    assert_eq!(
        converge(Some(&two), &two_changed),
        Ok(vec![Prepare, Switch, Prepare, Switch])
    );
    // An unused set changes: updated in place, nothing else.
    let unused = ruleset(&[("a", v4(1)), ("u", v4(5))], vec![lookup("a")]);
    let unused2 = ruleset(&[("a", v4(1)), ("u", v4(6))], vec![lookup("a")]);
    assert_eq!(converge(Some(&unused), &unused2), Ok(vec![Prepare]));
    // A dropped set goes in the Switch that stops using it.
    assert_eq!(converge(Some(&added), &base), Ok(vec![Switch]));
    // A meter's parameters change: a new meter under a staging name first.
    let meter = |size| {
        SetElements::Meter(Meter {
            family: dockfw_core::ruleset::Family::Ipv4,
            size,
            timeout_secs: Some(60),
        })
    };
    let metered = |size| {
        let mut r = ruleset(&[("m", meter(size))], vec![]);
        r.chains[0].rules.push(Rule {
            comment: "limit".into(),
            matches: vec![Match::SourceRateOver {
                family: dockfw_core::ruleset::Family::Ipv4,
                set: "m".into(),
                rate: dockfw_core::ruleset::Rate {
                    count: 1,
                    unit: dockfw_core::ruleset::RateUnit::Second,
                },
                burst: 1,
            }],
            statements: vec![],
            verdict: Some(Verdict::Drop),
        });
        r
    };
    assert_eq!(
        converge(Some(&metered(10)), &metered(20)),
        Ok(vec![Prepare, Switch, Prepare, Switch])
    );
    // A base chain's priority changes: recreated within one Switch.
    let mut moved = base.clone();
    moved.chains[0].hook = Some(BaseHook {
        hook: Hook::Forward,
        priority: -10,
    });
    assert_eq!(converge(Some(&base), &moved), Ok(vec![Switch]));
}

#[test]
fn unchanged_rules_keep_their_handles() {
    let rules: Vec<Rule> = ["a", "b", "c", "d"].into_iter().map(lookup).collect();
    let old = ruleset(
        &[("a", v4(1)), ("b", v4(2)), ("c", v4(3)), ("d", v4(4))],
        rules.clone(),
    );
    let mut new = old.clone();
    new.chains[0].rules = vec![rules[0].clone(), lookup("x"), rules[1].clone(), rules[3].clone()];
    new.sets.push(Set {
        name: "x".into(),
        elements: v4(9),
    });
    let installed = Installed {
        ruleset: old,
        handles: vec![vec![11, 12, 13, 14]],
    };
    let prepared = plan(Some(&installed), &new).unwrap().unwrap();
    assert_eq!(prepared.kind, StepKind::Prepare);
    let installed = Installed {
        ruleset: prepared.after,
        handles: installed.handles,
    };
    let switch = plan(Some(&installed), &new).unwrap().unwrap();
    assert_eq!(
        switch.ops,
        vec![
            Op::DeleteRule {
                chain: "forward".into(),
                handle: 13,
                comment: "c".into()
            },
            Op::AddRule {
                chain: "forward".into(),
                index: 1,
                rule: lookup("x"),
                before: Some(12)
            },
        ]
    );
}

#[test]
fn staging_names_fit_and_differ() {
    let long = "é".repeat(127) + "x";
    for name in ["a", long.as_str()] {
        let names: Vec<String> = staging_names(name).take(3).collect();
        assert!(names.iter().all(|n| n.len() <= MAX_NAME), "{names:?}");
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 3);
    }
    assert_eq!(staging_names("a").next().unwrap(), "a.next");
}

fn runtime(timeout_ms: Option<u64>) -> SetElements {
    SetElements::Runtime(RuntimeSet {
        family: Family::Ipv4,
        timeout_ms,
    })
}

/// Every set a step creates or deletes, by name.
fn touched_sets(steps: &[(Step, Vec<String>)]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|(step, _)| &step.ops)
        .filter_map(|op| match op {
            Op::CreateSet { name, .. } | Op::DeleteSet(name) | Op::UpdateSet { name, .. } => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn run_time_sets_stay_whatever_else_changes_and_are_recreated_only_for_their_own_flags() {
    use StepKind::{Prepare, Switch};
    let hour = Some(3_600_000);
    let base = ruleset(
        &[("set-m-v4", runtime(hour)), ("a", v4(1))],
        vec![lookup("set-m-v4"), lookup("a")],
    );
    assert!(base.has_runtime_sets_first());
    // Another rule, a new set, and a new run-time set listed before ours:
    // nothing happens to ours (a set kept in place keeps its elements).
    let grown = ruleset(
        &[
            ("set-a-v4", runtime(None)),
            ("set-m-v4", runtime(hour)),
            ("0", v4(2)),
            ("a", v4(1)),
        ],
        vec![lookup("0"), lookup("set-m-v4"), lookup("a"), lookup("set-a-v4")],
    );
    let steps = converge_steps(Some(&base), &grown).unwrap();
    let touched = touched_sets(&steps);
    assert!(
        !touched.iter().any(|name| name.starts_with("set-m-v4")),
        "{touched:?}"
    );
    assert!(steps.iter().all(|(_, recreated)| recreated.is_empty()));
    // And back.
    let steps = converge_steps(Some(&grown), &base).unwrap();
    assert!(
        !touched_sets(&steps)
            .iter()
            .any(|name| name.starts_with("set-m-v4"))
    );

    // Its default timeout changes while a rule uses it: a new, empty set,
    // through a staging copy, and said so.
    let shorter = ruleset(
        &[("set-m-v4", runtime(Some(60_000))), ("a", v4(1))],
        vec![lookup("set-m-v4"), lookup("a")],
    );
    let steps = converge_steps(Some(&base), &shorter).unwrap();
    let kinds: Vec<StepKind> = steps.iter().map(|(step, _)| step.kind).collect();
    assert_eq!(kinds, [Prepare, Switch, Prepare, Switch]);
    let recreated: Vec<&String> = steps.iter().flat_map(|(_, r)| r).collect();
    assert_eq!(recreated, ["set-m-v4"]);
    // Unused, it is recreated in one Prepare, and said so too.
    let unused = |timeout| ruleset(&[("set-m-v4", runtime(timeout)), ("a", v4(1))], vec![lookup("a")]);
    let steps = converge_steps(Some(&unused(hour)), &unused(None)).unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].0.kind, Prepare);
    assert_eq!(steps[0].1, ["set-m-v4"]);
    // A run-time set no longer wanted is deleted, not "recreated".
    let steps = converge_steps(Some(&unused(hour)), &ruleset(&[("a", v4(1))], vec![lookup("a")])).unwrap();
    assert!(steps.iter().all(|(_, recreated)| recreated.is_empty()));
    assert!(touched_sets(&steps).contains(&"set-m-v4".to_string()));
}
