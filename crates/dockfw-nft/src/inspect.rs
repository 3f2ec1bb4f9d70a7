//! A complete, truthful view of an installed table, and its comparison with
//! the ruleset dockfw would install.
//!
//! [`Nft::inspect`](crate::Nft::inspect) reads everything table `inet NAME`
//! holds: the table's flags (dormant, …) and comment, every chain (type,
//! hook, priority, policy, devices, flags, comment), every set (any key type
//! and flags, size, policy, gc-interval, userdata, set expressions, its
//! elements with their timeouts, comments and expressions), every rule with all its expressions, whether
//! dockfw can decode them or not, and the stateful objects (counter, quota,
//! ct helper, limit, …) and flowtables in the table. State is not content:
//! counter values, a quota's consumed bytes, elements' expiry times and a
//! meter's elements are left out.
//!
//! [`InstalledTable::compare`] lists every difference from the desired
//! ruleset, whoever made it: table flags, a rule dockfw did not write
//! anywhere in a chain, a rule missing or not in the policy, a chain's
//! type/hook/priority/policy/devices, sets (missing, extra, other elements),
//! objects and flowtables (dockfw writes none), chains and sets in another
//! order. Both sides are rendered as nft-like text by the same code, so a
//! unified diff of the two texts shows exactly what differs; what dockfw
//! does not write is rendered in nft syntax where it is simple and as
//! libnftnl's expression text (`[ payload load 2b @ transport header + 2 =>
//! reg 1 ]`, as `nft --debug=netlink` prints) otherwise.

use crate::decode;
use crate::dump::TableDump;
use crate::expr::Expr;
use crate::ffi::{Elems, RuleInfo, SetSpec};
use crate::owner::{self, MARKER, Owner};
use dockfw_core::ruleset::{Hook, Ruleset, Set};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `NFT_TABLE_F_DORMANT`: every base chain of the table is unregistered.
const TABLE_DORMANT: u32 = 1;

/// An installed table as read by [`Nft::inspect`](crate::Nft::inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledTable {
    name: String,
    owner: Owner,
    /// The whole table decoded as dockfw's, when it is (flags aside).
    ruleset: Option<Ruleset>,
    /// What decodes as dockfw's, the rest left out.
    recognised: Ruleset,
    view: View,
}

/// How an installed table compares with a desired ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Comparison {
    /// Every difference, table-wide ones first, then per set and chain.
    pub differences: Vec<Difference>,
    /// The installed table as nft-like text.
    pub installed_text: String,
    /// The desired ruleset as nft-like text (same rendering).
    pub desired_text: String,
}

/// One way an installed table differs from the desired ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    /// Table flags are set (dockfw sets none); dormant turns every chain off.
    TableFlags {
        /// `NFT_TABLE_F_*`.
        flags: u32,
    },
    /// The table is not dockfw's.
    NotOwned {
        /// Why.
        why: String,
    },
    /// A chain the ruleset has is missing.
    MissingChain {
        /// The chain.
        chain: String,
    },
    /// A chain the ruleset does not have.
    ExtraChain {
        /// The chain.
        chain: String,
    },
    /// A chain's type, hook, priority, policy, devices, flags or comment differ.
    ChainHead {
        /// The chain.
        chain: String,
        /// Installed, nft-like (e.g. `type filter hook forward priority -5; policy drop;`).
        installed: String,
        /// Desired, nft-like.
        desired: String,
    },
    /// A rule dockfw cannot have written (it does not decode as a dockfw rule).
    ForeignRule {
        /// The chain holding it.
        chain: String,
        /// The rule, nft-like.
        rule: String,
    },
    /// A rule in dockfw's form that the ruleset does not have here.
    ExtraRule {
        /// The chain holding it.
        chain: String,
        /// The rule, nft-like.
        rule: String,
    },
    /// A rule of the ruleset that is missing.
    MissingRule {
        /// The chain that should hold it.
        chain: String,
        /// The rule, nft-like.
        rule: String,
    },
    /// A set the ruleset has is missing.
    MissingSet {
        /// The set.
        set: String,
    },
    /// A set the ruleset does not have.
    ExtraSet {
        /// The set.
        set: String,
        /// Whether it is in a form dockfw never writes.
        foreign: bool,
    },
    /// A set whose type, flags or elements differ.
    SetDiffers {
        /// The set.
        set: String,
    },
    /// A stateful object (dockfw writes none).
    Object {
        /// nft-like, e.g. `quota q { over 1000 bytes }`.
        object: String,
    },
    /// A flowtable (dockfw writes none).
    Flowtable {
        /// The flowtable's name.
        name: String,
    },
    /// Something else: e.g. chains or sets in another order.
    Other {
        /// What.
        what: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TableFlags { flags } if flags & TABLE_DORMANT != 0 => {
                write!(f, "table is dormant: every chain is off")?;
                if flags & !TABLE_DORMANT != 0 {
                    write!(f, " (table flags {})", flag_names(*flags))?;
                }
                Ok(())
            }
            Self::TableFlags { flags } => write!(f, "table flags {} set", flag_names(*flags)),
            Self::NotOwned { why } => write!(f, "not dockfw's table: {why}"),
            Self::MissingChain { chain } => write!(f, "chain `{chain}` is missing"),
            Self::ExtraChain { chain } => write!(f, "chain `{chain}` is not in the policy"),
            Self::ChainHead {
                chain,
                installed,
                desired,
            } => write!(f, "chain `{chain}`: `{installed}` instead of `{desired}`"),
            Self::ForeignRule { chain, rule } => {
                write!(f, "chain `{chain}` holds a rule dockfw did not write: {rule}")
            }
            Self::ExtraRule { chain, rule } => {
                write!(f, "chain `{chain}` holds a rule not in the policy: {rule}")
            }
            Self::MissingRule { chain, rule } => write!(f, "chain `{chain}` lacks the rule {rule}"),
            Self::MissingSet { set } => write!(f, "set `{set}` is missing"),
            Self::ExtraSet { set, foreign: true } => write!(f, "set `{set}` dockfw did not write"),
            Self::ExtraSet { set, foreign: false } => write!(f, "set `{set}` is not in the policy"),
            Self::SetDiffers { set } => write!(f, "set `{set}` differs"),
            Self::Object { object } => write!(f, "object dockfw did not write: {object}"),
            Self::Flowtable { name } => write!(f, "flowtable `{name}` dockfw did not write"),
            Self::Other { what } => f.write_str(what),
        }
    }
}

fn flag_names(flags: u32) -> String {
    let mut names = Vec::new();
    for (bit, name) in [(1, "dormant"), (2, "owner"), (4, "persist")] {
        if flags & bit != 0 {
            names.push(name.to_string());
        }
    }
    let rest = flags & !7;
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join(",")
}

/// Which differences a summary counts together: a test, singular, plural.
type Group = (fn(&Difference) -> bool, &'static str, &'static str);

impl Comparison {
    /// Whether the installed table is exactly the desired ruleset.
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }

    /// A short reason for a status line, e.g. `table is dormant: every chain
    /// is off; 2 rules dockfw did not write` (empty when it matches).
    pub fn summary(&self) -> String {
        let count = |pick: fn(&Difference) -> bool| self.differences.iter().filter(|d| pick(d)).count();
        let mut parts: Vec<String> = Vec::new();
        let mut covered = 0;
        for difference in &self.differences {
            if matches!(
                difference,
                Difference::TableFlags { .. } | Difference::NotOwned { .. }
            ) {
                parts.push(difference.to_string());
                covered += 1;
            }
        }
        let groups: [Group; 6] = [
            (
                |d| matches!(d, Difference::ForeignRule { .. }),
                "rule dockfw did not write",
                "rules dockfw did not write",
            ),
            (
                |d| matches!(d, Difference::Object { .. } | Difference::Flowtable { .. }),
                "object or flowtable dockfw did not write",
                "objects or flowtables dockfw did not write",
            ),
            (
                |d| matches!(d, Difference::ExtraSet { foreign: true, .. }),
                "set dockfw did not write",
                "sets dockfw did not write",
            ),
            (
                |d| matches!(d, Difference::ExtraRule { .. }),
                "rule not in the policy",
                "rules not in the policy",
            ),
            (
                |d| matches!(d, Difference::MissingRule { .. }),
                "rule missing",
                "rules missing",
            ),
            (
                |d| matches!(d, Difference::MissingChain { .. } | Difference::MissingSet { .. }),
                "chain or set missing",
                "chains or sets missing",
            ),
        ];
        for (pick, one, many) in groups {
            let n = count(pick);
            if n > 0 {
                parts.push(format!("{n} {}", if n == 1 { one } else { many }));
                covered += n;
            }
        }
        let rest: Vec<&Difference> = self
            .differences
            .iter()
            .filter(|d| {
                matches!(
                    d,
                    Difference::ChainHead { .. }
                        | Difference::ExtraChain { .. }
                        | Difference::ExtraSet { foreign: false, .. }
                        | Difference::SetDiffers { .. }
                        | Difference::Other { .. }
                )
            })
            .collect();
        for difference in rest.iter().take(2) {
            parts.push(difference.to_string());
            covered += 1;
        }
        let left = self.differences.len().saturating_sub(covered);
        if left > 0 {
            parts.push(format!("{left} more"));
        }
        parts.join("; ")
    }
}

impl InstalledTable {
    pub(crate) fn new(name: &str, dump: &TableDump, decoded: Result<&Ruleset, &str>) -> Self {
        Self {
            name: name.to_string(),
            owner: owner::owner(dump, decoded),
            ruleset: decoded.ok().cloned(),
            recognised: recognised(name, dump),
            view: View::from_dump(dump),
        }
    }

    /// The table's name (family inet).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whose the table is.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The whole table decoded as a dockfw ruleset, when everything in it is
    /// in dockfw's form (table flags aside).
    pub fn ruleset(&self) -> Option<&Ruleset> {
        self.ruleset.as_ref()
    }

    /// The chains, sets and rules in dockfw's form, everything else left
    /// out: for showing rule counters and the like, never for comparing.
    pub fn recognised(&self) -> &Ruleset {
        &self.recognised
    }

    /// The table as nft-like text.
    pub fn text(&self) -> String {
        self.view.render(&self.name)
    }

    /// Every difference between this table and `desired` (see the module docs).
    pub fn compare(&self, desired: &Ruleset) -> Comparison {
        let want = View::from_ruleset(desired);
        let mut differences = Vec::new();
        if let Owner::Foreign { why } = &self.owner {
            differences.push(Difference::NotOwned { why: why.clone() });
        }
        differences.extend(self.view.differences(&want));
        // Never call equal what is not: the text comparison must agree with
        // the exact one (table flags and foreign parts are in the view).
        let exact = self.ruleset.as_ref() == Some(desired);
        if differences.is_empty() && (!exact || self.view != want) {
            differences.push(Difference::Other {
                what: "chains or sets are in another order than dockfw creates them".into(),
            });
        }
        Comparison {
            differences,
            installed_text: self.text(),
            desired_text: want.render(&desired.table),
        }
    }
}

#[cfg(feature = "testing")]
impl InstalledTable {
    /// A table holding exactly `ruleset` (every part in dockfw's form), with
    /// table `flags` (`NFT_TABLE_F_*`, e.g. 1 for dormant) and table
    /// `comment`, as [`Nft::inspect`](crate::Nft::inspect) reads such a
    /// table: for stand-ins of the kernel in tests. A comment of [`MARKER`]
    /// makes it dockfw's, another comment foreign; without one it is
    /// dockfw's if its chains are named as dockfw names them
    /// ([`Owner::Unmarked`]), as for a table read from the kernel.
    pub fn holding(ruleset: &Ruleset, flags: u32, comment: Option<&str>) -> Self {
        let userdata = comment.map(owner::comment_userdata).unwrap_or_default();
        let owner = owner::by_userdata(&userdata).unwrap_or_else(|| owner::by_content(Ok(ruleset)));
        let mut view = View::from_ruleset(ruleset);
        view.flags = flags;
        view.head = head_lines(&userdata);
        Self {
            name: ruleset.table.clone(),
            owner,
            ruleset: Some(ruleset.clone()),
            recognised: ruleset.clone(),
            view,
        }
    }
}

/// `ruleset` as nft-like text, as [`InstalledTable::text`] renders a table
/// holding exactly it.
pub fn table_text(ruleset: &Ruleset) -> String {
    View::from_ruleset(ruleset).render(&ruleset.table)
}

/// The parts of a dumped table in dockfw's form.
fn recognised(name: &str, dump: &TableDump) -> Ruleset {
    let mut ruleset = Ruleset {
        table: name.to_string(),
        sets: Vec::new(),
        chains: Vec::new(),
    };
    for (spec, elems) in &dump.sets {
        if let Ok(set) = decode::set(spec, elems.clone()) {
            ruleset.sets.push(set);
        }
    }
    for info in &dump.chains {
        if let Ok(mut chain) = decode::chain(info) {
            chain.rules = dump
                .rules
                .iter()
                .filter(|r| r.chain == info.name)
                .filter_map(|r| decode::rule(&r.exprs, decode::comment(&r.userdata).ok()?).ok())
                .collect();
            ruleset.chains.push(chain);
        }
    }
    ruleset
}

/// The table's head lines for its userdata: a comment other than dockfw's
/// marker, or userdata dockfw does not write.
fn head_lines(userdata: &[u8]) -> Vec<String> {
    match owner::table_comment(userdata) {
        Some(comment) if comment == MARKER => Vec::new(),
        Some(comment) => vec![format!("comment {comment:?}")],
        None if !userdata.is_empty() => {
            vec![format!("# userdata dockfw does not write: {}", hex(userdata))]
        }
        None => Vec::new(),
    }
}

/// Everything in a table, each part as nft-like text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    flags: u32,
    /// Table comment and userdata lines other than dockfw's marker.
    head: Vec<String>,
    /// `(name, text)`.
    sets: Vec<(String, String)>,
    objects: Vec<String>,
    /// `(name, text)`.
    flowtables: Vec<(String, String)>,
    chains: Vec<ChainView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainView {
    name: String,
    /// The base-chain line(s); empty for a regular chain.
    head: Vec<String>,
    rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RuleView {
    text: String,
    /// Decodes as a rule dockfw writes.
    dockfw: bool,
}

impl View {
    fn from_ruleset(ruleset: &Ruleset) -> Self {
        Self {
            flags: 0,
            head: Vec::new(),
            sets: ruleset
                .sets
                .iter()
                .map(|s| (s.name.clone(), set_text(s)))
                .collect(),
            objects: Vec::new(),
            flowtables: Vec::new(),
            chains: ruleset
                .chains
                .iter()
                .map(|chain| ChainView {
                    name: chain.name.clone(),
                    head: chain_head(
                        chain.hook.map(|base| {
                            let hooknum = match base.hook {
                                Hook::Forward => libc::NF_INET_FORWARD,
                                Hook::Input => libc::NF_INET_LOCAL_IN,
                            };
                            (hooknum as u32, base.priority, "filter", libc::NF_ACCEPT as u32)
                        }),
                        &[],
                        0,
                        &[],
                    ),
                    rules: chain
                        .rules
                        .iter()
                        .map(|rule| RuleView {
                            text: dockfw_core::render::render_rule(rule),
                            dockfw: true,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn from_dump(dump: &TableDump) -> Self {
        let head = head_lines(&dump.userdata);
        let sets = dump
            .sets
            .iter()
            .map(|(spec, elems)| {
                let text = match decode::set(spec, elems.clone()) {
                    Ok(set) => set_text(&set),
                    Err(_) => foreign_set_text(spec, elems),
                };
                (spec.name.clone(), text)
            })
            .collect();
        let mut chains: Vec<ChainView> = dump
            .chains
            .iter()
            .map(|info| ChainView {
                name: info.name.clone(),
                head: chain_head(
                    info.hook
                        .as_ref()
                        .map(|(h, p, t, pol)| (*h, *p, t.as_str(), *pol)),
                    &info.devices,
                    info.flags,
                    &info.userdata,
                ),
                rules: Vec::new(),
            })
            .collect();
        for info in &dump.rules {
            let at = match chains.iter().position(|c| c.name == info.chain) {
                Some(at) => at,
                None => {
                    // Cannot happen in a consistent dump; shown rather than lost.
                    chains.push(ChainView {
                        name: info.chain.clone(),
                        head: vec!["# chain not listed by the kernel".into()],
                        rules: Vec::new(),
                    });
                    chains.len() - 1
                }
            };
            chains[at].rules.push(rule_view(info));
        }
        Self {
            flags: dump.flags,
            head,
            sets,
            objects: dump.objects.iter().map(|o| o.text.clone()).collect(),
            flowtables: dump
                .flowtables
                .iter()
                .map(|f| (f.name.clone(), f.text.clone()))
                .collect(),
            chains,
        }
    }

    fn render(&self, table: &str) -> String {
        let mut out = format!("table inet {table} {{\n");
        if self.flags != 0 {
            out.push_str(&format!("\tflags {}\n", flag_names(self.flags)));
        }
        for line in &self.head {
            out.push_str(&format!("\t{line}\n"));
        }
        for (_, text) in &self.sets {
            out.push_str(text);
        }
        for object in &self.objects {
            out.push_str(&format!("\t{object}\n"));
        }
        for (_, text) in &self.flowtables {
            out.push_str(&format!("\t{text}\n"));
        }
        for chain in &self.chains {
            out.push_str(&format!("\tchain {} {{\n", chain.name));
            for line in &chain.head {
                out.push_str(&format!("\t\t{line}\n"));
            }
            for rule in &chain.rules {
                out.push_str(&format!("\t\t{}\n", rule.text));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// Every difference from `want` (this view being the installed table).
    fn differences(&self, want: &View) -> Vec<Difference> {
        let mut out = Vec::new();
        if self.flags != 0 {
            out.push(Difference::TableFlags { flags: self.flags });
        }
        for line in &self.head {
            out.push(Difference::Other {
                what: format!("table {line}"),
            });
        }
        for (name, text) in &self.sets {
            match want.sets.iter().find(|(n, _)| n == name) {
                None => out.push(Difference::ExtraSet {
                    set: name.clone(),
                    foreign: text.contains(FOREIGN_SET),
                }),
                Some((_, wanted)) if wanted != text => out.push(Difference::SetDiffers { set: name.clone() }),
                Some(_) => {}
            }
        }
        for (name, _) in &want.sets {
            if !self.sets.iter().any(|(n, _)| n == name) {
                out.push(Difference::MissingSet { set: name.clone() });
            }
        }
        out.extend(
            self.objects
                .iter()
                .map(|o| Difference::Object { object: o.clone() }),
        );
        out.extend(
            self.flowtables
                .iter()
                .map(|(name, _)| Difference::Flowtable { name: name.clone() }),
        );
        for chain in &self.chains {
            let Some(wanted) = want.chains.iter().find(|c| c.name == chain.name) else {
                out.push(Difference::ExtraChain {
                    chain: chain.name.clone(),
                });
                // Its rules are shown by the diff; foreign ones are counted too.
                out.extend(
                    chain
                        .rules
                        .iter()
                        .filter(|r| !r.dockfw)
                        .map(|r| Difference::ForeignRule {
                            chain: chain.name.clone(),
                            rule: r.text.clone(),
                        }),
                );
                continue;
            };
            if chain.head != wanted.head {
                out.push(Difference::ChainHead {
                    chain: chain.name.clone(),
                    installed: head_summary(&chain.head),
                    desired: head_summary(&wanted.head),
                });
            }
            out.extend(rule_differences(&chain.name, &chain.rules, &wanted.rules));
        }
        for chain in &want.chains {
            if !self.chains.iter().any(|c| c.name == chain.name) {
                out.push(Difference::MissingChain {
                    chain: chain.name.clone(),
                });
            }
        }
        out
    }
}

fn head_summary(head: &[String]) -> String {
    if head.is_empty() {
        "regular chain".into()
    } else {
        head.join(" ")
    }
}

/// Rules of one chain: those installed but not wanted, and wanted but
/// missing, by a minimal edit (so one inserted rule is one difference).
fn rule_differences(chain: &str, installed: &[RuleView], wanted: &[RuleView]) -> Vec<Difference> {
    use similar::{DiffOp, capture_diff_slices};
    let got: Vec<&str> = installed.iter().map(|r| r.text.as_str()).collect();
    let want: Vec<&str> = wanted.iter().map(|r| r.text.as_str()).collect();
    let mut out = Vec::new();
    for op in capture_diff_slices(similar::Algorithm::Myers, &got, &want) {
        let (removed, added) = match op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete {
                old_index, old_len, ..
            } => (old_index..old_index + old_len, 0..0),
            DiffOp::Insert {
                new_index, new_len, ..
            } => (0..0, new_index..new_index + new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (old_index..old_index + old_len, new_index..new_index + new_len),
        };
        for rule in &installed[removed] {
            let (chain, text) = (chain.to_string(), rule.text.clone());
            out.push(if rule.dockfw {
                Difference::ExtraRule { chain, rule: text }
            } else {
                Difference::ForeignRule { chain, rule: text }
            });
        }
        for rule in &wanted[added] {
            out.push(Difference::MissingRule {
                chain: chain.to_string(),
                rule: rule.text.clone(),
            });
        }
    }
    out
}

/// nft's name of an inet-family hook.
fn hook_name(hooknum: u32) -> String {
    match hooknum as i32 {
        libc::NF_INET_PRE_ROUTING => "prerouting".into(),
        libc::NF_INET_LOCAL_IN => "input".into(),
        libc::NF_INET_FORWARD => "forward".into(),
        libc::NF_INET_LOCAL_OUT => "output".into(),
        libc::NF_INET_POST_ROUTING => "postrouting".into(),
        libc::NF_INET_INGRESS => "ingress".into(),
        other => format!("{other}"),
    }
}

/// A chain's head lines in nft syntax; dockfw's base chains render as
/// `type filter hook forward priority -5; policy accept;` (as `plan` does).
fn chain_head(
    hook: Option<(u32, i32, &str, u32)>,
    devices: &[String],
    flags: u32,
    userdata: &[u8],
) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some((hooknum, priority, kind, policy)) = hook {
        let mut line = format!("type {kind} hook {} priority {priority};", hook_name(hooknum));
        match devices {
            [] => {}
            [device] => line.push_str(&format!(" device {device:?};")),
            _ => line.push_str(&format!(
                " devices = {{ {} }};",
                devices
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        let policy = match policy as i32 {
            libc::NF_ACCEPT => "accept".to_string(),
            libc::NF_DROP => "drop".to_string(),
            other => format!("{other}"),
        };
        line.push_str(&format!(" policy {policy};"));
        lines.push(line);
    }
    // NFT_CHAIN_BASE (1) only says it is a base chain.
    let flags = flags & !1;
    if flags & 2 != 0 {
        lines.push("flags offload".into());
    }
    if flags & !2 != 0 {
        lines.push(format!("# chain flags {:#x}", flags & !2));
    }
    if !userdata.is_empty() {
        match decode::comment(userdata) {
            Ok(comment) if !comment.is_empty() => lines.push(format!("comment {comment:?}")),
            _ => lines.push(format!("# userdata {}", hex(userdata))),
        }
    }
    lines
}

/// A set dockfw writes, exactly as `plan` renders it.
fn set_text(set: &Set) -> String {
    let ruleset = Ruleset {
        table: "t".into(),
        sets: vec![set.clone()],
        chains: Vec::new(),
    };
    let script = dockfw_core::render::render_table(&ruleset);
    // The set block sits between `table inet t {` and the closing `}`.
    let body = script.split_once("table inet t {\n").map_or("", |(_, body)| body);
    body.strip_suffix("}\n").unwrap_or(body).to_string()
}

/// Marks a set rendered by [`foreign_set_text`].
const FOREIGN_SET: &str = "# not in dockfw's form";

fn foreign_set_text(spec: &SetSpec, elems: &Elems) -> String {
    let mut out = format!("\tset {} {{ {FOREIGN_SET}\n", spec.name);
    let key = match (spec.key_type, spec.key_len) {
        (7, 4) => "ipv4_addr".to_string(),
        (8, 16) => "ipv6_addr".to_string(),
        (13, 2) => "inet_service".to_string(),
        (12, 1) => "inet_proto".to_string(),
        (9, 6) => "ether_addr".to_string(),
        (19, 4) => "mark".to_string(),
        (41, _) => "ifname".to_string(),
        (kind, len) => format!("{kind:#x} # {len} bytes"),
    };
    out.push_str(&format!("\t\ttype {key}\n"));
    let mut flags = Vec::new();
    for (bit, name) in [
        (libc::NFT_SET_ANONYMOUS, "anonymous"),
        (libc::NFT_SET_CONSTANT, "constant"),
        (libc::NFT_SET_INTERVAL, "interval"),
        (libc::NFT_SET_MAP, "map"),
        (libc::NFT_SET_TIMEOUT, "timeout"),
        (libc::NFT_SET_EVAL, "dynamic"),
        (0x40, "object"),
        (0x80, "concat"),
        (0x100, "expr"),
    ] {
        if spec.flags & bit as u32 != 0 {
            flags.push(name.to_string());
        }
    }
    let rest = spec.flags & !0x1ff;
    if rest != 0 {
        flags.push(format!("{rest:#x}"));
    }
    if !flags.is_empty() {
        out.push_str(&format!("\t\tflags {}\n", flags.join(",")));
    }
    if let Some(size) = spec.size {
        out.push_str(&format!("\t\tsize {size}\n"));
    }
    if let Some(ms) = spec.timeout_ms {
        out.push_str(&format!("\t\ttimeout {ms}ms\n"));
    }
    if let Some(comment) = decode::set_comment(&spec.userdata) {
        out.push_str(&format!("\t\tcomment {comment:?}\n"));
    }
    if let Some(what) = decode::set_userdata_beyond_key_order(&spec.userdata) {
        out.push_str(&format!("\t\t# userdata dockfw does not write: {what}\n"));
    }
    for extra in &spec.extra {
        out.push_str(&format!("\t\t# {extra}\n"));
    }
    if !elems.is_empty() {
        let mut sorted = elems.clone();
        sorted.sort();
        let shown: Vec<String> = sorted
            .iter()
            .map(|(key, flags)| {
                let value = key_text(spec.key_type, key);
                if flags & libc::NFT_SET_ELEM_INTERVAL_END as u32 != 0 {
                    format!("end {value}")
                } else {
                    value
                }
            })
            .collect();
        out.push_str(&format!("\t\telements = {{ {} }}\n", shown.join(", ")));
    }
    out.push_str("\t}\n");
    out
}

fn key_text(key_type: u32, key: &[u8]) -> String {
    match (key_type, key.len()) {
        (7, 4) => Ipv4Addr::from(<[u8; 4]>::try_from(key).unwrap_or_default()).to_string(),
        (8, 16) => Ipv6Addr::from(<[u8; 16]>::try_from(key).unwrap_or_default()).to_string(),
        (13, 2) => u16::from_be_bytes([key[0], key[1]]).to_string(),
        _ => hex(key),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("0x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn rule_view(info: &RuleInfo) -> RuleView {
    let comment = decode::comment(&info.userdata);
    if let Ok(comment) = &comment
        && let Ok(rule) = decode::rule(&info.exprs, comment.clone())
    {
        return RuleView {
            text: dockfw_core::render::render_rule(&rule),
            dockfw: true,
        };
    }
    let mut text = foreign_rule_text(&info.exprs, &info.texts);
    match comment {
        Ok(comment) if !comment.is_empty() => text.push_str(&format!(" comment {comment:?}")),
        Ok(_) => {}
        Err(_) => text.push_str(&format!(" # userdata {}", hex(&info.userdata))),
    }
    if text.is_empty() {
        text = "# empty rule".into();
    }
    RuleView { text, dockfw: false }
}

/// Comparison operator prefix, nft style (`eq` prints nothing).
fn cmp_op(op: u32) -> &'static str {
    match op as i32 {
        libc::NFT_CMP_EQ => "",
        libc::NFT_CMP_NEQ => "!= ",
        libc::NFT_CMP_LT => "< ",
        libc::NFT_CMP_LTE => "<= ",
        libc::NFT_CMP_GT => "> ",
        libc::NFT_CMP_GTE => ">= ",
        _ => "? ",
    }
}

fn ct_states(bits: u32) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (1, "invalid"),
        (2, "established"),
        (4, "related"),
        (8, "new"),
        (64, "untracked"),
    ] {
        if bits & bit != 0 {
            names.push(name.to_string());
        }
    }
    if bits & !0x4f != 0 {
        names.push(format!("{:#x}", bits & !0x4f));
    }
    names.join(",")
}

/// The field a payload load reads, for the common header fields.
fn payload_field(base: u32, offset: u32, len: u32) -> Option<&'static str> {
    Some(match (base as i32, offset, len) {
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 12, 4) => "ip saddr",
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 16, 4) => "ip daddr",
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 8, 16) => "ip6 saddr",
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 24, 16) => "ip6 daddr",
        (libc::NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2) => "th sport",
        (libc::NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2) => "th dport",
        _ => return None,
    })
}

fn value_text(data: &[u8]) -> String {
    match data.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(data).unwrap_or_default()).to_string(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(data).unwrap_or_default()).to_string(),
        2 => u16::from_be_bytes([data[0], data[1]]).to_string(),
        _ => hex(data),
    }
}

fn proto_name(proto: u8) -> String {
    match i32::from(proto) {
        libc::IPPROTO_TCP => "tcp".into(),
        libc::IPPROTO_UDP => "udp".into(),
        libc::IPPROTO_ICMP => "icmp".into(),
        libc::IPPROTO_ICMPV6 => "ipv6-icmp".into(),
        other => other.to_string(),
    }
}

fn verdict_text(code: i32, chain: Option<&str>) -> String {
    match (code, chain) {
        (libc::NF_ACCEPT, _) => "accept".into(),
        (libc::NF_DROP, _) => "drop".into(),
        (libc::NFT_RETURN, _) => "return".into(),
        (libc::NFT_CONTINUE, _) => "continue".into(),
        (libc::NFT_JUMP, Some(chain)) => format!("jump {chain}"),
        (libc::NFT_GOTO, Some(chain)) => format!("goto {chain}"),
        (code, _) => format!("[ immediate verdict {code} ]"),
    }
}

/// A rule dockfw did not write, in nft syntax for the simple common parts
/// and libnftnl's text (`texts`, one per expression) for the rest.
fn foreign_rule_text(exprs: &[Expr], texts: &[String]) -> String {
    use Expr as E;
    let mut words = Vec::new();
    let mut at = 0;
    while at < exprs.len() {
        let next = exprs.get(at + 1);
        let (word, used) = match (&exprs[at], next, exprs.get(at + 2)) {
            (E::Meta { key }, Some(E::Cmp { op, data }), _) => {
                let op = cmp_op(*op);
                match *key as i32 {
                    libc::NFT_META_L4PROTO if data.len() == 1 => {
                        (Some(format!("meta l4proto {op}{}", proto_name(data[0]))), 2)
                    }
                    libc::NFT_META_NFPROTO if data.len() == 1 => {
                        let family = match i32::from(data[0]) {
                            libc::NFPROTO_IPV4 => "ipv4".to_string(),
                            libc::NFPROTO_IPV6 => "ipv6".to_string(),
                            other => other.to_string(),
                        };
                        (Some(format!("meta nfproto {op}{family}")), 2)
                    }
                    libc::NFT_META_IIFNAME | libc::NFT_META_OIFNAME => {
                        let name: Vec<u8> = data.iter().copied().take_while(|&b| b != 0).collect();
                        let wildcard = if data.contains(&0) { "" } else { "*" };
                        let field = if *key as i32 == libc::NFT_META_IIFNAME {
                            "iifname"
                        } else {
                            "oifname"
                        };
                        let name = String::from_utf8_lossy(&name);
                        (Some(format!("{field} {op}\"{name}{wildcard}\"")), 2)
                    }
                    _ => (None, 1),
                }
            }
            (E::Payload { base, offset, len }, Some(E::Cmp { op, data }), _) => {
                match payload_field(*base, *offset, *len) {
                    Some(field) => (Some(format!("{field} {}{}", cmp_op(*op), value_text(data))), 2),
                    None => (None, 1),
                }
            }
            (E::Payload { base, offset, len }, Some(E::Lookup { set, flags }), _) => {
                match payload_field(*base, *offset, *len) {
                    Some(field) => {
                        let op = if *flags & 1 != 0 { "!= " } else { "" };
                        (Some(format!("{field} {op}@{set}")), 2)
                    }
                    None => (None, 1),
                }
            }
            (E::Ct { key, dir: None }, Some(E::Bitwise { mask, xor }), Some(E::Cmp { op, data }))
                if *key == libc::NFT_CT_STATE as u32
                    && mask.len() == 4
                    && xor.iter().all(|&b| b == 0)
                    && data.iter().all(|&b| b == 0) =>
            {
                let bits = u32::from_ne_bytes([mask[0], mask[1], mask[2], mask[3]]);
                let negated = *op == libc::NFT_CMP_EQ as u32;
                let op = if negated { "!= " } else { "" };
                (Some(format!("ct state {op}{}", ct_states(bits))), 3)
            }
            (E::Ct { key, dir: None }, Some(E::Cmp { op, data }), _)
                if *key == libc::NFT_CT_STATE as u32 && data.len() == 4 =>
            {
                let bits = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
                (Some(format!("ct state {}{}", cmp_op(*op), ct_states(bits))), 2)
            }
            (E::Counter { .. }, ..) => (Some("counter".into()), 1),
            (E::Log { prefix }, ..) if prefix.is_empty() => (Some("log".into()), 1),
            (E::Log { prefix }, ..) => (Some(format!("log prefix {prefix:?}")), 1),
            (E::Verdict { code, chain }, ..) => (Some(verdict_text(*code, chain.as_deref())), 1),
            (
                E::Limit {
                    rate, unit, burst, ..
                },
                ..,
            ) => {
                let unit = match unit {
                    1 => "second".to_string(),
                    60 => "minute".to_string(),
                    3600 => "hour".to_string(),
                    86400 => "day".to_string(),
                    other => format!("{other}s"),
                };
                (Some(format!("limit rate {rate}/{unit} burst {burst} packets")), 1)
            }
            _ => (None, 1),
        };
        match word {
            Some(word) => words.push(word),
            None => words.push(
                texts
                    .get(at)
                    .cloned()
                    .unwrap_or_else(|| format!("[ {} ]", exprs[at].name())),
            ),
        }
        at += used;
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{ChainInfo, FlowtableInfo, ObjectInfo};
    use dockfw_core::ruleset::{BaseHook, Chain, Rule, Verdict};

    fn desired() -> Ruleset {
        Ruleset {
            table: "dockfw".into(),
            sets: vec![],
            chains: vec![Chain {
                name: "forward".into(),
                hook: Some(BaseHook {
                    hook: Hook::Forward,
                    priority: -5,
                }),
                rules: vec![Rule {
                    comment: "default".into(),
                    matches: vec![],
                    statements: vec![],
                    verdict: Some(Verdict::Drop),
                }],
            }],
        }
    }

    /// The dump of a table holding exactly `ruleset`, marked as dockfw's.
    fn dump_of(ruleset: &Ruleset) -> TableDump {
        let mut dump = TableDump {
            flags: 0,
            userdata: owner::table_userdata(),
            chains: Vec::new(),
            sets: Vec::new(),
            rules: Vec::new(),
            objects: Vec::new(),
            flowtables: Vec::new(),
        };
        for (handle, chain) in ruleset.chains.iter().enumerate() {
            dump.chains.push(ChainInfo {
                table: ruleset.table.clone(),
                name: chain.name.clone(),
                handle: handle as u64,
                hook: chain.hook.map(|b| {
                    let hooknum = match b.hook {
                        Hook::Forward => libc::NF_INET_FORWARD,
                        Hook::Input => libc::NF_INET_LOCAL_IN,
                    };
                    (
                        hooknum as u32,
                        b.priority,
                        "filter".into(),
                        libc::NF_ACCEPT as u32,
                    )
                }),
                devices: Vec::new(),
                flags: u32::from(chain.hook.is_some()),
                userdata: Vec::new(),
            });
            for rule in &chain.rules {
                let exprs: Vec<Expr> = crate::encode::rule_exprs(rule)
                    .unwrap()
                    .into_iter()
                    .map(|(e, _)| e)
                    .collect();
                dump.rules.push(RuleInfo {
                    table: ruleset.table.clone(),
                    chain: chain.name.clone(),
                    handle: 0,
                    userdata: crate::encode::comment_udata(&rule.comment).unwrap(),
                    texts: exprs.iter().map(|e| format!("[ {} ]", e.name())).collect(),
                    exprs,
                });
            }
        }
        dump
    }

    fn table(dump: &TableDump) -> InstalledTable {
        let decoded = crate::read::decode_table("dockfw", dump)
            .map(|i| i.ruleset)
            .map_err(|e| e.to_string());
        InstalledTable::new("dockfw", dump, decoded.as_ref().map_err(String::as_str))
    }

    #[test]
    fn identical_table_matches_and_renders_like_plan() {
        let want = desired();
        let installed = table(&dump_of(&want));
        assert_eq!(installed.owner(), &Owner::Dockfw);
        let comparison = installed.compare(&want);
        assert!(comparison.matches(), "{:?}", comparison.differences);
        assert_eq!(comparison.installed_text, comparison.desired_text);
        let plan = dockfw_core::render(&want);
        assert!(
            plan.ends_with(&comparison.desired_text),
            "{plan}\n{}",
            comparison.desired_text
        );
    }

    #[test]
    fn dormant_flag_is_a_difference() {
        let want = desired();
        let mut dump = dump_of(&want);
        dump.flags = 1;
        let comparison = table(&dump).compare(&want);
        assert_eq!(comparison.differences, vec![Difference::TableFlags { flags: 1 }]);
        assert_eq!(comparison.summary(), "table is dormant: every chain is off");
        assert!(comparison.installed_text.contains("\tflags dormant\n"));
    }

    #[test]
    fn foreign_rule_policy_objects_and_flowtables_are_differences() {
        let want = desired();
        let mut dump = dump_of(&want);
        // `nft insert rule inet dockfw forward tcp dport 22 log group 7 accept`
        let foreign = RuleInfo {
            table: "dockfw".into(),
            chain: "forward".into(),
            handle: 9,
            userdata: Vec::new(),
            exprs: vec![
                Expr::Meta {
                    key: libc::NFT_META_L4PROTO as u32,
                },
                Expr::Cmp { op: 0, data: vec![6] },
                Expr::Payload {
                    base: libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
                    offset: 2,
                    len: 2,
                },
                Expr::Cmp {
                    op: 0,
                    data: vec![0, 22],
                },
                Expr::Other("log".into()),
                Expr::Verdict {
                    code: libc::NF_ACCEPT,
                    chain: None,
                },
            ],
            texts: vec![
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "log group 7".into(),
                String::new(),
            ],
        };
        dump.rules.insert(0, foreign);
        dump.chains[0].hook.as_mut().unwrap().3 = libc::NF_DROP as u32;
        dump.objects.push(ObjectInfo {
            table: "dockfw".into(),
            name: "q".into(),
            kind: 2,
            text: "quota q { over 1000 bytes }".into(),
        });
        dump.flowtables.push(FlowtableInfo {
            table: "dockfw".into(),
            name: "f".into(),
            text: "flowtable f { hook ingress priority 0; }".into(),
        });
        let installed = table(&dump);
        // Still marked: ours, with foreign content to repair.
        assert_eq!(installed.owner(), &Owner::Dockfw);
        assert!(installed.ruleset().is_none());
        let comparison = installed.compare(&want);
        let texts: Vec<String> = comparison.differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "object dockfw did not write: quota q { over 1000 bytes }",
                "flowtable `f` dockfw did not write",
                "chain `forward`: `type filter hook forward priority -5; policy drop;` instead of \
                 `type filter hook forward priority -5; policy accept;`",
                "chain `forward` holds a rule dockfw did not write: meta l4proto tcp th dport 22 log group 7 accept",
            ]
        );
        assert_eq!(
            comparison.summary(),
            "1 rule dockfw did not write; 2 objects or flowtables dockfw did not write; chain `forward`: \
             `type filter hook forward priority -5; policy drop;` instead of `type filter hook forward \
             priority -5; policy accept;`"
        );
        assert!(
            comparison
                .installed_text
                .contains("\t\tmeta l4proto tcp th dport 22 log group 7 accept\n")
        );
        // A chain with a head dockfw does not write is not recognised.
        assert!(installed.recognised().chains.is_empty());
    }

    #[test]
    fn unmarked_tables_are_ours_only_in_dockfw_layout() {
        // An unmarked table needs the chains every dockfw layout has.
        let mut want = desired();
        for name in dockfw_core::layout::CORE_CHAINS {
            want.chains.push(Chain {
                name: name.into(),
                hook: None,
                rules: vec![],
            });
        }
        let mut dump = dump_of(&want);
        dump.userdata.clear();
        assert_eq!(table(&dump).owner(), &Owner::Unmarked);
        // Legacy tables are not told to differ for lacking the marker.
        assert!(table(&dump).compare(&want).matches());
        // A host table with a chain dockfw never names is not ours.
        dump.chains[0].name = "filter-forward".into();
        for rule in &mut dump.rules {
            rule.chain = "filter-forward".into();
        }
        assert!(matches!(table(&dump).owner(), Owner::Foreign { .. }));
        // Nor a table with another comment, nor an empty one.
        let mut other = dump_of(&want);
        other.userdata = b"\x00\x05host\x00".to_vec();
        assert!(matches!(table(&other).owner(), Owner::Foreign { .. }));
        let empty = dump_of(&Ruleset {
            table: "dockfw".into(),
            sets: vec![],
            chains: vec![],
        });
        let mut empty = empty;
        empty.userdata.clear();
        assert!(matches!(table(&empty).owner(), Owner::Foreign { .. }));
    }

    #[test]
    fn an_unmarked_table_without_dockfws_core_chains_is_not_ours() {
        // A host table of empty accept-policy `input`/`forward` chains: every
        // name is one dockfw uses, but `rules` and `default-fate` are missing.
        let mut want = desired();
        want.chains.retain(|c| c.hook.is_some());
        for chain in &mut want.chains {
            chain.rules.clear();
        }
        assert!(!want.chains.is_empty());
        let mut dump = dump_of(&want);
        dump.userdata.clear();
        let owner = table(&dump).owner().clone();
        let Owner::Foreign { why } = owner else {
            panic!("taken for dockfw's: {owner:?}")
        };
        assert!(why.contains("no chain `rules`"), "{why}");
    }

    #[test]
    fn missing_and_extra_rules_are_listed_one_by_one() {
        let want = desired();
        let mut dump = dump_of(&want);
        let extra = dump.rules[0].clone();
        dump.rules.push(extra);
        let comparison = table(&dump).compare(&want);
        assert_eq!(comparison.differences.len(), 1);
        assert!(matches!(comparison.differences[0], Difference::ExtraRule { .. }));
        dump.rules.clear();
        let comparison = table(&dump).compare(&want);
        assert!(matches!(
            comparison.differences[..],
            [Difference::MissingRule { .. }]
        ));
        assert_eq!(comparison.summary(), "1 rule missing");
    }
}
