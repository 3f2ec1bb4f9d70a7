//! Reachability probes: connect from a client namespace and source address
//! to a destination, and classify what happens.

use crate::error::{LabError, Result};
use crate::topology::Ns;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP: a completed handshake means open.
    Tcp,
    /// UDP: an echoed datagram means open (needs an echo service).
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("unknown protocol {s:?} (tcp|udp)")),
        }
    }
}

/// What a probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// Connected (TCP) or got the datagram echoed back (UDP).
    Open,
    /// Actively refused: TCP RST, or ICMP(v6) port/host/net unreachable or
    /// administratively prohibited (what nft `reject` sends).
    Refused,
    /// No answer within the probe timeout (silently dropped).
    TimedOut,
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One probe: from `from` (namespace) and `src` to `dst:port` over `proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Namespace the probe runs in.
    pub from: Ns,
    /// Source address to bind (must exist in `from`).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {} -> {}/{}",
            self.from,
            self.src,
            SocketAddr::new(self.dst, self.port),
            self.proto
        )
    }
}

/// Runs one probe in the calling thread's current network namespace.
pub(crate) fn probe_here(p: &Probe, timeout: Duration) -> Result<ProbeResult> {
    let local = |source: io::Error| LabError::Probe {
        probe: p.to_string(),
        source,
    };
    let dst = SocketAddr::new(p.dst, p.port);
    let domain = Domain::for_address(dst);
    let (ty, proto) = match p.proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let sock = Socket::new(domain, ty, Some(proto)).map_err(local)?;
    sock.bind(&SockAddr::from(SocketAddr::new(p.src, 0)))
        .map_err(local)?;
    match p.proto {
        Proto::Tcp => match sock.connect_timeout(&dst.into(), timeout) {
            Ok(()) => Ok(ProbeResult::Open),
            Err(e) => classify_or_err(e, local),
        },
        Proto::Udp => {
            // A connected UDP socket receives ICMP errors as ECONNREFUSED
            // (port unreachable) or EHOSTUNREACH (admin prohibited).
            sock.connect(&dst.into()).map_err(local)?;
            sock.set_read_timeout(Some(timeout)).map_err(local)?;
            if let Err(e) = sock.send(b"dockfw-lab-probe") {
                return classify_or_err(e, local);
            }
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            match sock.recv(&mut buf) {
                Ok(_) => Ok(ProbeResult::Open),
                Err(e) => classify_or_err(e, local),
            }
        }
    }
}

fn classify_or_err(e: io::Error, local: impl FnOnce(io::Error) -> LabError) -> Result<ProbeResult> {
    match classify(&e) {
        Some(o) => Ok(o),
        None => Err(local(e)),
    }
}

/// Maps a socket error to an outcome; `None` for local failures.
pub(crate) fn classify(e: &io::Error) -> Option<ProbeResult> {
    if std::env::var_os("DOCKFW_LAB_DEBUG").is_some() {
        eprintln!("dockfw-lab probe: socket error {e:?}");
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => return Some(ProbeResult::TimedOut),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            return Some(ProbeResult::Refused);
        }
        _ => {}
    }
    match e.raw_os_error() {
        // ICMP host/net unreachable and admin-prohibited (nft `reject with
        // icmpx admin-prohibited`) surface as these; ICMPv6
        // admin-prohibited as EACCES.
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES) => Some(ProbeResult::Refused),
        _ => None,
    }
}
