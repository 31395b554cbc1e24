//! Replay speed: `poolwatch replay` over a file of one million realistic
//! nginx syslog lines, against reading the same file line by line (`wc -l`)
//! in the same run, so the ratio says what decoding costs on top of I/O.
//!
//! Run with `cargo bench --bench replay`. `REPLAY_BENCH_LINES` (default
//! 1000000) and `REPLAY_BENCH_RUNS` (default 3) change the size and the
//! number of runs; the median is reported.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use poolwatch::loadgen::lines::{self, Scenario};

fn main() -> ExitCode {
    // `cargo test --benches` runs bench targets once without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("replay: skipped outside `cargo bench --bench replay`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let n = env_u64("REPLAY_BENCH_LINES", 1_000_000);
    let runs = env_u64("REPLAY_BENCH_RUNS", 3).max(1);
    let bin = support::release_poolwatch()?;
    let path = std::env::temp_dir().join(format!("poolwatch-replay-{}.log", std::process::id()));
    write_log(&path, n).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "replay: {n} lines, {:.1} MiB, steady and failover traffic",
        size as f64 / (1 << 20) as f64
    );
    let mut read = Vec::new();
    let mut replay = Vec::new();
    for _ in 0..runs {
        read.push(time(Command::new("wc").arg("-l").arg(&path))?);
        replay.push(time(Command::new(&bin).arg("replay").arg(&path))?);
    }
    let _ = std::fs::remove_file(&path);
    let (read, replay) = (median(read), median(replay));
    println!(
        "replay: median of {runs} runs  read lines (wc -l) {:.0} k lines/s   poolwatch replay {:.0} k lines/s   replay / read time {:.1}",
        n as f64 / read / 1e3,
        n as f64 / replay / 1e3,
        replay / read
    );
    Ok(())
}

fn write_log(path: &Path, n: u64) -> std::io::Result<()> {
    let mut distinct = lines::generate(Scenario::Steady, 2048, 1);
    distinct.extend(lines::generate(Scenario::Failover, 2048, 2));
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n as usize {
        out.write_all(&distinct[i % distinct.len()])?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Wall-clock seconds of one run, output discarded.
fn time(cmd: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}"));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
