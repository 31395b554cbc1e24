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

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::alert::Kind;
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    file: Option<PathBuf>,
    suppressed: BTreeMap<Kind, u64>,
    /// Set when an explicit "off" ended the window, for the end message.
    ended_by: Option<String>,
}

/// Longest reason kept; it comes from API callers and files.
const MAX_REASON: usize = 500;

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
            file,
            ..Maintenance::default()
        }
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
        if let Some(path) = &self.file {
            let exists = path.exists();
            let from_file = self.active.as_ref().map(|w| w.source) == Some(Source::File);
            if exists && self.active.is_none() {
                let reason = std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "flag file present".into());
                self.active = Some(Window {
                    source: Source::File,
                    since: now,
                    until: None,
                    reason: cap(&reason),
                    by: format!("file {}", path.display()),
                });
            } else if !exists && from_file {
                self.active = None;
                self.ended_by = Some(format!("file {} removed", path.display()));
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
            file: self.file.as_ref().map(|p| p.display().to_string()),
        }
    }
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

    #[test]
    fn flag_file_is_watched() {
        let path = std::env::temp_dir().join(format!("poolwatch-maint-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut m = Maintenance::new(false, Some(path.clone()), 0.0);
        assert_eq!(m.poll(0.0), None);
        std::fs::write(&path, "db migration\n").unwrap();
        let Some(Transition::Started(w)) = m.poll(1.0) else {
            panic!()
        };
        assert_eq!(w.reason, "db migration");
        assert_eq!(w.source, Source::File);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(m.poll(2.0), Some(Transition::Ended { .. })));
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
