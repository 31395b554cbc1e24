//! Batched receive: many datagrams per system call into reused buffers.
//!
//! `recvmmsg` with `MSG_WAITFORONE` blocks for the first datagram and then
//! takes whatever else is queued, up to the batch size, in one call. Every
//! slot is a full 64 KiB (nginx sends lines of up to 65507 bytes whole) plus
//! the padding the JSON decoder reads past the end, so a datagram is decoded
//! where it landed. Buffers are allocated once; only pages that large
//! datagrams touch become resident.
//!
//! The kernel also writes each datagram's source address (`msg_name`) into
//! a reused slot, which the source allowlist reads: no allocation, and a
//! copy of at most 28 bytes per datagram.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::INPUT_PADDING;

/// Largest datagram a slot holds without truncation.
pub const DATAGRAM_MAX: usize = 65536;

/// Datagrams taken per system call.
pub const BATCH: usize = 64;

const SLOT: usize = (DATAGRAM_MAX + INPUT_PADDING).next_multiple_of(64);

/// Whether a `recv` error only means nothing came: the socket's receive
/// timeout passed or a signal interrupted the wait. Any other error is real.
pub fn nothing_received(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Receive buffers and the kernel structures pointing into them.
pub struct RecvBatch {
    bufs: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    /// Source address of each datagram.
    names: Vec<libc::sockaddr_storage>,
    msgs: Vec<libc::mmsghdr>,
    received: usize,
    /// Changes with every `recv` and every write access to the slots:
    /// what lets a record decoded from them earlier ([`super::decoded`])
    /// tell that they still hold the bytes it was decoded from.
    receipt: u64,
}

/// Source of receipts, unique across every batch of the process.
static RECEIPTS: AtomicU64 = AtomicU64::new(0);

fn next_receipt() -> u64 {
    RECEIPTS.fetch_add(1, Ordering::Relaxed)
}

// SAFETY: the raw pointers only point into `bufs`, `iovecs` and `names`,
// which the batch owns and never reallocates; it moves between threads as
// a whole.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new(BATCH)
    }
}

impl RecvBatch {
    pub fn new(batch: usize) -> RecvBatch {
        let mut bufs = vec![0u8; batch * SLOT];
        let base = bufs.as_mut_ptr();
        let mut iovecs: Vec<libc::iovec> = (0..batch)
            .map(|i| libc::iovec {
                // SAFETY: i * SLOT is within `bufs`.
                iov_base: unsafe { base.add(i * SLOT) }.cast(),
                iov_len: DATAGRAM_MAX,
            })
            .collect();
        let iov_base = iovecs.as_mut_ptr();
        // SAFETY: an all-zero sockaddr_storage is a valid "no address".
        let mut names = vec![unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }; batch];
        let name_base = names.as_mut_ptr();
        let msgs = (0..batch)
            .map(|i| {
                // SAFETY: an all-zero msghdr is a valid "no name, no control".
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i is within `iovecs`.
                m.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
                m.msg_hdr.msg_iovlen = 1;
                // SAFETY: i is within `names`.
                m.msg_hdr.msg_name = unsafe { name_base.add(i) }.cast();
                m
            })
            .collect();
        RecvBatch {
            bufs,
            iovecs,
            names,
            msgs,
            received: 0,
            receipt: next_receipt(),
        }
    }

    /// Block until at least one datagram is queued (or the socket is shut
    /// down for reading), then take up to a batch. Returns how many arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        self.receipt = next_receipt();
        for m in &mut self.msgs {
            m.msg_len = 0;
            m.msg_hdr.msg_flags = 0;
            // The kernel writes back the length of the address it stored.
            m.msg_hdr.msg_namelen = NAME_LEN;
        }
        debug_assert_eq!(self.iovecs.len(), self.msgs.len());
        debug_assert_eq!(self.names.len(), self.msgs.len());
        // SAFETY: msgs point at iovecs that point into bufs, and at names,
        // all live and sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Forget the empty datagrams the kernel reports at the end of a batch
    /// once the socket is shut down for reading (`shutdown(SHUT_RD)` is how
    /// a blocked receive is woken to stop): zero bytes from no address.
    /// Only for the last batch; a real empty datagram always has a source
    /// on UDP.
    pub fn drop_shutdown_tail(&mut self) {
        while self.received > 0 {
            let m = &self.msgs[self.received - 1];
            if m.msg_len != 0 || m.msg_hdr.msg_namelen != 0 {
                break;
            }
            self.received -= 1;
        }
    }

    /// Datagrams one `recv` takes at most.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Datagrams from the last `recv`.
    pub fn len(&self) -> usize {
        self.received
    }

    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Datagram `i` of the last `recv`: its slot (the datagram first, then
    /// at least the decoder's padding), its length, and whether the kernel
    /// cut it short.
    pub fn slot(&mut self, i: usize) -> (&mut [u8], usize, bool) {
        assert!(i < self.received);
        self.receipt = next_receipt();
        let m = &self.msgs[i];
        let len = m.msg_len as usize;
        let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (&mut self.bufs[i * SLOT..(i + 1) * SLOT], len, truncated)
    }

    /// Slot `i` of the last `recv`, to read.
    pub fn slot_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.received);
        &self.bufs[i * SLOT..(i + 1) * SLOT]
    }

    /// Identifies the slots' contents: it changes whenever they may have.
    pub fn receipt(&self) -> u64 {
        self.receipt
    }

    /// The IP address datagram `i` of the last `recv` came from; `None` for
    /// a sender without one (a unix socket's).
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        assert!(i < self.received);
        source_of(&self.msgs[i], &self.names[i])
    }

    /// Every datagram of the last `recv` at once, each with its own slot,
    /// so that several can be decoded before any is folded in.
    pub fn datagrams(&mut self) -> impl Iterator<Item = Datagram<'_>> {
        let n = self.received;
        self.receipt = next_receipt();
        self.bufs
            .chunks_exact_mut(SLOT)
            .zip(&self.msgs)
            .zip(&self.names)
            .take(n)
            .map(|((slot, m), name)| Datagram {
                slot,
                len: m.msg_len as usize,
                truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                source: source_of(m, name),
            })
    }
}

/// One datagram of a batch, as [`RecvBatch::datagrams`] gives it.
pub struct Datagram<'a> {
    /// The datagram first, then at least the decoder's padding.
    pub slot: &'a mut [u8],
    pub len: usize,
    /// The kernel cut it short.
    pub truncated: bool,
    /// Where it came from; `None` for a sender without an IP address.
    pub source: Option<IpAddr>,
}

/// The IP address the kernel stored in `name` for message `m`.
fn source_of(m: &libc::mmsghdr, name: &libc::sockaddr_storage) -> Option<IpAddr> {
    let len = m.msg_hdr.msg_namelen as usize;
    match i32::from(name.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel stored a sockaddr_in here (family and
            // length say so); sockaddr_storage is aligned for any.
            let sin =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Room for any address the kernel may store.
const NAME_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_and_a_max_size_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        tx.send(b"one").unwrap();
        tx.send(b"two").unwrap();
        let big = vec![b'x'; 65507];
        tx.send(&big).unwrap();
        let mut b = RecvBatch::new(8);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = b.recv(rx.as_raw_fd()).unwrap();
            for i in 0..n {
                assert_eq!(b.source(i), Some(tx.local_addr().unwrap().ip()));
                let (slot, len, trunc) = b.slot(i);
                assert!(!trunc);
                assert!(slot.len() >= len + INPUT_PADDING);
                got.push(slot[..len].to_vec());
            }
        }
        assert_eq!(got[0], b"one");
        assert_eq!(got[1], b"two");
        assert_eq!(got[2].len(), 65507);
    }

    #[test]
    fn sources_of_ipv4_ipv6_and_unix_senders() {
        let rx = UdpSocket::bind("[::]:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let mut b = RecvBatch::new(4);
        for from in ["127.0.0.3:0", "[::1]:0"] {
            let tx = UdpSocket::bind(from).unwrap();
            let to = if from.starts_with('[') {
                "[::1]"
            } else {
                "127.0.0.1"
            };
            tx.send_to(b"x", format!("{to}:{port}")).unwrap();
            assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 1);
            let want = match tx.local_addr().unwrap().ip() {
                std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
                v6 => v6,
            };
            assert_eq!(b.source(0), Some(want));
        }
        let (a, c) = std::os::unix::net::UnixDatagram::pair().unwrap();
        a.send(b"x").unwrap();
        assert_eq!(b.recv(c.as_raw_fd()).unwrap(), 1);
        assert_eq!(b.source(0), None);
    }
}
