//! Talking to nf_tables: one request and its replies, a batch and its acks,
//! the ruleset generation every batch is pinned to.

use crate::describe::{KernelError, describe_failure};
use crate::encode::{Batch, Object};
use crate::netlink::{self, NLM_F_DUMP_INTR, Reply};
use crate::report::{Transaction, TransactionKind};
use crate::{Error, Nft, Result, ffi};
use dockfw_core::ruleset::Ruleset;
use std::time::Instant;

/// How many times a transaction or a consistent read is tried when another
/// program keeps changing nf_tables.
pub(crate) const ATTEMPTS: u32 = 5;

/// How a request ended: completed (dumps: with or without interruption), or
/// refused with an errno.
pub(crate) enum RequestOutcome {
    Done { interrupted: bool },
    Refused(i32),
}

/// The generation nf_tables moves to when a batch based on `generation`
/// commits (the kernel skips 0).
pub(crate) fn next_generation(generation: u32) -> u32 {
    match generation.wrapping_add(1) {
        0 => 1,
        next => next,
    }
}

impl Nft {
    pub(crate) fn take_seqs(&mut self, count: usize) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(count as u32);
        first
    }

    /// Sends one request and feeds each data reply to `each` until the dump
    /// ends or the request is acked.
    pub(crate) fn request(
        &mut self,
        action: &'static str,
        msg: &[u8],
        seq: u32,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<RequestOutcome> {
        self.socket.send(msg).map_err(|e| Error::io(action, e))?;
        let mut interrupted = false;
        loop {
            let buf = self
                .socket
                .recv(&mut self.recv, true)
                .map_err(|e| Error::io(action, e))?
                .unwrap_or_default();
            let replies = netlink::parse_replies(buf).map_err(|e| Error::Protocol {
                action,
                detail: e.to_string(),
            })?;
            for reply in replies {
                match reply {
                    Reply::Data { seq: s, flags, msg } if s == seq => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        each(msg)?;
                    }
                    Reply::Done { seq: s, flags } if s == seq => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        return Ok(RequestOutcome::Done { interrupted });
                    }
                    Reply::Ack { seq: s, errno: 0, .. } if s == seq => {
                        return Ok(RequestOutcome::Done { interrupted });
                    }
                    Reply::Ack { seq: s, errno, .. } if s == seq => {
                        if errno == libc::EPERM {
                            return Err(Error::PermissionDenied { action });
                        }
                        return Ok(RequestOutcome::Refused(errno));
                    }
                    // Leftovers of an earlier, abandoned exchange.
                    _ => {}
                }
            }
        }
    }

    /// The current nf_tables ruleset generation id ([`Nft::generation`]).
    pub(crate) fn read_generation(&mut self) -> Result<u32> {
        const ACTION: &str = "read the nf_tables generation";
        let seq = self.take_seqs(1);
        let msg = self.writer.get_gen(seq);
        let mut genid = None;
        let outcome = self.request(ACTION, &msg, seq, |reply| {
            genid = Some(ffi::parse_gen(reply).map_err(|detail| Error::Protocol {
                action: ACTION,
                detail,
            })?);
            Ok(())
        })?;
        match (outcome, genid) {
            (RequestOutcome::Done { .. }, Some(genid)) => Ok(genid),
            (RequestOutcome::Refused(errno), _) => {
                Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno)))
            }
            _ => Err(Error::Protocol {
                action: ACTION,
                detail: "no generation in the reply".into(),
            }),
        }
    }

    /// Sends `batch` based on `generation` and reads every ack. `None`: the
    /// kernel refused it because nf_tables changed since (`ERESTART`).
    /// Failures are described with the rules of `described`.
    pub(crate) fn commit(
        &mut self,
        batch: &mut Batch,
        kind: TransactionKind,
        generation: u32,
        described: &Ruleset,
    ) -> Result<Option<Transaction>> {
        const ACTION: &str = "apply the ruleset";
        // One sendto needs a send buffer larger than the batch; every message
        // is acked, and the acks must all fit in the receive buffer.
        let recv_bytes = (batch.msgs.len() * 2048).max(4 << 20);
        self.socket
            .grow_buffers(batch.bytes.len() + (64 << 10), recv_bytes)
            .map_err(|e| Error::io("size the netlink socket buffers", e))?;
        batch.set_genid(generation);
        let started = Instant::now();
        self.socket.send(&batch.bytes).map_err(|e| match e.raw_os_error() {
            Some(libc::EMSGSIZE) | Some(libc::ENOBUFS) => Error::Io {
                action: "send the batch (too large for the socket buffer; raising it needs CAP_NET_ADMIN)",
                source: e,
            },
            _ => Error::io(ACTION, e),
        })?;
        let (failures, acked) = self.collect_acks(batch)?;
        let commit_time = started.elapsed();
        let restarted = failures.iter().any(|f| {
            f.errno == libc::ERESTART && batch.msg(f.seq).is_some_and(|m| m.object == Object::BatchBegin)
        });
        if restarted {
            return Ok(None);
        }
        if failures.iter().any(|f| f.errno == libc::EPERM) {
            return Err(Error::PermissionDenied { action: ACTION });
        }
        if !failures.is_empty() {
            return Err(Error::Rejected {
                table: described.table.clone(),
                failures: failures
                    .into_iter()
                    .map(|f| describe_failure(described, batch, f))
                    .collect(),
            });
        }
        // Every message but the batch's begin and end asks for an ack.
        let asked = batch.msgs.len().saturating_sub(2);
        Ok(Some(Transaction {
            kind,
            messages: batch.msgs.len(),
            bytes: batch.bytes.len(),
            generation,
            commit_time,
            acked: acked == asked,
        }))
    }

    /// Reads every reply to a batch already sent. The kernel processes a
    /// batch inside `sendto`, so all replies are queued by now; we drain the
    /// socket without waiting. Returns the failed messages with their
    /// ext-ack details, and how many of the batch's messages were acked
    /// without error.
    pub(crate) fn collect_acks(&mut self, batch: &Batch) -> Result<(Vec<KernelError>, usize)> {
        const ACTION: &str = "read the kernel's answers to the batch";
        let mut failures = Vec::new();
        let mut acked = 0;
        loop {
            let buf = match self.socket.recv(&mut self.recv, false) {
                Ok(Some(buf)) => buf,
                Ok(None) => break,
                // Acks were dropped for lack of room; errors are never
                // silently lost this way without the read-back noticing.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(Error::io(ACTION, e)),
            };
            let replies = netlink::parse_replies(buf).map_err(|e| Error::Protocol {
                action: ACTION,
                detail: e.to_string(),
            })?;
            for reply in replies {
                if let Reply::Ack { seq, errno: 0, .. } = reply
                    && batch.msg(seq).is_some_and(|m| m.seq == seq)
                {
                    acked += 1;
                } else if let Reply::Ack {
                    seq,
                    errno,
                    text,
                    offset,
                } = reply
                    && errno != 0
                    && batch.msg(seq).is_some_and(|m| m.seq == seq)
                {
                    failures.push(KernelError {
                        seq,
                        errno,
                        text,
                        offset,
                    });
                }
            }
        }
        Ok((failures, acked))
    }

    /// Deletes table `table` in a batch based on `generation` (0: whatever
    /// it is). `Some(existed)`, or `None` if the kernel refused the batch
    /// because nf_tables changed since `generation` (`ERESTART`).
    pub(crate) fn delete_table(&mut self, table: &str, generation: u32) -> Result<Option<bool>> {
        const ACTION: &str = "remove the table";
        let mut batch = Batch::new(self.seq);
        let seq = batch.next_seq();
        let msg = self.writer.table(false, libc::NLM_F_ACK, seq, table).to_vec();
        batch.push(seq, &msg, Object::Table("delete table"));
        batch.finish();
        batch.set_genid(generation);
        self.take_seqs(batch.msgs.len());
        self.socket.send(&batch.bytes).map_err(|e| Error::io(ACTION, e))?;
        let (failures, _) = self.collect_acks(&batch)?;
        match failures.first().map(|f| f.errno) {
            None => Ok(Some(true)),
            Some(libc::ENOENT) => Ok(Some(false)),
            Some(libc::ERESTART) if generation != 0 => Ok(None),
            Some(libc::EPERM) => Err(Error::PermissionDenied { action: ACTION }),
            Some(errno) => Err(Error::io(ACTION, std::io::Error::from_raw_os_error(errno))),
        }
    }
}
