//! Users seeing errors: clients receive 5xx. Either the share of 5xx
//! responses over the time window, all pools together, is above the
//! threshold (with new 5xx since the last look), or nginx answered a
//! request with no live upstream at all. Always critical; never held back by
//! maintenance. Resolved like an error rate, with hysteresis.

use super::{RESOLVE_FRACTION, Rules, closing, pool};
use crate::alerting::finding::{Facts, Finding, IncidentKey, Kind, Ratio, Severity};
use crate::alerting::incident::Incidents;
use crate::alerting::snapshot::Snapshot;

impl Rules {
    pub(super) fn users_seeing_errors(
        &mut self,
        snap: &Snapshot,
        prev: &Snapshot,
        incidents: &mut Incidents,
        now: f64,
        out: &mut Vec<Finding>,
    ) {
        let key = IncidentKey {
            kind: Kind::UsersSeeingErrors,
            pool: None,
        };
        let site = snap.time_site;
        let window = Ratio::new(site.client_5xx, site.requests);
        let threshold = self.cfg.error_rate_threshold;
        let new_5xx = snap.client_5xx() - prev.client_5xx();
        let new_no_live = snap.no_live - prev.no_live;
        let over = site.requests >= self.cfg.error_rate_min_requests && window.percent > threshold;
        if (over && new_5xx > 0) || new_no_live > 0 {
            let phase = incidents.open_or_touch(key, prev, now);
            let inc = incidents.get(key).expect("opened or touched above");
            out.push(Finding {
                key,
                phase,
                severity: Severity::Critical,
                started: inc.opened_at,
                at: now,
                facts: Facts::UsersSeeingErrors {
                    window,
                    window_seconds: self.cfg.window_seconds,
                    no_live_upstream: snap.no_live - inc.baseline.no_live,
                    threshold,
                    serving: snap.serving.map(|p| pool(snap, p)),
                },
            });
        } else if let Some(inc) = incidents.settle(
            key,
            window.percent > threshold * RESOLVE_FRACTION,
            self.cfg.recovery_confirm_secs,
            now,
        ) {
            let facts = Facts::UsersNoLongerSeeingErrors {
                window,
                window_seconds: self.cfg.window_seconds,
                client_5xx_during: snap.client_5xx() - inc.baseline.client_5xx(),
            };
            out.push(closing(key, &inc, Severity::Resolved, now, facts));
        }
    }
}
