//! A real rsyslogd (Debian's `rsyslog` package) as a relay in tests.
//!
//! Each instance runs in the foreground (`rsyslogd -n -f CONF -i PIDFILE`)
//! with its configuration, pid file, work directory and input sockets in a
//! temporary directory, so it never touches `/dev/log`, the system's
//! `/etc/rsyslog.conf` or a running system rsyslog, and tests may run
//! several at once.
//!
//! rsyslogd is found through `RSYSLOGD_BIN`, then `rsyslogd` on `PATH`, then
//! `/usr/sbin/rsyslogd`. Test crates include this file with
//! `#[path = "common/rsyslog.rs"] mod rsyslog;` next to `mod common;`.

// Each test crate uses its own subset of the harness.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{START_TIMEOUT, unique_temp_path, wait_until};

/// The rsyslogd binary: `RSYSLOGD_BIN`, else `rsyslogd` on `PATH`, else
/// `/usr/sbin/rsyslogd`.
pub fn rsyslogd_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RSYSLOGD_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("rsyslogd"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/rsyslogd"))
}

/// A running rsyslogd, stopped (SIGTERM, then SIGKILL) and its directory
/// removed on drop.
pub struct Rsyslog {
    child: Option<Child>,
    dir: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd with the configuration `rules(dir)` returns, after a
    /// preamble that sets the work directory to `dir`, allows messages up to
    /// 64 KiB (nginx sends long lines whole) and loads `imuxsock` without the
    /// system socket. The configuration is checked first (`rsyslogd -N1`);
    /// returns once every file in `sockets` (names in `dir`) exists. imuxsock
    /// creates its sockets world-writable, so nginx's workers, which run as
    /// `nobody` when nginx starts as root, can send to them.
    pub fn start(rules: impl FnOnce(&Path) -> String, sockets: &[&str]) -> Rsyslog {
        let bin = rsyslogd_bin();
        assert!(
            bin.is_file(),
            "rsyslogd not found at {} (set RSYSLOGD_BIN or install rsyslog)",
            bin.display()
        );
        let dir = unique_temp_path("poolwatch-rsyslog");
        fs::create_dir_all(&dir).expect("create rsyslog temp dir");
        let mut relay = Rsyslog { child: None, dir };
        let conf = format!(
            "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n{rules}\n",
            dir = relay.dir.display(),
            rules = rules(&relay.dir),
        );
        fs::write(relay.conf_path(), conf).expect("write rsyslog.conf");

        let check = Command::new(&bin)
            .arg("-N1")
            .arg("-f")
            .arg(relay.conf_path())
            .output()
            .unwrap_or_else(|e| panic!("run {} -N1: {e}", bin.display()));
        assert!(
            check.status.success(),
            "rsyslogd rejected its configuration:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );

        let log = fs::File::create(relay.dir.join("rsyslogd.log")).expect("create rsyslogd.log");
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-f")
            .arg(relay.conf_path())
            .arg("-i")
            .arg(relay.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        relay.child = Some(child);
        let ready = wait_until(START_TIMEOUT, || {
            let exited = matches!(relay.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
            exited || sockets.iter().all(|s| relay.dir.join(s).exists())
        });
        let running = matches!(relay.child.as_mut().map(Child::try_wait), Some(Ok(None)));
        assert!(
            ready && running,
            "rsyslogd did not create {sockets:?}:\n{}",
            relay.log()
        );
        relay
    }

    /// The temporary directory holding the configuration, pid file, work
    /// files and sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `name` in [`Rsyslog::dir`], e.g. an input socket.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join("rsyslog.conf")
    }

    /// What rsyslogd printed so far (its own errors and warnings).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
    }

    /// Stops rsyslogd: SIGTERM, which drains its queues, then SIGKILL if it
    /// has not exited within 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on the process we spawned.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let exited = wait_until(Duration::from_secs(5), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
