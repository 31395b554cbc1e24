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
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::delivery::{AlertOutcome, Outcome, SinkName};
use super::finding::{Facts, Finding, IncidentKey, Kind, Phase, Severity};
use super::incident::{Decision, Incidents, OpenIncident};
use super::rules::{Rules, RulesConfig};
use super::sinks::{Sinks, alertmanager};
use super::snapshot::Snapshot;
use super::wording::{Notification, timestamp, words};
use crate::maintenance::{Maintenance, MaintenanceStatus, Transition};
use crate::state::Shared;
use crate::state_file::{self, Fingerprint, Saved, SavedAddr};

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
    /// `sent` (handed to delivery), `suppressed_cooldown`,
    /// `suppressed_maintenance`, `dropped`.
    pub outcome: AlertOutcome,
    /// What the status page shows as an open incident's evidence.
    pub severity: Severity,
    pub summary: String,
    pub fields: Vec<(String, String)>,
    /// It closed its incident.
    pub resolved: bool,
    /// For `sent`: `true` once a sink delivered it, `false` once every
    /// sink gave up on it (failed), `null` while delivery goes on.
    pub delivered: Option<bool>,
    /// Which send this was, to note its delivery.
    #[serde(skip)]
    id: u64,
}

/// Metric handles the loop owns, indexed by their label enums.
struct LoopMetrics {
    /// Per sink, `[cooldown, maintenance][kind]`: what the loop held back
    /// is held back from every sink.
    suppressed: Vec<[[Counter; Kind::ALL.len()]; 2]>,
    /// `[from][to]` over known pools.
    failovers: Vec<Vec<Counter>>,
    incident_open: Vec<(IncidentKey, Gauge)>,
    maintenance_mode: Gauge,
}

impl LoopMetrics {
    fn register(labels: &[String], known: usize, sinks: &[SinkName]) -> LoopMetrics {
        use crate::metrics as m;
        m::describe_alert_loop();
        let mut incident_open = Vec::new();
        for kind in [Kind::Failover, Kind::ErrorRate] {
            for (p, label) in labels.iter().enumerate().take(known) {
                let key = IncidentKey {
                    kind,
                    pool: Some(p),
                };
                incident_open.push((key, m::incident_open(kind.label(), label)));
            }
        }
        let site = IncidentKey {
            kind: Kind::UsersSeeingErrors,
            pool: None,
        };
        incident_open.push((site, m::incident_open(site.kind.label(), "all")));
        LoopMetrics {
            suppressed: sinks
                .iter()
                .map(|sink| {
                    [
                        AlertOutcome::SuppressedCooldown,
                        AlertOutcome::SuppressedMaintenance,
                    ]
                    .map(|o| Kind::ALL.map(|k| m::alerts_total(sink.label(), k.label(), o.label())))
                })
                .collect(),
            failovers: (0..known)
                .map(|from| {
                    (0..known)
                        .map(|to| m::failovers_total(&labels[from], &labels[to]))
                        .collect()
                })
                .collect(),
            incident_open,
            maintenance_mode: m::maintenance_mode(),
        }
    }

    fn held_back(&self, decision: Decision, kind: Kind) {
        let which = match decision {
            Decision::Send => return,
            Decision::SuppressedCooldown => 0,
            Decision::SuppressedMaintenance => 1,
        };
        for sink in &self.suppressed {
            sink[which][kind as usize].increment(1);
        }
    }
}

/// A sent message whose delivery results are still to come, one per sink.
struct Pending {
    key: IncidentKey,
    phase: Phase,
    /// Its delivery feeds the incident's bookkeeping (see `send`).
    tracked: bool,
    /// The [`RecentNotification`] whose `delivered` it settles.
    recent: u64,
    outcomes: Vec<oneshot::Receiver<Outcome>>,
}

/// What a reload changes in the loop: the rules' thresholds, the cooldown
/// and the runbook link. Taken up at the next tick, after its snapshot:
/// traffic sent after a reload was acknowledged is judged by it.
#[derive(Debug, Clone)]
pub struct LiveAlerting {
    pub rules: RulesConfig,
    pub cooldown_secs: f64,
    pub runbook_url: Option<String>,
}

/// The state file's side of the loop: the latest state goes to the writer
/// task whenever it changed.
struct Persist {
    tx: watch::Sender<Option<Saved>>,
    fingerprint: Fingerprint,
    /// The address map's generation when `addrs` was copied.
    addrs_generation: Option<u64>,
    addrs: Vec<SavedAddr>,
    last: Option<Saved>,
}

/// The loop's state.
pub struct AlertLoop {
    rules: Rules,
    incidents: Incidents,
    /// `RUNBOOK_URL`, for the words.
    runbook_url: Option<String>,
    sinks: Sinks,
    metrics: LoopMetrics,
    pending: Vec<Pending>,
    recent: VecDeque<RecentNotification>,
    persist: Option<Persist>,
    live: Option<watch::Receiver<LiveAlerting>>,
    /// Id of the next [`RecentNotification`].
    next_recent: u64,
}

impl AlertLoop {
    /// Build the loop; registers its metrics on the current recorder.
    pub fn new(
        rules: Rules,
        incidents: Incidents,
        runbook_url: Option<String>,
        sinks: Sinks,
        labels: &[String],
        known: usize,
    ) -> AlertLoop {
        AlertLoop {
            rules,
            incidents,
            runbook_url,
            metrics: LoopMetrics::register(labels, known, &sinks.names()),
            sinks,
            pending: Vec::new(),
            recent: VecDeque::new(),
            persist: None,
            live: None,
            next_recent: 0,
        }
    }

    /// Publish the state on `tx` whenever it changes (for the state file's
    /// writer), as belonging to settings `fingerprint`.
    pub fn with_state_file(
        mut self,
        tx: watch::Sender<Option<Saved>>,
        fingerprint: Fingerprint,
    ) -> AlertLoop {
        self.persist = Some(Persist {
            tx,
            fingerprint,
            addrs_generation: None,
            addrs: Vec::new(),
            last: None,
        });
        self
    }

    /// Take up reloaded settings from `rx`.
    pub fn with_reloads(mut self, rx: watch::Receiver<LiveAlerting>) -> AlertLoop {
        self.live = Some(rx);
        self
    }

    /// Take up where the run that wrote `saved` left off, at `now`: its open
    /// incidents, what was told, its primary and serving pool, the learned
    /// addresses, maintenance and the alerts Alertmanager was sent (posted
    /// again at the next tick). All or nothing: an error (a pool this run
    /// does not know) changes nothing.
    pub fn restore(
        &mut self,
        saved: &Saved,
        shared: &Shared,
        alerts: &AlertShared,
        now: f64,
    ) -> Result<(), String> {
        let mut p = shared.pipeline();
        let labels: Vec<String> = p.pools.labels().map(str::to_string).collect();
        let known = p.pools.known();
        let find = |label: &str| {
            p.pools
                .find(label)
                .ok_or_else(|| format!("unknown pool '{label}'"))
        };
        let primary = find(&saved.primary)?;
        // Serving may also be `other` or `none`.
        let serving = match saved.serving.as_deref() {
            Some(label) => Some(
                labels
                    .iter()
                    .position(|l| l == label)
                    .ok_or_else(|| format!("unknown pool '{label}'"))?,
            ),
            None => None,
        };
        let addrs = saved
            .addresses
            .iter()
            .map(|a| Ok((a.addr.clone(), find(&a.pool)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let board = alertmanager::restorable(&saved.alertmanager, &labels, known)?;
        let baseline = Snapshot::take(&p, shared.now_secs());
        self.incidents
            .restore(&saved.incidents, &labels, known, &baseline)?;
        let maintenance_told = saved
            .maintenance
            .as_ref()
            .is_some_and(|m| m.announced.is_some());
        self.sinks.restore(board, maintenance_told, now);
        let failover = IncidentKey {
            kind: Kind::Failover,
            pool: Some(primary),
        };
        let primary_failed = self.incidents.get(failover).map(|i| i.last_bad);
        self.rules
            .restore(primary, serving, primary_failed, labels.len(), now);
        let learned = p.addrs.restore_learned(addrs);
        drop(p);
        if let Some(m) = saved.maintenance.clone() {
            alerts.maintenance().restore(m);
        }
        tracing::info!(
            open_incidents = saved.incidents.len(),
            alertmanager_alerts = saved.alertmanager.len(),
            primary = %saved.primary,
            learned_addresses = learned,
            maintenance = alerts.maintenance().is_on(),
            written_at = %timestamp(saved.written_at),
            "state restored"
        );
        Ok(())
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
            if let Some(ps) = &mut self.persist
                && ps.addrs_generation != Some(p.addrs.generation())
            {
                ps.addrs_generation = Some(p.addrs.generation());
                ps.addrs = p
                    .addrs
                    .learned()
                    .map(|(addr, pool)| SavedAddr {
                        addr: addr.to_string(),
                        pool: p.pools.label(pool).to_string(),
                    })
                    .collect();
            }
            (Snapshot::take(&p, shared.now_secs()), p.totals.datagrams)
        };
        // After the snapshot: whatever it holds that arrived after a reload
        // was acknowledged is judged by the new settings.
        if let Some(rx) = &mut self.live
            && rx.has_changed().unwrap_or(false)
        {
            let live = rx.borrow_and_update().clone();
            self.rules.reconfigure(live.rules);
            self.incidents.set_cooldown(live.cooldown_secs);
            self.runbook_url = live.runbook_url;
        }
        for f in self.rules.evaluate(&snap, &mut self.incidents, now) {
            if let (Phase::Open, Facts::Failover { from, to, .. }) = (f.phase, &f.facts) {
                self.metrics.failovers[from.id][to.id].increment(1);
            }
            match self.incidents.decide(&f, now, maintenance_on) {
                Decision::Send => self.send(&f, true, now),
                held => {
                    let kind = f.kind();
                    self.metrics.held_back(held, kind);
                    if held == Decision::SuppressedMaintenance {
                        alerts.maintenance().count_suppressed(kind);
                    }
                    let n = words(&f, self.runbook_url.as_deref());
                    let outcome = held.outcome().unwrap_or(AlertOutcome::Sent);
                    tracing::info!(
                        kind = kind.label(),
                        title = ?n.title,
                        outcome = outcome.label(),
                        "notification held back"
                    );
                    self.remember(&n, outcome, now);
                }
            }
        }
        self.collect_results();
        let incidents = &self.incidents;
        self.sinks.tick(now, &|key| incidents.is_open(key));
        for (key, g) in &self.metrics.incident_open {
            g.set(if self.incidents.is_open(*key) {
                1.0
            } else {
                0.0
            });
        }
        self.metrics
            .maintenance_mode
            .set(if maintenance_on { 1.0 } else { 0.0 });
        self.publish_state(&snap.labels, alerts);
        let status = AlertStatus {
            primary: snap.labels[self.rules.primary()].clone(),
            open_incidents: self.incidents.list(&snap.labels),
            maintenance: Some(alerts.maintenance().status()),
            recent: self.recent.clone(),
            judged_datagrams,
        };
        *alerts.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// Word `f` and hand it to every sink. With `tracked`, its delivery
    /// results feed the incident's cooldown and announcement bookkeeping.
    fn send(&mut self, f: &Finding, tracked: bool, now: f64) {
        let n = words(f, self.runbook_url.as_deref());
        tracing::info!(kind = n.kind.label(), title = ?n.title, "notification");
        let submitted = self.sinks.submit(f, &n, now);
        let outcome = if submitted.outcomes.is_empty() {
            // Counted and logged by the queues; not a cooldown start.
            if tracked {
                self.incidents.delivery_failed(f.key, f.phase);
            }
            AlertOutcome::Dropped
        } else {
            self.pending.push(Pending {
                key: f.key,
                phase: f.phase,
                tracked,
                recent: self.next_recent,
                outcomes: submitted.outcomes,
            });
            AlertOutcome::Sent
        };
        self.remember(&n, outcome, now);
    }

    /// Notes finished deliveries. Delivered by one sink counts as told:
    /// only a notification every sink failed to deliver lets the next
    /// evidence announce the incident again.
    fn collect_results(&mut self) {
        let incidents = &mut self.incidents;
        let recent = &mut self.recent;
        let mut settle = |id: u64, delivered: bool| {
            if let Some(r) = recent.iter_mut().find(|r| r.id == id) {
                r.delivered = Some(delivered);
            }
        };
        self.pending.retain_mut(|p| {
            let mut delivered = false;
            p.outcomes.retain_mut(|rx| match rx.try_recv() {
                Ok(Outcome::Sent) => {
                    delivered = true;
                    false
                }
                Ok(Outcome::Failed(_)) | Err(oneshot::error::TryRecvError::Closed) => false,
                Err(oneshot::error::TryRecvError::Empty) => true,
            });
            if delivered {
                // Told: whatever the other sinks do no longer matters here.
                settle(p.recent, true);
                return false;
            }
            if p.outcomes.is_empty() {
                settle(p.recent, false);
                if p.tracked {
                    incidents.delivery_failed(p.key, p.phase);
                }
                return false;
            }
            true
        });
    }

    /// Hand the state to the state file's writer if it changed.
    fn publish_state(&mut self, labels: &[String], alerts: &AlertShared) {
        let Some(ps) = &mut self.persist else {
            return;
        };
        let saved = Saved {
            version: state_file::VERSION,
            written_at: 0.0,
            settings: ps.fingerprint.clone(),
            primary: labels[self.rules.primary()].clone(),
            serving: self.rules.last_serving().map(|p| labels[p].clone()),
            incidents: self.incidents.export(labels),
            maintenance: alerts.maintenance().export(),
            addresses: ps.addrs.clone(),
            alertmanager: self.sinks.export(labels),
        };
        if ps.last.as_ref() != Some(&saved) {
            ps.tx.send_replace(Some(saved.clone()));
            ps.last = Some(saved);
        }
    }

    fn remember(&mut self, n: &Notification, outcome: AlertOutcome, now: f64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentNotification {
            at: timestamp(now),
            kind: n.kind,
            pool: n.pool.clone(),
            title: n.title.clone(),
            outcome,
            severity: n.severity,
            summary: n.summary.clone(),
            fields: n.fields.clone(),
            resolved: n.resolved,
            delivered: None,
            id: self.next_recent,
        });
        self.next_recent += 1;
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

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
