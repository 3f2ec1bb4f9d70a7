//! `dockfw-nft log`: follows the NFLOG group the guard logs to and prints
//! each logged packet decoded: when, what was decided and by which rule,
//! who (source), what they dialled, and which container it concerned.
//!
//! The rule comes from the log prefix ([`LogPrefix`]: the decision's chain,
//! what it did, the rule's name), named from the policy when it can be read
//! (the prefix's name may be cut short). The dialled address and port come
//! from the packet's connection when the kernel adds it to NFLOG messages
//! (`CONFIG_NETFILTER_NETLINK_GLUE_CT`); else, for a packet DNATed to a
//! container, from the port the container publishes (Docker); else they
//! are the packet's own destination (exact for outbound, between and
//! docker-proxy, which no NAT changed), and the output says which.

use crate::Exit;
use crate::docker_view;
use crate::output::{BAD, DIM, Verbosity, WARN, errln, paint};
use crate::policy_file;
use crate::session::Session;
use anyhow::{Result, bail};
use dockfw_core::layout::{LogPrefix, decided_by_chain};
use dockfw_core::policy::{DEFAULT_LOG_GROUP, LogTarget};
use dockfw_core::{Action, Container, Direction, Draft};
use dockfw_nft::nflog::{LoggedPacket, Received};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use serde::Serialize;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the container list may be asked again for an address not in it.
const DOCKER_REFRESH: Duration = Duration::from_secs(5);

/// One logged packet, as printed.
#[derive(Debug, Serialize)]
struct Event {
    /// RFC 3339, UTC.
    time: String,
    /// The rule's name (a default's: "default", "outbound default", …).
    rule: String,
    /// The decision's chain (the prefix's id).
    chain: String,
    direction: Option<Direction>,
    /// What was decided: allow, drop, reject; in audit mode would-drop,
    /// would-reject, over-limit (the connection went on); `foreign` for a
    /// packet someone else logged to the group (`--all`).
    action: String,
    /// Whether the packet was let through (unknown for a foreign one).
    admitted: Option<bool>,
    /// Logged by someone else: its prefix is not dockfw's, or names a
    /// decision the policy does not have. Never attributed to a rule.
    foreign: bool,
    protocol: String,
    source: Option<IpAddr>,
    source_port: Option<u16>,
    /// What the client dialled (see `dialled_from`).
    dialled: Option<IpAddr>,
    dialled_port: Option<u16>,
    /// Where `dialled` comes from: "conntrack" (the connection's original
    /// direction), "docker" (the port the container publishes; the host
    /// address is then unknown), or "packet" (its own destination).
    dialled_from: &'static str,
    /// The packet's own destination when NAT changed it (the container).
    destination: Option<IpAddr>,
    destination_port: Option<u16>,
    in_interface: Option<String>,
    out_interface: Option<String>,
    /// The container concerned: reached (inbound), or opening the
    /// connection (outbound, between).
    container: Option<String>,
    /// Between: the container reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    to_container: Option<String>,
    /// The log prefix as the kernel gave it.
    prefix: String,
}

/// Docker's containers, asked again (at most every [`DOCKER_REFRESH`]) when
/// an address is not among them.
struct Containers<'a> {
    session: &'a Session,
    list: Vec<Container>,
    asked: Option<Instant>,
}

impl Containers<'_> {
    fn refresh(&mut self) {
        if self.session.global.no_docker || self.asked.is_some_and(|at| at.elapsed() < DOCKER_REFRESH) {
            return;
        }
        self.asked = Some(Instant::now());
        if let Ok(view) = docker_view::query(&self.session.global)
            && view.reachable
        {
            self.list = view.containers;
        }
    }

    fn with_address(&mut self, addr: IpAddr) -> Option<&Container> {
        if !self.list.iter().any(|c| c.addresses.contains(&addr)) {
            self.refresh();
        }
        self.list.iter().find(|c| c.addresses.contains(&addr))
    }
}

/// How often the policy is read again, to see whether it still logs to
/// the group followed.
const POLICY_RECHECK: Duration = Duration::from_secs(5);

/// The group the policy at `session`'s config logs to; `None` when it
/// cannot be read or logs to the kernel log.
fn policy_group(draft: &Draft) -> Option<u16> {
    match draft.guard().log_to {
        LogTarget::Group(group) => Some(group),
        LogTarget::Kernel => None,
    }
}

fn read_draft(session: &Session) -> Result<Draft> {
    let bytes = policy_file::read(&session.global.config)?;
    Ok(Draft::parse_bytes(&session.config_name(), &bytes)?)
}

/// `dockfw-nft log [--group N] [--all]`.
pub fn follow(session: &Session, group: Option<u16>, all: bool) -> Result<Exit> {
    let talk = session.verbosity > Verbosity::Quiet && !session.global.json;
    let draft = match read_draft(session) {
        Ok(draft) => Some(draft),
        Err(error) => {
            if talk {
                errln!(
                    session.console,
                    "{} cannot read the policy ({error:#}); rules are named from the log prefixes",
                    paint(WARN, "warning:")
                );
            }
            None
        }
    };
    let group = match (group, draft.as_ref().map(|d| d.guard().log_to)) {
        (Some(group), _) => group,
        (None, Some(LogTarget::Group(group))) => group,
        (None, None) => DEFAULT_LOG_GROUP,
        (None, Some(LogTarget::Kernel)) => bail!(
            "{} logs to the kernel log (log_to = \"kernel\"): read it with `dmesg` or `journalctl -k`, \
             or set log_to = \"group\" and apply (or give --group N)",
            session.config_name()
        ),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let mut listener = session.log_listener(group)?;
    // The group the policy logs to, when it is not the one followed: said
    // once per value (--group given, or the policy changed while we run).
    let mut warned_group = None;
    let mut check_group = |draft: Option<&Draft>| {
        let Some(logs_to) = draft.and_then(policy_group) else {
            return;
        };
        if logs_to != group && warned_group != Some(logs_to) && talk {
            errln!(
                session.console,
                "{} {} logs to NFLOG group {logs_to}, not to group {group} followed here: \
                 its packets are not shown (restart `dockfw-nft log` to follow {logs_to})",
                paint(WARN, "warning:"),
                session.config_name()
            );
        }
        warned_group = Some(logs_to);
    };
    check_group(draft.as_ref());
    let mut rechecked = Instant::now();
    let mut skipped: u64 = 0;
    if talk {
        errln!(
            session.console,
            "{}",
            paint(DIM, format!("following NFLOG group {group} (Ctrl-C stops)"))
        );
        if !listener.conntrack() {
            errln!(
                session.console,
                "{}",
                paint(
                    DIM,
                    "this kernel adds no connection to NFLOG messages (no CONFIG_NETFILTER_NETLINK_GLUE_CT): \
                     a published port's dialled port comes from Docker, its address stays unknown"
                )
            );
        }
    }
    let mut containers = Containers {
        session,
        list: Vec::new(),
        asked: None,
    };
    containers.refresh();
    let reader = StdoutReader::watch();
    let ended = |skipped: u64| {
        if skipped > 0 && talk {
            errln!(
                session.console,
                "{}",
                paint(
                    DIM,
                    format!(
                        "skipped {skipped} packet{} logged to group {group} by others (--all shows them)",
                        if skipped == 1 { "" } else { "s" }
                    )
                )
            );
        }
        Ok(Exit::Success)
    };
    while !stop.load(Ordering::Relaxed) {
        if rechecked.elapsed() >= POLICY_RECHECK {
            rechecked = Instant::now();
            check_group(read_draft(session).ok().as_ref());
        }
        for received in listener.receive(Duration::from_millis(250))? {
            match received {
                Received::Lost(count) => {
                    let what = match count {
                        Some(n) => format!("{n} events lost"),
                        None => "events lost".to_string(),
                    };
                    errln!(
                        session.console,
                        "{} {what}: the receive buffer overran (the kernel logged faster than this reads)",
                        paint(BAD, "warning:")
                    );
                }
                Received::Packet(packet) => {
                    let own = is_own(&packet.prefix, draft.as_ref());
                    if !own && !all {
                        skipped += 1;
                        if skipped == 1 && talk {
                            errln!(
                                session.console,
                                "{}",
                                paint(
                                    DIM,
                                    format!(
                                        "skipping packets others log to group {group} (prefix {:?}: not \
                                         dockfw's, or a rule this policy does not have); --all shows them",
                                        packet.prefix
                                    )
                                )
                            );
                        }
                        continue;
                    }
                    let in_interface = packet.in_interface.and_then(|i| listener.interface_name(i));
                    let out_interface = packet.out_interface.and_then(|i| listener.interface_name(i));
                    let mut event = decode(&packet, draft.as_ref(), own, &mut containers);
                    event.in_interface = in_interface;
                    event.out_interface = out_interface;
                    let line = if session.global.json {
                        serde_json::to_string(&event)?
                    } else {
                        text(&event)
                    };
                    if !print(session, &line)? {
                        return ended(skipped);
                    }
                }
            }
        }
        // Whoever reads us is gone (`log | head -1`): end now, releasing
        // the group, not at the next event.
        if reader.gone() {
            return ended(skipped);
        }
    }
    ended(skipped)
}

/// Whether a packet logged with `prefix` is dockfw's: a prefix of its
/// format naming a decision the policy has (any decision when the policy
/// could not be read). NFLOG carries no table, so anyone able to log to the
/// group can still log a prefix that passes.
fn is_own(prefix: &str, draft: Option<&Draft>) -> bool {
    LogPrefix::parse(prefix)
        .is_some_and(|prefix| draft.is_none_or(|draft| draft.decision_of_chain(&prefix.chain).is_some()))
}

/// Writes `line` to standard output: `false` once its reader is gone (a
/// closed pipe: the end, as for any Unix filter), an error if it cannot be
/// written otherwise (a full disk).
fn print(session: &Session, line: &str) -> Result<bool> {
    use std::io::Write as _;
    let mut out = session.console.out();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to standard output")),
    }
}

/// Notices when standard output is a pipe (or socket) whose reader went
/// away, without writing to it: epoll reports an error on its write end.
/// Nothing is noticed for a regular file or a terminal.
struct StdoutReader(Option<Epoll>);

impl StdoutReader {
    fn watch() -> Self {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok().filter(|epoll| {
            // No events asked for: EPOLLERR and EPOLLHUP are always reported.
            epoll
                .add(std::io::stdout().as_fd(), EpollEvent::new(EpollFlags::empty(), 0))
                .is_ok()
        });
        Self(epoll)
    }

    fn gone(&self) -> bool {
        let Some(epoll) = &self.0 else { return false };
        let mut events = [EpollEvent::empty()];
        matches!(epoll.wait(&mut events, 0u8), Ok(1))
            && events[0]
                .events()
                .intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
    }
}

/// The event a logged packet stands for.
fn decode(
    packet: &LoggedPacket,
    draft: Option<&Draft>,
    dockfws: bool,
    containers: &mut Containers<'_>,
) -> Event {
    let prefix = LogPrefix::parse(&packet.prefix).filter(|_| dockfws);
    let chain = prefix.as_ref().map(|p| p.chain.clone()).unwrap_or_default();
    let decision = draft.and_then(|d| d.decision_of_chain(&chain));
    let direction = decision
        .as_ref()
        .map(|(direction, ..)| *direction)
        .or_else(|| decided_by_chain(&chain).map(|(direction, _)| direction))
        .or_else(|| (chain == dockfw_core::layout::CHAIN_UNTRACKED).then_some(Direction::Inbound));
    let rule = match (&decision, &prefix) {
        (Some((_, name, _)), _) => name.clone(),
        (None, Some(LogPrefix { name: Some(name), .. })) => name.clone(),
        (None, Some(LogPrefix { name: None, .. })) => match direction {
            Some(direction) if chain != dockfw_core::layout::CHAIN_UNTRACKED => {
                dockfw_core::layout::default_comment(direction)
            }
            _ => chain.clone(),
        },
        (None, None) => String::new(),
    };
    let (action, admitted) = match &prefix {
        Some(prefix) => (prefix.logged.word().to_string(), Some(prefix.logged.admitted())),
        None => ("foreign".to_string(), None),
    };
    let own = packet.packet.as_ref();
    let protocol = own
        .or(packet.original.as_ref())
        .map_or_else(|| "?".to_string(), |t| protocol_name(t.protocol));
    let mut event = Event {
        time: humantime::format_rfc3339_millis(packet.time).to_string(),
        rule,
        chain,
        direction,
        action,
        admitted,
        foreign: !dockfws,
        protocol,
        source: packet.original.as_ref().or(own).map(|t| t.src),
        source_port: packet.original.as_ref().or(own).and_then(|t| t.src_port),
        dialled: own.map(|t| t.dst),
        dialled_port: own.and_then(|t| t.dst_port),
        dialled_from: "packet",
        destination: None,
        destination_port: None,
        in_interface: None,
        out_interface: None,
        container: None,
        to_container: None,
        prefix: packet.prefix.clone(),
    };
    let Some(own) = own else { return event };
    match direction {
        Some(Direction::Inbound) | None => {
            let reached = containers.with_address(own.dst).cloned();
            if let Some(original) = &packet.original {
                event.dialled = Some(original.dst);
                event.dialled_port = original.dst_port;
                event.dialled_from = "conntrack";
            } else if let Some(published) = reached.as_ref().and_then(|c| {
                c.published.iter().find(|p| {
                    Some(p.container_port) == own.dst_port && p.proto.name() == protocol_name(own.protocol)
                })
            }) {
                event.dialled = published.host_addr;
                event.dialled_port = Some(published.host_port);
                event.dialled_from = "docker";
            }
            if (event.dialled, event.dialled_port) != (Some(own.dst), own.dst_port) {
                event.destination = Some(own.dst);
                event.destination_port = own.dst_port;
            }
            event.container = reached.map(|c| c.name);
        }
        Some(Direction::Outbound) => {
            event.container = containers.with_address(own.src).map(|c| c.name.clone());
        }
        Some(Direction::Between) => {
            event.container = containers.with_address(own.src).map(|c| c.name.clone());
            event.to_container = containers.with_address(own.dst).map(|c| c.name.clone());
        }
    }
    event
}

fn protocol_name(number: u8) -> String {
    match number {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => format!("proto-{n}"),
    }
}

fn endpoint(addr: Option<IpAddr>, port: Option<u16>) -> String {
    match (addr, port) {
        (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.to_string(),
        (None, Some(p)) => format!("port {p}"),
        (None, None) => "?".into(),
    }
}

/// One line: `TIME ACTION "RULE" PROTO SOURCE -> DIALLED [(container C at
/// DEST)] in IF [out IF]`.
fn text(event: &Event) -> String {
    let style = match event.action.as_str() {
        "allow" => crate::output::action_style(Action::Allow),
        "reject" => crate::output::action_style(Action::Reject),
        _ => crate::output::action_style(Action::Drop),
    };
    let decided = if event.foreign {
        format!(
            "{} prefix {:?}",
            paint(crate::output::DIM, "foreign"),
            event.prefix
        )
    } else {
        format!("{} {:?}", paint(style, &event.action), event.rule)
    };
    let mut line = format!(
        "{} {decided} {} {} -> {}",
        event.time,
        event.protocol,
        endpoint(event.source, event.source_port),
        endpoint(event.dialled, event.dialled_port),
    );
    match (&event.container, event.destination) {
        (Some(container), Some(_)) => line.push_str(&format!(
            " (container {container} at {})",
            endpoint(event.destination, event.destination_port)
        )),
        (Some(container), None) => line.push_str(&format!(" (container {container})")),
        (None, Some(_)) => line.push_str(&format!(
            " (to {})",
            endpoint(event.destination, event.destination_port)
        )),
        (None, None) => {}
    }
    if let Some(to) = &event.to_container {
        line.push_str(&format!(" (to container {to})"));
    }
    if let Some(interface) = &event.in_interface {
        line.push_str(&format!(" in {interface}"));
    }
    if let Some(interface) = &event.out_interface {
        line.push_str(&format!(" out {interface}"));
    }
    if event.admitted == Some(true) && event.action != "allow" {
        line.push_str(" (audit mode: let through)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_who_what_and_by_which_rule() {
        let event = Event {
            time: "2025-01-02T03:04:05.678Z".into(),
            rule: "admin panel".into(),
            chain: "rule-2".into(),
            direction: Some(Direction::Inbound),
            action: "drop".into(),
            admitted: Some(false),
            foreign: false,
            protocol: "tcp".into(),
            source: Some("198.51.100.7".parse().unwrap()),
            source_port: Some(40000),
            dialled: Some("203.0.113.5".parse().unwrap()),
            dialled_port: Some(8443),
            dialled_from: "conntrack",
            destination: Some("172.17.0.2".parse().unwrap()),
            destination_port: Some(443),
            in_interface: Some("eth0".into()),
            out_interface: Some("docker0".into()),
            container: Some("admin".into()),
            to_container: None,
            prefix: "dockfw rule-2 drop admin panel: ".into(),
        };
        let plain = |event: &Event| anstream::adapter::strip_str(&text(event)).to_string();
        assert_eq!(
            plain(&event),
            "2025-01-02T03:04:05.678Z drop \"admin panel\" tcp 198.51.100.7:40000 -> 203.0.113.5:8443 \
             (container admin at 172.17.0.2:443) in eth0 out docker0"
        );
        let audit = Event {
            action: "would-drop".into(),
            admitted: Some(true),
            destination: None,
            container: None,
            ..event
        };
        assert!(plain(&audit).ends_with("in eth0 out docker0 (audit mode: let through)"));
        // Someone else's packet (--all): no rule, no verdict, no audit tail.
        let foreign = Event {
            rule: String::new(),
            chain: String::new(),
            direction: None,
            action: "foreign".into(),
            admitted: None,
            foreign: true,
            out_interface: None,
            prefix: "evil: ".into(),
            ..audit
        };
        assert_eq!(
            plain(&foreign),
            "2025-01-02T03:04:05.678Z foreign prefix \"evil: \" tcp 198.51.100.7:40000 -> 203.0.113.5:8443 in eth0"
        );
    }

    #[test]
    fn only_dockfws_prefixes_of_decisions_the_policy_has_are_its_own() {
        let draft = Draft::parse(
            "p.toml",
            "[guard]\ninterfaces = [\"eth0\"]\n[[rule]]\nname = \"web\"\nports = 80\n",
        )
        .unwrap();
        for (prefix, own) in [
            ("dockfw rule-1 allow web: ", true),
            ("dockfw default-fate drop: ", true),
            ("dockfw untracked drop: ", true),
            // A rule the policy does not have.
            ("dockfw rule-99 drop ghost: ", false),
            // Not dockfw's format at all.
            ("", false),
            ("evil: ", false),
            ("dockfw nonsense drop: ", false),
        ] {
            assert_eq!(is_own(prefix, Some(&draft)), own, "{prefix:?}");
        }
        // Without the policy, any prefix of dockfw's format.
        assert!(is_own("dockfw rule-99 drop ghost: ", None));
        assert!(!is_own("evil: ", None));
    }

    #[test]
    fn endpoints_bracket_ipv6_and_say_when_only_the_port_is_known() {
        assert_eq!(
            endpoint(Some("2001:db8::1".parse().unwrap()), Some(80)),
            "[2001:db8::1]:80"
        );
        assert_eq!(endpoint(None, Some(8080)), "port 8080");
        assert_eq!(endpoint(Some("192.0.2.1".parse().unwrap()), None), "192.0.2.1");
    }
}
