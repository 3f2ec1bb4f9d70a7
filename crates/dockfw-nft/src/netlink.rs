//! The netfilter netlink socket: open (optionally inside another network
//! namespace), size buffers, send, receive, and split replies.
//!
//! The socket is a plain `AF_NETLINK` file descriptor owned by us (so it can
//! be opened on a helper thread that entered another namespace and then be
//! moved back); replies are split with `mnl::NlMessages`.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
/// `NLMSG_DONE`.
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
/// `NLM_F_CAPPED`: the error message echoes only the original header.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLM_F_DUMP_INTR`: the dump saw a concurrent change.
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLMSGERR_ATTR_MSG` / `NLMSGERR_ATTR_OFFS`.
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;
/// `SOL_NETLINK` options.
const NETLINK_CAP_ACK: c_int = 10;
const NETLINK_EXT_ACK: c_int = 11;

/// Receive buffer: dump messages are at most 32 KiB (the kernel caps dump
/// skbs there); a larger buffer avoids truncation.
pub(crate) const RECV_BYTES: usize = 256 * 1024;

/// One reply from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// A data message (dump part or reply to a request).
    Data { seq: u32, flags: u16, msg: &'a [u8] },
    /// End of a dump; its flags carry `NLM_F_DUMP_INTR` when the dump saw
    /// a change after its last data message.
    Done { seq: u32, flags: u16 },
    /// An ack (`errno == 0`) or error for the message with sequence `seq`.
    Ack {
        seq: u32,
        errno: i32,
        /// Extended-ack text, if the kernel gave one.
        text: Option<String>,
        /// Extended-ack offset of the offending attribute in the original message.
        offset: Option<u32>,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a received buffer into replies.
pub(crate) fn parse_replies(buf: &[u8]) -> io::Result<Vec<Reply<'_>>> {
    let mut out = Vec::new();
    for msg in mnl::NlMessages::new(buf) {
        let msg = msg?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message");
        let ty = u16_at(msg, 4).ok_or_else(bad)?;
        let flags = u16_at(msg, 6).ok_or_else(bad)?;
        let seq = u32_at(msg, 8).ok_or_else(bad)?;
        match ty {
            NLMSG_DONE => out.push(Reply::Done { seq, flags }),
            NLMSG_ERROR => {
                // struct nlmsgerr { int error; struct nlmsghdr msg; } then TLVs.
                let errno = -(u32_at(msg, 16).ok_or_else(bad)? as i32);
                let orig_len = u32_at(msg, 20).ok_or_else(bad)? as usize;
                let orig_seq = u32_at(msg, 28).ok_or_else(bad)?;
                let (mut text, mut offset) = (None, None);
                if flags & NLM_F_ACK_TLVS != 0 {
                    let echoed = if flags & NLM_F_CAPPED != 0 {
                        16
                    } else {
                        (orig_len + 3) & !3
                    };
                    let mut at = 20 + echoed;
                    while let (Some(len), Some(kind)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
                        let len = len as usize;
                        if len < 4 || at + len > msg.len() {
                            break;
                        }
                        let value = &msg[at + 4..at + len];
                        match kind {
                            NLMSGERR_ATTR_MSG => {
                                text = CStr::from_bytes_until_nul(value)
                                    .ok()
                                    .map(|s| s.to_string_lossy().into_owned());
                            }
                            NLMSGERR_ATTR_OFFS => offset = u32_at(value, 0),
                            _ => {}
                        }
                        at += (len + 3) & !3;
                    }
                }
                out.push(Reply::Ack {
                    seq: orig_seq,
                    errno,
                    text,
                    offset,
                });
            }
            _ => out.push(Reply::Data { seq, flags, msg }),
        }
    }
    Ok(out)
}

/// A netfilter netlink socket.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt_int(fd: &OwnedFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open socket; the option value is a c_int on our stack
    // whose size we pass.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<c_void>(),
            size_of::<c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

impl Socket {
    /// The cookie of the socket's network namespace (`SO_NETNS_COOKIE`,
    /// Linux 5.14): unique among all namespaces since boot, never reused.
    pub(crate) fn netns_cookie(&self) -> io::Result<u64> {
        const SO_NETNS_COOKIE: c_int = 71;
        let mut cookie = 0u64;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: `fd` is an open socket; the value is a u64 on our stack
        // whose size we pass, and the kernel writes at most that much.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&raw mut cookie).cast::<c_void>(),
                &raw mut len,
            )
        })?;
        Ok(cookie)
    }

    /// Opens a socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the returned descriptor is owned below.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = kernel assigns one).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes.
        check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) })?;
        // Extended acks say which attribute failed; capped acks keep error
        // replies small (we still hold the original message).
        setsockopt_int(&fd, libc::SOL_NETLINK, NETLINK_EXT_ACK, 1)?;
        setsockopt_int(&fd, libc::SOL_NETLINK, NETLINK_CAP_ACK, 1)?;
        let timeout = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a timeval on our stack whose size we pass.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(Self { fd })
    }

    /// Opens a socket inside the network namespace at `path`. A helper thread
    /// enters the namespace (the caller's own threads are left alone); the
    /// socket stays bound to that namespace after the thread ends.
    pub(crate) fn open_in_netns(path: &Path) -> io::Result<Self> {
        let ns = std::fs::File::open(path)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on a namespace fd we hold; it changes only
                    // this short-lived helper thread.
                    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
                    Self::open()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
        })
    }

    /// Raises the send and receive buffers to at least the given sizes,
    /// forcing past the system limits when privileged.
    pub(crate) fn grow_buffers(&self, send: usize, recv: usize) -> io::Result<()> {
        for (force, plain, bytes) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, recv),
        ] {
            // The kernel doubles the value it is given.
            let value = c_int::try_from(bytes.div_ceil(2)).unwrap_or(c_int::MAX / 2);
            if setsockopt_int(&self.fd, libc::SOL_SOCKET, force, value).is_err() {
                setsockopt_int(&self.fd, libc::SOL_SOCKET, plain, value)?;
            }
        }
        Ok(())
    }

    /// Sends `bytes` with a single `sendto` to the kernel.
    pub(crate) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `bytes` and `addr` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != bytes.len() {
            return Err(io::Error::other("netlink sendto sent only part of the batch"));
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (u32 words keep it aligned). With
    /// `wait == false`, returns `Ok(None)` when nothing is queued.
    pub(crate) fn recv<'b>(&self, buf: &'b mut [u32], wait: bool) -> io::Result<Option<&'b [u8]>> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        let bytes = buf.len() * 4;
        // SAFETY: `buf` is valid for `bytes` bytes of writes.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                bytes,
                flags | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) if !wait => Ok(None),
                Some(libc::EINTR) => self.recv(buf, wait),
                _ => Err(err),
            };
        }
        let n = n as usize;
        if n > bytes {
            return Err(io::Error::other("netlink reply larger than the receive buffer"));
        }
        // SAFETY: the kernel initialised the first `n` bytes; u8 view of u32s.
        Ok(Some(unsafe {
            std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n)
        }))
    }
}

/// `NETLINK_ADD_MEMBERSHIP`.
const NETLINK_ADD_MEMBERSHIP: c_int = 1;
/// `NETLINK_DROP_MEMBERSHIP`.
const NETLINK_DROP_MEMBERSHIP: c_int = 2;

impl Socket {
    /// Subscribes to the multicast group `group` (e.g. `NFNLGRP_NFTABLES`).
    pub(crate) fn join_group(&self, group: u32) -> io::Result<()> {
        setsockopt_int(
            &self.fd,
            libc::SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            group as c_int,
        )
    }

    /// Unsubscribes from the multicast group `group`.
    pub(crate) fn leave_group(&self, group: u32) -> io::Result<()> {
        setsockopt_int(
            &self.fd,
            libc::SOL_NETLINK,
            NETLINK_DROP_MEMBERSHIP,
            group as c_int,
        )
    }
}

impl std::os::fd::AsFd for Socket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
