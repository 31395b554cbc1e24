//! The alert loop: copy the pipeline's figures, run the rules, apply
//! cooldown and maintenance, word what remains and hand it to the delivery
//! queue. Every 100 ms ([`TICK`]) while there is something to watch;
//! otherwise it sleeps until the next batch arrives or for a second
//! ([`IDLE_TICK`]), whichever is first.
//!
//! It runs on the tokio runtime, never on a receive thread; the only thing
//! it shares with ingestion is the pipeline lock, held for the copy. A tick
//! of 100 ms keeps detection well within the one second a failover
//! notification is allowed.
//!
//! The 100 ms cadence is kept while anything needs it: datagrams arrived
//! since the previous tick, an incident is open or a cooldown runs,
//! maintenance is on (it may expire), a delivery result is still to come,
//! a sink has alerts to re-send (Alertmanager), or a reload waits. With none
//! of these, nothing changes but the clock, and windows age by the second,
//! so a tick a second is enough. The receive side wakes the sleeping loop
//! with its first batch ([`Shared::batch_arrived`]), which is judged at
//! once, not at the next tick; a reload or a maintenance change wakes it
//! too, and shutdown ends it at once, asleep or not.

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

/// The loop's cadence while it has something to watch.
pub const TICK: Duration = Duration::from_millis(100);

/// The longest the loop sleeps when it has nothing to watch.
pub const IDLE_TICK: Duration = Duration::from_secs(1);

/// Notifications kept for `/state`.
const RECENT: usize = 20;

/// What the HTTP side reads and changes.
pub struct AlertShared {
    maintenance: Mutex<Maintenance>,
    status: Mutex<AlertStatus>,
    /// Ticks so far, for the tests of the loop's cadence.
    #[cfg(test)]
    ticks: std::sync::atomic::AtomicU64,
}

impl AlertShared {
    pub fn new(maintenance: Maintenance) -> AlertShared {
        AlertShared {
            maintenance: Mutex::new(maintenance),
            status: Mutex::new(AlertStatus::default()),
            #[cfg(test)]
            ticks: std::sync::atomic::AtomicU64::new(0),
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
    /// Datagrams received before the last tick.
    judged: u64,
    /// The last tick saw datagrams the one before it had not.
    fresh: bool,
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
            judged: 0,
            fresh: false,
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
    /// finished in hand is judged too. Every [`TICK`] while
    /// [`AlertLoop::active`]; otherwise asleep until a batch arrives, a
    /// reload or maintenance change wakes it, or [`IDLE_TICK`] has passed.
    pub async fn run(
        mut self,
        shared: Arc<Shared>,
        alerts: Arc<AlertShared>,
        cancel: CancellationToken,
    ) {
        // A receiver of its own to wait on: waiting must not mark a reload
        // seen before the tick takes it up.
        let mut reloads = self.live.clone();
        loop {
            let started = tokio::time::Instant::now();
            self.tick(&shared, &alerts, now_unix());
            if let Some(rx) = &mut reloads {
                // Taken up by this tick, or seen by `active` below.
                rx.borrow_and_update();
            }
            let active = self.active(&alerts, now_unix());
            if !active {
                shared.alert_loop_sleeps();
                // A batch folded in after the tick's copy and before the
                // flag was set has woken nobody: judge it now.
                if shared.pipeline().totals.datagrams != self.judged {
                    shared.alert_loop_awake();
                    continue;
                }
            }
            let wait = if active { TICK } else { IDLE_TICK };
            tokio::select! {
                _ = tokio::time::sleep_until(started + wait) => {}
                _ = shared.alert_loop_woken(), if !active => {}
                open = reload(&mut reloads), if !active => {
                    if !open {
                        reloads = None;
                    }
                }
                _ = cancel.cancelled() => break,
            }
            shared.alert_loop_awake();
        }
        shared.alert_loop_awake();
        self.tick(&shared, &alerts, now_unix());
    }

    /// Whether the next tick is due at [`TICK`] rather than at the next
    /// batch or [`IDLE_TICK`]: anything whose timing the ticks drive.
    /// When unsure, something counts: a wasted tick is cheap, a late one
    /// is not.
    fn active(&self, alerts: &AlertShared, now: f64) -> bool {
        // Traffic: judged every 100 ms while it lasts, not woken per batch.
        self.fresh
            // Incidents settle, resolve on silence and repeat by the clock.
            || self.incidents.need_ticks(now)
            // A window may expire; its end is told on time.
            || alerts.maintenance().is_on()
            // Delivery results settle `/state` and the incidents' bookkeeping.
            || !self.pending.is_empty()
            // Alertmanager's board is re-sent on its schedule.
            || self.sinks.need_ticks()
            // A reload that came after this tick's look.
            || self
                .live
                .as_ref()
                .is_some_and(|rx| rx.has_changed().unwrap_or(false))
    }

    /// One evaluation at `now` (Unix seconds).
    pub fn tick(&mut self, shared: &Shared, alerts: &AlertShared, now: f64) {
        #[cfg(test)]
        alerts
            .ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        self.fresh = judged_datagrams != self.judged;
        self.judged = judged_datagrams;
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

/// Completes when `rx` sees a new value: true, or false once its sender
/// is gone. Never without a receiver.
async fn reload(rx: &mut Option<watch::Receiver<LiveAlerting>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    //! The loop's cadence, on tokio's paused clock: time moves only when
    //! every task waits, straight to the next timer, so ticks are counted
    //! exactly and "at once" means "before the clock moves".

    use std::sync::atomic::Ordering;

    use super::*;
    use crate::alerting::delivery::{DeliveryConfig, DeliveryHandle, DeliveryMetrics};
    use crate::alerting::sinks;
    use crate::maintenance::Source;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::pools::PoolSet;
    use crate::record::{Decoder, INPUT_PADDING};

    const BLUE: &str = "10.0.0.2:3000";
    const GREEN: &str = "10.0.0.3:3000";

    fn rules_config() -> RulesConfig {
        RulesConfig {
            active_pool: 0,
            error_rate_threshold: 2.0,
            // Keeps error-rate incidents out of these tests.
            error_rate_min_requests: 1000,
            recovery_confirm_secs: 3.0,
            recovery_min_requests: 10,
            window_size: 50,
            window_seconds: 60,
        }
    }

    struct Parts {
        alert_loop: AlertLoop,
        shared: Arc<Shared>,
        alerts: Arc<AlertShared>,
        /// Kept: dropping it stops delivery.
        _delivery: DeliveryHandle,
    }

    /// A loop as the receiver builds one, its notifications on stdout.
    fn parts() -> Parts {
        let pipeline = Pipeline::new(&PipelineConfig {
            pools: PoolSet::new(&["blue".into(), "green".into()]),
            configured_addrs: vec![(BLUE.into(), 0), (GREEN.into(), 1)],
            window_size: 50,
            window_seconds: 60,
            serving_window: 10,
        });
        let labels: Vec<String> = pipeline.pools.labels().map(str::to_string).collect();
        let known = pipeline.pools.known();
        let shared = Arc::new(Shared::new(pipeline, Vec::new(), serde_json::json!({})));
        let alerts = Arc::new(AlertShared::new(Maintenance::new(false, None, now_unix())));
        let (queue, delivery) = sinks::spawn(
            DeliveryConfig::default(),
            DeliveryMetrics::new(SinkName::Stdout),
        )
        .unwrap();
        let alert_loop = AlertLoop::new(
            Rules::new(rules_config()),
            Incidents::new(300.0),
            None,
            Sinks::new(queue, None),
            &labels,
            known,
        );
        Parts {
            alert_loop,
            shared,
            alerts,
            _delivery: delivery,
        }
    }

    fn line(upstream_status: &str, upstream_addr: &str, pool: &str) -> String {
        format!(
            r#"{{"status":200,"request_time":0.01,"upstream_status":"{upstream_status}","upstream_addr":"{upstream_addr}","pool":"{pool}","release":"{pool}-7"}}"#
        )
    }

    /// Folds `lines` into the pipeline as one batch, as a receive thread
    /// does, and says so.
    fn batch(shared: &Shared, lines: &[String]) {
        let mut decoder = Decoder::new();
        {
            let mut p = shared.pipeline();
            let now = shared.now_secs();
            for line in lines {
                let mut buf = line.clone().into_bytes();
                let len = buf.len();
                buf.resize(len + INPUT_PADDING, 0);
                p.process(&mut decoder, &mut buf, len, |_| now).unwrap();
            }
        }
        shared.batch_arrived();
    }

    fn ticks(alerts: &AlertShared) -> u64 {
        alerts.ticks.load(Ordering::Relaxed)
    }

    /// Ticks while `d` passes on the paused clock.
    async fn ticks_over(alerts: &AlertShared, d: Duration) -> u64 {
        let before = ticks(alerts);
        tokio::time::sleep(d).await;
        ticks(alerts) - before
    }

    /// Lets the other tasks run, with the clock standing still, until
    /// `done`; fails if it never comes, or only once the clock moved.
    async fn before_the_clock_moves(what: &str, mut done: impl FnMut() -> bool) {
        let start = tokio::time::Instant::now();
        for _ in 0..10_000 {
            if done() {
                assert_eq!(start.elapsed(), Duration::ZERO, "{what}: the clock moved");
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{what}: not before the clock moved");
    }

    /// A running loop.
    struct Running {
        shared: Arc<Shared>,
        alerts: Arc<AlertShared>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _delivery: DeliveryHandle,
    }

    fn spawn(parts: Parts) -> Running {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(parts.alert_loop.run(
            parts.shared.clone(),
            parts.alerts.clone(),
            cancel.clone(),
        ));
        Running {
            shared: parts.shared,
            alerts: parts.alerts,
            cancel,
            task,
            _delivery: parts._delivery,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_loop_ticks_once_a_second_and_stops_at_once() {
        let running = spawn(parts());
        let alerts = &running.alerts;
        // Every 100 ms, as it used to, would be 100.
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!((9..=11).contains(&n), "{n} ticks in 10 s");

        // Asleep, it still ends at once on shutdown, after a last tick.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = ticks(alerts);
        let start = tokio::time::Instant::now();
        running.cancel.cancel();
        running.task.await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(ticks(&running.alerts), before + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_wakes_the_sleeping_loop_and_an_open_incident_keeps_the_cadence() {
        let running = spawn(parts());
        let (shared, alerts) = (&running.shared, &running.alerts);
        // Between two idle ticks (at 2 s and 3 s), and off the 100 ms
        // grid.
        tokio::time::sleep(Duration::from_millis(2550)).await;
        let mut lines = vec![line("200", BLUE, "blue"); 30];
        lines.push(line("502, 200", &format!("{BLUE}, {GREEN}"), "green"));
        batch(shared, &lines);
        before_the_clock_moves("the failover judged", || {
            alerts.status().judged_datagrams == 31
        })
        .await;
        let open = alerts.status().open_incidents;
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].kind, Kind::Failover);

        // It stays open without traffic (silence is no recovery), and is
        // watched every 100 ms meanwhile.
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!(n >= 95, "{n} ticks in 10 s");
        assert_eq!(alerts.status().open_incidents.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_batch_is_judged_at_once_then_the_loop_sleeps_again() {
        let running = spawn(parts());
        let (shared, alerts) = (&running.shared, &running.alerts);
        tokio::time::sleep(Duration::from_millis(2550)).await;
        batch(shared, &[line("200", BLUE, "blue")]);
        before_the_clock_moves("the batch judged", || alerts.status().judged_datagrams == 1).await;
        // One more tick 100 ms later (more of the batch's story may come),
        // then a tick a second again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!((9..=11).contains(&n), "{n} ticks in 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn steady_traffic_is_judged_every_100_ms_not_per_batch() {
        let running = spawn(parts());
        let (shared, alerts) = (&running.shared, &running.alerts);
        tokio::time::sleep(Duration::from_millis(2550)).await;
        let before = ticks(alerts);
        for _ in 0..100 {
            batch(shared, &[line("200", BLUE, "blue")]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The first batch wakes it; the rest wait for the 100 ms cadence
        // (a wake per batch would be 100 ticks).
        let n = ticks(alerts) - before;
        assert!((9..=12).contains(&n), "{n} ticks in 1 s of traffic");
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(alerts.status().judged_datagrams, 100);
        // Once it stops, a tick a second again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!((9..=11).contains(&n), "{n} ticks in 10 s after the traffic");
    }

    #[tokio::test(start_paused = true)]
    async fn maintenance_keeps_the_cadence_and_its_changes_wake_the_loop() {
        let running = spawn(parts());
        let (shared, alerts) = (&running.shared, &running.alerts);
        tokio::time::sleep(Duration::from_millis(2550)).await;
        let on = |alerts: &AlertShared| alerts.status().maintenance.is_some_and(|m| m.on);
        alerts.maintenance().turn_on(
            Source::Api,
            // It may expire: the loop ends it, and tells, on time.
            Some(now_unix() + 3600.0),
            "upgrade",
            "test",
            now_unix(),
        );
        shared.wake_alert_loop();
        before_the_clock_moves("maintenance taken up", || on(alerts)).await;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!(n >= 95, "{n} ticks in 10 s of maintenance");

        alerts.maintenance().turn_off("test");
        shared.wake_alert_loop();
        // Awake anyway: the end is told at the next 100 ms tick.
        tokio::time::sleep(TICK * 2).await;
        assert!(!on(alerts));
        // Once the end's delivery is noted, asleep again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!((9..=11).contains(&n), "{n} ticks in 10 s after maintenance");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_result_still_to_come_keeps_the_cadence() {
        let mut parts = parts();
        let (tx, rx) = oneshot::channel();
        parts.alert_loop.pending.push(Pending {
            key: IncidentKey {
                kind: Kind::Test,
                pool: None,
            },
            phase: Phase::Event,
            tracked: false,
            recent: 0,
            outcomes: vec![rx],
        });
        let running = spawn(parts);
        let alerts = &running.alerts;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!(n >= 95, "{n} ticks in 10 s with a delivery under way");
        tx.send(Outcome::Sent).unwrap();
        // The next tick notes it; then the loop sleeps.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!((9..=11).contains(&n), "{n} ticks in 10 s once delivered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_wakes_the_sleeping_loop() {
        let mut parts = parts();
        let live = |cooldown_secs| LiveAlerting {
            rules: rules_config(),
            cooldown_secs,
            runbook_url: None,
        };
        let (tx, rx) = watch::channel(live(300.0));
        parts.alert_loop = parts.alert_loop.with_reloads(rx);
        let running = spawn(parts);
        let alerts = &running.alerts;
        tokio::time::sleep(Duration::from_millis(2550)).await;
        let before = ticks(alerts);
        tx.send_replace(live(60.0));
        before_the_clock_moves("the reload taken up", || ticks(alerts) > before).await;
        // Taken up once, not over and over.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!((9..=11).contains(&n), "{n} ticks in 10 s after the reload");
        // A reloader that is gone wakes nothing either.
        drop(tx);
        let n = ticks_over(alerts, Duration::from_secs(10)).await;
        assert!(
            (9..=11).contains(&n),
            "{n} ticks in 10 s without a reloader"
        );
    }
}
