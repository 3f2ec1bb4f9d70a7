//! dockfw-core: the policy language of dockfw-nft and its compiler.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod interval;
pub mod ruleset;
