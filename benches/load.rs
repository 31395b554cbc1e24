//! Receive capacity: poolwatch against a bare receive loop on the same
//! socket, in one run.
//!
//! The bare loop is this bench re-executed as a separate process: it binds
//! its UDP socket with poolwatch's own `ingest::socket::bind_udp` (the same
//! `SO_RCVBUFFORCE` receive buffer and receive timeout) and calls
//! `recvmmsg` through poolwatch's own `ingest::batch::RecvBatch` (64 slots of
//! 64 KiB, `MSG_WAITFORONE`), and only counts datagrams and bytes. What is
//! left between the two is what poolwatch does with a datagram: syslog
//! framing, JSON decoding, windows, metrics and alerting. Its count is read
//! over a loopback TCP port; poolwatch's from `/metrics`. Kernel drops and
//! the socket backlog come from `/proc/net/udp` for both.
//!
//! The machine these numbers come from is small and shared, so every figure
//! is compared with the bare loop measured in the same run, the two
//! receivers take turns (drift hits both), and what is printed is the median
//! of several runs. Each run measures, for each receiver:
//!
//! - the highest offered rate with < 0.1 % loss over a 10 s send: the
//!   sender's own flat-out rate to the bare loop, then 90 %, 80 %... of it.
//!   On loopback the sender does the kernel's delivery work as well as its
//!   own, so a receiver may keep up with it flat out; its rate is then shown
//!   as a lower bound (`>=`) and the drain rate is what measures it;
//! - CPU seconds (all threads, user + system) per million datagrams at
//!   100 k/s from two senders: a smooth one (each send carries the one or
//!   few datagrams due) and a bursty one (`poolwatch loadgen --burst 64`:
//!   64 datagrams per `sendmmsg` every 0.64 ms, as relays and load tools
//!   send); and, smooth, at 10 k/s and 1 k/s. Also how many datagrams each
//!   wake-up of the receiver found queued, which is what batched receive
//!   saves on;
//! - the fixed tick cost, which at low rates is a visible share of the CPU
//!   per datagram, so it is shown as its own figure and the low-rate ratios
//!   are also given without it: the CPU of poolwatch's threads other than
//!   its receive threads and parse workers (the runtime: the alert loop's
//!   tick, metrics upkeep, HTTP) during each measurement, and the CPU per
//!   second of each receiver with no traffic at all;
//! - the drain rate: with the receiver stopped (SIGSTOP), its socket is
//!   filled until the kernel drops, then the receiver is continued (SIGCONT)
//!   and the queue sampled as it drains;
//! - peak RSS (VmHWM, reset before the send) and the peak socket backlog
//!   (`rx_queue`, sampled every 100 ms) during the lossless-rate send;
//!
//! and, for poolwatch alone, the time from the first request of a failover
//! (sent at 80 % of its lossless rate, after steady traffic, by the smooth
//! and by the bursty sender) to the Slack webhook POST announcing it, which
//! a local HTTP server records.
//!
//! The summary ends with the targets (CPU at 100 k/s within 1.3× the bare
//! loop's for both senders, at 10 k/s and 1 k/s within 1.3× plus the fixed
//! tick cost, drain rate at least 0.75×, lossless at the sender's maximum,
//! failover notice within 1 s) and whether this run met each.
//!
//! Run with `cargo bench --bench load`: about five minutes per run on 2
//! cores after the build, longer when a receiver needs several steps down.
//! Settings, from the environment:
//!
//! - `LOAD_BENCH_RUNS` (3): runs to take medians over;
//! - `LOAD_BENCH_SECS` (10): length of each lossless-rate and CPU send;
//! - `LOAD_BENCH_STEP` (10): the lossless-rate search steps down by this
//!   percentage of the sender's flat-out rate;
//! - `LOAD_BENCH_CPU_RATE` (100000): datagrams/s of the CPU measurement;
//! - `LOAD_BENCH_BURST` (64): datagrams per `sendmmsg` of the bursty sender;
//! - `LOAD_BENCH_IDLE_SECS` (10): length of the idle CPU measurement;
//! - `LOAD_BENCH_RECV_BUFFER` (8388608): receive buffer for both receivers,
//!   in bytes (poolwatch's `RECV_BUFFER` default);
//! - `LOAD_BENCH_DRAINS` (5): fill-and-drain rounds per receiver and run;
//! - `LOAD_BENCH_BARE` (`recvmmsg`): the bare loop's receive call;
//!   `tokio` makes it tokio's `UdpSocket`, one `recv` per datagram on a
//!   current-thread runtime, to measure the architecture poolwatch did not
//!   choose against the same poolwatch;
//! - `LOAD_BENCH_POOLWATCH` (unset): a poolwatch binary to measure instead
//!   of building this tree's, to compare builds with the same bench;
//! - `LOAD_BENCH_PERF` (unset): when 1, finish with `perf record -g` of a
//!   poolwatch at the CPU rate and print its top symbols.

#[path = "support/mod.rs"]
mod support;

use support::{env_u64, get, scrape};

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use poolwatch::alerting::TICK;
use poolwatch::ingest::batch::{self, RecvBatch};
use poolwatch::ingest::socket;
use poolwatch::loadgen::lines::{Generator, Scenario};
use poolwatch::loadgen::send::{MAX_BURST, Messages, Sender, Shape, Stop, Traffic};
use poolwatch::loadgen::{self, LoadgenArgs, Report};

/// Set in the environment of the re-executed bench to make it the bare
/// receiver instead of the benchmark.
const ROLE_VAR: &str = "LOAD_BENCH_ROLE";
const BARE_ROLE: &str = "bare-receiver";

/// Loss allowed at the "lossless" rate.
const LOSS_LIMIT: f64 = 0.001;

/// How long the sender's flat-out rate is measured.
const MAX_RATE_SECS: Duration = Duration::from_secs(3);

/// Steady traffic sent before the failover, to fill the windows and let
/// poolwatch learn which server is which pool.
const STEADY_SECS: Duration = Duration::from_secs(2);

/// Failing traffic is sent this long; the notification must come well
/// before.
const FAILING_SECS: Duration = Duration::from_secs(3);

/// The failover notification's deadline.
const FAILOVER_LIMIT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    if std::env::var(ROLE_VAR).is_ok_and(|r| r == BARE_ROLE) {
        return match bare_receiver() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load: bare receiver: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // `cargo test --benches` runs bench targets once without `--bench`;
    // a multi-minute load run has no place there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: skipped outside `cargo bench --bench load`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    runs: usize,
    secs: Duration,
    step_pct: u64,
    cpu_rate: u64,
    burst: u64,
    idle_secs: Duration,
    recv_buffer: u64,
    drains: usize,
    perf: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let s = Settings {
            runs: env_u64("LOAD_BENCH_RUNS", 3)? as usize,
            secs: Duration::from_secs(env_u64("LOAD_BENCH_SECS", 10)?),
            step_pct: env_u64("LOAD_BENCH_STEP", 10)?,
            cpu_rate: env_u64("LOAD_BENCH_CPU_RATE", 100_000)?,
            burst: env_u64("LOAD_BENCH_BURST", 64)?,
            idle_secs: Duration::from_secs(env_u64("LOAD_BENCH_IDLE_SECS", 10)?),
            recv_buffer: env_u64("LOAD_BENCH_RECV_BUFFER", 8 << 20)?,
            drains: env_u64("LOAD_BENCH_DRAINS", 5)? as usize,
            perf: env_u64("LOAD_BENCH_PERF", 0)? == 1,
        };
        if s.runs == 0
            || s.secs.is_zero()
            || s.cpu_rate == 0
            || s.drains == 0
            || s.idle_secs.is_zero()
        {
            return Err(
                "LOAD_BENCH_RUNS, _SECS, _CPU_RATE, _DRAINS and _IDLE_SECS must be above 0".into(),
            );
        }
        if !(1..=MAX_BURST as u64).contains(&s.burst) {
            return Err(format!(
                "LOAD_BENCH_BURST={}: expected 1 to {MAX_BURST}",
                s.burst
            ));
        }
        if !(1..=50).contains(&s.step_pct) {
            return Err(format!(
                "LOAD_BENCH_STEP={}: expected a percentage from 1 to 50",
                s.step_pct
            ));
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------
// The bare receiver (this bench, re-executed).

/// Receive and count until stdin closes, which happens when the benchmark
/// exits, however it exits.
fn bare_receiver() -> Result<(), String> {
    let buffer = env_u64("LOAD_BENCH_RECV_BUFFER", 8 << 20)? as usize;
    let listener = socket::bind_udp(SocketAddr::from(([127, 0, 0, 1], 0)), buffer)
        .map_err(|e| format!("cannot bind: {e}"))?;
    let granted = listener.granted_buffer;
    let udp = UdpSocket::from(listener.fd);
    let local = udp.local_addr().map_err(|e| e.to_string())?;
    let ctl = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("cannot bind the control port: {e}"))?;
    let ctl_addr = ctl.local_addr().map_err(|e| e.to_string())?;

    // Written once per batch by the receive loop, read on request: the
    // loop pays two relaxed stores per batch, less than poolwatch's lock.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let shown = Arc::clone(&counts);
    thread::spawn(move || {
        for mut conn in ctl.incoming().flatten() {
            let _ = writeln!(
                conn,
                "{} {}",
                shown[0].load(Ordering::Relaxed),
                shown[1].load(Ordering::Relaxed)
            );
        }
    });
    thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    println!("{local} {ctl_addr} {granted}");
    io::stdout().flush().map_err(|e| e.to_string())?;

    match BareLoop::from_env()? {
        BareLoop::Recvmmsg => recvmmsg_loop(&udp, &counts),
        BareLoop::Tokio => tokio_loop(udp, &counts),
    }
}

/// How the bare receiver reads its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BareLoop {
    /// poolwatch's own batched receive: the limit of this machine.
    Recvmmsg,
    /// tokio's `UdpSocket`, one `recv` per datagram on a current-thread
    /// runtime: the receive architecture poolwatch did not choose.
    Tokio,
}

impl BareLoop {
    const VAR: &str = "LOAD_BENCH_BARE";

    fn from_env() -> Result<BareLoop, String> {
        match std::env::var(Self::VAR).as_deref() {
            Err(_) | Ok("recvmmsg") => Ok(BareLoop::Recvmmsg),
            Ok("tokio") => Ok(BareLoop::Tokio),
            Ok(other) => Err(format!(
                "{}={other:?}: expected recvmmsg or tokio",
                Self::VAR
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BareLoop::Recvmmsg => "recvmmsg",
            BareLoop::Tokio => "tokio",
        }
    }
}

fn recvmmsg_loop(udp: &UdpSocket, counts: &[AtomicU64; 2]) -> Result<(), String> {
    let fd = udp.as_raw_fd();
    let mut batch = RecvBatch::default();
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    loop {
        match batch.recv(fd) {
            Ok(n) => {
                for i in 0..n {
                    bytes += batch.slot(i).1 as u64;
                }
                datagrams += n as u64;
                counts[0].store(datagrams, Ordering::Relaxed);
                counts[1].store(bytes, Ordering::Relaxed);
            }
            Err(e) if batch::nothing_received(&e) => {}
            Err(e) => return Err(format!("recvmmsg failed: {e}")),
        }
    }
}

fn tokio_loop(udp: UdpSocket, counts: &[AtomicU64; 2]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(async {
        udp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let sock = tokio::net::UdpSocket::from_std(udp).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        let (mut datagrams, mut bytes) = (0u64, 0u64);
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("recv failed: {e}"))?;
            datagrams += 1;
            bytes += n as u64;
            counts[0].store(datagrams, Ordering::Relaxed);
            counts[1].store(bytes, Ordering::Relaxed);
        }
    })
}

// ---------------------------------------------------------------------------
// Receivers as seen from the benchmark.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bare,
    Poolwatch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Poolwatch => "poolwatch",
        }
    }
}

/// A receiver process; killed when dropped, so a failed run leaves nothing
/// behind.
struct Rx {
    kind: Kind,
    child: Option<Child>,
    /// Held open: the bare receiver exits when it closes.
    _stdin: Option<ChildStdin>,
    udp: SocketAddr,
    /// The bare receiver's count port, or poolwatch's HTTP address.
    ctl: SocketAddr,
    granted: u64,
}

impl Rx {
    fn start_bare(buffer: u64) -> Result<Rx, String> {
        // Through /proc rather than by path: a build running alongside may
        // replace this bench's file while it runs, and the kernel still
        // holds the file being run.
        let mut child = Command::new("/proc/self/exe")
            .env(ROLE_VAR, BARE_ROLE)
            .env("LOAD_BENCH_RECV_BUFFER", buffer.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start this bench again as the bare receiver: {e}"))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("the bare receiver said nothing: {e}"))?;
        let mut words = line.split_whitespace();
        let mut next = || {
            words
                .next()
                .ok_or_else(|| format!("the bare receiver said {line:?}"))
        };
        let udp = next()?.parse().map_err(|e| format!("{e}"))?;
        let ctl = next()?.parse().map_err(|e| format!("{e}"))?;
        let granted = next()?.parse().map_err(|e| format!("{e}"))?;
        Ok(Rx {
            kind: Kind::Bare,
            child: Some(child),
            _stdin: stdin,
            udp,
            ctl,
            granted,
        })
    }

    fn start_poolwatch(bin: &Path, buffer: u64, webhook: Option<String>) -> Result<Rx, String> {
        let mut cmd = Command::new(bin);
        let ready = support::listen_on_port_zero(&mut cmd);
        cmd.args(["--recv-buffer", &buffer.to_string()])
            .args(["--pools", "blue,green", "--log-level", "warn"])
            // Nothing from the caller's shell or a .env file (a webhook
            // URL, other thresholds) may change what is measured.
            .env_clear()
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(url) = webhook {
            cmd.env("SLACK_WEBHOOK_URL", url);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let bound = support::wait_ready(&mut child, &ready);
        let mut rx = Rx {
            kind: Kind::Poolwatch,
            child: Some(child),
            _stdin: None,
            udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            ctl: SocketAddr::from(([127, 0, 0, 1], 0)),
            granted: 0,
        };
        let bound = bound?;
        (rx.udp, rx.ctl) = (bound.udp, bound.http);
        rx.granted = granted_buffer(bound.http)?;
        Ok(rx)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Datagrams the receiver has counted since it started.
    fn received(&self) -> Result<u64, String> {
        match self.kind {
            Kind::Bare => {
                let mut s = TcpStream::connect_timeout(&self.ctl, Duration::from_secs(2))
                    .map_err(|e| format!("cannot ask the bare receiver: {e}"))?;
                let mut text = String::new();
                s.read_to_string(&mut text)
                    .map_err(|e| format!("cannot ask the bare receiver: {e}"))?;
                text.split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("the bare receiver answered {text:?}"))
            }
            Kind::Poolwatch => Ok(scrape(self.ctl)?.0),
        }
    }

    fn socket(&self) -> Result<UdpRow, String> {
        udp_row(self.udp)
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Wait until the socket is empty, without asking the receiver anything.
    fn wait_empty(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.socket()?.rx_queue != 0 {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not empty its socket within 10 s",
                    self.kind.name()
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Wait until the socket is empty and the count has stopped moving;
    /// returns the count.
    fn settle(&self) -> Result<u64, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        loop {
            if self.socket()?.rx_queue == 0 {
                let n = self.received()?;
                if last == Some(n) {
                    return Ok(n);
                }
                last = Some(n);
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not settle within 10 s", self.kind.name()));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for a clean exit; the bare receiver is just
    /// killed, it has nothing to finish.
    fn stop(mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if self.kind == Kind::Bare {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        support::terminate(child, Duration::from_secs(15))
    }
}

impl Drop for Rx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A receiver left stopped would ignore the kill until continued.
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Names a poolwatch binary to measure instead of this tree's.
const POOLWATCH_VAR: &str = "LOAD_BENCH_POOLWATCH";

/// A private copy of the poolwatch binary, removed when dropped.
struct Binary(PathBuf);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Build the receiver (a no-op when it is up to date) and copy it aside, so
/// that every run measures the same binary even if a build running alongside
/// replaces `target/release/poolwatch` meanwhile.
fn build_poolwatch() -> Result<Binary, String> {
    // A binary built elsewhere (another commit, to compare), else this
    // tree's release build.
    let built = match std::env::var_os(POOLWATCH_VAR) {
        Some(path) => PathBuf::from(path),
        None => support::release_poolwatch()?,
    };
    let copy = std::env::temp_dir().join(format!("poolwatch-load-{}", std::process::id()));
    std::fs::copy(&built, &copy)
        .map_err(|e| format!("cannot copy {} aside: {e}", built.display()))?;
    Ok(Binary(copy))
}

/// The receive buffer poolwatch was granted, from `/state`.
fn granted_buffer(http: SocketAddr) -> Result<u64, String> {
    let (code, body) = get(http, "/state").map_err(|e| format!("cannot read /state: {e}"))?;
    if code != 200 {
        return Err(format!("{http}/state answered {code}"));
    }
    let key = "\"granted_buffer_bytes\":";
    body.find(key)
        .map(|i| &body[i + key.len()..])
        .and_then(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .ok_or_else(|| "granted_buffer_bytes missing from /state".into())
}

/// One socket's line of `/proc/net/udp`.
#[derive(Debug, Clone, Copy, Default)]
struct UdpRow {
    /// Bytes queued, as the kernel accounts them (each datagram's buffer,
    /// not only its payload).
    rx_queue: u64,
    drops: u64,
}

/// Find the socket bound to `addr` (IPv4) in `/proc/net/udp`.
fn udp_row(addr: SocketAddr) -> Result<UdpRow, String> {
    let SocketAddr::V4(v4) = addr else {
        return Err(format!("{addr}: only IPv4 receivers are measured"));
    };
    // The kernel prints the address as the in-memory u32, the port in host
    // order.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp")
        .map_err(|e| format!("cannot read /proc/net/udp: {e}"))?;
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 13 || cols[1] != local {
                return None;
            }
            Some(UdpRow {
                rx_queue: cols[4]
                    .split_once(':')
                    .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())?,
                drops: cols[12].parse().ok()?,
            })
        })
        .ok_or_else(|| format!("{addr} is not in /proc/net/udp"))
}

/// CPU time of each thread of `pid`, in nanoseconds: the scheduler's own
/// runtime (`/proc/PID/task/TID/schedstat`), user and system together.
/// Exact, where the clock ticks of `/proc/PID/stat` (10 ms) are too coarse
/// for the few milliseconds a receiver spends at 1 k/s.
fn thread_cpu_ns(pid: i32) -> Result<HashMap<u32, u64>, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    Ok(tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns = text.split_whitespace().next()?.parse().ok()?;
            Some((tid, ns))
        })
        .collect())
}

/// CPU seconds a process spent between two [`thread_cpu_ns`] readings:
/// a thread in both counts its difference, a thread new since counts
/// whole. A thread that ended in between (tokio retires idle blocking
/// threads) loses only what it did in between, which for those is nothing
/// of the receive path.
fn cpu_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> f64 {
    cpu_of(before, after, |_| true)
}

/// [`cpu_between`] for the threads whose id passes `which`.
fn cpu_of(
    before: &HashMap<u32, u64>,
    after: &HashMap<u32, u64>,
    which: impl Fn(u32) -> bool,
) -> f64 {
    after
        .iter()
        .filter(|(tid, _)| which(**tid))
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum::<u64>() as f64
        / 1e9
}

/// Whether thread `tid` of `pid` is one of poolwatch's receive threads or
/// parse workers (named `recv LISTENER` and `parse LISTENER`); the others
/// are the runtime's (HTTP, the alert loop's tick, metrics upkeep), whose
/// work does not depend on the datagram rate. A thread gone by now counts
/// as not receiving.
fn receives(pid: i32, tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .is_ok_and(|name| name.starts_with("recv ") || name.starts_with("parse "))
}

/// VmHWM of `pid`, in KiB.
fn peak_rss_kib(pid: i32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("VmHWM missing from {path}"))
}

/// Start VmHWM again from the current RSS, so that the peak of one send is
/// not the peak of everything before it. Needs Linux 4.0 and permission to
/// write the child's `clear_refs`; without them the peak is the lifetime's.
fn reset_peak_rss(pid: i32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---------------------------------------------------------------------------
// Measurements.

fn send(
    target: SocketAddr,
    rate: Option<u64>,
    shape: Shape,
    stop: Stop,
    distinct: u32,
) -> Result<Report, String> {
    let (count, duration) = match stop {
        Stop::Count(n) => (Some(n), None),
        Stop::After(d) => (None, Some(d)),
    };
    let report = loadgen::run(&LoadgenArgs {
        target: target.to_string(),
        rate,
        burst: match shape {
            Shape::Smooth => None,
            Shape::Burst(n) => Some(n as u64),
        },
        count,
        duration,
        distinct,
        ..LoadgenArgs::default()
    })?;
    if report.refused > 0 {
        return Err(format!("{target} refused {} sends", report.refused));
    }
    Ok(report)
}

/// One send at a fixed offered rate.
#[derive(Debug, Clone, Copy)]
struct Trial {
    sent: u64,
    send_rate: f64,
    received: u64,
    drops: u64,
    peak_backlog: u64,
    peak_rss_kib: u64,
}

impl Trial {
    fn loss(&self) -> f64 {
        self.sent.saturating_sub(self.received) as f64 / self.sent.max(1) as f64
    }
}

fn trial(rx: &Rx, rate: u64, secs: Duration) -> Result<Trial, String> {
    let c0 = rx.settle()?;
    let d0 = rx.socket()?.drops;
    reset_peak_rss(rx.pid());
    let done = AtomicBool::new(false);
    let (report, peak, c1) = thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                if let Ok(row) = rx.socket() {
                    peak = peak.max(row.rx_queue);
                }
                thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        let report = send(rx.udp, Some(rate), Shape::Smooth, Stop::After(secs), 4096);
        let c1 = rx.settle();
        done.store(true, Ordering::Relaxed);
        (report, sampler.join().unwrap_or(0), c1)
    });
    let (report, c1) = (report?, c1?);
    Ok(Trial {
        sent: report.sent,
        send_rate: report.rate,
        received: c1 - c0,
        drops: rx.socket()?.drops - d0,
        peak_backlog: peak,
        peak_rss_kib: peak_rss_kib(rx.pid())?,
    })
}

/// What the receiver spent on a send at a fixed rate.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    secs: f64,
    per_million: f64,
    /// Of `per_million`, what threads other than the receive threads and
    /// parse workers spent: poolwatch's fixed ticks, at this rate. Zero for
    /// the bare loop, whose threads other than the loop sleep.
    ticks_per_million: f64,
    /// Datagrams per voluntary context switch: how many each wake-up of
    /// the receiver found queued, which is what a batched receive saves on.
    per_wakeup: f64,
}

/// CPU seconds per million datagrams received at `rate`, sent as `shape`.
fn cpu_per_million(rx: &Rx, rate: u64, shape: Shape, secs: Duration) -> Result<Cpu, String> {
    let c0 = rx.settle()?;
    let d0 = rx.socket()?.drops;
    // Let the count's own request finish before the clock starts.
    thread::sleep(SETTLE_PAUSE);
    let t0 = thread_cpu_ns(rx.pid())?;
    let w0 = wakeups(rx.pid())?;
    send(rx.udp, Some(rate), shape, Stop::After(secs), 4096)?;
    // Stop the clock once the socket is empty and the last batch is
    // parsed, before asking for the count: a scrape of /metrics costs
    // poolwatch a few milliseconds, which at 1 k/s would be a visible
    // share of what is measured.
    rx.wait_empty()?;
    thread::sleep(SETTLE_PAUSE);
    let t1 = thread_cpu_ns(rx.pid())?;
    let w1 = wakeups(rx.pid())?;
    let c1 = rx.settle()?;
    let drops = rx.socket()?.drops - d0;
    if drops > 0 {
        println!(
            "      {} dropped {drops} datagrams at {}: the CPU figure is per datagram received",
            rx.kind.name(),
            krate(rate as f64)
        );
    }
    let n = (c1 - c0).max(1) as f64;
    let secs = cpu_between(&t0, &t1);
    let ticks = match rx.kind {
        Kind::Bare => 0.0,
        Kind::Poolwatch => cpu_of(&t0, &t1, |tid| !receives(rx.pid(), tid)),
    };
    Ok(Cpu {
        secs,
        per_million: secs / n * 1e6,
        ticks_per_million: ticks / n * 1e6,
        per_wakeup: n / (w1 - w0).max(1) as f64,
    })
}

/// A pause that lets a receiver finish what it was doing (the last batch,
/// an HTTP request) before its CPU time is read.
const SETTLE_PAUSE: Duration = Duration::from_millis(100);

/// CPU seconds per second of a receiver that receives nothing: what its
/// timers and periodic work cost, whatever the traffic.
fn idle_cpu(rx: &Rx, secs: Duration) -> Result<f64, String> {
    rx.settle()?;
    thread::sleep(SETTLE_PAUSE);
    let t0 = thread_cpu_ns(rx.pid())?;
    let start = Instant::now();
    thread::sleep(secs);
    let t1 = thread_cpu_ns(rx.pid())?;
    Ok(cpu_between(&t0, &t1) / start.elapsed().as_secs_f64())
}

/// Voluntary context switches of every thread of `pid`: each is a thread
/// going to sleep, mostly the receive thread waiting for datagrams.
fn wakeups(pid: i32) -> Result<u64, String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("cannot list the threads of {pid}: {e}"))?;
    Ok(tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum())
}

/// One fill-and-drain round.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Everything that was queued.
    datagrams: u64,
    /// From SIGCONT to an empty queue.
    after_continue: f64,
    /// Datagrams taken between the first and last samples of the queue
    /// draining...
    timed: u64,
    /// ...and the time between them.
    secs: f64,
    queued_bytes: u64,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.timed as f64 / self.secs.max(1e-9)
    }
}

fn drain(rx: &Rx) -> Result<Drain, String> {
    let c0 = rx.settle()?;
    let d0 = rx.socket()?.drops;
    rx.signal(libc::SIGSTOP);
    wait_stopped(rx.pid())?;
    // Fill in small bursts until the kernel starts dropping: the buffer is
    // then as full as it gets.
    let mut queued = 0;
    let mut full = false;
    for _ in 0..1000 {
        send(rx.udp, None, Shape::Smooth, Stop::Count(512), 256)?;
        let row = rx.socket()?;
        queued = row.rx_queue;
        if row.drops > d0 {
            full = true;
            break;
        }
    }
    let start = Instant::now();
    rx.signal(libc::SIGCONT);
    if !full {
        return Err(format!("{}'s socket never filled", rx.kind.name()));
    }
    // The queue is sampled as it drains, and the rate taken between the
    // first and the last sample that saw it neither full nor empty. Not from
    // SIGCONT: how long a stopped process takes to be scheduled again is the
    // machine's business, not the receiver's, and on a shared virtual
    // machine it can be as long as the drain itself. Not to the moment it
    // empties either, which would need polling so tight that the poller
    // takes half a core, possibly the receiver's.
    let deadline = start + Duration::from_secs(10);
    let mut draining: Vec<(Instant, u64)> = Vec::new();
    let empty = loop {
        let before = Instant::now();
        let q = rx.socket()?.rx_queue;
        let now = Instant::now();
        if q == 0 {
            break now;
        }
        if q < queued {
            // The table is read over a few microseconds; the middle of the
            // read is when the value was most likely taken.
            draining.push((before + (now - before) / 2, q));
        }
        if now > deadline {
            return Err(format!("{} did not drain within 10 s", rx.kind.name()));
        }
        thread::sleep(Duration::from_micros(500));
    };
    let c1 = rx.settle()?;
    let datagrams = c1 - c0;
    let after_continue = empty.duration_since(start).as_secs_f64();
    // Datagrams of one size take the same room in the queue, so queued
    // bytes convert to datagrams.
    let per_byte = datagrams as f64 / queued.max(1) as f64;
    let (timed, secs) = match (draining.first(), draining.last()) {
        (Some(&(t0, q0)), Some(&(t1, q1))) if t1 > t0 => (
            ((q0 - q1) as f64 * per_byte).round() as u64,
            (t1 - t0).as_secs_f64(),
        ),
        // Too quick to be seen draining: all of it since SIGCONT.
        _ => (datagrams, after_continue),
    };
    Ok(Drain {
        datagrams,
        after_continue,
        timed,
        secs,
        queued_bytes: queued,
    })
}

/// Wait until every thread of `pid` is stopped, so that the fill starts
/// from a receiver that takes nothing more.
fn wait_stopped(pid: i32) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| format!("cannot list the threads of {pid}: {e}"))?;
        let all = tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('T'))
                })
                .unwrap_or(true)
        });
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{pid} did not stop within 5 s of SIGSTOP"));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// The failover notification.

/// A webhook POST as received.
struct Post {
    at: Instant,
    path: String,
    body: String,
}

/// A local stand-in for Slack's incoming webhook: answers every POST with
/// `200 ok` and remembers when it arrived.
struct Hooks {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Hooks {
    fn start() -> Result<Hooks, String> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| format!("cannot start the webhook server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let posts = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&posts);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let posts = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = serve_hook(conn, &posts);
                });
            }
        });
        Ok(Hooks { addr, posts })
    }

    /// When the first POST to `path` mentioning a failover arrived.
    fn failover_at(&self, path: &str) -> Option<Instant> {
        let posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        posts
            .iter()
            .filter(|p| p.path == path && p.body.contains("Failover"))
            .map(|p| p.at)
            .min()
    }
}

fn serve_hook(conn: TcpStream, posts: &Mutex<Vec<Post>>) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    // Keep-alive: one request after another until the client closes.
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let at = Instant::now();
        posts.lock().unwrap_or_else(|p| p.into_inner()).push(Post {
            at,
            path,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
        )?;
    }
}

/// Steady traffic, then traffic in which every request fails on blue and is
/// answered by green; returns how long after the first failing request was
/// sent the failover notification arrived.
///
/// poolwatch judges its traffic on a fixed tick, so the latency depends on
/// where in the tick the failover starts. Started at the same offset from
/// poolwatch's start every run, it would land at the same point of the tick
/// every time; `phase` (0 to 1, a different one per run) spreads the runs
/// over the tick instead.
fn failover(
    bin: &Path,
    buffer: u64,
    rate: u64,
    shape: Shape,
    hooks: &Hooks,
    path: &str,
    phase: f64,
) -> Result<Option<Duration>, String> {
    // The failing phase is its own send, built before either send starts,
    // so that its first datagram is the first failing request (the load
    // generator's failover scenario would open with its steady tenth) and
    // follows the steady traffic without a gap.
    let mut g = Generator::new(Scenario::Failover, 2);
    let mut traffic = Traffic {
        before: Messages::Fixed((0..4096).map(|_| g.line(1.0)).collect()),
        after: None,
        counter: 0,
    };
    let rx = Rx::start_poolwatch(bin, buffer, Some(format!("http://{}{path}", hooks.addr)))?;
    let mut sender = Sender::connect(rx.udp).map_err(|e| format!("cannot send: {e}"))?;
    let steady = STEADY_SECS + TICK.mul_f64(phase);
    send(rx.udp, Some(rate), shape, Stop::After(steady), 4096)?;
    let t0 = Instant::now();
    let sent = sender
        .run(&mut traffic, Stop::After(FAILING_SECS), Some(rate), shape)
        .map_err(|e| format!("sending failed: {e}"))?;
    // Delivery of a notification is retried for a while; give it a moment
    // beyond the send before calling it missing.
    let deadline = Instant::now() + Duration::from_secs(2);
    let at = loop {
        if let Some(at) = hooks.failover_at(path) {
            break Some(at);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let drops = rx.socket()?.drops;
    rx.stop()?;
    if drops > 0 || sent.refused > 0 {
        println!(
            "      poolwatch dropped {drops} datagrams ({} sends refused) during the failover",
            sent.refused
        );
    }
    Ok(at.map(|at| at.saturating_duration_since(t0)))
}

// ---------------------------------------------------------------------------
// The runs.

/// Everything one run measured for one receiver.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    lossless: Option<(u64, Trial)>,
    /// Lossless at the sender's flat-out rate: the receiver's own limit is
    /// higher than this bench can offer.
    sender_bound: bool,
    /// At each of [`loads`].
    cpu: [Option<Cpu>; LOADS],
    /// CPU seconds per second with no traffic.
    idle: f64,
    drain_rate: f64,
}

struct RunResult {
    sender_max: f64,
    bare: Figures,
    poolwatch: Figures,
    /// With the smooth sender, then the bursty one.
    failover: [Option<Duration>; 2],
}

const LOADS: usize = 4;

/// The CPU measurements: rate and the sender's shape. The first two are the
/// 100 k/s targets, the last two the low rates.
fn loads(s: &Settings) -> [(u64, Shape); LOADS] {
    [
        (s.cpu_rate, Shape::Smooth),
        (s.cpu_rate, Shape::Burst(s.burst as usize)),
        (10_000, Shape::Smooth),
        (1_000, Shape::Smooth),
    ]
}

fn load_name(rate: u64, shape: Shape) -> String {
    match shape {
        Shape::Smooth => format!("{}, smooth", krate(rate as f64)),
        Shape::Burst(n) => format!("{}, bursts of {n}", krate(rate as f64)),
    }
}

/// Per million datagrams at `rate`, the CPU a receiver burning `idle`
/// CPU seconds per second spends whatever the traffic.
fn tick_per_million(idle: f64, rate: u64) -> f64 {
    idle / rate as f64 * 1e6
}

fn run() -> Result<(), String> {
    let s = Settings::from_env()?;
    let binary = build_poolwatch()?;
    let bin = binary.0.as_path();
    let hooks = Hooks::start()?;
    let started = Instant::now();
    println!(
        "load: {} runs; sends of {} s; lossless search in steps of {} %; CPU at {}; \
         receive buffer {} bytes for both receivers; bare loop: {}",
        s.runs,
        s.secs.as_secs(),
        s.step_pct,
        krate(s.cpu_rate as f64),
        s.recv_buffer,
        BareLoop::from_env()?.name()
    );
    let mut results = Vec::new();
    for run in 1..=s.runs {
        results.push(one_run(&s, bin, &hooks, run, started)?);
    }
    print_summary(&s, &results);
    if s.perf {
        perf_profile(&s, bin)?;
    }
    println!("load: took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn one_run(
    s: &Settings,
    bin: &Path,
    hooks: &Hooks,
    run: usize,
    started: Instant,
) -> Result<RunResult, String> {
    let bare = Rx::start_bare(s.recv_buffer)?;
    let pw = Rx::start_poolwatch(bin, s.recv_buffer, None)?;
    // Alternate who goes first, so that a drift within a run does not
    // always favour the same receiver.
    let order: [&Rx; 2] = if run % 2 == 1 {
        [&bare, &pw]
    } else {
        [&pw, &bare]
    };
    println!(
        "run {run} ({:.0} s in): bare pid {} granted {} bytes, poolwatch pid {} granted {} bytes",
        started.elapsed().as_secs_f64(),
        bare.pid(),
        bare.granted,
        pw.pid(),
        pw.granted
    );
    if bare.granted != pw.granted {
        return Err(format!(
            "the receivers were granted different buffers ({} and {})",
            bare.granted, pw.granted
        ));
    }

    let max = send(
        bare.udp,
        None,
        Shape::Smooth,
        Stop::After(MAX_RATE_SECS),
        4096,
    )?;
    bare.settle()?;
    println!(
        "  sender flat out to the bare loop: {} ({} datagrams in {:.2} s)",
        krate(max.rate),
        max.sent,
        max.seconds
    );

    let mut figures = [Figures::default(), Figures::default()];
    let index = |rx: &Rx| rx.kind as usize;
    println!("  lossless rate, {} s per step:", s.secs.as_secs());
    let mut pct: u64 = 100;
    while pct > 0 && order.iter().any(|rx| figures[index(rx)].lossless.is_none()) {
        let rate = (max.rate * pct as f64 / 100.0) as u64;
        for rx in order {
            if figures[index(rx)].lossless.is_some() {
                continue;
            }
            let t = trial(rx, rate, s.secs)?;
            println!(
                "    {:<9} {:>3} % = {:>9}: sent {} ({}), received {}, loss {:.3} %, \
                 kernel drops {}, peak backlog {}",
                rx.kind.name(),
                pct,
                krate(rate as f64),
                t.sent,
                krate(t.send_rate),
                t.received,
                t.loss() * 100.0,
                t.drops,
                kib(t.peak_backlog)
            );
            if t.loss() < LOSS_LIMIT {
                figures[index(rx)].lossless = Some((rate, t));
                figures[index(rx)].sender_bound = pct == 100;
            }
        }
        pct = pct.saturating_sub(s.step_pct);
    }

    println!("  CPU, {} s per load:", s.secs.as_secs());
    for (k, (rate, shape)) in loads(s).into_iter().enumerate() {
        for rx in order {
            let cpu = cpu_per_million(rx, rate, shape, s.secs)?;
            println!(
                "    {:<9} {:<22} {:.3} CPU s, {:.3} s per million, {:.1} datagrams per wake-up",
                rx.kind.name(),
                load_name(rate, shape),
                cpu.secs,
                cpu.per_million,
                cpu.per_wakeup
            );
            figures[index(rx)].cpu[k] = Some(cpu);
        }
    }
    for rx in order {
        let idle = idle_cpu(rx, s.idle_secs)?;
        println!(
            "    {:<9} idle for {} s: {:.3} ms of CPU per second",
            rx.kind.name(),
            s.idle_secs.as_secs(),
            idle * 1000.0
        );
        figures[index(rx)].idle = idle;
    }

    println!("  drain after a full socket buffer ({} rounds):", s.drains);
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..s.drains {
        for rx in order {
            let d = drain(rx)?;
            let rate = d.rate();
            println!(
                "    {:<9} {} queued ({}), empty {:.1} ms after SIGCONT; \
                 seen draining {} in {:.1} ms: {}",
                rx.kind.name(),
                d.datagrams,
                kib(d.queued_bytes),
                d.after_continue * 1000.0,
                d.timed,
                d.secs * 1000.0,
                krate(rate)
            );
            rates[index(rx)].push(rate);
        }
    }
    for rx in order {
        figures[index(rx)].drain_rate = median(&rates[index(rx)]);
    }
    bare.stop()?;
    pw.stop()?;

    // 80 % of what poolwatch took without loss; if it lost datagrams at every
    // step, 80 % of the lowest step.
    let base = figures[Kind::Poolwatch as usize]
        .lossless
        .map_or(max.rate * s.step_pct as f64 / 100.0, |(r, _)| r as f64);
    let rate = (base * 0.8) as u64;
    let phase = (run - 1) as f64 / s.runs as f64;
    let mut latencies = [None, None];
    let shapes = [Shape::Smooth, Shape::Burst(s.burst as usize)];
    for (k, shape) in shapes.into_iter().enumerate() {
        let path = format!("/run{run}-{k}");
        let latency = failover(bin, s.recv_buffer, rate, shape, hooks, &path, phase)?;
        let sender = load_name(rate, shape);
        match latency {
            Some(d) => println!(
                "  failover at {sender}, {:.0} % into poolwatch's tick: notified {:.0} ms after \
                 the first failing request",
                phase * 100.0,
                d.as_secs_f64() * 1000.0
            ),
            None => println!(
                "  failover at {sender}: no notification within {} s",
                (FAILING_SECS + Duration::from_secs(2)).as_secs()
            ),
        }
        latencies[k] = latency;
    }
    Ok(RunResult {
        sender_max: max.rate,
        bare: figures[Kind::Bare as usize],
        poolwatch: figures[Kind::Poolwatch as usize],
        failover: latencies,
    })
}

/// The targets the summary checks.
const CPU_LIMIT: f64 = 1.3;
const DRAIN_LIMIT: f64 = 0.75;

fn print_summary(s: &Settings, results: &[RunResult]) {
    let med = |f: &dyn Fn(&RunResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
    // Each ratio is taken within a run, against the bare loop of that run,
    // and then the median of those is shown.
    let ratio_of = |f: &dyn Fn(&RunResult) -> Option<f64>| {
        let r: Vec<f64> = results.iter().filter_map(f).collect();
        (!r.is_empty()).then(|| median(&r))
    };
    let ratio = |f: &dyn Fn(&Figures) -> f64| {
        ratio_of(&|r| (f(&r.bare) > 0.0).then(|| f(&r.poolwatch) / f(&r.bare)))
    };
    let show_ratio = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.2}"));
    let row = |name: &str, f: &dyn Fn(&Figures) -> f64, show: &dyn Fn(f64) -> String| {
        println!(
            "{name:<40}{:<12}{:<12}{}",
            show(med(&|r| f(&r.bare))),
            show(med(&|r| f(&r.poolwatch))),
            show_ratio(ratio(f))
        );
    };
    let lossless = |f: &Figures| f.lossless.map_or(0.0, |(r, _)| r as f64);
    let rss = |f: &Figures| f.lossless.map_or(0.0, |(_, t)| t.peak_rss_kib as f64);
    let backlog = |f: &Figures| f.lossless.map_or(0.0, |(_, t)| t.peak_backlog as f64);
    let cpu = |k: usize| move |f: &Figures| f.cpu[k].map_or(0.0, |c| c.per_million);
    let per_wakeup = |k: usize| move |f: &Figures| f.cpu[k].map_or(0.0, |c| c.per_wakeup);
    let loads = loads(s);
    // poolwatch's fixed tick cost at load `k`, per million datagrams:
    // what its threads other than the receive path spent meanwhile (the
    // alert loop's tick with full windows costs more than with the empty
    // ones of the idle measurement).
    let ticks = |r: &RunResult, k: usize| r.poolwatch.cpu[k].map_or(0.0, |c| c.ticks_per_million);
    // The same at `rate`, from the idle measurement.
    let idle_ticks = |r: &RunResult, rate: u64| {
        tick_per_million((r.poolwatch.idle - r.bare.idle).max(0.0), rate)
    };
    // poolwatch's CPU less its fixed tick cost, against the bare loop's.
    let less_ticks = |k: usize| {
        ratio_of(&|r| {
            let (b, p) = (cpu(k)(&r.bare), cpu(k)(&r.poolwatch));
            (b > 0.0).then(|| (p - ticks(r, k)) / b)
        })
    };

    // A receiver that kept up with the sender flat out has a limit this
    // bench cannot reach: its rate is a lower bound, and a ratio of lower
    // bounds says nothing.
    let bound = |f: &dyn Fn(&RunResult) -> &Figures| results.iter().all(|r| f(r).sender_bound);
    let (bare_bound, pw_bound) = (bound(&|r| &r.bare), bound(&|r| &r.poolwatch));
    let at_least = |b: bool, v: f64| format!("{}{}", if b { ">=" } else { "" }, krate(v));
    println!();
    println!(
        "sender flat out to the bare loop: {} (median)",
        krate(med(&|r| r.sender_max))
    );
    println!(
        "{:<40}{:<12}{:<12}ratio",
        format!("load: median of {} runs", results.len()),
        "bare",
        "poolwatch"
    );
    println!(
        "{:<40}{:<12}{:<12}{}",
        "lossless rate (<0.1 % loss)",
        at_least(bare_bound, med(&|r| lossless(&r.bare))),
        at_least(pw_bound, med(&|r| lossless(&r.poolwatch))),
        // Against a baseline the sender could not reach, there is no ratio.
        if bare_bound {
            "n/a".to_string()
        } else {
            show_ratio(ratio(&lossless))
        }
    );
    for (k, (rate, shape)) in loads.iter().enumerate() {
        row(
            &format!("CPU s per million, {}", load_name(*rate, *shape)),
            &cpu(k),
            &|v| format!("{v:.3}"),
        );
    }
    for (k, (rate, shape)) in loads.iter().enumerate() {
        println!(
            "{:<40}{:<12}{:.3}",
            format!("  of which ticks, {}", load_name(*rate, *shape)),
            "",
            med(&|r| ticks(r, k))
        );
    }
    row(
        "idle CPU (ms per s, no traffic)",
        &|f| f.idle * 1000.0,
        &|v| format!("{v:.3}"),
    );
    for (k, (rate, shape)) in loads.iter().enumerate().take(2) {
        row(
            &format!("datagrams per wake-up, {}", load_name(*rate, *shape)),
            &per_wakeup(k),
            &|v| format!("{v:.1}"),
        );
    }
    row("drain rate", &|f| f.drain_rate, &|v| krate(v));
    row("peak RSS", &rss, &|v| format!("{:.1} MiB", v / 1024.0));
    row("peak socket backlog", &backlog, &|v| kib(v as u64));
    let names = ["smooth", "bursty"];
    let mut worst = Duration::ZERO;
    for (k, name) in names.iter().enumerate() {
        let latencies: Vec<Option<Duration>> = results.iter().map(|r| r.failover[k]).collect();
        let each = latencies
            .iter()
            .map(|l| {
                l.map_or("none".to_string(), |d| {
                    format!("{:.0}", d.as_secs_f64() * 1000.0)
                })
            })
            .collect::<Vec<_>>()
            .join(", ");
        // A run without a notification counts as over the limit.
        worst = latencies
            .iter()
            .map(|l| l.unwrap_or(Duration::MAX))
            .fold(worst, Duration::max);
        let ms: Vec<f64> = latencies
            .iter()
            .map(|l| l.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1000.0))
            .collect();
        println!(
            "failover notification at 80 %, {name} sender: {:.0} ms after the first failing \
             request (runs: {each} ms)",
            median(&ms)
        );
    }
    println!(
        "ratios: poolwatch / bare within each run, median over runs. Backlog: the kernel's \
         accounting of queued buffers, not payload."
    );
    if bare_bound || pw_bound {
        println!(
            ">=: lossless at the sender's flat-out rate in every run, so the receiver's own \
             limit is higher; the drain rate measures it."
        );
    }
    let pw_lossy = results.iter().filter(|r| !r.poolwatch.sender_bound).count();
    if bare_bound && pw_lossy > 0 {
        println!(
            "poolwatch lost more than 0.1 % at the sender's flat-out rate in {pw_lossy} of {} \
             runs, where the bare loop did not.",
            results.len()
        );
    }

    // The targets, each with this run's figure.
    println!();
    println!("targets:");
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    for (k, (rate, shape)) in loads.iter().enumerate() {
        if k < 2 {
            let r = ratio(&cpu(k));
            println!(
                "  CPU at {} <= {CPU_LIMIT}x the bare loop's: {}  {}",
                load_name(*rate, *shape),
                show_ratio(r),
                verdict(r.is_some_and(|r| r <= CPU_LIMIT))
            );
        } else {
            let r = less_ticks(k);
            println!(
                "  CPU at {} <= {CPU_LIMIT}x the bare loop's + the fixed tick cost ({:.3} s per \
                 million meanwhile; {:.3} idle): {} without it ({} with it)  {}",
                load_name(*rate, *shape),
                med(&|r| ticks(r, k)),
                med(&|r| idle_ticks(r, *rate)),
                show_ratio(r),
                show_ratio(ratio(&cpu(k))),
                verdict(r.is_some_and(|r| r <= CPU_LIMIT))
            );
        }
    }
    let drain = ratio(&|f| f.drain_rate);
    println!(
        "  drain rate >= {DRAIN_LIMIT}x the bare loop's: {}  {}",
        show_ratio(drain),
        verdict(drain.is_some_and(|r| r >= DRAIN_LIMIT))
    );
    println!(
        "  lossless at the sender's flat-out rate, every run: {}",
        verdict(pw_lossy == 0)
    );
    println!(
        "  failover notice within {} s, both senders, every run: {}",
        FAILOVER_LIMIT.as_secs(),
        verdict(worst < FAILOVER_LIMIT)
    );
}

/// Where poolwatch spends its CPU at the CPU measurement's rate.
fn perf_profile(s: &Settings, bin: &Path) -> Result<(), String> {
    let rx = Rx::start_poolwatch(bin, s.recv_buffer, None)?;
    let data = std::env::temp_dir().join(format!("poolwatch-load-{}.perf", std::process::id()));
    let secs = s.secs.as_secs().to_string();
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-g", "-F", "999", "-p"])
        .arg(rx.pid().to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &secs])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run perf: {e}"))?;
    // perf needs a moment to attach before the send is worth sampling.
    thread::sleep(Duration::from_millis(500));
    send(
        rx.udp,
        Some(s.cpu_rate),
        Shape::Smooth,
        Stop::After(s.secs),
        4096,
    )?;
    let _ = perf.wait();
    rx.stop()?;
    let report = |sort: &str| -> Result<Vec<String>, String> {
        let out = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none"])
            .args(["--sort", sort, "--percent-limit", "1", "-i"])
            .arg(&data)
            .output()
            .map_err(|e| format!("cannot run perf report: {e}"))?;
        // Only the sample lines, which start with their percentage; perf
        // pads them with columns this report has no use for.
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.trim_start()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
            .map(|l| l.trim().trim_end_matches(['-', ' ']).to_string())
            .collect())
    };
    let (by_thread, by_dso, by_symbol) = (report("comm"), report("dso"), report("dso,symbol"));
    let _ = std::fs::remove_file(&data);
    println!();
    println!(
        "perf: poolwatch at {}, time by thread:",
        krate(s.cpu_rate as f64)
    );
    for line in by_thread? {
        println!("  {line}");
    }
    println!("perf: by object:");
    for line in by_dso? {
        println!("  {line}");
    }
    println!("perf: by symbol (>= 1 %):");
    for line in by_symbol?.into_iter().take(25) {
        println!("  {line}");
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn krate(per_sec: f64) -> String {
    format!("{:.0}k/s", per_sec / 1000.0)
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}
