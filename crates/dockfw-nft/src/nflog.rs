//! Following an NFLOG group: the packets nf_tables `log group N` statements
//! log, as nfnetlink_log delivers them to the one socket bound to the group
//! in a network namespace (what ulogd does; no ulogd needed).
//!
//! Each [`LoggedPacket`] carries the log prefix, the interfaces, the
//! packet's own addresses and ports (after any DNAT: at the forward hook a
//! published port's packet is already addressed to its container) and, when
//! the kernel can add them (`CONFIG_NETFILTER_NETLINK_GLUE_CT`), the
//! connection's original tuple: the address and port the client dialled.
//! Messages are built and parsed with `netlink-packet-netfilter`, headers
//! with `etherparse`.
//!
//! ```no_run
//! use dockfw_nft::nflog::{LogListener, Received};
//! use std::time::Duration;
//! # fn main() -> Result<(), dockfw_nft::Error> {
//! let mut listener = LogListener::bind(None, 23)?;
//! loop {
//!     for received in listener.receive(Duration::from_millis(500))? {
//!         match received {
//!             Received::Packet(packet) => println!("{}: {:?}", packet.prefix, packet.packet),
//!             Received::Lost(n) => println!("{n:?} events lost"),
//!         }
//!     }
//! }
//! # }
//! ```

use crate::conntrack::CtTuple;
use crate::netlink::{RECV_BYTES, Reply, Socket};
use crate::{Error, Result};
use etherparse::{LaxSlicedPacket, TransportSlice};
use netlink_packet_core::{NlaBuffer, NlasIterator, Parseable};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::conntrack::ConntrackAttribute;
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigFlags, ConfigMode, ConfigNla, PacketNla, config_request,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Bytes of each packet copied to us: IPv6 with a few extension headers
/// and a TCP header with options fit.
const COPY_RANGE: u32 = 256;
/// Socket receive buffer: room for a burst of logged packets.
const RECV_BUFFER: usize = 4 << 20;
/// `NFULA_TIMESTAMP`, `NFULA_CT`, `NFULA_PACKET_HDR`: read here from the raw
/// attribute (the crate keeps timestamp and hook private, and does not
/// model the conntrack attribute).
const NFULA_PACKET_HDR: u16 = libc::NFULA_PACKET_HDR as u16;
const NFULA_TIMESTAMP: u16 = libc::NFULA_TIMESTAMP as u16;
const NFULA_CT: u16 = libc::NFULA_CT as u16;

/// One packet a `log group N` statement logged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoggedPacket {
    /// When the kernel logged it (the packet's timestamp when it has one,
    /// else when it was received here).
    pub time: SystemTime,
    /// The log statement's prefix.
    pub prefix: String,
    /// The netfilter hook it was logged at (`NF_INET_FORWARD` 2,
    /// `NF_INET_LOCAL_IN` 1, ...).
    pub hook: Option<u8>,
    /// The interface it arrived on (index).
    pub in_interface: Option<u32>,
    /// The interface it was leaving on (index), at forward and output.
    pub out_interface: Option<u32>,
    /// The packet's own addresses, protocol and ports, as logged (after
    /// DNAT at forward and input); `None` if not IP.
    pub packet: Option<CtTuple>,
    /// The connection's original direction (before NAT: what the client
    /// dialled), when the kernel adds conntrack information.
    pub original: Option<CtTuple>,
    /// The per-group sequence number.
    pub seq: Option<u32>,
}

/// What [`LogListener::receive`] brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A logged packet.
    Packet(Box<LoggedPacket>),
    /// Packets the kernel logged that never reached us (the socket's buffer
    /// overran): how many, when the sequence numbers tell.
    Lost(Option<u32>),
}

/// A socket bound to one NFLOG group of a network namespace. Only one
/// socket can be bound to a group per namespace ([`Error::LogGroupBusy`]);
/// closing it (drop) unbinds.
#[derive(Debug)]
pub struct LogListener {
    socket: Socket,
    group: u16,
    conntrack: bool,
    recv: Vec<u32>,
    /// The sequence number expected next.
    next_seq: Option<u32>,
    /// The receive buffer overran since the last packet.
    overran: bool,
    /// Resolves interface indexes in the listener's namespace.
    interfaces: UdpSocket,
    names: HashMap<u32, Option<String>>,
}

impl LogListener {
    /// Binds NFLOG group `group` in the network namespace at `netns` (the
    /// caller's own with `None`): copies each packet's headers, one message
    /// per packet, with sequence numbers and, where the kernel has it,
    /// conntrack information.
    pub fn bind(netns: Option<&Path>, group: u16) -> Result<Self> {
        const ACTION: &str = "open a netfilter netlink socket for NFLOG";
        // The interfaces are named through a socket of the same namespace.
        let open =
            || -> io::Result<(Socket, UdpSocket)> { Ok((Socket::open()?, UdpSocket::bind("0.0.0.0:0")?)) };
        let (socket, interfaces) = match netns {
            None => open(),
            Some(path) => std::fs::File::open(path).and_then(|ns| {
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            // SAFETY: setns(2) on a namespace fd we hold; it changes only
                            // this short-lived helper thread.
                            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                                return Err(io::Error::last_os_error());
                            }
                            open()
                        })
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
                })
            }),
        }
        .map_err(|e| Error::io(ACTION, e))?;
        let _ = socket.grow_buffers(64 << 10, RECV_BUFFER);
        let mut listener = Self {
            socket,
            group,
            conntrack: true,
            recv: vec![0; RECV_BYTES / 4],
            // The bind creates the group's instance, which numbers its
            // messages from 0: events lost before the first read count too.
            next_seq: Some(0),
            overran: false,
            interfaces,
            names: HashMap::new(),
        };
        listener
            .configure(vec![ConfigNla::Cmd(ConfigCmd::Bind)])
            .map_err(|e| match e.raw_os_error() {
                // The kernel says EPERM when another socket holds the
                // group (EBUSY only when we do already), and EPERM without
                // CAP_NET_ADMIN: the capability tells them apart.
                Some(libc::EBUSY) => Error::LogGroupBusy { group },
                Some(libc::EPERM) if has_net_admin() => Error::LogGroupBusy { group },
                _ => Error::io("bind the NFLOG group", e),
            })?;
        let settings = |flags: ConfigFlags| {
            vec![
                ConfigNla::Mode(ConfigMode::new_packet(COPY_RANGE)),
                // One message per packet, delivered at once (the default
                // batches up to 100 packets or a second).
                ConfigNla::QThresh(1),
                ConfigNla::Flags(flags),
            ]
        };
        let full = ConfigFlags::SEQ | ConfigFlags::CONNTRACK;
        let mut answer = listener.configure(settings(full));
        // EAGAIN: the kernel loaded ctnetlink just now; asking again works.
        if answer
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EAGAIN))
        {
            answer = listener.configure(settings(full));
        }
        // EOPNOTSUPP: this kernel cannot add conntrack information to NFLOG
        // messages (no CONFIG_NETFILTER_NETLINK_GLUE_CT).
        if answer
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EOPNOTSUPP))
        {
            listener.conntrack = false;
            answer = listener.configure(settings(ConfigFlags::SEQ));
        }
        answer.map_err(|e| Error::io("configure the NFLOG group", e))?;
        Ok(listener)
    }

    /// The group bound.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Whether the kernel adds each packet's connection (so
    /// [`LoggedPacket::original`] is known).
    pub fn conntrack(&self) -> bool {
        self.conntrack
    }

    /// Sends one configuration message for the group and waits for its ack.
    fn configure(&mut self, nlas: Vec<ConfigNla>) -> io::Result<()> {
        let mut message = config_request(NetfilterProtoFamily::Unspec, self.group, nlas);
        message.header.sequence_number = 1;
        message.finalize();
        let mut buf = vec![0; message.buffer_len()];
        message.serialize(&mut buf);
        self.socket.send(&buf)?;
        loop {
            let data = self
                .socket
                .recv(&mut self.recv, true)?
                .ok_or_else(|| io::Error::other("no answer to an NFLOG configuration"))?;
            let replies = crate::netlink::parse_replies(data)?;
            for reply in replies {
                if let Reply::Ack { seq: 1, errno, .. } = reply {
                    return match errno {
                        0 => Ok(()),
                        errno => Err(io::Error::from_raw_os_error(errno)),
                    };
                }
            }
        }
    }

    /// Waits up to `timeout` for logged packets; returns what one read
    /// brought (nothing when the time ran out or a signal came).
    pub fn receive(&mut self, timeout: Duration) -> Result<Vec<Received>> {
        const ACTION: &str = "receive logged packets";
        let timeout = PollTimeout::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Ok(_) => {}
            Err(e) => return Err(Error::io(ACTION, e.into())),
        }
        let data = match self.socket.recv(&mut self.recv, false) {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.overran = true;
                return Ok(Vec::new());
            }
            Err(e) => return Err(Error::io(ACTION, e)),
        };
        let now = SystemTime::now();
        let mut out = Vec::new();
        for message in mnl::NlMessages::new(data) {
            let message = message.map_err(|e| Error::io(ACTION, e))?;
            let Some(packet) = parse_packet(message, now) else {
                continue;
            };
            let gap = match (self.next_seq, packet.seq) {
                (Some(expected), Some(seq)) => {
                    Some(seq.wrapping_sub(expected)).filter(|&n| n != 0 && n < u32::MAX / 2)
                }
                _ => None,
            };
            // After an overrun the messages still queued come first, then
            // the gap: counted by the sequence numbers where the packet has
            // one (at the first packet after the loss), else said uncounted.
            if let Some(n) = gap {
                out.push(Received::Lost(Some(n)));
            } else if self.overran && packet.seq.is_none() {
                out.push(Received::Lost(None));
            }
            self.overran = false;
            self.next_seq = packet.seq.map(|seq| seq.wrapping_add(1));
            out.push(Received::Packet(Box::new(packet)));
        }
        Ok(out)
    }

    /// The name of interface `index` in the listener's namespace (cached;
    /// `None` if it is gone).
    pub fn interface_name(&mut self, index: u32) -> Option<String> {
        if let Some(name) = self.names.get(&index) {
            return name.clone();
        }
        // SAFETY: a zeroed ifreq is valid (an empty name, index 0).
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        request.ifr_ifru.ifru_ifindex = index as libc::c_int;
        // SAFETY: SIOCGIFNAME reads the index from and writes the name into
        // `request`, which lives on our stack for the call; the fd is open.
        let ret = unsafe { libc::ioctl(self.interfaces.as_raw_fd(), libc::SIOCGIFNAME, &raw mut request) };
        let name = (ret == 0).then(|| {
            let bytes: Vec<u8> = request
                .ifr_name
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        });
        self.names.insert(index, name.clone());
        name
    }
}

/// Whether this process has CAP_NET_ADMIN in effect (`CapEff` of
/// /proc/self/status, bit 12).
fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps >> CAP_NET_ADMIN & 1 == 1)
}

/// Reads one `NFULNL_MSG_PACKET` message; `None` for anything else.
fn parse_packet(message: &[u8], received: SystemTime) -> Option<LoggedPacket> {
    // The header's type is (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET.
    let kind = u16::from_ne_bytes(message.get(4..6)?.try_into().ok()?);
    if kind != ((libc::NFNL_SUBSYS_ULOG as u16) << 8 | libc::NFULNL_MSG_PACKET as u16) {
        return None;
    }
    // Attributes one by one, so one the crate cannot read is skipped, not
    // the whole packet. After the header, 4 bytes of nfgenmsg.
    let attributes = message.get(20..)?;
    let mut packet = LoggedPacket {
        time: received,
        prefix: String::new(),
        hook: None,
        in_interface: None,
        out_interface: None,
        packet: None,
        original: None,
        seq: None,
    };
    for nla in NlasIterator::new(attributes) {
        let Ok(nla): std::result::Result<NlaBuffer<&[u8]>, _> = nla else {
            continue;
        };
        match nla.kind() {
            NFULA_PACKET_HDR => packet.hook = nla.value().get(2).copied(),
            NFULA_TIMESTAMP => packet.time = timestamp(nla.value()).unwrap_or(received),
            NFULA_CT => packet.original = original_tuple(nla.value()),
            _ => match PacketNla::parse(&nla) {
                Ok(PacketNla::Prefix(prefix)) => packet.prefix = prefix.to_string_lossy().into_owned(),
                Ok(PacketNla::IfIndexInDev(index)) => packet.in_interface = Some(index),
                Ok(PacketNla::IfIndexOutDev(index)) => packet.out_interface = Some(index),
                Ok(PacketNla::Seq(seq)) => packet.seq = Some(seq),
                Ok(PacketNla::Payload(payload)) => packet.packet = headers(&payload),
                _ => {}
            },
        }
    }
    Some(packet)
}

/// `struct nfulnl_msg_packet_timestamp`: seconds and microseconds, big-endian.
fn timestamp(value: &[u8]) -> Option<SystemTime> {
    let sec = u64::from_be_bytes(value.get(0..8)?.try_into().ok()?);
    let usec = u64::from_be_bytes(value.get(8..16)?.try_into().ok()?);
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(sec) + Duration::from_micros(usec))
}

/// The original tuple of `NFULA_CT` (nested `CTA_*` attributes).
fn original_tuple(value: &[u8]) -> Option<CtTuple> {
    NlasIterator::new(value).find_map(|nla| {
        let nla: NlaBuffer<&[u8]> = nla.ok()?;
        match ConntrackAttribute::parse(&nla).ok()? {
            ConntrackAttribute::CtaTupleOrig(tuple) => CtTuple::from_attributes(&tuple),
            _ => None,
        }
    })
}

/// Addresses, protocol and ports of an IP packet (as much as was copied).
pub(crate) fn headers(payload: &[u8]) -> Option<CtTuple> {
    let sliced = LaxSlicedPacket::from_ip(payload).ok()?;
    let net = sliced.net.as_ref()?;
    let (src, dst) = match net {
        etherparse::LaxNetSlice::Ipv4(ip) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        etherparse::LaxNetSlice::Ipv6(ip) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        etherparse::LaxNetSlice::Arp(_) => return None,
    };
    let protocol = net.ip_payload_ref()?.ip_number.0;
    let (src_port, dst_port) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => (Some(tcp.source_port()), Some(tcp.destination_port())),
        Some(TransportSlice::Udp(udp)) => (Some(udp.source_port()), Some(udp.destination_port())),
        _ => (None, None),
    };
    Some(CtTuple::new(src, dst, protocol, src_port, dst_port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An IPv4 TCP SYN from 198.51.100.7:40000 to 10.1.0.2:80.
    fn syn() -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ipv4([198, 51, 100, 7], [10, 1, 0, 2], 64)
            .tcp(40000, 80, 1, 64240)
            .syn();
        let mut bytes = Vec::new();
        builder.write(&mut bytes, &[]).unwrap();
        bytes
    }

    #[test]
    fn headers_read_addresses_and_ports_even_cut_short() {
        let syn = syn();
        let want = CtTuple::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)),
            6,
            Some(40000),
            Some(80),
        );
        assert_eq!(headers(&syn), Some(want.clone()));
        // Cut after the ports: still the ports.
        let cut = headers(&syn[..24]).unwrap();
        assert_eq!((cut.src, cut.dst, cut.protocol), (want.src, want.dst, 6));
        assert_eq!(headers(&[]), None);
        assert_eq!(headers(&[0x45, 0, 0]), None);
    }

    /// A packet message as nfnetlink_log sends it.
    fn message(attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![libc::AF_INET as u8, 0, 0, 23];
        for (kind, value) in attributes {
            let len = 4 + value.len();
            body.extend((len as u16).to_ne_bytes());
            body.extend(kind.to_ne_bytes());
            body.extend(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut out = Vec::new();
        out.extend(((16 + body.len()) as u32).to_ne_bytes());
        out.extend(((libc::NFNL_SUBSYS_ULOG as u16) << 8 | libc::NFULNL_MSG_PACKET as u16).to_ne_bytes());
        out.extend(0u16.to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn a_packet_message_is_decoded() {
        let now = SystemTime::now();
        let msg = message(&[
            (NFULA_PACKET_HDR, vec![0x08, 0x00, 2, 0]),
            (libc::NFULA_PREFIX as u16, b"dockfw rule-1 drop x: \0".to_vec()),
            (libc::NFULA_IFINDEX_INDEV as u16, 7u32.to_be_bytes().to_vec()),
            (libc::NFULA_SEQ as u16, 41u32.to_be_bytes().to_vec()),
            (
                NFULA_TIMESTAMP,
                [1_700_000_000u64.to_be_bytes(), 250_000u64.to_be_bytes()].concat(),
            ),
            (libc::NFULA_PAYLOAD as u16, syn()),
        ]);
        let packet = parse_packet(&msg, now).unwrap();
        assert_eq!(packet.prefix, "dockfw rule-1 drop x: ");
        assert_eq!(packet.hook, Some(2));
        assert_eq!(packet.in_interface, Some(7));
        assert_eq!(packet.out_interface, None);
        assert_eq!(packet.seq, Some(41));
        assert_eq!(
            packet.time,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
        );
        assert_eq!(packet.packet.unwrap().dst_port, Some(80));
        assert_eq!(packet.original, None);
        // Without a timestamp: the time received.
        let msg = message(&[(libc::NFULA_PAYLOAD as u16, syn())]);
        assert_eq!(parse_packet(&msg, now).unwrap().time, now);
    }
}
