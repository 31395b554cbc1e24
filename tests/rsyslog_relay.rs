//! nginx → rsyslog → poolwatch, all real: Debian's nginx with the shipped
//! config logs each request to its own file and, over unix datagram
//! sockets, to Debian's rsyslogd, which forwards every line over UDP to the
//! real poolwatch in one of its forwarding formats. poolwatch must count
//! exactly what nginx's file log says: every request, per status class,
//! nothing malformed.
//!
//! rsyslog gets each line twice, on two `imuxsock` inputs: one that parses
//! nginx's host name (`UseSpecialParser="off" ParseHostname="on"`, as the
//! README recommends) and one with imuxsock's defaults, which take nginx's
//! host name for the tag. So poolwatch counts every request twice.

mod common;
#[path = "common/rsyslog.rs"]
mod rsyslog;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::poolwatch::{Metrics, Poolwatch};
use common::{DemoApp, Nginx, NginxOpts, SyslogTarget, unique_temp_path, wait_until};
use rsyslog::Rsyslog;

/// Each request reaches poolwatch once through each relay input.
const COPIES: u64 = 2;

/// Requests between waits for poolwatch to have counted them: a unix
/// datagram socket holds only `net.unix.max_dgram_qlen` datagrams (10 on
/// some kernels) before nginx's non-blocking send fails, so the test never
/// lets more than this many wait for rsyslog.
const BATCH: usize = 4;

/// How long a batch may take to come through; bounds only a failure.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn rfc5424_syslog_protocol23_format_is_counted_exactly() {
    relay_counts_exactly("RSYSLOG_SyslogProtocol23Format");
}

#[test]
fn rfc3164_forward_format_is_counted_exactly() {
    relay_counts_exactly("RSYSLOG_ForwardFormat");
}

#[test]
fn rfc3164_traditional_forward_format_is_counted_exactly() {
    relay_counts_exactly("RSYSLOG_TraditionalForwardFormat");
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn relay_counts_exactly(template: &str) {
    let pw = Poolwatch::start(&[]);
    let (host, port) = pw.udp.rsplit_once(':').expect("host:port");
    let (host, port) = (host.to_owned(), port.to_owned());
    let template_name = template.to_owned();
    let relay = Rsyslog::start(
        |dir| {
            let dir = dir.display();
            format!(
                r#"
input(type="imuxsock" Socket="{dir}/nginx.sock" UseSpecialParser="off" ParseHostname="on"
      RateLimit.Interval="0" Ruleset="to_poolwatch")
input(type="imuxsock" Socket="{dir}/nginx-defaults.sock" RateLimit.Interval="0"
      Ruleset="to_poolwatch")
ruleset(name="to_poolwatch") {{
    action(type="omfwd" target="{host}" port="{port}" protocol="udp"
           template="{template_name}")
}}
"#
            )
        },
        &["nginx.sock", "nginx-defaults.sock"],
    );

    let files = TempDir(unique_temp_path("poolwatch-relay-log"));
    fs::create_dir_all(&files.0).expect("create access log dir");
    let access_log = files.0.join("access.log");
    let blue = DemoApp::start("blue", "blue-v1");
    let green = DemoApp::start("green", "green-v1");
    let extra = format!(
        "\n    access_log syslog:server=unix:{},tag=nginx poolwatch;\
         \n    access_log {} poolwatch;",
        relay.path("nginx-defaults.sock").display(),
        access_log.display()
    );
    let nginx = Nginx::start(
        NginxOpts::new(
            "blue",
            &blue.addr(),
            &green.addr(),
            SyslogTarget::Unix(relay.path("nginx.sock")),
        )
        .with_edit(move |conf| {
            let line = "tag=nginx poolwatch;";
            assert_eq!(conf.matches(line).count(), 1, "one syslog access_log");
            conf.replacen(line, &format!("{line}{extra}"), 1)
        }),
    );

    let mut made = 0;
    let mut batch = |paths: &[&str]| {
        for chunk in paths.chunks(BATCH) {
            for path in chunk {
                nginx.get(path);
            }
            made += chunk.len();
            wait_for_relayed(&pw, &nginx, &relay, made);
        }
    };
    batch(&["/version"; 40]);
    batch(&["/status/404"; 6]);
    // Blue fails: nginx retries on green, then keeps blue out for
    // fail_timeout, so green serves what follows.
    blue.chaos(Some("error"));
    batch(&["/version"; 6]);
    blue.chaos(None);
    batch(&["/version"; 12]);
    // Both pools answer 500: a 5xx reaches the client.
    batch(&["/status/500"; 3]);
    batch(&["/status/201"; 5]);
    batch(&["/version"; 12]);
    let made = made as u64;

    // nginx's own file log is the reference.
    let lines = wait_for_file_lines(&access_log, made);
    let mut per_class = [0u64; 5];
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("nginx file log line is not JSON ({e}): {line}"));
        let status = v["status"].as_u64().expect("numeric status");
        per_class[(status / 100).clamp(1, 5) as usize - 1] += 1;
    }
    assert_eq!(lines.len() as u64, made, "one file log line per request");
    assert!(
        per_class[0..5].iter().filter(|&&n| n > 0).count() >= 3,
        "the scenario gives 2xx, 4xx and 5xx: {per_class:?}"
    );

    let m = pw.metrics();
    let diagnose = |m: &Metrics| diagnostics(m, &pw, &nginx, &relay);
    assert_eq!(
        m.sum("poolwatch_ingest_malformed_total", &[]),
        0.0,
        "{}",
        diagnose(&m)
    );
    assert_eq!(
        m.get("poolwatch_ingest_datagrams_total"),
        (COPIES * made) as f64,
        "{}",
        diagnose(&m)
    );
    assert_eq!(
        m.sum("poolwatch_requests_total", &[]),
        (COPIES * made) as f64,
        "{}",
        diagnose(&m)
    );
    for (i, n) in per_class.iter().enumerate() {
        let class = format!("status_class=\"{}xx\"", i + 1);
        assert_eq!(
            m.sum("poolwatch_requests_total", &[&class]),
            (COPIES * n) as f64,
            "{class}: nginx logged {n}\n{}",
            diagnose(&m)
        );
    }
}

/// Waits until poolwatch has received every copy of the `made` requests.
fn wait_for_relayed(pw: &Poolwatch, nginx: &Nginx, relay: &Rsyslog, made: usize) {
    let want = COPIES * made as u64;
    let mut m = Metrics::default();
    let arrived = wait_until(RELAY_TIMEOUT, || {
        m = pw.metrics();
        m.get("poolwatch_ingest_datagrams_total") >= want as f64
    });
    assert!(
        arrived,
        "poolwatch received {} of {want} datagrams\n{}",
        m.get("poolwatch_ingest_datagrams_total"),
        diagnostics(&m, pw, nginx, relay)
    );
}

/// nginx writes its log line after the response: wait for all `n`.
fn wait_for_file_lines(path: &Path, n: u64) -> Vec<String> {
    let mut lines = Vec::new();
    let complete = wait_until(RELAY_TIMEOUT, || {
        let text = fs::read_to_string(path).unwrap_or_default();
        lines = text.lines().map(str::to_owned).collect();
        lines.len() as u64 >= n
    });
    assert!(complete, "nginx logged {} of {n} lines", lines.len());
    lines
}

fn diagnostics(m: &Metrics, pw: &Poolwatch, nginx: &Nginx, relay: &Rsyslog) -> String {
    let ingest: Vec<_> = m
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("poolwatch_ingest") || k.starts_with("poolwatch_requests"))
        .collect();
    format!(
        "metrics: {ingest:?}\nnginx error log:\n{}\nrsyslogd:\n{}\npoolwatch:\n{}",
        nginx.error_log(),
        relay.log(),
        pw.log()
    )
}
