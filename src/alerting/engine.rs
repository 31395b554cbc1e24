//! The alert loop: every 100 ms, copy the pipeline's figures, run the
//! rules, apply cooldown and maintenance, and hand what remains to the
//! delivery queue.
//!
//! It runs on the tokio runtime, never on a receive thread; the only thing
//! it shares with ingestion is the pipeline lock, held for the copy. A tick
//! of 100 ms keeps detection well within the one second a failover
//! notification is allowed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::{Counter, Gauge};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::delivery::{self, AlertQueue, Outcome};
use super::finding::{Kind, Notification, Severity};
use super::incident::{Decision, Notifier};
use super::rules::{IncidentKey, OpenIncident, Phase, Rules};
use super::snapshot::Snapshot;
use crate::logtime::format_rfc3339;
use crate::maintenance::{Maintenance, MaintenanceStatus, Transition};
use crate::state::Shared;

pub const TICK: Duration = Duration::from_millis(100);

/// Notifications kept for `/state`.
const RECENT: usize = 20;

/// What the HTTP side reads and changes.
pub struct AlertShared {
    maintenance: Mutex<Maintenance>,
    status: Mutex<AlertStatus>,
}

impl AlertShared {
    pub fn new(maintenance: Maintenance) -> AlertShared {
        AlertShared {
            maintenance: Mutex::new(maintenance),
            status: Mutex::new(AlertStatus::default()),
        }
    }

    pub fn maintenance(&self) -> MutexGuard<'_, Maintenance> {
        self.maintenance.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> AlertStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Alerting as `/state` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertStatus {
    /// The pool whose failures count as a failover.
    pub primary: String,
    pub open_incidents: Vec<OpenIncident>,
    pub maintenance: Option<MaintenanceStatus>,
    /// The last notifications decided on, newest last.
    pub recent: VecDeque<RecentNotification>,
    /// Datagrams received before the last evaluation: whatever those called
    /// for has been decided on (and queued) by the time this shows. Lets a
    /// caller wait for the rules to have seen something, not for a guess
    /// at how long they take.
    pub judged_datagrams: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentNotification {
    pub at: String,
    pub kind: Kind,
    pub pool: Option<String>,
    pub title: String,
    /// `sent`, `suppressed_cooldown`, `suppressed_maintenance`, `dropped`.
    pub outcome: &'static str,
}

/// Metric handles the loop owns.
struct LoopMetrics {
    /// `[kind][0 = cooldown, 1 = maintenance]`.
    suppressed: Vec<[Counter; 2]>,
    /// `[from][to]` over known pools.
    failovers: Vec<Vec<Counter>>,
    /// `(kind, pool label)` → gauge.
    incident_open: Vec<(Kind, Option<usize>, Gauge)>,
    maintenance_mode: Gauge,
}

impl LoopMetrics {
    fn register(labels: &[String], known: usize) -> LoopMetrics {
        use metrics::{counter, describe_counter, describe_gauge, gauge};
        describe_counter!(
            "poolwatch_failovers_total",
            "Failovers detected: the primary failing while another pool served."
        );
        describe_gauge!(
            "poolwatch_incident_open",
            "1 while an incident of this kind is open for the pool (pool=\"all\" for site-wide)."
        );
        describe_gauge!(
            "poolwatch_maintenance_mode",
            "1 while maintenance mode holds back notifications."
        );
        let mut incident_open = Vec::new();
        for kind in [Kind::Failover, Kind::ErrorRate] {
            for (p, label) in labels.iter().enumerate().take(known) {
                incident_open.push((
                    kind,
                    Some(p),
                    gauge!("poolwatch_incident_open", "kind" => kind.label(), "pool" => label.clone()),
                ));
            }
        }
        incident_open.push((
            Kind::UsersSeeingErrors,
            None,
            gauge!("poolwatch_incident_open", "kind" => Kind::UsersSeeingErrors.label(), "pool" => "all"),
        ));
        LoopMetrics {
            suppressed: Kind::ALL
                .iter()
                .map(|&k| {
                    [
                        delivery::alerts_counter(k, "suppressed_cooldown"),
                        delivery::alerts_counter(k, "suppressed_maintenance"),
                    ]
                })
                .collect(),
            failovers: (0..known)
                .map(|from| {
                    (0..known)
                        .map(|to| {
                            counter!("poolwatch_failovers_total", "from" => labels[from].clone(), "to" => labels[to].clone())
                        })
                        .collect()
                })
                .collect(),
            incident_open,
            maintenance_mode: gauge!("poolwatch_maintenance_mode"),
        }
    }
}

/// A sent message whose delivery result is still to come.
struct Pending {
    key: IncidentKey,
    phase: Phase,
    done: oneshot::Receiver<Outcome>,
}

/// The loop's state.
pub struct AlertLoop {
    rules: Rules,
    notifier: Notifier,
    queue: AlertQueue,
    metrics: LoopMetrics,
    pending: Vec<Pending>,
    recent: VecDeque<RecentNotification>,
}

impl AlertLoop {
    /// Build the loop; registers its metrics on the current recorder.
    pub fn new(
        rules: Rules,
        notifier: Notifier,
        queue: AlertQueue,
        labels: &[String],
        known: usize,
    ) -> AlertLoop {
        AlertLoop {
            rules,
            notifier,
            queue,
            metrics: LoopMetrics::register(labels, known),
            pending: Vec::new(),
            recent: VecDeque::new(),
        }
    }

    /// Tick until cancelled, then once more so that what the receivers
    /// finished in hand is judged too.
    pub async fn run(
        mut self,
        shared: Arc<Shared>,
        alerts: Arc<AlertShared>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick(&shared, &alerts, now_unix()),
                _ = cancel.cancelled() => break,
            }
        }
        self.tick(&shared, &alerts, now_unix());
    }

    /// One evaluation at `now` (Unix seconds).
    pub fn tick(&mut self, shared: &Shared, alerts: &AlertShared, now: f64) {
        let (transition, maintenance_on) = {
            let mut m = alerts.maintenance();
            let t = m.poll(now);
            (t, m.is_on())
        };
        if let Some(t) = transition {
            let n = self.maintenance_message(&t, now);
            self.send(None, n, now);
        }
        let (snap, judged_datagrams) = {
            let p = shared.pipeline();
            (Snapshot::take(&p, shared.now_secs()), p.totals.datagrams)
        };
        for sig in self.rules.evaluate(&snap, now) {
            if sig.notification.kind == Kind::Failover
                && sig.phase == Phase::Open
                && let (Some(from), Some(to)) = (sig.key.pool, sig.target)
            {
                self.metrics.failovers[from][to].increment(1);
            }
            let decision = self.notifier.decide(&sig, now, maintenance_on);
            match decision {
                Decision::Send => self.send(Some((sig.key, sig.phase)), sig.notification, now),
                held => {
                    let which = usize::from(held == Decision::SuppressedMaintenance);
                    let kind = sig.notification.kind;
                    self.metrics.suppressed[kind_index(kind)][which].increment(1);
                    if held == Decision::SuppressedMaintenance {
                        alerts.maintenance().count_suppressed(kind);
                    }
                    tracing::info!(
                        kind = kind.label(),
                        title = ?sig.notification.title,
                        outcome = held.outcome().unwrap_or_default(),
                        "notification held back"
                    );
                    self.remember(&sig.notification, held.outcome().unwrap_or_default(), now);
                }
            }
        }
        self.collect_results();
        for (kind, pool, g) in &self.metrics.incident_open {
            let open = self.rules.is_open(IncidentKey {
                kind: *kind,
                pool: *pool,
            });
            g.set(if open { 1.0 } else { 0.0 });
        }
        self.metrics
            .maintenance_mode
            .set(if maintenance_on { 1.0 } else { 0.0 });
        let status = AlertStatus {
            primary: snap.labels[self.rules.primary()].clone(),
            open_incidents: self.rules.open_incidents(&snap.labels),
            maintenance: Some(alerts.maintenance().status()),
            recent: self.recent.clone(),
            judged_datagrams,
        };
        *alerts.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    fn send(&mut self, key: Option<(IncidentKey, Phase)>, n: Notification, now: f64) {
        tracing::info!(kind = n.kind.label(), title = ?n.title, "notification");
        let (tx, rx) = oneshot::channel();
        let outcome = match self.queue.submit(n.clone(), Some(tx)) {
            Ok(()) => {
                if let Some((key, phase)) = key {
                    self.pending.push(Pending {
                        key,
                        phase,
                        done: rx,
                    });
                }
                "sent"
            }
            Err(_) => {
                // Counted and logged by the queue; not a cooldown start.
                if let Some((key, phase)) = key {
                    self.notifier.delivery_failed(key, phase);
                }
                "dropped"
            }
        };
        self.remember(&n, outcome, now);
    }

    fn collect_results(&mut self) {
        let notifier = &mut self.notifier;
        self.pending.retain_mut(|p| match p.done.try_recv() {
            Ok(Outcome::Sent) => false,
            Ok(Outcome::Failed(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                notifier.delivery_failed(p.key, p.phase);
                false
            }
            Err(oneshot::error::TryRecvError::Empty) => true,
        });
    }

    fn remember(&mut self, n: &Notification, outcome: &'static str, now: f64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentNotification {
            at: format_rfc3339(now as i64),
            kind: n.kind,
            pool: n.pool.clone(),
            title: n.title.clone(),
            outcome,
        });
    }

    fn maintenance_message(&self, t: &Transition, now: f64) -> Notification {
        let mut n = Notification {
            kind: Kind::Maintenance,
            severity: Severity::Info,
            pool: None,
            title: String::new(),
            summary: String::new(),
            fields: Vec::new(),
            first_seen: format_rfc3339(now as i64),
            resolved: false,
            runbook_url: None,
        };
        match t {
            Transition::Started(w) => {
                let until = w.until.map_or("until turned off".to_string(), |u| {
                    format!("until {}", format_rfc3339(u as i64))
                });
                n.title = format!("Maintenance started by {}", w.by);
                n.summary = format!(
                    "Failover, pool switch and error-rate notifications are held back {until}. \
                     Users seeing errors is still reported. Reason: {}",
                    w.reason
                );
                n.fields = vec![
                    ("By".into(), w.by.clone()),
                    ("Reason".into(), w.reason.clone()),
                    ("Until".into(), until),
                ];
            }
            Transition::Ended {
                window,
                why,
                suppressed,
            } => {
                let total: u64 = suppressed.values().sum();
                let list = if suppressed.is_empty() {
                    "nothing".to_string()
                } else {
                    suppressed
                        .iter()
                        .map(|(k, c)| format!("{} ×{c}", k.label()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                n.title = format!("Maintenance ended ({why})");
                n.severity = Severity::Resolved;
                n.resolved = true;
                n.summary = format!(
                    "Notifications are live again. {total} were held back during maintenance: \
                     {list}. Open incidents are announced on their next evidence."
                );
                n.fields = vec![
                    ("Started by".into(), window.by.clone()),
                    ("Reason".into(), window.reason.clone()),
                    ("Began".into(), format_rfc3339(window.since as i64)),
                    ("Held back".into(), list),
                ];
            }
        }
        n.runbook_url = None;
        n
    }
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).expect("listed")
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
