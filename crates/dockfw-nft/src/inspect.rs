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
use crate::owner::{self, Owner};
use dockfw_core::ruleset::Ruleset;

mod compare;
mod text;

pub use compare::{Comparison, Difference};
use text::View;

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
    /// table: for stand-ins of the kernel in tests. A comment of [`MARKER`](crate::MARKER)
    /// makes it dockfw's, another comment foreign; without one it is
    /// dockfw's if its chains are named as dockfw names them
    /// ([`Owner::Unmarked`]), as for a table read from the kernel.
    pub fn holding(ruleset: &Ruleset, flags: u32, comment: Option<&str>) -> Self {
        let userdata = comment.map(owner::comment_userdata).unwrap_or_default();
        let owner = owner::by_userdata(&userdata).unwrap_or_else(|| owner::by_content(Ok(ruleset)));
        let mut view = View::from_ruleset(ruleset);
        view.flags = flags;
        view.head = text::head_lines(&userdata);
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
        if let Ok(set) = decode::set(spec, elems) {
            ruleset.sets.push(set);
        }
    }
    ruleset.runtime_sets_first();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;
    use crate::ffi::{ChainInfo, FlowtableInfo, ObjectInfo, RuleInfo};
    use dockfw_core::ruleset::{BaseHook, Chain, Hook, Rule, Verdict};

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
        let decoded = crate::read::decode_table("dockfw", dump, None)
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
