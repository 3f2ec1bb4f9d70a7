//! The backend-neutral ruleset: what the compiler produces and a backend installs.
//!
//! It mirrors the nftables objects one to one (one `inet` table, its named
//! sets, chains and rules) so that a backend can encode it without any policy
//! logic and decode what the kernel holds back into the same type: "is the
//! installed ruleset the one we want" is then `installed == desired`.
//!
//! A rule counts only when it says so ([`Statement::Counter`]): the
//! compiler puts one counter on the rule that counts each decision, so a
//! packet's path through the table passes one counter, not one per hop.

use crate::interval::Interval;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One nftables table of family `inet`, with everything in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// Table name (family is always `inet`).
    pub table: String,
    /// Named sets, in the order they are created; sets whose elements
    /// belong to run time ([`SetElements::Runtime`]) come first, ordered by
    /// name (see [`Ruleset::runtime_sets_first`]).
    pub sets: Vec<Set>,
    /// Chains, in the order they are created; base chains carry a hook.
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|chain| chain.name == name)
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|set| set.name == name)
    }

    /// Number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|chain| chain.rules.len()).sum()
    }

    /// Number of intervals in all constant sets.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|set| set.elements.len()).sum()
    }

    /// Puts the sets in the order a ruleset lists them: sets whose elements
    /// belong to run time first, by name, then the others in the order they
    /// are created. nf_tables lists sets in creation order, but a run-time
    /// set must never be recreated (which empties it) only because a set
    /// before it came or went, so their own order is not kept.
    pub fn runtime_sets_first(&mut self) {
        self.sets.sort_by(|a, b| match (a.is_runtime(), b.is_runtime()) {
            (true, true) => a.name.cmp(&b.name),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (false, false) => std::cmp::Ordering::Equal,
        });
    }

    /// Whether the sets are in the order [`Ruleset::runtime_sets_first`] puts them.
    pub fn has_runtime_sets_first(&self) -> bool {
        let mut sorted = self.clone();
        sorted.runtime_sets_first();
        sorted.sets == self.sets
    }
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    /// Set name, unique in the table.
    pub name: String,
    /// What it holds.
    pub elements: SetElements,
}

impl Set {
    /// Whether its elements belong to run time ([`SetElements::Runtime`]).
    pub fn is_runtime(&self) -> bool {
        matches!(self.elements, SetElements::Runtime(_))
    }
}

/// The contents of a set. Constant sets are interval sets (`flags interval`)
/// whose elements are normalised: sorted, non-overlapping, non-adjacent;
/// or, for addresses that are (nearly all) single, hashes of those
/// addresses ([`SetElements::addresses_v4`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "elements")]
pub enum SetElements {
    /// `type ipv4_addr; flags interval`.
    Ipv4(Vec<Interval<Ipv4Addr>>),
    /// `type ipv6_addr; flags interval`.
    Ipv6(Vec<Interval<Ipv6Addr>>),
    /// `type inet_service; flags interval`.
    Port(Vec<Interval<u16>>),
    /// A dynamic set filled by the packet path (`flags dynamic[,timeout]`),
    /// keyed by source address, used for per-source limits.
    Meter(Meter),
    /// A policy's `dynamic` set (`type ipv4_addr; flags timeout`): its
    /// elements, single addresses, belong to run time (`dockfw-nft set add`,
    /// fail2ban, CrowdSec) and are no part of the ruleset: a backend creates
    /// the set but never writes, compares or deletes its elements.
    Runtime(RuntimeSet),
    /// `type ipv4_addr` (no flags): single addresses, each an interval of
    /// one, sorted. A hash: one lookup whatever its size, and one kernel
    /// element per address where an interval set needs two.
    Ipv4Addrs(Vec<Interval<Ipv4Addr>>),
    /// `type ipv6_addr` (no flags): likewise.
    Ipv6Addrs(Vec<Interval<Ipv6Addr>>),
}

/// The most addresses a hash set is written with (beyond, the list is
/// mostly networks: an interval set holds them in fewer elements).
const MAX_HASHED: u128 = 1 << 22;

/// The fewest addresses a hash set is given a size for ([`SetElements::hash_size`]).
pub const SIZED_FROM: usize = 1024;

impl SetElements {
    /// The kernel set for IPv4 `intervals` (normalised): a hash of single
    /// addresses when they are (nearly all) single addresses, at most two
    /// per interval (neighbours merge into one interval), else an interval
    /// set. Looking up a hash costs the same at 10 or 1,000,000 entries;
    /// an interval set is a tree.
    pub fn addresses_v4(intervals: Vec<Interval<Ipv4Addr>>) -> Self {
        match points(&intervals, |a| u128::from(u32::from(a))) {
            Some(points) => Self::Ipv4Addrs(
                points
                    .into_iter()
                    .map(|p| Interval::single(Ipv4Addr::from(p as u32)))
                    .collect(),
            ),
            None => Self::Ipv4(intervals),
        }
    }

    /// Like [`SetElements::addresses_v4`], for IPv6.
    pub fn addresses_v6(intervals: Vec<Interval<Ipv6Addr>>) -> Self {
        match points(&intervals, u128::from) {
            Some(points) => Self::Ipv6Addrs(
                points
                    .into_iter()
                    .map(|p| Interval::single(Ipv6Addr::from(p)))
                    .collect(),
            ),
            None => Self::Ipv6(intervals),
        }
    }

    /// Whether the kernel set is a hash of single addresses (no `flags interval`).
    pub fn is_hash(&self) -> bool {
        matches!(self, Self::Ipv4Addrs(_) | Self::Ipv6Addrs(_))
    }

    /// The size a hash of single addresses is created with (`size N`):
    /// from [`SIZED_FROM`] addresses, room for a quarter more, rounded up to
    /// a power of two; `None` (no size) for fewer and for other sets.
    ///
    /// Given a size, the kernel makes the hash that large at once; without
    /// one it grows the table while the elements are added, which costs
    /// more than adding them (100,000 addresses: about 70 ms of a 120 ms
    /// commit here). A size also caps the set: an element-only change that
    /// would need another size writes the set anew instead.
    pub fn hash_size(&self) -> Option<u32> {
        let len = match self {
            Self::Ipv4Addrs(elements) => elements.len(),
            Self::Ipv6Addrs(elements) => elements.len(),
            _ => return None,
        };
        (len >= SIZED_FROM).then(|| u32::try_from((len + len / 4).next_power_of_two()).unwrap_or(u32::MAX))
    }

    /// Number of constant intervals (0 for meters and run-time sets).
    pub fn len(&self) -> usize {
        match self {
            Self::Ipv4(elements) | Self::Ipv4Addrs(elements) => elements.len(),
            Self::Ipv6(elements) | Self::Ipv6Addrs(elements) => elements.len(),
            Self::Port(elements) => elements.len(),
            Self::Meter(_) | Self::Runtime(_) => 0,
        }
    }

    /// Whether the set holds no constant intervals.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every address of `intervals`, when they hold at most two per interval
/// and [`MAX_HASHED`] in all; `None` otherwise (and for none at all).
fn points<T: Copy>(intervals: &[Interval<T>], number: impl Fn(T) -> u128) -> Option<Vec<u128>> {
    if intervals.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    for interval in intervals {
        total = total.saturating_add((number(interval.last) - number(interval.first)).saturating_add(1));
    }
    if total > 2 * intervals.len() as u128 || total > MAX_HASHED {
        return None;
    }
    Some(
        intervals
            .iter()
            .flat_map(|i| number(i.first)..=number(i.last))
            .collect(),
    )
}

/// A dynamic set keyed by source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    /// Address family of the key.
    pub family: Family,
    /// Maximum number of entries.
    pub size: u32,
    /// Seconds after which an idle entry expires; `None` for no timeout
    /// (connection-count sets are garbage-collected by conntrack instead).
    pub timeout_secs: Option<u32>,
}

/// A set whose elements belong to run time: what a policy's `dynamic` set
/// compiles to.
///
/// A hash of single addresses with per-element timeouts (`flags timeout`),
/// not an interval set: the programs that fill such sets (CrowdSec's
/// firewall bouncer, scripts speaking netlink) add bare keys, and in an
/// interval set a bare key starts an interval that runs to the end of the
/// address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSet {
    /// Address family of its elements.
    pub family: Family,
    /// How long an element added without a timeout of its own stays, in
    /// milliseconds; `None`: until it is deleted.
    pub timeout_ms: Option<u64>,
}

/// A chain; a base chain has a hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Chain name, unique in the table.
    pub name: String,
    /// For base chains: where they hook in. Base chains are always of type
    /// `filter` with policy `accept` (dockfw only ever drops or rejects).
    pub hook: Option<BaseHook>,
    /// Rules, evaluated in order.
    pub rules: Vec<Rule>,
}

/// Where a base chain is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseHook {
    /// The netfilter hook.
    pub hook: Hook,
    /// Priority: lower runs earlier; Docker's filter chains run at 0.
    pub priority: i32,
}

/// Netfilter hooks used by dockfw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Packets routed through the host (to containers behind DNAT or a bridge).
    Forward,
    /// Packets for the host itself (e.g. docker-proxy).
    Input,
}

/// One rule: all matches must hold; then statements run (a
/// [`Statement::Counter`] among them counts), and the verdict (if any) applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's comment: the policy rule it comes from (or what it is for).
    pub comment: String,
    /// Conditions, all of which must hold, in order.
    pub matches: Vec<Match>,
    /// Non-terminal actions, run after the matches.
    pub statements: Vec<Statement>,
    /// What happens to a matching packet; `None` continues with the next rule.
    pub verdict: Option<Verdict>,
}

/// IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(_) => Self::Ipv4,
            std::net::IpAddr::V6(_) => Self::Ipv6,
        }
    }
}

/// Transport protocols that published ports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The lowercase name, as nft and the policy write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// An interface name pattern: exact (`eth0`) or a prefix wildcard (`wg*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfName {
    /// Exactly this name.
    Exact(String),
    /// Any name starting with this prefix (written `prefix*`).
    Prefix(String),
}

impl IfName {
    /// Whether the interface called `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }

    /// Whether every name this pattern matches is also matched by `other`.
    pub(crate) fn is_covered_by(&self, other: &IfName) -> bool {
        match (self, other) {
            (Self::Exact(name), _) => other.matches(name),
            (Self::Prefix(prefix), Self::Prefix(outer)) => prefix.starts_with(outer.as_str()),
            (Self::Prefix(_), Self::Exact(_)) => false,
        }
    }
}

impl std::fmt::Display for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// Connection-tracking state tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtState {
    /// `ct state new`.
    New,
    /// `ct state established,related`: replies and the rest of a connection
    /// already judged, and what conntrack relates to one (ICMP errors, FTP data).
    EstablishedOrRelated,
    /// `ct state established` (not related): a later packet of a connection.
    Established,
    /// `ct state untracked`: a packet conntrack was told not to track (a
    /// `notrack` rule anywhere). It has no original tuple and is never NATed.
    Untracked,
    /// `ct state invalid`: conntrack found no connection the packet could
    /// belong to or start (a SYN with FIN, a bad checksum, an ICMP error
    /// about no known connection).
    Invalid,
    /// `ct state != new`: established, related, invalid or untracked. Not
    /// compiled any more (it let untracked packets through); kept so that a
    /// table written by an earlier version reads back, as a difference.
    NotNew,
}

/// A frame's link-layer addressing (`meta pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketType {
    /// To every host on the link (`PACKET_BROADCAST`).
    Broadcast,
    /// To a group of hosts (`PACKET_MULTICAST`).
    Multicast,
}

impl PacketType {
    /// The kernel's `PACKET_*` number.
    pub fn number(self) -> u8 {
        match self {
            Self::Broadcast => 1,
            Self::Multicast => 2,
        }
    }

    /// The word nft writes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Multicast => "multicast",
        }
    }
}

/// How a port is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortMatch {
    /// One port.
    Single(u16),
    /// An inclusive range `first-last`.
    Range(u16, u16),
    /// Membership in a named port set.
    Set(String),
}

impl PortMatch {
    /// Whether `port` matches, looking named sets up in `ruleset`.
    pub fn matches(&self, port: u16, ruleset: &Ruleset) -> bool {
        match self {
            Self::Single(single) => port == *single,
            Self::Range(first, last) => (*first..=*last).contains(&port),
            Self::Set(name) => match ruleset.set(name).map(|set| &set.elements) {
                Some(SetElements::Port(ports)) => crate::interval::contains(ports, port),
                _ => false,
            },
        }
    }
}

/// A rate: `count` events per `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    /// Events per unit.
    pub count: u64,
    /// The time unit.
    pub unit: RateUnit,
}

/// Time units for rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateUnit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl RateUnit {
    /// Length of the unit in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86400,
        }
    }

    /// The name nft and the policy use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.name())
    }
}

/// A condition on a packet. Each maps to a fixed sequence of nftables
/// expressions, so a backend can encode and decode it without guessing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// `meta pkttype broadcast|multicast`: how the frame was addressed.
    PacketType(PacketType),
    /// `iifname NAME` (input interface).
    IifName(IfName),
    /// `oifname NAME` (output interface).
    OifName(IfName),
    /// `meta nfproto ipv4|ipv6`.
    NfProto(Family),
    /// `meta l4proto tcp|udp`.
    L4Proto(Proto),
    /// `ct state new` / `ct state != new`.
    CtState(CtState),
    /// `ct status dnat`: the connection was destination-NATed (Docker-published).
    CtStatusDnat,
    /// `ct direction original`: the packet goes the way the connection's
    /// first packet went (client to server), not a reply.
    CtDirectionOriginal,
    /// `ct label ! 96,…,127`: the connection carries none of dockfw's label
    /// bits ([`CT_LABEL_BITS`](crate::layout::CT_LABEL_BITS)): no dockfw rules
    /// chain has judged it.
    CtUnlabelled,
    /// `ip saddr @set` / `ip6 saddr @set`.
    SourceIn {
        /// Address family of the set (and of the packet).
        family: Family,
        /// Name of an address interval set.
        set: String,
    },
    /// `ct original ip daddr @set` / `ct original ip6 daddr @set`: the address
    /// the client dialled, before DNAT.
    DialledAddrIn {
        /// Address family of the set (and of the packet).
        family: Family,
        /// Name of an address interval set.
        set: String,
    },
    /// `ct original proto-dst PORTS`: the port the client dialled, before DNAT.
    /// Must follow an [`Match::L4Proto`].
    DialledPort(PortMatch),
    /// `ip daddr @set` / `ip6 daddr @set`: the packet's own destination. For
    /// untracked packets, which have no original tuple and are never NATed,
    /// it is the address the client dialled.
    DestAddrIn {
        /// Address family of the set (and of the packet).
        family: Family,
        /// Name of an address interval set.
        set: String,
    },
    /// `th dport PORTS`: the packet's own destination port (the dialled one
    /// for untracked packets). Must follow an [`Match::L4Proto`].
    DestPort(PortMatch),
    /// `limit rate R burst B packets`: holds while the rule's overall rate
    /// stays under `rate` (used to rate-limit logging).
    Limit {
        /// The rate.
        rate: Rate,
        /// Burst, in packets.
        burst: u32,
    },
    /// `update @set { ip saddr limit rate over R burst B packets }`: holds when
    /// this source's new connections exceed `rate`.
    SourceRateOver {
        /// Address family of the source.
        family: Family,
        /// The meter set tracking sources.
        set: String,
        /// The rate.
        rate: Rate,
        /// Burst, in packets.
        burst: u32,
    },
    /// `add @set { ip saddr ct count over N }`: holds when this source has more
    /// than `count` tracked connections.
    SourceConnectionsOver {
        /// Address family of the source.
        family: Family,
        /// The meter set tracking sources.
        set: String,
        /// The connection count allowed.
        count: u32,
    },
}

impl Match {
    /// The named set this match looks up or updates, if any.
    pub fn set(&self) -> Option<&str> {
        match self {
            Self::SourceIn { set, .. }
            | Self::DialledAddrIn { set, .. }
            | Self::DialledPort(PortMatch::Set(set))
            | Self::DestAddrIn { set, .. }
            | Self::DestPort(PortMatch::Set(set))
            | Self::SourceRateOver { set, .. }
            | Self::SourceConnectionsOver { set, .. } => Some(set),
            _ => None,
        }
    }

    /// The name of the set this match uses, to rename it (a backend staging
    /// a set under another name, a test mutating a ruleset). The same
    /// variants as [`Match::set`].
    pub fn set_mut(&mut self) -> Option<&mut String> {
        match self {
            Self::SourceIn { set, .. }
            | Self::DialledAddrIn { set, .. }
            | Self::DialledPort(PortMatch::Set(set))
            | Self::DestAddrIn { set, .. }
            | Self::DestPort(PortMatch::Set(set))
            | Self::SourceRateOver { set, .. }
            | Self::SourceConnectionsOver { set, .. } => Some(set),
            _ => None,
        }
    }
}

/// A non-terminal action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statement {
    /// `log prefix "…" group N` (an NFLOG group), or `log prefix "…"`
    /// (the kernel log, default level). The prefix is a
    /// [`LogPrefix`](crate::layout::LogPrefix) naming the decision.
    Log {
        /// Text put before each log line.
        prefix: String,
        /// The NFLOG group; `None`: the kernel log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<u16>,
    },
    /// `ct label set BIT`: sets one connection label bit (the kernel ORs it
    /// in; other bits stay as they are).
    CtLabelSet(u8),
    /// `counter`: counts the packets and bytes that reach it. The compiler
    /// writes it last among a rule's statements, on the rules whose counts
    /// someone reads ([`crate::layout::CounterAt`]), and nowhere else.
    Counter,
}

/// How a rejected packet is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectWith {
    /// `reject with tcp reset`.
    TcpReset,
    /// `reject with icmpx admin-prohibited` (ICMP or ICMPv6 by family).
    IcmpxAdminProhibited,
}

/// What happens to a packet once a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Ends this base chain; later base chains (Docker's) still run.
    Accept,
    /// Discards the packet; final.
    Drop,
    /// Discards the packet and answers the sender; final.
    Reject(RejectWith),
    /// Returns to the calling chain.
    Return,
    /// Runs the named chain, then continues here.
    Jump(String),
    /// Runs the named chain instead of the rest of this one.
    Goto(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: u32) -> SetElements {
        SetElements::Ipv4Addrs((0..n).map(|i| Interval::single(Ipv4Addr::from(2 * i))).collect())
    }

    #[test]
    fn large_hashes_are_sized_with_room_to_grow() {
        assert_eq!(addresses(3).hash_size(), None);
        assert_eq!(addresses(SIZED_FROM as u32 - 1).hash_size(), None);
        assert_eq!(addresses(1024).hash_size(), Some(2048));
        assert_eq!(addresses(1639).hash_size(), Some(2048));
        assert_eq!(addresses(1640).hash_size(), Some(4096));
        assert_eq!(addresses(100_000).hash_size(), Some(131_072));
        for n in [1024, 1500, 4096, 100_000, 1_000_000] {
            let size = addresses(n).hash_size().unwrap();
            assert!(u64::from(size) >= u64::from(n) * 5 / 4, "{n}: {size}");
            assert!(size.is_power_of_two());
        }
        // Interval sets are never sized.
        let interval = SetElements::Ipv4(vec![Interval::single(Ipv4Addr::LOCALHOST); 2000]);
        assert_eq!(interval.hash_size(), None);
    }
}
