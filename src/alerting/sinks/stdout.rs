//! Stdout: the sink when no Slack webhook is configured.
//!
//! One JSON object per line, so whatever collects the container's output
//! (or `jq`) can read alerts without a Slack workspace. Each line is
//! flushed as soon as it is written: a block-buffered pipe would otherwise
//! hold an alert back until more arrive, which during an incident may be
//! never.
//!
//! JSON encoding escapes every control character, so text from requests
//! cannot forge an extra line.

use std::io::{self, Write};

use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::alerting::delivery::retry::{Failure, Transport};
use crate::alerting::finding::{Kind, Severity};
use crate::alerting::wording::{Notification, timestamp};

/// One stdout line. `fields` keeps the notification's order; a label that
/// repeats gets ` #2`, ` #3`… so that no value is lost to a duplicate key.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// When the notification was handed to delivery, RFC 3339 UTC.
    pub ts: String,
    pub kind: Kind,
    pub severity: Severity,
    pub pool: Option<&'a str>,
    pub title: &'a str,
    pub summary: &'a str,
    #[serde(serialize_with = "fields_as_object")]
    pub fields: &'a [(String, String)],
    pub first_seen: &'a str,
    pub resolved: bool,
    pub runbook_url: Option<&'a str>,
    /// The status page (`PUBLIC_URL`), if set.
    pub status_url: Option<&'a str>,
}

impl<'a> Line<'a> {
    /// The line for `n`, stamped `ts` (Unix seconds).
    pub fn new(n: &'a Notification, ts: i64) -> Line<'a> {
        Line {
            ts: timestamp(ts as f64),
            kind: n.kind,
            severity: n.severity,
            pool: n.pool.as_deref(),
            title: &n.title,
            summary: &n.summary,
            fields: &n.fields,
            first_seen: &n.first_seen,
            resolved: n.resolved,
            runbook_url: n.runbook_url.as_deref(),
            status_url: n.status_url.as_deref(),
        }
    }
}

fn fields_as_object<S: Serializer>(fields: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(fields.len()))?;
    let mut seen: Vec<&str> = Vec::with_capacity(fields.len());
    for (label, value) in fields.iter() {
        let repeats = seen.iter().filter(|l| **l == label.as_str()).count();
        seen.push(label);
        if repeats == 0 {
            map.serialize_entry(label, value)?;
        } else {
            map.serialize_entry(&format!("{label} #{}", repeats + 1), value)?;
        }
    }
    map.end()
}

/// `n` as one JSON line (without the newline), stamped `ts` (Unix seconds).
pub fn line(n: &Notification, ts: i64) -> String {
    // Serializing borrowed strings and a string-keyed map cannot fail.
    serde_json::to_string(&Line::new(n, ts)).expect("a notification serializes to JSON")
}

/// Writes `line` and a newline to `out` and flushes it.
pub fn write_line(out: &mut impl Write, line: &[u8]) -> io::Result<()> {
    out.write_all(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `n` as the bytes of its line, stamped now.
pub fn body(n: &Notification) -> Bytes {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Bytes::from(line(n, ts))
}

/// Standard output as a delivery transport.
pub struct Stdout;

impl Transport for Stdout {
    async fn send(&self, body: Bytes) -> Result<(), Failure> {
        // A full pipe blocks the writer; keep that off the runtime.
        // Holding the lock for the whole line keeps it from interleaving
        // with other writers.
        tokio::task::spawn_blocking(move || write_line(&mut io::stdout().lock(), &body))
            .await
            .map_err(|e| Failure::Permanent(format!("stdout writer: {e}")))?
            .map_err(|e| Failure::Permanent(format!("cannot write to stdout: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn notification() -> Notification {
        Notification {
            kind: Kind::ErrorRate,
            severity: Severity::Warning,
            pool: Some("blue".into()),
            title: "High error rate on blue".into(),
            summary: "12% of attempts fail.\n<!channel>".into(),
            fields: vec![
                ("Ratio".into(), "0.12".into()),
                ("Window".into(), "200".into()),
                ("Ratio".into(), "again".into()),
            ],
            first_seen: "2026-11-05T09:07:03Z".into(),
            resolved: false,
            runbook_url: None,
            status_url: Some("https://poolwatch.example.com/".into()),
        }
    }

    #[test]
    fn one_json_object_per_line_with_every_field() {
        let l = line(&notification(), 1_793_869_623);
        assert!(!l.contains('\n'));
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            v,
            json!({
                "ts": "2026-11-05T09:07:03Z",
                "kind": "error_rate",
                "severity": "warning",
                "pool": "blue",
                "title": "High error rate on blue",
                "summary": "12% of attempts fail.\n<!channel>",
                "fields": {"Ratio": "0.12", "Window": "200", "Ratio #2": "again"},
                "first_seen": "2026-11-05T09:07:03Z",
                "resolved": false,
                "runbook_url": null,
                "status_url": "https://poolwatch.example.com/",
            })
        );
        // Field order is the notification's.
        let ratio = l.find("\"Ratio\"").unwrap();
        let window = l.find("\"Window\"").unwrap();
        assert!(ratio < window);
    }

    #[test]
    fn write_line_ends_each_line() {
        let mut out = Vec::new();
        write_line(&mut out, b"{}").unwrap();
        write_line(&mut out, b"{\"a\":1}").unwrap();
        assert_eq!(out, b"{}\n{\"a\":1}\n");
    }
}
