//! The whole stack on loopback ports, with real programs only: nginx
//! (Debian's package, rendered by the shipped template and scripts), two
//! demo-apps, poolwatch, a Slack-like webhook, and Prometheus (Debian's
//! package) scraping poolwatch. It runs `poolwatch check-failover`, a
//! planned switch under traffic, and checks that every query of the shipped
//! Grafana dashboard returns data.
//!
//! Slow (about a minute): run alone with `cargo test --test stack_e2e`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::dashboard;
use common::poolwatch::{Poolwatch, poolwatch_bin};
use common::webhook::Webhook;
use common::{
    DemoApp, Nginx, NginxOpts, PATIENCE, SyslogTarget, header, listening_tcp_addrs,
    try_http_request, unique_temp_path, wait_until,
};

/// Prometheus from Debian's package, scraping poolwatch every second. It
/// listens on port 0; the port it got is read from `/proc`, since
/// Prometheus logs only the address it was given.
struct Prometheus {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = unique_temp_path("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: poolwatch\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let mut child = Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (installed by scripts/test): {e}"));
        let log = |dir: &std::path::Path| {
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        };
        let mut listening = Vec::new();
        let found = wait_until(PATIENCE, || {
            listening = listening_tcp_addrs(child.id());
            !listening.is_empty() || matches!(child.try_wait(), Ok(Some(_)))
        });
        if !found || listening.len() != 1 {
            let _ = child.kill();
            panic!(
                "prometheus listens on {listening:?}, expected one address:\n{}",
                log(&dir)
            );
        }
        let addr = listening[0].to_string();
        let p = Prometheus { child, addr, dir };
        assert!(
            wait_until(PATIENCE, || {
                try_http_request("GET", &p.addr, "/-/ready", b"", Duration::from_secs(1))
                    .is_ok_and(|r| r.0 == 200)
            }),
            "prometheus not ready:\n{}",
            log(&p.dir)
        );
        p
    }

    /// Instant query; returns the `data.result` array.
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        dashboard::prometheus_query(&self.addr, expr)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn texts(hook: &Webhook) -> Vec<String> {
    hook.accepted()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn count(hook: &Webhook, needle: &str) -> usize {
    texts(hook).iter().filter(|t| t.contains(needle)).count()
}

#[test]
fn the_stack_fails_over_switches_and_feeds_the_dashboard() {
    let hook = Webhook::start();
    let url = hook.url();
    let pw = Poolwatch::start_with_env(
        &[],
        &[
            ("SLACK_WEBHOOK_URL", url.as_str()),
            ("RECOVERY_CONFIRM_SEC", "2"),
            ("WINDOW_SIZE", "20"),
            ("ERROR_RATE_MIN_REQUESTS", "10"),
        ],
    );
    let blue = DemoApp::start("blue", "blue-v1");
    let green = DemoApp::start("green", "green-v1");
    let mut nginx = Nginx::start(NginxOpts::new(
        "blue",
        &blue.addr(),
        &green.addr(),
        SyslogTarget::Udp(pw.udp.clone()),
    ));
    let prom = Prometheus::start(&pw.http);
    let front = nginx.addr();

    // Steady traffic served by blue.
    for _ in 0..30 {
        let (status, headers, _) = nginx.get("/version");
        assert_eq!(
            (status, header(&headers, "x-app-pool")),
            (200, Some("blue"))
        );
        assert_eq!(header(&headers, "x-release-id"), Some("blue-v1"));
    }

    // Blue fails: the first retried request is told, before anything else.
    // (How fast is measured by benches/load.rs.)
    blue.chaos(Some("error"));
    let (status, headers, _) = nginx.get("/version");
    assert_eq!(
        (status, header(&headers, "x-app-pool")),
        (200, Some("green"))
    );
    let got = hook.wait_for_accepted(1, PATIENCE);
    let first = got[0].body["text"].as_str().unwrap_or_default().to_string();
    assert!(first.contains("Failover: blue → green"), "{first}");
    // The small window makes blue's error rate alert too.
    assert!(wait_until(PATIENCE, || count(
        &hook,
        "High error rate on blue"
    ) == 1));

    // Blue healthy again: nginx tries it after fail_timeout; recovery told.
    blue.chaos(None);
    assert!(
        wait_until(PATIENCE, || {
            let _ = nginx.get("/version");
            count(&hook, "Recovered: blue") == 1
        }),
        "{:?}",
        texts(&hook)
    );
    assert_eq!(count(&hook, "Failover:"), 1, "{:?}", texts(&hook));

    // The shipped check: error then timeout chaos, 10 s each.
    let out = Command::new(poolwatch_bin())
        .arg("check-failover")
        .args(["--nginx", &format!("http://{front}")])
        .args(["--blue", &format!("http://{}", blue.addr())])
        .args(["--green", &format!("http://{}", green.addr())])
        .env_clear()
        .env("ACTIVE_POOL", "blue")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("error") && report.contains("timeout"),
        "{report}"
    );
    assert_eq!(report.matches("PASS").count(), 3, "{report}");

    // A planned switch under steady traffic: no failed request, a notice,
    // no failover.
    let failovers_before = count(&hook, "Failover:");
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, failed, sent, front) =
            (stop.clone(), failed.clone(), sent.clone(), front.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ok = try_http_request("GET", &front, "/version", b"", Duration::from_secs(10))
                    .is_ok_and(|r| r.0 == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                // Paces the traffic (at most ~50 requests a second); nothing
                // waits on it.
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Let recovery from the check settle on blue first.
    assert!(
        wait_until(PATIENCE, || count(&hook, "Recovered: blue") >= 2),
        "{report}\n{:#?}",
        texts(&hook)
    );
    let at_switch = sent.load(Ordering::Relaxed);
    nginx.switch("green");
    assert!(
        wait_until(PATIENCE, || count(&hook, "Pool switch: blue → green") == 1),
        "{:?}",
        texts(&hook)
    );
    // Traffic goes on through and after the switch.
    assert!(
        wait_until(PATIENCE, || sent.load(Ordering::Relaxed) >= at_switch + 50),
        "only {} requests since the switch",
        sent.load(Ordering::Relaxed) - at_switch
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the switch"
    );
    assert_eq!(
        count(&hook, "Failover:"),
        failovers_before,
        "{:?}",
        texts(&hook)
    );
    let (_, headers, _) = nginx.get("/version");
    assert_eq!(header(&headers, "x-app-pool"), Some("green"));
    assert_eq!(hook.violations(), Vec::<String>::new());

    // Every dashboard query returns data from the real Prometheus.
    let queries = dashboard::queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut empty = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            empty = queries
                .iter()
                .filter(|q| prom.query(&q.expr).map(|r| r.is_empty()).unwrap_or(true))
                .cloned()
                .collect();
            empty.is_empty()
        }),
        "queries with no data: {empty:#?}"
    );
    // The shipped alert rules loaded in that Prometheus.
    let (_, _, body) = try_http_request(
        "GET",
        &prom.addr,
        "/api/v1/rules",
        b"",
        Duration::from_secs(5),
    )
    .unwrap();
    let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(loaded >= 5, "{body}");
}
