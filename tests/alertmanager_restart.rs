//! Alertmanager across a restart of poolwatch, against Debian's real
//! Alertmanager: with `STATE_FILE`, the failover's alert a previous process
//! posted is posted again by the new one (same labels, annotations and
//! `startsAt`, so Alertmanager sees the same alert), stays active past the
//! lease the old process gave it, and is resolved when blue recovers. After
//! SIGTERM and after SIGKILL.
//!
//! Slow (the lease is four re-send intervals, and the test waits it out):
//! a target of its own. Waits bound failures only, and the lease is waited
//! out by the test's own clock while polling; nothing asserts how fast
//! anything was.

mod common;

#[path = "common/alertmanager.rs"]
mod alertmanager;
#[path = "common/failover.rs"]
mod failover;

use std::time::{Duration, SystemTime};

use alertmanager::{Alertmanager, Route};
use common::poolwatch::Poolwatch;
use common::webhook::Webhook;
use common::{TempDir, read_json, wait_until};
use failover::{failover, healthy};
use serde_json::Value;

/// Bounds a wait for something that must happen.
const WAIT: Duration = Duration::from_secs(60);

/// `ALERTMANAGER_RESEND_SEC`. Long enough that the lease (four of them)
/// covers a slow restart on a busy machine with room to spare.
const RESEND_SEC: u64 = 3;

/// How long an alert stays active in Alertmanager after its last post.
const LEASE: Duration = Duration::from_secs(4 * RESEND_SEC);

/// The active `PoolwatchFailover` alerts of `instance` that Alertmanager's
/// API lists (it lists no alert whose `endsAt` has passed).
fn active_failovers(am: &Alertmanager, instance: &str) -> Vec<Value> {
    let (status, _, body) =
        common::http_request("GET", &am.addr.to_string(), "/api/v2/alerts", b"");
    assert_eq!(status, 200, "{body}");
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    all.into_iter()
        .filter(|a| {
            a["labels"]["alertname"] == "PoolwatchFailover" && a["labels"]["instance"] == instance
        })
        .collect()
}

fn time_of(alert: &Value, field: &str) -> SystemTime {
    let text = alert[field].as_str().unwrap_or_default();
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .unwrap_or_else(|e| panic!("{field} {text:?}: {e}"))
}

fn statuses(receiver: &Webhook) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.body["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn restart_keeps_the_alert(kill: bool) {
    let instance = if kill {
        "watcher-killed"
    } else {
        "watcher-stopped"
    };
    let receiver = Webhook::start_at("/alertmanager-receiver");
    let am = Alertmanager::start(
        &receiver.url(),
        &Route {
            group_by: &["alertname", "pool"],
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(2),
            repeat_interval: Duration::from_secs(3600),
        },
    );
    let dir = TempDir::new("poolwatch-am-restart");
    let state = dir.path("state.json");
    let (am_url, state_s, resend) = (
        am.url(),
        state.to_str().unwrap().to_string(),
        RESEND_SEC.to_string(),
    );
    let env = [
        ("ALERTMANAGER_URL", am_url.as_str()),
        ("INSTANCE_NAME", instance),
        ("ALERT_LABELS", "cluster=test"),
        ("ALERTMANAGER_RESEND_SEC", resend.as_str()),
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("ERROR_RATE_MIN_REQUESTS", "100000"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("RUNBOOK_URL", "https://example.org/RUNBOOK.md"),
        ("STATE_FILE", state_s.as_str()),
    ];

    let mut pw = Poolwatch::start_with_env(&[], &env);
    healthy(&pw, "blue");
    pw.wait_judged();
    failover(&pw);
    let mut before = Vec::new();
    assert!(
        wait_until(WAIT, || {
            before = active_failovers(&am, instance);
            before.len() == 1
        }),
        "{before:#?}\n{}",
        pw.log()
    );
    let before = before.remove(0);
    assert_eq!(before["annotations"]["summary"], "Failover: blue → green");
    // The same write that records the failover as told carries its alert.
    assert!(
        wait_until(WAIT, || {
            read_json(&state)["incidents"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["kind"] == "failover" && i["announced"] == true)
            })
        }),
        "{}",
        read_json(&state)
    );
    if kill {
        pw.kill();
    } else {
        assert_eq!(pw.stop(), Some(0), "{}", pw.log());
    }
    // Whatever the old process posted expires at most LEASE after this.
    let restarted_at = SystemTime::now();

    let pw = Poolwatch::start_with_env(&[], &env);
    assert!(pw.log().contains("state restored"), "{}", pw.log());
    // The new process posts the restored alert without any new traffic.
    let mut latest = Vec::new();
    assert!(
        wait_until(WAIT, || {
            latest = active_failovers(&am, instance);
            latest
                .first()
                .is_some_and(|a| time_of(a, "updatedAt") > restarted_at)
        }),
        "no post from the restarted poolwatch: {latest:#?}\n{}",
        pw.log()
    );
    // Past every lease the old process gave, by this test's clock, polling
    // Alertmanager meanwhile: it never stopped listing the alert, because
    // the new process keeps re-sending it.
    let lapsed = restarted_at + LEASE + Duration::from_secs(RESEND_SEC);
    let mut missing = 0;
    assert!(
        wait_until(LEASE + WAIT, || {
            if active_failovers(&am, instance).is_empty() {
                missing += 1;
            }
            SystemTime::now() > lapsed
        }),
        "the test's clock stood still"
    );
    assert_eq!(
        missing,
        0,
        "the alert lapsed after the restart:\n{}",
        pw.log()
    );
    let latest = active_failovers(&am, instance);
    assert_eq!(latest.len(), 1, "lapsed after the restart:\n{}", pw.log());
    let after = &latest[0];
    // The same alert: same identity, words and start.
    assert_eq!(after["fingerprint"], before["fingerprint"], "{after:#}");
    assert_eq!(after["labels"], before["labels"], "{after:#}");
    assert_eq!(after["annotations"], before["annotations"], "{after:#}");
    assert_eq!(after["startsAt"], before["startsAt"], "{after:#}");
    assert!(time_of(after, "endsAt") > lapsed, "{after:#}");
    // Alertmanager never told anyone it resolved meanwhile.
    assert!(
        !statuses(&receiver).iter().any(|s| s == "resolved"),
        "{:?}",
        statuses(&receiver)
    );

    // Blue serves again: the same alert is resolved, with its original
    // start and the recovery's words.
    assert!(
        wait_until(WAIT, || {
            healthy(&pw, "blue");
            active_failovers(&am, instance).is_empty()
        }),
        "{}",
        pw.log()
    );
    let mut resolved = None;
    assert!(
        wait_until(WAIT, || {
            resolved = receiver
                .received()
                .into_iter()
                .find(|r| r.body["status"] == "resolved");
            resolved.is_some()
        }),
        "{:?}\n{}",
        statuses(&receiver),
        am.log()
    );
    let notice = resolved.unwrap().body;
    let alerts = notice["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{notice:#}");
    let a = &alerts[0];
    assert_eq!(a["labels"], before["labels"], "{notice:#}");
    assert_eq!(a["fingerprint"], before["fingerprint"], "{notice:#}");
    assert_eq!(
        time_of(a, "startsAt"),
        time_of(&before, "startsAt"),
        "{notice:#}"
    );
    assert_eq!(
        a["annotations"]["summary"], "Recovered: blue is serving again",
        "{notice:#}"
    );
    // One firing notification, one resolved: nothing lapsed in between.
    assert_eq!(statuses(&receiver), ["firing", "resolved"]);
}

#[test]
fn sigterm_restart_keeps_the_alert_active_then_resolves_it() {
    restart_keeps_the_alert(false);
}

#[test]
fn sigkill_restart_keeps_the_alert_active_then_resolves_it() {
    restart_keeps_the_alert(true);
}
