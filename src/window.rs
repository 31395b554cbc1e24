//! Windows: what each pool did recently, in memory fixed at start-up.
//!
//! Two views per pool, both ring buffers sized once from the settings:
//! - a count window over the last `WINDOW_SIZE` observations, which reacts
//!   as fast on a quiet pool as on a busy one;
//! - a time window of per-second buckets over the last `WINDOW_SECONDS`,
//!   which says what "now" looks like regardless of traffic.
//!
//! An observation is an upstream attempt (failed or not), the final response
//! of a request (client-visible status and `request_time`), or both when the
//! attempt produced the final response. Time is the receive time in whole
//! seconds since start, so skewed nginx clocks cannot bend the windows.
//!
//! Updates are O(1) with running sums; quantiles are computed on read, off
//! the receive path.

use serde::Serialize;

/// The observation is an upstream attempt.
pub const ATTEMPT: u8 = 1;
/// The attempt failed (5xx, timeout, no response).
pub const FAILED: u8 = 2;
/// The observation is the final response of a request.
pub const FINAL: u8 = 4;
/// The final response was a 5xx: the client saw an error.
pub const CLIENT_5XX: u8 = 8;
/// The final response has a plausible `request_time` in `latency_us`;
/// without it the request counts but has no latency.
pub const TIMED: u8 = 16;

/// One entry: flags above and, for a timed final response, its
/// `request_time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    pub flags: u8,
    pub latency_us: u32,
}

/// Running totals of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sums {
    pub attempts: u64,
    pub failures: u64,
    pub requests: u64,
    pub client_5xx: u64,
}

impl Sums {
    fn apply(&mut self, o: Observation, sign: i64) {
        let add = |v: &mut u64, on: bool| {
            if on {
                *v = v.wrapping_add_signed(sign);
            }
        };
        add(&mut self.attempts, o.flags & ATTEMPT != 0);
        add(&mut self.failures, o.flags & FAILED != 0);
        add(&mut self.requests, o.flags & FINAL != 0);
        add(&mut self.client_5xx, o.flags & CLIENT_5XX != 0);
    }

    fn merge(&mut self, o: &Sums) {
        self.attempts += o.attempts;
        self.failures += o.failures;
        self.requests += o.requests;
        self.client_5xx += o.client_5xx;
    }

    /// Upstream failures per attempt, if there were attempts.
    pub fn upstream_error_ratio(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.failures as f64 / self.attempts as f64)
    }

    /// Client-visible 5xx per request, if there were requests.
    pub fn client_error_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.client_5xx as f64 / self.requests as f64)
    }
}

/// What a window says, for `/state`, metrics and rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WindowStats {
    #[serde(flatten)]
    pub sums: Sums,
    pub upstream_error_ratio: Option<f64>,
    pub client_error_ratio: Option<f64>,
    /// `request_time` quantiles in seconds: p50, p95, p99.
    pub latency_seconds: Option<[f64; 3]>,
    /// Sum of `request_time` over the window's timed requests, in seconds.
    pub latency_sum_seconds: f64,
    /// Requests with a `request_time` in the window: the quantiles' count.
    pub latency_count: u64,
}

impl WindowStats {
    fn new(
        sums: Sums,
        latency_seconds: Option<[f64; 3]>,
        sum_us: u64,
        latency_count: u64,
    ) -> WindowStats {
        WindowStats {
            sums,
            upstream_error_ratio: sums.upstream_error_ratio(),
            client_error_ratio: sums.client_error_ratio(),
            latency_seconds,
            latency_sum_seconds: sum_us as f64 / 1e6,
            latency_count,
        }
    }
}

pub const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// The last N observations.
#[derive(Debug, Clone)]
pub struct CountWindow {
    slots: Box<[Observation]>,
    next: usize,
    len: usize,
    sums: Sums,
}

impl CountWindow {
    pub fn new(size: usize) -> CountWindow {
        CountWindow {
            slots: vec![Observation::default(); size.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
            sums: Sums::default(),
        }
    }

    pub fn push(&mut self, o: Observation) {
        if self.len == self.slots.len() {
            self.sums.apply(self.slots[self.next], -1);
        } else {
            self.len += 1;
        }
        self.slots[self.next] = o;
        self.sums.apply(o, 1);
        self.next = advance(self.next, self.slots.len());
    }

    pub fn sums(&self) -> Sums {
        self.sums
    }

    pub fn stats(&self) -> WindowStats {
        let mut lat: Vec<u32> = self.slots[..self.len]
            .iter()
            .filter(|o| o.flags & (FINAL | TIMED) == FINAL | TIMED)
            .map(|o| o.latency_us)
            .collect();
        let sum_us = lat.iter().map(|&v| u64::from(v)).sum();
        let q = (!lat.is_empty()).then(|| {
            lat.sort_unstable();
            QUANTILES.map(|q| {
                // Nearest rank: the smallest value with at least q of the
                // samples at or below it.
                let rank = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
                f64::from(lat[rank - 1]) / 1e6
            })
        });
        WindowStats::new(self.sums, q, sum_us, lat.len() as u64)
    }
}

/// Log-linear latency buckets: four per doubling of microseconds, so a
/// quantile read from them is within about 12 % of the true value.
const LAT_BUCKETS: usize = 108;

fn lat_bucket(us: u32) -> usize {
    let v = us.max(1);
    let msb = 31 - v.leading_zeros() as usize;
    if msb < 2 {
        return v as usize;
    }
    let sub = ((v >> (msb - 2)) & 3) as usize;
    (4 + (msb - 2) * 4 + sub).min(LAT_BUCKETS - 1)
}

/// Midpoint of a bucket, in microseconds.
fn lat_bucket_value(i: usize) -> f64 {
    if i < 4 {
        return i.max(1) as f64;
    }
    let msb = (i - 4) / 4 + 2;
    let sub = ((i - 4) % 4) as u64;
    let lo = (1u64 << msb) + (sub << (msb - 2));
    let width = 1u64 << (msb - 2);
    lo as f64 + width as f64 / 2.0
}

#[derive(Debug, Clone)]
struct Second {
    at: u64,
    sums: Sums,
    latency_sum_us: u64,
    latency: [u32; LAT_BUCKETS],
}

/// The ring position after `i` in a ring of `len`: a compare, not the
/// division `%` would cost on every push.
#[inline]
fn advance(i: usize, len: usize) -> usize {
    if i + 1 == len { 0 } else { i + 1 }
}

/// Per-second buckets over the last T seconds.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    seconds: Box<[Second]>,
    /// The second last pushed to and its bucket: every push of a second
    /// lands in the same one, and a division per push is measurable at
    /// line rate.
    current: (u64, usize),
}

impl TimeWindow {
    pub fn new(seconds: u32) -> TimeWindow {
        let empty = Second {
            at: u64::MAX,
            sums: Sums::default(),
            latency_sum_us: 0,
            latency: [0; LAT_BUCKETS],
        };
        TimeWindow {
            seconds: vec![empty; seconds.max(1) as usize].into_boxed_slice(),
            current: (u64::MAX, 0),
        }
    }

    pub fn push(&mut self, now: u64, o: Observation) {
        if self.current.0 != now {
            self.current = (now, (now % self.seconds.len() as u64) as usize);
        }
        let s = &mut self.seconds[self.current.1];
        if s.at != now {
            s.at = now;
            s.sums = Sums::default();
            s.latency_sum_us = 0;
            s.latency = [0; LAT_BUCKETS];
        }
        s.sums.apply(o, 1);
        if o.flags & (FINAL | TIMED) == FINAL | TIMED {
            s.latency[lat_bucket(o.latency_us)] += 1;
            s.latency_sum_us += u64::from(o.latency_us);
        }
    }

    fn live(&self, now: u64) -> impl Iterator<Item = &Second> {
        let n = self.seconds.len() as u64;
        self.seconds
            .iter()
            .filter(move |s| s.at != u64::MAX && s.at <= now && now - s.at < n)
    }

    pub fn sums(&self, now: u64) -> Sums {
        let mut sums = Sums::default();
        for s in self.live(now) {
            sums.merge(&s.sums);
        }
        sums
    }

    /// The window second by second, oldest first, ending with `now` (still
    /// filling): one entry per second of the window, empty seconds as
    /// zeros. What the status page draws, so that a page opened
    /// mid-incident shows the whole window at once.
    pub fn series(&self, now: u64) -> Vec<Sums> {
        let n = self.seconds.len() as u64;
        (0..n)
            .rev()
            .map(|back| {
                let Some(at) = now.checked_sub(back) else {
                    return Sums::default();
                };
                let s = &self.seconds[(at % n) as usize];
                if s.at == at { s.sums } else { Sums::default() }
            })
            .collect()
    }

    pub fn stats(&self, now: u64) -> WindowStats {
        let mut hist = [0u64; LAT_BUCKETS];
        let mut sums = Sums::default();
        let mut sum_us = 0;
        for s in self.live(now) {
            sums.merge(&s.sums);
            sum_us += s.latency_sum_us;
            for (h, c) in hist.iter_mut().zip(s.latency.iter()) {
                *h += u64::from(*c);
            }
        }
        let total: u64 = hist.iter().sum();
        let q = (total > 0).then(|| {
            QUANTILES.map(|q| {
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
                let mut seen = 0;
                let i = hist
                    .iter()
                    .position(|c| {
                        seen += c;
                        seen >= rank
                    })
                    .unwrap_or(LAT_BUCKETS - 1);
                lat_bucket_value(i) / 1e6
            })
        });
        WindowStats::new(sums, q, sum_us, total)
    }
}

/// Both windows of one pool.
#[derive(Debug, Clone)]
pub struct PoolWindows {
    pub count: CountWindow,
    pub time: TimeWindow,
}

impl PoolWindows {
    pub fn new(size: usize, seconds: u32) -> PoolWindows {
        PoolWindows {
            count: CountWindow::new(size),
            time: TimeWindow::new(seconds),
        }
    }

    pub fn push(&mut self, now: u64, o: Observation) {
        self.count.push(o);
        self.time.push(now, o);
    }
}

/// Which pool served the last N requests: the one with most final responses.
#[derive(Debug, Clone)]
pub struct ServingRing {
    ring: Box<[u8]>,
    next: usize,
    len: usize,
    counts: Vec<u32>,
}

impl ServingRing {
    pub fn new(size: usize, pools: usize) -> ServingRing {
        assert!(pools <= usize::from(u8::MAX), "pool ids fit in a byte");
        ServingRing {
            ring: vec![0; size.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
            counts: vec![0; pools],
        }
    }

    pub fn push(&mut self, pool: usize) {
        if self.len == self.ring.len() {
            self.counts[usize::from(self.ring[self.next])] -= 1;
        } else {
            self.len += 1;
        }
        self.ring[self.next] = pool as u8;
        self.counts[pool] += 1;
        self.next = advance(self.next, self.ring.len());
    }

    /// The pool with the most of the last requests; ties go to the one that
    /// served most recently, so a fresh switch wins a dead heat.
    pub fn serving(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let best = (0..self.counts.len())
            .filter(|&p| eligible(p) && self.counts[p] > 0)
            .max_by_key(|&p| self.counts[p])?;
        let top = self.counts[best];
        // Walk back from the newest entry to break ties by recency.
        (1..=self.len)
            .map(|k| usize::from(self.ring[(self.next + self.ring.len() - k) % self.ring.len()]))
            .find(|&p| eligible(p) && self.counts[p] == top)
    }

    pub fn counts(&self) -> &[u32] {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A final response carries its latency unless said otherwise.
    fn ob(flags: u8, ms: u32) -> Observation {
        Observation {
            flags: if flags & FINAL != 0 {
                flags | TIMED
            } else {
                flags
            },
            latency_us: ms * 1000,
        }
    }

    #[test]
    fn count_window_evicts_oldest() {
        let mut w = CountWindow::new(3);
        w.push(ob(ATTEMPT | FAILED, 0));
        w.push(ob(ATTEMPT | FINAL, 10));
        w.push(ob(ATTEMPT | FINAL, 20));
        assert_eq!(w.sums().failures, 1);
        w.push(ob(ATTEMPT | FINAL | CLIENT_5XX, 30));
        let s = w.stats();
        assert_eq!(s.sums.failures, 0);
        assert_eq!(s.sums.attempts, 3);
        assert_eq!(s.sums.requests, 3);
        assert_eq!(s.sums.client_5xx, 1);
        assert_eq!(s.latency_seconds, Some([0.02, 0.03, 0.03]));
    }

    #[test]
    fn count_window_quantiles_nearest_rank() {
        let mut w = CountWindow::new(200);
        for ms in 1..=100 {
            w.push(ob(FINAL, ms));
        }
        assert_eq!(w.stats().latency_seconds, Some([0.05, 0.095, 0.099]));
        assert_eq!(CountWindow::new(5).stats().latency_seconds, None);
    }

    #[test]
    fn time_window_expires_by_second() {
        let mut w = TimeWindow::new(60);
        w.push(100, ob(ATTEMPT | FAILED, 0));
        w.push(130, ob(ATTEMPT | FINAL, 5));
        assert_eq!(w.sums(130).attempts, 2);
        assert_eq!(w.sums(159).attempts, 2);
        assert_eq!(w.sums(160).attempts, 1);
        assert_eq!(w.sums(160).failures, 0);
        assert_eq!(w.sums(190).attempts, 0);
        // A slot reused after wrapping starts empty.
        w.push(220, ob(ATTEMPT, 0));
        assert_eq!(w.sums(220).attempts, 1);
    }

    #[test]
    fn time_window_series_is_per_second_oldest_first() {
        let mut w = TimeWindow::new(4);
        w.push(10, ob(ATTEMPT | FAILED, 0));
        w.push(12, ob(ATTEMPT | FINAL, 5));
        w.push(12, ob(ATTEMPT | FINAL, 5));
        let attempts = |now| w.series(now).iter().map(|s| s.attempts).collect::<Vec<_>>();
        assert_eq!(attempts(12), [0, 1, 0, 2]);
        assert_eq!(w.series(12)[1].failures, 1);
        // Seconds that left the window, or that a wrapped slot reused,
        // count as empty.
        assert_eq!(attempts(14), [0, 2, 0, 0]);
        assert_eq!(attempts(30), [0, 0, 0, 0]);
        // Just after start, the seconds before zero are empty too.
        assert_eq!(TimeWindow::new(3).series(1).len(), 3);
    }

    #[test]
    fn time_window_quantiles_are_close() {
        let mut w = TimeWindow::new(10);
        for ms in 1..=1000 {
            w.push(5, ob(FINAL, ms));
        }
        let [p50, p95, p99] = w.stats(5).latency_seconds.unwrap();
        for (got, want) in [(p50, 0.5), (p95, 0.95), (p99, 0.99)] {
            assert!((got - want).abs() / want < 0.13, "{got} vs {want}");
        }
    }

    #[test]
    fn latency_buckets_are_monotonic_and_contain_their_values() {
        let mut last = 0;
        for us in [
            1u32,
            2,
            3,
            4,
            5,
            7,
            8,
            100,
            1000,
            65_535,
            1_000_000,
            u32::MAX,
        ] {
            let b = lat_bucket(us);
            assert!(b >= last && b < LAT_BUCKETS);
            last = b;
        }
        for us in [5u32, 100, 1234, 99_999] {
            let mid = lat_bucket_value(lat_bucket(us));
            assert!((mid - f64::from(us)).abs() / f64::from(us) < 0.13);
        }
    }

    #[test]
    fn untimed_requests_count_without_a_latency() {
        let untimed = Observation {
            flags: FINAL,
            latency_us: 0,
        };
        let mut c = CountWindow::new(10);
        let mut t = TimeWindow::new(10);
        for o in [ob(FINAL, 40), untimed, untimed] {
            c.push(o);
            t.push(3, o);
        }
        for s in [c.stats(), t.stats(3)] {
            assert_eq!(s.sums.requests, 3);
            assert_eq!(s.latency_count, 1);
            assert!((s.latency_sum_seconds - 0.04).abs() < 1e-9);
            let [p50, _, p99] = s.latency_seconds.unwrap();
            assert!(p50 > 0.03 && p99 > 0.03, "{s:?}");
        }
    }

    #[test]
    fn serving_is_the_majority_with_recency_tiebreak() {
        let mut r = ServingRing::new(4, 3);
        assert_eq!(r.serving(|_| true), None);
        for p in [0, 0, 1, 1] {
            r.push(p);
        }
        assert_eq!(r.serving(|_| true), Some(1));
        r.push(0);
        assert_eq!(r.serving(|_| true), Some(0));
        assert_eq!(r.serving(|p| p != 0), Some(1));
    }
}
