//! Rules: failover, planned switch, recovery, error rate and users seeing
//! errors, derived from the pipeline's figures.
//!
//! The rules never run on a receive thread. Live, a task copies a
//! [`Snapshot`] out of the pipeline every 100 ms and calls
//! [`Rules::evaluate`]; replay does the same after each line, at the log's
//! own time. Everything is deltas between snapshots of cumulative counters,
//! so a rule sees every request exactly once however often it runs.
//!
//! A failover is the primary failing while the backup serves: the first
//! request nginx retried from the primary and answered below 500 opens it,
//! within one tick. A change of serving pool with no failures on the old pool
//! is a planned switch, not a failover, and the new pool becomes the primary.
//! The return to the primary after a failover is a recovery, confirmed only
//! after the primary has served without failures for `RECOVERY_CONFIRM_SEC`.

use std::collections::BTreeMap;

use super::finding::{Kind, Notification, Severity};
use super::snapshot::Snapshot;
use crate::logtime::format_rfc3339;
use crate::pools::PoolId;
use crate::upstream::Outcome;

/// An incident resolves once its rate has stayed at or under this share of
/// the threshold for the confirmation period, so a rate hovering at the
/// line does not open and close it over and over.
pub const RESOLVE_FRACTION: f64 = 0.5;

/// During a failover, nginx keeps probing the failed primary every
/// `fail_timeout` (seconds). When it stops trying the primary altogether
/// while the backup serves, the primary was taken out of rotation: an
/// operator switched pools. This long without a single attempt says so.
pub const SWITCH_SILENCE_SECS: f64 = 30.0;

/// Settings the rules read.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Pool nginx is configured to prefer (`ACTIVE_POOL`).
    pub active_pool: PoolId,
    /// Percent; a rate strictly above it fires.
    pub error_rate_threshold: f64,
    /// Attempts a window must hold before its rate counts.
    pub error_rate_min_requests: u64,
    pub recovery_confirm_secs: f64,
    pub window_size: usize,
    pub window_seconds: u32,
    pub runbook_url: Option<String>,
}

/// Identifies an incident: one open at a time per kind and pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IncidentKey {
    pub kind: Kind,
    /// `None` for site-wide incidents.
    pub pool: Option<PoolId>,
}

/// Where a message stands in its incident's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The incident opens.
    Open,
    /// New evidence for an open incident: subject to the cooldown.
    Repeat,
    /// The incident closes.
    Resolve,
    /// A one-off message outside any incident (planned switch).
    Event,
}

/// A message the rules want sent, before cooldown and maintenance.
#[derive(Debug, Clone)]
pub struct Signal {
    pub key: IncidentKey,
    pub phase: Phase,
    pub notification: Notification,
    /// For a failover: the pool that took over.
    pub target: Option<PoolId>,
}

/// An open incident and what it started from.
#[derive(Debug, Clone)]
struct Incident {
    opened_at: f64,
    /// Counters when it opened, for "so far" figures.
    baseline: Snapshot,
    /// Failover: the pool that took over.
    to: Option<PoolId>,
    /// When the condition was last seen over the line.
    last_bad: f64,
}

/// Figures of an open incident for `/state`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpenIncident {
    pub kind: Kind,
    pub pool: Option<String>,
    pub opened_at: String,
}

/// The rule state machine.
pub struct Rules {
    cfg: RulesConfig,
    primary: PoolId,
    last_serving: Option<PoolId>,
    prev: Option<Snapshot>,
    open: BTreeMap<IncidentKey, Incident>,
    last_primary_failure: f64,
    /// When the primary was last tried at all.
    last_primary_attempt: f64,
}

impl Rules {
    pub fn new(cfg: RulesConfig) -> Rules {
        let primary = cfg.active_pool;
        Rules {
            cfg,
            primary,
            // Expect the configured primary: serving anything else is news.
            last_serving: Some(primary),
            prev: None,
            open: BTreeMap::new(),
            last_primary_failure: f64::NEG_INFINITY,
            last_primary_attempt: f64::NEG_INFINITY,
        }
    }

    /// The pool whose failures matter now: `ACTIVE_POOL`, or the target of
    /// the last planned switch.
    pub fn primary(&self) -> PoolId {
        self.primary
    }

    pub fn open_incidents(&self, labels: &[String]) -> Vec<OpenIncident> {
        self.open
            .iter()
            .map(|(k, i)| OpenIncident {
                kind: k.kind,
                pool: k.pool.map(|p| labels[p].clone()),
                opened_at: format_rfc3339(i.opened_at as i64),
            })
            .collect()
    }

    pub fn is_open(&self, key: IncidentKey) -> bool {
        self.open.contains_key(&key)
    }

    /// Compare `snap` with the previous snapshot and return what to say.
    /// `now` is Unix seconds: wall time live, log time in a replay.
    pub fn evaluate(&mut self, snap: &Snapshot, now: f64) -> Vec<Signal> {
        let prev = self
            .prev
            .take()
            .unwrap_or_else(|| Snapshot::zero_like(snap));
        let mut out = Vec::new();
        let p = self.primary;
        if snap.failures(p) > prev.failures(p) {
            self.last_primary_failure = now;
        }
        if snap.attempts[p].iter().sum::<u64>() > prev.attempts[p].iter().sum::<u64>() {
            self.last_primary_attempt = now;
        }
        self.failover_and_switch(snap, &prev, now, &mut out);
        self.recovery(snap, now, &mut out);
        for pool in 0..snap.known {
            self.error_rate(pool, snap, &prev, now, &mut out);
        }
        self.users_seeing_errors(snap, &prev, now, &mut out);
        self.prev = Some(snap.clone());
        out
    }

    fn failover_and_switch(
        &mut self,
        snap: &Snapshot,
        prev: &Snapshot,
        now: f64,
        out: &mut Vec<Signal>,
    ) {
        let p = self.primary;
        let key = IncidentKey {
            kind: Kind::Failover,
            pool: Some(p),
        };
        // Requests the backup rescued since the last look, by backup.
        let rescued_to = (0..snap.known)
            .filter(|&b| b != p)
            .map(|b| (b, snap.rescued[p][b] - prev.rescued[p][b]))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
            .map(|(b, _)| b);
        let serving_changed = snap.serving.is_some() && snap.serving != self.last_serving;
        // "Shows failures" means lately: failures older than the recovery
        // confirmation period are history, so a switch made after the
        // primary recovered is planned, not a failover.
        let primary_failing = snap.failures(p) > prev.failures(p)
            || now - self.last_primary_failure < self.cfg.recovery_confirm_secs;
        let moved_to_backup = match snap.serving {
            Some(s) if serving_changed && s != p && s < snap.known => Some(s),
            _ => None,
        };

        let trigger = rescued_to.or(moved_to_backup.filter(|_| primary_failing));
        if let Some(to) = trigger {
            if let Some(inc) = self.open.get_mut(&key) {
                // Serving settling on the backup is the failover running its
                // course; only a new rescued request is new evidence.
                if rescued_to.is_some() {
                    inc.last_bad = now;
                    let inc = inc.clone();
                    out.push(Signal {
                        key,
                        phase: Phase::Repeat,
                        notification: self.failover_message(&inc, snap, p, true),
                        target: inc.to,
                    });
                }
            } else {
                let inc = Incident {
                    opened_at: now,
                    baseline: prev.clone(),
                    to: Some(to),
                    last_bad: now,
                };
                out.push(Signal {
                    key,
                    phase: Phase::Open,
                    notification: self.failover_message(&inc, snap, p, false),
                    target: Some(to),
                });
                self.open.insert(key, inc);
            }
        } else if let (true, Some(new), Some(old)) =
            (serving_changed, snap.serving, self.last_serving)
            && !self.open.contains_key(&key)
            && new < snap.known
            && old < snap.known
        {
            // Serving moved and the old pool shows no failures: an operator
            // switched. The new pool's failures are the ones that matter now.
            out.push(Signal {
                key: IncidentKey {
                    kind: Kind::PoolSwitch,
                    pool: Some(new),
                },
                phase: Phase::Event,
                notification: self.switch_message(snap, old, new, now),
                target: None,
            });
            self.primary = new;
            self.last_primary_failure = f64::NEG_INFINITY;
        }
        if snap.serving.is_some() {
            self.last_serving = snap.serving;
        }
    }

    fn recovery(&mut self, snap: &Snapshot, now: f64, out: &mut Vec<Signal>) {
        let p = self.primary;
        let key = IncidentKey {
            kind: Kind::Failover,
            pool: Some(p),
        };
        let Some(inc) = self.open.get(&key) else {
            return;
        };
        if let Some(to) = snap.serving.filter(|&s| s != p && s < snap.known)
            && now - self.last_primary_attempt.max(inc.opened_at) >= SWITCH_SILENCE_SECS
        {
            self.switched_during_failover(snap, p, to, now, out);
            return;
        }
        let quiet_for = now - self.last_primary_failure.max(inc.last_bad);
        if snap.serving != Some(p) || quiet_for < self.cfg.recovery_confirm_secs {
            return;
        }
        let inc = self.open.remove(&key).expect("checked above");
        let to = inc.to.unwrap_or(p);
        let lasted = (now - inc.opened_at).max(0.0);
        let retried = snap.retried_from(p) - inc.baseline.retried_from(p);
        let client_5xx = snap.client_5xx() - inc.baseline.client_5xx();
        let label = |id: PoolId| snap.labels[id].clone();
        out.push(Signal {
            key,
            phase: Phase::Resolve,
            notification: self.notification(
                Kind::Recovery,
                Severity::Resolved,
                Some(p),
                snap,
                format!("Recovered: {} is serving again", label(p)),
                format!(
                    "Traffic is back on {} with no failures for {:.0} s. This ends the failover \
                     {} → {} that started at {} and lasted {}.",
                    label(p),
                    self.cfg.recovery_confirm_secs,
                    label(p),
                    label(to),
                    format_rfc3339(inc.opened_at as i64),
                    human_duration(lasted)
                ),
                vec![
                    ("Failover".into(), format!("{} → {}", label(p), label(to))),
                    ("Started".into(), format_rfc3339(inc.opened_at as i64)),
                    ("Lasted".into(), human_duration(lasted)),
                    ("Requests retried".into(), retried.to_string()),
                    ("Client-visible errors".into(), client_5xx.to_string()),
                    ("Release now serving".into(), snap.release(p).to_string()),
                ],
                now,
                true,
            ),
            target: None,
        });
    }

    /// The condition of `key` holds at `now`: open its incident (counters
    /// from `prev` as the baseline) or note that it is still bad.
    fn open_or_touch(&mut self, key: IncidentKey, prev: &Snapshot, now: f64) -> Phase {
        match self.open.get_mut(&key) {
            Some(inc) => {
                inc.last_bad = now;
                Phase::Repeat
            }
            None => {
                self.open.insert(
                    key,
                    Incident {
                        opened_at: now,
                        baseline: prev.clone(),
                        to: None,
                        last_bad: now,
                    },
                );
                Phase::Open
            }
        }
    }

    /// The condition of `key` no longer holds. With hysteresis: while the
    /// rate is above `RESOLVE_FRACTION` of the threshold (`still_high`) it
    /// counts as bad, and it must stay good for the confirmation period.
    /// Returns the incident once it resolves.
    fn settle(&mut self, key: IncidentKey, still_high: bool, now: f64) -> Option<Incident> {
        let inc = self.open.get_mut(&key)?;
        if still_high {
            inc.last_bad = now;
            return None;
        }
        if now - inc.last_bad < self.cfg.recovery_confirm_secs {
            return None;
        }
        self.open.remove(&key)
    }

    /// nginx no longer tries the failed primary at all: it was switched out.
    /// The failover ends here and the pool now serving becomes the primary.
    fn switched_during_failover(
        &mut self,
        snap: &Snapshot,
        p: PoolId,
        to: PoolId,
        now: f64,
        out: &mut Vec<Signal>,
    ) {
        let key = IncidentKey {
            kind: Kind::Failover,
            pool: Some(p),
        };
        let Some(inc) = self.open.remove(&key) else {
            return;
        };
        let label = |id: PoolId| snap.labels[id].clone();
        let mut n = self.switch_message(snap, p, to, now);
        n.title = format!(
            "Pool switch: {} → {} (during the failover)",
            label(p),
            label(to)
        );
        n.summary = format!(
            "nginx has not tried {} for {:.0} s while {} served: {} was taken out of rotation \
             and {} is the primary now. This ends the failover {} → {} that started at {} and \
             lasted {}.",
            label(p),
            SWITCH_SILENCE_SECS,
            label(to),
            label(p),
            label(to),
            label(p),
            label(to),
            format_rfc3339(inc.opened_at as i64),
            human_duration(now - inc.opened_at)
        );
        n.resolved = true;
        out.push(Signal {
            key,
            phase: Phase::Resolve,
            notification: n,
            target: Some(to),
        });
        self.primary = to;
        self.last_serving = Some(to);
        self.last_primary_failure = f64::NEG_INFINITY;
        self.last_primary_attempt = now;
    }

    fn error_rate(
        &mut self,
        pool: PoolId,
        snap: &Snapshot,
        prev: &Snapshot,
        now: f64,
        out: &mut Vec<Signal>,
    ) {
        let key = IncidentKey {
            kind: Kind::ErrorRate,
            pool: Some(pool),
        };
        let w = snap.count[pool];
        let rate = if w.attempts > 0 {
            w.failures as f64 * 100.0 / w.attempts as f64
        } else {
            0.0
        };
        let threshold = self.cfg.error_rate_threshold;
        let firing = w.attempts >= self.cfg.error_rate_min_requests && rate > threshold;
        let fresh = snap.failures(pool) > prev.failures(pool);
        if firing {
            let phase = self.open_or_touch(key, prev, now);
            if phase == Phase::Repeat && !fresh {
                return;
            }
            let masked = w.client_5xx == 0;
            let label = snap.labels[pool].clone();
            out.push(Signal {
                key,
                phase,
                notification: self.notification(
                    Kind::ErrorRate,
                    if masked {
                        Severity::Warning
                    } else {
                        Severity::Critical
                    },
                    Some(pool),
                    snap,
                    format!("High error rate on {label}: {rate:.1} %"),
                    format!(
                        "{} of the last {} upstream attempts on {label} failed ({rate:.1} %, \
                         threshold {threshold} %). {}",
                        w.failures,
                        w.attempts,
                        if masked {
                            "Retries on the other pool hid every failure from users."
                        } else {
                            "Users received errors."
                        }
                    ),
                    vec![
                        ("Pool".into(), label.clone()),
                        ("Error rate".into(), format!("{rate:.2} %")),
                        (
                            "Failures / attempts".into(),
                            format!("{} / {}", w.failures, w.attempts),
                        ),
                        (
                            "Window".into(),
                            format!("last {} attempts", self.cfg.window_size),
                        ),
                        ("Threshold".into(), format!("> {threshold} %")),
                        (
                            "Users saw errors".into(),
                            if masked {
                                "no: masked by retries".into()
                            } else {
                                format!("yes: {} client 5xx in the window", w.client_5xx)
                            },
                        ),
                        ("Release".into(), snap.release(pool).to_string()),
                    ],
                    now,
                    false,
                ),
                target: None,
            });
        } else if let Some(inc) = self.settle(key, rate > threshold * RESOLVE_FRACTION, now) {
            let label = snap.labels[pool].clone();
            out.push(Signal {
                key,
                phase: Phase::Resolve,
                notification: self.notification(
                    Kind::ErrorRate,
                    Severity::Resolved,
                    Some(pool),
                    snap,
                    format!("Resolved: error rate on {label} back to {rate:.1} %"),
                    format!(
                        "{} of the last {} attempts on {label} failed ({rate:.1} %), under the \
                         threshold of {threshold} % since {}. The incident lasted {}.",
                        w.failures,
                        w.attempts,
                        format_rfc3339(inc.last_bad as i64),
                        human_duration(now - inc.opened_at)
                    ),
                    vec![
                        ("Pool".into(), label),
                        ("Error rate".into(), format!("{rate:.2} %")),
                        (
                            "Failures / attempts".into(),
                            format!("{} / {}", w.failures, w.attempts),
                        ),
                        ("Threshold".into(), format!("> {threshold} %")),
                        ("Started".into(), format_rfc3339(inc.opened_at as i64)),
                    ],
                    now,
                    true,
                ),
                target: None,
            });
        }
    }

    fn users_seeing_errors(
        &mut self,
        snap: &Snapshot,
        prev: &Snapshot,
        now: f64,
        out: &mut Vec<Signal>,
    ) {
        let key = IncidentKey {
            kind: Kind::UsersSeeingErrors,
            pool: None,
        };
        let site = snap.time_site;
        let rate = if site.requests > 0 {
            site.client_5xx as f64 * 100.0 / site.requests as f64
        } else {
            0.0
        };
        let threshold = self.cfg.error_rate_threshold;
        let new_5xx = snap.client_5xx() - prev.client_5xx();
        let new_no_live = snap.no_live - prev.no_live;
        let over = site.requests >= self.cfg.error_rate_min_requests && rate > threshold;
        if (over && new_5xx > 0) || new_no_live > 0 {
            let phase = self.open_or_touch(key, prev, now);
            let inc = self.open[&key].clone();
            let no_live = snap.no_live - inc.baseline.no_live;
            out.push(Signal {
                key,
                phase,
                notification: self.notification(
                    Kind::UsersSeeingErrors,
                    Severity::Critical,
                    None,
                    snap,
                    format!("Users are seeing errors: {rate:.1} % 5xx"),
                    format!(
                        "{} of {} responses in the last {} s were 5xx ({rate:.1} %){}. Retries \
                         are no longer hiding the failure.",
                        site.client_5xx,
                        site.requests,
                        self.cfg.window_seconds,
                        if no_live > 0 {
                            format!(", and nginx found no live upstream {no_live} times")
                        } else {
                            String::new()
                        }
                    ),
                    vec![
                        ("Client 5xx rate".into(), format!("{rate:.2} %")),
                        (
                            "5xx / responses".into(),
                            format!("{} / {}", site.client_5xx, site.requests),
                        ),
                        (
                            "Window".into(),
                            format!("last {} s, all pools", self.cfg.window_seconds),
                        ),
                        ("No live upstream".into(), no_live.to_string()),
                        ("Threshold".into(), format!("> {threshold} %")),
                        (
                            "Serving pool".into(),
                            snap.serving
                                .map_or("none".to_string(), |p| snap.labels[p].clone()),
                        ),
                    ],
                    now,
                    false,
                ),
                target: None,
            });
        } else if let Some(inc) = self.settle(key, rate > threshold * RESOLVE_FRACTION, now) {
            out.push(Signal {
                key,
                phase: Phase::Resolve,
                notification: self.notification(
                    Kind::UsersSeeingErrors,
                    Severity::Resolved,
                    None,
                    snap,
                    format!("Resolved: users no longer see errors ({rate:.1} % 5xx)"),
                    format!(
                        "Client 5xx are at {rate:.1} % over the last {} s. The incident started \
                         at {} and lasted {}.",
                        self.cfg.window_seconds,
                        format_rfc3339(inc.opened_at as i64),
                        human_duration(now - inc.opened_at)
                    ),
                    vec![
                        ("Client 5xx rate".into(), format!("{rate:.2} %")),
                        ("Started".into(), format_rfc3339(inc.opened_at as i64)),
                        (
                            "Client 5xx during the incident".into(),
                            (snap.client_5xx() - inc.baseline.client_5xx()).to_string(),
                        ),
                    ],
                    now,
                    true,
                ),
                target: None,
            });
        }
    }

    fn failover_message(
        &self,
        inc: &Incident,
        snap: &Snapshot,
        p: PoolId,
        repeat: bool,
    ) -> Notification {
        let to = inc.to.unwrap_or(p);
        let base = &inc.baseline;
        let seen = |o: Outcome| snap.attempts[p][o.index()] - base.attempts[p][o.index()];
        let retried = snap.retried_from(p) - base.retried_from(p);
        let client_5xx = snap.client_5xx() - base.client_5xx();
        let label = |id: PoolId| snap.labels[id].clone();
        let statuses = format!(
            "500/5xx ×{}, 502 refused ×{}, 504 timeout ×{}, no response ×{}",
            seen(Outcome::Error5xx),
            seen(Outcome::BadGateway),
            seen(Outcome::Timeout),
            seen(Outcome::NoResponse)
        );
        self.notification(
            Kind::Failover,
            if client_5xx > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            Some(p),
            snap,
            format!(
                "{}Failover: {} → {}",
                if repeat { "Still failing over: " } else { "" },
                label(p),
                label(to)
            ),
            format!(
                "{} is failing and nginx retries its requests on {}. Users saw {} errors so far: \
                 retries are hiding the failure, but {} has no backup left.",
                label(p),
                label(to),
                client_5xx,
                label(to)
            ),
            vec![
                ("From → to".into(), format!("{} → {}", label(p), label(to))),
                (format!("Release {}", label(p)), snap.release(p).to_string()),
                (
                    format!("Release {}", label(to)),
                    snap.release(to).to_string(),
                ),
                ("First seen".into(), format_rfc3339(inc.opened_at as i64)),
                ("Requests retried so far".into(), retried.to_string()),
                ("Upstream statuses seen".into(), statuses),
                ("Client-visible errors".into(), client_5xx.to_string()),
            ],
            inc.opened_at,
            false,
        )
    }

    fn switch_message(&self, snap: &Snapshot, old: PoolId, new: PoolId, now: f64) -> Notification {
        let label = |id: PoolId| snap.labels[id].clone();
        self.notification(
            Kind::PoolSwitch,
            Severity::Info,
            Some(new),
            snap,
            format!("Pool switch: {} → {} (planned)", label(old), label(new)),
            format!(
                "Traffic moved from {} to {} with no failures on {}: a planned switch, not a \
                 failover. Failures on {} are the ones that matter from now on.",
                label(old),
                label(new),
                label(old),
                label(new)
            ),
            vec![
                (
                    "From → to".into(),
                    format!("{} → {}", label(old), label(new)),
                ),
                (
                    format!("Release {}", label(old)),
                    snap.release(old).to_string(),
                ),
                (
                    format!("Release {}", label(new)),
                    snap.release(new).to_string(),
                ),
                ("Seen".into(), format_rfc3339(now as i64)),
            ],
            now,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &self,
        kind: Kind,
        severity: Severity,
        pool: Option<PoolId>,
        snap: &Snapshot,
        title: String,
        summary: String,
        fields: Vec<(String, String)>,
        first_seen: f64,
        resolved: bool,
    ) -> Notification {
        Notification {
            kind,
            severity,
            pool: pool.map(|p| snap.labels[p].clone()),
            title,
            summary,
            fields,
            first_seen: format_rfc3339(first_seen as i64),
            resolved,
            runbook_url: self
                .cfg
                .runbook_url
                .as_ref()
                .map(|u| format!("{}#{}", u.trim_end_matches('#'), kind.runbook_anchor())),
        }
    }
}

/// "4 min 12 s", "1 h 3 min", "12 s".
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::pools::PoolSet;
    use crate::record::{Decoder, INPUT_PADDING};

    const BLUE: &str = "10.0.0.2:3000";
    const GREEN: &str = "10.0.0.3:3000";

    struct World {
        p: Pipeline,
        rules: Rules,
        d: Decoder,
        now: f64,
    }

    impl World {
        fn new() -> World {
            Self::with_min_requests(20)
        }

        /// A high minimum keeps error-rate incidents out of tests about
        /// other rules.
        fn with_min_requests(min: u64) -> World {
            let pools = PoolSet::new(&["blue".into(), "green".into()]);
            World {
                p: Pipeline::new(&PipelineConfig {
                    pools,
                    configured_addrs: vec![(BLUE.into(), 0), (GREEN.into(), 1)],
                    window_size: 50,
                    window_seconds: 60,
                    serving_window: 10,
                }),
                rules: Rules::new(RulesConfig {
                    active_pool: 0,
                    error_rate_threshold: 2.0,
                    error_rate_min_requests: min,
                    recovery_confirm_secs: 3.0,
                    window_size: 50,
                    window_seconds: 60,
                    runbook_url: Some("https://example.org/RUNBOOK.md".into()),
                }),
                d: Decoder::new(),
                now: 1_800_000_000.0,
            }
        }

        fn req(&mut self, n: usize, status: u16, ups: &str, addrs: &str, pool: &str) {
            for _ in 0..n {
                let line = format!(
                    r#"{{"status":{status},"request_time":0.01,"upstream_status":"{ups}","upstream_addr":"{addrs}","pool":"{pool}","release":"{pool}-7"}}"#
                );
                let mut buf = line.into_bytes();
                let len = buf.len();
                buf.resize(len + INPUT_PADDING, 0);
                self.p
                    .process(&mut self.d, &mut buf, len, |_| self.now as u64)
                    .unwrap();
            }
        }

        fn tick(&mut self, secs: f64) -> Vec<Signal> {
            self.now += secs;
            let snap = Snapshot::take(&self.p, self.now as u64);
            self.rules.evaluate(&snap, self.now)
        }
    }

    fn kinds(s: &[Signal]) -> Vec<(Kind, Phase)> {
        s.iter().map(|s| (s.notification.kind, s.phase)).collect()
    }

    #[test]
    fn failover_then_recovery() {
        let mut w = World::with_min_requests(1000);
        w.req(30, 200, "200", BLUE, "blue");
        assert!(w.tick(0.1).is_empty());
        w.req(1, 200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
        let s = w.tick(0.1);
        assert_eq!(kinds(&s), [(Kind::Failover, Phase::Open)]);
        let n = &s[0].notification;
        assert_eq!(n.title, "Failover: blue → green");
        assert!(
            n.fields
                .contains(&("Requests retried so far".into(), "1".into()))
        );
        assert!(n.fields.contains(&("Release blue".into(), "blue-7".into())));
        assert!(
            n.fields
                .contains(&("Client-visible errors".into(), "0".into()))
        );
        assert_eq!(
            n.runbook_url.as_deref(),
            Some("https://example.org/RUNBOOK.md#failover")
        );
        // nginx now sends straight to green: no switch notice, no repeat.
        w.req(20, 200, "200", GREEN, "green");
        assert!(w.tick(0.1).is_empty());
        // A later probe of blue fails again: a repeat (cooldown decides).
        w.req(1, 200, "504, 200", &format!("{BLUE}, {GREEN}"), "green");
        assert_eq!(kinds(&w.tick(0.1)), [(Kind::Failover, Phase::Repeat)]);
        // Blue healthy and serving again, but not yet for long enough.
        w.req(20, 200, "200", BLUE, "blue");
        assert!(w.tick(1.0).is_empty());
        w.req(5, 200, "200", BLUE, "blue");
        let s = w.tick(2.5);
        assert_eq!(kinds(&s), [(Kind::Recovery, Phase::Resolve)]);
        assert!(s[0].notification.summary.contains("blue → green"));
        assert!(
            s[0].notification
                .fields
                .contains(&("Requests retried".into(), "2".into()))
        );
        // The return to blue is not a failover or a switch.
        w.req(20, 200, "200", BLUE, "blue");
        assert!(w.tick(5.0).is_empty());
    }

    #[test]
    fn planned_switch_is_not_a_failover() {
        let mut w = World::with_min_requests(1000);
        w.req(20, 200, "200", BLUE, "blue");
        assert!(w.tick(0.1).is_empty());
        w.req(20, 200, "200", GREEN, "green");
        let s = w.tick(0.1);
        assert_eq!(kinds(&s), [(Kind::PoolSwitch, Phase::Event)]);
        assert_eq!(s[0].notification.severity, Severity::Info);
        assert_eq!(w.rules.primary(), 1);
        // Green is primary now: green failing over to blue is a failover.
        w.req(1, 200, "500, 200", &format!("{GREEN}, {BLUE}"), "blue");
        let s = w.tick(0.1);
        assert_eq!(kinds(&s), [(Kind::Failover, Phase::Open)]);
        assert_eq!(s[0].notification.title, "Failover: green → blue");
    }

    #[test]
    fn serving_moving_away_from_a_failing_primary_is_a_failover() {
        let mut w = World::with_min_requests(1000);
        w.req(20, 200, "200", BLUE, "blue");
        w.tick(0.1);
        // Both tries fail (no rescue), then traffic settles on green.
        w.req(1, 502, "500, 502", &format!("{BLUE}, {GREEN}"), "blue");
        w.tick(0.1);
        w.req(15, 200, "200", GREEN, "green");
        let s = w.tick(0.5);
        assert!(
            kinds(&s).contains(&(Kind::Failover, Phase::Open)),
            "{:?}",
            kinds(&s)
        );
    }

    #[test]
    fn switch_long_after_recovered_failures_is_planned() {
        let mut w = World::with_min_requests(1000);
        w.req(20, 200, "200", BLUE, "blue");
        w.tick(0.1);
        w.req(1, 200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
        assert_eq!(kinds(&w.tick(0.1)), [(Kind::Failover, Phase::Open)]);
        w.req(20, 200, "200", BLUE, "blue");
        assert_eq!(kinds(&w.tick(4.0)), [(Kind::Recovery, Phase::Resolve)]);
        // Blue's count window still holds that failure; the switch is planned.
        w.req(20, 200, "200", GREEN, "green");
        assert_eq!(kinds(&w.tick(1.0)), [(Kind::PoolSwitch, Phase::Event)]);
    }

    #[test]
    fn switching_away_from_a_failed_primary_ends_the_failover() {
        let mut w = World::with_min_requests(1000);
        w.req(20, 200, "200", BLUE, "blue");
        w.tick(0.1);
        w.req(1, 200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
        assert_eq!(kinds(&w.tick(0.1)), [(Kind::Failover, Phase::Open)]);
        // nginx probes blue while it is the primary: still a failover.
        for _ in 0..5 {
            w.req(10, 200, "200", GREEN, "green");
            w.req(1, 200, "504, 200", &format!("{BLUE}, {GREEN}"), "green");
            assert!(
                w.tick(5.0)
                    .iter()
                    .all(|s| s.notification.kind == Kind::Failover)
            );
        }
        // Switched: blue is never tried again while green serves.
        w.req(30, 200, "200", GREEN, "green");
        assert!(w.tick(20.0).is_empty());
        w.req(10, 200, "200", GREEN, "green");
        let s = w.tick(11.0);
        assert_eq!(kinds(&s), [(Kind::PoolSwitch, Phase::Resolve)]);
        assert!(s[0].notification.title.contains("during the failover"));
        assert_eq!(s[0].key.kind, Kind::Failover);
        assert_eq!(w.rules.primary(), 1);
        // Green is the primary: blue serving later is a planned switch back.
        w.req(20, 200, "200", BLUE, "blue");
        assert_eq!(kinds(&w.tick(1.0)), [(Kind::PoolSwitch, Phase::Event)]);
    }

    #[test]
    fn error_rate_fires_once_and_resolves_with_hysteresis() {
        let mut w = World::new();
        w.req(45, 200, "200", BLUE, "blue");
        w.req(5, 503, "503", BLUE, "blue");
        let s = w.tick(0.1);
        let rate: Vec<_> = s
            .iter()
            .filter(|s| s.notification.kind == Kind::ErrorRate)
            .collect();
        assert_eq!(rate.len(), 1);
        assert_eq!(rate[0].phase, Phase::Open);
        let n = &rate[0].notification;
        assert_eq!(n.pool.as_deref(), Some("blue"));
        assert!(
            n.fields
                .contains(&("Failures / attempts".into(), "5 / 50".into()))
        );
        assert!(n.fields.contains(&("Error rate".into(), "10.00 %".into())));
        assert_eq!(n.severity, Severity::Critical, "users saw these 503s");
        // Still over the line, no new failures: nothing new to say.
        assert!(
            w.tick(0.1)
                .iter()
                .all(|s| s.notification.kind != Kind::ErrorRate)
        );
        // 48 healthy: 2 failures in 50 = 4 %, over half the threshold.
        w.req(48, 200, "200", BLUE, "blue");
        assert!(
            w.tick(10.0)
                .iter()
                .all(|s| s.notification.kind != Kind::ErrorRate)
        );
        // All healthy: under the line, but must stay there for 3 s.
        w.req(50, 200, "200", BLUE, "blue");
        assert!(
            w.tick(1.0)
                .iter()
                .all(|s| s.notification.kind != Kind::ErrorRate)
        );
        let s = w.tick(2.5);
        assert_eq!(kinds(&s), [(Kind::ErrorRate, Phase::Resolve)]);
    }

    #[test]
    fn masked_error_rate_is_a_warning() {
        let mut w = World::new();
        w.req(40, 200, "200", BLUE, "blue");
        w.req(3, 200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
        let s = w.tick(0.1);
        let n = s
            .iter()
            .find(|s| s.notification.kind == Kind::ErrorRate)
            .unwrap();
        assert_eq!(n.notification.severity, Severity::Warning);
        assert!(n.notification.summary.contains("hid every failure"));
    }

    #[test]
    fn no_live_upstream_is_users_seeing_errors() {
        let mut w = World::new();
        w.req(5, 200, "200", BLUE, "blue");
        w.tick(0.1);
        w.req(1, 502, "502", "backend", "");
        let s = w.tick(0.1);
        assert_eq!(kinds(&s), [(Kind::UsersSeeingErrors, Phase::Open)]);
        assert_eq!(s[0].notification.severity, Severity::Critical);
        assert!(
            s[0].notification
                .summary
                .contains("no live upstream 1 times")
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(12.4), "12 s");
        assert_eq!(human_duration(252.0), "4 min 12 s");
        assert_eq!(human_duration(3780.0), "1 h 3 min");
    }
}
