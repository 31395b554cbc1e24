//! Ingest: the receive threads, socket → batch → pipeline.
//!
//! Each listener gets a dedicated OS thread blocked in `recvmmsg`, not a
//! tokio task: the loop never yields to anything slow (HTTP, alert delivery),
//! and one batched system call per wake-up is what keeps a single core at
//! the socket's pace. The thread decodes the datagrams of a batch, which
//! needs no lock, and folds them into the shared pipeline a chunk at a time
//! under its lock, then goes back to the socket.
//!
//! After a batch that took the socket empty, a UDP receive thread waits a
//! moment ([`pace`]), so that its next wake-up finds many datagrams rather
//! than one: waking, not receiving, is most of what a datagram costs at
//! ordinary rates. When the thread falls behind its socket ([`backlog`]),
//! full batches go to a parse worker ([`worker`]) and receiving and parsing
//! run on two cores at once; if the worker falls behind too, the receive
//! thread decodes those batches first and the worker only folds them in
//! ([`decoded`]).
//!
//! The thread wakes only for datagrams: no receive timeout, no heartbeat.
//! It says when it enters and leaves its receive call
//! ([`crate::state::Liveness`]), which is what `/healthz` reads, and it is
//! stopped by shutting its socket down for reading ([`ReceiveThread::stop`]).
//!
//! A datagram from a source outside the listener's allowlist ([`allow`]) is
//! counted and dropped before it is parsed.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod affinity;
pub mod allow;
pub mod backlog;
pub mod batch;
pub mod decoded;
pub mod kernel_drops;
pub mod pace;
pub mod socket;
pub mod worker;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::pipeline::{self, Malformed};
use crate::record::{AccessRecord, Decoder};
use crate::state::{Liveness, Shared};
use allow::AllowList;
use backlog::Backlog;
use batch::RecvBatch;
use pace::Pace;
use socket::Listener;
use worker::Worker;

/// A running receive thread, to stop at shutdown.
pub struct ReceiveThread {
    thread: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    /// The same socket as the thread's, to wake it with.
    socket: OwnedFd,
}

impl ReceiveThread {
    /// Stop the thread: it finishes the batch in hand (and the parse worker
    /// what it holds) and ends. Blocks until it has.
    pub fn stop(self) -> std::thread::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes a receive call blocked on an empty socket, which then
        // returns what is queued, or nothing. On an unconnected UDP socket
        // Linux reports ENOTCONN but shuts it down all the same.
        let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Read);
        self.thread.join()
    }
}

/// Start the receive thread for `listener`, the `index`-th of those
/// `shared` was made with (its [`Liveness`] slot). It runs until
/// [`ReceiveThread::stop`].
pub fn spawn(listener: Listener, index: usize, shared: Arc<Shared>) -> io::Result<ReceiveThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let socket = listener.fd.as_fd().try_clone_to_owned()?;
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("recv {}", listener.name))
        .spawn(move || {
            let fallback = Liveness::detached();
            let live = shared.liveness(index).unwrap_or(&fallback);
            // Also on a panic: a dead thread must not look alive.
            let _stopped = StoppedOnDrop(live);
            run(&listener, &shared, live, &flag)
        })?;
    Ok(ReceiveThread {
        thread,
        stop,
        socket,
    })
}

struct StoppedOnDrop<'a>(&'a Liveness);

impl Drop for StoppedOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stopped();
    }
}

fn run(listener: &Listener, shared: &Arc<Shared>, live: &Liveness, stop: &AtomicBool) {
    let fd = listener.fd.as_raw_fd();
    let mut batch = RecvBatch::default();
    let mut decoder = Decoder::new();
    let mut allow = listener.allow.as_ref().map(|a| a.reader());
    let mut worker = match Worker::spawn(&listener.name, shared.clone(), listener.allow.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(listener = %listener.name, error = %e,
                "cannot start the parse worker; parsing on the receive thread");
            None
        }
    };
    let mut backlog = Backlog::new(listener.paced);
    let mut pace = if listener.paced {
        Pace::udp(listener.granted_buffer, batch.capacity())
    } else {
        Pace::off()
    };
    // While the receive call keeps failing, the thread counts as out of it
    // since the first failure: a loop that only fails is stuck.
    let mut failing_since = None;
    loop {
        live.receiving();
        let received = batch.recv(fd);
        let elapsed = shared.elapsed();
        live.busy(failing_since.unwrap_or(elapsed.as_millis() as u64));
        let stopping = stop.load(Ordering::Relaxed);
        match received {
            Ok(_) => {
                failing_since = None;
                if stopping {
                    batch.drop_shutdown_tail();
                }
                let received = batch.len();
                let seen = backlog.after(&batch, &listener.fd);
                let handed = dispatch(
                    worker.as_mut(),
                    seen.behind,
                    shared,
                    allow.as_mut().and_then(|a| a.current()),
                    &mut decoder,
                    &mut batch,
                    elapsed.as_secs(),
                );
                // A hand-over may have waited for the worker, and more may
                // have queued meanwhile: no pacing then.
                if let Some(wait) = pace.after(elapsed, received, !seen.more && !handed)
                    && !stopping
                {
                    std::thread::sleep(wait);
                }
            }
            Err(e) if batch::nothing_received(&e) => failing_since = None,
            Err(e) if !stopping => {
                failing_since.get_or_insert(elapsed.as_millis() as u64);
                // Unexpected, but the socket is all we have: report and go on
                // without spinning.
                tracing::error!(listener = %listener.name, error = %e, "receive failed");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => {}
        }
        if stopping {
            break;
        }
    }
    if let Some(w) = worker {
        w.finish();
    }
}

/// Deal with the datagrams just received into `batch` at window clock
/// `now`. When this thread is `behind` its socket, the worker parses the
/// batch while this thread goes back to the socket; if the worker is behind
/// too, this thread decodes the batch first and the worker only folds it in
/// ([`decoded`]). Otherwise it is parsed here, unless earlier batches are
/// still with the worker, which it must not overtake. Returns whether the
/// worker took it.
fn dispatch(
    worker: Option<&mut Worker>,
    behind: bool,
    shared: &Shared,
    allow: Option<&AllowList>,
    decoder: &mut Decoder,
    batch: &mut RecvBatch,
    now: u64,
) -> bool {
    let Some(w) = worker.and_then(|w| (behind || w.busy()).then_some(w)) else {
        parse(shared, allow, decoder, batch, now);
        return false;
    };
    let decoded = w.backed_up().then(|| {
        let mut d = w.spare_decoded();
        d.decode(allow, decoder, batch);
        d
    });
    match w.hand_over(batch, now, decoded) {
        Ok(()) => true,
        // The worker is gone: fold in here what was decoded here.
        Err(Some(d)) if d.fold(shared, batch, now) => false,
        Err(_) => {
            parse(shared, allow, decoder, batch, now);
            false
        }
    }
}

/// Datagrams decoded before the pipeline lock is taken to fold them in.
const CHUNK: usize = 16;

/// What became of one datagram before the lock: what the pipeline counts.
// Boxing the large variant would allocate per datagram; a chunk of these
// lives on the stack for one batch.
#[allow(clippy::large_enum_variant)]
enum Parsed<'a> {
    Rejected(usize),
    Truncated(usize),
    Decoded(usize, Result<AccessRecord<'a>, Malformed>),
}

/// Decode one datagram, unless its source is not allowed or the kernel cut
/// it short.
fn classify<'a>(
    d: batch::Datagram<'a>,
    allow: Option<&AllowList>,
    decoder: &mut Decoder,
) -> Parsed<'a> {
    let permitted = allow.is_none_or(|a| d.source.is_some_and(|ip| a.permits(ip)));
    if !permitted {
        Parsed::Rejected(d.len)
    } else if d.truncated {
        Parsed::Truncated(d.len)
    } else {
        Parsed::Decoded(d.len, pipeline::decode(decoder, d.slot, d.len))
    }
}

/// Fold every datagram of `batch`, received at window clock `now`, into the
/// pipeline; with an allowlist, only those from its sources. Decoding needs
/// no lock, so a chunk of datagrams is decoded first and then folded in
/// under one lock: the lock is held for the window updates only, and the
/// alert loop and HTTP readers that take it wait that much less.
fn parse(
    shared: &Shared,
    allow: Option<&AllowList>,
    decoder: &mut Decoder,
    batch: &mut RecvBatch,
    now: u64,
) {
    let mut datagrams = batch.datagrams();
    loop {
        let mut chunk: [Option<Parsed<'_>>; CHUNK] = Default::default();
        let mut n = 0;
        for d in datagrams.by_ref().take(CHUNK) {
            chunk[n] = Some(classify(d, allow, decoder));
            n += 1;
        }
        if n == 0 {
            break;
        }
        let mut p = shared.pipeline();
        for parsed in chunk.iter().flatten() {
            match parsed {
                Parsed::Rejected(len) => p.count_rejected_source(*len),
                Parsed::Truncated(len) => p.count_truncated(*len as u64),
                // A malformed datagram is counted and skipped.
                Parsed::Decoded(len, decoded) => p.fold(decoded, *len, now),
            }
        }
        drop(p);
        if n < CHUNK {
            break;
        }
    }
    // Off the lock: the alert loop this may wake takes it next.
    shared.batch_arrived();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::state::{ListenerInfo, LoopState};
    use std::time::Instant;

    fn shared_for(l: &Listener) -> Arc<Shared> {
        Arc::new(Shared::new(
            Pipeline::new(&PipelineConfig::default()),
            vec![ListenerInfo {
                name: l.name.clone(),
                granted_buffer_bytes: l.granted_buffer,
                inode: l.inode,
            }],
            serde_json::json!({}),
        ))
    }

    /// Poll until `done`; the deadline only bounds a failure.
    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A field of `/proc/self/task/*/status` for the thread called `name`.
    fn status_of(name: &str, field: &str) -> String {
        let name = &name[..name.len().min(15)];
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .find(|s| s.lines().next() == Some(&format!("Name:\t{name}")))
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .map(|v| v.trim().to_owned())
            })
            .expect("the thread is listed")
    }

    /// Voluntary context switches of the thread called `name` in this
    /// process: each is the thread going to sleep again after a wake-up.
    fn sleeps_of(name: &str) -> u64 {
        status_of(name, "voluntary_ctxt_switches:").parse().unwrap()
    }

    #[test]
    fn an_idle_receiver_sleeps_in_its_receive_call_until_stopped() {
        let l = socket::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let addr = socket2::SockRef::from(&l.fd)
            .local_addr()
            .unwrap()
            .as_socket()
            .unwrap();
        let thread_name = format!("recv {}", l.name);
        let shared = shared_for(&l);
        let t = spawn(l, 0, shared.clone()).unwrap();
        let live = || shared.liveness(0).unwrap().state();
        wait_until("in its receive call", || live() == LoopState::Receiving);
        assert!(shared.health_problems().is_empty());

        // Idle, it does not wake: no receive timeout, no heartbeat (it used
        // to wake five times a second). Counted from once it is asleep: it
        // marks itself receiving just before the call, and on a busy
        // machine it may be descheduled in between.
        wait_until("asleep in its receive call", || {
            status_of(&thread_name, "State:").starts_with('S')
        });
        let before = sleeps_of(&thread_name);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(sleeps_of(&thread_name), before, "woke while idle");

        // Traffic is parsed, and it goes back to its receive call.
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"<190>x", addr).unwrap();
        wait_until("the datagram counted", || {
            shared.pipeline().totals.datagrams == 1
        });
        wait_until("back in its receive call", || {
            live() == LoopState::Receiving
        });

        // Stopping wakes it, and counts no datagram that was never sent.
        t.stop().unwrap();
        assert_eq!(live(), LoopState::Stopped);
        assert_eq!(shared.pipeline().totals.datagrams, 1);
        assert_eq!(
            shared.health_problems(),
            [format!("receive thread of udp://{addr}: stopped")]
        );
    }

    #[test]
    fn a_unix_receiver_is_woken_to_stop_too() {
        let dir = std::env::temp_dir().join(format!(
            "poolwatch-ingest-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let l = socket::bind_unix(&dir.join("s.sock"), 1 << 20).unwrap();
        let shared = shared_for(&l);
        let t = spawn(l, 0, shared.clone()).unwrap();
        let live = || shared.liveness(0).unwrap().state();
        wait_until("in its receive call", || live() == LoopState::Receiving);
        t.stop().unwrap();
        assert_eq!(live(), LoopState::Stopped);
        assert_eq!(shared.pipeline().totals.datagrams, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
