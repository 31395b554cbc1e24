//! The real `poolwatch` binary as a test peer: started on port 0 of
//! loopback, ready once its ready file (`--ready-file`) names the addresses
//! it bound, stopped with SIGTERM on drop; plus a reader for its Prometheus
//! text.
//!
//! No port is chosen before poolwatch binds it, so tests running in
//! parallel, or anything else on the machine, can never take it first.
//!
//! [`Poolwatch::send`] never overruns poolwatch's socket: it watches the
//! socket's receive queue in `/proc/net/udp` and waits for room, so exact
//! counts hold whatever receive buffer the kernel granted and however busy
//! the machine is.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{PATIENCE, try_http_request, wait_until};

/// Path of the `poolwatch` binary Cargo built for this test crate.
pub fn poolwatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_poolwatch"))
}

/// A running receiver.
pub struct Poolwatch {
    child: Child,
    /// `127.0.0.1:PORT` of the syslog UDP listener, as bound.
    pub udp: String,
    /// `127.0.0.1:PORT` of the HTTP API, as bound.
    pub http: String,
    /// Path of the unix listener, when `--unix-listen` was given.
    pub unix: Option<String>,
    log: PathBuf,
    ready: PathBuf,
    /// The UDP socket's receive budget, read on first use.
    budget: OnceLock<usize>,
    /// Datagrams sent through [`Poolwatch::send`].
    sent: AtomicU64,
}

impl Poolwatch {
    /// Start with defaults plus `args`.
    pub fn start(args: &[&str]) -> Poolwatch {
        Self::start_with_env(args, &[])
    }

    /// Start with defaults plus `args` and the environment `env` (and
    /// nothing else from the tests' environment). Panics, with what
    /// poolwatch logged, if it exits or is not listening within
    /// [`PATIENCE`].
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Poolwatch {
        let log = super::unique_temp_path("poolwatch-log");
        let ready = super::unique_temp_path("poolwatch-ready");
        let mut cmd = Command::new(poolwatch_bin());
        cmd.args([
            "--udp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--ready-file")
        .arg(&ready)
        // No .env from the developer's checkout.
        .current_dir(std::env::temp_dir())
        .args(args)
        // The tests' own environment must not leak settings in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create log file"));
        let child = cmd.spawn().expect("start poolwatch");
        let mut pw = Poolwatch {
            child,
            udp: String::new(),
            http: String::new(),
            unix: None,
            log,
            ready,
            budget: OnceLock::new(),
            sent: AtomicU64::new(0),
        };
        // The file appears, complete, once every listener is bound and the
        // receive threads run; polling for it only bounds a failure.
        let mut exited = None;
        let ready = wait_until(PATIENCE, || {
            if let Ok(Some(status)) = pw.child.try_wait() {
                exited = Some(status);
                return true;
            }
            pw.ready.exists()
        });
        if let Some(status) = exited {
            panic!("poolwatch exited at start-up ({status}):\n{}", pw.log());
        }
        if !ready {
            let _ = pw.child.kill();
            panic!(
                "poolwatch wrote no ready file within {PATIENCE:?}:\n{}",
                pw.log()
            );
        }
        let text = std::fs::read_to_string(&pw.ready).expect("read the ready file");
        let bound: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ready file {text:?} is not JSON: {e}"));
        let addr = |key: &str| {
            bound[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} address in the ready file: {text}"))
                .to_string()
        };
        pw.udp = addr("udp");
        pw.http = addr("http");
        pw.unix = bound["unix"].as_str().map(str::to_string);
        pw
    }

    /// What poolwatch logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send each datagram from one socket, in order, never more at once
    /// than poolwatch's receive buffer holds: before the datagrams sent
    /// since the last look could fill it, wait until poolwatch's socket has
    /// room. A poolwatch that stops reading for [`PATIENCE`] with a full
    /// buffer fails the test (with `SIGSTOP`, send only what fits: see
    /// [`Poolwatch::receive_budget`]).
    pub fn send(&self, datagrams: &[Vec<u8>]) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(&self.udp).unwrap();
        let budget = self.receive_budget();
        let mut room = 0;
        for d in datagrams {
            // Whatever the budget, a datagram alone in an empty queue is
            // always accepted.
            let charge = kernel_charge(d.len()).min(budget);
            if charge > room {
                room = self.wait_for_room(charge);
            }
            s.send(d).unwrap();
            self.sent.fetch_add(1, Ordering::Relaxed);
            room -= charge;
        }
    }

    /// Wait until the alert rules have judged every datagram sent so far
    /// through [`Poolwatch::send`] (`/state` `alerting.judged_datagrams`):
    /// whatever notification they call for has been decided on and queued.
    /// The fence between two steps a test wants judged apart, and before
    /// checking that something was *not* said.
    pub fn wait_judged(&self) {
        let n = self.sent.load(Ordering::Relaxed);
        let mut judged = 0;
        let ok = wait_until(PATIENCE, || {
            judged = self.state()["alerting"]["judged_datagrams"]
                .as_u64()
                .unwrap_or(0);
            judged >= n
        });
        assert!(ok, "the rules judged only {judged} of {n} datagrams");
    }

    /// Bytes of queued datagrams poolwatch's UDP socket takes without a
    /// drop, with a wide margin: half of what the kernel granted (`/state`
    /// `listeners`), because the kernel frees a read datagram's memory
    /// lazily and `/proc/net/udp` shows the queue a little behind.
    pub fn receive_budget(&self) -> usize {
        *self.budget.get_or_init(|| {
            let state = self.state();
            let udp = state["listeners"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["name"].as_str().is_some_and(|n| n.starts_with("udp://")))
                .unwrap_or_else(|| panic!("no UDP listener in /state: {state}"));
            // The kernel reports twice what was asked for and charges
            // against that; `granted_buffer_bytes` is the half asked for.
            udp["granted_buffer_bytes"]
                .as_u64()
                .expect("granted buffer") as usize
        })
    }

    /// Bytes poolwatch's UDP socket holds right now (`rx_queue` in
    /// `/proc/net/udp`).
    pub fn receive_queue(&self) -> usize {
        let addr = self.udp.parse().expect("UDP address");
        super::udp_receive_queue(addr)
            .unwrap_or_else(|| panic!("poolwatch's UDP socket {addr} is not in /proc/net/udp"))
    }

    /// Wait until the socket has room for `need` more bytes; returns the
    /// room.
    fn wait_for_room(&self, need: usize) -> usize {
        let budget = self.receive_budget();
        let mut room = 0;
        let ok = wait_until_fast(PATIENCE, || {
            room = budget.saturating_sub(self.receive_queue());
            room >= need
        });
        assert!(
            ok,
            "poolwatch read nothing for {PATIENCE:?}: {} bytes queued, budget {budget}",
            self.receive_queue()
        );
        room
    }

    /// Current metrics, as `name{labels}` → value.
    pub fn metrics(&self) -> Metrics {
        let (status, _, body) =
            try_http_request("GET", &self.http, "/metrics", b"", Duration::from_secs(5))
                .expect("GET /metrics");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    pub fn metrics_text(&self) -> String {
        try_http_request("GET", &self.http, "/metrics", b"", Duration::from_secs(5))
            .expect("GET /metrics")
            .2
    }

    /// `/state` as parsed JSON.
    pub fn state(&self) -> serde_json::Value {
        let (status, _, body) =
            try_http_request("GET", &self.http, "/state", b"", Duration::from_secs(5))
                .expect("GET /state");
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("/state is JSON")
    }

    /// One pool's entry in `/state`.
    pub fn pool_state(&self, pool: &str) -> serde_json::Value {
        let state = self.state();
        state["pools"]
            .as_array()
            .expect("/state lists pools")
            .iter()
            .find(|p| p["pool"] == pool)
            .unwrap_or_else(|| panic!("{pool} missing from /state: {state}"))
            .clone()
    }

    /// Wait until `poolwatch_ingest_datagrams_total` reaches `n`.
    pub fn wait_for_datagrams(&self, n: u64) -> Metrics {
        let mut last = Metrics::default();
        let ok = wait_until(PATIENCE, || {
            last = self.metrics();
            last.get("poolwatch_ingest_datagrams_total") >= n as f64
        });
        assert!(
            ok,
            "only {} of {n} datagrams arrived",
            last.get("poolwatch_ingest_datagrams_total")
        );
        last
    }

    /// SIGTERM and wait for the exit (at most [`PATIENCE`], then SIGKILL);
    /// returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut code = None;
        let exited = wait_until(PATIENCE, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                true
            }
            _ => false,
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        code
    }

    /// Send `signal` (`libc::SIGHUP`, ...) and return at once.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (no shutdown at all) and wait for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the ready file is there (it is removed when shutdown begins).
    pub fn ready_file_exists(&self) -> bool {
        self.ready.exists()
    }
}

/// What the kernel charges a receive buffer for a loopback datagram of
/// `len` bytes, rounded up generously (measured: 1280 for 480 bytes, 2304
/// for 1000, 66339 for 65507).
pub fn kernel_charge(len: usize) -> usize {
    (len + 1024).next_power_of_two() + 512
}

/// [`wait_until`] polling every millisecond, for conditions that change
/// quickly (a socket queue draining).
fn wait_until_fast(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for Poolwatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.ready);
    }
}

/// Prometheus text, parsed into series → value.
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Value of one series, written as it renders (labels in the exporter's
    /// order), or 0 if absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// Sum over every series of `name` whose labels contain all `labels`
    /// (`key="value"` strings).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                k.split('{').next() == Some(name) && labels.iter().all(|l| k.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}
