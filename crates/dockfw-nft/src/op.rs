//! The changes a planned step is made of: what [`plan`](crate::plan)
//! decides and [`encode`](crate::encode) turns into netlink messages. Its
//! own module so that the planner and the encoder need not import each other.

use dockfw_core::ruleset::{BaseHook, Rule, SetElements};

/// One change within a transaction, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    CreateTable,
    /// Create set `name` holding `elements`; `copy_of` names the wanted set
    /// a staging copy stands for.
    CreateSet {
        name: String,
        elements: SetElements,
        copy_of: Option<String>,
    },
    /// Make set `name` hold `elements` (same type) by deleting the
    /// intervals in `remove` and adding those in `add`.
    UpdateSet {
        name: String,
        remove: SetElements,
        add: SetElements,
        elements: SetElements,
        copy_of: Option<String>,
    },
    DeleteSet(String),
    CreateChain {
        name: String,
        hook: Option<BaseHook>,
    },
    /// Delete every rule of a chain.
    FlushChain(String),
    DeleteChain(String),
    DeleteRule {
        chain: String,
        handle: u64,
        comment: String,
    },
    /// Add `rule` (already pointed at staging copies where needed) as rule
    /// `index` of `chain`: before the rule with handle `before`, or at the end.
    AddRule {
        chain: String,
        index: usize,
        rule: Rule,
        before: Option<u64>,
    },
}
