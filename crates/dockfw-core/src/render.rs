//! Ruleset → nft script. `nft -f` of the script builds the same table, and
//! replaces an existing one in one transaction (the table is declared, deleted,
//! and defined anew within the same file).

use crate::interval::{Interval, to_prefixes_v4, to_prefixes_v6};
use crate::ruleset::{
    Chain, CtState, Family, Hook, IfName, Match, PortMatch, RejectWith, Rule, Ruleset, Set, SetElements,
    Statement, Verdict,
};
use std::fmt::{Display, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Renders `ruleset` as an nft script that replaces the table: a preamble
/// deleting the table if it exists, then [`render_table`].
pub fn render(ruleset: &Ruleset) -> String {
    let table = &ruleset.table;
    // Declaring first makes the delete valid when the table does not exist yet.
    let mut out = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    out.push_str(&render_table(ruleset));
    out
}

/// The table's definition alone, `table inet NAME { … }`: [`render`]
/// without the preamble that replaces an existing table.
pub fn render_table(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    let table = &ruleset.table;
    let _ = writeln!(out, "table inet {table} {{");
    for set in &ruleset.sets {
        render_set(&mut out, set);
    }
    for chain in &ruleset.chains {
        render_chain(&mut out, chain);
    }
    out.push_str("}\n");
    out
}

fn render_set(out: &mut String, set: &Set) {
    let _ = writeln!(out, "\tset {} {{", set.name);
    match &set.elements {
        SetElements::Ipv4(elements) => {
            out.push_str("\t\ttype ipv4_addr\n\t\tflags interval\n");
            write_elements(out, elements.iter().map(|&e| format_v4(e)));
        }
        SetElements::Ipv6(elements) => {
            out.push_str("\t\ttype ipv6_addr\n\t\tflags interval\n");
            write_elements(out, elements.iter().map(|&e| format_v6(e)));
        }
        SetElements::Ipv4Addrs(elements) => {
            out.push_str("\t\ttype ipv4_addr\n");
            if let Some(size) = set.elements.hash_size() {
                let _ = writeln!(out, "\t\tsize {size}");
            }
            write_elements(out, elements.iter().map(|&e| format_v4(e)));
        }
        SetElements::Ipv6Addrs(elements) => {
            out.push_str("\t\ttype ipv6_addr\n");
            if let Some(size) = set.elements.hash_size() {
                let _ = writeln!(out, "\t\tsize {size}");
            }
            write_elements(out, elements.iter().map(|&e| format_v6(e)));
        }
        SetElements::Port(elements) => {
            out.push_str("\t\ttype inet_service\n\t\tflags interval\n");
            write_elements(out, elements.iter().map(|e| format_range(e.first, e.last)));
        }
        SetElements::Meter(meter) => {
            let key = match meter.family {
                Family::Ipv4 => "ipv4_addr",
                Family::Ipv6 => "ipv6_addr",
            };
            let _ = writeln!(out, "\t\ttype {key}\n\t\tsize {}", meter.size);
            match meter.timeout_secs {
                Some(timeout) => {
                    let _ = writeln!(out, "\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s");
                }
                None => out.push_str("\t\tflags dynamic\n"),
            }
        }
        SetElements::Runtime(runtime) => {
            let key = match runtime.family {
                Family::Ipv4 => "ipv4_addr",
                Family::Ipv6 => "ipv6_addr",
            };
            let _ = writeln!(out, "\t\ttype {key}\n\t\tflags timeout");
            if let Some(ms) = runtime.timeout_ms {
                let _ = writeln!(out, "\t\ttimeout {}", duration_text(ms));
            }
            // Its elements belong to run time: none are written here.
            let _ = writeln!(out, "\t\t{RUNTIME_ELEMENTS_NOTE}");
        }
    }
    out.push_str("\t}\n");
}

/// The comment a set whose elements belong to run time is rendered with,
/// in place of elements.
pub const RUNTIME_ELEMENTS_NOTE: &str =
    "# elements: added at run time (dockfw-nft set add, fail2ban, CrowdSec)";

/// A timeout as nft writes it: `3600s`, or `1500ms`.
fn duration_text(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn write_elements(out: &mut String, elements: impl Iterator<Item = String>) {
    let elements: Vec<String> = elements.collect();
    if elements.is_empty() {
        return;
    }
    out.push_str("\t\telements = {");
    for (i, element) in elements.iter().enumerate() {
        // Several per line keeps 100,000-element sets readable and small.
        out.push_str(if i == 0 {
            " "
        } else if i % 8 == 0 {
            ",\n\t\t\t"
        } else {
            ", "
        });
        out.push_str(element);
    }
    out.push_str(" }\n");
}

fn format_range<T: Display + PartialEq>(first: T, last: T) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// An interval the way people write it: address, CIDR prefix, or range.
pub(crate) fn format_v4(interval: Interval<Ipv4Addr>) -> String {
    match to_prefixes_v4(interval).as_slice() {
        [(addr, 32)] => addr.to_string(),
        [(addr, len)] => format!("{addr}/{len}"),
        _ => format_range(interval.first, interval.last),
    }
}

/// IPv6 counterpart of [`format_v4`].
pub(crate) fn format_v6(interval: Interval<Ipv6Addr>) -> String {
    match to_prefixes_v6(interval).as_slice() {
        [(addr, 128)] => addr.to_string(),
        [(addr, len)] => format!("{addr}/{len}"),
        _ => format_range(interval.first, interval.last),
    }
}

fn render_chain(out: &mut String, chain: &Chain) {
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    if let Some(base) = chain.hook {
        let hook = match base.hook {
            Hook::Forward => "forward",
            Hook::Input => "input",
        };
        let _ = writeln!(
            out,
            "\t\ttype filter hook {hook} priority {}; policy accept;",
            base.priority
        );
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", render_rule(rule));
    }
    out.push_str("\t}\n");
}

/// One rule in nft syntax. A rule with nothing in it (no match, statement
/// or verdict; the compiler writes none) would read as the chain's comment.
pub fn render_rule(rule: &Rule) -> String {
    let mut words: Vec<String> = rule.matches.iter().map(render_match).collect();
    words.extend(rule.statements.iter().map(|statement| match statement {
        Statement::Log { prefix, group: None } => format!("log prefix {}", quote(prefix)),
        Statement::Log {
            prefix,
            group: Some(group),
        } => format!("log prefix {} group {group}", quote(prefix)),
        Statement::CtLabelSet(bit) => format!("ct label set {bit}"),
        Statement::Counter => "counter".into(),
    }));
    if let Some(verdict) = &rule.verdict {
        words.push(render_verdict(verdict));
    }
    // No comment is no comment at all, as nft lists it (a rule read back
    // from someone else; the compiler comments every rule).
    if !rule.comment.is_empty() {
        words.push(format!("comment {}", quote(&rule.comment)));
    }
    words.join(" ")
}

fn quote(text: &str) -> String {
    // Policy validation keeps quotes, backslashes and control characters out.
    format!("\"{text}\"")
}

fn ifname(name: &IfName) -> String {
    match name {
        // A bridge Docker was told to name may end in `*`, which nft reads
        // as a wildcard unless escaped (as `nft list` writes it).
        IfName::Exact(exact) => quote(&exact.replace('*', "\\*")),
        IfName::Prefix(_) => quote(&name.to_string()),
    }
}

fn ip(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    }
}

fn render_match(m: &Match) -> String {
    match m {
        Match::IifName(name) => format!("iifname {}", ifname(name)),
        Match::OifName(name) => format!("oifname {}", ifname(name)),
        Match::NfProto(Family::Ipv4) => "meta nfproto ipv4".into(),
        Match::NfProto(Family::Ipv6) => "meta nfproto ipv6".into(),
        Match::L4Proto(proto) => format!("meta l4proto {}", proto.name()),
        Match::PacketType(kind) => format!("meta pkttype {}", kind.name()),
        Match::CtState(CtState::New) => "ct state new".into(),
        Match::CtState(CtState::EstablishedOrRelated) => "ct state established,related".into(),
        Match::CtState(CtState::Established) => "ct state established".into(),
        Match::CtState(CtState::Untracked) => "ct state untracked".into(),
        Match::CtState(CtState::Invalid) => "ct state invalid".into(),
        Match::CtState(CtState::NotNew) => "ct state != new".into(),
        Match::CtStatusDnat => "ct status dnat".into(),
        Match::CtDirectionOriginal => "ct direction original".into(),
        Match::CtUnlabelled => {
            let bits: Vec<String> = crate::layout::CT_LABEL_BITS.map(|bit| bit.to_string()).collect();
            format!("ct label ! {}", bits.join(","))
        }
        Match::SourceIn { family, set } => format!("{} saddr @{set}", ip(*family)),
        Match::DialledAddrIn { family, set } => format!("ct original {} daddr @{set}", ip(*family)),
        Match::DialledPort(PortMatch::Single(port)) => format!("ct original proto-dst {port}"),
        Match::DialledPort(PortMatch::Range(first, last)) => format!("ct original proto-dst {first}-{last}"),
        Match::DialledPort(PortMatch::Set(set)) => format!("ct original proto-dst @{set}"),
        Match::DestAddrIn { family, set } => format!("{} daddr @{set}", ip(*family)),
        Match::DestPort(PortMatch::Single(port)) => format!("th dport {port}"),
        Match::DestPort(PortMatch::Range(first, last)) => format!("th dport {first}-{last}"),
        Match::DestPort(PortMatch::Set(set)) => format!("th dport @{set}"),
        Match::Limit { rate, burst } => format!("limit rate {rate} burst {burst} packets"),
        Match::SourceRateOver {
            family,
            set,
            rate,
            burst,
        } => format!(
            "update @{set} {{ {} saddr limit rate over {rate} burst {burst} packets }}",
            ip(*family)
        ),
        Match::SourceConnectionsOver { family, set, count } => {
            format!("add @{set} {{ {} saddr ct count over {count} }}", ip(*family))
        }
    }
}

fn render_verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject(RejectWith::TcpReset) => "reject with tcp reset".into(),
        Verdict::Reject(RejectWith::IcmpxAdminProhibited) => "reject with icmpx admin-prohibited".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(chain) => format!("jump {chain}"),
        Verdict::Goto(chain) => format!("goto {chain}"),
    }
}
