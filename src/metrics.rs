//! Metrics: the Prometheus contract, published from the pipeline's totals.
//!
//! The receive path counts in plain integers (see `pipeline`); this module
//! copies them into `metrics` handles when Prometheus scrapes, with
//! `Counter::absolute`, so the hot path pays no atomics and the exporter
//! crate still owns naming, HELP/TYPE lines and label escaping.
//!
//! `poolwatch_request_duration_seconds` is rendered here instead: the
//! exporter's histograms buffer every sample with a timestamp until the next
//! scrape, which at hundreds of thousands of requests per second would cost
//! a clock read per request and memory that grows with the scrape interval.
//! The pipeline keeps fixed cumulative buckets and we print them.
//!
//! `poolwatch_window_latency_seconds` is a summary (quantiles over the time
//! window), which the exporter has no way to set from outside, so it is
//! rendered here too.
//!
//! Every label set is registered at start-up, so a series never appears
//! mid-flight and the set is bounded by the pool list.
//!
//! The alert half's metrics are registered here too (see "Alert metrics"
//! below): every metric name and HELP text of poolwatch is in this file.
//! The alert loop and delivery hold the handles; their label values come
//! from enums (`Kind`, `SinkName`, `AlertOutcome`), never from strings
//! looked up at run time.

use std::fmt::Write as _;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::ingest::kernel_drops;
use crate::pipeline::{
    DURATION_BUCKETS, DURATION_FIELDS, Histogram, MALFORMED_REASONS, REJECTED_REASONS,
    STATUS_CLASSES, Totals,
};
use crate::pools::PoolSet;
use crate::state::Shared;
use crate::upstream::Outcome;
use crate::window::{QUANTILES, WindowStats};

pub const DURATION: &str = "poolwatch_request_duration_seconds";
pub const WINDOW_LATENCY: &str = "poolwatch_window_latency_seconds";

/// Alert delivery takes from milliseconds (stdout) to minutes (Slack
/// retrying through an outage).
const ALERT_DELIVERY_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0,
];

/// Registered handles, indexed like the pipeline's totals.
struct Handles {
    datagrams: Counter,
    bytes: Counter,
    malformed: Vec<Counter>,
    rejected: Vec<Counter>,
    invalid_utf8: Counter,
    invalid_durations: Vec<Counter>,
    address_conflicts: Counter,
    address_moves: Counter,
    kernel_drops: Counter,
    socket_queue: Gauge,
    no_live_upstream: Counter,
    /// `[pool][class]`; `None` where the pool can never serve.
    requests: Vec<Option<Vec<Counter>>>,
    /// `[pool][outcome]`; `None` where the pool is never tried.
    attempts: Vec<Option<Vec<Counter>>>,
    retried: Vec<Vec<Option<Counter>>>,
    /// `[pool][window][kind]`.
    error_ratio: Vec<[[Gauge; 2]; 2]>,
    /// Per configured pool.
    idle: Vec<Gauge>,
    serving: Vec<Option<Gauge>>,
}

/// The Prometheus registry and our handles into it.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    h: Handles,
    pools: PoolSet,
}

impl Exporter {
    pub fn new(pools: &PoolSet) -> Exporter {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(ALERT_DELIVERY_SECONDS.to_string()),
                &ALERT_DELIVERY_BUCKETS,
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let h = metrics::with_local_recorder(&recorder, || register(pools));
        Exporter {
            recorder,
            handle,
            h,
            pools: pools.clone(),
        }
    }

    /// Run `f` with this exporter as the recorder, to register more metrics
    /// (the handles it returns stay valid afterwards).
    pub fn register<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Copy the current figures into the registry; returns the time-window
    /// stats per pool for the parts rendered here.
    fn publish(&self, shared: &Shared) -> (Vec<WindowStats>, Vec<Histogram>) {
        let now = shared.now_secs();
        let (totals, stats, serving, idle) = {
            let p = shared.pipeline();
            let stats: Vec<_> = p
                .windows
                .iter()
                .map(|w| (w.count.stats(), w.time.stats(now)))
                .collect();
            let idle: Vec<bool> = (0..p.pools.known()).map(|id| p.is_idle(id, now)).collect();
            (p.totals.clone(), stats, p.serving_pool(), idle)
        };
        let totals: Totals = totals;
        let h = &self.h;
        h.datagrams.absolute(totals.datagrams);
        h.bytes.absolute(totals.bytes);
        for (c, v) in h.malformed.iter().zip(totals.malformed) {
            c.absolute(v);
        }
        for (c, v) in h.rejected.iter().zip(totals.rejected) {
            c.absolute(v);
        }
        h.invalid_utf8.absolute(totals.invalid_utf8);
        for (c, v) in h.invalid_durations.iter().zip(totals.invalid_durations) {
            c.absolute(v);
        }
        h.address_conflicts.absolute(totals.address_conflicts);
        h.address_moves.absolute(totals.address_moves);
        h.no_live_upstream.absolute(totals.no_live_upstream);
        for (pool, row) in h.requests.iter().enumerate() {
            for (c, v) in row.iter().flatten().zip(totals.requests[pool]) {
                c.absolute(v);
            }
        }
        for (pool, row) in h.attempts.iter().enumerate() {
            for (c, v) in row.iter().flatten().zip(totals.attempts[pool]) {
                c.absolute(v);
            }
        }
        for (from, row) in h.retried.iter().enumerate() {
            for (to, c) in row.iter().enumerate() {
                if let Some(c) = c {
                    c.absolute(totals.retried[from][to]);
                }
            }
        }
        for (pool, (count, time)) in stats.iter().enumerate() {
            let g = &h.error_ratio[pool];
            let idle = idle.get(pool).copied().unwrap_or(false);
            for (w, s) in [count, time].iter().enumerate() {
                // An idle pool has no current ratio: NaN, which no
                // comparison in an alert rule matches and graphs leave
                // blank, instead of its last attempts' ratio or a 0 that
                // reads as healthy.
                let (upstream, client) = if idle {
                    (f64::NAN, f64::NAN)
                } else {
                    (
                        s.upstream_error_ratio.unwrap_or(0.0),
                        s.client_error_ratio.unwrap_or(0.0),
                    )
                };
                g[w][0].set(upstream);
                g[w][1].set(client);
            }
        }
        for (g, idle) in h.idle.iter().zip(&idle) {
            g.set(if *idle { 1.0 } else { 0.0 });
        }
        for (pool, g) in h.serving.iter().enumerate() {
            if let Some(g) = g {
                g.set(if serving == Some(pool) { 1.0 } else { 0.0 });
            }
        }
        // A socket missing from the table (see `kernel_drops::read`) would
        // make the sum, and so the counter, go down: keep the last figures.
        let sockets: Option<Vec<_>> = shared
            .listeners
            .iter()
            .filter_map(|l| l.inode)
            .map(kernel_drops::read)
            .collect();
        if let Some(sockets) = sockets {
            h.kernel_drops
                .absolute(sockets.iter().map(|c| c.drops).sum());
            h.socket_queue
                .set(sockets.iter().map(|c| c.rx_queue).sum::<u64>() as f64);
        }
        (
            stats.into_iter().map(|(_, t)| t).collect(),
            totals.durations,
        )
    }

    /// The Prometheus text exposition, fresh.
    pub fn render(&self, shared: &Shared) -> String {
        let (time_stats, durations) = self.publish(shared);
        let mut out = self.handle.render();
        render_durations(&mut out, &self.pools, &durations);
        render_window_latency(&mut out, &self.pools, &time_stats);
        out
    }

    /// Let the exporter drop expired samples; call every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Pools that can produce a final response: known, other, none.
fn serves(pools: &PoolSet, id: usize) -> bool {
    id != pools.unknown()
}

/// Pools an attempt can be attributed to: known, other, unknown.
fn is_tried(pools: &PoolSet, id: usize) -> bool {
    id != pools.none()
}

fn register(pools: &PoolSet) -> Handles {
    use metrics::{counter, describe_counter, describe_gauge, gauge};

    describe_counter!(
        "poolwatch_ingest_datagrams_total",
        "Datagrams received, valid or not."
    );
    describe_counter!(
        "poolwatch_ingest_bytes_total",
        "Bytes of datagrams received."
    );
    describe_counter!(
        "poolwatch_ingest_malformed_total",
        "Datagrams skipped, by reason."
    );
    describe_counter!(
        "poolwatch_ingest_rejected_total",
        "Datagrams dropped unread, by reason (source: not from ALLOW_FROM)."
    );
    describe_counter!(
        "poolwatch_ingest_invalid_utf8_total",
        "Access log lines holding invalid UTF-8, repaired and counted as requests."
    );
    describe_counter!(
        "poolwatch_ingest_invalid_durations_total",
        "Requests whose duration field was negative, not a number or over a day: ignored for latency, the request still counted."
    );
    describe_counter!(
        "poolwatch_address_conflicts_total",
        "Responses that named another pool than the one their server belongs to."
    );
    describe_counter!(
        "poolwatch_address_moves_total",
        "Learned servers moved to another pool after their latest responses all named it."
    );
    describe_counter!(
        "poolwatch_ingest_kernel_drops_total",
        "Datagrams the kernel dropped because the UDP receive buffer was full."
    );
    describe_gauge!(
        "poolwatch_ingest_socket_queue_bytes",
        "Bytes waiting in the UDP receive buffer at scrape time."
    );
    describe_counter!(
        "poolwatch_requests_total",
        "Requests by serving pool (the pool of the final response) and status class."
    );
    describe_counter!(
        "poolwatch_upstream_attempts_total",
        "Upstream attempts by the pool of the server tried and outcome."
    );
    describe_counter!(
        "poolwatch_retried_requests_total",
        "Requests nginx retried, by the pool tried first and the pool tried last."
    );
    describe_counter!(
        "poolwatch_no_live_upstream_total",
        "Requests nginx answered with no live upstream server to try."
    );
    describe_gauge!(
        "poolwatch_window_error_ratio",
        "Error ratio in the count or time window: upstream failures per attempt, or client 5xx per request. NaN while the pool is idle (poolwatch_pool_idle)."
    );
    describe_gauge!(
        "poolwatch_pool_idle",
        "1 while a configured pool had no upstream attempt in the time window (WINDOW_SECONDS); its error ratios then read NaN."
    );
    describe_gauge!(
        "poolwatch_serving_pool",
        "1 for the pool serving most recent requests, 0 for the others."
    );
    describe_gauge!("poolwatch_build_info", "Build information; always 1.");
    gauge!("poolwatch_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);

    let label = |id: usize| pools.label(id).to_string();
    let ids = 0..pools.len();
    Handles {
        datagrams: counter!("poolwatch_ingest_datagrams_total"),
        bytes: counter!("poolwatch_ingest_bytes_total"),
        malformed: MALFORMED_REASONS
            .iter()
            .map(|r| counter!("poolwatch_ingest_malformed_total", "reason" => *r))
            .collect(),
        rejected: REJECTED_REASONS
            .iter()
            .map(|r| counter!("poolwatch_ingest_rejected_total", "reason" => *r))
            .collect(),
        invalid_utf8: counter!("poolwatch_ingest_invalid_utf8_total"),
        invalid_durations: DURATION_FIELDS
            .iter()
            .map(|f| counter!("poolwatch_ingest_invalid_durations_total", "field" => *f))
            .collect(),
        address_conflicts: counter!("poolwatch_address_conflicts_total"),
        address_moves: counter!("poolwatch_address_moves_total"),
        kernel_drops: counter!("poolwatch_ingest_kernel_drops_total"),
        socket_queue: gauge!("poolwatch_ingest_socket_queue_bytes"),
        no_live_upstream: counter!("poolwatch_no_live_upstream_total"),
        requests: ids
            .clone()
            .map(|p| {
                serves(pools, p).then(|| {
                    STATUS_CLASSES
                        .iter()
                        .map(|c| {
                            counter!("poolwatch_requests_total", "pool" => label(p), "status_class" => *c)
                        })
                        .collect()
                })
            })
            .collect(),
        attempts: ids
            .clone()
            .map(|p| {
                is_tried(pools, p).then(|| {
                    Outcome::ALL
                        .iter()
                        .map(|o| {
                            counter!("poolwatch_upstream_attempts_total", "pool" => label(p), "outcome" => o.label())
                        })
                        .collect()
                })
            })
            .collect(),
        retried: ids
            .clone()
            .map(|from| {
                ids.clone()
                    .map(|to| {
                        (is_tried(pools, from) && is_tried(pools, to)).then(|| {
                            counter!("poolwatch_retried_requests_total", "from" => label(from), "to" => label(to))
                        })
                    })
                    .collect()
            })
            .collect(),
        error_ratio: ids
            .clone()
            .map(|p| {
                ["count", "time"].map(|w| {
                    ["upstream", "client"].map(|k| {
                        gauge!("poolwatch_window_error_ratio", "pool" => label(p), "window" => w, "kind" => k)
                    })
                })
            })
            .collect(),
        idle: (0..pools.known())
            .map(|p| gauge!("poolwatch_pool_idle", "pool" => label(p)))
            .collect(),
        serving: ids
            .map(|p| {
                (p < pools.none())
                    .then(|| gauge!("poolwatch_serving_pool", "pool" => label(p)))
            })
            .collect(),
    }
}

// ---- Alert metrics ----------------------------------------------------------

/// `poolwatch_alerts_total{sink,kind,outcome}`.
pub(crate) const ALERTS_TOTAL: &str = "poolwatch_alerts_total";
/// `poolwatch_alert_delivery_seconds{sink}`.
pub(crate) const ALERT_DELIVERY_SECONDS: &str = "poolwatch_alert_delivery_seconds";
/// `poolwatch_alert_queue_depth{sink}`.
pub(crate) const ALERT_QUEUE_DEPTH: &str = "poolwatch_alert_queue_depth";
/// `poolwatch_failovers_total{from,to}`.
pub(crate) const FAILOVERS_TOTAL: &str = "poolwatch_failovers_total";
/// `poolwatch_incident_open{kind,pool}`.
pub(crate) const INCIDENT_OPEN: &str = "poolwatch_incident_open";
/// `poolwatch_maintenance_mode`.
pub(crate) const MAINTENANCE_MODE: &str = "poolwatch_maintenance_mode";

/// HELP text of the delivery metrics, on the current recorder.
pub(crate) fn describe_delivery() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        ALERTS_TOTAL,
        "Alert notifications by sink, kind and outcome: sent, failed (given up), dropped (queue full), suppressed_*"
    );
    describe_histogram!(
        ALERT_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time from queueing an alert notification to its final outcome, by sink"
    );
    describe_gauge!(
        ALERT_QUEUE_DEPTH,
        "Alert notifications waiting for delivery, by sink"
    );
}

/// HELP text of the alert loop's metrics, on the current recorder.
pub(crate) fn describe_alert_loop() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        FAILOVERS_TOTAL,
        "Failovers detected: the primary failing while another pool served."
    );
    describe_gauge!(
        INCIDENT_OPEN,
        "1 while an incident of this kind is open for the pool (pool=\"all\" for site-wide)."
    );
    describe_gauge!(
        MAINTENANCE_MODE,
        "1 while maintenance mode holds back notifications."
    );
}

/// One `poolwatch_alerts_total` series.
pub(crate) fn alerts_total(
    sink: &'static str,
    kind: &'static str,
    outcome: &'static str,
) -> Counter {
    metrics::counter!(ALERTS_TOTAL, "sink" => sink, "kind" => kind, "outcome" => outcome)
}

pub(crate) fn alert_delivery_seconds(sink: &'static str) -> metrics::Histogram {
    metrics::histogram!(ALERT_DELIVERY_SECONDS, "sink" => sink)
}

pub(crate) fn alert_queue_depth(sink: &'static str) -> Gauge {
    metrics::gauge!(ALERT_QUEUE_DEPTH, "sink" => sink)
}

pub(crate) fn failovers_total(from: &str, to: &str) -> Counter {
    metrics::counter!(FAILOVERS_TOTAL, "from" => from.to_string(), "to" => to.to_string())
}

pub(crate) fn incident_open(kind: &'static str, pool: &str) -> Gauge {
    metrics::gauge!(INCIDENT_OPEN, "kind" => kind, "pool" => pool.to_string())
}

pub(crate) fn maintenance_mode() -> Gauge {
    metrics::gauge!(MAINTENANCE_MODE)
}

fn render_durations(out: &mut String, pools: &PoolSet, durations: &[Histogram]) {
    let _ = writeln!(
        out,
        "# HELP {DURATION} request_time of requests by serving pool.\n# TYPE {DURATION} histogram"
    );
    for (id, h) in durations.iter().enumerate() {
        if !serves(pools, id) {
            continue;
        }
        let pool = pools.label(id);
        let mut cumulative = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = DURATION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{DURATION}_bucket{{pool=\"{pool}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "{DURATION}_sum{{pool=\"{pool}\"}} {}", h.sum);
        let _ = writeln!(out, "{DURATION}_count{{pool=\"{pool}\"}} {}", h.count);
    }
}

fn render_window_latency(out: &mut String, pools: &PoolSet, stats: &[WindowStats]) {
    let _ = writeln!(
        out,
        "# HELP {WINDOW_LATENCY} request_time quantiles of each pool's requests over the time window.\n# TYPE {WINDOW_LATENCY} summary"
    );
    for (id, s) in stats.iter().enumerate() {
        let pool = pools.label(id);
        // An empty window has no quantiles: NaN, as Prometheus summaries
        // report them.
        let q = s.latency_seconds.unwrap_or([f64::NAN; 3]);
        for (quantile, v) in QUANTILES.iter().zip(q) {
            let _ = writeln!(
                out,
                "{WINDOW_LATENCY}{{pool=\"{pool}\",quantile=\"{quantile}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "{WINDOW_LATENCY}_sum{{pool=\"{pool}\"}} {}",
            s.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "{WINDOW_LATENCY}_count{{pool=\"{pool}\"}} {}",
            s.latency_count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::record::{Decoder, INPUT_PADDING};

    #[test]
    fn renders_counts_from_the_pipeline() {
        let pools = PoolSet::new(&["blue".into(), "green".into()]);
        let mut p = Pipeline::new(&PipelineConfig {
            pools: pools.clone(),
            configured_addrs: vec![("127.0.0.1:1".into(), 0)],
            window_size: 10,
            window_seconds: 10,
            serving_window: 5,
        });
        let line = br#"{"status":200,"request_time":0.02,"upstream_status":"500, 200","upstream_addr":"127.0.0.1:1, 127.0.0.1:2","pool":"green"}"#;
        let mut buf = line.to_vec();
        buf.resize(line.len() + INPUT_PADDING, 0);
        p.process(&mut Decoder::new(), &mut buf, line.len(), |_| 0)
            .unwrap();
        let shared = Shared::new(p, vec![], serde_json::json!({}));
        let e = Exporter::new(&pools);
        let text = e.render(&shared);
        for want in [
            "poolwatch_ingest_datagrams_total 1",
            "poolwatch_requests_total{pool=\"green\",status_class=\"2xx\"} 1",
            "poolwatch_upstream_attempts_total{pool=\"blue\",outcome=\"error_5xx\"} 1",
            "poolwatch_retried_requests_total{from=\"blue\",to=\"green\"} 1",
            "poolwatch_window_error_ratio{pool=\"blue\",window=\"count\",kind=\"upstream\"} 1",
            "poolwatch_serving_pool{pool=\"green\"} 1",
            "poolwatch_request_duration_seconds_bucket{pool=\"green\",le=\"0.025\"} 1",
            "poolwatch_request_duration_seconds_bucket{pool=\"green\",le=\"0.01\"} 0",
            "poolwatch_request_duration_seconds_count{pool=\"green\"} 1",
            "poolwatch_window_latency_seconds{pool=\"green\",quantile=\"0.99\"} 0.018",
            "poolwatch_window_latency_seconds_count{pool=\"green\"} 1",
            "poolwatch_build_info{version=",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("pool=\"unknown\",status_class"));
    }

    #[test]
    fn an_idle_pool_says_so_and_shows_no_ratio() {
        let pools = PoolSet::new(&["blue".into(), "green".into()]);
        let mut p = Pipeline::new(&PipelineConfig {
            pools: pools.clone(),
            configured_addrs: vec![("127.0.0.1:1".into(), 0)],
            window_size: 10,
            window_seconds: 10,
            serving_window: 5,
        });
        // Blue failed, at window second 0; the exporter reads at second 0
        // (the clock starts with `Shared`), so blue is not idle yet.
        let line = br#"{"status":502,"request_time":0.02,"upstream_status":"502","upstream_addr":"127.0.0.1:1","pool":"blue"}"#;
        let mut buf = line.to_vec();
        buf.resize(line.len() + INPUT_PADDING, 0);
        p.process(&mut Decoder::new(), &mut buf, line.len(), |_| 0)
            .unwrap();
        let shared = Shared::new(p, vec![], serde_json::json!({}));
        let e = Exporter::new(&pools);
        let m = |text: &str, series: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .to_string()
        };
        let text = e.render(&shared);
        assert_eq!(m(&text, "poolwatch_pool_idle{pool=\"blue\"}"), "0");
        assert_eq!(m(&text, "poolwatch_pool_idle{pool=\"green\"}"), "1");
        let blue_count =
            "poolwatch_window_error_ratio{pool=\"blue\",window=\"count\",kind=\"upstream\"}";
        assert_eq!(m(&text, blue_count), "1");
        let green_count =
            "poolwatch_window_error_ratio{pool=\"green\",window=\"count\",kind=\"upstream\"}";
        assert_eq!(m(&text, green_count), "NaN");
        // No idle gauge for the pools nobody configures.
        assert!(!text.contains("poolwatch_pool_idle{pool=\"unknown\"}"));
    }
}
