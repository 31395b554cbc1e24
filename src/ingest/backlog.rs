//! Backlog: whether a receive thread has fallen behind its socket, which is
//! when it hands batches to the parse worker ([`super::worker`]).
//!
//! More datagrams queued behind a full batch (`FIONREAD`, one system call
//! per full batch) says the socket was not taken empty. On a paced UDP
//! socket ([`super::pace`]) that alone is no sign of trouble: the thread
//! waited on purpose, and a burst can queue more than a batch meanwhile.
//! There a backlog is a queue past [`BEHIND`] of what the kernel allows
//! (`SO_MEMINFO`), where parsing in place is losing ground and a second
//! core pays for its hand-over; once behind, the thread stays behind until
//! it takes the socket empty, so a drain uses both cores to the end. UDP
//! credits the memory of datagrams already received back in steps of a
//! quarter of the buffer (or when the queue empties), so the figure can
//! overstate the queue by that much: hence half. Where `SO_MEMINFO` cannot
//! be read, the old signal is used. A unix socket is never paced and its
//! queue is a few datagrams, so there any datagram left behind a full batch
//! is a backlog.

use std::os::fd::AsFd;

use super::batch::RecvBatch;
use super::socket::queue_fill;

/// The share of the receive buffer queued at which a paced socket is behind.
const BEHIND: f64 = 0.5;

/// One receive thread's view of its socket's queue.
pub struct Backlog {
    paced: bool,
    behind: bool,
}

/// What one batch showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// More datagrams were queued behind it.
    pub more: bool,
    /// The thread is behind: hand this batch to the parse worker.
    pub behind: bool,
}

impl Backlog {
    pub fn new(paced: bool) -> Backlog {
        Backlog {
            paced,
            behind: false,
        }
    }

    /// Look at the socket after `batch` was received from it.
    pub fn after(&mut self, batch: &RecvBatch, socket: impl AsFd) -> Seen {
        let full = batch.len() == batch.capacity();
        let more = full && rustix::io::ioctl_fionread(&socket).is_ok_and(|n| n > 0);
        self.behind = more && (!self.paced || self.behind || filled(&socket) >= BEHIND);
        Seen {
            more,
            behind: self.behind,
        }
    }
}

/// How full the queue is; full, and so behind, when that cannot be read.
fn filled(socket: impl AsFd) -> f64 {
    queue_fill(socket).unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    /// Receive the next batch and look at the socket after it.
    fn next(b: &mut Backlog, batch: &mut RecvBatch, rx: impl AsFd) -> Seen {
        batch.recv(rx.as_fd().as_raw_fd()).unwrap();
        b.after(batch, rx)
    }

    const fn seen(more: bool, behind: bool) -> Seen {
        Seen { more, behind }
    }

    /// A receiver bound to loopback with a small buffer, and a sender.
    fn udp_pair() -> (UdpSocket, UdpSocket) {
        let l = crate::ingest::socket::bind_udp("127.0.0.1:0".parse().unwrap(), 64 << 10).unwrap();
        let rx = UdpSocket::from(l.fd);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    /// Send `n` datagrams of `size` bytes and wait until the receiver's
    /// queue holds them all: loopback delivery may lag behind `send` on a
    /// busy machine. What one costs the queue is measured on the first.
    fn queue(tx: &UdpSocket, rx: &UdpSocket, n: usize, size: usize) {
        let fill = || queue_fill(rx).unwrap();
        let wait = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "never {what}");
                std::thread::yield_now();
            }
        };
        let before = fill();
        tx.send(&vec![b'x'; size]).unwrap();
        wait("queued the first", &|| fill() > before);
        let charge = fill() - before;
        for _ in 1..n {
            tx.send(&vec![b'x'; size]).unwrap();
        }
        let all = before + n as f64 * charge - charge / 2.0;
        wait("queued them all", &|| fill() >= all);
    }

    #[test]
    fn a_paced_socket_is_behind_only_with_a_deep_queue_until_emptied() {
        let (rx, tx) = udp_pair();
        let mut b = Backlog::new(true);
        let mut batch = RecvBatch::new(4);
        // A few datagrams beyond a batch: more queued, not behind.
        queue(&tx, &rx, 6, 100);
        assert_eq!(next(&mut b, &mut batch, &rx), seen(true, false));
        assert_eq!(next(&mut b, &mut batch, &rx), seen(false, false));
        // A queue well past half the buffer (taking a batch of 4 leaves it
        // past half): behind, and it stays behind while batches come back
        // full, even once the queue is short.
        while queue_fill(&rx).unwrap() < BEHIND + 0.2 {
            queue(&tx, &rx, 4, 1000);
        }
        assert!(next(&mut b, &mut batch, &rx).behind);
        loop {
            let seen = next(&mut b, &mut batch, &rx);
            if !seen.more {
                assert!(!seen.behind, "taken empty, no longer behind");
                break;
            }
            assert!(seen.behind);
        }
        // Then a short queue again is not a backlog.
        queue(&tx, &rx, 6, 100);
        assert_eq!(next(&mut b, &mut batch, &rx), seen(true, false));
    }

    #[test]
    fn on_a_unix_socket_anything_left_behind_a_full_batch_is_a_backlog() {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        let mut b = Backlog::new(false);
        let mut batch = RecvBatch::new(4);
        for _ in 0..6 {
            tx.send(b"x").unwrap();
        }
        assert_eq!(next(&mut b, &mut batch, &rx), seen(true, true));
        assert_eq!(next(&mut b, &mut batch, &rx), seen(false, false));
    }
}
