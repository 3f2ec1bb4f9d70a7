//! Building messages: every request dockfw sends, written by libnftnl into
//! one reusable, zero-initialised scratch buffer that is larger than any
//! message we build (rules are capped at the kernel's 128 expressions and
//! element messages at [`ELEMS_PER_MSG`] elements), then copied out as bytes.
//!
//! Each object kind names itself the same way in every message ([`Message`]:
//! family, table, name), so a message is an object from [`Owned::named`] or
//! [`Owned::filter`], a few attributes of its own, and [`MsgWriter::message`].

use super::expr::build_expr;
use super::{INET, Object, Owned, cstr, sys};
use crate::expr::Expr;
use std::ffi::c_char;

/// Set elements per `NEWSETELEM` message; the element list is one netlink
/// attribute whose length is a u16, so it must stay well under 64 KiB
/// (an IPv6 interval element takes about 44 bytes).
pub(crate) const ELEMS_PER_MSG: usize = 1024;

/// Scratch buffer size: the largest message we build is a rule of at most 128
/// expressions with names of at most 255 bytes each, far below this.
const SCRATCH_BYTES: usize = 256 * 1024;

/// Writes an object's attributes into the message headed by the header.
///
/// # Safety
/// The header must head a message with room to spare; the object be live.
type Payload<T> = unsafe fn(*mut libc::nlmsghdr, *mut T);

/// [`Payload`] of a set's elements (`nftnl_set_elems_nlmsg_build_payload`).
///
/// # Safety
/// As [`Payload`].
unsafe fn set_elements(nlh: *mut libc::nlmsghdr, set: *mut sys::nftnl_set) {
    // SAFETY: guaranteed by the caller.
    unsafe { sys::nftnl_set_elems_nlmsg_build_payload(nlh, set) }
}

/// An object kind a message carries: how it is named and how it becomes
/// the payload of a message.
pub(super) trait Message: Object {
    /// `nftnl_*_nlmsg_build_payload`: the object as a message's payload.
    ///
    /// # Safety
    /// As [`Payload`].
    unsafe fn payload(nlh: *mut libc::nlmsghdr, obj: *mut Self);
    /// The attributes of its family, of the table it is in (`None`: it is a
    /// table) and of its name (a rule: its chain's).
    const FAMILY: u16;
    const TABLE: Option<u16>;
    const NAME: u16;
    /// Sets a u32 attribute.
    ///
    /// # Safety
    /// `obj` must be live and `attr` one of its kind's.
    unsafe fn set_u32(obj: *mut Self, attr: u16, value: u32);
    /// Sets a string attribute; libnftnl copies the string.
    ///
    /// # Safety
    /// As [`Message::set_u32`]; `value` a NUL-terminated string.
    unsafe fn set_str(obj: *mut Self, attr: u16, value: *const c_char);
}

/// Implements [`Message`] for a libnftnl type.
macro_rules! message {
    ($($ty:ident: $payload:ident, $set_u32:ident, $set_str:ident,
       family $family:ident, table $($table:ident)?, name $name:ident;)*) => {$(
        impl Message for sys::$ty {
            unsafe fn payload(nlh: *mut libc::nlmsghdr, obj: *mut Self) {
                // SAFETY: guaranteed by the caller.
                unsafe { sys::$payload(nlh, obj) };
            }
            const FAMILY: u16 = sys::$family as u16;
            const TABLE: Option<u16> = message!(@table $($table)?);
            const NAME: u16 = sys::$name as u16;
            unsafe fn set_u32(obj: *mut Self, attr: u16, value: u32) {
                // SAFETY: guaranteed by the caller.
                unsafe { sys::$set_u32(obj, attr, value) };
            }
            unsafe fn set_str(obj: *mut Self, attr: u16, value: *const c_char) {
                // SAFETY: guaranteed by the caller.
                unsafe { sys::$set_str(obj, attr, value) };
            }
        }
    )*};
    (@table) => { None };
    (@table $table:ident) => { Some(sys::$table as u16) };
}

message! {
    nftnl_table: nftnl_table_nlmsg_build_payload, nftnl_table_set_u32, nftnl_table_set_str,
        family NFTNL_TABLE_FAMILY, table, name NFTNL_TABLE_NAME;
    nftnl_chain: nftnl_chain_nlmsg_build_payload, nftnl_chain_set_u32, nftnl_chain_set_str,
        family NFTNL_CHAIN_FAMILY, table NFTNL_CHAIN_TABLE, name NFTNL_CHAIN_NAME;
    nftnl_set: nftnl_set_nlmsg_build_payload, nftnl_set_set_u32, nftnl_set_set_str,
        family NFTNL_SET_FAMILY, table NFTNL_SET_TABLE, name NFTNL_SET_NAME;
    nftnl_rule: nftnl_rule_nlmsg_build_payload, nftnl_rule_set_u32, nftnl_rule_set_str,
        family NFTNL_RULE_FAMILY, table NFTNL_RULE_TABLE, name NFTNL_RULE_CHAIN;
    nftnl_obj: nftnl_obj_nlmsg_build_payload, nftnl_obj_set_u32, nftnl_obj_set_str,
        family NFTNL_OBJ_FAMILY, table NFTNL_OBJ_TABLE, name NFTNL_OBJ_NAME;
    nftnl_flowtable: nftnl_flowtable_nlmsg_build_payload, nftnl_flowtable_set_u32, nftnl_flowtable_set_str,
        family NFTNL_FLOWTABLE_FAMILY, table NFTNL_FLOWTABLE_TABLE, name NFTNL_FLOWTABLE_NAME;
}

impl<T: Message> Owned<T> {
    /// The object a change names: family inet, table `table` (`None` for a
    /// table itself) and name `name` (a rule: its chain).
    fn named(table: Option<&str>, name: &str) -> Self {
        let obj = Self::empty();
        let name = cstr(name);
        // SAFETY: `obj` is live and the attributes are its kind's;
        // libnftnl copies the strings.
        unsafe {
            T::set_u32(obj.as_ptr(), T::FAMILY, INET);
            if let (Some(attr), Some(table)) = (T::TABLE, table) {
                T::set_str(obj.as_ptr(), attr, cstr(table).as_ptr());
            }
            T::set_str(obj.as_ptr(), T::NAME, name.as_ptr());
        }
        obj
    }

    /// A read request's filter: only objects in table `table` and, if given,
    /// named `name` (no family: the message header carries it).
    fn filter(table: Option<&str>, name: Option<&str>) -> Self {
        let obj = Self::empty();
        // SAFETY: as in `named`.
        unsafe {
            if let (Some(attr), Some(table)) = (T::TABLE, table) {
                T::set_str(obj.as_ptr(), attr, cstr(table).as_ptr());
            }
            if let Some(name) = name {
                T::set_str(obj.as_ptr(), T::NAME, cstr(name).as_ptr());
            }
        }
        obj
    }
}

/// Appends a netlink attribute whose payload is `parts`, padded to 4 bytes
/// (as `mnl_attr_put`).
fn put_attr(out: &mut Vec<u8>, ty: u16, parts: &[&[u8]]) {
    let payload: usize = parts.iter().map(|part| part.len()).sum();
    let len = u16::try_from(4 + payload).expect("an attribute is far below 64 KiB");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Opens a nested attribute (as `mnl_attr_nest_start`); returns where it
/// starts, for [`nest_end`].
fn nest_start(out: &mut Vec<u8>, ty: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(ty | libc::NLA_F_NESTED as u16).to_ne_bytes());
    start
}

/// Closes the nested attribute opened at `start`: its length is all that
/// was appended since (as `mnl_attr_nest_end`).
fn nest_end(out: &mut [u8], start: usize) {
    let len =
        u16::try_from(out.len() - start).expect("a nest of at most ELEMS_PER_MSG elements is below 64 KiB");
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// The type and flags of a message adding (each element must be new) or,
/// with `delete`, deleting the elements of a set dockfw fills.
fn element_message(delete: bool) -> (u32, i32) {
    if delete {
        (libc::NFT_MSG_DELSETELEM as u32, libc::NLM_F_ACK)
    } else {
        (libc::NFT_MSG_NEWSETELEM as u32, CREATE)
    }
}

/// Builds messages into a reusable scratch buffer.
pub(crate) struct MsgWriter {
    // u32 words keep the buffer aligned for `nlmsghdr`.
    scratch: Vec<u32>,
    /// Messages written without libnftnl ([`MsgWriter::elems`]).
    direct: Vec<u8>,
}

impl std::fmt::Debug for MsgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MsgWriter")
    }
}

/// Flags of a message creating an object that must not exist yet.
const CREATE: i32 = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;

impl MsgWriter {
    pub(crate) fn new() -> Self {
        Self {
            scratch: vec![0; SCRATCH_BYTES / 4],
            direct: Vec::new(),
        }
    }

    /// Writes a header, lets `payload` add attributes, returns the message.
    fn build(
        &mut self,
        ty: u32,
        family: u16,
        flags: i32,
        seq: u32,
        payload: impl FnOnce(*mut libc::nlmsghdr),
    ) -> &[u8] {
        let buf = self.scratch.as_mut_ptr().cast::<c_char>();
        // SAFETY: the scratch buffer is SCRATCH_BYTES long and 4-byte aligned;
        // the header needs 20 bytes.
        let nlh = unsafe { sys::nftnl_nlmsg_build_hdr(buf, ty as u16, family, flags as u16, seq) };
        payload(nlh);
        // SAFETY: `nlh` points at the header just written into our buffer.
        let len = unsafe { (*nlh).nlmsg_len } as usize;
        assert!(len <= SCRATCH_BYTES, "netlink message overflowed its buffer");
        // SAFETY: the buffer is initialised (zeroed at creation) and `len`
        // bytes long at least.
        unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
    }

    /// An inet message of type `ty` carrying `obj`, written by `payload`.
    fn message_with<T>(
        &mut self,
        ty: u32,
        flags: i32,
        seq: u32,
        obj: &Owned<T>,
        payload: Payload<T>,
    ) -> &[u8] {
        self.build(ty, INET as u16, flags, seq, |nlh| {
            // SAFETY: `nlh` heads a message in our scratch buffer with room
            // to spare (element counts are capped so that holds too); `obj`
            // is live.
            unsafe { payload(nlh, obj.as_ptr()) }
        })
    }

    /// An inet message of type `ty` carrying `obj`.
    fn message<T: Message>(&mut self, ty: u32, flags: i32, seq: u32, obj: &Owned<T>) -> &[u8] {
        self.message_with(ty, flags, seq, obj, T::payload)
    }

    /// `NEWTABLE`/`DELTABLE` for an inet table.
    pub(crate) fn table(&mut self, add: bool, flags: i32, seq: u32, name: &str) -> &[u8] {
        let table = Owned::<sys::nftnl_table>::named(None, name);
        // SAFETY: `table` is a live object.
        unsafe { sys::nftnl_table_set_u32(table.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, 0) };
        if add {
            // The ownership marker goes into every table dockfw creates, in the
            // creating message itself; the kernel ignores it when the table
            // already exists (table userdata cannot be changed in place).
            let marker = crate::owner::table_userdata();
            // SAFETY: `table` is live; libnftnl copies the bytes.
            unsafe {
                sys::nftnl_table_set_data(
                    table.as_ptr(),
                    sys::NFTNL_TABLE_USERDATA as u16,
                    marker.as_ptr().cast(),
                    marker.len() as u32,
                );
            }
        }
        let ty = if add {
            libc::NFT_MSG_NEWTABLE
        } else {
            libc::NFT_MSG_DELTABLE
        };
        self.message(ty as u32, flags, seq, &table)
    }

    /// `NEWCHAIN`; a base chain gets type filter, policy accept and `hook`.
    pub(crate) fn chain(&mut self, seq: u32, table: &str, name: &str, hook: Option<(u32, i32)>) -> &[u8] {
        let chain = Owned::<sys::nftnl_chain>::named(Some(table), name);
        if let Some((hooknum, priority)) = hook {
            // SAFETY: `chain` is a live object; libnftnl copies the string.
            unsafe {
                let c = chain.as_ptr();
                sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16, hooknum);
                sys::nftnl_chain_set_s32(c, sys::NFTNL_CHAIN_PRIO as u16, priority);
                sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TYPE as u16, c"filter".as_ptr());
                sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_POLICY as u16, libc::NF_ACCEPT as u32);
            }
        }
        self.message(libc::NFT_MSG_NEWCHAIN as u32, CREATE, seq, &chain)
    }

    /// `NEWSET`.
    pub(crate) fn set(&mut self, seq: u32, spec: &SetSpec) -> &[u8] {
        let set = Owned::<sys::nftnl_set>::named(Some(&spec.table), &spec.name);
        // SAFETY: `set` is a live object; libnftnl copies the data.
        unsafe {
            let s = set.as_ptr();
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, spec.id);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, spec.flags);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, spec.key_type);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, spec.key_len);
            if let Some(size) = spec.size {
                sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DESC_SIZE as u16, size);
            }
            if let Some(timeout) = spec.timeout_ms {
                sys::nftnl_set_set_u64(s, sys::NFTNL_SET_TIMEOUT as u16, timeout);
            }
            if !spec.userdata.is_empty() {
                sys::nftnl_set_set_data(
                    s,
                    sys::NFTNL_SET_USERDATA as u16,
                    spec.userdata.as_ptr().cast(),
                    spec.userdata.len() as u32,
                );
            }
        }
        self.message(libc::NFT_MSG_NEWSET as u32, CREATE, seq, &set)
    }

    /// `NEWSETELEM` (or with `delete`, `DELSETELEM`) with at most
    /// [`ELEMS_PER_MSG`] `(key, interval end)` elements.
    ///
    /// libnftnl writes the header; the attributes are appended here, byte
    /// for byte as `nftnl_set_elems_nlmsg_build_payload` lays them out (a
    /// test holds the two equal): libnftnl would allocate, fill and free an
    /// object per element and make five calls to write it, which for
    /// 100,000 addresses cost more than the rest of encoding the table.
    pub(crate) fn elems(
        &mut self,
        seq: u32,
        table: &str,
        set_name: &str,
        delete: bool,
        elems: &[(super::Key, bool)],
    ) -> &[u8] {
        use super::attr::*;
        assert!(elems.len() <= ELEMS_PER_MSG);
        let (ty, flags) = element_message(delete);
        let header = self.build(ty, INET as u16, flags, seq, |_| {}).to_vec();
        let out = &mut self.direct;
        out.clear();
        out.extend_from_slice(&header);
        put_attr(out, NFTA_SET_ELEM_LIST_SET, &[set_name.as_bytes(), &[0]]);
        put_attr(out, NFTA_SET_ELEM_LIST_TABLE, &[table.as_bytes(), &[0]]);
        if !elems.is_empty() {
            let list = nest_start(out, NFTA_SET_ELEM_LIST_ELEMENTS);
            for (index, (key, end)) in elems.iter().enumerate() {
                // Each element is a nest typed by its 1-based position.
                let elem = nest_start(out, (index + 1) as u16);
                if *end {
                    let interval_end = libc::NFT_SET_ELEM_INTERVAL_END as u32;
                    put_attr(out, NFTA_SET_ELEM_FLAGS, &[&interval_end.to_be_bytes()]);
                }
                let key_nest = nest_start(out, NFTA_SET_ELEM_KEY);
                put_attr(out, NFTA_DATA_VALUE, &[key]);
                nest_end(out, key_nest);
                nest_end(out, elem);
            }
            nest_end(out, list);
        }
        let len = u32::try_from(out.len()).expect("an element message is far below 4 GiB");
        out[..4].copy_from_slice(&len.to_ne_bytes());
        out
    }

    /// [`MsgWriter::elems`] the way libnftnl builds it: the reference the
    /// direct writing is held to.
    #[cfg(test)]
    fn elems_by_libnftnl(
        &mut self,
        seq: u32,
        table: &str,
        set_name: &str,
        delete: bool,
        elems: &[(super::Key, bool)],
    ) -> &[u8] {
        assert!(elems.len() <= ELEMS_PER_MSG);
        let set = Owned::<sys::nftnl_set>::named(Some(table), set_name);
        // SAFETY: `set` is a live object; each element is handed over to the
        // set (which frees it); libnftnl copies the key bytes.
        unsafe {
            let s = set.as_ptr();
            for (key, end) in elems {
                let e = sys::nftnl_set_elem_alloc();
                if e.is_null() {
                    std::process::abort();
                }
                sys::nftnl_set_elem_set(
                    e,
                    sys::NFTNL_SET_ELEM_KEY as u16,
                    key.as_ptr().cast(),
                    key.len() as u32,
                );
                if *end {
                    sys::nftnl_set_elem_set_u32(
                        e,
                        sys::NFTNL_SET_ELEM_FLAGS as u16,
                        libc::NFT_SET_ELEM_INTERVAL_END as u32,
                    );
                }
                sys::nftnl_set_elem_add(s, e);
            }
        }
        let (ty, flags) = element_message(delete);
        self.message_with(ty, flags, seq, &set, set_elements)
    }

    /// An element message on a set whose elements belong to run time: each
    /// element a bare key (empty: the catch-all element) with, when adding,
    /// its own timeout (ms) if given.
    /// Adding carries no `NLM_F_EXCL`, so an element already there is no
    /// error (6.18 renews its timeout); [`ElementOp::Delete`] without
    /// elements flushes the set.
    pub(crate) fn runtime_elems(
        &mut self,
        seq: u32,
        table: &str,
        set_name: &str,
        op: ElementOp,
        elems: &[(super::Key, Option<u64>)],
    ) -> &[u8] {
        assert!(elems.len() <= ELEMS_PER_MSG);
        let set = Owned::<sys::nftnl_set>::named(Some(table), set_name);
        // SAFETY: as in `elems`.
        unsafe {
            let s = set.as_ptr();
            for (key, timeout) in elems {
                let e = sys::nftnl_set_elem_alloc();
                if e.is_null() {
                    std::process::abort();
                }
                if key.is_empty() {
                    // A catch-all element (`*`) has no key.
                    sys::nftnl_set_elem_set_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16, 2);
                } else {
                    sys::nftnl_set_elem_set(
                        e,
                        sys::NFTNL_SET_ELEM_KEY as u16,
                        key.as_ptr().cast(),
                        key.len() as u32,
                    );
                }
                if let Some(ms) = timeout {
                    sys::nftnl_set_elem_set_u64(e, sys::NFTNL_SET_ELEM_TIMEOUT as u16, *ms);
                }
                sys::nftnl_set_elem_add(s, e);
            }
        }
        let (ty, flags) = match op {
            ElementOp::Add => (
                libc::NFT_MSG_NEWSETELEM as u32,
                libc::NLM_F_CREATE | libc::NLM_F_ACK,
            ),
            ElementOp::Delete => (libc::NFT_MSG_DELSETELEM as u32, libc::NLM_F_ACK),
            ElementOp::Destroy => (NFT_MSG_DESTROYSETELEM, libc::NLM_F_ACK),
        };
        self.message_with(ty, flags, seq, &set, set_elements)
    }

    /// `GETSET` of one set (not a dump): `ENOENT` when there is none.
    pub(crate) fn get_set(&mut self, seq: u32, table: &str, name: &str) -> Vec<u8> {
        let obj = Owned::<sys::nftnl_set>::filter(Some(table), Some(name));
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        self.message(libc::NFT_MSG_GETSET as u32, flags, seq, &obj)
            .to_vec()
    }

    /// `DELSET` of set `name`.
    pub(crate) fn set_delete(&mut self, seq: u32, table: &str, name: &str) -> &[u8] {
        let set = Owned::<sys::nftnl_set>::named(Some(table), name);
        self.message(libc::NFT_MSG_DELSET as u32, libc::NLM_F_ACK, seq, &set)
    }

    /// `DELCHAIN` of chain `name` (the kernel also deletes its rules).
    pub(crate) fn chain_delete(&mut self, seq: u32, table: &str, name: &str) -> &[u8] {
        let chain = Owned::<sys::nftnl_chain>::named(Some(table), name);
        self.message(libc::NFT_MSG_DELCHAIN as u32, libc::NLM_F_ACK, seq, &chain)
    }

    /// `DELRULE`: the rule with `handle` in `chain`, or (`None`) every rule
    /// of the chain.
    pub(crate) fn rule_delete(&mut self, seq: u32, table: &str, chain: &str, handle: Option<u64>) -> &[u8] {
        let rule = Owned::<sys::nftnl_rule>::named(Some(table), chain);
        if let Some(handle) = handle {
            // SAFETY: `rule` is a live object.
            unsafe { sys::nftnl_rule_set_u64(rule.as_ptr(), sys::NFTNL_RULE_HANDLE as u16, handle) };
        }
        self.message(libc::NFT_MSG_DELRULE as u32, libc::NLM_F_ACK, seq, &rule)
    }

    /// `NEWRULE` in `chain`: appended, or inserted just before the rule
    /// whose handle is `before`.
    pub(crate) fn rule(
        &mut self,
        seq: u32,
        table: &str,
        chain: &str,
        before: Option<u64>,
        exprs: &[Expr],
        userdata: &[u8],
    ) -> &[u8] {
        let rule = Owned::<sys::nftnl_rule>::named(Some(table), chain);
        // SAFETY: `rule` is a live object; libnftnl copies data and takes
        // ownership of each expression added.
        unsafe {
            let r = rule.as_ptr();
            if let Some(handle) = before {
                sys::nftnl_rule_set_u64(r, sys::NFTNL_RULE_POSITION as u16, handle);
            }
            if !userdata.is_empty() {
                sys::nftnl_rule_set_data(
                    r,
                    sys::NFTNL_RULE_USERDATA as u16,
                    userdata.as_ptr().cast(),
                    userdata.len() as u32,
                );
            }
            for expr in exprs {
                sys::nftnl_rule_add_expr(r, build_expr(expr));
            }
        }
        // With a position and without NLM_F_APPEND the kernel inserts the
        // rule before the positioned one; with NLM_F_APPEND and no position
        // it appends to the chain.
        let place = if before.is_some() { 0 } else { libc::NLM_F_APPEND };
        self.message(libc::NFT_MSG_NEWRULE as u32, CREATE | place, seq, &rule)
    }

    /// `GETGEN` request.
    pub(crate) fn get_gen(&mut self, seq: u32) -> Vec<u8> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        self.build(
            libc::NFT_MSG_GETGEN as u32,
            libc::AF_UNSPEC as u16,
            flags,
            seq,
            |_| {},
        )
        .to_vec()
    }

    /// `GETTABLE` for one table.
    pub(crate) fn get_table(&mut self, seq: u32, table: &str) -> Vec<u8> {
        let obj = Owned::<sys::nftnl_table>::filter(None, Some(table));
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        self.message(libc::NFT_MSG_GETTABLE as u32, flags, seq, &obj)
            .to_vec()
    }

    /// A `GETCHAIN` dump of every chain of every table and family.
    pub(crate) fn all_chains(&mut self, seq: u32) -> Vec<u8> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_DUMP;
        self.build(
            libc::NFT_MSG_GETCHAIN as u32,
            libc::NFPROTO_UNSPEC as u16,
            flags,
            seq,
            |_| {},
        )
        .to_vec()
    }

    /// A dump request (`GETCHAIN`, `GETSET`, `GETRULE`, …) filtered by table.
    pub(crate) fn dump(&mut self, seq: u32, what: Dump, table: &str) -> Vec<u8> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_DUMP;
        let of_table = Some(table);
        match what {
            Dump::Chains => {
                let obj = Owned::<sys::nftnl_chain>::filter(of_table, None);
                self.message(libc::NFT_MSG_GETCHAIN as u32, flags, seq, &obj)
            }
            Dump::Sets => {
                let obj = Owned::<sys::nftnl_set>::filter(of_table, None);
                self.message(libc::NFT_MSG_GETSET as u32, flags, seq, &obj)
            }
            Dump::Elements(set) => {
                let obj = Owned::<sys::nftnl_set>::filter(of_table, Some(set));
                self.message_with(libc::NFT_MSG_GETSETELEM as u32, flags, seq, &obj, set_elements)
            }
            Dump::Objects => {
                // Without a type the kernel dumps objects of every type.
                let obj = Owned::<sys::nftnl_obj>::filter(of_table, None);
                self.message(libc::NFT_MSG_GETOBJ as u32, flags, seq, &obj)
            }
            Dump::Flowtables => {
                let obj = Owned::<sys::nftnl_flowtable>::filter(of_table, None);
                self.message(NFT_MSG_GETFLOWTABLE, flags, seq, &obj)
            }
            Dump::Rules => {
                let obj = Owned::<sys::nftnl_rule>::filter(of_table, None);
                self.message(libc::NFT_MSG_GETRULE as u32, flags, seq, &obj)
            }
        }
        .to_vec()
    }
}

/// What to dump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dump<'a> {
    Chains,
    Sets,
    Elements(&'a str),
    Rules,
    /// Stateful objects (counter, quota, ct helper, limit, …).
    Objects,
    Flowtables,
}

/// `NFT_MSG_GETFLOWTABLE` (not in the libc crate).
const NFT_MSG_GETFLOWTABLE: u32 = 23;
/// `NFT_MSG_DESTROYSETELEM` (Linux 6.3; not in the libc crate): deletes
/// elements, and an absent one is no error.
const NFT_MSG_DESTROYSETELEM: u32 = 30;

/// What an element message does to a run-time set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElementOp {
    /// `NEWSETELEM` without `NLM_F_EXCL`.
    Add,
    /// `DELSETELEM`: an absent element fails the batch (`ENOENT`).
    Delete,
    /// `DESTROYSETELEM`: an absent element is no error (Linux 6.3 and later;
    /// earlier kernels refuse the message type with `EINVAL`).
    Destroy,
}

/// Everything a `NEWSET` message carries for dockfw's sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SetSpec {
    pub table: String,
    pub name: String,
    /// The kernel's handle when dumped (0 when building).
    pub handle: u64,
    pub id: u32,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub size: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub userdata: Vec<u8>,
    /// What a dumped set holds that dockfw never writes (policy,
    /// gc-interval, set expressions, element timeouts, comments or
    /// expressions…), in words; empty when building.
    pub extra: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::Key;

    /// Element lists of every shape dockfw writes: IPv4 and IPv6 addresses
    /// and interval ends, ports, and the empty key of a catch-all.
    fn element_lists() -> Vec<Vec<(Key, bool)>> {
        let v4 = |i: u32| Key::from_slice(&(0x6440_0000u32 + 2 * i).to_be_bytes());
        let v6 = |i: u32| {
            let mut bytes = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            bytes[12..].copy_from_slice(&i.to_be_bytes());
            Key::from_slice(&bytes)
        };
        let port = |p: u16| Key::from_slice(&p.to_be_bytes());
        vec![
            vec![],
            vec![(Key::new(), false)],
            (0..ELEMS_PER_MSG as u32).map(|i| (v4(i), false)).collect(),
            (0..ELEMS_PER_MSG as u32).map(|i| (v6(i), i % 2 == 1)).collect(),
            (0..300).map(|i| (v4(i), i % 3 == 0)).collect(),
            (1..100).map(|p| (port(p), p % 2 == 0)).collect(),
        ]
    }

    #[test]
    fn elements_are_written_byte_for_byte_as_libnftnl_writes_them() {
        let mut ours = MsgWriter::new();
        for elems in element_lists() {
            for delete in [false, true] {
                for (table, set) in [("dockfw", "set-clients-v4"), ("t", "a-much-longer-set-name-v6")] {
                    let mine = ours.elems(7, table, set, delete, &elems).to_vec();
                    // Fresh, so padding holds zeros: libmnl 1.0.4 leaves
                    // what the buffer held before in it (the kernel skips
                    // padding); the direct writer zeroes it.
                    let mut reference = MsgWriter::new();
                    let libnftnl = reference.elems_by_libnftnl(7, table, set, delete, &elems);
                    assert_eq!(
                        mine,
                        libnftnl,
                        "{} elements, delete {delete}, {table}/{set}",
                        elems.len()
                    );
                }
            }
        }
    }
}
