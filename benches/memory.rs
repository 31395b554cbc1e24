//! Receiver memory under hostile traffic: does RSS stay flat when every
//! datagram names addresses, URIs, user agents and pools never seen before?
//!
//! Starts the release `poolwatch` binary on loopback port 0, sends it
//! 10 million unique datagrams with the load generator (`--hostile`, the
//! failover scenario so that half the lines carry two upstream addresses),
//! paced so that the receiver keeps up, and reads the receiver's VmRSS and
//! VmHWM from /proc every second. Prints the RSS once 1 M, 5 M and 10 M
//! datagrams have been received, the peak, and the kernel's drop count, which
//! should be 0: a dropped datagram never reached the receiver, so it says
//! nothing about its memory.
//!
//! Run with `cargo bench --bench memory`; about two minutes on 2 cores.
//! `MEMORY_BENCH_RATE` (datagrams/s, default 120000) and `MEMORY_BENCH_COUNT`
//! (default 10000000) change the pace and the total.

#[path = "support/mod.rs"]
mod support;

use support::{env_u64, scrape};

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use poolwatch::loadgen::{self, LoadgenArgs, lines::Scenario};

const CHECKPOINTS: [u64; 2] = [1_000_000, 5_000_000];

fn main() -> ExitCode {
    // `cargo test --benches` runs bench targets once without `--bench`;
    // a multi-minute soak has no place there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory: skipped outside `cargo bench --bench memory`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let rate = env_u64("MEMORY_BENCH_RATE", 120_000)?;
    let count = env_u64("MEMORY_BENCH_COUNT", 10_000_000)?;
    let bin = support::release_poolwatch()?;

    let (mut receiver, bound) = Receiver::start(&bin)?;
    let (udp, http) = (bound.udp, bound.http);
    let pid = receiver.pid();
    let at_start = read_status(pid)?;
    println!(
        "memory: receiver pid {pid} on udp {udp}, http {http}; RSS at start {}",
        mib(at_start.rss_kib)
    );
    println!("memory: sending {count} hostile datagrams at {rate}/s");

    let args = LoadgenArgs {
        target: udp.to_string(),
        rate: Some(rate),
        count: Some(count),
        scenario: Scenario::Failover,
        hostile: true,
        ..LoadgenArgs::default()
    };
    let sender = thread::spawn(move || loadgen::run(&args));

    let started = Instant::now();
    let mut at_checkpoint: Vec<Option<(u64, Status)>> = vec![None; CHECKPOINTS.len()];
    let mut last = (0, 0);
    let mut stalled = 0;
    let (report, status, received, drops) = loop {
        thread::sleep(Duration::from_secs(1));
        let status = read_status(pid)?;
        let (received, drops) = scrape(http)?;
        eprintln!(
            "  {:>4.0} s  received {received:>9}  RSS {}  peak {}  kernel drops {drops}",
            started.elapsed().as_secs_f64(),
            mib(status.rss_kib),
            mib(status.hwm_kib),
        );
        for (mark, slot) in CHECKPOINTS.iter().zip(&mut at_checkpoint) {
            if slot.is_none() && received >= *mark {
                *slot = Some((received, status));
            }
        }
        if sender.is_finished() {
            // Done once every datagram sent is accounted for, or nothing
            // has moved for a few seconds.
            stalled = if (received, drops) == last {
                stalled + 1
            } else {
                0
            };
            last = (received, drops);
            if received + drops >= count || stalled >= 3 {
                let report = sender
                    .join()
                    .map_err(|_| "the sender panicked".to_string())??;
                break (report, status, received, drops);
            }
        }
    };
    receiver.stop()?;

    println!("memory: {}", report.line());
    println!(
        "memory: datagrams sent {}, received {received}, kernel drops {drops}",
        report.sent
    );
    for (mark, slot) in CHECKPOINTS.iter().zip(&at_checkpoint) {
        match slot {
            Some((n, s)) => println!(
                "memory: RSS after {} M: {} (at {n} received)",
                mark / 1_000_000,
                mib(s.rss_kib)
            ),
            None => println!("memory: RSS after {} M: not reached", mark / 1_000_000),
        }
    }
    println!(
        "memory: RSS after {received} received: {}",
        mib(status.rss_kib)
    );
    println!(
        "memory: peak RSS (VmHWM): {}; at start {}",
        mib(status.hwm_kib),
        mib(at_start.rss_kib)
    );
    if drops > 0 {
        println!(
            "memory: the receiver fell behind ({drops} kernel drops): lower MEMORY_BENCH_RATE"
        );
    }
    Ok(())
}

/// The receiver process; stopped when dropped, so a failed run leaves
/// nothing behind.
struct Receiver {
    child: Option<Child>,
}

impl Receiver {
    /// Start on loopback port 0; returns where it listens once it does.
    fn start(bin: &PathBuf) -> Result<(Receiver, support::Bound), String> {
        let mut cmd = Command::new(bin);
        let ready = support::listen_on_port_zero(&mut cmd);
        let child = cmd
            .args(["--pools", "blue,green", "--log-level", "warn"])
            // Away from any .env in the working tree.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut receiver = Receiver { child: Some(child) };
        let bound = support::wait_ready(receiver.child.as_mut().expect("just set"), &ready)?;
        Ok((receiver, bound))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(&mut self) -> Result<(), String> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        support::terminate(child, Duration::from_secs(10))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Status {
    rss_kib: u64,
    hwm_kib: u64,
}

fn read_status(pid: u32) -> Result<Status, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{key} missing from {path}"))
    };
    Ok(Status {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB ({kib} kB)", kib as f64 / 1024.0)
}
