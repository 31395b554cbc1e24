//! Snapshot: the figures the rules read, copied out of the pipeline at one
//! instant.
//!
//! The alert loop holds the pipeline's lock only for this copy; the rules
//! then compare two snapshots of cumulative counters at leisure, so every
//! request is seen exactly once however often they run.

use crate::pipeline::Pipeline;
use crate::pools::PoolId;
use crate::upstream::Outcome;
use crate::window::Sums;

/// Figures copied out of the pipeline at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub labels: Vec<String>,
    pub known: usize,
    pub serving: Option<PoolId>,
    /// Count window of each pool.
    pub count: Vec<Sums>,
    /// Time window of each pool: what it did in the last `WINDOW_SECONDS`.
    pub time: Vec<Sums>,
    /// All pools' time windows together: what users saw lately.
    pub time_site: Sums,
    pub attempts: Vec<[u64; Outcome::ALL.len()]>,
    pub requests: Vec<[u64; 5]>,
    pub retried: Vec<Vec<u64>>,
    pub rescued: Vec<Vec<u64>>,
    pub no_live: u64,
    pub releases: Vec<String>,
}

impl Snapshot {
    /// Copy what the rules need; `now` is the window clock.
    pub fn take(p: &Pipeline, now: u64) -> Snapshot {
        let time: Vec<Sums> = p.windows.iter().map(|w| w.time.sums(now)).collect();
        let mut time_site = Sums::default();
        for s in &time {
            time_site.attempts += s.attempts;
            time_site.failures += s.failures;
            time_site.requests += s.requests;
            time_site.client_5xx += s.client_5xx;
        }
        Snapshot {
            labels: p.pools.labels().map(str::to_string).collect(),
            known: p.pools.known(),
            serving: p.serving_pool(),
            count: p.windows.iter().map(|w| w.count.sums()).collect(),
            time,
            time_site,
            attempts: p.totals.attempts.clone(),
            requests: p.totals.requests.clone(),
            retried: p.totals.retried.clone(),
            rescued: p.totals.rescued.clone(),
            no_live: p.totals.no_live_upstream,
            releases: p.releases.clone(),
        }
    }

    /// The figures of a pipeline that has seen nothing yet.
    pub fn zero_like(s: &Snapshot) -> Snapshot {
        let n = s.labels.len();
        Snapshot {
            labels: s.labels.clone(),
            known: s.known,
            serving: None,
            count: vec![Sums::default(); n],
            time: vec![Sums::default(); n],
            time_site: Sums::default(),
            attempts: vec![[0; Outcome::ALL.len()]; n],
            requests: vec![[0; 5]; n],
            retried: vec![vec![0; n]; n],
            rescued: vec![vec![0; n]; n],
            no_live: 0,
            releases: vec![String::new(); n],
        }
    }

    pub fn failures(&self, pool: PoolId) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| o.is_failure())
            .map(|o| self.attempts[pool][o.index()])
            .sum()
    }

    /// Attempts `pool` answered (any status below 500).
    pub fn answered(&self, pool: PoolId) -> u64 {
        self.attempts[pool][Outcome::Success.index()]
    }

    /// Attempts that reached a verdict on `pool`: answered or failed.
    /// Client aborts are no verdict.
    pub fn tried(&self, pool: PoolId) -> u64 {
        self.answered(pool) + self.failures(pool)
    }

    /// No attempt on `pool` in its time window: nothing recent is known
    /// about its health (see `Pipeline::is_idle`).
    pub fn is_idle(&self, pool: PoolId) -> bool {
        self.time[pool].attempts == 0
    }

    pub fn client_5xx(&self) -> u64 {
        self.requests.iter().map(|r| r[4]).sum()
    }

    pub fn retried_from(&self, pool: PoolId) -> u64 {
        self.retried[pool].iter().sum()
    }

    pub fn release(&self, pool: PoolId) -> &str {
        match self.releases[pool].as_str() {
            "" => "unknown",
            r => r,
        }
    }
}
