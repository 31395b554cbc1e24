//! A batch decoded on the receive thread, for the parse worker to fold in.
//!
//! When a backlog outruns the parse worker too, the worker is the slower
//! of the two threads: it reads every datagram from the other CPU's cache,
//! while the receive thread just had it written into its own. The receive
//! thread then decodes the batch in hand itself, where decoding is
//! cheapest, and hands it over decoded; the worker only folds it in, in
//! its turn, so batches are still folded in the order they were received.
//!
//! A decoded record borrows the slot it was decoded in, and the slot moves
//! to another thread with its batch, so records travel as offsets into the
//! slots ([`Spans`]). They are read back only while the batch's receipt is
//! the one they were decoded under: the slots still hold those bytes.

use super::allow::AllowList;
use super::batch::RecvBatch;
use super::{CHUNK, Parsed, classify};
use crate::pipeline::Malformed;
use crate::record::{DecodeError, Decoder, Spans};
use crate::state::Shared;

/// What became of each datagram of one batch, in order.
#[derive(Default)]
pub struct Decoded {
    /// The batch's receipt once decoded; `None` before.
    receipt: Option<u64>,
    entries: Vec<Entry>,
}

/// One datagram, as [`Parsed`] without the borrow.
enum Entry {
    Rejected(usize),
    Truncated(usize),
    Malformed(usize, Malformed),
    Record(usize, Spans),
}

impl Decoded {
    /// Decode every datagram of `batch` (with an allowlist, only those
    /// from its sources), replacing what this held.
    pub fn decode(
        &mut self,
        allow: Option<&AllowList>,
        decoder: &mut Decoder,
        batch: &mut RecvBatch,
    ) {
        self.entries.clear();
        for d in batch.datagrams() {
            let base = d.slot.as_ptr_range();
            self.entries.push(match classify(d, allow, decoder) {
                Parsed::Rejected(len) => Entry::Rejected(len),
                Parsed::Truncated(len) => Entry::Truncated(len),
                Parsed::Decoded(len, Err(m)) => Entry::Malformed(len, m),
                Parsed::Decoded(len, Ok(record)) => match record.spans(base) {
                    Some(spans) => Entry::Record(len, spans),
                    // Decoding in place leaves every string in the slot.
                    None => {
                        debug_assert!(false, "a decoded string outside its slot");
                        Entry::Malformed(len, DecodeError::InvalidJson.into())
                    }
                },
            });
        }
        self.receipt = Some(batch.receipt());
    }

    /// Fold the batch, received at window clock `now`, into the pipeline,
    /// a chunk at a time under its lock. Returns false, folding nothing,
    /// unless `batch` is the batch this decoded, unchanged since.
    pub fn fold(&self, shared: &Shared, batch: &RecvBatch, now: u64) -> bool {
        if self.receipt != Some(batch.receipt()) || self.entries.len() != batch.len() {
            return false;
        }
        for (c, chunk) in self.entries.chunks(CHUNK).enumerate() {
            let mut p = shared.pipeline();
            for (k, entry) in chunk.iter().enumerate() {
                match *entry {
                    Entry::Rejected(len) => p.count_rejected_source(len),
                    Entry::Truncated(len) => p.count_truncated(len as u64),
                    Entry::Malformed(len, m) => p.fold(&Err(m), len, now),
                    Entry::Record(len, spans) => {
                        // SAFETY: the receipt is the one `decode` saw after
                        // decoding, so slot `i` holds the bytes its spans
                        // were measured in, unchanged.
                        let record = unsafe { spans.record(batch.slot_bytes(c * CHUNK + k)) };
                        p.fold(&Ok(record), len, now);
                    }
                }
            }
        }
        // Off the lock: the alert loop this may wake takes it next.
        shared.batch_arrived();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    fn shared() -> Shared {
        Shared::new(
            Pipeline::new(&PipelineConfig::default()),
            vec![],
            serde_json::json!({}),
        )
    }

    /// Receive `lines` into a fresh batch.
    fn batch_of(lines: &[&str]) -> RecvBatch {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        for l in lines {
            tx.send(l.as_bytes()).unwrap();
        }
        let mut batch = RecvBatch::new(lines.len());
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), lines.len());
        batch
    }

    const LINES: [&str; 3] = [
        r#"<190>Nov  5 09:07:03 web nginx: {"status":502,"upstream_status":"502, 200","upstream_addr":"10.0.0.2:3000, 10.0.0.3:3000","pool":"green","release":"g\"1"}"#,
        "not a syslog line",
        r#"<190>Nov  5 09:07:03 web nginx: {"status":200,"upstream_status":"200","upstream_addr":"10.0.0.3:3000","pool":"green","release":"g2"}"#,
    ];

    #[test]
    fn a_batch_decoded_here_folds_in_as_if_parsed_there() {
        let (here, there) = (shared(), shared());
        let mut batch = batch_of(&LINES);
        let mut decoded = Decoded::default();
        decoded.decode(None, &mut Decoder::new(), &mut batch);
        assert!(decoded.fold(&here, &batch, 7));
        let mut batch = batch_of(&LINES);
        super::super::parse(&there, None, &mut Decoder::new(), &mut batch, 7);
        let (a, b) = (here.pipeline(), there.pipeline());
        assert_eq!(a.totals.datagrams, 3);
        assert_eq!(a.totals.malformed, b.totals.malformed);
        assert_eq!(a.totals.requests, b.totals.requests);
        assert_eq!(a.totals.attempts, b.totals.attempts);
        assert_eq!(a.totals.retried, b.totals.retried);
        assert_eq!(a.releases, b.releases);
        assert_eq!(a.releases[1], "g2");
    }

    #[test]
    fn records_are_not_read_from_slots_that_changed() {
        let s = shared();
        let mut batch = batch_of(&LINES);
        let mut decoded = Decoded::default();
        // Not decoded yet.
        assert!(!decoded.fold(&s, &batch, 7));
        decoded.decode(None, &mut Decoder::new(), &mut batch);
        // Any write access to the slots since, and the records are stale.
        let _ = batch.slot(0);
        assert!(!decoded.fold(&s, &batch, 7));
        // Another batch entirely.
        assert!(!decoded.fold(&s, &batch_of(&LINES), 7));
        assert_eq!(s.pipeline().totals.datagrams, 0);
    }
}
