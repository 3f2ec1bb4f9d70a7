//! Parsing of the policy's value syntaxes: addresses (address, CIDR, range),
//! ports (`80`, `80/tcp`, `8000-8100/udp`), rates (`20/second`) and interface
//! names. Errors carry a message and, where one exists, a fix.

use crate::interval::{self, Interval};
use crate::ruleset::{Family, IfName, Proto, Rate, RateUnit};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A value that could not be parsed: what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl ValueError {
    fn new(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// A contiguous range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpRange {
    /// IPv4 addresses.
    V4(Interval<Ipv4Addr>),
    /// IPv6 addresses.
    V6(Interval<Ipv6Addr>),
}

impl IpRange {
    /// Whether `addr` is in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Self::V4(range), IpAddr::V4(a)) => range.first <= a && a <= range.last,
            (Self::V6(range), IpAddr::V6(a)) => range.first <= a && a <= range.last,
            _ => false,
        }
    }
}

/// Parses `ADDR`, `ADDR/LEN` or `ADDR-ADDR` (IPv4 or IPv6; IPv6 may be in brackets).
pub(crate) fn parse_ip_range(text: &str) -> Result<IpRange, ValueError> {
    let text = text.trim();
    if let Some((network, len)) = text.split_once('/') {
        return parse_cidr(text, network.trim(), len.trim());
    }
    if let Some((first, last)) = split_range(text) {
        let (first_addr, last_addr) = (parse_ip(first)?, parse_ip(last)?);
        return match (first_addr, last_addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Interval::new(a, b).map(IpRange::V4),
            (IpAddr::V6(a), IpAddr::V6(b)) => Interval::new(a, b).map(IpRange::V6),
            _ => {
                return Err(ValueError::new(
                    format!("range {text:?} mixes IPv4 and IPv6"),
                    "write one range for each family".to_string(),
                ));
            }
        }
        .ok_or_else(|| {
            ValueError::new(
                format!("range {text:?} is reversed: {first} comes after {last}"),
                format!("write it low to high: \"{last}-{first}\""),
            )
        });
    }
    Ok(match parse_ip(text)? {
        IpAddr::V4(addr) => IpRange::V4(Interval::single(addr)),
        IpAddr::V6(addr) => IpRange::V6(Interval::single(addr)),
    })
}

/// Parses one address, as a dynamic set holds them (`dockfw-nft set add`):
/// `ADDR` (IPv4 or IPv6, IPv6 also in brackets), or a network or range of
/// exactly one address (`192.0.2.7/32`). A larger network or range is an
/// error saying so.
///
/// ```
/// use dockfw_core::values::parse_address;
/// assert_eq!(parse_address("2001:db8::7/128").unwrap().to_string(), "2001:db8::7");
/// assert!(parse_address("192.0.2.0/24").unwrap_err().message.contains("256 addresses"));
/// ```
pub fn parse_address(text: &str) -> Result<IpAddr, ValueError> {
    let (first, count): (IpAddr, u128) = match parse_ip_range(text)? {
        IpRange::V4(range) => (
            range.first.into(),
            u128::from(u32::from(range.last) - u32::from(range.first)) + 1,
        ),
        IpRange::V6(range) => (
            range.first.into(),
            (u128::from(range.last) - u128::from(range.first)).saturating_add(1),
        ),
    };
    if count == 1 {
        return Ok(first);
    }
    let many = if count == u128::MAX {
        "2^128 addresses".to_string()
    } else {
        format!("{count} addresses")
    };
    Err(ValueError::new(
        format!(
            "{:?} holds {many}: a dynamic set holds single addresses",
            text.trim()
        ),
        "give each address on its own; networks and ranges belong in a set written in the policy or a file"
            .to_string(),
    ))
}

/// Splits `a-b` into its ends. IPv6 addresses never contain '-', so the first
/// dash separates the ends.
fn split_range(text: &str) -> Option<(&str, &str)> {
    text.split_once('-').map(|(a, b)| (a.trim(), b.trim()))
}

fn parse_ip(text: &str) -> Result<IpAddr, ValueError> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let addr = parse_bare_ip(text, bare)?;
    // An IPv4 client reaches nftables as IPv4, never as ::ffff:a.b.c.d (only
    // a dual-stack socket shows it so), so such an address would silently
    // match nothing.
    if let IpAddr::V6(v6) = addr
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(mapped_error(text, &v4.to_string()));
    }
    Ok(addr)
}

fn mapped_error(text: &str, ipv4: &str) -> ValueError {
    ValueError::new(
        format!("{text:?} is an IPv4-mapped IPv6 address, which no packet carries, so it would never match"),
        format!("IPv4 clients are matched by their IPv4 address: write \"{ipv4}\""),
    )
}

fn parse_bare_ip(text: &str, bare: &str) -> Result<IpAddr, ValueError> {
    bare.parse().map_err(|_| {
        let hint = if bare.contains(':') && bare.contains('%') {
            Some("interface scopes (%eth0) are not allowed; write the bare address".to_string())
        } else if bare.is_empty() {
            None
        } else if bare.chars().all(|c| c.is_ascii_digit() || c == '.') {
            Some("an IPv4 address has four numbers 0-255, like 192.0.2.10".to_string())
        } else if bare.chars().any(|c| c.is_ascii_alphabetic()) && !bare.contains(':') {
            Some(
                "host names are not resolved; write an address, or \"@name\" for a set defined in [sets]"
                    .to_string(),
            )
        } else {
            None
        };
        ValueError::new(format!("{text:?} is not an IP address"), hint)
    })
}

fn parse_cidr(text: &str, network: &str, len: &str) -> Result<IpRange, ValueError> {
    let addr = parse_ip(network).map_err(|error| {
        // A mapped network: suggest the IPv4 network it stands for.
        let mapped = network.parse::<Ipv6Addr>().ok().and_then(|a| a.to_ipv4_mapped());
        match (mapped, len.parse::<u32>()) {
            (Some(v4), Ok(len @ 96..=128)) => mapped_error(text, &format!("{v4}/{}", len - 96)),
            _ => error,
        }
    })?;
    let bits = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len: u32 = match len.parse() {
        Ok(len) if len <= bits => len,
        _ => {
            return Err(ValueError::new(
                format!("{text:?}: prefix length must be a number from 0 to {bits}"),
                None,
            ));
        }
    };
    let host_mask = if len == 0 {
        u128::MAX
    } else {
        (1u128 << (bits - len)) - 1
    };
    let value = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let host_mask = if bits == 32 {
        host_mask & u128::from(u32::MAX)
    } else {
        host_mask
    };
    if value & host_mask != 0 {
        let network = value & !host_mask;
        let (network, single) = match addr {
            IpAddr::V4(_) => (Ipv4Addr::from(network as u32).to_string(), format!("{addr}/32")),
            IpAddr::V6(_) => (Ipv6Addr::from(network).to_string(), format!("{addr}/128")),
        };
        return Err(ValueError::new(
            format!("{text:?} has host bits set"),
            format!("did you mean the network \"{network}/{len}\", or the single address \"{single}\"?"),
        ));
    }
    let last = value | host_mask;
    Ok(match addr {
        IpAddr::V4(a) => IpRange::V4(Interval {
            first: a,
            last: Ipv4Addr::from(last as u32),
        }),
        IpAddr::V6(a) => IpRange::V6(Interval {
            first: a,
            last: Ipv6Addr::from(last),
        }),
    })
}

/// Checks a set's `url`: http or https, with a host.
pub(crate) fn check_url(text: &str) -> Result<(), ValueError> {
    let text = text.trim();
    let scheme_end = text.find("://").map_or(0, |i| i + 3);
    let scheme = text[..scheme_end].to_ascii_lowercase();
    if scheme != "https://" && scheme != "http://" {
        return Err(ValueError::new(
            format!("{text:?} is not an https:// or http:// URL"),
            "write the list's address, like url = \"https://www.cloudflare.com/ips-v4\"".to_string(),
        ));
    }
    let host = text[scheme_end..]
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if host.is_empty() {
        return Err(ValueError::new(format!("URL {text:?} has no host"), None));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValueError::new(
            format!("URL {text:?} contains {c:?}"),
            "percent-encode it (a space is %20)".to_string(),
        ));
    }
    Ok(())
}

/// Checks a DNS name of a set's `names`: labels of letters, digits, '-'
/// and '_', at most 63 bytes each and 253 in all; a trailing dot is allowed.
pub(crate) fn check_host_name(text: &str) -> Result<(), ValueError> {
    let text = text.trim();
    if parse_ip_range(text).is_ok() {
        return Err(ValueError::new(
            format!("{text:?} is an address, not a name"),
            "write addresses under entries = [...]".to_string(),
        ));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(ValueError::new(
            format!("{text:?} is not a DNS name"),
            "write a host name like \"api.partner.example\" (letters, digits, '-' and '_' between dots; internationalised names in their xn-- form)".to_string(),
        ));
    }
    Ok(())
}

/// A set of IPv4 and IPv6 addresses, normalised per family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AddrSet {
    /// IPv4 intervals, normalised.
    pub v4: Vec<Interval<Ipv4Addr>>,
    /// IPv6 intervals, normalised.
    pub v6: Vec<Interval<Ipv6Addr>>,
}

impl AddrSet {
    /// Builds a normalised set from ranges.
    pub(crate) fn from_ranges(ranges: impl IntoIterator<Item = IpRange>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for range in ranges {
            match range {
                IpRange::V4(interval) => v4.push(interval),
                IpRange::V6(interval) => v6.push(interval),
            }
        }
        Self {
            v4: interval::normalize(v4),
            v6: interval::normalize(v6),
        }
    }

    /// The set of exactly these addresses.
    pub fn from_addrs(addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        Self::from_ranges(addrs.into_iter().map(|addr| match addr {
            IpAddr::V4(a) => IpRange::V4(Interval::single(a)),
            IpAddr::V6(a) => IpRange::V6(Interval::single(a)),
        }))
    }

    /// Every address of both families.
    pub fn everything() -> Self {
        Self {
            v4: vec![Interval {
                first: Ipv4Addr::UNSPECIFIED,
                last: Ipv4Addr::BROADCAST,
            }],
            v6: vec![Interval {
                first: Ipv6Addr::UNSPECIFIED,
                last: Ipv6Addr::from(u128::MAX),
            }],
        }
    }

    /// Union of two sets.
    pub(crate) fn union(&self, other: &Self) -> Self {
        Self {
            v4: interval::normalize([self.v4.as_slice(), other.v4.as_slice()].concat()),
            v6: interval::normalize([self.v6.as_slice(), other.v6.as_slice()].concat()),
        }
    }

    /// Addresses in both sets.
    pub(crate) fn intersection(&self, other: &Self) -> Self {
        Self {
            v4: interval::intersect(&self.v4, &other.v4),
            v6: interval::intersect(&self.v6, &other.v6),
        }
    }

    /// Addresses in this set but not in `other`.
    pub(crate) fn difference(&self, other: &Self) -> Self {
        Self {
            v4: interval::subtract(&self.v4, &other.v4),
            v6: interval::subtract(&self.v6, &other.v6),
        }
    }

    /// Only the addresses of `family`.
    pub(crate) fn of_family(&self, family: Family) -> Self {
        match family {
            Family::Ipv4 => Self {
                v4: self.v4.clone(),
                v6: vec![],
            },
            Family::Ipv6 => Self {
                v4: vec![],
                v6: self.v6.clone(),
            },
        }
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => interval::contains(&self.v4, a),
            IpAddr::V6(a) => interval::contains(&self.v6, a),
        }
    }

    /// Whether every address of `other` is in this set.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        interval::covers(&self.v4, &other.v4) && interval::covers(&self.v6, &other.v6)
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether the set holds any address of `family`.
    pub(crate) fn has_family(&self, family: Family) -> bool {
        match family {
            Family::Ipv4 => !self.v4.is_empty(),
            Family::Ipv6 => !self.v6.is_empty(),
        }
    }
}

/// Published ports of one protocol: `PORT[/PROTO]` or `FIRST-LAST[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// Transport protocol.
    pub proto: Proto,
    /// The ports.
    pub ports: Interval<u16>,
}

/// Parses a port specification; the protocol defaults to tcp.
pub fn parse_port_range(text: &str) -> Result<PortRange, ValueError> {
    let text = text.trim();
    let (ports, proto) = match text.split_once('/') {
        Some((ports, proto)) => (ports.trim(), parse_proto(proto.trim())?),
        None => (text, Proto::Tcp),
    };
    let interval = match ports.split_once('-') {
        Some((first, last)) => {
            let (a, b) = (parse_port(first.trim())?, parse_port(last.trim())?);
            Interval::new(a, b).ok_or_else(|| {
                ValueError::new(
                    format!("port range {text:?} is reversed"),
                    format!("write it low to high: \"{b}-{a}/{}\"", proto.name()),
                )
            })?
        }
        None => Interval::single(parse_port(ports)?),
    };
    Ok(PortRange {
        proto,
        ports: interval,
    })
}

/// Checks a port number given as a TOML integer.
pub(crate) fn port_from_integer(value: i64) -> Result<u16, ValueError> {
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(port_out_of_range(&value.to_string())),
    }
}

fn parse_port(text: &str) -> Result<u16, ValueError> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        let hint = (!text.is_empty()).then(|| {
            "write the port number, like \"443\" or \"443/tcp\" (service names are not looked up)".to_string()
        });
        return Err(ValueError::new(format!("{text:?} is not a port number"), hint));
    }
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(port_out_of_range(text)),
    }
}

fn port_out_of_range(text: &str) -> ValueError {
    ValueError::new(
        format!("port {text} is out of range"),
        "ports go from 1 to 65535".to_string(),
    )
}

fn parse_proto(text: &str) -> Result<Proto, ValueError> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(ValueError::new(
            format!("unknown protocol {text:?}"),
            "Docker publishes tcp or udp ports: write \"/tcp\" or \"/udp\"".to_string(),
        )),
    }
}

/// Parses `COUNT/UNIT`, unit one of second, minute, hour, day (or s, sec, min, m, h, d).
pub(crate) fn parse_rate(text: &str) -> Result<Rate, ValueError> {
    let bad = || {
        ValueError::new(
            format!("{text:?} is not a rate"),
            "write a count per time unit, like \"20/second\", \"100/minute\", \"1000/hour\" or \"5000/day\""
                .to_string(),
        )
    };
    let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" | "seconds" => RateUnit::Second,
        "m" | "min" | "minute" | "minutes" => RateUnit::Minute,
        "h" | "hour" | "hours" => RateUnit::Hour,
        "d" | "day" | "days" => RateUnit::Day,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(ValueError::new(
            format!("rate {text:?} allows nothing"),
            "a rate must be at least 1; to block, use action = \"drop\"".to_string(),
        ));
    }
    if count > u64::from(u32::MAX) {
        return Err(ValueError::new(format!("rate {text:?} is too large"), None));
    }
    Ok(Rate { count, unit })
}

/// Parses an interface name, `name` or the wildcard `prefix*`.
pub(crate) fn parse_ifname(text: &str) -> Result<IfName, ValueError> {
    // IFNAMSIZ is 16 including the terminating NUL.
    const MAX_LEN: usize = 15;
    let (name, wildcard) = match text.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (text, false),
    };
    if name.is_empty() && !wildcard {
        return Err(ValueError::new("empty interface name", None));
    }
    if name.is_empty() {
        return Err(ValueError::new(
            "\"*\" alone would match every interface",
            "name the interfaces outside traffic arrives on, like \"eth0\"; \"eth*\" matches every name starting with eth"
                .to_string(),
        ));
    }
    if name.len() > MAX_LEN {
        return Err(ValueError::new(
            format!("interface name {text:?} is longer than {MAX_LEN} characters"),
            None,
        ));
    }
    // nft writes a prefix with its '*' (`iifname "eth*"`), within the same 15 bytes.
    if wildcard && name.len() == MAX_LEN {
        return Err(ValueError::new(
            format!("interface pattern {text:?} is longer than {MAX_LEN} characters"),
            format!("a {MAX_LEN}-character prefix matches only itself: write {name:?} without '*'"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '*' | '"' | '\\') || c.is_control())
    {
        return Err(ValueError::new(
            format!("interface name {text:?} contains {c:?}"),
            "only a trailing '*' is allowed as a wildcard".to_string(),
        ));
    }
    Ok(if wildcard {
        IfName::Prefix(name.to_string())
    } else {
        IfName::Exact(name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: &str, b: &str) -> IpRange {
        IpRange::V4(Interval::new(a.parse().unwrap(), b.parse().unwrap()).unwrap())
    }

    fn v6(a: &str, b: &str) -> IpRange {
        IpRange::V6(Interval::new(a.parse().unwrap(), b.parse().unwrap()).unwrap())
    }

    #[test]
    fn parses_addresses_cidrs_and_ranges() {
        assert_eq!(
            parse_ip_range("203.0.113.10").unwrap(),
            v4("203.0.113.10", "203.0.113.10")
        );
        assert_eq!(
            parse_ip_range("198.51.100.0/24").unwrap(),
            v4("198.51.100.0", "198.51.100.255")
        );
        assert_eq!(
            parse_ip_range(" 192.0.2.10 - 192.0.2.20 ").unwrap(),
            v4("192.0.2.10", "192.0.2.20")
        );
        assert_eq!(
            parse_ip_range("0.0.0.0/0").unwrap(),
            v4("0.0.0.0", "255.255.255.255")
        );
        assert_eq!(
            parse_ip_range("2001:db8:10::/48").unwrap(),
            v6("2001:db8:10::", "2001:db8:10:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            parse_ip_range("[2001:db8::1]").unwrap(),
            v6("2001:db8::1", "2001:db8::1")
        );
        assert_eq!(
            parse_ip_range("::/0").unwrap(),
            v6("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            parse_ip_range("2001:db8::1-2001:db8::9").unwrap(),
            v6("2001:db8::1", "2001:db8::9")
        );
    }

    #[test]
    fn host_bits_say_which_address_was_meant() {
        let err = parse_ip_range("198.51.100.7/24").unwrap_err();
        assert!(err.message.contains("host bits"), "{err:?}");
        let hint = err.hint.unwrap();
        assert!(
            hint.contains("\"198.51.100.0/24\"") && hint.contains("\"198.51.100.7/32\""),
            "{hint}"
        );
        let err = parse_ip_range("2001:db8::1/64").unwrap_err();
        assert!(err.hint.unwrap().contains("\"2001:db8::/64\""));
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "300.1.1.1",
            "1.2.3",
            "example.com",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "",
            "fe80::1%eth0",
        ] {
            assert!(parse_ip_range(bad).is_err(), "{bad} should fail");
        }
        let err = parse_ip_range("192.0.2.20-192.0.2.10").unwrap_err();
        assert!(err.message.contains("reversed"));
        assert_eq!(
            err.hint.unwrap(),
            "write it low to high: \"192.0.2.10-192.0.2.20\""
        );
        assert!(
            parse_ip_range("192.0.2.1-2001:db8::1")
                .unwrap_err()
                .message
                .contains("mixes")
        );
        assert!(
            parse_ip_range("example.com")
                .unwrap_err()
                .hint
                .unwrap()
                .contains("not resolved")
        );
    }

    #[test]
    fn parses_ports() {
        let p = |s| parse_port_range(s).unwrap();
        assert_eq!(
            p("443"),
            PortRange {
                proto: Proto::Tcp,
                ports: Interval::single(443)
            }
        );
        assert_eq!(
            p("53/udp"),
            PortRange {
                proto: Proto::Udp,
                ports: Interval::single(53)
            }
        );
        assert_eq!(p("80/TCP").proto, Proto::Tcp);
        assert_eq!(p("8000-8100/tcp").ports, Interval::new(8000, 8100).unwrap());
        assert_eq!(p("1-65535/udp").ports, Interval::new(1, 65535).unwrap());
        for bad in [
            "0",
            "65536",
            "http",
            "80/sctp",
            "-5",
            "8100-8000",
            "80/",
            "99999999999",
        ] {
            assert!(parse_port_range(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(
            parse_port_range("8100-8000/udp").unwrap_err().hint.unwrap(),
            "write it low to high: \"8000-8100/udp\""
        );
        assert!(
            port_from_integer(0).is_err()
                && port_from_integer(65536).is_err()
                && port_from_integer(-1).is_err()
        );
        assert_eq!(port_from_integer(65535).unwrap(), 65535);
    }

    #[test]
    fn parses_rates() {
        assert_eq!(
            parse_rate("20/second").unwrap(),
            Rate {
                count: 20,
                unit: RateUnit::Second
            }
        );
        assert_eq!(parse_rate("100/min").unwrap().unit, RateUnit::Minute);
        assert_eq!(parse_rate("5 / hour").unwrap().unit, RateUnit::Hour);
        assert_eq!(parse_rate("1/d").unwrap().unit, RateUnit::Day);
        for bad in [
            "20",
            "20/fortnight",
            "x/second",
            "0/second",
            "-1/second",
            "99999999999/second",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn parses_interface_names() {
        assert_eq!(parse_ifname("eth0").unwrap(), IfName::Exact("eth0".into()));
        assert_eq!(parse_ifname("wg*").unwrap(), IfName::Prefix("wg".into()));
        for bad in ["", "*", "a-very-long-interface-name", "eth 0", "e*th"] {
            assert!(parse_ifname(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn addr_sets_normalise_and_compare() {
        let set = AddrSet::from_ranges([
            v4("10.0.0.0", "10.0.0.255"),
            v4("10.0.1.0", "10.0.1.255"),
            v6("::1", "::1"),
        ]);
        assert_eq!(
            set.v4,
            vec![Interval::new("10.0.0.0".parse().unwrap(), "10.0.1.255".parse().unwrap()).unwrap()]
        );
        assert!(set.contains("10.0.1.7".parse().unwrap()));
        assert!(!set.contains("10.0.2.0".parse().unwrap()));
        assert!(set.contains("::1".parse().unwrap()));
        assert!(AddrSet::everything().covers(&set));
        assert!(!set.covers(&AddrSet::everything()));
    }
}
