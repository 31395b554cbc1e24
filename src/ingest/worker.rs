//! The parse worker: a second thread that takes full batches off the
//! receive thread, so receiving and parsing overlap when a backlog builds.
//!
//! Receiving a ~500-byte datagram costs the kernel about as much as parsing
//! it costs us, so one thread doing both empties a backlog at half the rate
//! the socket allows. A full batch from `recvmmsg` is the sign of a backlog:
//! the receive thread hands it here and goes straight back to the socket
//! with a spare batch. A partial batch means it is keeping up, and it parses
//! in place: at ordinary rates that costs no wake-up and no cache lines
//! crossing cores.
//!
//! Order is kept: while any handed-over batch is unparsed, later batches
//! follow it here instead of being parsed in place. Back-pressure is the
//! spare pool: with every batch in flight, the receive thread waits for one
//! to come back and the socket buffer absorbs the difference.
//!
//! Both sides spin briefly before sleeping, and the worker keeps off the
//! receive thread's CPU ([`super::affinity`]): on a small virtual machine,
//! a futex wake per batch or two threads taking turns on one CPU cost more
//! than the overlap gains. On a single CPU there is nothing to overlap and
//! no worker is started.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::affinity::{CpuSet, current_cpu};
use super::allow::AllowList;
use super::batch::RecvBatch;
use crate::record::Decoder;
use crate::state::Shared;

/// Batches handed over and not yet given back, at most. A few absorb the
/// jitter between the two threads; more would only hold datagrams out of
/// the windows for longer. Each is 4 MiB of address space, of which only
/// the pages datagrams touch become resident.
const IN_FLIGHT: usize = 4;

/// How long a thread waiting for the other spins before it sleeps. While a
/// backlog drains, the next batch comes within a batch's worth of receive
/// time (~40 µs); sleeping instead would make every hand-over a futex wake
/// of an idle CPU, which on a virtual machine costs about as much as
/// parsing the batch.
const SPIN: Duration = Duration::from_millis(1);

/// Take the next message, spinning for up to [`SPIN`] before sleeping.
fn recv_spinning<T>(rx: &Receiver<T>) -> Result<T, mpsc::RecvError> {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
                Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() > SPIN {
            return rx.recv();
        }
    }
}

/// A full batch and the window clock at the time it was received.
struct Job {
    batch: RecvBatch,
    now: u64,
    /// The CPU the receive thread handed it over from.
    cpu: Option<usize>,
}

/// The receive thread's side of the worker.
pub struct Worker {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<RecvBatch>,
    spare: Vec<RecvBatch>,
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
        allow: Option<Arc<AllowList>>,
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
                let allowed = CpuSet::of_current_thread();
                while let Ok(mut job) = recv_spinning(&inbox) {
                    if let (Some(allowed), Some(here)) = (&allowed, current_cpu())
                        && job.cpu == Some(here)
                    {
                        allowed.confine_current_thread_without(here);
                    }
                    super::parse(
                        &shared,
                        allow.as_deref(),
                        &mut decoder,
                        &mut job.batch,
                        job.now,
                    );
                    // The receive thread may be gone at shutdown; the batch is
                    // then simply freed.
                    let _ = give_back.send(job.batch);
                }
            })?;
        Ok(Some(Worker {
            jobs: Some(jobs),
            done,
            spare: Vec::new(),
            outstanding: 0,
            thread: Some(thread),
        }))
    }

    /// Whether batches handed over are still being parsed. Collects those
    /// that came back.
    pub fn busy(&mut self) -> bool {
        while let Ok(b) = self.done.try_recv() {
            self.returned(b);
        }
        self.outstanding > 0
    }

    /// Hand the full `batch`, received at window clock `now`, to the worker
    /// and put an empty one of the same size in its place: a spare, a new
    /// one while fewer than [`IN_FLIGHT`] exist, or else the first to come
    /// back. Returns false, leaving `batch` as it was, if the worker is
    /// gone; the caller then parses it itself.
    pub fn hand_over(&mut self, batch: &mut RecvBatch, now: u64) -> bool {
        if self.jobs.is_none() {
            return false;
        }
        let empty = match self.spare.pop() {
            Some(b) => b,
            // Every batch beyond the one in hand is outstanding or spare.
            None if self.outstanding < IN_FLIGHT => RecvBatch::new(batch.capacity()),
            None => match recv_spinning(&self.done) {
                Ok(b) => {
                    self.outstanding -= 1;
                    b
                }
                Err(_) => return self.stopped(),
            },
        };
        let full = std::mem::replace(batch, empty);
        let jobs = self.jobs.as_ref().expect("checked above");
        match jobs.send(Job {
            batch: full,
            now,
            cpu: current_cpu(),
        }) {
            Ok(()) => {
                self.outstanding += 1;
                true
            }
            Err(mpsc::SendError(job)) => {
                self.spare.push(std::mem::replace(batch, job.batch));
                self.stopped()
            }
        }
    }

    /// The worker thread is gone, which only a panic while parsing does:
    /// parse on the receive thread from now on rather than lose batches.
    fn stopped(&mut self) -> bool {
        tracing::error!("parse worker stopped; parsing on the receive thread");
        self.jobs = None;
        false
    }

    fn returned(&mut self, b: RecvBatch) {
        self.outstanding -= 1;
        self.spare.push(b);
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
    use crate::pipeline::{Pipeline, PipelineConfig};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    /// A request whose release names its place in the sequence: the release
    /// the pipeline ends up with is that of the last line it parsed.
    fn line(i: usize) -> String {
        format!(
            r#"<190>Nov  5 09:07:03 web nginx: {{"status":200,"request_time":0.012,"upstream_status":"200","upstream_addr":"127.0.0.1:3001","pool":"blue","release":"r{i}"}}"#
        )
    }

    #[test]
    fn handed_over_batches_are_all_parsed_in_order() {
        let Some(allowed) = CpuSet::of_current_thread() else {
            return;
        };
        // A unix datagram pair, not UDP: a datagram is in the receive queue
        // when `send` returns, so a burst is received whole, as one batch.
        // Over loopback UDP, delivery can lag behind `send` on a busy
        // machine (the kernel defers it to ksoftirqd), and a burst then
        // arrives split into partial batches that are parsed in place.
        let (tx, rx) = UnixDatagram::pair().unwrap();
        let shared = Arc::new(Shared::new(
            Pipeline::new(&PipelineConfig::default()),
            vec![],
            serde_json::json!({}),
        ));
        let worker = Worker::spawn("test", shared.clone(), None).unwrap();
        let Some(mut worker) = worker else {
            assert_eq!(
                allowed.count(),
                1,
                "a worker starts wherever two CPUs exist"
            );
            return;
        };
        // More batches than are in flight, so the receive side must wait
        // for spares to come back; small batches between full ones must
        // follow them through the worker, not overtake them. (A burst of
        // 8 stays within the kernel's default queue of 10 datagrams.)
        let mut batch = RecvBatch::new(8);
        let (mut sent, mut handed, mut inline, mut full) = (0, 0, 0, 0);
        let mut decoder = Decoder::new();
        for round in 0..40 {
            let burst = if round % 3 == 2 { 3 } else { 8 };
            full += usize::from(burst == 8);
            for _ in 0..burst {
                tx.send(line(sent).as_bytes()).unwrap();
                sent += 1;
            }
            let mut got = 0;
            while got < burst {
                let n = batch.recv(rx.as_raw_fd()).unwrap();
                got += n;
                if super::super::dispatch(
                    Some(&mut worker),
                    &shared,
                    None,
                    &mut decoder,
                    &mut batch,
                    1,
                ) {
                    handed += 1;
                } else {
                    inline += 1;
                }
            }
        }
        worker.finish();
        // Every full batch at least; short ones too while it was busy.
        assert!(full > IN_FLIGHT);
        assert!(
            handed >= full,
            "the worker took {handed} of {full} full batches"
        );
        let p = shared.pipeline();
        assert_eq!(p.totals.datagrams, sent as u64, "{inline} parsed in place");
        assert_eq!(p.releases[0], format!("r{}", sent - 1));
    }
}
