//! The pipeline: datagram → syslog frame → access record → attempts →
//! windows and totals.
//!
//! Both the live receiver and `poolwatch replay` push bytes through
//! [`Pipeline::process`], so a saved log is judged exactly as live traffic.
//! Everything here is plain integers and fixed arrays: the receive thread
//! updates them under one lock taken per batch, and the exporter copies them
//! out on scrape. No atomics, hashing or allocation per datagram.

use crate::pools::{self, AddrMap, Learned, PoolId, PoolSet};
use crate::record::{AccessRecord, DecodeError, Decoder};
use crate::syslog::{self, FrameError};
use crate::upstream::{self, Outcome};
use crate::window::{self, Observation, PoolWindows, ServingRing};

/// Reasons a datagram is skipped, in `reason` label order.
pub const MALFORMED_REASONS: [&str; 9] = [
    "empty",
    "bad_syslog_pri",
    "bad_syslog_header",
    "not_access_log",
    "invalid_json",
    "missing_status",
    "bad_status",
    "truncated",
    "too_many_attempts",
];

/// Reasons a datagram is dropped unread, in `reason` label order.
pub const REJECTED_REASONS: [&str; 1] = ["source"];

/// Duration fields checked before use, in `field` label order.
pub const DURATION_FIELDS: [&str; 2] = ["request_time", "upstream_response_time"];

/// Longest duration taken for real, in seconds: a day. Anything longer,
/// negative or not a number is no request's duration, and one such value
/// would turn a histogram's sum into `+Inf` for good.
pub const MAX_DURATION_SECS: f64 = 86_400.0;

/// A skipped datagram and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl Malformed {
    pub const TRUNCATED: Malformed = Malformed("truncated");
    /// More upstream attempts than any real nginx logs
    /// ([`upstream::MAX_ATTEMPTS`]).
    pub const TOO_MANY_ATTEMPTS: Malformed = Malformed("too_many_attempts");

    fn index(self) -> usize {
        MALFORMED_REASONS
            .iter()
            .position(|r| *r == self.0)
            .expect("reason is listed")
    }
}

impl From<FrameError> for Malformed {
    fn from(e: FrameError) -> Self {
        Malformed(e.reason())
    }
}

impl From<DecodeError> for Malformed {
    fn from(e: DecodeError) -> Self {
        Malformed(e.reason())
    }
}

/// `status_class` labels, indexed by `status / 100 - 1`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds (seconds) of `poolwatch_request_duration_seconds`: dense
/// where web requests live, reaching past nginx's retry deadline.
pub const DURATION_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 7.5, 10.0,
    30.0, 60.0,
];

/// A cumulative histogram of request durations.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last entry is `+Inf`.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = DURATION_BUCKETS.partition_point(|&b| b < seconds);
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// Everything counted since start; the exporter publishes these.
#[derive(Debug, Clone)]
pub struct Totals {
    pub datagrams: u64,
    pub bytes: u64,
    pub malformed: [u64; MALFORMED_REASONS.len()],
    pub rejected: [u64; REJECTED_REASONS.len()],
    pub invalid_utf8: u64,
    /// Durations ignored as impossible, by [`DURATION_FIELDS`]; the
    /// requests themselves still count.
    pub invalid_durations: [u64; DURATION_FIELDS.len()],
    /// Responses that named another pool than the one their server is
    /// known in (learned or pinned).
    pub address_conflicts: u64,
    /// Learned servers moved to another pool on sustained evidence.
    pub address_moves: u64,
    pub no_live_upstream: u64,
    /// `[pool][status class]`, pool = serving pool.
    pub requests: Vec<[u64; 5]>,
    /// `[pool][outcome]`, pool = pool of the server tried.
    pub attempts: Vec<[u64; Outcome::ALL.len()]>,
    /// `[from][to]`: first attempt's pool → last attempt's pool.
    pub retried: Vec<Vec<u64>>,
    /// The retried requests the client got an answer below 500 for: the
    /// retry hid the failure. This is what a failover looks like.
    pub rescued: Vec<Vec<u64>>,
    pub durations: Vec<Histogram>,
}

impl Totals {
    fn new(pools: usize) -> Totals {
        Totals {
            datagrams: 0,
            bytes: 0,
            malformed: [0; MALFORMED_REASONS.len()],
            rejected: [0; REJECTED_REASONS.len()],
            invalid_utf8: 0,
            invalid_durations: [0; DURATION_FIELDS.len()],
            address_conflicts: 0,
            address_moves: 0,
            no_live_upstream: 0,
            requests: vec![[0; 5]; pools],
            attempts: vec![[0; Outcome::ALL.len()]; pools],
            retried: vec![vec![0; pools]; pools],
            rescued: vec![vec![0; pools]; pools],
            durations: vec![Histogram::default(); pools],
        }
    }

    /// Requests counted, all pools and classes.
    pub fn request_count(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }

    pub fn malformed_count(&self) -> u64 {
        self.malformed.iter().sum()
    }

    /// Malformed datagrams by reason, the reasons that occurred only.
    pub fn malformed_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        occurred(&MALFORMED_REASONS, &self.malformed)
    }

    /// Rejected datagrams by reason, the reasons that occurred only.
    pub fn rejected_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        occurred(&REJECTED_REASONS, &self.rejected)
    }

    /// Ignored durations by field, the fields that had any only.
    pub fn invalid_durations_by_field(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        occurred(&DURATION_FIELDS, &self.invalid_durations)
    }
}

fn occurred<'a>(
    labels: &'a [&'static str],
    counts: &'a [u64],
) -> impl Iterator<Item = (&'static str, u64)> + 'a {
    labels
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (*r, *n))
}

/// Window sizes and known names, fixed at start-up.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub pools: PoolSet,
    pub configured_addrs: Vec<(String, PoolId)>,
    pub window_size: usize,
    pub window_seconds: u32,
    pub serving_window: usize,
}

/// The command line's defaults: pools blue and green, windows of 200
/// attempts and 60 s, serving pool over the last 20 requests.
impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            pools: PoolSet::new(&["blue".into(), "green".into()]),
            configured_addrs: vec![],
            window_size: 200,
            window_seconds: 60,
            serving_window: 20,
        }
    }
}

/// The state a stream of datagrams builds.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub pools: PoolSet,
    pub addrs: AddrMap,
    pub windows: Vec<PoolWindows>,
    pub serving: ServingRing,
    pub totals: Totals,
    /// Last release id each pool answered with (`X-Release-Id`), capped.
    pub releases: Vec<String>,
    /// Window second of each pool's latest attempt (client aborts aside),
    /// `None` before its first.
    pub last_attempt: Vec<Option<u64>>,
}

/// Longest release id kept; longer ones are cut (they come from requests).
const MAX_RELEASE: usize = 128;

impl Pipeline {
    pub fn new(cfg: &PipelineConfig) -> Pipeline {
        let n = cfg.pools.len();
        Pipeline {
            pools: cfg.pools.clone(),
            addrs: AddrMap::with_configured(cfg.configured_addrs.iter().cloned()),
            windows: (0..n)
                .map(|_| PoolWindows::new(cfg.window_size, cfg.window_seconds))
                .collect(),
            serving: ServingRing::new(cfg.serving_window, n),
            totals: Totals::new(n),
            releases: (0..n).map(|_| String::with_capacity(MAX_RELEASE)).collect(),
            last_attempt: vec![None; n],
        }
    }

    /// Process one datagram held in `buf[..len]`. `buf` must have at least
    /// [`crate::record::INPUT_PADDING`] spare bytes after `len`. `clock` gives
    /// the window time in seconds: the receive time when live, the record's
    /// own `time` in a replay.
    pub fn process(
        &mut self,
        decoder: &mut Decoder,
        buf: &mut [u8],
        len: usize,
        clock: impl FnOnce(&AccessRecord<'_>) -> u64,
    ) -> Result<(), Malformed> {
        self.process_with(decoder, buf, len, |_, r| clock(r))
    }

    /// [`Pipeline::process`] whose `clock` also sees the pipeline as it
    /// stands before the record counts: a replay judges what its earlier
    /// lines built when a line opens a new second.
    pub fn process_with(
        &mut self,
        decoder: &mut Decoder,
        buf: &mut [u8],
        len: usize,
        clock: impl FnOnce(&Pipeline, &AccessRecord<'_>) -> u64,
    ) -> Result<(), Malformed> {
        self.totals.datagrams += 1;
        self.totals.bytes += len as u64;
        let result = self.process_inner(decoder, buf, len, clock);
        if let Err(m) = result {
            self.totals.malformed[m.index()] += 1;
        }
        result
    }

    /// Count a datagram the socket delivered cut short (it never happens with
    /// 64 KiB buffers, but a smaller `--recv-buffer`-style setting or a
    /// hostile sender must not be mistaken for a request), or a replayed
    /// line longer than any datagram.
    pub fn count_truncated(&mut self, len: u64) {
        self.totals.datagrams += 1;
        self.totals.bytes += len;
        self.totals.malformed[Malformed::TRUNCATED.index()] += 1;
    }

    /// Count a datagram from a source outside the allowlist, dropped unread.
    pub fn count_rejected_source(&mut self, len: usize) {
        self.totals.datagrams += 1;
        self.totals.bytes += len as u64;
        self.totals.rejected[0] += 1;
    }

    fn process_inner(
        &mut self,
        decoder: &mut Decoder,
        buf: &mut [u8],
        len: usize,
        clock: impl FnOnce(&Pipeline, &AccessRecord<'_>) -> u64,
    ) -> Result<(), Malformed> {
        let record = decode(decoder, buf, len)?;
        let now = clock(self, &record);
        self.apply(&record, now);
        Ok(())
    }

    /// Count a datagram of `len` bytes that [`decode`] made into `decoded`
    /// and, if it is a request, fold it in at window clock `now`: the half
    /// of [`Pipeline::process`] that needs the pipeline.
    pub fn fold(&mut self, decoded: &Result<AccessRecord<'_>, Malformed>, len: usize, now: u64) {
        self.totals.datagrams += 1;
        self.totals.bytes += len as u64;
        match decoded {
            Ok(record) => self.apply(record, now),
            Err(m) => self.totals.malformed[m.index()] += 1,
        }
    }

    /// Fold one decoded request into the windows and totals.
    pub fn apply(&mut self, r: &AccessRecord<'_>, now: u64) {
        let t = &mut self.totals;
        if r.repaired_utf8 {
            t.invalid_utf8 += 1;
        }
        // When nginx ends on "no live upstream" it answers itself: the pool
        // header then names an earlier try, not who served the client.
        let ends_no_live = upstream::ends_with_no_live_upstream(r.upstream_addr);
        let serving = if ends_no_live {
            self.pools.none()
        } else {
            self.pools.classify(r.pool)
        };
        let unknown = self.pools.unknown();
        let class = usize::from(r.status / 100).clamp(1, 5) - 1;
        // NaN (logged but unreadable) fails the range check too.
        let seconds = r.request_time.filter(|s| {
            let ok = (0.0..=MAX_DURATION_SECS).contains(s);
            t.invalid_durations[0] += u64::from(!ok);
            ok
        });
        if !upstream::response_times_plausible(r.upstream_response_time) {
            t.invalid_durations[1] += 1;
        }
        let final_obs = Observation {
            flags: window::FINAL
                | if r.status >= 500 {
                    window::CLIENT_5XX
                } else {
                    0
                }
                | if seconds.is_some() { window::TIMED } else { 0 },
            latency_us: seconds.map_or(0, |s| (s * 1e6).min(f64::from(u32::MAX)) as u32),
        };

        let mut first_pool = None;
        let mut last_pool = None;
        let mut final_pushed = false;
        let mut tried = 0;
        let mut no_live = false;
        // One pass over the lists; a one-attempt lookahead says whether an
        // attempt is the last one that reached a server (nginx only ever
        // appends the no-live marker at the end).
        let mut attempts = upstream::attempts(r.upstream_status, r.upstream_addr, "").peekable();
        while let Some(a) = attempts.next() {
            if a.is_no_live_upstream() {
                no_live = true;
                continue;
            }
            tried += 1;
            let last = attempts.peek().is_none();
            let outcome = if upstream::client_aborted(&a, last, r.status) {
                Outcome::ClientAbort
            } else {
                a.outcome
            };
            // The pool header is that of the last response nginx received.
            // Only a last attempt that plainly answered (not a refused
            // connection or a timeout, which leave the header of an earlier
            // try) teaches us its server's pool.
            let answered = matches!(a.outcome, Outcome::Success | Outcome::Error5xx);
            let pool = if last && answered && serving < self.pools.none() {
                match self.addrs.learn(a.addr, serving) {
                    // A full map remembers nothing new, but this response
                    // still names its pool.
                    Learned::New | Learned::Same | Learned::Full => serving,
                    Learned::Conflict { pool } => {
                        t.address_conflicts += 1;
                        pool
                    }
                    Learned::Moved { from } => {
                        t.address_conflicts += 1;
                        t.address_moves += 1;
                        tracing::warn!(
                            server = a.addr,
                            from = self.pools.label(from),
                            to = self.pools.label(serving),
                            responses = pools::MOVE_AFTER,
                            "server moved to another pool: its latest responses all named the new one"
                        );
                        serving
                    }
                }
            } else {
                self.addrs.lookup(a.addr).unwrap_or(unknown)
            };
            t.attempts[pool][outcome.index()] += 1;
            if outcome != Outcome::ClientAbort {
                self.last_attempt[pool] = Some(now);
            }
            // A client abort says nothing about the upstream: it is no
            // attempt in the windows, so no ratio counts it either way.
            let mut obs = Observation {
                flags: match outcome {
                    Outcome::ClientAbort => 0,
                    o if o.is_failure() => window::ATTEMPT | window::FAILED,
                    _ => window::ATTEMPT,
                },
                latency_us: 0,
            };
            if last && pool == serving {
                obs.flags |= final_obs.flags;
                obs.latency_us = final_obs.latency_us;
                final_pushed = true;
            }
            if obs.flags != 0 {
                self.windows[pool].push(now, obs);
            }
            first_pool.get_or_insert(pool);
            last_pool = Some(pool);
        }
        if !final_pushed {
            self.windows[serving].push(now, final_obs);
        }
        if no_live {
            t.no_live_upstream += 1;
        }
        if let (Some(from), Some(to)) = (first_pool, last_pool)
            && tried > 1
        {
            t.retried[from][to] += 1;
            if r.status < 500 {
                t.rescued[from][to] += 1;
            }
        }
        t.requests[serving][class] += 1;
        if let Some(s) = seconds {
            t.durations[serving].observe(s);
        }
        if serving < self.pools.none() {
            self.serving.push(serving);
            let release = &mut self.releases[serving];
            let cut = floor_char_boundary(r.release, MAX_RELEASE);
            // Compare first: the common case keeps the same release and
            // must not touch the allocator.
            if !r.release.is_empty() && release != cut {
                release.clear();
                release.push_str(cut);
            }
        }
    }

    /// The pool serving most of the recent requests.
    pub fn serving_pool(&self) -> Option<PoolId> {
        self.serving.serving(|_| true)
    }

    /// Whether pool `id` is idle at window second `now`: its time window
    /// (the last `WINDOW_SECONDS`) holds no attempt, so nothing recent can
    /// be said about its health. A pool never tried is idle too.
    pub fn is_idle(&self, id: PoolId, now: u64) -> bool {
        self.windows[id].time.sums(now).attempts == 0
    }
}

/// Frame and decode the datagram `buf[..len]` (`buf` padded as
/// [`Decoder::decode`] needs) into a request: the half of
/// [`Pipeline::process`] that needs no pipeline, so a receive thread does
/// it before taking the lock.
pub fn decode<'a>(
    decoder: &mut Decoder,
    buf: &'a mut [u8],
    len: usize,
) -> Result<AccessRecord<'a>, Malformed> {
    let frame = syslog::parse(&buf[..len])?;
    let msg_len = frame.msg.end - frame.msg.start;
    let record = decoder.decode(&mut buf[frame.msg.start..], msg_len)?;
    if upstream::too_many_attempts(record.upstream_addr) {
        return Err(Malformed::TOO_MANY_ATTEMPTS);
    }
    Ok(record)
}

fn floor_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::INPUT_PADDING;

    fn pipeline() -> Pipeline {
        Pipeline::new(&PipelineConfig::default())
    }

    fn feed(p: &mut Pipeline, line: &str) -> Result<(), Malformed> {
        let mut buf = line.as_bytes().to_vec();
        let len = buf.len();
        buf.resize(len + INPUT_PADDING, 0);
        p.process(&mut Decoder::new(), &mut buf, len, |_| 10)
    }

    fn line(status: u16, ups: &str, addrs: &str, pool: &str) -> String {
        format!(
            r#"<190>Nov  5 09:07:03 web nginx: {{"status":{status},"request_time":0.012,"upstream_status":"{ups}","upstream_addr":"{addrs}","pool":"{pool}"}}"#
        )
    }

    const BLUE: &str = "127.0.0.1:3001";
    const GREEN: &str = "127.0.0.1:3002";

    #[test]
    fn default_config_is_the_command_lines() {
        use clap::Parser;
        let cli = crate::config::Cli::try_parse_from(["poolwatch"]).unwrap();
        let from_cli = cli.pipeline.pipeline_config().unwrap();
        let d = PipelineConfig::default();
        assert_eq!(
            (d.window_size, d.window_seconds, d.serving_window),
            (
                from_cli.window_size,
                from_cli.window_seconds,
                from_cli.serving_window
            )
        );
        assert!(d.pools.labels().eq(from_cli.pools.labels()));
    }

    #[test]
    fn masked_failure_counts_against_the_pool_that_failed() {
        let mut p = pipeline();
        feed(&mut p, &line(200, "200", BLUE, "blue")).unwrap();
        feed(&mut p, &line(200, "200", GREEN, "green")).unwrap();
        feed(
            &mut p,
            &line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green"),
        )
        .unwrap();
        let t = &p.totals;
        assert_eq!(t.attempts[0][Outcome::Error5xx.index()], 1);
        assert_eq!(t.attempts[1][Outcome::Success.index()], 2);
        assert_eq!(t.retried[0][1], 1);
        assert_eq!(t.rescued[0][1], 1);
        assert_eq!(t.requests[1][1], 2);
        assert_eq!(p.releases[1], "");
        let blue = p.windows[0].count.sums();
        assert_eq!((blue.attempts, blue.failures, blue.requests), (2, 1, 1));
        let green = p.windows[1].count.sums();
        assert_eq!((green.attempts, green.failures, green.requests), (2, 0, 2));
    }

    #[test]
    fn unknown_server_until_learned() {
        let mut p = pipeline();
        feed(
            &mut p,
            &line(200, "500, 200", &format!("{BLUE}, {GREEN}"), "green"),
        )
        .unwrap();
        assert_eq!(
            p.totals.attempts[p.pools.unknown()][Outcome::Error5xx.index()],
            1
        );
        assert_eq!(p.totals.retried[p.pools.unknown()][1], 1);
    }

    #[test]
    fn nginx_own_answers_and_no_live_upstream() {
        let mut p = pipeline();
        feed(&mut p, &line(404, "", "", "")).unwrap();
        feed(&mut p, &line(502, "502", "backend", "")).unwrap();
        let none = p.pools.none();
        assert_eq!(p.totals.requests[none][3], 1);
        assert_eq!(p.totals.requests[none][4], 1);
        assert_eq!(p.totals.no_live_upstream, 1);
        assert_eq!(p.windows[none].count.sums().client_5xx, 1);
        assert_eq!(p.serving_pool(), None);
    }

    #[test]
    fn no_live_upstream_after_a_try_is_served_by_nginx() {
        let mut p = pipeline();
        feed(&mut p, &line(200, "200", GREEN, "green")).unwrap();
        feed(
            &mut p,
            &line(502, "500, 502", &format!("{GREEN}, backend"), "green"),
        )
        .unwrap();
        let none = p.pools.none();
        assert_eq!(p.totals.requests[none][4], 1);
        assert_eq!(p.totals.attempts[1][Outcome::Error5xx.index()], 1);
        assert_eq!(p.totals.no_live_upstream, 1);
        assert!(p.totals.retried.iter().flatten().all(|&n| n == 0));
    }

    #[test]
    fn refused_last_try_does_not_teach_a_wrong_pool() {
        let mut p = pipeline();
        // Blue answered 500, green refused: the pool header is blue's.
        feed(
            &mut p,
            &line(502, "500, 502", &format!("{BLUE}, {GREEN}"), "blue"),
        )
        .unwrap();
        assert_eq!(p.addrs.lookup(GREEN), None);
        assert_eq!(
            p.totals.attempts[p.pools.unknown()][Outcome::BadGateway.index()],
            1
        );
        assert_eq!(p.totals.requests[0][4], 1);
    }

    #[test]
    fn hostile_pool_names_fold_into_other() {
        let mut p = pipeline();
        for i in 0..100 {
            feed(
                &mut p,
                &line(200, "200", &format!("10.9.0.{i}:80"), &format!("x{i}")),
            )
            .unwrap();
        }
        assert_eq!(p.totals.requests[p.pools.other()][1], 100);
        assert_eq!(p.totals.requests.len(), 5);
    }

    #[test]
    fn malformed_is_counted_by_reason() {
        let mut p = pipeline();
        assert_eq!(
            feed(&mut p, "<190>garbage"),
            Err(Malformed("bad_syslog_header"))
        );
        assert_eq!(
            feed(
                &mut p,
                "<187>Nov  5 09:07:03 web nginx: 2026/11/05 [error] 1#1: boom"
            ),
            Err(Malformed("not_access_log"))
        );
        assert_eq!(
            feed(&mut p, "{\"status\":\"x\"}"),
            Err(Malformed("bad_status"))
        );
        assert_eq!(p.totals.malformed_count(), 3);
        assert_eq!(p.totals.datagrams, 3);
        assert_eq!(p.totals.request_count(), 0);
    }

    #[test]
    fn client_abort_is_counted_apart_and_is_no_failure() {
        let mut p = pipeline();
        feed(&mut p, &line(200, "200", BLUE, "blue")).unwrap();
        // The client left while nginx waited on blue: 499, `-` beside blue.
        feed(&mut p, &line(499, "-", BLUE, "")).unwrap();
        // Blue timed out and the client left while green was tried.
        feed(&mut p, &line(200, "200", GREEN, "green")).unwrap();
        feed(
            &mut p,
            &line(499, "504, -", &format!("{BLUE}, {GREEN}"), ""),
        )
        .unwrap();
        // `-` on a request nginx answered 502 itself stays a failure.
        feed(&mut p, &line(502, "-", BLUE, "")).unwrap();
        let t = &p.totals;
        assert_eq!(t.attempts[0][Outcome::ClientAbort.index()], 1);
        assert_eq!(t.attempts[1][Outcome::ClientAbort.index()], 1);
        assert_eq!(t.attempts[0][Outcome::Timeout.index()], 1);
        assert_eq!(t.attempts[0][Outcome::NoResponse.index()], 1);
        let blue = p.windows[0].count.sums();
        // 200, 504 and the 502's `-`: the abort is no attempt.
        assert_eq!((blue.attempts, blue.failures), (3, 2));
        let green = p.windows[1].count.sums();
        assert_eq!((green.attempts, green.failures), (1, 0));
        assert_eq!(t.requests[p.pools.none()][3], 2, "both 499s are 4xx");
    }

    #[test]
    fn a_pool_without_attempts_in_its_time_window_is_idle() {
        let mut p = pipeline();
        assert!(p.is_idle(0, 10), "never tried");
        feed(&mut p, &line(200, "200", BLUE, "blue")).unwrap();
        assert!(!p.is_idle(0, 10));
        assert_eq!(p.last_attempt[0], Some(10));
        assert!(!p.is_idle(0, 69));
        assert!(p.is_idle(0, 70), "WINDOW_SECONDS (60) without an attempt");
        assert!(p.is_idle(1, 10));
    }

    #[test]
    fn serving_pool_follows_traffic() {
        let mut p = pipeline();
        for _ in 0..15 {
            feed(&mut p, &line(200, "200", BLUE, "blue")).unwrap();
        }
        assert_eq!(p.serving_pool(), Some(0));
        for _ in 0..11 {
            feed(&mut p, &line(200, "200", GREEN, "green")).unwrap();
        }
        assert_eq!(p.serving_pool(), Some(1));
    }
}
