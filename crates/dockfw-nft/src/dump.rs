//! A table's raw contents as one consistent read returned them, before
//! decoding: what reading produces and inspecting, ownership and applying
//! consume.

use crate::ffi;
use std::collections::HashSet;

/// The raw contents of a table, read in one consistent generation (counter
/// values zeroed: they are not part of what was applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableDump {
    pub(crate) flags: u32,
    /// Table userdata: dockfw's ownership marker (see [`crate::owner`]).
    pub(crate) userdata: Vec<u8>,
    pub(crate) chains: Vec<ffi::ChainInfo>,
    pub(crate) sets: Vec<(ffi::SetSpec, ffi::Elems)>,
    pub(crate) rules: Vec<ffi::RuleInfo>,
    /// Stateful objects; dockfw writes none.
    pub(crate) objects: Vec<ffi::ObjectInfo>,
    /// Flowtables; dockfw writes none.
    pub(crate) flowtables: Vec<ffi::FlowtableInfo>,
}

impl TableDump {
    /// No table contents at all.
    pub(crate) fn empty() -> Self {
        Self {
            flags: 0,
            userdata: Vec::new(),
            chains: Vec::new(),
            sets: Vec::new(),
            rules: Vec::new(),
            objects: Vec::new(),
            flowtables: Vec::new(),
        }
    }

    /// Whether a chain or set name appears twice, which no committed table
    /// can hold (see [`crate::Nft::read`]).
    pub(crate) fn repeats_a_name(&self) -> bool {
        let mut chains = HashSet::new();
        let mut sets = HashSet::new();
        !self.chains.iter().all(|c| chains.insert(c.name.as_str()))
            || !self.sets.iter().all(|(s, _)| sets.insert(s.name.as_str()))
    }
}
