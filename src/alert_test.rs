//! `poolwatch alert-test`: one sample notification through the configured
//! sink, so a new webhook can be checked before it is needed. Exits
//! non-zero with Slack's reason when delivery fails.

use crate::alerting::delivery;
use crate::alerting::finding::{Kind, Notification, Severity};
use crate::config::Cli;
use crate::logtime::format_rfc3339;

pub fn main(cli: &Cli) -> Result<(), String> {
    cli.alerts.validate()?;
    let cfg = cli.alerts.delivery_config();
    let n = Notification {
        kind: Kind::Test,
        severity: Severity::Info,
        pool: None,
        title: "poolwatch alert test".into(),
        summary: "If you can read this, poolwatch can reach this channel. Nothing is wrong.".into(),
        fields: vec![
            (
                "Sent by".into(),
                format!("poolwatch {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "Host".into(),
                std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into()),
            ),
        ],
        first_seen: format_rfc3339(crate::alerting::now_unix() as i64),
        resolved: false,
        runbook_url: cli.rules.runbook_url.as_ref().map(|u| {
            format!(
                "{}#{}",
                u.trim_end_matches('#'),
                Kind::Test.runbook_anchor()
            )
        }),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(delivery::send_one(&cfg, &n))
        .map_err(|e| format!("alert test failed: {e}"))?;
    match cfg.webhook {
        Some(_) => eprintln!("poolwatch: test notification accepted by Slack"),
        None => eprintln!("poolwatch: no SLACK_WEBHOOK_URL; test notification printed on stdout"),
    }
    Ok(())
}
