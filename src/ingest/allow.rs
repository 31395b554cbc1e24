//! Source allowlist: which addresses may send UDP datagrams (`ALLOW_FROM`).
//!
//! Anyone who can reach the UDP port can write access-log lines, and a few
//! forged lines are enough to raise or hide an alert. The allowlist drops
//! datagrams from any other source before they are parsed. It is defence in
//! depth, not authentication: on a shared network a UDP source address can
//! be forged, so a firewall or network policy must come first.
//!
//! The check runs per datagram on the receive thread, so it is a linear scan
//! over a handful of networks held as 128-bit prefixes. IPv4 addresses and
//! networks are held as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so an IPv4
//! sender reaching a `[::]` listener matches the same entries as one
//! reaching `0.0.0.0`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Most networks an allowlist may hold: it is checked linearly per datagram.
pub const MAX_NETWORKS: usize = 64;

/// One network, as a prefix of the 128-bit (IPv4-mapped) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    bits: u128,
    mask: u128,
    /// As written, for logs and `/state`: `10.0.0.0/8`, `fd00::/8`.
    ip: IpAddr,
    len: u8,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.len)
    }
}

/// The networks datagrams may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<Network>,
}

/// An address as 128 bits, IPv4 mapped into `::ffff:0:0/96`.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

impl AllowList {
    /// Whether a datagram from `ip` may be parsed.
    #[inline]
    pub fn permits(&self, ip: IpAddr) -> bool {
        let b = bits(ip);
        self.networks.iter().any(|n| b & n.mask == n.bits)
    }

    /// The networks, as written in canonical form.
    pub fn networks(&self) -> impl Iterator<Item = String> + '_ {
        self.networks.iter().map(Network::to_string)
    }
}

/// `ALLOW_FROM` as the receive threads read it, replaceable whole by a
/// reload. A reader ([`AllowReader`]) looks at a generation counter once
/// per batch, one atomic load, and takes the lock only when it changed:
/// never a lock per datagram, and a new list applies from the next batch.
#[derive(Debug, Clone, Default)]
pub struct SharedAllowList {
    inner: Arc<SharedInner>,
}

#[derive(Debug, Default)]
struct SharedInner {
    generation: AtomicU64,
    list: Mutex<Option<Arc<AllowList>>>,
}

impl SharedAllowList {
    pub fn new(list: Option<AllowList>) -> SharedAllowList {
        let shared = SharedAllowList::default();
        *shared.lock() = list.map(Arc::new);
        shared
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<AllowList>>> {
        self.inner.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the list; `None` accepts every source.
    pub fn set(&self, list: Option<AllowList>) {
        *self.lock() = list.map(Arc::new);
        // After the store: a reader that sees the new generation finds the
        // new list.
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// The list in force now.
    pub fn get(&self) -> Option<Arc<AllowList>> {
        self.lock().clone()
    }

    /// A reader for one thread.
    pub fn reader(&self) -> AllowReader {
        let seen = self.inner.generation.load(Ordering::Acquire);
        AllowReader {
            list: self.get(),
            shared: self.clone(),
            seen,
        }
    }
}

/// One thread's view of a [`SharedAllowList`].
#[derive(Debug)]
pub struct AllowReader {
    shared: SharedAllowList,
    seen: u64,
    list: Option<Arc<AllowList>>,
}

impl AllowReader {
    /// The list to apply to the next batch; call once per batch.
    #[inline]
    pub fn current(&mut self) -> Option<&AllowList> {
        let g = self.shared.inner.generation.load(Ordering::Acquire);
        if g != self.seen {
            self.seen = g;
            self.list = self.shared.get();
        }
        self.list.as_deref()
    }
}

/// What `ALLOW_FROM` accepts, for error messages.
pub const ACCEPTED: &str = "accepted: comma-separated IPv4 or IPv6 networks in CIDR form, \
     or single addresses, such as 172.28.0.0/16,fd00::/8,10.0.0.5";

impl FromStr for AllowList {
    type Err = String;

    fn from_str(s: &str) -> Result<AllowList, String> {
        let mut networks = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (ip, len) = match item.split_once('/') {
                Some((ip, len)) => (ip, Some(len)),
                None => (item, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("'{item}' is not an address or network; {ACCEPTED}"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u32 = match len {
                None => max,
                Some(l) => l.parse().ok().filter(|l| *l <= max).ok_or_else(|| {
                    format!("'{item}': prefix length must be 0 to {max}; {ACCEPTED}")
                })?,
            };
            let full = if ip.is_ipv4() { 96 + len } else { len };
            let m = mask(full);
            if bits(ip) & !m != 0 {
                return Err(format!(
                    "'{item}' has bits set past its /{len} prefix (a typo?); write the network \
                     address; {ACCEPTED}"
                ));
            }
            networks.push(Network {
                bits: bits(ip),
                mask: m,
                ip,
                len: len as u8,
            });
        }
        if networks.is_empty() {
            return Err(ACCEPTED.to_string());
        }
        if networks.len() > MAX_NETWORKS {
            return Err(format!("at most {MAX_NETWORKS} networks; {ACCEPTED}"));
        }
        Ok(AllowList { networks })
    }
}

impl Serialize for AllowList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.networks())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_takes_up_a_new_list_at_its_next_look() {
        let shared = SharedAllowList::new(None);
        let mut reader = shared.reader();
        assert!(reader.current().is_none());
        shared.set(Some("10.0.0.0/8".parse().unwrap()));
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(reader.current().is_some_and(|l| l.permits(ip)));
        shared.set(Some("192.168.0.0/16".parse().unwrap()));
        assert!(reader.current().is_some_and(|l| !l.permits(ip)));
        shared.set(None);
        assert!(reader.current().is_none());
    }

    fn list(s: &str) -> AllowList {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_networks_and_hosts() {
        let l = list("172.28.0.0/16, 10.0.0.5");
        assert!(l.permits(ip("172.28.3.4")));
        assert!(l.permits(ip("10.0.0.5")));
        assert!(!l.permits(ip("10.0.0.6")));
        assert!(!l.permits(ip("172.29.0.1")));
        assert!(!l.permits(ip("::1")));
    }

    #[test]
    fn ipv4_and_mapped_ipv6_are_alike() {
        let l = list("127.0.0.0/30");
        assert!(l.permits(ip("::ffff:127.0.0.2")));
        assert!(!l.permits(ip("::ffff:127.0.0.4")));
        let l = list("::ffff:10.0.0.0/104");
        assert!(l.permits(ip("10.1.2.3")));
        assert!(!l.permits(ip("11.1.2.3")));
    }

    #[test]
    fn ipv6_networks_and_everything() {
        let l = list("fd00::/8");
        assert!(l.permits(ip("fd12::1")));
        assert!(!l.permits(ip("fe80::1")));
        assert!(!l.permits(ip("10.0.0.1")));
        let all = list("::/0");
        assert!(all.permits(ip("10.0.0.1")) && all.permits(ip("2001:db8::1")));
        let all4 = list("0.0.0.0/0");
        assert!(all4.permits(ip("8.8.8.8")) && !all4.permits(ip("2001:db8::1")));
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        for bad in [
            "",
            " , ",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.1/8",
            "nginx",
            "10.0.0.0/x",
            "10.0.0.0/8/1",
        ] {
            let err = bad.parse::<AllowList>().unwrap_err();
            assert!(err.contains("accepted: comma-separated"), "{bad}: {err}");
        }
        let many = vec!["10.0.0.1"; MAX_NETWORKS + 1].join(",");
        assert!(many.parse::<AllowList>().is_err());
    }

    #[test]
    fn shows_canonical_networks() {
        let l = list("172.28.0.0/16,10.0.0.5,FD00::/8");
        assert_eq!(
            l.networks().collect::<Vec<_>>(),
            ["172.28.0.0/16", "10.0.0.5/32", "fd00::/8"]
        );
        assert_eq!(
            serde_json::to_string(&list("10.0.0.0/8")).unwrap(),
            r#"["10.0.0.0/8"]"#
        );
    }
}
