//! Named address sets: where their entries come from, and list files.
//!
//! A set (`[sets]` in the policy) has one or more *sources*: addresses written
//! in the policy, a list file, a URL, DNS names, or — alone — `dynamic`
//! (elements added at run time). This crate does no I/O: [`Draft`] says
//! which sources need loading ([`Draft::external_sources`]), the caller loads
//! them into [`Loaded`], and [`Draft::resolve`] reads them into the final
//! [`Set`]s, each entry remembering its [`Origin`] (which file, which line).
//! A file or a download is a list in the format [`parse_list`] reads.
//!
//! ```
//! use dockfw_core::sets::{Content, Loaded, SetSource};
//!
//! let draft = dockfw_core::Draft::parse("policy.toml", r#"
//!     [guard]
//!     interfaces = ["eth0"]
//!     [sets]
//!     blocked = { entries = ["192.0.2.0/24"], file = "blocked.netset" }
//!     [[rule]]
//!     from = "@blocked"
//!     action = "drop"
//! "#).unwrap();
//! let mut loaded = Loaded::new();
//! for external in draft.external_sources() {
//!     let SetSource::File { path, .. } = external.source else { unreachable!() };
//!     // The caller reads the file (here: its text is given).
//!     let bytes = b"# a FireHOL-style header\n198.51.100.0/24\n2001:db8::/32 ; a comment\n".to_vec();
//!     loaded.insert(external.set, external.index, Content::List { name: format!("/etc/dockfw/{path}"), bytes });
//! }
//! let parsed = draft.resolve(loaded).unwrap();
//! let blocked = &parsed.policy.sets["blocked"];
//! let addr = "198.51.100.7".parse().unwrap();
//! assert!(blocked.addrs.contains(addr));
//! let origins: Vec<String> = blocked.origins_of(addr).map(|o| o.to_string()).collect();
//! assert_eq!(origins, ["from /etc/dockfw/blocked.netset line 2"]);
//! ```
//!
//! [`Draft`]: crate::Draft
//! [`Draft::external_sources`]: crate::Draft::external_sources
//! [`Draft::resolve`]: crate::Draft::resolve

use crate::diag::{Diagnostic, Location, Severity};
use crate::values::{self, AddrSet, IpRange};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// One `[sets]` entry: its sources as written and, once resolved, its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Set {
    /// Where the set's value starts in the policy file.
    pub location: Location,
    /// Its sources, in the order written; an inline list is one
    /// [`SetSource::Entries`].
    pub sources: Vec<SetSource>,
    /// Every address of every source, normalised. Empty for a dynamic set,
    /// whose elements belong to run time (see [`Set::runtime`]).
    pub addrs: AddrSet,
    /// For a dynamic set: the addresses it held when the caller read them
    /// from the kernel ([`Set::fill_runtime`]); `None`: not read, so its
    /// contents are unknown (evaluation assumes an address is not in it, and
    /// says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<AddrSet>,
    /// Each entry as read, with where it came from, in source order.
    #[serde(skip)]
    pub entries: Vec<SetEntry>,
    /// False when a source was skipped on purpose ([`Content::Skipped`]) or
    /// could not be read: then `addrs` lacks that source's addresses.
    pub complete: bool,
    /// For each source, how its entries' origins name it: the policy file,
    /// the list as the caller read it (path, URL); empty for names and dynamic.
    #[serde(skip)]
    shown_as: Vec<String>,
}

impl Set {
    pub(crate) fn new(location: Location) -> Self {
        Self {
            location,
            sources: Vec::new(),
            addrs: AddrSet::default(),
            runtime: None,
            entries: Vec::new(),
            complete: true,
            shown_as: Vec::new(),
        }
    }

    /// Adds a source; returns its index.
    pub(crate) fn add_source(&mut self, source: SetSource) -> u32 {
        self.shown_as.push(match &source {
            SetSource::Entries { location } => location.file.clone(),
            SetSource::File { path, .. } => path.clone(),
            SetSource::Url { url, .. } => url.clone(),
            SetSource::Names { .. } | SetSource::Dynamic { .. } => String::new(),
        });
        self.sources.push(source);
        (self.sources.len() - 1) as u32
    }

    /// Whether the set is `dynamic`: filled at run time, not by the policy.
    pub fn is_dynamic(&self) -> bool {
        self.sources
            .iter()
            .any(|source| matches!(source, SetSource::Dynamic { .. }))
    }

    /// For a dynamic set, `timeout`: how long an element added at run time
    /// without a timeout of its own stays (`None`: until deleted, or not a
    /// dynamic set).
    pub fn dynamic_timeout(&self) -> Option<Duration> {
        self.sources.iter().find_map(|source| match source {
            SetSource::Dynamic { timeout, .. } => *timeout,
            _ => None,
        })
    }

    /// Gives a dynamic set the addresses it holds now, as read from the
    /// kernel, so that evaluating the policy ([`crate::explain`]) knows them.
    pub fn fill_runtime(&mut self, addrs: AddrSet) {
        self.runtime = Some(addrs);
    }

    /// Whether the set holds `addr`: `None` for a dynamic set whose
    /// addresses were not read ([`Set::fill_runtime`]).
    pub fn holds(&self, addr: IpAddr) -> Option<bool> {
        if self.is_dynamic() {
            self.runtime.as_ref().map(|addrs| addrs.contains(addr))
        } else {
            Some(self.addrs.contains(addr))
        }
    }

    /// Where `entry` (one of this set's `entries`) came from.
    pub fn origin(&self, entry: &SetEntry) -> Origin<'_> {
        let index = entry.source as usize;
        let shown = self.shown_as.get(index).map_or("", String::as_str);
        match self.sources.get(index) {
            Some(SetSource::File { .. }) => Origin::File {
                path: shown,
                line: entry.line,
            },
            Some(SetSource::Url { .. }) => Origin::Url {
                url: shown,
                line: entry.line,
            },
            Some(SetSource::Names { names, .. }) => Origin::Name {
                name: names
                    .get((entry.line as usize).wrapping_sub(1))
                    .map_or("", String::as_str),
            },
            Some(SetSource::Entries { .. } | SetSource::Dynamic { .. }) | None => Origin::Policy {
                file: shown,
                line: entry.line,
            },
        }
    }

    /// Where the set's entries come from, source by source, in the order
    /// written: e.g. `1234 entries from sets/blocked.netset`, `2 entries
    /// written in policy.toml`, `filled at run time`.
    pub fn source_summary(&self) -> Vec<String> {
        let mut counts = vec![0usize; self.sources.len()];
        for entry in &self.entries {
            if let Some(count) = counts.get_mut(entry.source as usize) {
                *count += 1;
            }
        }
        let entries = |n: usize| {
            if n == 1 {
                "1 entry".to_string()
            } else {
                format!("{n} entries")
            }
        };
        self.sources
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(index, (source, count))| {
                let shown = self.shown_as.get(index).map_or("", String::as_str);
                match source {
                    SetSource::Entries { .. } => format!("{} written in {shown}", entries(count)),
                    SetSource::File { path, .. } => {
                        format!(
                            "{} from {}",
                            entries(count),
                            if shown.is_empty() { path } else { shown }
                        )
                    }
                    SetSource::Url { url, .. } => format!("{} from {url}", entries(count)),
                    SetSource::Names { names, .. } => {
                        format!("{} resolved from {}", entries(count), names.join(", "))
                    }
                    SetSource::Dynamic { .. } => "filled at run time (dockfw-nft set)".to_string(),
                }
            })
            .collect()
    }

    /// Where each entry holding `addr` came from, in source order.
    pub fn origins_of(&self, addr: IpAddr) -> impl Iterator<Item = Origin<'_>> {
        self.entries
            .iter()
            .filter(move |entry| entry.range.contains(addr))
            .map(|entry| self.origin(entry))
    }
}

/// Where a set's entries come from, as the policy writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SetSource {
    /// Addresses written in the policy: an inline list, or `entries = [...]`.
    Entries {
        /// Where the list starts.
        location: Location,
    },
    /// `file = "path"`: a list file ([`parse_list`]). A relative path is
    /// relative to the policy file's directory; the caller reads it.
    File {
        /// The path as written.
        path: String,
        /// Where the path is written.
        location: Location,
    },
    /// `url = "https://..."`: a list ([`parse_list`]) downloaded by the caller.
    Url {
        /// The URL as written.
        url: String,
        /// `refresh`: how often a long-running caller fetches it again.
        refresh: Option<Duration>,
        /// Where the URL is written.
        location: Location,
    },
    /// `names = ["host.example"]`: DNS names the caller resolves (A and AAAA).
    Names {
        /// The names as written.
        names: Vec<String>,
        /// `refresh`: how often a long-running caller resolves them again.
        refresh: Option<Duration>,
        /// Where the list of names starts.
        location: Location,
    },
    /// `dynamic = true`: the set's elements are added and removed at run
    /// time (fail2ban, CrowdSec, `set add`), never by the policy. A dynamic
    /// set has no other source.
    Dynamic {
        /// `timeout`: how long an element added at run time stays by default.
        timeout: Option<Duration>,
        /// Where `dynamic` is written.
        location: Location,
    },
}

impl SetSource {
    /// The key the policy writes it with: `entries`, `file`, `url`, `names`
    /// or `dynamic`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Entries { .. } => "entries",
            Self::File { .. } => "file",
            Self::Url { .. } => "url",
            Self::Names { .. } => "names",
            Self::Dynamic { .. } => "dynamic",
        }
    }

    /// Where it is written in the policy.
    pub fn location(&self) -> &Location {
        match self {
            Self::Entries { location }
            | Self::File { location, .. }
            | Self::Url { location, .. }
            | Self::Names { location, .. }
            | Self::Dynamic { location, .. } => location,
        }
    }

    /// Whether its entries come from outside the policy (everything but
    /// `entries`), and so go through [`Loaded`].
    pub fn is_external(&self) -> bool {
        !matches!(self, Self::Entries { .. })
    }
}

/// One entry of a set, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetEntry {
    /// Its addresses.
    pub range: IpRange,
    /// The source it came from: an index into [`Set::sources`].
    pub source: u32,
    /// The 1-based line it is on, in the policy file (`entries`) or the list
    /// (`file`, `url`); for `names`, the 1-based position of the name it
    /// resolved from.
    pub line: u32,
}

/// Where one entry of a set came from; its `Display` reads "from
/// /etc/dockfw/sets/blocked.netset line 1234".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Origin<'a> {
    /// Written in the policy file.
    Policy {
        /// The policy file.
        file: &'a str,
        /// The line.
        line: u32,
    },
    /// A line of a list file.
    File {
        /// The file, as the caller read it.
        path: &'a str,
        /// The line.
        line: u32,
    },
    /// A line of a downloaded list.
    Url {
        /// The URL.
        url: &'a str,
        /// The line.
        line: u32,
    },
    /// What a DNS name resolved to.
    Name {
        /// The name.
        name: &'a str,
    },
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Policy { file, line } => write!(f, "written in {file} line {line}"),
            Self::File { path: name, line } | Self::Url { url: name, line } => {
                write!(f, "from {name} line {line}")
            }
            Self::Name { name } => write!(f, "resolved from {name}"),
        }
    }
}

/// A source of a draft's set that is not written in the policy (`file`,
/// `url`, `names`, `dynamic`): what the caller loads into [`Loaded`].
#[derive(Debug, Clone, Copy)]
pub struct ExternalSource<'a> {
    /// The set's name.
    pub set: &'a str,
    /// The source's index in the set's sources.
    pub index: usize,
    /// The source, as written.
    pub source: &'a SetSource,
}

/// What a caller loaded for one external source (see [`Loaded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// For `file` and `url`: the list's bytes ([`parse_list`]'s format).
    /// `name` is how errors and origins name it: the path read, the URL.
    List {
        /// The path read, or the URL.
        name: String,
        /// The list.
        bytes: Vec<u8>,
    },
    /// For `names`: the addresses each name resolved to, in the order of
    /// `names` (empty for a name that did not resolve).
    Resolved(Vec<Vec<IpAddr>>),
    /// Not loaded, on purpose (`check` does not fetch): the rest of the
    /// policy is checked without this source's entries, the set is marked
    /// incomplete ([`Set::complete`]), and a warning at the source says why.
    /// Never for a policy that is to be enforced.
    Skipped {
        /// Why, as the warning says it.
        why: String,
    },
    /// Could not be loaded, or the caller refuses this kind of source: an
    /// error at the source, "set \"NAME\": PROBLEM".
    Failed {
        /// What went wrong.
        problem: String,
        /// How to fix it.
        hint: Option<String>,
    },
}

/// The contents of a draft's external sources, by set and source index
/// (from [`ExternalSource`]).
///
/// `file`, `url` and `names` sources need a [`Content`]; a `dynamic` one
/// needs none (its elements belong to run time) but takes
/// [`Content::Failed`] from a caller that refuses dynamic sets.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    contents: HashMap<(String, usize), Content>,
}

impl Loaded {
    /// Nothing loaded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives source `index` of set `set` its content.
    pub fn insert(&mut self, set: &str, index: usize, content: Content) {
        self.contents.insert((set.to_string(), index), content);
    }

    fn take(&mut self, set: &str, index: usize) -> Option<Content> {
        self.contents.remove(&(set.to_string(), index))
    }
}

/// One entry of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    /// Its addresses.
    pub range: IpRange,
    /// Its 1-based line.
    pub line: u32,
}

/// A line of a list that is not an address, network or range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column where the entry starts.
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// The bad lines of a list: the first [`BadLines::MAX_SHOWN`], and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLines {
    /// The first bad lines, in order.
    pub first: Vec<ListError>,
    /// How many lines are bad in all.
    pub count: usize,
}

impl BadLines {
    /// Bad lines kept in [`BadLines::first`]: a file that is no list at all
    /// (an HTML page) would otherwise make one error per line.
    pub const MAX_SHOWN: usize = 10;
}

/// Reads a list: one address (`192.0.2.1`), network (`198.51.100.0/24`) or
/// range (`192.0.2.10-192.0.2.20`) a line, IPv4 and IPv6 mixed; `#` and `;`
/// start comments, at the start of a line or after an entry; blank lines,
/// surrounding blanks, CRLF line ends and a UTF-8 byte order mark are
/// ignored. So the lists of ipdeny (`.zone`), FireHOL (`.netset`, `.ipset`),
/// Spamhaus DROP and the CDNs' published ranges (Cloudflare's `ips-v4`,
/// `ips-v6`) load as they are. Entries are checked as in the policy (no host
/// bits in a network, no IPv4-mapped IPv6). Comments may hold any bytes;
/// entries must be UTF-8.
///
/// ```
/// let list = b"# ipdeny zone\n1.0.1.0/24\n2001:db8::/32   ; v6 too\n\n10.0.0.1-10.0.0.9\n";
/// let entries = dockfw_core::sets::parse_list(list).unwrap();
/// assert_eq!(entries.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 5]);
/// let bad = dockfw_core::sets::parse_list(b"10.0.0.0/8\n10.0.0.300\n").unwrap_err();
/// assert_eq!((bad.first[0].line, bad.first[0].column), (2, 1));
/// ```
pub fn parse_list(bytes: &[u8]) -> Result<Vec<ListEntry>, BadLines> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut entries = Vec::new();
    let mut bad = BadLines {
        first: Vec::new(),
        count: 0,
    };
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let entry = match line.iter().position(|&b| b == b'#' || b == b';') {
            Some(comment) => &line[..comment],
            None => line,
        };
        let start = entry
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(entry.len());
        let entry = entry[start..].trim_ascii_end();
        if entry.is_empty() {
            continue;
        }
        let column = u32::try_from(start + 1).unwrap_or(u32::MAX);
        match parse_list_entry(entry) {
            Ok(range) => entries.push(ListEntry {
                range,
                line: line_number,
            }),
            Err((offset, error)) => {
                bad.count += 1;
                if bad.first.len() < BadLines::MAX_SHOWN {
                    bad.first.push(ListError {
                        line: line_number,
                        column: column.saturating_add(offset),
                        message: error.message,
                        hint: error.hint,
                    });
                }
            }
        }
    }
    if bad.count > 0 { Err(bad) } else { Ok(entries) }
}

/// One entry of a list; on error, the column offset of the problem in it.
fn parse_list_entry(entry: &[u8]) -> Result<IpRange, (u32, values::ValueError)> {
    let text = std::str::from_utf8(entry).map_err(|error| {
        let valid = error.valid_up_to();
        let chars = std::str::from_utf8(&entry[..valid]).map_or(valid, |s| s.chars().count());
        (
            u32::try_from(chars).unwrap_or(u32::MAX),
            values::ValueError {
                message: format!("0x{:02x} is not valid UTF-8", entry[valid]),
                hint: Some("a list is text: one address, network or range a line".to_string()),
            },
        )
    })?;
    values::parse_ip_range(text).map_err(|error| {
        // "1.2.3.4 foo": more than one word where a range's ends are not.
        let words = text.split_ascii_whitespace().count();
        if words > 1 && !text.contains('-') {
            (
                0,
                values::ValueError {
                    message: format!("{text:?} is not one address, network or range"),
                    hint: Some("write one entry a line; comments start with # or ;".to_string()),
                },
            )
        } else {
            (0, error)
        }
    })
}

/// Reads the external sources of every set from `loaded`, completing the
/// sets' entries and addresses; problems go to `diagnostics`.
pub(crate) fn resolve(
    sets: &mut std::collections::BTreeMap<String, Set>,
    mut loaded: Loaded,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for (name, set) in sets.iter_mut() {
        for index in 0..set.sources.len() {
            let source = set.sources[index].clone();
            if !source.is_external() {
                continue;
            }
            let content = loaded.take(name, index);
            let at = source.location().clone();
            let diagnostics_before = diagnostics.len();
            let mut error = |message: String, hint: Option<String>| {
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    location: Some(at.clone()),
                    rule: None,
                    message: format!("set \"{name}\": {message}"),
                    hint,
                });
            };
            match (&source, content) {
                (_, Some(Content::Failed { problem, hint })) => error(problem, hint),
                (SetSource::Dynamic { .. }, None) => {}
                (_, Some(Content::Skipped { why })) => {
                    set.complete = false;
                    diagnostics.push(Diagnostic {
                        severity: Severity::Warning,
                        location: Some(at),
                        rule: None,
                        message: format!("set \"{name}\": {why}"),
                        hint: None,
                    });
                }
                (
                    SetSource::File { .. } | SetSource::Url { .. },
                    Some(Content::List { name: list, bytes }),
                ) => {
                    match parse_list(&bytes) {
                        Ok(entries) => set.entries.extend(entries.into_iter().map(|entry| SetEntry {
                            range: entry.range,
                            source: index as u32,
                            line: entry.line,
                        })),
                        Err(bad) => list_errors(name, &list, &at, &bad, diagnostics),
                    }
                    set.shown_as[index] = list;
                }
                (SetSource::Names { names, .. }, Some(Content::Resolved(addresses))) => {
                    resolved(name, names, &addresses, index, &at, &mut set.entries, diagnostics);
                }
                (SetSource::File { path, .. }, None) => error(
                    format!("file \"{path}\" was not read"),
                    Some("dockfw_core reads no files: load it into Draft::resolve".to_string()),
                ),
                (source, None) => error(
                    format!("its {} source was not loaded", source.kind()),
                    Some("dockfw_core does no I/O: load it into Draft::resolve".to_string()),
                ),
                (source, Some(_)) => error(
                    format!("its {} source was given the wrong kind of content", source.kind()),
                    None,
                ),
            }
            if diagnostics[diagnostics_before..]
                .iter()
                .any(|d| d.severity == Severity::Error)
            {
                set.complete = false;
            }
        }
        set.addrs = AddrSet::from_ranges(set.entries.iter().map(|entry| entry.range));
        if set.entries.is_empty() && set.complete && !set.is_dynamic() {
            diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                location: Some(set.location.clone()),
                rule: None,
                message: format!("set \"{name}\" is empty and matches nothing"),
                hint: None,
            });
        }
    }
}

/// The errors of a list's bad lines, each at its file:line:column.
fn list_errors(set: &str, list: &str, at: &Location, bad: &BadLines, diagnostics: &mut Vec<Diagnostic>) {
    for error in &bad.first {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: Some(Location {
                file: list.to_string(),
                line: error.line as usize,
                column: error.column as usize,
            }),
            rule: None,
            message: format!("set \"{set}\": {}", error.message),
            hint: error.hint.clone(),
        });
    }
    let more = bad.count - bad.first.len();
    if more > 0 {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            location: Some(at.clone()),
            rule: None,
            message: format!(
                "set \"{set}\": {list} has {more} more bad line{} (the first {} are shown)",
                if more == 1 { "" } else { "s" },
                bad.first.len()
            ),
            hint: Some("is it a list, one address, network or range a line?".to_string()),
        });
    }
}

/// The entries of a `names` source; a name that resolved to nothing is a
/// warning, and so many that none did an error.
fn resolved(
    set: &str,
    names: &[String],
    addresses: &[Vec<IpAddr>],
    index: usize,
    at: &Location,
    entries: &mut Vec<SetEntry>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut push = |severity, message: String| {
        diagnostics.push(Diagnostic {
            severity,
            location: Some(at.clone()),
            rule: None,
            message: format!("set \"{set}\": {message}"),
            hint: None,
        });
    };
    if addresses.len() != names.len() {
        push(
            Severity::Error,
            format!("{} names were resolved, not {}", addresses.len(), names.len()),
        );
        return;
    }
    if addresses.iter().all(Vec::is_empty) {
        push(Severity::Error, "no name resolved to any address".to_string());
        return;
    }
    for (position, (name, addrs)) in names.iter().zip(addresses).enumerate() {
        if addrs.is_empty() {
            push(Severity::Warning, format!("{name} resolved to no address"));
        }
        entries.extend(addrs.iter().map(|&addr| SetEntry {
            range: match addr {
                IpAddr::V4(a) => IpRange::V4(crate::interval::Interval::single(a)),
                IpAddr::V6(a) => IpRange::V6(crate::interval::Interval::single(a)),
            },
            source: index as u32,
            line: u32::try_from(position + 1).unwrap_or(u32::MAX),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<u32> {
        parse_list(text.as_bytes())
            .unwrap()
            .iter()
            .map(|entry| entry.line)
            .collect()
    }

    #[test]
    fn comments_blanks_and_line_ends() {
        assert_eq!(
            lines(
                "\u{feff}# header\n; other header\n\n  10.0.0.0/8  # trailing\r\n\t192.0.2.1;x\r\n2001:db8::1"
            ),
            [4, 5, 6]
        );
        assert!(parse_list(b"").unwrap().is_empty());
        assert!(
            parse_list(b"# only comments\n\n# \xff latin-1 in a comment is fine\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_lines_have_line_and_column() {
        let bad = parse_list(b"10.0.0.0/8\n  10.0.0.300\n192.0.3.0/23\n1.2.3.4 5.6.7.8\n").unwrap_err();
        assert_eq!(bad.count, 3);
        let at: Vec<(u32, u32)> = bad.first.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, [(2, 3), (3, 1), (4, 1)]);
        assert_eq!(bad.first[0].message, "\"10.0.0.300\" is not an IP address");
        assert!(bad.first[1].message.contains("host bits"));
        assert_eq!(
            bad.first[2].message,
            "\"1.2.3.4 5.6.7.8\" is not one address, network or range"
        );
        // Not UTF-8: the column of the bad byte.
        let bad = parse_list(b"ab\xffc\n").unwrap_err();
        assert_eq!((bad.first[0].line, bad.first[0].column), (1, 3));
        assert_eq!(bad.first[0].message, "0xff is not valid UTF-8");
    }

    #[test]
    fn many_bad_lines_are_counted_not_all_kept() {
        let html = "<html>\n".repeat(1000);
        let bad = parse_list(html.as_bytes()).unwrap_err();
        assert_eq!(bad.count, 1000);
        assert_eq!(bad.first.len(), BadLines::MAX_SHOWN);
    }

    #[test]
    fn ranges_and_mixed_families() {
        let entries = parse_list(b"192.0.2.10 - 192.0.2.20\n2001:db8::1-2001:db8::9\n").unwrap();
        assert!(entries[0].range.contains("192.0.2.15".parse().unwrap()));
        assert!(!entries[0].range.contains("2001:db8::5".parse().unwrap()));
        assert!(entries[1].range.contains("2001:db8::5".parse().unwrap()));
    }
}
