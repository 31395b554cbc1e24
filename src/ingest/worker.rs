//! The parse worker: a second thread that takes full batches off the
//! receive thread, so receiving and parsing overlap when a backlog builds.
//!
//! Receiving a ~500-byte datagram costs the kernel about as much as parsing
//! it costs us, so one thread doing both empties a backlog at half the rate
//! the socket allows. When the receive thread is behind its socket
//! ([`super::backlog`]) it hands each full batch here and goes straight
//! back to the socket with a spare batch. Otherwise it parses in place:
//! that costs no wake-up and no cache lines crossing cores.
//!
//! When the worker falls behind as well ([`DECODE_HERE_FROM`] batches in
//! flight), the receive thread decodes each batch before handing it over
//! ([`super::decoded`]) and the worker only folds it in: decoding where the
//! datagrams were just written is cheaper than on the other core, and it
//! evens the two threads out while a backlog drains.
//!
//! Order is kept: while any handed-over batch is unparsed, later batches
//! follow it here instead of being parsed in place, since the count windows
//! hold the last N requests in the order they were folded in. Back-pressure
//! is the spare pool: with every batch in flight, the receive thread waits
//! for one to come back and the socket buffer absorbs the difference.
//!
//! Neither thread spins: a thread waiting for the other sleeps in the
//! channel's receive at once. Spinning (up to 1 ms, even only while a
//! backlog drained) was measured against this and not paid back: on a
//! shared machine the thread waited for is often descheduled, so the spin
//! burns a CPU the other thread needs (DECISION.md has the figures). The
//! worker keeps off the receive thread's CPU ([`super::affinity`]): on a
//! small virtual machine, two threads taking turns on one CPU cost more
//! than the overlap gains. On a single CPU there is nothing to overlap and
//! no worker is started.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::affinity::{CpuSet, current_cpu};
use super::allow::SharedAllowList;
use super::batch::RecvBatch;
use super::decoded::Decoded;
use crate::record::Decoder;
use crate::state::Shared;

/// Batches handed over and not yet given back, at most. A few absorb the
/// jitter between the two threads; more would only hold datagrams out of
/// the windows for longer. Each is 4 MiB of address space, of which only
/// the pages datagrams touch become resident.
const IN_FLIGHT: usize = 4;

/// Batches handed over and not yet given back from which the receive thread
/// decodes the batches it hands over itself ([`super::decoded`]): the
/// worker is then behind too, and decoding where the datagrams are still
/// in cache is what evens the two threads out.
const DECODE_HERE_FROM: usize = 2;

/// A full batch and the window clock at the time it was received.
struct Job {
    batch: RecvBatch,
    /// The batch as the receive thread decoded it, if it did.
    decoded: Option<Decoded>,
    now: u64,
    /// The CPU the receive thread handed it over from.
    cpu: Option<usize>,
}

/// The receive thread's side of the worker.
pub struct Worker {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<(RecvBatch, Option<Decoded>)>,
    spare: Vec<RecvBatch>,
    spare_decoded: Vec<Decoded>,
    /// Batches handed over and not yet collected back into `spare`.
    outstanding: usize,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start the worker thread for the listener called `name`, unless this
    /// process may use only one CPU (`Ok(None)`).
    pub fn spawn(
        name: &str,
        shared: Arc<Shared>,
        allow: Option<SharedAllowList>,
    ) -> io::Result<Option<Worker>> {
        if CpuSet::of_current_thread().is_some_and(|set| set.count() < 2) {
            return Ok(None);
        }
        let (jobs, inbox) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let (give_back, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("parse {name}"))
            .spawn(move || {
                let mut decoder = Decoder::new();
                let mut allow = allow.map(|a| a.reader());
                let allowed = CpuSet::of_current_thread();
                while let Ok(mut job) = inbox.recv() {
                    if let (Some(allowed), Some(here)) = (&allowed, current_cpu())
                        && job.cpu == Some(here)
                    {
                        allowed.confine_current_thread_without(here);
                    }
                    let folded = job
                        .decoded
                        .as_ref()
                        .is_some_and(|d| d.fold(&shared, &job.batch, job.now));
                    if !folded {
                        super::parse(
                            &shared,
                            allow.as_mut().and_then(|a| a.current()),
                            &mut decoder,
                            &mut job.batch,
                            job.now,
                        );
                    }
                    // The receive thread may be gone at shutdown; the batch is
                    // then simply freed.
                    let _ = give_back.send((job.batch, job.decoded));
                }
            })?;
        Ok(Some(Worker {
            jobs: Some(jobs),
            done,
            spare: Vec::new(),
            spare_decoded: Vec::new(),
            outstanding: 0,
            thread: Some(thread),
        }))
    }

    /// Whether batches handed over are still being parsed. Collects those
    /// that came back.
    pub fn busy(&mut self) -> bool {
        self.collect();
        self.outstanding > 0
    }

    /// Whether the worker is behind as well, so that the receive thread
    /// should decode what it hands over ([`DECODE_HERE_FROM`]).
    pub fn backed_up(&mut self) -> bool {
        self.collect();
        self.outstanding >= DECODE_HERE_FROM
    }

    /// Somewhere to decode a batch into, for [`Worker::hand_over`].
    pub fn spare_decoded(&mut self) -> Decoded {
        self.spare_decoded.pop().unwrap_or_default()
    }

    fn collect(&mut self) {
        while let Ok(b) = self.done.try_recv() {
            self.returned(b);
        }
    }

    /// Hand `batch`, received at window clock `now` and perhaps `decoded`
    /// already, to the worker and put an empty one of the same size in its
    /// place: a spare, a new one while fewer than [`IN_FLIGHT`] exist, or
    /// else the first to come back. If the worker is gone, leaves `batch`
    /// as it was and gives `decoded` back; the caller then folds it in
    /// itself.
    pub fn hand_over(
        &mut self,
        batch: &mut RecvBatch,
        now: u64,
        decoded: Option<Decoded>,
    ) -> Result<(), Option<Decoded>> {
        if self.jobs.is_none() {
            return Err(decoded);
        }
        let empty = match self.spare.pop() {
            Some(b) => b,
            // Every batch beyond the one in hand is outstanding or spare.
            None if self.outstanding < IN_FLIGHT => RecvBatch::new(batch.capacity()),
            None => match self.done.recv() {
                Ok((b, d)) => {
                    self.outstanding -= 1;
                    self.spare_decoded.extend(d);
                    b
                }
                Err(_) => {
                    self.stopped();
                    return Err(decoded);
                }
            },
        };
        let full = std::mem::replace(batch, empty);
        let jobs = self.jobs.as_ref().expect("checked above");
        match jobs.send(Job {
            batch: full,
            decoded,
            now,
            cpu: current_cpu(),
        }) {
            Ok(()) => {
                self.outstanding += 1;
                Ok(())
            }
            Err(mpsc::SendError(job)) => {
                self.spare.push(std::mem::replace(batch, job.batch));
                self.stopped();
                Err(job.decoded)
            }
        }
    }

    /// The worker thread is gone, which only a panic while parsing does:
    /// parse on the receive thread from now on rather than lose batches.
    fn stopped(&mut self) {
        tracing::error!("parse worker stopped; parsing on the receive thread");
        self.jobs = None;
    }

    fn returned(&mut self, (b, d): (RecvBatch, Option<Decoded>)) {
        self.outstanding -= 1;
        self.spare.push(b);
        self.spare_decoded.extend(d);
    }

    /// Let the worker parse what it holds, then stop it.
    pub fn finish(mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::backlog::Backlog;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    /// A request whose release names its place in the sequence: the release
    /// the pipeline ends up with is that of the last line it parsed.
    fn line(i: usize) -> String {
        format!(
            r#"<190>Nov  5 09:07:03 web nginx: {{"status":200,"request_time":0.012,"upstream_status":"200","upstream_addr":"127.0.0.1:3001","pool":"blue","release":"r{i}"}}"#
        )
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            Pipeline::new(&PipelineConfig::default()),
            vec![],
            serde_json::json!({}),
        ))
    }

    /// Send `burst` lines numbered from `*sent`, then receive and dispatch
    /// until all are in; returns how many batches the worker took.
    fn round(
        tx: &UnixDatagram,
        rx: &UnixDatagram,
        worker: &mut Worker,
        shared: &Shared,
        batch: &mut RecvBatch,
        sent: &mut usize,
        burst: usize,
    ) -> usize {
        for _ in 0..burst {
            tx.send(line(*sent).as_bytes()).unwrap();
            *sent += 1;
        }
        let (mut got, mut handed) = (0, 0);
        let mut decoder = Decoder::new();
        while got < burst {
            got += batch.recv(rx.as_raw_fd()).unwrap();
            let behind = Backlog::new(false).after(batch, rx).behind;
            let took = super::super::dispatch(
                Some(&mut *worker),
                behind,
                shared,
                None,
                &mut decoder,
                batch,
                1,
            );
            handed += usize::from(took);
        }
        handed
    }

    // A unix datagram pair, not UDP: a datagram is in the receive queue
    // when `send` returns, so what is queued when the receive call runs is
    // exactly what was sent. Over loopback UDP, delivery can lag behind
    // `send` on a busy machine (the kernel defers it to ksoftirqd), and a
    // burst then arrives split into partial batches. Bursts stay within
    // the kernel's default queue of 10 datagrams, so `send` never blocks.

    #[test]
    fn handed_over_batches_are_all_parsed_in_order() {
        let Some(allowed) = CpuSet::of_current_thread() else {
            return;
        };
        let (tx, rx) = UnixDatagram::pair().unwrap();
        let shared = shared();
        let Some(mut worker) = Worker::spawn("test", shared.clone(), None).unwrap() else {
            assert_eq!(
                allowed.count(),
                1,
                "a worker starts wherever two CPUs exist"
            );
            return;
        };
        // More backlogs than batches in flight, so the receive side must
        // wait for spares to come back; the batches after a hand-over must
        // follow it through the worker while it is busy, not overtake it.
        let mut batch = RecvBatch::new(6);
        let (mut sent, mut handed, mut backlogs) = (0, 0, 0);
        for r in 0..40 {
            // 10: a full batch of 6 with 4 still queued, a backlog.
            let burst = [10, 3, 6][r % 3];
            backlogs += usize::from(burst == 10);
            handed += round(&tx, &rx, &mut worker, &shared, &mut batch, &mut sent, burst);
        }
        worker.finish();
        assert!(backlogs > IN_FLIGHT);
        assert!(
            handed >= backlogs,
            "the worker took {handed} batches for {backlogs} backlogs"
        );
        let p = shared.pipeline();
        assert_eq!(p.totals.datagrams, sent as u64);
        assert_eq!(p.releases[0], format!("r{}", sent - 1));
    }

    #[test]
    fn a_burst_taken_whole_is_parsed_in_place() {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        let shared = shared();
        let Some(mut worker) = Worker::spawn("test", shared.clone(), None).unwrap() else {
            return;
        };
        let mut batch = RecvBatch::new(6);
        let mut sent = 0;
        // A backlog first, so the worker has been busy.
        assert!(round(&tx, &rx, &mut worker, &shared, &mut batch, &mut sent, 10) >= 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        while worker.busy() {
            assert!(Instant::now() < deadline, "the worker never finished");
            std::thread::yield_now();
        }
        // Exactly one full batch and nothing behind it: no backlog.
        let handed = round(&tx, &rx, &mut worker, &shared, &mut batch, &mut sent, 6);
        assert_eq!(handed, 0, "a whole burst went to the worker");
        worker.finish();
        let p = shared.pipeline();
        assert_eq!(p.totals.datagrams, sent as u64);
        assert_eq!(p.releases[0], format!("r{}", sent - 1));
    }
}
