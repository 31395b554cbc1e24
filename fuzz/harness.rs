//! What the fuzz targets run and check, shared by `cargo fuzz` (the
//! targets in `fuzz_targets/`) and the short pass in `tests/bad_input.rs`,
//! which runs the checked-in seeds and a few thousand mutations of them on
//! every `cargo test`.
//!
//! Both feed bytes through the same public entry points the receiver and
//! `poolwatch replay` use, then check what must hold after any input: no
//! panic, every datagram either a request or a malformed count, bounded
//! attempts, and every ratio, sum and quantile a finite number.

#![allow(dead_code)]

use std::sync::OnceLock;

use poolwatch::alerting::RulesConfig;
use poolwatch::config::Cli;
use poolwatch::pipeline::{Pipeline, PipelineConfig};
use poolwatch::record::{Decoder, INPUT_PADDING};
use poolwatch::replay::Replayer;
use poolwatch::upstream::MAX_ATTEMPTS;
use poolwatch::window::WindowStats;

/// Separates datagrams in a `datagram` input: an ASCII record separator,
/// which nginx never sends raw (both of its escapes encode control bytes).
pub const SEPARATOR: u8 = 0x1e;

/// Small windows, so that short inputs fill, evict and wrap them.
const SETTINGS: [&str; 9] = [
    "poolwatch",
    "--window-size",
    "8",
    "--window-seconds",
    "4",
    "--serving-window",
    "4",
    "--error-rate-min-requests",
    "1",
];

/// The settings, parsed once: parsing a command line costs more than most
/// inputs.
fn settings() -> &'static (PipelineConfig, RulesConfig) {
    static SETTINGS_PARSED: OnceLock<(PipelineConfig, RulesConfig)> = OnceLock::new();
    SETTINGS_PARSED.get_or_init(|| {
        use clap::Parser;
        let cli = Cli::try_parse_from(SETTINGS).expect("fuzz settings parse");
        let mut cfg = cli.pipeline.pipeline_config().expect("pipeline settings");
        let rules = cli.rules.rules_config(&cfg).expect("rules settings");
        // One pinned server, so that claims against a pin are exercised too.
        cfg.configured_addrs = vec![("10.0.0.2:3000".into(), 0)];
        (cfg, rules)
    })
}

/// The datagram path: each part of `data` between [`SEPARATOR`]s is one
/// datagram, framed, decoded and folded into one pipeline, with the window
/// clock advancing every few datagrams.
pub fn datagram(data: &[u8]) {
    let mut p = Pipeline::new(&settings().0);
    let mut decoder = Decoder::new();
    let mut buf = Vec::new();
    for (i, d) in data.split(|&b| b == SEPARATOR).enumerate() {
        buf.clear();
        buf.extend_from_slice(d);
        buf.resize(d.len() + INPUT_PADDING, 0xAA);
        let now = i as u64 / 3;
        let _ = p.process(&mut decoder, &mut buf, d.len(), |_| now);
        // The decoder only ever reads the padding.
        assert!(buf[d.len()..].iter().all(|&b| b == 0xAA));
        check(&p, now);
    }
}

/// The replay path: `data` as a log file, through the rules as well.
pub fn replay_lines(data: &[u8]) {
    let (cfg, rules) = settings();
    let mut r = Replayer::new(cfg, rules.clone(), 0.0, None);
    let lines = r.feed(data).expect("reading a slice cannot fail");
    r.finish(5.0);
    let t = &r.pipeline.totals;
    assert_eq!(t.datagrams, lines);
    check(&r.pipeline, u64::MAX / 2);
    for n in &r.notifications {
        assert!(!n.title.is_empty());
    }
}

/// What holds after any input.
pub fn check(p: &Pipeline, now: u64) {
    let t = &p.totals;
    assert_eq!(
        t.request_count() + t.malformed_count(),
        t.datagrams,
        "every datagram is a request or malformed, once"
    );
    let attempts: u64 = t.attempts.iter().flatten().sum();
    assert!(attempts <= t.request_count() * MAX_ATTEMPTS as u64);
    assert!(t.address_moves <= t.address_conflicts);
    for h in &t.durations {
        assert!(h.sum.is_finite() && h.sum >= 0.0, "duration sum {}", h.sum);
        assert_eq!(h.buckets.iter().sum::<u64>(), h.count);
    }
    for w in &p.windows {
        finite(&w.count.stats());
        finite(&w.time.stats(now));
    }
    if let Some(pool) = p.serving_pool() {
        assert!(pool < p.pools.none());
    }
}

fn finite(s: &WindowStats) {
    for r in [s.upstream_error_ratio, s.client_error_ratio]
        .into_iter()
        .flatten()
    {
        assert!((0.0..=1.0).contains(&r), "ratio {r}");
    }
    for q in s.latency_seconds.into_iter().flatten() {
        assert!(q.is_finite() && q >= 0.0, "quantile {q}");
    }
    assert!(s.latency_sum_seconds.is_finite());
    assert!(s.latency_count <= s.sums.requests);
}
