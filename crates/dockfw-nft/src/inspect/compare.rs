//! Comparing an installed table with the desired ruleset: every
//! [`Difference`], and a summary for a status line.

use super::text::FOREIGN_SET;
use super::text::{RuleView, View, flag_names};
use std::fmt;

/// `NFT_TABLE_F_DORMANT`: every base chain of the table is unregistered.
const TABLE_DORMANT: u32 = 1;

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
    /// A set whose elements belong to run time (a policy's `dynamic` set)
    /// with another type or flags (e.g. default timeout) than the policy
    /// says: `apply` recreates it, and the addresses run time put in it are
    /// lost. Its elements themselves are never a difference.
    RuntimeSetDiffers {
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
            Self::RuntimeSetDiffers { set } => write!(
                f,
                "dynamic set `{set}` has other flags or another timeout: apply recreates it, \
                 and the addresses added at run time are lost"
            ),
            Self::Object { object } => write!(f, "object dockfw did not write: {object}"),
            Self::Flowtable { name } => write!(f, "flowtable `{name}` dockfw did not write"),
            Self::Other { what } => f.write_str(what),
        }
    }
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
                        | Difference::RuntimeSetDiffers { .. }
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

impl View {
    /// Every difference from `want` (this view being the installed table).
    pub(super) fn differences(&self, want: &View) -> Vec<Difference> {
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
                Some((_, wanted)) if wanted != text => {
                    let runtime = |text: &str| text.contains(dockfw_core::render::RUNTIME_ELEMENTS_NOTE);
                    out.push(if runtime(wanted) && runtime(text) {
                        Difference::RuntimeSetDiffers { set: name.clone() }
                    } else {
                        Difference::SetDiffers { set: name.clone() }
                    })
                }
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
