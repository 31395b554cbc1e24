//! Shared harness for the integration tests: real `demo-app` upstreams, a
//! real nginx rendered from the shipped `nginx/` template, and a UDP socket
//! that captures what nginx sends over syslog.
//!
//! Include it with `mod common;`. Only std (plus `libc` for signals) is used,
//! so tests need no extra crates; HTTP is spoken by a tiny blocking HTTP/1.1
//! client.
//!
//! nginx is found through `NGINX_BIN`, then `nginx` on `PATH`, then
//! `/usr/sbin/nginx`. Every nginx runs in its own temporary prefix with its
//! own ports, so tests may run in parallel.
//!
//! # Rules that keep the suite from flaking
//!
//! The suite must pass on a machine busy with something else, so:
//!
//! - **No port is picked and released.** Whatever listens binds port 0 and
//!   the harness reads back what it got: poolwatch reports its addresses in
//!   its ready file (`--ready-file`), demo-app prints its address on its
//!   first stdout line (`PORT=0`), Prometheus is found listening through
//!   `/proc` ([`listening_tcp_addrs`]). nginx cannot bind port 0 (its
//!   `listen` needs the number), so [`Nginx::start`] binds the listening
//!   socket itself on port 0 and hands it to nginx the way nginx's binary
//!   upgrade does: the descriptor stays open across `exec` and its number
//!   is in the `NGINX` environment variable (`NGINX="7;"`). nginx adopts an
//!   inherited socket whose address matches a `listen` line, so the port was
//!   never free for anyone else to take; reloads keep it. Clients such as
//!   `check-failover` still reach nginx over plain TCP. The one port that
//!   is never listened on ([`free_port_tcp`], for "connection refused" and
//!   for addresses only written into a config) stays bound, unlistened, for
//!   the life of the test process, so no one else can take it either.
//! - **No sleep stands in for synchronisation.** Tests wait for what they
//!   need to have happened ([`wait_until`] with [`PATIENCE`]): a metric
//!   reaching a count, `/state` showing an incident, a file appearing, a
//!   request reaching the webhook. The deadline only bounds a failure; it
//!   is never what a test measures.
//! - **No upper bound on time in `cargo test`.** How fast something
//!   happens is measured in `benches/`; tests assert causality and order.
//! - **What a test needs from the machine, it checks.** A test that needs
//!   more than an unprivileged user gets (a large receive buffer) reads what
//!   it was granted, says so on stderr ([`notice`]) and sizes its work to
//!   fit, keeping its assertion meaningful.

// Each test crate uses its own subset of the harness.
#![allow(dead_code)]

// Integration tests only: the fixture capture example has no poolwatch
// binary built for it.
#[cfg(test)]
pub mod chromium;
#[cfg(test)]
pub mod dashboard;
#[cfg(test)]
pub mod poolwatch;
#[cfg(test)]
pub mod webhook;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a test waits for something that must happen before it gives
/// up. Generous on purpose: it only bounds a failure, and a machine busy
/// with other work may take seconds for what usually takes milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long `DemoApp::start` and `Nginx::start` wait for readiness.
pub const START_TIMEOUT: Duration = PATIENCE;

/// Timeout per read/write of [`http_request`]; longer than nginx's whole
/// retry budget (`proxy_next_upstream_timeout 8s`).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Status code, headers in received order, and body (lossily decoded as
/// UTF-8) of an HTTP response.
pub type HttpResponse = (u16, Vec<(String, String)>, String);

/// A TCP port on 127.0.0.1 that nothing listens on, reserved for the rest
/// of this test process: a socket is bound to it and kept, never listening,
/// so connecting is refused and no other process can bind it. For
/// "connection refused" addresses and addresses only written into a
/// config; never for a server to listen on (bind port 0 instead).
pub fn free_port_tcp() -> u16 {
    static RESERVED: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("create a TCP socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind a TCP port on 127.0.0.1");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("address of a bound TCP socket")
        .port();
    RESERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(socket);
    port
}

/// Says something on the test process's real stderr, past the test
/// harness's capture: for what a passing test must still tell its reader,
/// such as a check it had to scale down to what this machine grants.
pub fn notice(message: &str) {
    let _ = writeln!(io::stderr().lock(), "note: {message}");
}

/// Bytes queued in the receive buffer of the IPv4 UDP socket bound to
/// `addr` (`rx_queue` in `/proc/net/udp`), `None` if no such socket exists.
///
/// The kernel writes `/proc/net/udp` a page at a time, walking its socket
/// table afresh for each page: when other programs close UDP sockets
/// meanwhile (a busy machine, other tests), the walk shifts and a socket
/// can be left out of one read. So a socket missing from one read is
/// looked for again; one that is really gone is missing from every read.
pub fn udp_receive_queue(addr: SocketAddr) -> Option<usize> {
    (0..50).find_map(|_| udp_receive_queue_once(addr))
}

fn udp_receive_queue_once(addr: SocketAddr) -> Option<usize> {
    let text = fs::read_to_string("/proc/net/udp").ok()?;
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if proc_net_addr(fields.get(1)?)? != addr {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        usize::from_str_radix(rx, 16).ok()
    })
}

/// An IPv4 `ADDR:PORT` field of `/proc/net/{tcp,udp}`: the address is the
/// kernel's 32-bit value printed in host order, the port a plain number.
fn proc_net_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((ip.to_ne_bytes(), port)))
}

/// The TCP addresses process `pid` listens on, found through its open
/// descriptors and `/proc/net/tcp`: how the harness learns the port a
/// program given port 0 bound when the program does not say.
pub fn listening_tcp_addrs(pid: u32) -> Vec<SocketAddr> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<u64> = fds
        .filter_map(|fd| {
            let target = fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // 0A is TCP_LISTEN.
            if *fields.get(3)? != "0A" || !inodes.contains(&fields.get(9)?.parse().ok()?) {
                return None;
            }
            proc_net_addr(fields.get(1)?)
        })
        .collect()
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole
/// response; panics on I/O errors. `body` is sent with a `Content-Length`
/// when non-empty or when the method is POST/PUT/PATCH.
pub fn http_request(method: &str, addr: &str, path: &str, body: &[u8]) -> HttpResponse {
    try_http_request(method, addr, path, body, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// [`http_request`] that reports errors instead of panicking, with
/// `timeout` for connecting and for each read or write.
pub fn try_http_request(
    method: &str,
    addr: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: poolwatch-tests\r\nConnection: close\r\n"
    );
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let raw = raw_request(addr, &request, timeout)?;
    parse_response(&raw)
}

/// Writes `request` verbatim (any bytes, valid HTTP or not) and returns the
/// raw response read until the server closes the connection. Useful for
/// requests a well-behaved client cannot express.
pub fn raw_request(addr: &str, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr, timeout)?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

/// Connects with `timeout` for the connect itself and for each later read
/// and write.
pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let sockaddr = resolve(addr)?;
    let stream = TcpStream::connect_timeout(&sockaddr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no address for {addr}"),
        )
    })
}

/// Parses a complete `Connection: close` response, decoding a chunked body.
pub fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("response has no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let body = if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        decode_chunked(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(len) = header(&headers, "content-length").and_then(|v| v.parse().ok()) {
        rest[..rest.len().min(len)].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Case-insensitive lookup of the first header called `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_field = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to dashes,
/// other punctuation dropped. RUNBOOK.md links are checked against it.
pub fn markdown_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Polls `probe` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A directory of its own for one test's files, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let d = unique_temp_path(prefix);
        fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A JSON file as written so far: `Null` while it is missing or not yet
/// whole, so a test can poll it.
pub fn read_json(path: &Path) -> serde_json::Value {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A unique, not yet existing path under the system temp directory.
pub fn unique_temp_path(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Path of the `demo-app` binary: `DEMO_APP_BIN`, else the one Cargo built
/// for this test crate, else `demo-app` next to the running executable's
/// directory (how examples in `target/*/examples/` find it).
pub fn demo_app_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("DEMO_APP_BIN") {
        return PathBuf::from(path);
    }
    if let Some(path) = option_env!("CARGO_BIN_EXE_demo-app") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the running executable");
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("demo-app"))
        .expect("executable has a grandparent directory");
    assert!(
        candidate.is_file(),
        "{} not found: run `cargo build --bin demo-app` first or set DEMO_APP_BIN",
        candidate.display()
    );
    candidate
}

/// A running `demo-app` on 127.0.0.1, killed on drop.
pub struct DemoApp {
    child: Child,
    addr: String,
    pool: String,
    release: String,
}

impl DemoApp {
    /// Starts `demo-app` with `APP_POOL=pool` and `RELEASE_ID=release` and
    /// waits until `GET /healthz` answers.
    pub fn start(pool: &str, release: &str) -> DemoApp {
        DemoApp::start_with_env(pool, release, &[])
    }

    /// Like [`DemoApp::start`], with extra environment such as
    /// `CHAOS_TIMEOUT_SEC`.
    pub fn start_with_env(pool: &str, release: &str, env: &[(&str, &str)]) -> DemoApp {
        let bin = demo_app_bin();
        // PORT=0 lets the kernel choose, and the app reports the address it
        // got; picking a port here first could race with other tests.
        let mut child = Command::new(&bin)
            .env("APP_POOL", pool)
            .env("RELEASE_ID", release)
            .env("BIND", "127.0.0.1")
            .env("PORT", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the app never blocks on a full pipe.
            for _ in lines {}
        });
        let banner = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("demo-app {pool} printed no start line (exit: {status:?})");
            }
        };
        let addr = banner
            .rsplit(' ')
            .next()
            .filter(|a| a.parse::<SocketAddr>().is_ok())
            .unwrap_or_else(|| panic!("no address in demo-app start line {banner:?}"))
            .to_owned();

        let app = DemoApp {
            child,
            addr,
            pool: pool.to_owned(),
            release: release.to_owned(),
        };
        let healthy = wait_until(START_TIMEOUT, || {
            try_http_request("GET", &app.addr, "/healthz", b"", Duration::from_secs(1))
                .is_ok_and(|(status, _, _)| status == 200)
        });
        assert!(
            healthy,
            "demo-app {pool} at {} never became healthy",
            app.addr
        );
        app
    }

    /// `127.0.0.1:PORT` of the app.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The `APP_POOL` it was started with.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The `RELEASE_ID` it was started with.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// `Some("error")` / `Some("timeout")` starts chaos, `None` stops it.
    /// Panics unless the app accepts.
    pub fn chaos(&self, mode: Option<&str>) {
        let path = match mode {
            Some(mode) => format!("/chaos/start?mode={mode}"),
            None => "/chaos/stop".to_owned(),
        };
        let (status, _, body) = http_request("POST", &self.addr, &path, b"");
        assert_eq!(status, 200, "POST {path} on {}: {body}", self.pool);
    }

    /// Process id, e.g. to stop the app with a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DemoApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where nginx sends its access log.
#[derive(Clone, Debug)]
pub enum SyslogTarget {
    /// `host:port` of a UDP syslog receiver, e.g. `UdpCapture::addr()`.
    Udp(String),
    /// Path of a unix datagram socket. [`Nginx::start`] makes it
    /// world-writable when it exists, because nginx workers started by root
    /// run as `nobody` and must be able to send to it.
    Unix(PathBuf),
}

/// A function applied to the rendered `nginx.conf` text before nginx reads
/// it, for test-only variants of the shipped config.
pub type ConfEdit = Box<dyn Fn(&str) -> String>;

/// What [`Nginx::start`] renders.
pub struct NginxOpts {
    /// `blue` or `green` (`ACTIVE_POOL`).
    pub active_pool: String,
    /// `host:port` of the blue app (`BLUE_UPSTREAM`).
    pub blue: String,
    /// `host:port` of the green app (`GREEN_UPSTREAM`).
    pub green: String,
    /// Access log destination.
    pub syslog: SyslogTarget,
    /// Edit of the rendered config; re-applied by [`Nginx::switch`].
    pub edit: Option<ConfEdit>,
    /// Extra environment for the nginx processes, e.g. `TZ`.
    pub env: Vec<(String, String)>,
}

impl NginxOpts {
    /// Options for the shipped config, without edits.
    pub fn new(active_pool: &str, blue: &str, green: &str, syslog: SyslogTarget) -> NginxOpts {
        NginxOpts {
            active_pool: active_pool.to_owned(),
            blue: blue.to_owned(),
            green: green.to_owned(),
            syslog,
            edit: None,
            env: Vec::new(),
        }
    }

    /// Adds an edit of the rendered config text.
    pub fn with_edit(mut self, edit: impl Fn(&str) -> String + 'static) -> NginxOpts {
        self.edit = Some(Box::new(edit));
        self
    }

    /// Adds an environment variable for the nginx processes.
    pub fn with_env(mut self, name: &str, value: &str) -> NginxOpts {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The repository's `nginx/` directory.
pub fn nginx_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx")
}

/// The nginx binary: `NGINX_BIN`, else `nginx` on `PATH`, else
/// `/usr/sbin/nginx`.
pub fn nginx_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A running nginx (master and workers in their own process group) in a
/// temporary prefix that is removed on drop.
pub struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    addr: String,
    opts: NginxOpts,
}

impl Nginx {
    /// Binds a listening socket on `127.0.0.1:0`, renders
    /// `nginx/nginx.conf.template` with `nginx/render.sh` into a new
    /// temporary directory (listening on that socket's address, pid, error
    /// log and temp paths inside that directory), applies `opts.edit`,
    /// starts `nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'` with the
    /// socket inherited (see the module docs) and waits until
    /// `/nginx-health` answers.
    pub fn start(opts: NginxOpts) -> Nginx {
        let bin = nginx_bin();
        assert!(
            bin.is_file(),
            "nginx not found at {} (set NGINX_BIN or install nginx)",
            bin.display()
        );
        if let SyslogTarget::Unix(path) = &opts.syslog {
            if path.exists() {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o777));
            }
        }
        let dir = unique_temp_path("poolwatch-nginx");
        fs::create_dir_all(&dir).expect("create nginx temp dir");
        let mut nginx = Nginx {
            child: None,
            dir,
            addr: String::new(),
            opts,
        };
        // Bound here, on port 0, and handed over: nginx never has to bind a
        // port that something else could have taken meanwhile.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind nginx's listening socket");
        nginx.addr = listener.local_addr().expect("local address").to_string();
        nginx.render(&nginx.opts.active_pool.clone());
        if let Err(log) = nginx.spawn_and_wait(listener) {
            panic!("nginx did not start:\n{log}");
        }
        nginx
    }

    /// Starts nginx with `listener` inherited, then drops this process's
    /// copy: nginx's master keeps the socket (across reloads too), and once
    /// nginx is gone the port refuses connections instead of queueing them.
    fn spawn_and_wait(&mut self, listener: TcpListener) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let stderr = fs::File::create(self.dir.join("stderr.log")).expect("create stderr.log");
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.conf_path())
            .args(["-g", "daemon off;"])
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            // nginx's binary-upgrade handover: listening sockets it inherits.
            .env("NGINX", format!("{fd};"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Own process group, so that drop can kill workers too.
            .process_group(0);
        // SAFETY: runs in the forked child before exec, and only calls
        // fcntl(2), which is async-signal-safe; it clears close-on-exec on
        // the listener's descriptor, which the child shares by number.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", nginx_bin().display()))?;
        drop(listener);
        self.child = Some(child);
        let addr = self.addr.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().expect("spawned").try_wait() {
                self.child = None;
                return Err(format!("exit {status}\n{}", self.logs()));
            }
            if try_http_request("GET", &addr, "/nginx-health", b"", Duration::from_secs(1))
                .is_ok_and(|(status, _, _)| status == 200)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!("no answer on /nginx-health\n{}", self.logs()));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let stderr = fs::read(self.dir.join("stderr.log")).unwrap_or_default();
        format!(
            "stderr:\n{}\nerror.log:\n{}",
            String::from_utf8_lossy(&stderr),
            self.error_log()
        )
    }

    /// The environment `render.sh` and `entrypoint.sh` get.
    fn render_env(&self, pool: &str) -> Vec<(String, String)> {
        let dir = self.dir.display();
        let mut env = vec![
            ("ACTIVE_POOL".into(), pool.to_owned()),
            ("BLUE_UPSTREAM".into(), self.opts.blue.clone()),
            ("GREEN_UPSTREAM".into(), self.opts.green.clone()),
            ("LISTEN_ADDR".into(), self.addr.clone()),
            ("NGINX_PID_PATH".into(), format!("{dir}/nginx.pid")),
            ("NGINX_ERROR_LOG".into(), format!("{dir}/error.log")),
            ("NGINX_TEMP_DIR".into(), format!("{dir}/tmp")),
            ("NGINX_CONF_DIR".into(), dir.to_string()),
            ("NGINX_PREFIX".into(), dir.to_string()),
            ("NGINX_BIN".into(), nginx_bin().display().to_string()),
        ];
        match &self.opts.syslog {
            SyslogTarget::Udp(addr) => {
                let (host, port) = addr
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("syslog address {addr:?} is not host:port"));
                env.push(("WATCHER_HOST".into(), host.to_owned()));
                env.push(("WATCHER_PORT".into(), port.to_owned()));
                env.push(("WATCHER_UNIX".into(), String::new()));
            }
            SyslogTarget::Unix(path) => {
                env.push(("WATCHER_UNIX".into(), path.display().to_string()));
            }
        }
        env
    }

    fn render(&self, pool: &str) {
        let script = nginx_dir().join("render.sh");
        run_checked(
            Command::new("sh")
                .arg(&script)
                .arg(&self.dir)
                .envs(self.render_env(pool)),
        );
        self.apply_edit();
    }

    fn apply_edit(&self) {
        if let Some(edit) = &self.opts.edit {
            let path = self.conf_path();
            let text = fs::read_to_string(&path).expect("read rendered nginx.conf");
            fs::write(&path, edit(&text)).expect("write edited nginx.conf");
        }
    }

    /// `127.0.0.1:PORT` nginx listens on.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The temporary prefix holding `nginx.conf`, `error.log` and the pid.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the rendered (and edited) `nginx.conf`.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    /// `GET path` through nginx.
    pub fn get(&self, path: &str) -> HttpResponse {
        http_request("GET", &self.addr, path, b"")
    }

    /// Makes `pool` the active pool the way operators do, with
    /// `nginx/entrypoint.sh switch POOL` (re-render, `nginx -t`,
    /// `nginx -s reload` with the same `-p`/`-c`); with an edit, the same
    /// steps are done here so that the edit is re-applied. Returns once
    /// every worker of the old configuration has exited.
    pub fn switch(&mut self, pool: &str) {
        let old_workers = self.worker_pids();
        if self.opts.edit.is_none() {
            let script = nginx_dir().join("entrypoint.sh");
            run_checked(
                Command::new("sh")
                    .arg(&script)
                    .args(["switch", pool])
                    .envs(self.render_env(pool)),
            );
        } else {
            self.render(pool);
            run_checked(self.nginx_cmd().args(["-t", "-q"]));
            run_checked(self.nginx_cmd().args(["-s", "reload"]));
        }
        self.opts.active_pool = pool.to_owned();
        // A reload returns before the master has started new workers, and
        // old workers keep serving until idle: wait so that the next
        // request is served by the new configuration.
        let switched = wait_until(START_TIMEOUT, || {
            let now = self.worker_pids();
            !now.is_empty() && now.iter().all(|pid| !old_workers.contains(pid))
        });
        assert!(
            switched,
            "nginx workers were not replaced after reload\n{}",
            self.logs()
        );
    }

    fn nginx_cmd(&self) -> Command {
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-p").arg(&self.dir).arg("-c").arg(self.conf_path());
        cmd
    }

    /// Pids of the master's child processes (the workers).
    pub fn worker_pids(&self) -> Vec<u32> {
        let Some(master) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent_pid(*pid) == Some(master))
            .collect()
    }

    /// Pid of the nginx master.
    pub fn master_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Contents of nginx's error log so far (lossily decoded).
    pub fn error_log(&self) -> String {
        let bytes = fs::read(self.dir.join("error.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Stops nginx: SIGQUIT (graceful) to the master, then SIGKILL to the
    /// whole process group if it has not exited within 3 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the process we spawned.
        unsafe { libc::kill(pgid, libc::SIGQUIT) };
        let exited = wait_until(Duration::from_secs(3), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        // Also after a clean exit: a worker that outlived its master would
        // keep the port and the syslog socket busy.
        // SAFETY: kill(2) on the process group created for this nginx.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        if !exited {
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces; fields after it
    // are: state, ppid, ...
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

fn run_checked(cmd: &mut Command) {
    let output = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A UDP socket on a free loopback port that records datagrams as received.
pub struct UdpCapture {
    socket: UdpSocket,
}

impl UdpCapture {
    /// Binds `127.0.0.1:0`.
    pub fn bind() -> UdpCapture {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP capture socket");
        UdpCapture { socket }
    }

    /// `127.0.0.1:PORT`, suitable for [`SyslogTarget::Udp`].
    pub fn addr(&self) -> String {
        self.socket.local_addr().expect("local addr").to_string()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("local addr").port()
    }

    /// Returns the next datagram, or `None` if none arrives within `timeout`.
    pub fn recv_one(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set read timeout");
        let mut buf = vec![0u8; 65536];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("UDP capture recv: {e}"),
        }
    }

    /// Collects datagrams until none arrives for `timeout`.
    pub fn recv_all(&self, timeout: Duration) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.recv_one(timeout)).collect()
    }

    /// Waits up to `timeout` in total for `n` datagrams; returns what came.
    pub fn recv_n(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.recv_one(left) {
                Some(d) => got.push(d),
                None => break,
            }
        }
        got
    }
}
