//! Hostile HTTP peers against the real binary: connections held open or
//! half-sent under a low file limit, silent and idle connections,
//! unauthenticated bodies, an IPv4 client of a `[::]` listener, and a FIFO
//! as the maintenance flag file. Each of these once starved or hung the
//! receiver; each test fails on that code.
//!
//! The receiver is started here rather than through `common::poolwatch`,
//! because some tests need it under `prlimit` and on a `[::]` listener: it
//! binds port 0 everywhere and the addresses are read back from its JSON
//! log.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::poolwatch::{Metrics, poolwatch_bin};
use common::webhook::Webhook;
use common::{connect, try_http_request, unique_temp_path, wait_until};

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

/// Peak RSS allowed under every attack here.
const MAX_RSS_KIB: u64 = 64 * 1024;

/// Generous bound on waits that only a failure reaches.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running receiver, stopped with SIGTERM on drop.
struct Receiver {
    child: Child,
    /// `127.0.0.1:PORT`, whatever address it listens on.
    http: String,
    udp: String,
    log: PathBuf,
}

impl Receiver {
    /// Start with `env`, HTTP on `http_listen` (port 0), and under
    /// `prlimit --nofile=N:N` when `nofile` is given.
    fn start(http_listen: &str, nofile: Option<u64>, env: &[(&str, &str)]) -> Receiver {
        let log = unique_temp_path("poolwatch-hostile-http-log");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(poolwatch_bin());
                c
            }
            None => Command::new(poolwatch_bin()),
        };
        cmd.args(["--udp-listen", "127.0.0.1:0", "--http-listen", http_listen])
            .current_dir(std::env::temp_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"));
        let child = cmd.spawn().expect("start poolwatch");
        let mut r = Receiver {
            child,
            http: String::new(),
            udp: String::new(),
            log,
        };
        let found = wait_until(PATIENCE, || {
            let log = r.log();
            let http_port = log_field(&log, "serving /metrics, /healthz and /state", "http")
                .and_then(|a| a.rsplit_once(':').map(|(_, p)| p.to_string()));
            let udp = log_field(&log, "receiving", "listener")
                .and_then(|l| l.strip_prefix("udp://").map(str::to_string));
            match (http_port, udp) {
                (Some(p), Some(u)) => {
                    r.http = format!("127.0.0.1:{p}");
                    r.udp = u;
                    true
                }
                _ => false,
            }
        });
        assert!(found, "poolwatch never said where it listens:\n{}", r.log());
        let ready = wait_until(PATIENCE, || {
            try_http_request("GET", &r.http, "/healthz", b"", Duration::from_secs(2))
                .is_ok_and(|x| x.0 == 200)
        });
        assert!(ready, "poolwatch did not become ready:\n{}", r.log());
        // prlimit execs the command: the child is poolwatch itself.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", r.pid())).unwrap();
        assert_eq!(comm.trim(), "poolwatch");
        r
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = try_http_request("GET", &self.http, path, b"", PATIENCE)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (status, body)
    }

    fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    fn state(&self) -> serde_json::Value {
        let (status, body) = self.get("/state");
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("/state is JSON")
    }

    fn send(&self, datagrams: &[Vec<u8>]) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(&self.udp).unwrap();
        for d in datagrams {
            s.send(d).unwrap();
        }
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// SIGTERM and wait; the exit code, `None` if it did not exit.
    fn stop(&mut self) -> Option<i32> {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `field` of the first JSON log line whose message is `message`.
fn log_field(log: &str, message: &str, field: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .and_then(|v| v["fields"][field].as_str().map(str::to_string))
}

/// One access line as nginx logs it.
fn line(status: u16, ups: &str, addrs: &str, pool: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let time = poolwatch::logtime::format_rfc3339(now).replace('Z', "+00:00");
    format!(
        r#"<190>Nov  5 09:07:03 web nginx: {{"time":"{time}","remote_addr":"10.0.0.9","request":"GET / HTTP/1.1","method":"GET","uri":"/","status":{status},"body_bytes_sent":5,"request_time":0.004,"upstream_status":"{ups}","upstream_addr":"{addrs}","upstream_response_time":"0.004","pool":"{pool}","release":"r1","request_id":"0123456789abcdef0123456789abcdef","http_user_agent":"curl/8.0"}}"#
    )
    .into_bytes()
}

fn blue_ok() -> Vec<u8> {
    line(200, "200", BLUE, "blue")
}

/// Blue failed, nginx retried on green: a failover.
fn rescued() -> Vec<u8> {
    line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green")
}

fn alert_env<'a>(hook: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("SLACK_WEBHOOK_URL", hook),
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("ERROR_RATE_MIN_REQUESTS", "100000"),
    ];
    env.extend_from_slice(extra);
    env
}

fn text(body: &serde_json::Value) -> String {
    body["text"].as_str().unwrap_or_default().to_string()
}

/// Raise this process's open-file limit to its hard limit: the attacks
/// here hold more connections than the usual 1024.
fn raise_own_file_limit(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= need,
        "this test needs {need} open files; the hard limit is {}",
        lim.rlim_cur
    );
}

/// Whether the server has closed (or answered and is closing) `s`, a
/// non-blocking stream.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    !matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Holds `n` connections to `addr`, every other one with a request head
/// begun and never finished; reopens the ones the server closes (a few
/// dozen at a time) until stopped.
struct Siege {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Siege {
    fn start(addr: &str, n: usize) -> Siege {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let thread = {
            let (stop, opened) = (stop.clone(), opened.clone());
            thread::spawn(move || {
                let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
                let mut first_round = true;
                while !stop.load(Ordering::Relaxed) {
                    let mut reopened = 0;
                    for (i, slot) in conns.iter_mut().enumerate() {
                        if slot.as_mut().is_some_and(closed_by_server) {
                            *slot = None;
                        }
                        if slot.is_some() || (!first_round && reopened >= 50) {
                            continue;
                        }
                        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                        else {
                            continue;
                        };
                        if i % 2 == 1 {
                            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                        }
                        s.set_nonblocking(true).unwrap();
                        *slot = Some(s);
                        reopened += 1;
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    first_round = false;
                    // Pacing, not synchronisation: a steady trickle of new
                    // connections keeps the receiver at its cap.
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Siege {
            stop,
            opened,
            thread: Some(thread),
        }
    }

    fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Siege {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Item 4: 1,100 held connections (idle or half-sent) under a 1,024-file
/// limit. The receiver sheds the oldest at its cap, so `/healthz` and
/// `/metrics` answer and the webhook client finds a descriptor: the
/// failover is delivered at the first attempt.
#[test]
fn held_connections_starve_neither_healthz_nor_the_webhook() {
    raise_own_file_limit(1100 + 200);
    let hook = Webhook::start();
    let url = hook.url();
    let mut pw = Receiver::start("127.0.0.1:0", Some(1024), &alert_env(&url, &[]));
    pw.send(&vec![blue_ok(); 30]);

    let siege = Siege::start(&pw.http, 1100);
    assert!(
        wait_until(PATIENCE, || siege.opened() >= 1100),
        "the siege opened only {} connections",
        siege.opened()
    );
    let t0 = Instant::now();
    pw.send(&[rescued()]);
    let got = hook.wait_for_accepted(1, PATIENCE);
    eprintln!(
        "failover delivered {:?} after the datagram; the siege has opened {} connections",
        got[0].at - t0,
        siege.opened()
    );
    assert!(text(&got[0].body).contains("Failover"), "{:?}", got[0].body);
    assert_eq!(got.len(), 1, "one request reached the webhook: {got:?}");

    for _ in 0..5 {
        let (status, body) = pw.get("/healthz");
        assert_eq!(status, 200, "{body}");
    }
    let m = pw.metrics();
    assert_eq!(m.get("poolwatch_http_connections_limit"), 512.0);
    assert!(m.get("poolwatch_http_connections") <= 512.0);
    // Every connection of the siege's first 1,100 (all accepted before this
    // scrape's) is still held, shed, or timed out.
    let shed = m.get("poolwatch_http_connections_closed_total{reason=\"shed\"}");
    let timed_out = m.get("poolwatch_http_connections_closed_total{reason=\"header_timeout\"}");
    assert!(
        shed >= 1.0 && shed + timed_out >= 1100.0 - 512.0,
        "{:?}",
        m.0
    );
    drop(siege);

    let log = pw.log();
    assert!(!log.contains("Too many open files"), "{log}");
    let peak = pw.peak_rss_kib();
    eprintln!("peak RSS under the siege: {peak} KiB");
    assert!(peak <= MAX_RSS_KIB, "peak RSS {peak} KiB");
    assert_eq!(pw.stop(), Some(0), "{}", pw.log());
}

/// Item 4: a connection that never sends a request head, one that sends
/// half of one, and one left idle after a keep-alive request are all
/// closed by the receiver (after the 10 s header-read timeout).
#[test]
fn silent_half_sent_and_idle_connections_are_closed() {
    let pw = Receiver::start("127.0.0.1:0", None, &[]);
    let silent = connect(&pw.http, Duration::from_secs(60)).unwrap();
    let mut half = connect(&pw.http, Duration::from_secs(60)).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = connect(&pw.http, Duration::from_secs(60)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = idle.read(&mut buf).expect("the keep-alive answer");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));

    for (name, mut s) in [("silent", silent), ("half-sent", half), ("idle", idle)] {
        // Read until the receiver closes; a read timeout (60 s) is a failure.
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest);
        assert!(
            closed.is_ok(),
            "the {name} connection was never closed: {closed:?}"
        );
    }
    assert!(
        pw.metrics()
            .get("poolwatch_http_connections_closed_total{reason=\"header_timeout\"}")
            >= 3.0
    );
}

/// Writes as much of `total` body bytes as the receiver takes, on every
/// connection, until each has sent them all or been closed.
fn push_bodies(conns: &mut [Option<TcpStream>], total: usize) {
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = vec![0usize; conns.len()];
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let mut progress = false;
        let mut pending = false;
        for (i, slot) in conns.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            if sent[i] >= total {
                continue;
            }
            let n = chunk.len().min(total - sent[i]);
            match s.write(&chunk[..n]) {
                Ok(n) => {
                    sent[i] += n;
                    progress = true;
                    pending |= sent[i] < total;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => pending = true,
                Err(_) => *slot = None,
            }
        }
        if !pending {
            return;
        }
        if !progress {
            // Pacing: the receiver is not reading (as it should not).
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Item 5: 400 `POST /maintenance` with a 2 MB body announced and 1 MB
/// sent, without the token. The receiver answers from the headers and
/// never buffers the bodies; peak RSS stays under 64 MiB. With the token,
/// a body over the limit is refused, not buffered either.
#[test]
fn unauthenticated_bodies_are_never_buffered() {
    const TOKEN: &str = "an-admin-token-for-tests";
    raise_own_file_limit(400 + 200);
    let pw = Receiver::start("127.0.0.1:0", None, &[("ADMIN_TOKEN", TOKEN)]);
    let head = |auth: &str| {
        format!(
            "POST /maintenance HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        .into_bytes()
    };

    let mut conns: Vec<Option<TcpStream>> = (0..400)
        .map(|_| {
            let mut s = connect(&pw.http, PATIENCE).unwrap();
            s.write_all(&head("Authorization: Bearer wrong\r\n"))
                .unwrap();
            s.set_nonblocking(true).unwrap();
            Some(s)
        })
        .collect();
    push_bodies(&mut conns, 1 << 20);
    let peak = pw.peak_rss_kib();
    eprintln!("peak RSS after 400 half-sent 2 MB bodies: {peak} KiB");
    assert!(peak <= MAX_RSS_KIB, "peak RSS {peak} KiB");

    // Refused from the head alone: nothing of the body was sent.
    let mut s = connect(&pw.http, PATIENCE).unwrap();
    s.write_all(&head("")).unwrap();
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).expect("an answer without the body");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // With the token: the body limit refuses what is over it.
    let mut s = connect(&pw.http, PATIENCE).unwrap();
    s.write_all(&head(&format!("Authorization: Bearer {TOKEN}\r\n")))
        .unwrap();
    // Over the limit, and small enough to be read whole: nothing left
    // unread that would turn the close into a reset.
    let _ = s.write_all(&[b' '; 6 * 1024]);
    let n = s.read(&mut answer).expect("an answer to an oversized body");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    assert_eq!(pw.state()["alerting"]["maintenance"]["on"], false);
    let peak = pw.peak_rss_kib();
    assert!(peak <= MAX_RSS_KIB, "peak RSS {peak} KiB");
    drop(conns);
}

/// Item 5: on `HTTP_LISTEN=[::]:PORT`, a client on 127.0.0.1 arrives as
/// `::ffff:127.0.0.1` and is loopback: `poolwatch maintenance on` works.
#[test]
fn an_ipv4_client_of_a_wildcard_listener_is_loopback() {
    let pw = Receiver::start("[::]:0", None, &[]);
    let run = |args: &[&str]| {
        Command::new(poolwatch_bin())
            .arg("maintenance")
            .args(args)
            .current_dir(std::env::temp_dir())
            .env_clear()
            .env("POOLWATCH_URL", format!("http://{}", pw.http))
            .env("USER", "tester")
            .output()
            .unwrap()
    };
    let out = run(&["on", "--for", "10m", "--reason", "kernel upgrade"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("maintenance: on"), "{said}");
    let m = &pw.state()["alerting"]["maintenance"];
    assert_eq!(m["on"], true);
    assert_eq!(m["by"], "tester");
    let out = run(&["off"]);
    assert!(out.status.success());
    assert_eq!(pw.state()["alerting"]["maintenance"]["on"], false);
    // Without a name, the caller's address is shown as IPv4.
    let (status, _, _) = try_http_request(
        "POST",
        &pw.http,
        "/maintenance",
        br#"{"on": true, "reason": "x"}"#,
        PATIENCE,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(pw.state()["alerting"]["maintenance"]["by"], "127.0.0.1");
}

/// Item 8: a FIFO as `MAINTENANCE_FILE` (which an open would block on
/// until a writer came) blocks nothing: maintenance starts and ends with
/// it, `/state` and `/metrics` answer, rules run, SIGTERM stops.
#[test]
fn a_fifo_as_maintenance_file_blocks_nothing() {
    let fifo = unique_temp_path("poolwatch-maint-fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let hook = Webhook::start();
    let url = hook.url();
    let fifo_s = fifo.to_str().unwrap().to_string();
    let mut pw = Receiver::start(
        "127.0.0.1:0",
        None,
        &alert_env(&url, &[("MAINTENANCE_FILE", &fifo_s)]),
    );

    let got = hook.wait_for_accepted(1, PATIENCE);
    let started = got[0].body.to_string();
    assert!(
        started.contains("Maintenance started") && started.contains("flag file present"),
        "{started}"
    );
    let m = &pw.state()["alerting"]["maintenance"];
    assert_eq!(
        (m["on"].as_bool(), m["source"].as_str()),
        (Some(true), Some("file"))
    );
    assert_eq!(pw.metrics().get("poolwatch_maintenance_mode"), 1.0);

    // The rules still run: a failover is judged, and held back.
    pw.send(&vec![blue_ok(); 30]);
    pw.send(&[rescued()]);
    let held = "poolwatch_alerts_total{sink=\"slack\",kind=\"failover\",outcome=\"suppressed_maintenance\"}";
    assert!(
        wait_until(PATIENCE, || pw.metrics().get(held) >= 1.0),
        "{}",
        pw.metrics_text()
    );

    std::fs::remove_file(&fifo).unwrap();
    let got = hook.wait_for_accepted(2, PATIENCE);
    assert!(text(&got[1].body).contains("removed"), "{:?}", got[1].body);
    assert_eq!(pw.stop(), Some(0), "{}", pw.log());
}

impl Receiver {
    fn metrics_text(&self) -> String {
        self.get("/metrics").1
    }
}
