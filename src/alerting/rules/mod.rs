//! Rules: failover, planned switch, recovery, error rate and users seeing
//! errors, decided from the pipeline's figures. One file per rule:
//! [`failover`] (with the planned switch and the recovery that end or
//! replace one), [`error_rate`], [`users_seeing_errors`].
//!
//! The rules never run on a receive thread. Live, the alert loop copies a
//! [`Snapshot`] out of the pipeline every 100 ms (once a second, or at the
//! next batch, when idle) and calls [`Rules::evaluate`]; replay does the
//! same after each line, at the log's own time. Everything is deltas between snapshots of cumulative counters,
//! so a rule sees every request exactly once however often it runs.
//!
//! Rules return typed [`Finding`]s and write no text: `wording` speaks for
//! them. Which incidents are open is kept in [`Incidents`], which the rules
//! open, touch and settle; whether a finding is told is decided there too.

mod error_rate;
mod failover;
mod users_seeing_errors;

use super::finding::{Facts, Finding, IncidentKey, Phase, Pool, Severity};
use super::incident::{Incident, Incidents, Seen};
use super::snapshot::Snapshot;
use crate::pools::PoolId;

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
    /// Attempts a pool must answer over the confirmation period before its
    /// failover recovers or its error rate resolves.
    pub recovery_min_requests: u64,
    pub window_size: usize,
    pub window_seconds: u32,
}

/// What the rules remember between evaluations.
pub struct Rules {
    cfg: RulesConfig,
    primary: PoolId,
    last_serving: Option<PoolId>,
    prev: Option<Snapshot>,
    last_primary_failure: f64,
    /// When each pool was last tried (answered or failed), Unix seconds.
    last_attempt: Vec<f64>,
    /// No pool counts as idle before this (Unix seconds): after a restart,
    /// empty windows mean "not watched yet", not "no traffic".
    idle_not_before: f64,
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
            last_primary_failure: f64::NEG_INFINITY,
            last_attempt: Vec::new(),
            idle_not_before: f64::NEG_INFINITY,
        }
    }

    /// The pool that served at the last look, for the state file.
    pub fn last_serving(&self) -> Option<PoolId> {
        self.last_serving
    }

    /// Take up where a previous run left off at `now`: its primary (a
    /// planned switch may have moved it) and serving pool. What each pool
    /// did before the restart is not known: every pool counts as tried at
    /// `now` (a switch during a failover needs its silence again) and none
    /// is idle before a whole `WINDOW_SECONDS` has been watched.
    /// `primary_failed` is when the primary was last seen failing, if a
    /// failover of it is open.
    pub fn restore(
        &mut self,
        primary: PoolId,
        last_serving: Option<PoolId>,
        primary_failed: Option<f64>,
        pools: usize,
        now: f64,
    ) {
        self.primary = primary;
        self.last_serving = last_serving;
        self.last_primary_failure = primary_failed.unwrap_or(f64::NEG_INFINITY);
        self.last_attempt = vec![now; pools];
        self.idle_not_before = now + f64::from(self.cfg.window_seconds);
    }

    /// New thresholds from a reload; the primary, the serving pool and the
    /// windows stay as they are.
    pub fn reconfigure(&mut self, cfg: RulesConfig) {
        self.cfg = RulesConfig {
            active_pool: self.cfg.active_pool,
            window_size: self.cfg.window_size,
            window_seconds: self.cfg.window_seconds,
            ..cfg
        };
    }

    /// The pool whose failures matter now: `ACTIVE_POOL`, or the target of
    /// the last planned switch.
    pub fn primary(&self) -> PoolId {
        self.primary
    }

    /// Compare `snap` with the previous snapshot and return what was found.
    /// `now` is Unix seconds: wall time live, log time in a replay.
    pub fn evaluate(
        &mut self,
        snap: &Snapshot,
        incidents: &mut Incidents,
        now: f64,
    ) -> Vec<Finding> {
        let prev = self
            .prev
            .take()
            .unwrap_or_else(|| Snapshot::zero_like(snap));
        let mut out = Vec::new();
        let p = self.primary;
        if snap.failures(p) > prev.failures(p) {
            self.last_primary_failure = now;
        }
        self.last_attempt
            .resize(snap.labels.len(), f64::NEG_INFINITY);
        for (pool, at) in self.last_attempt.iter_mut().enumerate() {
            if snap.tried(pool) > prev.tried(pool) {
                *at = now;
            }
        }
        self.failover_and_switch(snap, &prev, incidents, now, &mut out);
        self.recovery(snap, &prev, incidents, now, &mut out);
        for pool in 0..snap.known {
            self.error_rate(pool, snap, &prev, incidents, now, &mut out);
        }
        self.users_seeing_errors(snap, &prev, incidents, now, &mut out);
        self.prev = Some(snap.clone());
        out
    }
}

/// The finding that closes `inc` (the incident of `key`) at `now`.
fn closing(
    key: IncidentKey,
    inc: &Incident,
    severity: Severity,
    now: f64,
    facts: Facts,
) -> Finding {
    Finding {
        key,
        phase: Phase::Resolve,
        severity,
        started: inc.opened_at,
        at: now,
        facts,
    }
}

/// What `pool` did between `prev` and `snap`.
fn seen(snap: &Snapshot, prev: &Snapshot, pool: PoolId) -> Seen {
    Seen {
        answered: snap.answered(pool) - prev.answered(pool),
        failed: snap.failures(pool) - prev.failures(pool),
    }
}

/// Pool `id` as findings name it.
fn pool(snap: &Snapshot, id: PoolId) -> Pool {
    Pool {
        id,
        label: snap.labels[id].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::finding::{Kind, Phase};
    use crate::alerting::rules::failover::failover_key;
    use crate::alerting::wording::{Notification, words};
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::pools::PoolSet;
    use crate::record::{Decoder, INPUT_PADDING};
    use crate::upstream::Outcome;

    const BLUE: &str = "10.0.0.2:3000";
    const GREEN: &str = "10.0.0.3:3000";

    struct World {
        p: Pipeline,
        rules: Rules,
        incidents: Incidents,
        d: Decoder,
        now: f64,
    }

    /// A finding with its words, as people would read it.
    struct Signal {
        key: IncidentKey,
        phase: Phase,
        finding: Finding,
        notification: Notification,
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
                    recovery_min_requests: 10,
                    window_size: 50,
                    window_seconds: 60,
                }),
                incidents: Incidents::new(300.0),
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
            self.rules
                .evaluate(&snap, &mut self.incidents, self.now)
                .into_iter()
                .map(|f| Signal {
                    key: f.key,
                    phase: f.phase,
                    notification: words(&f, Some("https://example.org/RUNBOOK.md")),
                    finding: f,
                })
                .collect()
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
        // The same as data, for sinks that want no prose.
        let f = &s[0].finding;
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.started, w.now);
        let Facts::Failover {
            from,
            to,
            retried,
            failures,
            client_5xx,
            ..
        } = &f.facts
        else {
            panic!("{:?}", f.facts)
        };
        assert_eq!((from.id, to.id, to.label.as_str()), (0, 1, "green"));
        assert_eq!((*retried, failures.error_5xx, *client_5xx), (1, 1, 0));
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
        assert!(w.tick(2.0).is_empty(), "2 s of answers, 3 s needed");
        w.req(5, 200, "200", BLUE, "blue");
        let s = w.tick(1.5);
        assert_eq!(kinds(&s), [(Kind::Recovery, Phase::Resolve)]);
        assert!(
            s[0].notification
                .summary
                .contains("blue answered 30 requests without a failure over 3.5 s"),
            "{}",
            s[0].notification.summary
        );
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

    /// Blue fails once and nginx retries on green; green serves.
    fn failed_over() -> World {
        let mut w = World::with_min_requests(1000);
        w.req(30, 200, "200", BLUE, "blue");
        w.tick(0.1);
        w.req(1, 200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
        assert_eq!(kinds(&w.tick(0.1)), [(Kind::Failover, Phase::Open)]);
        w
    }

    #[test]
    fn fail_timeout_silence_is_no_recovery() {
        let mut w = failed_over();
        // nginx skips blue for its fail_timeout: green takes everything.
        for _ in 0..10 {
            w.req(10, 200, "200", GREEN, "green");
            assert!(w.tick(0.5).is_empty());
        }
        // Blue's first answers after 5 s of silence, and serving moves back
        // at once: "no failure for 3 s" holds, but only because blue got
        // nothing. Not a recovery.
        w.req(20, 200, "200", BLUE, "blue");
        assert!(w.tick(0.1).is_empty());
        assert!(w.incidents.is_open(failover_key(0)));
        // Nor is more silence.
        assert!(w.tick(10.0).is_empty());
        // Blue answering over the confirmation period is.
        w.req(5, 200, "200", BLUE, "blue");
        let s = w.tick(0.1);
        assert_eq!(kinds(&s), [(Kind::Recovery, Phase::Resolve)]);
        let Facts::Recovered {
            answered,
            over_secs,
            ..
        } = s[0].finding.facts
        else {
            panic!("{:?}", s[0].finding.facts)
        };
        assert_eq!(answered, 25);
        assert!((over_secs - 10.1).abs() < 1e-6, "{over_secs}");
    }

    #[test]
    fn recovery_needs_enough_answers_and_no_failure_among_them() {
        let mut w = failed_over();
        // Blue serves again, slowly: 1 request a second.
        for _ in 0..5 {
            w.req(1, 200, "200", BLUE, "blue");
            assert!(w.tick(1.0).is_empty(), "5 answers, 10 needed");
        }
        // One failure (nginx retried it) starts the evidence over.
        w.req(1, 200, "502, 200", &format!("{BLUE}, {GREEN}"), "green");
        w.tick(0.1);
        for _ in 0..9 {
            w.req(1, 200, "200", BLUE, "blue");
            assert!(w.tick(1.0).is_empty());
        }
        // nginx finding no live server at all starts it over too.
        w.req(1, 502, "502", "backend", "");
        w.tick(0.1);
        // Then 2 answers every 0.5 s: 12 answers over 2.5 s are not enough,
        // 14 over 3 s are.
        for _ in 0..6 {
            w.req(2, 200, "200", BLUE, "blue");
            assert!(
                w.tick(0.5)
                    .iter()
                    .all(|s| s.notification.kind != Kind::Recovery)
            );
        }
        w.req(2, 200, "200", BLUE, "blue");
        let s = w.tick(0.5);
        assert!(
            kinds(&s).contains(&(Kind::Recovery, Phase::Resolve)),
            "{:?}",
            kinds(&s)
        );
    }

    #[test]
    fn a_failover_on_a_silent_site_stays_open() {
        let mut w = failed_over();
        w.req(20, 200, "200", GREEN, "green");
        w.tick(0.1);
        // No traffic at all: neither a recovery nor a switch.
        for _ in 0..20 {
            assert!(w.tick(10.0).is_empty());
        }
        assert!(w.incidents.is_open(failover_key(0)));
        assert_eq!(w.rules.primary(), 0);
        // Green serving on, blue never tried again: switched out.
        w.req(10, 200, "200", GREEN, "green");
        let s = w.tick(0.1);
        assert_eq!(kinds(&s), [(Kind::PoolSwitch, Phase::Resolve)]);
    }

    #[test]
    fn client_aborts_are_no_failures() {
        let mut w = World::new();
        // 5 % of requests: the client closed while nginx waited on blue.
        for _ in 0..5 {
            w.req(19, 200, "200", BLUE, "blue");
            w.req(1, 499, "-", BLUE, "");
        }
        assert!(w.tick(0.1).is_empty());
        let snap = Snapshot::take(&w.p, w.now as u64);
        assert_eq!(snap.failures(0), 0);
        assert_eq!(snap.attempts[0][Outcome::ClientAbort.index()], 5);
        assert_eq!(snap.count[0].failures, 0);
        // During a failover they neither break nor make recovery evidence.
        let mut w = failed_over();
        w.req(20, 200, "200", BLUE, "blue");
        w.tick(0.1);
        w.req(3, 499, "-", BLUE, "");
        assert!(w.tick(2.0).is_empty());
        w.req(1, 200, "200", BLUE, "blue");
        assert_eq!(kinds(&w.tick(1.0)), [(Kind::Recovery, Phase::Resolve)]);
    }

    #[test]
    fn an_idle_pools_error_rate_closes_for_want_of_traffic() {
        let mut w = World::new();
        w.req(45, 200, "200", BLUE, "blue");
        w.req(5, 200, "500, 200", &format!("{BLUE}, {GREEN}"), "green");
        let opened = w.now + 0.1;
        assert!(kinds(&w.tick(0.1)).contains(&(Kind::ErrorRate, Phase::Open)));
        let rate = |s: &[Signal]| -> Vec<Phase> {
            s.iter()
                .filter(|s| s.key.kind == Kind::ErrorRate && s.key.pool == Some(0))
                .map(|s| s.phase)
                .collect()
        };
        // Traffic goes to green alone: blue's window is frozen at 10 %.
        for _ in 0..59 {
            w.req(5, 200, "200", GREEN, "green");
            assert!(rate(&w.tick(1.0)).is_empty());
        }
        w.req(5, 200, "200", GREEN, "green");
        let s = w.tick(1.0);
        assert_eq!(rate(&s), [Phase::Resolve]);
        let closed = s.iter().find(|s| s.key.pool == Some(0)).unwrap();
        assert_eq!(closed.finding.severity, Severity::Info);
        let n = &closed.notification;
        assert!(
            n.title.starts_with("Closed: no traffic to blue since "),
            "{}",
            n.title
        );
        assert!(
            n.summary.contains("last error rate 10.0 %"),
            "{}",
            n.summary
        );
        let Facts::NoTraffic { since, .. } = closed.finding.facts else {
            panic!()
        };
        assert_eq!(since, opened, "blue's last attempt");
        // Its frozen window opens nothing new, idle or not.
        assert!(rate(&w.tick(5.0)).is_empty());
        w.req(10, 200, "200", BLUE, "blue");
        assert!(rate(&w.tick(1.0)).is_empty());
        // A new failure while still over the line is news again.
        w.req(1, 503, "503", BLUE, "blue");
        assert_eq!(rate(&w.tick(1.0)), [Phase::Open]);
    }

    #[test]
    fn error_rate_resolves_only_on_answers() {
        let mut w = World::new();
        w.req(45, 200, "200", BLUE, "blue");
        w.req(5, 503, "503", BLUE, "blue");
        w.tick(0.1);
        w.req(50, 200, "200", BLUE, "blue");
        // Under the line, and silent: no resolution however long.
        for _ in 0..5 {
            assert!(
                w.tick(10.0)
                    .iter()
                    .all(|s| s.notification.kind != Kind::ErrorRate)
            );
        }
        // One answer later: blue answered from the first look to now.
        w.req(1, 200, "200", BLUE, "blue");
        let s = w.tick(1.0);
        let n = &s
            .iter()
            .find(|s| s.notification.kind == Kind::ErrorRate)
            .expect("resolved")
            .notification;
        assert!(n.title.starts_with("Resolved: error rate on blue"));
        assert!(
            n.summary
                .contains("blue answered 51 requests with 0 failures over 41.0 s"),
            "{}",
            n.summary
        );
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
        assert!(w.tick(0.1).is_empty());
        w.req(5, 200, "200", BLUE, "blue");
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
        // All healthy: under the line, but blue must answer over 3 s.
        w.req(25, 200, "200", BLUE, "blue");
        assert!(
            w.tick(1.0)
                .iter()
                .all(|s| s.notification.kind != Kind::ErrorRate)
        );
        w.req(25, 200, "200", BLUE, "blue");
        assert!(
            w.tick(2.0)
                .iter()
                .all(|s| s.notification.kind != Kind::ErrorRate)
        );
        w.req(5, 200, "200", BLUE, "blue");
        let s = w.tick(1.5);
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
}
