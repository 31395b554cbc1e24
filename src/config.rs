//! Settings: command-line flags with environment fallbacks.
//!
//! Every setting is a flag and an upper-case environment variable of the
//! same meaning (the names `.env.example` documents); a `.env` file in the
//! working directory is read first and never overrides the real environment.
//! A bad value stops start-up with a message that names the setting, the
//! value and what is accepted: the value name shown by clap is the variable's
//! name, so `--window-size <WINDOW_SIZE>` identifies both spellings.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::alerting::delivery::DeliveryConfig;
use crate::alerting::delivery::http::Auth;
use crate::alerting::rules::RulesConfig;
use crate::alerting::sinks::alertmanager::{self, AlertmanagerConfig};
use crate::alerting::sinks::slack::check_webhook_url;
use crate::duration::parse_duration;
use crate::ingest::allow::AllowList;
use crate::pipeline::PipelineConfig;
use crate::pools::PoolSet;
use crate::secret::Secret;

const ABOUT: &str = "Watch a blue/green nginx pair through its syslog access log.";

const LONG_ABOUT: &str = "\
Watch a blue/green nginx pair through its syslog access log.

nginx ships one JSON line per request with `access_log syslog:server=HOST:5514`.
poolwatch decodes each datagram, attributes every upstream attempt to the pool
of the server tried (so a failure masked by a same-request retry still counts
against the pool that failed), keeps per-pool windows of the last N attempts
and the last T seconds, and serves Prometheus metrics, a health check and a
JSON state dump over HTTP.

Without a subcommand, runs the receiver. Every option can also be given as the
environment variable shown next to it, or in a .env file in the working
directory (ENV_FILE). SIGHUP (or `poolwatch reload`) re-reads that file and
applies the settings that can change live; SIGTERM or SIGINT stop.";

/// Top-level command line.
#[derive(Parser, Debug, Clone)]
#[command(name = "poolwatch", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub receiver: ReceiverArgs,

    #[command(flatten)]
    pub pipeline: PipelineArgs,

    #[command(flatten)]
    pub rules: RulesArgs,

    #[command(flatten)]
    pub alerts: AlertArgs,

    #[command(flatten)]
    pub admin: AdminArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Settings file read at start, before the other settings, and again on
    /// SIGHUP or `poolwatch reload`: NAME=VALUE lines as in .env.example
    /// (default: .env in the working directory). Real environment variables
    /// and command-line flags win over it. A missing file is no error unless
    /// named explicitly; name it on the command line or in the environment,
    /// not in a file.
    #[arg(long, env = "ENV_FILE", value_name = "ENV_FILE", global = true)]
    pub env_file: Option<PathBuf>,
}

/// `ENV_FILE` unless set: `.env` in the working directory.
pub const DEFAULT_ENV_FILE: &str = ".env";

impl Cli {
    /// The settings file: `ENV_FILE`, or `.env` in the working directory.
    pub fn env_file(&self) -> PathBuf {
        self.env_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ENV_FILE))
    }
}

impl Cli {
    /// Every secret among the settings, in every form it is sent in, for
    /// redaction.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = [
            &self.alerts.slack_webhook_url,
            &self.admin.admin_token,
            &self.alerts.alertmanager_bearer_token,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if let Some(userpass) = &self.alerts.alertmanager_basic_auth {
            out.extend(Auth::Basic(userpass.clone()).secrets());
        }
        out
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the receiver (the default when no subcommand is given).
    Run,
    /// Run the same pipeline and rules over saved log lines: print the
    /// notifications that would have fired and a per-pool summary. For
    /// backtesting thresholds and measuring decode speed.
    Replay(ReplayArgs),
    /// Turn maintenance mode on or off in a running poolwatch (through its
    /// HTTP API), or show it.
    Maintenance(MaintenanceArgs),
    /// Send one sample notification through the configured sink (Slack, or
    /// stdout without SLACK_WEBHOOK_URL); exits non-zero with the reason if
    /// delivery fails.
    AlertTest,
    /// Make a running poolwatch re-read its ENV_FILE and apply what can
    /// change live (through its HTTP API, authorised like `maintenance`);
    /// prints what changed. The same as `kill -HUP`.
    Reload(ReloadArgs),
    /// Send realistic nginx syslog datagrams to a receiver.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Check a running stack: with chaos on the primary pool (error, then
    /// timeout), clients must get only 200s, nearly all from the backup;
    /// then traffic must return to the primary. Chaos is always stopped.
    CheckFailover(crate::check_failover::CheckFailoverArgs),
}

/// Where the receiver listens.
#[derive(Args, Debug, Clone, Serialize)]
pub struct ReceiverArgs {
    /// UDP address for nginx's syslog datagrams.
    #[arg(
        long,
        env = "UDP_LISTEN",
        value_name = "UDP_LISTEN",
        default_value = "0.0.0.0:5514"
    )]
    pub udp_listen: SocketAddr,

    /// Also receive on a unix datagram socket at this path (nginx:
    /// `syslog:server=unix:PATH`): same-host deployments, no network loss.
    /// The socket is created writable by all local users; restrict access
    /// with the permissions of its directory.
    #[arg(long, env = "UNIX_LISTEN", value_name = "UNIX_LISTEN")]
    pub unix_listen: Option<PathBuf>,

    /// Kernel receive buffer to ask for, e.g. 8MiB or 4194304. The kernel
    /// caps it at net.core.rmem_max unless poolwatch may raise it
    /// (CAP_NET_ADMIN); the granted size is logged at start-up.
    #[arg(
        long,
        env = "RECV_BUFFER",
        value_name = "RECV_BUFFER",
        default_value = "8MiB",
        value_parser = parse_byte_size
    )]
    pub recv_buffer: ByteSize,

    /// HTTP address for /metrics, /healthz and /state.
    #[arg(
        long,
        env = "HTTP_LISTEN",
        value_name = "HTTP_LISTEN",
        default_value = "0.0.0.0:9514"
    )]
    pub http_listen: SocketAddr,

    /// Networks nginx sends from, comma-separated CIDRs or addresses, such
    /// as `172.28.0.0/16,fd00::/8`. UDP datagrams from any other source are
    /// counted (poolwatch_ingest_rejected_total{reason="source"}) and
    /// dropped unread; IPv4 senders match IPv4 networks on an IPv6 listener
    /// too. Unset, every source is accepted (with a warning at start-up
    /// unless UDP_LISTEN is a loopback address). Source addresses can be
    /// forged: a firewall comes first. The unix socket is not affected.
    #[arg(
        long,
        env = "ALLOW_FROM",
        value_name = "ALLOW_FROM",
        value_parser = parse_allow_from
    )]
    pub allow_from: Option<AllowList>,

    /// Once every listener is bound and the receive threads run, write the
    /// addresses actually bound to this file, as JSON: `{"udp":
    /// "127.0.0.1:5514", "unix": null, "http": "127.0.0.1:9514"}`. With
    /// port 0 in UDP_LISTEN or HTTP_LISTEN the kernel picks a free port,
    /// and this file says which. Written atomically (a temporary file in
    /// the same directory, renamed), removed on a clean exit: a supervisor
    /// or test waits for it to appear.
    #[arg(long, env = "READY_FILE", value_name = "READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Keep what must outlive a restart in this file: open incidents and
    /// what was told about them, maintenance, the learned address map, the
    /// alerts posted to Alertmanager.
    /// Written atomically on every change (at most every 250 ms) and at
    /// shutdown, read at start; a file that is corrupt, older than an hour
    /// or written for other POOLS or ACTIVE_POOL is set aside (renamed,
    /// with the reason) and poolwatch starts without it. Unset, a restart
    /// forgets: a failover still open is told again, a recovery never.
    #[arg(long, env = "STATE_FILE", value_name = "STATE_FILE")]
    pub state_file: Option<PathBuf>,
}

/// How requests are attributed and windowed; shared by `run` and `replay`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct PipelineArgs {
    /// Known pool names, comma-separated. Any other X-App-Pool value counts
    /// as pool="other", an empty one as pool="none".
    #[arg(
        long,
        env = "POOLS",
        value_name = "POOLS",
        default_value = "blue,green",
        value_parser = parse_pools,
        global = true
    )]
    pub pools: PoolList,

    /// Server addresses of each pool, as nginx logs them in $upstream_addr:
    /// `blue=10.0.0.2:3000,green=10.0.0.3:3000`. Optional: poolwatch learns
    /// addresses from responses that name their pool; attempts at a server
    /// not known yet count as pool="unknown".
    #[arg(
        long,
        env = "POOL_ADDRS",
        value_name = "POOL_ADDRS",
        value_parser = parse_pool_addrs,
        global = true
    )]
    pub pool_addrs: Option<PoolAddrs>,

    /// Count window: the last N upstream attempts per pool (1 to 1000000).
    #[arg(
        long,
        env = "WINDOW_SIZE",
        value_name = "WINDOW_SIZE",
        default_value_t = 200,
        value_parser = whole::<u32>(1, 1_000_000),
        global = true
    )]
    pub window_size: u32,

    /// Time window: per-second buckets over the last T seconds (1 to 3600).
    #[arg(
        long,
        env = "WINDOW_SECONDS",
        value_name = "WINDOW_SECONDS",
        default_value_t = 60,
        value_parser = whole::<u32>(1, 3600),
        global = true
    )]
    pub window_seconds: u32,

    /// The serving pool is the one that produced the final response for
    /// most of the last N requests (1 to 100000).
    #[arg(
        long,
        env = "SERVING_WINDOW",
        value_name = "SERVING_WINDOW",
        default_value_t = 20,
        value_parser = whole::<u32>(1, 100_000),
        global = true
    )]
    pub serving_window: u32,
}

/// When to raise and resolve incidents; shared by `run` and `replay`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct RulesArgs {
    /// The pool nginx prefers (its non-backup server). Failures there with
    /// the other pool serving are a failover. Must be one of POOLS.
    #[arg(
        long,
        env = "ACTIVE_POOL",
        value_name = "ACTIVE_POOL",
        default_value = "blue",
        global = true
    )]
    pub active_pool: String,

    /// Percent of failed upstream attempts in a pool's count window above
    /// which it is alerted on (strictly greater; 0 to 100). Also the client
    /// 5xx rate at which users are considered to be seeing errors.
    #[arg(
        long,
        env = "ERROR_RATE_THRESHOLD",
        value_name = "ERROR_RATE_THRESHOLD",
        default_value_t = 2.0,
        value_parser = parse_percent,
        global = true
    )]
    pub error_rate_threshold: f64,

    /// Attempts a window must hold before its error rate counts, so the
    /// first failure of a quiet pool is not "100 %" (1 to 1000000).
    #[arg(
        long,
        env = "ERROR_RATE_MIN_REQUESTS",
        value_name = "ERROR_RATE_MIN_REQUESTS",
        default_value_t = 50,
        value_parser = whole::<u64>(1, 1_000_000),
        global = true
    )]
    pub error_rate_min_requests: u64,

    /// Seconds the primary must serve without failures before a failover
    /// counts as recovered (and a rate must stay low before its incident
    /// resolves), measured between its first and latest answer: time
    /// without traffic proves nothing; 0 to 3600.
    #[arg(
        long,
        env = "RECOVERY_CONFIRM_SEC",
        value_name = "RECOVERY_CONFIRM_SEC",
        default_value_t = 5.0,
        value_parser = parse_seconds,
        global = true
    )]
    pub recovery_confirm_sec: f64,

    /// Attempts the pool must answer over RECOVERY_CONFIRM_SEC before a
    /// failover counts as recovered (none may fail) or an error rate as
    /// resolved: silence is not health (1 to 1000000).
    #[arg(
        long,
        env = "RECOVERY_MIN_REQUESTS",
        value_name = "RECOVERY_MIN_REQUESTS",
        default_value_t = 20,
        value_parser = whole::<u64>(1, 1_000_000),
        global = true
    )]
    pub recovery_min_requests: u64,

    /// Repeat notifications of an incident that stays open at most this
    /// often, in seconds (0 to 86400).
    #[arg(
        long,
        env = "ALERT_COOLDOWN_SEC",
        value_name = "ALERT_COOLDOWN_SEC",
        default_value_t = 300,
        value_parser = whole::<u64>(0, 86_400),
        global = true
    )]
    pub alert_cooldown_sec: u64,

    /// Base URL of RUNBOOK.md; each notification links to its section
    /// (`RUNBOOK_URL#failover`, ...).
    #[arg(long, env = "RUNBOOK_URL", value_name = "RUNBOOK_URL", global = true)]
    pub runbook_url: Option<String>,
}

/// How notifications are delivered.
#[derive(Args, Debug, Clone, Serialize)]
pub struct AlertArgs {
    /// Slack incoming-webhook URL. Without it, notifications are printed on
    /// stdout, one JSON object per line. A secret: never logged or shown.
    #[arg(
        long,
        env = "SLACK_WEBHOOK_URL",
        value_name = "SLACK_WEBHOOK_URL",
        hide_env_values = true,
        value_parser = parse_webhook,
        global = true
    )]
    pub slack_webhook_url: Option<Secret>,

    /// Notifications that may wait for delivery; beyond that they are
    /// dropped, counted and logged (1 to 100000).
    #[arg(
        long,
        env = "ALERT_QUEUE_SIZE",
        value_name = "ALERT_QUEUE_SIZE",
        default_value_t = 256,
        value_parser = whole::<u32>(1, 100_000),
        global = true
    )]
    pub alert_queue_size: u32,

    /// Seconds one webhook request may take (1 to 300).
    #[arg(
        long,
        env = "ALERT_TIMEOUT_SEC",
        value_name = "ALERT_TIMEOUT_SEC",
        default_value_t = 10,
        value_parser = whole::<u64>(1, 300),
        global = true
    )]
    pub alert_timeout_sec: u64,

    /// Seconds to keep retrying a notification through 5xx, timeouts and
    /// connection errors before giving up (1 to 86400).
    #[arg(
        long,
        env = "ALERT_RETRY_FOR_SEC",
        value_name = "ALERT_RETRY_FOR_SEC",
        default_value_t = 600,
        value_parser = whole::<u64>(1, 86_400),
        global = true
    )]
    pub alert_retry_for_sec: u64,

    /// On shutdown, seconds queued notifications may still take (0 to 600).
    #[arg(
        long,
        env = "ALERT_DRAIN_SEC",
        value_name = "ALERT_DRAIN_SEC",
        default_value_t = 10,
        value_parser = whole::<u64>(0, 600),
        global = true
    )]
    pub alert_drain_sec: u64,

    /// Alertmanager base URLs, comma-separated, such as
    /// http://alertmanager:9093. Open incidents are posted to
    /// /api/v2/alerts of each (an HA cluster gets every alert, as
    /// Prometheus sends them), in addition to Slack or stdout.
    #[arg(
        long,
        env = "ALERTMANAGER_URL",
        value_name = "ALERTMANAGER_URL",
        value_delimiter = ',',
        global = true
    )]
    pub alertmanager_url: Vec<String>,

    /// `user:password` for HTTP basic authentication to Alertmanager. A
    /// secret: never logged or shown.
    #[arg(
        long,
        env = "ALERTMANAGER_BASIC_AUTH",
        value_name = "ALERTMANAGER_BASIC_AUTH",
        hide_env_values = true,
        global = true
    )]
    pub alertmanager_basic_auth: Option<Secret>,

    /// Bearer token for Alertmanager (`Authorization: Bearer TOKEN`). A
    /// secret: never logged or shown.
    #[arg(
        long,
        env = "ALERTMANAGER_BEARER_TOKEN",
        value_name = "ALERTMANAGER_BEARER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub alertmanager_bearer_token: Option<Secret>,

    /// Seconds between re-sends of open alerts to Alertmanager (1 to 30);
    /// each carries an endsAt four intervals ahead, so the alerts of a
    /// poolwatch that stopped expire.
    #[arg(
        long,
        env = "ALERTMANAGER_RESEND_SEC",
        value_name = "ALERTMANAGER_RESEND_SEC",
        default_value_t = 30,
        value_parser = whole::<u64>(1, 30),
        global = true
    )]
    pub alertmanager_resend_sec: u64,

    /// The `instance` label of alerts sent to Alertmanager (default: this
    /// machine's host name).
    #[arg(
        long,
        env = "INSTANCE_NAME",
        value_name = "INSTANCE_NAME",
        global = true
    )]
    pub instance_name: Option<String>,

    /// Static labels added to every alert sent to Alertmanager,
    /// comma-separated NAME=VALUE pairs such as cluster=prod,team=web.
    #[arg(
        long,
        env = "ALERT_LABELS",
        value_name = "ALERT_LABELS",
        value_delimiter = ',',
        value_parser = parse_alert_label,
        global = true
    )]
    pub alert_labels: Vec<AlertLabel>,

    /// Base URL where people reach this poolwatch (its status page is
    /// there, at /). Slack messages and stdout lines link to the page when
    /// it is set; Alertmanager's generatorURL always does (default:
    /// http://INSTANCE_NAME:PORT of HTTP_LISTEN).
    #[arg(long, env = "PUBLIC_URL", value_name = "PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
}

/// A static label of `ALERT_LABELS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertLabel {
    pub name: String,
    pub value: String,
}

/// Labels poolwatch sets itself.
const OWN_LABELS: [&str; 4] = ["alertname", "pool", "severity", "instance"];

fn parse_alert_label(s: &str) -> Result<AlertLabel, String> {
    let accepted = "accepted: comma-separated NAME=VALUE pairs such as cluster=prod,team=web; \
                    names of letters, digits and '_' not starting with a digit or '__', other \
                    than alertname, pool, severity and instance";
    let (name, value) = s.split_once('=').ok_or(accepted)?;
    let (name, value) = (name.trim(), value.trim());
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
        && !OWN_LABELS.contains(&name);
    if !valid_name || value.is_empty() {
        return Err(accepted.to_string());
    }
    Ok(AlertLabel {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// This machine's host name, as the kernel has it (the container's name
/// in a container).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "poolwatch".to_string())
}

impl AlertArgs {
    /// Check the webhook URL without ever printing it, and the
    /// Alertmanager settings.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.slack_webhook_url {
            check_webhook_url(url).map_err(|e| {
                format!(
                    "invalid value for SLACK_WEBHOOK_URL (--slack-webhook-url): {e}; accepted: an \
                     https:// Slack incoming-webhook URL (the value is not shown)"
                )
            })?;
        }
        for url in &self.alertmanager_url {
            alertmanager::check_url(url.trim()).map_err(|e| {
                format!(
                    "invalid value for ALERTMANAGER_URL (--alertmanager-url): {e}; accepted: \
                     comma-separated http(s) base URLs such as http://alertmanager:9093"
                )
            })?;
        }
        if self.alertmanager_basic_auth.is_some() && self.alertmanager_bearer_token.is_some() {
            return Err(
                "ALERTMANAGER_BASIC_AUTH and ALERTMANAGER_BEARER_TOKEN are both set; \
                        accepted: one of them"
                    .into(),
            );
        }
        if let Some(userpass) = &self.alertmanager_basic_auth
            && !userpass.expose().contains(':')
        {
            return Err(
                "invalid value for ALERTMANAGER_BASIC_AUTH (--alertmanager-basic-auth); \
                        accepted: user:password (the value is not shown)"
                    .into(),
            );
        }
        if let Some(url) = &self.public_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(format!(
                        "invalid value '{url}' for PUBLIC_URL (--public-url); accepted: an \
                         http(s) URL such as https://poolwatch.example.com"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The Alertmanager sink's settings, or `None` without
    /// `ALERTMANAGER_URL`. `http` is where the HTTP API listens, for the
    /// default `PUBLIC_URL`.
    pub(crate) fn alertmanager_config(&self, http: SocketAddr) -> Option<AlertmanagerConfig> {
        let urls: Vec<String> = self
            .alertmanager_url
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return None;
        }
        let instance = self.instance_name.clone().unwrap_or_else(host_name);
        let public = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{instance}:{}", http.port()));
        Some(AlertmanagerConfig {
            urls,
            auth: match (
                &self.alertmanager_basic_auth,
                &self.alertmanager_bearer_token,
            ) {
                (Some(userpass), _) => Some(Auth::Basic(userpass.clone())),
                (None, Some(token)) => Some(Auth::Bearer(token.clone())),
                (None, None) => None,
            },
            resend: Duration::from_secs(self.alertmanager_resend_sec),
            instance,
            labels: self
                .alert_labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            generator_url: format!("{}/", public.trim_end_matches('/')),
        })
    }

    pub fn delivery_config(&self) -> DeliveryConfig {
        DeliveryConfig {
            webhook: self.slack_webhook_url.clone(),
            queue_size: self.alert_queue_size as usize,
            timeout: Duration::from_secs(self.alert_timeout_sec),
            max_retry_for: Duration::from_secs(self.alert_retry_for_sec),
            drain_deadline: Duration::from_secs(self.alert_drain_sec),
            status_url: self.status_url(),
            ..DeliveryConfig::default()
        }
    }

    /// The status page under `PUBLIC_URL`, which notifications link to;
    /// `None` without it (a guessed host name would be a dead link).
    pub fn status_url(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|u| format!("{}/", u.trim_end_matches('/')))
    }
}

/// Maintenance mode and the admin API.
#[derive(Args, Debug, Clone, Serialize)]
pub struct AdminArgs {
    /// Start in maintenance mode (true/false): failover, switch and
    /// error-rate notifications are held back until it is turned off.
    #[arg(
        long,
        env = "MAINTENANCE_MODE",
        value_name = "MAINTENANCE_MODE",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = parse_bool
    )]
    pub maintenance_mode: bool,

    /// A flag file: maintenance is on while it exists. Checked every second
    /// with a stat, on a thread of its own; a regular file's first 500 bytes
    /// are the reason, anything else (a FIFO, a device) is never opened.
    #[arg(long, env = "MAINTENANCE_FILE", value_name = "MAINTENANCE_FILE")]
    pub maintenance_file: Option<PathBuf>,

    /// Token the HTTP API requires (`Authorization: Bearer TOKEN`) to change
    /// state. Without it, only loopback clients may. A secret.
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        value_name = "ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<Secret>,
}

/// `poolwatch maintenance …`
#[derive(Args, Debug, Clone)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    pub action: MaintenanceAction,

    /// Base URL of the running poolwatch's HTTP API.
    #[arg(
        long,
        env = "POOLWATCH_URL",
        value_name = "POOLWATCH_URL",
        default_value = "http://127.0.0.1:9514"
    )]
    pub url: String,
}

/// `poolwatch reload`
#[derive(Args, Debug, Clone)]
pub struct ReloadArgs {
    /// Base URL of the running poolwatch's HTTP API.
    #[arg(
        long,
        env = "POOLWATCH_URL",
        value_name = "POOLWATCH_URL",
        default_value = "http://127.0.0.1:9514"
    )]
    pub url: String,
}

#[derive(Subcommand, Debug, Clone)]
pub enum MaintenanceAction {
    /// Hold back failover, switch and error-rate notifications.
    On {
        /// How long, e.g. 30m, 2h, 90s; without it, until turned off.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Why, for the people reading the channel.
        #[arg(long)]
        reason: String,
        /// Who; defaults to $USER.
        #[arg(long, env = "USER", hide_env_values = true)]
        by: Option<String>,
    },
    /// End maintenance now.
    Off {
        /// Who; defaults to $USER.
        #[arg(long, env = "USER", hide_env_values = true)]
        by: Option<String>,
    },
    /// Show whether maintenance is on.
    Status,
}

/// A whole number within `min..=max`, with an error that says so.
fn whole<T>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| format!("accepted: a whole number from {min} to {max}"))
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("accepted: true or false (also yes/no, on/off, 1/0)".into()),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err("accepted: a percentage from 0 to 100, such as 2.0".into()),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err("accepted: seconds from 0 to 3600, such as 5 or 0.5".into()),
    }
}

/// Checked later by [`AlertArgs::validate`]: clap would repeat a rejected
/// value in its error, and this one is a secret.
fn parse_webhook(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s.trim()))
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct LogArgs {
    /// Log level filter (error, warn, info, debug, trace, or a tracing
    /// directive such as `poolwatch=debug`).
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,

    /// Log line format on stderr.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Log files: one JSON object or one syslog line per line; `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_allow_from(s: &str) -> Result<AllowList, String> {
    s.parse()
}

/// A byte count given as `8MiB`, `512KiB`, `4M` or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bytesize::ByteSize(self.0).display().iec().fmt(f)
    }
}

fn parse_byte_size(s: &str) -> Result<ByteSize, String> {
    let accepted = "accepted: a size from 64KiB to 1GiB, such as 8MiB, 512KiB or 4194304";
    let b: bytesize::ByteSize = s.trim().parse().map_err(|_| accepted.to_string())?;
    if (64 * 1024..=1 << 30).contains(&b.0) {
        Ok(ByteSize(b.0))
    } else {
        Err(accepted.to_string())
    }
}

/// Known pool names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PoolList(pub Vec<String>);

const RESERVED_POOLS: [&str; 3] = ["other", "none", "unknown"];

fn parse_pools(s: &str) -> Result<PoolList, String> {
    let accepted = "accepted: comma-separated names of letters, digits, '-' and '_' \
                    (at most 16 pools, not 'other', 'none' or 'unknown'), such as blue,green";
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    let valid = |n: &String| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !RESERVED_POOLS.contains(&n.as_str())
    };
    if names.is_empty() || names.len() > 16 || !names.iter().all(valid) {
        return Err(accepted.to_string());
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != names.len() {
        return Err(format!("pool names must be distinct; {accepted}"));
    }
    Ok(PoolList(names))
}

/// `POOL_ADDRS` entries, checked against `POOLS` after parsing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PoolAddrs(pub Vec<(String, String)>);

fn parse_pool_addrs(s: &str) -> Result<PoolAddrs, String> {
    let accepted = "accepted: comma-separated POOL=ADDRESS pairs with addresses as nginx \
                    logs them in $upstream_addr, such as blue=10.0.0.2:3000,green=10.0.0.3:3000";
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (pool, addr) = pair.split_once('=').ok_or_else(|| accepted.to_string())?;
        let (pool, addr) = (pool.trim(), addr.trim());
        if pool.is_empty() || addr.is_empty() || !addr.contains(':') {
            return Err(accepted.to_string());
        }
        out.push((pool.to_string(), addr.to_string()));
    }
    Ok(PoolAddrs(out))
}

impl PipelineArgs {
    /// Check what one value alone cannot, and build the pipeline settings.
    pub fn pipeline_config(&self) -> Result<PipelineConfig, String> {
        let pools = PoolSet::new(&self.pools.0);
        let mut configured = Vec::new();
        for (pool, addr) in self.pool_addrs.iter().flat_map(|a| a.0.iter()) {
            let id = pools.find(pool).ok_or_else(|| {
                format!(
                    "invalid value for POOL_ADDRS (--pool-addrs): pool '{pool}' is not in \
                     POOLS; accepted pools: {}",
                    self.pools.0.join(", ")
                )
            })?;
            configured.push((addr.clone(), id));
        }
        Ok(PipelineConfig {
            pools,
            configured_addrs: configured,
            window_size: self.window_size as usize,
            window_seconds: self.window_seconds,
            serving_window: self.serving_window as usize,
        })
    }
}

impl RulesArgs {
    /// Check `ACTIVE_POOL` against the pools and build the rules settings.
    pub fn rules_config(&self, pipeline: &PipelineConfig) -> Result<RulesConfig, String> {
        let active_pool = pipeline.pools.find(&self.active_pool).ok_or_else(|| {
            format!(
                "invalid value '{}' for ACTIVE_POOL (--active-pool); accepted: one of POOLS ({})",
                self.active_pool,
                pipeline
                    .pools
                    .labels()
                    .take(pipeline.pools.known())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        Ok(RulesConfig {
            active_pool,
            error_rate_threshold: self.error_rate_threshold,
            error_rate_min_requests: self.error_rate_min_requests,
            recovery_confirm_secs: self.recovery_confirm_sec,
            recovery_min_requests: self.recovery_min_requests,
            window_size: pipeline.window_size,
            window_seconds: pipeline.window_seconds,
        })
    }
}

/// Parses the command line and the environment (exiting with clap's
/// message and status on a bad value), treating settings given as empty
/// environment variables (`ADMIN_TOKEN=` in a copied `.env.example`,
/// `SLACK_WEBHOOK_URL=` in compose) as not given, so they fall back to
/// their defaults instead of becoming empty values: an empty token must
/// never be a token that an empty header matches.
///
/// The environment itself is left alone: the arguments whose variable is
/// empty simply stop reading it. (Unsetting the variables instead needs
/// `std::env::remove_var`, which is only sound while no other thread
/// exists.) Their `--help` then shows no `[env: …]` for them.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = ignore_empty_env(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn ignore_empty_env(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.mut_args(|arg| {
        let empty = arg
            .get_env()
            .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()));
        if empty { arg.env(None) } else { arg }
    });
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, ignore_empty_env);
    }
    cmd
}

/// The environment as poolwatch was started with it, before the settings
/// file added to it: what still wins over the file on a reload.
static REAL_ENV: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();

/// Load the settings file (`--env-file`, `ENV_FILE`, or `.env` in the
/// working directory) without overriding variables already set. A missing
/// default `.env` is fine; a missing file named explicitly is an error.
/// Call before any other thread exists.
pub fn load_dotenv() -> Result<(), String> {
    let real: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let args: Vec<OsString> = std::env::args_os().collect();
    let given = env_file_flag(&args).or_else(|| {
        real.get("ENV_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let _ = REAL_ENV.set(real);
    let path = given
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ENV_FILE));
    match dotenvy::from_path(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() && given.is_none() => Ok(()),
        Err(e) => Err(format!(
            "cannot read ENV_FILE (--env-file) {}: {e}",
            path.display()
        )),
    }
}

/// `--env-file PATH` or `--env-file=PATH` on the command line.
fn env_file_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--env-file" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--env-file=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The settings again, for a reload: the command line as given at start,
/// then the real environment of the start, then `env_file` as it is now;
/// nothing read from the process environment, which still holds the
/// file's old values. Empty values count as not given, as at start. The
/// error names the setting and what is accepted, as at start-up.
pub fn reparse(env_file: &Path) -> Result<Cli, String> {
    let mut vars: BTreeMap<String, String> = match dotenvy::from_path_iter(env_file) {
        Ok(iter) => iter
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read ENV_FILE {}: {e}", env_file.display()))?,
        Err(e) if e.not_found() => BTreeMap::new(),
        Err(e) => return Err(format!("cannot read ENV_FILE {}: {e}", env_file.display())),
    };
    if let Some(real) = REAL_ENV.get() {
        vars.extend(real.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    reparse_from(std::env::args_os().collect(), &vars)
}

/// [`reparse`] with the command line `args` and the variables `vars`.
pub fn reparse_from(args: Vec<OsString>, vars: &BTreeMap<String, String>) -> Result<Cli, String> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    fn no_env(cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd.mut_args(|arg| arg.env(None));
        let subcommands: Vec<String> = cmd
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        for name in subcommands {
            cmd = cmd.mut_subcommand(name, no_env);
        }
        cmd
    }
    let first_line = |e: clap::Error| {
        let text = e.to_string();
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string()
    };
    let plain = Cli::command();
    let given = no_env(Cli::command())
        .try_get_matches_from(&args)
        .map_err(first_line)?;
    let mut argv: Vec<OsString> = args.iter().take(1).cloned().collect();
    for arg in plain.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let id = arg.get_id().as_str();
        if given.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        if let Some(v) = name
            .to_str()
            .and_then(|n| vars.get(n))
            .filter(|v| !v.is_empty())
        {
            argv.push(format!("--{long}={v}").into());
        }
    }
    argv.extend(args.iter().skip(1).cloned());
    let matches = no_env(Cli::command())
        .try_get_matches_from(argv)
        .map_err(first_line)?;
    Cli::from_arg_matches(&matches).map_err(first_line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["poolwatch"]).unwrap();
        assert_eq!(cli.receiver.udp_listen.port(), 5514);
        assert_eq!(cli.receiver.http_listen.port(), 9514);
        assert_eq!(cli.receiver.recv_buffer, ByteSize(8 << 20));
        assert_eq!(cli.pipeline.pools.0, ["blue", "green"]);
        assert_eq!(cli.pipeline.window_size, 200);
    }

    #[test]
    fn bad_values_name_the_setting_and_what_is_accepted() {
        let err = Cli::try_parse_from(["poolwatch", "--window-size", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WINDOW_SIZE"), "{err}");
        assert!(err.contains("from 1 to 1000000"), "{err}");
        let err = Cli::try_parse_from(["poolwatch", "--pools", "blue,other"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("POOLS") && err.contains("accepted"), "{err}");
        let err = Cli::try_parse_from(["poolwatch", "--recv-buffer", "lots"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RECV_BUFFER") && err.contains("8MiB"), "{err}");
        let err = Cli::try_parse_from(["poolwatch", "--allow-from", "nginx"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ALLOW_FROM") && err.contains("accepted: comma-separated"),
            "{err}"
        );
    }

    #[test]
    fn allow_from_is_optional_and_parsed() {
        let cli = Cli::try_parse_from(["poolwatch"]).unwrap();
        assert!(cli.receiver.allow_from.is_none());
        let cli = Cli::try_parse_from(["poolwatch", "--allow-from", "10.0.0.0/8, ::1"]).unwrap();
        let list = cli.receiver.allow_from.unwrap();
        assert!(list.permits("10.1.2.3".parse().unwrap()));
        assert!(!list.permits("11.1.2.3".parse().unwrap()));
    }

    #[test]
    fn pool_addrs_must_name_known_pools() {
        let cli = Cli::try_parse_from(["poolwatch", "--pool-addrs", "blue=10.0.0.2:3000,red=x:1"])
            .unwrap();
        let err = cli.pipeline.pipeline_config().unwrap_err();
        assert!(err.contains("POOL_ADDRS") && err.contains("red"), "{err}");
        let cli =
            Cli::try_parse_from(["poolwatch", "--pool-addrs", "green=10.0.0.3:3000"]).unwrap();
        let cfg = cli.pipeline.pipeline_config().unwrap();
        assert_eq!(cfg.configured_addrs, [("10.0.0.3:3000".to_string(), 1)]);
    }

    #[test]
    fn alert_settings() {
        let cli = Cli::try_parse_from(["poolwatch"]).unwrap();
        assert_eq!(cli.rules.error_rate_threshold, 2.0);
        assert_eq!(cli.rules.alert_cooldown_sec, 300);
        assert!(!cli.admin.maintenance_mode);
        assert!(cli.alerts.slack_webhook_url.is_none());
        let cli = Cli::try_parse_from(["poolwatch", "--maintenance-mode", "yes"]).unwrap();
        assert!(cli.admin.maintenance_mode);
        let err = Cli::try_parse_from(["poolwatch", "--maintenance-mode", "maybe"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAINTENANCE_MODE"), "{err}");
        let cli =
            Cli::try_parse_from(["poolwatch", "--slack-webhook-url", "ftp://x/T/secret"]).unwrap();
        let err = cli.alerts.validate().unwrap_err();
        assert!(
            err.contains("SLACK_WEBHOOK_URL") && !err.contains("secret"),
            "{err}"
        );
        let err = Cli::try_parse_from(["poolwatch", "--error-rate-threshold", "150"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ERROR_RATE_THRESHOLD") && err.contains("0 to 100"),
            "{err}"
        );
        let cli = Cli::try_parse_from(["poolwatch", "--active-pool", "red"]).unwrap();
        let p = cli.pipeline.pipeline_config().unwrap();
        let err = cli.rules.rules_config(&p).unwrap_err();
        assert!(
            err.contains("ACTIVE_POOL") && err.contains("blue, green"),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "poolwatch",
            "maintenance",
            "on",
            "--for",
            "30m",
            "--reason",
            "x",
        ])
        .unwrap();
        let Some(Command::Maintenance(m)) = cli.command else {
            panic!()
        };
        let MaintenanceAction::On { duration, .. } = m.action else {
            panic!()
        };
        assert_eq!(duration, Some(Duration::from_secs(1800)));
    }

    #[test]
    fn public_url_links_notifications_to_the_status_page() {
        let http: SocketAddr = "0.0.0.0:9514".parse().unwrap();
        let cli = Cli::try_parse_from(["poolwatch"]).unwrap();
        assert_eq!(cli.alerts.delivery_config().status_url, None);
        let cli = Cli::try_parse_from([
            "poolwatch",
            "--public-url",
            "https://watch.example.com/pw/",
            "--alertmanager-url",
            "http://am:9093",
        ])
        .unwrap();
        cli.alerts.validate().unwrap();
        assert_eq!(
            cli.alerts.delivery_config().status_url.as_deref(),
            Some("https://watch.example.com/pw/")
        );
        assert_eq!(
            cli.alerts.alertmanager_config(http).unwrap().generator_url,
            "https://watch.example.com/pw/"
        );
    }

    #[test]
    fn alertmanager_settings() {
        let http: SocketAddr = "0.0.0.0:9514".parse().unwrap();
        let cli = Cli::try_parse_from(["poolwatch"]).unwrap();
        assert!(cli.alerts.alertmanager_config(http).is_none());
        let cli = Cli::try_parse_from([
            "poolwatch",
            "--alertmanager-url",
            "http://am1:9093, http://am2:9093/",
            "--instance-name",
            "w1",
            "--alert-labels",
            "cluster=prod,team=web",
            "--alertmanager-bearer-token",
            "tok",
        ])
        .unwrap();
        cli.alerts.validate().unwrap();
        let am = cli.alerts.alertmanager_config(http).unwrap();
        assert_eq!(am.urls, ["http://am1:9093", "http://am2:9093/"]);
        assert_eq!(am.instance, "w1");
        assert_eq!(am.generator_url, "http://w1:9514/");
        assert_eq!(am.resend, Duration::from_secs(30));
        assert_eq!(
            am.labels,
            [
                ("cluster".to_string(), "prod".to_string()),
                ("team".to_string(), "web".to_string())
            ]
        );
        assert!(matches!(am.auth, Some(Auth::Bearer(_))));
        // The secrets are known for redaction, the basic auth's header
        // value included.
        let cli =
            Cli::try_parse_from(["poolwatch", "--alertmanager-basic-auth", "u:p4ss"]).unwrap();
        let secrets: Vec<String> = cli
            .secrets()
            .iter()
            .map(|s| s.expose().to_string())
            .collect();
        assert!(secrets.contains(&"p4ss".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"dTpwNHNz".to_string()), "{secrets:?}");

        for (args, needle) in [
            (
                vec!["--alertmanager-url", "http://u:s3cr3t@am:9093"],
                "ALERTMANAGER_URL",
            ),
            (vec!["--alertmanager-url", "am:9093"], "ALERTMANAGER_URL"),
            (
                vec![
                    "--alertmanager-basic-auth",
                    "u:s3cr3t",
                    "--alertmanager-bearer-token",
                    "s3cr3t",
                ],
                "one of them",
            ),
            (vec!["--alertmanager-basic-auth", "s3cr3t"], "user:password"),
            (vec!["--public-url", "ftp://x"], "PUBLIC_URL"),
        ] {
            let cli = Cli::try_parse_from(std::iter::once("poolwatch").chain(args)).unwrap();
            let err = cli.alerts.validate().unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        for bad in ["instance=x", "__x=1", "1x=1", "x=", "x"] {
            let err = Cli::try_parse_from(["poolwatch", "--alert-labels", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("ALERT_LABELS"), "{err}");
        }
        let err = Cli::try_parse_from(["poolwatch", "--alertmanager-resend-sec", "60"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ALERTMANAGER_RESEND_SEC") && err.contains("1 to 30"),
            "{err}"
        );
    }

    #[test]
    fn reparse_takes_the_file_under_the_command_line() {
        let vars: BTreeMap<String, String> = [
            ("ERROR_RATE_THRESHOLD", "7.5"),
            ("WINDOW_SIZE", "999"),
            ("RUNBOOK_URL", ""),
            ("ALERT_LABELS", "team=web,cluster=prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let args = ["poolwatch", "--window-size", "50", "run"].map(OsString::from);
        let cli = reparse_from(args.to_vec(), &vars).unwrap();
        assert_eq!(cli.rules.error_rate_threshold, 7.5);
        assert_eq!(cli.pipeline.window_size, 50, "the flag wins");
        assert_eq!(cli.rules.runbook_url, None, "empty is not given");
        assert_eq!(cli.alerts.alert_labels.len(), 2);
        assert!(matches!(cli.command, Some(Command::Run)));
        let mut bad = vars.clone();
        bad.insert("ERROR_RATE_THRESHOLD".into(), "lots".into());
        let err = reparse_from(args.to_vec(), &bad).unwrap_err();
        assert!(
            err.contains("ERROR_RATE_THRESHOLD") && err.contains("0 to 100"),
            "{err}"
        );
    }

    #[test]
    fn env_file_flag_is_found_before_parsing() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            env_file_flag(&args(&["pw", "--env-file", "/etc/pw.env"])),
            Some(PathBuf::from("/etc/pw.env"))
        );
        assert_eq!(
            env_file_flag(&args(&["pw", "run", "--env-file=x.env"])),
            Some(PathBuf::from("x.env"))
        );
        assert_eq!(env_file_flag(&args(&["pw", "run"])), None);
    }

    #[test]
    fn replay_takes_pipeline_settings() {
        let cli =
            Cli::try_parse_from(["poolwatch", "replay", "--window-size", "50", "a.log"]).unwrap();
        assert_eq!(cli.pipeline.window_size, 50);
        assert!(matches!(cli.command, Some(Command::Replay(_))));
    }
}
