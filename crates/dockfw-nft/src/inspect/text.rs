//! A table as nft-like text: dockfw's parts as `nft` prints them, the rest
//! in nft syntax where simple and as libnftnl's expression text otherwise.

use crate::decode;
use crate::dump::TableDump;
use crate::expr::Expr;
use crate::ffi::{Elems, RuleInfo, SetSpec};
use crate::owner::{self, MARKER};
use dockfw_core::ruleset::{Hook, Ruleset, Set};
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn flag_names(flags: u32) -> String {
    let mut names = Vec::new();
    for (bit, name) in [(1, "dormant"), (2, "owner"), (4, "persist")] {
        if flags & bit != 0 {
            names.push(name.to_string());
        }
    }
    let rest = flags & !7;
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join(",")
}

/// The table's head lines for its userdata: a comment other than dockfw's
/// marker, or userdata dockfw does not write.
pub(super) fn head_lines(userdata: &[u8]) -> Vec<String> {
    match owner::table_comment(userdata) {
        Some(comment) if comment == MARKER => Vec::new(),
        Some(comment) => vec![format!("comment {comment:?}")],
        None if !userdata.is_empty() => {
            vec![format!("# userdata dockfw does not write: {}", hex(userdata))]
        }
        None => Vec::new(),
    }
}

/// Everything in a table, each part as nft-like text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct View {
    pub(super) flags: u32,
    /// Table comment and userdata lines other than dockfw's marker.
    pub(super) head: Vec<String>,
    /// `(name, text)`.
    pub(super) sets: Vec<(String, String)>,
    pub(super) objects: Vec<String>,
    /// `(name, text)`.
    pub(super) flowtables: Vec<(String, String)>,
    pub(super) chains: Vec<ChainView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChainView {
    pub(super) name: String,
    /// The base-chain line(s); empty for a regular chain.
    pub(super) head: Vec<String>,
    pub(super) rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuleView {
    pub(super) text: String,
    /// Decodes as a rule dockfw writes.
    pub(super) dockfw: bool,
}

impl View {
    pub(super) fn from_ruleset(ruleset: &Ruleset) -> Self {
        Self {
            flags: 0,
            head: Vec::new(),
            sets: ruleset
                .sets
                .iter()
                .map(|s| (s.name.clone(), set_text(s)))
                .collect(),
            objects: Vec::new(),
            flowtables: Vec::new(),
            chains: ruleset
                .chains
                .iter()
                .map(|chain| ChainView {
                    name: chain.name.clone(),
                    head: chain_head(
                        chain.hook.map(|base| {
                            let hooknum = match base.hook {
                                Hook::Forward => libc::NF_INET_FORWARD,
                                Hook::Input => libc::NF_INET_LOCAL_IN,
                            };
                            (hooknum as u32, base.priority, "filter", libc::NF_ACCEPT as u32)
                        }),
                        &[],
                        0,
                        &[],
                    ),
                    rules: chain
                        .rules
                        .iter()
                        .map(|rule| RuleView {
                            text: dockfw_core::render::render_rule(rule),
                            dockfw: true,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub(super) fn from_dump(dump: &TableDump) -> Self {
        let head = head_lines(&dump.userdata);
        let mut sets: Vec<(bool, String, String)> = dump
            .sets
            .iter()
            .map(|(spec, elems)| match decode::set(spec, elems) {
                Ok(set) => (set.is_runtime(), spec.name.clone(), set_text(&set)),
                Err(_) => (false, spec.name.clone(), foreign_set_text(spec, elems)),
            })
            .collect();
        // Run-time sets first, by name, as a ruleset lists them (their
        // creation order is not kept: see `Ruleset::runtime_sets_first`).
        sets.sort_by(|a, b| match (a.0, b.0) {
            (true, true) => a.1.cmp(&b.1),
            (a, b) => b.cmp(&a),
        });
        let sets = sets.into_iter().map(|(_, name, text)| (name, text)).collect();
        let mut chains: Vec<ChainView> = dump
            .chains
            .iter()
            .map(|info| ChainView {
                name: info.name.clone(),
                head: chain_head(
                    info.hook
                        .as_ref()
                        .map(|(h, p, t, pol)| (*h, *p, t.as_str(), *pol)),
                    &info.devices,
                    info.flags,
                    &info.userdata,
                ),
                rules: Vec::new(),
            })
            .collect();
        for info in &dump.rules {
            let at = match chains.iter().position(|c| c.name == info.chain) {
                Some(at) => at,
                None => {
                    // Cannot happen in a consistent dump; shown rather than lost.
                    chains.push(ChainView {
                        name: info.chain.clone(),
                        head: vec!["# chain not listed by the kernel".into()],
                        rules: Vec::new(),
                    });
                    chains.len() - 1
                }
            };
            chains[at].rules.push(rule_view(info));
        }
        Self {
            flags: dump.flags,
            head,
            sets,
            objects: dump.objects.iter().map(|o| o.text.clone()).collect(),
            flowtables: dump
                .flowtables
                .iter()
                .map(|f| (f.name.clone(), f.text.clone()))
                .collect(),
            chains,
        }
    }

    pub(super) fn render(&self, table: &str) -> String {
        let mut out = format!("table inet {table} {{\n");
        if self.flags != 0 {
            out.push_str(&format!("\tflags {}\n", flag_names(self.flags)));
        }
        for line in &self.head {
            out.push_str(&format!("\t{line}\n"));
        }
        for (_, text) in &self.sets {
            out.push_str(text);
        }
        for object in &self.objects {
            out.push_str(&format!("\t{object}\n"));
        }
        for (_, text) in &self.flowtables {
            out.push_str(&format!("\t{text}\n"));
        }
        for chain in &self.chains {
            out.push_str(&format!("\tchain {} {{\n", chain.name));
            for line in &chain.head {
                out.push_str(&format!("\t\t{line}\n"));
            }
            for rule in &chain.rules {
                out.push_str(&format!("\t\t{}\n", rule.text));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }
}

/// nft's name of an inet-family hook.
fn hook_name(hooknum: u32) -> String {
    match hooknum as i32 {
        libc::NF_INET_PRE_ROUTING => "prerouting".into(),
        libc::NF_INET_LOCAL_IN => "input".into(),
        libc::NF_INET_FORWARD => "forward".into(),
        libc::NF_INET_LOCAL_OUT => "output".into(),
        libc::NF_INET_POST_ROUTING => "postrouting".into(),
        libc::NF_INET_INGRESS => "ingress".into(),
        other => format!("{other}"),
    }
}

/// A chain's head lines in nft syntax; dockfw's base chains render as
/// `type filter hook forward priority -5; policy accept;` (as `plan` does).
fn chain_head(
    hook: Option<(u32, i32, &str, u32)>,
    devices: &[String],
    flags: u32,
    userdata: &[u8],
) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some((hooknum, priority, kind, policy)) = hook {
        let mut line = format!("type {kind} hook {} priority {priority};", hook_name(hooknum));
        match devices {
            [] => {}
            [device] => line.push_str(&format!(" device {device:?};")),
            _ => line.push_str(&format!(
                " devices = {{ {} }};",
                devices
                    .iter()
                    .map(|d| format!("{d:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        let policy = match policy as i32 {
            libc::NF_ACCEPT => "accept".to_string(),
            libc::NF_DROP => "drop".to_string(),
            other => format!("{other}"),
        };
        line.push_str(&format!(" policy {policy};"));
        lines.push(line);
    }
    // NFT_CHAIN_BASE (1) only says it is a base chain.
    let flags = flags & !1;
    if flags & 2 != 0 {
        lines.push("flags offload".into());
    }
    if flags & !2 != 0 {
        lines.push(format!("# chain flags {:#x}", flags & !2));
    }
    if !userdata.is_empty() {
        match decode::comment(userdata) {
            Ok(comment) if !comment.is_empty() => lines.push(format!("comment {comment:?}")),
            _ => lines.push(format!("# userdata {}", hex(userdata))),
        }
    }
    lines
}

/// A set dockfw writes, exactly as `plan` renders it.
fn set_text(set: &Set) -> String {
    let ruleset = Ruleset {
        table: "t".into(),
        sets: vec![set.clone()],
        chains: Vec::new(),
    };
    let script = dockfw_core::render::render_table(&ruleset);
    // The set block sits between `table inet t {` and the closing `}`.
    let body = script.split_once("table inet t {\n").map_or("", |(_, body)| body);
    body.strip_suffix("}\n").unwrap_or(body).to_string()
}

/// Marks a set rendered by [`foreign_set_text`].
pub(super) const FOREIGN_SET: &str = "# not in dockfw's form";

fn foreign_set_text(spec: &SetSpec, elems: &Elems) -> String {
    let mut out = format!("\tset {} {{ {FOREIGN_SET}\n", spec.name);
    let key = match (spec.key_type, spec.key_len) {
        (7, 4) => "ipv4_addr".to_string(),
        (8, 16) => "ipv6_addr".to_string(),
        (13, 2) => "inet_service".to_string(),
        (12, 1) => "inet_proto".to_string(),
        (9, 6) => "ether_addr".to_string(),
        (19, 4) => "mark".to_string(),
        (41, _) => "ifname".to_string(),
        (kind, len) => format!("{kind:#x} # {len} bytes"),
    };
    out.push_str(&format!("\t\ttype {key}\n"));
    let mut flags = Vec::new();
    for (bit, name) in [
        (libc::NFT_SET_ANONYMOUS, "anonymous"),
        (libc::NFT_SET_CONSTANT, "constant"),
        (libc::NFT_SET_INTERVAL, "interval"),
        (libc::NFT_SET_MAP, "map"),
        (libc::NFT_SET_TIMEOUT, "timeout"),
        (libc::NFT_SET_EVAL, "dynamic"),
        (0x40, "object"),
        (0x80, "concat"),
        (0x100, "expr"),
    ] {
        if spec.flags & bit as u32 != 0 {
            flags.push(name.to_string());
        }
    }
    let rest = spec.flags & !0x1ff;
    if rest != 0 {
        flags.push(format!("{rest:#x}"));
    }
    if !flags.is_empty() {
        out.push_str(&format!("\t\tflags {}\n", flags.join(",")));
    }
    if let Some(size) = spec.size {
        out.push_str(&format!("\t\tsize {size}\n"));
    }
    if let Some(ms) = spec.timeout_ms {
        out.push_str(&format!("\t\ttimeout {ms}ms\n"));
    }
    if let Some(comment) = decode::set_comment(&spec.userdata) {
        out.push_str(&format!("\t\tcomment {comment:?}\n"));
    }
    if let Some(what) = decode::set_userdata_beyond_key_order(&spec.userdata) {
        out.push_str(&format!("\t\t# userdata dockfw does not write: {what}\n"));
    }
    for extra in &spec.extra {
        out.push_str(&format!("\t\t# {extra}\n"));
    }
    if !elems.is_empty() {
        let mut sorted = elems.to_vec();
        sorted.sort();
        let shown: Vec<String> = sorted
            .iter()
            .map(|(key, flags)| {
                let value = key_text(spec.key_type, key);
                if flags & libc::NFT_SET_ELEM_INTERVAL_END as u32 != 0 {
                    format!("end {value}")
                } else {
                    value
                }
            })
            .collect();
        out.push_str(&format!("\t\telements = {{ {} }}\n", shown.join(", ")));
    }
    out.push_str("\t}\n");
    out
}

fn key_text(key_type: u32, key: &[u8]) -> String {
    match (key_type, key.len()) {
        (7, 4) => Ipv4Addr::from(<[u8; 4]>::try_from(key).unwrap_or_default()).to_string(),
        (8, 16) => Ipv6Addr::from(<[u8; 16]>::try_from(key).unwrap_or_default()).to_string(),
        (13, 2) => u16::from_be_bytes([key[0], key[1]]).to_string(),
        _ => hex(key),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("0x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn rule_view(info: &RuleInfo) -> RuleView {
    let comment = decode::comment(&info.userdata);
    if let Ok(comment) = &comment
        && let Ok(rule) = decode::rule(&info.exprs, comment.clone())
    {
        return RuleView {
            text: dockfw_core::render::render_rule(&rule),
            dockfw: true,
        };
    }
    let mut text = foreign_rule_text(&info.exprs, &info.texts);
    match comment {
        Ok(comment) if !comment.is_empty() => text.push_str(&format!(" comment {comment:?}")),
        Ok(_) => {}
        Err(_) => text.push_str(&format!(" # userdata {}", hex(&info.userdata))),
    }
    if text.is_empty() {
        text = "# empty rule".into();
    }
    RuleView { text, dockfw: false }
}

/// Comparison operator prefix, nft style (`eq` prints nothing).
fn cmp_op(op: u32) -> &'static str {
    match op as i32 {
        libc::NFT_CMP_EQ => "",
        libc::NFT_CMP_NEQ => "!= ",
        libc::NFT_CMP_LT => "< ",
        libc::NFT_CMP_LTE => "<= ",
        libc::NFT_CMP_GT => "> ",
        libc::NFT_CMP_GTE => ">= ",
        _ => "? ",
    }
}

fn ct_states(bits: u32) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (1, "invalid"),
        (2, "established"),
        (4, "related"),
        (8, "new"),
        (64, "untracked"),
    ] {
        if bits & bit != 0 {
            names.push(name.to_string());
        }
    }
    if bits & !0x4f != 0 {
        names.push(format!("{:#x}", bits & !0x4f));
    }
    names.join(",")
}

/// The field a payload load reads, for the common header fields.
fn payload_field(base: u32, offset: u32, len: u32) -> Option<&'static str> {
    Some(match (base as i32, offset, len) {
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 12, 4) => "ip saddr",
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 16, 4) => "ip daddr",
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 8, 16) => "ip6 saddr",
        (libc::NFT_PAYLOAD_NETWORK_HEADER, 24, 16) => "ip6 daddr",
        (libc::NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2) => "th sport",
        (libc::NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2) => "th dport",
        _ => return None,
    })
}

fn value_text(data: &[u8]) -> String {
    match data.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(data).unwrap_or_default()).to_string(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(data).unwrap_or_default()).to_string(),
        2 => u16::from_be_bytes([data[0], data[1]]).to_string(),
        _ => hex(data),
    }
}

fn proto_name(proto: u8) -> String {
    match i32::from(proto) {
        libc::IPPROTO_TCP => "tcp".into(),
        libc::IPPROTO_UDP => "udp".into(),
        libc::IPPROTO_ICMP => "icmp".into(),
        libc::IPPROTO_ICMPV6 => "ipv6-icmp".into(),
        other => other.to_string(),
    }
}

fn verdict_text(code: i32, chain: Option<&str>) -> String {
    match (code, chain) {
        (libc::NF_ACCEPT, _) => "accept".into(),
        (libc::NF_DROP, _) => "drop".into(),
        (libc::NFT_RETURN, _) => "return".into(),
        (libc::NFT_CONTINUE, _) => "continue".into(),
        (libc::NFT_JUMP, Some(chain)) => format!("jump {chain}"),
        (libc::NFT_GOTO, Some(chain)) => format!("goto {chain}"),
        (code, _) => format!("[ immediate verdict {code} ]"),
    }
}

/// A rule dockfw did not write, in nft syntax for the simple common parts
/// and libnftnl's text (`texts`, one per expression) for the rest.
fn foreign_rule_text(exprs: &[Expr], texts: &[String]) -> String {
    use Expr as E;
    let mut words = Vec::new();
    let mut at = 0;
    while at < exprs.len() {
        let next = exprs.get(at + 1);
        let (word, used) = match (&exprs[at], next, exprs.get(at + 2)) {
            (E::Meta { key }, Some(E::Cmp { op, data }), _) => {
                let op = cmp_op(*op);
                match *key as i32 {
                    libc::NFT_META_L4PROTO if data.len() == 1 => {
                        (Some(format!("meta l4proto {op}{}", proto_name(data[0]))), 2)
                    }
                    libc::NFT_META_NFPROTO if data.len() == 1 => {
                        let family = match i32::from(data[0]) {
                            libc::NFPROTO_IPV4 => "ipv4".to_string(),
                            libc::NFPROTO_IPV6 => "ipv6".to_string(),
                            other => other.to_string(),
                        };
                        (Some(format!("meta nfproto {op}{family}")), 2)
                    }
                    libc::NFT_META_IIFNAME | libc::NFT_META_OIFNAME => {
                        let name: Vec<u8> = data.iter().copied().take_while(|&b| b != 0).collect();
                        let wildcard = if data.contains(&0) { "" } else { "*" };
                        let field = if *key as i32 == libc::NFT_META_IIFNAME {
                            "iifname"
                        } else {
                            "oifname"
                        };
                        let name = String::from_utf8_lossy(&name);
                        (Some(format!("{field} {op}\"{name}{wildcard}\"")), 2)
                    }
                    _ => (None, 1),
                }
            }
            (E::Payload { base, offset, len }, Some(E::Cmp { op, data }), _) => {
                match payload_field(*base, *offset, *len) {
                    Some(field) => (Some(format!("{field} {}{}", cmp_op(*op), value_text(data))), 2),
                    None => (None, 1),
                }
            }
            (E::Payload { base, offset, len }, Some(E::Lookup { set, flags }), _) => {
                match payload_field(*base, *offset, *len) {
                    Some(field) => {
                        let op = if *flags & 1 != 0 { "!= " } else { "" };
                        (Some(format!("{field} {op}@{set}")), 2)
                    }
                    None => (None, 1),
                }
            }
            (E::Ct { key, dir: None }, Some(E::Bitwise { mask, xor }), Some(E::Cmp { op, data }))
                if *key == libc::NFT_CT_STATE as u32
                    && mask.len() == 4
                    && xor.iter().all(|&b| b == 0)
                    && data.iter().all(|&b| b == 0) =>
            {
                let bits = u32::from_ne_bytes([mask[0], mask[1], mask[2], mask[3]]);
                let negated = *op == libc::NFT_CMP_EQ as u32;
                let op = if negated { "!= " } else { "" };
                (Some(format!("ct state {op}{}", ct_states(bits))), 3)
            }
            (E::Ct { key, dir: None }, Some(E::Cmp { op, data }), _)
                if *key == libc::NFT_CT_STATE as u32 && data.len() == 4 =>
            {
                let bits = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
                (Some(format!("ct state {}{}", cmp_op(*op), ct_states(bits))), 2)
            }
            (E::Counter { .. }, ..) => (Some("counter".into()), 1),
            (E::Log { prefix, group }, ..) => {
                let mut text = "log".to_string();
                if !prefix.is_empty() {
                    text.push_str(&format!(" prefix {prefix:?}"));
                }
                if let Some(group) = group {
                    text.push_str(&format!(" group {group}"));
                }
                (Some(text), 1)
            }
            (E::Verdict { code, chain }, ..) => (Some(verdict_text(*code, chain.as_deref())), 1),
            (
                E::Limit {
                    rate, unit, burst, ..
                },
                ..,
            ) => {
                let unit = match unit {
                    1 => "second".to_string(),
                    60 => "minute".to_string(),
                    3600 => "hour".to_string(),
                    86400 => "day".to_string(),
                    other => format!("{other}s"),
                };
                (Some(format!("limit rate {rate}/{unit} burst {burst} packets")), 1)
            }
            _ => (None, 1),
        };
        match word {
            Some(word) => words.push(word),
            None => words.push(
                texts
                    .get(at)
                    .cloned()
                    .unwrap_or_else(|| format!("[ {} ]", exprs[at].name())),
            ),
        }
        at += used;
    }
    words.join(" ")
}
