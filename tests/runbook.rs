//! RUNBOOK.md stays true: every notification kind has its section (the
//! anchor notifications link to), and every command in its `sh` blocks runs
//! successfully against a live poolwatch.

mod common;

use std::process::Command;

use common::poolwatch::{Poolwatch, poolwatch_bin};
use poolwatch::alerting::finding::Kind;

fn runbook() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/RUNBOOK.md")).unwrap()
}

#[test]
fn every_notification_kind_has_a_section() {
    let text = runbook();
    let anchors: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(common::markdown_anchor)
        .collect();
    for kind in Kind::ALL {
        assert!(
            anchors.iter().any(|a| a == kind.runbook_anchor()),
            "no section for {} (#{}) in {anchors:?}",
            kind.label(),
            kind.runbook_anchor()
        );
    }
}

#[test]
fn sh_commands_work_as_written() {
    let pw = Poolwatch::start(&[]);
    let url = format!("http://{}", pw.http);
    let bin_dir = poolwatch_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut in_sh = false;
    let mut ran = 0;
    for line in runbook().lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh || line.trim().is_empty() {
            continue;
        }
        let cmd = line.replace("http://localhost:9514", &url);
        let out = Command::new("bash")
            .args(["-c", &cmd])
            .env("PATH", &path)
            .env("POOLWATCH_URL", &url)
            .env_remove("SLACK_WEBHOOK_URL")
            .env_remove("ADMIN_TOKEN")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} commands found");
    // The maintenance commands left it off again.
    assert_eq!(pw.state()["alerting"]["maintenance"]["on"], false);
}
