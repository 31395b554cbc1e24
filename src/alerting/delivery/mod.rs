//! Delivery: one task takes notifications from a bounded queue and sends
//! them to Slack's incoming webhook, or prints them on stdout when no
//! webhook is configured.
//!
//! Producers never wait: [`AlertQueue::submit`] is a `try_send`, and a
//! full queue hands the notification back, counts it `dropped` and logs its
//! title. Whatever happens to Slack, rules keep evaluating.
//!
//! Notifications go out strictly in submission order, one at a time: a
//! "recovered" must never land before the "failover" it closes, so a
//! notification that fails transiently is retried at the head of the queue
//! and the ones behind it wait.
//!
//! Retries follow what Slack's webhook answers:
//!
//! - 2xx: sent.
//! - 429: wait `Retry-After` seconds (1 s when absent, at most 60 s), never
//!   less, then retry.
//! - 5xx, timeouts, connection errors: exponential backoff with full jitter
//!   (a random wait up to `backoff_base · 2ⁿ`, capped at `backoff_max`),
//!   until `max_retry_for` has passed since the first attempt.
//! - any other status (400 `invalid_payload`, 403 `action_prohibited`, 404
//!   `no_service`, 410 `channel_is_archived`…): retrying cannot help, so
//!   give up at once and log Slack's error text.
//!
//! The webhook URL is a credential (anyone holding it can post to the
//! channel): it lives in a [`Secret`], reqwest errors are stripped of their
//! URL, and every reason string is scrubbed of it before it is logged or
//! returned.
//!
//! On shutdown the queue stops accepting, and what is queued keeps going
//! out until `drain_deadline`; anything left then is logged one line per
//! notification and counted `failed`, so no alert disappears unreported.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::finding::Kind;
use super::sinks::{slack, stdout};
use super::wording::Notification;
use crate::secret::Secret;
use crate::tls::install_crypto_provider;

/// `poolwatch_alerts_total{kind,outcome}`.
pub const ALERTS_TOTAL: &str = "poolwatch_alerts_total";
/// `poolwatch_alert_delivery_seconds`.
pub const DELIVERY_SECONDS: &str = "poolwatch_alert_delivery_seconds";
/// `poolwatch_alert_queue_depth`.
pub const QUEUE_DEPTH: &str = "poolwatch_alert_queue_depth";

/// The outcomes counted here; rules count their own `suppressed_*`
/// outcomes with [`alerts_counter`].
pub const OUTCOMES: [&str; 3] = ["sent", "failed", "dropped"];

/// Longest `Retry-After` honoured. Slack asks for a few seconds; a larger
/// value is more likely a misbehaving proxy than a plan.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
/// `Retry-After` assumed when a 429 carries none.
const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);
/// Most bytes of an error response kept for the log: Slack's answers are
/// one word, anything longer is a proxy's HTML page.
const ERROR_BODY_MAX: usize = 300;

/// Checks that `url` is an absolute http(s) URL with a host, with a message
/// that does not repeat it, for settings validation.
pub fn check_webhook_url(url: &Secret) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.expose())
        .map_err(|e| format!("the Slack webhook URL is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("the Slack webhook URL must start with https://".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the Slack webhook URL has no host".into());
    }
    Ok(())
}

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Slack incoming-webhook URL; `None` prints notifications on stdout.
    pub webhook: Option<Secret>,
    /// Notifications that may wait for delivery; more are dropped (and
    /// counted, and logged).
    pub queue_size: usize,
    /// Limit for one HTTP attempt, connecting included.
    pub timeout: Duration,
    /// Give up on transient failures this long after the first attempt.
    pub max_retry_for: Duration,
    /// On shutdown, how long queued notifications may still take.
    pub drain_deadline: Duration,
    /// First backoff ceiling after a transient failure; doubles each time.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            webhook: None,
            queue_size: 1000,
            timeout: Duration::from_secs(10),
            max_retry_for: Duration::from_secs(600),
            drain_deadline: Duration::from_secs(10),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// The final result of one notification, reported on the `done` channel
/// given to [`AlertQueue::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Given up: why, with the webhook URL redacted.
    Failed(String),
}

/// What [`DeliveryHandle::shutdown`] achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Sent after shutdown began.
    pub delivered: u64,
    /// Given up on after shutdown began (permanent errors), before the
    /// deadline.
    pub failed: u64,
    /// Still queued or in flight when the deadline passed.
    pub undelivered: u64,
}

/// Registers [`ALERTS_TOTAL`] for one kind and outcome on the current
/// recorder. For the rules' `suppressed_*` outcomes, next to the ones
/// delivery counts.
pub fn alerts_counter(kind: Kind, outcome: &'static str) -> Counter {
    metrics::counter!(ALERTS_TOTAL, "kind" => kind.label(), "outcome" => outcome)
}

/// HELP text for the alert metrics, on the current recorder.
pub fn describe() {
    metrics::describe_counter!(
        ALERTS_TOTAL,
        "Alert notifications by kind and outcome: sent, failed (given up), dropped (queue full), suppressed_*"
    );
    metrics::describe_histogram!(
        DELIVERY_SECONDS,
        metrics::Unit::Seconds,
        "Time from queueing an alert notification to its final outcome"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Alert notifications waiting for delivery");
}

/// Metric handles for delivery, registered once so every series exists
/// from start-up on.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// `[outcome][kind]`, indexed like [`OUTCOMES`] and [`Kind::ALL`].
    alerts: [[Counter; Kind::ALL.len()]; OUTCOMES.len()],
    delivery_seconds: Histogram,
    queue_depth: Gauge,
}

const SENT: usize = 0;
const FAILED: usize = 1;
const DROPPED: usize = 2;

impl DeliveryMetrics {
    /// Describes and registers every delivery series on the current
    /// recorder (wrap in `metrics::with_local_recorder` for a local one).
    pub fn new() -> DeliveryMetrics {
        describe();
        DeliveryMetrics {
            alerts: OUTCOMES.map(|outcome| Kind::ALL.map(|kind| alerts_counter(kind, outcome))),
            delivery_seconds: metrics::histogram!(DELIVERY_SECONDS),
            queue_depth: metrics::gauge!(QUEUE_DEPTH),
        }
    }

    fn count(&self, outcome: usize, kind: Kind) {
        let k = Kind::ALL.iter().position(|&x| x == kind).unwrap_or(0);
        self.alerts[outcome][k].increment(1);
    }
}

impl Default for DeliveryMetrics {
    fn default() -> DeliveryMetrics {
        DeliveryMetrics::new()
    }
}

struct Item {
    n: Notification,
    done: Option<oneshot::Sender<Outcome>>,
    submitted: Instant,
}

impl Item {
    fn finish(self, outcome: Outcome, metrics: &DeliveryMetrics) {
        let which = if outcome == Outcome::Sent {
            SENT
        } else {
            FAILED
        };
        metrics.count(which, self.n.kind);
        metrics
            .delivery_seconds
            .record(self.submitted.elapsed().as_secs_f64());
        if let Some(done) = self.done {
            // The submitter may have stopped waiting; that is its choice.
            let _ = done.send(outcome);
        }
    }
}

/// The producers' side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct AlertQueue {
    tx: mpsc::Sender<Item>,
    metrics: Arc<DeliveryMetrics>,
}

impl AlertQueue {
    /// Queues `n` without waiting. On a full (or shut down) queue, `n` is
    /// handed back, counted `dropped` and logged with its title, and
    /// `done`, if any, receives `Failed`. Otherwise `done` receives the
    /// final outcome once delivery is over.
    // The refused notification comes back by value so the caller can log,
    // retry or merge it; this is the rare path, not worth a box.
    #[allow(clippy::result_large_err)]
    pub fn submit(
        &self,
        n: Notification,
        done: Option<oneshot::Sender<Outcome>>,
    ) -> Result<(), Notification> {
        let item = Item {
            n,
            done,
            submitted: Instant::now(),
        };
        // Before the send, so the task's decrement never comes first.
        self.metrics.queue_depth.increment(1.0);
        let (item, why) = match self.tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(item)) => (item, "alert queue full"),
            Err(mpsc::error::TrySendError::Closed(item)) => (item, "alert queue closed"),
        };
        self.metrics.queue_depth.decrement(1.0);
        self.metrics.count(DROPPED, item.n.kind);
        error!(
            kind = item.n.kind.label(),
            title = ?item.n.title,
            capacity = self.tx.max_capacity(),
            "{why}: notification dropped"
        );
        if let Some(done) = item.done {
            let _ = done.send(Outcome::Failed(format!("{why}: dropped")));
        }
        Err(item.n)
    }
}

/// The delivery task, for shutting it down.
pub struct DeliveryHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<ShutdownReport>,
}

impl DeliveryHandle {
    /// Stops accepting notifications, keeps delivering the queued ones
    /// until `drain_deadline`, then logs and counts the rest as failed.
    pub async fn shutdown(self) -> ShutdownReport {
        // The task may already be gone (every queue dropped): then there
        // is nothing to drain.
        let _ = self.stop.send(());
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                error!(error = %e, "alert delivery task ended abnormally");
                ShutdownReport::default()
            }
        }
    }
}

/// Starts the delivery task on the current tokio runtime.
///
/// Fails when the webhook URL is not an http(s) URL or the HTTPS client
/// cannot be built (for example, no CA certificates on the system): both
/// are start-up problems, better reported before the first incident.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn(
    cfg: DeliveryConfig,
    metrics: DeliveryMetrics,
) -> Result<(AlertQueue, DeliveryHandle), String> {
    let sink = Sink::new(&cfg)?;
    let (tx, rx) = mpsc::channel(cfg.queue_size.max(1));
    let (stop_tx, stop_rx) = oneshot::channel();
    let metrics = Arc::new(metrics);
    let policy = Policy::new(&cfg, cfg.max_retry_for);
    let task = tokio::spawn(run(
        rx,
        stop_rx,
        sink,
        policy,
        cfg.drain_deadline,
        metrics.clone(),
    ));
    Ok((
        AlertQueue { tx, metrics },
        DeliveryHandle {
            stop: stop_tx,
            task,
        },
    ))
}

/// Delivers `n` once, with the usual retry rules but a short retry budget
/// (three attempt timeouts), for `poolwatch alert-test`. The error is the
/// reason, with the webhook URL redacted.
pub async fn send_one(cfg: &DeliveryConfig, n: &Notification) -> Result<(), String> {
    let sink = Sink::new(cfg)?;
    let policy = Policy::new(cfg, cfg.max_retry_for.min(cfg.timeout * 3));
    deliver(&sink, &policy, n).await.map(|_| ())
}

async fn run(
    mut rx: mpsc::Receiver<Item>,
    stop: oneshot::Receiver<()>,
    sink: Sink,
    policy: Policy,
    drain_for: Duration,
    metrics: Arc<DeliveryMetrics>,
) -> ShutdownReport {
    let mut report = ShutdownReport::default();
    // `None` once the handle is gone without a shutdown: keep delivering
    // until every queue is dropped.
    let mut stop = Some(stop);
    let mut drain_until: Option<Instant> = None;
    let begin_drain = |rx: &mut mpsc::Receiver<Item>| {
        rx.close();
        let until = Instant::now() + drain_for;
        info!(
            queued = rx.len(),
            deadline_secs = drain_for.as_secs_f64(),
            "alert delivery: draining the queue before shutdown"
        );
        until
    };

    loop {
        let item = match (drain_until, stop.as_mut()) {
            (None, Some(stop_rx)) => tokio::select! {
                biased;
                signal = stop_rx => {
                    match signal {
                        Ok(()) => drain_until = Some(begin_drain(&mut rx)),
                        Err(_) => stop = None,
                    }
                    continue;
                }
                item = rx.recv() => item,
            },
            // Once closed, `recv` returns what is left, then `None`.
            _ => rx.recv().await,
        };
        let Some(item) = item else { break };
        metrics.queue_depth.decrement(1.0);

        let result = {
            let attempt = deliver(&sink, &policy, &item.n);
            tokio::pin!(attempt);
            match (drain_until, stop.as_mut()) {
                (Some(until), _) => tokio::time::timeout_at(until, attempt).await.ok(),
                (None, None) => Some(attempt.await),
                (None, Some(stop_rx)) => tokio::select! {
                    result = &mut attempt => Some(result),
                    signal = stop_rx => {
                        match signal {
                            Ok(()) => {
                                let until = begin_drain(&mut rx);
                                drain_until = Some(until);
                                tokio::time::timeout_at(until, attempt).await.ok()
                            }
                            Err(_) => {
                                stop = None;
                                Some(attempt.await)
                            }
                        }
                    }
                },
            }
        };
        let draining = drain_until.is_some();
        match result {
            Some(Ok(attempts)) => {
                info!(kind = item.n.kind.label(), title = ?item.n.title, attempts, "alert sent");
                report.delivered += u64::from(draining);
                item.finish(Outcome::Sent, &metrics);
            }
            Some(Err(reason)) => {
                error!(kind = item.n.kind.label(), title = ?item.n.title, %reason, "alert not delivered");
                report.failed += u64::from(draining);
                item.finish(Outcome::Failed(reason), &metrics);
            }
            None => {
                undelivered(item, &metrics, &mut report);
                break;
            }
        }
    }

    // Only reached with items left when the drain deadline passed.
    while let Ok(item) = rx.try_recv() {
        metrics.queue_depth.decrement(1.0);
        undelivered(item, &metrics, &mut report);
    }
    if drain_until.is_some() {
        info!(
            delivered = report.delivered,
            failed = report.failed,
            undelivered = report.undelivered,
            "alert delivery stopped"
        );
    }
    report
}

fn undelivered(item: Item, metrics: &DeliveryMetrics, report: &mut ShutdownReport) {
    error!(
        kind = item.n.kind.label(),
        title = ?item.n.title,
        "alert undelivered: shutdown deadline passed"
    );
    report.undelivered += 1;
    item.finish(
        Outcome::Failed("undelivered: shutdown deadline passed".into()),
        metrics,
    );
}

/// Retry timing.
struct Policy {
    backoff_base: Duration,
    backoff_max: Duration,
    retry_for: Duration,
}

impl Policy {
    fn new(cfg: &DeliveryConfig, retry_for: Duration) -> Policy {
        Policy {
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max.max(cfg.backoff_base),
            retry_for,
        }
    }

    /// Full jitter: a uniform wait up to a ceiling that doubles with each
    /// consecutive failure. Spreading retries keeps several poolwatch
    /// instances from hitting a recovering Slack in lockstep.
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        let ceiling = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Why one attempt did not succeed.
enum Failure {
    /// Worth retrying after a backoff.
    Transient(String),
    /// Slack asked us to wait this long.
    RateLimited(Duration),
    /// Retrying cannot help.
    Permanent(String),
}

/// Sends `n` until it is delivered, refused for good, or the retry budget
/// is spent. Returns the number of attempts, or why it gave up.
async fn deliver(sink: &Sink, policy: &Policy, n: &Notification) -> Result<u32, String> {
    let payload = sink.prepare(n);
    let give_up_at = Instant::now() + policy.retry_for;
    let mut attempts = 0u32;
    let mut failures = 0u32;
    loop {
        attempts += 1;
        let wait = match sink.send(&payload).await {
            Ok(()) => return Ok(attempts),
            Err(Failure::Permanent(reason)) => return Err(reason),
            Err(Failure::RateLimited(wait)) => {
                // Never earlier than asked: if the budget ends first, stop.
                if Instant::now() + wait > give_up_at {
                    return Err(format!(
                        "rate limited (429, retry after {}) and the retry budget of {} is spent",
                        human(wait),
                        human(policy.retry_for)
                    ));
                }
                warn!(
                    kind = n.kind.label(),
                    title = ?n.title,
                    retry_after_secs = wait.as_secs_f64(),
                    "Slack rate-limited alert delivery; waiting"
                );
                wait
            }
            Err(Failure::Transient(reason)) => {
                failures += 1;
                let now = Instant::now();
                if now >= give_up_at {
                    return Err(format!(
                        "{reason} (gave up after {attempts} attempts in {})",
                        human(policy.retry_for)
                    ));
                }
                // A last attempt at the end of the budget rather than none.
                let wait = policy.backoff(failures).min(give_up_at - now);
                warn!(
                    kind = n.kind.label(),
                    title = ?n.title,
                    attempt = attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    %reason,
                    "alert delivery failed; retrying"
                );
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Where notifications go.
enum Sink {
    Stdout,
    Slack(SlackSink),
}

struct SlackSink {
    client: reqwest::Client,
    url: Secret,
    timeout: Duration,
}

/// A notification rendered once, before the first attempt.
enum Payload {
    Line(Notification),
    Json(Vec<u8>),
}

impl Sink {
    fn new(cfg: &DeliveryConfig) -> Result<Sink, String> {
        let Some(url) = &cfg.webhook else {
            return Ok(Sink::Stdout);
        };
        check_webhook_url(url)?;
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // A webhook never redirects; following one would hand the
            // alert (and the path) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("poolwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                url.scrub(&format!(
                    "cannot build the HTTPS client for Slack: {}",
                    chain(&e.without_url())
                ))
            })?;
        Ok(Sink::Slack(SlackSink {
            client,
            url: url.clone(),
            timeout: cfg.timeout,
        }))
    }

    fn prepare(&self, n: &Notification) -> Payload {
        match self {
            Sink::Stdout => Payload::Line(n.clone()),
            Sink::Slack(_) => {
                let body = slack::render(n);
                let checked = slack::check_contract(&body);
                debug_assert!(checked.is_ok(), "rendered Slack body: {checked:?}");
                if let Err(e) = checked {
                    warn!(kind = n.kind.label(), error = %e, "Slack body breaks the webhook contract; sending anyway");
                }
                Payload::Json(serde_json::to_vec(&body).expect("a JSON value serializes"))
            }
        }
    }

    async fn send(&self, payload: &Payload) -> Result<(), Failure> {
        match (self, payload) {
            (Sink::Stdout, Payload::Line(n)) => {
                let line = stdout::line(n, stdout::now_unix());
                // A full pipe blocks the writer; keep that off the runtime.
                tokio::task::spawn_blocking(move || stdout::print_line(&line))
                    .await
                    .map_err(|e| Failure::Permanent(format!("stdout writer: {e}")))?
                    .map_err(|e| Failure::Permanent(format!("cannot write to stdout: {e}")))
            }
            (Sink::Slack(slack), Payload::Json(body)) => slack.post(body).await,
            _ => Err(Failure::Permanent("payload does not match the sink".into())),
        }
    }
}

impl SlackSink {
    async fn post(&self, body: &[u8]) -> Result<(), Failure> {
        let response = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| self.request_failure(e))?;
        let status = response.status();
        if status.is_success() {
            debug!(status = status.as_u16(), "Slack accepted the alert");
            return Ok(());
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::RateLimited(retry_after(response.headers())));
        }
        let text = self.error_text(response).await;
        let reason = format!("Slack answered {}: {text}", status.as_u16());
        if status.is_server_error() {
            Err(Failure::Transient(reason))
        } else {
            Err(Failure::Permanent(reason))
        }
    }

    fn request_failure(&self, e: reqwest::Error) -> Failure {
        let e = e.without_url();
        let reason = if e.is_timeout() {
            format!("no answer from Slack within {}", human(self.timeout))
        } else {
            self.url
                .scrub(&format!("cannot reach Slack: {}", chain(&e)))
        };
        if e.is_builder() {
            Failure::Permanent(reason)
        } else {
            Failure::Transient(reason)
        }
    }

    /// The start of the response body, on one line, for the log.
    async fn error_text(&self, mut response: reqwest::Response) -> String {
        let mut bytes = Vec::new();
        while bytes.len() < ERROR_BODY_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    if bytes.is_empty() {
                        return format!("(body unreadable: {})", chain(&e.without_url()));
                    }
                    break;
                }
            }
        }
        let cut = bytes.len() > ERROR_BODY_MAX;
        bytes.truncate(ERROR_BODY_MAX);
        let mut text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return "(empty body)".into();
        }
        text = trimmed.to_owned();
        if cut {
            text.push('…');
        }
        self.url.scrub(&text)
    }
}

/// `Retry-After` as seconds (Slack sends whole seconds), capped; the
/// default when absent or not a number.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(RETRY_AFTER_DEFAULT, |s| {
            Duration::from_secs_f64(s.min(RETRY_AFTER_MAX.as_secs_f64()))
        })
}

/// `250ms`, `1.5s`, `600s`: durations as people write them in settings.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let tenths = d.as_millis().div_ceil(100);
        if tenths % 10 == 0 {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    }
}

/// An error and its causes, "outer: inner: innermost": reqwest's own
/// message ("error sending request") says little without them.
fn chain(e: &dyn std::error::Error) -> String {
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
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::fmt;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";

    #[test]
    fn the_config_never_prints_the_webhook() {
        let cfg = DeliveryConfig {
            webhook: Some(Secret::new(URL)),
            ..DeliveryConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("XXXX"));
    }

    #[test]
    fn webhook_url_checks_do_not_repeat_the_url() {
        assert!(check_webhook_url(&Secret::new(URL)).is_ok());
        for bad in [
            "hooks.slack.com/XXXXSECRET",
            "ftp://h/XXXXSECRET",
            "https://[XXXXSECRET/",
        ] {
            let e = check_webhook_url(&Secret::new(bad)).unwrap_err();
            assert!(!e.contains("XXXX"), "{e}");
        }
    }

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
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let policy = Policy::new(
            &DeliveryConfig {
                backoff_base: Duration::from_millis(500),
                backoff_max: Duration::from_secs(30),
                ..DeliveryConfig::default()
            },
            Duration::from_secs(600),
        );
        for (failures, ceiling_ms) in [(1, 500), (2, 1000), (3, 2000), (7, 30_000), (60, 30_000)] {
            let waits: Vec<Duration> = (0..200).map(|_| policy.backoff(failures)).collect();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(waits.iter().all(|w| *w <= ceiling), "{failures}");
            // Spread out, not pinned to the ceiling.
            assert!(waits.iter().any(|w| *w < ceiling / 2), "{failures}");
        }
    }

    #[test]
    fn durations_read_like_settings() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(600)), "600s");
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
}
