//! What the receiver benchmarks share: settings from the environment, the
//! release binary, free loopback ports, and reading poolwatch's own
//! counters over HTTP.

// Each bench uses its own subset.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A whole-number setting from the environment, `default` when unset.
pub fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v}: expected a whole number")),
        Err(_) => Ok(default),
    }
}

/// Build the release `poolwatch` (a no-op when it is current) and return
/// its path, next to this bench's own executable.
pub fn release_poolwatch() -> Result<PathBuf, String> {
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "poolwatch"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?
        .success();
    if !ok {
        return Err("cargo build --release --bin poolwatch failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this bench: {e}"))?;
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("poolwatch"))
        .filter(|p| p.is_file())
        .ok_or_else(|| format!("no poolwatch binary next to {}", exe.display()))
}

/// A loopback port free right now. Another process could take it before the
/// receiver binds it; the receiver then fails to start, which is reported.
pub fn free_port(
    bind: impl Fn(SocketAddr) -> io::Result<SocketAddr>,
) -> Result<SocketAddr, String> {
    bind(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(|e| format!("no free loopback port: {e}"))
}

/// A minimal HTTP/1.1 GET: status and body.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Datagrams received and kernel drops, from `/metrics`.
pub fn scrape(http: SocketAddr) -> Result<(u64, u64), String> {
    let (code, body) = get(http, "/metrics").map_err(|e| format!("cannot scrape {http}: {e}"))?;
    if code != 200 {
        return Err(format!("{http}/metrics answered {code}"));
    }
    let value = |name: &str| {
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|v| v as u64)
            .ok_or_else(|| format!("{name} missing from /metrics"))
    };
    Ok((
        value("poolwatch_ingest_datagrams_total")?,
        value("poolwatch_ingest_kernel_drops_total")?,
    ))
}

/// SIGTERM, then wait up to `grace` for a clean exit; killed after that.
pub fn terminate(mut child: Child, grace: Duration) -> Result<(), String> {
    // SAFETY: signalling our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("poolwatch exited with {s}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "poolwatch did not stop within {grace:?} of SIGTERM"
                ));
            }
        }
    }
}
