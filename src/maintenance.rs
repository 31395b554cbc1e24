//! Maintenance mode: planned work during which failover, switch and
//! error-rate notifications are held back (counted, logged, kept in
//! `/state`, not sent).
//!
//! Three ways in, all at run time: `MAINTENANCE_MODE=true` at start, the
//! HTTP API (`POST /maintenance`, used by `poolwatch maintenance`), and a flag
//! file (`MAINTENANCE_FILE`) that is polled, so a deploy script can `touch`
//! and `rm` it. A window may carry an expiry and ends by itself. The alert
//! loop polls this state every tick and announces each start and end, with
//! a summary of what was held back.
//!
//! The flag file is looked at by a thread of its own ([`FileWatcher`]),
//! never by the alert loop and never under a lock: a path can be a FIFO
//! (an open blocks until a writer comes), a device (a read never ends) or
//! on a hung network filesystem (even a stat blocks). Whatever happens to
//! the watcher, `/state`, `/metrics`, alerts and shutdown go on; the file's
//! last known state stands until the watcher sees it again. Existence is a
//! `stat`; the reason is read only from a regular file, at most
//! [`MAX_REASON`] bytes, opened non-blocking.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alerting::finding::Kind;
use crate::logtime::format_rfc3339;

/// Who turned maintenance on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `MAINTENANCE_MODE=true` at start.
    Setting,
    /// `POST /maintenance` (or `poolwatch maintenance on`).
    Api,
    /// The flag file exists.
    File,
}

/// An active maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Window {
    pub source: Source,
    pub since: f64,
    pub until: Option<f64>,
    pub reason: String,
    pub by: String,
}

/// A change the alert loop announces.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Started(Window),
    /// The window that ended, why, and what was held back meanwhile.
    Ended {
        window: Window,
        why: String,
        suppressed: BTreeMap<Kind, u64>,
    },
}

/// Maintenance state, shared by the HTTP API and the alert loop.
#[derive(Debug, Default)]
pub struct Maintenance {
    active: Option<Window>,
    /// What the last poll reported, to turn state into transitions.
    announced: Option<Window>,
    file: Option<FlagFile>,
    suppressed: BTreeMap<Kind, u64>,
    /// Set when an explicit "off" ended the window, for the end message.
    ended_by: Option<String>,
}

/// Maintenance as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SavedMaintenance {
    pub active: Option<Window>,
    /// The window people were last told about.
    pub announced: Option<Window>,
    /// Held-back notifications by kind label.
    pub suppressed: BTreeMap<String, u64>,
    pub ended_by: Option<String>,
}

/// Longest reason kept; it comes from API callers and files.
pub const MAX_REASON: usize = 500;

/// How often the flag file is looked at.
pub const FILE_POLL: Duration = Duration::from_secs(1);

/// A look at the flag file slower than this is logged: the file's state was
/// stale meanwhile.
const SLOW_LOOK: Duration = Duration::from_secs(2);

/// What the watcher last saw at the flag file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Not looked yet.
    Unknown,
    Absent,
    /// Something is there; the reason only if it is a regular file with
    /// text in it.
    Present {
        reason: Option<String>,
    },
}

/// The flag file's path and what its watcher saw, shared by the two.
#[derive(Debug)]
struct FlagFile {
    path: PathBuf,
    seen: Arc<Mutex<Seen>>,
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

impl Maintenance {
    pub fn new(on_at_start: bool, file: Option<PathBuf>, now: f64) -> Maintenance {
        Maintenance {
            active: on_at_start.then(|| Window {
                source: Source::Setting,
                since: now,
                until: None,
                reason: "MAINTENANCE_MODE=true at start".into(),
                by: "settings".into(),
            }),
            file: file.map(|path| FlagFile {
                path,
                seen: Arc::new(Mutex::new(Seen::Unknown)),
            }),
            ..Maintenance::default()
        }
    }

    /// The watcher for `MAINTENANCE_FILE`, if one is set; see
    /// [`FileWatcher::spawn`].
    pub fn file_watcher(&self) -> Option<FileWatcher> {
        self.file.as_ref().map(|f| FileWatcher {
            path: f.path.clone(),
            seen: f.seen.clone(),
            last: None,
        })
    }

    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    pub fn window(&self) -> Option<&Window> {
        self.active.as_ref()
    }

    /// Held-back notifications by kind during the current window.
    pub fn suppressed(&self) -> &BTreeMap<Kind, u64> {
        &self.suppressed
    }

    pub fn count_suppressed(&mut self, kind: Kind) {
        *self.suppressed.entry(kind).or_default() += 1;
    }

    /// Turn maintenance on (or extend/replace the current window).
    pub fn turn_on(
        &mut self,
        source: Source,
        until: Option<f64>,
        reason: &str,
        by: &str,
        now: f64,
    ) {
        let since = self.active.as_ref().map_or(now, |w| w.since);
        self.active = Some(Window {
            source,
            since,
            until,
            reason: cap(reason),
            by: cap(by),
        });
    }

    /// Turn maintenance off; returns whether it was on.
    pub fn turn_off(&mut self, by: &str) -> bool {
        let was = self.active.take().is_some();
        if was {
            self.ended_by = Some(format!("turned off by {}", cap(by)));
        }
        was
    }

    /// Apply expiry and the flag file, then report what changed since the
    /// last poll.
    pub fn poll(&mut self, now: f64) -> Option<Transition> {
        if let Some(w) = &self.active
            && w.until.is_some_and(|u| now >= u)
        {
            self.active = None;
            self.ended_by = Some("expired".into());
        }
        if let Some(file) = &self.file {
            // What the watcher saw: no file system access here, and the
            // watcher never holds this lock while it looks.
            let seen = lock(&file.seen).clone();
            let from_file = self.active.as_ref().map(|w| w.source) == Some(Source::File);
            match seen {
                Seen::Present { reason } if self.active.is_none() => {
                    let reason = reason.unwrap_or_else(|| "flag file present".into());
                    self.active = Some(Window {
                        source: Source::File,
                        since: now,
                        until: None,
                        reason: cap(&reason),
                        by: format!("file {}", file.path.display()),
                    });
                }
                Seen::Absent if from_file => {
                    self.active = None;
                    self.ended_by = Some(format!("file {} removed", file.path.display()));
                }
                _ => {}
            }
        }
        match (&self.announced, &self.active) {
            (None, Some(w)) => {
                self.announced = Some(w.clone());
                self.suppressed.clear();
                Some(Transition::Started(w.clone()))
            }
            (Some(w), None) => {
                let window = w.clone();
                self.announced = None;
                Some(Transition::Ended {
                    window,
                    why: self.ended_by.take().unwrap_or_else(|| "ended".into()),
                    suppressed: std::mem::take(&mut self.suppressed),
                })
            }
            (Some(old), Some(new)) if old != new => {
                // Extended or re-described: remember, no second announcement.
                self.announced = Some(new.clone());
                None
            }
            _ => None,
        }
    }

    /// The window and what was announced of it, for the state file: `None`
    /// when maintenance is off and its end was told.
    pub fn export(&self) -> Option<SavedMaintenance> {
        if self.active.is_none() && self.announced.is_none() {
            return None;
        }
        Some(SavedMaintenance {
            active: self.active.clone(),
            announced: self.announced.clone(),
            suppressed: self
                .suppressed
                .iter()
                .map(|(k, n)| (k.label().to_string(), *n))
                .collect(),
            ended_by: self.ended_by.clone(),
        })
    }

    /// Take up where a previous run left off: the same window, announced as
    /// it was (no second "started"; an end not yet told is told), with its
    /// held-back counts. It replaces a window `MAINTENANCE_MODE=true` opened
    /// at start. An expired window ends at the next poll; a flag-file window
    /// whose file is gone ends once the watcher has looked.
    pub fn restore(&mut self, saved: SavedMaintenance) {
        self.active = saved.active;
        self.announced = saved.announced;
        self.ended_by = saved.ended_by;
        self.suppressed = saved
            .suppressed
            .into_iter()
            .filter_map(|(k, n)| {
                Kind::ALL
                    .into_iter()
                    .find(|x| x.label() == k)
                    .map(|k| (k, n))
            })
            .collect();
    }

    /// `/state` view.
    pub fn status(&self) -> MaintenanceStatus {
        MaintenanceStatus {
            on: self.is_on(),
            source: self.active.as_ref().map(|w| w.source),
            since: self.active.as_ref().map(|w| format_rfc3339(w.since as i64)),
            until: self
                .active
                .as_ref()
                .and_then(|w| w.until)
                .map(|u| format_rfc3339(u as i64)),
            reason: self.active.as_ref().map(|w| w.reason.clone()),
            by: self.active.as_ref().map(|w| w.by.clone()),
            suppressed: self
                .suppressed
                .iter()
                .map(|(k, n)| (k.label().to_string(), *n))
                .collect(),
            file: self.file.as_ref().map(|f| f.path.display().to_string()),
        }
    }
}

/// Looks at the flag file every [`FILE_POLL`] on a thread of its own and
/// tells [`Maintenance::poll`] what it saw.
#[derive(Debug)]
pub struct FileWatcher {
    path: PathBuf,
    seen: Arc<Mutex<Seen>>,
    /// The regular file last read, and its reason, so an unchanged file is
    /// not read again.
    last: Option<(FileId, Option<String>)>,
}

/// Which regular file, and which version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileWatcher {
    /// Look now, then every [`FILE_POLL`] until `stop`, on a detached
    /// thread: it is never joined, so a look that never returns (a hung
    /// network filesystem) cannot hold up shutdown. `changed` is called
    /// whenever what it sees changes (to wake the alert loop, which may
    /// sleep for a second).
    pub fn spawn(
        mut self,
        stop: CancellationToken,
        changed: impl Fn() + Send + 'static,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("poolwatch-maint-file".into())
            .spawn(move || {
                while !stop.is_cancelled() {
                    if self.check() {
                        changed();
                    }
                    std::thread::sleep(FILE_POLL);
                }
            })
            .map(drop)
    }

    /// Look once and publish what was seen; true when it differs from
    /// what was seen before.
    pub fn check(&mut self) -> bool {
        let started = Instant::now();
        let seen = self.look();
        let took = started.elapsed();
        if took >= SLOW_LOOK {
            tracing::warn!(
                path = %self.path.display(),
                seconds = took.as_secs_f64(),
                "looking at MAINTENANCE_FILE took this long; its last known state stood meanwhile"
            );
        }
        let mut last = lock(&self.seen);
        let changed = *last != seen;
        *last = seen;
        changed
    }

    fn look(&mut self) -> Seen {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            // Missing, or not reachable (a directory on the path missing or
            // unreadable): absent, as `Path::exists` says.
            Err(_) => {
                self.last = None;
                return Seen::Absent;
            }
        };
        if !meta.is_file() {
            // A FIFO, a device, a directory, a socket: present, and its
            // contents are not for reading.
            self.last = None;
            return Seen::Present { reason: None };
        }
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        };
        if let Some((last, reason)) = &self.last
            && *last == id
        {
            return Seen::Present {
                reason: reason.clone(),
            };
        }
        let reason = read_reason(&self.path);
        self.last = Some((id, reason.clone()));
        Seen::Present { reason }
    }
}

/// The first [`MAX_REASON`] bytes of a regular file, trimmed; `None` if it
/// is empty or cannot be read. Opened non-blocking and checked again after
/// the open, so a FIFO swapped in after the stat cannot block the read.
fn read_reason(path: &Path) -> Option<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::with_capacity(MAX_REASON);
    file.take(MAX_REASON as u64).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Maintenance as `/state` and `GET /maintenance` show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MaintenanceStatus {
    pub on: bool,
    pub source: Option<Source>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub suppressed: BTreeMap<String, u64>,
    pub file: Option<String>,
}

fn cap(s: &str) -> String {
    let mut end = s.len().min(MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_window_starts_expires_and_summarises() {
        let mut m = Maintenance::new(false, None, 0.0);
        assert_eq!(m.poll(0.0), None);
        m.turn_on(Source::Api, Some(100.0), "deploy v2", "alice", 10.0);
        let Some(Transition::Started(w)) = m.poll(10.0) else {
            panic!("expected a start")
        };
        assert_eq!((w.reason.as_str(), w.by.as_str()), ("deploy v2", "alice"));
        m.count_suppressed(Kind::Failover);
        m.count_suppressed(Kind::ErrorRate);
        m.count_suppressed(Kind::ErrorRate);
        assert_eq!(m.poll(50.0), None);
        let Some(Transition::Ended {
            why, suppressed, ..
        }) = m.poll(100.0)
        else {
            panic!("expected an end")
        };
        assert_eq!(why, "expired");
        assert_eq!(suppressed[&Kind::ErrorRate], 2);
        assert!(!m.is_on());
        assert!(m.suppressed().is_empty());
    }

    #[test]
    fn a_restored_window_is_not_announced_twice_and_still_ends() {
        let mut m = Maintenance::new(false, None, 0.0);
        m.turn_on(Source::Api, Some(100.0), "deploy v2", "alice", 10.0);
        assert!(matches!(m.poll(10.0), Some(Transition::Started(_))));
        m.count_suppressed(Kind::Failover);
        let saved = m.export().expect("on");
        let json = serde_json::to_string(&saved).unwrap();
        let mut n = Maintenance::new(false, None, 50.0);
        n.restore(serde_json::from_str(&json).unwrap());
        assert!(n.is_on());
        assert_eq!(n.poll(50.0), None, "started before the restart");
        let Some(Transition::Ended { suppressed, .. }) = n.poll(100.0) else {
            panic!("expected an end")
        };
        assert_eq!(suppressed[&Kind::Failover], 1);
        assert_eq!(n.export(), None);
    }

    #[test]
    fn setting_at_start_and_explicit_off() {
        let mut m = Maintenance::new(true, None, 0.0);
        assert!(matches!(m.poll(0.0), Some(Transition::Started(_))));
        assert!(m.turn_off("bob"));
        let Some(Transition::Ended { why, .. }) = m.poll(1.0) else {
            panic!()
        };
        assert_eq!(why, "turned off by bob");
        assert!(!m.turn_off("bob"));
    }

    fn temp_path(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("poolwatch-maint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn flag_file_is_watched() {
        let path = temp_path("regular");
        let mut m = Maintenance::new(false, Some(path.clone()), 0.0);
        let mut w = m.file_watcher().unwrap();
        assert_eq!(m.poll(0.0), None, "nothing seen yet");
        assert!(w.check(), "a first look is news");
        assert!(!w.check(), "nothing changed");
        assert_eq!(m.poll(0.5), None);
        std::fs::write(&path, "db migration\n").unwrap();
        assert_eq!(m.poll(0.8), None, "the poll itself never looks");
        assert!(w.check(), "the file appeared");
        assert!(!w.check(), "the same file");
        let Some(Transition::Started(w0)) = m.poll(1.0) else {
            panic!()
        };
        assert_eq!(w0.reason, "db migration");
        assert_eq!(w0.source, Source::File);
        std::fs::remove_file(&path).unwrap();
        assert!(w.check(), "the file went");
        assert!(matches!(m.poll(2.0), Some(Transition::Ended { .. })));
    }

    #[test]
    fn a_long_reason_is_read_only_up_to_the_cap() {
        let path = temp_path("long");
        std::fs::write(&path, "x".repeat(1 << 20)).unwrap();
        let mut m = Maintenance::new(false, Some(path.clone()), 0.0);
        m.file_watcher().unwrap().check();
        let Some(Transition::Started(w)) = m.poll(1.0) else {
            panic!()
        };
        assert_eq!(w.reason.len(), MAX_REASON);
        std::fs::remove_file(&path).unwrap();
    }

    /// Runs one look on another thread; panics if it does not come back.
    fn check_returns(w: FileWatcher) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut w = w;
            w.check();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("looking at the flag file blocked");
    }

    #[test]
    fn a_fifo_or_a_device_is_present_and_never_read() {
        let fifo = temp_path("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [fifo.clone(), PathBuf::from("/dev/zero")] {
            let mut m = Maintenance::new(false, Some(path.clone()), 0.0);
            check_returns(m.file_watcher().unwrap());
            let Some(Transition::Started(w)) = m.poll(1.0) else {
                panic!("{} not seen", path.display())
            };
            assert_eq!(w.reason, "flag file present");
        }
        std::fs::remove_file(&fifo).unwrap();
    }

    #[test]
    fn a_fifo_swapped_in_after_the_stat_is_not_read() {
        let fifo = temp_path("swap");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_reason(&p));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("reading a FIFO blocked");
        assert_eq!(got, None);
        std::fs::remove_file(&fifo).unwrap();
    }

    #[test]
    fn extending_is_not_a_second_start() {
        let mut m = Maintenance::new(false, None, 0.0);
        m.turn_on(Source::Api, Some(60.0), "a", "x", 0.0);
        assert!(m.poll(0.0).is_some());
        m.turn_on(Source::Api, Some(600.0), "a", "x", 30.0);
        assert_eq!(m.poll(61.0), None);
        assert!(m.is_on());
        assert_eq!(m.window().unwrap().since, 0.0);
    }
}
