//! Incidents: which of the rules' signals become messages.
//!
//! One open incident per kind and pool. Its opening is sent; new evidence
//! while it stays open is repeated at most once per `ALERT_COOLDOWN_SEC`;
//! its resolution is sent if its opening was. A delivery that failed does
//! not count as sent: the next evidence goes out at once. During maintenance,
//! failover, switch, error-rate and recovery messages are held back (and
//! counted); users seeing errors is never held back.

use std::collections::{BTreeMap, BTreeSet};

use super::finding::Kind;
use super::rules::{IncidentKey, Phase, Signal};

/// What to do with one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    SuppressedCooldown,
    SuppressedMaintenance,
}

impl Decision {
    /// `outcome` label of `poolwatch_alerts_total` for held-back messages.
    pub fn outcome(self) -> Option<&'static str> {
        match self {
            Decision::Send => None,
            Decision::SuppressedCooldown => Some("suppressed_cooldown"),
            Decision::SuppressedMaintenance => Some("suppressed_maintenance"),
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

/// Cooldown and announcement bookkeeping.
#[derive(Debug, Default)]
pub struct Notifier {
    cooldown: f64,
    /// When a message of each open incident was last handed to delivery.
    last_sent: BTreeMap<IncidentKey, f64>,
    /// Incidents whose opening people were told about.
    announced: BTreeSet<IncidentKey>,
}

impl Notifier {
    pub fn new(cooldown_secs: f64) -> Notifier {
        Notifier {
            cooldown: cooldown_secs,
            ..Notifier::default()
        }
    }

    /// Decide on `sig` at `now` (Unix seconds) and record a send.
    pub fn decide(&mut self, sig: &Signal, now: f64, maintenance: bool) -> Decision {
        let key = sig.key;
        if maintenance && held_in_maintenance(sig.notification.kind) {
            if sig.phase == Phase::Resolve {
                self.forget(key);
            }
            return Decision::SuppressedMaintenance;
        }
        match sig.phase {
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
    use crate::alerting::finding::{Notification, Severity};

    fn sig(kind: Kind, phase: Phase) -> Signal {
        Signal {
            key: IncidentKey {
                kind,
                pool: Some(0),
            },
            phase,
            notification: Notification {
                kind,
                severity: Severity::Warning,
                pool: Some("blue".into()),
                title: String::new(),
                summary: String::new(),
                fields: vec![],
                first_seen: String::new(),
                resolved: phase == Phase::Resolve,
                runbook_url: None,
            },
            target: None,
        }
    }

    #[test]
    fn repeats_wait_for_the_cooldown() {
        let mut n = Notifier::new(300.0);
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
        let mut n = Notifier::new(300.0);
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
        let mut n = Notifier::new(300.0);
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
