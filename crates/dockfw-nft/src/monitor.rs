//! nf_tables notifications: who changed the ruleset, and what.
//!
//! A [`Monitor`] subscribes to the netlink group `NFNLGRP_NFTABLES` in one
//! network namespace. nf_tables sends, for each committed transaction, one
//! notification per object added or deleted (in commit order) and then a
//! `NEWGEN` message with the new generation id and the committing process;
//! the monitor groups them into one [`Event::Commit`]. If the socket's
//! receive buffer overflows (`ENOBUFS`), notifications were lost and the
//! monitor says so with [`Event::Overflow`]: the caller must read the state
//! it cares about again.
//!
//! Our own commits arrive too: [`Transaction::committed_generation`] is the
//! generation a transaction of [`Nft::apply`](crate::Nft::apply) committed
//! as, so "was that commit ours" is a comparison of generations (the pid is
//! not enough: nf_tables records the committing *thread*).
//!
//! ```no_run
//! use dockfw_nft::monitor::{Event, NfFamily, Monitor};
//! use std::time::Duration;
//! # fn main() -> Result<(), dockfw_nft::Error> {
//! let mut monitor = Monitor::open()?;
//! loop {
//!     match monitor.next(Some(Duration::from_secs(1)))? {
//!         Some(Event::Commit(commit)) if commit.touches(NfFamily::Inet, "dockfw") => {
//!             println!("generation {} by {:?} (pid {:?})", commit.generation, commit.process, commit.pid);
//!         }
//!         Some(Event::Overflow) => println!("notifications lost: read everything again"),
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use crate::netlink::{RECV_BYTES, Reply, Socket};
use crate::{ApplyReport, Error, Result, Transaction};
use netlink_packet_core::{NlaBuffer, NlasIterator, parse_string, parse_u32_be};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `NFNLGRP_NFTABLES`.
const NFNLGRP_NFTABLES: u32 = 7;
/// `NFNL_SUBSYS_NFTABLES`, the high byte of the message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Size of `struct nlmsghdr` and `struct nfgenmsg`.
const NLMSG_HDR: usize = 16;
const NFGENMSG: usize = 4;

// Message types (`enum nf_tables_msg_types`).
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_DELOBJ: u16 = 20;
const NFT_MSG_NEWFLOWTABLE: u16 = 22;
const NFT_MSG_DELFLOWTABLE: u16 = 24;

// Attributes. Every object message names its table with attribute 1; the
// object's own name (or, for rules and elements, its chain or set) is
// attribute 2, except for chains (`NFTA_CHAIN_NAME` is 3).
const NFTA_TABLE: u16 = 1;
const NFTA_NAME: u16 = 2;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_SET_ELEM_PAD: u16 = 8;
use crate::ffi::attr::{
    NFTA_DATA_VALUE, NFTA_LIST_ELEM, NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS,
};
const NFTA_GEN_ID: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

/// Default receive buffer: large enough for the notifications of a commit
/// that loads a 100,000-element set (one message of about 80 bytes per
/// element), so overflow stays the exception.
pub const DEFAULT_RECEIVE_BUFFER: usize = 32 << 20;

/// The generation a transaction committed as: nf_tables moves to the next
/// generation on each commit, and the batch carried the one it was based on.
impl Transaction {
    /// The ruleset generation this transaction committed as, which the
    /// `NEWGEN` notification of the commit carries ([`Commit::generation`]).
    pub fn committed_generation(&self) -> u32 {
        crate::transact::next_generation(self.generation)
    }
}

impl ApplyReport {
    /// The generations the committed transactions moved nf_tables to, in
    /// order (none when nothing changed): the [`Commit`]s that were ours.
    pub fn committed_generations(&self) -> impl Iterator<Item = u32> + '_ {
        self.transactions.iter().map(Transaction::committed_generation)
    }
}

/// An nf_tables address family, as in `nft`'s syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NfFamily {
    /// `inet` (IPv4 and IPv6; dockfw's own table).
    Inet,
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`.
    Netdev,
    /// Any other `NFPROTO_*` value.
    Other(u8),
}

impl From<u8> for NfFamily {
    fn from(nfproto: u8) -> Self {
        match nfproto {
            1 => Self::Inet,
            2 => Self::Ip,
            3 => Self::Arp,
            5 => Self::Netdev,
            7 => Self::Bridge,
            10 => Self::Ip6,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for NfFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet => f.write_str("inet"),
            Self::Ip => f.write_str("ip"),
            Self::Ip6 => f.write_str("ip6"),
            Self::Arp => f.write_str("arp"),
            Self::Bridge => f.write_str("bridge"),
            Self::Netdev => f.write_str("netdev"),
            Self::Other(n) => write!(f, "family {n}"),
        }
    }
}

/// What kind of object a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A table (also sent when an existing table's flags change, e.g.
    /// `flags dormant`).
    Table,
    /// A chain.
    Chain,
    /// A rule; [`ObjectChange::name`] is its chain.
    Rule,
    /// A set (or map, or meter).
    Set,
    /// Set elements; [`ObjectChange::name`] is their set. One change per
    /// element.
    Element,
    /// A stateful object (counter, quota, limit, ...).
    Object,
    /// A flowtable.
    Flowtable,
    /// A message type this monitor does not know (`NFT_MSG_*` value): the
    /// caller should assume anything may have changed.
    Unknown(u8),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table => f.write_str("table"),
            Self::Chain => f.write_str("chain"),
            Self::Rule => f.write_str("rule"),
            Self::Set => f.write_str("set"),
            Self::Element => f.write_str("element"),
            Self::Object => f.write_str("object"),
            Self::Flowtable => f.write_str("flowtable"),
            Self::Unknown(n) => write!(f, "nf_tables message {n}"),
        }
    }
}

/// Whether an object was added or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `NEW*`: created, or (tables, chains, sets, rules replaced in place)
    /// updated.
    Added,
    /// `DEL*` (also `flush`, `destroy`).
    Deleted,
}

/// One object added or deleted in a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectChange {
    /// What kind of object.
    pub kind: Kind,
    /// Added or deleted.
    pub action: Action,
    /// The family of its table.
    pub family: NfFamily,
    /// Its table (empty for [`Kind::Unknown`] if the message named none).
    pub table: String,
    /// The chain, set, object or flowtable's own name; for rules their
    /// chain, for elements their set; `None` for tables.
    pub name: Option<String>,
    /// The rule's handle, for rules.
    pub handle: Option<u64>,
    /// For elements: the element, when the notification held exactly one
    /// that this monitor could read.
    pub element: Option<Element>,
}

/// A set element as a notification reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Element {
    /// Its key, in the set's byte order.
    pub key: Vec<u8>,
    /// `NFTA_SET_ELEM_FLAGS` (an interval end: `NFT_SET_ELEM_INTERVAL_END`).
    pub flags: u32,
    /// Whether it holds nothing but its key and flags (no data, timeout,
    /// userdata, expressions, ...), as every element dockfw writes.
    pub plain: bool,
}

impl fmt::Display for ObjectChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Added => "add",
            Action::Deleted => "delete",
        };
        write!(f, "{action} {} {} {}", self.kind, self.family, self.table)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(handle) = self.handle {
            write!(f, " handle {handle}")?;
        }
        Ok(())
    }
}

/// One committed nf_tables transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// The generation nf_tables moved to with this commit.
    pub generation: u32,
    /// The id of the committing task as the kernel recorded it (the thread
    /// id, which is the process id for single-threaded programs like `nft`).
    pub pid: Option<u32>,
    /// The committing task's name (`comm`, at most 15 bytes: `nft`,
    /// `firewalld`, `iptables-nft-re`, or a thread's name).
    pub process: Option<String>,
    /// What it added and deleted, in commit order.
    pub changes: Vec<ObjectChange>,
    /// `false` if notifications were lost ([`Event::Overflow`]) since the
    /// previous commit event, so `changes` may lack some. (Only the first
    /// commit reported after a loss is marked: if the loss swallowed a
    /// `NEWGEN` too, that is a later, complete transaction, but nothing in
    /// the stream tells.)
    pub complete: bool,
}

impl Commit {
    /// Whether the commit changed anything in table `table` of `family`.
    /// Conservative: `true` also when it holds a change this monitor could
    /// not understand, or lost notifications.
    pub fn touches(&self, family: NfFamily, table: &str) -> bool {
        !self.complete
            || self
                .changes
                .iter()
                .any(|c| matches!(c.kind, Kind::Unknown(_)) || (c.family == family && c.table == table))
    }

    /// Like [`Commit::touches`], not counting elements added to or deleted
    /// from the sets `runtime` names: sets whose elements belong to run
    /// time (a policy's `dynamic` sets, filled by `set add`, fail2ban,
    /// CrowdSec), whose element changes are nobody's tampering.
    pub fn touches_beyond_elements_of(
        &self,
        family: NfFamily,
        table: &str,
        runtime: impl Fn(&str) -> bool,
    ) -> bool {
        !self.complete
            || self.changes.iter().any(|c| {
                matches!(c.kind, Kind::Unknown(_))
                    || (c.family == family
                        && c.table == table
                        && !(c.kind == Kind::Element && c.name.as_deref().is_some_and(&runtime)))
            })
    }

    /// The changes made to table `table` of `family`.
    pub fn changes_to<'a>(
        &'a self,
        family: NfFamily,
        table: &'a str,
    ) -> impl Iterator<Item = &'a ObjectChange> {
        self.changes
            .iter()
            .filter(move |c| c.family == family && c.table == table)
    }
}

/// What a [`Monitor`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A transaction was committed.
    Commit(Commit),
    /// The receive buffer overflowed and notifications were lost: whatever
    /// the caller keeps from them must be read again from the kernel.
    Overflow,
}

/// Wakes a [`Monitor`] waiting in [`Monitor::next`] from another thread.
#[derive(Debug, Clone)]
pub struct Waker {
    eventfd: Arc<EventFd>,
}

impl Waker {
    /// Makes the monitor's current (or next) wait return `Ok(None)` at once.
    pub fn wake(&self) {
        // A full counter (EAGAIN) already means "woken".
        let _ = self.eventfd.write(1);
    }
}

/// A subscription to nf_tables notifications in one network namespace.
#[derive(Debug)]
pub struct Monitor {
    socket: Socket,
    eventfd: Arc<EventFd>,
    recv: Vec<u32>,
    /// Changes of the transaction whose `NEWGEN` has not arrived yet, with
    /// the netlink port of the socket that committed them (`nlmsg_pid`).
    pending: Vec<(u32, ObjectChange)>,
    /// Whether notifications were lost since the last `NEWGEN`.
    lost: bool,
    ready: VecDeque<Event>,
}

impl Monitor {
    /// Subscribes in the caller's network namespace.
    pub fn open() -> Result<Self> {
        Self::with_socket(Socket::open())
    }

    /// Subscribes in the network namespace at `path` (e.g. `/run/netns/NAME`
    /// or `/proc/PID/ns/net`); the caller's threads stay where they are.
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_socket(Socket::open_in_netns(path.as_ref()))
    }

    fn with_socket(socket: io::Result<Socket>) -> Result<Self> {
        let socket = socket.map_err(|e| Error::io("open a netfilter netlink socket", e))?;
        socket
            .join_group(NFNLGRP_NFTABLES)
            .map_err(|e| Error::io("subscribe to nf_tables notifications", e))?;
        let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::io("create an eventfd", e.into()))?;
        let eventfd = Arc::new(eventfd);
        let monitor = Self {
            socket,
            eventfd,
            recv: vec![0; RECV_BYTES / 4],
            pending: Vec::new(),
            lost: false,
            ready: VecDeque::new(),
        };
        monitor.set_receive_buffer(DEFAULT_RECEIVE_BUFFER)?;
        Ok(monitor)
    }

    /// Sets the socket's receive buffer (forced past `net.core.rmem_max` when
    /// privileged). The default is [`DEFAULT_RECEIVE_BUFFER`].
    pub fn set_receive_buffer(&self, bytes: usize) -> Result<()> {
        self.socket
            .grow_buffers(64 << 10, bytes)
            .map_err(|e| Error::io("size the notification socket's receive buffer", e))
    }

    /// Stops receiving notifications until [`Monitor::resume`], e.g. while
    /// the caller commits a large transaction itself: nf_tables builds one
    /// notification per set element for each listening socket, which made
    /// committing 100,000 intervals about four times slower (and overflowed
    /// the buffer). Commits made meanwhile by anyone are not reported: after
    /// resuming, compare the generation with the one last known (a
    /// [`Commit`] right after resuming that does not follow it says so too).
    pub fn pause(&mut self) -> Result<()> {
        self.socket
            .leave_group(NFNLGRP_NFTABLES)
            .map_err(|e| Error::io("pause nf_tables notifications", e))
    }

    /// Receives notifications again after [`Monitor::pause`].
    pub fn resume(&mut self) -> Result<()> {
        self.socket
            .join_group(NFNLGRP_NFTABLES)
            .map_err(|e| Error::io("resume nf_tables notifications", e))
    }

    /// A handle that wakes this monitor's wait from another thread.
    pub fn waker(&self) -> Waker {
        Waker {
            eventfd: Arc::clone(&self.eventfd),
        }
    }

    /// The next event, waiting at most `timeout` (`None`: without limit).
    /// `Ok(None)`: the time ran out or a [`Waker`] woke us.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.receive()? {
                continue;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !self.wait(left)? {
                return Ok(None);
            }
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Event>> {
        self.next(Some(Duration::ZERO))
    }

    /// Says that the notifications lost in the last [`Event::Overflow`]
    /// were all of transactions the caller already accounts for: it
    /// checked, on handling that event, that nf_tables is still at a
    /// generation it knows the state of (e.g. with
    /// [`Nft::note_lost_notifications`](crate::Nft::note_lost_notifications)),
    /// so every later transaction commits after the loss. The next
    /// [`Commit`] is then reported complete, and what the loss left of the
    /// earlier transaction is not counted as its changes. Only correct if
    /// no [`Event::Commit`] was reported between the overflow and the check.
    pub fn loss_accounted_for(&mut self) {
        self.lost = false;
    }

    /// Reads one queued datagram, if any, into `ready`/`pending`.
    fn receive(&mut self) -> Result<bool> {
        const ACTION: &str = "read nf_tables notifications";
        let buf = match self.socket.recv(&mut self.recv, false) {
            Ok(Some(buf)) => buf,
            Ok(None) => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // What is pending may lack messages, and so may the rest of
                // the transaction in flight.
                self.pending.clear();
                self.lost = true;
                self.ready.push_back(Event::Overflow);
                return Ok(true);
            }
            Err(e) => return Err(Error::io(ACTION, e)),
        };
        let replies = crate::netlink::parse_replies(buf).map_err(|e| Error::Protocol {
            action: ACTION,
            detail: e.to_string(),
        })?;
        for reply in replies {
            let Reply::Data { msg, .. } = reply else {
                continue;
            };
            match parse_notification(msg) {
                Some(Notification::Change(change)) => self.pending.push((sender(msg), change)),
                Some(Notification::Generation { id, pid, process }) => {
                    // nf_tables commits one transaction at a time and sends
                    // all its notifications before the next: changes from
                    // another socket are what a loss left of an earlier
                    // transaction whose NEWGEN was lost.
                    let port = sender(msg);
                    let changes = std::mem::take(&mut self.pending)
                        .into_iter()
                        .filter(|(from, _)| *from == port)
                        .map(|(_, change)| change)
                        .collect();
                    self.ready.push_back(Event::Commit(Commit {
                        generation: id,
                        pid,
                        process,
                        changes,
                        complete: !std::mem::replace(&mut self.lost, false),
                    }));
                }
                None => {}
            }
        }
        Ok(true)
    }

    /// Waits until the socket is readable (`true`), or the time runs out or
    /// the waker fires (`false`).
    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let timeout = timeout.map_or(PollTimeout::NONE, |t| {
            // Round up so a short timeout does not become a busy loop.
            PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = [
            PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.eventfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(true),
            Err(e) => return Err(Error::io("wait for nf_tables notifications", e.into())),
        }
        let woken = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        if woken(&fds[1]) {
            // Non-blocking: resets the counter, or finds it reset already.
            let _ = self.eventfd.read();
            return Ok(false);
        }
        // Readable, or an error is pending (ENOBUFS), which `receive` reports.
        Ok(woken(&fds[0]))
    }
}

/// The socket, for a poll loop over several sources: when it is readable,
/// call [`Monitor::try_next`] until it returns `None`.
impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

enum Notification {
    Change(ObjectChange),
    Generation {
        id: u32,
        pid: Option<u32>,
        process: Option<String>,
    },
}

/// Reads one notification; `None` for messages of other subsystems.
fn parse_notification(msg: &[u8]) -> Option<Notification> {
    let ty = u16::from_ne_bytes(msg.get(4..6)?.try_into().ok()?);
    if ty >> 8 != NFNL_SUBSYS_NFTABLES {
        return None;
    }
    let ty = ty & 0xff;
    let family = NfFamily::from(*msg.get(NLMSG_HDR)?);
    let attrs = msg.get(NLMSG_HDR + NFGENMSG..).unwrap_or_default();
    let attr = |kind: u16| -> Option<&[u8]> {
        NlasIterator::new(attrs)
            .map_while(|nla: Result<NlaBuffer<&[u8]>, _>| nla.ok())
            .find(|nla| nla.kind() == kind)
            .and_then(|nla| {
                let len = usize::from(nla.length());
                nla.into_inner().get(4..len)
            })
    };
    let text = |kind: u16| attr(kind).and_then(|v| parse_string(v).ok());
    if ty == NFT_MSG_NEWGEN {
        return match attr(NFTA_GEN_ID).and_then(|v| parse_u32_be(v).ok()) {
            Some(id) => Some(Notification::Generation {
                id,
                pid: attr(NFTA_GEN_PROC_PID).and_then(|v| parse_u32_be(v).ok()),
                process: text(NFTA_GEN_PROC_NAME),
            }),
            // A NEWGEN without a generation is not understood: report it as
            // an unknown change, which makes `touches` conservative.
            None => Some(Notification::Change(unknown(ty, family))),
        };
    }
    let (kind, action) = match ty {
        NFT_MSG_NEWTABLE => (Kind::Table, Action::Added),
        NFT_MSG_DELTABLE => (Kind::Table, Action::Deleted),
        NFT_MSG_NEWCHAIN => (Kind::Chain, Action::Added),
        NFT_MSG_DELCHAIN => (Kind::Chain, Action::Deleted),
        NFT_MSG_NEWRULE => (Kind::Rule, Action::Added),
        NFT_MSG_DELRULE => (Kind::Rule, Action::Deleted),
        NFT_MSG_NEWSET => (Kind::Set, Action::Added),
        NFT_MSG_DELSET => (Kind::Set, Action::Deleted),
        NFT_MSG_NEWSETELEM => (Kind::Element, Action::Added),
        NFT_MSG_DELSETELEM => (Kind::Element, Action::Deleted),
        NFT_MSG_NEWOBJ => (Kind::Object, Action::Added),
        NFT_MSG_DELOBJ => (Kind::Object, Action::Deleted),
        NFT_MSG_NEWFLOWTABLE => (Kind::Flowtable, Action::Added),
        NFT_MSG_DELFLOWTABLE => (Kind::Flowtable, Action::Deleted),
        _ => return Some(Notification::Change(unknown(ty, family))),
    };
    let table = text(NFTA_TABLE);
    let name = match kind {
        Kind::Table => None,
        Kind::Chain => text(NFTA_CHAIN_NAME),
        _ => text(NFTA_NAME),
    };
    let handle = match kind {
        Kind::Rule => attr(NFTA_RULE_HANDLE).and_then(|v| Some(u64::from_be_bytes(v.try_into().ok()?))),
        _ => None,
    };
    let element = match kind {
        Kind::Element => attr(NFTA_SET_ELEM_LIST_ELEMENTS).and_then(only_element),
        _ => None,
    };
    // A message that does not name its table is not understood.
    let Some(table) = table else {
        return Some(Notification::Change(unknown(ty, family)));
    };
    Some(Notification::Change(ObjectChange {
        kind,
        action,
        family,
        table,
        name,
        handle,
        element,
    }))
}

/// Walks the attributes in `bytes`, as `(kind, value)`.
fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(bytes)
        .map_while(|nla: Result<NlaBuffer<&[u8]>, _>| nla.ok())
        .filter_map(|nla| {
            let (kind, len) = (nla.kind(), usize::from(nla.length()));
            Some((kind, nla.into_inner().get(4..len)?))
        })
}

/// The one element of an `NFTA_SET_ELEM_LIST_ELEMENTS` list; `None` if the
/// list holds more than one or an element cannot be read.
fn only_element(list: &[u8]) -> Option<Element> {
    let mut elements = attributes(list).filter(|(kind, _)| *kind == NFTA_LIST_ELEM);
    let (_, element) = elements.next()?;
    if elements.next().is_some() {
        return None;
    }
    let (mut key, mut flags, mut plain) = (None, 0, true);
    for (kind, value) in attributes(element) {
        match kind {
            NFTA_SET_ELEM_KEY => {
                key = attributes(value)
                    .find(|(kind, _)| *kind == NFTA_DATA_VALUE)
                    .map(|(_, v)| v.to_vec());
            }
            NFTA_SET_ELEM_FLAGS => flags = parse_u32_be(value).ok()?,
            NFTA_SET_ELEM_PAD => {}
            _ => plain = false,
        }
    }
    Some(Element {
        key: key?,
        flags,
        plain,
    })
}

/// The netlink port of the socket whose transaction a notification reports
/// (`nlmsg_pid`).
fn sender(msg: &[u8]) -> u32 {
    msg.get(12..16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn unknown(ty: u16, family: NfFamily) -> ObjectChange {
    ObjectChange {
        kind: Kind::Unknown(ty as u8),
        action: Action::Added,
        family,
        table: String::new(),
        name: None,
        handle: None,
        element: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as the kernel sends it: header, nfgenmsg, attributes.
    fn message(ty: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u32> {
        let mut bytes = vec![0u8; NLMSG_HDR];
        bytes[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | ty).to_ne_bytes());
        bytes.extend_from_slice(&[family, 0, 0, 0]);
        for (kind, value) in attrs {
            let len = 4 + value.len();
            bytes.extend_from_slice(&(len as u16).to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(value);
            bytes.resize(bytes.len().next_multiple_of(4), 0);
        }
        let len = bytes.len() as u32;
        bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        bytes
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().copied().flat_map(u32::to_ne_bytes).collect()
    }

    #[test]
    fn parses_rule_and_generation() {
        let rule = message(
            NFT_MSG_DELRULE,
            1,
            &[(1, b"dockfw\0"), (2, b"forward\0"), (3, &7u64.to_be_bytes())],
        );
        let Some(Notification::Change(change)) = parse_notification(&bytes(&rule)) else {
            panic!("not a change");
        };
        assert_eq!(change.kind, Kind::Rule);
        assert_eq!(change.action, Action::Deleted);
        assert_eq!(change.family, NfFamily::Inet);
        assert_eq!(change.table, "dockfw");
        assert_eq!(change.name.as_deref(), Some("forward"));
        assert_eq!(change.handle, Some(7));
        assert_eq!(change.to_string(), "delete rule inet dockfw forward handle 7");

        let generation = message(
            NFT_MSG_NEWGEN,
            0,
            &[
                (1, &42u32.to_be_bytes()),
                (2, &1234u32.to_be_bytes()),
                (3, b"nft\0"),
            ],
        );
        let Some(Notification::Generation { id, pid, process }) = parse_notification(&bytes(&generation))
        else {
            panic!("not a generation");
        };
        assert_eq!((id, pid, process.as_deref()), (42, Some(1234), Some("nft")));
    }

    #[test]
    fn unknown_messages_touch_every_table() {
        let odd = message(99, 1, &[]);
        let Some(Notification::Change(change)) = parse_notification(&bytes(&odd)) else {
            panic!("not a change");
        };
        assert_eq!(change.kind, Kind::Unknown(99));
        let commit = Commit {
            generation: 1,
            pid: None,
            process: None,
            changes: vec![change],
            complete: true,
        };
        assert!(commit.touches(NfFamily::Inet, "dockfw"));
    }
}
