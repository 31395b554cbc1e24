//! Kernel drops: datagrams the kernel discarded because the socket's
//! receive buffer was full, read from `/proc/net/udp` and `/proc/net/udp6`.
//!
//! Reading the table on scrape costs nothing on the receive path, unlike
//! `SO_RXQ_OVFL`, which would add a control message to every datagram.

use std::fs;

/// Drop count and queued bytes of one UDP socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounters {
    pub drops: u64,
    pub rx_queue: u64,
}

/// Look up the socket with this inode; `None` if it is not listed.
///
/// The kernel prints these tables a page per read and finds its place
/// again by counting entries, so a socket closed elsewhere in between can
/// make it skip one of ours. A socket not seen is looked for again before
/// it counts as absent.
pub fn read(inode: u64) -> Option<SocketCounters> {
    (0..3).find_map(|_| read_once(inode))
}

fn read_once(inode: u64) -> Option<SocketCounters> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .find_map(|table| find(&table, inode))
}

/// Parse one `/proc/net/udp`-format table. Columns: sl, local, remote, st,
/// tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, inode, ref,
/// pointer, drops.
fn find(table: &str, inode: u64) -> Option<SocketCounters> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 13 || cols[9].parse::<u64>().ok()? != inode {
            return None;
        }
        let rx_queue = cols[4]
            .split_once(':')
            .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
            .unwrap_or(0);
        Some(SocketCounters {
            drops: cols[12].parse().ok()?,
            rx_queue,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_table() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  715: 00000000:158A 00000000:0000 07 00000000:00001200 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n";
        assert_eq!(
            find(table, 4242),
            Some(SocketCounters {
                drops: 17,
                rx_queue: 0x1200
            })
        );
        assert_eq!(find(table, 1), None);
    }

    #[test]
    fn finds_a_live_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let l = crate::ingest::socket::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        drop(s);
        assert_eq!(read(l.inode.unwrap()).map(|c| c.drops), Some(0));
    }
}
