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
//! whole is parsed in place, as is everything at ordinary rates.
//!
//! A datagram from a source outside the listener's allowlist ([`allow`]) is
//! counted and dropped before it is parsed.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod affinity;
pub mod allow;
pub mod batch;
pub mod kernel_drops;
pub mod socket;
pub mod worker;

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::record::Decoder;
use crate::state::Shared;
use allow::AllowList;
use batch::RecvBatch;
use socket::Listener;
use worker::Worker;

/// Start the receive thread for `listener`. It runs until `stop` is set,
/// finishing the batch in hand first.
pub fn spawn(
    listener: Listener,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("recv {}", listener.name))
        .spawn(move || run(&listener, &shared, &stop))
}

fn run(listener: &Listener, shared: &Arc<Shared>, stop: &AtomicBool) {
    let fd = listener.fd.as_raw_fd();
    let mut batch = RecvBatch::default();
    let mut decoder = Decoder::new();
    let allow = listener.allow.as_deref();
    let mut worker = match Worker::spawn(&listener.name, shared.clone(), listener.allow.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(listener = %listener.name, error = %e,
                "cannot start the parse worker; parsing on the receive thread");
            None
        }
    };
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(fd) {
            Ok(_) => {
                let now = shared.now_secs();
                dispatch(
                    worker.as_mut(),
                    &listener.fd,
                    shared,
                    allow,
                    &mut decoder,
                    &mut batch,
                    now,
                );
            }
            Err(e) if batch::nothing_received(&e) => shared.beat(),
            Err(e) => {
                // Unexpected, but the socket is all we have: report and go on
                // without spinning.
                tracing::error!(listener = %listener.name, error = %e, "receive failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    if let Some(w) = worker {
        w.finish();
    }
}

/// Whether more datagrams wait in the socket: the size of the next one
/// (`FIONREAD`), which is zero when none is queued.
fn more_queued(socket: impl AsFd) -> bool {
    rustix::io::ioctl_fionread(socket).is_ok_and(|next| next > 0)
}

/// Deal with the datagrams just received into `batch` from `socket` at
/// window clock `now`. A full batch with more still queued means a backlog:
/// the worker parses it while this thread goes back to the socket.
/// Otherwise it is parsed here, unless earlier batches are still with the
/// worker, which it must not overtake. Returns whether the worker took it.
fn dispatch(
    worker: Option<&mut Worker>,
    socket: impl AsFd,
    shared: &Shared,
    allow: Option<&AllowList>,
    decoder: &mut Decoder,
    batch: &mut RecvBatch,
    now: u64,
) -> bool {
    let handed = worker.is_some_and(|w| {
        // Only a full batch can leave more behind; the check is one system
        // call per full batch.
        let backlog = batch.len() == batch.capacity() && more_queued(socket);
        (backlog || w.busy()) && w.hand_over(batch, now, backlog)
    });
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
    drop(p);
    shared.beat();
}
