//! Replay: the live pipeline over saved log lines, for backtesting
//! thresholds and measuring decode speed without a network.
//!
//! Lines are read into one reused, padded buffer and go through the same
//! [`Pipeline::process`] as datagrams. The input is streamed: a line longer
//! than the largest datagram ([`MAX_LINE`]) is no line nginx could have sent,
//! so it is counted `truncated` and skipped without being held, and memory
//! stays the same whatever the input (`cat /dev/zero` included).
//!
//! The window clock is the log's own `time` field (kept monotonic, so a line
//! a second out of order does not reset a newer bucket), which makes the
//! windows at the end of a replay the ones a live receiver would have had.
//! One line cannot move it far: a time more than [`MAX_JUMP_SECS`] from the
//! clock (a line dated 9999) is counted and ignored unless
//! [`JUMP_CONFIRM_LINES`] lines in a row agree with it (a real gap in the
//! log); a time that cannot be read is counted and ignored too.
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

use crate::alerting::incident::{Decision, Incidents};
use crate::alerting::rules::{Rules, RulesConfig};
use crate::alerting::snapshot::Snapshot;
use crate::alerting::wording::{Notification, words};
use crate::config::{Cli, ReplayArgs};
use crate::ingest::batch::DATAGRAM_MAX;
use crate::logtime;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::record::{Decoder, INPUT_PADDING};
use crate::upstream::Outcome;
use crate::window::WindowStats;

/// Files at least this large get a progress bar on a terminal.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// Longest line replayed, newline not counted: the largest datagram.
pub const MAX_LINE: usize = DATAGRAM_MAX;

/// How far one line's `time` may be from the replay clock and still move
/// it (or, behind it, count as merely out of order).
pub const MAX_JUMP_SECS: i64 = 3600;

/// Lines in a row whose times agree, each more than [`MAX_JUMP_SECS`] from
/// the clock, that move it there after all: the log really jumped.
pub const JUMP_CONFIRM_LINES: u32 = 3;

/// Window time from log time: seconds the log advanced since its first
/// dated line, never going backwards.
#[derive(Default)]
struct LogClock {
    /// Log time the clock stands at, Unix seconds.
    unix: Option<i64>,
    now: u64,
    /// A far time some lines in a row agreed on, and how many.
    pending: Option<(i64, u32)>,
    /// Lines whose time could not be read (or was missing).
    unreadable: u64,
    /// Lines whose time was too far from the clock to move it.
    ignored_jumps: u64,
}

impl LogClock {
    /// Unix seconds of the current line (0 before any dated line).
    fn unix(&self) -> f64 {
        self.unix.map_or(0.0, |t| t as f64)
    }

    fn at(&mut self, time: &str) -> u64 {
        let Some(t) = logtime::parse(time) else {
            self.unreadable += 1;
            return self.now;
        };
        let Some(at) = self.unix else {
            self.unix = Some(t);
            return self.now;
        };
        // Years have four digits: no overflow.
        let delta = t - at;
        if delta.abs() <= MAX_JUMP_SECS {
            self.pending = None;
            if delta > 0 {
                self.now += delta as u64;
                self.unix = Some(t);
            }
            return self.now;
        }
        let agreeing = match self.pending {
            Some((p, n)) if (t - p).abs() <= MAX_JUMP_SECS => n + 1,
            _ => 1,
        };
        if agreeing < JUMP_CONFIRM_LINES {
            self.pending = Some((t, agreeing));
            self.ignored_jumps += 1;
            return self.now;
        }
        // The log itself jumped: forward, time passes; backward (an older
        // file after a newer one), the clock goes on from there without
        // going back.
        self.pending = None;
        if delta > 0 {
            self.now += delta as u64;
        }
        self.unix = Some(t);
        self.now
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// End of input.
    End,
    /// A line, in the buffer with its newline.
    Read,
    /// A line of this many bytes (newline included), too long to keep.
    TooLong(u64),
}

/// Read one line into `buf`, holding at most [`MAX_LINE`] bytes and a
/// newline: the rest of a longer line is read past, not stored.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let mut total = 0u64;
    let mut newline = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let n = match memchr::memchr(b'\n', chunk) {
            Some(i) => {
                newline = true;
                i + 1
            }
            None => chunk.len(),
        };
        if buf.len() + n <= MAX_LINE + 1 {
            buf.extend_from_slice(&chunk[..n]);
        }
        total += n as u64;
        reader.consume(n);
        if newline {
            break;
        }
    }
    Ok(if total == 0 {
        Line::End
    } else if total - u64::from(newline) > MAX_LINE as u64 {
        Line::TooLong(total)
    } else {
        Line::Read
    })
}

/// Run the replay and print the notifications and the summary.
pub fn main(cli: &Cli, args: &ReplayArgs) -> Result<(), String> {
    let cfg = cli.pipeline.pipeline_config()?;
    let rules = cli.rules.rules_config(&cfg)?;
    let mut replayer = Replayer::new(
        &cfg,
        rules,
        cli.rules.alert_cooldown_sec as f64,
        cli.rules.runbook_url.clone(),
    );
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
    let mut summary = Summary::new(&replayer.pipeline, &replayer.clock, lines, elapsed);
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
    incidents: Incidents,
    /// `RUNBOOK_URL`, for the words.
    runbook_url: Option<String>,
    /// Log second of the last rule evaluation.
    evaluated_at: Option<u64>,
    /// What would have been sent, in order.
    pub notifications: Vec<Notification>,
}

impl Replayer {
    pub fn new(
        cfg: &PipelineConfig,
        rules: RulesConfig,
        cooldown_secs: f64,
        runbook_url: Option<String>,
    ) -> Replayer {
        Replayer {
            pipeline: Pipeline::new(cfg),
            decoder: Decoder::new(),
            clock: LogClock::default(),
            rules: Rules::new(rules),
            incidents: Incidents::new(cooldown_secs),
            runbook_url,
            evaluated_at: None,
            notifications: Vec::new(),
        }
    }

    /// Feed every line of `reader`; returns lines read. The last second's
    /// lines are judged by [`Replayer::finish`].
    pub fn feed(&mut self, reader: impl Read) -> io::Result<u64> {
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        // Sized once: a line never grows it.
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_LINE + 1 + INPUT_PADDING);
        let mut lines = 0;
        loop {
            match read_line(&mut reader, &mut buf)? {
                Line::End => return Ok(lines),
                Line::TooLong(bytes) => {
                    lines += 1;
                    self.pipeline.count_truncated(bytes);
                    continue;
                }
                Line::Read => {}
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let len = buf.len();
            buf.resize(len + INPUT_PADDING, 0);
            let Replayer {
                pipeline,
                decoder,
                clock,
                rules,
                incidents,
                runbook_url,
                evaluated_at,
                notifications,
            } = self;
            // Each log second is judged once, at its own time, when the
            // first line of a later second arrives and before that line
            // counts: the rules see every line at the second it was
            // logged, as the live loop sees it within 100 ms.
            let _ = pipeline.process_with(decoder, &mut buf, len, |p, r| {
                let (second, unix) = (clock.now, clock.unix());
                let now = clock.at(r.time);
                if now != second && *evaluated_at != Some(second) {
                    judge(
                        p,
                        second,
                        unix,
                        rules,
                        incidents,
                        runbook_url,
                        notifications,
                    );
                    *evaluated_at = Some(second);
                }
                now
            });
        }
    }

    /// The last evaluations: the last second's lines at their own time,
    /// then as if the watcher had kept running for `confirm_secs` after
    /// them (without more traffic, which proves nothing by itself).
    pub fn finish(&mut self, confirm_secs: f64) {
        let end = self.clock.unix() + confirm_secs.max(0.0) + 1.0;
        for now in [self.clock.unix(), end] {
            judge(
                &self.pipeline,
                self.clock.now,
                now,
                &mut self.rules,
                &mut self.incidents,
                &self.runbook_url,
                &mut self.notifications,
            );
        }
    }
}

/// One look of the rules at `p` as it stands at window second `second`
/// (Unix time `now`), keeping what would have been sent.
fn judge(
    p: &Pipeline,
    second: u64,
    now: f64,
    rules: &mut Rules,
    incidents: &mut Incidents,
    runbook_url: &Option<String>,
    out: &mut Vec<Notification>,
) {
    let snap = Snapshot::take(p, second);
    for f in rules.evaluate(&snap, incidents, now) {
        if incidents.decide(&f, now, false) == Decision::Send {
            out.push(words(&f, runbook_url.as_deref()));
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
    /// Lines whose `time` was missing or unreadable: they did not move the
    /// clock.
    time_unreadable: u64,
    /// Lines whose `time` was too far from the clock to move it.
    time_jumps_ignored: u64,
    invalid_durations: Vec<(String, u64)>,
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
    fn new(p: &Pipeline, clock: &LogClock, lines: u64, seconds: f64) -> Summary {
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
            log_span_seconds: clock.now,
            serving_pool: p.serving_pool().map(|id| p.pools.label(id).to_string()),
            pools,
            malformed: t
                .malformed_by_reason()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            invalid_utf8: t.invalid_utf8,
            no_live_upstream: t.no_live_upstream,
            time_unreadable: clock.unreadable,
            time_jumps_ignored: clock.ignored_jumps,
            invalid_durations: t
                .invalid_durations_by_field()
                .map(|(f, n)| (f.to_string(), n))
                .collect(),
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
        if !self.invalid_durations.is_empty() {
            let list: Vec<String> = self
                .invalid_durations
                .iter()
                .map(|(f, n)| format!("{f}={n}"))
                .collect();
            let _ = writeln!(o, "implausible durations ignored: {}", list.join(" "));
        }
        if self.time_unreadable > 0 || self.time_jumps_ignored > 0 {
            let _ = writeln!(
                o,
                "clock not moved by: {} lines without a readable time, {} jumps of over {} s",
                self.time_unreadable, self.time_jumps_ignored, MAX_JUMP_SECS
            );
        }
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
            recovery_min_requests: 5,
            window_size: 10,
            window_seconds: 60,
        };
        Replayer::new(&cfg, rules, 300.0, None)
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
        let s = Summary::new(p, &r.clock, n, 1.0);
        assert!(s.table().contains("malformed: bad_status=1"));
        // The rescued request is a failover, seen at the log's own time
        // once its second is over.
        r.finish(5.0);
        assert_eq!(r.notifications.len(), 1);
        assert_eq!(r.notifications[0].title, "Failover: blue → green");
        assert_eq!(r.notifications[0].first_seen, "2026-11-05T09:00:30Z");
    }

    #[test]
    fn long_lines_are_counted_and_skipped_in_bounded_memory() {
        let ok = "{\"status\":200,\"upstream_status\":\"200\",\"upstream_addr\":\"a:1\",\"pool\":\"blue\"}\n";
        let mut log = Vec::new();
        log.extend_from_slice(ok.as_bytes());
        log.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        log.push(b'\n');
        log.extend_from_slice(ok.as_bytes());
        // The longest line kept: MAX_LINE bytes of JSON and a newline.
        let mut fits = ok.trim_end().as_bytes().to_vec();
        let pad = MAX_LINE - fits.len();
        fits.splice(
            1..1,
            format!("\"x\":\"{}\",", "y".repeat(pad - 7)).into_bytes(),
        );
        assert_eq!(fits.len(), MAX_LINE);
        log.extend_from_slice(&fits);
        log.push(b'\n');
        // 3 MiB of zeros and no newline at the end.
        log.extend(std::iter::repeat_n(0u8, 3 << 20));
        let mut r = replayer();
        assert_eq!(r.feed(log.as_slice()).unwrap(), 5);
        let t = &r.pipeline.totals;
        assert_eq!(t.request_count(), 3);
        assert_eq!(
            t.malformed_by_reason().collect::<Vec<_>>(),
            [("truncated", 2)]
        );
        assert_eq!(t.bytes, log.len() as u64);
    }

    #[test]
    fn read_line_never_holds_more_than_a_datagram() {
        let mut input = vec![b'a'; 10 * MAX_LINE];
        input.extend_from_slice(b"\nshort\nlast");
        let mut reader = BufReader::with_capacity(4096, input.as_slice());
        let mut buf = Vec::with_capacity(MAX_LINE + 1);
        let cap = buf.capacity();
        assert_eq!(
            read_line(&mut reader, &mut buf).unwrap(),
            Line::TooLong(10 * MAX_LINE as u64 + 1)
        );
        assert_eq!(buf.capacity(), cap);
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), Line::Read);
        assert_eq!(buf, b"short\n");
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), Line::Read);
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut reader, &mut buf).unwrap(), Line::End);
    }

    #[test]
    fn one_far_time_does_not_move_the_clock() {
        let mut c = LogClock::default();
        assert_eq!(c.at("2026-11-05T09:00:00Z"), 0);
        assert_eq!(c.at("9999-12-31T23:59:59Z"), 0);
        assert_eq!(c.at("2026-11-05T09:00:10Z"), 10);
        // Out of order within the hour: stays.
        assert_eq!(c.at("2026-11-05T09:00:05Z"), 10);
        assert_eq!(c.at("1970-01-01T00:00:00Z"), 10);
        assert_eq!(c.at("not a time"), 10);
        assert_eq!(c.at(""), 10);
        assert_eq!(c.at("2026-11-05T09:01:10Z"), 70);
        assert_eq!((c.unreadable, c.ignored_jumps), (2, 2));
        assert_eq!(
            c.unix(),
            logtime::parse("2026-11-05T09:01:10Z").unwrap() as f64
        );
    }

    #[test]
    fn a_real_gap_moves_the_clock_once_lines_agree() {
        let mut c = LogClock::default();
        c.at("2026-11-05T09:00:00Z");
        // Two hours of silence, then traffic again.
        assert_eq!(c.at("2026-11-05T11:00:00Z"), 0);
        assert_eq!(c.at("2026-11-05T11:00:01Z"), 0);
        assert_eq!(c.at("2026-11-05T11:00:01Z"), 7201);
        assert_eq!(c.at("2026-11-05T11:00:02Z"), 7202);
        // An older file after a newer one: the clock goes on, never back.
        for _ in 0..JUMP_CONFIRM_LINES {
            assert_eq!(c.at("2026-11-01T00:00:00Z"), 7202);
        }
        assert_eq!(c.at("2026-11-01T00:00:05Z"), 7207);
        assert_eq!(c.ignored_jumps, 2 + u64::from(JUMP_CONFIRM_LINES) - 1);
        // A far line between agreeing ones starts the count again.
        let mut c = LogClock::default();
        c.at("2026-11-05T09:00:00Z");
        c.at("2026-11-05T12:00:00Z");
        c.at("2026-11-05T09:00:01Z");
        c.at("2026-11-05T12:00:00Z");
        c.at("2026-11-05T12:00:00Z");
        assert_eq!(c.now, 1);
    }

    #[test]
    fn recovery_needs_answers_over_the_confirmation_not_the_end_of_the_log() {
        let line = |sec: u32, ups: &str, addr: &str, pool: &str| {
            format!(
                "{{\"time\":\"2026-11-05T09:00:{sec:02}+00:00\",\"status\":200,\"upstream_status\":\"{ups}\",\"upstream_addr\":\"{addr}\",\"pool\":\"{pool}\"}}\n"
            )
        };
        let mut log = String::new();
        for _ in 0..10 {
            log += &line(0, "200", "a:1", "blue");
        }
        log += &line(1, "500, 200", "a:1, b:1", "green");
        for _ in 0..10 {
            log += &line(2, "200", "b:1", "green");
        }
        // Blue answers, but all within one second: the log ending is no
        // evidence that it went on answering.
        let mut burst = log.clone();
        for _ in 0..10 {
            burst += &line(10, "200", "a:1", "blue");
        }
        let mut r = replayer();
        r.feed(burst.as_bytes()).unwrap();
        r.finish(5.0);
        let kinds: Vec<_> = r.notifications.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [crate::alerting::finding::Kind::Failover]);

        // Blue answering from 10 s to 16 s is.
        for sec in 10..=16 {
            log += &line(sec, "200", "a:1", "blue");
            log += &line(sec, "200", "a:1", "blue");
        }
        let mut r = replayer();
        r.feed(log.as_bytes()).unwrap();
        r.finish(5.0);
        let kinds: Vec<_> = r.notifications.iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                crate::alerting::finding::Kind::Failover,
                crate::alerting::finding::Kind::Recovery
            ]
        );
    }
}
