//! `poolwatch alert-test`: one sample notification through the configured
//! sink, so a new webhook can be checked before it is needed. Exits
//! non-zero with Slack's reason when delivery fails.

use crate::alerting::finding::{Facts, Finding, IncidentKey, Kind, Phase, Severity};
use crate::alerting::now_unix;
use crate::alerting::sinks;
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
    Ok(())
}
