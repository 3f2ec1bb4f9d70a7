//! Saying what went wrong: a kernel error as the object and expression at
//! fault, the first difference between two rulesets, what a table holds
//! after an update stopped part-way.

use crate::encode::{Batch, Object, Part};
use crate::{Error, Failure, Nft};
use dockfw_core::ruleset::{Ruleset, SetElements};

/// A message of a batch the kernel answered with an error.
pub(crate) struct KernelError {
    pub(crate) seq: u32,
    pub(crate) errno: i32,
    pub(crate) text: Option<String>,
    pub(crate) offset: Option<u32>,
}

/// The first difference between what was applied and what is installed.
pub(crate) fn difference(want: &Ruleset, got: Option<&Ruleset>) -> String {
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
            return format!("set `{}`: {}", w.name, set_difference(&w.elements, &g.elements));
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

/// What differs between two sets' contents, in a line: their kinds, or
/// how many elements each holds and the first few on one side only (a set
/// of 100,000 elements must not make a log line of megabytes).
fn set_difference(want: &SetElements, got: &SetElements) -> String {
    const SHOWN: usize = 3;
    fn each<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
        v.iter().map(|i| format!("{i:?}")).collect()
    }
    let listed = |e: &SetElements| match e {
        SetElements::Ipv4(v) | SetElements::Ipv4Addrs(v) => Some(each(v)),
        SetElements::Ipv6(v) | SetElements::Ipv6Addrs(v) => Some(each(v)),
        SetElements::Port(v) => Some(each(v)),
        SetElements::Meter(_) | SetElements::Runtime(_) => None,
    };
    let same_kind = std::mem::discriminant(want) == std::mem::discriminant(got);
    match (listed(want), listed(got)) {
        (Some(w), Some(g)) if same_kind => {
            let only = |a: &[String], b: &[String]| -> Vec<String> {
                let b: std::collections::HashSet<&String> = b.iter().collect();
                a.iter().filter(|i| !b.contains(i)).take(SHOWN).cloned().collect()
            };
            format!(
                "{} elements instead of {}; missing {:?}, unexpected {:?}",
                g.len(),
                w.len(),
                only(&w, &g),
                only(&g, &w)
            )
        }
        _ => {
            let short = |e: &SetElements| {
                let text = format!("{e:?}");
                match text.char_indices().nth(200) {
                    Some((at, _)) => format!("{}…", &text[..at]),
                    None => text,
                }
            };
            format!("{} instead of {}", short(got), short(want))
        }
    }
}

fn describe_part(kind: &str, index: usize, what: Option<&impl std::fmt::Debug>) -> String {
    match what {
        Some(what) => format!("{kind} {index} {what:?}"),
        None => format!("{kind} {index}"),
    }
}

/// Turns a kernel error on message `seq` into a [`Failure`] naming the object.
pub(crate) fn describe_failure(ruleset: &Ruleset, batch: &Batch, error: KernelError) -> Failure {
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

impl Nft {
    /// What `table` holds, compared with the ruleset an apply wanted and the
    /// one it started from, for an error that leaves it as is.
    pub(crate) fn describe_table(
        &mut self,
        table: &str,
        want: &Ruleset,
        original: Option<&Ruleset>,
    ) -> String {
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
}
