//! poolwatch and Debian's real Alertmanager: two instances watching the
//! same nginx page once, `amtool` sees what is open, a late Alertmanager
//! still learns of a failover, and Slack and Alertmanager never wait for
//! each other.
//!
//! Slow (Alertmanager groups notifications over seconds): a target of its
//! own. Waits bound failures only; nothing here asserts how fast anything
//! was, only what happened and in what order.

mod common;

#[path = "common/alertmanager.rs"]
mod alertmanager;
#[path = "common/failover.rs"]
mod failover;

use std::time::Duration;

use alertmanager::{Alertmanager, Backend, Front, Route};
use common::poolwatch::Poolwatch;
use common::wait_until;
use common::webhook::{Mode, Webhook};
use failover::{failover, healthy};
use serde_json::Value;

/// Bounds a wait for something that must happen.
const WAIT: Duration = Duration::from_secs(60);

fn poolwatch(am_url: &str, instance: &str, extra: &[(&str, &str)]) -> Poolwatch {
    let mut env = vec![
        ("ALERTMANAGER_URL", am_url),
        ("INSTANCE_NAME", instance),
        ("ALERT_LABELS", "cluster=test"),
        ("ALERTMANAGER_RESEND_SEC", "2"),
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("ERROR_RATE_MIN_REQUESTS", "100000"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("RUNBOOK_URL", "https://example.org/RUNBOOK.md"),
    ];
    env.extend_from_slice(extra);
    Poolwatch::start_with_env(&[], &env)
}

/// The notifications Alertmanager sent to `receiver`, as its webhook
/// payloads.
fn notifications(receiver: &Webhook) -> Vec<Value> {
    receiver.received().into_iter().map(|r| r.body).collect()
}

fn instances(n: &Value) -> Vec<String> {
    let mut out: Vec<String> = n["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["labels"]["instance"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn two_instances_one_grouped_notification_then_one_resolved() {
    let receiver = Webhook::start_at("/alertmanager-receiver");
    // Long enough a wait that both instances' alerts are in the group
    // (they post within a tick of each other), and an interval long enough
    // that both recoveries land between two flushes of the group.
    let am = Alertmanager::start(
        &receiver.url(),
        &Route {
            group_by: &["alertname", "pool"],
            group_wait: Duration::from_secs(8),
            group_interval: Duration::from_secs(30),
            repeat_interval: Duration::from_secs(3600),
        },
    );
    let a = poolwatch(&am.url(), "watcher-a", &[]);
    let b = poolwatch(&am.url(), "watcher-b", &[]);
    for pw in [&a, &b] {
        healthy(pw, "blue");
    }
    for pw in [&a, &b] {
        failover(pw);
    }

    // While it is open, amtool lists it, from both instances.
    let mut listed = Vec::new();
    assert!(
        wait_until(WAIT, || {
            listed = am.query(&["alertname=PoolwatchFailover"]);
            listed.len() == 2
        }),
        "{listed:#?}\n{}",
        am.log()
    );
    for alert in &listed {
        assert_eq!(alert["labels"]["pool"], "blue");
        assert_eq!(alert["labels"]["severity"], "warning");
        assert_eq!(alert["labels"]["cluster"], "test");
        assert_eq!(alert["annotations"]["summary"], "Failover: blue → green");
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://example.org/RUNBOOK.md#failover"
        );
        assert!(
            alert["generatorURL"]
                .as_str()
                .is_some_and(|u| u.ends_with('/')),
            "{alert}"
        );
    }

    // One notification for the two of them.
    assert!(
        wait_until(WAIT, || !receiver.received().is_empty()),
        "{}",
        am.log()
    );
    let got = notifications(&receiver);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["status"], "firing");
    assert_eq!(got[0]["groupLabels"]["alertname"], "PoolwatchFailover");
    assert_eq!(got[0]["groupLabels"]["pool"], "blue");
    assert_eq!(instances(&got[0]), ["watcher-a", "watcher-b"]);

    // Recovery on both: one resolved notification for the group, once blue
    // has answered over RECOVERY_CONFIRM_SEC (a burst alone is no evidence).
    assert!(
        wait_until(WAIT, || {
            for pw in [&a, &b] {
                healthy(pw, "blue");
            }
            am.query(&["alertname=PoolwatchFailover"]).is_empty()
        }),
        "{}",
        am.log()
    );
    receiver.wait_for(2, WAIT);
    let got = notifications(&receiver);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[1]["status"], "resolved");
    assert_eq!(instances(&got[1]), ["watcher-a", "watcher-b"]);
    for alert in got[1]["alerts"].as_array().unwrap() {
        assert_eq!(
            alert["annotations"]["summary"],
            "Recovered: blue is serving again"
        );
    }
    // Both instances counted their posts as sent.
    for pw in [&a, &b] {
        let m = pw.metrics();
        assert!(
            m.get(
                "poolwatch_alerts_total{sink=\"alertmanager\",kind=\"failover\",outcome=\"sent\"}"
            ) >= 1.0,
            "{m:?}"
        );
    }
}

#[test]
fn an_alertmanager_started_after_the_failover_still_learns_of_it() {
    let receiver = Webhook::start_at("/alertmanager-receiver");
    // Nothing behind the front yet: posts fail.
    let front = Front::start(Backend::Refuse);
    let pw = poolwatch(&front.url(), "watcher-late", &[]);
    healthy(&pw, "blue");
    failover(&pw);
    assert!(
        wait_until(WAIT, || front.accepted() >= 2),
        "poolwatch never tried: {}",
        pw.log()
    );

    let am = Alertmanager::start(
        &receiver.url(),
        &Route {
            group_by: &["alertname", "pool"],
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(5),
            repeat_interval: Duration::from_secs(3600),
        },
    );
    front.set(Backend::To(am.addr));
    // The next re-send carries the failover.
    let mut listed = Vec::new();
    assert!(
        wait_until(WAIT, || {
            listed = am.query(&["alertname=PoolwatchFailover", "instance=watcher-late"]);
            listed.len() == 1
        }),
        "{listed:#?}\n{}",
        pw.log()
    );
    receiver.wait_for(1, WAIT);
    assert_eq!(notifications(&receiver)[0]["status"], "firing");
}

#[test]
fn slack_down_alertmanager_on_time() {
    let receiver = Webhook::start_at("/alertmanager-receiver");
    let am = Alertmanager::start(
        &receiver.url(),
        &Route {
            group_by: &["alertname"],
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(5),
            repeat_interval: Duration::from_secs(3600),
        },
    );
    let slack = Webhook::start();
    slack.set_mode(Mode::Hang);
    let url = slack.url();
    let pw = poolwatch(
        &am.url(),
        "watcher-s",
        &[("SLACK_WEBHOOK_URL", &url), ("ALERT_TIMEOUT_SEC", "300")],
    );
    healthy(&pw, "blue");
    failover(&pw);
    slack.wait_for(1, WAIT);
    assert!(
        wait_until(WAIT, || am.query(&["alertname=PoolwatchFailover"]).len()
            == 1),
        "{}",
        pw.log()
    );
    // Alertmanager had it while Slack still held the failover's first
    // attempt.
    let held = slack.received();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].answered, 0, "{held:?}");
    slack.set_mode(Mode::Ok);
}

#[test]
fn alertmanager_down_slack_on_time() {
    let front = Front::start(Backend::Hang);
    let slack = Webhook::start();
    let url = slack.url();
    let pw = poolwatch(
        &front.url(),
        "watcher-h",
        &[("SLACK_WEBHOOK_URL", &url), ("ALERT_TIMEOUT_SEC", "300")],
    );
    healthy(&pw, "blue");
    failover(&pw);
    let got = slack.wait_for_accepted(1, WAIT);
    let text = got[0].body["text"].as_str().unwrap_or_default();
    assert!(text.contains("Failover: blue → green"), "{text}");
    // Slack had it while the post to Alertmanager was still unanswered.
    assert!(
        wait_until(WAIT, || front.held_with_request() >= 1),
        "{}",
        pw.log()
    );
    assert_eq!(
        pw.metrics().get(
            "poolwatch_alerts_total{sink=\"alertmanager\",kind=\"failover\",outcome=\"sent\"}"
        ),
        0.0
    );
    assert_eq!(slack.violations(), Vec::<String>::new());
}

/// The route and receiver README.md shows are a valid Alertmanager
/// configuration.
#[test]
fn readme_alertmanager_config_passes_amtool() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme
        .find("## Alertmanager")
        .expect("an Alertmanager section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let path = common::unique_temp_path("readme-alertmanager.yml");
    std::fs::write(&path, &section[start..end]).unwrap();
    let out = std::process::Command::new(alertmanager::amtool_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run amtool");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
