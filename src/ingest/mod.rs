//! Ingest: the receive threads, socket → batch → pipeline.
//!
//! Each listener gets a dedicated OS thread blocked in `recvmmsg`, not a
//! tokio task: the loop never yields to anything slow (HTTP, alert delivery),
//! and one batched system call per wake-up is what keeps a single core at
//! the socket's pace. The thread parses every datagram of a batch under one
//! lock of the shared pipeline and then goes straight back to the socket.

pub mod batch;
pub mod kernel_drops;
pub mod socket;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::record::Decoder;
use crate::state::Shared;
use batch::RecvBatch;
use socket::Listener;

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

fn run(listener: &Listener, shared: &Shared, stop: &AtomicBool) {
    let fd = listener.fd.as_raw_fd();
    let mut batch = RecvBatch::default();
    let mut decoder = Decoder::new();
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(fd) {
            Ok(n) => {
                let now = shared.now_secs();
                let mut p = shared.pipeline();
                for i in 0..n {
                    let (slot, len, truncated) = batch.slot(i);
                    if truncated {
                        p.count_truncated(len);
                    } else {
                        // A malformed datagram is counted inside and skipped.
                        let _ = p.process(&mut decoder, slot, len, |_| now);
                    }
                }
                drop(p);
                shared.beat();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                shared.beat();
            }
            Err(e) => {
                // Unexpected, but the socket is all we have: report and go on
                // without spinning.
                tracing::error!(listener = %listener.name, error = %e, "receive failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
