//! Secrets: credentials that must not appear in logs, errors or `/state`.
//!
//! A [`Secret`] prints `[redacted]` however it is formatted or serialized,
//! so settings can be logged and shown whole. The one place that needs the
//! value asks for it with [`Secret::expose`].
//!
//! A module of its own because settings, the HTTP API, the admin client and
//! alert delivery all hold secrets; none of them should import another just
//! for this type.

use std::fmt;

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

    /// Replaces every occurrence of the secret, and of its URL path (the
    /// part of a webhook URL that is the actual token), in `text`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.0.as_str(), "[redacted]");
        if let Some(path) = reqwest::Url::parse(&self.0)
            .ok()
            .map(|u| u.path().to_owned())
            .filter(|p| p.len() > 1)
        {
            out = out.replace(&path, "/[redacted]");
        }
        out
    }
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

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";

    #[test]
    fn secret_never_prints() {
        let s = Secret::new(URL);
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(
            s.scrub(&format!(
                "error for ({URL}) and /services/T000/B000/XXXXSECRET"
            )),
            "error for ([redacted]) and /[redacted]"
        );
    }
}
