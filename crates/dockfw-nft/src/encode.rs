//! Ruleset -> nf_tables batches.
//!
//! [`replace`] builds the batch that replaces a whole table (add table, a
//! no-op if it exists, delete table, add table, then sets and their
//! elements, chains, rules); [`ops`] builds one step of an in-place update
//! planned by [`crate::plan`]. Each message is recorded with the object it
//! creates or removes so that a kernel error, which names only a sequence
//! number (and maybe a byte offset), can be reported as "rule 3 of chain
//! policy, match 2".

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::ffi::{self, ELEMS_PER_MSG, MsgWriter, SetSpec};
use crate::op::Op;
use dockfw_core::interval::{Interval, Point};
use dockfw_core::ruleset::{
    BaseHook, CtState, Family, Hook, IfName, Match, Meter, PortMatch, Proto, RejectWith, Rule, Ruleset,
    RuntimeSet, SetElements, Statement, Verdict,
};
use std::collections::HashSet;
use std::ops::Range;

/// nft's datatype ids, so `nft list` prints our sets readably.
pub(crate) const TYPE_IPV4_ADDR: u32 = 7;
pub(crate) const TYPE_IPV6_ADDR: u32 = 8;
pub(crate) const TYPE_INET_SERVICE: u32 = 13;
/// `NFTNL_UDATA_SET_KEYBYTEORDER` = nft's `BYTEORDER_BIG_ENDIAN`, as nft writes it.
pub(crate) const SET_UDATA_KEY_BIG_ENDIAN: [u8; 6] = {
    let v = 2u32.to_ne_bytes();
    [0, 4, v[0], v[1], v[2], v[3]]
};
/// `NFT_CONNLIMIT_F_INV` (not in libc).
pub(crate) const CONNLIMIT_F_INV: u32 = 1;
/// `IPS_DST_NAT`.
pub(crate) const IPS_DST_NAT: u32 = 0x20;
/// `NF_CT_STATE_BIT(IP_CT_NEW)`.
pub(crate) const CT_STATE_NEW: u32 = 0x08;
/// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)`.
pub(crate) const CT_STATE_ESTABLISHED_RELATED: u32 = 0x02 | 0x04;
/// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED)`.
pub(crate) const CT_STATE_ESTABLISHED: u32 = 0x02;
/// `NF_CT_STATE_INVALID_BIT`.
pub(crate) const CT_STATE_INVALID: u32 = 0x01;
/// `NF_CT_STATE_UNTRACKED_BIT`.
pub(crate) const CT_STATE_UNTRACKED: u32 = 0x40;
/// The kernel's limit on expressions per rule (`NFT_RULE_MAXEXPRS`).
const MAX_EXPRS: usize = 128;
/// Longest object name (`NFT_NAME_MAXLEN` less the NUL).
const MAX_NAME: usize = 255;
/// Longest rule comment (`NFTNL_UDATA_COMMENT_MAXLEN` less the NUL).
const MAX_COMMENT: usize = 127;
/// Longest log prefix (`NF_LOG_PREFIXLEN` less the NUL).
const MAX_LOG_PREFIX: usize = 127;
/// Longest interface name (`IFNAMSIZ` less the NUL).
const MAX_IFNAME: usize = 15;

/// What part of a rule an expression comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Match(usize),
    Statement(usize),
    Verdict,
}

/// The object a batch message creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Object {
    BatchBegin,
    BatchEnd,
    Table(&'static str),
    /// A set created, described (`set `x``, or a staging copy).
    Set(String),
    /// Elements added to a set (described as for `Set`).
    Elements {
        set: String,
        first: usize,
        count: usize,
    },
    Chain(String),
    /// Something deleted or flushed, described in full.
    Removal(String),
    Rule {
        chain: String,
        index: usize,
        comment: String,
        /// Byte range of each expression in the message, with its origin.
        exprs: Vec<(Range<usize>, Part, &'static str)>,
    },
}

/// One message of the batch.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub seq: u32,
    pub range: Range<usize>,
    pub object: Object,
}

/// A complete batch and what each message is.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub msgs: Vec<Msg>,
}

/// Byte offset of the generation id in the batch-begin message.
const GENID_AT: usize = 24;

impl Batch {
    /// Starts a batch whose begin message carries `NFNL_BATCH_GENID`
    /// (patched per attempt with [`Batch::set_genid`]).
    pub(crate) fn new(first_seq: u32) -> Self {
        let mut batch = Self {
            bytes: Vec::new(),
            msgs: Vec::new(),
        };
        let mut begin = Vec::with_capacity(28);
        push_header(&mut begin, 28, libc::NFNL_MSG_BATCH_BEGIN as u16, first_seq);
        begin.extend_from_slice(&[libc::AF_UNSPEC as u8, libc::NFNETLINK_V0 as u8]);
        begin.extend_from_slice(&(libc::NFNL_SUBSYS_NFTABLES as u16).to_be_bytes());
        begin.extend_from_slice(&8u16.to_ne_bytes());
        begin.extend_from_slice(&(libc::NFNL_BATCH_GENID as u16).to_ne_bytes());
        begin.extend_from_slice(&0u32.to_be_bytes());
        batch.push(first_seq, &begin, Object::BatchBegin);
        batch
    }

    pub(crate) fn next_seq(&self) -> u32 {
        self.msgs.last().map_or(0, |m| m.seq.wrapping_add(1))
    }

    pub(crate) fn push(&mut self, seq: u32, msg: &[u8], object: Object) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(msg);
        self.msgs.push(Msg {
            seq,
            range: start..self.bytes.len(),
            object,
        });
    }

    /// Appends the batch-end message.
    pub(crate) fn finish(&mut self) {
        let seq = self.next_seq();
        let mut end = Vec::with_capacity(20);
        push_header(&mut end, 20, libc::NFNL_MSG_BATCH_END as u16, seq);
        end.extend_from_slice(&[libc::AF_UNSPEC as u8, libc::NFNETLINK_V0 as u8]);
        end.extend_from_slice(&(libc::NFNL_SUBSYS_NFTABLES as u16).to_be_bytes());
        self.push(seq, &end, Object::BatchEnd);
    }

    /// Makes the kernel refuse the batch (`ERESTART`) unless the ruleset
    /// generation is still `genid`.
    pub(crate) fn set_genid(&mut self, genid: u32) {
        self.bytes[GENID_AT..GENID_AT + 4].copy_from_slice(&genid.to_be_bytes());
    }

    /// The message with sequence number `seq`.
    pub(crate) fn msg(&self, seq: u32) -> Option<&Msg> {
        let first = self.msgs.first()?.seq;
        self.msgs.get(seq.wrapping_sub(first) as usize)
    }
}

fn push_header(buf: &mut Vec<u8>, len: u32, ty: u16, seq: u32) {
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
}

fn check_name(kind: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() && !matches!(kind, "comment" | "log prefix" | "interface") {
        return Err(Error::Invalid(format!("{kind} name is empty")));
    }
    if name.contains('\0') {
        return Err(Error::Invalid(format!("{kind} {name:?} contains a NUL byte")));
    }
    if name.len() > max {
        return Err(Error::Invalid(format!(
            "{kind} {name:?} is {} bytes long; nf_tables allows {max}",
            name.len()
        )));
    }
    Ok(())
}

/// Checks everything about `ruleset` that can be checked without the
/// kernel: names, lengths, duplicate names, and every rule's encoding.
pub(crate) fn check(ruleset: &Ruleset) -> Result<()> {
    check_name("table", &ruleset.table, MAX_NAME)?;
    if !ruleset.has_runtime_sets_first() {
        return Err(Error::Invalid(
            "sets whose elements belong to run time must come first, ordered by name \
             (Ruleset::runtime_sets_first)"
                .into(),
        ));
    }
    let mut names = HashSet::new();
    for set in &ruleset.sets {
        check_name("set", &set.name, MAX_NAME)?;
        if !names.insert(set.name.as_str()) {
            return Err(Error::Invalid(format!("two sets are called {:?}", set.name)));
        }
    }
    names.clear();
    for chain in &ruleset.chains {
        check_name("chain", &chain.name, MAX_NAME)?;
        if !names.insert(chain.name.as_str()) {
            return Err(Error::Invalid(format!("two chains are called {:?}", chain.name)));
        }
        for rule in &chain.rules {
            rule_exprs(rule)?;
            comment_udata(&rule.comment)?;
        }
    }
    Ok(())
}

/// Builds the batch that replaces table `ruleset.table` with `ruleset`,
/// putting `carried` elements back into its run-time sets.
pub(crate) fn replace(
    ruleset: &Ruleset,
    carried: &[(String, Vec<crate::runtime::WireElement>)],
    first_seq: u32,
    writer: &mut MsgWriter,
) -> Result<Batch> {
    check(ruleset)?;
    let table = ruleset.table.as_str();
    let mut batch = Batch::new(first_seq);
    for (step, add, flags) in [
        (
            "create table (if absent)",
            true,
            libc::NLM_F_CREATE | libc::NLM_F_ACK,
        ),
        ("delete old table", false, libc::NLM_F_ACK),
        (
            "create table",
            true,
            libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK,
        ),
    ] {
        let seq = batch.next_seq();
        batch.push(seq, writer.table(add, flags, seq, table), Object::Table(step));
    }
    for set in &ruleset.sets {
        push_set(&mut batch, writer, table, &set.name, &set.elements, None);
    }
    for (set, elements) in carried {
        crate::runtime::push_runtime_elements(writer, &mut batch, table, set, ffi::ElementOp::Add, elements);
    }
    for chain in &ruleset.chains {
        push_chain(&mut batch, writer, table, &chain.name, chain.hook);
    }
    for chain in &ruleset.chains {
        for (index, rule) in chain.rules.iter().enumerate() {
            push_rule(&mut batch, writer, table, &chain.name, index, rule, None)?;
        }
    }
    batch.finish();
    Ok(batch)
}

/// Builds the batch that would create table `ruleset.table` with
/// `ruleset`, without its batch-end message: nf_tables checks every
/// message of such a batch, answers each, and then aborts it, committing
/// nothing (as `nft --check` does).
pub(crate) fn validation(ruleset: &Ruleset, first_seq: u32, writer: &mut MsgWriter) -> Result<Batch> {
    check(ruleset)?;
    let table = ruleset.table.as_str();
    let mut batch = Batch::new(first_seq);
    let seq = batch.next_seq();
    let flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;
    batch.push(
        seq,
        writer.table(true, flags, seq, table),
        Object::Table("create table"),
    );
    for set in &ruleset.sets {
        push_set(&mut batch, writer, table, &set.name, &set.elements, None);
    }
    for chain in &ruleset.chains {
        push_chain(&mut batch, writer, table, &chain.name, chain.hook);
    }
    for chain in &ruleset.chains {
        for (index, rule) in chain.rules.iter().enumerate() {
            push_rule(&mut batch, writer, table, &chain.name, index, rule, None)?;
        }
    }
    Ok(batch)
}

/// Builds the batch of one planned step on table `table`.
pub(crate) fn ops(table: &str, ops: &[Op], first_seq: u32, writer: &mut MsgWriter) -> Result<Batch> {
    let mut batch = Batch::new(first_seq);
    for op in ops {
        let seq = batch.next_seq();
        match op {
            Op::CreateTable => {
                let flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;
                batch.push(
                    seq,
                    writer.table(true, flags, seq, table),
                    Object::Table("create table"),
                );
            }
            Op::CreateSet {
                name,
                elements,
                copy_of,
            } => push_set(&mut batch, writer, table, name, elements, copy_of.as_deref()),
            Op::UpdateSet {
                name,
                remove,
                add,
                copy_of,
                ..
            } => {
                let label = set_label(name, copy_of.as_deref());
                let removed = format!("{label}, intervals removed,");
                push_elements(&mut batch, writer, table, name, remove, true, &removed);
                push_elements(&mut batch, writer, table, name, add, false, &label);
            }
            Op::DeleteSet(name) => batch.push(
                seq,
                writer.set_delete(seq, table, name),
                Object::Removal(format!("deleting set `{name}`")),
            ),
            Op::CreateChain { name, hook } => push_chain(&mut batch, writer, table, name, *hook),
            Op::FlushChain(name) => batch.push(
                seq,
                writer.rule_delete(seq, table, name, None),
                Object::Removal(format!("flushing chain `{name}`")),
            ),
            Op::DeleteChain(name) => batch.push(
                seq,
                writer.chain_delete(seq, table, name),
                Object::Removal(format!("deleting chain `{name}`")),
            ),
            Op::DeleteRule {
                chain,
                handle,
                comment,
            } => batch.push(
                seq,
                writer.rule_delete(seq, table, chain, Some(*handle)),
                Object::Removal(format!(
                    "deleting rule \"{comment}\" (handle {handle}) from chain `{chain}`"
                )),
            ),
            Op::AddRule {
                chain,
                index,
                rule,
                before,
            } => push_rule(&mut batch, writer, table, chain, *index, rule, *before)?,
        }
    }
    batch.finish();
    Ok(batch)
}

fn set_label(name: &str, copy_of: Option<&str>) -> String {
    match copy_of {
        Some(of) => format!("set `{name}` (staging copy of set `{of}`)"),
        None => format!("set `{name}`"),
    }
}

/// `NEWSET` and the `NEWSETELEM`s filling it.
fn push_set(
    batch: &mut Batch,
    writer: &mut MsgWriter,
    table: &str,
    name: &str,
    elements: &SetElements,
    copy_of: Option<&str>,
) {
    let label = set_label(name, copy_of);
    // Set ids only need to be unique within the batch.
    let id = batch.msgs.len() as u32;
    let spec = set_spec(table, id, name, elements);
    let seq = batch.next_seq();
    batch.push(seq, writer.set(seq, &spec), Object::Set(label.clone()));
    push_elements(batch, writer, table, name, elements, false, &label);
}

/// `NEWSETELEM`s (or with `delete`, `DELSETELEM`s) of `elements`.
fn push_elements(
    batch: &mut Batch,
    writer: &mut MsgWriter,
    table: &str,
    name: &str,
    elements: &SetElements,
    delete: bool,
    label: &str,
) {
    let mut elems = interval_elements(elements);
    // About what an element takes in a message (a 4-byte key 16 bytes, an
    // interval end 8 more): growing the batch by doubling would copy and
    // touch it again and again.
    batch.bytes.reserve(elems.size_hint().0 * 24);
    let mut chunk = Vec::with_capacity(ELEMS_PER_MSG);
    let mut first = 0;
    loop {
        chunk.clear();
        chunk.extend(elems.by_ref().take(ELEMS_PER_MSG));
        if chunk.is_empty() {
            break;
        }
        let seq = batch.next_seq();
        let object = Object::Elements {
            set: label.to_string(),
            first,
            count: chunk.len(),
        };
        batch.push(seq, writer.elems(seq, table, name, delete, &chunk), object);
        first += chunk.len();
    }
}

fn push_chain(batch: &mut Batch, writer: &mut MsgWriter, table: &str, name: &str, hook: Option<BaseHook>) {
    let hook = hook.map(|base| {
        let hooknum = match base.hook {
            Hook::Forward => libc::NF_INET_FORWARD,
            Hook::Input => libc::NF_INET_LOCAL_IN,
        };
        (hooknum as u32, base.priority)
    });
    let seq = batch.next_seq();
    batch.push(
        seq,
        writer.chain(seq, table, name, hook),
        Object::Chain(name.to_string()),
    );
}

/// `NEWRULE`: rule `index` of `chain`, appended or inserted before the rule
/// with handle `before`.
fn push_rule(
    batch: &mut Batch,
    writer: &mut MsgWriter,
    table: &str,
    chain: &str,
    index: usize,
    rule: &Rule,
    before: Option<u64>,
) -> Result<()> {
    let parts = rule_exprs(rule)?;
    let exprs: Vec<Expr> = parts.iter().map(|(expr, _)| expr.clone()).collect();
    let seq = batch.next_seq();
    let msg = writer.rule(seq, table, chain, before, &exprs, &comment_udata(&rule.comment)?);
    let ranges = expression_ranges(msg);
    let object = Object::Rule {
        chain: chain.to_string(),
        index,
        comment: rule.comment.clone(),
        exprs: ranges
            .into_iter()
            .zip(parts)
            .map(|(range, (expr, part))| (range, part, static_name(&expr)))
            .collect(),
    };
    batch.push(seq, msg, object);
    Ok(())
}

/// What identifies a rule in the kernel: its comment and exact expressions
/// (`None` if it cannot be encoded).
pub(crate) fn rule_key(rule: &Rule) -> Option<(String, Vec<Expr>)> {
    let exprs = rule_exprs(rule).ok()?.into_iter().map(|(expr, _)| expr).collect();
    Some((rule.comment.clone(), exprs))
}

fn static_name(expr: &Expr) -> &'static str {
    match expr {
        Expr::Meta { .. } => "meta",
        Expr::Cmp { .. } => "cmp",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Ct { .. } => "ct",
        Expr::Payload { .. } => "payload",
        Expr::Lookup { .. } => "lookup",
        Expr::Range { .. } => "range",
        Expr::Limit { .. } => "limit",
        Expr::Dynset { .. } => "dynset",
        Expr::Connlimit { .. } => "connlimit",
        Expr::Log { .. } => "log",
        Expr::Counter { .. } => "counter",
        Expr::Verdict { .. } | Expr::Immediate { .. } => "immediate",
        Expr::CtSet { .. } => "ct",
        Expr::Reject { .. } => "reject",
        Expr::Other(_) => "unknown",
    }
}

/// Byte ranges (within the message) of the `NFTA_LIST_ELEM`s of
/// `NFTA_RULE_EXPRESSIONS`, which is what an ext-ack offset points into.
fn expression_ranges(msg: &[u8]) -> Vec<Range<usize>> {
    const NFTA_RULE_EXPRESSIONS: u16 = 4;
    let attrs = |start: usize, end: usize| {
        let mut out = Vec::new();
        let mut at = start;
        while at + 4 <= end {
            let len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
            let kind = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
            if len < 4 || at + len > end {
                break;
            }
            out.push((kind, at..at + len));
            at += (len + 3) & !3;
        }
        out
    };
    // nlmsghdr (16) + nfgenmsg (4).
    attrs(20, msg.len())
        .into_iter()
        .find(|(kind, _)| *kind == NFTA_RULE_EXPRESSIONS)
        .map(|(_, nest)| {
            attrs(nest.start + 4, nest.end)
                .into_iter()
                .map(|(_, r)| r)
                .collect()
        })
        .unwrap_or_default()
}

/// The rule comment as nft writes it: a `NFTNL_UDATA_RULE_COMMENT` TLV
/// holding the NUL-terminated string.
pub(crate) fn comment_udata(comment: &str) -> Result<Vec<u8>> {
    check_name("comment", comment, MAX_COMMENT)?;
    if comment.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![0u8, comment.len() as u8 + 1];
    out.extend_from_slice(comment.as_bytes());
    out.push(0);
    Ok(out)
}

fn set_spec(table: &str, id: u32, name: &str, elements: &SetElements) -> SetSpec {
    let (key_type, key_len) = match elements {
        SetElements::Ipv4(_) | SetElements::Ipv4Addrs(_) => (TYPE_IPV4_ADDR, 4),
        SetElements::Ipv6(_) | SetElements::Ipv6Addrs(_) => (TYPE_IPV6_ADDR, 16),
        SetElements::Port(_) => (TYPE_INET_SERVICE, 2),
        SetElements::Meter(Meter {
            family: Family::Ipv4, ..
        })
        | SetElements::Runtime(RuntimeSet {
            family: Family::Ipv4, ..
        }) => (TYPE_IPV4_ADDR, 4),
        SetElements::Meter(Meter {
            family: Family::Ipv6, ..
        })
        | SetElements::Runtime(RuntimeSet {
            family: Family::Ipv6, ..
        }) => (TYPE_IPV6_ADDR, 16),
    };
    let mut spec = SetSpec {
        table: table.to_string(),
        name: name.to_string(),
        handle: 0,
        id,
        flags: libc::NFT_SET_INTERVAL as u32,
        key_type,
        key_len,
        size: None,
        timeout_ms: None,
        userdata: SET_UDATA_KEY_BIG_ENDIAN.to_vec(),
        extra: Vec::new(),
    };
    match elements {
        SetElements::Meter(meter) => {
            spec.flags = libc::NFT_SET_EVAL as u32;
            spec.size = (meter.size > 0).then_some(meter.size);
            if let Some(secs) = meter.timeout_secs {
                spec.flags |= libc::NFT_SET_TIMEOUT as u32;
                spec.timeout_ms = Some(u64::from(secs) * 1000);
            }
        }
        // A hash of single addresses, each with a timeout of its own if
        // given (see `RuntimeSet`).
        SetElements::Runtime(runtime) => {
            spec.flags = libc::NFT_SET_TIMEOUT as u32;
            spec.timeout_ms = runtime.timeout_ms;
        }
        // A hash of single addresses: no flags; a size when it is large.
        SetElements::Ipv4Addrs(_) | SetElements::Ipv6Addrs(_) => {
            spec.flags = 0;
            spec.size = elements.hash_size();
        }
        _ => {}
    }
    spec
}

/// Big-endian key bytes of interval points.
pub(crate) trait Key: Point {
    fn key(self) -> ffi::Key;
}
impl Key for u16 {
    fn key(self) -> ffi::Key {
        ffi::Key::from_slice(&self.to_be_bytes())
    }
}
impl Key for std::net::Ipv4Addr {
    fn key(self) -> ffi::Key {
        ffi::Key::from_slice(&self.octets())
    }
}
impl Key for std::net::Ipv6Addr {
    fn key(self) -> ffi::Key {
        ffi::Key::from_slice(&self.octets())
    }
}

/// Kernel elements for inclusive intervals: a start element, then an
/// interval-end element at `last + 1` (omitted at the top of the range);
/// for a hash of single addresses, one element each. An iterator: a set of
/// 100,000 addresses is encoded a message at a time, never held whole
/// twice.
pub(crate) fn interval_elements(elements: &SetElements) -> Box<dyn Iterator<Item = (ffi::Key, bool)> + '_> {
    fn points<T: Key>(points: &[Interval<T>]) -> Box<dyn Iterator<Item = (ffi::Key, bool)> + '_> {
        Box::new(points.iter().map(|point| (point.first.key(), false)))
    }
    fn of<T: Key>(intervals: &[Interval<T>]) -> Box<dyn Iterator<Item = (ffi::Key, bool)> + '_> {
        Box::new(intervals.iter().flat_map(|interval| {
            let end = interval.last.successor().map(|after| (after.key(), true));
            std::iter::once((interval.first.key(), false)).chain(end)
        }))
    }
    match elements {
        SetElements::Ipv4(v) => of(v),
        SetElements::Ipv6(v) => of(v),
        SetElements::Port(v) => of(v),
        SetElements::Ipv4Addrs(v) => points(v),
        SetElements::Ipv6Addrs(v) => points(v),
        SetElements::Meter(_) | SetElements::Runtime(_) => Box::new(std::iter::empty()),
    }
}

/// [`interval_elements`] as a dump lists them, `(key, flags)`. A hash's
/// are collected straight into the shared slice: its length is known, so
/// 100,000 addresses take one allocation, not a vector and its copy.
pub(crate) fn dumped_elements(elements: &SetElements) -> ffi::Elems {
    fn points<T: Key>(points: &[Interval<T>]) -> ffi::Elems {
        points.iter().map(|point| (point.first.key(), 0)).collect()
    }
    match elements {
        SetElements::Ipv4Addrs(v) => points(v),
        SetElements::Ipv6Addrs(v) => points(v),
        other => {
            let end = libc::NFT_SET_ELEM_INTERVAL_END as u32;
            interval_elements(other)
                .map(|(key, is_end)| (key, if is_end { end } else { 0 }))
                .collect::<Vec<_>>()
                .into()
        }
    }
}

fn u8_cmp(key: u32, value: u8) -> [Expr; 2] {
    [
        Expr::Meta { key },
        Expr::Cmp {
            op: libc::NFT_CMP_EQ as u32,
            data: vec![value],
        },
    ]
}

pub(crate) fn nfproto(family: Family) -> u8 {
    match family {
        Family::Ipv4 => libc::NFPROTO_IPV4 as u8,
        Family::Ipv6 => libc::NFPROTO_IPV6 as u8,
    }
}

pub(crate) fn ipproto(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
    }
}

/// `payload load saddr => reg 1` for the family.
pub(crate) fn saddr(family: Family) -> Expr {
    let (offset, len) = match family {
        Family::Ipv4 => (12, 4),
        Family::Ipv6 => (8, 16),
    };
    Expr::Payload {
        base: libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
        offset,
        len,
    }
}

/// `ip daddr` / `ip6 daddr` => reg 1.
pub(crate) fn daddr(family: Family) -> Expr {
    let (offset, len) = match family {
        Family::Ipv4 => (16, 4),
        Family::Ipv6 => (24, 16),
    };
    Expr::Payload {
        base: libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
        offset,
        len,
    }
}

/// `th dport` => reg 1.
pub(crate) fn dport() -> Expr {
    Expr::Payload {
        base: libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
        offset: 2,
        len: 2,
    }
}

/// `load` (a port into reg 1), then its comparison with `port`.
fn port_exprs(load: Expr, port: &PortMatch) -> Result<Vec<Expr>> {
    Ok(match port {
        PortMatch::Single(port) => vec![
            load,
            Expr::Cmp {
                op: libc::NFT_CMP_EQ as u32,
                data: port.to_be_bytes().to_vec(),
            },
        ],
        PortMatch::Range(first, last) => vec![
            load,
            Expr::Range {
                op: libc::NFT_RANGE_EQ as u32,
                from: first.to_be_bytes().to_vec(),
                to: last.to_be_bytes().to_vec(),
            },
        ],
        PortMatch::Set(set) => {
            check_name("set", set, MAX_NAME)?;
            vec![
                load,
                Expr::Lookup {
                    set: set.clone(),
                    flags: 0,
                },
            ]
        }
    })
}

/// `ct original KEY => reg 1`.
fn ct_original(key: i32) -> Expr {
    Expr::Ct {
        key: key as u32,
        dir: Some(0),
    }
}

fn ct_bits(key: i32, mask: u32, op: i32) -> [Expr; 3] {
    [
        Expr::Ct {
            key: key as u32,
            dir: None,
        },
        Expr::Bitwise {
            mask: mask.to_ne_bytes().to_vec(),
            xor: 0u32.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            op: op as u32,
            data: 0u32.to_ne_bytes().to_vec(),
        },
    ]
}

fn ifname(key: i32, name: &IfName) -> Result<[Expr; 2]> {
    let data = match name {
        IfName::Exact(name) => {
            check_name("interface", name, MAX_IFNAME)?;
            let mut data = name.as_bytes().to_vec();
            data.push(0);
            data
        }
        IfName::Prefix(prefix) => {
            check_name("interface prefix", prefix, MAX_IFNAME)?;
            prefix.as_bytes().to_vec()
        }
    };
    Ok([
        Expr::Meta { key: key as u32 },
        Expr::Cmp {
            op: libc::NFT_CMP_EQ as u32,
            data,
        },
    ])
}

fn limit(rate: dockfw_core::ruleset::Rate, burst: u32, flags: u32) -> Result<Expr> {
    if rate.count == 0 || burst == 0 {
        return Err(Error::Invalid(format!(
            "limit {rate} burst {burst}: rate and burst must be at least 1 (the kernel \
             rejects rate 0 and turns burst 0 into 5)"
        )));
    }
    Ok(Expr::Limit {
        rate: rate.count,
        unit: rate.unit.seconds(),
        burst,
        flags,
    })
}

/// The expressions of one match.
pub(crate) fn match_exprs(m: &Match) -> Result<Vec<Expr>> {
    Ok(match m {
        Match::IifName(name) => ifname(libc::NFT_META_IIFNAME, name)?.to_vec(),
        Match::OifName(name) => ifname(libc::NFT_META_OIFNAME, name)?.to_vec(),
        Match::NfProto(family) => u8_cmp(libc::NFT_META_NFPROTO as u32, nfproto(*family)).to_vec(),
        Match::L4Proto(proto) => u8_cmp(libc::NFT_META_L4PROTO as u32, ipproto(*proto)).to_vec(),
        Match::PacketType(kind) => u8_cmp(libc::NFT_META_PKTTYPE as u32, kind.number()).to_vec(),
        Match::CtState(CtState::New) => ct_bits(libc::NFT_CT_STATE, CT_STATE_NEW, libc::NFT_CMP_NEQ).to_vec(),
        Match::CtState(CtState::NotNew) => {
            ct_bits(libc::NFT_CT_STATE, CT_STATE_NEW, libc::NFT_CMP_EQ).to_vec()
        }
        Match::CtState(CtState::EstablishedOrRelated) => ct_bits(
            libc::NFT_CT_STATE,
            CT_STATE_ESTABLISHED_RELATED,
            libc::NFT_CMP_NEQ,
        )
        .to_vec(),
        Match::CtState(CtState::Untracked) => {
            ct_bits(libc::NFT_CT_STATE, CT_STATE_UNTRACKED, libc::NFT_CMP_NEQ).to_vec()
        }
        Match::CtState(CtState::Invalid) => {
            ct_bits(libc::NFT_CT_STATE, CT_STATE_INVALID, libc::NFT_CMP_NEQ).to_vec()
        }
        Match::CtState(CtState::Established) => {
            ct_bits(libc::NFT_CT_STATE, CT_STATE_ESTABLISHED, libc::NFT_CMP_NEQ).to_vec()
        }
        Match::CtStatusDnat => ct_bits(libc::NFT_CT_STATUS, IPS_DST_NAT, libc::NFT_CMP_NEQ).to_vec(),
        // As nft writes `ct direction original`: one byte, IP_CT_DIR_ORIGINAL.
        Match::CtDirectionOriginal => vec![
            Expr::Ct {
                key: libc::NFT_CT_DIRECTION as u32,
                dir: None,
            },
            Expr::Cmp {
                op: libc::NFT_CMP_EQ as u32,
                data: vec![0],
            },
        ],
        // As nft writes `ct label ! 96,…,127`: the labels masked with
        // dockfw's bits, equal to nothing.
        Match::CtUnlabelled => vec![
            Expr::Ct {
                key: libc::NFT_CT_LABELS as u32,
                dir: None,
            },
            Expr::Bitwise {
                mask: dockfw_label_mask(),
                xor: vec![0; LABEL_MAP_BYTES],
            },
            Expr::Cmp {
                op: libc::NFT_CMP_EQ as u32,
                data: vec![0; LABEL_MAP_BYTES],
            },
        ],
        Match::SourceIn { family, set } => {
            check_name("set", set, MAX_NAME)?;
            vec![
                saddr(*family),
                Expr::Lookup {
                    set: set.clone(),
                    flags: 0,
                },
            ]
        }
        Match::DialledAddrIn { family, set } => {
            check_name("set", set, MAX_NAME)?;
            let key = match family {
                Family::Ipv4 => libc::NFT_CT_DST_IP,
                Family::Ipv6 => libc::NFT_CT_DST_IP6,
            };
            vec![
                ct_original(key),
                Expr::Lookup {
                    set: set.clone(),
                    flags: 0,
                },
            ]
        }
        Match::DialledPort(port) => port_exprs(ct_original(libc::NFT_CT_PROTO_DST), port)?,
        Match::DestAddrIn { family, set } => {
            check_name("set", set, MAX_NAME)?;
            vec![
                daddr(*family),
                Expr::Lookup {
                    set: set.clone(),
                    flags: 0,
                },
            ]
        }
        Match::DestPort(port) => port_exprs(dport(), port)?,
        Match::Limit { rate, burst } => vec![limit(*rate, *burst, 0)?],
        Match::SourceRateOver {
            family,
            set,
            rate,
            burst,
        } => {
            check_name("set", set, MAX_NAME)?;
            vec![
                saddr(*family),
                Expr::Dynset {
                    op: libc::NFT_DYNSET_OP_UPDATE as u32,
                    set: set.clone(),
                    timeout_ms: 0,
                    exprs: vec![limit(*rate, *burst, libc::NFT_LIMIT_F_INV as u32)?],
                },
            ]
        }
        Match::SourceConnectionsOver { family, set, count } => {
            check_name("set", set, MAX_NAME)?;
            vec![
                saddr(*family),
                Expr::Dynset {
                    op: libc::NFT_DYNSET_OP_ADD as u32,
                    set: set.clone(),
                    timeout_ms: 0,
                    exprs: vec![Expr::Connlimit {
                        count: *count,
                        flags: CONNLIMIT_F_INV,
                    }],
                },
            ]
        }
    })
}

/// The expressions of a verdict.
pub(crate) fn verdict_expr(verdict: &Verdict) -> Result<Expr> {
    let simple = |code: i32| Expr::Verdict { code, chain: None };
    Ok(match verdict {
        Verdict::Accept => simple(libc::NF_ACCEPT),
        Verdict::Drop => simple(libc::NF_DROP),
        Verdict::Return => simple(libc::NFT_RETURN),
        Verdict::Jump(chain) | Verdict::Goto(chain) => {
            check_name("chain", chain, MAX_NAME)?;
            let code = if matches!(verdict, Verdict::Jump(_)) {
                libc::NFT_JUMP
            } else {
                libc::NFT_GOTO
            };
            Expr::Verdict {
                code,
                chain: Some(chain.clone()),
            }
        }
        Verdict::Reject(RejectWith::TcpReset) => Expr::Reject {
            kind: libc::NFT_REJECT_TCP_RST as u32,
            code: 0,
        },
        Verdict::Reject(RejectWith::IcmpxAdminProhibited) => Expr::Reject {
            kind: libc::NFT_REJECT_ICMPX_UNREACH as u32,
            code: libc::NFT_REJECT_ICMPX_ADMIN_PROHIBITED as u8,
        },
    })
}

/// The expressions of a statement.
pub(crate) fn statement_exprs(statement: &Statement) -> Result<Vec<Expr>> {
    Ok(match statement {
        Statement::Log { prefix, group } => {
            check_name("log prefix", prefix, MAX_LOG_PREFIX)?;
            vec![Expr::Log {
                prefix: prefix.clone(),
                group: *group,
            }]
        }
        // As nft writes `ct label set N`: the 128-bit map with only bit N set
        // into a register (native-endian 32-bit words), then `ct set label`
        // (the kernel ORs it into the connection's labels).
        Statement::CtLabelSet(bit) => {
            let bit = usize::from(*bit);
            if bit >= LABEL_MAP_BYTES * 8 {
                return Err(Error::Invalid(format!("ct label {bit} is out of range (0-127)")));
            }
            vec![
                Expr::Immediate {
                    data: ct_label_map(bit),
                },
                Expr::CtSet {
                    key: libc::NFT_CT_LABELS as u32,
                },
            ]
        }
        Statement::Counter => vec![Expr::Counter { packets: 0, bytes: 0 }],
    })
}

/// Size of the kernel's connection label map (`NF_CT_LABELS_MAX_SIZE`).
pub(crate) const LABEL_MAP_BYTES: usize = 16;

/// The label map with every bit of [`CT_LABEL_BITS`](dockfw_core::layout::CT_LABEL_BITS) set.
pub(crate) fn dockfw_label_mask() -> Vec<u8> {
    let mut mask = vec![0; LABEL_MAP_BYTES];
    for bit in dockfw_core::layout::CT_LABEL_BITS {
        for (byte, set) in mask.iter_mut().zip(ct_label_map(usize::from(bit))) {
            *byte |= set;
        }
    }
    mask
}

/// The label map with only `bit` set, as nft and the kernel lay it out.
pub(crate) fn ct_label_map(bit: usize) -> Vec<u8> {
    let mut words = [0u32; LABEL_MAP_BYTES / 4];
    words[bit / 32] = 1 << (bit % 32);
    words.iter().flat_map(|word| word.to_ne_bytes()).collect()
}

/// All expressions of a rule, each with the part of the rule it encodes:
/// matches, statements (a counter among them, if the rule has one), the verdict.
pub(crate) fn rule_exprs(rule: &Rule) -> Result<Vec<(Expr, Part)>> {
    let mut out = Vec::new();
    for (index, m) in rule.matches.iter().enumerate() {
        out.extend(match_exprs(m)?.into_iter().map(|e| (e, Part::Match(index))));
    }
    for (index, statement) in rule.statements.iter().enumerate() {
        out.extend(
            statement_exprs(statement)?
                .into_iter()
                .map(|e| (e, Part::Statement(index))),
        );
    }
    if let Some(verdict) = &rule.verdict {
        out.push((verdict_expr(verdict)?, Part::Verdict));
    }
    if out.len() > MAX_EXPRS {
        return Err(Error::Invalid(format!(
            "rule {:?} needs {} expressions; the kernel allows {MAX_EXPRS}",
            rule.comment,
            out.len()
        )));
    }
    Ok(out)
}
