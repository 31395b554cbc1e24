//! What the receiver benchmarks share: settings from the environment, the
//! release binary, starting it on port 0 and reading back where it listens
//! (its ready file), and reading poolwatch's own counters over HTTP.

// Each bench uses its own subset.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
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

/// Where a receiver started with [`listen_on_port_zero`] listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub udp: SocketAddr,
    pub http: SocketAddr,
}

/// Make `cmd` (a `poolwatch` command) listen on port 0 of loopback for UDP
/// and HTTP and write its ready file; returns the file's path, for
/// [`wait_ready`]. No port is chosen before poolwatch binds it, so nothing
/// else on the machine can take it first.
pub fn listen_on_port_zero(cmd: &mut Command) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "poolwatch-bench-ready-{}-{n}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    cmd.args([
        "--udp-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .arg("--ready-file")
    .arg(&path);
    path
}

/// Wait for `child`'s ready file at `path` (it appears, complete, once
/// every listener is bound and receiving) and read the addresses from it;
/// then remove it. Fails if the child exits first or after 30 s, which
/// only bounds a failure.
pub fn wait_ready(child: &mut Child, path: &Path) -> Result<Bound, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("poolwatch exited at start-up: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("poolwatch wrote no {} within 30 s", path.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(path);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("ready file {text:?}: {e}"))?;
    let addr = |key: &str| -> Result<SocketAddr, String> {
        v[key]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("no {key} address in the ready file {text:?}"))
    };
    Ok(Bound {
        udp: addr("udp")?,
        http: addr("http")?,
    })
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
