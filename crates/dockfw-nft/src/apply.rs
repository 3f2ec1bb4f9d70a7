//! The apply engine: plan a step, commit it, read it back, until the table
//! is the ruleset; undo our own steps when a later one fails; replace a
//! table in one transaction; delete one.

use crate::describe::difference;
use crate::dump::TableDump;
use crate::encode;
use crate::plan::{self, Installed, StepKind};
use crate::read::{Image, Reuse, Snapshot, decode_tolerant, ensure_ours, owner_of, sent_elems};
use crate::report::{ApplyReport, Change, TransactionKind};
use crate::transact::{ATTEMPTS, next_generation};
use crate::{Error, Nft, Owner, Result};
use dockfw_core::ruleset::Ruleset;
use std::time::{Duration, Instant};

/// Committed transactions one in-place update may take: the planner needs at
/// most four (see [`plan`]); more means someone else keeps changing the table.
const MAX_STEPS: usize = 8;

/// How many times one apply plans anew because another program changed the
/// table between our transactions before it gives up ([`Error::Busy`]): a
/// program deleting the table in a loop would otherwise have each attempt
/// re-create a large table again and again, unseen by a caller's backoff.
const MAX_OVERTAKEN: u32 = 2;

/// Whose table a write may replace or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owners {
    /// Only dockfw's own (the table is read and checked first).
    OursOnly,
    /// Whoever created it (`adopt`, `remove_foreign`: deliberate).
    Any,
}

/// Whether [`Nft::converge`] brings the table to a ruleset (re-planning
/// over whatever it finds), or undoes our own steps (only over our own work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Undo,
}

/// How [`Nft::converge`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The table holds the ruleset.
    Done,
    /// ([`Mode::Undo`]) another program changed the table; stopped there.
    Overtaken,
}

/// How [`Nft::restore`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// The table holds the original ruleset again (or nothing needed undoing).
    Done,
    /// Another program changed nf_tables since our last commit; the table
    /// was left as is after `undone` transactions of the undo.
    Overtaken { undone: usize },
}

/// Where our own commits of one [`Nft::converge`] left nf_tables, so that
/// an undo is never sent over another program's work.
#[derive(Debug, Default)]
struct Trail {
    /// Transactions committed.
    committed: usize,
    /// The table our first commit was planned from (and committed over:
    /// the batch carried the generation it was read in), inner `None`:
    /// absent. What an undo goes back to.
    before: Option<Option<Ruleset>>,
    /// Whether another program changed the table between our commits (we
    /// planned anew over its work), so going back to `before` would erase it.
    interleaved: bool,
    /// The generation our last commit moved nf_tables to.
    generation: Option<u32>,
    /// The table as read back in exactly that generation (inner `None`:
    /// absent), if it was.
    table: Option<Option<TableDump>>,
    /// ([`Mode::Apply`], done) the table as it ended, exact, and the
    /// generation it is exact in: the image the next apply may plan from.
    settled: Option<(u32, Option<(TableDump, Installed)>)>,
}

impl Nft {
    /// [`Nft::apply`] of a checked ruleset, the writer lock held by the caller.
    pub(crate) fn apply_unlocked(&mut self, ruleset: &Ruleset) -> Result<ApplyReport> {
        let table = ruleset.table.as_str();
        let started = Instant::now();
        let reads = self.reads;
        let mut report = ApplyReport::new(Change::Unchanged);
        // Taken out: it goes back only when this apply ends knowing the
        // table exactly again.
        let image = self.images.remove(table).or_else(|| self.image_from_disk(table));
        let mut tolerated = false;
        let (generation, installed) = match image {
            // Nobody committed since our last commit (or since the commits
            // the embedder told us left the table alone): the image is what
            // a read would return, and every batch below carries this
            // generation, so a commit by anyone meanwhile makes the kernel
            // refuse it and the table is read again.
            Some(image) if image.stale.is_none() && self.read_generation()? == image.generation => {
                (image.generation, Some((image.dump, image.installed)))
            }
            image => {
                // Others changed the table since the image, and their
                // notifications were followed (`Nft::note_commit`): the
                // structure is read again, set elements only where the
                // notifications could not tell what changed.
                let now = match &image {
                    Some(image) if image.stale.is_some() => Some(self.read_generation()?),
                    _ => None,
                };
                let reuse = image
                    .as_ref()
                    .zip(now)
                    .filter(|(image, now)| image.seen() == *now)
                    .map(|(image, now)| image.reuse(now));
                let (generation, snapshot) = self.read(table, reuse, true)?;
                drop(image);
                // Ownership is decided on this read, and every batch below
                // carries its generation: a table swapped meanwhile makes
                // the kernel refuse.
                ensure_ours(table, snapshot.as_ref())?;
                let installed = match snapshot {
                    None => None,
                    Some(snapshot) if snapshot.dump.flags != 0 => {
                        return self.rebuild(ruleset, Owners::OursOnly, Some(generation));
                    }
                    Some(Snapshot { dump, decoded }) => match decoded {
                        Ok(installed) => Some((dump, installed)),
                        // Rules someone added are deleted in place, by
                        // handle; anything else unrecognised (objects,
                        // chains of other kinds, sets) means a rebuild.
                        Err(Error::Unrecognised { .. }) => match decode_tolerant(table, &dump) {
                            Ok(installed) => {
                                tolerated = true;
                                Some((dump, installed))
                            }
                            Err(_) => return self.rebuild(ruleset, Owners::OursOnly, Some(generation)),
                        },
                        Err(e) => return Err(e),
                    },
                };
                (generation, installed)
            }
        };
        report.generation = generation;
        report.verify_time += started.elapsed();
        match installed {
            Some((dump, installed)) if installed.ruleset == *ruleset => {
                self.keep_image(table, generation, dump, installed);
                self.count_reads(&mut report, reads);
                return Ok(report);
            }
            Some(_) => report.change = Change::Updated,
            None => report.change = Change::Created,
        }
        let mut trail = Trail {
            // Undoing would mean putting back rules we do not write.
            interleaved: tolerated,
            ..Trail::default()
        };
        let error = match self.converge(
            ruleset,
            generation,
            installed,
            &mut report,
            Mode::Apply,
            &mut trail,
        ) {
            Ok(_) => {
                if let Some((generation, Some((dump, installed)))) = trail.settled.take() {
                    self.keep_image(table, generation, dump, installed);
                }
                self.count_reads(&mut report, reads);
                return Ok(report);
            }
            Err(error) => error,
        };
        if trail.committed == 0 || matches!(error, Error::Mismatch { .. } | Error::NotOwned { .. }) {
            return Err(error);
        }
        let (table, committed, cause) = (table.to_string(), trail.committed, Box::new(error));
        #[cfg(feature = "testing")]
        if let Some(hook) = &mut self.hooks.before_undo {
            (hook.0)();
        }
        let before = trail.before.clone().flatten();
        let undo = if trail.interleaved {
            // Our later steps were planned over another program's work:
            // going back to before our first would erase it.
            Ok(Undo::Overtaken { undone: 0 })
        } else {
            self.restore(&table, before.as_ref(), &trail)
        };
        Err(match undo {
            Ok(Undo::Done) => Error::Undone {
                table,
                committed,
                cause,
            },
            Ok(Undo::Overtaken { undone }) => {
                let now = self.describe_table(&table, ruleset, before.as_ref());
                Error::LeftAsIs {
                    table,
                    committed,
                    cause,
                    undone,
                    now,
                }
            }
            Err(rollback) => Error::RollbackFailed {
                table,
                committed,
                cause,
                rollback: Box::new(rollback),
            },
        })
    }

    /// Keeps what apply left in `table` (exact, in `generation`) to plan the
    /// next apply from.
    fn keep_image(&mut self, table: &str, generation: u32, dump: TableDump, installed: Installed) {
        if dump.flags == 0 {
            if let (Some(disk), Ok(cookie)) = (&mut self.disk, self.socket.netns_cookie()) {
                // Best effort: without the file, the next process reads.
                disk.save(self.netns, cookie, table, generation, &dump);
            }
            self.images.insert(
                table.to_string(),
                Image {
                    generation,
                    dump,
                    installed,
                    stale: None,
                },
            );
        }
    }

    /// Records in `report` the reads made since `before`.
    fn count_reads(&self, report: &mut ApplyReport, before: crate::read::Reads) {
        report.reads = (self.reads.tables - before.tables) as u32;
        report.element_reads = (self.reads.with_elements - before.with_elements) as u32;
    }

    /// Replaces the table in one transaction, the writer lock held by the
    /// caller. Each attempt is based on a settled read that found the table
    /// dockfw's (unless `owners` is [`Owners::Any`]), and carries that read's generation, so the
    /// table cannot change hands between the decision and the write;
    /// `read_in` is a generation such a read was already made in.
    pub(crate) fn rebuild(
        &mut self,
        ruleset: &Ruleset,
        owners: Owners,
        mut read_in: Option<u32>,
    ) -> Result<ApplyReport> {
        const ACTION: &str = "replace the table";
        let table = ruleset.table.as_str();
        let mut report = ApplyReport::new(Change::Replaced);
        let plain = encode::replace(ruleset, &[], self.seq, &mut self.writer)?;
        self.take_seqs(plain.msgs.len());
        let keeps_runtime = owners == Owners::OursOnly && ruleset.sets.iter().any(|set| set.is_runtime());
        for attempt in 1..=ATTEMPTS {
            let generation = match read_in.take() {
                Some(generation) => generation,
                None if owners == Owners::Any => self.generation()?,
                None => {
                    let (generation, snapshot) = self.read(table, None, true)?;
                    ensure_ours(table, snapshot.as_ref())?;
                    generation
                }
            };
            // What run time put in our run-time sets goes into the new
            // table; read after `generation`, so if anyone adds or deletes
            // one meanwhile the kernel refuses the batch and we read again.
            let carried = if keeps_runtime {
                self.runtime_carry(ruleset)?
            } else {
                Vec::new()
            };
            let mut batch = if carried.is_empty() {
                plain.clone()
            } else {
                let batch = encode::replace(ruleset, &carried, self.seq, &mut self.writer)?;
                self.take_seqs(batch.msgs.len());
                batch
            };
            report.runtime_elements_kept = carried.iter().map(|(_, elements)| elements.len()).sum();
            report.attempts += 1;
            let Some(transaction) = self.commit(&mut batch, TransactionKind::Replace, generation, ruleset)?
            else {
                std::thread::sleep(Duration::from_millis(5 << attempt));
                continue;
            };
            report.record(transaction);
            let started = Instant::now();
            let installed = self.installed(table)?;
            report.verify_time += started.elapsed();
            if installed.as_ref() != Some(ruleset) {
                return Err(Error::Mismatch {
                    table: table.to_string(),
                    difference: difference(ruleset, installed.as_ref()),
                });
            }
            return Ok(report);
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: ATTEMPTS,
        })
    }

    /// Runs planned steps from `installed` (read in `generation`, raw and
    /// decoded) until the table is `want`, recording each transaction in
    /// `report` and where our commits left nf_tables in `trail`.
    ///
    /// [`Mode::Undo`] goes on only over our own work: when another program
    /// changed the table since the read a step was planned from, or
    /// committed between our step and its read-back and the table is not
    /// what our step left, it stops ([`Flow::Overtaken`]) instead of
    /// planning anew.
    fn converge(
        &mut self,
        want: &Ruleset,
        mut generation: u32,
        mut installed: Option<(TableDump, Installed)>,
        report: &mut ApplyReport,
        mode: Mode,
        trail: &mut Trail,
    ) -> Result<Flow> {
        const ACTION: &str = "apply the ruleset";
        let table = want.table.as_str();
        let mut steps = 0;
        let mut overtaken = 0;
        loop {
            let step =
                plan::plan(installed.as_ref().map(|(_, i)| i), want).map_err(|detail| Error::Protocol {
                    action: ACTION,
                    detail,
                })?;
            let Some(step) = step else {
                if mode == Mode::Apply {
                    trail.settled = Some((generation, installed));
                }
                return Ok(Flow::Done);
            };
            if steps == MAX_STEPS {
                return Err(Error::Busy {
                    action: ACTION,
                    attempts: steps as u32,
                });
            }
            let mut batch = encode::ops(table, &step.ops, self.seq, &mut self.writer)?;
            self.take_seqs(batch.msgs.len());
            let kind = match step.kind {
                StepKind::Create => TransactionKind::Create,
                StepKind::Prepare => TransactionKind::Prepare,
                StepKind::Switch => TransactionKind::Switch,
                StepKind::Update => TransactionKind::Update,
            };
            // Send the batch; while the kernel refuses it because another
            // program committed since the read it was planned from, read the
            // table again and, if it is still exactly that, send the same
            // batch at once under the new generation (planning and encoding
            // again would leave the same opening for the next commit).
            let mut refused = 0;
            let transaction = loop {
                report.attempts += 1;
                if let Some(transaction) = self.commit(&mut batch, kind, generation, want)? {
                    break Some(transaction);
                }
                // Once a step has committed, giving up means undoing it,
                // which meets the same contention: finishing is better.
                refused += 1;
                let patience = if steps == 0 { ATTEMPTS } else { 4 * ATTEMPTS };
                if refused == patience {
                    return Err(Error::Busy {
                        action: ACTION,
                        attempts: patience,
                    });
                }
                std::thread::sleep(Duration::from_millis(1 << refused.min(5)));
                let started = Instant::now();
                let (now, read) = self.read_decoded(table, None, mode == Mode::Apply)?;
                report.verify_time += started.elapsed();
                if let Some((dump, installed)) = &read
                    && let Owner::Foreign { why } = owner_of(dump, &Ok(installed.clone()))
                {
                    // Someone put a table of their own in its place.
                    return Err(Error::NotOwned {
                        table: table.to_string(),
                        why,
                    });
                }
                let unchanged =
                    read.as_ref().map(|(dump, _)| dump) == installed.as_ref().map(|(dump, _)| dump);
                (generation, installed) = (now, read);
                if !unchanged {
                    trail.interleaved |= trail.committed > 0;
                    overtaken += 1;
                    if overtaken > MAX_OVERTAKEN {
                        return Err(Error::Busy {
                            action: ACTION,
                            attempts: overtaken,
                        });
                    }
                    break None;
                }
            };
            let Some(transaction) = transaction else {
                if mode == Mode::Undo {
                    // Someone else's work now: not ours to undo.
                    return Ok(Flow::Overtaken);
                }
                // The table itself changed: plan again from what is there.
                continue;
            };
            steps += 1;
            if mode == Mode::Apply {
                let recreated = plan::recreated_runtime_sets(&step, installed.as_ref().map(|(_, i)| i), want);
                report
                    .recreated_runtime_sets
                    .extend(recreated.map(str::to_string));
            }
            let ours = next_generation(transaction.generation);
            if trail.committed == 0 {
                trail.before = Some(installed.as_ref().map(|(_, i)| i.ruleset.clone()));
            }
            trail.committed += 1;
            (trail.generation, trail.table) = (Some(ours), None);
            // What the table holds now. The batch was pinned to
            // `generation` and every message was acked, so it committed
            // whole as generation `ours`: when it changed only one set's
            // elements, the table is the one planned from with those
            // elements, known without reading. Otherwise read back the
            // structure (and, if not acked message by message, the elements
            // of the sets the step wrote); the rest cannot have changed if
            // nothing else committed since the last read. See the crate docs.
            let started = Instant::now();
            let known = |name: &str| {
                transaction
                    .acked
                    .then(|| step.after.set(name))
                    .flatten()
                    .map(|set| (sent_elems(&set.elements), &set.elements))
            };
            let (now, read) = match installed {
                Some((mut dump, previous)) if step.kind == StepKind::Update && transaction.acked => {
                    for (spec, elems) in &mut dump.sets {
                        if let Some(sent) = step
                            .written_sets()
                            .any(|name| name == spec.name)
                            .then(|| known(&spec.name))
                            .flatten()
                        {
                            *elems = sent.0;
                        }
                    }
                    let installed = Installed {
                        ruleset: step.after.clone(),
                        handles: previous.handles,
                    };
                    // Kept for a possible undo, as a read would have been.
                    (ours, Some((dump, installed)))
                }
                installed => {
                    // No table before (first install): every set is one the
                    // step wrote, none is taken from an earlier read.
                    let nothing = TableDump::empty();
                    let reuse = Some(Reuse {
                        generation: ours,
                        previous: installed.as_ref().map_or(&nothing, |(previous, _)| previous),
                        previous_decoded: installed.as_ref().map(|(_, i)| &i.ruleset),
                        updated: None,
                        written: step.written_sets().map(|name| (name, known(name))).collect(),
                    });
                    let read = self.read_decoded(table, reuse, mode == Mode::Apply)?;
                    drop(installed);
                    read
                }
            };
            report.verify_time += started.elapsed();
            // Only when nobody else committed since can the table be held to
            // what this step should leave.
            let got = read.as_ref().map(|(_, r)| &r.ruleset);
            if now == ours && got != Some(&step.after) {
                return Err(Error::Mismatch {
                    table: table.to_string(),
                    difference: difference(&step.after, got),
                });
            }
            if now == ours {
                trail.table = Some(read.as_ref().map(|(dump, _)| dump.clone()));
            } else if got != Some(&step.after) || read.as_ref().is_some_and(|(dump, _)| dump.flags != 0) {
                // Someone else changed the table right after our commit.
                if mode == Mode::Undo {
                    return Ok(Flow::Overtaken);
                }
                trail.interleaved = true;
                overtaken += 1;
                if overtaken > MAX_OVERTAKEN {
                    return Err(Error::Busy {
                        action: ACTION,
                        attempts: overtaken,
                    });
                }
            }
            report.record(transaction);
            (generation, installed) = (now, read);
            #[cfg(feature = "testing")]
            if mode == Mode::Apply
                && let Some(hook) = &mut self.hooks.after_commit
            {
                (hook.0)();
            }
        }
    }

    /// Undoes a partly applied update whose commits `trail` followed:
    /// brings the table back to `original`, what it held before our first
    /// commit (removes it if there was none),
    /// the same glitch-free way, but only over our own work. The undo
    /// starts only if nothing committed since our last commit, or if the
    /// table still reads exactly as that commit left it (others committed
    /// elsewhere); each of its batches carries the generation it was planned
    /// in, so a commit by anyone else meanwhile makes the kernel refuse it.
    fn restore(&mut self, table: &str, original: Option<&Ruleset>, trail: &Trail) -> Result<Undo> {
        let Some(ours) = trail.generation else {
            return Ok(Undo::Done);
        };
        let (mut generation, snapshot) = self.read(table, None, true)?;
        let left_by_us = |generation: u32, dump: Option<&TableDump>| {
            generation == ours || trail.table.as_ref().is_some_and(|left| left.as_ref() == dump)
        };
        if !left_by_us(generation, snapshot.as_ref().map(|s| &s.dump)) {
            return Ok(Undo::Overtaken { undone: 0 });
        }
        let Some(original) = original else {
            if snapshot.is_none() {
                return Ok(Undo::Done);
            }
            let mine = snapshot.map(|s| s.dump);
            for _ in 0..ATTEMPTS {
                if self.delete_table(table, generation)?.is_some() {
                    return Ok(Undo::Done);
                }
                // Refused: someone committed. Go on only if it was elsewhere.
                let (now, read) = self.read(table, None, true)?;
                if read.map(|s| s.dump) != mine {
                    return Ok(Undo::Overtaken { undone: 0 });
                }
                generation = now;
            }
            return Err(Error::Busy {
                action: "undo the update (delete the table it created)",
                attempts: ATTEMPTS,
            });
        };
        let installed = snapshot
            .map(|Snapshot { dump, decoded }| decoded.map(|installed| (dump, installed)))
            .transpose()?;
        let mut report = ApplyReport::new(Change::Updated);
        let mut undo = Trail::default();
        match self.converge(
            original,
            generation,
            installed,
            &mut report,
            Mode::Undo,
            &mut undo,
        )? {
            Flow::Done => Ok(Undo::Done),
            Flow::Overtaken => Ok(Undo::Overtaken {
                undone: undo.committed,
            }),
        }
    }

    /// [`Nft::remove`] / [`Nft::remove_foreign`], the writer lock held by the caller.
    pub(crate) fn remove_checked(&mut self, table: &str, owners: Owners) -> Result<bool> {
        const ACTION: &str = "remove the table";
        for attempt in 1..=ATTEMPTS {
            let generation = if owners == Owners::Any {
                self.generation()?
            } else {
                let (generation, snapshot) = self.read(table, None, true)?;
                if snapshot.is_none() {
                    return Ok(false);
                }
                ensure_ours(table, snapshot.as_ref())?;
                generation
            };
            match self.delete_table(table, generation)? {
                Some(existed) => return Ok(existed),
                None => std::thread::sleep(Duration::from_millis(1 << attempt)),
            }
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: ATTEMPTS,
        })
    }
}
