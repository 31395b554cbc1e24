//! Incidents: the state machine behind every message.
//!
//! One incident is open at a time per kind and pool ([`IncidentKey`]). The
//! rules open it when its condition first holds ([`Incidents::open_or_touch`]),
//! note each new sighting, and settle it once the condition has stayed away
//! for the confirmation period ([`Incidents::settle`]). Each finding about
//! it then goes through [`Incidents::decide`]:
//!
//! - its opening is sent;
//! - new evidence while it stays open is repeated at most once per
//!   `ALERT_COOLDOWN_SEC`;
//! - its resolution is sent if its opening was;
//! - a delivery that failed does not count as sent: the next evidence goes
//!   out at once;
//! - during maintenance, failover, switch, error-rate and recovery messages
//!   are held back (and counted); users seeing errors never is.
//!
//! A pool's incident closes on evidence, never on silence: each one keeps
//! what the pool did since its condition was last seen ([`Evidence`]), and
//! [`Incidents::settle_on_evidence`] closes it only once the pool has
//! answered enough attempts over the confirmation period. Everything here
//! is plain numbers, so an incident can be written down and read back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::delivery::AlertOutcome;
use super::finding::{Finding, IncidentKey, Kind, Phase};
use super::snapshot::Snapshot;
use super::wording::timestamp;
use crate::pools::PoolId;

/// An open incident and what it started from.
#[derive(Debug, Clone)]
pub struct Incident {
    pub opened_at: f64,
    /// Counters when it opened, for "so far" figures.
    pub baseline: Snapshot,
    /// Failover: the pool that took over.
    pub to: Option<PoolId>,
    /// When the condition was last seen over the line.
    pub last_bad: f64,
    /// What the pool did since then.
    pub health: Evidence,
}

impl Incident {
    /// An incident opening at `now` from counters `baseline`.
    pub fn new(now: f64, baseline: &Snapshot, to: Option<PoolId>) -> Incident {
        Incident {
            opened_at: now,
            baseline: baseline.clone(),
            to,
            last_bad: now,
            health: Evidence::default(),
        }
    }

    /// The condition holds again at `now`: evidence of health starts over.
    pub fn bad(&mut self, now: f64) {
        self.last_bad = now;
        self.health = Evidence::default();
    }
}

/// Attempts a pool answered and failed between two looks. Client aborts
/// are neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub answered: u64,
    pub failed: u64,
}

/// Evidence that a pool is healthy again: its attempts since the condition
/// was last seen. Silence adds nothing, so a pool that gets no traffic
/// never gathers enough.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// When it first answered (Unix seconds), if it has.
    pub since: Option<f64>,
    /// When it last answered.
    pub until: f64,
    /// Attempts it answered, and failed, since `since`.
    pub answered: u64,
    pub failed: u64,
}

impl Evidence {
    /// Add what was seen at `now`.
    pub fn note(&mut self, seen: Seen, now: f64) {
        if seen.answered > 0 {
            self.since.get_or_insert(now);
            self.until = now;
        }
        if self.since.is_some() {
            self.answered += seen.answered;
            self.failed += seen.failed;
        }
    }

    /// Seconds between the first and the latest answer.
    pub fn span(&self) -> f64 {
        self.since.map_or(0.0, |s| self.until - s)
    }

    /// At least `min` answers, spread over at least `secs` seconds.
    pub fn enough(&self, secs: f64, min: u64) -> bool {
        self.since.is_some() && self.span() >= secs && self.answered >= min
    }
}

/// An open incident as `/state` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OpenIncident {
    pub kind: Kind,
    pub pool: Option<String>,
    pub opened_at: String,
}

/// What to do with one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    SuppressedCooldown,
    SuppressedMaintenance,
}

impl Decision {
    /// The outcome counted for a held-back message.
    pub fn outcome(self) -> Option<AlertOutcome> {
        match self {
            Decision::Send => None,
            Decision::SuppressedCooldown => Some(AlertOutcome::SuppressedCooldown),
            Decision::SuppressedMaintenance => Some(AlertOutcome::SuppressedMaintenance),
        }
    }
}

/// Kinds maintenance holds back: what planned work is expected to cause.
pub fn held_in_maintenance(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Failover | Kind::PoolSwitch | Kind::ErrorRate | Kind::Recovery
    )
}

/// Open incidents, and what people were told about them.
#[derive(Debug, Default)]
pub struct Incidents {
    open: BTreeMap<IncidentKey, Incident>,
    cooldown: f64,
    /// When a message of each open incident was last handed to delivery.
    last_sent: BTreeMap<IncidentKey, f64>,
    /// Incidents whose opening people were told about.
    announced: BTreeSet<IncidentKey>,
}

impl Incidents {
    pub fn new(cooldown_secs: f64) -> Incidents {
        Incidents {
            cooldown: cooldown_secs,
            ..Incidents::default()
        }
    }

    pub fn get(&self, key: IncidentKey) -> Option<&Incident> {
        self.open.get(&key)
    }

    pub fn get_mut(&mut self, key: IncidentKey) -> Option<&mut Incident> {
        self.open.get_mut(&key)
    }

    pub fn is_open(&self, key: IncidentKey) -> bool {
        self.open.contains_key(&key)
    }

    /// Opens `key` with `incident`; the caller checked it was not open.
    pub fn open(&mut self, key: IncidentKey, incident: Incident) {
        self.open.insert(key, incident);
    }

    /// Closes `key` and returns what it was.
    pub fn close(&mut self, key: IncidentKey) -> Option<Incident> {
        self.open.remove(&key)
    }

    /// The condition of `key` holds at `now`: open its incident (counters
    /// from `baseline`) or note that it is still bad.
    pub fn open_or_touch(&mut self, key: IncidentKey, baseline: &Snapshot, now: f64) -> Phase {
        match self.open.get_mut(&key) {
            Some(inc) => {
                inc.bad(now);
                Phase::Repeat
            }
            None => {
                self.open.insert(key, Incident::new(now, baseline, None));
                Phase::Open
            }
        }
    }

    /// The condition of a pool's incident `key` is off the line at `now`
    /// unless `still_high`; `seen` is what the pool did since the last look.
    /// The incident resolves once the pool has answered at least `min`
    /// attempts over at least `confirm` seconds since the condition was
    /// last seen: silence is not health. Returns the incident once it
    /// resolves.
    pub fn settle_on_evidence(
        &mut self,
        key: IncidentKey,
        still_high: bool,
        seen: Seen,
        (confirm, min): (f64, u64),
        now: f64,
    ) -> Option<Incident> {
        let inc = self.open.get_mut(&key)?;
        if still_high {
            inc.bad(now);
            return None;
        }
        inc.health.note(seen, now);
        if !inc.health.enough(confirm, min) {
            return None;
        }
        self.open.remove(&key)
    }

    /// The condition of `key` no longer holds. With hysteresis: while
    /// `still_high`, it counts as bad, and it must stay good for `confirm`
    /// seconds. Returns the incident once it resolves.
    pub fn settle(
        &mut self,
        key: IncidentKey,
        still_high: bool,
        confirm: f64,
        now: f64,
    ) -> Option<Incident> {
        let inc = self.open.get_mut(&key)?;
        if still_high {
            inc.last_bad = now;
            return None;
        }
        if now - inc.last_bad < confirm {
            return None;
        }
        self.open.remove(&key)
    }

    /// Whether the alert loop must keep its 100 ms cadence for these at
    /// `now`: an incident is open (it settles, resolves on silence or
    /// repeats by the clock), or a cooldown still runs.
    pub fn need_ticks(&self, now: f64) -> bool {
        !self.open.is_empty() || self.last_sent.values().any(|&at| now - at < self.cooldown)
    }

    /// Open incidents for `/state`, pools by their labels.
    pub fn list(&self, labels: &[String]) -> Vec<OpenIncident> {
        self.open
            .iter()
            .map(|(k, i)| OpenIncident {
                kind: k.kind,
                pool: k.pool.map(|p| labels[p].clone()),
                opened_at: timestamp(i.opened_at),
            })
            .collect()
    }

    /// Decide on `f` at `now` (Unix seconds) and record a send.
    pub fn decide(&mut self, f: &Finding, now: f64, maintenance: bool) -> Decision {
        let key = f.key;
        if maintenance && held_in_maintenance(f.kind()) {
            if f.phase == Phase::Resolve {
                self.forget(key);
            }
            return Decision::SuppressedMaintenance;
        }
        match f.phase {
            Phase::Event => Decision::Send,
            Phase::Open => {
                self.announced.insert(key);
                self.last_sent.insert(key, now);
                Decision::Send
            }
            Phase::Repeat => {
                if !self.announced.contains(&key) {
                    // Opened while held back or while delivery failed: this
                    // is the first people hear of it.
                    self.announced.insert(key);
                    self.last_sent.insert(key, now);
                    return Decision::Send;
                }
                match self.last_sent.get(&key) {
                    Some(&at) if now - at < self.cooldown => Decision::SuppressedCooldown,
                    _ => {
                        self.last_sent.insert(key, now);
                        Decision::Send
                    }
                }
            }
            Phase::Resolve => {
                let told = self.announced.contains(&key);
                self.forget(key);
                if told {
                    Decision::Send
                } else {
                    Decision::SuppressedMaintenance
                }
            }
        }
    }

    /// Delivery of a message for `key` failed for good: do not let it start
    /// a cooldown, and let the next evidence announce the incident again.
    pub fn delivery_failed(&mut self, key: IncidentKey, phase: Phase) {
        self.last_sent.remove(&key);
        if phase == Phase::Open {
            self.announced.remove(&key);
        }
    }

    fn forget(&mut self, key: IncidentKey) {
        self.last_sent.remove(&key);
        self.announced.remove(&key);
    }

    /// `ALERT_COOLDOWN_SEC` changed on a reload: repeats already sent keep
    /// their time, the new spacing applies from the next one.
    pub fn set_cooldown(&mut self, cooldown_secs: f64) {
        self.cooldown = cooldown_secs;
    }

    /// The open incidents and what people were told, pools by their labels,
    /// for the state file.
    pub fn export(&self, labels: &[String]) -> Vec<SavedIncident> {
        self.open
            .iter()
            .map(|(k, i)| SavedIncident {
                kind: k.kind.label().to_string(),
                pool: k.pool.map(|p| labels[p].clone()),
                opened_at: i.opened_at,
                to: i.to.map(|p| labels[p].clone()),
                last_bad: i.last_bad,
                health: i.health,
                announced: self.announced.contains(k),
                last_sent: self.last_sent.get(k).copied(),
            })
            .collect()
    }

    /// Reopen what a previous run saved. The counters restarted with the
    /// process, so each incident's "so far" figures count from `baseline`
    /// (the new pipeline's zeros); its start, last bad sighting, evidence
    /// of health and what was told carry over, so a repeat still waits for
    /// the cooldown and a recovery is judged on the same evidence. Pools are
    /// the first `known` of `labels`; anything else is an error and nothing
    /// is restored.
    pub fn restore(
        &mut self,
        saved: &[SavedIncident],
        labels: &[String],
        known: usize,
        baseline: &Snapshot,
    ) -> Result<(), String> {
        let pool = |label: &str| {
            labels[..known]
                .iter()
                .position(|l| l == label)
                .ok_or_else(|| format!("unknown pool '{label}'"))
        };
        let mut open = Vec::new();
        for s in saved {
            let kind = [Kind::Failover, Kind::ErrorRate, Kind::UsersSeeingErrors]
                .into_iter()
                .find(|k| k.label() == s.kind)
                .ok_or_else(|| format!("unknown incident kind '{}'", s.kind))?;
            let key = IncidentKey {
                kind,
                pool: s.pool.as_deref().map(pool).transpose()?,
            };
            if key.pool.is_none() != (kind == Kind::UsersSeeingErrors) {
                return Err(format!("incident '{}' with a wrong pool", s.kind));
            }
            let finite = [s.opened_at, s.last_bad, s.health.until]
                .into_iter()
                .chain(s.last_sent)
                .chain(s.health.since)
                .all(f64::is_finite);
            if !finite {
                return Err(format!("incident '{}' with a time that is no time", s.kind));
            }
            let incident = Incident {
                opened_at: s.opened_at,
                baseline: baseline.clone(),
                to: s.to.as_deref().map(pool).transpose()?,
                last_bad: s.last_bad,
                health: s.health,
            };
            open.push((key, incident, s.announced, s.last_sent));
        }
        for (key, incident, announced, last_sent) in open {
            self.open.insert(key, incident);
            if announced {
                self.announced.insert(key);
            }
            if let Some(at) = last_sent {
                self.last_sent.insert(key, at);
            }
        }
        Ok(())
    }
}

/// An open incident as the state file keeps it: labels and plain numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedIncident {
    /// `failover`, `error_rate` or `users_seeing_errors`.
    pub kind: String,
    pub pool: Option<String>,
    pub opened_at: f64,
    /// Failover: the pool that took over.
    pub to: Option<String>,
    pub last_bad: f64,
    pub health: Evidence,
    /// Whether people were told it opened.
    pub announced: bool,
    /// When a message about it was last handed to delivery.
    pub last_sent: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::finding::{Facts, Failures, Pool, Ratio, Severity};

    fn sig(kind: Kind, phase: Phase) -> Finding {
        let blue = Pool {
            id: 0,
            label: "blue".into(),
        };
        let facts = match kind {
            Kind::Failover => Facts::Failover {
                from: blue.clone(),
                to: Pool {
                    id: 1,
                    label: "green".into(),
                },
                from_release: "b".into(),
                to_release: "g".into(),
                retried: 1,
                failures: Failures::default(),
                client_5xx: 0,
            },
            Kind::ErrorRate => Facts::ErrorRate {
                pool: blue,
                window: Ratio::new(5, 50),
                threshold: 2.0,
                window_size: 50,
                client_5xx: 0,
                release: "b".into(),
            },
            Kind::UsersSeeingErrors => Facts::UsersSeeingErrors {
                window: Ratio::new(5, 50),
                window_seconds: 60,
                no_live_upstream: 0,
                threshold: 2.0,
                serving: None,
            },
            other => panic!("no sample finding for {other:?}"),
        };
        Finding {
            key: IncidentKey {
                kind,
                pool: Some(0),
            },
            phase,
            severity: Severity::Warning,
            started: 0.0,
            at: 0.0,
            facts,
        }
    }

    fn snapshot() -> Snapshot {
        let pools = crate::pools::PoolSet::new(&["blue".into(), "green".into()]);
        let p = crate::pipeline::Pipeline::new(&crate::pipeline::PipelineConfig {
            pools,
            ..Default::default()
        });
        Snapshot::take(&p, 0)
    }

    const KEY: IncidentKey = IncidentKey {
        kind: Kind::ErrorRate,
        pool: Some(0),
    };

    #[test]
    fn silence_never_resolves_a_pool_incident() {
        let mut n = Incidents::new(300.0);
        n.open_or_touch(KEY, &snapshot(), 0.0);
        let nothing = Seen::default();
        for t in 1..1000 {
            assert!(
                n.settle_on_evidence(KEY, false, nothing, (5.0, 20), f64::from(t))
                    .is_none()
            );
        }
        assert!(n.is_open(KEY));
    }

    #[test]
    fn evidence_needs_both_answers_and_time() {
        let mut n = Incidents::new(300.0);
        n.open_or_touch(KEY, &snapshot(), 0.0);
        let answered = |k| Seen {
            answered: k,
            failed: 0,
        };
        // 100 answers in one instant: many, but over no time at all.
        assert!(
            n.settle_on_evidence(KEY, false, answered(100), (5.0, 20), 10.0)
                .is_none()
        );
        // Then silence: still no answer 5 s after the first.
        assert!(
            n.settle_on_evidence(KEY, false, answered(0), (5.0, 20), 16.0)
                .is_none()
        );
        // One more answer spans the period: resolved, with the evidence.
        let inc = n
            .settle_on_evidence(KEY, false, answered(1), (5.0, 20), 16.5)
            .expect("resolved");
        assert_eq!(inc.health.answered, 101);
        assert_eq!(inc.health.span(), 6.5);

        // Over a long enough time but too few answers.
        n.open_or_touch(KEY, &snapshot(), 20.0);
        for t in 21..40 {
            assert!(
                n.settle_on_evidence(KEY, false, answered(1), (5.0, 20), f64::from(t))
                    .is_none()
            );
        }
        assert!(
            n.settle_on_evidence(KEY, false, answered(1), (5.0, 20), 40.0)
                .is_some()
        );
    }

    #[test]
    fn the_condition_coming_back_starts_the_evidence_over() {
        let mut n = Incidents::new(300.0);
        n.open_or_touch(KEY, &snapshot(), 0.0);
        let seen = Seen {
            answered: 50,
            failed: 1,
        };
        assert!(
            n.settle_on_evidence(KEY, false, seen, (5.0, 20), 1.0)
                .is_none()
        );
        assert!(
            n.settle_on_evidence(KEY, true, seen, (5.0, 20), 4.0)
                .is_none()
        );
        assert_eq!(n.get(KEY).unwrap().health, Evidence::default());
        assert!(
            n.settle_on_evidence(KEY, false, seen, (5.0, 20), 7.0)
                .is_none(),
            "counted from 7 s, not 1 s"
        );
        let inc = n
            .settle_on_evidence(KEY, false, seen, (5.0, 20), 12.0)
            .expect("resolved");
        assert_eq!((inc.health.answered, inc.health.failed), (100, 2));
    }

    #[test]
    fn repeats_wait_for_the_cooldown() {
        let mut n = Incidents::new(300.0);
        assert_eq!(
            n.decide(&sig(Kind::Failover, Phase::Open), 0.0, false),
            Decision::Send
        );
        let r = sig(Kind::Failover, Phase::Repeat);
        assert_eq!(n.decide(&r, 10.0, false), Decision::SuppressedCooldown);
        assert_eq!(n.decide(&r, 299.0, false), Decision::SuppressedCooldown);
        assert_eq!(n.decide(&r, 300.0, false), Decision::Send);
        assert_eq!(n.decide(&r, 301.0, false), Decision::SuppressedCooldown);
        assert_eq!(
            n.decide(&sig(Kind::Failover, Phase::Resolve), 400.0, false),
            Decision::Send
        );
        // A new incident after the resolution starts fresh.
        assert_eq!(
            n.decide(&sig(Kind::Failover, Phase::Open), 401.0, false),
            Decision::Send
        );
    }

    #[test]
    fn the_alert_loop_keeps_ticking_while_an_incident_or_a_cooldown_lasts() {
        let mut n = Incidents::new(300.0);
        assert!(!n.need_ticks(0.0), "nothing open");
        n.open_or_touch(KEY, &snapshot(), 0.0);
        // Open and silent for a day: still watched (it may close on
        // silence, or on evidence that comes in between).
        assert!(n.need_ticks(86_400.0));
        // Told, then closed without its resolution being decided on yet:
        // the cooldown alone keeps the cadence until it ends.
        assert_eq!(
            n.decide(&sig(Kind::ErrorRate, Phase::Open), 10.0, false),
            Decision::Send
        );
        n.close(KEY);
        assert!(n.need_ticks(309.0));
        assert!(!n.need_ticks(310.0));
        assert_eq!(
            n.decide(&sig(Kind::ErrorRate, Phase::Resolve), 20.0, false),
            Decision::Send
        );
        assert!(!n.need_ticks(20.0), "resolved: nothing runs");
    }

    #[test]
    fn failed_delivery_does_not_start_a_cooldown() {
        let mut n = Incidents::new(300.0);
        let open = sig(Kind::ErrorRate, Phase::Open);
        assert_eq!(n.decide(&open, 0.0, false), Decision::Send);
        n.delivery_failed(open.key, Phase::Open);
        assert_eq!(
            n.decide(&sig(Kind::ErrorRate, Phase::Repeat), 1.0, false),
            Decision::Send
        );
    }

    #[test]
    fn an_incident_survives_export_and_restore() {
        let labels: Vec<String> = ["blue", "green", "other", "none", "unknown"]
            .map(String::from)
            .to_vec();
        let mut n = Incidents::new(300.0);
        let key = IncidentKey {
            kind: Kind::Failover,
            pool: Some(0),
        };
        let mut inc = Incident::new(100.0, &snapshot(), Some(1));
        inc.health.note(
            Seen {
                answered: 7,
                failed: 0,
            },
            104.0,
        );
        n.open(key, inc);
        assert_eq!(
            n.decide(&sig(Kind::Failover, Phase::Open), 100.0, false),
            Decision::Send
        );
        let saved = n.export(&labels);
        let json = serde_json::to_string(&saved).unwrap();
        let back: Vec<SavedIncident> = serde_json::from_str(&json).unwrap();
        let mut m = Incidents::new(300.0);
        m.restore(&back, &labels, 2, &snapshot()).unwrap();
        let got = m.get(key).expect("restored");
        assert_eq!((got.opened_at, got.to), (100.0, Some(1)));
        assert_eq!(got.health.answered, 7);
        // Told before the restart: a repeat waits for the cooldown, and the
        // resolution is told.
        let r = sig(Kind::Failover, Phase::Repeat);
        assert_eq!(m.decide(&r, 200.0, false), Decision::SuppressedCooldown);
        assert_eq!(
            m.decide(&sig(Kind::Failover, Phase::Resolve), 201.0, false),
            Decision::Send
        );
        // A pool this run does not know is refused, and nothing restored.
        let mut wrong = back.clone();
        wrong[0].pool = Some("red".into());
        let mut m = Incidents::new(300.0);
        assert!(m.restore(&wrong, &labels, 2, &snapshot()).is_err());
        assert!(!m.is_open(key));
    }

    #[test]
    fn maintenance_holds_back_but_not_users_seeing_errors() {
        let mut n = Incidents::new(300.0);
        assert_eq!(
            n.decide(&sig(Kind::Failover, Phase::Open), 0.0, true),
            Decision::SuppressedMaintenance
        );
        assert_eq!(
            n.decide(&sig(Kind::UsersSeeingErrors, Phase::Open), 0.0, true),
            Decision::Send
        );
        // Maintenance over, the failover goes on: people hear of it now.
        assert_eq!(
            n.decide(&sig(Kind::Failover, Phase::Repeat), 5.0, false),
            Decision::Send
        );
        // An incident opened and resolved inside maintenance stays quiet.
        assert_eq!(
            n.decide(&sig(Kind::ErrorRate, Phase::Open), 6.0, true),
            Decision::SuppressedMaintenance
        );
        assert_eq!(
            n.decide(&sig(Kind::ErrorRate, Phase::Resolve), 7.0, false),
            Decision::SuppressedMaintenance
        );
    }
}
