//! Dumped nf_tables objects -> Ruleset.
//!
//! Each match is recognised by its leading expressions and then re-encoded:
//! only an exact re-encoding counts, so anything dockfw would not have
//! written is reported instead of being silently read as something close.

use crate::encode::{self, TYPE_INET_SERVICE, TYPE_IPV4_ADDR, TYPE_IPV6_ADDR};
use crate::expr::Expr;
use crate::ffi::{ChainInfo, Elems, Key, SetSpec};
use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{
    BaseHook, Chain, CtState, Family, Hook, IfName, Match, Meter, PacketType, PortMatch, Proto, Rate,
    RateUnit, RejectWith, Rule, RuntimeSet, Set, SetElements, Statement, Verdict,
};
use std::net::{Ipv4Addr, Ipv6Addr};

type Decoded<T> = Result<T, String>;

/// The comment in a rule's userdata (`""` if none).
pub(crate) fn comment(udata: &[u8]) -> Decoded<String> {
    let mut at = 0;
    while at + 2 <= udata.len() {
        let (kind, len) = (udata[at], udata[at + 1] as usize);
        let value = udata.get(at + 2..at + 2 + len).ok_or("truncated rule userdata")?;
        if kind == 0 {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(text.to_vec()).map_err(|_| "rule comment is not UTF-8".to_string());
        }
        at += 2 + len;
    }
    Ok(String::new())
}

/// The comment in a set's userdata (`NFTNL_UDATA_SET_COMMENT`), if any;
/// unreadable userdata counts as a comment, so it is never ignored.
pub(crate) fn set_comment(udata: &[u8]) -> Option<String> {
    const SET_COMMENT: u8 = 7;
    let mut at = 0;
    while at + 2 <= udata.len() {
        let (kind, len) = (udata[at], udata[at + 1] as usize);
        let Some(value) = udata.get(at + 2..at + 2 + len) else {
            return Some(format!("(unreadable userdata {udata:02x?})"));
        };
        if kind == SET_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += 2 + len;
    }
    (at != udata.len()).then(|| format!("(unreadable userdata {udata:02x?})"))
}

/// What set userdata holds beyond the key byte order dockfw writes (nft
/// writes the same TLV for `plan`'s sets, and 1.1 also that the key is a
/// plain value), if anything: e.g. `typeof` or auto-merge hints. They change no packet's fate, but the
/// kernel holds them and dockfw did not write them.
pub(crate) fn set_userdata_beyond_key_order(udata: &[u8]) -> Option<String> {
    let ours = &encode::SET_UDATA_KEY_BIG_ENDIAN;
    // nft 1.1 also records, for a set declared `type X`, that its key is a
    // plain value (NFTNL_UDATA_SET_KEY_TYPEOF holding expression type
    // EXPR_VALUE, 4, and no expression data): the same declaration dockfw
    // makes, in nft's other words, so not a difference.
    let value = 4u32.to_ne_bytes();
    let nft_plain_key = [3, 8, 0, 4, value[0], value[1], value[2], value[3], 1, 0];
    let mut at = 0;
    while at < udata.len() {
        let Some(&[kind, len]) = udata.get(at..at + 2) else {
            return Some(format!("unreadable {udata:02x?}"));
        };
        let end = at + 2 + usize::from(len);
        let Some(tlv) = udata.get(at..end) else {
            return Some(format!("unreadable {udata:02x?}"));
        };
        if tlv != ours.as_slice() && tlv != nft_plain_key.as_slice() {
            return Some(format!("type {kind}: {:02x?}", &tlv[2..]));
        }
        at = end;
    }
    None
}

/// A chain without its rules.
pub(crate) fn chain(info: &ChainInfo) -> Decoded<Chain> {
    if !info.devices.is_empty() {
        return Err(format!(
            "chain `{}` is bound to devices {:?}",
            info.name, info.devices
        ));
    }
    // NFT_CHAIN_BASE (1) only says it is a base chain.
    if info.flags & !1 != 0 {
        return Err(format!("chain `{}` has flags {:#x}", info.name, info.flags));
    }
    if !info.userdata.is_empty() {
        return Err(format!("chain `{}` has a comment or userdata", info.name));
    }
    let hook = match &info.hook {
        None => None,
        Some((hooknum, priority, kind, policy)) => {
            let hook = match *hooknum as i32 {
                libc::NF_INET_FORWARD => Hook::Forward,
                libc::NF_INET_LOCAL_IN => Hook::Input,
                other => return Err(format!("chain `{}` hooks into hook {other}", info.name)),
            };
            if kind != "filter" || *policy != libc::NF_ACCEPT as u32 {
                return Err(format!(
                    "base chain `{}` has type {kind} and policy {policy}; dockfw writes filter/accept",
                    info.name
                ));
            }
            Some(BaseHook {
                hook,
                priority: *priority,
            })
        }
    };
    Ok(Chain {
        name: info.name.clone(),
        hook,
        rules: Vec::new(),
    })
}

/// Whether `spec` is a set whose elements belong to run time, in dockfw's
/// form (`flags timeout`, an address key): its elements are never read
/// with the table, and never compared.
pub(crate) fn is_runtime(spec: &SetSpec) -> bool {
    set_unsized(spec, &Elems::from([])).is_ok_and(|set| set.is_runtime())
}

/// A set with its dumped `(key, flags)` elements (none for a run-time set,
/// whose elements are not dockfw's).
pub(crate) fn set(spec: &SetSpec, elems: &Elems) -> Decoded<Set> {
    let set = set_unsized(spec, elems)?;
    sized_as_written(spec, &set)?;
    Ok(set)
}

/// Whether `spec`'s size is the one dockfw writes for `set`'s elements
/// ([`SetElements::hash_size`](dockfw_core::ruleset::SetElements::hash_size);
/// meters carry theirs in the elements). Checked once the elements are
/// known: decoded from a dump, or taken from what was sent.
pub(crate) fn sized_as_written(spec: &SetSpec, set: &Set) -> Decoded<()> {
    if !set.elements.is_hash() || spec.size == set.elements.hash_size() {
        return Ok(());
    }
    let written = match set.elements.hash_size() {
        Some(size) => format!("size {size}"),
        None => "no size".to_string(),
    };
    Err(match spec.size {
        Some(size) => format!(
            "set `{}` has size {size} (dockfw writes {written} for its {} elements)",
            spec.name,
            set.elements.len()
        ),
        None => format!(
            "set `{}` has no size (dockfw writes {written} for its {} elements)",
            spec.name,
            set.elements.len()
        ),
    })
}

/// [`set`], but a hash of addresses of any size (its elements may be
/// known from elsewhere, see [`sized_as_written`]).
pub(crate) fn set_unsized(spec: &SetSpec, elems: &Elems) -> Decoded<Set> {
    // dockfw writes the key byte order only; nft adds typing hints of its
    // own when it loads `plan`'s script. A comment is never dockfw's.
    if let Some(comment) = set_comment(&spec.userdata) {
        return Err(format!("set `{}` has comment {comment:?}", spec.name));
    }
    if let Some(what) = set_userdata_beyond_key_order(&spec.userdata) {
        return Err(format!(
            "set `{}` has userdata dockfw does not write ({what})",
            spec.name
        ));
    }
    if let Some(extra) = spec.extra.first() {
        return Err(format!("set `{}` has {extra}", spec.name));
    }
    let family = |key_type: u32, key_len: u32| match (key_type, key_len) {
        (TYPE_IPV4_ADDR, 4) => Ok(Family::Ipv4),
        (TYPE_IPV6_ADDR, 16) => Ok(Family::Ipv6),
        _ => Err(format!(
            "set `{}` has key type {key_type}/{key_len} bytes",
            spec.name
        )),
    };
    let eval = libc::NFT_SET_EVAL as u32;
    let timeout = libc::NFT_SET_TIMEOUT as u32;
    let elements = if spec.flags & !timeout == eval {
        let timeout_secs = if spec.flags & timeout != 0 {
            let ms = spec.timeout_ms.unwrap_or(0);
            if ms % 1000 != 0 || ms / 1000 > u64::from(u32::MAX) {
                return Err(format!("meter `{}` has timeout {ms} ms", spec.name));
            }
            Some((ms / 1000) as u32)
        } else {
            None
        };
        SetElements::Meter(Meter {
            family: family(spec.key_type, spec.key_len)?,
            size: spec.size.unwrap_or(0),
            timeout_secs,
        })
    } else if spec.flags == timeout {
        // dockfw gives run-time sets no size; their elements are not read.
        if let Some(size) = spec.size {
            return Err(format!("set `{}` has size {size}", spec.name));
        }
        SetElements::Runtime(RuntimeSet {
            family: family(spec.key_type, spec.key_len)?,
            timeout_ms: spec.timeout_ms,
        })
    } else if spec.flags == libc::NFT_SET_INTERVAL as u32 {
        let name = &spec.name;
        // dockfw gives interval sets no size (a size caps what can be added).
        if let Some(size) = spec.size {
            return Err(format!("set `{name}` has size {size}"));
        }
        match (spec.key_type, spec.key_len) {
            (TYPE_IPV4_ADDR, 4) => SetElements::Ipv4(intervals(name, elems)?),
            (TYPE_IPV6_ADDR, 16) => SetElements::Ipv6(intervals(name, elems)?),
            (TYPE_INET_SERVICE, 2) => SetElements::Port(intervals(name, elems)?),
            (key_type, len) => return Err(format!("set `{name}` has key type {key_type}/{len} bytes")),
        }
    } else if spec.flags == 0 {
        let name = &spec.name;
        let elements = match (spec.key_type, spec.key_len) {
            (TYPE_IPV4_ADDR, 4) => SetElements::Ipv4Addrs(points(name, elems)?),
            (TYPE_IPV6_ADDR, 16) => SetElements::Ipv6Addrs(points(name, elems)?),
            (key_type, len) => return Err(format!("set `{name}` has key type {key_type}/{len} bytes")),
        };
        // Its size is checked against the elements: see `sized_as_written`.
        elements
    } else {
        return Err(format!("set `{}` has flags {:#x}", spec.name, spec.flags));
    };
    Ok(Set {
        name: spec.name.clone(),
        elements,
    })
}

/// Values that interval keys decode into.
trait FromKey: Sized + Copy {
    fn from_key(key: &[u8]) -> Option<Self>;
    fn predecessor(self) -> Option<Self>;
}
impl FromKey for u16 {
    fn from_key(key: &[u8]) -> Option<Self> {
        Some(u16::from_be_bytes(key.try_into().ok()?))
    }
    fn predecessor(self) -> Option<Self> {
        self.checked_sub(1)
    }
}
impl FromKey for Ipv4Addr {
    fn from_key(key: &[u8]) -> Option<Self> {
        Some(<[u8; 4]>::try_from(key).ok()?.into())
    }
    fn predecessor(self) -> Option<Self> {
        u32::from(self).checked_sub(1).map(Self::from)
    }
}
impl FromKey for Ipv6Addr {
    fn from_key(key: &[u8]) -> Option<Self> {
        Some(<[u8; 16]>::try_from(key).ok()?.into())
    }
    fn predecessor(self) -> Option<Self> {
        u128::from(self).checked_sub(1).map(Self::from)
    }
}

/// The addresses of a hash set, each an interval of one, sorted.
fn points<T: FromKey + dockfw_core::interval::Point>(
    set: &str,
    elems: &[(Key, u32)],
) -> Decoded<Vec<Interval<T>>> {
    let bad = |what: &str| format!("set `{set}`: {what}");
    let mut out = Vec::with_capacity(elems.len());
    for (key, flags) in elems {
        if *flags != 0 {
            return Err(bad("an element with flags in a set of single addresses"));
        }
        out.push(Interval::single(
            T::from_key(key).ok_or_else(|| bad("key of the wrong length"))?,
        ));
    }
    if !out.is_sorted_by_key(|i| i.first) {
        out.sort_unstable_by_key(|i| i.first);
    }
    // A hash lists each key once: twice means a dump torn by a concurrent
    // change (the kernel resumes a hash dump by position), not a set.
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad(
            "an element listed twice (a dump torn by a concurrent change)",
        ));
    }
    Ok(out)
}

/// Pairs start elements with the interval-end element after them (keys are
/// big-endian, so byte order is numeric order; dump order is not relied on).
fn intervals<T: FromKey + dockfw_core::interval::Point>(
    set: &str,
    elems: &[(Key, u32)],
) -> Decoded<Vec<Interval<T>>> {
    // Reads keep elements in key order; anything else is sorted here.
    let sorted;
    let mut elems = if elems.is_sorted() {
        elems
    } else {
        sorted = {
            let mut copy = elems.to_vec();
            copy.sort();
            copy
        };
        &sorted[..]
    };
    let end_flag = libc::NFT_SET_ELEM_INTERVAL_END as u32;
    let bad = |what: &str| format!("set `{set}`: {what}");
    let mut out = Vec::with_capacity(elems.len() / 2 + 1);
    // nft writes an interval end at key 0 ahead of sets that do not start
    // at 0 (an old segment-tree convention); it changes nothing, skip it.
    if let Some((key, flags)) = elems.first()
        && flags & end_flag != 0
        && key.iter().all(|&b| b == 0)
    {
        elems = &elems[1..];
    }
    let mut iter = elems.iter().peekable();
    while let Some((key, flags)) = iter.next() {
        if flags & end_flag != 0 {
            return Err(bad("interval end without a start"));
        }
        let first = T::from_key(key).ok_or_else(|| bad("key of the wrong length"))?;
        let last = match iter.peek() {
            Some((end, flags)) if flags & end_flag != 0 => {
                let end = T::from_key(end).ok_or_else(|| bad("key of the wrong length"))?;
                iter.next();
                end.predecessor().ok_or_else(|| bad("interval ends at zero"))?
            }
            // A start with no end runs to the top of the range.
            None => T::from_key(&[0xff; 16][..key.len()]).ok_or_else(|| bad("bad key"))?,
            Some(_) => return Err(bad("two interval starts in a row")),
        };
        out.push(Interval::new(first, last).ok_or_else(|| bad("empty interval"))?);
    }
    Ok(out)
}

fn family_of_saddr(offset: u32, len: u32) -> Option<Family> {
    match (offset, len) {
        (12, 4) => Some(Family::Ipv4),
        (8, 16) => Some(Family::Ipv6),
        _ => None,
    }
}

fn family_of_daddr(offset: u32, len: u32) -> Option<Family> {
    match (offset, len) {
        (16, 4) => Some(Family::Ipv4),
        (24, 16) => Some(Family::Ipv6),
        _ => None,
    }
}

/// The comparison after a port load.
fn port_match(next: &Expr) -> Option<PortMatch> {
    let port = |data: &[u8]| Some(u16::from_be_bytes(data.try_into().ok()?));
    Some(match next {
        Expr::Cmp { data, .. } => PortMatch::Single(port(data)?),
        Expr::Range { from, to, .. } => PortMatch::Range(port(from)?, port(to)?),
        Expr::Lookup { set, .. } => PortMatch::Set(set.clone()),
        _ => return None,
    })
}

fn rate(count: u64, unit: u64) -> Option<Rate> {
    let unit = [RateUnit::Second, RateUnit::Minute, RateUnit::Hour, RateUnit::Day]
        .into_iter()
        .find(|u| u.seconds() == unit)?;
    Some(Rate { count, unit })
}

fn ifname(data: &[u8]) -> Option<IfName> {
    match data.strip_suffix(&[0]) {
        Some(name) => Some(IfName::Exact(String::from_utf8(name.to_vec()).ok()?)),
        None => Some(IfName::Prefix(String::from_utf8(data.to_vec()).ok()?)),
    }
}

/// Recognises the match at the start of `exprs` by its shape; the caller
/// checks the exact encoding.
fn guess_match(exprs: &[Expr]) -> Option<(Match, usize)> {
    use Expr as E;
    let meta = |key: i32| key as u32;
    let ct = |key: i32| key as u32;
    Some(match exprs {
        [E::Meta { key }, E::Cmp { data, .. }, ..] if *key == meta(libc::NFT_META_IIFNAME) => {
            (Match::IifName(ifname(data)?), 2)
        }
        [E::Meta { key }, E::Cmp { data, .. }, ..] if *key == meta(libc::NFT_META_OIFNAME) => {
            (Match::OifName(ifname(data)?), 2)
        }
        [E::Meta { key }, E::Cmp { data, .. }, ..] if *key == meta(libc::NFT_META_NFPROTO) => {
            let family = [Family::Ipv4, Family::Ipv6]
                .into_iter()
                .find(|f| data[..] == [encode::nfproto(*f)])?;
            (Match::NfProto(family), 2)
        }
        [E::Meta { key }, E::Cmp { data, .. }, ..] if *key == meta(libc::NFT_META_PKTTYPE) => {
            let kind = [PacketType::Broadcast, PacketType::Multicast]
                .into_iter()
                .find(|k| data[..] == [k.number()])?;
            (Match::PacketType(kind), 2)
        }
        [E::Meta { key }, E::Cmp { data, .. }, ..] if *key == meta(libc::NFT_META_L4PROTO) => {
            let proto = [Proto::Tcp, Proto::Udp]
                .into_iter()
                .find(|p| data[..] == [encode::ipproto(*p)])?;
            (Match::L4Proto(proto), 2)
        }
        [
            E::Ct { key, dir: None },
            E::Bitwise { mask, .. },
            E::Cmp { op, .. },
            ..,
        ] if *key == ct(libc::NFT_CT_STATE) => {
            let mask = u32::from_ne_bytes(mask.as_slice().try_into().ok()?);
            let state = match (mask, *op == libc::NFT_CMP_NEQ as u32) {
                (encode::CT_STATE_NEW, true) => CtState::New,
                (encode::CT_STATE_NEW, false) => CtState::NotNew,
                (encode::CT_STATE_ESTABLISHED_RELATED, true) => CtState::EstablishedOrRelated,
                (encode::CT_STATE_ESTABLISHED, true) => CtState::Established,
                (encode::CT_STATE_UNTRACKED, true) => CtState::Untracked,
                (encode::CT_STATE_INVALID, true) => CtState::Invalid,
                _ => return None,
            };
            (Match::CtState(state), 3)
        }
        [E::Ct { key, dir: None }, E::Bitwise { .. }, E::Cmp { .. }, ..]
            if *key == ct(libc::NFT_CT_STATUS) =>
        {
            (Match::CtStatusDnat, 3)
        }
        [E::Ct { key, dir: None }, E::Cmp { .. }, ..] if *key == ct(libc::NFT_CT_DIRECTION) => {
            (Match::CtDirectionOriginal, 2)
        }
        [E::Ct { key, dir: None }, E::Bitwise { .. }, E::Cmp { .. }, ..]
            if *key == ct(libc::NFT_CT_LABELS) =>
        {
            (Match::CtUnlabelled, 3)
        }
        [E::Payload { base, offset, len }, next, ..]
            if *base == libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32 && (*offset, *len) == (2, 2) =>
        {
            (Match::DestPort(port_match(next)?), 2)
        }
        [E::Payload { offset, len, .. }, E::Lookup { set, .. }, ..] => {
            let set = set.clone();
            match (family_of_saddr(*offset, *len), family_of_daddr(*offset, *len)) {
                (Some(family), _) => (Match::SourceIn { family, set }, 2),
                (None, Some(family)) => (Match::DestAddrIn { family, set }, 2),
                (None, None) => return None,
            }
        }
        [
            E::Payload { offset, len, .. },
            E::Dynset {
                set, exprs: inner, ..
            },
            ..,
        ] => {
            let family = family_of_saddr(*offset, *len)?;
            let set = set.clone();
            match inner.as_slice() {
                [
                    E::Limit {
                        rate: count,
                        unit,
                        burst,
                        ..
                    },
                ] => {
                    let rate = rate(*count, *unit)?;
                    (
                        Match::SourceRateOver {
                            family,
                            set,
                            rate,
                            burst: *burst,
                        },
                        2,
                    )
                }
                [E::Connlimit { count, .. }] => (
                    Match::SourceConnectionsOver {
                        family,
                        set,
                        count: *count,
                    },
                    2,
                ),
                _ => return None,
            }
        }
        [E::Ct { key, dir: Some(_) }, E::Lookup { set, .. }, ..]
            if *key == ct(libc::NFT_CT_DST_IP) || *key == ct(libc::NFT_CT_DST_IP6) =>
        {
            let family = if *key == ct(libc::NFT_CT_DST_IP) {
                Family::Ipv4
            } else {
                Family::Ipv6
            };
            (
                Match::DialledAddrIn {
                    family,
                    set: set.clone(),
                },
                2,
            )
        }
        [E::Ct { key, dir: Some(_) }, next, ..] if *key == ct(libc::NFT_CT_PROTO_DST) => {
            (Match::DialledPort(port_match(next)?), 2)
        }
        [
            E::Limit {
                rate: count,
                unit,
                burst,
                ..
            },
            ..,
        ] => (
            Match::Limit {
                rate: rate(*count, *unit)?,
                burst: *burst,
            },
            1,
        ),
        _ => return None,
    })
}

fn verdict(expr: &Expr) -> Option<Verdict> {
    Some(match expr {
        Expr::Verdict { code, chain: None } => match *code {
            libc::NF_ACCEPT => Verdict::Accept,
            libc::NF_DROP => Verdict::Drop,
            libc::NFT_RETURN => Verdict::Return,
            _ => return None,
        },
        Expr::Verdict {
            code,
            chain: Some(chain),
        } => match *code {
            libc::NFT_JUMP => Verdict::Jump(chain.clone()),
            libc::NFT_GOTO => Verdict::Goto(chain.clone()),
            _ => return None,
        },
        Expr::Reject { kind, .. } if *kind == libc::NFT_REJECT_TCP_RST as u32 => {
            Verdict::Reject(RejectWith::TcpReset)
        }
        Expr::Reject { kind, code }
            if *kind == libc::NFT_REJECT_ICMPX_UNREACH as u32
                && *code == libc::NFT_REJECT_ICMPX_ADMIN_PROHIBITED as u8 =>
        {
            Verdict::Reject(RejectWith::IcmpxAdminProhibited)
        }
        _ => return None,
    })
}

/// Rewrites equivalent forms other writers use into dockfw's: nft pads
/// exact interface names with NULs to IFNAMSIZ, dockfw sends one NUL.
fn normalise(exprs: &[Expr]) -> Vec<Expr> {
    let mut out = exprs.to_vec();
    // nft writes `ct state [!=] new` as one compare with the state bit; a
    // packet has exactly one state bit, so that equals dockfw's mask test.
    let state_bit = encode::CT_STATE_NEW.to_ne_bytes();
    let mut i = 1;
    while i < out.len() {
        if let (Expr::Ct { key, dir: None }, Expr::Cmp { op, data }) = (&out[i - 1], &out[i])
            && *key == libc::NFT_CT_STATE as u32
            && data[..] == state_bit
        {
            let op = if *op == libc::NFT_CMP_EQ as u32 {
                libc::NFT_CMP_NEQ
            } else {
                libc::NFT_CMP_EQ
            };
            out.splice(
                i..=i,
                [
                    Expr::Bitwise {
                        mask: state_bit.to_vec(),
                        xor: vec![0; 4],
                    },
                    Expr::Cmp {
                        op: op as u32,
                        data: vec![0; 4],
                    },
                ],
            );
        }
        // nft writes a port range as `cmp gte FIRST; cmp lte LAST`.
        if let (
            Expr::Ct { key, dir: Some(_) },
            Some(Expr::Cmp { op: gte, data: from }),
            Some(Expr::Cmp { op: lte, data: to }),
        ) = (&out[i - 1], out.get(i), out.get(i + 1))
            && *key == libc::NFT_CT_PROTO_DST as u32
            && *gte == libc::NFT_CMP_GTE as u32
            && *lte == libc::NFT_CMP_LTE as u32
        {
            let range = Expr::Range {
                op: libc::NFT_RANGE_EQ as u32,
                from: from.clone(),
                to: to.clone(),
            };
            out.splice(i..=i + 1, [range]);
        }
        i += 1;
    }
    for i in 1..out.len() {
        let is_ifname = matches!(out[i - 1], Expr::Meta { key }
            if key == libc::NFT_META_IIFNAME as u32 || key == libc::NFT_META_OIFNAME as u32);
        if let (true, Expr::Cmp { data, .. }) = (is_ifname, &mut out[i])
            && data.ends_with(&[0, 0])
        {
            let name_len = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            if data[name_len..].iter().all(|&b| b == 0) {
                data.truncate(name_len + 1);
            }
        }
    }
    out
}

/// A rule from its expressions: matches, statements (a counter among
/// them), verdict.
pub(crate) fn rule(exprs: &[Expr], comment: String) -> Decoded<Rule> {
    let exprs = &normalise(exprs)[..];
    let mut rule = Rule {
        comment,
        matches: Vec::new(),
        statements: Vec::new(),
        verdict: None,
    };
    let unexpected = |at: usize, why: &str| {
        format!(
            "rule {:?}: expression {at} ({}) {why}",
            rule_comment_hint(exprs),
            exprs.get(at).map_or("end", |e| e.name())
        )
    };
    // A verdict is the last expression; anywhere else it is no dockfw rule.
    let body = match exprs.split_last() {
        Some((last @ (Expr::Verdict { .. } | Expr::Reject { .. }), body)) => {
            rule.verdict =
                Some(verdict(last).ok_or_else(|| unexpected(body.len(), "is not a dockfw verdict"))?);
            body
        }
        _ => exprs,
    };
    let mut at = 0;
    while let Some(expr) = body.get(at) {
        match expr {
            Expr::Verdict { .. } | Expr::Reject { .. } => {
                return Err(unexpected(at + 1, "follows the verdict"));
            }
            Expr::Counter { .. } => {
                rule.statements.push(Statement::Counter);
                at += 1;
            }
            Expr::Log { prefix, group } => {
                rule.statements.push(Statement::Log {
                    prefix: prefix.clone(),
                    group: *group,
                });
                at += 1;
            }
            Expr::Immediate { data } => {
                let label = (0..encode::LABEL_MAP_BYTES * 8).find(|&bit| encode::ct_label_map(bit) == *data);
                let statement = label
                    .and_then(|bit| u8::try_from(bit).ok())
                    .map(Statement::CtLabelSet)
                    .ok_or_else(|| unexpected(at, "loads data that is no single connection label"))?;
                if encode::statement_exprs(&statement).ok().as_deref() != body.get(at..at + 2) {
                    return Err(unexpected(
                        at + 1,
                        "does not set the connection label as dockfw does",
                    ));
                }
                rule.statements.push(statement);
                at += 2;
            }
            _ if !rule.statements.is_empty() => {
                return Err(unexpected(at, "follows a statement"));
            }
            _ => {
                let (m, used) =
                    guess_match(&body[at..]).ok_or_else(|| unexpected(at, "starts no dockfw match"))?;
                let exact = encode::match_exprs(&m).ok();
                if exact.as_deref() != body.get(at..at + used) {
                    return Err(unexpected(
                        at,
                        &format!("looks like {m:?} but is not encoded as dockfw does"),
                    ));
                }
                rule.matches.push(m);
                at += used;
            }
        }
    }
    Ok(rule)
}

/// For error messages only; the comment is added by the caller.
fn rule_comment_hint(exprs: &[Expr]) -> String {
    format!("with {} expressions", exprs.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nft_1_1s_plain_value_key_note_is_dockfws_declaration_and_typeof_is_not() {
        let ours = crate::encode::SET_UDATA_KEY_BIG_ENDIAN;
        let value = 4u32.to_ne_bytes();
        let plain = [3, 8, 0, 4, value[0], value[1], value[2], value[3], 1, 0];
        let with_note: Vec<u8> = ours.iter().chain(plain.iter()).copied().collect();
        assert_eq!(super::set_userdata_beyond_key_order(&with_note), None);
        // A typeof of another expression type (payload, 1 byte more data) is not.
        let other = 2u32.to_ne_bytes();
        let typeof_payload = [3, 9, 0, 4, other[0], other[1], other[2], other[3], 1, 1, 7];
        let with_typeof: Vec<u8> = ours.iter().chain(typeof_payload.iter()).copied().collect();
        assert!(super::set_userdata_beyond_key_order(&with_typeof).is_some());
    }

    use super::*;
    use crate::encode::rule_exprs;

    fn roundtrip(rule: Rule) {
        let exprs: Vec<Expr> = rule_exprs(&rule).unwrap().into_iter().map(|(e, _)| e).collect();
        assert_eq!(super::rule(&exprs, rule.comment.clone()).unwrap(), rule);
    }

    #[test]
    fn every_match_kind_decodes_back() {
        let rate = Rate {
            count: 5,
            unit: RateUnit::Minute,
        };
        let matches = vec![
            Match::IifName(IfName::Exact("eth0".into())),
            Match::OifName(IfName::Prefix("br-".into())),
            Match::NfProto(Family::Ipv6),
            Match::L4Proto(Proto::Udp),
            Match::CtState(CtState::New),
            Match::CtState(CtState::NotNew),
            Match::CtState(CtState::EstablishedOrRelated),
            Match::CtState(CtState::Untracked),
            Match::CtState(CtState::Invalid),
            Match::PacketType(PacketType::Broadcast),
            Match::PacketType(PacketType::Multicast),
            Match::CtState(CtState::Established),
            Match::CtStatusDnat,
            Match::CtDirectionOriginal,
            Match::CtUnlabelled,
            Match::SourceIn {
                family: Family::Ipv4,
                set: "a".into(),
            },
            Match::SourceIn {
                family: Family::Ipv6,
                set: "b".into(),
            },
            Match::DialledAddrIn {
                family: Family::Ipv6,
                set: "c".into(),
            },
            Match::DialledPort(PortMatch::Single(443)),
            Match::DialledPort(PortMatch::Range(8000, 8100)),
            Match::DialledPort(PortMatch::Set("p".into())),
            Match::DestAddrIn {
                family: Family::Ipv4,
                set: "d4".into(),
            },
            Match::DestAddrIn {
                family: Family::Ipv6,
                set: "d6".into(),
            },
            Match::DestPort(PortMatch::Single(8080)),
            Match::DestPort(PortMatch::Range(1, 2)),
            Match::DestPort(PortMatch::Set("p".into())),
            Match::Limit { rate, burst: 10 },
            Match::SourceRateOver {
                family: Family::Ipv4,
                set: "m".into(),
                rate,
                burst: 3,
            },
            Match::SourceConnectionsOver {
                family: Family::Ipv6,
                set: "n".into(),
                count: 7,
            },
        ];
        for verdict in [
            None,
            Some(Verdict::Accept),
            Some(Verdict::Drop),
            Some(Verdict::Return),
            Some(Verdict::Jump("x".into())),
            Some(Verdict::Goto("y".into())),
            Some(Verdict::Reject(RejectWith::TcpReset)),
            Some(Verdict::Reject(RejectWith::IcmpxAdminProhibited)),
        ] {
            roundtrip(Rule {
                comment: "c".into(),
                matches: matches.clone(),
                statements: vec![Statement::Log {
                    prefix: "p: ".into(),
                    group: None,
                }],
                verdict: verdict.clone(),
            });
            roundtrip(Rule {
                comment: "c".into(),
                matches: matches.clone(),
                statements: vec![Statement::Log {
                    prefix: "dockfw rule-1 drop p: ".into(),
                    group: Some(65535),
                }],
                verdict,
            });
        }
        for bit in [0, 31, 32, 96, 127] {
            roundtrip(Rule {
                comment: "c".into(),
                matches: vec![Match::IifName(IfName::Prefix("wg".into()))],
                statements: vec![Statement::CtLabelSet(bit)],
                verdict: None,
            });
        }
    }

    /// `nft --debug=netlink` for `ct label set 127` shows
    /// `[ immediate reg 1 0x00000000 0x00000000 0x00000000 0x80000000 ]`
    /// then `[ ct set label with reg 1 ]`.
    #[test]
    fn ct_label_set_is_what_nft_writes() {
        let exprs = encode::statement_exprs(&Statement::CtLabelSet(127)).unwrap();
        let mut words = [0u32; 4];
        words[3] = 0x8000_0000;
        let data: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(
            exprs,
            vec![
                Expr::Immediate { data },
                Expr::CtSet {
                    key: libc::NFT_CT_LABELS as u32
                }
            ]
        );
    }

    /// `nft --debug=netlink` (1.0.6) for `ct direction original ct label ! 96,…,127`:
    /// `[ ct load direction => reg 1 ]`, `[ cmp eq reg 1 0x00000000 ]`, then
    /// `[ ct load label => reg 1 ]`,
    /// `[ bitwise reg 1 = ( reg 1 & 0x00000000 0x00000000 0x00000000 0xffffffff ) ^ 0 ]`,
    /// `[ cmp eq reg 1 0x00000000 0x00000000 0x00000000 0x00000000 ]`.
    #[test]
    fn late_judging_matches_are_what_nft_writes() {
        let words = |w: [u32; 4]| -> Vec<u8> { w.iter().flat_map(|w| w.to_ne_bytes()).collect() };
        assert_eq!(
            encode::match_exprs(&Match::CtDirectionOriginal).unwrap(),
            vec![
                Expr::Ct {
                    key: libc::NFT_CT_DIRECTION as u32,
                    dir: None
                },
                Expr::Cmp {
                    op: libc::NFT_CMP_EQ as u32,
                    data: vec![0]
                }
            ]
        );
        assert_eq!(
            encode::match_exprs(&Match::CtUnlabelled).unwrap(),
            vec![
                Expr::Ct {
                    key: libc::NFT_CT_LABELS as u32,
                    dir: None
                },
                Expr::Bitwise {
                    mask: words([0, 0, 0, 0xffff_ffff]),
                    xor: words([0; 4])
                },
                Expr::Cmp {
                    op: libc::NFT_CMP_EQ as u32,
                    data: words([0; 4])
                }
            ]
        );
    }

    #[test]
    fn comment_tlv_is_what_nft_writes() {
        let udata = encode::comment_udata("web").unwrap();
        assert_eq!(udata, b"\x00\x04web\x00");
        assert_eq!(comment(&udata).unwrap(), "web");
        assert_eq!(comment(&[]).unwrap(), "");
    }

    #[test]
    fn intervals_pair_up_including_top_of_range() {
        let elements = SetElements::Port(vec![
            Interval::new(1, 5).unwrap(),
            Interval::single(80),
            Interval::new(60000, 65535).unwrap(),
        ]);
        let mut elems: Vec<(Key, u32)> = encode::interval_elements(&elements)
            .map(|(k, end)| {
                (
                    k,
                    if end {
                        libc::NFT_SET_ELEM_INTERVAL_END as u32
                    } else {
                        0
                    },
                )
            })
            .collect();
        elems.reverse();
        assert_eq!(elems.len(), 5);
        let spec = SetSpec {
            table: "t".into(),
            name: "p".into(),
            handle: 0,
            id: 0,
            flags: libc::NFT_SET_INTERVAL as u32,
            key_type: TYPE_INET_SERVICE,
            key_len: 2,
            size: None,
            timeout_ms: None,
            userdata: Vec::new(),
            extra: Vec::new(),
        };
        assert_eq!(set(&spec, &elems.into()).unwrap().elements, elements);
    }

    #[test]
    fn foreign_shapes_are_refused() {
        // ct state with another mask (here: related alone) is not one of
        // ours; 6 (established,related) and 1 (invalid) are.
        let exprs = vec![
            Expr::Ct {
                key: libc::NFT_CT_STATE as u32,
                dir: None,
            },
            Expr::Bitwise {
                mask: 4u32.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Cmp {
                op: libc::NFT_CMP_NEQ as u32,
                data: vec![0; 4],
            },
            Expr::Counter { packets: 0, bytes: 0 },
        ];
        assert!(rule(&exprs, String::new()).is_err());
        // A verdict dockfw never writes (queue), or one followed by anything.
        let queue = Expr::Verdict {
            code: libc::NF_QUEUE,
            chain: None,
        };
        assert!(rule(std::slice::from_ref(&queue), String::new()).is_err());
        let accept = Expr::Verdict {
            code: libc::NF_ACCEPT,
            chain: None,
        };
        let counter = Expr::Counter { packets: 0, bytes: 0 };
        assert!(rule(&[accept.clone(), counter.clone()], String::new()).is_err());
        assert!(rule(&[accept.clone(), accept.clone()], String::new()).is_err());
        // A counter is a statement: no match may follow it.
        assert!(rule(&[counter, exprs[0].clone(), accept], String::new()).is_err());
    }

    #[test]
    fn counters_are_where_the_rule_has_them() {
        let accept = |statements| Rule {
            comment: "c".into(),
            matches: vec![Match::L4Proto(Proto::Tcp)],
            statements,
            verdict: Some(Verdict::Accept),
        };
        roundtrip(accept(vec![]));
        roundtrip(accept(vec![Statement::Counter]));
        roundtrip(accept(vec![Statement::CtLabelSet(95), Statement::Counter]));
        roundtrip(Rule {
            verdict: None,
            ..accept(vec![Statement::Counter])
        });
        roundtrip(Rule {
            comment: "empty".into(),
            matches: vec![],
            statements: vec![],
            verdict: None,
        });
    }
}
