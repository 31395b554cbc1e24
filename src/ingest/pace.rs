//! Pacing: how long a receive thread waits after taking its socket empty,
//! so that the next receive call finds several datagrams instead of one.
//!
//! Waking costs more than receiving: at 100 k/s from a smooth sender a loop
//! that goes straight back to the socket wakes for every one or two
//! datagrams, and the wake-up, not the datagram, is most of its CPU; at
//! 1 k/s a wake-up that parses one datagram finds its caches cold. Network
//! cards solve the same problem with interrupt moderation; we do it with a
//! short sleep. After a batch that left the socket empty, the thread sleeps
//! for about the time it takes half a batch to arrive at the rate it has
//! just seen, and never longer than [`MAX_WAIT`]. At 100 k/s that aims at
//! about 0.3 ms and half a batch (32) per receive call; at 1 k/s it is
//! [`MAX_WAIT`] and ten. (The load bench measures more per wake-up, since
//! one wake-up may take several batches.)
//! Below a few hundred a second a wait would collect less than
//! [`MIN_GAIN`] datagrams and cost a wake-up of its own, so there is none.
//!
//! What it costs is latency, and only for datagrams that arrive during the
//! wait: at most [`MAX_WAIT`], against an alert loop that judges every
//! 100 ms while traffic flows and a failover notice allowed a second. The
//! first datagram after a quiet spell is parsed the moment it arrives (and
//! judged at once), since the thread then sleeps in its receive call, not
//! here. Pacing adds no wait while more is queued (a batch came back full
//! with more behind it) or when the batch went to the parse worker.
//!
//! A wait must not overflow the socket: at the rate seen it fills half a
//! batch, but the rate can jump. So the wait is also capped by the time the
//! fastest sender measured here (a loopback sender on one core,
//! [`FAST_RATE`]) takes to fill a quarter of the receive buffer; senders
//! faster than that need a larger `RECV_BUFFER` in any case. Unix datagram sockets are
//! never paced: their queue is limited by count (`net.unix.max_dgram_qlen`,
//! 10 by default) rather than bytes, and nginx drops a log line its
//! non-blocking send cannot queue.

use std::time::Duration;

/// The longest wait after a batch, and so the most latency pacing adds.
pub const MAX_WAIT: Duration = Duration::from_millis(10);

/// A wait shorter than this is not worth its timer: go straight back.
const MIN_WAIT: Duration = Duration::from_micros(20);

/// Datagrams a wait must be expected to collect to be worth its wake-up.
const MIN_GAIN: f64 = 2.0;

/// Datagrams per second from the fastest sender measured on loopback, for
/// the buffer cap.
const FAST_RATE: f64 = 400_000.0;

/// Kernel bytes charged per queued ~500-byte datagram (README, Performance).
const BYTES_PER_DATAGRAM: f64 = 1280.0;

/// One receive thread's pacing.
pub struct Pace {
    /// When the previous receive call returned, on the caller's clock.
    last: Option<Duration>,
    /// Datagrams to aim for per receive call.
    target: f64,
    /// The cap for this socket, from its buffer.
    max_wait: Duration,
}

impl Pace {
    /// Pacing for a UDP socket granted `buffer` bytes of receive buffer (as
    /// asked for: the kernel allows twice that for its bookkeeping, which
    /// the bytes per datagram count), aiming at half of a `batch`-datagram
    /// batch per receive call.
    pub fn udp(buffer: usize, batch: usize) -> Pace {
        let fill = 2.0 * buffer as f64 / 4.0 / BYTES_PER_DATAGRAM / FAST_RATE;
        Pace {
            last: None,
            target: (batch / 2).max(1) as f64,
            max_wait: MAX_WAIT.min(Duration::from_secs_f64(fill)),
        }
    }

    /// No pacing at all (unix sockets).
    pub fn off() -> Pace {
        Pace {
            last: None,
            target: 0.0,
            max_wait: Duration::ZERO,
        }
    }

    /// A receive call returned `received` datagrams at `now` (time since
    /// any fixed instant), and took the socket empty if `emptied`. Returns
    /// how long to wait before the next receive call, if at all.
    pub fn after(&mut self, now: Duration, received: usize, emptied: bool) -> Option<Duration> {
        let since = self.last.replace(now).map(|t| now.saturating_sub(t));
        if !emptied || received == 0 || self.max_wait.is_zero() {
            return None;
        }
        // The first batch has no rate: no wait, as after a quiet spell.
        let rate = received as f64 / since?.as_secs_f64().max(1e-9);
        let wait = Duration::from_secs_f64(self.target / rate).min(self.max_wait);
        (wait >= MIN_WAIT && rate * wait.as_secs_f64() >= MIN_GAIN).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_for_half_a_batch_at_the_rate_just_seen() {
        // 16 MiB: long enough not to cap (8 MiB caps at 8.2 ms).
        let mut p = Pace::udp(16 << 20, 64);
        let t0 = Duration::from_secs(1);
        assert_eq!(p.after(t0, 1, true), None, "no rate yet");
        // 100 datagrams in 1 ms is 100 k/s: 32 take 0.32 ms.
        let w = p.after(t0 + MS, 100, true).unwrap();
        assert!((w.as_secs_f64() - 0.00032).abs() < 1e-6, "{w:?}");
        // 1 k/s: the cap, which collects ten.
        assert_eq!(p.after(t0 + 2 * MS, 1, true), Some(MAX_WAIT));
    }

    #[test]
    fn never_waits_when_it_would_not_pay() {
        let mut p = Pace::udp(8 << 20, 64);
        let t0 = Duration::from_secs(1);
        p.after(t0, 1, true);
        assert_eq!(p.after(t0 + MS, 64, false), None, "more queued");
        // 64 in 10 µs is millions a second: not worth a timer.
        assert_eq!(p.after(t0 + MS + MS / 100, 64, true), None);
        // 1 in 10 ms: a wait of MAX_WAIT would collect one.
        assert_eq!(p.after(t0 + 12 * MS, 1, true), None, "too slow");
        // The first after a quiet spell.
        assert_eq!(p.after(t0 + 60 * 1000 * MS, 1, true), None);
    }

    #[test]
    fn a_small_buffer_shortens_the_wait() {
        // 212992 bytes (a common rmem_max) hold about 330 datagrams: a
        // quarter fills at 400 k/s in 0.2 ms.
        let mut p = Pace::udp(212_992, 64);
        let t0 = Duration::from_secs(1);
        p.after(t0, 1, true);
        let w = p.after(t0 + MS / 10, 10, true).unwrap();
        assert!(w < MS / 4 && w >= MIN_WAIT, "{w:?}");
    }

    #[test]
    fn unix_sockets_are_never_paced() {
        let dir = std::env::temp_dir().join(format!(
            "poolwatch-pace-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let unix = crate::ingest::socket::bind_unix(&dir.join("s.sock"), 1 << 20).unwrap();
        let udp = crate::ingest::socket::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(!unix.paced);
        assert!(udp.paced);
        let mut p = Pace::off();
        let t0 = Duration::from_secs(1);
        assert_eq!(p.after(t0, 1, true), None);
        assert_eq!(p.after(t0 + MS, 100, true), None);
        drop(unix);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
