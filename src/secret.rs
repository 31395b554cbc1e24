//! Secrets: credentials that must not appear in logs, errors or `/state`.
//!
//! A [`Secret`] prints `[redacted]` however it is formatted or serialized,
//! so settings can be logged and shown whole. The one place that needs the
//! value asks for it with [`Secret::expose`].
//!
//! Secrets must not appear even in part. Whatever a peer may echo back (an
//! error page that repeats the URL it was asked for, a proxy that prints
//! the `Authorization` header) goes through a [`Redactor`] that knows every
//! spelling of every configured secret, and redacts *before* it cuts text
//! to length: a cut that falls inside a secret drops the whole secret,
//! never leaves its first part. Log lines get the same treatment once more
//! on their way to stderr ([`RedactingWriter`]), and so do panic messages
//! ([`redact_panics`]).
//!
//! A module of its own because settings, the HTTP API, the admin client and
//! alert delivery all hold secrets; none of them should import another just
//! for this type.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A credential that must not appear in logs, errors or `/state`: its
/// `Debug`, `Display` and `Serialize` all print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Every spelling under which the secret could come back: the value
    /// itself; for a URL, its path and every long path segment (the path
    /// of a webhook URL is the actual token); and each of those with `/`
    /// escaped as JSON may write it.
    pub(crate) fn spellings(&self) -> Vec<String> {
        let value = self.0.trim();
        if value.is_empty() {
            return Vec::new();
        }
        let mut out = vec![value.to_string()];
        if let Ok(url) = reqwest::Url::parse(value) {
            let path = url.path();
            if path.len() > 1 {
                out.push(path.to_string());
                out.extend(
                    path.split('/')
                        .filter(|seg| seg.len() >= TOKEN_MIN)
                        .map(str::to_string),
                );
            }
            if let Some(password) = url.password() {
                out.push(password.to_string());
            }
        }
        let escaped: Vec<String> = out
            .iter()
            .filter(|s| s.contains('/'))
            .map(|s| s.replace('/', "\\/"))
            .collect();
        out.extend(escaped);
        out.sort();
        out.dedup();
        out
    }
}

/// Path segments at least this long count as tokens of their own: an echo
/// of only the last segment of a webhook URL still gives the channel away.
/// Shorter ones (`services`, `T000`) name nothing secret alone.
const TOKEN_MIN: usize = 9;

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// A trailing run of at least this many bytes that starts a secret is
/// dropped from cut text: the rest of the secret may be what was cut off.
const PARTIAL_MIN: usize = 4;

/// Redacts every spelling of a set of secrets from text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a URL is replaced whole before its path.
    spellings: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Also redact `secret`.
    pub fn add(&mut self, secret: &Secret) {
        self.spellings.extend(secret.spellings());
        self.spellings
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.spellings.dedup();
    }

    /// Length of the longest spelling: read this much past a cut to see
    /// every secret that starts before it.
    pub fn longest(&self) -> usize {
        self.spellings.first().map_or(0, String::len)
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if !self.spellings.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let (out, _) = self.redact_cut(text, text.len(), false);
        Cow::Owned(out)
    }

    /// At most the first `max` bytes of `text` (cut on a character
    /// boundary), redacted, for text a peer sent. Secrets are found in the
    /// whole of `text` before the cut, so one that straddles the cut is
    /// replaced whole; and text that ends in the beginning of a secret (the
    /// peer cut it, or we did) loses that beginning. Returns the text and
    /// whether anything was cut.
    pub fn redact_prefix(&self, text: &str, max: usize) -> (String, bool) {
        self.redact_cut(text, max, true)
    }

    fn redact_cut(&self, text: &str, max: usize, drop_tail: bool) -> (String, bool) {
        let mut out = String::with_capacity(text.len().min(max) + REDACTED.len());
        let mut pos = 0;
        let mut cut = false;
        while pos < text.len() {
            if pos >= max {
                cut = true;
                break;
            }
            let found = self
                .spellings
                .iter()
                .filter_map(|s| text[pos..].find(s.as_str()).map(|at| (pos + at, s.len())))
                .min_by_key(|&(at, len)| (at, std::cmp::Reverse(len)));
            let next = found.map_or(text.len(), |(at, _)| at);
            if next > max {
                out.push_str(&text[pos..floor_char_boundary(text, max)]);
                cut = true;
                break;
            }
            out.push_str(&text[pos..next]);
            match found {
                Some((at, len)) => {
                    out.push_str(REDACTED);
                    pos = at + len;
                }
                None => pos = text.len(),
            }
        }
        if drop_tail {
            self.drop_partial_tail(&mut out);
        }
        (out, cut)
    }

    /// Removes a tail of `out` that is the start of a secret.
    fn drop_partial_tail(&self, out: &mut String) {
        let longest_partial = self
            .spellings
            .iter()
            .filter_map(|s| {
                (PARTIAL_MIN..s.len())
                    .rev()
                    .find(|&n| s.is_char_boundary(n) && out.ends_with(&s[..n]))
            })
            .max();
        if let Some(n) = longest_partial {
            out.truncate(out.len() - n);
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A writer for log lines that redacts every secret before they reach
/// stderr: defence in depth behind the redaction of what peers answer, for
/// any line that would otherwise carry a secret. The log formatter writes
/// each event with one call, so no secret is split between two writes.
#[derive(Clone)]
pub struct RedactingWriter {
    redactor: Arc<Redactor>,
}

impl RedactingWriter {
    pub fn new(redactor: Arc<Redactor>) -> RedactingWriter {
        RedactingWriter { redactor }
    }
}

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = self.redactor.redact(&text);
        io::stderr().lock().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingWriter {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> RedactingWriter {
        self.clone()
    }
}

/// Installs a panic hook that prints panic messages with every secret
/// redacted, in place of the default hook.
pub fn redact_panics(redactor: Arc<Redactor>) {
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let _ = writeln!(
            io::stderr(),
            "thread '{name}' panicked{at}: {}",
            redactor.redact(&message)
        );
    }));
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(s))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET1";

    #[test]
    fn secret_never_prints() {
        let s = Secret::new(URL);
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn every_spelling_is_redacted() {
        let r = Redactor::new([&Secret::new(URL)]);
        assert_eq!(
            r.redact(&format!(
                "error for ({URL}) and /services/T000/B000/XXXXSECRET1, \\/services\\/T000\\/B000\\/XXXXSECRET1 or XXXXSECRET1"
            )),
            "error for ([redacted]) and [redacted], [redacted] or [redacted]"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        let r = Redactor::new([&Secret::new("user:pa55word"), &Secret::new("")]);
        assert_eq!(r.redact("auth user:pa55word"), "auth [redacted]");
        assert_eq!(r.redact(""), "");
    }

    #[test]
    fn a_cut_never_leaves_part_of_a_secret() {
        let r = Redactor::new([&Secret::new(URL)]);
        let path = "/services/T000/B000/XXXXSECRET1";
        for pad in 0..80 {
            let text = format!("{}{path} tail", "x".repeat(pad));
            for max in 1..text.len() + 2 {
                let (out, _) = r.redact_prefix(&text, max);
                for n in PARTIAL_MIN..=path.len() {
                    for start in 0..=path.len() - n {
                        let part = &path[start..start + n];
                        if part.contains("XXXX") || part.contains("SECRET") {
                            assert!(!out.contains(part), "{pad} {max}: {out:?} holds {part:?}");
                        }
                    }
                }
                assert!(out.len() <= max + REDACTED.len(), "{out:?}");
            }
        }
        // Cut after the secret: it is replaced, the rest is kept to the cut.
        let (out, cut) = r.redact_prefix(&format!("a {path} bcdef"), 40);
        assert_eq!((out.as_str(), cut), ("a [redacted] bcdef", false));
        let (out, cut) = r.redact_prefix(&format!("a {path} bcdef"), 36);
        assert_eq!((out.as_str(), cut), ("a [redacted] bc", true));
        // A peer that cut the secret itself: its beginning goes too.
        let (out, _) = r.redact_prefix("see /services/T000/B000/XXXX", 300);
        assert_eq!(out, "see ");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let r = Redactor::default();
        let (out, cut) = r.redact_prefix("ééé", 3);
        assert_eq!((out.as_str(), cut), ("é", true));
    }
}
