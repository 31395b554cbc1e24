//! The send loop: `sendmmsg` from a connected UDP socket, paced against a
//! monotonic schedule.
//!
//! Everything sent is in memory before the clock starts, so the loop only
//! points `iovec`s at ready bytes (and, for hostile traffic, stamps a
//! counter into them). Pacing sleeps until the moment the schedule says the
//! next datagram (or burst) is due, measured from the start rather than from
//! the last send, so an oversleep is caught up instead of accumulating.
//!
//! At a rate, two shapes ([`Shape`]): smooth, where each send carries only
//! the datagrams due by the time the sender woke (one or a few: the
//! thread's timer slack is lowered for the run), which is what many nginx
//! workers logging independently look like; and bursts, N datagrams in one
//! `sendmmsg` every N / rate seconds, which is what a relay or a load tool
//! flushing a buffer looks like, and what the receiver sees after any
//! pause of the sender.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::lines::Template;

/// Datagrams per `sendmmsg` when sending flat out: the same batch size the
/// receiver reads with.
pub const BATCH: usize = 64;

/// Most datagrams one `sendmmsg` takes (the kernel's `UIO_MAXIOV`).
pub const MAX_BURST: usize = 1024;

/// How datagrams are spread over time at a paced rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Each send carries what is due when the sender wakes (at most
    /// [`BATCH`]).
    Smooth,
    /// This many datagrams per `sendmmsg`, every this many / rate seconds.
    Burst(usize),
}

/// When to stop sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Count(u64),
    After(Duration),
}

/// A set of ready datagrams, cycled.
pub enum Messages {
    Fixed(Vec<Vec<u8>>),
    /// Stamped with a fresh counter value before each send.
    Hostile(Vec<Template>),
}

impl Messages {
    fn len(&self) -> usize {
        match self {
            Messages::Fixed(v) => v.len(),
            Messages::Hostile(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        match self {
            Messages::Fixed(v) => &v[i],
            Messages::Hostile(v) => v[i].bytes(),
        }
    }

    /// Make messages `first..first + k` (cycled) ready, the j-th carrying
    /// counter `counter + j`.
    fn prepare(&mut self, first: usize, k: usize, counter: u64) {
        if let Messages::Hostile(v) = self {
            let len = v.len();
            for j in 0..k {
                v[(first + j) % len].stamp(counter.wrapping_add(j as u64));
            }
        }
    }
}

/// What to send: one set, or one before and one after the scenario's
/// turning point (a share of the run's count or duration).
pub struct Traffic {
    pub before: Messages,
    pub after: Option<(f64, Messages)>,
    /// First counter value for hostile messages.
    pub counter: u64,
}

impl Traffic {
    fn phase(&mut self, progress: f64) -> &mut Messages {
        match &mut self.after {
            Some((at, after)) if progress >= *at => after,
            _ => &mut self.before,
        }
    }

    /// Where a count of `n` datagrams, `sent` of them sent, next changes
    /// phase: the turning point while before it, else `n`.
    fn next_turn(&self, n: u64, sent: u64) -> u64 {
        match &self.after {
            Some((at, _)) => {
                let turn = (at * n as f64).ceil() as u64;
                if sent < turn { turn } else { n }
            }
            None => n,
        }
    }

    fn hostile(&self) -> bool {
        matches!(self.before, Messages::Hostile(_))
    }

    fn min_len(&self) -> usize {
        let after = self.after.as_ref().map_or(usize::MAX, |(_, m)| m.len());
        self.before.len().min(after)
    }
}

/// What a run sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Batches sent, each in one `sendmmsg` unless the kernel took it in
    /// parts.
    pub sends: u64,
    /// Sends the kernel refused because an earlier datagram met a closed
    /// port (ICMP port unreachable): nothing was listening then.
    pub refused: u64,
}

/// The calling thread's timer slack lowered to 1 ns while this lives, so
/// that a sleep of a few microseconds ends when asked rather than up to
/// 50 us later.
struct TimerSlack(Option<u64>);

impl TimerSlack {
    fn fine() -> TimerSlack {
        let old = rustix::thread::current_timer_slack().ok();
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
        TimerSlack(old)
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        // None (or 0) puts back the thread's default slack.
        let _ = rustix::thread::set_current_timer_slack(self.0.and_then(std::num::NonZeroU64::new));
    }
}

/// A UDP socket connected to the receiver, with reusable `sendmmsg` state.
pub struct Sender {
    socket: UdpSocket,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Sender {
    pub fn connect(target: SocketAddr) -> io::Result<Sender> {
        let local: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(target)?;
        Ok(Sender {
            socket,
            iovecs: Vec::with_capacity(BATCH),
            msgs: Vec::with_capacity(BATCH),
        })
    }

    /// Send `traffic` until `stop`, at `rate` datagrams per second if given,
    /// spread over time as `shape` says. Without a rate, sends are of
    /// [`BATCH`] datagrams, or of the burst size, back to back.
    pub fn run(
        &mut self,
        traffic: &mut Traffic,
        stop: Stop,
        rate: Option<u64>,
        shape: Shape,
    ) -> io::Result<Sent> {
        let mut most = match shape {
            Shape::Smooth => BATCH,
            Shape::Burst(n) => n.clamp(1, MAX_BURST),
        };
        if traffic.hostile() {
            // A template must not be stamped twice before its batch is sent.
            most = most.min(traffic.min_len());
        }
        // Smooth pacing needs sleeps shorter than the default 50 us timer
        // slack lets them be; restored when the run ends.
        let _slack = (rate.is_some() && shape == Shape::Smooth).then(TimerSlack::fine);
        let mut out = Sent::default();
        let mut cursor = 0usize;
        let start = Instant::now();
        loop {
            let mut elapsed = start.elapsed();
            let mut k = most;
            if let Some(r) = rate {
                let due = Duration::from_secs_f64(out.datagrams as f64 / r as f64);
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                    elapsed = start.elapsed();
                }
                if shape == Shape::Smooth {
                    // Everything due by now, the next datagram at least.
                    let due_now = (elapsed.as_secs_f64() * r as f64) as u64;
                    k = (due_now.saturating_sub(out.datagrams) as usize).clamp(1, most);
                }
            }
            let (k, progress) = match stop {
                Stop::Count(n) if out.datagrams >= n => break,
                Stop::Count(n) => (
                    // No batch straddles the turning point.
                    k.min((traffic.next_turn(n, out.datagrams) - out.datagrams) as usize),
                    out.datagrams as f64 / n as f64,
                ),
                Stop::After(d) if elapsed >= d => break,
                Stop::After(d) => (k, elapsed.as_secs_f64() / d.as_secs_f64()),
            };
            let counter = traffic.counter.wrapping_add(out.datagrams);
            let messages = traffic.phase(progress);
            let len = messages.len();
            messages.prepare(cursor, k, counter);
            out.bytes += self.send_batch(messages, cursor, k, &mut out.refused)?;
            out.datagrams += k as u64;
            out.sends += 1;
            cursor = (cursor + k) % len;
        }
        out.elapsed = start.elapsed();
        Ok(out)
    }

    /// Send messages `first..first + k` (cycled) whole; returns the bytes.
    fn send_batch(
        &mut self,
        messages: &Messages,
        first: usize,
        k: usize,
        refused: &mut u64,
    ) -> io::Result<u64> {
        let len = messages.len();
        let mut bytes = 0;
        self.iovecs.clear();
        for j in 0..k {
            let m = messages.get((first + j) % len);
            bytes += m.len() as u64;
            self.iovecs.push(libc::iovec {
                // sendmmsg only reads through it.
                iov_base: m.as_ptr().cast_mut().cast(),
                iov_len: m.len(),
            });
        }
        self.msgs.clear();
        for iov in &mut self.iovecs {
            // SAFETY: an all-zero msghdr is "no address, no control data",
            // right for a connected socket.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.msgs.push(h);
        }
        let fd = self.socket.as_raw_fd();
        let mut done = 0;
        while done < k {
            // SAFETY: msgs[done..k] point at iovecs that point into
            // `messages`, all borrowed for this call and sized as declared.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr().add(done),
                    (k - done) as libc::c_uint,
                    0,
                )
            };
            if n >= 0 {
                done += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                // Reported for an earlier datagram; this batch was not
                // sent, so send it again.
                Some(libc::ECONNREFUSED) => *refused += 1,
                // Loopback briefly out of buffers: let the receiver drain.
                Some(libc::ENOBUFS | libc::EAGAIN) => std::thread::sleep(Duration::from_micros(50)),
                _ => return Err(e),
            }
        }
        Ok(bytes)
    }
}
