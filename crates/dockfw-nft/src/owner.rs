//! Which tables are dockfw's.
//!
//! Every table dockfw creates carries a comment, [`MARKER`], in its table
//! userdata, written by the very message that creates it (so a table is
//! never ours without the mark, nor marked without being ours). It is the
//! TLV `nft` writes for `table inet NAME { comment "…" }` (type
//! `NFTNL_UDATA_TABLE_COMMENT`, a NUL-terminated string), so `nft list
//! table` shows it.
//!
//! The kernel cannot change a table's userdata in place: a `NEWTABLE` for an
//! existing table updates its flags only and silently ignores the comment.
//! So a table written by a dockfw version before the marker keeps having
//! none until it is created anew. Such a table still counts as dockfw's when
//! its whole content decodes as dockfw's layout (see [`Owner::Unmarked`]);
//! it receives the marker the next time the table is rebuilt (`apply
//! --force`, or `apply` repairing table flags), never by a glitch of its own.
//!
//! The marker guards against mistakes, not against other programs: anything
//! with `CAP_NET_ADMIN` can create a table with the same comment, and it is
//! then taken for dockfw's (and compared with the policy like any other).

use crate::dump::TableDump;
use dockfw_core::layout::CORE_CHAINS;
use dockfw_core::ruleset::Ruleset;

/// The comment dockfw puts on the tables it creates.
pub const MARKER: &str = "managed by dockfw-nft";

/// `NFTNL_UDATA_TABLE_COMMENT`.
const UDATA_TABLE_COMMENT: u8 = 0;

/// Table userdata holding [`MARKER`] as the table comment.
pub(crate) fn table_userdata() -> Vec<u8> {
    comment_userdata(MARKER)
}

/// Table userdata holding `comment` as the table comment, as `nft` writes
/// it (at most 254 bytes; nft allows 128).
pub(crate) fn comment_userdata(comment: &str) -> Vec<u8> {
    let mut udata = vec![UDATA_TABLE_COMMENT, (comment.len() + 1) as u8];
    udata.extend_from_slice(comment.as_bytes());
    udata.push(0);
    udata
}

/// The table comment in table userdata, if any (`None` also when the
/// userdata cannot be read as nft writes it).
pub(crate) fn table_comment(udata: &[u8]) -> Option<String> {
    let mut at = 0;
    while at + 2 <= udata.len() {
        let (kind, len) = (udata[at], udata[at + 1] as usize);
        let value = udata.get(at + 2..at + 2 + len)?;
        if kind == UDATA_TABLE_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(text.to_vec()).ok();
        }
        at += 2 + len;
    }
    None
}

/// Whose a table is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owner {
    /// Marked by dockfw when it created the table.
    Dockfw,
    /// Unmarked (written by a dockfw version before the marker), and
    /// everything in it decodes as dockfw's layout: no table comment,
    /// objects or flowtables; the chains every dockfw table has (`rules` and
    /// `default-fate`, [`dockfw_core::layout::CORE_CHAINS`]), every chain
    /// named as dockfw names them (`forward`, `input`, `guarded`,
    /// `docker-proxy`, `untracked`, `rules`, `rule-N`, `default-fate`) and
    /// every chain, set and rule exactly as dockfw encodes one. So a host
    /// table of empty `input`/`forward` chains is not taken for dockfw's. Table flags do not matter (they say nothing of
    /// who wrote the content). Treated as dockfw's.
    Unmarked,
    /// Not dockfw's: `apply` and `remove` leave it alone unless told to take
    /// it over.
    Foreign {
        /// Why it is not dockfw's, e.g. `its comment is "host firewall"`.
        why: String,
    },
}

impl Owner {
    /// Whether dockfw may change or delete the table.
    pub fn is_dockfw(&self) -> bool {
        !matches!(self, Self::Foreign { .. })
    }
}

/// Whose the dumped table is; `decoded` is its decoding as a dockfw ruleset
/// (an error if anything in it is not dockfw's).
pub(crate) fn owner(dump: &TableDump, decoded: Result<&Ruleset, &str>) -> Owner {
    if let Some(owner) = by_userdata(&dump.userdata) {
        return owner;
    }
    if let Some(object) = dump.objects.first() {
        return unmarked(format!("holds {}", object.text));
    }
    if let Some(flowtable) = dump.flowtables.first() {
        return unmarked(format!("holds flowtable {}", flowtable.name));
    }
    by_content(decoded)
}

/// Whose a table with this userdata is, if its userdata decides it (a
/// comment, or userdata dockfw never writes); `None` for no userdata.
pub(crate) fn by_userdata(userdata: &[u8]) -> Option<Owner> {
    match table_comment(userdata) {
        Some(comment) if comment == MARKER => Some(Owner::Dockfw),
        Some(comment) => Some(Owner::Foreign {
            why: format!("its comment is {comment:?}, not dockfw's {MARKER:?}"),
        }),
        None if !userdata.is_empty() => Some(Owner::Foreign {
            why: "it carries userdata dockfw never writes".into(),
        }),
        None => None,
    }
}

fn unmarked(why: String) -> Owner {
    Owner::Foreign {
        why: format!("it has no dockfw marker and {why}"),
    }
}

/// Whose an unmarked table without objects or flowtables is, by its content.
pub(crate) fn by_content(decoded: Result<&Ruleset, &str>) -> Owner {
    let ruleset = match decoded {
        Ok(ruleset) => ruleset,
        Err(what) => return unmarked(format!("holds what dockfw does not write ({what})")),
    };
    if ruleset.chains.is_empty() {
        return unmarked("no chains".into());
    }
    if let Some(chain) = ruleset.chains.iter().find(|c| !is_dockfw_chain_name(&c.name)) {
        return unmarked(format!("a chain `{}` dockfw never names so", chain.name));
    }
    // Empty accept-policy `input`/`forward` chains are a common host table;
    // only the chains every dockfw layout has make it look like ours.
    if let Some(missing) = CORE_CHAINS.iter().find(|name| ruleset.chain(name).is_none()) {
        return unmarked(format!("no chain `{missing}`, which every dockfw table has"));
    }
    Owner::Unmarked
}

fn is_dockfw_chain_name(name: &str) -> bool {
    dockfw_core::layout::is_layout_chain(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_tlv_is_what_nft_writes() {
        // nft -d netlink: `add table inet t { comment "x" }` sends udata 00 02 78 00.
        let udata = table_userdata();
        assert_eq!(udata[0], 0);
        assert_eq!(udata[1] as usize, MARKER.len() + 1);
        assert_eq!(*udata.last().unwrap(), 0);
        assert_eq!(table_comment(&udata).as_deref(), Some(MARKER));
        // The rule comment decoder reads the same TLV layout.
        assert_eq!(crate::decode::comment(&udata).unwrap(), MARKER);
        assert_eq!(table_comment(&[]), None);
        assert_eq!(table_comment(&[0, 9, b'x']), None);
    }

    #[test]
    fn dockfw_chain_names() {
        for name in [
            "forward",
            "input",
            "rules",
            "rule-1",
            "rule-120",
            "default-fate",
            "guarded",
            "docker-proxy",
            "untracked",
            "label",
            "from-containers",
            "outbound",
            "outbound-3",
            "outbound-default",
            "between",
            "between-12",
            "between-default",
            "between-proxied",
        ] {
            assert!(is_dockfw_chain_name(name), "{name}");
        }
        for name in [
            "INPUT",
            "filter",
            "rule-",
            "rule-x",
            "rule-0",
            "output",
            "outbound-0",
            "between-x",
            "outbound-",
        ] {
            assert!(!is_dockfw_chain_name(name), "{name}");
        }
    }
}
