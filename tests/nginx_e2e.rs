//! Real nginx (Debian's package, the shipped template) in front of two
//! demo-app upstreams, logging over syslog UDP to the real poolwatch. The
//! counts poolwatch reports must be exactly the requests made, masked
//! failures included, and its scrape must pass `promtool check metrics`.
//!
//! Slow (it waits out nginx's fail_timeout and a read timeout): run alone
//! with `cargo test --test nginx_e2e`.
//!
//! The client side keeps its own tally of every response (status and
//! `X-App-Pool`), and poolwatch's counts must match it: how many requests
//! it takes for nginx to try a failed server again depends on the clock,
//! never on a sleep.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::poolwatch::Poolwatch;
use common::{DemoApp, Nginx, NginxOpts, PATIENCE, SyslogTarget, header, wait_until};

/// promtool from Prometheus's Debian package (installed by scripts/test).
fn promtool() -> String {
    std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into())
}

/// Responses as the client saw them: status and `X-App-Pool`.
#[derive(Default)]
struct Tally(Vec<(u16, String)>);

impl Tally {
    fn count(&self, status: u16, pool: &str) -> usize {
        self.0
            .iter()
            .filter(|(s, p)| *s == status && p == pool)
            .count()
    }
}

#[test]
fn nginx_traffic_is_counted_exactly_and_scrapes_cleanly() {
    let pw = Poolwatch::start(&[]);
    let chaos_env = [("CHAOS_TIMEOUT_SEC", "4")];
    let blue = DemoApp::start_with_env("blue", "blue-v1", &chaos_env);
    let green = DemoApp::start_with_env("green", "green-v1", &chaos_env);
    let nginx = Nginx::start(
        NginxOpts::new(
            "blue",
            &blue.addr(),
            &green.addr(),
            SyslogTarget::Udp(pw.udp.clone()),
        )
        // A shorter fail_timeout keeps the test quick; a location nginx
        // answers itself gives the "no pool served" case.
        .with_edit(|conf| {
            conf.replace("fail_timeout=5s", "fail_timeout=1s").replacen(
                "location / {",
                "location = /missing { return 404; }\n        location / {",
                1,
            )
        }),
    );
    let tally = std::cell::RefCell::new(Tally::default());
    let served_by = |path: &str| {
        let (status, headers, _) = nginx.get(path);
        let got = (
            status,
            header(&headers, "x-app-pool").unwrap_or("").to_string(),
        );
        tally.borrow_mut().0.push(got.clone());
        got
    };
    // nginx keeps a failed server out for fail_timeout (1 s here, on its
    // whole-second clock); until then the backup serves alone. Ask until
    // blue answers again: those answers from green are counted like any.
    let until_blue_serves = || {
        assert!(
            wait_until(PATIENCE, || served_by("/version") == (200, "blue".into())),
            "nginx never tried blue again"
        );
    };

    for _ in 0..10 {
        assert_eq!(served_by("/version"), (200, "blue".into()));
    }
    // Blue fails with a 500: nginx retries on green in the same request.
    blue.chaos(Some("error"));
    assert_eq!(served_by("/version"), (200, "green".into()));
    blue.chaos(None);
    until_blue_serves();
    // Blue hangs: nginx times out after proxy_read_timeout and retries.
    blue.chaos(Some("timeout"));
    assert_eq!(served_by("/version"), (200, "green".into()));
    blue.chaos(None);
    until_blue_serves();
    assert_eq!(served_by("/missing").0, 404);
    // A whole serving window (SERVING_WINDOW, 20) of blue: blue serves
    // again, whatever green answered meanwhile.
    for _ in 0..20 {
        assert_eq!(served_by("/version"), (200, "blue".into()));
    }

    let tally = tally.into_inner();
    let (blue_ok, green_ok) = (tally.count(200, "blue"), tally.count(200, "green"));
    // Every response was answered before nginx closed the connection, and
    // nginx logs a request before closing: all datagrams are sent.
    assert_eq!(tally.0.len(), blue_ok + green_ok + 1, "{:?}", tally.0);
    let total = tally.0.len() as f64;
    let mut m = pw.metrics();
    assert!(
        wait_until(PATIENCE, || {
            m = pw.metrics();
            m.sum("poolwatch_requests_total", &[]) >= total
        }),
        "poolwatch saw {} of {total} requests",
        m.sum("poolwatch_requests_total", &[])
    );
    // Nothing extra: once poolwatch's socket is empty, the count stays.
    assert!(wait_until(PATIENCE, || pw.receive_queue() == 0));
    let m = pw.metrics();
    assert_eq!(m.sum("poolwatch_requests_total", &[]), total);
    assert_eq!(m.get("poolwatch_ingest_datagrams_total"), total);
    assert_eq!(m.sum("poolwatch_ingest_malformed_total", &[]), 0.0);
    let req = |p: &str, c: &str| {
        m.get(&format!(
            "poolwatch_requests_total{{pool=\"{p}\",status_class=\"{c}\"}}"
        ))
    };
    assert_eq!(req("blue", "2xx"), blue_ok as f64);
    assert_eq!(req("green", "2xx"), green_ok as f64);
    assert_eq!(req("none", "4xx"), 1.0);
    let att = |p: &str, o: &str| {
        m.get(&format!(
            "poolwatch_upstream_attempts_total{{pool=\"{p}\",outcome=\"{o}\"}}"
        ))
    };
    assert_eq!(att("blue", "success"), blue_ok as f64);
    assert_eq!(att("blue", "error_5xx"), 1.0);
    assert_eq!(att("blue", "timeout"), 1.0);
    assert_eq!(att("green", "success"), green_ok as f64);
    // One attempt per proxied request, plus the two that failed on blue.
    assert_eq!(
        m.sum("poolwatch_upstream_attempts_total", &[]),
        (blue_ok + green_ok + 2) as f64
    );
    assert_eq!(
        m.get("poolwatch_retried_requests_total{from=\"blue\",to=\"green\"}"),
        2.0
    );
    assert_eq!(m.get("poolwatch_serving_pool{pool=\"blue\"}"), 1.0);
    assert_eq!(
        m.get("poolwatch_request_duration_seconds_count{pool=\"green\"}"),
        green_ok as f64
    );
    // The timed-out retry took at least the 2 s read timeout: at least one
    // of green's requests is above the 1.5 s bucket.
    assert!(
        m.get("poolwatch_request_duration_seconds_bucket{pool=\"green\",le=\"1.5\"}")
            <= (green_ok - 1) as f64
    );

    let state = pw.state();
    assert_eq!(state["serving_pool"], "blue");
    let (blue_window, green_window) = (
        &pw.pool_state("blue")["count_window"],
        &pw.pool_state("green")["count_window"],
    );
    // Blue's window holds the failures the retries hid from clients.
    assert_eq!(blue_window["attempts"], blue_ok + 2);
    assert_eq!(blue_window["failures"], 2);
    assert_eq!(blue_window["client_5xx"], 0);
    assert_eq!(green_window["requests"], green_ok);
    let addrs = state["addresses"].as_array().unwrap();
    for (addr, name) in [(blue.addr(), "blue"), (green.addr(), "green")] {
        assert!(
            addrs.iter().any(|a| a["addr"] == addr.as_str()
                && a["pool"] == name
                && a["source"] == "learned"),
            "{addr} → {name} not learned: {addrs:?}"
        );
    }

    // The scrape passes Prometheus's own linter.
    let text = pw.metrics_text();
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (installed by scripts/test)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed: {report}");
    assert_eq!(
        report.trim(),
        "",
        "promtool check metrics reported problems"
    );
}

/// poolwatch, blue and green demo apps, and nginx in front of them.
fn stack() -> (Poolwatch, DemoApp, DemoApp, Nginx) {
    let pw = Poolwatch::start(&[]);
    let blue = DemoApp::start("blue", "blue-v1");
    let green = DemoApp::start("green", "green-v1");
    let nginx = Nginx::start(NginxOpts::new(
        "blue",
        &blue.addr(),
        &green.addr(),
        SyslogTarget::Udp(pw.udp.clone()),
    ));
    (pw, blue, green, nginx)
}

/// `poolwatch check-failover` against that stack, without the tests' env.
fn check_failover(nginx: &Nginx, blue: &DemoApp, green: &DemoApp) -> Command {
    let mut cmd = Command::new(common::poolwatch::poolwatch_bin());
    cmd.arg("check-failover")
        .args(["--nginx", &format!("http://{}", nginx.addr())])
        .args(["--blue", &format!("http://{}", blue.addr())])
        .args(["--green", &format!("http://{}", green.addr())])
        .env_clear();
    cmd
}

#[test]
fn check_failover_stops_chaos_when_interrupted() {
    let (_pw, blue, green, nginx) = stack();
    let mut child = check_failover(&nginx, &blue, &green)
        .args(["--modes", "error", "--duration", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Chaos is on once blue's app routes answer 500.
    assert!(wait_until(PATIENCE, || {
        common::http_request("GET", &blue.addr(), "/version", b"").0 == 500
    }));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted check does not pass");
    assert_eq!(
        common::http_request("GET", &blue.addr(), "/version", b"").0,
        200,
        "chaos was left running"
    );
}

#[test]
fn check_failover_fails_when_the_backup_cannot_serve() {
    let (_pw, blue, green, nginx) = stack();
    green.chaos(Some("error"));
    let out = check_failover(&nginx, &blue, &green)
        .args([
            "--modes",
            "error",
            "--duration",
            "1s",
            "--recovery-timeout",
            "10s",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("FAIL"), "{report}");
    assert!(report.contains("500×"), "{report}");
    // Chaos on blue was stopped all the same.
    assert_eq!(
        common::http_request("GET", &blue.addr(), "/version", b"").0,
        200
    );
}
