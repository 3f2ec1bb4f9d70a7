//! proptest strategies for valid `Ruleset`s: every Match, Statement and
//! Verdict kind, normalised interval sets (IPv6 and the top of each range
//! included), run-time sets (listed first, as a ruleset lists them), acyclic
//! jumps to regular chains, one meter per meter match.

use dockfw_core::interval::{Interval, normalize};
use dockfw_core::ruleset::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn v4_intervals() -> impl Strategy<Value = Vec<Interval<Ipv4Addr>>> {
    let start = prop_oneof![1 => Just(0u32), 1 => Just(u32::MAX), 8 => any::<u32>()];
    prop::collection::vec((start, 0u32..=32), 0..12).prop_map(|v| {
        normalize(
            v.into_iter()
                .map(|(addr, prefix)| {
                    let mask = u32::MAX.checked_shr(prefix).unwrap_or(0);
                    let first = addr & !mask;
                    Interval::new(Ipv4Addr::from(first), Ipv4Addr::from(first | mask)).unwrap()
                })
                .collect(),
        )
    })
}

fn v6_intervals() -> impl Strategy<Value = Vec<Interval<Ipv6Addr>>> {
    let start = prop_oneof![1 => Just(0u128), 1 => Just(u128::MAX), 8 => any::<u128>()];
    let span = prop_oneof![(0u32..=128).prop_map(Err), (0u128..1000).prop_map(Ok)];
    prop::collection::vec((start, span), 0..12).prop_map(|v| {
        normalize(
            v.into_iter()
                .map(|(addr, span)| {
                    let (first, last) = match span {
                        // A CIDR prefix.
                        Err(prefix) => {
                            let mask = u128::MAX.checked_shr(prefix).unwrap_or(0);
                            (addr & !mask, (addr & !mask) | mask)
                        }
                        // An arbitrary short range.
                        Ok(len) => (addr, addr.saturating_add(len)),
                    };
                    Interval::new(Ipv6Addr::from(first), Ipv6Addr::from(last)).unwrap()
                })
                .collect(),
        )
    })
}

fn port_intervals() -> impl Strategy<Value = Vec<Interval<u16>>> {
    let start = prop_oneof![1 => Just(0u16), 1 => Just(u16::MAX), 8 => any::<u16>()];
    prop::collection::vec((start, 0u16..200), 0..12).prop_map(|v| {
        normalize(
            v.into_iter()
                .map(|(first, len)| Interval::new(first, first.saturating_add(len)).unwrap())
                .collect(),
        )
    })
}

fn constant_set() -> impl Strategy<Value = SetElements> {
    prop_oneof![
        v4_intervals().prop_map(SetElements::Ipv4),
        v6_intervals().prop_map(SetElements::Ipv6),
        port_intervals().prop_map(SetElements::Port),
        // Hashes of single addresses, some of them neighbours.
        v4_points().prop_map(SetElements::Ipv4Addrs),
        v6_points().prop_map(SetElements::Ipv6Addrs),
    ]
}

/// Sorted distinct single addresses, each an interval of one.
fn v4_points() -> impl Strategy<Value = Vec<Interval<Ipv4Addr>>> {
    let point = prop_oneof![1 => Just(0u32), 1 => Just(u32::MAX), 4 => 0x0a00_0000u32..0x0a00_0010, 8 => any::<u32>()];
    prop::collection::btree_set(point, 1..12).prop_map(|points| {
        points
            .into_iter()
            .map(|p| Interval::single(Ipv4Addr::from(p)))
            .collect()
    })
}

fn v6_points() -> impl Strategy<Value = Vec<Interval<Ipv6Addr>>> {
    let point = prop_oneof![1 => Just(0u128), 1 => Just(u128::MAX), 8 => any::<u128>()];
    prop::collection::btree_set(point, 1..12).prop_map(|points| {
        points
            .into_iter()
            .map(|p| Interval::single(Ipv6Addr::from(p)))
            .collect()
    })
}

/// A set whose elements belong to run time (a policy's dynamic set), with or
/// without a default timeout in whole seconds.
fn runtime_set() -> impl Strategy<Value = SetElements> {
    (family(), proptest::option::of(1u64..100_000)).prop_map(|(family, secs)| {
        SetElements::Runtime(RuntimeSet {
            family,
            timeout_ms: secs.map(|s| s * 1000),
        })
    })
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::Ipv4), Just(Family::Ipv6)]
}

fn ifname() -> impl Strategy<Value = IfName> {
    prop_oneof![
        "[a-z0-9.-]{0,15}".prop_map(IfName::Exact),
        "[a-z0-9-]{1,15}".prop_map(IfName::Prefix),
    ]
}

fn rate() -> impl Strategy<Value = Rate> {
    let unit = prop_oneof![
        Just(RateUnit::Second),
        Just(RateUnit::Minute),
        Just(RateUnit::Hour),
        Just(RateUnit::Day)
    ];
    (1u64..100_000, unit).prop_map(|(count, unit)| Rate { count, unit })
}

/// A match before set names are resolved (`usize` picks among the sets of
/// the right kind; meters are created on resolution).
#[derive(Debug, Clone)]
enum Seed {
    Plain(Match),
    SourceIn(Family, usize),
    DialledAddrIn(Family, usize),
    PortSet(usize),
    RateOver(Family, Rate, u32, Option<u32>, u32),
    ConnOver(Family, u32, u32),
}

fn seed() -> impl Strategy<Value = Seed> {
    prop_oneof![
        ifname().prop_map(|n| Seed::Plain(Match::IifName(n))),
        ifname().prop_map(|n| Seed::Plain(Match::OifName(n))),
        family().prop_map(|f| Seed::Plain(Match::NfProto(f))),
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)].prop_map(|p| Seed::Plain(Match::L4Proto(p))),
        prop_oneof![Just(CtState::New), Just(CtState::NotNew)].prop_map(|s| Seed::Plain(Match::CtState(s))),
        Just(Seed::Plain(Match::CtStatusDnat)),
        (family(), any::<usize>()).prop_map(|(f, i)| Seed::SourceIn(f, i)),
        (family(), any::<usize>()).prop_map(|(f, i)| Seed::DialledAddrIn(f, i)),
        any::<u16>().prop_map(|p| Seed::Plain(Match::DialledPort(PortMatch::Single(p)))),
        (any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| { Seed::Plain(Match::DialledPort(PortMatch::Range(a.min(b), a.max(b)))) }),
        any::<usize>().prop_map(Seed::PortSet),
        (rate(), 1u32..10_000).prop_map(|(rate, burst)| Seed::Plain(Match::Limit { rate, burst })),
        (
            family(),
            rate(),
            1u32..1000,
            prop::option::of(1u32..=86_400),
            // A meter dockfw writes always has a size (core's METER_SIZE);
            // without one the kernel picks its own, which reads back as it.
            1u32..100_000
        )
            .prop_map(|(f, r, b, t, s)| Seed::RateOver(f, r, b, t, s)),
        (family(), 0u32..10_000, 1u32..100_000).prop_map(|(f, c, s)| Seed::ConnOver(f, c, s)),
    ]
}

#[derive(Debug, Clone)]
enum VerdictSeed {
    None,
    Accept,
    Drop,
    Return,
    Jump(usize),
    Goto(usize),
    Reject(RejectWith),
}

fn verdict_seed() -> impl Strategy<Value = VerdictSeed> {
    prop_oneof![
        Just(VerdictSeed::None),
        Just(VerdictSeed::Accept),
        Just(VerdictSeed::Drop),
        Just(VerdictSeed::Return),
        any::<usize>().prop_map(VerdictSeed::Jump),
        any::<usize>().prop_map(VerdictSeed::Goto),
        Just(VerdictSeed::Reject(RejectWith::TcpReset)),
        Just(VerdictSeed::Reject(RejectWith::IcmpxAdminProhibited)),
    ]
}

/// Printable text with some multi-byte characters, at most 120 bytes.
fn text() -> impl Strategy<Value = String> {
    "[ -~é☃]{0,40}"
}

#[derive(Debug, Clone)]
struct RuleSeed {
    comment: String,
    matches: Vec<Seed>,
    logs: Vec<String>,
    verdict: VerdictSeed,
}

fn rule_seed() -> impl Strategy<Value = RuleSeed> {
    (
        text(),
        prop::collection::vec(seed(), 0..6),
        prop::collection::vec(text(), 0..2),
        verdict_seed(),
    )
        .prop_map(|(comment, matches, logs, verdict)| RuleSeed {
            comment,
            matches,
            logs,
            verdict,
        })
}

fn hook() -> impl Strategy<Value = Option<BaseHook>> {
    let base = (prop_oneof![Just(Hook::Forward), Just(Hook::Input)], -400i32..400)
        .prop_map(|(hook, priority)| Some(BaseHook { hook, priority }));
    prop_oneof![2 => Just(None), 1 => base]
}

/// A valid random ruleset for table `table`.
pub fn ruleset(table: &'static str) -> impl Strategy<Value = Ruleset> {
    (
        prop::collection::vec(prop_oneof![4 => constant_set(), 1 => runtime_set()], 0..6),
        prop::collection::vec((hook(), prop::collection::vec(rule_seed(), 0..6)), 1..7),
    )
        .prop_map(move |(sets, chains)| resolve(table, sets, chains))
}

fn resolve(table: &str, sets: Vec<SetElements>, chains: Vec<(Option<BaseHook>, Vec<RuleSeed>)>) -> Ruleset {
    let mut sets: Vec<Set> = sets
        .into_iter()
        .enumerate()
        .map(|(i, elements)| Set {
            name: format!("set-{i}"),
            elements,
        })
        .collect();
    let pick = |sets: &[Set], want: &dyn Fn(&SetElements) -> bool, i: usize| {
        let names: Vec<&String> = sets
            .iter()
            .filter(|s| want(&s.elements))
            .map(|s| &s.name)
            .collect();
        (!names.is_empty()).then(|| names[i % names.len()].clone())
    };
    let names: Vec<String> = (0..chains.len()).map(|i| format!("chain-{i}")).collect();
    let regular: Vec<bool> = chains.iter().map(|(hook, _)| hook.is_none()).collect();
    let mut meters = 0;
    let mut out = Vec::new();
    for (index, (hook, seeds)) in chains.into_iter().enumerate() {
        let mut rules = Vec::new();
        for seed in seeds {
            let mut matches = Vec::new();
            for m in seed.matches {
                let resolved = match m {
                    Seed::Plain(m) => Some(m),
                    Seed::SourceIn(family, i) | Seed::DialledAddrIn(family, i) => {
                        let want = move |e: &SetElements| match family {
                            Family::Ipv4 => matches!(e, SetElements::Ipv4(_) | SetElements::Ipv4Addrs(_)),
                            Family::Ipv6 => matches!(e, SetElements::Ipv6(_) | SetElements::Ipv6Addrs(_)),
                        } || matches!(e, SetElements::Runtime(r) if r.family == family);
                        pick(&sets, &want, i).map(|set| match m {
                            Seed::SourceIn(..) => Match::SourceIn { family, set },
                            _ => Match::DialledAddrIn { family, set },
                        })
                    }
                    Seed::PortSet(i) => pick(&sets, &|e| matches!(e, SetElements::Port(_)), i)
                        .map(|set| Match::DialledPort(PortMatch::Set(set))),
                    Seed::RateOver(family, rate, burst, timeout_secs, size) => {
                        meters += 1;
                        let set = format!("meter-{meters}");
                        let meter = Meter {
                            family,
                            size,
                            timeout_secs,
                        };
                        sets.push(Set {
                            name: set.clone(),
                            elements: SetElements::Meter(meter),
                        });
                        Some(Match::SourceRateOver {
                            family,
                            set,
                            rate,
                            burst,
                        })
                    }
                    Seed::ConnOver(family, count, size) => {
                        meters += 1;
                        let set = format!("meter-{meters}");
                        // conncount entries are garbage-collected by conntrack;
                        // the kernel refuses a timeout on such sets.
                        let meter = Meter {
                            family,
                            size,
                            timeout_secs: None,
                        };
                        sets.push(Set {
                            name: set.clone(),
                            elements: SetElements::Meter(meter),
                        });
                        Some(Match::SourceConnectionsOver { family, set, count })
                    }
                };
                matches.extend(resolved);
            }
            // Jumps only to later regular chains: no loops, no base chains.
            let target = |i: usize| {
                let later: Vec<&String> = (index + 1..names.len())
                    .filter(|&j| regular[j])
                    .map(|j| &names[j])
                    .collect();
                (!later.is_empty()).then(|| later[i % later.len()].clone())
            };
            let verdict = match seed.verdict {
                VerdictSeed::None => None,
                VerdictSeed::Accept => Some(Verdict::Accept),
                VerdictSeed::Drop => Some(Verdict::Drop),
                VerdictSeed::Return => Some(Verdict::Return),
                VerdictSeed::Jump(i) => Some(target(i).map_or(Verdict::Accept, Verdict::Jump)),
                VerdictSeed::Goto(i) => Some(target(i).map_or(Verdict::Drop, Verdict::Goto)),
                VerdictSeed::Reject(with) => Some(Verdict::Reject(with)),
            };
            // Rules with and without a counter (last among the statements,
            // as the compiler writes it).
            let counted = seed.comment.len() % 3 != 0;
            rules.push(Rule {
                comment: seed.comment,
                matches,
                statements: seed
                    .logs
                    .into_iter()
                    // Both forms: an even-length prefix logs to an NFLOG group.
                    .map(|prefix| Statement::Log {
                        group: (prefix.len() % 2 == 0).then_some(prefix.len() as u16),
                        prefix,
                    })
                    .chain(counted.then_some(Statement::Counter))
                    .collect(),
                verdict,
            });
        }
        out.push(Chain {
            name: names[index].clone(),
            hook,
            rules,
        });
    }
    let mut ruleset = Ruleset {
        table: table.to_string(),
        sets,
        chains: out,
    };
    ruleset.runtime_sets_first();
    ruleset
}

/// A change to a ruleset that keeps it valid (see [`sequence`]).
#[derive(Debug, Clone)]
enum Mutation {
    /// New elements for the `usize`-th set of the same kind, if any.
    Elements(usize, SetElements),
    RotateSets(usize),
    RotateChains(usize),
    DropRule(usize, usize),
    /// Copy a rule of a chain to another position of the same chain.
    CopyRule(usize, usize, usize),
    Comment(usize, usize, String),
    /// Another size for a meter (meters cannot change in place).
    MeterSize(usize, u32),
    /// Another priority for a base chain.
    Priority(usize, i32),
    /// Drop a set no rule uses.
    DropUnusedSet(usize),
    /// A ruleset unrelated to the previous one (same table).
    Fresh(Ruleset),
}

fn mutation(table: &'static str) -> impl Strategy<Value = Mutation> {
    let any_index = any::<usize>();
    prop_oneof![
        3 => (any_index, constant_set()).prop_map(|(i, e)| Mutation::Elements(i, e)),
        1 => (1usize..5).prop_map(Mutation::RotateSets),
        1 => (1usize..5).prop_map(Mutation::RotateChains),
        2 => (any_index, any_index).prop_map(|(c, r)| Mutation::DropRule(c, r)),
        2 => (any_index, any_index, any_index).prop_map(|(c, r, to)| Mutation::CopyRule(c, r, to)),
        1 => (any_index, any_index, text()).prop_map(|(c, r, t)| Mutation::Comment(c, r, t)),
        1 => (any_index, 1u32..100_000).prop_map(|(i, s)| Mutation::MeterSize(i, s)),
        1 => (any_index, -400i32..400).prop_map(|(i, p)| Mutation::Priority(i, p)),
        1 => any_index.prop_map(Mutation::DropUnusedSet),
        1 => ruleset(table).prop_map(Mutation::Fresh),
    ]
}

fn pick<T>(items: &mut [T], i: usize) -> Option<&mut T> {
    let len = items.len();
    (len > 0).then(|| &mut items[i % len])
}

fn mutate(mut ruleset: Ruleset, mutation: Mutation) -> Ruleset {
    let same_kind = |a: &SetElements, b: &SetElements| std::mem::discriminant(a) == std::mem::discriminant(b);
    match mutation {
        Mutation::Elements(i, elements) => {
            let mut candidates: Vec<&mut Set> = ruleset
                .sets
                .iter_mut()
                .filter(|s| same_kind(&s.elements, &elements))
                .collect();
            if let Some(set) = pick(&mut candidates, i) {
                set.elements = elements;
            }
        }
        Mutation::RotateSets(n) => {
            let len = ruleset.sets.len().max(1);
            ruleset.sets.rotate_left(n % len);
        }
        Mutation::RotateChains(n) => {
            let len = ruleset.chains.len().max(1);
            ruleset.chains.rotate_left(n % len);
        }
        Mutation::DropRule(c, r) => {
            if let Some(chain) = pick(&mut ruleset.chains, c)
                && !chain.rules.is_empty()
            {
                let len = chain.rules.len();
                chain.rules.remove(r % len);
            }
        }
        Mutation::CopyRule(c, r, to) => {
            if let Some(chain) = pick(&mut ruleset.chains, c)
                && !chain.rules.is_empty()
                // A copied meter rule would share its meter; keep one user each.
                && !chain.rules[r % chain.rules.len()].matches.iter().any(|m| {
                    matches!(m, Match::SourceRateOver { .. } | Match::SourceConnectionsOver { .. })
                })
            {
                let rule = chain.rules[r % chain.rules.len()].clone();
                let at = to % (chain.rules.len() + 1);
                chain.rules.insert(at, rule);
            }
        }
        Mutation::Comment(c, r, text) => {
            if let Some(chain) = pick(&mut ruleset.chains, c)
                && let Some(rule) = pick(&mut chain.rules, r)
            {
                rule.comment = text;
            }
        }
        Mutation::MeterSize(i, size) => {
            let mut meters: Vec<&mut Meter> = ruleset
                .sets
                .iter_mut()
                .filter_map(|s| match &mut s.elements {
                    SetElements::Meter(m) => Some(m),
                    _ => None,
                })
                .collect();
            if let Some(meter) = pick(&mut meters, i) {
                meter.size = size;
            }
        }
        Mutation::Priority(i, priority) => {
            let mut bases: Vec<&mut BaseHook> = ruleset
                .chains
                .iter_mut()
                .filter_map(|c| c.hook.as_mut())
                .collect();
            if let Some(base) = pick(&mut bases, i) {
                base.priority = priority;
            }
        }
        Mutation::DropUnusedSet(i) => {
            let used: std::collections::HashSet<String> = ruleset
                .chains
                .iter()
                .flat_map(|c| &c.rules)
                .flat_map(|r| &r.matches)
                .filter_map(|m| m.set().map(str::to_string))
                .collect();
            let unused: Vec<usize> = (0..ruleset.sets.len())
                .filter(|&s| !used.contains(&ruleset.sets[s].name))
                .collect();
            if !unused.is_empty() {
                ruleset.sets.remove(unused[i % unused.len()]);
            }
        }
        Mutation::Fresh(fresh) => return fresh,
    }
    ruleset
}

/// A sequence of 2 to `max` valid rulesets for `table`, each a few small
/// changes away from the one before (new elements, reordered sets and
/// chains, rules dropped, copied or renamed, meters and base chain
/// priorities changed, unused sets dropped) or, now and then, an unrelated
/// one. Random rulesets reuse names (`set-0`, `chain-0`, `meter-1`), so an
/// unrelated one changes kinds, hooks and types under the same names.
pub fn sequence(table: &'static str, max: usize) -> impl Strategy<Value = Vec<Ruleset>> {
    let steps = prop::collection::vec(prop::collection::vec(mutation(table), 1..4), 1..max);
    (ruleset(table), steps).prop_map(|(first, steps)| {
        let mut out = vec![first];
        for mutations in steps {
            let mut next = mutations
                .into_iter()
                .fold(out.last().cloned().unwrap_or_else(|| unreachable!()), mutate);
            // As a ruleset lists them (rotations leave them anywhere).
            next.runtime_sets_first();
            out.push(next);
        }
        out
    })
}
