//! Sockets: bind the UDP and unix datagram listeners nginx sends to.
//!
//! UDP has no back-pressure, so the kernel receive buffer is the only slack
//! the receiver has during a burst. We ask for a large one, first with
//! `SO_RCVBUFFORCE` (honoured with CAP_NET_ADMIN, e.g. root in a container)
//! and then with `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`,
//! and report what was granted so an operator can see the cap.
//!
//! A short receive timeout lets the blocking receive thread notice shutdown
//! without a wake-up channel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How often a blocked receive wakes up to check for shutdown.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A bound listener and what the kernel granted it.
pub struct Listener {
    pub fd: OwnedFd,
    /// What to call it in logs: `udp://0.0.0.0:5514` or `unix:///path`.
    pub name: String,
    /// Receive buffer granted, in the units it was asked for: Linux reads
    /// back twice the request (half is its bookkeeping), so this is halved.
    pub granted_buffer: usize,
    /// Socket inode, to find it in `/proc/net/udp` for kernel drop counts.
    pub inode: Option<u64>,
}

/// Bind the UDP listener.
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let granted = size_buffer(&socket, recv_buffer);
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    socket.bind(&SockAddr::from(addr))?;
    let local = socket.local_addr()?.as_socket().unwrap_or(addr);
    let fd = OwnedFd::from(socket);
    let inode = inode_of(&fd);
    Ok(Listener {
        fd,
        name: format!("udp://{local}"),
        granted_buffer: granted,
        inode,
    })
}

/// Bind the unix datagram listener, replacing a stale socket file.
pub fn bind_unix(path: &Path, recv_buffer: usize) -> io::Result<Listener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    let granted = size_buffer(&socket, recv_buffer);
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    socket.bind(&SockAddr::unix(path)?)?;
    // nginx workers run as an unprivileged user and must be able to send.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(Listener {
        fd: OwnedFd::from(socket),
        name: format!("unix://{}", path.display()),
        granted_buffer: granted,
        inode: None,
    })
}

fn size_buffer(socket: &Socket, want: usize) -> usize {
    let forced = set_rcvbuf_force(socket, want).is_ok();
    if !forced {
        // Best effort: the kernel caps rather than fails.
        let _ = socket.set_recv_buffer_size(want);
    }
    socket.recv_buffer_size().unwrap_or(0) / 2
}

fn set_rcvbuf_force(socket: &Socket, want: usize) -> io::Result<()> {
    let v: libc::c_int = want.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn inode_of(fd: &OwnedFd) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a stat struct for a valid fd.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: initialised by a successful fstat.
    (rc == 0).then(|| unsafe { st.assume_init() }.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_bind_reports_buffer_and_inode() {
        let l = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(l.granted_buffer > 0);
        assert!(l.inode.is_some());
        assert!(l.name.starts_with("udp://127.0.0.1:"));
    }

    #[test]
    fn unix_bind_replaces_stale_socket_but_not_files() {
        let dir = std::env::temp_dir().join(format!("poolwatch-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        drop(bind_unix(&path, 1 << 20).unwrap());
        bind_unix(&path, 1 << 20).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind_unix(&file, 1 << 20).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
