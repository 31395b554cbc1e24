//! The alert loop: every 100 ms, copy the pipeline's figures, run the
//! rules, apply cooldown and maintenance, word what remains and hand it to
//! the delivery queue.
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
use super::finding::{Facts, Finding, IncidentKey, Kind, Phase, Severity};
use super::incident::{Decision, Incidents, OpenIncident};
use super::rules::Rules;
use super::snapshot::Snapshot;
use super::wording::{Notification, timestamp, words};
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
    incidents: Incidents,
    /// `RUNBOOK_URL`, for the words.
    runbook_url: Option<String>,
    queue: AlertQueue,
    metrics: LoopMetrics,
    pending: Vec<Pending>,
    recent: VecDeque<RecentNotification>,
}

impl AlertLoop {
    /// Build the loop; registers its metrics on the current recorder.
    pub fn new(
        rules: Rules,
        incidents: Incidents,
        runbook_url: Option<String>,
        queue: AlertQueue,
        labels: &[String],
        known: usize,
    ) -> AlertLoop {
        AlertLoop {
            rules,
            incidents,
            runbook_url,
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
            let f = maintenance_finding(t, now);
            self.send(&f, false, now);
        }
        let (snap, judged_datagrams) = {
            let p = shared.pipeline();
            (Snapshot::take(&p, shared.now_secs()), p.totals.datagrams)
        };
        for f in self.rules.evaluate(&snap, &mut self.incidents, now) {
            if let (Phase::Open, Facts::Failover { from, to, .. }) = (f.phase, &f.facts) {
                self.metrics.failovers[from.id][to.id].increment(1);
            }
            match self.incidents.decide(&f, now, maintenance_on) {
                Decision::Send => self.send(&f, true, now),
                held => {
                    let which = usize::from(held == Decision::SuppressedMaintenance);
                    let kind = f.kind();
                    self.metrics.suppressed[kind_index(kind)][which].increment(1);
                    if held == Decision::SuppressedMaintenance {
                        alerts.maintenance().count_suppressed(kind);
                    }
                    let n = words(&f, self.runbook_url.as_deref());
                    tracing::info!(
                        kind = kind.label(),
                        title = ?n.title,
                        outcome = held.outcome().unwrap_or_default(),
                        "notification held back"
                    );
                    self.remember(&n, held.outcome().unwrap_or_default(), now);
                }
            }
        }
        self.collect_results();
        for (kind, pool, g) in &self.metrics.incident_open {
            let open = self.incidents.is_open(IncidentKey {
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
            open_incidents: self.incidents.list(&snap.labels),
            maintenance: Some(alerts.maintenance().status()),
            recent: self.recent.clone(),
            judged_datagrams,
        };
        *alerts.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// Word `f` and queue it. With `tracked`, its delivery result feeds
    /// the incident's cooldown and announcement bookkeeping.
    fn send(&mut self, f: &Finding, tracked: bool, now: f64) {
        let n = words(f, self.runbook_url.as_deref());
        tracing::info!(kind = n.kind.label(), title = ?n.title, "notification");
        let (tx, rx) = oneshot::channel();
        let outcome = match self.queue.submit(n.clone(), Some(tx)) {
            Ok(()) => {
                if tracked {
                    self.pending.push(Pending {
                        key: f.key,
                        phase: f.phase,
                        done: rx,
                    });
                }
                "sent"
            }
            Err(_) => {
                // Counted and logged by the queue; not a cooldown start.
                if tracked {
                    self.incidents.delivery_failed(f.key, f.phase);
                }
                "dropped"
            }
        };
        self.remember(&n, outcome, now);
    }

    fn collect_results(&mut self) {
        let incidents = &mut self.incidents;
        self.pending.retain_mut(|p| match p.done.try_recv() {
            Ok(Outcome::Sent) => false,
            Ok(Outcome::Failed(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                incidents.delivery_failed(p.key, p.phase);
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
            at: timestamp(now),
            kind: n.kind,
            pool: n.pool.clone(),
            title: n.title.clone(),
            outcome,
        });
    }
}

/// Maintenance started or ended, as a finding: it opens and closes like an
/// incident of its own, and is never held back.
fn maintenance_finding(t: Transition, now: f64) -> Finding {
    let key = IncidentKey {
        kind: Kind::Maintenance,
        pool: None,
    };
    match t {
        Transition::Started(w) => Finding {
            key,
            phase: Phase::Open,
            severity: Severity::Info,
            started: w.since,
            at: now,
            facts: Facts::MaintenanceStarted {
                by: w.by,
                reason: w.reason,
                until: w.until,
            },
        },
        Transition::Ended {
            window,
            why,
            suppressed,
        } => Finding {
            key,
            phase: Phase::Resolve,
            severity: Severity::Resolved,
            started: window.since,
            at: now,
            facts: Facts::MaintenanceEnded {
                by: window.by,
                reason: window.reason,
                why,
                held_back: suppressed.into_iter().collect(),
            },
        },
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
