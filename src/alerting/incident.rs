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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

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
                inc.last_bad = now;
                Phase::Repeat
            }
            None => {
                self.open.insert(
                    key,
                    Incident {
                        opened_at: now,
                        baseline: baseline.clone(),
                        to: None,
                        last_bad: now,
                    },
                );
                Phase::Open
            }
        }
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
