//! Connection tracking over ctnetlink: list the tracked connections of a
//! network namespace and delete one, so that its next packet is judged
//! again as a new connection. No `conntrack` binary.
//!
//! Messages are built and parsed with `netlink-packet-netfilter`; they
//! travel over the same netfilter netlink socket as nf_tables messages.
//!
//! ```no_run
//! use dockfw_nft::conntrack::{Conntrack, Status};
//! # fn main() -> Result<(), dockfw_nft::Error> {
//! let mut conntrack = Conntrack::open()?;
//! for entry in conntrack.dump()? {
//!     if entry.status.contains(Status::DstNat) && entry.original.dst_port == Some(8080) {
//!         conntrack.delete(&entry)?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use crate::netlink::{RECV_BYTES, Reply, Socket};
use crate::{Error, Result};
use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlaBuffer, NlasIterator, Parseable, parse_u16_be, parse_u32_be,
};
pub use netlink_packet_netfilter::conntrack::Status;
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// `CTA_ID`, `CTA_ZONE`, `CTA_LABELS` (not modelled by the crate).
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_LABELS: u16 = 22;

/// One direction of a connection: addresses, layer-4 protocol and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CtTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: u8,
    /// Source port (TCP, UDP, SCTP, DCCP, UDP-Lite).
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Other protocol attributes (e.g. ICMP id, type and code), kept so that
    /// the tuple can be sent back exactly to delete the entry.
    extra: Vec<DefaultNla>,
}

impl CtTuple {
    /// A tuple of a port-based protocol (or, with `None` ports, of one
    /// without ports other than ICMP, which needs id, type and code and so
    /// is only deletable from a dumped tuple).
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, src_port: Option<u16>, dst_port: Option<u16>) -> Self {
        Self {
            src,
            dst,
            protocol,
            src_port,
            dst_port,
            extra: Vec::new(),
        }
    }

    fn family(&self) -> NetfilterProtoFamily {
        match self.src {
            IpAddr::V4(_) => NetfilterProtoFamily::IPv4,
            IpAddr::V6(_) => NetfilterProtoFamily::IPv6,
        }
    }

    fn to_attributes(&self) -> Vec<Tuple> {
        let mut proto = vec![ProtoTuple::Protocol(Protocol::from(self.protocol))];
        proto.extend(self.src_port.map(ProtoTuple::SourcePort));
        proto.extend(self.dst_port.map(ProtoTuple::DestinationPort));
        proto.extend(self.extra.iter().cloned().map(ProtoTuple::Other));
        vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(self.src),
                IPTuple::DestinationAddress(self.dst),
            ]),
            Tuple::Proto(proto),
        ]
    }

    pub(crate) fn from_attributes(tuples: &[Tuple]) -> Option<Self> {
        let (mut src, mut dst, mut protocol) = (None, None, None);
        let (mut src_port, mut dst_port, mut extra) = (None, None, Vec::new());
        for tuple in tuples {
            match tuple {
                Tuple::Ip(ips) => {
                    for ip in ips {
                        match ip {
                            IPTuple::SourceAddress(a) => src = Some(*a),
                            IPTuple::DestinationAddress(a) => dst = Some(*a),
                            _ => {}
                        }
                    }
                }
                Tuple::Proto(protos) => {
                    for p in protos {
                        match p {
                            ProtoTuple::Protocol(p) => protocol = Some(u8::from(*p)),
                            ProtoTuple::SourcePort(port) => src_port = Some(*port),
                            ProtoTuple::DestinationPort(port) => dst_port = Some(*port),
                            ProtoTuple::Other(nla) => extra.push(nla.clone()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(Self {
            src: src?,
            dst: dst?,
            protocol: protocol?,
            src_port,
            dst_port,
            extra,
        })
    }
}

impl fmt::Display for CtTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            1 => "icmp".to_string(),
            58 => "icmpv6".to_string(),
            132 => "sctp".to_string(),
            n => format!("proto {n}"),
        };
        let end = |addr: &IpAddr, port: Option<u16>| match (addr, port) {
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            (a, Some(p)) => format!("{a}:{p}"),
            (a, None) => a.to_string(),
        };
        write!(
            f,
            "{proto} {} -> {}",
            end(&self.src, self.src_port),
            end(&self.dst, self.dst_port)
        )
    }
}

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CtEntry {
    /// The direction of the first packet, as it arrived (before NAT).
    pub original: CtTuple,
    /// The direction of replies (after NAT: for DNAT its source is the
    /// container).
    pub reply: CtTuple,
    /// `IPS_*` bits: `DstNat`, `SeenReply`, `Assured`, ...
    pub status: Status,
    /// The connection mark (`ct mark`).
    pub mark: u32,
    /// The conntrack zone (0 unless a ruleset sets one).
    pub zone: u16,
    /// The kernel's id of the entry (tells apart a later connection with
    /// the same tuple).
    pub id: Option<u32>,
    /// The connection labels (`ct label`), a 128-bit map in the kernel's
    /// layout, when any is set.
    pub labels: Option<Labels>,
}

/// Connection labels as the kernel dumps them (`CTA_LABELS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels(Vec<u8>);

impl Labels {
    /// Whether label bit `bit` (as in `ct label set BIT`) is set. The kernel
    /// stores the map as native-endian machine words.
    pub fn contains(&self, bit: usize) -> bool {
        const WORD: usize = size_of::<usize>();
        let Some(word) = self.0.get(bit / (WORD * 8) * WORD..).and_then(|w| w.get(..WORD)) else {
            return false;
        };
        let word = usize::from_ne_bytes(word.try_into().unwrap_or([0; WORD]));
        word >> (bit % (WORD * 8)) & 1 == 1
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A ctnetlink connection in one network namespace.
#[derive(Debug)]
pub struct Conntrack {
    socket: Socket,
    seq: u32,
    recv: Vec<u32>,
}

/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_*`, as `netlink-packet-netfilter`
/// computes it.
fn encode(flags: u16, seq: u32, family: NetfilterProtoFamily, message: ConntrackMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), message)),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

impl Conntrack {
    /// Connects in the caller's network namespace.
    pub fn open() -> Result<Self> {
        Socket::open()
            .map(Self::with_socket)
            .map_err(|e| Error::io("open a netfilter netlink socket", e))
    }

    /// Connects in the network namespace at `path` (e.g. `/run/netns/NAME`).
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Self> {
        Socket::open_in_netns(path.as_ref())
            .map(Self::with_socket)
            .map_err(|e| Error::io("open a netlink socket in the network namespace", e))
    }

    fn with_socket(socket: Socket) -> Self {
        Self {
            socket,
            seq: 1,
            recv: vec![0; RECV_BYTES / 4],
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Every tracked connection, IPv4 and IPv6, in every zone.
    pub fn dump(&mut self) -> Result<Vec<CtEntry>> {
        const ACTION: &str = "list tracked connections";
        let seq = self.next_seq();
        // Family AF_UNSPEC: the kernel dumps entries of every family.
        let request = encode(
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NetfilterProtoFamily::Unspec,
            ConntrackMessage::Get(vec![]),
        );
        let mut entries = Vec::new();
        self.exchange(ACTION, &request, |reply| match reply {
            Reply::Data { seq: s, msg, .. } if s == seq => {
                entries.push(parse_entry(msg).map_err(|detail| protocol(ACTION, detail))?);
                Ok(None)
            }
            Reply::Done { seq: s, .. } if s == seq => Ok(Some(())),
            Reply::Ack { seq: s, errno, .. } if s == seq && errno != 0 => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
            _ => Ok(None),
        })?;
        Ok(entries)
    }

    /// Deletes the dumped connection `entry` (by its original tuple, zone and
    /// id, so a newer connection that reuses the tuple is left alone).
    /// Returns whether it was still there.
    pub fn delete(&mut self, entry: &CtEntry) -> Result<bool> {
        self.delete_tuple(&entry.original, entry.zone, entry.id)
    }

    /// Deletes the connection whose original direction is `original` in
    /// conntrack zone `zone`; with `id`, only if it is that very entry.
    /// Returns whether there was such a connection.
    pub fn delete_tuple(&mut self, original: &CtTuple, zone: u16, id: Option<u32>) -> Result<bool> {
        const ACTION: &str = "delete a tracked connection";
        let seq = self.next_seq();
        let mut attributes = vec![
            ConntrackAttribute::CtaTupleOrig(original.to_attributes()),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, zone.to_be_bytes().to_vec())),
        ];
        if let Some(id) = id {
            attributes.push(ConntrackAttribute::Other(DefaultNla::new(
                CTA_ID,
                id.to_be_bytes().to_vec(),
            )));
        }
        let request = encode(
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            original.family(),
            ConntrackMessage::Delete(attributes),
        );
        self.exchange(ACTION, &request, |reply| match reply {
            Reply::Ack { seq: s, errno, .. } if s == seq => match errno {
                0 => Ok(Some(true)),
                libc::ENOENT => Ok(Some(false)),
                errno => Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno))),
            },
            _ => Ok(None),
        })
    }

    /// Sends `request` and hands each reply to `on_reply` until it returns
    /// an answer (`Some`) or an error; `action` names the work in errors.
    fn exchange<T>(
        &mut self,
        action: &'static str,
        request: &[u8],
        mut on_reply: impl FnMut(Reply<'_>) -> Result<Option<T>>,
    ) -> Result<T> {
        self.socket.send(request).map_err(|e| Error::io(action, e))?;
        loop {
            let buf = self
                .socket
                .recv(&mut self.recv, true)
                .map_err(|e| Error::io(action, e))?
                .ok_or_else(|| protocol(action, "no reply".into()))?;
            let replies = crate::netlink::parse_replies(buf).map_err(|e| protocol(action, e.to_string()))?;
            for reply in replies {
                if let Some(answer) = on_reply(reply)? {
                    return Ok(answer);
                }
            }
        }
    }
}

fn protocol(action: &'static str, detail: String) -> Error {
    Error::Protocol { action, detail }
}

/// Reads one `IPCTNL_MSG_CT_NEW` dump message (header, nfgenmsg, attributes).
fn parse_entry(msg: &[u8]) -> std::result::Result<CtEntry, String> {
    let attrs = msg.get(20..).ok_or("short conntrack message")?;
    let (mut original, mut reply, mut status) = (None, None, Status::empty());
    let (mut mark, mut zone, mut id, mut labels) = (0, 0, None, None);
    for nla in NlasIterator::new(attrs) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| e.to_string())?;
        match nla.kind() {
            CTA_ID => id = Some(parse_u32_be(nla.value()).map_err(|e| e.to_string())?),
            CTA_ZONE => zone = parse_u16_be(nla.value()).map_err(|e| e.to_string())?,
            CTA_LABELS => labels = Some(Labels(nla.value().to_vec())),
            _ => match ConntrackAttribute::parse(&nla).map_err(|e| e.to_string())? {
                ConntrackAttribute::CtaTupleOrig(t) => original = CtTuple::from_attributes(&t),
                ConntrackAttribute::CtaTupleReply(t) => reply = CtTuple::from_attributes(&t),
                ConntrackAttribute::CtaStatus(s) => status = s,
                ConntrackAttribute::CtaMark(m) => mark = m,
                _ => {}
            },
        }
    }
    Ok(CtEntry {
        original: original.ok_or("conntrack entry without an original tuple")?,
        reply: reply.ok_or("conntrack entry without a reply tuple")?,
        status,
        mark,
        zone,
        id,
        labels,
    })
}
