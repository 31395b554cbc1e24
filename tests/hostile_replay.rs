//! Hostile input to `poolwatch replay`, against the real binary: endless
//! input without a newline, a gibibyte line, a line dated in the year 9999.
//! Replay streams its input, so memory stays flat whatever arrives, and one
//! line cannot stop its clock.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Peak RSS any replay may reach.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

/// What one replay printed and the most memory it held.
struct Run {
    summary: serde_json::Value,
    /// Peak RSS in KiB, from the kernel's accounting when it was reaped.
    max_rss_kib: u64,
    /// The highest VmHWM read from /proc while it ran.
    vm_hwm_kib: u64,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `poolwatch replay --json -` fed by `write`, which gets its stdin.
// The child is reaped with wait4, which also reports its peak RSS.
#[allow(clippy::zombie_processes)]
fn replay(args: &[&str], write: impl FnOnce(&mut std::process::ChildStdin) + Send) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_poolwatch"))
        .args(["replay", "--json"])
        .args(args)
        .arg("-")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (out, err, hwm) = std::thread::scope(|s| {
        s.spawn(move || {
            write(&mut stdin);
            drop(stdin);
        });
        let out = s.spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
            v
        });
        let err = s.spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut stderr, &mut v).unwrap();
            v
        });
        // Sample while it runs; the kernel's figure below is exact.
        let mut hwm = 0;
        while !out.is_finished() {
            hwm = hwm.max(vm_hwm_kib(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(20));
        }
        (out.join().unwrap(), err.join().unwrap(), hwm)
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child, which std has not waited for.
    let reaped = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid as i32);
    let err = String::from_utf8_lossy(&err);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "replay failed ({status}): {err}"
    );
    let summary = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}\n{err}", String::from_utf8_lossy(&out)));
    Run {
        summary,
        max_rss_kib: usage.ru_maxrss as u64,
        vm_hwm_kib: hwm,
    }
}

fn write_repeated(stdin: &mut impl Write, byte: u8, total: usize) {
    let chunk = vec![byte; 1 << 20];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        stdin.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

fn malformed(summary: &serde_json::Value, reason: &str) -> u64 {
    summary["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == reason)
        .map_or(0, |m| m[1].as_u64().unwrap())
}

fn requests(summary: &serde_json::Value) -> u64 {
    summary["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum()
}

fn assert_bounded(run: &Run) {
    eprintln!(
        "peak RSS {} KiB (VmHWM seen {} KiB)",
        run.max_rss_kib, run.vm_hwm_kib
    );
    assert!(
        run.max_rss_kib <= PEAK_LIMIT_KIB && run.vm_hwm_kib <= PEAK_LIMIT_KIB,
        "peak RSS {} KiB (VmHWM seen {} KiB), limit {PEAK_LIMIT_KIB} KiB",
        run.max_rss_kib,
        run.vm_hwm_kib
    );
}

const LINE: &str = r#"{"time":"2026-11-05T09:00:00+00:00","status":200,"request_time":0.004,"upstream_status":"200","upstream_addr":"10.0.0.2:3000","pool":"blue"}"#;

/// `head -c 1500M /dev/zero | poolwatch replay -` used to grow to 4.3 GB
/// and abort: it is one line of 1.5 GB, counted `truncated` and read past.
#[test]
fn endless_zeros_are_streamed_in_bounded_memory() {
    let run = replay(&[], |stdin| write_repeated(stdin, 0, 1500 << 20));
    assert_bounded(&run);
    assert_eq!(run.summary["lines"], 1);
    assert_eq!(malformed(&run.summary, "truncated"), 1);
    assert_eq!(requests(&run.summary), 0);
}

/// One 1 GiB line used 1 GiB; now it is skipped in bounded memory, and the
/// line after it counts.
#[test]
fn a_gibibyte_line_is_skipped_and_the_next_one_counts() {
    let run = replay(&[], |stdin| {
        stdin.write_all(LINE.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        write_repeated(stdin, b'a', 1 << 30);
        stdin.write_all(b"\n").unwrap();
        stdin.write_all(LINE.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    });
    assert_bounded(&run);
    assert_eq!(run.summary["lines"], 3);
    assert_eq!(malformed(&run.summary, "truncated"), 1);
    assert_eq!(requests(&run.summary), 2);
}

/// One line dated 9999 used to freeze the replay clock for the rest of the
/// file: every later line was "in the past", the windows never moved, and
/// a failover 30 s later was never seen to recover. Now the line is counted
/// and its time ignored.
#[test]
fn a_line_dated_9999_does_not_stop_the_clock() {
    let line = |time: &str, ups: &str, addrs: &str, pool: &str| {
        format!(
            "{{\"time\":\"{time}\",\"status\":200,\"request_time\":0.004,\"upstream_status\":\"{ups}\",\"upstream_addr\":\"{addrs}\",\"pool\":\"{pool}\"}}\n"
        )
    };
    let (b, g) = ("10.0.0.2:3000", "10.0.0.3:3000");
    let mut log = String::new();
    for s in 0..10 {
        log += &line(&format!("2026-11-05T09:00:{s:02}+00:00"), "200", b, "blue");
    }
    log += &line("9999-12-31T23:59:59+00:00", "200", b, "blue");
    log += &line("2026-11-05T09:00:10+00:00", "200", g, "green");
    log += &line(
        "2026-11-05T09:00:11+00:00",
        "500, 200",
        &format!("{b}, {g}"),
        "green",
    );
    for s in 12..30 {
        log += &line(&format!("2026-11-05T09:00:{s:02}+00:00"), "200", g, "green");
    }
    // Blue serves again, cleanly, for longer than RECOVERY_CONFIRM_SEC.
    for s in 30..60 {
        log += &line(&format!("2026-11-05T09:00:{s:02}+00:00"), "200", b, "blue");
    }
    let run = replay(&[], |stdin| stdin.write_all(log.as_bytes()).unwrap());
    let s = &run.summary;
    assert_eq!(s["log_span_seconds"], 59, "{s:#}");
    assert_eq!(s["time_jumps_ignored"], 1, "{s:#}");
    assert_eq!(s["time_unreadable"], 0, "{s:#}");
    let seen: Vec<(&str, &str)> = s["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap(),
                n["first_seen"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen[0], ("failover", "2026-11-05T09:00:11Z"), "{s:#}");
    assert!(
        seen.iter().any(|(k, _)| *k == "recovery"),
        "the failover never recovered: {s:#}"
    );
    assert!(
        seen.iter().all(|(_, at)| at.starts_with("2026-11-05T09:0")),
        "{s:#}"
    );
}
