//! Failover, and the two ways a change of serving pool ends or avoids one.
//!
//! A failover is the primary failing while the backup serves: the first
//! request nginx retried from the primary and answered below 500 opens it,
//! within one tick, as does serving moving to the backup while the primary
//! shows failures. A change of serving pool with no failures on the old pool
//! is a planned switch, not a failover, and the new pool becomes the
//! primary.
//!
//! The return to the primary after a failover is a recovery, told only on
//! evidence: the primary serves again and has answered at least
//! `RECOVERY_MIN_REQUESTS` attempts without a single failure over at least
//! `RECOVERY_CONFIRM_SEC`. Time alone proves nothing: nginx skips a failed
//! primary for its `fail_timeout`, so "no failure for 5 s" is what a pool
//! that got no traffic shows too. A primary that nginx stops trying
//! altogether while the backup keeps serving was switched out: once the
//! backup has served [`SWITCH_SILENCE_SECS`] after the primary's last
//! attempt, the failover ends as a switch. A failover whose site gets no
//! traffic at all stays open: there is no evidence either way.

use super::{Rules, SWITCH_SILENCE_SECS, closing, pool, seen};
use crate::alerting::finding::{Facts, Failures, Finding, IncidentKey, Kind, Phase, Severity};
use crate::alerting::incident::{Incident, Incidents};
use crate::alerting::snapshot::Snapshot;
use crate::pools::PoolId;
use crate::upstream::Outcome;

impl Rules {
    pub(super) fn failover_and_switch(
        &mut self,
        snap: &Snapshot,
        prev: &Snapshot,
        incidents: &mut Incidents,
        now: f64,
        out: &mut Vec<Finding>,
    ) {
        let p = self.primary;
        let key = failover_key(p);
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
            if let Some(inc) = incidents.get_mut(key) {
                // Serving settling on the backup is the failover running its
                // course; only a new rescued request is new evidence.
                if rescued_to.is_some() {
                    inc.bad(now);
                    out.push(failover(key, Phase::Repeat, inc, snap, now));
                }
            } else {
                let inc = Incident::new(now, prev, Some(to));
                out.push(failover(key, Phase::Open, &inc, snap, now));
                incidents.open(key, inc);
            }
        } else if let (true, Some(new), Some(old)) =
            (serving_changed, snap.serving, self.last_serving)
            && !incidents.is_open(key)
            && new < snap.known
            && old < snap.known
        {
            // Serving moved and the old pool shows no failures: an operator
            // switched. The new pool's failures are the ones that matter now.
            out.push(Finding {
                key: IncidentKey {
                    kind: Kind::PoolSwitch,
                    pool: Some(new),
                },
                phase: Phase::Event,
                severity: Severity::Info,
                started: now,
                at: now,
                facts: switch(snap, old, new, None),
            });
            self.primary = new;
            self.last_primary_failure = f64::NEG_INFINITY;
        }
        if snap.serving.is_some() {
            self.last_serving = snap.serving;
        }
    }

    pub(super) fn recovery(
        &mut self,
        snap: &Snapshot,
        prev: &Snapshot,
        incidents: &mut Incidents,
        now: f64,
        out: &mut Vec<Finding>,
    ) {
        let p = self.primary;
        let key = failover_key(p);
        let Some(inc) = incidents.get_mut(key) else {
            return;
        };
        // Any failure of the primary, or nginx finding no server alive,
        // starts the evidence over; answers add to it.
        let seen = seen(snap, prev, p);
        if seen.failed > 0 || snap.no_live > prev.no_live {
            inc.bad(now);
        } else {
            inc.health.note(seen, now);
        }
        let silent_since = self.last_attempt[p].max(inc.opened_at);
        if let Some(to) = snap.serving.filter(|&s| s != p && s < snap.known)
            && self.last_attempt[to] - silent_since >= SWITCH_SILENCE_SECS
        {
            self.switched_during_failover(snap, incidents, p, to, now, out);
            return;
        }
        let confirm = (
            self.cfg.recovery_confirm_secs,
            self.cfg.recovery_min_requests,
        );
        if snap.serving != Some(p) || !inc.health.enough(confirm.0, confirm.1) {
            return;
        }
        let inc = incidents.close(key).expect("checked above");
        let base = &inc.baseline;
        let facts = Facts::Recovered {
            pool: pool(snap, p),
            took_over: pool(snap, inc.to.unwrap_or(p)),
            confirmed_secs: self.cfg.recovery_confirm_secs,
            answered: inc.health.answered,
            over_secs: inc.health.span(),
            retried: snap.retried_from(p) - base.retried_from(p),
            client_5xx: snap.client_5xx() - base.client_5xx(),
            release: snap.release(p).to_string(),
        };
        out.push(closing(key, &inc, Severity::Resolved, now, facts));
    }

    /// nginx no longer tries the failed primary at all: it was switched out.
    /// The failover ends here and the pool now serving becomes the primary.
    fn switched_during_failover(
        &mut self,
        snap: &Snapshot,
        incidents: &mut Incidents,
        p: PoolId,
        to: PoolId,
        now: f64,
        out: &mut Vec<Finding>,
    ) {
        let key = failover_key(p);
        let Some(inc) = incidents.close(key) else {
            return;
        };
        let facts = switch(snap, p, to, Some(SWITCH_SILENCE_SECS));
        out.push(closing(key, &inc, Severity::Info, now, facts));
        self.primary = to;
        self.last_serving = Some(to);
        self.last_primary_failure = f64::NEG_INFINITY;
    }
}

/// The failover incident of primary `p`.
pub(super) fn failover_key(p: PoolId) -> IncidentKey {
    IncidentKey {
        kind: Kind::Failover,
        pool: Some(p),
    }
}

/// The failover of `key`'s pool as `inc` and `snap` show it.
fn failover(key: IncidentKey, phase: Phase, inc: &Incident, snap: &Snapshot, now: f64) -> Finding {
    let p = key.pool.expect("a failover has a pool");
    let to = inc.to.unwrap_or(p);
    let base = &inc.baseline;
    let seen = |o: Outcome| snap.attempts[p][o.index()] - base.attempts[p][o.index()];
    let client_5xx = snap.client_5xx() - base.client_5xx();
    Finding {
        key,
        phase,
        severity: if client_5xx > 0 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        started: inc.opened_at,
        at: now,
        facts: Facts::Failover {
            from: pool(snap, p),
            to: pool(snap, to),
            from_release: snap.release(p).to_string(),
            to_release: snap.release(to).to_string(),
            retried: snap.retried_from(p) - base.retried_from(p),
            failures: Failures {
                error_5xx: seen(Outcome::Error5xx),
                bad_gateway: seen(Outcome::BadGateway),
                timeout: seen(Outcome::Timeout),
                no_response: seen(Outcome::NoResponse),
            },
            client_5xx,
        },
    }
}

fn switch(snap: &Snapshot, old: PoolId, new: PoolId, during_failover: Option<f64>) -> Facts {
    Facts::Switch {
        from: pool(snap, old),
        to: pool(snap, new),
        from_release: snap.release(old).to_string(),
        to_release: snap.release(new).to_string(),
        during_failover,
    }
}
