//! The state file (`STATE_FILE`): what must outlive a restart, so that a
//! restart neither repeats a notice still in its cooldown nor forgets an
//! incident whose recovery is still to be told.
//!
//! It holds the open incidents (start, last bad sighting, evidence of
//! health, whether and when people were told), maintenance, the primary
//! and serving pool the rules settled on, the learned address map, and the
//! alerts on the Alertmanager sink's board (so that Alertmanager keeps
//! seeing the same alerts). Not the windows or counters: they describe
//! traffic, and traffic after the restart is what the rules judge.
//!
//! Written off the alert loop's path: the loop publishes the latest state
//! on a watch channel whenever it changed, and a writer task writes it,
//! so a burst of changes costs one write, never a wait in the loop. Each
//! write is atomic and durable: a temporary file in the same directory,
//! fsync, rename over the old one, fsync of the directory. A SIGKILL leaves
//! the last complete write.
//!
//! Read once at start. A file that cannot be used is set aside (renamed
//! next to itself with the reason and the time, never deleted) with a log
//! line, and poolwatch starts without it: unreadable or not JSON
//! (`corrupt`), another format version (`version`), written for other
//! settings (`other-settings`: another `POOLS` list or `ACTIVE_POOL`, which
//! give pools and incidents another meaning) or older than [`MAX_AGE`]
//! (`stale`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::alerting::incident::SavedIncident;
use crate::alerting::sinks::alertmanager::SavedAlert;
use crate::maintenance::SavedMaintenance;

/// The format written; a file of another version is set aside.
pub const VERSION: u32 = 1;

/// A state older than this (seconds) is set aside: incidents from that long
/// ago are history, and the rules find whatever is still wrong again.
pub const MAX_AGE: f64 = 3600.0;

/// Least time between two writes: a burst of changes (an incident's
/// evidence grows every tick) is written at most this often, the latest
/// state always last.
pub const WRITE_SPACING: Duration = Duration::from_millis(250);

/// The settings a state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `POOLS`, in order: incidents and addresses name these pools.
    pub pools: Vec<String>,
    /// `ACTIVE_POOL`: the primary an operator configured.
    pub active_pool: String,
}

/// One learned address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAddr {
    pub addr: String,
    pub pool: String,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    /// Unix seconds; set by the writer.
    pub written_at: f64,
    pub settings: Fingerprint,
    /// The pool whose failures count as a failover now.
    pub primary: String,
    pub serving: Option<String>,
    pub incidents: Vec<SavedIncident>,
    pub maintenance: Option<SavedMaintenance>,
    pub addresses: Vec<SavedAddr>,
    /// The alerts on the Alertmanager sink's board, firing and recently
    /// resolved; empty without Alertmanager. Optional in the format (a file
    /// written before it was kept reads as empty), so the version stays.
    #[serde(default)]
    pub alertmanager: Vec<SavedAlert>,
}

/// Why a state file was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAside {
    Corrupt,
    Version,
    OtherSettings,
    Stale,
}

impl SetAside {
    fn label(self) -> &'static str {
        match self {
            SetAside::Corrupt => "corrupt",
            SetAside::Version => "version",
            SetAside::OtherSettings => "other-settings",
            SetAside::Stale => "stale",
        }
    }
}

/// Read the state at `path` for settings `expect` at `now`. `None` when
/// there is none, or it was set aside (logged here).
pub fn load(path: &Path, expect: &Fingerprint, now: f64) -> Option<Saved> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no state file yet: starting afresh");
            return None;
        }
        Err(e) => {
            set_aside(
                path,
                SetAside::Corrupt,
                &format!("cannot read it: {e}"),
                now,
            );
            return None;
        }
    };
    match check(&bytes, expect, now) {
        Ok(saved) => Some(saved),
        Err((why, detail)) => {
            set_aside(path, why, &detail, now);
            None
        }
    }
}

/// Whether `bytes` is a state poolwatch may use now.
pub fn check(bytes: &[u8], expect: &Fingerprint, now: f64) -> Result<Saved, (SetAside, String)> {
    // The version first, so that a newer format is named as such and not
    // as corrupt.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_slice(bytes)
        .map_err(|e| (SetAside::Corrupt, format!("not a state file: {e}")))?;
    if v.version != VERSION {
        return Err((
            SetAside::Version,
            format!(
                "format version {}, this poolwatch reads {VERSION}",
                v.version
            ),
        ));
    }
    let saved: Saved = serde_json::from_slice(bytes)
        .map_err(|e| (SetAside::Corrupt, format!("not a state file: {e}")))?;
    if saved.settings != *expect {
        return Err((
            SetAside::OtherSettings,
            format!(
                "written for POOLS={} ACTIVE_POOL={}, running with POOLS={} ACTIVE_POOL={}",
                saved.settings.pools.join(","),
                saved.settings.active_pool,
                expect.pools.join(","),
                expect.active_pool
            ),
        ));
    }
    if !saved.written_at.is_finite() || now - saved.written_at > MAX_AGE {
        return Err((
            SetAside::Stale,
            format!(
                "written {:.0} s ago, more than {MAX_AGE:.0} s",
                now - saved.written_at
            ),
        ));
    }
    Ok(saved)
}

/// Set aside a state that parsed but could not be restored (it names a
/// pool this run does not know).
pub fn set_aside_unusable(path: &Path, detail: &str, now: f64) {
    set_aside(path, SetAside::Corrupt, detail, now);
}

/// Rename the file at `path` next to itself, as `NAME.REASON-UNIXTIME`.
fn set_aside(path: &Path, why: SetAside, detail: &str, now: f64) {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{}", why.label(), now as i64));
    let to = path.with_file_name(name);
    match std::fs::rename(path, &to) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            moved_to = %to.display(),
            reason = why.label(),
            detail,
            "state file set aside; starting without it"
        ),
        Err(e) => tracing::error!(
            path = %path.display(),
            reason = why.label(),
            detail,
            error = %e,
            "state file unusable and could not be set aside; starting without it, and it \
             will be overwritten"
        ),
    }
}

/// Write `saved` to `path` atomically and durably: temporary file in the
/// same directory, fsync, rename, fsync of the directory.
pub fn write(path: &Path, saved: &Saved) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&temp)?;
        serde_json::to_writer_pretty(&mut f, saved)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Write each state the channel carries until its sender is gone, then the
/// last one if it was not written yet. Writes run on the blocking pool; a
/// failed write is logged (once until one succeeds again) and the next
/// change tries again.
pub async fn writer(path: PathBuf, mut rx: watch::Receiver<Option<Saved>>) {
    let mut written: Option<Saved> = None;
    let mut failing = false;
    loop {
        let closed = rx.changed().await.is_err();
        let latest = rx.borrow_and_update().clone();
        if let Some(mut saved) = latest
            && written.as_ref() != Some(&saved)
        {
            saved.written_at = crate::alerting::now_unix();
            let (p, s) = (path.clone(), saved.clone());
            let result = tokio::task::spawn_blocking(move || write(&p, &s))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            match result {
                Ok(()) => {
                    if failing {
                        tracing::info!(path = %path.display(), "state file written again");
                    }
                    failing = false;
                    saved.written_at = 0.0;
                    written = Some(saved);
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(
                            path = %path.display(),
                            error = %e,
                            "cannot write the state file; a restart now would forget open \
                             incidents and maintenance"
                        );
                    }
                    failing = true;
                }
            }
        }
        if closed {
            return;
        }
        tokio::time::sleep(WRITE_SPACING).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint {
            pools: vec!["blue".into(), "green".into()],
            active_pool: "blue".into(),
        }
    }

    fn saved(at: f64) -> Saved {
        Saved {
            version: VERSION,
            written_at: at,
            settings: fp(),
            primary: "blue".into(),
            serving: Some("green".into()),
            incidents: vec![],
            maintenance: None,
            addresses: vec![SavedAddr {
                addr: "10.0.0.2:3000".into(),
                pool: "blue".into(),
            }],
            alertmanager: vec![],
        }
    }

    #[test]
    fn written_atomically_and_read_back() {
        let dir = std::env::temp_dir().join(format!("pw-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write(&path, &saved(1000.0)).unwrap();
        let back = load(&path, &fp(), 1010.0).expect("usable");
        assert_eq!(back, saved(1000.0));
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unusable_states_are_named_for_what_is_wrong() {
        let bytes = |s: &Saved| serde_json::to_vec(s).unwrap();
        let why = |b: &[u8]| check(b, &fp(), 1000.0).unwrap_err().0;
        assert_eq!(why(b"{\"version\": 1, \"trunc"), SetAside::Corrupt);
        assert_eq!(why(b"[]"), SetAside::Corrupt);
        let mut v = saved(999.0);
        v.version = 2;
        assert_eq!(why(&bytes(&v)), SetAside::Version);
        let mut o = saved(999.0);
        o.settings.active_pool = "green".into();
        assert_eq!(why(&bytes(&o)), SetAside::OtherSettings);
        let mut o = saved(999.0);
        o.settings.pools.reverse();
        assert_eq!(why(&bytes(&o)), SetAside::OtherSettings);
        assert_eq!(why(&bytes(&saved(1000.0 - MAX_AGE - 1.0))), SetAside::Stale);
        assert!(check(&bytes(&saved(999.0)), &fp(), 1000.0).is_ok());
    }

    #[test]
    fn a_file_without_alertmanager_alerts_reads_as_an_empty_board() {
        let mut v = serde_json::to_value(saved(999.0)).unwrap();
        v.as_object_mut().unwrap().remove("alertmanager");
        let back = check(&serde_json::to_vec(&v).unwrap(), &fp(), 1000.0).expect("usable");
        assert_eq!(back, saved(999.0));
    }

    #[test]
    fn a_file_set_aside_is_renamed_not_deleted() {
        let dir = std::env::temp_dir().join(format!("pw-aside-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(load(&path, &fp(), 1234.0), None);
        assert!(!path.exists());
        let aside = dir.join("state.json.corrupt-1234");
        assert_eq!(std::fs::read(&aside).unwrap(), b"garbage");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
