//! Replay: the live pipeline over saved log lines, for backtesting
//! thresholds and measuring decode speed without a network.
//!
//! Lines are read into one reused, padded buffer and go through the same
//! [`Pipeline::process`] as datagrams. The window clock is the log's own
//! `time` field (kept monotonic, so a line a second out of order does not
//! reset a newer bucket), which makes the windows at the end of a replay the
//! ones a live receiver would have had.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::config::{Cli, ReplayArgs};
use crate::logtime;
use crate::pipeline::{MALFORMED_REASONS, Pipeline};
use crate::record::{Decoder, INPUT_PADDING};
use crate::upstream::Outcome;
use crate::window::WindowStats;

/// Files at least this large get a progress bar on a terminal.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// Window time from log time: seconds since the first dated line, never
/// going backwards.
#[derive(Default)]
struct LogClock {
    first: Option<i64>,
    now: u64,
}

impl LogClock {
    fn at(&mut self, time: &str) -> u64 {
        if let Some(t) = logtime::parse(time) {
            let first = *self.first.get_or_insert(t);
            self.now = self.now.max(t.saturating_sub(first).max(0) as u64);
        }
        self.now
    }
}

/// Run the replay and print its summary.
pub fn main(cli: &Cli, args: &ReplayArgs) -> Result<(), String> {
    let cfg = cli.pipeline.pipeline_config()?;
    let mut pipeline = Pipeline::new(&cfg);
    let mut decoder = Decoder::new();
    let mut clock = LogClock::default();
    let started = Instant::now();
    let mut lines = 0u64;
    for path in &args.files {
        let (reader, size) =
            open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let progress = (size >= PROGRESS_MIN_BYTES && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let reader = match &progress {
            Some(bar) => Box::new(bar.wrap_read(reader)) as Box<dyn Read>,
            None => reader,
        };
        lines += replay_stream(reader, &mut pipeline, &mut decoder, &mut clock.as_fn())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let summary = Summary::new(&pipeline, clock.now, lines, elapsed);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

fn open(path: &Path) -> io::Result<(Box<dyn Read>, u64)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(io::stdin().lock()), 0));
    }
    let f = File::open(path)?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(f), size))
}

/// Feed every line of `reader` through the pipeline; returns lines read.
pub fn replay_stream(
    reader: impl Read,
    pipeline: &mut Pipeline,
    decoder: &mut Decoder,
    clock: &mut impl FnMut(&str) -> u64,
) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut lines = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(lines);
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        let len = buf.len();
        buf.resize(len + INPUT_PADDING, 0);
        let _ = pipeline.process(decoder, &mut buf, len, |r| clock(r.time));
    }
}

impl LogClock {
    fn as_fn(&mut self) -> impl FnMut(&str) -> u64 + '_ {
        |t| self.at(t)
    }
}

#[derive(Serialize)]
struct Summary {
    lines: u64,
    seconds: f64,
    lines_per_second: f64,
    log_span_seconds: u64,
    serving_pool: Option<String>,
    pools: Vec<PoolSummary>,
    malformed: Vec<(String, u64)>,
    invalid_utf8: u64,
    no_live_upstream: u64,
}

#[derive(Serialize)]
struct PoolSummary {
    pool: String,
    requests: u64,
    client_5xx: u64,
    attempts: u64,
    failed_attempts: u64,
    retried_away: u64,
    count_window: WindowStats,
}

impl Summary {
    fn new(p: &Pipeline, span: u64, lines: u64, seconds: f64) -> Summary {
        let t = &p.totals;
        let pools = p
            .pools
            .labels()
            .enumerate()
            .map(|(id, label)| PoolSummary {
                pool: label.to_string(),
                requests: t.requests[id].iter().sum(),
                client_5xx: t.requests[id][4],
                attempts: t.attempts[id].iter().sum(),
                failed_attempts: Outcome::ALL
                    .iter()
                    .filter(|o| o.is_failure())
                    .map(|o| t.attempts[id][o.index()])
                    .sum(),
                retried_away: t.retried[id].iter().sum(),
                count_window: p.windows[id].count.stats(),
            })
            .filter(|s| s.requests > 0 || s.attempts > 0)
            .collect();
        Summary {
            lines,
            seconds,
            lines_per_second: if seconds > 0.0 {
                lines as f64 / seconds
            } else {
                0.0
            },
            log_span_seconds: span,
            serving_pool: p.serving_pool().map(|id| p.pools.label(id).to_string()),
            pools,
            malformed: MALFORMED_REASONS
                .iter()
                .zip(t.malformed)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            invalid_utf8: t.invalid_utf8,
            no_live_upstream: t.no_live_upstream,
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} lines in {:.2} s ({:.0} lines/s), log span {} s, serving pool at end: {}",
            self.lines,
            self.seconds,
            self.lines_per_second,
            self.log_span_seconds,
            self.serving_pool.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            o,
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>8}",
            "pool",
            "requests",
            "client5xx",
            "attempts",
            "failed",
            "retried",
            "window err%",
            "p50 s",
            "p95 s",
            "p99 s"
        );
        for p in &self.pools {
            let err = p
                .count_window
                .upstream_error_ratio
                .map_or("-".to_string(), |r| format!("{:.2}", r * 100.0));
            let [p50, p95, p99] = p
                .count_window
                .latency_seconds
                .map_or(["-".to_string(), "-".to_string(), "-".to_string()], |q| {
                    q.map(|v| format!("{v:.3}"))
                });
            let _ = writeln!(
                o,
                "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>8}",
                p.pool,
                p.requests,
                p.client_5xx,
                p.attempts,
                p.failed_attempts,
                p.retried_away,
                err,
                p50,
                p95,
                p99
            );
        }
        if !self.malformed.is_empty() {
            let list: Vec<String> = self
                .malformed
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            let _ = writeln!(o, "malformed: {}", list.join(" "));
        }
        let _ = writeln!(
            o,
            "invalid utf-8 (repaired): {}, no live upstream: {}",
            self.invalid_utf8, self.no_live_upstream
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::PipelineConfig;
    use crate::pools::PoolSet;

    #[test]
    fn replays_mixed_lines_with_the_log_clock() {
        let log = "\
{\"time\":\"2026-11-05T09:00:00+00:00\",\"status\":200,\"upstream_status\":\"200\",\"upstream_addr\":\"a:1\",\"pool\":\"blue\"}\n\
\n\
<190>Nov  5 09:00:30 web nginx: {\"time\":\"2026-11-05T09:00:30+00:00\",\"status\":200,\"upstream_status\":\"500, 200\",\"upstream_addr\":\"a:1, b:1\",\"pool\":\"green\"}\n\
{\"time\":\"2026-11-05T09:00:29+00:00\",\"status\":\"oops\"}\n";
        let mut p = Pipeline::new(&PipelineConfig {
            pools: PoolSet::new(&["blue".into(), "green".into()]),
            configured_addrs: vec![],
            window_size: 10,
            window_seconds: 60,
            serving_window: 10,
        });
        let mut clock = LogClock::default();
        let n = replay_stream(
            log.as_bytes(),
            &mut p,
            &mut Decoder::new(),
            &mut clock.as_fn(),
        )
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(clock.now, 30);
        assert_eq!(p.totals.request_count(), 2);
        assert_eq!(p.totals.retried[0][1], 1);
        assert_eq!(p.totals.malformed.iter().sum::<u64>(), 1);
        let s = Summary::new(&p, clock.now, n, 1.0);
        assert!(s.table().contains("malformed: bad_status=1"));
    }
}
