//! Shared state: what the receive threads update and the HTTP side reads.
//!
//! One mutex guards the pipeline. A receive thread (or its parse worker)
//! decodes without it and takes it once per chunk of up to 16 decoded
//! datagrams, to fold them in, so a reader may see part of a batch; readers
//! take it to copy figures out and compute from the copy, so neither side
//! holds it for long.
//!
//! Liveness ([`Liveness`]): each receive thread says when it enters its
//! receive call and when it leaves it. A thread waiting in `recvmmsg` on a
//! quiet socket is healthy however long the quiet lasts, so it needs no
//! periodic wake-up to prove it; a thread that left the call and has not
//! come back within [`STUCK_AFTER`] (blocked on a lock, a stalled worker, a
//! receive call that keeps failing) is stuck, and one that ended is dead.
//!
//! The alert loop's wake-up: with nothing to watch, the alert loop sleeps
//! (see `alerting::engine`), and the first batch after the quiet wakes it
//! ([`Shared::batch_arrived`]): one relaxed load per batch while it is
//! awake, a `Notify` only when it sleeps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::pipeline::Pipeline;
use crate::pools::Source;
use crate::window::WindowStats;

/// A listener as reported in logs and `/state`.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    pub name: String,
    pub granted_buffer_bytes: usize,
    #[serde(skip)]
    pub inode: Option<u64>,
}

/// How long a receive thread may spend away from its receive call (parsing,
/// waiting for the lock or for the parse worker) before it counts as
/// stuck. A batch takes well under a millisecond.
pub const STUCK_AFTER: Duration = Duration::from_secs(3);

/// Where a receive thread is, as one word it writes with a relaxed store
/// twice per batch and `/healthz` reads.
#[derive(Debug)]
pub struct Liveness(AtomicU64);

/// What [`Liveness`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopState {
    /// Waiting in its receive call: alive, whether traffic comes or not.
    Receiving,
    /// Out of its receive call since this many milliseconds after start.
    Busy { since_ms: u64 },
    /// The thread ended (shutdown, or a panic).
    Stopped,
}

impl Liveness {
    const RECEIVING: u64 = 0;
    const STOPPED: u64 = u64::MAX;

    fn new() -> Liveness {
        // Busy from the start: a thread that never reaches its receive
        // call is stuck.
        Liveness(AtomicU64::new(1))
    }

    /// One that no `Shared` reports: for a receive thread started without
    /// a slot.
    pub fn detached() -> Liveness {
        Liveness::new()
    }

    /// About to enter the receive call.
    #[inline]
    pub fn receiving(&self) {
        self.0.store(Self::RECEIVING, Ordering::Relaxed);
    }

    /// Out of the receive call since `ms` after start.
    #[inline]
    pub fn busy(&self, ms: u64) {
        self.0.store(
            ms.saturating_add(1).min(Self::STOPPED - 1),
            Ordering::Relaxed,
        );
    }

    pub fn stopped(&self) {
        self.0.store(Self::STOPPED, Ordering::Relaxed);
    }

    pub fn state(&self) -> LoopState {
        match self.0.load(Ordering::Relaxed) {
            Self::RECEIVING => LoopState::Receiving,
            Self::STOPPED => LoopState::Stopped,
            v => LoopState::Busy { since_ms: v - 1 },
        }
    }
}

impl LoopState {
    /// Why a loop in this state at `now_ms` after start is unhealthy, if
    /// it is.
    pub fn problem(self, now_ms: u64) -> Option<String> {
        match self {
            LoopState::Receiving => None,
            LoopState::Busy { since_ms } => {
                let busy = Duration::from_millis(now_ms.saturating_sub(since_ms));
                (busy >= STUCK_AFTER).then(|| {
                    format!(
                        "out of its receive call for {:.1} s (stuck)",
                        busy.as_secs_f64()
                    )
                })
            }
            LoopState::Stopped => Some("stopped".to_string()),
        }
    }
}

pub struct Shared {
    pipeline: Mutex<Pipeline>,
    started: Instant,
    /// One per listener, in the same order.
    loops: Vec<Liveness>,
    pub listeners: Vec<ListenerInfo>,
    /// Settings in force, secrets already redacted.
    pub settings: serde_json::Value,
    /// The alert loop sleeps until the next batch (or its idle tick).
    alert_loop_asleep: AtomicBool,
    /// Wakes the alert loop; notified from plain OS threads too.
    alert_loop_wake: Notify,
}

impl Shared {
    pub fn new(
        pipeline: Pipeline,
        listeners: Vec<ListenerInfo>,
        settings: serde_json::Value,
    ) -> Shared {
        Shared {
            pipeline: Mutex::new(pipeline),
            started: Instant::now(),
            loops: listeners.iter().map(|_| Liveness::new()).collect(),
            listeners,
            settings,
            alert_loop_asleep: AtomicBool::new(false),
            alert_loop_wake: Notify::new(),
        }
    }

    /// The pipeline; a panic elsewhere never locks the receiver out.
    pub fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Window clock: whole seconds since start.
    pub fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Time since start, for [`Liveness::busy`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A batch was just folded into the pipeline: wake the alert loop if
    /// it sleeps. Called by the receive side once per batch, after the
    /// pipeline's lock: one relaxed load while the loop is awake. The lock
    /// orders it against the loop, which says it sleeps before it looks at
    /// the pipeline one last time ([`Shared::alert_loop_sleeps`]): either
    /// that look sees this batch, or this load sees the flag.
    #[inline]
    pub fn batch_arrived(&self) {
        if self.alert_loop_asleep.load(Ordering::Relaxed)
            && self.alert_loop_asleep.swap(false, Ordering::Relaxed)
        {
            self.alert_loop_wake.notify_one();
        }
    }

    /// Wake the alert loop for something other than traffic (a maintenance
    /// change): unconditionally, so that a change made just before it goes
    /// to sleep is not missed; when it is awake, the permit this leaves
    /// costs it one early tick at most.
    pub fn wake_alert_loop(&self) {
        self.alert_loop_asleep.store(false, Ordering::Relaxed);
        self.alert_loop_wake.notify_one();
    }

    /// The alert loop is about to sleep: from now on a batch wakes it. It
    /// then looks at the pipeline once more before it waits on
    /// [`Shared::alert_loop_woken`].
    pub(crate) fn alert_loop_sleeps(&self) {
        self.alert_loop_asleep.store(true, Ordering::Relaxed);
    }

    /// The alert loop is awake: batches need not wake it.
    pub(crate) fn alert_loop_awake(&self) {
        self.alert_loop_asleep.store(false, Ordering::Relaxed);
    }

    /// Completes once the alert loop is woken; a wake that came before
    /// this is called is kept (one permit).
    pub(crate) fn alert_loop_woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.alert_loop_wake.notified()
    }

    /// The liveness of listener `index`'s receive thread.
    pub fn liveness(&self, index: usize) -> Option<&Liveness> {
        self.loops.get(index)
    }

    /// What is wrong with the receive threads, one line each; empty when
    /// every one is in its receive call or has left it only just.
    pub fn health_problems(&self) -> Vec<String> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.loops
            .iter()
            .zip(&self.listeners)
            .filter_map(|(l, info)| {
                let problem = l.state().problem(now_ms)?;
                Some(format!("receive thread of {}: {problem}", info.name))
            })
            .collect()
    }

    /// The `/state` document.
    pub fn snapshot(&self) -> StateDoc {
        let now = self.now_secs();
        let p = self.pipeline();
        let pools = p
            .pools
            .labels()
            .enumerate()
            .map(|(id, label)| {
                let mut count_window = p.windows[id].count.stats();
                let known = id < p.pools.known();
                let idle = known && p.is_idle(id, now);
                if idle {
                    // The count window still holds the last attempts, but
                    // their ratio is history, not how the pool is doing.
                    count_window.upstream_error_ratio = None;
                    count_window.client_error_ratio = None;
                }
                PoolState {
                    pool: label.to_string(),
                    idle: known.then_some(idle),
                    last_attempt_seconds_ago: p.last_attempt[id].map(|at| now.saturating_sub(at)),
                    count_window,
                    time_window: p.windows[id].time.stats(now),
                }
            })
            .collect();
        let addresses = p
            .addrs
            .entries()
            .map(|(addr, pool, source)| AddrState {
                addr: addr.to_string(),
                pool: p.pools.label(pool).to_string(),
                source,
            })
            .collect();
        let t = &p.totals;
        StateDoc {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: now,
            listeners: self.listeners.clone(),
            serving_pool: p.serving_pool().map(|id| p.pools.label(id).to_string()),
            pools,
            addresses,
            ingest: IngestState {
                datagrams: t.datagrams,
                bytes: t.bytes,
                requests: t.request_count(),
                malformed: t
                    .malformed_by_reason()
                    .map(|(r, n)| (r.to_string(), n))
                    .collect(),
                rejected: t
                    .rejected_by_reason()
                    .map(|(r, n)| (r.to_string(), n))
                    .collect(),
                invalid_utf8: t.invalid_utf8,
                invalid_durations: t
                    .invalid_durations_by_field()
                    .map(|(f, n)| (f.to_string(), n))
                    .collect(),
                no_live_upstream: t.no_live_upstream,
                address_conflicts: t.address_conflicts,
                address_moves: t.address_moves,
            },
            settings: self.settings.clone(),
        }
    }
}

/// What the status page shows of the pipeline: the pools with their
/// windows and per-second series, and the counters it turns into rates.
/// Copied under the lock once per second, however many pages are open.
#[derive(Debug, Clone, Serialize)]
pub struct PageFigures {
    /// Whole seconds since start: the clock of the windows.
    pub uptime_seconds: u64,
    /// `WINDOW_SECONDS`: the length of every series.
    pub window_seconds: usize,
    pub serving_pool: Option<String>,
    pub pools: Vec<PagePool>,
    /// Requests retried from the first attempt's pool to the last one's
    /// (`[from][to]`, known pools only), since start.
    #[serde(skip)]
    pub retried: Vec<Vec<u64>>,
    pub datagrams: u64,
    pub malformed: std::collections::BTreeMap<String, u64>,
    pub rejected: std::collections::BTreeMap<String, u64>,
}

/// A look at the counters the status page shows as rates.
#[derive(Debug, Clone)]
pub struct RateCounters {
    pub datagrams: u64,
    /// `[from][to]` over the known pools.
    pub retried: Vec<Vec<u64>>,
}

/// One pool on the status page.
#[derive(Debug, Clone, Serialize)]
pub struct PagePool {
    pub pool: String,
    /// One of `POOLS` (not `other`, `none` or `unknown`).
    pub known: bool,
    pub idle: bool,
    pub last_attempt_seconds_ago: Option<u64>,
    pub count_window: WindowStats,
    pub time_window: WindowStats,
    /// Per second of the time window, oldest first, the last one still
    /// filling: final responses served, and failed attempts.
    pub requests: Vec<u64>,
    pub failures: Vec<u64>,
}

impl Shared {
    /// The page's figures. The fold-in labels (`other`, `none`, `unknown`)
    /// are shown only while their time window holds something.
    pub fn page_figures(&self) -> PageFigures {
        let now = self.now_secs();
        let p = self.pipeline();
        let known = p.pools.known();
        let pools = p
            .pools
            .labels()
            .enumerate()
            .filter_map(|(id, label)| {
                let w = &p.windows[id];
                let series = w.time.series(now);
                let is_known = id < known;
                if !is_known && series.iter().all(|s| s.attempts == 0 && s.requests == 0) {
                    return None;
                }
                let idle = is_known && p.is_idle(id, now);
                let mut count_window = w.count.stats();
                if idle {
                    // As in `/state`: the last attempts are history.
                    count_window.upstream_error_ratio = None;
                    count_window.client_error_ratio = None;
                }
                Some(PagePool {
                    pool: label.to_string(),
                    known: is_known,
                    idle,
                    last_attempt_seconds_ago: p.last_attempt[id].map(|at| now.saturating_sub(at)),
                    count_window,
                    time_window: w.time.stats(now),
                    requests: series.iter().map(|s| s.requests).collect(),
                    failures: series.iter().map(|s| s.failures).collect(),
                })
            })
            .collect::<Vec<_>>();
        let t = &p.totals;
        PageFigures {
            uptime_seconds: now,
            window_seconds: pools.first().map_or(0, |p: &PagePool| p.requests.len()),
            serving_pool: p.serving_pool().map(|id| p.pools.label(id).to_string()),
            pools,
            retried: t.retried[..known]
                .iter()
                .map(|row| row[..known].to_vec())
                .collect(),
            datagrams: t.datagrams,
            malformed: t
                .malformed_by_reason()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            rejected: t
                .rejected_by_reason()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
        }
    }

    /// The counters the status page turns into rates, without the rest.
    pub fn rate_counters(&self) -> RateCounters {
        let p = self.pipeline();
        let known = p.pools.known();
        RateCounters {
            datagrams: p.totals.datagrams,
            retried: p.totals.retried[..known]
                .iter()
                .map(|row| row[..known].to_vec())
                .collect(),
        }
    }

    /// Datagrams the kernel dropped on the UDP listeners for want of
    /// buffer room, since they were bound; `None` when a socket is not
    /// found in `/proc/net/udp`.
    pub fn kernel_drops(&self) -> Option<u64> {
        self.listeners
            .iter()
            .filter_map(|l| l.inode)
            .map(crate::ingest::kernel_drops::read)
            .map(|c| c.map(|c| c.drops))
            .sum()
    }
}

#[derive(Debug, Serialize)]
pub struct StateDoc {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub listeners: Vec<ListenerInfo>,
    pub serving_pool: Option<String>,
    pub pools: Vec<PoolState>,
    pub addresses: Vec<AddrState>,
    pub ingest: IngestState,
    pub settings: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct PoolState {
    pub pool: String,
    /// For the configured pools: no attempt in the time window
    /// (`WINDOW_SECONDS`). An idle pool's count-window ratios are `null`:
    /// the window holds only old attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<bool>,
    /// Seconds since the pool's latest attempt (client aborts aside);
    /// `null` if it was never tried.
    pub last_attempt_seconds_ago: Option<u64>,
    pub count_window: WindowStats,
    pub time_window: WindowStats,
}

#[derive(Debug, Serialize)]
pub struct AddrState {
    pub addr: String,
    pub pool: String,
    pub source: Source,
}

#[derive(Debug, Serialize)]
pub struct IngestState {
    pub datagrams: u64,
    pub bytes: u64,
    pub requests: u64,
    pub malformed: std::collections::BTreeMap<String, u64>,
    /// Dropped unread, by reason (`source`: not from `ALLOW_FROM`).
    pub rejected: std::collections::BTreeMap<String, u64>,
    pub invalid_utf8: u64,
    /// Implausible durations ignored for latency, by field.
    pub invalid_durations: std::collections::BTreeMap<String, u64>,
    pub no_live_upstream: u64,
    /// Responses naming another pool than their server's.
    pub address_conflicts: u64,
    /// Learned servers moved to another pool.
    pub address_moves: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_in_its_receive_call_is_healthy_however_long() {
        let l = Liveness::new();
        assert!(matches!(l.state(), LoopState::Busy { since_ms: 0 }));
        l.receiving();
        assert_eq!(l.state(), LoopState::Receiving);
        // A day of silence on the socket is no problem.
        assert_eq!(l.state().problem(86_400_000), None);
    }

    #[test]
    fn a_thread_out_of_its_receive_call_too_long_is_stuck() {
        let l = Liveness::new();
        l.busy(10_000);
        assert_eq!(l.state(), LoopState::Busy { since_ms: 10_000 });
        let limit = STUCK_AFTER.as_millis() as u64;
        assert_eq!(l.state().problem(10_000 + limit - 1), None);
        let p = l.state().problem(10_000 + limit).unwrap();
        assert!(p.contains("stuck"), "{p}");
        l.receiving();
        assert_eq!(l.state().problem(10_000 + 10 * limit), None);
        l.stopped();
        assert_eq!(l.state(), LoopState::Stopped);
        assert_eq!(l.state().problem(0).as_deref(), Some("stopped"));
        // The largest times are still "busy", never mistaken for stopped.
        l.busy(u64::MAX);
        assert!(matches!(l.state(), LoopState::Busy { .. }));
    }

    #[test]
    fn a_batch_wakes_the_alert_loop_only_while_it_sleeps() {
        use futures_util::FutureExt;
        let s = Shared::new(
            Pipeline::new(&crate::pipeline::PipelineConfig::default()),
            Vec::new(),
            serde_json::json!({}),
        );
        // Awake: a batch is one load, and leaves nothing behind.
        s.batch_arrived();
        assert!(s.alert_loop_woken().now_or_never().is_none());
        // Asleep: the first batch wakes it, even if it arrives before the
        // loop waits (the wake is kept), and only the first.
        s.alert_loop_sleeps();
        s.batch_arrived();
        s.batch_arrived();
        assert!(s.alert_loop_woken().now_or_never().is_some());
        assert!(s.alert_loop_woken().now_or_never().is_none());
        // Awake again: batches do not wake it.
        s.alert_loop_sleeps();
        s.alert_loop_awake();
        s.batch_arrived();
        assert!(s.alert_loop_woken().now_or_never().is_none());
        // Other news wakes it asleep or not.
        s.wake_alert_loop();
        assert!(s.alert_loop_woken().now_or_never().is_some());
    }

    #[test]
    fn health_names_each_listener() {
        let info = |name: &str| ListenerInfo {
            name: name.to_string(),
            granted_buffer_bytes: 0,
            inode: None,
        };
        let s = Shared::new(
            Pipeline::new(&crate::pipeline::PipelineConfig::default()),
            vec![info("udp://a"), info("unix:///b")],
            serde_json::json!({}),
        );
        s.liveness(0).unwrap().receiving();
        s.liveness(1).unwrap().stopped();
        assert_eq!(
            s.health_problems(),
            ["receive thread of unix:///b: stopped"]
        );
        s.liveness(1).unwrap().receiving();
        assert!(s.health_problems().is_empty());
        assert!(s.liveness(2).is_none());
    }
}
