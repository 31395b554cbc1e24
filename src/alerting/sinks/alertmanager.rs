//! Alertmanager: open incidents as alerts, posted to `/api/v2/alerts` of
//! every configured Alertmanager, which deduplicates, groups, silences and
//! routes them for a fleet.
//!
//! Alertmanager holds state, not messages, so this sink keeps a board of
//! the alerts it should know about and always posts the whole board:
//!
//! - an incident whose opening was told fires an alert: `startsAt` is the
//!   incident's start, `endsAt` a few re-send intervals ahead;
//! - while it stays open, the board is re-sent at least every
//!   `ALERTMANAGER_RESEND_SEC` (30 s at most), so an Alertmanager that
//!   started late or restarted learns it, and the alerts of a poolwatch
//!   that died expire by themselves;
//! - its resolution is posted with `endsAt` = when it resolved, and kept on
//!   the board for a few minutes of re-sends, so a late Alertmanager hears
//!   of that too. An incident that closes without a word (its resolution
//!   held back by maintenance) is resolved on the board all the same:
//!   Alertmanager must never keep firing a closed incident.
//!
//! What each notification becomes:
//!
//! | poolwatch | Alertmanager |
//! | --- | --- |
//! | Failover (and its repeats) | `PoolwatchFailover`, pool = the failing primary |
//! | Recovery, or a switch during the failover | resolves `PoolwatchFailover` |
//! | High error rate | `PoolwatchHighErrorRate`, pool = the pool |
//! | Users seeing errors | `PoolwatchUsersSeeingErrors`, pool = `all` |
//! | Maintenance started / ended | `PoolwatchMaintenance` (severity `info`) fires / resolves |
//! | Planned pool switch | nothing: an event, not a condition |
//! | `poolwatch alert-test` | `PoolwatchAlertTest` (severity `info`), expires after 5 minutes |
//!
//! Labels: `alertname`, `pool`, `severity`, `instance` (`INSTANCE_NAME`)
//! and the static `ALERT_LABELS`. A severity that changes while an incident
//! is open (a failover whose users start seeing errors) changes the alert's
//! identity: the old one is resolved, the new one fires. Annotations:
//! `summary` (the title), `description` (the summary), `runbook_url`.
//!
//! Each URL is a target with its own queue: an HA cluster gets every
//! alert, as Prometheus sends them, and one dead member delays no other.
//! The board travels in a lane where only the newest post matters (see
//! `delivery::queue`), so a post that hangs or fails delays the next state
//! by one attempt at most.
//!
//! The board outlives a restart in the state file ([`SavedAlert`]): each
//! alert as it was posted, so the new process posts the very same alerts
//! (labels, annotations, `startsAt`) at its first tick, before they lapse,
//! and resolves them when their incidents close. They are kept as posted,
//! not rebuilt from the incidents, because their words and severity come
//! from the last notification, which the incidents do not keep.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::alerting::delivery::http::{Auth, Endpoint};
use crate::alerting::delivery::queue::{Body, Lane, Parcel, Queue, Tracked};
use crate::alerting::delivery::retry::{Delivered, Failure, Transport, deliver};
use crate::alerting::delivery::{self, DeliveryConfig, DeliveryHandle, DeliveryMetrics, Outcome};
use crate::alerting::finding::{Finding, IncidentKey, Kind, Phase};
use crate::alerting::wording::{Notification, system_time};
use crate::secret::Secret;

/// Resolved alerts are re-sent this long after they resolved.
const RESOLVED_KEPT_SECS: f64 = 300.0;
/// `endsAt` of a firing alert: this many re-send intervals ahead.
const ENDS_AFTER_RESENDS: f64 = 4.0;
/// How long the `alert-test` alert fires.
const TEST_ALERT_SECS: f64 = 300.0;

/// Where the alerts go and what they carry.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Base URLs (`http://am:9093`); each gets every alert. Checked to be
    /// http(s), with a host and no credentials.
    pub urls: Vec<String>,
    pub auth: Option<Auth>,
    /// Open alerts are re-sent at least this often.
    pub resend: Duration,
    /// The `instance` label.
    pub instance: String,
    /// Static labels added to every alert.
    pub labels: Vec<(String, String)>,
    /// This poolwatch's status page (`PUBLIC_URL`), for `generatorURL`.
    pub generator_url: String,
}

/// The alert name a finding about `kind`'s incident belongs to; `None`
/// for what Alertmanager does not hear about (planned switches).
pub fn alertname(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Failover => Some("PoolwatchFailover"),
        Kind::ErrorRate => Some("PoolwatchHighErrorRate"),
        Kind::UsersSeeingErrors => Some("PoolwatchUsersSeeingErrors"),
        Kind::Maintenance => Some("PoolwatchMaintenance"),
        Kind::Test => Some("PoolwatchAlertTest"),
        Kind::PoolSwitch | Kind::Recovery => None,
    }
}

/// Checks one `ALERTMANAGER_URL` entry. The message never repeats a URL
/// that holds credentials.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "a URL holds credentials; give them in ALERTMANAGER_BASIC_AUTH or \
                    ALERTMANAGER_BEARER_TOKEN instead"
                .into(),
        );
    }
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} has a query or fragment"));
    }
    Ok(())
}

/// `/api/v2/alerts` under the base `url` (which may carry a path prefix).
pub fn alerts_url(url: &str) -> String {
    format!("{}/api/v2/alerts", url.trim_end_matches('/'))
}

/// One Alertmanager as a delivery transport.
pub struct Target {
    endpoint: Endpoint,
}

impl Target {
    pub fn new(url: &str, auth: Option<Auth>, timeout: Duration) -> Result<Target, String> {
        check_url(url)?;
        // Not a secret itself, but kept as one so that reasons name only
        // the host, like every HTTP sink's.
        let url = Secret::new(alerts_url(url));
        Ok(Target {
            endpoint: Endpoint::new("Alertmanager", &url, auth, timeout)?,
        })
    }

    pub fn host(&self) -> &str {
        self.endpoint.host()
    }
}

impl Transport for Target {
    async fn send(&self, body: Bytes) -> Result<(), Failure> {
        self.endpoint.post_json(body).await
    }
}

/// An alert as Alertmanager gets it, and the incident it is for.
#[derive(Debug, Clone, PartialEq)]
struct Alert {
    key: IncidentKey,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: f64,
}

/// An alert of the board as the state file keeps it: pools by their
/// labels, times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAlert {
    /// The incident's kind (`failover`, `error_rate`,
    /// `users_seeing_errors`, `maintenance`).
    pub kind: String,
    pub pool: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: f64,
    /// When it resolved; `None` while it fires.
    pub resolved_at: Option<f64>,
}

/// Saved alerts checked against this run's pools, ready to go back on the
/// board (see [`restorable`]).
#[derive(Debug, Default)]
pub struct Restorable {
    firing: Vec<Alert>,
    resolved: Vec<(Alert, f64)>,
}

/// Checks `saved` against this run's pools (the first `known` of
/// `labels`), without changing anything: an alert naming a kind or pool
/// this run does not know, or a time that is no time, is an error.
pub fn restorable(
    saved: &[SavedAlert],
    labels: &[String],
    known: usize,
) -> Result<Restorable, String> {
    let mut out = Restorable::default();
    for s in saved {
        let kind = [
            Kind::Failover,
            Kind::ErrorRate,
            Kind::UsersSeeingErrors,
            Kind::Maintenance,
        ]
        .into_iter()
        .find(|k| k.label() == s.kind)
        .ok_or_else(|| format!("unknown alert kind '{}'", s.kind))?;
        let pool = match s.pool.as_deref() {
            Some(label) => Some(
                labels[..known.min(labels.len())]
                    .iter()
                    .position(|l| l == label)
                    .ok_or_else(|| format!("unknown pool '{label}'"))?,
            ),
            None => None,
        };
        let wants_pool = matches!(kind, Kind::Failover | Kind::ErrorRate);
        if pool.is_some() != wants_pool {
            return Err(format!("alert '{}' with a wrong pool", s.kind));
        }
        if !s.starts_at.is_finite() || s.resolved_at.is_some_and(|t| !t.is_finite()) {
            return Err(format!("alert '{}' with a time that is no time", s.kind));
        }
        let alert = Alert {
            key: IncidentKey { kind, pool },
            labels: s.labels.clone(),
            annotations: s.annotations.clone(),
            starts_at: s.starts_at,
        };
        match s.resolved_at {
            Some(at) => out.resolved.push((alert, at)),
            None => out.firing.push(alert),
        }
    }
    Ok(out)
}

/// The alerts Alertmanager should know about.
#[derive(Debug, Default)]
pub struct Board {
    firing: BTreeMap<IncidentKey, Alert>,
    /// Resolved alerts and when, re-sent for [`RESOLVED_KEPT_SECS`].
    resolved: Vec<(Alert, f64)>,
    /// When the board was last posted.
    posted_at: Option<f64>,
}

impl Board {
    /// Applies a finding that was sent; false when Alertmanager does not
    /// hear about it.
    fn apply(&mut self, cfg: &AlertmanagerConfig, f: &Finding, n: &Notification) -> bool {
        let Some(name) = alertname(f.key.kind) else {
            return false;
        };
        let annotations = annotations(n);
        match f.phase {
            Phase::Open | Phase::Repeat | Phase::Event => {
                let alert = Alert {
                    key: f.key,
                    labels: labels(cfg, name, f),
                    annotations,
                    starts_at: f.started,
                };
                if let Some(old) = self.firing.insert(f.key, alert.clone())
                    && old.labels != alert.labels
                {
                    // A new identity (the severity changed): the old alert
                    // ends now.
                    self.resolved.push((old, f.at));
                }
            }
            Phase::Resolve => {
                if let Some(mut alert) = self.firing.remove(&f.key) {
                    alert.annotations = annotations;
                    self.resolved.push((alert, f.at));
                }
            }
        }
        true
    }

    /// Resolves the alerts of incidents that closed without a word (held
    /// back by maintenance). Maintenance is not an incident: its own
    /// findings open and close it. True when something changed.
    fn retain_open(&mut self, is_open: &dyn Fn(IncidentKey) -> bool, now: f64) -> bool {
        let closed: Vec<IncidentKey> = self
            .firing
            .keys()
            .filter(|k| k.kind != Kind::Maintenance && !is_open(**k))
            .copied()
            .collect();
        for key in &closed {
            if let Some(alert) = self.firing.remove(key) {
                self.resolved.push((alert, now));
            }
        }
        !closed.is_empty()
    }

    /// The whole board as the body of one post, at `now`.
    fn render(&mut self, cfg: &AlertmanagerConfig, now: f64) -> Bytes {
        self.resolved
            .retain(|(_, at)| now - at < RESOLVED_KEPT_SECS);
        self.posted_at = Some(now);
        let ends = now + cfg.resend.as_secs_f64() * ENDS_AFTER_RESENDS;
        let alerts: Vec<Value> = self
            .firing
            .values()
            .map(|a| alert_json(cfg, a, ends))
            .chain(self.resolved.iter().map(|(a, at)| alert_json(cfg, a, *at)))
            .collect();
        Bytes::from(serde_json::to_vec(&alerts).expect("JSON values serialize"))
    }

    fn is_empty(&self) -> bool {
        self.firing.is_empty() && self.resolved.is_empty()
    }

    /// The board for the state file, pools by their `labels`.
    fn export(&self, labels: &[String]) -> Vec<SavedAlert> {
        let saved = |a: &Alert, resolved_at: Option<f64>| SavedAlert {
            kind: a.key.kind.label().to_string(),
            pool: a.key.pool.map(|p| labels[p].clone()),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at,
            resolved_at,
        };
        self.firing
            .values()
            .map(|a| saved(a, None))
            .chain(self.resolved.iter().map(|(a, at)| saved(a, Some(*at))))
            .collect()
    }

    /// Takes up the board a previous run left. Its firing alerts go back
    /// as they were; whether their incidents are still open is settled by
    /// [`Board::retain_open`] at the next tick. A maintenance alert fires
    /// on only if that maintenance is still `maintenance_told`; otherwise
    /// it is resolved `now`. Due for a post at once: the alerts' leases
    /// ran on while no process re-sent them.
    fn restore(&mut self, r: Restorable, maintenance_told: bool, now: f64) {
        for alert in r.firing {
            if alert.key.kind == Kind::Maintenance && !maintenance_told {
                self.resolved.push((alert, now));
            } else {
                // Restored before the first tick, so nothing fires yet; if
                // something did, it is newer and stays.
                self.firing.entry(alert.key).or_insert(alert);
            }
        }
        self.resolved.extend(r.resolved);
        self.posted_at = None;
    }

    /// True when the board is due for a re-send at `now`.
    fn due(&self, cfg: &AlertmanagerConfig, now: f64) -> bool {
        !self.is_empty()
            && self
                .posted_at
                .is_none_or(|at| now - at >= cfg.resend.as_secs_f64())
    }
}

fn labels(cfg: &AlertmanagerConfig, name: &str, f: &Finding) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = cfg.labels.iter().cloned().collect();
    labels.insert("alertname".into(), name.into());
    labels.insert("severity".into(), f.severity.label().into());
    labels.insert("instance".into(), cfg.instance.clone());
    match (f.pool(), f.key.kind) {
        (Some(pool), _) => {
            labels.insert("pool".into(), pool.label.clone());
        }
        (None, Kind::UsersSeeingErrors) => {
            labels.insert("pool".into(), "all".into());
        }
        (None, _) => {}
    }
    labels
}

fn annotations(n: &Notification) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("summary".into(), n.title.clone());
    a.insert("description".into(), n.summary.clone());
    if let Some(url) = &n.runbook_url {
        a.insert("runbook_url".into(), url.clone());
    }
    a
}

fn alert_json(cfg: &AlertmanagerConfig, a: &Alert, ends_at: f64) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(ends_at),
        "generatorURL": cfg.generator_url,
    })
}

fn rfc3339(secs: f64) -> String {
    humantime::format_rfc3339_millis(system_time(secs)).to_string()
}

/// The Alertmanager sink: its board, and one queue per target.
pub struct Alertmanager {
    cfg: AlertmanagerConfig,
    board: Board,
    targets: Vec<Queue>,
}

impl Alertmanager {
    /// Starts one delivery task per URL, counting in `metrics`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(
        cfg: AlertmanagerConfig,
        delivery: &DeliveryConfig,
        metrics: Arc<DeliveryMetrics>,
    ) -> Result<(Alertmanager, DeliveryHandle), String> {
        let mut targets = Vec::new();
        let mut handles: Option<DeliveryHandle> = None;
        for url in &cfg.urls {
            let target = Target::new(url, cfg.auth.clone(), delivery.timeout)?;
            tracing::info!(host = target.host(), "alerts go to Alertmanager");
            let (queue, handle) = delivery::spawn(target, delivery, metrics.clone());
            targets.push(queue);
            handles = Some(match handles {
                Some(h) => h.join(handle),
                None => handle,
            });
        }
        let handle = handles.ok_or("ALERTMANAGER_URL lists no Alertmanager")?;
        Ok((
            Alertmanager {
                cfg,
                board: Board::default(),
                targets,
            },
            handle,
        ))
    }

    /// The board, for the state file.
    pub fn export(&self, labels: &[String]) -> Vec<SavedAlert> {
        self.board.export(labels)
    }

    /// Puts back the board a previous run saved (see [`restorable`]); the
    /// next [`Alertmanager::tick`] posts it.
    pub fn restore(&mut self, r: Restorable, maintenance_told: bool, now: f64) {
        self.board.restore(r, maintenance_told, now);
    }

    /// Takes `f` (worded `n`) onto the board and posts the board to every
    /// target. One outcome receiver per target; none when Alertmanager does
    /// not hear about `f`.
    pub fn submit(
        &mut self,
        f: &Finding,
        n: &Notification,
        now: f64,
    ) -> Vec<oneshot::Receiver<Outcome>> {
        if !self.board.apply(&self.cfg, f, n) {
            return Vec::new();
        }
        let body = self.board.render(&self.cfg, now);
        self.post(body, Some((n.kind, n.title.as_str())))
    }

    /// Whether the board holds alerts, which [`Alertmanager::tick`]
    /// re-sends when due.
    pub fn need_ticks(&self) -> bool {
        !self.board.is_empty()
    }

    /// Resolves what closed without a word, and re-sends the board when it
    /// is due.
    pub fn tick(&mut self, now: f64, is_open: &dyn Fn(IncidentKey) -> bool) {
        let changed = self.board.retain_open(is_open, now);
        if changed || self.board.due(&self.cfg, now) {
            let body = self.board.render(&self.cfg, now);
            self.post(body, None);
        }
    }

    fn post(&self, body: Bytes, notice: Option<(Kind, &str)>) -> Vec<oneshot::Receiver<Outcome>> {
        let mut outcomes = Vec::new();
        for queue in &self.targets {
            let mut notices = Vec::new();
            if let Some((kind, _)) = notice {
                let (tx, rx) = oneshot::channel();
                notices.push(Tracked::new(kind, Some(tx)));
                outcomes.push(rx);
            }
            let parcel = Parcel {
                lane: Lane::State,
                latest: true,
                body: Body::Ready(body.clone()),
                what: match notice {
                    Some((_, title)) => format!("alerts with {title}"),
                    None => "alerts (re-send)".into(),
                },
                notices,
            };
            // A refused post is counted and logged by the queue; the next
            // re-send carries the board again.
            let _ = queue.push(parcel);
        }
        outcomes
    }
}

/// Posts `f` once to every Alertmanager, for `poolwatch alert-test`: the
/// test alert fires for five minutes. Returns each target's host and
/// result (the error with every secret redacted).
pub async fn send_test(
    cfg: &AlertmanagerConfig,
    delivery: &DeliveryConfig,
    f: &Finding,
    n: &Notification,
) -> Vec<(String, Result<(), String>)> {
    let mut board = Board::default();
    board.apply(cfg, f, n);
    let alerts: Vec<Value> = board
        .firing
        .values()
        .map(|a| alert_json(cfg, a, f.at + TEST_ALERT_SECS))
        .collect();
    let body = Bytes::from(serde_json::to_vec(&alerts).expect("JSON values serialize"));
    let policy = delivery.policy(delivery.max_retry_for.min(delivery.timeout * 3));
    let never = tokio_util::sync::CancellationToken::new();
    let mut out = Vec::new();
    for url in &cfg.urls {
        let result = match Target::new(url, cfg.auth.clone(), delivery.timeout) {
            Err(e) => (url_host(url), Err(e)),
            Ok(target) => {
                let host = target.host().to_string();
                let r = deliver(
                    &target,
                    &policy,
                    &body,
                    &n.title,
                    "alertmanager",
                    &never,
                    None,
                )
                .await;
                (
                    host,
                    match r {
                        Delivered::Sent(_) => Ok(()),
                        Delivered::Failed(reason) => Err(reason),
                        Delivered::Superseded => Err("replaced".into()),
                    },
                )
            }
        };
        out.push(result);
    }
    out
}

fn url_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::finding::{Facts, Failures, Pool, Ratio, Severity};
    use crate::alerting::wording::words;

    fn cfg() -> AlertmanagerConfig {
        AlertmanagerConfig {
            urls: vec!["http://am.test:9093".into()],
            auth: None,
            resend: Duration::from_secs(30),
            instance: "watcher-1".into(),
            labels: vec![("cluster".into(), "prod".into())],
            generator_url: "http://watcher-1:9514/state".into(),
        }
    }

    fn pool(id: usize, label: &str) -> Pool {
        Pool {
            id,
            label: label.into(),
        }
    }

    fn failover(phase: Phase, client_5xx: u64, at: f64) -> Finding {
        Finding {
            key: IncidentKey {
                kind: Kind::Failover,
                pool: Some(0),
            },
            phase,
            severity: if client_5xx > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            started: 1_800_000_000.0,
            at,
            facts: Facts::Failover {
                from: pool(0, "blue"),
                to: pool(1, "green"),
                from_release: "b1".into(),
                to_release: "g1".into(),
                retried: 1,
                failures: Failures::default(),
                client_5xx,
            },
        }
    }

    fn recovery(at: f64) -> Finding {
        Finding {
            key: IncidentKey {
                kind: Kind::Failover,
                pool: Some(0),
            },
            phase: Phase::Resolve,
            severity: Severity::Resolved,
            started: 1_800_000_000.0,
            at,
            facts: Facts::Recovered {
                pool: pool(0, "blue"),
                took_over: pool(1, "green"),
                confirmed_secs: 5.0,
                answered: 40,
                over_secs: 5.0,
                retried: 3,
                client_5xx: 0,
                release: "b1".into(),
            },
        }
    }

    fn maintenance_started(at: f64) -> Finding {
        Finding {
            key: IncidentKey {
                kind: Kind::Maintenance,
                pool: None,
            },
            phase: Phase::Open,
            severity: Severity::Info,
            started: at,
            at,
            facts: Facts::MaintenanceStarted {
                by: "alice".into(),
                reason: "deploy".into(),
                until: None,
            },
        }
    }

    fn posted(board: &mut Board, now: f64) -> Vec<Value> {
        serde_json::from_slice(&board.render(&cfg(), now)).unwrap()
    }

    #[test]
    fn a_failover_fires_with_its_labels_and_start_then_resolves() {
        let cfg = cfg();
        let mut b = Board::default();
        let f = failover(Phase::Open, 0, 1_800_000_000.0);
        assert!(b.apply(&cfg, &f, &words(&f, Some("https://x.test/RUNBOOK.md"))));
        let alerts = posted(&mut b, 1_800_000_001.0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            a["labels"],
            json!({
                "alertname": "PoolwatchFailover",
                "pool": "blue",
                "severity": "warning",
                "instance": "watcher-1",
                "cluster": "prod",
            })
        );
        assert_eq!(a["annotations"]["summary"], "Failover: blue → green");
        assert_eq!(
            a["annotations"]["runbook_url"],
            "https://x.test/RUNBOOK.md#failover"
        );
        assert!(
            a["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("nginx retries its requests on green")
        );
        assert_eq!(a["startsAt"], "2027-01-15T08:00:00.000Z");
        // A few re-send intervals ahead.
        assert_eq!(a["endsAt"], "2027-01-15T08:02:01.000Z");
        assert_eq!(a["generatorURL"], "http://watcher-1:9514/state");

        let r = recovery(1_800_000_060.0);
        assert!(b.apply(&cfg, &r, &words(&r, None)));
        let alerts = posted(&mut b, 1_800_000_061.0);
        assert_eq!(alerts.len(), 1);
        // Resolved at the recovery, same identity, the recovery's words.
        assert_eq!(alerts[0]["labels"]["severity"], "warning");
        assert_eq!(alerts[0]["endsAt"], "2027-01-15T08:01:00.000Z");
        assert_eq!(
            alerts[0]["annotations"]["summary"],
            "Recovered: blue is serving again"
        );
        // Kept for late Alertmanagers, then dropped.
        assert_eq!(posted(&mut b, 1_800_000_060.0 + 299.0).len(), 1);
        assert!(posted(&mut b, 1_800_000_060.0 + 301.0).is_empty());
    }

    #[test]
    fn a_severity_change_ends_the_old_alert() {
        let cfg = cfg();
        let mut b = Board::default();
        let f = failover(Phase::Open, 0, 1_800_000_000.0);
        b.apply(&cfg, &f, &words(&f, None));
        let f = failover(Phase::Repeat, 2, 1_800_000_010.0);
        b.apply(&cfg, &f, &words(&f, None));
        let alerts = posted(&mut b, 1_800_000_011.0);
        let by_severity: Vec<(&str, &str)> = alerts
            .iter()
            .map(|a| {
                (
                    a["labels"]["severity"].as_str().unwrap(),
                    a["endsAt"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_severity,
            [
                ("critical", "2027-01-15T08:02:11.000Z"),
                ("warning", "2027-01-15T08:00:10.000Z"),
            ]
        );
    }

    #[test]
    fn an_incident_closed_without_a_word_is_resolved() {
        let cfg = cfg();
        let mut b = Board::default();
        let f = Finding {
            key: IncidentKey {
                kind: Kind::ErrorRate,
                pool: Some(1),
            },
            phase: Phase::Open,
            severity: Severity::Warning,
            started: 1_800_000_000.0,
            at: 1_800_000_000.0,
            facts: Facts::ErrorRate {
                pool: pool(1, "green"),
                window: Ratio::new(5, 50),
                threshold: 2.0,
                window_size: 50,
                client_5xx: 0,
                release: "g1".into(),
            },
        };
        b.apply(&cfg, &f, &words(&f, None));
        assert!(!b.retain_open(&|_| true, 1_800_000_005.0));
        assert!(b.retain_open(&|_| false, 1_800_000_006.0));
        let alerts = posted(&mut b, 1_800_000_007.0);
        assert_eq!(alerts[0]["labels"]["alertname"], "PoolwatchHighErrorRate");
        assert_eq!(alerts[0]["endsAt"], "2027-01-15T08:00:06.000Z");
    }

    #[test]
    fn the_alert_loop_keeps_ticking_while_the_board_holds_alerts() {
        let mut am = Alertmanager {
            cfg: cfg(),
            board: Board::default(),
            targets: Vec::new(),
        };
        assert!(!am.need_ticks(), "nothing to re-send");
        let f = failover(Phase::Open, 0, 100.0);
        am.submit(&f, &words(&f, None), 100.0);
        assert!(am.need_ticks(), "firing");
        let f = failover(Phase::Resolve, 0, 200.0);
        am.submit(&f, &words(&f, None), 200.0);
        am.tick(200.0 + RESOLVED_KEPT_SECS - 1.0, &|_| false);
        assert!(am.need_ticks(), "resolved lately: still re-sent");
        am.tick(200.0 + RESOLVED_KEPT_SECS + 30.0, &|_| false);
        assert!(!am.need_ticks(), "its resolution was re-sent long enough");
    }

    #[test]
    fn planned_switches_are_not_alerts_and_resends_are_due() {
        let cfg = cfg();
        let mut b = Board::default();
        let f = Finding {
            key: IncidentKey {
                kind: Kind::PoolSwitch,
                pool: Some(1),
            },
            phase: Phase::Event,
            severity: Severity::Info,
            started: 1.0,
            at: 1.0,
            facts: Facts::Switch {
                from: pool(0, "blue"),
                to: pool(1, "green"),
                from_release: "b".into(),
                to_release: "g".into(),
                during_failover: None,
            },
        };
        assert!(!b.apply(&cfg, &f, &words(&f, None)));
        assert!(!b.due(&cfg, 100.0), "nothing to say");
        let f = failover(Phase::Open, 0, 100.0);
        b.apply(&cfg, &f, &words(&f, None));
        b.render(&cfg, 100.0);
        assert!(!b.due(&cfg, 129.0));
        assert!(b.due(&cfg, 130.0));
    }

    #[test]
    fn a_restored_board_posts_the_same_alerts_at_once_and_resolves_them() {
        let cfg = cfg();
        let labels: Vec<String> = ["blue", "green", "other"].map(String::from).to_vec();
        let mut b = Board::default();
        let f = failover(Phase::Open, 0, 1_800_000_000.0);
        b.apply(&cfg, &f, &words(&f, Some("https://x.test/RUNBOOK.md")));
        let m = maintenance_started(1_800_000_002.0);
        b.apply(&cfg, &m, &words(&m, None));
        let before = posted(&mut b, 1_800_000_003.0);
        let saved = b.export(&labels);
        assert_eq!(saved.len(), 2);
        let json = serde_json::to_string(&saved).unwrap();
        let back: Vec<SavedAlert> = serde_json::from_str(&json).unwrap();

        // The new process, 100 s later: both fire again at once, as they
        // were, with a new lease.
        let mut after = Board::default();
        after.restore(
            restorable(&back, &labels, 2).unwrap(),
            true,
            1_800_000_100.0,
        );
        assert!(after.due(&cfg, 1_800_000_100.0));
        let again = posted(&mut after, 1_800_000_100.0);
        assert_eq!(again.len(), 2);
        for (a, b) in before.iter().zip(&again) {
            assert_eq!(a["labels"], b["labels"]);
            assert_eq!(a["annotations"], b["annotations"]);
            assert_eq!(a["startsAt"], b["startsAt"]);
        }
        assert_eq!(again[0]["endsAt"], "2027-01-15T08:03:40.000Z");
        // Its incident resolves: the same alert ends.
        let r = recovery(1_800_000_200.0);
        assert!(after.apply(&cfg, &r, &words(&r, None)));
        let alerts = posted(&mut after, 1_800_000_201.0);
        let failover = alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "PoolwatchFailover")
            .unwrap();
        assert_eq!(failover["labels"], before[0]["labels"]);
        assert_eq!(failover["startsAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(failover["endsAt"], "2027-01-15T08:03:20.000Z");

        // Maintenance no longer told after the restart: its alert ends.
        let mut quiet = Board::default();
        quiet.restore(
            restorable(&back, &labels, 2).unwrap(),
            false,
            1_800_000_100.0,
        );
        let alerts = posted(&mut quiet, 1_800_000_100.0);
        let maint = alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "PoolwatchMaintenance")
            .unwrap();
        assert_eq!(maint["endsAt"], "2027-01-15T08:01:40.000Z");
        // Resolved alerts come back resolved, still re-sent for a while.
        let mut resolved = Board::default();
        resolved.restore(
            restorable(&after.export(&labels), &labels, 2).unwrap(),
            true,
            1_800_000_202.0,
        );
        assert_eq!(resolved.resolved.len(), 1);
        assert_eq!(resolved.firing.len(), 1, "maintenance still fires");
    }

    #[test]
    fn a_saved_alert_for_an_unknown_pool_is_refused() {
        let labels: Vec<String> = ["blue", "green", "other"].map(String::from).to_vec();
        let mut b = Board::default();
        let f = failover(Phase::Open, 0, 1_800_000_000.0);
        b.apply(&cfg(), &f, &words(&f, None));
        let mut saved = b.export(&labels);
        assert!(restorable(&saved, &labels, 2).is_ok());
        saved[0].pool = Some("other".into());
        assert!(restorable(&saved, &labels, 2).is_err());
        saved[0].pool = None;
        assert!(restorable(&saved, &labels, 2).is_err());
        saved[0].pool = Some("blue".into());
        saved[0].kind = "pool_switch".into();
        assert!(restorable(&saved, &labels, 2).is_err());
        saved[0].kind = "failover".into();
        saved[0].starts_at = f64::NAN;
        assert!(restorable(&saved, &labels, 2).is_err());
    }

    #[test]
    fn urls_are_checked_without_showing_credentials() {
        assert!(check_url("http://am:9093").is_ok());
        assert!(check_url("https://am.example/prefix/").is_ok());
        let e = check_url("http://user:s3cr3t@am:9093").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(check_url("ftp://am").is_err());
        assert!(check_url("am:9093").is_err());
        assert!(check_url("http://am:9093/?x=1").is_err());
        assert_eq!(
            alerts_url("https://am.example/prefix/"),
            "https://am.example/prefix/api/v2/alerts"
        );
    }
}
