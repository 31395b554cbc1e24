//! Alerts end to end: the real binary fed over UDP, delivering to a local
//! server that behaves like Slack's webhook. Every body the server accepts
//! is checked against the webhook contract.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::poolwatch::{Poolwatch, poolwatch_bin};
use common::webhook::{Mode, Webhook};
use common::{PATIENCE, http_request, wait_until};

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

/// The wall-clock second, as [`line`] stamps it.
fn unix_second() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One access line, as nginx logs it, stamped with the wall-clock second
/// so the same lines can be replayed later.
fn line(status: u16, ups: &str, addrs: &str, pool: &str) -> Vec<u8> {
    let now = unix_second();
    let time = poolwatch::logtime::format_rfc3339(now).replace('Z', "+00:00");
    format!(
        r#"<190>Nov  5 09:07:03 web nginx: {{"time":"{time}","remote_addr":"10.0.0.9","request":"GET /version HTTP/1.1","method":"GET","uri":"/version","status":{status},"body_bytes_sent":57,"request_time":0.004,"upstream_status":"{ups}","upstream_addr":"{addrs}","upstream_response_time":"0.004","pool":"{pool}","release":"{pool}-<v1>&co","request_id":"0123456789abcdef0123456789abcdef","http_user_agent":"curl/8.0"}}"#
    )
    .into_bytes()
}

fn ok(pool: &str) -> Vec<u8> {
    let addr = if pool == "blue" { BLUE } else { GREEN };
    line(200, "200", addr, pool)
}

fn rescued() -> Vec<u8> {
    line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green")
}

fn many(n: usize, d: Vec<u8>) -> Vec<Vec<u8>> {
    vec![d; n]
}

/// Settings every test here shares: known addresses, quick confirmation.
fn env<'a>(hook: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("SLACK_WEBHOOK_URL", hook),
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("RUNBOOK_URL", "https://example.org/poolwatch/RUNBOOK.md"),
    ];
    env.extend_from_slice(extra);
    env
}

fn text(body: &serde_json::Value) -> String {
    body["text"].as_str().unwrap_or_default().to_string()
}

fn texts(hook: &Webhook) -> Vec<String> {
    hook.accepted().iter().map(text).collect()
}

fn no_violations(hook: &Webhook) {
    assert_eq!(hook.violations(), Vec::<String>::new());
}

#[test]
fn failover_is_told_once_then_recovery_and_replay_agrees() {
    let hook = Webhook::start();
    let url = hook.url();
    let mut pw =
        Poolwatch::start_with_env(&[], &env(&url, &[("ERROR_RATE_MIN_REQUESTS", "100000")]));
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut send = |batch: Vec<Vec<u8>>| {
        pw.send(&batch);
        log.extend(batch);
    };

    send(many(30, ok("blue")));
    pw.wait_judged();
    // Healthy traffic is quiet: anything it called for would be queued now,
    // ahead of the failover below, which must come first.
    assert!(hook.received().is_empty(), "healthy traffic is quiet");

    send(vec![rescued()]);
    let got = hook.wait_for_accepted(1, PATIENCE);
    let first = text(&got[0].body);
    assert!(first.contains("Failover: blue → green"), "{first}");
    let blocks = got[0].body["blocks"].to_string();
    assert!(blocks.contains("RUNBOOK.md#failover"), "{blocks}");
    // The release id came from a request: escaped for Slack.
    assert!(blocks.contains("blue-&lt;v1&gt;&amp;co"), "{blocks}");

    // More retries and green serving alone: the same incident, in cooldown.
    // (The recovery below must be the very next message.)
    let retries = many(5, rescued());
    let last_failure = unix_second();
    send(retries);
    send(many(25, ok("green")));
    pw.wait_judged();
    assert_eq!(texts(&hook).len(), 1, "{:?}", texts(&hook));
    let m = pw.metrics();
    assert!(
        m.get("poolwatch_alerts_total{sink=\"slack\",kind=\"failover\",outcome=\"suppressed_cooldown\"}") >= 1.0
    );
    assert_eq!(
        m.get("poolwatch_failovers_total{from=\"blue\",to=\"green\"}"),
        1.0
    );
    assert_eq!(
        m.get("poolwatch_incident_open{kind=\"failover\",pool=\"blue\"}"),
        1.0
    );

    // Blue healthy and serving again: recovered once it has answered over
    // RECOVERY_CONFIRM_SEC (1 s); a burst followed by silence is no
    // evidence. Blue keeps answering until the lines' own second stamps
    // run 2 s past the last failure's too, so the replay below, which
    // judges by those stamps, has the same evidence.
    assert!(wait_until(PATIENCE, || {
        send(many(5, ok("blue")));
        hook.accepted().len() >= 2 && unix_second() >= last_failure + 3
    }));
    let got = hook.wait_for_accepted(2, PATIENCE);
    let second = text(&got[1].body);
    assert!(
        second.contains("Recovered: blue is serving again"),
        "{second}"
    );
    pw.wait_judged();
    let m = pw.metrics();
    assert_eq!(
        m.get("poolwatch_incident_open{kind=\"failover\",pool=\"blue\"}"),
        0.0
    );
    assert_eq!(
        m.get("poolwatch_alerts_total{sink=\"slack\",kind=\"failover\",outcome=\"sent\"}"),
        1.0
    );
    assert_eq!(
        m.get("poolwatch_alerts_total{sink=\"slack\",kind=\"recovery\",outcome=\"sent\"}"),
        1.0
    );
    // Stopping delivers whatever is still queued: after it, nothing more
    // can arrive.
    assert_eq!(pw.stop(), Some(0));
    let live = texts(&hook);
    assert_eq!(live.len(), 2, "{live:?}");
    no_violations(&hook);

    // The same lines replayed give the same notifications.
    let path = common::unique_temp_path("poolwatch-replay");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in &log {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let out = Command::new(poolwatch_bin())
        .args(["replay", "--json", path.to_str().unwrap()])
        .env_clear()
        .env("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002")
        .env("RECOVERY_CONFIRM_SEC", "1")
        .env("ERROR_RATE_MIN_REQUESTS", "100000")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let replayed: Vec<String> = summary["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_string())
        .collect();
    let live_titles: Vec<String> = live
        .iter()
        .map(|t| t.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    for (r, l) in replayed.iter().zip(&live_titles) {
        assert!(l.contains(r.as_str()), "replay {r:?} vs live {l:?}");
    }
}

#[test]
fn planned_switch_is_a_notice_not_a_failover() {
    let hook = Webhook::start();
    let url = hook.url();
    let mut pw = Poolwatch::start_with_env(&[], &env(&url, &[]));
    pw.send(&many(30, ok("blue")));
    // Blue seen serving first, then green.
    pw.wait_judged();
    pw.send(&many(30, ok("green")));
    let got = hook.wait_for_accepted(1, PATIENCE);
    let t = text(&got[0].body);
    assert!(t.contains("Pool switch: blue → green (planned)"), "{t}");
    pw.wait_judged();
    let m = pw.metrics();
    assert_eq!(m.sum("poolwatch_failovers_total", &[]), 0.0);
    // Green is the primary now: /state says so.
    assert_eq!(pw.state()["alerting"]["primary"], "green");
    // Stopping delivers whatever is still queued: it was the notice alone.
    assert_eq!(pw.stop(), Some(0));
    assert_eq!(texts(&hook).len(), 1, "{:?}", texts(&hook));
    no_violations(&hook);
}

#[test]
fn error_rate_is_told_with_its_figures_then_resolved() {
    let hook = Webhook::start();
    let url = hook.url();
    let mut pw = Poolwatch::start_with_env(
        &[],
        &env(
            &url,
            &[
                ("WINDOW_SIZE", "100"),
                ("ERROR_RATE_THRESHOLD", "4.5"),
                ("ERROR_RATE_MIN_REQUESTS", "50"),
            ],
        ),
    );
    pw.send(&many(95, ok("blue")));
    pw.wait_judged();
    // 5 client-visible failures in 100: only all five together exceed 4.5 %.
    pw.send(&many(5, line(503, "503", BLUE, "blue")));
    let rate = |hook: &Webhook| -> Vec<String> {
        texts(hook)
            .into_iter()
            .filter(|t| t.contains("error rate on blue"))
            .collect()
    };
    assert!(wait_until(PATIENCE, || rate(&hook).len() == 1));
    let body = hook
        .accepted()
        .into_iter()
        .find(|b| text(b).contains("High error rate on blue"))
        .unwrap();
    let blocks = body["blocks"].to_string();
    for want in [
        "5 / 100",
        "5.00 %",
        "&gt; 4.5 %",
        "last 100 attempts",
        "client 5xx",
    ] {
        assert!(blocks.contains(want), "{want} missing in {blocks}");
    }
    // Healthy traffic pushes the failures out of the window; resolved once
    // blue has answered over RECOVERY_CONFIRM_SEC, with the evidence.
    pw.send(&many(100, ok("blue")));
    assert!(
        wait_until(PATIENCE, || {
            pw.send(&many(5, ok("blue")));
            rate(&hook).len() == 2
        }),
        "{:?}",
        texts(&hook)
    );
    assert!(rate(&hook)[1].contains("Resolved: error rate on blue"));
    assert!(
        rate(&hook)[1].contains("requests with 0 failures over"),
        "{}",
        rate(&hook)[1]
    );
    // Stopping delivers whatever is still queued: nothing more was said.
    pw.wait_judged();
    assert_eq!(pw.stop(), Some(0));
    assert_eq!(rate(&hook).len(), 2);
    no_violations(&hook);
}

#[test]
fn maintenance_holds_back_then_resumes_and_expires() {
    let hook = Webhook::start();
    let url = hook.url();
    let pw = Poolwatch::start_with_env(&[], &env(&url, &[("ERROR_RATE_MIN_REQUESTS", "100000")]));
    pw.send(&many(30, ok("blue")));

    // On through the CLI, as the runbook says, for a while: long enough
    // that the failover below is surely judged within it (the expiry is
    // waited for, so this only costs time once).
    let out = Command::new(poolwatch_bin())
        .args([
            "maintenance",
            "on",
            "--for",
            "10s",
            "--reason",
            "deploy v2",
            "--by",
            "tester",
        ])
        .env_clear()
        .env("POOLWATCH_URL", format!("http://{}", pw.http))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("maintenance: on") && said.contains("deploy v2"),
        "{said}"
    );
    let got = hook.wait_for_accepted(1, PATIENCE);
    assert!(text(&got[0].body).contains("Maintenance started by tester"));

    // A failover while on: counted, not sent.
    pw.send(&[rescued()]);
    assert!(wait_until(PATIENCE, || {
        pw.metrics()
            .get("poolwatch_alerts_total{sink=\"slack\",kind=\"failover\",outcome=\"suppressed_maintenance\"}")
            == 1.0
    }));
    assert_eq!(pw.metrics().get("poolwatch_maintenance_mode"), 1.0);
    assert_eq!(texts(&hook).len(), 1);

    // Expiry ends it, with a summary of what was held back.
    let got = hook.wait_for_accepted(2, PATIENCE);
    let ended = text(&got[1].body);
    assert!(ended.contains("Maintenance ended (expired)"), "{ended}");
    assert!(got[1].body.to_string().contains("failover ×1"));

    // Live again: the failover still going on is announced on new evidence.
    pw.send(&[rescued()]);
    let got = hook.wait_for_accepted(3, PATIENCE);
    assert!(text(&got[2].body).contains("Failover: blue → green"));

    // On and off through the HTTP API.
    let (status, _, _) = http_request(
        "POST",
        &pw.http,
        "/maintenance",
        br#"{"on": true, "reason": "db", "by": "ops"}"#,
    );
    assert_eq!(status, 200);
    hook.wait_for_accepted(4, PATIENCE);
    let (status, _, body) = http_request(
        "POST",
        &pw.http,
        "/maintenance",
        br#"{"on": false, "by": "ops"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let got = hook.wait_for_accepted(5, PATIENCE);
    assert!(text(&got[4].body).contains("Maintenance ended (turned off by ops)"));
    let (status, _, body) = http_request(
        "POST",
        &pw.http,
        "/maintenance",
        br#"{"on": true, "for": "soon"}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("30m"), "{body}");
    no_violations(&hook);
}

#[test]
fn maintenance_setting_at_start_and_flag_file() {
    let hook = Webhook::start();
    let url = hook.url();
    let flag = common::unique_temp_path("poolwatch-flag");
    let flag_s = flag.to_str().unwrap().to_string();
    let pw = Poolwatch::start_with_env(
        &[],
        &env(
            &url,
            &[("MAINTENANCE_MODE", "true"), ("MAINTENANCE_FILE", &flag_s)],
        ),
    );
    let got = hook.wait_for_accepted(1, PATIENCE);
    assert!(text(&got[0].body).contains("Maintenance started by settings"));
    let (status, _, _) = http_request("POST", &pw.http, "/maintenance", br#"{"on": false}"#);
    assert_eq!(status, 200);
    hook.wait_for_accepted(2, PATIENCE);
    std::fs::write(&flag, "kernel upgrade\n").unwrap();
    let got = hook.wait_for_accepted(3, PATIENCE);
    assert!(got[2].body.to_string().contains("kernel upgrade"));
    std::fs::remove_file(&flag).unwrap();
    let got = hook.wait_for_accepted(4, PATIENCE);
    assert!(text(&got[3].body).contains("removed"));
    no_violations(&hook);
}

/// Delivery stuck on a webhook that never answers holds up nothing else:
/// every datagram is ingested while not one request has been answered.
/// (How fast ingestion keeps up is `benches/load.rs`'s business.)
#[test]
fn a_hanging_webhook_never_slows_ingestion() {
    let hook = Webhook::start();
    hook.set_mode(Mode::Hang);
    let url = hook.url();
    let pw = Poolwatch::start_with_env(
        &[],
        &env(
            &url,
            &[
                ("ALERT_TIMEOUT_SEC", "1"),
                ("ALERT_DRAIN_SEC", "1"),
                // Blue's traffic below would otherwise end the failover
                // after a second, and the recovery notice would queue
                // behind the stuck one: the failover stays the only one.
                ("RECOVERY_CONFIRM_SEC", "3600"),
            ],
        ),
    );
    pw.send(&many(30, ok("blue")));
    pw.send(&[rescued()]);
    hook.wait_for(1, PATIENCE);
    // Delivery is stuck on the first notification, timing out and
    // retrying; ingestion goes on round after round.
    let mut sent = 31u64;
    for _ in 0..10 {
        pw.send(&many(2000, ok("blue")));
        sent += 2000;
        let mut counted = 0.0;
        assert!(
            wait_until(PATIENCE, || {
                counted = pw.metrics().get("poolwatch_ingest_datagrams_total");
                counted == sent as f64
            }),
            "ingestion stalled: {counted} of {sent}"
        );
    }
    pw.wait_judged();
    assert!(
        hook.received().iter().all(|r| r.answered == 0),
        "the webhook answered: {:?}",
        hook.received()
    );
    let m = pw.metrics();
    assert_eq!(m.get("poolwatch_ingest_kernel_drops_total"), 0.0);
    assert_eq!(
        m.get("poolwatch_alert_queue_depth{sink=\"slack\"}"),
        0.0,
        "the stuck one is in hand, not queued"
    );
    assert!(
        wait_until(PATIENCE, || hook.received().len() >= 2),
        "delivery times out and retries"
    );
}

#[test]
fn sigterm_delivers_what_is_queued_or_reports_it() {
    // A slow webhook: the queued failover still goes out before exit.
    let hook = Webhook::start();
    hook.set_mode(Mode::Slow(Duration::from_millis(700)));
    let url = hook.url();
    let mut pw = Poolwatch::start_with_env(&[], &env(&url, &[("ALERT_DRAIN_SEC", "5")]));
    pw.send(&many(30, ok("blue")));
    pw.send(&[rescued()]);
    // The failover is decided and queued before the signal.
    pw.wait_judged();
    assert_eq!(pw.stop(), Some(0));
    assert!(
        texts(&hook).iter().any(|t| t.contains("Failover")),
        "{:?}",
        texts(&hook)
    );

    // A webhook that never answers: reported as undelivered, exit on time.
    let hook = Webhook::start();
    hook.set_mode(Mode::Hang);
    let url = hook.url();
    let mut pw = Poolwatch::start_with_env(&[], &env(&url, &[("ALERT_DRAIN_SEC", "1")]));
    pw.send(&many(30, ok("blue")));
    pw.send(&[rescued()]);
    hook.wait_for(1, PATIENCE);
    // Exits by itself (`stop` would kill it after PATIENCE and return None).
    assert_eq!(pw.stop(), Some(0));
    let log = pw.log();
    assert!(log.contains("undelivered"), "{log}");
    assert!(log.contains("Failover: blue"), "{log}");
    assert!(!log.contains("XXXXXXXX"), "the webhook URL leaked: {log}");
}

#[test]
fn alert_test_command_reports_delivery() {
    let hook = Webhook::start();
    let run = |hook: &Webhook| {
        Command::new(poolwatch_bin())
            .arg("alert-test")
            .env_clear()
            .env("SLACK_WEBHOOK_URL", hook.url())
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let out = run(&hook);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = hook.wait_for_accepted(1, PATIENCE);
    assert!(text(&got[0].body).contains("poolwatch alert test"));
    hook.set_mode(Mode::Status(404, "no_service"));
    let out = run(&hook);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_service"), "{err}");
    assert!(!err.contains("XXXXXXXX"), "the webhook URL leaked: {err}");
    no_violations(&hook);

    // Without a webhook the sample goes to stdout as one JSON line.
    let out = Command::new(poolwatch_bin())
        .arg("alert-test")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["kind"], "test");
}

/// The titles `poolwatch replay` gives for `log`, with `settings`.
fn replay_titles(log: &[Vec<u8>], settings: &[(&str, &str)]) -> Vec<String> {
    let path = common::unique_temp_path("poolwatch-replay");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in log {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let out = Command::new(poolwatch_bin())
        .args(["replay", "--json", path.to_str().unwrap()])
        .env_clear()
        .envs(settings.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_string())
        .collect()
}

/// Client aborts, an error rate on a pool that traffic then leaves, and
/// the incidents that closes, live and replayed.
#[test]
fn aborts_and_an_idle_pool_live_and_replayed_agree() {
    let hook = Webhook::start();
    let url = hook.url();
    let settings = [
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("RECOVERY_MIN_REQUESTS", "10"),
        ("WINDOW_SIZE", "60"),
        ("WINDOW_SECONDS", "2"),
        ("ERROR_RATE_MIN_REQUESTS", "20"),
    ];
    let mut env = vec![("SLACK_WEBHOOK_URL", url.as_str())];
    env.extend_from_slice(&settings);
    let pw = Poolwatch::start_with_env(&[], &env);
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut send = |batch: Vec<Vec<u8>>| {
        pw.send(&batch);
        log.extend(batch);
    };

    // 50 answers and 3 clients that left while nginx waited on blue:
    // 5.7 % of blue's attempts if aborts were failures, and nothing here.
    send(many(50, ok("blue")));
    send(many(3, line(499, "-", BLUE, "")));
    pw.wait_judged();
    assert!(hook.received().is_empty(), "{:?}", texts(&hook));
    // Then 3 failures users saw: blue's error rate, users seeing errors.
    send(many(3, line(503, "503", BLUE, "blue")));
    let failed = unix_second();
    let titles = |hook: &Webhook| -> Vec<String> {
        texts(hook)
            .iter()
            .map(|t| t.lines().next().unwrap_or("").to_string())
            .collect()
    };
    let has = |hook: &Webhook, needle: &str| titles(hook).iter().any(|t| t.contains(needle));
    assert!(wait_until(PATIENCE, || has(
        &hook,
        "High error rate on blue"
    ) && has(
        &hook,
        "Users are seeing errors"
    )));
    let m = pw.metrics();
    assert_eq!(
        m.get("poolwatch_upstream_attempts_total{pool=\"blue\",outcome=\"client_abort\"}"),
        3.0
    );
    assert_eq!(
        m.get("poolwatch_upstream_attempts_total{pool=\"blue\",outcome=\"no_response\"}"),
        0.0
    );

    // Traffic moves to green more than RECOVERY_CONFIRM_SEC after blue's
    // last failure: a planned switch. Blue gets nothing from then on, so its incident closes for
    // want of traffic, not as resolved.
    assert!(wait_until(PATIENCE, || unix_second() >= failed + 3));
    let moved = unix_second();
    assert!(wait_until(PATIENCE, || {
        send(many(5, ok("green")));
        has(&hook, "Closed: no traffic to blue since")
            && has(&hook, "Resolved: users no longer see errors")
            // The replay's clock is the lines' own seconds: give it the
            // same idle time.
            && unix_second() >= moved + 3
    }));
    let live = titles(&hook);
    assert!(
        live.iter()
            .any(|t| t.contains("Pool switch: blue → green (planned)")),
        "{live:?}"
    );
    assert!(
        live.iter()
            .all(|t| !t.contains("Failover") && !t.contains("Resolved: error rate on blue")),
        "{live:?}"
    );
    assert_eq!(live.len(), 5, "{live:?}");
    no_violations(&hook);

    // The same lines replayed give the same notifications. Figures and
    // times in titles depend on where a look falls (every 100 ms live,
    // every log second in a replay): compare what comes before them.
    let shape = |t: &str| -> String {
        t.split(|c: char| c.is_ascii_digit())
            .next()
            .unwrap_or("")
            .to_string()
    };
    let mut replayed: Vec<String> = replay_titles(&log, &settings)
        .iter()
        .map(|t| shape(t))
        .collect();
    // Slack's text starts with the severity's emoji.
    let mut live: Vec<String> = live
        .iter()
        .map(|t| shape(t.split_once(' ').map_or(t.as_str(), |(_, title)| title)))
        .collect();
    replayed.sort();
    live.sort();
    assert_eq!(replayed.len(), live.len(), "{replayed:?} vs {live:?}");
    for (r, l) in replayed.iter().zip(&live) {
        assert_eq!(r, l);
    }
}
