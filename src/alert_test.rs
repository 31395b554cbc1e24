//! `poolwatch alert-test`: one sample notification through every
//! configured sink (Slack or stdout, and each Alertmanager), so a new
//! webhook or route can be checked before it is needed. Exits non-zero with
//! the receiver's reason when a delivery fails.

use crate::alerting::finding::{Facts, Finding, IncidentKey, Kind, Phase, Severity};
use crate::alerting::now_unix;
use crate::alerting::sinks::{self, alertmanager};
use crate::alerting::wording::words;
use crate::config::Cli;

pub fn main(cli: &Cli) -> Result<(), String> {
    cli.alerts.validate()?;
    let cfg = cli.alerts.delivery_config();
    let now = now_unix();
    let f = Finding {
        key: IncidentKey {
            kind: Kind::Test,
            pool: None,
        },
        phase: Phase::Event,
        severity: Severity::Info,
        started: now,
        at: now,
        facts: Facts::Test {
            sent_by: format!("poolwatch {}", env!("CARGO_PKG_VERSION")),
            host: std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into()),
        },
    };
    let n = words(&f, cli.rules.runbook_url.as_deref());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(sinks::send_one(&cfg, &n))
        .map_err(|e| format!("alert test failed: {e}"))?;
    match cfg.webhook {
        Some(_) => eprintln!("poolwatch: test notification accepted by Slack"),
        None => eprintln!("poolwatch: no SLACK_WEBHOOK_URL; test notification printed on stdout"),
    }
    if let Some(am) = cli.alerts.alertmanager_config(cli.receiver.http_listen) {
        let mut failed = Vec::new();
        for (host, result) in rt.block_on(alertmanager::send_test(&am, &cfg, &f, &n)) {
            match result {
                Ok(()) => eprintln!(
                    "poolwatch: test alert PoolwatchAlertTest accepted by Alertmanager at {host}"
                ),
                Err(e) => failed.push(format!("Alertmanager at {host}: {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(format!("alert test failed: {}", failed.join("; ")));
        }
    }
    Ok(())
}
