//! Sets whose elements belong to run time (a policy's `dynamic` sets,
//! [`SetElements::Runtime`](dockfw_core::ruleset::SetElements::Runtime)):
//! listing their elements, adding, deleting, flushing, for `dockfw-nft set`
//! and embedders; and keeping them when [`Nft::replace`] rebuilds a table.
//!
//! Each change is one transaction, pinned to the generation in which the
//! table was found dockfw's and every set it names a run-time set in
//! dockfw's form (`flags timeout`, an address key), so it can never land in
//! a table or set that changed hands meanwhile; if anything committed in
//! between, the kernel refuses it and the checks are made again. These
//! writes take no writer lock: they never touch what [`Nft::apply`] plans
//! (it neither reads nor writes run-time elements), and a ban must not wait
//! for an apply.

use crate::describe::{KernelError, describe_failure};
use crate::encode::{Batch, Object};
use crate::ffi::{self, Dump, ElementOp, Key, SetSpec, TimedElem};
use crate::owner::{self, MARKER, Owner};
use crate::transact::{ATTEMPTS, RequestOutcome};
use crate::{Error, Nft, Result, decode};
use dockfw_core::ruleset::{Family, Ruleset, SetElements};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// `NFT_SET_ELEM_CATCHALL`: an element without a key, holding every key.
const ELEM_CATCHALL: u32 = 2;

/// One element of a run-time set, as [`Nft::runtime_elements`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeElement {
    /// Its address; `None` for a catch-all element (`*`, which
    /// `nft add element` can add), holding every address.
    pub addr: Option<IpAddr>,
    /// Its own timeout, when the kernel reports one (it was added with one).
    pub timeout: Option<Duration>,
    /// How long until the kernel removes it; `None`: it never expires.
    pub expires: Option<Duration>,
}

#[cfg(feature = "testing")]
impl RuntimeElement {
    /// An element as [`Nft::runtime_elements`] would list it: for stand-ins
    /// of the kernel in tests.
    pub fn stand_in(addr: Option<IpAddr>, timeout: Option<Duration>, expires: Option<Duration>) -> Self {
        Self {
            addr,
            timeout,
            expires,
        }
    }
}

/// An address to add to, or delete from, a run-time set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEntry {
    /// The kernel set.
    pub set: String,
    /// The address, of the set's family.
    pub addr: IpAddr,
    /// When adding: its own timeout (`None`: the set's default, if any).
    /// Ignored when deleting.
    pub timeout: Option<Duration>,
}

/// How an element batch ended.
enum Sent {
    Committed,
    /// nf_tables changed since the generation it was pinned to.
    Restart,
    Failed(Vec<KernelError>),
}

/// An element as a message carries it: its key (empty: catch-all) and its
/// own timeout in milliseconds.
pub(crate) type WireElement = (Key, Option<u64>);

impl Nft {
    /// The elements run time has put in set `set` of table `table` (a set
    /// whose elements belong to run time), in address order.
    ///
    /// [`Error::NoTable`], [`Error::NoSet`], or [`Error::NotRuntimeSet`] for
    /// a set of another kind.
    pub fn runtime_elements(&mut self, table: &str, set: &str) -> Result<Vec<RuntimeElement>> {
        const ACTION: &str = "list a set's elements";
        self.table_info(table)?.ok_or_else(|| Error::NoTable {
            table: table.to_string(),
        })?;
        let family = self.runtime_set(table, set)?;
        let mut elems = Vec::new();
        let interrupted = self.dump(Dump::Elements(set), table, |msg| {
            ffi::parse_timed_elems(msg, &mut elems).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })
        })?;
        if interrupted {
            // The set went away mid-dump (or changed): say what is there now.
            return match self.get_set(table, set)? {
                Some(_) => self.runtime_elements(table, set),
                None => Err(Error::NoSet {
                    table: table.to_string(),
                    set: set.to_string(),
                }),
            };
        }
        let mut out: Vec<RuntimeElement> = elems
            .into_iter()
            .map(|elem| RuntimeElement {
                addr: if elem.flags & ELEM_CATCHALL != 0 {
                    None
                } else {
                    key_addr(family, &elem.key)
                },
                timeout: elem.timeout_ms.map(Duration::from_millis),
                expires: elem.expires_ms.map(Duration::from_millis),
            })
            .collect();
        out.sort_by_key(|e| e.addr);
        Ok(out)
    }

    /// Adds `entries` to the run-time sets they name, in one transaction.
    /// An address already in its set is no error (6.18 renews its timeout
    /// to the one given, or the set's default; earlier kernels may keep
    /// the old one).
    ///
    /// [`Error::NoTable`], [`Error::NotOwned`] (a table dockfw did not
    /// create), [`Error::NoSet`], [`Error::NotRuntimeSet`], or
    /// [`Error::Invalid`] for an address of the other family. Nothing was
    /// changed on error.
    pub fn add_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()> {
        let elements = by_set(entries, true);
        self.write_runtime(table, &elements, ElementOp::Add, "add addresses to a set")
    }

    /// Deletes `entries` from the run-time sets they name, in one
    /// transaction. An address not in its set (never added, deleted or
    /// expired) is no error. Errors as [`Nft::add_runtime_elements`].
    pub fn delete_runtime_elements(&mut self, table: &str, entries: &[RuntimeEntry]) -> Result<()> {
        const ACTION: &str = "delete addresses from a set";
        let elements = by_set(entries, false);
        // Linux 6.3 and later delete idempotently (DESTROYSETELEM); earlier
        // kernels refuse that message: then only what is there is deleted.
        #[cfg(feature = "testing")]
        let destroy = !self.hooks.without_destroy;
        #[cfg(not(feature = "testing"))]
        let destroy = true;
        if destroy {
            match self.write_runtime(table, &elements, ElementOp::Destroy, ACTION) {
                Err(Error::Rejected { failures, .. }) if failures.iter().any(|f| f.errno == libc::EINVAL) => {
                }
                other => return other,
            }
        }
        for _ in 0..ATTEMPTS {
            let mut present = Vec::new();
            for (set, wanted) in &elements {
                let there = self.runtime_keys(table, set)?;
                let left: Vec<WireElement> = wanted
                    .iter()
                    .filter(|(key, _)| there.contains(key))
                    .cloned()
                    .collect();
                if !left.is_empty() {
                    present.push((set.clone(), left));
                }
            }
            if present.is_empty() {
                return Ok(());
            }
            match self.write_runtime(table, &present, ElementOp::Delete, ACTION) {
                // One expired or went meanwhile: look again.
                Err(Error::Rejected { failures, .. }) if failures.iter().all(|f| f.errno == libc::ENOENT) => {
                }
                other => return other,
            }
        }
        Err(Error::Busy {
            action: ACTION,
            attempts: ATTEMPTS,
        })
    }

    /// Empties the run-time sets `sets` of table `table`, in one
    /// transaction. Errors as [`Nft::add_runtime_elements`].
    pub fn flush_runtime_sets(&mut self, table: &str, sets: &[&str]) -> Result<()> {
        let elements: Vec<(String, Vec<WireElement>)> =
            sets.iter().map(|set| (set.to_string(), Vec::new())).collect();
        self.write_runtime(table, &elements, ElementOp::Delete, "empty a set")
    }

    /// One element transaction on run-time sets, retried while nf_tables
    /// changes between the checks and the commit. With [`ElementOp::Delete`],
    /// a set given no elements is flushed.
    fn write_runtime(
        &mut self,
        table: &str,
        elements: &[(String, Vec<WireElement>)],
        op: ElementOp,
        action: &'static str,
    ) -> Result<()> {
        for attempt in 1..=ATTEMPTS {
            let generation = self.generation()?;
            self.ensure_runtime_table(table)?;
            for (set, wanted) in elements {
                let family = self.runtime_set(table, set)?;
                if let Some(addr) = wanted
                    .iter()
                    .filter_map(|(key, _)| key_addr(other(family), key))
                    .next()
                {
                    return Err(Error::Invalid(format!(
                        "{addr} cannot go into set `{set}`, which holds {} addresses",
                        family_name(family)
                    )));
                }
            }
            let mut batch = Batch::new(self.seq);
            for (set, wanted) in elements {
                push_runtime_elements(&mut self.writer, &mut batch, table, set, op, wanted);
            }
            batch.finish();
            self.take_seqs(batch.msgs.len());
            match self.commit_elements(&mut batch, generation, action)? {
                Sent::Committed => return Ok(()),
                Sent::Restart => std::thread::sleep(Duration::from_millis(1 << attempt)),
                Sent::Failed(failures) => {
                    let described = Ruleset {
                        table: table.to_string(),
                        sets: Vec::new(),
                        chains: Vec::new(),
                    };
                    return Err(Error::Rejected {
                        table: table.to_string(),
                        failures: failures
                            .into_iter()
                            .map(|f| describe_failure(&described, &batch, f))
                            .collect(),
                    });
                }
            }
        }
        Err(Error::Busy {
            action,
            attempts: ATTEMPTS,
        })
    }

    /// Sends an element batch pinned to `generation` and reads its acks.
    fn commit_elements(&mut self, batch: &mut Batch, generation: u32, action: &'static str) -> Result<Sent> {
        self.socket
            .grow_buffers(
                batch.bytes.len() + (64 << 10),
                (batch.msgs.len() * 2048).max(1 << 20),
            )
            .map_err(|e| Error::io("size the netlink socket buffers", e))?;
        batch.set_genid(generation);
        self.socket.send(&batch.bytes).map_err(|e| Error::io(action, e))?;
        let (failures, _) = self.collect_acks(batch)?;
        if failures.iter().any(|f| {
            f.errno == libc::ERESTART && batch.msg(f.seq).is_some_and(|m| m.object == Object::BatchBegin)
        }) {
            return Ok(Sent::Restart);
        }
        if failures.iter().any(|f| f.errno == libc::EPERM) {
            return Err(Error::PermissionDenied { action });
        }
        Ok(if failures.is_empty() {
            Sent::Committed
        } else {
            Sent::Failed(failures)
        })
    }

    /// [`Error::NoTable`] or [`Error::NotOwned`] unless table `table` is
    /// dockfw's: marked, or (an earlier version's) read whole and found so.
    fn ensure_runtime_table(&mut self, table: &str) -> Result<()> {
        let info = self.table_info(table)?.ok_or_else(|| Error::NoTable {
            table: table.to_string(),
        })?;
        if owner::table_comment(&info.userdata).as_deref() == Some(MARKER) {
            return Ok(());
        }
        let (_, snapshot) = self.read(table, None, false)?;
        match snapshot.map(|s| s.owner()) {
            None => Err(Error::NoTable {
                table: table.to_string(),
            }),
            Some(Owner::Foreign { why }) => Err(Error::NotOwned {
                table: table.to_string(),
                why,
            }),
            Some(_) => Ok(()),
        }
    }

    /// The family of run-time set `set`, or why it is none.
    fn runtime_set(&mut self, table: &str, set: &str) -> Result<Family> {
        let Some(spec) = self.get_set(table, set)? else {
            return Err(Error::NoSet {
                table: table.to_string(),
                set: set.to_string(),
            });
        };
        match decode::set_unsized(&spec, &ffi::Elems::from([])) {
            Ok(decoded) => match decoded.elements {
                SetElements::Runtime(runtime) => Ok(runtime.family),
                other => Err(Error::NotRuntimeSet {
                    table: table.to_string(),
                    set: set.to_string(),
                    why: match other {
                        SetElements::Meter(_) => "a per-source meter the packet path fills".to_string(),
                        _ => "a set of the policy's own addresses or ports".to_string(),
                    },
                }),
            },
            Err(why) => Err(Error::NotRuntimeSet {
                table: table.to_string(),
                set: set.to_string(),
                why,
            }),
        }
    }

    /// The keys run-time set `set` holds now.
    fn runtime_keys(&mut self, table: &str, set: &str) -> Result<Vec<Key>> {
        const ACTION: &str = "list a set's elements";
        let mut elems = Vec::new();
        self.dump(Dump::Elements(set), table, |msg| {
            ffi::parse_timed_elems(msg, &mut elems).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })
        })?;
        Ok(elems.into_iter().map(|e| e.key).collect())
    }

    /// The elements to carry into a rebuild of `ruleset.table`: for each
    /// run-time set `ruleset` has that the installed table has too (a
    /// run-time set of the same family), its elements with the time they
    /// have left as their timeout. Elements about to expire are left out.
    pub(crate) fn runtime_carry(&mut self, ruleset: &Ruleset) -> Result<Vec<(String, Vec<WireElement>)>> {
        let table = ruleset.table.as_str();
        let mut carried = Vec::new();
        for set in &ruleset.sets {
            let SetElements::Runtime(wanted) = &set.elements else {
                continue;
            };
            match self.runtime_set(table, &set.name) {
                Ok(family) if family == wanted.family => {}
                Ok(_) | Err(Error::NoSet { .. } | Error::NotRuntimeSet { .. }) => continue,
                Err(other) => return Err(other),
            }
            let mut elems: Vec<TimedElem> = Vec::new();
            self.dump(Dump::Elements(&set.name), table, |msg| {
                ffi::parse_timed_elems(msg, &mut elems).map_err(|detail| Error::Protocol {
                    action: "read a set's elements to keep them",
                    detail,
                })
            })?;
            let keep: Vec<WireElement> = elems
                .into_iter()
                .filter(|e| e.expires_ms.is_none_or(|ms| ms > 0))
                .map(|e| (e.key, e.expires_ms))
                .collect();
            if !keep.is_empty() {
                carried.push((set.name.clone(), keep));
            }
        }
        Ok(carried)
    }

    /// The table's own attributes, `None` if there is no such table.
    pub(crate) fn table_info(&mut self, table: &str) -> Result<Option<ffi::TableInfo>> {
        const ACTION: &str = "read the table";
        let seq = self.take_seqs(1);
        let msg = self.writer.get_table(seq, table);
        let mut info = None;
        match self.request(ACTION, &msg, seq, |reply| {
            info = Some(ffi::parse_table(reply).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })?);
            Ok(())
        })? {
            RequestOutcome::Refused(libc::ENOENT) => Ok(None),
            RequestOutcome::Refused(errno) => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
            RequestOutcome::Done { .. } => Ok(info),
        }
    }

    /// Set `name` of table `table`, `None` if there is none (or no table).
    fn get_set(&mut self, table: &str, name: &str) -> Result<Option<SetSpec>> {
        const ACTION: &str = "read a set";
        let seq = self.take_seqs(1);
        let msg = self.writer.get_set(seq, table, name);
        let mut spec = None;
        match self.request(ACTION, &msg, seq, |reply| {
            spec = Some(ffi::parse_set(reply).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })?);
            Ok(())
        })? {
            RequestOutcome::Refused(libc::ENOENT) => Ok(None),
            RequestOutcome::Refused(errno) => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
            RequestOutcome::Done { .. } => Ok(spec),
        }
    }
}

/// Pushes the element messages of `op` on run-time set `set` (with
/// [`ElementOp::Delete`] and no elements: a flush).
pub(crate) fn push_runtime_elements(
    writer: &mut ffi::MsgWriter,
    batch: &mut Batch,
    table: &str,
    set: &str,
    op: ElementOp,
    elements: &[WireElement],
) {
    let verb = match op {
        ElementOp::Add => "adding",
        ElementOp::Delete | ElementOp::Destroy => "deleting",
    };
    if elements.is_empty() {
        let seq = batch.next_seq();
        let object = Object::Removal(format!("emptying set `{set}`"));
        batch.push(seq, writer.runtime_elems(seq, table, set, op, &[]), object);
    }
    for chunk in elements.chunks(ffi::ELEMS_PER_MSG) {
        let seq = batch.next_seq();
        let count = chunk.len();
        let object = Object::Removal(format!(
            "{verb} {count} address{} in set `{set}`",
            if count == 1 { "" } else { "es" }
        ));
        batch.push(seq, writer.runtime_elems(seq, table, set, op, chunk), object);
    }
}

/// The entries grouped by set, in the order first named, as message elements.
fn by_set(entries: &[RuntimeEntry], with_timeouts: bool) -> Vec<(String, Vec<WireElement>)> {
    let mut out: Vec<(String, Vec<WireElement>)> = Vec::new();
    for entry in entries {
        let key = match entry.addr {
            IpAddr::V4(a) => Key::from_slice(&a.octets()),
            IpAddr::V6(a) => Key::from_slice(&a.octets()),
        };
        // At least a millisecond: a zero timeout means the set's default.
        let timeout = entry
            .timeout
            .filter(|_| with_timeouts)
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        match out.iter_mut().find(|(set, _)| *set == entry.set) {
            Some((_, elements)) => elements.push((key, timeout)),
            None => out.push((entry.set.clone(), vec![(key, timeout)])),
        }
    }
    out
}

/// The address a key of `family` holds, if it is one.
fn key_addr(family: Family, key: &[u8]) -> Option<IpAddr> {
    match family {
        Family::Ipv4 => <[u8; 4]>::try_from(key)
            .ok()
            .map(|k| IpAddr::V4(Ipv4Addr::from(k))),
        Family::Ipv6 => <[u8; 16]>::try_from(key)
            .ok()
            .map(|k| IpAddr::V6(Ipv6Addr::from(k))),
    }
}

fn other(family: Family) -> Family {
    match family {
        Family::Ipv4 => Family::Ipv6,
        Family::Ipv6 => Family::Ipv4,
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}
