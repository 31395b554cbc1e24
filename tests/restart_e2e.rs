//! Restarts and reloads end to end, against the real binary: the state
//! file carries incidents across SIGTERM and SIGKILL restarts, an unusable
//! one is set aside, and SIGHUP or `poolwatch reload` re-reads the settings
//! file without losing anything.

mod common;

use std::path::Path;
use std::process::Command;

use common::poolwatch::{Poolwatch, poolwatch_bin};
use common::webhook::{Mode, Webhook};
use common::{PATIENCE, TempDir, read_json, wait_until};

const BLUE: &str = "127.0.0.1:3001";
const GREEN: &str = "127.0.0.1:3002";

fn line(status: u16, ups: &str, addrs: &str, pool: &str) -> Vec<u8> {
    format!(
        r#"<190>Nov  5 09:07:03 web nginx: {{"status":{status},"request_time":0.004,"upstream_status":"{ups}","upstream_addr":"{addrs}","upstream_response_time":"0.004","pool":"{pool}","release":"{pool}-v1"}}"#
    )
    .into_bytes()
}

fn ok(pool: &str) -> Vec<u8> {
    let addr = if pool == "blue" { BLUE } else { GREEN };
    line(200, "200", addr, pool)
}

/// Blue failed, nginx retried on green, which answered.
fn rescued() -> Vec<u8> {
    line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green")
}

/// Blue failed and nobody retried: the client got the 502.
fn blue_failed() -> Vec<u8> {
    line(502, "502", BLUE, "")
}

fn many(n: usize, d: Vec<u8>) -> Vec<Vec<u8>> {
    vec![d; n]
}

fn texts(hook: &Webhook) -> Vec<String> {
    hook.accepted()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Wait until the state file says blue's failover is open and was told.
fn wait_for_saved_failover(path: &Path) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(PATIENCE, || {
        last = read_json(path);
        last["incidents"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["kind"] == "failover" && i["pool"] == "blue" && i["announced"] == true)
        })
    });
    assert!(ok, "the state file never showed the failover: {last}");
    last
}

fn open_kinds(pw: &Poolwatch) -> Vec<String> {
    pw.state()["alerting"]["open_incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}/{}", i["kind"].as_str().unwrap(), i["pool"]))
        .collect()
}

fn restart_env<'a>(hook: &'a str, state: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SLACK_WEBHOOK_URL", hook),
        ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
        ("RECOVERY_CONFIRM_SEC", "1"),
        ("ERROR_RATE_MIN_REQUESTS", "100000"),
        ("STATE_FILE", state),
    ]
}

/// Failover told, then blue's failures go on across a SIGTERM restart.
/// Returns the running poolwatch after the restart.
fn failover_then_restart(
    hook: &Webhook,
    env: &[(&str, &str)],
    state: &Path,
    kill: bool,
) -> Poolwatch {
    let mut pw = Poolwatch::start_with_env(&[], env);
    pw.send(&many(30, ok("blue")));
    pw.wait_judged();
    pw.send(&[rescued()]);
    let got = hook.wait_for_accepted(1, PATIENCE);
    assert!(
        got[0].body["text"]
            .as_str()
            .unwrap()
            .contains("Failover: blue → green")
    );
    wait_for_saved_failover(state);
    if kill {
        pw.kill();
    } else {
        assert_eq!(pw.stop(), Some(0), "{}", pw.log());
    }
    let pw = Poolwatch::start_with_env(&[], env);
    assert!(pw.log().contains("state restored"), "{}", pw.log());
    // Restored before any traffic.
    assert!(
        open_kinds(&pw).contains(&"failover/\"blue\"".to_string()),
        "{:?}",
        open_kinds(&pw)
    );
    pw
}

#[test]
fn sigterm_restart_mid_failover_keeps_the_cooldown_and_tells_the_recovery() {
    let hook = Webhook::start();
    let dir = TempDir::new("poolwatch-restart");
    let state = dir.path("state.json");
    let (url, state_s) = (hook.url(), state.to_str().unwrap().to_string());
    let env = restart_env(&url, &state_s);
    let pw = failover_then_restart(&hook, &env, &state, false);

    // Blue still failing after the restart: the same incident, in its
    // cooldown; no second "Failover".
    pw.send(&many(5, rescued()));
    pw.send(&many(25, ok("green")));
    pw.wait_judged();
    assert_eq!(texts(&hook).len(), 1, "{:?}", texts(&hook));
    let m = pw.metrics();
    assert!(
        m.get("poolwatch_alerts_total{sink=\"slack\",kind=\"failover\",outcome=\"suppressed_cooldown\"}") >= 1.0,
        "{}",
        pw.metrics_text()
    );

    // Blue healthy and serving again: the recovery of the incident opened
    // before the restart is told.
    assert!(wait_until(PATIENCE, || {
        pw.send(&many(5, ok("blue")));
        hook.accepted().len() >= 2
    }));
    let all = texts(&hook);
    assert!(
        all[1].contains("Recovered: blue is serving again"),
        "{all:?}"
    );
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
}

#[test]
fn sigkill_mid_incident_uses_the_last_written_state() {
    let hook = Webhook::start();
    let dir = TempDir::new("poolwatch-sigkill");
    let state = dir.path("state.json");
    let (url, state_s) = (hook.url(), state.to_str().unwrap().to_string());
    let env = restart_env(&url, &state_s);
    let mut pw = failover_then_restart(&hook, &env, &state, true);
    pw.send(&many(5, rescued()));
    pw.wait_judged();
    assert_eq!(texts(&hook).len(), 1, "{:?}", texts(&hook));
    // A clean stop leaves no temporary file of its own next to the state.
    let pid = pw.pid();
    assert_eq!(pw.stop(), Some(0));
    let names = dir.names();
    assert!(names.contains(&"state.json".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains(&format!(".{pid}."))),
        "{names:?}"
    );
    assert_eq!(read_json(&state)["version"], 1);
}

#[test]
fn unusable_state_files_are_set_aside_and_poolwatch_starts() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let state = |written_at: f64, pools: &str, version: u32| {
        serde_json::json!({
            "version": version,
            "written_at": written_at,
            "settings": {"pools": pools.split(',').collect::<Vec<_>>(), "active_pool": "blue"},
            "primary": "blue",
            "serving": "blue",
            "incidents": [{
                "kind": "failover", "pool": "blue", "opened_at": written_at, "to": "green",
                "last_bad": written_at,
                "health": {"since": null, "until": 0.0, "answered": 0, "failed": 0},
                "announced": true, "last_sent": written_at
            }],
            "maintenance": null,
            "addresses": []
        })
        .to_string()
    };
    for (reason, content) in [
        ("corrupt", "{\"version\": 1, \"incid".to_string()),
        ("stale", state(now - 7200.0, "blue,green", 1)),
        ("other-settings", state(now - 5.0, "blue,green,red", 1)),
        ("version", state(now - 5.0, "blue,green", 99)),
    ] {
        let dir = TempDir::new("poolwatch-aside");
        let path = dir.path("state.json");
        std::fs::write(&path, &content).unwrap();
        let mut pw = Poolwatch::start_with_env(&[], &[("STATE_FILE", path.to_str().unwrap())]);
        let log = pw.log();
        assert!(
            log.contains("state file set aside") && log.contains(reason),
            "{reason}: {log}"
        );
        assert!(
            open_kinds(&pw).is_empty(),
            "{reason}: {:?}",
            open_kinds(&pw)
        );
        let aside: Vec<String> = dir
            .names()
            .into_iter()
            .filter(|n| n.starts_with(&format!("state.json.{reason}-")))
            .collect();
        assert_eq!(aside.len(), 1, "{reason}: {:?}", dir.names());
        assert_eq!(
            std::fs::read_to_string(dir.path(&aside[0])).unwrap(),
            content,
            "{reason}: renamed, not rewritten"
        );
        // A fresh state is written in its place.
        assert_eq!(read_json(&path)["version"], 1, "{reason}");
        assert_eq!(pw.stop(), Some(0));
    }
}

/// `ENV_FILE` contents for the reload tests.
fn write_env(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn sighup_applies_a_new_threshold_webhook_and_allowlist_then_rejects_a_bad_file() {
    let first = Webhook::start();
    let second = Webhook::start_at("/services/T000/B000/YYYYYYYYYYYYYYYYYYYYYYYY");
    let dir = TempDir::new("poolwatch-hup");
    let env_file = dir.path("poolwatch.env");
    let base = |threshold: &str, hook: &str| {
        vec![
            format!("ERROR_RATE_THRESHOLD={threshold}"),
            "ERROR_RATE_MIN_REQUESTS=20".to_string(),
            format!("SLACK_WEBHOOK_URL={hook}"),
        ]
    };
    write_env(&env_file, &base("50", &first.url()));
    let mut pw = Poolwatch::start_with_env(
        &["--env-file", env_file.to_str().unwrap()],
        &[("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002")],
    );
    let reloads = |pw: &Poolwatch, outcome: &str| {
        pw.metrics().get(&format!(
            "poolwatch_config_reloads_total{{outcome=\"{outcome}\"}}"
        ))
    };
    // 4 failures in 40: 10 %, under the file's 50 %.
    let mut batch = many(36, ok("blue"));
    batch.extend(many(4, blue_failed()));
    pw.send(&batch);
    pw.wait_judged();
    assert!(first.received().is_empty(), "{:?}", texts(&first));

    // SIGHUP with a 5 % threshold and another webhook.
    write_env(&env_file, &base("5", &second.url()));
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || reloads(&pw, "applied") == 1.0));
    assert!(pw.running());
    assert!(pw.log().contains("settings reloaded"), "{}", pw.log());
    let settings = pw.state()["settings"].clone();
    assert_eq!(settings["rules"]["error_rate_threshold"], 5.0, "{settings}");
    // A new failure on the same window: now over the line, told through
    // the new webhook.
    pw.send(&[blue_failed()]);
    let got = second.wait_for_accepted(1, PATIENCE);
    assert!(
        texts(&second)
            .iter()
            .any(|t| t.contains("High error rate on blue")),
        "{:?}",
        texts(&second)
    );
    assert!(!got.is_empty());
    assert!(first.received().is_empty(), "{:?}", texts(&first));

    // An allowlist that leaves loopback out: datagrams now dropped unread.
    let mut lines = base("5", &second.url());
    lines.push("ALLOW_FROM=10.0.0.0/8".into());
    write_env(&env_file, &lines);
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || reloads(&pw, "applied") == 2.0));
    pw.send(&many(3, ok("blue")));
    assert!(wait_until(PATIENCE, || {
        pw.metrics()
            .get("poolwatch_ingest_rejected_total{reason=\"source\"}")
            == 3.0
    }));

    // A bad value: the whole file is rejected, nothing changes, poolwatch
    // runs on.
    write_env(
        &env_file,
        &[
            "ERROR_RATE_THRESHOLD=lots".to_string(),
            "ERROR_RATE_MIN_REQUESTS=99".to_string(),
        ],
    );
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || reloads(&pw, "rejected") == 1.0));
    assert!(pw.running());
    let log = pw.log();
    assert!(
        log.contains("settings reload rejected") && log.contains("ERROR_RATE_THRESHOLD"),
        "{log}"
    );
    let rules = pw.state()["settings"]["rules"].clone();
    assert_eq!(rules["error_rate_threshold"], 5.0, "{rules}");
    assert_eq!(rules["error_rate_min_requests"], 20, "{rules}");
    assert_eq!(reloads(&pw, "applied"), 2.0);
    assert_eq!(pw.stop(), Some(0));
}

#[test]
fn real_environment_wins_over_the_file_on_reload() {
    let dir = TempDir::new("poolwatch-envwins");
    let env_file = dir.path("poolwatch.env");
    write_env(&env_file, &["ERROR_RATE_THRESHOLD=10".to_string()]);
    let pw = Poolwatch::start_with_env(
        &["--env-file", env_file.to_str().unwrap()],
        &[("ERROR_RATE_THRESHOLD", "3")],
    );
    assert_eq!(pw.state()["settings"]["rules"]["error_rate_threshold"], 3.0);
    write_env(
        &env_file,
        &[
            "ERROR_RATE_THRESHOLD=20".to_string(),
            "ALERT_COOLDOWN_SEC=60".to_string(),
        ],
    );
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || {
        pw.metrics()
            .get("poolwatch_config_reloads_total{outcome=\"applied\"}")
            == 1.0
    }));
    let rules = pw.state()["settings"]["rules"].clone();
    assert_eq!(rules["error_rate_threshold"], 3.0, "{rules}");
    assert_eq!(rules["alert_cooldown_sec"], 60, "{rules}");
}

fn reload_cli(pw: &Poolwatch, token: &str) -> std::process::Output {
    Command::new(poolwatch_bin())
        .arg("reload")
        .env_clear()
        .env("POOLWATCH_URL", format!("http://{}", pw.http))
        .env("ADMIN_TOKEN", token)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn poolwatch_reload_goes_through_the_authorised_api() {
    let dir = TempDir::new("poolwatch-reload-cli");
    let env_file = dir.path("poolwatch.env");
    write_env(&env_file, &["ERROR_RATE_THRESHOLD=10".to_string()]);
    let pw = Poolwatch::start_with_env(
        &["--env-file", env_file.to_str().unwrap()],
        &[("ADMIN_TOKEN", "s3cret-token")],
    );
    write_env(
        &env_file,
        &[
            "ERROR_RATE_THRESHOLD=7".to_string(),
            "WINDOW_SIZE=500".to_string(),
        ],
    );
    let refused = reload_cli(&pw, "wrong");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        pw.state()["settings"]["rules"]["error_rate_threshold"],
        10.0
    );

    let out = reload_cli(&pw, "s3cret-token");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("changed: ERROR_RATE_THRESHOLD"), "{stdout}");
    assert!(stdout.contains("after a restart: WINDOW_SIZE"), "{stdout}");
    let settings = pw.state()["settings"].clone();
    assert_eq!(settings["rules"]["error_rate_threshold"], 7.0);
    assert_eq!(settings["pipeline"]["window_size"], 200, "needs a restart");

    write_env(&env_file, &["RECOVERY_MIN_REQUESTS=0".to_string()]);
    let out = reload_cli(&pw, "s3cret-token");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RECOVERY_MIN_REQUESTS"), "{err}");
    let m = pw.metrics();
    assert_eq!(
        m.get("poolwatch_config_reloads_total{outcome=\"applied\"}"),
        1.0
    );
    assert_eq!(
        m.get("poolwatch_config_reloads_total{outcome=\"rejected\"}"),
        1.0
    );
}

#[test]
fn a_queued_notification_is_not_lost_on_sighup() {
    let hook = Webhook::start();
    hook.set_mode(Mode::Hang);
    let url = hook.url();
    let mut pw = Poolwatch::start_with_env(
        &[],
        &[
            ("SLACK_WEBHOOK_URL", &url),
            ("POOL_ADDRS", "blue=127.0.0.1:3001,green=127.0.0.1:3002"),
            ("ERROR_RATE_MIN_REQUESTS", "100000"),
        ],
    );
    pw.send(&many(30, ok("blue")));
    pw.wait_judged();
    pw.send(&[rescued()]);
    // The failover notice is in flight, held by the webhook.
    assert!(!hook.wait_for(1, PATIENCE).is_empty());
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || {
        pw.metrics()
            .get("poolwatch_config_reloads_total{outcome=\"applied\"}")
            == 1.0
    }));
    assert!(pw.running());
    hook.set_mode(Mode::Ok);
    let got = hook.wait_for_accepted(1, PATIENCE);
    assert!(
        got[0].body["text"]
            .as_str()
            .unwrap()
            .contains("Failover: blue → green")
    );
    assert_eq!(pw.stop(), Some(0));
}

#[test]
fn an_unwritable_state_file_stops_start_up() {
    let out = Command::new(poolwatch_bin())
        .args([
            "--udp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env_clear()
        .env("STATE_FILE", "/nonexistent-poolwatch-dir/state.json")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("STATE_FILE"), "{err}");
}

#[test]
fn a_reload_changes_the_log_level() {
    let dir = TempDir::new("poolwatch-loglevel");
    let env_file = dir.path("poolwatch.env");
    write_env(&env_file, &["LOG_LEVEL=info".to_string()]);
    let pw = Poolwatch::start_with_env(&["--env-file", env_file.to_str().unwrap()], &[]);
    assert!(pw.log().contains("ready: listening"), "{}", pw.log());
    let reloads = |outcome: &str| {
        pw.metrics().get(&format!(
            "poolwatch_config_reloads_total{{outcome=\"{outcome}\"}}"
        ))
    };
    // At warn, the reload's own info line is no longer written.
    write_env(&env_file, &["LOG_LEVEL=warn".to_string()]);
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || reloads("applied") == 1.0));
    write_env(
        &env_file,
        &[
            "ALERT_COOLDOWN_SEC=60".to_string(),
            "LOG_LEVEL=warn".to_string(),
        ],
    );
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || reloads("applied") == 2.0));
    assert!(!pw.log().contains("settings reloaded"), "{}", pw.log());
    // Back to info: it is.
    write_env(&env_file, &["LOG_LEVEL=info".to_string()]);
    pw.signal(libc::SIGHUP);
    assert!(wait_until(PATIENCE, || reloads("applied") == 3.0));
    assert!(wait_until(PATIENCE, || pw
        .log()
        .contains("settings reloaded")));
    assert_eq!(pw.state()["settings"]["log"]["log_level"], "info");
}

#[test]
fn maintenance_outlives_a_restart_without_a_second_start_notice() {
    let hook = Webhook::start();
    let dir = TempDir::new("poolwatch-maint-restart");
    let state = dir.path("state.json");
    let (url, state_s) = (hook.url(), state.to_str().unwrap().to_string());
    let env = [
        ("SLACK_WEBHOOK_URL", url.as_str()),
        ("STATE_FILE", state_s.as_str()),
    ];
    let mut pw = Poolwatch::start_with_env(&[], &env);
    let (status, _, body) = common::http_request(
        "POST",
        &pw.http,
        "/maintenance",
        br#"{"on": true, "for": "1h", "reason": "deploy v2", "by": "alice"}"#,
    );
    assert_eq!(status, 200, "{body}");
    hook.wait_for_accepted(1, PATIENCE);
    assert!(wait_until(PATIENCE, || {
        read_json(&state)["maintenance"]["announced"]["reason"] == "deploy v2"
    }));
    assert_eq!(pw.stop(), Some(0));

    let pw = Poolwatch::start_with_env(&[], &env);
    let m = pw.state()["alerting"]["maintenance"].clone();
    assert_eq!(m["on"], true, "{m}");
    assert_eq!(m["reason"], "deploy v2", "{m}");
    let (status, _, body) = common::http_request(
        "POST",
        &pw.http,
        "/maintenance",
        br#"{"on": false, "by": "bob"}"#,
    );
    assert_eq!(status, 200, "{body}");
    hook.wait_for_accepted(2, PATIENCE);
    let all = texts(&hook);
    assert!(all[0].contains("Maintenance started by alice"), "{all:?}");
    assert!(all[1].contains("Maintenance ended"), "{all:?}");
    pw.wait_judged();
    assert_eq!(texts(&hook).len(), 2, "{:?}", texts(&hook));
}
