//! Settings as an operator meets them: bad values stop start-up with a
//! message naming the setting and what it accepts; empty values (a copied
//! `.env.example`) mean "not set"; `--help` explains every one.

mod common;

use std::process::Command;

use common::poolwatch::{Poolwatch, poolwatch_bin};

fn run(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let out = Command::new(poolwatch_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn bad_values_stop_start_up_naming_the_setting() {
    for (env, name, accepted) in [
        (("WINDOW_SIZE", "abc"), "WINDOW_SIZE", "from 1 to 1000000"),
        (("WINDOW_SIZE", "0"), "WINDOW_SIZE", "from 1 to 1000000"),
        (
            ("ALERT_QUEUE_SIZE", "lots"),
            "ALERT_QUEUE_SIZE",
            "from 1 to 100000",
        ),
        (
            ("ERROR_RATE_THRESHOLD", "-3"),
            "ERROR_RATE_THRESHOLD",
            "0 to 100",
        ),
        (("RECV_BUFFER", "huge"), "RECV_BUFFER", "8MiB"),
        (
            ("RECOVERY_MIN_REQUESTS", "0"),
            "RECOVERY_MIN_REQUESTS",
            "from 1 to 1000000",
        ),
        (("POOLS", "blue,,green"), "POOLS", "comma-separated"),
        (("ACTIVE_POOL", "red"), "ACTIVE_POOL", "blue, green"),
        (("MAINTENANCE_MODE", "maybe"), "MAINTENANCE_MODE", "true"),
        (("LOG_FORMAT", "xml"), "LOG_FORMAT", "text"),
        (("UDP_LISTEN", "nowhere"), "UDP_LISTEN", "nowhere"),
        (("ALLOW_FROM", "nginx"), "ALLOW_FROM", "comma-separated"),
        (("ALLOW_FROM", "10.0.0.1/8"), "ALLOW_FROM", "CIDR"),
        (
            ("SLACK_WEBHOOK_URL", "not a url"),
            "SLACK_WEBHOOK_URL",
            "https://",
        ),
    ] {
        let (code, out) = run(&[env], &["--http-listen", "127.0.0.1:0"]);
        assert_eq!(code, 2, "{env:?}: {out}");
        assert!(out.contains(name), "{env:?} not named: {out}");
        assert!(
            out.contains(accepted),
            "{env:?} without what is accepted: {out}"
        );
    }
    // The webhook URL is a secret even when it is wrong.
    let (_, out) = run(
        &[("SLACK_WEBHOOK_URL", "ftp://hooks.example/T0/B0/hunter2")],
        &["--http-listen", "127.0.0.1:0"],
    );
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn empty_values_mean_not_set() {
    let pw = Poolwatch::start_with_env(
        &[],
        &[
            ("ADMIN_TOKEN", ""),
            ("SLACK_WEBHOOK_URL", ""),
            ("UNIX_LISTEN", ""),
            ("ALLOW_FROM", ""),
            ("MAINTENANCE_FILE", ""),
            ("POOL_ADDRS", ""),
            ("RUNBOOK_URL", ""),
            ("LOG_LEVEL", ""),
        ],
    );
    let settings = &pw.state()["settings"];
    assert_eq!(settings["admin"]["admin_token"], serde_json::Value::Null);
    assert_eq!(
        settings["alerts"]["slack_webhook_url"],
        serde_json::Value::Null
    );
    assert_eq!(settings["log"]["log_level"], "info");
    assert_eq!(settings["receiver"]["allow_from"], serde_json::Value::Null);
    assert!(
        pw.log().contains("notifications go to stdout"),
        "{}",
        pw.log()
    );
}

#[test]
fn help_explains_every_setting() {
    let (code, help) = run(&[], &["--help"]);
    assert_eq!(code, 0);
    let env_example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let names: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[env: "))
        .filter_map(|l| l.split(['=', ']']).next())
        .collect();
    assert!(names.len() >= 25, "{names:?}");
    for name in names {
        assert!(env_example.contains(name), "{name} is not in .env.example");
    }
    let (code, help) = run(&[], &["maintenance", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("POOLWATCH_URL"), "{help}");
}
