//! Reading a table: consistent dumps (one generation, or two agreeing
//! reads), set elements reused from an earlier read, decoding into a
//! [`Ruleset`], and whose the table is.

use crate::dump::TableDump;
use crate::expr::Expr;
use crate::ffi::{self, Dump};
use crate::inspect::InstalledTable;
use crate::monitor::{Action, Kind, ObjectChange};
use crate::owner::{self, Owner};
use crate::plan::{self, Installed};
use crate::report::RuleCounter;
use crate::transact::RequestOutcome;
use crate::{Error, Nft, Result, decode};
use dockfw_core::ruleset::{Ruleset, SetElements};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Reads are cheap and only need two agreeing results; allow more tries.
pub(crate) const READ_ATTEMPTS: u32 = 100;

/// One attempt at reading a table.
pub(crate) enum Read {
    Absent,
    /// A dump saw a concurrent change (or the table vanished midway).
    Interrupted,
    Table(TableDump),
}

/// A read table: raw, and decoded (or why it cannot be).
pub(crate) struct Snapshot {
    pub(crate) dump: TableDump,
    pub(crate) decoded: Result<Installed>,
}

impl Snapshot {
    /// Whose the table is.
    pub(crate) fn owner(&self) -> Owner {
        owner_of(&self.dump, &self.decoded)
    }
}

pub(crate) fn owner_of(dump: &TableDump, decoded: &Result<Installed>) -> Owner {
    let what = match decoded {
        Err(Error::Unrecognised { what, .. }) => what.clone(),
        Err(other) => other.to_string(),
        Ok(_) => String::new(),
    };
    owner::owner(
        dump,
        decoded.as_ref().map(|i| &i.ruleset).map_err(|_| what.as_str()),
    )
}

/// [`Error::NotOwned`] unless the snapshot is of a table dockfw may change
/// (or of no table).
pub(crate) fn ensure_ours(table: &str, snapshot: Option<&Snapshot>) -> Result<()> {
    match snapshot.map(Snapshot::owner) {
        Some(Owner::Foreign { why }) => Err(Error::NotOwned {
            table: table.to_string(),
            why,
        }),
        _ => Ok(()),
    }
}

/// Set elements a read may take from what it knows instead of dumping them
/// again, if the ruleset generation is still `generation` when the read
/// starts (nothing but the transaction that led there has committed since
/// `previous` was read or known, and it wrote only the sets in `written`):
/// every set the transaction did not write as in `previous`, and every set
/// it wrote with the elements it holds now, when that is known (`Some`: the
/// transaction was acked message by message, see the crate docs), else
/// dumped again.
pub(crate) struct Reuse<'a> {
    pub(crate) generation: u32,
    pub(crate) previous: &'a TableDump,
    /// `previous` decoded, when it was: the sets taken from it are not
    /// decoded again.
    pub(crate) previous_decoded: Option<&'a Ruleset>,
    /// The elements each written set holds, when known, with their decoding.
    pub(crate) written: HashMap<&'a str, Option<(ffi::Elems, &'a SetElements)>>,
    /// Sets of `previous` whose elements changed since `previous_decoded`.
    pub(crate) updated: Option<&'a HashSet<String>>,
}

impl Reuse<'_> {
    /// The decoded elements of set `name` whose dumped elements are `elems`,
    /// if this read took them from what it knew (the same shared list), so
    /// decoding them again would give these.
    fn decoded(&self, name: &str, elems: &ffi::Elems) -> Option<&SetElements> {
        if let Some(Some((sent, elements))) = self.written.get(name) {
            return Arc::ptr_eq(sent, elems).then_some(*elements);
        }
        let (_, known) = self.previous.sets.iter().find(|(s, _)| s.name == name)?;
        if !Arc::ptr_eq(known, elems) || self.updated.is_some_and(|u| u.contains(name)) {
            return None;
        }
        Some(&self.previous_decoded?.set(name)?.elements)
    }
}

/// What [`Nft`] installed in a table itself, exact: what a read would
/// return, kept after each apply, and the generation it is valid in. An
/// apply that finds nf_tables still at that generation plans from it
/// without reading (see the crate docs, "What apply reads").
#[derive(Debug)]
pub(crate) struct Image {
    pub(crate) generation: u32,
    pub(crate) dump: TableDump,
    pub(crate) installed: Installed,
    /// Other programs' commits to the table since `generation`, followed
    /// through notifications ([`crate::Nft::note_commit`]).
    pub(crate) stale: Option<Stale>,
}

/// What other programs changed in a table since its [`Image`] was exact, as
/// their notifications said: the structure is read again, but set elements
/// only where the notifications could not say exactly what changed.
#[derive(Debug, Default)]
pub(crate) struct Stale {
    /// The last generation whose commit was followed.
    pub(crate) seen: u32,
    /// Sets whose elements must be dumped again.
    pub(crate) redump: HashSet<String>,
    /// Sets whose elements in the image were updated from notifications
    /// (so the image's decoding of them is out of date).
    pub(crate) updated: HashSet<String>,
}

impl Image {
    /// The last generation the image accounts for.
    pub(crate) fn seen(&self) -> u32 {
        self.stale.as_ref().map_or(self.generation, |s| s.seen)
    }

    /// Follows one commit by another program that changed the table, in
    /// generation `generation` right after [`Image::seen`]; `false` if the
    /// image can no longer be kept (a change it cannot account for).
    pub(crate) fn follow(&mut self, generation: u32, changes: &[&ObjectChange]) -> bool {
        // Run-time sets' elements are not tracked: they come and go (and
        // expire, unannounced).
        let changes: Vec<&ObjectChange> = changes
            .iter()
            .copied()
            .filter(|change| !self.is_runtime_element(change))
            .collect();
        let stale = self.stale.get_or_insert_with(Stale::default);
        stale.seen = generation;
        // Per set, what the commit left of each element it touched, in
        // commit order: present (added) or not (deleted).
        let mut elements: HashMap<&str, HashMap<(ffi::Key, u32), bool>> = HashMap::new();
        for change in changes {
            match (change.kind, change.name.as_deref()) {
                (Kind::Table | Kind::Chain | Kind::Rule | Kind::Object | Kind::Flowtable, _) => {}
                (Kind::Set, Some(set)) => {
                    stale.redump.insert(set.to_string());
                }
                (Kind::Element, Some(set)) => match &change.element {
                    Some(element) if element.plain => {
                        let key = (ffi::Key::from_slice(&element.key), element.flags);
                        let present = change.action == Action::Added;
                        elements.entry(set).or_default().insert(key, present);
                    }
                    _ => {
                        stale.redump.insert(set.to_string());
                    }
                },
                (Kind::Unknown(_), _) | (Kind::Set | Kind::Element, None) => return false,
            }
        }
        for (set, touched) in elements {
            if stale.redump.contains(set) {
                continue;
            }
            let Some((_, elems)) = self.dump.sets.iter_mut().find(|(s, _)| s.name == set) else {
                // Not in the image: a set someone created; dumped anyway.
                continue;
            };
            *elems = merged(elems, touched).into();
            stale.updated.insert(set.to_string());
        }
        true
    }

    /// Whether `change` adds or deletes an element of a set whose elements
    /// belong to run time (as the image knows the set): nothing the image
    /// tracks, nothing to repair.
    pub(crate) fn is_runtime_element(&self, change: &ObjectChange) -> bool {
        change.kind == Kind::Element
            && change.name.as_deref().is_some_and(|name| {
                self.dump
                    .sets
                    .iter()
                    .any(|(spec, _)| spec.name == name && decode::is_runtime(spec))
            })
    }

    /// How a read of the table may reuse the image: in generation
    /// `generation`, the elements of every set the notifications accounted
    /// for.
    pub(crate) fn reuse(&self, generation: u32) -> Reuse<'_> {
        let stale = self.stale.as_ref();
        Reuse {
            generation,
            previous: &self.dump,
            previous_decoded: Some(&self.installed.ruleset),
            written: stale
                .into_iter()
                .flat_map(|s| &s.redump)
                .map(|set| (set.as_str(), None))
                .collect(),
            updated: stale.map(|s| &s.updated),
        }
    }
}

/// `elems` (in key order) with each touched element present or not as
/// `touched` says: one merge, no hashing of the (many) untouched ones.
fn merged(elems: &[(ffi::Key, u32)], touched: HashMap<(ffi::Key, u32), bool>) -> Vec<(ffi::Key, u32)> {
    let mut changes: Vec<_> = touched.into_iter().collect();
    changes.sort_unstable();
    let mut changes = changes.into_iter().peekable();
    let mut out = Vec::with_capacity(elems.len() + changes.len());
    for elem in elems {
        while let Some((change, present)) = changes.next_if(|(change, _)| change < elem) {
            if present {
                out.push(change);
            }
        }
        match changes.next_if(|(change, _)| change == elem) {
            Some((_, false)) => {}
            _ => out.push(elem.clone()),
        }
    }
    out.extend(changes.filter(|(_, present)| *present).map(|(change, _)| change));
    out
}

/// Reads made through one [`Nft`]: dump requests (a table's get included),
/// whole-table reads, and those that dumped set elements.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reads {
    pub(crate) requests: u64,
    pub(crate) element_requests: u64,
    pub(crate) tables: u64,
    pub(crate) with_elements: u64,
}

/// The elements a kernel dump of an interval set holding `elements` lists,
/// in the order [`Nft::dump_table`] keeps them.
pub(crate) fn sent_elems(elements: &dockfw_core::ruleset::SetElements) -> ffi::Elems {
    let mut elems = crate::encode::dumped_elements(elements);
    // Core keeps sets sorted, and big-endian keys sort as the addresses do,
    // so this is a check; `get_mut` cannot fail on the slice just made.
    if !elems.is_sorted()
        && let Some(elems) = std::sync::Arc::get_mut(&mut elems)
    {
        elems.sort_unstable();
    }
    elems
}

/// Decodes a dumped table; [`Error::Unrecognised`] if it holds anything
/// dockfw does not write.
pub(crate) fn decode_table(table: &str, dump: &TableDump, reuse: Option<&Reuse<'_>>) -> Result<Installed> {
    decode_with(table, dump, reuse, false)
}

/// Like [`decode_table`], but a rule dockfw does not write (someone's
/// `nft insert rule … accept`) decodes as a placeholder
/// ([`plan::foreign_rule`]) that planning deletes by its handle, so such
/// tampering is repaired in place rather than by rebuilding the table.
/// Only for a table already known to be ours.
pub(crate) fn decode_tolerant(table: &str, dump: &TableDump) -> Result<Installed> {
    decode_with(table, dump, None, true)
}

fn decode_with(
    table: &str,
    dump: &TableDump,
    reuse: Option<&Reuse<'_>>,
    tolerate_rules: bool,
) -> Result<Installed> {
    let unrecognised = |what: String| Error::Unrecognised {
        table: table.to_string(),
        what,
    };
    if let Some(object) = dump.objects.first() {
        return Err(unrecognised(format!("object {}", object.text)));
    }
    if let Some(flowtable) = dump.flowtables.first() {
        return Err(unrecognised(format!("flowtable `{}`", flowtable.name)));
    }
    let mut ruleset = Ruleset {
        table: table.to_string(),
        sets: Vec::new(),
        chains: Vec::new(),
    };
    for (spec, elems) in &dump.sets {
        if ruleset.set(&spec.name).is_some() {
            return Err(unrecognised(format!("two sets called `{}`", spec.name)));
        }
        let known = reuse.and_then(|r| r.decoded(&spec.name, elems));
        let set = match known {
            // The set's own attributes are still checked; only the elements,
            // decoded when they were read or sent, are not decoded again.
            Some(elements) => {
                let mut set = decode::set_unsized(spec, &ffi::Elems::from([])).map_err(unrecognised)?;
                if std::mem::discriminant(&set.elements) != std::mem::discriminant(elements) {
                    decode::set(spec, elems).map_err(unrecognised)?
                } else {
                    set.elements = elements.clone();
                    decode::sized_as_written(spec, &set).map_err(unrecognised)?;
                    set
                }
            }
            None => decode::set(spec, elems).map_err(unrecognised)?,
        };
        ruleset.sets.push(set);
    }
    // nf_tables lists sets in creation order; run-time sets are read first,
    // by name, as a ruleset lists them (see `Ruleset::runtime_sets_first`).
    ruleset.runtime_sets_first();
    for info in &dump.chains {
        if ruleset.chain(&info.name).is_some() {
            return Err(unrecognised(format!("two chains called `{}`", info.name)));
        }
        ruleset.chains.push(decode::chain(info).map_err(unrecognised)?);
    }
    let mut handles = vec![Vec::new(); ruleset.chains.len()];
    for info in &dump.rules {
        let decoded = decode::comment(&info.userdata).and_then(|comment| {
            decode::rule(&info.exprs, comment.clone())
                .map_err(|e| format!("in chain `{}`, rule {comment:?}: {e}", info.chain))
        });
        let rule = match decoded {
            Ok(rule) => rule,
            Err(_) if tolerate_rules => plan::foreign_rule(),
            Err(e) => return Err(unrecognised(e)),
        };
        let at = ruleset
            .chains
            .iter()
            .position(|c| c.name == info.chain)
            .ok_or_else(|| unrecognised(format!("a rule in unknown chain `{}`", info.chain)))?;
        ruleset.chains[at].rules.push(rule);
        handles[at].push(info.handle);
    }
    Ok(Installed { ruleset, handles })
}

impl Nft {
    /// What another process left in `table` and saved on disk (see
    /// [`crate::cache`]), as an image the next read may take set elements
    /// from: only the sets, whose elements hold in the saved generation.
    pub(crate) fn image_from_disk(&mut self, table: &str) -> Option<Image> {
        let cookie = self.socket.netns_cookie().ok()?;
        let disk = self.disk.as_mut()?;
        let (generation, dump) = disk.load(self.netns, cookie, table)?;
        let updated = dump.sets.iter().map(|(spec, _)| spec.name.clone()).collect();
        Some(Image {
            generation,
            dump,
            installed: Installed {
                ruleset: Ruleset {
                    table: table.to_string(),
                    sets: Vec::new(),
                    chains: Vec::new(),
                },
                handles: Vec::new(),
            },
            // Structure unknown: read again; elements decoded again.
            stale: Some(Stale {
                seen: generation,
                redump: HashSet::new(),
                updated,
            }),
        })
    }

    /// A read of `table` for inspection, taking set elements from what this
    /// connection (or, on disk, another process) knows while nothing was
    /// committed since.
    fn read_known(&mut self, table: &str) -> Result<(u32, Option<Snapshot>)> {
        let image = self.images.remove(table).or_else(|| self.image_from_disk(table));
        let result = self.read(table, image.as_ref().map(|i| i.reuse(i.seen())), false);
        if let Some(image) = image {
            self.images.insert(table.to_string(), image);
        }
        result
    }

    /// [`Nft::installed`].
    pub(crate) fn read_installed(&mut self, table: &str) -> Result<Option<Ruleset>> {
        let (_, snapshot) = self.read_known(table)?;
        snapshot
            .map(|snapshot| snapshot.decoded.map(|installed| installed.ruleset))
            .transpose()
    }

    /// [`Nft::inspect`].
    pub(crate) fn inspect_table(&mut self, table: &str) -> Result<Option<InstalledTable>> {
        let (_, snapshot) = self.read_known(table)?;
        Ok(snapshot.map(|snapshot| {
            let what = match &snapshot.decoded {
                Err(Error::Unrecognised { what, .. }) => what.clone(),
                Err(other) => other.to_string(),
                Ok(_) => String::new(),
            };
            let decoded = snapshot
                .decoded
                .as_ref()
                .map(|i| &i.ruleset)
                .map_err(|_| what.as_str());
            InstalledTable::new(table, &snapshot.dump, decoded)
        }))
    }

    /// [`Nft::read`] of a settled table, failing if it cannot be decoded
    /// (with `tolerant`, as [`decode_tolerant`] can).
    pub(crate) fn read_decoded(
        &mut self,
        table: &str,
        reuse: Option<Reuse<'_>>,
        tolerant: bool,
    ) -> Result<(u32, Option<(TableDump, Installed)>)> {
        let (generation, snapshot) = self.read(table, reuse, true)?;
        let read = snapshot
            .map(|Snapshot { dump, decoded }| match decoded {
                Err(Error::Unrecognised { .. }) if tolerant => {
                    decode_tolerant(table, &dump).map(|installed| (dump, installed))
                }
                decoded => decoded.map(|installed| (dump, installed)),
            })
            .transpose()?;
        Ok((generation, read))
    }

    /// A consistent read of `table` and the generation it was read in,
    /// taking set elements from `reuse` where it allows.
    ///
    /// Consistent: dumped within one generation, or the same (handles
    /// included) twice in a row while others keep committing. A dump taken
    /// while another program's transaction is under way can show what no
    /// committed table holds although the generation did not move: the
    /// kernel's chain dump, resuming after inactive (pending) chains, lists
    /// some chains twice; and nf_tables moves the generation a moment before
    /// it switches to the new objects (a reader during applies saw a set's
    /// interval starts without their ends). So a dump naming a chain or set
    /// twice is never believed, and one that cannot be decoded only when two
    /// reads in a row, each within one generation, agree.
    ///
    /// With `settled`, the table must have been dumped within one generation
    /// (the one returned), as a transaction planned from it carries that
    /// generation: a read the generation moved under is of no use to it, even
    /// if it agrees with the one before.
    pub(crate) fn read(
        &mut self,
        table: &str,
        reuse: Option<Reuse<'_>>,
        settled: bool,
    ) -> Result<(u32, Option<Snapshot>)> {
        const ACTION: &str = "read the table back";
        // The previous attempt's dump, and whether its generation held.
        let mut previous: Option<(Option<TableDump>, bool)> = None;
        for _ in 0..READ_ATTEMPTS {
            let before = self.generation()?;
            let reusable = reuse.as_ref().filter(|r| r.generation == before);
            let dump = match self.dump_table(table, reusable)? {
                Read::Interrupted => continue,
                Read::Absent => None,
                Read::Table(dump) => Some(dump),
            };
            if dump.as_ref().is_some_and(TableDump::repeats_a_name) {
                previous = None;
                continue;
            }
            let decoded = dump
                .as_ref()
                .map(|dump| decode_table(table, dump, reuse.as_ref()));
            let believable = decoded.as_ref().is_none_or(Result::is_ok);
            let stable = self.generation()? == before;
            let agreed = previous
                .as_ref()
                .is_some_and(|(p, held)| *p == dump && (believable || *held));
            let accept = if settled {
                stable && (believable || agreed)
            } else {
                (believable && stable) || (agreed && (believable || stable))
            };
            if accept {
                let snapshot = dump
                    .zip(decoded)
                    .map(|(dump, decoded)| Snapshot { dump, decoded });
                return Ok((before, snapshot));
            }
            previous = Some((dump, stable));
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: READ_ATTEMPTS,
        })
    }

    /// Dumps everything in `table`: its flags, chains, sets with their
    /// elements (unless `reuse` has them), rules.
    pub(crate) fn dump_table(&mut self, table: &str, reuse: Option<&Reuse<'_>>) -> Result<Read> {
        const ACTION: &str = "read the table back";
        let protocol = |detail: String| Error::Protocol {
            action: ACTION,
            detail,
        };
        self.reads.requests += 1;
        let seq = self.take_seqs(1);
        let msg = self.writer.get_table(seq, table);
        let mut info = ffi::TableInfo::default();
        match self.request(ACTION, &msg, seq, |reply| {
            info = ffi::parse_table(reply).map_err(protocol)?;
            Ok(())
        })? {
            RequestOutcome::Refused(libc::ENOENT) => return Ok(Read::Absent),
            RequestOutcome::Refused(errno) => {
                return Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)));
            }
            RequestOutcome::Done { .. } => {}
        }
        let mut interrupted = false;

        let mut chains = Vec::new();
        interrupted |= self.dump(Dump::Chains, table, |msg| {
            chains.push(ffi::parse_chain(msg).map_err(protocol)?);
            Ok(())
        })?;
        let mut specs = Vec::new();
        interrupted |= self.dump(Dump::Sets, table, |msg| {
            specs.push(ffi::parse_set(msg).map_err(protocol)?);
            Ok(())
        })?;
        specs.retain(|s| s.table == table);
        let mut sets = Vec::new();
        let mut dumped_elements = false;
        for mut spec in specs {
            let mut elems: ffi::Elems = Vec::new().into();
            let sent = reuse.and_then(|r| r.written.get(spec.name.as_str()));
            let earlier = reuse
                .filter(|_| sent.is_none())
                .and_then(|r| r.previous.sets.iter().find(|(s, _)| *s == spec));
            if let Some(Some((sent, _))) = sent
                && spec.flags & libc::NFT_SET_EVAL as u32 == 0
            {
                elems = sent.clone();
            } else if let Some((_, known)) = earlier {
                elems = known.clone();
            } else if spec.flags & libc::NFT_SET_EVAL as u32 == 0 && !decode::is_runtime(&spec) {
                // Meters are filled by the packet path, run-time sets by
                // other programs (`set add`, fail2ban): their elements are
                // not ours, and are neither read nor compared.
                let (mut dumped, mut extra) = (Vec::new(), Vec::new());
                interrupted |= self.dump(Dump::Elements(&spec.name), table, |msg| {
                    ffi::parse_elems(msg, &mut dumped, &mut extra).map_err(protocol)
                })?;
                dumped_elements = true;
                self.reads.element_requests += 1;
                // Kept in key order, so that dumps compare whatever order
                // the kernel lists elements in, and match what was sent.
                dumped.sort_unstable();
                elems = dumped.into();
                // Kept with the set, so a set whose elements hold more than
                // keys is not dockfw's (and is never reused as one).
                spec.extra.extend(extra);
            }
            sets.push((spec, elems));
        }
        let mut rules = Vec::new();
        interrupted |= self.dump(Dump::Rules, table, |msg| {
            let mut rule = ffi::parse_rule(msg).map_err(protocol)?;
            for expr in &mut rule.exprs {
                if let Expr::Counter { packets, bytes } = expr {
                    (*packets, *bytes) = (0, 0);
                }
            }
            rules.push(rule);
            Ok(())
        })?;
        let mut objects = Vec::new();
        interrupted |= self.dump(Dump::Objects, table, |msg| {
            objects.push(ffi::parse_object(msg).map_err(protocol)?);
            Ok(())
        })?;
        let mut flowtables = Vec::new();
        interrupted |= self.dump(Dump::Flowtables, table, |msg| {
            flowtables.push(ffi::parse_flowtable(msg).map_err(protocol)?);
            Ok(())
        })?;
        chains.retain(|c| c.table == table);
        rules.retain(|r| r.table == table);
        objects.retain(|o| o.table == table);
        flowtables.retain(|f| f.table == table);
        self.reads.tables += 1;
        self.reads.with_elements += u64::from(dumped_elements);
        if interrupted {
            return Ok(Read::Interrupted);
        }
        Ok(Read::Table(TableDump {
            flags: info.flags,
            userdata: info.userdata,
            chains,
            sets,
            rules,
            objects,
            flowtables,
        }))
    }

    /// One dump; returns whether it was interrupted. A vanished table
    /// (`ENOENT`) counts as interrupted.
    pub(crate) fn dump(
        &mut self,
        what: Dump<'_>,
        table: &str,
        each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        const ACTION: &str = "read the table back";
        self.reads.requests += 1;
        let seq = self.take_seqs(1);
        let msg = self.writer.dump(seq, what, table);
        match self.request(ACTION, &msg, seq, each)? {
            RequestOutcome::Done { interrupted } => Ok(interrupted),
            RequestOutcome::Refused(libc::ENOENT) => Ok(true),
            RequestOutcome::Refused(errno) => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
        }
    }

    /// [`Nft::counters`].
    pub(crate) fn read_counters(&mut self, table: &str) -> Result<Vec<RuleCounter>> {
        const ACTION: &str = "read rule counters";
        let mut rules = Vec::new();
        let protocol = |detail: String| Error::Protocol {
            action: ACTION,
            detail,
        };
        self.dump(Dump::Rules, table, |msg| {
            rules.push(ffi::parse_rule(msg).map_err(protocol)?);
            Ok(())
        })?;
        let mut out: Vec<RuleCounter> = Vec::with_capacity(rules.len());
        for rule in rules.into_iter().filter(|r| r.table == table) {
            let index = out.iter().filter(|c| c.chain == rule.chain).count();
            let (packets, bytes) = rule
                .exprs
                .iter()
                .find_map(|e| match e {
                    Expr::Counter { packets, bytes } => Some((*packets, *bytes)),
                    _ => None,
                })
                .unwrap_or_default();
            out.push(RuleCounter {
                comment: decode::comment(&rule.userdata).unwrap_or_default(),
                chain: rule.chain,
                index,
                handle: rule.handle,
                packets,
                bytes,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn elem(byte: u8, flags: u32) -> (ffi::Key, u32) {
        (ffi::Key::from_slice(&[byte]), flags)
    }

    #[test]
    fn notified_element_changes_merge_into_the_image() {
        let elems = [elem(1, 0), elem(3, 0), elem(3, 1), elem(5, 0)];
        let touched = HashMap::from([
            (elem(0, 0), true),  // added before everything
            (elem(1, 0), true),  // added again: present already
            (elem(3, 0), false), // deleted; its end (flags 1) stays
            (elem(4, 0), true),  // added between
            (elem(6, 0), false), // deleted, was never there
            (elem(7, 1), true),  // added after everything
        ]);
        assert_eq!(
            merged(&elems, touched),
            [
                elem(0, 0),
                elem(1, 0),
                elem(3, 1),
                elem(4, 0),
                elem(5, 0),
                elem(7, 1)
            ]
        );
    }
}
