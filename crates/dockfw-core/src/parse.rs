//! Reading a policy file: TOML → validated [`Policy`], or every error found,
//! each with its file:line:column, the rule, and a hint.
//!
//! The file is walked as a spanned TOML tree rather than through serde derive,
//! so that every value keeps its place, lists may be written as a single value,
//! ports may be integers, and unknown keys get a "did you mean" suggestion.

use crate::diag::{self, Collector, Diagnostic, Location, PolicyError, Severity};
use crate::interval;
use crate::layout::MAX_CT_LABELLED_PATTERNS;
use crate::lint;
use crate::names;
use crate::policy::{
    Action, AddrMatch, ContainerRule, DEFAULT_LOG_GROUP, DEFAULT_PRIORITY, DEFAULT_TABLE, Destination,
    Direction, Guard, Limit, LogTarget, Mode, Policy, PortEntry, PortSet, Rule, Selector,
};
use crate::ruleset::{IfName, Proto};
use crate::sets::{self, ExternalSource, Loaded, Set, SetEntry, SetSource};
use crate::values::{self, AddrSet, IpRange, ValueError};
use serde_spanned::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::Duration;
use toml::de::{DeTable, DeValue};

/// A policy read without errors, and the warnings about it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The policy.
    pub policy: Policy,
    /// Warnings: the policy works, but maybe not as meant.
    pub warnings: Vec<Diagnostic>,
}

/// The policy file format this version understands.
const VERSION: i64 = 1;

/// Reads and validates a policy. `file` names the source in diagnostics.
///
/// A policy whose sets have sources outside it (`file`, `url`, `names`) is
/// an error here, since this crate reads nothing: read it with
/// [`Draft::parse`], load those sources and [`Draft::resolve`] it.
///
/// ```
/// let parsed = dockfw_core::parse("policy.toml", r#"
///     [guard]
///     interfaces = ["eth0"]
///     [[rule]]
///     ports = ["80", "443"]
/// "#).unwrap();
/// assert_eq!(parsed.policy.rules[0].name, "rule 1");
/// ```
pub fn parse(file: &str, text: &str) -> Result<Parsed, PolicyError> {
    Draft::parse(file, text)?.resolve(Loaded::new())
}

/// Reads and validates a policy as read from a file: like [`parse`], but the
/// bytes must first be UTF-8, and when they are not, the error points at the
/// line and column of the first byte that is not.
///
/// ```
/// let error = dockfw_core::parse_bytes("p.toml", b"[guard]\ninterfaces = [\"eth\xff\"]\n").unwrap_err();
/// let location = error.diagnostics[0].location.as_ref().unwrap();
/// assert_eq!((location.line, location.column), (2, 19));
/// ```
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Parsed, PolicyError> {
    Draft::parse_bytes(file, bytes)?.resolve(Loaded::new())
}

/// A policy read and validated, but whose sets' sources outside the policy
/// (`file`, `url`, `names`, `dynamic`) are not loaded yet: the caller loads
/// each of [`Draft::external_sources`] (this crate does no I/O) and
/// [`Draft::resolve`]s it into the [`Parsed`] policy. See [`crate::sets`].
#[derive(Debug, Clone)]
pub struct Draft {
    policy: Policy,
    /// Warnings so far.
    diagnostics: Vec<Diagnostic>,
}

impl Draft {
    /// Reads and validates a policy; `file` names the source in diagnostics.
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let mut out = Collector::new(file, text);
        let document = match DeTable::parse(text) {
            Ok(document) => document,
            Err(error) => {
                let span = error.span().unwrap_or(0..0);
                out.error(
                    span,
                    None,
                    format!("invalid TOML: {}", error.message().trim_end()),
                    None,
                );
                return Err(PolicyError {
                    diagnostics: out.into_sorted(),
                });
            }
        };
        match read_policy(&mut out, document.get_ref()) {
            Some(policy) if !out.has_errors() => Ok(Self {
                policy,
                diagnostics: out.diagnostics,
            }),
            _ => Err(PolicyError {
                diagnostics: out.into_sorted(),
            }),
        }
    }

    /// Like [`Draft::parse`], for bytes that must first be UTF-8 (see [`parse_bytes`]).
    pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Self, PolicyError> {
        let error = match std::str::from_utf8(bytes) {
            Ok(text) => return Self::parse(file, text),
            Err(error) => error,
        };
        let valid = error.valid_up_to();
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let mut out = Collector::new(file, before);
        let bad: Vec<String> = bytes[valid..]
            .iter()
            .take(error.error_len().unwrap_or(bytes.len() - valid).min(4))
            .map(|byte| format!("0x{byte:02x}"))
            .collect();
        out.error(
            valid..valid,
            None,
            format!(
                "the policy is not UTF-8 text: {} is not valid UTF-8",
                bad.join(" ")
            ),
            "save the policy as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)".to_string(),
        );
        Err(PolicyError {
            diagnostics: out.into_sorted(),
        })
    }

    /// The `[guard]` section, complete already (it needs nothing loaded).
    pub fn guard(&self) -> &Guard {
        &self.policy.guard
    }

    /// What chain `chain` decides: [`crate::layout::decision_of_chain`]
    /// (names and actions need nothing loaded).
    pub fn decision_of_chain(&self, chain: &str) -> Option<(Direction, String, Action)> {
        crate::layout::decision_of_chain(&self.policy, chain)
    }

    /// The `[sets]`, by name, with their sources (their addresses are not
    /// loaded yet; a `dynamic` set needs none: [`Set::is_dynamic`]).
    pub fn sets(&self) -> &BTreeMap<String, Set> {
        &self.policy.sets
    }

    /// Every set source to load before [`Draft::resolve`], by set name then
    /// in the order written.
    pub fn external_sources(&self) -> impl Iterator<Item = ExternalSource<'_>> {
        self.policy.sets.iter().flat_map(|(name, set)| {
            set.sources
                .iter()
                .enumerate()
                .filter(|(_, source)| source.is_external())
                .map(move |(index, source)| ExternalSource {
                    set: name,
                    index,
                    source,
                })
        })
    }

    /// Reads the loaded sources into the sets (a bad line of a list is an
    /// error at its file:line:column), completes the rules' addresses, and
    /// checks the whole policy. A `file`, `url` or `names` source missing
    /// from `loaded` is an error: a set is never silently empty.
    pub fn resolve(self, loaded: Loaded) -> Result<Parsed, PolicyError> {
        let Self {
            mut policy,
            mut diagnostics,
        } = self;
        sets::resolve(&mut policy.sets, loaded, &mut diagnostics);
        let has_errors = |d: &[Diagnostic]| d.iter().any(|d| d.severity == Severity::Error);
        if has_errors(&diagnostics) {
            return Err(PolicyError {
                diagnostics: diag::sorted(diagnostics),
            });
        }
        for rule in &mut policy.rules {
            for addresses in [rule.from.as_mut(), rule.to.as_mut()].into_iter().flatten() {
                add_set_addresses(addresses, &policy.sets);
            }
        }
        for rule in &mut policy.outbound {
            if let Some(Destination::Addresses(addresses)) = &mut rule.to {
                add_set_addresses(addresses, &policy.sets);
            }
        }
        lint::lint(&policy, &mut diagnostics);
        Ok(Parsed {
            policy,
            warnings: diag::sorted(diagnostics),
        })
    }
}

/// Adds to a rule's `from` or `to` the addresses of the sets it names, and
/// the names of the dynamic ones, whose addresses are known at run time only.
fn add_set_addresses(addresses: &mut AddrMatch, sets: &BTreeMap<String, Set>) {
    for name in addresses
        .entries
        .iter()
        .filter_map(|entry| entry.strip_prefix('@'))
    {
        if let Some(set) = sets.get(name) {
            if set.is_dynamic() {
                if !addresses.dynamic.iter().any(|known| known == name) {
                    addresses.dynamic.push(name.to_string());
                }
                continue;
            }
            addresses.addrs = if addresses.addrs.is_empty() {
                set.addrs.clone()
            } else {
                addresses.addrs.union(&set.addrs)
            };
        }
    }
}

type Value<'i> = Spanned<DeValue<'i>>;

/// The keys of one TOML table, read one by one; what is left unread is unknown.
struct TableReader<'t, 'i> {
    entries: Vec<(&'t str, Range<usize>, &'t Value<'i>)>,
    /// Where the values of the keys taken so far start.
    taken: BTreeMap<String, usize>,
    known: &'static [&'static str],
    rule: Option<String>,
    section: String,
}

impl<'t, 'i> TableReader<'t, 'i> {
    fn new(
        table: &'t DeTable<'i>,
        known: &'static [&'static str],
        section: impl Into<String>,
        rule: Option<String>,
    ) -> Self {
        let entries = table
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
            .collect();
        Self {
            entries,
            taken: BTreeMap::new(),
            known,
            rule,
            section: section.into(),
        }
    }

    fn take(&mut self, key: &str) -> Option<&'t Value<'i>> {
        let index = self.entries.iter().position(|(k, _, _)| *k == key)?;
        let value = self.entries.swap_remove(index).2;
        self.taken.insert(key.to_string(), value.span().start);
        Some(value)
    }

    /// Reports the keys nobody asked for.
    fn finish(self, out: &mut Collector<'_>) {
        let rule = self.rule.as_deref();
        for (key, span, _) in &self.entries {
            let suggestion = self
                .known
                .iter()
                .map(|known| (strsim::levenshtein(key, known), known))
                .filter(|(distance, _)| *distance <= 2)
                .min()
                .map(|(_, known)| format!("did you mean \"{known}\"?"));
            let hint = suggestion.unwrap_or_else(|| format!("known keys here: {}", self.known.join(", ")));
            out.error(
                span.clone(),
                rule,
                format!("unknown key \"{key}\" in {}", self.section),
                hint,
            );
        }
    }
}

fn type_error(out: &mut Collector<'_>, value: &Value<'_>, rule: Option<&str>, key: &str, expected: &str) {
    out.error(
        value.span(),
        rule,
        format!("\"{key}\" must be {expected}, not {}", value.get_ref().type_str()),
        None,
    );
}

fn value_error(
    out: &mut Collector<'_>,
    span: Range<usize>,
    rule: Option<&str>,
    key: &str,
    error: ValueError,
) {
    out.error(span, rule, format!("{key}: {}", error.message), error.hint);
}

fn read_string<'t>(
    out: &mut Collector<'_>,
    value: &'t Value<'_>,
    rule: Option<&str>,
    key: &str,
) -> Option<&'t str> {
    let text = value.get_ref().as_str();
    if text.is_none() {
        type_error(out, value, rule, key, "a string");
    }
    text
}

fn read_bool(out: &mut Collector<'_>, value: Option<&Value<'_>>, rule: Option<&str>, key: &str) -> bool {
    let Some(value) = value else { return false };
    match value.get_ref().as_bool() {
        Some(flag) => flag,
        None => {
            type_error(out, value, rule, key, "true or false");
            false
        }
    }
}

fn read_integer(out: &mut Collector<'_>, value: &Value<'_>, rule: Option<&str>, key: &str) -> Option<i64> {
    let integer = value.get_ref().as_integer();
    let parsed = integer.and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
    if integer.is_none() {
        type_error(out, value, rule, key, "a whole number");
    } else if parsed.is_none() {
        out.error(value.span(), rule, format!("\"{key}\" is too large"), None);
    }
    parsed
}

/// A list, or a single value standing for a list of one.
fn read_list<'t, 'i>(
    out: &mut Collector<'_>,
    value: &'t Value<'i>,
    rule: Option<&str>,
    key: &str,
) -> Option<Vec<&'t Value<'i>>> {
    let items: Vec<&Value<'i>> = match value.get_ref() {
        DeValue::Array(items) => items.iter().collect(),
        DeValue::Table(_) => {
            type_error(out, value, rule, key, "a list");
            return None;
        }
        _ => vec![value],
    };
    if items.is_empty() {
        out.error(
            value.span(),
            rule,
            format!("\"{key}\" is an empty list, which would match nothing"),
            format!("remove \"{key}\" to match anything, or list at least one entry"),
        );
        return None;
    }
    Some(items)
}

fn read_policy(out: &mut Collector<'_>, root: &DeTable<'_>) -> Option<Policy> {
    let mut top = TableReader::new(
        root,
        &["version", "guard", "sets", "rule", "outbound", "between"],
        "the top level",
        None,
    );
    if let Some(version) = top.take("version")
        && let Some(number) = read_integer(out, version, None, "version")
        && number != VERSION
    {
        out.error(
            version.span(),
            None,
            format!("unknown policy version {number}"),
            format!("this dockfw-nft understands version {VERSION}; upgrade dockfw-nft or write version = {VERSION}"),
        );
    }
    let guard = match top.take("guard") {
        Some(value) => match value.get_ref().as_table() {
            Some(table) => read_guard(out, table, value.span()),
            None => {
                type_error(out, value, None, "guard", "a table ([guard])");
                None
            }
        },
        None => {
            out.push(
                Severity::Error,
                Some(0..0),
                None,
                "the [guard] section is missing",
                Some(
                    "add [guard] with interfaces = [\"eth0\"] naming where outside traffic arrives"
                        .to_string(),
                ),
            );
            None
        }
    };
    let sets = match top.take("sets") {
        Some(value) => match value.get_ref().as_table() {
            Some(table) => read_sets(out, table),
            None => {
                type_error(out, value, None, "sets", "a table ([sets])");
                BTreeMap::new()
            }
        },
        None => BTreeMap::new(),
    };
    let mut array_of_tables = |key: &str| match top.take(key) {
        Some(value) => match value.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            DeValue::Table(_) => {
                out.error(
                    value.span(),
                    None,
                    format!("\"{key}\" must be an array of tables"),
                    format!("write each rule under [[{key}]] (two brackets)"),
                );
                Vec::new()
            }
            _ => {
                type_error(out, value, None, key, &format!("an array of tables ([[{key}]])"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let rule_values = array_of_tables("rule");
    let outbound_values = array_of_tables("outbound");
    let between_values = array_of_tables("between");
    top.finish(out);

    let guard = guard?;
    let mut rules = Vec::new();
    let mut seen_names: HashMap<String, Range<usize>> = HashMap::new();
    let mut patterns: Vec<IfName> = Vec::new();
    let mut too_many_patterns = false;
    for (index, value) in rule_values.into_iter().enumerate() {
        let Some(table) = value.get_ref().as_table() else {
            type_error(out, value, None, "rule", "a table");
            continue;
        };
        if let Some(rule) = read_rule(out, table, value.span(), index, &guard, &sets, &mut seen_names) {
            // Each distinct interface pattern takes one connection label bit.
            for pattern in guard.interfaces.iter().chain(rule.interfaces.iter().flatten()) {
                if !patterns.contains(pattern) {
                    patterns.push(pattern.clone());
                }
            }
            if patterns.len() > MAX_CT_LABELLED_PATTERNS && !too_many_patterns {
                too_many_patterns = true;
                let span = table.get("interfaces").map_or(value.span(), |v| v.span());
                out.error(
                    span,
                    Some(&rule.name),
                    format!("the policy names more than {MAX_CT_LABELLED_PATTERNS} distinct interface patterns"),
                    "each pattern in guard.interfaces and rules' interfaces takes one connection label bit (96-127, for revoke); use fewer, or a wildcard like \"wg*\"".to_string(),
                );
            }
            rules.push(rule);
        }
    }
    let mut container_rules = |values: Vec<&Value<'_>>, direction: Direction| -> Vec<ContainerRule> {
        let mut read = Vec::new();
        for (index, value) in values.into_iter().enumerate() {
            let Some(table) = value.get_ref().as_table() else {
                type_error(out, value, None, direction.name(), "a table");
                continue;
            };
            read.extend(read_container_rule(
                out,
                table,
                value.span(),
                index,
                direction,
                &sets,
                &mut seen_names,
            ));
        }
        read
    };
    let outbound = container_rules(outbound_values, Direction::Outbound);
    let between = container_rules(between_values, Direction::Between);
    Some(Policy {
        guard,
        sets,
        rules,
        outbound,
        between,
    })
}

fn read_guard(out: &mut Collector<'_>, table: &DeTable<'_>, span: Range<usize>) -> Option<Guard> {
    let mut keys = TableReader::new(
        table,
        &[
            "interfaces",
            "default",
            "log",
            "table",
            "priority",
            "revoke",
            "outbound",
            "between",
            "mode",
            "log_to",
            "log_group",
        ],
        "[guard]",
        None,
    );
    let interfaces = match keys.take("interfaces") {
        Some(value) => read_interfaces(out, value, None).filter(|names| {
            let mut distinct = names.clone();
            distinct.sort();
            distinct.dedup();
            let fits = distinct.len() <= MAX_CT_LABELLED_PATTERNS;
            if !fits {
                out.error(
                    value.span(),
                    None,
                    format!(
                        "[guard] lists {} interfaces; at most {MAX_CT_LABELLED_PATTERNS}",
                        distinct.len()
                    ),
                    "each takes one connection label bit (96-127, for revoke); use a wildcard like \"wg*\""
                        .to_string(),
                );
            }
            fits
        }),
        None => {
            out.error(
                span.clone(),
                None,
                "[guard] needs \"interfaces\"",
                "list where outside traffic arrives, like interfaces = [\"eth0\"] (\"wg*\" matches every name starting with wg)".to_string(),
            );
            None
        }
    };
    let default = match keys.take("default") {
        Some(value) => read_action(out, value, None, "default", true),
        None => Some(Action::Drop),
    };
    let log = read_bool(out, keys.take("log"), None, "log");
    let revoke = keys
        .take("revoke")
        .is_none_or(|value| match value.get_ref().as_bool() {
            Some(flag) => flag,
            None => {
                type_error(out, value, None, "revoke", "true or false");
                true
            }
        });
    let table_name = match keys.take("table") {
        Some(value) => {
            read_string(out, value, None, "table").and_then(|name| match names::check_table_name(name) {
                Ok(()) => Some(name.to_string()),
                Err(error) => {
                    out.error(value.span(), None, error.problem, error.hint);
                    None
                }
            })
        }
        None => Some(DEFAULT_TABLE.to_string()),
    };
    let priority = match keys.take("priority") {
        Some(value) => read_integer(out, value, None, "priority").and_then(|priority| {
            let valid = (-99..=-1).contains(&priority);
            if !valid {
                out.error(
                    value.span(),
                    None,
                    format!("priority {priority} is out of range"),
                    "it must be between -99 and -1: below Docker's filter chains (0), after DNAT (-100)"
                        .to_string(),
                );
            }
            valid.then_some(priority as i32)
        }),
        None => Some(DEFAULT_PRIORITY),
    };
    // Containers' own connections: not judged unless the policy says so.
    let outbound = match keys.take("outbound") {
        Some(value) => read_action(out, value, None, "outbound", true),
        None => Some(Action::Allow),
    };
    let between = match keys.take("between") {
        Some(value) => read_action(out, value, None, "between", true),
        None => Some(Action::Allow),
    };
    let mode = match keys.take("mode") {
        Some(value) => read_string(out, value, None, "mode").and_then(|word| {
            match word.trim().to_ascii_lowercase().as_str() {
                "enforce" => Some(Mode::Enforce),
                "audit" => Some(Mode::Audit),
                _ => {
                    out.error(
                        value.span(),
                        None,
                        format!("unknown mode {word:?}"),
                        "write \"enforce\" (drop and reject as the policy says) or \"audit\" (only log and count what would be dropped or rejected)".to_string(),
                    );
                    None
                }
            }
        }),
        None => Some(Mode::Enforce),
    };
    let log_to = read_log_target(out, keys.take("log_to"), keys.take("log_group"));
    keys.finish(out);
    Some(Guard {
        interfaces: interfaces?,
        default: default?,
        log,
        table: table_name?,
        priority: priority?,
        revoke,
        outbound: outbound?,
        between: between?,
        mode: mode?,
        log_to: log_to?,
    })
}

/// `[guard] log_to = "group" | "kernel"` and `log_group = N` (0-65535,
/// only with the group).
fn read_log_target(
    out: &mut Collector<'_>,
    to: Option<&Value<'_>>,
    group: Option<&Value<'_>>,
) -> Option<LogTarget> {
    let kernel = match to {
        None => false,
        Some(value) => match read_string(out, value, None, "log_to")?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "group" | "nflog" => false,
            "kernel" => true,
            word => {
                out.error(
                    value.span(),
                    None,
                    format!("unknown log_to {word:?}"),
                    "write \"group\" (an NFLOG group that `dockfw-nft log` follows) or \"kernel\" (the kernel log, dmesg)"
                        .to_string(),
                );
                return None;
            }
        },
    };
    let Some(value) = group else {
        return Some(if kernel {
            LogTarget::Kernel
        } else {
            LogTarget::default()
        });
    };
    let number = read_integer(out, value, None, "log_group")?;
    let Ok(number) = u16::try_from(number) else {
        out.error(
            value.span(),
            None,
            format!("log_group {number} is out of range"),
            format!("an NFLOG group is between 0 and 65535 (default {DEFAULT_LOG_GROUP})"),
        );
        return None;
    };
    if kernel {
        out.error(
            value.span(),
            None,
            "log_group is set but log_to = \"kernel\" logs to the kernel log, not to a group",
            "remove log_group, or log_to to log to the group".to_string(),
        );
        return None;
    }
    Some(LogTarget::Group(number))
}

fn read_interfaces(out: &mut Collector<'_>, value: &Value<'_>, rule: Option<&str>) -> Option<Vec<IfName>> {
    let items = read_list(out, value, rule, "interfaces")?;
    let mut names = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(text) = read_string(out, item, rule, "interfaces") else {
            ok = false;
            continue;
        };
        match values::parse_ifname(text) {
            Ok(name) if !names.contains(&name) => names.push(name),
            Ok(_) => {}
            Err(error) => {
                value_error(out, item.span(), rule, "interfaces", error);
                ok = false;
            }
        }
    }
    ok.then_some(names)
}

fn read_action(
    out: &mut Collector<'_>,
    value: &Value<'_>,
    rule: Option<&str>,
    key: &str,
    is_default: bool,
) -> Option<Action> {
    let word = read_string(out, value, rule, key)?;
    match word.trim().to_ascii_lowercase().as_str() {
        "allow" | "accept" => Some(Action::Allow),
        "drop" => Some(Action::Drop),
        "reject" => Some(Action::Reject),
        other => {
            let options = if is_default {
                "\"drop\", \"reject\" or \"accept\""
            } else {
                "\"allow\", \"drop\" or \"reject\""
            };
            let hint = match other {
                "deny" | "block" | "deny-all" => format!(
                    "write \"drop\" to discard silently or \"reject\" to refuse at once (one of {options})"
                ),
                _ => format!("write one of {options}"),
            };
            out.error(value.span(), rule, format!("unknown {key} {word:?}"), hint);
            None
        }
    }
}

fn read_sets(out: &mut Collector<'_>, table: &DeTable<'_>) -> BTreeMap<String, Set> {
    let mut sets = BTreeMap::new();
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        if let Err(error) = names::check_set_name(name) {
            out.error(key.span(), None, error.problem, error.hint);
            continue;
        }
        let mut set = Set::new(out.map.locate(value.span().start));
        match value.get_ref() {
            DeValue::Array(_) | DeValue::String(_) => read_set_entries(out, name, value, &mut set),
            DeValue::Table(sources) => read_set_sources(out, name, sources, value.span(), &mut set),
            _ => {
                type_error(
                    out,
                    value,
                    None,
                    name,
                    "a list of addresses or a table of sources like { file = \"blocked.netset\" }",
                );
                continue;
            }
        }
        sets.insert(name.to_string(), set);
    }
    sets
}

/// The keys of a set written as a table of sources.
const SET_KEYS: &[&str] = &["entries", "file", "url", "names", "refresh", "dynamic", "timeout"];

/// A set's addresses written in the policy (an inline list, or `entries`):
/// one source, each entry with its line.
fn read_set_entries(out: &mut Collector<'_>, name: &str, value: &Value<'_>, set: &mut Set) {
    let items: Vec<&Value<'_>> = match value.get_ref() {
        DeValue::Array(items) => items.iter().collect(),
        _ => vec![value],
    };
    let source = set.add_source(SetSource::Entries {
        location: out.map.locate(value.span().start),
    });
    // Entries come in file order: each line is found from the one before.
    let mut previous_line = 0;
    for item in items {
        let Some(text) = read_string(out, item, None, name) else {
            continue;
        };
        if text.trim().starts_with('@') || text.trim().eq_ignore_ascii_case("any") {
            out.error(
                item.span(),
                None,
                format!("set \"{name}\": {text:?} cannot stand in a set"),
                "sets hold addresses, CIDRs and ranges; list sets side by side in a rule's \"from\" instead"
                    .to_string(),
            );
            continue;
        }
        match values::parse_ip_range(text) {
            Ok(range) => {
                let line = out.map.line_after(&mut previous_line, item.span().start);
                set.entries.push(SetEntry {
                    range,
                    source,
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                });
            }
            Err(error) => value_error(out, item.span(), None, &format!("set \"{name}\""), error),
        }
    }
}

/// A set written as a table of sources: `entries`, `file`, `url`, `names`
/// (with `refresh`) combine; `dynamic` (with `timeout`) stands alone.
fn read_set_sources(
    out: &mut Collector<'_>,
    name: &str,
    table: &DeTable<'_>,
    span: Range<usize>,
    set: &mut Set,
) {
    let mut keys = TableReader::new(table, SET_KEYS, format!("set \"{name}\""), None);
    let entries = keys.take("entries");
    let file = keys.take("file");
    let url = keys.take("url");
    let names_value = keys.take("names");
    let refresh_value = keys.take("refresh");
    let dynamic_value = keys.take("dynamic");
    let timeout_value = keys.take("timeout");
    // A misspelt or mistyped source is one error, not also "no source".
    let misspelt =
        !keys.entries.is_empty() || dynamic_value.is_some_and(|value| value.get_ref().as_bool().is_none());
    keys.finish(out);

    let key = |field: &str| format!("{name}.{field}");
    let refresh = refresh_value.and_then(|value| read_duration(out, value, name, "refresh"));
    if let Some(value) = entries {
        match value.get_ref() {
            DeValue::Array(_) | DeValue::String(_) => read_set_entries(out, name, value, set),
            _ => type_error(out, value, None, &key("entries"), "a list of addresses"),
        }
    }
    if let Some(value) = file
        && let Some(path) = read_string(out, value, None, &key("file"))
    {
        if path.trim().is_empty() {
            out.error(
                value.span(),
                None,
                format!("set \"{name}\": \"file\" is empty"),
                "write the list's path, like file = \"/etc/dockfw/sets/blocked.netset\" (a relative path is relative to the policy's directory)".to_string(),
            );
        } else {
            set.add_source(SetSource::File {
                path: path.to_string(),
                location: out.map.locate(value.span().start),
            });
        }
    }
    if let Some(value) = url
        && let Some(text) = read_string(out, value, None, &key("url"))
    {
        match values::check_url(text) {
            Ok(()) => {
                set.add_source(SetSource::Url {
                    url: text.trim().to_string(),
                    refresh,
                    location: out.map.locate(value.span().start),
                });
            }
            Err(error) => value_error(out, value.span(), None, &format!("set \"{name}\": url"), error),
        }
    }
    if let Some(value) = names_value
        && value.get_ref().as_array().is_some_and(|items| items.is_empty())
    {
        out.error(
            value.span(),
            None,
            format!("set \"{name}\": \"names\" is an empty list"),
            "list at least one name, like names = [\"api.partner.example\"], or remove \"names\"".to_string(),
        );
    } else if let Some(value) = names_value
        && let Some(items) = read_list(out, value, None, &key("names"))
    {
        let mut names = Vec::new();
        for item in items {
            let Some(text) = read_string(out, item, None, &key("names")) else {
                continue;
            };
            match values::check_host_name(text) {
                Ok(()) => names.push(text.trim().to_string()),
                Err(error) => value_error(out, item.span(), None, &format!("set \"{name}\": names"), error),
            }
        }
        set.add_source(SetSource::Names {
            names,
            refresh,
            location: out.map.locate(value.span().start),
        });
    }
    if let Some(value) = refresh_value
        && url.is_none()
        && names_value.is_none()
    {
        out.error(
            value.span(),
            None,
            format!("set \"{name}\": \"refresh\" applies to url and names sources"),
            "remove \"refresh\" (files and entries are read at each apply)".to_string(),
        );
    }

    let dynamic = read_bool(out, dynamic_value, None, &key("dynamic"));
    let timeout = timeout_value.and_then(|value| read_duration(out, value, name, "timeout"));
    if let Some(value) = timeout_value
        && !dynamic
    {
        out.error(
            value.span(),
            None,
            format!("set \"{name}\": \"timeout\" applies to dynamic sets"),
            "add dynamic = true, or remove \"timeout\"".to_string(),
        );
    }
    if let Some(value) = dynamic_value
        && dynamic
    {
        for (field, other) in [
            ("entries", entries),
            ("file", file),
            ("url", url),
            ("names", names_value),
        ] {
            if let Some(other) = other {
                out.error(
                    other.span(),
                    None,
                    format!("set \"{name}\": a dynamic set is filled at run time and cannot also have \"{field}\""),
                    format!(
                        "remove \"{field}\", or put those addresses in a set of their own and list both in the rule, like from = [\"@{name}\", \"@{name}-static\"]"
                    ),
                );
            }
        }
        set.add_source(SetSource::Dynamic {
            timeout,
            location: out.map.locate(value.span().start),
        });
    }
    if entries.is_none() && file.is_none() && url.is_none() && names_value.is_none() && !dynamic && !misspelt
    {
        out.error(
            span,
            None,
            format!("set \"{name}\" has no source"),
            "give it entries = [\"192.0.2.0/24\"], file = \"PATH\", url = \"https://…\", names = [\"host.example\"] or dynamic = true".to_string(),
        );
    }
}

/// `refresh`, `timeout`: a duration like "30s", "5m", "1h", "1d".
fn read_duration(out: &mut Collector<'_>, value: &Value<'_>, set: &str, key: &str) -> Option<Duration> {
    let Some(text) = value.get_ref().as_str() else {
        type_error(
            out,
            value,
            None,
            &format!("{set}.{key}"),
            "a duration like \"1h\"",
        );
        return None;
    };
    let hint = "write a number and a unit, like \"30s\", \"5m\", \"1h\" or \"1d\"".to_string();
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if duration.is_zero() => {
            out.error(
                value.span(),
                None,
                format!("set \"{set}\": {key} {text:?} must be longer than zero"),
                hint,
            );
            None
        }
        Ok(duration) => Some(duration),
        Err(_) => {
            out.error(
                value.span(),
                None,
                format!("set \"{set}\": {key} {text:?} is not a duration"),
                hint,
            );
            None
        }
    }
}

/// `from` / `to`: "any", "@set", address, CIDR or range. `None` means any.
fn read_addresses(
    out: &mut Collector<'_>,
    value: &Value<'_>,
    rule: &str,
    key: &str,
    sets: &BTreeMap<String, Set>,
    dynamic_allowed: bool,
) -> Result<Option<AddrMatch>, ()> {
    let items = read_list(out, value, Some(rule), key).ok_or(())?;
    let mut ok = true;
    let mut any = None;
    let mut entries = Vec::new();
    let mut refs = Vec::new();
    let mut ranges: Vec<IpRange> = Vec::new();
    for item in &items {
        let Some(text) = read_string(out, item, Some(rule), key) else {
            ok = false;
            continue;
        };
        let text = text.trim();
        entries.push(text.to_string());
        if text.eq_ignore_ascii_case("any") {
            any = Some(item.span());
        } else if let Some(name) = text.strip_prefix('@') {
            // The set's addresses are added once its sources are loaded
            // (add_set_addresses).
            match sets.get(name) {
                // A host address or container filled in at run time would
                // need a set per Docker path; clients are what bans are of.
                Some(set) if set.is_dynamic() && !dynamic_allowed => {
                    out.error(
                        item.span(),
                        Some(rule),
                        format!("to: set \"@{name}\" is dynamic: dynamic sets hold clients' addresses and can only be used in from"),
                        format!("use \"@{name}\" in from, like from = [\"@{name}\"], or give to a set written in the policy or a file"),
                    );
                    ok = false;
                }
                Some(_) => refs.push(name.to_string()),
                None => {
                    let known: Vec<&str> = sets.keys().map(String::as_str).collect();
                    let hint = match known.iter().min_by_key(|k| strsim::levenshtein(k, name)) {
                        Some(close) if strsim::levenshtein(close, name) <= 2 => {
                            format!("did you mean \"@{close}\"?")
                        }
                        _ if known.is_empty() => {
                            format!("define it under [sets], like {name} = [\"192.0.2.0/24\"]")
                        }
                        _ => format!("define it under [sets]; defined sets: {}", known.join(", ")),
                    };
                    out.error(
                        item.span(),
                        Some(rule),
                        format!("{key}: set \"@{name}\" is not defined"),
                        hint,
                    );
                    ok = false;
                }
            }
        } else {
            match values::parse_ip_range(text) {
                Ok(range) => ranges.push(range),
                Err(error) => {
                    value_error(out, item.span(), Some(rule), key, error);
                    ok = false;
                }
            }
        }
    }
    if !ok {
        return Err(());
    }
    if let Some(span) = any {
        if items.len() > 1 {
            out.warning(
                span,
                Some(rule),
                format!("{key}: \"any\" makes the other entries pointless"),
                format!("remove \"any\" to restrict \"{key}\", or the other entries"),
            );
        }
        return Ok(None);
    }
    let only_set = (refs.len() == 1 && items.len() == 1).then(|| refs[0].clone());
    Ok(Some(AddrMatch {
        entries,
        only_set,
        addrs: AddrSet::from_ranges(ranges),
        dynamic: Vec::new(),
    }))
}

fn read_ports(
    out: &mut Collector<'_>,
    value: &Value<'_>,
    rule: &str,
) -> Result<(PortSet, Vec<PortEntry>), ()> {
    let items = read_list(out, value, Some(rule), "ports").ok_or(())?;
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    let mut entries = Vec::new();
    let mut ok = true;
    for item in items {
        let parsed = match item.get_ref() {
            DeValue::String(text) => values::parse_port_range(text),
            DeValue::Integer(_) => match read_integer(out, item, Some(rule), "ports") {
                Some(number) => values::port_from_integer(number).map(|port| values::PortRange {
                    proto: Proto::Tcp,
                    ports: interval::Interval::single(port),
                }),
                None => {
                    ok = false;
                    continue;
                }
            },
            _ => {
                type_error(out, item, Some(rule), "ports", "a port like 443 or \"443/tcp\"");
                ok = false;
                continue;
            }
        };
        match parsed {
            Ok(range) => {
                match range.proto {
                    Proto::Tcp => tcp.push(range.ports),
                    Proto::Udp => udp.push(range.ports),
                }
                entries.push(PortEntry {
                    proto: range.proto,
                    ports: range.ports,
                    location: Some(out.map.locate(item.span().start)),
                });
            }
            Err(error) => {
                value_error(out, item.span(), Some(rule), "ports", error);
                ok = false;
            }
        }
    }
    if !ok {
        return Err(());
    }
    let ports = PortSet {
        tcp: interval::normalize(tcp),
        udp: interval::normalize(udp),
    };
    Ok((ports, entries))
}

fn read_limit(out: &mut Collector<'_>, value: &Value<'_>, rule: &str) -> Option<Limit> {
    let Some(table) = value.get_ref().as_table() else {
        type_error(
            out,
            value,
            Some(rule),
            "limit",
            "a table like { rate = \"20/second\", burst = 40 }",
        );
        return None;
    };
    let mut keys = TableReader::new(table, &["rate", "burst"], "limit", Some(rule.to_string()));
    let rate = match keys.take("rate") {
        Some(rate_value) => read_string(out, rate_value, Some(rule), "limit.rate").and_then(|text| {
            values::parse_rate(text)
                .map_err(|error| value_error(out, rate_value.span(), Some(rule), "limit.rate", error))
                .ok()
        }),
        None => {
            out.error(
                value.span(),
                Some(rule),
                "limit needs a \"rate\"",
                "write limit = { rate = \"20/second\" }".to_string(),
            );
            None
        }
    };
    let burst = match keys.take("burst") {
        Some(burst_value) => read_integer(out, burst_value, Some(rule), "limit.burst").and_then(|burst| {
            let valid = (1..=i64::from(u32::MAX)).contains(&burst);
            if !valid {
                out.error(
                    burst_value.span(),
                    Some(rule),
                    format!("limit.burst {burst} is out of range"),
                    "a burst is at least 1".to_string(),
                );
            }
            valid.then_some(burst as u32)
        }),
        None => rate.map(|rate| rate.count.min(u64::from(u32::MAX)) as u32),
    };
    keys.finish(out);
    Some(Limit {
        rate: rate?,
        burst: burst?,
    })
}

fn read_rule(
    out: &mut Collector<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    index: usize,
    guard: &Guard,
    sets: &BTreeMap<String, Set>,
    seen_names: &mut HashMap<String, Range<usize>>,
) -> Option<Rule> {
    let default_name = format!("rule {}", index + 1);
    let mut keys = TableReader::new(
        table,
        &[
            "name",
            "interfaces",
            "from",
            "to",
            "ports",
            "container",
            "labels",
            "action",
            "log",
            "limit",
            "max_connections",
        ],
        "[[rule]]",
        None,
    );
    // The name first, so every other error can say which rule it is about.
    let name_value = keys.take("name");
    let (name, mut ok) = read_rule_name(out, name_value, span.clone(), &default_name, seen_names);

    keys.rule = Some(name.clone());
    let rule = Some(name.as_str());

    let interfaces = match keys.take("interfaces") {
        Some(value) => match read_interfaces(out, value, rule) {
            Some(names) => {
                for iface in &names {
                    if !guard
                        .interfaces
                        .iter()
                        .any(|guarded| iface.is_covered_by(guarded))
                    {
                        let guarded: Vec<String> = guard.interfaces.iter().map(ToString::to_string).collect();
                        out.error(
                            value.span(),
                            rule,
                            format!("interface \"{iface}\" is not guarded"),
                            format!(
                                "only traffic arriving on guard.interfaces ({}) is judged; add \"{iface}\" there or remove it here",
                                guarded.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                Some(names)
            }
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let addresses = |key: &str, keys: &mut TableReader<'_, '_>, out: &mut Collector<'_>| match keys.take(key)
    {
        // A rule's clients may be in a dynamic set; the addresses they dial not.
        Some(value) => read_addresses(out, value, &name, key, sets, key == "from"),
        None => Ok(None),
    };
    let from = addresses("from", &mut keys, out);
    let to = addresses("to", &mut keys, out);
    let ports = match keys.take("ports") {
        Some(value) => read_ports(out, value, &name).map(Some),
        None => Ok(None),
    };
    let (ports, port_entries) = match ports {
        Ok(Some((ports, entries))) => (Ok(Some(ports)), entries),
        Ok(None) => (Ok(None), Vec::new()),
        Err(()) => (Err(()), Vec::new()),
    };
    let container = keys.take("container").and_then(|value| {
        let container = read_container_name(out, value, &name, "container");
        ok &= container.is_some();
        container
    });
    let labels = match keys.take("labels") {
        Some(value) => {
            let labels = read_labels(out, value, &name);
            ok &= labels.is_some();
            labels
        }
        None => None,
    };
    let action_value = keys.take("action");
    let action = match action_value {
        Some(value) => read_action(out, value, rule, "action", false),
        None => Some(Action::Allow),
    };
    let log = read_bool(out, keys.take("log"), rule, "log");
    let limit_value = keys.take("limit");
    let limit = limit_value.and_then(|value| read_limit(out, value, &name));
    let max_value = keys.take("max_connections");
    let max_connections = max_value.and_then(|value| {
        read_integer(out, value, rule, "max_connections").and_then(|count| {
            let valid = (1..=i64::from(u32::MAX)).contains(&count);
            if !valid {
                out.error(
                    value.span(),
                    rule,
                    format!("max_connections {count} is out of range"),
                    "allow at least 1 connection; to block, use action = \"drop\"".to_string(),
                );
            }
            valid.then_some(count as u32)
        })
    });
    let field_locations = keys
        .taken
        .iter()
        .map(|(key, &start)| (key.clone(), out.map.locate(start)))
        .collect();
    keys.finish(out);

    if let Some(action) = action
        && action != Action::Allow
    {
        for (key, value) in [("limit", limit_value), ("max_connections", max_value)] {
            if let Some(value) = value {
                out.error(
                    value.span(),
                    rule,
                    format!("\"{key}\" only applies to allow rules, and this rule's action is \"{action}\""),
                    format!("remove \"{key}\", or make the rule action = \"allow\""),
                );
                ok = false;
            }
        }
    }
    if limit_value.is_some() && limit.is_none() || max_value.is_some() && max_connections.is_none() {
        ok = false;
    }
    let (from, to, ports) = match (from, to, ports) {
        (Ok(from), Ok(to), Ok(ports)) => (from, to, ports),
        _ => return None,
    };
    if !ok {
        return None;
    }
    Some(Rule {
        name,
        interfaces,
        from,
        to,
        ports,
        port_entries,
        container,
        labels,
        action: action?,
        log,
        limit,
        max_connections,
        location: Some(out.map.locate(span.start)),
        field_locations,
    })
}

/// A rule's name, or its default; an error when it is invalid or already
/// used (by any rule of the policy, whatever its direction).
fn read_rule_name(
    out: &mut Collector<'_>,
    value: Option<&Value<'_>>,
    span: Range<usize>,
    default_name: &str,
    seen_names: &mut HashMap<String, Range<usize>>,
) -> (String, bool) {
    let mut ok = true;
    let name = match value {
        Some(value) => match read_string(out, value, Some(default_name), "name") {
            Some(name) => match names::check_rule_name(name) {
                Ok(()) => name.to_string(),
                Err(error) => {
                    out.error(
                        value.span(),
                        Some(default_name),
                        format!("name {name:?}: {}", error.problem),
                        error.hint,
                    );
                    ok = false;
                    default_name.to_string()
                }
            },
            None => {
                ok = false;
                default_name.to_string()
            }
        },
        None => default_name.to_string(),
    };
    let name_span = value.map_or(span, |v| v.span());
    // `status` shows the defaults and the untracked and unattributed drops
    // as rows of these names, beside the rules: a rule of the same name
    // (whatever its case or spacing) would read as one.
    const RESERVED: [&str; 5] = [
        "default",
        "untracked",
        "unattributed",
        "outbound default",
        "between default",
    ];
    let looks_like = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if value.is_some() && ok && RESERVED.contains(&looks_like.as_str()) {
        out.error(
            name_span.clone(),
            Some(&name),
            format!("the name \"{name}\" is reserved: status shows the fate no rule decides under it"),
            "give the rule a name of its own".to_string(),
        );
        ok = false;
    }
    if let Some(first) = seen_names.get(&name) {
        let first_line = out.map.locate(first.start).line;
        out.error(
            name_span,
            Some(&name),
            format!("the name \"{name}\" is already used by the rule on line {first_line}"),
            "give each rule its own name (names are shared by [[rule]], [[outbound]] and [[between]])"
                .to_string(),
        );
        ok = false;
    } else {
        seen_names.insert(name.clone(), name_span);
    }
    (name, ok)
}

/// `container = "web"`: a container name as `docker ps` shows it (a
/// leading '/' is Docker's, and dropped).
fn read_container_name(out: &mut Collector<'_>, value: &Value<'_>, rule: &str, key: &str) -> Option<String> {
    match read_string(out, value, Some(rule), key).map(|c| c.trim().trim_start_matches('/')) {
        Some(container) if !container.is_empty() => Some(container.to_string()),
        Some(_) => {
            out.error(
                value.span(),
                Some(rule),
                format!("\"{key}\" is empty"),
                "name a container, as `docker ps` shows it".to_string(),
            );
            None
        }
        None => None,
    }
}

/// An `[[outbound]]` (`direction` Outbound) or `[[between]]` rule.
fn read_container_rule(
    out: &mut Collector<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    index: usize,
    direction: Direction,
    sets: &BTreeMap<String, Set>,
    seen_names: &mut HashMap<String, Range<usize>>,
) -> Option<ContainerRule> {
    let section = format!("[[{}]]", direction.name());
    let known: &'static [&'static str] = match direction {
        Direction::Between => &["name", "from", "to", "ports", "action", "log"],
        _ => &["name", "container", "labels", "to", "ports", "action", "log"],
    };
    let mut keys = TableReader::new(table, known, section.clone(), None);
    let default_name = format!("{} {}", direction.name(), index + 1);
    let name_value = keys.take("name");
    let (name, mut ok) = read_rule_name(out, name_value, span.clone(), &default_name, seen_names);
    keys.rule = Some(name.clone());
    let rule = Some(name.as_str());
    let mut field_locations = BTreeMap::new();

    let (from, to) = match direction {
        Direction::Between => {
            let mut selector = |key: &str, keys: &mut TableReader<'_, '_>, out: &mut Collector<'_>| {
                let value = keys.take(key)?;
                let selector = read_selector(out, value, &name, key, &mut field_locations);
                ok &= selector.is_some();
                selector
            };
            let from = selector("from", &mut keys, out);
            let to = selector("to", &mut keys, out).map(Destination::Containers);
            (from, to)
        }
        _ => {
            // An outbound rule's containers are the source: `from` would
            // read as addresses, so say what to write instead.
            if let Some(value) = keys.take("from") {
                out.error(
                    value.span(),
                    rule,
                    "an [[outbound]] rule has no \"from\": its connections come from containers",
                    "name them with container = \"web\" or labels = { \"com.example.tier\" = \"web\" } (neither: every container)".to_string(),
                );
                ok = false;
            }
            let container = keys.take("container").and_then(|value| {
                let name = read_container_name(out, value, &name, "container");
                ok &= name.is_some();
                name
            });
            let labels = keys.take("labels").and_then(|value| {
                let labels = read_labels(out, value, &name);
                ok &= labels.is_some();
                labels
            });
            let from = (container.is_some() || labels.is_some()).then_some(Selector { container, labels });
            let to = match keys.take("to") {
                Some(value) => match read_addresses(out, value, &name, "to", sets, true) {
                    Ok(to) => to.map(Destination::Addresses),
                    Err(()) => {
                        ok = false;
                        None
                    }
                },
                None => None,
            };
            (from, to)
        }
    };
    let (ports, port_entries) = match keys.take("ports") {
        Some(value) => match read_ports(out, value, &name) {
            Ok((ports, entries)) => (Some(ports), entries),
            Err(()) => {
                ok = false;
                (None, Vec::new())
            }
        },
        None => (None, Vec::new()),
    };
    let action = match keys.take("action") {
        Some(value) => read_action(out, value, rule, "action", false),
        None => Some(Action::Allow),
    };
    let log = read_bool(out, keys.take("log"), rule, "log");
    for (key, &start) in &keys.taken {
        field_locations.insert(key.clone(), out.map.locate(start));
    }
    keys.finish(out);
    if !ok {
        return None;
    }
    Some(ContainerRule {
        name,
        direction,
        from,
        to,
        ports,
        port_entries,
        action: action?,
        log,
        location: Some(out.map.locate(span.start)),
        field_locations,
    })
}

/// A between rule's `from` or `to`: `{ container = "web" }`, `{ labels =
/// {...} }`, or both. Where each is written goes to `locations` as
/// `KEY.container`, `KEY.labels`.
fn read_selector(
    out: &mut Collector<'_>,
    value: &Value<'_>,
    rule: &str,
    key: &str,
    locations: &mut BTreeMap<String, Location>,
) -> Option<Selector> {
    let Some(table) = value.get_ref().as_table() else {
        let hint = match value.get_ref().as_str() {
            Some(text) => format!(
                "write {key} = {{ container = {text:?} }}, or {key} = {{ labels = {{ \"com.example.tier\" = \"web\" }} }}"
            ),
            None => format!(
                "write {key} = {{ container = \"web\" }}, or {key} = {{ labels = {{ \"com.example.tier\" = \"web\" }} }}"
            ),
        };
        out.error(
            value.span(),
            Some(rule),
            format!(
                "\"{key}\" must be a table naming containers, not {}",
                value.get_ref().type_str()
            ),
            hint,
        );
        return None;
    };
    let mut keys = TableReader::new(
        table,
        &["container", "labels"],
        format!("{key} of a [[between]] rule"),
        Some(rule.to_string()),
    );
    let mut ok = true;
    let container = keys.take("container").and_then(|value| {
        let name = read_container_name(out, value, rule, &format!("{key}.container"));
        ok &= name.is_some();
        name
    });
    let labels = keys.take("labels").and_then(|value| {
        let labels = read_labels(out, value, rule);
        ok &= labels.is_some();
        labels
    });
    for (field, &start) in &keys.taken {
        locations.insert(format!("{key}.{field}"), out.map.locate(start));
    }
    let misspelt = !keys.entries.is_empty();
    keys.finish(out);
    if ok && !misspelt && container.is_none() && labels.is_none() {
        out.error(
            value.span(),
            Some(rule),
            format!("\"{key}\" names no containers"),
            format!("write {key} = {{ container = \"web\" }} or {key} = {{ labels = {{ … }} }}; remove \"{key}\" for any container"),
        );
        return None;
    }
    (ok && !misspelt).then_some(Selector { container, labels })
}

/// `labels = { "com.example.tier" = "db" }`: Docker labels, names and values
/// both strings; a container must carry them all.
fn read_labels(out: &mut Collector<'_>, value: &Value<'_>, rule: &str) -> Option<BTreeMap<String, String>> {
    let Some(table) = value.get_ref().as_table() else {
        type_error(
            out,
            value,
            Some(rule),
            "labels",
            "a table like { \"com.example.tier\" = \"db\" }",
        );
        return None;
    };
    if table.is_empty() {
        out.error(
            value.span(),
            Some(rule),
            "\"labels\" is empty, which would select every container",
            "name at least one label, like labels = { \"com.example.tier\" = \"db\" }, or remove \"labels\""
                .to_string(),
        );
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut ok = true;
    for (key, label_value) in table {
        let label = key.get_ref().as_ref();
        if label.trim().is_empty() {
            out.error(
                key.span(),
                Some(rule),
                "labels: a label name cannot be empty",
                "write the label as `docker inspect` shows it, like \"com.example.tier\"".to_string(),
            );
            ok = false;
            continue;
        }
        match label_value.get_ref() {
            DeValue::String(text) => {
                labels.insert(label.to_string(), text.to_string());
            }
            // An unquoted dotted name (com.example.tier = "db") makes nested tables.
            DeValue::Table(_) => {
                out.error(
                    label_value.span(),
                    Some(rule),
                    format!("labels: \"{label}\" holds a table, not a label value"),
                    format!(
                        "a dotted name makes nested tables in TOML: quote the whole label name, like \"{label}.…\" = \"value\""
                    ),
                );
                ok = false;
            }
            other => {
                let written = match other {
                    DeValue::Integer(i) => Some(i.to_string()),
                    DeValue::Float(f) => Some(f.as_str().to_string()),
                    DeValue::Boolean(b) => Some(b.to_string()),
                    _ => None,
                };
                let hint = match written {
                    Some(text) => format!("Docker labels are strings: write \"{label}\" = \"{text}\""),
                    None => "Docker labels are strings, like \"db\"".to_string(),
                };
                out.error(
                    label_value.span(),
                    Some(rule),
                    format!("labels: \"{label}\" must be a string, not {}", other.type_str()),
                    hint,
                );
                ok = false;
            }
        }
    }
    ok.then_some(labels)
}
