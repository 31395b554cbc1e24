//! Notifications that claim only what was seen, end to end with a real
//! nginx in front of two real demo apps, its access log going straight to
//! the real poolwatch, and notifications to a local Slack-like webhook:
//!
//! - nginx's `fail_timeout` leaves a failed primary without traffic; that
//!   silence is no recovery, only the primary answering enough requests
//!   over `RECOVERY_CONFIRM_SEC` is;
//! - clients that give up while nginx waits on a slow upstream (499) are
//!   client aborts, not failures: 5 % of them open nothing;
//! - a pool that traffic no longer reaches is idle: its error-rate incident
//!   closes with a notice that says so.
//!
//! Slow (each takes several seconds of real traffic), so in a target of its
//! own.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::poolwatch::Poolwatch;
use common::webhook::{Received, Webhook};
use common::{
    DemoApp, Nginx, NginxOpts, PATIENCE, SyslogTarget, header, try_http_request, wait_until,
};

/// One response a client got through nginx.
#[derive(Debug, Clone)]
struct Response {
    /// When the request was about to be sent: before nginx could log it.
    sent: Instant,
    status: u16,
    /// `X-App-Pool`, empty if none.
    pool: String,
}

/// One client sending requests through nginx back to back, one at a time,
/// until stopped; keeps every response.
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Response>>>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let r =
                        try_http_request("GET", &addr, "/version", b"", Duration::from_secs(30));
                    let Ok((status, headers, _)) = r else {
                        continue;
                    };
                    let pool = header(&headers, "x-app-pool").unwrap_or("").to_string();
                    seen.lock().unwrap().push(Response { sent, status, pool });
                }
            })
        };
        Traffic {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn responses(&self) -> Vec<Response> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `pool` answered `n` requests with 200.
    fn wait_for_answers(&self, pool: &str, n: usize) {
        let ok = wait_until(PATIENCE, || {
            self.responses()
                .iter()
                .filter(|r| r.pool == pool && r.status == 200)
                .count()
                >= n
        });
        assert!(ok, "{pool} never answered {n} requests");
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

/// The whole message as Slack got it, as one string.
fn said(r: &Received) -> String {
    r.body.to_string()
}

fn title(r: &Received) -> String {
    r.body["text"].as_str().unwrap_or_default().to_string()
}

/// Waits for an accepted notification whose title contains `needle`.
fn wait_for_title(hook: &Webhook, needle: &str) -> Received {
    let mut found = None;
    let ok = wait_until(PATIENCE, || {
        found = hook
            .received()
            .into_iter()
            .find(|r| (200..300).contains(&r.answered) && title(r).contains(needle));
        found.is_some()
    });
    assert!(
        ok,
        "no notification titled {needle:?}; got {:?}",
        hook.received().iter().map(title).collect::<Vec<_>>()
    );
    found.unwrap()
}

/// The blue/green pair behind a real nginx whose access log goes to a real
/// poolwatch that notifies `hook`.
struct Stack {
    blue: DemoApp,
    green: DemoApp,
    pw: Poolwatch,
    nginx: Nginx,
}

fn stack(hook: &Webhook, blue_env: &[(&str, &str)], settings: &[(&str, &str)]) -> Stack {
    let blue = DemoApp::start_with_env("blue", "blue-v1", blue_env);
    let green = DemoApp::start("green", "green-v1");
    let url = hook.url();
    let pools = format!("blue={},green={}", blue.addr(), green.addr());
    let mut env = vec![
        ("SLACK_WEBHOOK_URL", url.as_str()),
        ("POOL_ADDRS", pools.as_str()),
    ];
    env.extend_from_slice(settings);
    let pw = Poolwatch::start_with_env(&[], &env);
    let nginx = Nginx::start(NginxOpts::new(
        "blue",
        &blue.addr(),
        &green.addr(),
        SyslogTarget::Udp(pw.udp.clone()),
    ));
    Stack {
        blue,
        green,
        pw,
        nginx,
    }
}

/// `"blue answered 812 requests without a failure over 5.1 s"` → (812, 5.1).
fn evidence(text: &str) -> Option<(u64, f64)> {
    let rest = text.split("blue answered ").nth(1)?;
    let (n, rest) = rest.split_once(" requests without a failure over ")?;
    let (secs, _) = rest.split_once(" s")?;
    Some((n.parse().ok()?, secs.parse().ok()?))
}

#[test]
fn fail_timeout_silence_is_not_a_recovery() {
    let hook = Webhook::start();
    let s = stack(
        &hook,
        &[],
        &[
            ("RECOVERY_CONFIRM_SEC", "2"),
            ("RECOVERY_MIN_REQUESTS", "30"),
            // Error-rate incidents are not what this is about.
            ("ERROR_RATE_MIN_REQUESTS", "1000000"),
        ],
    );
    let traffic = Traffic::start(s.nginx.addr());
    traffic.wait_for_answers("blue", 20);

    // Blue fails: nginx retries on green and skips blue for fail_timeout.
    let failing = Instant::now();
    s.blue.chaos(Some("error"));
    let failover = wait_for_title(&hook, "Failover: blue → green");
    s.blue.chaos(None);

    let recovered = wait_for_title(&hook, "Recovered: blue is serving again");
    assert!(recovered.at > failover.at);
    // Once a request sent after it came back, every earlier one has too.
    assert!(wait_until(PATIENCE, || {
        traffic.responses().iter().any(|r| r.sent > recovered.at)
    }));
    let seen = traffic.responses();
    // The first request green answered is the one blue failed: the client
    // sends one request at a time, so every answer blue gave after its
    // failure was to a request sent later.
    let rescued = seen
        .iter()
        .find(|r| r.sent >= failing && r.pool == "green")
        .expect("green answered the request blue failed")
        .sent;
    let first = seen
        .iter()
        .find(|r| r.sent > rescued && r.pool == "blue")
        .expect("blue answered again")
        .sent;
    // The recovery came at least RECOVERY_CONFIRM_SEC after blue's first
    // answer since its failure, which nginx logged after it was sent.
    let after = recovered.at - first;
    assert!(
        after >= Duration::from_secs(2),
        "recovery claimed {after:?} after blue's first answer"
    );
    // It states its evidence, and the evidence is what was required.
    let text = said(&recovered);
    let (answered, over) = evidence(&text).unwrap_or_else(|| panic!("no evidence in {text}"));
    assert!(answered >= 30, "{text}");
    assert!(over >= 2.0, "{text}");
    // Every answer it counts was sent before it was told.
    let sent_before = seen
        .iter()
        .filter(|r| r.sent > rescued && r.sent < recovered.at && r.pool == "blue")
        .count() as u64;
    assert!(sent_before >= answered, "{sent_before} < {answered}");
    assert!(
        seen.iter()
            .filter(|r| r.sent >= first)
            .all(|r| r.status == 200),
        "blue failed again"
    );
    assert!(wait_until(PATIENCE, || {
        s.pw.metrics()
            .get("poolwatch_incident_open{kind=\"failover\",pool=\"blue\"}")
            == 0.0
    }));
    assert_eq!(hook.violations(), Vec::<String>::new());
    drop(s.green);
}

/// A client that gives up after `patience`: sends the request and closes
/// the connection before the answer comes.
fn impatient_request(addr: &str, patience: Duration) {
    let mut stream = common::connect(addr, Duration::from_secs(10)).expect("connect to nginx");
    stream
        .write_all(format!("GET /version HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut byte = [0u8; 1];
    // The upstream takes a second: nothing can come within `patience`.
    let got = stream.read(&mut byte);
    assert!(got.is_err(), "an answer came before the client gave up");
}

#[test]
fn five_percent_client_aborts_open_nothing() {
    let hook = Webhook::start();
    // Blue answers after 1 s in `timeout` chaos: inside nginx's 2 s read
    // timeout, so every request blue gets is answered unless its client
    // leaves first.
    let s = stack(&hook, &[("CHAOS_TIMEOUT_SEC", "1")], &[]);
    s.blue.chaos(Some("timeout"));
    let addr = s.nginx.addr();
    // 20 clients, 5 requests each; every 20th request's client gives up
    // after 200 ms: 5 % of 100.
    let clients: Vec<_> = (0..20)
        .map(|c| {
            let addr = addr.clone();
            thread::spawn(move || {
                for i in 0..5 {
                    if (c * 5 + i) % 20 == 0 {
                        impatient_request(&addr, Duration::from_millis(200));
                    } else {
                        let (status, headers, _) =
                            common::http_request("GET", &addr, "/version", b"");
                        assert_eq!(status, 200);
                        assert_eq!(header(&headers, "x-app-pool"), Some("blue"));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // nginx logs each abort as soon as it sees the client go.
    let counted = wait_until(PATIENCE, || {
        s.pw.metrics().sum("poolwatch_requests_total", &[]) >= 100.0
    });
    assert!(counted, "{}", s.pw.metrics_text());
    let m = s.pw.metrics();
    let blue = |outcome: &str| {
        m.get(&format!(
            "poolwatch_upstream_attempts_total{{pool=\"blue\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(blue("client_abort"), 5.0, "{}", s.pw.metrics_text());
    assert_eq!(blue("success"), 95.0);
    for failure in ["error_5xx", "bad_gateway", "timeout", "no_response"] {
        assert_eq!(blue(failure), 0.0, "{failure}");
    }
    assert_eq!(
        m.get("poolwatch_requests_total{pool=\"none\",status_class=\"4xx\"}"),
        5.0
    );
    assert_eq!(
        m.get("poolwatch_window_error_ratio{pool=\"blue\",window=\"count\",kind=\"upstream\"}"),
        0.0
    );

    // A planned switch after them is the first thing told: the rules judge
    // lines in order, so anything the aborts opened would have come first.
    s.blue.chaos(None);
    let mut nginx = s.nginx;
    nginx.switch("green");
    for _ in 0..30 {
        let (status, headers, _) = nginx.get("/version");
        assert_eq!(
            (status, header(&headers, "x-app-pool")),
            (200, Some("green"))
        );
    }
    let switch = wait_for_title(&hook, "Pool switch: blue → green (planned)");
    let recent = |pw: &Poolwatch| pw.state()["alerting"]["recent"].as_array().unwrap().clone();
    assert!(wait_until(PATIENCE, || !recent(&s.pw).is_empty()));
    let recent = recent(&s.pw);
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0]["kind"], "pool_switch");
    assert_eq!(hook.received().len(), 1, "{:?}", title(&switch));
    assert_eq!(
        s.pw.metrics().sum("poolwatch_incident_open", &[]),
        0.0,
        "{}",
        s.pw.metrics_text()
    );
}

#[test]
fn an_idle_pools_incident_closes_with_no_traffic() {
    let hook = Webhook::start();
    let s = stack(
        &hook,
        &[],
        &[
            ("WINDOW_SECONDS", "3"),
            ("WINDOW_SIZE", "50"),
            ("ERROR_RATE_THRESHOLD", "0.5"),
            ("ERROR_RATE_MIN_REQUESTS", "20"),
        ],
    );
    let traffic = Traffic::start(s.nginx.addr());
    traffic.wait_for_answers("blue", 60);

    // One failure in blue's last 50 attempts: 2 %, over 0.5 %.
    s.blue.chaos(Some("error"));
    let opened = wait_for_title(&hook, "High error rate on blue");
    // The operator moves traffic to green for good; blue gets none.
    s.blue.chaos(None);
    let mut nginx = s.nginx;
    nginx.switch("green");

    let closed = wait_for_title(&hook, "Closed: no traffic to blue since ");
    assert!(closed.at > opened.at);
    let text = said(&closed);
    let blue = s.pw.pool_state("blue");
    let window = &blue["count_window"];
    let (failures, attempts) = (
        window["failures"].as_u64().unwrap(),
        window["attempts"].as_u64().unwrap(),
    );
    assert!(failures >= 1, "{blue}");
    let last = format!(
        "last error rate {:.1} %",
        failures as f64 * 100.0 / attempts as f64
    );
    assert!(text.contains(&last), "{last} not in {text}");
    assert!(text.contains("without calling blue healthy"), "{text}");
    // Nothing called it resolved.
    assert!(
        hook.received()
            .iter()
            .all(|r| !title(r).contains("Resolved: error rate on blue")),
        "{:?}",
        hook.received().iter().map(title).collect::<Vec<_>>()
    );
    // /state and the metrics say blue is idle instead of showing its old
    // ratio.
    assert_eq!(blue["idle"], true, "{blue}");
    assert_eq!(window["upstream_error_ratio"], serde_json::Value::Null);
    assert_eq!(s.pw.pool_state("green")["idle"], false);
    let m = s.pw.metrics();
    assert_eq!(m.get("poolwatch_pool_idle{pool=\"blue\"}"), 1.0);
    assert_eq!(m.get("poolwatch_pool_idle{pool=\"green\"}"), 0.0);
    let ratio =
        m.0.get("poolwatch_window_error_ratio{pool=\"blue\",window=\"count\",kind=\"upstream\"}")
            .copied()
            .expect("blue's ratio is exported");
    assert!(ratio.is_nan(), "{ratio}");
    assert_eq!(
        m.get("poolwatch_incident_open{kind=\"error_rate\",pool=\"blue\"}"),
        0.0
    );
    drop(traffic);
    drop(s.green);
}
