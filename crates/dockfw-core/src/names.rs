//! The names and strings a policy or the command line puts into nftables,
//! checked in one place so that every `plan` loads with `nft -f` and nothing
//! typed can inject into it.
//!
//! - Table names stand bare in the nft text (nft 1.0.6 has no quoted
//!   identifiers): they must be nft identifiers (a letter, then letters,
//!   digits, `_` and `-`) and no word nftables' scanner knows as a keyword.
//! - Set names (`[sets]` keys) become kernel set names behind a `set-` prefix
//!   (`set-office-v4`), so any identifier characters do, keywords included.
//! - Rule names become comments and log prefixes, inside double quotes, which
//!   nft does not escape: no `"`, no control characters, no `\`, and no `$`
//!   (nft reads `$name` in a log prefix as a variable).
//!
//! Names dockfw generates never collide with these: its chains are fixed
//! words and `rule-N`, its sets start with `rule-`, `proxy`, `not-containers`
//! but never with `set-`, and its staging sets end in `.next`, a character no
//! checked name can hold.

use crate::nft_keywords::NFT_KEYWORDS;

/// Longest name the kernel keeps for a table, chain, set or object
/// (`NFT_NAME_MAXLEN`, 256 bytes with the terminating NUL).
pub const NFT_NAME_MAXLEN: usize = 255;
/// Longest comment nft accepts (`NFTNL_UDATA_COMMENT_MAXLEN`, 128 bytes).
pub(crate) const NFT_COMMENT_MAXLEN: usize = 128;
/// Longest log prefix the kernel keeps (`NF_LOG_PREFIXLEN`, 128 bytes with the NUL).
pub const NF_LOG_PREFIX_MAXLEN: usize = 127;

/// Longest table name dockfw accepts.
pub(crate) const MAX_TABLE_NAME_LEN: usize = 64;
/// Longest set name (`[sets]` key) dockfw accepts.
pub(crate) const MAX_SET_NAME_LEN: usize = 32;
/// Longest rule name: it becomes a comment and part of a log prefix.
pub(crate) const MAX_RULE_NAME_LEN: usize = 64;
/// What a rule's log prefix adds to its name (`dockfw CHAIN WORD NAME: `,
/// [`crate::layout::LogPrefix`]), with room for 99999 rules: longer ones
/// are cut, never the chain that identifies the rule.
pub(crate) const LOG_PREFIX_EXTRA_LEN: usize = "dockfw outbound-99999 would-reject : ".len();

// Every name dockfw derives from these stays within the kernel's limits: set
// names gain `set-`, a family suffix, a number and `.next` while staged.
const _: () = assert!(MAX_TABLE_NAME_LEN <= NFT_NAME_MAXLEN);
const _: () = assert!("set-".len() + MAX_SET_NAME_LEN + "-v4-99999.next99999".len() <= NFT_NAME_MAXLEN);
const _: () = assert!(MAX_RULE_NAME_LEN <= NFT_COMMENT_MAXLEN);
const _: () = assert!(MAX_RULE_NAME_LEN + LOG_PREFIX_EXTRA_LEN <= NF_LOG_PREFIX_MAXLEN);

/// Why a name cannot be used, and what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct NameError {
    /// What is wrong, naming the name.
    pub problem: String,
    /// What to write instead.
    pub hint: String,
}

impl NameError {
    fn new(problem: String, hint: impl Into<String>) -> Self {
        Self {
            problem,
            hint: hint.into(),
        }
    }
}

/// Whether nftables' scanner reads `word` as a keyword (in any context, in
/// the versions users run: 1.0.x and 1.1.x).
pub(crate) fn is_nft_keyword(word: &str) -> bool {
    NFT_KEYWORDS.binary_search(&word).is_ok()
}

/// Every nft keyword a name must not be, sorted.
pub fn nft_keywords() -> &'static [&'static str] {
    NFT_KEYWORDS
}

fn identifier_chars(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks a table name, from the policy's `guard.table` or `--table`.
pub fn check_table_name(name: &str) -> Result<(), NameError> {
    const HINT: &str = "use letters, digits, '_' and '-', starting with a letter, at most 64 characters";
    let valid = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && identifier_chars(name);
    if !valid {
        return Err(NameError::new(
            format!("table name {name:?} is not a valid nftables name"),
            HINT,
        ));
    }
    if is_nft_keyword(name) {
        return Err(NameError::new(
            format!("table name {name:?} is an nftables keyword, which nft cannot read as a name"),
            format!("choose another name, like \"dockfw-{name}\""),
        ));
    }
    Ok(())
}

/// Checks the name of a `[sets]` entry.
pub(crate) fn check_set_name(name: &str) -> Result<(), NameError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SET_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && identifier_chars(name);
    if valid {
        Ok(())
    } else {
        Err(NameError::new(
            format!("set name {name:?} is not allowed"),
            format!("use letters, digits, '_' and '-' (at most {MAX_SET_NAME_LEN} characters)"),
        ))
    }
}

/// Checks a rule name (it becomes a comment and a log prefix).
pub(crate) fn check_rule_name(name: &str) -> Result<(), NameError> {
    const HINT: &str = "letters, digits, spaces and most punctuation will do";
    if name.trim().is_empty() {
        return Err(NameError::new("a rule name cannot be empty".to_string(), HINT));
    }
    if name.len() > MAX_RULE_NAME_LEN {
        return Err(NameError::new(
            format!("a rule name has at most {MAX_RULE_NAME_LEN} bytes"),
            "shorten it",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || matches!(c, '"' | '\\' | '$'))
    {
        return Err(NameError::new(format!("a rule name cannot contain {c:?}"), HINT));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyword_list_is_sorted_and_unique() {
        assert!(NFT_KEYWORDS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn every_keyword_is_an_identifier_but_not_a_table_name() {
        for keyword in NFT_KEYWORDS {
            assert!(identifier_chars(keyword), "{keyword}");
            let error = check_table_name(keyword).unwrap_err();
            assert!(error.problem.contains("keyword"), "{keyword}: {error}");
        }
    }

    #[test]
    fn names_that_would_inject_into_the_plan_are_refused() {
        for name in [
            "x\nflush ruleset\ntable inet x",
            "x;flush ruleset",
            "a b",
            "",
            "1abc",
            "é",
        ] {
            assert!(check_table_name(name).is_err(), "{name:?}");
        }
        for name in ["a\"b", "a\nb", "a\\b", "cost $5", "\t"] {
            assert!(check_rule_name(name).is_err(), "{name:?}");
        }
        assert!(check_table_name("dockfw").is_ok());
        assert!(
            check_table_name("Counter").is_ok(),
            "nft's keywords are lowercase"
        );
        assert!(check_set_name("counter").is_ok(), "set names are prefixed");
        assert!(check_rule_name("web: 80/443 (prod) #1 'é'").is_ok());
        // nft writes an interface prefix with its '*' within IFNAMSIZ.
        assert!(crate::values::parse_ifname("abcdefghijklmn*").is_ok());
        assert!(crate::values::parse_ifname("abcdefghijklmno*").is_err());
    }
}

/// The candidate `name` was most likely meant to be, for a "did you mean":
/// at most two edits away (one for names of up to four characters), the
/// fewest edits first, then the one sharing most of its start (so `wb`
/// suggests `web`, not `db`).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(candidate, name), candidate))
        .filter(|&(edits, _)| edits <= limit)
        .min_by(|(a_edits, a), (b_edits, b)| {
            let shared = |candidate: &str| {
                candidate
                    .chars()
                    .zip(name.chars())
                    .take_while(|(x, y)| x == y)
                    .count()
            };
            a_edits
                .cmp(b_edits)
                .then_with(|| shared(b).cmp(&shared(a)))
                .then_with(|| {
                    strsim::jaro_winkler(b, name)
                        .partial_cmp(&strsim::jaro_winkler(a, name))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .then_with(|| a.cmp(b))
        })
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod closest_tests {
    use super::closest;

    #[test]
    fn the_likeliest_name_is_suggested() {
        assert_eq!(closest("wb", ["db", "web"]), Some("web"));
        assert_eq!(closest("wbe", ["db", "web"]), Some("web"));
        assert_eq!(closest("proxxy", ["proxy", "app"]), Some("proxy"));
        assert_eq!(closest("x", ["db", "web"]), None);
        assert_eq!(closest("databse", ["database", "db"]), Some("database"));
    }
}
