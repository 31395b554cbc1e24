//! Debian's real Alertmanager (`prometheus-alertmanager`) and `amtool` as
//! test peers, and a TCP front that stands in for an Alertmanager that is
//! down, hangs, or is started later.
//!
//! Include it with `mod common;` and
//! `#[path = "common/alertmanager.rs"] mod alertmanager;`.
//!
//! Ports. Alertmanager cannot report a port the kernel chose
//! (`--web.listen-address=127.0.0.1:0` binds, but nothing says where), so it
//! gets a random port, and when that port turns out to be taken,
//! Alertmanager says so (`Listen error … address already in use`) and
//! exits, and it is started again on another. Its readiness is its own log
//! line `Listening on address=127.0.0.1:PORT`, which it writes only once
//! bound: a port another process holds can never be mistaken for it. The
//! gossip port of an HA cluster is switched off (`--cluster.listen-address=`).
//!
//! What poolwatch is configured with is the address of a [`Front`], bound
//! on port 0 by the test itself: a URL that is valid from the start, even
//! for an Alertmanager started later, with no port ever released and taken
//! again.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long Alertmanager may take to start; only bounds a failure.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Alertmanager binary: `ALERTMANAGER_BIN`, else Debian's.
pub fn alertmanager_bin() -> PathBuf {
    std::env::var_os("ALERTMANAGER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"))
}

/// `amtool`: `AMTOOL_BIN`, else from `PATH`.
pub fn amtool_bin() -> PathBuf {
    std::env::var_os("AMTOOL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("amtool"))
}

/// How Alertmanager groups and repeats notifications.
#[derive(Debug, Clone)]
pub struct Route {
    pub group_by: &'static [&'static str],
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
}

/// A running Alertmanager, notifying `receiver_url` (a webhook).
pub struct Alertmanager {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Alertmanager {
    pub fn start(receiver_url: &str, route: &Route) -> Alertmanager {
        let dir = crate::common::unique_temp_path("alertmanager");
        std::fs::create_dir_all(&dir).unwrap();
        let group_by: Vec<String> = route.group_by.iter().map(|l| format!("{l:?}")).collect();
        let config = format!(
            "route:\n  receiver: test\n  group_by: [{}]\n  group_wait: {}ms\n  group_interval: {}ms\n  repeat_interval: {}ms\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: {receiver_url:?}\n        send_resolved: true\n",
            group_by.join(", "),
            route.group_wait.as_millis(),
            route.group_interval.as_millis(),
            route.repeat_interval.as_millis(),
        );
        std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let port = fastrand::u16(20_000..60_000);
            match Self::try_start(&dir, port, deadline) {
                Some(am) => return am,
                None => assert!(
                    Instant::now() < deadline,
                    "Alertmanager did not start:\n{}",
                    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                ),
            }
        }
    }

    /// Starts on `port`; `None` when the port was taken.
    fn try_start(dir: &std::path::Path, port: u16, deadline: Instant) -> Option<Alertmanager> {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log_path = dir.join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(alertmanager_bin())
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus-alertmanager (install it: apt-get install prometheus-alertmanager)");
        let listening = format!("msg=\"Listening on\" address={addr}");
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains(&listening) {
                return Some(Alertmanager {
                    child,
                    addr,
                    dir: dir.to_path_buf(),
                });
            }
            if let Ok(Some(_)) = child.try_wait() {
                assert!(
                    text.contains("address already in use"),
                    "Alertmanager exited:\n{text}"
                );
                return None;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("Alertmanager did not listen in time:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Runs `amtool` against this Alertmanager.
    pub fn amtool(&self, args: &[&str]) -> Output {
        Command::new(amtool_bin())
            .arg(format!("--alertmanager.url={}", self.url()))
            .args(args)
            .env("HOME", &self.dir)
            .output()
            .expect("run amtool")
    }

    /// The alerts `amtool alert query` lists, matching `matchers`.
    pub fn query(&self, matchers: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["-o", "json", "alert", "query"];
        args.extend_from_slice(matchers);
        let out = self.amtool(&args);
        assert!(
            out.status.success(),
            "amtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "amtool output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a [`Front`] does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Close it at once: nothing listens behind.
    Refuse,
    /// Hold it open and never answer.
    Hang,
    /// Forward it.
    To(SocketAddr),
}

/// A TCP front on a port of its own (bound on port 0), standing in for an
/// Alertmanager that is down, hangs, or is started later.
pub struct Front {
    pub addr: SocketAddr,
    backend: Arc<Mutex<Backend>>,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Front {
    pub fn start(backend: Backend) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the front");
        let addr = listener.local_addr().unwrap();
        let front = Front {
            addr,
            backend: Arc::new(Mutex::new(backend)),
            accepted: Arc::new(AtomicUsize::new(0)),
            held: Arc::new(Mutex::new(Vec::new())),
        };
        let (backend, accepted, held) = (
            front.backend.clone(),
            front.accepted.clone(),
            front.held.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                let to = *backend.lock().unwrap();
                match to {
                    Backend::Refuse => drop(stream),
                    Backend::Hang => held.lock().unwrap().push(stream),
                    Backend::To(addr) => forward(stream, addr),
                }
            }
        });
        front
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies to connections made from now on.
    pub fn set(&self, backend: Backend) {
        *self.backend.lock().unwrap() = backend;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections held open without an answer, that sent a request.
    pub fn held_with_request(&self) -> usize {
        let held = self.held.lock().unwrap();
        held.iter()
            .filter(|s| {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 1];
                let got = s.peek(&mut b).is_ok_and(|n| n > 0);
                let _ = s.set_nonblocking(false);
                got
            })
            .count()
    }
}

fn forward(client: TcpStream, to: SocketAddr) {
    let Ok(server) = TcpStream::connect(to) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut into: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = into.shutdown(std::net::Shutdown::Write);
        });
    };
    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
    pipe(server, client);
}
