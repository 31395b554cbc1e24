//! Ingest: the receive threads, socket → batch → pipeline.
//!
//! Each listener gets a dedicated OS thread blocked in `recvmmsg`, not a
//! tokio task: the loop never yields to anything slow (HTTP, alert delivery),
//! and one batched system call per wake-up is what keeps a single core at
//! the socket's pace. The thread parses every datagram of a batch under one
//! lock of the shared pipeline and then goes straight back to the socket.
//! When a batch comes back full and the socket still holds more, a backlog
//! has built: batches then go to a parse worker ([`worker`]) so receiving
//! and parsing run on both cores at once. A burst that one batch takes
//! whole is parsed in place, as is everything at ordinary rates. After a
//! batch that took the socket empty, a UDP receive thread waits a moment
//! ([`pace`]) so that its next wake-up finds several datagrams, not one.
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
pub mod batch;
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

use crate::record::Decoder;
use crate::state::{Liveness, Shared};
use allow::AllowList;
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
                let backlog = backlog(&batch, &listener.fd);
                dispatch(
                    worker.as_mut(),
                    backlog,
                    shared,
                    allow.as_mut().and_then(|a| a.current()),
                    &mut decoder,
                    &mut batch,
                    elapsed.as_secs(),
                );
                if let Some(wait) = pace.after(elapsed, received, !backlog)
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

/// Whether `batch`, just received from `socket`, left more datagrams
/// queued behind it: a backlog. Only a full batch can; the check
/// (`FIONREAD`, the size of the next datagram) is one system call per full
/// batch.
fn backlog(batch: &RecvBatch, socket: impl AsFd) -> bool {
    batch.len() == batch.capacity() && rustix::io::ioctl_fionread(socket).is_ok_and(|n| n > 0)
}

/// Deal with the datagrams just received into `batch` at window clock
/// `now`. After a `backlog`, the worker parses it while this thread goes
/// back to the socket. Otherwise it is parsed here, unless earlier batches
/// are still with the worker, which it must not overtake. Returns whether
/// the worker took it.
fn dispatch(
    worker: Option<&mut Worker>,
    backlog: bool,
    shared: &Shared,
    allow: Option<&AllowList>,
    decoder: &mut Decoder,
    batch: &mut RecvBatch,
    now: u64,
) -> bool {
    let handed = worker.is_some_and(|w| (backlog || w.busy()) && w.hand_over(batch, now));
    if !handed {
        parse(shared, allow, decoder, batch, now);
    }
    handed
}

/// Fold every datagram of `batch`, received at window clock `now`, into the
/// pipeline, under one lock; with an allowlist, only those from its sources.
fn parse(
    shared: &Shared,
    allow: Option<&AllowList>,
    decoder: &mut Decoder,
    batch: &mut RecvBatch,
    now: u64,
) {
    let mut p = shared.pipeline();
    for i in 0..batch.len() {
        let permitted = allow.is_none_or(|a| batch.source(i).is_some_and(|ip| a.permits(ip)));
        let (slot, len, truncated) = batch.slot(i);
        if !permitted {
            p.count_rejected_source(len);
        } else if truncated {
            p.count_truncated(len as u64);
        } else {
            // A malformed datagram is counted inside and skipped.
            let _ = p.process(decoder, slot, len, |_| now);
        }
    }
    // Off the lock: the alert loop this may wake takes it next.
    drop(p);
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
