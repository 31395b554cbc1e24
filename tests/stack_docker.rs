//! The Docker stack as the README's quick start brings it up: the image
//! built from this checkout, `docker-compose.yml`, and `.env.example` with
//! only the image settings pointed at local stand-ins. `scripts/stack-test`
//! starts the engine and the stack, runs this test against it, and tears
//! everything down; this test drives the stack from outside, as a user
//! would, through the published ports and `docker-compose`:
//!
//! - `poolwatch check-failover` passes inside the stack;
//! - the watcher reports the failover and the recovery that caused, and
//!   planned switches (stdout JSON lines: .env.example sets no Slack URL);
//! - the watcher got the receive buffer it asks for, and can write only
//!   to /run/poolwatch and its state volume, where its STATE_FILE is;
//! - Prometheus scrapes the watcher, loads every rule in
//!   `prometheus/alerts.yml`, and answers every dashboard query with data;
//! - the image's health check fits each role: poolwatch and demo-app
//!   containers started from it both become healthy;
//! - `docker-compose stop watcher` (SIGTERM) still delivers a notification
//!   that was queued, to a Slack-like webhook the watcher reaches through
//!   its network's gateway.
//!
//! Ignored by `cargo test`, which has no stack to run against:
//! `scripts/stack-test` runs it with `--ignored`, setting
//! `STACK_PROJECT_DIR` (the checkout the stack runs from),
//! `STACK_COMPOSE` (`docker-compose`) and `STACK_DOCKER` (the docker
//! client), with `DOCKER_HOST` pointing at its engine.

mod common;

use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::dashboard;
use common::webhook::{self, Mode, Webhook};
use common::{header, try_http_request, wait_until};
use serde_json::Value;

/// The running stack, reached through `docker-compose` in its directory.
struct Stack {
    dir: PathBuf,
    compose: Vec<String>,
    docker: String,
    started: Instant,
}

impl Stack {
    fn from_env() -> Stack {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run this test through scripts/stack-test")
            })
        };
        Stack {
            dir: PathBuf::from(var("STACK_PROJECT_DIR")),
            compose: var("STACK_COMPOSE")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            docker: var("STACK_DOCKER"),
            started: Instant::now(),
        }
    }

    /// Prints a step with the time since the test started.
    fn step(&self, what: &str) {
        let t = self.started.elapsed().as_secs();
        eprintln!("--- [{}:{:02}] {what}", t / 60, t % 60);
    }

    fn compose_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    fn compose(&self, args: &[&str]) -> Output {
        run(&mut self.compose_cmd(args))
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.compose_cmd(args))
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        run_ok(Command::new(&self.docker).args(args).stdin(Stdio::null()))
    }

    /// `host:port` where `service`'s `port` is published.
    fn published(&self, service: &str, port: u16) -> String {
        let out = self.compose_ok(&["port", service, &port.to_string()]);
        let addr = out.trim().to_owned();
        assert!(!addr.is_empty(), "{service}:{port} is not published");
        addr
    }

    /// The id of `service`'s container.
    fn container(&self, service: &str) -> String {
        let id = self.compose_ok(&["ps", "-q", service]).trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "--format", format, id])
            .trim()
            .to_owned()
    }

    fn health(&self, id: &str) -> String {
        self.inspect(
            id,
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
        )
    }

    fn logs(&self, service: &str) -> String {
        self.compose_ok(&["logs", "--no-color", service])
    }

    /// A container's output, stdout and stderr.
    fn container_logs(&self, id: &str) -> String {
        let out = run(Command::new(&self.docker)
            .args(["logs", id])
            .stdin(Stdio::null()));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The watcher's notifications so far: its stdout JSON lines.
    fn notifications(&self) -> Vec<Value> {
        self.logs("watcher")
            .lines()
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("kind").is_some())
            .collect()
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kinds(notes: &[Value]) -> Vec<String> {
    notes
        .iter()
        .map(|n| format!("{} {}", n["kind"], n["title"]))
        .collect()
}

fn count(notes: &[Value], kind: &str) -> usize {
    notes.iter().filter(|n| n["kind"] == kind).count()
}

/// Requests through nginx until stopped, counting those that were not a
/// 200.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(nginx: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent, failed, nginx) =
                (stop.clone(), sent.clone(), failed.clone(), nginx.to_owned());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok =
                        try_http_request("GET", &nginx, "/version", b"", Duration::from_secs(15))
                            .is_ok_and(|r| r.0 == 200);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    // A steady trickle, not a load test.
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Traffic {
            stop,
            sent,
            failed,
            thread: Some(thread),
        }
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards TCP connections from `bind` (an address containers can reach)
/// to the loopback-only fake webhook.
fn relay(bind: IpAddr, target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind((bind, 0))
        .unwrap_or_else(|e| panic!("bind the webhook relay on {bind}: {e}"));
    let addr = listener.local_addr().expect("relay address");
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(move || {
                let Ok(server) = TcpStream::connect(target) else {
                    return;
                };
                let (Ok(mut c), Ok(mut s)) = (client.try_clone(), server.try_clone()) else {
                    return;
                };
                let up = thread::spawn(move || {
                    let _ = io::copy(&mut c, &mut s);
                    let _ = s.shutdown(Shutdown::Write);
                });
                let (mut server, mut client) = (server, client);
                let _ = io::copy(&mut server, &mut client);
                let _ = client.shutdown(Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    addr
}

/// `8MiB`-style sizes as `.env.example` writes them.
fn bytes(size: &str) -> u64 {
    let size = size.trim();
    let split = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (n, unit) = size.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("size {size}"));
    n * match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("unit {other} of {size}"),
    }
}

/// Every number under a `key` anywhere in `v`.
fn numbers_under(v: &Value, key: &str, out: &mut Vec<u64>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.extend(v.as_u64());
                }
                numbers_under(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| numbers_under(v, key, out)),
        _ => {}
    }
}

/// Sum of the samples of `metric` in a Prometheus text exposition.
fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Standalone containers, removed when dropped.
struct Containers<'a> {
    stack: &'a Stack,
    ids: Vec<String>,
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = Command::new(&self.stack.docker)
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
#[ignore = "needs the Docker stack: run by scripts/stack-test"]
fn the_docker_stack_fails_over_switches_drains_and_feeds_the_dashboard() {
    let stack = Stack::from_env();
    let env = std::fs::read_to_string(stack.dir.join(".env")).expect("the stack's .env");
    let setting = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!(".env sets no {name}"))
            .to_owned()
    };

    stack.step("every service runs, and is healthy where it has a health check");
    let services = stack.compose_ok(&["config", "--services"]);
    for service in services.split_whitespace() {
        let id = stack.container(service);
        let health = stack.health(&id);
        assert!(
            health == "running healthy" || health == "running",
            "{service}: {health}"
        );
    }
    let nginx = stack.published("nginx", 80);
    let watcher_http = stack.published("watcher", 9514);
    let prometheus = stack.published("prometheus", 9090);
    for _ in 0..10 {
        let (status, headers, _) =
            try_http_request("GET", &nginx, "/version", b"", Duration::from_secs(15))
                .expect("GET /version through nginx");
        assert_eq!(
            (status, header(&headers, "x-app-pool")),
            (200, Some("blue"))
        );
    }

    stack.step("the watcher got the receive buffer it asks for");
    let want = bytes(&setting("RECV_BUFFER"));
    let (status, _, body) =
        try_http_request("GET", &watcher_http, "/state", b"", Duration::from_secs(10))
            .expect("GET /state");
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("/state is JSON");
    let mut granted = Vec::new();
    numbers_under(&state, "granted_buffer_bytes", &mut granted);
    assert!(!granted.is_empty(), "no listener in /state: {body}");
    assert!(
        granted.iter().all(|g| *g >= want),
        "asked for {want} bytes, granted {granted:?}"
    );
    let logs = stack.logs("watcher");
    assert!(
        !logs.contains("smaller receive buffer"),
        "the watcher warns about its receive buffer:\n{logs}"
    );

    stack.step("the watcher's file system is read-only but for /run/poolwatch");
    stack.compose_ok(&[
        "exec",
        "-T",
        "watcher",
        "sh",
        "-c",
        "echo probe > /run/poolwatch/probe && rm /run/poolwatch/probe",
    ]);
    let out = stack.compose(&["exec", "-T", "watcher", "sh", "-c", "echo probe > /probe"]);
    assert!(
        !out.status.success(),
        "the watcher could write to its root file system"
    );
    // STATE_FILE is on the watcher-state volume, written at start.
    stack.compose_ok(&[
        "exec",
        "-T",
        "watcher",
        "sh",
        "-c",
        "test -s /var/lib/poolwatch/state.json && grep -q '\"version\": 1' /var/lib/poolwatch/state.json",
    ]);

    stack.step("poolwatch check-failover inside the stack (README command)");
    let out = stack.compose(&[
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "watcher",
        "poolwatch",
        "check-failover",
        "--nginx",
        "http://nginx",
        "--blue",
        "http://app_blue:3000",
        "--green",
        "http://app_green:3000",
    ]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "check-failover: {}", describe(&out));
    assert!(
        report.contains("error") && report.contains("timeout"),
        "{report}"
    );
    assert_eq!(report.matches("PASS").count(), 3, "{report}");
    eprintln!("{report}");

    stack.step("the watcher reported the failover and the recovery");
    let traffic = Traffic::start(&nginx);
    let mut notes = Vec::new();
    let mut open = f64::NAN;
    assert!(
        wait_until(Duration::from_secs(120), || {
            notes = stack.notifications();
            let failover = notes.iter().position(|n| n["kind"] == "failover");
            let recovery = notes.iter().rposition(|n| n["kind"] == "recovery");
            // Every incident the check opened is closed again.
            open = try_http_request(
                "GET",
                &watcher_http,
                "/metrics",
                b"",
                Duration::from_secs(10),
            )
            .map(|r| metric_sum(&r.2, "poolwatch_incident_open"))
            .unwrap_or(f64::NAN);
            matches!((failover, recovery), (Some(f), Some(r)) if f < r) && open == 0.0
        }),
        "no failover followed by a recovery, or incidents still open ({open}): {:#?}",
        kinds(&notes)
    );
    let failover = notes.iter().find(|n| n["kind"] == "failover").unwrap();
    assert_eq!(failover["pool"], "blue", "{failover}");

    stack.step("planned switches, green and back to blue: reported, nothing failed");
    let failed_before = traffic.failed();
    let failovers = count(&notes, "failover");
    for (to, switches) in [("green", 1), ("blue", 2)] {
        stack.compose_ok(&["exec", "-T", "nginx", "/entrypoint.sh", "switch", to]);
        assert!(
            wait_until(Duration::from_secs(60), || {
                notes = stack.notifications();
                count(&notes, "pool_switch") >= switches
            }),
            "no planned switch to {to} reported: {:#?}",
            kinds(&notes)
        );
        assert!(
            wait_until(Duration::from_secs(30), || {
                try_http_request("GET", &nginx, "/version", b"", Duration::from_secs(15))
                    .is_ok_and(|r| header(&r.1, "x-app-pool") == Some(to))
            }),
            "nginx does not serve from {to} after the switch"
        );
    }
    assert_eq!(
        traffic.failed(),
        failed_before,
        "requests failed during the switches"
    );
    assert_eq!(
        count(&notes, "failover"),
        failovers,
        "a switch was taken for a failover: {:#?}",
        kinds(&notes)
    );
    assert!(
        traffic.sent() > 20,
        "too little traffic: {}",
        traffic.sent()
    );

    stack.step("Prometheus scrapes the watcher");
    let mut targets = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            targets = dashboard::prometheus_get(&prometheus, "/api/v1/targets").unwrap_or_default();
            targets["data"]["activeTargets"]
                .as_array()
                .is_some_and(|ts| {
                    ts.iter().any(|t| {
                        t["labels"]["job"] == "poolwatch"
                            && t["health"] == "up"
                            && t["scrapeUrl"]
                                .as_str()
                                .is_some_and(|u| u.contains("watcher:9514"))
                    })
                })
        }),
        "the poolwatch target is not up: {targets:#}"
    );

    stack.step("Prometheus loaded every rule of prometheus/alerts.yml, all healthy");
    let alerts_yml = std::fs::read_to_string(stack.dir.join("prometheus/alerts.yml")).unwrap();
    let declared = alerts_yml
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("- alert:") || t.starts_with("- record:")
        })
        .count();
    assert!(declared > 0, "no rules in prometheus/alerts.yml");
    let mut rules = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            rules = dashboard::prometheus_get(&prometheus, "/api/v1/rules").unwrap_or_default();
            let loaded: Vec<&Value> = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            loaded.len() == declared && loaded.iter().all(|r| r["health"] == "ok")
        }),
        "{declared} rules declared; loaded: {rules:#}"
    );

    stack.step("every dashboard query answers with data");
    let queries = dashboard::queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut empty = Vec::new();
    assert!(
        wait_until(Duration::from_secs(90), || {
            empty = queries
                .iter()
                .filter(|q| {
                    dashboard::prometheus_query(&prometheus, &q.expr)
                        .map(|r| r.is_empty())
                        .unwrap_or(true)
                })
                .cloned()
                .collect();
            empty.is_empty()
        }),
        "queries with no data: {empty:#?}"
    );
    drop(traffic);

    stack.step("the image's health check fits each role");
    let mut standalone = Containers {
        stack: &stack,
        ids: Vec::new(),
    };
    for args in [
        &["run", "-d", "poolwatch:local", "demo-app"][..],
        &["run", "-d", "poolwatch:local"][..],
        &[
            "run",
            "-d",
            "poolwatch:local",
            "poolwatch",
            "--http-listen",
            "0.0.0.0:9600",
        ][..],
    ] {
        standalone.ids.push(stack.docker_ok(args).trim().to_owned());
    }
    let mut healths = Vec::new();
    assert!(
        wait_until(Duration::from_secs(120), || {
            healths = standalone.ids.iter().map(|id| stack.health(id)).collect();
            healths.iter().all(|h| h == "running healthy")
        }),
        "demo-app, poolwatch, poolwatch on port 9600: {healths:?}"
    );
    drop(standalone);

    stack.step("SIGTERM delivers a notification still queued");
    let hook = Webhook::start();
    hook.set_mode(Mode::Hang);
    let gateway: IpAddr = stack
        .inspect(
            &stack.container("watcher"),
            "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
        )
        .parse()
        .expect("the watcher's network gateway");
    let url = format!("http://{}{}", relay(gateway, hook.addr()), webhook::PATH);
    // The same watcher with a webhook: docker-compose re-creates it.
    run_ok(
        stack
            .compose_cmd(&["up", "-d", "--no-deps", "watcher"])
            .env("SLACK_WEBHOOK_URL", &url),
    );
    let watcher = stack.container("watcher");
    assert!(
        wait_until(Duration::from_secs(90), || stack.health(&watcher)
            == "running healthy"),
        "re-created watcher: {}",
        stack.health(&watcher)
    );
    let maintenance = |args: &[&str]| {
        let mut all = vec!["exec", "-T", "watcher", "poolwatch", "maintenance"];
        all.extend_from_slice(args);
        stack.compose_ok(&all);
    };
    // The first notification hangs in the webhook; the second waits
    // behind it in the queue.
    maintenance(&["on", "--reason", "stack test", "--by", "stack-test"]);
    hook.wait_for(1, Duration::from_secs(60));
    maintenance(&["off", "--by", "stack-test"]);
    let mut metrics = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            metrics = try_http_request(
                "GET",
                &watcher_http,
                "/metrics",
                b"",
                Duration::from_secs(10),
            )
            .map(|r| r.2)
            .unwrap_or_default();
            metric_sum(&metrics, "poolwatch_alert_queue_depth") >= 1.0
        }),
        "no notification queued:\n{metrics}"
    );
    let stop = stack
        .compose_cmd(&["stop", "watcher"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker-compose stop watcher");
    assert!(
        wait_until(Duration::from_secs(30), || stack
            .container_logs(&watcher)
            .contains("SIGTERM")),
        "the watcher did not log SIGTERM:\n{}",
        stack.container_logs(&watcher)
    );
    let after_sigterm = Instant::now();
    // Let the hanging request through: the drain then sends the rest.
    hook.set_mode(Mode::Ok);
    let stopped = stop
        .wait_with_output()
        .expect("wait for docker-compose stop");
    assert!(stopped.status.success(), "{}", describe(&stopped));
    let exit_code = stack.inspect(&watcher, "{{.State.ExitCode}}");
    let received = hook.received();
    let texts: Vec<String> = received
        .iter()
        .map(|r| format!("{} {} {}", r.answered, r.raw.len(), &r.raw))
        .collect();
    assert_eq!(
        exit_code,
        "0",
        "the watcher did not exit cleanly:\n{}",
        stack.container_logs(&watcher)
    );
    let ended = received
        .iter()
        .find(|r| r.raw.contains("Maintenance ended"))
        .unwrap_or_else(|| panic!("the queued notification was never sent: {texts:#?}"));
    assert_eq!(ended.answered, 200, "{texts:#?}");
    assert!(
        ended.at > after_sigterm,
        "the second notification went out before SIGTERM, so it was not queued: {texts:#?}"
    );
    assert!(
        received
            .iter()
            .any(|r| r.raw.contains("Maintenance started") && r.answered == 200),
        "{texts:#?}"
    );
    assert_eq!(hook.violations(), Vec::<String>::new());
    let _ = io::stderr().flush();
}
