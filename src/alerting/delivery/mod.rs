//! Delivery: how a rendered notification reaches its receiver, the same
//! for every sink, and apart from them.
//!
//! - [`queue`]: each sink's bounded queue and task, ordered per incident;
//!   first attempts take turns in the order decided, and a stuck one holds
//!   up another incident for one attempt's timeout at most;
//! - [`retry`]: what a failed attempt means and when to try again;
//! - [`http`]: one POST and what its answer means, for the HTTP sinks.
//!
//! A sink (see `sinks`) renders bodies and sends one attempt; everything
//! else is here. Whatever happens to a receiver, rules keep evaluating:
//! producers never wait.

pub(crate) mod http;
pub(crate) mod queue;
pub(crate) mod retry;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::error;

use self::queue::Queue;
use self::retry::{Policy, Transport};
use super::finding::Kind;
use crate::secret::Secret;

/// Where notifications go: the `sink` label of the delivery metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkName {
    /// One JSON line per notification, when no Slack webhook is set.
    Stdout,
    Slack,
    Alertmanager,
}

impl SinkName {
    pub fn label(self) -> &'static str {
        match self {
            SinkName::Stdout => "stdout",
            SinkName::Slack => "slack",
            SinkName::Alertmanager => "alertmanager",
        }
    }
}

/// What became of a notification: the `outcome` label of
/// `poolwatch_alerts_total`, and what `/state` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOutcome {
    /// Delivered (in `/state`: handed to delivery).
    Sent,
    /// Given up on.
    Failed,
    /// No room in the queue.
    Dropped,
    /// A repeat within `ALERT_COOLDOWN_SEC`.
    SuppressedCooldown,
    /// Held back by maintenance.
    SuppressedMaintenance,
}

impl AlertOutcome {
    pub fn label(self) -> &'static str {
        match self {
            AlertOutcome::Sent => "sent",
            AlertOutcome::Failed => "failed",
            AlertOutcome::Dropped => "dropped",
            AlertOutcome::SuppressedCooldown => "suppressed_cooldown",
            AlertOutcome::SuppressedMaintenance => "suppressed_maintenance",
        }
    }
}

/// How notifications are delivered: the Slack webhook (or stdout without
/// one), and the queue and retry settings every sink uses.
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
    /// The status page (`PUBLIC_URL`), linked from every message.
    pub status_url: Option<String>,
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
            status_url: None,
        }
    }
}

impl DeliveryConfig {
    /// The retry policy, with a budget of `retry_for`.
    pub(crate) fn policy(&self, retry_for: Duration) -> Policy {
        Policy::new(self.backoff_base, self.backoff_max, retry_for)
    }
}

/// The final result of one notification, reported on the `done` channel
/// given with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Given up: why, with every secret redacted.
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

impl ShutdownReport {
    fn add(&mut self, other: ShutdownReport) {
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.undelivered += other.undelivered;
    }
}

/// One sink's delivery metric handles, registered once so every series
/// exists from start-up on.
pub struct DeliveryMetrics {
    pub(crate) sink: SinkName,
    /// `poolwatch_alerts_total{sink,kind,outcome}` for the outcomes
    /// delivery decides, by outcome then kind (`Kind as usize`).
    alerts: [[Counter; Kind::ALL.len()]; 3],
    pub(crate) delivery_seconds: Histogram,
    pub(crate) queue_depth: Gauge,
}

impl DeliveryMetrics {
    /// Describes and registers `sink`'s delivery series on the current
    /// recorder (wrap in `metrics::with_local_recorder` for a local one).
    pub fn new(sink: SinkName) -> DeliveryMetrics {
        use crate::metrics as m;
        m::describe_delivery();
        let row = |outcome: AlertOutcome| {
            Kind::ALL.map(|k| m::alerts_total(sink.label(), k.label(), outcome.label()))
        };
        DeliveryMetrics {
            sink,
            alerts: [
                row(AlertOutcome::Sent),
                row(AlertOutcome::Failed),
                row(AlertOutcome::Dropped),
            ],
            delivery_seconds: m::alert_delivery_seconds(sink.label()),
            queue_depth: m::alert_queue_depth(sink.label()),
        }
    }

    /// Counts one notification of `kind` as sent, failed or dropped.
    pub(crate) fn count(&self, outcome: AlertOutcome, kind: Kind) {
        let row = match outcome {
            AlertOutcome::Sent => 0,
            AlertOutcome::Failed => 1,
            AlertOutcome::Dropped => 2,
            // Decided before delivery: counted by the alert loop.
            AlertOutcome::SuppressedCooldown | AlertOutcome::SuppressedMaintenance => return,
        };
        self.alerts[row][kind as usize].increment(1);
    }
}

/// A sink's delivery task, for shutting it down.
pub struct DeliveryHandle {
    tasks: Vec<(oneshot::Sender<()>, JoinHandle<ShutdownReport>)>,
}

impl DeliveryHandle {
    /// Stops accepting notifications, keeps delivering the queued ones
    /// until the drain deadline, then logs and counts the rest as failed.
    pub async fn shutdown(self) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let mut joins = Vec::new();
        for (stop, task) in self.tasks {
            // The task may already be gone (every queue dropped): then
            // there is nothing to drain.
            let _ = stop.send(());
            joins.push(task);
        }
        for task in joins {
            match task.await {
                Ok(r) => report.add(r),
                Err(e) => error!(error = %e, "alert delivery task ended abnormally"),
            }
        }
        report
    }

    /// Both handles as one: shutting it down drains every queue at once.
    pub(crate) fn join(mut self, other: DeliveryHandle) -> DeliveryHandle {
        self.tasks.extend(other.tasks);
        self
    }
}

/// Starts a delivery task for `transport` on the current tokio runtime.
///
/// # Panics
///
/// Outside a tokio runtime.
pub(crate) fn spawn<T: Transport>(
    transport: T,
    cfg: &DeliveryConfig,
    metrics: Arc<DeliveryMetrics>,
) -> (Queue, DeliveryHandle) {
    let (stop_tx, stop_rx) = oneshot::channel();
    let (queue, task) = queue::start(
        transport,
        cfg.policy(cfg.max_retry_for),
        cfg.queue_size,
        cfg.drain_deadline,
        metrics,
        stop_rx,
    );
    (
        queue,
        DeliveryHandle {
            tasks: vec![(stop_tx, tokio::spawn(task))],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_counters() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
    }

    #[test]
    fn the_config_never_prints_the_webhook() {
        let cfg = DeliveryConfig {
            webhook: Some(Secret::new(
                "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
            )),
            ..DeliveryConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("XXXX"));
    }
}
