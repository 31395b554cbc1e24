//! A local stand-in for Slack's incoming webhook, for delivery tests.
//!
//! It listens on `127.0.0.1:0`, on its own tokio runtime so that plain
//! `#[test]` functions drive it through a blocking API, and answers the
//! way Slack does: `200 ok`, an error status with Slack's one-word body,
//! `429` with `Retry-After`, a slow answer, or none at all. The mode can be
//! switched while a client is waiting, and requests whose body holds some
//! text can be made to hang while the others are answered
//! ([`Webhook::hang_when`]).
//!
//! Every request is recorded, refused ones included. Each body it accepts
//! (2xx) is checked against `poolwatch::alerting::sinks::slack::check_contract`, and
//! anything that breaks the contract (or a wrong method, path or content
//! type) is kept in [`Webhook::violations`] so that tests can assert none.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// The path of [`Webhook::url`], shaped like Slack's.
pub const PATH: &str = "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX";

/// How the webhook answers the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `200`, body `ok`.
    Ok,
    /// This status and body, e.g. `Status(400, "invalid_payload")`.
    Status(u16, &'static str),
    /// `429` with `Retry-After: retry_after_secs`, body `rate_limited`.
    RateLimited { retry_after_secs: u64 },
    /// Read the request, never answer until the mode changes (then answer
    /// as the new mode says) or the webhook is dropped.
    Hang,
    /// Wait this long, then `200 ok`.
    Slow(Duration),
    /// This status, with a body that echoes the request's path (the
    /// webhook's secret) after `pad` bytes of filler, as some proxies'
    /// error pages do.
    Echo { status: u16, pad: usize },
    /// This 3xx status, with `Location: location`.
    Redirect { status: u16, location: &'static str },
}

/// One request, as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the request (headers and body) had arrived.
    pub at: Instant,
    /// When it was answered; `None` while hanging or if never answered.
    pub answered_at: Option<Instant>,
    /// The body as text (lossily decoded).
    pub raw: String,
    /// The body as JSON, `Null` if it is not JSON.
    pub body: serde_json::Value,
    /// The status answered, 0 while not (yet) answered.
    pub answered: u16,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    /// Requests whose fate is known: answered, or hanging.
    settled: usize,
    violations: Vec<String>,
}

struct Shared {
    /// The path requests must be sent to: the webhook's secret.
    path: String,
    log: Mutex<Log>,
    changed: Condvar,
    mode: watch::Sender<Mode>,
    /// Requests whose body contains this hang, whatever the mode.
    hang_when: watch::Sender<Option<String>>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        // A panicking test thread must not hide the log from the others.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running webhook. Dropping it stops the server and drops any request
/// still hanging.
pub struct Webhook {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Webhook {
    /// Starts a webhook in [`Mode::Ok`] on a free loopback port.
    pub fn start() -> Webhook {
        Self::start_at(PATH)
    }

    /// Starts a webhook that expects requests at `path` (shaped like
    /// [`PATH`], with another secret).
    pub fn start_at(path: &str) -> Webhook {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-slack")
            .enable_all()
            .build()
            .expect("build the webhook's runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the webhook on 127.0.0.1");
        let addr = listener.local_addr().expect("webhook address");
        let shared = Arc::new(Shared {
            path: path.to_string(),
            log: Mutex::new(Log::default()),
            changed: Condvar::new(),
            mode: watch::Sender::new(Mode::Ok),
            hang_when: watch::Sender::new(None),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        runtime.spawn(async move {
            axum::serve(listener, app).await.expect("webhook server");
        });
        Webhook {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The webhook URL to configure, `http://127.0.0.1:PORT/services/…`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches how the following requests (and any hanging one) are
    /// answered.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// Makes requests whose body contains `needle` hang (until this is
    /// cleared with `None`; then they are answered as the mode says),
    /// while the others are answered as usual.
    pub fn hang_when(&self, needle: Option<&str>) {
        self.shared
            .hang_when
            .send_replace(needle.map(str::to_string));
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log().received.clone()
    }

    /// The bodies answered with 2xx, in order.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .map(|r| r.body)
            .collect()
    }

    /// Waits until at least `n` requests were answered or are hanging,
    /// and returns all received; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, |log| log.settled >= n)
            .unwrap_or_else(|got| {
                panic!("webhook: waited {timeout:?} for {n} requests, got {got:?}")
            })
    }

    /// Waits until at least `n` requests were answered with 2xx, and
    /// returns all received; panics after `timeout`.
    pub fn wait_for_accepted(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, |log| {
            log.received
                .iter()
                .filter(|r| (200..300).contains(&r.answered))
                .count()
                >= n
        })
        .unwrap_or_else(|got| {
            panic!("webhook: waited {timeout:?} for {n} accepted requests, got {got:?}")
        })
    }

    fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Log) -> bool,
    ) -> Result<Vec<Received>, Vec<Received>> {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log();
        loop {
            if done(&log) {
                return Ok(log.received.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(log.received.clone());
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Contract violations seen so far, one line each.
    pub fn violations(&self) -> Vec<String> {
        self.shared.log().violations.clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Hanging handlers never finish by themselves.
            runtime.shutdown_background();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
    let index = {
        let mut log = shared.log();
        log.received.push(Received {
            at: Instant::now(),
            answered_at: None,
            raw,
            body: json.clone(),
            answered: 0,
        });
        log.received.len() - 1
    };

    if method != Method::POST || uri.path() != shared.path {
        let problem = format!(
            "request #{index}: {method} {} (expected POST {})",
            uri.path(),
            shared.path
        );
        return answer(&shared, index, 404, "no_service", None, Some(problem));
    }

    let mut hanging = false;
    let mut hang_when = shared.hang_when.subscribe();
    loop {
        let held = hang_when
            .borrow_and_update()
            .as_deref()
            .is_some_and(|needle| raw_contains(&body, needle));
        if !held {
            break;
        }
        if !hanging {
            hanging = true;
            let mut log = shared.log();
            log.settled += 1;
            shared.changed.notify_all();
        }
        if hang_when.changed().await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }

    let mut mode = shared.mode.subscribe();
    loop {
        let current = mode.borrow_and_update().clone();
        match current {
            Mode::Hang => {
                if !hanging {
                    hanging = true;
                    let mut log = shared.log();
                    log.settled += 1;
                    shared.changed.notify_all();
                }
                if mode.changed().await.is_err() {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                return accept(&shared, index, &headers, &json, hanging);
            }
            Mode::Ok => return accept(&shared, index, &headers, &json, hanging),
            Mode::Status(status, text) => {
                return answer_settled(&shared, index, status, text, None, None, hanging);
            }
            Mode::RateLimited { retry_after_secs } => {
                let retry = Some(retry_after_secs);
                return answer_settled(&shared, index, 429, "rate_limited", retry, None, hanging);
            }
            Mode::Echo { status, pad } => {
                let mut response = answer_settled(&shared, index, status, "", None, None, hanging);
                let text = format!("{}{} not found here", "x".repeat(pad), uri.path());
                *response.body_mut() = axum::body::Body::from(text);
                return response;
            }
            Mode::Redirect { status, location } => {
                let mut response =
                    answer_settled(&shared, index, status, "moved", None, None, hanging);
                response
                    .headers_mut()
                    .insert(header::LOCATION, location.parse().unwrap());
                return response;
            }
        }
    }
}

fn raw_contains(body: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(body).contains(needle)
}

/// `200 ok`, after checking the body against the contract.
fn accept(
    shared: &Shared,
    index: usize,
    headers: &HeaderMap,
    body: &serde_json::Value,
    hanging: bool,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let problem = if !content_type.starts_with("application/json") {
        Some(format!(
            "request #{index}: content-type {content_type:?}, expected application/json"
        ))
    } else {
        poolwatch::alerting::sinks::slack::check_contract(body)
            .err()
            .map(|e| format!("request #{index}: {e}"))
    };
    answer_settled(shared, index, 200, "ok", None, problem, hanging)
}

fn answer(
    shared: &Shared,
    index: usize,
    status: u16,
    text: &'static str,
    retry_after: Option<u64>,
    problem: Option<String>,
) -> Response {
    answer_settled(shared, index, status, text, retry_after, problem, false)
}

fn answer_settled(
    shared: &Shared,
    index: usize,
    status: u16,
    text: &'static str,
    retry_after: Option<u64>,
    problem: Option<String>,
    already_settled: bool,
) -> Response {
    {
        let mut log = shared.log();
        let r = &mut log.received[index];
        r.answered = status;
        r.answered_at = Some(Instant::now());
        if !already_settled {
            log.settled += 1;
        }
        log.violations.extend(problem);
        shared.changed.notify_all();
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, text).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.to_string().parse().unwrap());
    }
    response
}
