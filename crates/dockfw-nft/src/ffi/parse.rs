//! The kernel's replies: each dumped object read into a plain Rust value
//! (`*Info`, [`SetSpec`]), everything dockfw compares included.

use super::expr::{expr_text, read_expr};
use super::writer::SetSpec;
use super::{Owned, read_bytes, read_str, read_str_array, snprintf_text, sys};
use crate::expr::Expr;

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
    let obj = Owned::<sys::nftnl_gen>::empty();
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
    let obj = Owned::<sys::nftnl_table>::empty();
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
    let obj = Owned::<sys::nftnl_chain>::empty();
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
    let obj = Owned::<sys::nftnl_set>::empty();
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

/// What a dumped set holds beyond what [`MsgWriter::set`](super::MsgWriter::set) writes.
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

/// A set element's key bytes, inline up to 16 (every key dockfw writes).
pub(crate) type Key = smallvec::SmallVec<[u8; 16]>;

/// Dumped set elements as `(key, flags)`, in key order. Shared: a read
/// takes the sets nobody wrote from the read before, without copying them.
pub(crate) type Elems = std::sync::Arc<[(Key, u32)]>;

/// The `(key, flags)` of each element in a `NEWSETELEM` dump message; what
/// an element holds beyond that (dockfw writes nothing more) goes to
/// `extra`, in words.
pub(crate) fn parse_elems(
    msg: &[u8],
    out: &mut Vec<(Key, u32)>,
    extra: &mut Vec<String>,
) -> Result<(), String> {
    let nlh = header(msg)?;
    let obj = Owned::<sys::nftnl_set>::empty();
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
            let key = Key::from_slice(&read_bytes(key, len));
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

/// An element of a set whose elements belong to run time, as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimedElem {
    /// Its key; empty for a catch-all element.
    pub key: Key,
    /// `NFT_SET_ELEM_*` flags (`NFT_SET_ELEM_CATCHALL`: matches every key).
    pub flags: u32,
    /// Its timeout, when the kernel reports one (one of its own).
    pub timeout_ms: Option<u64>,
    /// Milliseconds left before it expires, if it does.
    pub expires_ms: Option<u64>,
}

/// The elements of a `NEWSETELEM` dump message of a run-time set, with
/// their timeouts and expirations.
pub(crate) fn parse_timed_elems(msg: &[u8], out: &mut Vec<TimedElem>) -> Result<(), String> {
    let nlh = header(msg)?;
    let obj = Owned::<sys::nftnl_set>::empty();
    // SAFETY: as in `parse_gen`.
    parsed(
        unsafe { sys::nftnl_set_elems_nlmsg_parse(nlh, obj.as_ptr()) },
        "set element",
    )?;
    // SAFETY: as in `parse_elems`.
    unsafe {
        let iter = sys::nftnl_set_elems_iter_create(obj.as_ptr());
        if iter.is_null() {
            std::process::abort();
        }
        let mut e = sys::nftnl_set_elems_iter_next(iter);
        while !e.is_null() {
            let is_set = |k: u32| sys::nftnl_set_elem_is_set(e, k as u16);
            let mut len = 0u32;
            let key = if is_set(sys::NFTNL_SET_ELEM_KEY) {
                let key = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
                Key::from_slice(&read_bytes(key, len))
            } else {
                Key::new()
            };
            let u64_of = |k: u32| is_set(k).then(|| sys::nftnl_set_elem_get_u64(e, k as u16));
            out.push(TimedElem {
                key,
                flags: if is_set(sys::NFTNL_SET_ELEM_FLAGS) {
                    sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16)
                } else {
                    0
                },
                timeout_ms: u64_of(sys::NFTNL_SET_ELEM_TIMEOUT),
                expires_ms: u64_of(sys::NFTNL_SET_ELEM_EXPIRATION),
            });
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
    let obj = Owned::<sys::nftnl_rule>::empty();
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
    let obj = Owned::<sys::nftnl_obj>::empty();
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
    let obj = Owned::<sys::nftnl_flowtable>::empty();
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
