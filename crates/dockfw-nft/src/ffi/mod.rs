//! The libnftnl edge: building nf_tables netlink messages and parsing the
//! kernel's replies, through `nftnl::nftnl_sys`.
//!
//! Everything `unsafe` about libnftnl lives here, in three files by job:
//! [`writer`] builds messages (one typed helper per object kind names the
//! object and writes its payload), [`expr`] translates expressions both
//! ways, [`parse`] reads the kernel's replies. This file holds what they
//! share: ownership of libnftnl objects and reading C data.

mod expr;
mod parse;
mod writer;

pub(crate) use parse::{
    ChainInfo, Elems, FlowtableInfo, Key, ObjectInfo, RuleInfo, TableInfo, TimedElem, parse_chain,
    parse_elems, parse_flowtable, parse_gen, parse_object, parse_rule, parse_set, parse_table,
    parse_timed_elems,
};
pub(crate) use writer::{Dump, ELEMS_PER_MSG, ElementOp, MsgWriter, SetSpec};

use nftnl::nftnl_sys as sys;

/// nf_tables netlink attribute numbers (linux/netfilter/nf_tables.h) of set
/// element messages, which dockfw writes and walks without libnftnl.
pub(crate) mod attr {
    pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
    pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
    pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
    /// How a dump numbers each element's nest (a request numbers them 1, 2, …).
    pub(crate) const NFTA_LIST_ELEM: u16 = 1;
    pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
    pub(crate) const NFTA_SET_ELEM_FLAGS: u16 = 3;
    pub(crate) const NFTA_DATA_VALUE: u16 = 1;
}
use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;

/// `NFPROTO_INET`.
const INET: u32 = libc::NFPROTO_INET as u32;

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

/// A kind of libnftnl object: how it is allocated and freed.
trait Object {
    /// Frees an object from [`Object::alloc`].
    const FREE: unsafe extern "C" fn(*const Self);
    /// `nftnl_*_alloc`: NULL only if memory ran out.
    fn alloc() -> *mut Self;
}

impl<T: Object> Owned<T> {
    /// A new, empty object of kind `T`.
    fn empty() -> Self {
        Self::new(T::alloc(), T::FREE)
    }
}

/// Implements [`Object`] for a libnftnl type from its allocator and free.
macro_rules! object {
    ($($ty:ident: $alloc:ident, $free:ident;)*) => {$(
        impl Object for sys::$ty {
            const FREE: unsafe extern "C" fn(*const Self) = sys::$free;
            fn alloc() -> *mut Self {
                // SAFETY: plain allocation, no preconditions.
                unsafe { sys::$alloc() }
            }
        }
    )*};
}

object! {
    nftnl_table: nftnl_table_alloc, nftnl_table_free;
    nftnl_chain: nftnl_chain_alloc, nftnl_chain_free;
    nftnl_set: nftnl_set_alloc, nftnl_set_free;
    nftnl_rule: nftnl_rule_alloc, nftnl_rule_free;
    nftnl_obj: nftnl_obj_alloc, nftnl_obj_free;
    nftnl_flowtable: nftnl_flowtable_alloc, nftnl_flowtable_free;
    nftnl_gen: nftnl_gen_alloc, nftnl_gen_free;
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
