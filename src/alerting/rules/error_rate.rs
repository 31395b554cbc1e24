//! High error rate: more than `ERROR_RATE_THRESHOLD` percent of a pool's
//! last `WINDOW_SIZE` upstream attempts failed, once the window holds
//! `ERROR_RATE_MIN_REQUESTS`. Failures count against the pool that failed,
//! retried or not; client aborts count for nothing. It opens on a failure
//! that leaves the window over the line, and is critical when clients got
//! 5xx, a warning when retries masked every failure.
//!
//! It resolves on evidence: the rate stays at or under half the threshold
//! while the pool answers at least `RECOVERY_MIN_REQUESTS` attempts over at
//! least `RECOVERY_CONFIRM_SEC`. A pool that gets no attempt for
//! `WINDOW_SECONDS` is idle: its window is history, not health, so the
//! incident closes with a notice that says so, not as resolved.

use super::{RESOLVE_FRACTION, Rules, closing, pool, seen};
use crate::alerting::finding::{Facts, Finding, IncidentKey, Kind, Phase, Ratio, Severity};
use crate::alerting::incident::Incidents;
use crate::alerting::snapshot::Snapshot;
use crate::pools::PoolId;

impl Rules {
    pub(super) fn error_rate(
        &mut self,
        id: PoolId,
        snap: &Snapshot,
        prev: &Snapshot,
        incidents: &mut Incidents,
        now: f64,
        out: &mut Vec<Finding>,
    ) {
        let key = IncidentKey {
            kind: Kind::ErrorRate,
            pool: Some(id),
        };
        let w = snap.count[id];
        let window = Ratio::new(w.failures, w.attempts);
        let threshold = self.cfg.error_rate_threshold;
        if snap.is_idle(id) && now >= self.idle_not_before {
            // The window still holds the last attempts, but they are old
            // news: neither a reason to open nor to call it resolved.
            if let Some(inc) = incidents.close(key) {
                let facts = Facts::NoTraffic {
                    pool: pool(snap, id),
                    since: self.last_attempt[id],
                    window_seconds: self.cfg.window_seconds,
                    last: window,
                };
                out.push(closing(key, &inc, Severity::Info, now, facts));
            }
            return;
        }
        let over = w.attempts >= self.cfg.error_rate_min_requests && window.percent > threshold;
        let fresh = snap.failures(id) > prev.failures(id);
        // Opening takes a new failure: a window that is over the line only
        // because it still holds old ones (after an idle close) is not news.
        if over && (fresh || incidents.is_open(key)) {
            let phase = incidents.open_or_touch(key, prev, now);
            if phase == Phase::Repeat && !fresh {
                return;
            }
            let started = incidents.get(key).map_or(now, |i| i.opened_at);
            out.push(Finding {
                key,
                phase,
                severity: if w.client_5xx == 0 {
                    Severity::Warning
                } else {
                    Severity::Critical
                },
                started,
                at: now,
                facts: Facts::ErrorRate {
                    pool: pool(snap, id),
                    window,
                    threshold,
                    window_size: self.cfg.window_size,
                    client_5xx: w.client_5xx,
                    release: snap.release(id).to_string(),
                },
            });
        } else if let Some(inc) = incidents.settle_on_evidence(
            key,
            window.percent > threshold * RESOLVE_FRACTION,
            seen(snap, prev, id),
            (
                self.cfg.recovery_confirm_secs,
                self.cfg.recovery_min_requests,
            ),
            now,
        ) {
            let facts = Facts::ErrorRateResolved {
                pool: pool(snap, id),
                window,
                threshold,
                good_since: inc.last_bad,
                answered: inc.health.answered,
                failed: inc.health.failed,
                over_secs: inc.health.span(),
            };
            out.push(closing(key, &inc, Severity::Resolved, now, facts));
        }
    }
}
