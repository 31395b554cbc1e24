//! Shared state: what the receive threads update and the HTTP side reads.
//!
//! One mutex guards the pipeline. A receive thread (or its parse worker)
//! takes it once per batch of up to 64 datagrams, readers take it to copy figures out and compute
//! from the copy, so neither side holds it for long. Liveness is a heartbeat
//! timestamp the receive loop refreshes on every wake-up, traffic or not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

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

pub struct Shared {
    pipeline: Mutex<Pipeline>,
    started: Instant,
    heartbeat_ms: AtomicU64,
    pub listeners: Vec<ListenerInfo>,
    /// Settings in force, secrets already redacted.
    pub settings: serde_json::Value,
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
            heartbeat_ms: AtomicU64::new(0),
            listeners,
            settings,
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

    /// Record that a receive loop is alive.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since a receive loop last woke up.
    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
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
