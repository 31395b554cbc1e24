//! Sockets: bind the UDP and unix datagram listeners nginx sends to.
//!
//! UDP has no back-pressure, so the kernel receive buffer is the only slack
//! the receiver has during a burst. We ask for a large one, first with
//! `SO_RCVBUFFORCE` (honoured with CAP_NET_ADMIN, e.g. root in a container)
//! and then with `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`,
//! and report what was granted so an operator can see the cap.
//!
//! There is no receive timeout: a receive thread blocks in `recvmmsg` until
//! a datagram comes, however long that is, so an idle receiver never wakes.
//! Shutdown wakes it by shutting the socket down for reading
//! ([`super::ReceiveThread::stop`]).
//!
//! The unix socket's path is shared ground: a second poolwatch, or anyone
//! who can write to its directory, may be there too. So a socket file that
//! a live process still serves is never replaced (we probe it by
//! connecting), and the new socket is bound and made writable by all inside
//! a private directory of our own, then renamed into place: its mode is set
//! where nobody else can swap the file for a symlink, and the rename replaces
//! a stale socket without a window in which the path is missing.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::OsStr;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::allow::SharedAllowList;

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
    /// Sources whose datagrams are parsed; `None` parses every datagram
    /// (a unix socket's senders are local: its directory's permissions
    /// decide who may send).
    pub allow: Option<SharedAllowList>,
    /// Whether the receive thread may wait between batches to take more
    /// datagrams per wake-up ([`super::pace`]): UDP, whose queue is bounded
    /// in bytes, but not a unix socket, whose queue is a few datagrams.
    pub paced: bool,
}

/// How full the socket's receive queue is, as a fraction of what the kernel
/// allows it (`SO_MEMINFO`: bytes charged for queued datagrams against the
/// receive buffer). On UDP it includes datagrams received but not yet
/// credited back, up to a quarter of the buffer. A unix datagram socket
/// charges its queue to the senders, so it always reads 0 there.
pub fn queue_fill(socket: impl AsFd) -> Option<f64> {
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and the kernel writes at
    // most that many; the descriptor is borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket.as_fd()),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let rcvbuf = info[libc::SK_MEMINFO_RCVBUF as usize];
    (rc == 0 && rcvbuf > 0)
        .then(|| f64::from(info[libc::SK_MEMINFO_RMEM_ALLOC as usize]) / f64::from(rcvbuf))
}

/// Bind the UDP listener.
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let granted = size_buffer(&socket, recv_buffer);
    socket.bind(&SockAddr::from(addr))?;
    let local = socket.local_addr()?.as_socket().unwrap_or(addr);
    let fd = OwnedFd::from(socket);
    let inode = rustix::fs::fstat(&fd).ok().map(|st| st.st_ino);
    Ok(Listener {
        fd,
        name: format!("udp://{local}"),
        granted_buffer: granted,
        inode,
        allow: None,
        paced: true,
    })
}

/// The largest receive buffer the kernel can grant for a request of
/// `want` bytes, in the units [`Listener::granted_buffer`] reports: Linux
/// stores twice the request as an `int`, so it caps the request at
/// `INT_MAX / 2` first. Compare the grant with this, not with `want`.
pub fn grantable(want: usize) -> usize {
    want.min(i32::MAX as usize / 2)
}

/// Bind the unix datagram listener at `path`, replacing a stale socket
/// file, never a live one or anything that is not a socket.
pub fn bind_unix(path: &Path, recv_buffer: usize) -> io::Result<Listener> {
    bind_unix_with(path, recv_buffer, || {})
}

/// [`bind_unix`], calling `before_rename` once the socket exists, with its
/// mode set, in the private directory; tests use it to race the rename.
fn bind_unix_with(
    path: &Path,
    recv_buffer: usize,
    before_rename: impl FnOnce(),
) -> io::Result<Listener> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    // Senders must be able to name it: sun_path holds 107 bytes and a NUL.
    if path.as_os_str().len() > 107 {
        return Err(invalid(
            "the path is longer than a unix socket address (107 bytes)",
        ));
    }
    let name = path
        .file_name()
        .ok_or_else(|| invalid("the path names no file"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    check_replaceable(&dir, name, path)?;

    let private = PrivateDir::create(&dir, parent)?;
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    let granted = size_buffer(&socket, recv_buffer);
    socket.bind(&SockAddr::unix(private.bind_path())?)?;
    // nginx workers run as an unprivileged user and must be able to send.
    // Only we can write in the private directory, so the name is our
    // socket, not a symlink someone put there: chmod cannot be led astray.
    rustix::fs::chmodat(
        &private.fd,
        PrivateDir::SOCKET,
        Mode::from_raw_mode(0o666),
        AtFlags::empty(),
    )?;
    before_rename();
    rustix::fs::renameat(&private.fd, PrivateDir::SOCKET, &dir, name)?;
    drop(private);
    Ok(Listener {
        fd: OwnedFd::from(socket),
        name: format!("unix://{}", path.display()),
        granted_buffer: granted,
        inode: None,
        allow: None,
        paced: false,
    })
}

/// Whether whatever is at `name` in `dir` may be replaced: nothing, or a
/// socket nobody serves any more.
fn check_replaceable(dir: &OwnedFd, name: &OsStr, path: &Path) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    // A datagram socket connects only to a socket that is bound and open.
    match UnixDatagram::unbound()?.connect(path) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} is served by a running process (another poolwatch?); stop it or choose \
                 another path",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot tell whether {} is still in use ({e}); remove it if it is stale",
                path.display()
            ),
        )),
    }
}

/// A directory only we can write to, beside the socket's final path (a
/// rename cannot cross file systems), removed again on drop.
struct PrivateDir<'a> {
    parent: &'a OwnedFd,
    /// The directory's name in `parent`.
    name: String,
    fd: OwnedFd,
    /// `parent`'s path, to bind by path where `/proc` is missing.
    parent_path: PathBuf,
}

impl<'a> PrivateDir<'a> {
    /// The socket's name inside the private directory.
    const SOCKET: &'static str = "s";

    fn create(parent: &'a OwnedFd, parent_path: &Path) -> io::Result<PrivateDir<'a>> {
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for attempt in 0..16 {
            let name = format!(
                ".poolwatch-bind-{}-{attempt}-{}",
                std::process::id(),
                fastrand::u32(..)
            );
            match rustix::fs::mkdirat(parent, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
            let dir = PrivateDir {
                parent,
                fd: match Self::open_own(parent, &name) {
                    Ok(fd) => fd,
                    Err(e) => {
                        last = e;
                        continue;
                    }
                },
                name,
                parent_path: parent_path.to_path_buf(),
            };
            return Ok(dir);
        }
        Err(last)
    }

    /// Open the directory just made, refusing a symlink or a directory
    /// someone else swapped in for it.
    fn open_own(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the private directory for binding was replaced by another user's",
            ));
        }
        Ok(fd)
    }

    /// Where to bind: through our directory's descriptor where `/proc` is
    /// mounted, so that renaming the directory away cannot redirect it.
    fn bind_path(&self) -> PathBuf {
        let by_fd = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.fd)
        ));
        if by_fd.is_dir() {
            by_fd.join(Self::SOCKET)
        } else {
            self.parent_path.join(&self.name).join(Self::SOCKET)
        }
    }
}

impl Drop for PrivateDir<'_> {
    fn drop(&mut self) {
        // Gone already after a successful rename.
        let _ = rustix::fs::unlinkat(&self.fd, Self::SOCKET, AtFlags::empty());
        let _ = rustix::fs::unlinkat(
            self.parent,
            OsStr::from_bytes(self.name.as_bytes()),
            AtFlags::REMOVEDIR,
        );
    }
}

fn size_buffer(socket: &Socket, want: usize) -> usize {
    let fd = socket.as_fd();
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(fd, want).is_err() {
        // Without CAP_NET_ADMIN: the kernel caps rather than fails.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(fd, want);
    }
    rustix::net::sockopt::socket_recv_buffer_size(fd).unwrap_or(0) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn temp_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "poolwatch-sock-{what}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn udp_bind_reports_buffer_and_inode() {
        let l = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(l.granted_buffer > 0);
        assert!(l.inode.is_some());
        assert!(l.name.starts_with("udp://127.0.0.1:"));
    }

    #[test]
    fn the_grant_is_compared_with_what_the_kernel_can_give() {
        assert_eq!(grantable(8 << 20), 8 << 20);
        // 1 GiB: the kernel stores at most INT_MAX, so grants 1 GiB - 1.
        assert_eq!(grantable(1 << 30), (1 << 30) - 1);
        let want = 1 << 30;
        let l = bind_udp("127.0.0.1:0".parse().unwrap(), want).unwrap();
        let net_admin = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 12) != 0);
        if net_admin {
            // With CAP_NET_ADMIN the whole (capped) request is granted.
            assert_eq!(l.granted_buffer, grantable(want));
        }
        assert!(l.granted_buffer <= grantable(want));
    }

    #[test]
    fn unix_bind_replaces_a_stale_socket_but_not_files_or_links() {
        let dir = temp_dir("stale");
        let path = dir.join("s.sock");
        drop(bind_unix(&path, 1 << 20).unwrap());
        let l = bind_unix(&path, 1 << 20).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        // Only the socket is left in the directory: no private directory.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.sock"]);
        // It receives at its final path.
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"x", &path)
            .unwrap();
        let mut buf = [0u8; 4];
        let n = rustix::net::recv(&l.fd, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
        assert_eq!(n.0, 1);

        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind_unix(&file, 1 << 20).is_err());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let err = bind_unix(&link, 1 << 20).err().unwrap();
        assert!(err.to_string().contains("not a socket"), "{err}");
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_bind_never_replaces_a_live_socket() {
        let dir = temp_dir("live");
        let path = dir.join("s.sock");
        let first = bind_unix(&path, 1 << 20).unwrap();
        let err = bind_unix(&path, 1 << 20).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
        // The first listener still receives.
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"still", &path)
            .unwrap();
        let mut buf = [0u8; 8];
        let n = rustix::net::recv(&first.fd, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
        assert_eq!(&buf[..n.0], b"still");
        drop(first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A racer who swaps the socket's path for a symlink to a file between
    /// bind and chmod must not get that file's mode changed: the mode is
    /// set in the private directory, and the rename then replaces the
    /// symlink itself. (Binding at the path and chmod-ing it, as before,
    /// made the victim 0666.)
    #[test]
    fn a_symlink_raced_into_place_is_replaced_never_followed() {
        let dir = temp_dir("race");
        let path = dir.join("s.sock");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let l = bind_unix_with(&path, 1 << 20, || {
            std::os::unix::fs::symlink(&victim, &path).unwrap();
        })
        .unwrap();
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_paths_that_cannot_work_are_refused() {
        let long = std::env::temp_dir().join("x".repeat(120));
        assert!(bind_unix(&long, 1 << 20).is_err());
        assert!(bind_unix(Path::new("/"), 1 << 20).is_err());
        assert!(bind_unix(Path::new("/nonexistent-dir-of-poolwatch/s.sock"), 1 << 20).is_err());
    }
}
