//! Replay: the live pipeline over saved log lines, for backtesting
//! thresholds and measuring decode speed without a network.
//!
//! Lines are read into one reused, padded buffer and go through the same
//! [`Pipeline::process`] as datagrams. The window clock is the log's own
//! `time` field (kept monotonic, so a line a second out of order does not
//! reset a newer bucket), which makes the windows at the end of a replay the
//! ones a live receiver would have had.
//!
//! The same rules and cooldown run too, each time the log's clock moves to
//! a new second (its resolution), and once more at the end as if the
//! watcher had waited out `RECOVERY_CONFIRM_SEC` after the last line: the
//! notifications printed are the ones a live watcher would have sent.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::alert::Notification;
use crate::config::{Cli, ReplayArgs};
use crate::logtime;
use crate::notify::{Decision, Notifier};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::record::{Decoder, INPUT_PADDING};
use crate::rules::{Rules, RulesConfig, Snapshot};
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
    /// Unix seconds of the current line (0 before any dated line).
    fn unix(&self) -> f64 {
        self.first.map_or(0.0, |f| (f + self.now as i64) as f64)
    }

    fn at(&mut self, time: &str) -> u64 {
        if let Some(t) = logtime::parse(time) {
            let first = *self.first.get_or_insert(t);
            self.now = self.now.max(t.saturating_sub(first).max(0) as u64);
        }
        self.now
    }
}

/// Run the replay and print the notifications and the summary.
pub fn main(cli: &Cli, args: &ReplayArgs) -> Result<(), String> {
    let cfg = cli.pipeline.pipeline_config()?;
    let rules = cli.rules.rules_config(&cfg)?;
    let mut replayer = Replayer::new(&cfg, rules, cli.rules.alert_cooldown_sec as f64);
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
        lines += replayer
            .feed(reader)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
    }
    replayer.finish(cli.rules.recovery_confirm_sec);
    let elapsed = started.elapsed().as_secs_f64();
    let mut summary = Summary::new(&replayer.pipeline, replayer.clock.now, lines, elapsed);
    summary.notifications = replayer.notifications;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", summary.notifications_table());
        print!("{}", summary.table());
    }
    Ok(())
}

/// The pipeline plus the rules, driven by the log's clock.
pub struct Replayer {
    pub pipeline: Pipeline,
    decoder: Decoder,
    clock: LogClock,
    rules: Rules,
    notifier: Notifier,
    /// Log second of the last rule evaluation.
    evaluated_at: Option<u64>,
    /// What would have been sent, in order.
    pub notifications: Vec<Notification>,
}

impl Replayer {
    pub fn new(cfg: &PipelineConfig, rules: RulesConfig, cooldown_secs: f64) -> Replayer {
        Replayer {
            pipeline: Pipeline::new(cfg),
            decoder: Decoder::new(),
            clock: LogClock::default(),
            rules: Rules::new(rules),
            notifier: Notifier::new(cooldown_secs),
            evaluated_at: None,
            notifications: Vec::new(),
        }
    }

    /// Feed every line of `reader`; returns lines read.
    pub fn feed(&mut self, reader: impl Read) -> io::Result<u64> {
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
            let clock = &mut self.clock;
            let _ = self
                .pipeline
                .process(&mut self.decoder, &mut buf, len, |r| clock.at(r.time));
            if self.evaluated_at != Some(self.clock.now) {
                self.evaluate(self.clock.unix());
                self.evaluated_at = Some(self.clock.now);
            }
        }
    }

    /// The last evaluation, as if the watcher had kept running for
    /// `confirm_secs` after the last line.
    pub fn finish(&mut self, confirm_secs: f64) {
        let end = self.clock.unix() + confirm_secs.max(0.0) + 1.0;
        self.evaluate(end);
    }

    fn evaluate(&mut self, now: f64) {
        let snap = Snapshot::take(&self.pipeline, self.clock.now);
        for sig in self.rules.evaluate(&snap, now) {
            if self.notifier.decide(&sig, now, false) == Decision::Send {
                self.notifications.push(sig.notification);
            }
        }
    }
}

fn open(path: &Path) -> io::Result<(Box<dyn Read>, u64)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(io::stdin().lock()), 0));
    }
    let f = File::open(path)?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(f), size))
}

#[derive(Serialize)]
struct Summary {
    notifications: Vec<Notification>,
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
            notifications: Vec::new(),
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
            malformed: t
                .malformed_by_reason()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            invalid_utf8: t.invalid_utf8,
            no_live_upstream: t.no_live_upstream,
        }
    }

    fn notifications_table(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} notifications would have been sent",
            self.notifications.len()
        );
        for n in &self.notifications {
            let _ = writeln!(
                o,
                "{}  {:<8}  {:<20} {}",
                n.first_seen,
                format!("{:?}", n.severity).to_lowercase(),
                n.kind.label(),
                n.title
            );
        }
        let _ = writeln!(o);
        o
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

    fn replayer() -> Replayer {
        let cfg = PipelineConfig {
            pools: PoolSet::new(&["blue".into(), "green".into()]),
            configured_addrs: vec![],
            window_size: 10,
            window_seconds: 60,
            serving_window: 10,
        };
        let rules = RulesConfig {
            active_pool: 0,
            error_rate_threshold: 2.0,
            error_rate_min_requests: 1000,
            recovery_confirm_secs: 5.0,
            window_size: 10,
            window_seconds: 60,
            runbook_url: None,
        };
        Replayer::new(&cfg, rules, 300.0)
    }

    #[test]
    fn replays_mixed_lines_with_the_log_clock() {
        let log = "\
{\"time\":\"2026-11-05T09:00:00+00:00\",\"status\":200,\"upstream_status\":\"200\",\"upstream_addr\":\"a:1\",\"pool\":\"blue\"}\n\
\n\
<190>Nov  5 09:00:30 web nginx: {\"time\":\"2026-11-05T09:00:30+00:00\",\"status\":200,\"upstream_status\":\"500, 200\",\"upstream_addr\":\"a:1, b:1\",\"pool\":\"green\"}\n\
{\"time\":\"2026-11-05T09:00:29+00:00\",\"status\":\"oops\"}\n";
        let mut r = replayer();
        let n = r.feed(log.as_bytes()).unwrap();
        assert_eq!(n, 3);
        assert_eq!(r.clock.now, 30);
        let p = &r.pipeline;
        assert_eq!(p.totals.request_count(), 2);
        assert_eq!(p.totals.retried[0][1], 1);
        assert_eq!(p.totals.malformed.iter().sum::<u64>(), 1);
        let s = Summary::new(p, r.clock.now, n, 1.0);
        assert!(s.table().contains("malformed: bad_status=1"));
        // The rescued request is a failover, seen at the log's own time.
        assert_eq!(r.notifications.len(), 1);
        assert_eq!(r.notifications[0].title, "Failover: blue → green");
        assert_eq!(r.notifications[0].first_seen, "2026-11-05T09:00:30Z");
    }

    #[test]
    fn recovery_is_confirmed_after_the_last_line() {
        let mut log = String::new();
        let line = |sec: u32, ups: &str, addr: &str, pool: &str| {
            format!(
                "{{\"time\":\"2026-11-05T09:00:{sec:02}+00:00\",\"status\":200,\"upstream_status\":\"{ups}\",\"upstream_addr\":\"{addr}\",\"pool\":\"{pool}\"}}\n"
            )
        };
        for _ in 0..10 {
            log += &line(0, "200", "a:1", "blue");
        }
        log += &line(1, "500, 200", "a:1, b:1", "green");
        for _ in 0..10 {
            log += &line(2, "200", "b:1", "green");
        }
        for _ in 0..10 {
            log += &line(10, "200", "a:1", "blue");
        }
        let mut r = replayer();
        r.feed(log.as_bytes()).unwrap();
        r.finish(5.0);
        let kinds: Vec<_> = r.notifications.iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [crate::alert::Kind::Failover, crate::alert::Kind::Recovery]
        );
    }
}
