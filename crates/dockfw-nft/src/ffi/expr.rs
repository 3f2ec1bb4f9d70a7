//! Expressions both ways: an [`Expr`] into a libnftnl expression for a
//! rule, a dumped libnftnl expression back into an [`Expr`] (only in exactly
//! the form dockfw writes), and any expression as text for showing rules
//! dockfw did not write.

use super::{cstr, read_bytes, read_str, snprintf_text, sys};
use crate::expr::Expr;
use std::ffi::c_void;

/// `NFT_REG_1`, the only data register dockfw uses.
const REG_1: u32 = libc::NFT_REG_1 as u32;
/// `NFT_REG_VERDICT`.
const REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;

/// Allocates the libnftnl expression for `expr`; the caller owns it.
pub(super) fn build_expr(expr: &Expr) -> *mut sys::nftnl_expr {
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
    let u16_ = |k: u32, v: u16| {
        // SAFETY: as above.
        unsafe { sys::nftnl_expr_set_u16(e, k as u16, v) }
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
        Expr::Log { prefix, group } => {
            string(sys::NFTNL_EXPR_LOG_PREFIX, prefix);
            if let Some(group) = group {
                u16_(sys::NFTNL_EXPR_LOG_GROUP, *group);
            }
        }
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
pub(super) unsafe fn read_expr(e: *const sys::nftnl_expr) -> Expr {
    // SAFETY (all closures): `e` is live per the caller; attribute getters
    // return zero/NULL for absent attributes, and we check `is_set` where
    // absence matters.
    let is_set = |k: u32| unsafe { sys::nftnl_expr_is_set(e, k as u16) };
    let u8_ = |k: u32| unsafe { sys::nftnl_expr_get_u8(e, k as u16) };
    let u16_ = |k: u32| unsafe { sys::nftnl_expr_get_u16(e, k as u16) };
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
        // dockfw logs with a prefix, at the default level (warning, which
        // the kernel dumps even when unset) with no flags; no prefix, any
        // other level or flags (or nflog's group) is not dockfw's statement.
        "log"
            if is_set(sys::NFTNL_EXPR_LOG_PREFIX)
                && !is_set(sys::NFTNL_EXPR_LOG_GROUP)
                && (!is_set(sys::NFTNL_EXPR_LOG_LEVEL)
                    || u32_(sys::NFTNL_EXPR_LOG_LEVEL) == LOG_LEVEL_WARNING)
                && u32_(sys::NFTNL_EXPR_LOG_FLAGS) == 0 =>
        {
            Expr::Log {
                prefix: string(sys::NFTNL_EXPR_LOG_PREFIX),
                group: None,
            }
        }
        // NFLOG: a prefix and a group, and none of its tuning (snaplen,
        // queue threshold), which dockfw never writes.
        "log"
            if is_set(sys::NFTNL_EXPR_LOG_PREFIX)
                && is_set(sys::NFTNL_EXPR_LOG_GROUP)
                && !is_set(sys::NFTNL_EXPR_LOG_LEVEL)
                && u32_(sys::NFTNL_EXPR_LOG_FLAGS) == 0
                && u32_(sys::NFTNL_EXPR_LOG_SNAPLEN) == 0
                && u16_(sys::NFTNL_EXPR_LOG_QTHRESHOLD) == 0 =>
        {
            Expr::Log {
                prefix: string(sys::NFTNL_EXPR_LOG_PREFIX),
                group: Some(u16_(sys::NFTNL_EXPR_LOG_GROUP)),
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

/// One expression as text: nft syntax for the few whose libnftnl text
/// carries state or reads badly, libnftnl's `[ NAME … ]` for the rest (the
/// form `nft --debug=netlink` prints).
///
/// # Safety
/// `e` must point to a live expression.
pub(super) unsafe fn expr_text(e: *const sys::nftnl_expr) -> String {
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
