//! Hostile peers on the datagram side, against the real binary: forged
//! sources, a poisoned address map, absurd numbers and lists, a second
//! instance after the unix socket, a receive buffer at the kernel's limit.
//! Each test reproduces an attack that worked before the control it checks.
//!
//! The receiver is started on port 0 and the addresses it bound are read
//! from its JSON log, so no port is picked and released.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

/// Bounds a wait for something that should happen, never a success.
const DEADLINE: Duration = Duration::from_secs(20);

fn poolwatch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_poolwatch")
}

fn wait_until(mut probe: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "poolwatch-hostile-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A receiver started for one test.
struct Watcher {
    child: Child,
    dir: PathBuf,
    udp: SocketAddr,
    http: SocketAddr,
}

/// What a start that failed left behind.
struct Failed {
    code: Option<i32>,
    log: String,
}

impl Watcher {
    fn start(args: &[&str]) -> Watcher {
        match Self::try_start(args) {
            Ok(w) => w,
            Err(f) => panic!("poolwatch did not start ({:?}):\n{}", f.code, f.log),
        }
    }

    /// Start with `args` after loopback defaults on port 0; wait until
    /// `/healthz` answers, or the process exits.
    fn try_start(args: &[&str]) -> Result<Watcher, Failed> {
        let dir = temp_dir("run");
        let mut cmd = Command::new(poolwatch_bin());
        if !args.contains(&"--udp-listen") {
            cmd.args(["--udp-listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--http-listen") {
            cmd.args(["--http-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut addrs = (None, None);
        let started = wait_until(|| {
            addrs = bound_addresses(&read(&dir.join("stderr")));
            addrs.0.is_some() && addrs.1.is_some() || matches!(child.try_wait(), Ok(Some(_)))
        });
        let (Some(udp), Some(http)) = addrs else {
            let status = if started {
                child.wait().ok()
            } else {
                let _ = child.kill();
                None
            };
            let log = read(&dir.join("stderr"));
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Failed {
                code: status.and_then(|s| s.code()),
                log,
            });
        };
        let w = Watcher {
            child,
            dir,
            udp,
            http,
        };
        assert!(
            wait_until(|| w.get("/healthz").is_some_and(|(s, _)| s == 200)),
            "no /healthz:\n{}",
            w.log()
        );
        Ok(w)
    }

    fn log(&self) -> String {
        read(&self.dir.join("stderr"))
    }

    /// Notifications printed on stdout (no webhook configured).
    fn notifications(&self) -> Vec<serde_json::Value> {
        read(&self.dir.join("stdout"))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http, path)
    }

    fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        Metrics(body)
    }

    fn state(&self) -> serde_json::Value {
        let (status, body) = self.get("/state").expect("GET /state");
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("/state is JSON")
    }

    /// Wait until `poolwatch_ingest_datagrams_total` is `n`.
    fn wait_for_datagrams(&self, n: u64) -> Metrics {
        let mut last = None;
        let ok = wait_until(|| {
            let m = self.metrics();
            let done = m.get("poolwatch_ingest_datagrams_total") >= n as f64;
            last = Some(m);
            done
        });
        let m = last.unwrap();
        assert!(
            ok,
            "{} of {n} datagrams arrived",
            m.get("poolwatch_ingest_datagrams_total")
        );
        m
    }

    /// Wait for a notification of `kind`.
    fn wait_for_notification(&self, kind: &str) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        let ok = wait_until(|| {
            seen = self.notifications();
            seen.iter().any(|n| n["kind"] == kind)
        });
        assert!(ok, "no {kind} notification; got {seen:#?}\n{}", self.log());
        seen
    }

    /// The receiver's peak RSS so far must be within 64 MiB.
    fn assert_bounded_memory(&self) {
        let status = read(Path::new(&format!("/proc/{}/status", self.child.id())));
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        assert!(kib <= 64 * 1024, "peak RSS {kib} KiB");
    }

    /// Send from a socket bound to `from` (an address of this host).
    fn send_from(&self, from: &str, datagrams: &[Vec<u8>]) {
        let s = UdpSocket::bind(from).unwrap();
        for d in datagrams {
            s.send_to(d, self.udp).unwrap();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The UDP and HTTP addresses the JSON log says were bound.
fn bound_addresses(log: &str) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let mut udp = None;
    let mut http = None;
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &v["fields"];
        if let Some(l) = fields["listener"]
            .as_str()
            .and_then(|l| l.strip_prefix("udp://"))
        {
            udp = l.parse().ok();
        }
        if let Some(h) = fields["http"].as_str() {
            http = h.parse().ok();
        }
    }
    (udp, http)
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: poolwatch\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Prometheus text.
struct Metrics(String);

impl Metrics {
    /// The value of one series, as rendered, or 0 when absent.
    fn get(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == series).then(|| v.parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Sum over every series of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

fn nginx(json: &str) -> Vec<u8> {
    format!("<190>Nov  5 09:07:03 web-1 nginx: {json}").into_bytes()
}

fn access(status: u16, ups: &str, addrs: &str, pool: &str) -> Vec<u8> {
    access_timed(status, ups, addrs, pool, "0.004", "0.004")
}

fn access_timed(
    status: u16,
    ups: &str,
    addrs: &str,
    pool: &str,
    request_time: &str,
    upstream_response_time: &str,
) -> Vec<u8> {
    nginx(&format!(
        r#"{{"time":"2026-11-05T09:07:03+00:00","status":{status},"request_time":{request_time},"upstream_status":"{ups}","upstream_addr":"{addrs}","upstream_response_time":"{upstream_response_time}","pool":"{pool}","release":"{pool}-1"}}"#
    ))
}

fn kinds(notifications: &[serde_json::Value]) -> Vec<String> {
    notifications
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or("?").to_string())
        .collect()
}

// ---- 1. Source allowlist ------------------------------------------------

/// Forged datagrams from 127.0.0.3 that used to raise a critical "users are
/// seeing errors" (one `no live upstream` line) and a failover (two
/// retried requests) are dropped unread; everything from the allowed
/// sources counts.
#[test]
fn forged_sources_are_dropped_before_parsing() {
    let w = Watcher::start(&["--allow-from", "127.0.0.1/32, 127.0.0.2"]);
    let forged = vec![
        access(502, "502", "backend", ""),
        access(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green"),
        access(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green"),
    ];
    let mut sent = 0;
    let mut allowed = 0;
    for round in 0..10 {
        let ok: Vec<_> = (0..10).map(|_| access(200, "200", BLUE, "blue")).collect();
        let from = if round % 2 == 0 {
            "127.0.0.1:0"
        } else {
            "127.0.0.2:0"
        };
        w.send_from(from, &ok);
        w.send_from("127.0.0.3:0", &forged);
        sent += ok.len() + forged.len();
        allowed += ok.len();
    }
    let m = w.wait_for_datagrams(sent as u64);
    assert_eq!(m.get("poolwatch_ingest_datagrams_total"), sent as f64);
    assert_eq!(
        m.get("poolwatch_ingest_rejected_total{reason=\"source\"}"),
        (sent - allowed) as f64
    );
    // Nothing from an allowed source was lost, nothing forged was parsed.
    assert_eq!(
        m.get("poolwatch_requests_total{pool=\"blue\",status_class=\"2xx\"}"),
        allowed as f64
    );
    assert_eq!(m.sum("poolwatch_requests_total"), allowed as f64);
    assert_eq!(m.get("poolwatch_no_live_upstream_total"), 0.0);
    assert_eq!(m.sum("poolwatch_retried_requests_total"), 0.0);
    assert_eq!(m.sum("poolwatch_ingest_malformed_total"), 0.0);
    let state = w.state();
    assert_eq!(state["ingest"]["rejected"]["source"], sent - allowed);
    assert_eq!(
        state["settings"]["receiver"]["allow_from"],
        serde_json::json!(["127.0.0.1/32", "127.0.0.2/32"])
    );

    // A real failover from an allowed source is the first notification:
    // the forged lines before it raised nothing.
    w.send_from(
        "127.0.0.1:0",
        &[access(
            200,
            "500, 200",
            &format!("{BLUE}, {GREEN}"),
            "green",
        )],
    );
    let seen = w.wait_for_notification("failover");
    assert_eq!(kinds(&seen), ["failover"], "{seen:#?}");
    w.assert_bounded_memory();
}

/// An IPv6 listener sees IPv4 senders as `::ffff:a.b.c.d`; IPv4 entries
/// match them the same, and an IPv6 sender outside the list is dropped.
#[test]
fn ipv4_entries_match_ipv4_senders_on_an_ipv6_listener() {
    let w = Watcher::start(&["--udp-listen", "[::]:0", "--allow-from", "127.0.0.2"]);
    let line = access(200, "200", BLUE, "blue");
    let s = UdpSocket::bind("127.0.0.2:0").unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], w.udp.port()));
    s.send_to(&line, to).unwrap();
    UdpSocket::bind("127.0.0.3:0")
        .unwrap()
        .send_to(&line, to)
        .unwrap();
    UdpSocket::bind("[::1]:0")
        .unwrap()
        .send_to(
            &line,
            SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], w.udp.port())),
        )
        .unwrap();
    let m = w.wait_for_datagrams(3);
    assert_eq!(m.sum("poolwatch_requests_total"), 1.0);
    assert_eq!(
        m.get("poolwatch_ingest_rejected_total{reason=\"source\"}"),
        2.0
    );
}

/// Without ALLOW_FROM, a listener reachable from other hosts says so at
/// start-up; one on loopback does not need to.
#[test]
fn an_open_listener_without_an_allowlist_is_warned_about() {
    let warning = "ALLOW_FROM is not set";
    let open = Watcher::start(&["--udp-listen", "0.0.0.0:0"]);
    assert!(open.log().contains(warning), "{}", open.log());
    let local = Watcher::start(&[]);
    assert!(!local.log().contains(warning), "{}", local.log());
    let listed = Watcher::start(&["--udp-listen", "0.0.0.0:0", "--allow-from", "10.0.0.0/8"]);
    assert!(!listed.log().contains(warning), "{}", listed.log());
}

#[test]
fn a_bad_allowlist_stops_start_up_naming_the_setting() {
    for bad in ["nginx", "10.0.0.1/8", "10.0.0.0/40", ","] {
        let f = Watcher::try_start(&["--allow-from", bad]).err().unwrap();
        assert_eq!(f.code, Some(2), "{bad}: {}", f.log);
        assert!(
            f.log.contains("ALLOW_FROM") && f.log.contains("accepted: comma-separated"),
            "{bad}: {}",
            f.log
        );
    }
}

// ---- 2. Learning that one datagram cannot poison ------------------------

/// Blue's server is learned; one datagram naming it as green used to
/// re-label it, turning the real failover that follows into a "planned"
/// switch with no failover sent. Now the claim is counted and ignored.
#[test]
fn one_datagram_cannot_relabel_a_server() {
    let w = Watcher::start(&[]);
    let mut d: Vec<Vec<u8>> = Vec::new();
    d.extend((0..30).map(|_| access(200, "200", BLUE, "blue")));
    d.extend((0..3).map(|_| access(200, "200", GREEN, "green")));
    w.send_from("127.0.0.1:0", &d);
    w.wait_for_datagrams(d.len() as u64);
    // The forgery.
    w.send_from("127.0.0.1:0", &[access(200, "200", BLUE, "green")]);
    let m = w.wait_for_datagrams(d.len() as u64 + 1);
    assert_eq!(m.get("poolwatch_address_conflicts_total"), 1.0);
    // A real failover: blue fails, green answers.
    let failover = access(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
    w.send_from("127.0.0.1:0", &[failover]);
    let seen = w.wait_for_notification("failover");
    assert!(
        !kinds(&seen)
            .iter()
            .any(|k| k == "pool_switch" || k == "error_rate"),
        "{seen:#?}"
    );
    let m = w.metrics();
    assert_eq!(
        m.get("poolwatch_upstream_attempts_total{pool=\"blue\",outcome=\"error_5xx\"}"),
        1.0
    );
    assert_eq!(m.get("poolwatch_address_moves_total"), 0.0);
    let state = w.state();
    let blue = state["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["addr"] == BLUE)
        .unwrap();
    assert_eq!(blue["pool"], "blue", "{state}");
    assert_eq!(state["ingest"]["address_conflicts"], 1);
    w.assert_bounded_memory();
}

/// A server whose latest 20 responses all name another pool has really
/// moved (a re-created container with a reused address): it follows, and
/// the move is logged and counted. A pinned one never moves.
#[test]
fn servers_move_on_sustained_evidence_and_pins_never() {
    let w = Watcher::start(&["--pool-addrs", &format!("green={GREEN}")]);
    let mut d: Vec<Vec<u8>> = Vec::new();
    d.push(access(200, "200", BLUE, "blue"));
    // 19 claims, then the truth: no move.
    d.extend((0..19).map(|_| access(200, "200", BLUE, "green")));
    d.push(access(200, "200", BLUE, "blue"));
    // 50 claims against the pin.
    d.extend((0..50).map(|_| access(200, "200", GREEN, "blue")));
    w.send_from("127.0.0.1:0", &d);
    let m = w.wait_for_datagrams(d.len() as u64);
    assert_eq!(m.get("poolwatch_address_conflicts_total"), 19.0 + 50.0);
    assert_eq!(m.get("poolwatch_address_moves_total"), 0.0);
    w.send_from(
        "127.0.0.1:0",
        &(0..20)
            .map(|_| access(200, "200", BLUE, "green"))
            .collect::<Vec<_>>(),
    );
    let m = w.wait_for_datagrams(d.len() as u64 + 20);
    assert_eq!(m.get("poolwatch_address_moves_total"), 1.0);
    let state = w.state();
    let pools: Vec<(String, String)> = state["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["addr"].as_str().unwrap().to_string(),
                a["pool"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(pools.contains(&(BLUE.into(), "green".into())), "{pools:?}");
    assert!(pools.contains(&(GREEN.into(), "green".into())), "{pools:?}");
    assert!(
        w.log().contains("server moved to another pool"),
        "{}",
        w.log()
    );
    w.assert_bounded_memory();
}

/// One datagram listing 5,000 failed attempts used to count 5,000 failures.
#[test]
fn an_absurd_upstream_list_is_malformed_not_thousands_of_failures() {
    let w = Watcher::start(&[]);
    let statuses = vec!["502"; 5000].join(", ");
    let addrs = vec!["a:1"; 5000].join(", ");
    let huge = access(502, &statuses, &addrs, "blue");
    assert!(huge.len() < 65507);
    let longest = access(
        502,
        &vec!["502"; 32].join(", "),
        &vec![BLUE; 32].join(", "),
        "",
    );
    w.send_from("127.0.0.1:0", &[huge, longest]);
    let m = w.wait_for_datagrams(2);
    assert_eq!(
        m.get("poolwatch_ingest_malformed_total{reason=\"too_many_attempts\"}"),
        1.0
    );
    assert_eq!(m.sum("poolwatch_upstream_attempts_total"), 32.0);
    assert_eq!(m.sum("poolwatch_requests_total"), 1.0);
    w.assert_bounded_memory();
}

// ---- 3. Numbers -----------------------------------------------------------

/// `request_time` of 1e308 twice left the duration histogram's sum at
/// +Inf for good. Impossible durations are now ignored for latency and
/// counted; the requests still count; every figure stays finite.
#[test]
fn impossible_durations_keep_every_figure_finite() {
    let w = Watcher::start(&[]);
    let d = vec![
        access_timed(200, "200", BLUE, "blue", "1e308", "0.004"),
        access_timed(200, "200", BLUE, "blue", "1e308", "0.004"),
        access_timed(200, "200", BLUE, "blue", "-3", "0.004"),
        access_timed(200, "200", BLUE, "blue", "\"NaN\"", "0.004"),
        access_timed(200, "200", BLUE, "blue", "86401", "0.004"),
        access_timed(200, "200", BLUE, "blue", "0.25", "1e308, -1"),
    ];
    w.send_from("127.0.0.1:0", &d);
    let m = w.wait_for_datagrams(d.len() as u64);
    assert_eq!(
        m.get("poolwatch_requests_total{pool=\"blue\",status_class=\"2xx\"}"),
        6.0
    );
    assert_eq!(
        m.get("poolwatch_request_duration_seconds_sum{pool=\"blue\"}"),
        0.25
    );
    assert_eq!(
        m.get("poolwatch_request_duration_seconds_count{pool=\"blue\"}"),
        1.0
    );
    assert_eq!(
        m.get("poolwatch_ingest_invalid_durations_total{field=\"request_time\"}"),
        5.0
    );
    assert_eq!(
        m.get("poolwatch_ingest_invalid_durations_total{field=\"upstream_response_time\"}"),
        1.0
    );
    assert_eq!(
        m.get("poolwatch_window_latency_seconds_count{pool=\"blue\"}"),
        1.0
    );
    for line in
        m.0.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let value = line.rsplit_once(' ').unwrap().1;
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        // NaN only where a summary has no samples (an empty window), and
        // for the error ratios of an idle pool (no attempt, no ratio).
        let idle_ratio = line.starts_with("poolwatch_window_error_ratio{")
            && line
                .split("pool=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .is_some_and(|pool| {
                    m.0.contains(&format!("poolwatch_pool_idle{{pool=\"{pool}\"}} 1\n"))
                });
        assert!(
            v.is_finite() || (v.is_nan() && (line.contains("quantile=") || idle_ratio)),
            "{line}"
        );
    }
    let blue = &w.state()["pools"][0];
    assert_eq!(blue["pool"], "blue");
    let [p50, p95, p99] =
        [0, 1, 2].map(|i| blue["count_window"]["latency_seconds"][i].as_f64().unwrap());
    assert!(
        [p50, p95, p99].iter().all(|q| (0.2..0.3).contains(q)),
        "{blue}"
    );
    w.assert_bounded_memory();
}

// ---- 7. The unix socket -------------------------------------------------

fn send_unix(path: &Path, d: &[u8]) -> std::io::Result<usize> {
    UnixDatagram::unbound()?.send_to(d, path)
}

/// A second instance with the same `--unix-listen` used to delete and
/// re-bind the running instance's socket before finding its HTTP port
/// taken: the first stayed "healthy" but never received again. Now every
/// port is bound first, and a live socket is never replaced.
#[test]
fn a_second_instance_never_takes_a_live_unix_socket() {
    let dir = temp_dir("unix");
    let path = dir.join("syslog.sock");
    let p = path.to_str().unwrap();
    let first = Watcher::start(&["--unix-listen", p]);
    let line = access(200, "200", BLUE, "blue");
    send_unix(&path, &line).unwrap();
    first.wait_for_datagrams(1);

    // Same socket, HTTP port taken (the first instance's).
    let http = first.http.to_string();
    let f = Watcher::try_start(&["--unix-listen", p, "--http-listen", &http])
        .err()
        .expect("the second instance must not start");
    assert_eq!(f.code, Some(2), "{}", f.log);
    assert!(f.log.contains("HTTP_LISTEN"), "{}", f.log);
    send_unix(&path, &line).unwrap();
    first.wait_for_datagrams(2);

    // Same socket, free ports: the live socket is found and left alone.
    let f = Watcher::try_start(&["--unix-listen", p])
        .err()
        .expect("the second instance must not start");
    assert_eq!(f.code, Some(2), "{}", f.log);
    assert!(
        f.log.contains("UNIX_LISTEN") && f.log.contains(p) && f.log.contains("running process"),
        "{}",
        f.log
    );
    send_unix(&path, &line).unwrap();
    first.wait_for_datagrams(3);

    // Once the first has stopped, its socket is stale and is replaced.
    drop(first);
    let second = Watcher::start(&["--unix-listen", p]);
    send_unix(&path, &line).unwrap();
    second.wait_for_datagrams(1);
    drop(second);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The socket is writable by all (nginx's workers run unprivileged), and
/// a symlink at its path is refused, its target untouched.
#[test]
fn the_unix_socket_is_made_writable_without_following_links() {
    let dir = temp_dir("mode");
    let path = dir.join("syslog.sock");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let f = Watcher::try_start(&["--unix-listen", path.to_str().unwrap()])
        .err()
        .expect("a symlink is not a socket");
    assert_eq!(f.code, Some(2), "{}", f.log);
    assert!(f.log.contains("not a socket"), "{}", f.log);
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    std::fs::remove_file(&path).unwrap();
    let w = Watcher::start(&["--unix-listen", path.to_str().unwrap()]);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    let entries = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(entries, 2, "only the socket and the victim");
    drop(w);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- The receive buffer -------------------------------------------------

fn rmem_max() -> u64 {
    read(Path::new("/proc/sys/net/core/rmem_max"))
        .trim()
        .parse()
        .unwrap()
}

/// Whether this process (and so the receiver it starts) has CAP_NET_ADMIN,
/// which lets `SO_RCVBUFFORCE` pass `net.core.rmem_max`.
fn has_net_admin() -> bool {
    read(Path::new("/proc/self/status"))
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// With CAP_NET_ADMIN (root), `--recv-buffer 1GiB` is granted all the
/// kernel can store (1 GiB less a byte) and used to be reported as
/// "smaller". Without it the cap is `net.core.rmem_max`, and the warning is
/// due exactly when that is lower.
#[test]
fn a_gibibyte_receive_buffer_is_not_reported_smaller() {
    let w = Watcher::start(&["--recv-buffer", "1GiB"]);
    let warned = w.log().contains("smaller receive buffer");
    let forced = has_net_admin();
    let expected = !forced && rmem_max() < (1 << 30) - 1;
    assert_eq!(warned, expected, "CAP_NET_ADMIN: {forced}\n{}", w.log());
    let granted = w.state()["listeners"][0]["granted_buffer_bytes"]
        .as_u64()
        .unwrap();
    if forced {
        assert_eq!(granted, (1 << 30) - 1);
    }
}
