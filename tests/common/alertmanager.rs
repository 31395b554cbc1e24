//! Debian's real Alertmanager (`prometheus-alertmanager`) and `amtool` as
//! test peers, and a TCP front that stands in for an Alertmanager that is
//! down, hangs, or is started later.
//!
//! Include it with `mod common;` and
//! `#[path = "common/alertmanager.rs"] mod alertmanager;`.
//!
//! Ports. Alertmanager cannot report a port the kernel chose
//! (`--web.listen-address=127.0.0.1:0` binds, but nothing says where), so
//! the test binds the listening socket itself, on port 0, and hands it over
//! the way systemd's socket activation does (`--web.systemd-socket`): the
//! socket is descriptor 3 of the child, `LISTEN_FDS=1`, and `LISTEN_PID`
//! is the child's own pid (a shell sets it to `$$`, then `exec`s
//! Alertmanager in its place). The port is never free for anyone else to
//! take, and the test knows it before Alertmanager starts. Readiness is
//! Alertmanager's own `/-/ready` answering 200 on that socket. The gossip
//! port of an HA cluster is switched off (`--cluster.listen-address=`).
//!
//! A [`Front`] is bound on port 0 by the test too: a URL that is valid
//! from the start, for an Alertmanager that is down or started later.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
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

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind Alertmanager's socket");
        let addr = listener.local_addr().unwrap();
        let fd = listener.as_raw_fd();
        let log_path = dir.join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$0" "$@""#)
            .arg(alertmanager_bin())
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg("--web.systemd-socket")
            // Only names the server in links (`externalURL`); nothing binds it.
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--web.external-url=http://{addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: between fork and exec only async-signal-safe calls
        // (dup2, fcntl) on descriptors this process owns, allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Descriptor 3, without close-on-exec (dup2 onto itself
                // would keep the flag, so it is cleared either way).
                if fd != 3 && libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect(
            "start prometheus-alertmanager (install it: apt-get install prometheus-alertmanager)",
        );
        // The child has its own copy; connections wait in the socket's
        // backlog until Alertmanager serves them.
        drop(listener);
        let mut am = Alertmanager { child, addr, dir };
        let mut exited = None;
        let ready = crate::common::wait_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = am.child.try_wait() {
                exited = Some(status);
                return true;
            }
            crate::common::try_http_request(
                "GET",
                &addr.to_string(),
                "/-/ready",
                b"",
                Duration::from_secs(5),
            )
            .is_ok_and(|(status, _, _)| status == 200)
        });
        if let Some(status) = exited {
            panic!("Alertmanager exited at start-up ({status}):\n{}", am.log());
        }
        assert!(ready, "Alertmanager was not ready in time:\n{}", am.log());
        am
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
