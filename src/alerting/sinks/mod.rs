//! Sinks: where notifications go, each rendering what its receiver needs.
//!
//! - [`stdout`]: one JSON line per notification, when no Slack webhook is
//!   set;
//! - [`slack`]: Block Kit bodies for Slack's incoming webhook;
//! - [`alertmanager`]: open incidents as alerts for Alertmanager's API.
//!
//! Every sink has its own delivery queue and task (see `delivery`), so one
//! receiver's outage never delays another. [`Sinks`] is the set the alert
//! loop hands each notification to.

pub(crate) mod alertmanager;
pub mod slack;
pub(crate) mod stdout;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use self::alertmanager::{Alertmanager, Restorable, SavedAlert};
use self::slack::Slack;
use self::stdout::Stdout;
use super::delivery::queue::{Body, Lane, Parcel, Queue, Tracked};
use super::delivery::retry::{Delivered, deliver};
use super::delivery::{self, DeliveryConfig, DeliveryHandle, DeliveryMetrics, Outcome, SinkName};
use super::finding::{Finding, IncidentKey};
use super::wording::Notification;

/// Which sink shows notifications to people: Slack with a webhook, stdout
/// without.
pub(crate) fn message_sink(cfg: &DeliveryConfig) -> SinkName {
    match cfg.webhook {
        Some(_) => SinkName::Slack,
        None => SinkName::Stdout,
    }
}

/// The queue of the sink that shows notifications to people (Slack, or
/// stdout). Cheap to clone.
#[derive(Clone)]
pub struct AlertQueue {
    queue: Queue,
    sink: SinkName,
    /// With a Slack webhook: where a reload swaps its URL.
    webhook: Option<slack::WebhookSwitch>,
    /// `PUBLIC_URL`'s status page, linked from each message.
    status_url: Option<String>,
}

impl AlertQueue {
    /// The Slack webhook's switch, `None` when notifications go to stdout.
    pub fn webhook(&self) -> Option<slack::WebhookSwitch> {
        self.webhook.clone()
    }

    /// Queues `n` without waiting, in order with the other notifications
    /// of its kind and pool. On a full (or shut down) queue, `n` is handed
    /// back, counted `dropped` and logged with its title, and `done`, if
    /// any, receives `Failed`. Otherwise `done` receives the final outcome
    /// once delivery is over.
    // The refused notification comes back by value so the caller can log,
    // retry or merge it; this is the rare path, not worth a box.
    #[allow(clippy::result_large_err)]
    pub fn submit(
        &self,
        n: Notification,
        done: Option<oneshot::Sender<Outcome>>,
    ) -> Result<(), Notification> {
        let lane = Lane::Other(n.kind, n.pool.clone());
        if self.submit_in(lane, &n, done) {
            Ok(())
        } else {
            Err(n)
        }
    }

    /// Queues `n` in `lane`: notifications of one lane go out in order.
    /// False when the queue refused it (counted and logged there).
    pub(crate) fn submit_in(
        &self,
        lane: Lane,
        n: &Notification,
        done: Option<oneshot::Sender<Outcome>>,
    ) -> bool {
        let sink = self.sink;
        let words = with_status_url(n, self.status_url.as_deref());
        let parcel = Parcel {
            lane,
            latest: false,
            body: Body::Later(Box::new(move || render(sink, &words))),
            what: n.title.clone(),
            notices: vec![Tracked::new(n.kind, done)],
        };
        self.queue.push(parcel).is_ok()
    }
}

/// `n`, linking to the status page at `url` unless it links somewhere
/// already.
fn with_status_url(n: &Notification, url: Option<&str>) -> Notification {
    let mut n = n.clone();
    if n.status_url.is_none() {
        n.status_url = url.map(str::to_string);
    }
    n
}

fn render(sink: SinkName, n: &Notification) -> Bytes {
    match sink {
        SinkName::Slack => slack::body(n),
        _ => stdout::body(n),
    }
}

/// Starts the delivery task of the message sink that `cfg` configures, on
/// the current tokio runtime, counting in `metrics` (registered for
/// [`message_sink`]).
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
    let sink = message_sink(&cfg);
    debug_assert_eq!(metrics.sink, sink, "metrics registered for another sink");
    let metrics = Arc::new(metrics);
    let (queue, handle, webhook) = match &cfg.webhook {
        Some(url) => {
            let slack = Slack::new(url, cfg.timeout)?;
            let switch = slack.switch();
            let (queue, handle) = delivery::spawn(slack, &cfg, metrics);
            (queue, handle, Some(switch))
        }
        None => {
            let (queue, handle) = delivery::spawn(Stdout, &cfg, metrics);
            (queue, handle, None)
        }
    };
    let status_url = cfg.status_url.clone();
    Ok((
        AlertQueue {
            queue,
            sink,
            webhook,
            status_url,
        },
        handle,
    ))
}

/// Delivers `n` once through the message sink, with the usual retry rules
/// but a short retry budget (three attempt timeouts), for `poolwatch
/// alert-test`. The error is the reason, with every secret redacted.
pub async fn send_one(cfg: &DeliveryConfig, n: &Notification) -> Result<(), String> {
    let policy = cfg.policy(cfg.max_retry_for.min(cfg.timeout * 3));
    let n = &with_status_url(n, cfg.status_url.as_deref());
    let body = render(message_sink(cfg), n);
    let never = tokio_util::sync::CancellationToken::new();
    let sink = message_sink(cfg).label();
    let result = match &cfg.webhook {
        Some(url) => {
            let slack = Slack::new(url, cfg.timeout)?;
            deliver(&slack, &policy, &body, &n.title, sink, &never, None).await
        }
        None => deliver(&Stdout, &policy, &body, &n.title, sink, &never, None).await,
    };
    match result {
        Delivered::Sent(_) => Ok(()),
        Delivered::Failed(reason) => Err(reason),
        Delivered::Superseded => Err("replaced by a newer notification".into()),
    }
}

/// A notification handed to the sinks: receivers of its outcome, one per
/// sink that took it.
pub(crate) struct Submitted {
    pub(crate) outcomes: Vec<oneshot::Receiver<Outcome>>,
}

/// Every configured sink.
pub(crate) struct Sinks {
    messages: AlertQueue,
    alertmanager: Option<Alertmanager>,
}

impl Sinks {
    pub(crate) fn new(messages: AlertQueue, alertmanager: Option<Alertmanager>) -> Sinks {
        Sinks {
            messages,
            alertmanager,
        }
    }

    /// The sinks configured, for per-sink counting of what the alert loop
    /// holds back.
    pub(crate) fn names(&self) -> Vec<SinkName> {
        let mut names = vec![self.messages.sink];
        if self.alertmanager.is_some() {
            names.push(SinkName::Alertmanager);
        }
        names
    }

    /// Hands `n` (the words for `f`, decided at `now`) to every sink, in
    /// the lane of `f`'s incident.
    pub(crate) fn submit(&mut self, f: &Finding, n: &Notification, now: f64) -> Submitted {
        let mut outcomes = Vec::new();
        let (tx, rx) = oneshot::channel();
        if self.messages.submit_in(Lane::Incident(f.key), n, Some(tx)) {
            outcomes.push(rx);
        }
        if let Some(am) = &mut self.alertmanager {
            outcomes.extend(am.submit(f, n, now));
        }
        Submitted { outcomes }
    }

    /// What the sinks that hold state (Alertmanager's board) must carry
    /// across a restart, pools by their `labels`; empty without them.
    pub(crate) fn export(&self, labels: &[String]) -> Vec<SavedAlert> {
        self.alertmanager
            .as_ref()
            .map_or_else(Vec::new, |am| am.export(labels))
    }

    /// Puts back what a previous run's Alertmanager board held (dropped
    /// when Alertmanager is no longer configured); see
    /// [`Alertmanager::restore`].
    pub(crate) fn restore(&mut self, r: Restorable, maintenance_told: bool, now: f64) {
        if let Some(am) = &mut self.alertmanager {
            am.restore(r, maintenance_told, now);
        }
    }

    /// Whether a sink has work the alert loop's ticks drive: an
    /// Alertmanager board with alerts to re-send (firing, or resolved
    /// lately).
    pub(crate) fn need_ticks(&self) -> bool {
        self.alertmanager
            .as_ref()
            .is_some_and(Alertmanager::need_ticks)
    }

    /// Once per tick: sinks that hold state (Alertmanager) drop what
    /// closed and re-send what is due.
    pub(crate) fn tick(&mut self, now: f64, is_open: &dyn Fn(IncidentKey) -> bool) {
        if let Some(am) = &mut self.alertmanager {
            am.tick(now, is_open);
        }
    }
}
