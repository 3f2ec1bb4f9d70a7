//! The libnftnl edge: building nf_tables netlink messages and parsing the
//! kernel's replies, through `nftnl::nftnl_sys`.
//!
//! Everything `unsafe` about libnftnl lives here. Messages are built into one
//! reusable, zero-initialised scratch buffer that is larger than any message
//! we build (rules are capped at the kernel's 128 expressions and element
//! messages at [`ELEMS_PER_MSG`] elements), then copied out as bytes.

use crate::expr::Expr;
use nftnl::nftnl_sys as sys;
use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;

/// Set elements per `NEWSETELEM` message; the element list is one netlink
/// attribute whose length is a u16, so it must stay well under 64 KiB
/// (an IPv6 interval element takes about 44 bytes).
pub(crate) const ELEMS_PER_MSG: usize = 1024;

/// Scratch buffer size: the largest message we build is a rule of at most 128
/// expressions with names of at most 255 bytes each, far below this.
const SCRATCH_BYTES: usize = 256 * 1024;

/// `NFT_REG_1`, the only data register dockfw uses.
const REG_1: u32 = libc::NFT_REG_1 as u32;
/// `NFT_REG_VERDICT`.
const REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;

/// Owns a libnftnl object and frees it on drop.
struct Owned<T> {
    ptr: NonNull<T>,
    free: unsafe extern "C" fn(*const T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr` (from a libnftnl `*_alloc`); aborts on
    /// allocation failure like the standard library does.
    fn new(ptr: *mut T, free: unsafe extern "C" fn(*const T)) -> Self {
        match NonNull::new(ptr) {
            Some(ptr) => Self { ptr, free },
            None => std::process::abort(),
        }
    }

    fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the matching libnftnl allocator, is owned by
        // us alone and is freed exactly once.
        unsafe { (self.free)(self.ptr.as_ptr()) }
    }
}

fn table_obj() -> Owned<sys::nftnl_table> {
    // SAFETY: plain allocation, no preconditions.
    Owned::new(unsafe { sys::nftnl_table_alloc() }, sys::nftnl_table_free)
}
fn chain_obj() -> Owned<sys::nftnl_chain> {
    // SAFETY: plain allocation, no preconditions.
    Owned::new(unsafe { sys::nftnl_chain_alloc() }, sys::nftnl_chain_free)
}
fn set_obj() -> Owned<sys::nftnl_set> {
    // SAFETY: plain allocation, no preconditions.
    Owned::new(unsafe { sys::nftnl_set_alloc() }, sys::nftnl_set_free)
}
fn rule_obj() -> Owned<sys::nftnl_rule> {
    // SAFETY: plain allocation, no preconditions.
    Owned::new(unsafe { sys::nftnl_rule_alloc() }, sys::nftnl_rule_free)
}
fn flowtable_obj() -> Owned<sys::nftnl_flowtable> {
    // SAFETY: plain allocation, no preconditions.
    Owned::new(unsafe { sys::nftnl_flowtable_alloc() }, sys::nftnl_flowtable_free)
}
fn gen_obj() -> Owned<sys::nftnl_gen> {
    // SAFETY: plain allocation, no preconditions.
    Owned::new(unsafe { sys::nftnl_gen_alloc() }, sys::nftnl_gen_free)
}

/// A C string for libnftnl; the encoder has already rejected NUL bytes.
fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// Reads a C string libnftnl returned (NULL reads as empty).
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that outlives the call.
unsafe fn read_str(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

/// Reads a byte attribute libnftnl returned with its length.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes.
unsafe fn read_bytes(ptr: *const c_void, len: u32) -> Vec<u8> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize) }.to_vec()
}

/// Builds messages into a reusable scratch buffer.
pub(crate) struct MsgWriter {
    // u32 words keep the buffer aligned for `nlmsghdr`.
    scratch: Vec<u32>,
}

impl std::fmt::Debug for MsgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MsgWriter")
    }
}

impl MsgWriter {
    pub(crate) fn new() -> Self {
        Self {
            scratch: vec![0; SCRATCH_BYTES / 4],
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

    /// `NEWTABLE`/`DELTABLE` for an inet table.
    pub(crate) fn table(&mut self, add: bool, flags: i32, seq: u32, name: &str) -> &[u8] {
        let table = table_obj();
        let name = cstr(name);
        // SAFETY: `table` is a live object; libnftnl copies the string.
        unsafe {
            sys::nftnl_table_set_u32(table.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16, INET);
            sys::nftnl_table_set_str(table.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            sys::nftnl_table_set_u32(table.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, 0);
        }
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
        self.build(ty as u32, INET as u16, flags, seq, |nlh| {
            // SAFETY: `nlh` heads a message in our scratch buffer with room to spare.
            unsafe { sys::nftnl_table_nlmsg_build_payload(nlh, table.as_ptr()) }
        })
    }

    /// `NEWCHAIN`; a base chain gets type filter, policy accept and `hook`.
    pub(crate) fn chain(&mut self, seq: u32, table: &str, name: &str, hook: Option<(u32, i32)>) -> &[u8] {
        let chain = chain_obj();
        let (table, name) = (cstr(table), cstr(name));
        // SAFETY: `chain` is a live object; libnftnl copies the strings.
        unsafe {
            let c = chain.as_ptr();
            sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_FAMILY as u16, INET);
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
            if let Some((hooknum, priority)) = hook {
                sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16, hooknum);
                sys::nftnl_chain_set_s32(c, sys::NFTNL_CHAIN_PRIO as u16, priority);
                sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TYPE as u16, c"filter".as_ptr());
                sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_POLICY as u16, libc::NF_ACCEPT as u32);
            }
        }
        let flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;
        self.build(libc::NFT_MSG_NEWCHAIN as u32, INET as u16, flags, seq, |nlh| {
            // SAFETY: as in `table`.
            unsafe { sys::nftnl_chain_nlmsg_build_payload(nlh, chain.as_ptr()) }
        })
    }

    /// `NEWSET`.
    pub(crate) fn set(&mut self, seq: u32, spec: &SetSpec) -> &[u8] {
        let set = set_obj();
        let (table, name) = (cstr(&spec.table), cstr(&spec.name));
        // SAFETY: `set` is a live object; libnftnl copies strings and data.
        unsafe {
            let s = set.as_ptr();
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, INET);
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
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
        let flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;
        self.build(libc::NFT_MSG_NEWSET as u32, INET as u16, flags, seq, |nlh| {
            // SAFETY: as in `table`.
            unsafe { sys::nftnl_set_nlmsg_build_payload(nlh, set.as_ptr()) }
        })
    }

    /// `NEWSETELEM` (or with `delete`, `DELSETELEM`) with at most
    /// [`ELEMS_PER_MSG`] `(key, interval end)` elements.
    pub(crate) fn elems(
        &mut self,
        seq: u32,
        table: &str,
        set_name: &str,
        delete: bool,
        elems: &[(Vec<u8>, bool)],
    ) -> &[u8] {
        assert!(elems.len() <= ELEMS_PER_MSG);
        let set = set_obj();
        let (table, name) = (cstr(table), cstr(set_name));
        // SAFETY: `set` is a live object; each element is handed over to the
        // set (which frees it); libnftnl copies the key bytes.
        unsafe {
            let s = set.as_ptr();
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, INET);
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
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
        let (ty, flags) = if delete {
            (libc::NFT_MSG_DELSETELEM, libc::NLM_F_ACK)
        } else {
            (
                libc::NFT_MSG_NEWSETELEM,
                libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK,
            )
        };
        self.build(ty as u32, INET as u16, flags, seq, |nlh| {
            // SAFETY: as in `table`; the element count is capped so the
            // payload fits the scratch buffer.
            unsafe { sys::nftnl_set_elems_nlmsg_build_payload(nlh, set.as_ptr()) }
        })
    }

    /// `DELSET` of set `name`.
    pub(crate) fn set_delete(&mut self, seq: u32, table: &str, name: &str) -> &[u8] {
        let set = set_obj();
        let (table, name) = (cstr(table), cstr(name));
        // SAFETY: `set` is a live object; libnftnl copies the strings.
        unsafe {
            let s = set.as_ptr();
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, INET);
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
        }
        self.build(
            libc::NFT_MSG_DELSET as u32,
            INET as u16,
            libc::NLM_F_ACK,
            seq,
            |nlh| {
                // SAFETY: as in `table`.
                unsafe { sys::nftnl_set_nlmsg_build_payload(nlh, set.as_ptr()) }
            },
        )
    }

    /// `DELCHAIN` of chain `name` (the kernel also deletes its rules).
    pub(crate) fn chain_delete(&mut self, seq: u32, table: &str, name: &str) -> &[u8] {
        let chain = chain_obj();
        let (table, name) = (cstr(table), cstr(name));
        // SAFETY: `chain` is a live object; libnftnl copies the strings.
        unsafe {
            let c = chain.as_ptr();
            sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_FAMILY as u16, INET);
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
        }
        self.build(
            libc::NFT_MSG_DELCHAIN as u32,
            INET as u16,
            libc::NLM_F_ACK,
            seq,
            |nlh| {
                // SAFETY: as in `table`.
                unsafe { sys::nftnl_chain_nlmsg_build_payload(nlh, chain.as_ptr()) }
            },
        )
    }

    /// `DELRULE`: the rule with `handle` in `chain`, or (`None`) every rule
    /// of the chain.
    pub(crate) fn rule_delete(&mut self, seq: u32, table: &str, chain: &str, handle: Option<u64>) -> &[u8] {
        let rule = rule_obj();
        let (table, chain) = (cstr(table), cstr(chain));
        // SAFETY: `rule` is a live object; libnftnl copies the strings.
        unsafe {
            let r = rule.as_ptr();
            sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, INET);
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
            if let Some(handle) = handle {
                sys::nftnl_rule_set_u64(r, sys::NFTNL_RULE_HANDLE as u16, handle);
            }
        }
        self.build(
            libc::NFT_MSG_DELRULE as u32,
            INET as u16,
            libc::NLM_F_ACK,
            seq,
            |nlh| {
                // SAFETY: as in `table`.
                unsafe { sys::nftnl_rule_nlmsg_build_payload(nlh, rule.as_ptr()) }
            },
        )
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
        let rule = rule_obj();
        let (table, chain) = (cstr(table), cstr(chain));
        // SAFETY: `rule` is a live object; libnftnl copies strings and data
        // and takes ownership of each expression added.
        unsafe {
            let r = rule.as_ptr();
            sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, INET);
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
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
        let flags = libc::NLM_F_CREATE | place | libc::NLM_F_EXCL | libc::NLM_F_ACK;
        self.build(libc::NFT_MSG_NEWRULE as u32, INET as u16, flags, seq, |nlh| {
            // SAFETY: as in `table`.
            unsafe { sys::nftnl_rule_nlmsg_build_payload(nlh, rule.as_ptr()) }
        })
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
        let obj = table_obj();
        let name = cstr(table);
        // SAFETY: `obj` is live; libnftnl copies the string.
        unsafe { sys::nftnl_table_set_str(obj.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr()) };
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        self.build(libc::NFT_MSG_GETTABLE as u32, INET as u16, flags, seq, |nlh| {
            // SAFETY: as in `table`.
            unsafe { sys::nftnl_table_nlmsg_build_payload(nlh, obj.as_ptr()) }
        })
        .to_vec()
    }

    /// A dump request (`GETCHAIN`, `GETSET`, `GETRULE`) filtered by table.
    pub(crate) fn dump(&mut self, seq: u32, what: Dump, table: &str) -> Vec<u8> {
        let table = cstr(table);
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_DUMP;
        match what {
            Dump::Chains => {
                let obj = chain_obj();
                // SAFETY: `obj` is live; libnftnl copies the string.
                unsafe {
                    sys::nftnl_chain_set_str(obj.as_ptr(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr())
                };
                self.build(libc::NFT_MSG_GETCHAIN as u32, INET as u16, flags, seq, |nlh| {
                    // SAFETY: as in `table`.
                    unsafe { sys::nftnl_chain_nlmsg_build_payload(nlh, obj.as_ptr()) }
                })
                .to_vec()
            }
            Dump::Sets => {
                let obj = set_obj();
                // SAFETY: `obj` is live; libnftnl copies the string.
                unsafe { sys::nftnl_set_set_str(obj.as_ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr()) };
                self.build(libc::NFT_MSG_GETSET as u32, INET as u16, flags, seq, |nlh| {
                    // SAFETY: as in `table`.
                    unsafe { sys::nftnl_set_nlmsg_build_payload(nlh, obj.as_ptr()) }
                })
                .to_vec()
            }
            Dump::Elements(set) => {
                let obj = set_obj();
                let name = cstr(set);
                // SAFETY: `obj` is live; libnftnl copies the strings.
                unsafe {
                    sys::nftnl_set_set_str(obj.as_ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
                    sys::nftnl_set_set_str(obj.as_ptr(), sys::NFTNL_SET_NAME as u16, name.as_ptr());
                }
                self.build(libc::NFT_MSG_GETSETELEM as u32, INET as u16, flags, seq, |nlh| {
                    // SAFETY: as in `table`.
                    unsafe { sys::nftnl_set_elems_nlmsg_build_payload(nlh, obj.as_ptr()) }
                })
                .to_vec()
            }
            Dump::Objects => {
                let obj = Owned::new(
                    // SAFETY: plain allocation, no preconditions.
                    unsafe { sys::nftnl_obj_alloc() },
                    sys::nftnl_obj_free,
                );
                // SAFETY: `obj` is live; libnftnl copies the string. Without a
                // type the kernel dumps objects of every type.
                unsafe { sys::nftnl_obj_set_str(obj.as_ptr(), sys::NFTNL_OBJ_TABLE as u16, table.as_ptr()) };
                self.build(libc::NFT_MSG_GETOBJ as u32, INET as u16, flags, seq, |nlh| {
                    // SAFETY: as in `table`.
                    unsafe { sys::nftnl_obj_nlmsg_build_payload(nlh, obj.as_ptr()) }
                })
                .to_vec()
            }
            Dump::Flowtables => {
                let obj = flowtable_obj();
                // SAFETY: `obj` is live; libnftnl copies the string.
                unsafe {
                    sys::nftnl_flowtable_set_str(
                        obj.as_ptr(),
                        sys::NFTNL_FLOWTABLE_TABLE as u16,
                        table.as_ptr(),
                    )
                };
                self.build(NFT_MSG_GETFLOWTABLE, INET as u16, flags, seq, |nlh| {
                    // SAFETY: as in `table`.
                    unsafe { sys::nftnl_flowtable_nlmsg_build_payload(nlh, obj.as_ptr()) }
                })
                .to_vec()
            }
            Dump::Rules => {
                let obj = rule_obj();
                // SAFETY: `obj` is live; libnftnl copies the string.
                unsafe {
                    sys::nftnl_rule_set_str(obj.as_ptr(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr())
                };
                self.build(libc::NFT_MSG_GETRULE as u32, INET as u16, flags, seq, |nlh| {
                    // SAFETY: as in `table`.
                    unsafe { sys::nftnl_rule_nlmsg_build_payload(nlh, obj.as_ptr()) }
                })
                .to_vec()
            }
        }
    }
}

/// `NFPROTO_INET`.
const INET: u32 = libc::NFPROTO_INET as u32;

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

/// Everything a `NEWSET` message carries for dockfw's sets.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Allocates the libnftnl expression for `expr`; the caller owns it.
fn build_expr(expr: &Expr) -> *mut sys::nftnl_expr {
    let name = cstr(expr.name());
    // SAFETY: allocation by name; NULL (unknown name) aborts below.
    let e = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    if e.is_null() {
        std::process::abort();
    }
    let u8_ = |k: u32, v: u8| {
        // SAFETY: `e` is a live expression of the kind this attribute belongs to.
        unsafe { sys::nftnl_expr_set_u8(e, k as u16, v) }
    };
    let u32_ = |k: u32, v: u32| {
        // SAFETY: as above.
        unsafe { sys::nftnl_expr_set_u32(e, k as u16, v) }
    };
    let u64_ = |k: u32, v: u64| {
        // SAFETY: as above.
        unsafe { sys::nftnl_expr_set_u64(e, k as u16, v) }
    };
    let data = |k: u32, v: &[u8]| {
        // SAFETY: as above; libnftnl copies `v.len()` bytes.
        unsafe { sys::nftnl_expr_set(e, k as u16, v.as_ptr().cast(), v.len() as u32) };
    };
    let string = |k: u32, v: &str| {
        let v = cstr(v);
        // SAFETY: as above; libnftnl copies the string.
        unsafe { sys::nftnl_expr_set_str(e, k as u16, v.as_ptr()) };
    };
    match expr {
        Expr::Meta { key } => {
            u32_(sys::NFTNL_EXPR_META_KEY, *key);
            u32_(sys::NFTNL_EXPR_META_DREG, REG_1);
        }
        Expr::Cmp { op, data: d } => {
            u32_(sys::NFTNL_EXPR_CMP_SREG, REG_1);
            u32_(sys::NFTNL_EXPR_CMP_OP, *op);
            data(sys::NFTNL_EXPR_CMP_DATA, d);
        }
        Expr::Bitwise { mask, xor } => {
            u32_(sys::NFTNL_EXPR_BITWISE_SREG, REG_1);
            u32_(sys::NFTNL_EXPR_BITWISE_DREG, REG_1);
            u32_(sys::NFTNL_EXPR_BITWISE_LEN, mask.len() as u32);
            data(sys::NFTNL_EXPR_BITWISE_MASK, mask);
            data(sys::NFTNL_EXPR_BITWISE_XOR, xor);
        }
        Expr::Ct { key, dir } => {
            u32_(sys::NFTNL_EXPR_CT_DREG, REG_1);
            u32_(sys::NFTNL_EXPR_CT_KEY, *key);
            if let Some(dir) = dir {
                u8_(sys::NFTNL_EXPR_CT_DIR, *dir);
            }
        }
        Expr::Payload { base, offset, len } => {
            u32_(sys::NFTNL_EXPR_PAYLOAD_DREG, REG_1);
            u32_(sys::NFTNL_EXPR_PAYLOAD_BASE, *base);
            u32_(sys::NFTNL_EXPR_PAYLOAD_OFFSET, *offset);
            u32_(sys::NFTNL_EXPR_PAYLOAD_LEN, *len);
        }
        Expr::Lookup { set, flags } => {
            u32_(sys::NFTNL_EXPR_LOOKUP_SREG, REG_1);
            string(sys::NFTNL_EXPR_LOOKUP_SET, set);
            if *flags != 0 {
                u32_(sys::NFTNL_EXPR_LOOKUP_FLAGS, *flags);
            }
        }
        Expr::Range { op, from, to } => {
            u32_(sys::NFTNL_EXPR_RANGE_SREG, REG_1);
            u32_(sys::NFTNL_EXPR_RANGE_OP, *op);
            data(sys::NFTNL_EXPR_RANGE_FROM_DATA, from);
            data(sys::NFTNL_EXPR_RANGE_TO_DATA, to);
        }
        Expr::Limit {
            rate,
            unit,
            burst,
            flags,
        } => {
            u64_(sys::NFTNL_EXPR_LIMIT_RATE, *rate);
            u64_(sys::NFTNL_EXPR_LIMIT_UNIT, *unit);
            u32_(sys::NFTNL_EXPR_LIMIT_BURST, *burst);
            u32_(sys::NFTNL_EXPR_LIMIT_TYPE, LIMIT_PKTS);
            u32_(sys::NFTNL_EXPR_LIMIT_FLAGS, *flags);
        }
        Expr::Dynset {
            op,
            set,
            timeout_ms,
            exprs,
        } => {
            u32_(sys::NFTNL_EXPR_DYNSET_SREG_KEY, REG_1);
            u32_(sys::NFTNL_EXPR_DYNSET_OP, *op);
            string(sys::NFTNL_EXPR_DYNSET_SET_NAME, set);
            if *timeout_ms != 0 {
                u64_(sys::NFTNL_EXPR_DYNSET_TIMEOUT, *timeout_ms);
            }
            for inner in exprs {
                // SAFETY: `e` is a live dynset; it takes ownership of `inner`.
                unsafe { sys::nftnl_expr_add_expr(e, sys::NFTNL_EXPR_DYNSET_EXPRESSIONS, build_expr(inner)) };
            }
        }
        Expr::Connlimit { count, flags } => {
            u32_(sys::NFTNL_EXPR_CONNLIMIT_COUNT, *count);
            u32_(sys::NFTNL_EXPR_CONNLIMIT_FLAGS, *flags);
        }
        Expr::Log { prefix } => string(sys::NFTNL_EXPR_LOG_PREFIX, prefix),
        Expr::Counter { .. } => {}
        Expr::Verdict { code, chain } => {
            u32_(sys::NFTNL_EXPR_IMM_DREG, REG_VERDICT);
            u32_(sys::NFTNL_EXPR_IMM_VERDICT, *code as u32);
            if let Some(chain) = chain {
                string(sys::NFTNL_EXPR_IMM_CHAIN, chain);
            }
        }
        Expr::Immediate { data: d } => {
            u32_(sys::NFTNL_EXPR_IMM_DREG, REG_1);
            data(sys::NFTNL_EXPR_IMM_DATA, d);
        }
        Expr::CtSet { key } => {
            u32_(sys::NFTNL_EXPR_CT_KEY, *key);
            u32_(sys::NFTNL_EXPR_CT_SREG, REG_1);
        }
        Expr::Reject { kind, code } => {
            u32_(sys::NFTNL_EXPR_REJECT_TYPE, *kind);
            if *kind != libc::NFT_REJECT_TCP_RST as u32 {
                u8_(sys::NFTNL_EXPR_REJECT_CODE, *code);
            }
        }
        Expr::Other(_) => {}
    }
    e
}

/// `NFT_LIMIT_PKTS`.
const LIMIT_PKTS: u32 = 0;
/// `NFT_DYNSET_F_INV` (not in libc).
const DYNSET_F_INV: u32 = 1;
/// `LOGLEVEL_WARNING`: the level the kernel logs at (and dumps) when none is given.
const LOG_LEVEL_WARNING: u32 = 4;

/// Reads a libnftnl expression back into an [`Expr`].
///
/// # Safety
/// `e` must point to a live expression.
unsafe fn read_expr(e: *const sys::nftnl_expr) -> Expr {
    // SAFETY (all closures): `e` is live per the caller; attribute getters
    // return zero/NULL for absent attributes, and we check `is_set` where
    // absence matters.
    let is_set = |k: u32| unsafe { sys::nftnl_expr_is_set(e, k as u16) };
    let u8_ = |k: u32| unsafe { sys::nftnl_expr_get_u8(e, k as u16) };
    let u32_ = |k: u32| unsafe { sys::nftnl_expr_get_u32(e, k as u16) };
    let u64_ = |k: u32| unsafe { sys::nftnl_expr_get_u64(e, k as u16) };
    let string = |k: u32| unsafe { read_str(sys::nftnl_expr_get_str(e, k as u16)) };
    let data = |k: u32| unsafe {
        let mut len = 0u32;
        let ptr = sys::nftnl_expr_get(e, k as u16, &mut len);
        read_bytes(ptr, len)
    };
    let reg_ok = |k: u32| !is_set(k) || u32_(k) == REG_1;
    let name = string(sys::NFTNL_EXPR_NAME);
    let other = || Expr::Other(name.clone());
    match name.as_str() {
        "meta" if reg_ok(sys::NFTNL_EXPR_META_DREG) && is_set(sys::NFTNL_EXPR_META_DREG) => Expr::Meta {
            key: u32_(sys::NFTNL_EXPR_META_KEY),
        },
        "cmp" if reg_ok(sys::NFTNL_EXPR_CMP_SREG) => Expr::Cmp {
            op: u32_(sys::NFTNL_EXPR_CMP_OP),
            data: data(sys::NFTNL_EXPR_CMP_DATA),
        },
        "bitwise"
            if reg_ok(sys::NFTNL_EXPR_BITWISE_SREG)
                && reg_ok(sys::NFTNL_EXPR_BITWISE_DREG)
                && u32_(sys::NFTNL_EXPR_BITWISE_OP) == 0 =>
        {
            Expr::Bitwise {
                mask: data(sys::NFTNL_EXPR_BITWISE_MASK),
                xor: data(sys::NFTNL_EXPR_BITWISE_XOR),
            }
        }
        "ct" if reg_ok(sys::NFTNL_EXPR_CT_DREG) && is_set(sys::NFTNL_EXPR_CT_DREG) => Expr::Ct {
            key: u32_(sys::NFTNL_EXPR_CT_KEY),
            dir: is_set(sys::NFTNL_EXPR_CT_DIR).then(|| u8_(sys::NFTNL_EXPR_CT_DIR)),
        },
        "ct" if !is_set(sys::NFTNL_EXPR_CT_DREG)
            && is_set(sys::NFTNL_EXPR_CT_SREG)
            && u32_(sys::NFTNL_EXPR_CT_SREG) == REG_1
            && !is_set(sys::NFTNL_EXPR_CT_DIR) =>
        {
            Expr::CtSet {
                key: u32_(sys::NFTNL_EXPR_CT_KEY),
            }
        }
        "payload" if reg_ok(sys::NFTNL_EXPR_PAYLOAD_DREG) && is_set(sys::NFTNL_EXPR_PAYLOAD_DREG) => {
            Expr::Payload {
                base: u32_(sys::NFTNL_EXPR_PAYLOAD_BASE),
                offset: u32_(sys::NFTNL_EXPR_PAYLOAD_OFFSET),
                len: u32_(sys::NFTNL_EXPR_PAYLOAD_LEN),
            }
        }
        "lookup" if reg_ok(sys::NFTNL_EXPR_LOOKUP_SREG) && !is_set(sys::NFTNL_EXPR_LOOKUP_DREG) => {
            Expr::Lookup {
                set: string(sys::NFTNL_EXPR_LOOKUP_SET),
                flags: u32_(sys::NFTNL_EXPR_LOOKUP_FLAGS),
            }
        }
        "range" if reg_ok(sys::NFTNL_EXPR_RANGE_SREG) => Expr::Range {
            op: u32_(sys::NFTNL_EXPR_RANGE_OP),
            from: data(sys::NFTNL_EXPR_RANGE_FROM_DATA),
            to: data(sys::NFTNL_EXPR_RANGE_TO_DATA),
        },
        "limit" if u32_(sys::NFTNL_EXPR_LIMIT_TYPE) == LIMIT_PKTS => Expr::Limit {
            rate: u64_(sys::NFTNL_EXPR_LIMIT_RATE),
            unit: u64_(sys::NFTNL_EXPR_LIMIT_UNIT),
            burst: u32_(sys::NFTNL_EXPR_LIMIT_BURST),
            flags: u32_(sys::NFTNL_EXPR_LIMIT_FLAGS),
        },
        // dockfw's dynsets are never inverted (NFT_DYNSET_F_INV).
        "dynset"
            if reg_ok(sys::NFTNL_EXPR_DYNSET_SREG_KEY)
                && !is_set(sys::NFTNL_EXPR_DYNSET_SREG_DATA)
                && u32_(sys::NFTNL_EXPR_DYNSET_FLAGS) & DYNSET_F_INV == 0 =>
        {
            let mut exprs = Vec::new();
            // SAFETY: `e` is a live dynset; the callback only reads each
            // inner expression, which lives as long as `e`.
            unsafe {
                sys::nftnl_expr_expr_foreach(e, Some(collect_inner), (&raw mut exprs).cast());
            }
            Expr::Dynset {
                op: u32_(sys::NFTNL_EXPR_DYNSET_OP),
                set: string(sys::NFTNL_EXPR_DYNSET_SET_NAME),
                timeout_ms: u64_(sys::NFTNL_EXPR_DYNSET_TIMEOUT),
                exprs,
            }
        }
        "connlimit" => Expr::Connlimit {
            count: u32_(sys::NFTNL_EXPR_CONNLIMIT_COUNT),
            flags: u32_(sys::NFTNL_EXPR_CONNLIMIT_FLAGS),
        },
        // dockfw logs at the default level (warning, which the kernel
        // dumps even when unset) with no flags; any other level or flags
        // (or nflog's group) is not dockfw's statement.
        "log"
            if !is_set(sys::NFTNL_EXPR_LOG_GROUP)
                && (!is_set(sys::NFTNL_EXPR_LOG_LEVEL)
                    || u32_(sys::NFTNL_EXPR_LOG_LEVEL) == LOG_LEVEL_WARNING)
                && u32_(sys::NFTNL_EXPR_LOG_FLAGS) == 0 =>
        {
            Expr::Log {
                prefix: string(sys::NFTNL_EXPR_LOG_PREFIX),
            }
        }
        "counter" => Expr::Counter {
            packets: u64_(sys::NFTNL_EXPR_CTR_PACKETS),
            bytes: u64_(sys::NFTNL_EXPR_CTR_BYTES),
        },
        "immediate" if u32_(sys::NFTNL_EXPR_IMM_DREG) == REG_VERDICT => Expr::Verdict {
            code: u32_(sys::NFTNL_EXPR_IMM_VERDICT) as i32,
            chain: is_set(sys::NFTNL_EXPR_IMM_CHAIN).then(|| string(sys::NFTNL_EXPR_IMM_CHAIN)),
        },
        "immediate" if u32_(sys::NFTNL_EXPR_IMM_DREG) == REG_1 && is_set(sys::NFTNL_EXPR_IMM_DATA) => {
            Expr::Immediate {
                data: data(sys::NFTNL_EXPR_IMM_DATA),
            }
        }
        "reject" => Expr::Reject {
            kind: u32_(sys::NFTNL_EXPR_REJECT_TYPE),
            code: u8_(sys::NFTNL_EXPR_REJECT_CODE),
        },
        _ => other(),
    }
}

/// `nftnl_expr_expr_foreach` callback: appends each inner expression.
extern "C" fn collect_inner(e: *mut sys::nftnl_expr, data: *mut c_void) -> i32 {
    // SAFETY: `data` is the `Vec<Expr>` passed by `read_expr`, exclusively
    // borrowed for the duration of the foreach; `e` is live.
    unsafe {
        let exprs = &mut *data.cast::<Vec<Expr>>();
        exprs.push(read_expr(e));
    }
    0
}

/// Checks that `msg` can be handed to libnftnl as a `nlmsghdr`.
fn header(msg: &[u8]) -> Result<*const libc::nlmsghdr, String> {
    let ptr = msg.as_ptr().cast::<libc::nlmsghdr>();
    if msg.len() < size_of::<libc::nlmsghdr>() || !ptr.is_aligned() {
        return Err("short or misaligned netlink message".into());
    }
    Ok(ptr)
}

fn parsed(ret: i32, what: &str) -> Result<(), String> {
    if ret < 0 {
        Err(format!("cannot parse {what} message"))
    } else {
        Ok(())
    }
}

/// The ruleset generation id from a `NEWGEN` reply.
pub(crate) fn parse_gen(msg: &[u8]) -> Result<u32, String> {
    let nlh = header(msg)?;
    let obj = gen_obj();
    // SAFETY: `nlh` heads a complete, aligned message (checked by `header` and
    // by the receive path, which only yields whole messages).
    parsed(
        unsafe { sys::nftnl_gen_nlmsg_parse(nlh, obj.as_ptr()) },
        "generation",
    )?;
    // SAFETY: `obj` is live.
    Ok(unsafe { sys::nftnl_gen_get_u32(obj.as_ptr(), sys::NFTNL_GEN_ID as u16) })
}

/// A table's attributes as dumped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TableInfo {
    /// `NFT_TABLE_F_*` (dockfw writes 0).
    pub flags: u32,
    /// The table's userdata (nft keeps the table comment there).
    pub userdata: Vec<u8>,
}

/// A table from a `NEWTABLE` reply.
pub(crate) fn parse_table(msg: &[u8]) -> Result<TableInfo, String> {
    let nlh = header(msg)?;
    let obj = table_obj();
    // SAFETY: as in `parse_gen`.
    parsed(
        unsafe { sys::nftnl_table_nlmsg_parse(nlh, obj.as_ptr()) },
        "table",
    )?;
    let t = obj.as_ptr();
    // SAFETY: `t` is live; the data pointer points into it and is copied at once.
    unsafe {
        let mut len = 0u32;
        let udata = sys::nftnl_table_get_data(t, sys::NFTNL_TABLE_USERDATA as u16, &mut len);
        Ok(TableInfo {
            flags: sys::nftnl_table_get_u32(t, sys::NFTNL_TABLE_FLAGS as u16),
            userdata: read_bytes(udata, len),
        })
    }
}

/// A chain as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainInfo {
    pub table: String,
    pub name: String,
    /// The kernel's handle: tells apart objects of the same name.
    pub handle: u64,
    /// `(hooknum, priority, type, policy)` for base chains.
    pub hook: Option<(u32, i32, String, u32)>,
    /// Devices a base chain is bound to (netdev/ingress hooks; dockfw binds none).
    pub devices: Vec<String>,
    /// `NFT_CHAIN_*` flags (the kernel sets `NFT_CHAIN_BASE` on base chains).
    pub flags: u32,
    /// The chain's userdata (nft keeps the chain comment there; dockfw writes none).
    pub userdata: Vec<u8>,
}

pub(crate) fn parse_chain(msg: &[u8]) -> Result<ChainInfo, String> {
    let nlh = header(msg)?;
    let obj = chain_obj();
    // SAFETY: as in `parse_gen`.
    parsed(
        unsafe { sys::nftnl_chain_nlmsg_parse(nlh, obj.as_ptr()) },
        "chain",
    )?;
    let c = obj.as_ptr();
    // SAFETY: `c` is live; string getters return pointers into it.
    unsafe {
        let hook = sys::nftnl_chain_is_set(c, sys::NFTNL_CHAIN_HOOKNUM as u16).then(|| {
            (
                sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16),
                sys::nftnl_chain_get_s32(c, sys::NFTNL_CHAIN_PRIO as u16),
                read_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TYPE as u16)),
                sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_POLICY as u16),
            )
        });
        let is_set = |k: u32| sys::nftnl_chain_is_set(c, k as u16);
        let mut devices = Vec::new();
        if is_set(sys::NFTNL_CHAIN_DEV) {
            devices.push(read_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_DEV as u16)));
        }
        if is_set(sys::NFTNL_CHAIN_DEVICES) {
            devices.extend(read_str_array(sys::nftnl_chain_get_array(
                c,
                sys::NFTNL_CHAIN_DEVICES as u16,
            )));
        }
        let mut len = 0u32;
        let udata = sys::nftnl_chain_get_data(c, sys::NFTNL_CHAIN_USERDATA as u16, &mut len);
        Ok(ChainInfo {
            table: read_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16)),
            name: read_str(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_NAME as u16)),
            handle: sys::nftnl_chain_get_u64(c, sys::NFTNL_CHAIN_HANDLE as u16),
            hook,
            devices,
            flags: if is_set(sys::NFTNL_CHAIN_FLAGS) {
                sys::nftnl_chain_get_u32(c, sys::NFTNL_CHAIN_FLAGS as u16)
            } else {
                0
            },
            userdata: if len > 0 {
                read_bytes(udata, len)
            } else {
                Vec::new()
            },
        })
    }
}

/// A set as dumped (`id` and `userdata` are not compared).
pub(crate) fn parse_set(msg: &[u8]) -> Result<SetSpec, String> {
    let nlh = header(msg)?;
    let obj = set_obj();
    // SAFETY: as in `parse_gen`.
    parsed(unsafe { sys::nftnl_set_nlmsg_parse(nlh, obj.as_ptr()) }, "set")?;
    let s = obj.as_ptr();
    // SAFETY: `s` is live; getters return values or pointers into it.
    unsafe {
        let is_set = |k: u32| sys::nftnl_set_is_set(s, k as u16);
        let mut len = 0u32;
        let udata = sys::nftnl_set_get_data(s, sys::NFTNL_SET_USERDATA as u16, &mut len);
        Ok(SetSpec {
            table: read_str(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16)),
            name: read_str(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16)),
            handle: sys::nftnl_set_get_u64(s, sys::NFTNL_SET_HANDLE as u16),
            id: 0,
            flags: sys::nftnl_set_get_u32(s, sys::NFTNL_SET_FLAGS as u16),
            key_type: sys::nftnl_set_get_u32(s, sys::NFTNL_SET_KEY_TYPE as u16),
            key_len: sys::nftnl_set_get_u32(s, sys::NFTNL_SET_KEY_LEN as u16),
            size: is_set(sys::NFTNL_SET_DESC_SIZE)
                .then(|| sys::nftnl_set_get_u32(s, sys::NFTNL_SET_DESC_SIZE as u16)),
            timeout_ms: is_set(sys::NFTNL_SET_TIMEOUT)
                .then(|| sys::nftnl_set_get_u64(s, sys::NFTNL_SET_TIMEOUT as u16)),
            userdata: read_bytes(udata, len),
            extra: set_extras(s),
        })
    }
}

/// What a dumped set holds beyond what [`MsgWriter::set`] writes.
///
/// # Safety
/// `s` must point to a live set.
unsafe fn set_extras(s: *const sys::nftnl_set) -> Vec<String> {
    // SAFETY (closures): `s` is live per the caller.
    let is_set = |k: u32| unsafe { sys::nftnl_set_is_set(s, k as u16) };
    let u32_ = |k: u32| unsafe { sys::nftnl_set_get_u32(s, k as u16) };
    let mut extra = Vec::new();
    // The kernel dumps a policy only when it is not the default (performance).
    if is_set(sys::NFTNL_SET_POLICY) {
        let policy = match u32_(sys::NFTNL_SET_POLICY) {
            0 => "performance".to_string(),
            1 => "memory".to_string(),
            other => other.to_string(),
        };
        extra.push(format!("policy {policy}"));
    }
    if is_set(sys::NFTNL_SET_GC_INTERVAL) {
        extra.push(format!("gc-interval {}ms", u32_(sys::NFTNL_SET_GC_INTERVAL)));
    }
    if is_set(sys::NFTNL_SET_EXPR) || is_set(sys::NFTNL_SET_EXPRESSIONS) {
        extra.push("expressions on every element".into());
    }
    if is_set(sys::NFTNL_SET_DATA_TYPE) || is_set(sys::NFTNL_SET_OBJ_TYPE) {
        extra.push("data (a map)".into());
    }
    extra
}

/// Whether element userdata is only the hint nft writes on an interval
/// that runs to the top of the key range (`NFTNL_UDATA_SET_ELEM_FLAGS` =
/// `NFTNL_SET_ELEM_F_INTERVAL_OPEN`): it says what the keys already say.
fn is_open_interval_hint(udata: &[u8]) -> bool {
    const UDATA_SET_ELEM_FLAGS: u8 = 1;
    let open = sys::NFTNL_SET_ELEM_F_INTERVAL_OPEN.to_ne_bytes();
    matches!(udata, [UDATA_SET_ELEM_FLAGS, 4, value @ ..] if *value == open)
}

/// Dumped set elements as `(key, flags)`.
pub(crate) type Elems = Vec<(Vec<u8>, u32)>;

/// The `(key, flags)` of each element in a `NEWSETELEM` dump message; what
/// an element holds beyond that (dockfw writes nothing more) goes to
/// `extra`, in words.
pub(crate) fn parse_elems(msg: &[u8], out: &mut Elems, extra: &mut Vec<String>) -> Result<(), String> {
    let nlh = header(msg)?;
    let obj = set_obj();
    // SAFETY: as in `parse_gen`.
    parsed(
        unsafe { sys::nftnl_set_elems_nlmsg_parse(nlh, obj.as_ptr()) },
        "set element",
    )?;
    // SAFETY: `obj` is live for the iterator's whole life; elements are only read.
    unsafe {
        let iter = sys::nftnl_set_elems_iter_create(obj.as_ptr());
        if iter.is_null() {
            std::process::abort();
        }
        let mut e = sys::nftnl_set_elems_iter_next(iter);
        while !e.is_null() {
            let mut len = 0u32;
            let key = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
            let flags = if sys::nftnl_set_elem_is_set(e, sys::NFTNL_SET_ELEM_FLAGS as u16) {
                sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16)
            } else {
                0
            };
            let key = read_bytes(key, len);
            let elem_is_set = |k: u32| sys::nftnl_set_elem_is_set(e, k as u16);
            // A timeout is content; an expiration only the state it leads to.
            let held = [
                (sys::NFTNL_SET_ELEM_TIMEOUT, "a timeout"),
                (sys::NFTNL_SET_ELEM_EXPR, "an expression"),
                (sys::NFTNL_SET_ELEM_EXPRESSIONS, "expressions"),
                (sys::NFTNL_SET_ELEM_DATA, "data"),
                (sys::NFTNL_SET_ELEM_VERDICT, "a verdict"),
                (sys::NFTNL_SET_ELEM_CHAIN, "a chain"),
                (sys::NFTNL_SET_ELEM_OBJREF, "an object reference"),
                (sys::NFTNL_SET_ELEM_KEY_END, "a range end key"),
            ];
            if elem_is_set(sys::NFTNL_SET_ELEM_USERDATA) {
                let mut len = 0u32;
                let udata = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_USERDATA as u16, &mut len);
                if !is_open_interval_hint(&read_bytes(udata, len)) {
                    extra.push(format!("element {key:02x?} has a comment or userdata"));
                }
            }
            for (attr, what) in held {
                if elem_is_set(attr) {
                    extra.push(format!("element {key:02x?} has {what}"));
                }
            }
            if flags & !(libc::NFT_SET_ELEM_INTERVAL_END as u32) != 0 {
                extra.push(format!("element {key:02x?} has flags {flags:#x}"));
            }
            out.push((key, flags));
            e = sys::nftnl_set_elems_iter_next(iter);
        }
        sys::nftnl_set_elems_iter_destroy(iter);
    }
    Ok(())
}

/// A rule as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleInfo {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub userdata: Vec<u8>,
    pub exprs: Vec<Expr>,
    /// Each expression as text, for showing rules dockfw did not write
    /// (state such as counter values left out).
    pub texts: Vec<String>,
}

pub(crate) fn parse_rule(msg: &[u8]) -> Result<RuleInfo, String> {
    let nlh = header(msg)?;
    let obj = rule_obj();
    // SAFETY: as in `parse_gen`.
    parsed(unsafe { sys::nftnl_rule_nlmsg_parse(nlh, obj.as_ptr()) }, "rule")?;
    let r = obj.as_ptr();
    // SAFETY: `r` is live for the iterator's whole life; expressions are only read.
    unsafe {
        let mut len = 0u32;
        let udata = sys::nftnl_rule_get_data(r, sys::NFTNL_RULE_USERDATA as u16, &mut len);
        let mut exprs = Vec::new();
        let mut texts = Vec::new();
        let iter = sys::nftnl_expr_iter_create(r);
        if iter.is_null() {
            std::process::abort();
        }
        let mut e = sys::nftnl_expr_iter_next(iter);
        while !e.is_null() {
            exprs.push(read_expr(e));
            texts.push(expr_text(e));
            e = sys::nftnl_expr_iter_next(iter);
        }
        sys::nftnl_expr_iter_destroy(iter);
        Ok(RuleInfo {
            table: read_str(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16)),
            chain: read_str(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_CHAIN as u16)),
            handle: sys::nftnl_rule_get_u64(r, sys::NFTNL_RULE_HANDLE as u16),
            userdata: read_bytes(udata, len),
            exprs,
            texts,
        })
    }
}

/// Reads a NULL-terminated array of C strings.
///
/// # Safety
/// `array` must be NULL or a NULL-terminated array of valid C strings that
/// outlive the call.
unsafe fn read_str_array(array: *const *const c_char) -> Vec<String> {
    let mut out = Vec::new();
    if array.is_null() {
        return out;
    }
    let mut at = 0;
    loop {
        // SAFETY: the array is NULL-terminated (caller), so every index up to
        // the terminator is in bounds.
        let item = unsafe { *array.add(at) };
        if item.is_null() {
            return out;
        }
        // SAFETY: each item is a valid C string (caller).
        out.push(unsafe { read_str(item) });
        at += 1;
    }
}

/// Runs a libnftnl `*_snprintf` into a buffer and returns the text.
fn snprintf_text(print: impl FnOnce(*mut c_char, usize) -> i32) -> String {
    let mut buf = vec![0u8; 4096];
    let written = print(buf.as_mut_ptr().cast(), buf.len());
    if written < 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

/// One expression as text: nft syntax for the few whose libnftnl text
/// carries state or reads badly, libnftnl's `[ NAME … ]` for the rest (the
/// form `nft --debug=netlink` prints).
///
/// # Safety
/// `e` must point to a live expression.
unsafe fn expr_text(e: *const sys::nftnl_expr) -> String {
    // SAFETY (closures): `e` is live per the caller.
    let is_set = |k: u32| unsafe { sys::nftnl_expr_is_set(e, k as u16) };
    let u32_ = |k: u32| unsafe { sys::nftnl_expr_get_u32(e, k as u16) };
    let u64_ = |k: u32| unsafe { sys::nftnl_expr_get_u64(e, k as u16) };
    let string = |k: u32| unsafe { read_str(sys::nftnl_expr_get_str(e, k as u16)) };
    let name = string(sys::NFTNL_EXPR_NAME);
    match name.as_str() {
        // Packet and byte counts are state, not content.
        "counter" => "counter".into(),
        "last" => "last".into(),
        "quota" => {
            let over = u32_(sys::NFTNL_EXPR_QUOTA_FLAGS) & 1 != 0;
            let bytes = u64_(sys::NFTNL_EXPR_QUOTA_BYTES);
            format!("quota {}{bytes} bytes", if over { "over " } else { "" })
        }
        "log" => {
            let mut words = vec!["log".to_string()];
            if is_set(sys::NFTNL_EXPR_LOG_PREFIX) {
                words.push(format!("prefix {:?}", string(sys::NFTNL_EXPR_LOG_PREFIX)));
            }
            if is_set(sys::NFTNL_EXPR_LOG_GROUP) {
                // SAFETY: `e` is live.
                let group = unsafe { sys::nftnl_expr_get_u16(e, sys::NFTNL_EXPR_LOG_GROUP as u16) };
                words.push(format!("group {group}"));
            }
            if is_set(sys::NFTNL_EXPR_LOG_LEVEL) {
                words.push(format!("level {}", u32_(sys::NFTNL_EXPR_LOG_LEVEL)));
            }
            if u32_(sys::NFTNL_EXPR_LOG_FLAGS) != 0 {
                words.push(format!("flags {:#x}", u32_(sys::NFTNL_EXPR_LOG_FLAGS)));
            }
            if is_set(sys::NFTNL_EXPR_LOG_SNAPLEN) && u32_(sys::NFTNL_EXPR_LOG_SNAPLEN) != 0 {
                words.push(format!("snaplen {}", u32_(sys::NFTNL_EXPR_LOG_SNAPLEN)));
            }
            words.join(" ")
        }
        _ => {
            let text = snprintf_text(|buf, len| {
                // SAFETY: `buf` is valid for `len` bytes; `e` is live.
                unsafe { sys::nftnl_expr_snprintf(buf, len, e, sys::NFTNL_OUTPUT_DEFAULT, 0) }
            });
            format!("[ {name} {text} ]")
        }
    }
}

/// A stateful object (counter, quota, ct helper, limit, …) as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectInfo {
    pub table: String,
    pub name: String,
    /// `NFT_OBJECT_*`.
    pub kind: u32,
    /// Its definition in nft syntax where known, else libnftnl's text;
    /// state (counts, consumed bytes) left out.
    pub text: String,
}

/// `nft`'s name for an `NFT_OBJECT_*` type.
fn object_kind(kind: u32) -> &'static str {
    match kind {
        1 => "counter",
        2 => "quota",
        3 => "ct helper",
        4 => "limit",
        5 => "connlimit",
        6 => "tunnel",
        7 => "ct timeout",
        8 => "secmark",
        9 => "ct expectation",
        10 => "synproxy",
        _ => "object",
    }
}

pub(crate) fn parse_object(msg: &[u8]) -> Result<ObjectInfo, String> {
    let nlh = header(msg)?;
    let obj = Owned::new(
        // SAFETY: plain allocation, no preconditions.
        unsafe { sys::nftnl_obj_alloc() },
        sys::nftnl_obj_free,
    );
    // SAFETY: as in `parse_gen`.
    parsed(unsafe { sys::nftnl_obj_nlmsg_parse(nlh, obj.as_ptr()) }, "object")?;
    let o = obj.as_ptr();
    // SAFETY (closures and block): `o` is live; string getters point into it.
    let u32_ = |k: u32| unsafe { sys::nftnl_obj_get_u32(o, k as u16) };
    let u64_ = |k: u32| unsafe { sys::nftnl_obj_get_u64(o, k as u16) };
    let string = |k: u32| unsafe { read_str(sys::nftnl_obj_get_str(o, k as u16)) };
    let kind = u32_(sys::NFTNL_OBJ_TYPE);
    let name = string(sys::NFTNL_OBJ_NAME);
    let body = match kind {
        1 => String::new(),
        2 => {
            let over = u32_(sys::NFTNL_OBJ_QUOTA_FLAGS) & 1 != 0;
            format!(
                " {{ {}{} bytes }}",
                if over { "over " } else { "" },
                u64_(sys::NFTNL_OBJ_QUOTA_BYTES)
            )
        }
        3 => {
            // SAFETY: `o` is live.
            let l4 = unsafe { sys::nftnl_obj_get_u8(o, sys::NFTNL_OBJ_CT_HELPER_L4PROTO as u16) };
            let l4 = match i32::from(l4) {
                libc::IPPROTO_TCP => "tcp".to_string(),
                libc::IPPROTO_UDP => "udp".to_string(),
                other => other.to_string(),
            };
            // SAFETY: `o` is live.
            let l3 = unsafe { sys::nftnl_obj_get_u16(o, sys::NFTNL_OBJ_CT_HELPER_L3PROTO as u16) };
            let l3 = match i32::from(l3) {
                libc::NFPROTO_IPV4 => "ip".to_string(),
                libc::NFPROTO_IPV6 => "ip6".to_string(),
                libc::NFPROTO_INET => "inet".to_string(),
                other => other.to_string(),
            };
            format!(
                " {{ type {:?} protocol {l4}; l3proto {l3}; }}",
                string(sys::NFTNL_OBJ_CT_HELPER_NAME)
            )
        }
        4 => {
            let unit = match u64_(sys::NFTNL_OBJ_LIMIT_UNIT) {
                1 => "second".to_string(),
                60 => "minute".to_string(),
                3600 => "hour".to_string(),
                86400 => "day".to_string(),
                other => format!("{other}s"),
            };
            let bytes = u32_(sys::NFTNL_OBJ_LIMIT_TYPE) == 1;
            format!(
                " {{ rate {}{}/{unit} burst {} {} }}",
                if u32_(sys::NFTNL_OBJ_LIMIT_FLAGS) & 1 != 0 {
                    "over "
                } else {
                    ""
                },
                u64_(sys::NFTNL_OBJ_LIMIT_RATE),
                u32_(sys::NFTNL_OBJ_LIMIT_BURST),
                if bytes { "bytes" } else { "packets" }
            )
        }
        _ => {
            let text = snprintf_text(|buf, len| {
                // SAFETY: `buf` is valid for `len` bytes; `o` is live.
                unsafe { sys::nftnl_obj_snprintf(buf, len, o, sys::NFTNL_OUTPUT_DEFAULT, 0) }
            });
            format!(" {{ [ {text} ] }}")
        }
    };
    Ok(ObjectInfo {
        table: string(sys::NFTNL_OBJ_TABLE),
        text: format!("{} {name}{body}", object_kind(kind)),
        name,
        kind,
    })
}

/// A flowtable as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlowtableInfo {
    pub table: String,
    pub name: String,
    /// Its definition in nft syntax.
    pub text: String,
}

pub(crate) fn parse_flowtable(msg: &[u8]) -> Result<FlowtableInfo, String> {
    let nlh = header(msg)?;
    let obj = flowtable_obj();
    // SAFETY: as in `parse_gen`.
    parsed(
        unsafe { sys::nftnl_flowtable_nlmsg_parse(nlh, obj.as_ptr()) },
        "flowtable",
    )?;
    let f = obj.as_ptr();
    // SAFETY: `f` is live; string getters point into it.
    unsafe {
        let name = read_str(sys::nftnl_flowtable_get_str(f, sys::NFTNL_FLOWTABLE_NAME as u16));
        let devices = read_str_array(sys::nftnl_flowtable_get_array(
            f,
            sys::NFTNL_FLOWTABLE_DEVICES as u16,
        ));
        let priority = sys::nftnl_flowtable_get_s32(f, sys::NFTNL_FLOWTABLE_PRIO as u16);
        let flags = sys::nftnl_flowtable_get_u32(f, sys::NFTNL_FLOWTABLE_FLAGS as u16);
        let mut text = format!("flowtable {name} {{ hook ingress priority {priority};");
        if !devices.is_empty() {
            text.push_str(&format!(" devices = {{ {} }};", devices.join(", ")));
        }
        if flags & 1 != 0 {
            text.push_str(" flags offload;");
        }
        if flags & 2 != 0 {
            text.push_str(" counter;");
        }
        text.push_str(" }");
        Ok(FlowtableInfo {
            table: read_str(sys::nftnl_flowtable_get_str(f, sys::NFTNL_FLOWTABLE_TABLE as u16)),
            name,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dynset dockfw would write, read back as itself; inverted (which
    /// dockfw never writes) it is not dockfw's.
    #[test]
    fn an_inverted_dynset_is_not_dockfws() {
        let dynset = Expr::Dynset {
            op: libc::NFT_DYNSET_OP_UPDATE as u32,
            set: "rule-1-rate-v4".into(),
            timeout_ms: 0,
            exprs: vec![],
        };
        let e = build_expr(&dynset);
        // SAFETY: `e` is the live expression just built; freed once below.
        unsafe {
            assert_eq!(read_expr(e), dynset);
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_DYNSET_FLAGS as u16, DYNSET_F_INV);
            assert_eq!(read_expr(e), Expr::Other("dynset".into()));
            sys::nftnl_expr_free(e);
        }
    }
}
