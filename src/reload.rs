//! Reload: SIGHUP (or `POST /reload`, which `poolwatch reload` calls)
//! re-reads `ENV_FILE` and applies the settings that can change while
//! poolwatch runs, without a restart, a lost datagram or a lost
//! notification.
//!
//! The settings are read as at start-up (command-line flags first, then the
//! real environment poolwatch was started with, then the file) and
//! validated whole, exactly as at start-up: a file with one bad value is
//! rejected, logged, counted, and nothing changes. Otherwise the live
//! settings ([`LIVE`]) take effect (the rules' thresholds and the runbook
//! link from the alert loop's next evaluation, the webhook from the next
//! delivery attempt, the allowlist from the next received batch, the log
//! level at once) and a changed setting that needs a restart is named in a
//! warning and in the answer, and left as it is.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use metrics::Counter;
use serde::Serialize;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::alerting::engine::LiveAlerting;
use crate::alerting::sinks::slack::{PreparedWebhook, WebhookSwitch};
use crate::config::{self, Cli};
use crate::ingest::allow::SharedAllowList;

/// Settings a reload applies, by the name of their variable.
pub const LIVE: [&str; 9] = [
    "ERROR_RATE_THRESHOLD",
    "ERROR_RATE_MIN_REQUESTS",
    "RECOVERY_CONFIRM_SEC",
    "RECOVERY_MIN_REQUESTS",
    "ALERT_COOLDOWN_SEC",
    "RUNBOOK_URL",
    "SLACK_WEBHOOK_URL",
    "ALLOW_FROM",
    "LOG_LEVEL",
];

/// Replaces the log filter; set by `main` once logging is up.
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static LOG_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Let reloads change the log level through `set`.
pub fn set_log_filter_handle(set: SetFilter) {
    let _ = LOG_FILTER.set(set);
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    /// `applied`.
    pub outcome: String,
    /// Live settings whose value changed, now in force.
    pub changed: Vec<String>,
    /// Settings whose value changed in the file but that take effect only
    /// at the next start.
    pub needs_restart: Vec<String>,
}

/// Everything a reload can change, and what is in force.
pub struct Reloader {
    env_file: PathBuf,
    /// The settings as started: what restart-only settings are compared to.
    started: Cli,
    /// The settings in force: the live ones as last applied.
    current: Mutex<Cli>,
    alerting: watch::Sender<LiveAlerting>,
    webhook: Option<WebhookSwitch>,
    allow: SharedAllowList,
    applied: Counter,
    rejected: Counter,
}

/// Where a reload's changes go.
pub struct Targets {
    pub alerting: watch::Sender<LiveAlerting>,
    pub webhook: Option<WebhookSwitch>,
    pub allow: SharedAllowList,
}

impl Reloader {
    /// Registers `poolwatch_config_reloads_total` on the current recorder.
    pub fn new(cli: &Cli, targets: Targets) -> Reloader {
        let counter = |outcome: &'static str| metrics::counter!("poolwatch_config_reloads_total", "outcome" => outcome);
        metrics::describe_counter!(
            "poolwatch_config_reloads_total",
            "Reloads of ENV_FILE (SIGHUP or poolwatch reload), by outcome: applied, or \
             rejected whole for a bad value"
        );
        Reloader {
            env_file: cli.env_file(),
            started: cli.clone(),
            current: Mutex::new(cli.clone()),
            alerting: targets.alerting,
            webhook: targets.webhook,
            allow: targets.allow,
            applied: counter("applied"),
            rejected: counter("rejected"),
        }
    }

    fn current(&self) -> MutexGuard<'_, Cli> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live settings of `cli`, for the alert loop.
    pub fn live_alerting(cli: &Cli) -> Result<LiveAlerting, String> {
        let pipeline = cli.pipeline.pipeline_config()?;
        Ok(LiveAlerting {
            rules: cli.rules.rules_config(&pipeline)?,
            cooldown_secs: cli.rules.alert_cooldown_sec as f64,
            runbook_url: cli.rules.runbook_url.clone(),
        })
    }

    /// Re-read the settings and apply them, or reject them whole; logged
    /// and counted either way. `trigger` says who asked (`SIGHUP`, `API`).
    /// Blocking (reads a file): call off the runtime's workers.
    pub fn reload(&self, trigger: &str) -> Result<Report, String> {
        // One reload at a time: the lock is held throughout.
        let mut current = self.current();
        let result = self.try_reload(&mut current);
        // Counted after the log line: whoever sees the count finds the line.
        match &result {
            Ok(r) => {
                tracing::info!(
                    trigger,
                    env_file = %self.env_file.display(),
                    changed = %r.changed.join(","),
                    "settings reloaded"
                );
                if !r.needs_restart.is_empty() {
                    tracing::warn!(
                        trigger,
                        settings = %r.needs_restart.join(","),
                        "these settings changed but take effect only after a restart; \
                         their old values stay in force"
                    );
                }
                self.applied.increment(1);
            }
            Err(e) => {
                tracing::error!(
                    trigger,
                    env_file = %self.env_file.display(),
                    error = %e,
                    "settings reload rejected; nothing changed"
                );
                self.rejected.increment(1);
            }
        }
        result
    }

    fn try_reload(&self, current: &mut Cli) -> Result<Report, String> {
        let next = config::reparse(&self.env_file)?;
        // Validate everything before anything changes.
        let live = Self::live_alerting(&next)?;
        next.alerts.validate()?;
        let filter = EnvFilter::try_new(&next.log.log_level).map_err(|e| {
            format!(
                "invalid value '{}' for LOG_LEVEL (--log-level): {e}; accepted: error, warn, \
                 info, debug, trace, or a directive such as poolwatch=debug",
                next.log.log_level
            )
        })?;
        let mut needs_restart = restart_only_changes(&self.started, &next);
        let expose = |c: &Cli| {
            c.alerts
                .slack_webhook_url
                .as_ref()
                .map(|s| s.expose().to_string())
        };
        let webhook: Option<PreparedWebhook> = match (&self.webhook, &next.alerts.slack_webhook_url)
        {
            (Some(switch), Some(url)) if expose(current) != expose(&next) => {
                Some(switch.prepare(url).map_err(|e| {
                    format!("invalid value for SLACK_WEBHOOK_URL (--slack-webhook-url): {e}")
                })?)
            }
            (Some(_), None) | (None, Some(_)) => {
                // Another sink altogether (Slack or stdout): its queue and
                // metrics are set up at start.
                needs_restart.push("SLACK_WEBHOOK_URL".into());
                None
            }
            _ => None,
        };

        let mut changed = Vec::new();
        let (a, b) = (&current.rules, &next.rules);
        for (name, differs) in [
            (
                "ERROR_RATE_THRESHOLD",
                a.error_rate_threshold != b.error_rate_threshold,
            ),
            (
                "ERROR_RATE_MIN_REQUESTS",
                a.error_rate_min_requests != b.error_rate_min_requests,
            ),
            (
                "RECOVERY_CONFIRM_SEC",
                a.recovery_confirm_sec != b.recovery_confirm_sec,
            ),
            (
                "RECOVERY_MIN_REQUESTS",
                a.recovery_min_requests != b.recovery_min_requests,
            ),
            (
                "ALERT_COOLDOWN_SEC",
                a.alert_cooldown_sec != b.alert_cooldown_sec,
            ),
            ("RUNBOOK_URL", a.runbook_url != b.runbook_url),
            (
                "ALLOW_FROM",
                current.receiver.allow_from != next.receiver.allow_from,
            ),
            ("LOG_LEVEL", current.log.log_level != next.log.log_level),
            ("SLACK_WEBHOOK_URL", webhook.is_some()),
        ] {
            if differs {
                changed.push(name.to_string());
            }
        }

        // Apply: nothing below can fail.
        self.alerting.send_replace(live);
        if let Some(w) = webhook {
            if let Some(switch) = &self.webhook {
                switch.set(w);
            }
            current.alerts.slack_webhook_url = next.alerts.slack_webhook_url.clone();
        }
        if current.receiver.allow_from != next.receiver.allow_from {
            self.allow.set(next.receiver.allow_from.clone());
            match &next.receiver.allow_from {
                Some(list) => tracing::info!(
                    allow_from = %list.networks().collect::<Vec<_>>().join(","),
                    "UDP datagrams from other sources are dropped unread"
                ),
                None => {
                    tracing::warn!("ALLOW_FROM unset: UDP datagrams from any source are parsed")
                }
            }
        }
        if current.log.log_level != next.log.log_level
            && let Some(set) = LOG_FILTER.get()
        {
            set(filter)?;
        }
        current.rules = next.rules.clone();
        current.receiver.allow_from = next.receiver.allow_from.clone();
        current.log.log_level = next.log.log_level.clone();
        Ok(Report {
            outcome: "applied".into(),
            changed,
            needs_restart,
        })
    }

    /// The settings in force, as `/state` shows them (secrets redacted).
    pub fn settings(&self) -> serde_json::Value {
        settings_json(&self.current())
    }
}

/// The settings document of `/state`.
pub fn settings_json(cli: &Cli) -> serde_json::Value {
    // Secrets serialize as "[redacted]".
    serde_json::json!({
        "receiver": cli.receiver,
        "pipeline": cli.pipeline,
        "rules": cli.rules,
        "alerts": cli.alerts,
        "admin": cli.admin,
        "log": cli.log,
    })
}

/// Settings, other than [`LIVE`] ones, whose value differs between
/// `started` and `next`, by the name of their variable.
fn restart_only_changes(started: &Cli, next: &Cli) -> Vec<String> {
    let (a, b) = (settings_json(started), settings_json(next));
    let mut out = Vec::new();
    for (section, fields) in a.as_object().into_iter().flatten() {
        for (field, value) in fields.as_object().into_iter().flatten() {
            let name = field.to_ascii_uppercase();
            if !LIVE.contains(&name.as_str()) && b[section][field] != *value {
                out.push(name);
            }
        }
    }
    // Secrets show only as "[redacted]" above.
    let exposed = |s: &Option<crate::secret::Secret>| s.as_ref().map(|s| s.expose().to_string());
    for (name, x, y) in [
        (
            "ADMIN_TOKEN",
            &started.admin.admin_token,
            &next.admin.admin_token,
        ),
        (
            "ALERTMANAGER_BASIC_AUTH",
            &started.alerts.alertmanager_basic_auth,
            &next.alerts.alertmanager_basic_auth,
        ),
        (
            "ALERTMANAGER_BEARER_TOKEN",
            &started.alerts.alertmanager_bearer_token,
            &next.alerts.alertmanager_bearer_token,
        ),
    ] {
        if exposed(x) != exposed(y) {
            out.push(name.into());
        }
    }
    out
}
