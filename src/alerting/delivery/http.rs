//! HTTP: one POST of a rendered body, and what its answer means, for every
//! sink that talks HTTP (Slack, Alertmanager).
//!
//! - 2xx: delivered.
//! - 429: rate limited, with `Retry-After` (see `retry`).
//! - 5xx, timeouts, connection errors: transient.
//! - 3xx: a configuration error. A webhook or an Alertmanager never
//!   redirects, and following one would hand the alert (and the URL's
//!   secret path) to another host; the reason names the host it pointed
//!   to, never its path.
//! - a TLS certificate the client rejects: a configuration error too
//!   (wrong host, or a private CA that is not trusted), named with the
//!   host; retrying for minutes cannot fix it.
//! - any other status: a refusal, with the start of the answer's body.
//!
//! The URL and any credentials are secrets: reqwest's errors are stripped
//! of the URL, and every reason and body excerpt goes through the sink's
//! [`Redactor`] before it is cut to length, so not even part of a secret
//! reaches a log line.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};

use super::retry::{Failure, RETRY_AFTER_DEFAULT, RETRY_AFTER_MAX, human};
use crate::secret::{Redactor, Secret};
use crate::tls::install_crypto_provider;

/// Most bytes of an error response kept for the log: Slack's answers are
/// one word, anything longer is a proxy's HTML page.
pub const ERROR_BODY_MAX: usize = 300;

/// How a request proves who sends it.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Basic` from `user:password`.
    Basic(Secret),
    /// `Authorization: Bearer TOKEN`.
    Bearer(Secret),
}

impl Auth {
    /// Everything that must be redacted: the credential, and the header
    /// value it becomes (a peer that echoes headers would show that).
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            Auth::Basic(userpass) => {
                use base64::Engine as _;
                let mut out = vec![
                    userpass.clone(),
                    Secret::new(
                        base64::engine::general_purpose::STANDARD.encode(userpass.expose()),
                    ),
                ];
                if let Some((_, password)) = userpass.expose().split_once(':') {
                    out.push(Secret::new(password));
                }
                out
            }
            Auth::Bearer(token) => vec![token.clone()],
        }
    }
}

/// One receiver reached over HTTP.
pub struct Endpoint {
    client: reqwest::Client,
    url: Secret,
    /// The URL's host, which may be shown.
    host: String,
    /// "Slack", "Alertmanager": how reasons name the receiver.
    receiver: &'static str,
    auth: Option<Auth>,
    timeout: Duration,
    redactor: Redactor,
}

impl Endpoint {
    /// An endpoint for `url` (already checked to be an absolute http(s)
    /// URL). Fails when the HTTPS client cannot be built (for example, no
    /// CA certificates on the system), with the URL redacted.
    pub fn new(
        receiver: &'static str,
        url: &Secret,
        auth: Option<Auth>,
        timeout: Duration,
    ) -> Result<Endpoint, String> {
        let mut redactor = Redactor::new([url]);
        for s in auth.iter().flat_map(Auth::secrets) {
            redactor.add(&s);
        }
        let host = reqwest::Url::parse(url.expose())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A receiver never redirects: a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("poolwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                redactor
                    .redact(&format!(
                        "cannot build the HTTPS client for {receiver}: {}",
                        chain(&e.without_url())
                    ))
                    .into_owned()
            })?;
        Ok(Endpoint {
            client,
            url: url.clone(),
            host,
            receiver,
            auth,
            timeout,
            redactor,
        })
    }

    /// The host of the URL, which may be shown.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// POSTs `body` as JSON once.
    pub async fn post_json(&self, body: Bytes) -> Result<(), Failure> {
        let mut request = self
            .client
            .post(self.url.expose())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        request = match &self.auth {
            Some(Auth::Basic(userpass)) => {
                let (user, password) = userpass
                    .expose()
                    .split_once(':')
                    .unwrap_or((userpass.expose(), ""));
                request.basic_auth(user, Some(password))
            }
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.request_failure(e))?;
        let status = response.status();
        if status.is_success() {
            tracing::debug!(
                receiver = self.receiver,
                status = status.as_u16(),
                "alert accepted"
            );
            return Ok(());
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::RateLimited(retry_after(response.headers())));
        }
        if status.is_redirection() {
            let to = location_host(response.headers());
            return Err(Failure::Permanent(format!(
                "configuration error: {} at {} answered {} (a redirect{}); a receiver never \
                 redirects, so the URL is wrong: check it (not retried)",
                self.receiver,
                self.host,
                status.as_u16(),
                to.map_or(String::new(), |h| format!(" to {h}"))
            )));
        }
        let text = self.error_text(response).await;
        let reason = format!("{} answered {}: {text}", self.receiver, status.as_u16());
        if status.is_server_error() {
            Err(Failure::Transient(reason))
        } else {
            Err(Failure::Permanent(reason))
        }
    }

    fn request_failure(&self, e: reqwest::Error) -> Failure {
        let e = e.without_url();
        if e.is_timeout() {
            return Failure::Transient(format!(
                "no answer from {} within {}",
                self.receiver,
                human(self.timeout)
            ));
        }
        if let Some(why) = tls_rejection(&e) {
            return Failure::Permanent(self.redact(format!(
                "configuration error: the TLS certificate of {} ({}) was rejected: {why}; check \
                 the URL's host, or trust the CA that signed it (not retried)",
                self.host, self.receiver
            )));
        }
        let reason = self.redact(format!(
            "cannot reach {} at {}: {}",
            self.receiver,
            self.host,
            chain(&e)
        ));
        if e.is_builder() {
            Failure::Permanent(reason)
        } else {
            Failure::Transient(reason)
        }
    }

    fn redact(&self, text: String) -> String {
        self.redactor.redact(&text).into_owned()
    }

    /// The start of the response body, on one line, for the log: read far
    /// enough past the cut to see any secret that starts before it, then
    /// redacted, then cut.
    async fn error_text(&self, mut response: reqwest::Response) -> String {
        let want = ERROR_BODY_MAX + self.redactor.longest();
        let mut bytes = Vec::new();
        let mut more = false;
        loop {
            if bytes.len() >= want {
                more = true;
                break;
            }
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    if bytes.is_empty() {
                        return self
                            .redact(format!("(body unreadable: {})", chain(&e.without_url())));
                    }
                    break;
                }
            }
        }
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let (text, cut) = self.redactor.redact_prefix(&text, ERROR_BODY_MAX);
        let mut text = text.trim().to_string();
        if text.is_empty() {
            return "(empty body)".into();
        }
        if cut || more {
            text.push('…');
        }
        text
    }
}

/// Why the TLS handshake rejected the server's certificate, if that is
/// what `e` says.
fn tls_rejection(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(rustls::Error::InvalidCertificate(why)) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("{why:?}"));
        }
        // An I/O error hides its inner error from `source`.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(rustls::Error::InvalidCertificate(why)) =
                inner.downcast_ref::<rustls::Error>()
        {
            return Some(format!("{why:?}"));
        }
        // Wrapped where a downcast cannot see it: rustls words it so.
        if let Some((_, why)) = err.to_string().split_once("invalid peer certificate: ") {
            return Some(why.to_string());
        }
        current = err.source();
    }
    None
}

/// The host a redirect points to, never its path.
fn location_host(headers: &HeaderMap) -> Option<String> {
    let location = headers.get(LOCATION)?.to_str().ok()?;
    let url = reqwest::Url::parse(location).ok()?;
    url.host_str().map(str::to_string)
}

/// `Retry-After` as seconds (Slack sends whole seconds), capped; the
/// default when absent or not a number.
pub fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(RETRY_AFTER_DEFAULT, |s| {
            Duration::from_secs_f64(s.min(RETRY_AFTER_MAX.as_secs_f64()))
        })
}

/// An error and its causes, "outer: inner: innermost": reqwest's own
/// message ("error sending request") says little without them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[test]
    fn retry_after_defaults_and_caps() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Duration::from_secs(2));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&h), Duration::from_secs(60));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }

    #[test]
    fn a_redirect_shows_its_host_only() {
        let mut h = HeaderMap::new();
        h.insert(
            LOCATION,
            HeaderValue::from_static("https://other.test/services/T/B/SECRET"),
        );
        assert_eq!(location_host(&h).as_deref(), Some("other.test"));
        h.insert(LOCATION, HeaderValue::from_static("/relative/SECRET"));
        assert_eq!(location_host(&h), None);
    }

    #[test]
    fn basic_auth_redacts_its_header_value_too() {
        let secrets = Auth::Basic(Secret::new("am:pa55word")).secrets();
        let values: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        assert!(values.contains(&"am:pa55word"));
        assert!(values.contains(&"pa55word"));
        assert!(values.contains(&"YW06cGE1NXdvcmQ="));
    }

    #[test]
    fn error_chain_skips_repeats() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("a: b", Some(Box::new(E("b", Some(Box::new(E("c", None)))))));
        assert_eq!(chain(&e), "a: b: c");
    }

    #[test]
    fn a_rejected_certificate_is_recognised_through_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert_eq!(tls_rejection(&io).as_deref(), Some("UnknownIssuer"));
        let other = std::io::Error::other("connection refused");
        assert_eq!(tls_rejection(&other), None);
        let worded = std::io::Error::other(
            "client error (Connect): invalid peer certificate: NotValidForName",
        );
        assert_eq!(tls_rejection(&worded).as_deref(), Some("NotValidForName"));
    }
}
