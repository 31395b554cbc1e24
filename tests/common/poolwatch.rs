//! The real `poolwatch` binary as a test peer: started on free loopback
//! ports, ready once `/healthz` answers, stopped with SIGTERM on drop; plus
//! a reader for its Prometheus text.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port_tcp, free_port_udp, try_http_request, wait_until};

/// Path of the `poolwatch` binary Cargo built for this test crate.
pub fn poolwatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_poolwatch"))
}

/// A running receiver.
pub struct Poolwatch {
    child: Child,
    pub udp: String,
    pub http: String,
    log: PathBuf,
}

impl Poolwatch {
    /// Start with defaults plus `args`.
    pub fn start(args: &[&str]) -> Poolwatch {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Poolwatch {
        let udp = format!("127.0.0.1:{}", free_port_udp());
        let http = format!("127.0.0.1:{}", free_port_tcp());
        let log = super::unique_temp_path("poolwatch-log");
        let mut cmd = Command::new(poolwatch_bin());
        cmd.args(["--udp-listen", &udp, "--http-listen", &http])
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
            udp,
            http,
            log,
        };
        let ready = wait_until(Duration::from_secs(10), || {
            try_http_request("GET", &pw.http, "/healthz", b"", Duration::from_secs(1))
                .is_ok_and(|r| r.0 == 200)
        });
        if !ready {
            let _ = pw.child.kill();
            panic!("poolwatch did not become ready:\n{}", pw.log());
        }
        pw
    }

    /// What poolwatch logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send each datagram from one socket, in order.
    pub fn send(&self, datagrams: &[Vec<u8>]) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(&self.udp).unwrap();
        for (i, d) in datagrams.iter().enumerate() {
            s.send(d).unwrap();
            if i % 64 == 63 {
                // Loopback never drops for a reader that keeps up, but a
                // short breather keeps the test independent of buffer sizes.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
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
        let ok = wait_until(Duration::from_secs(10), || {
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

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Poolwatch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        let _ = std::fs::remove_file(&self.log);
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
