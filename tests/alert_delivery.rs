//! Alert delivery against a local stand-in for Slack's incoming webhook:
//! order, retries, rate limits, permanent refusals, a hanging server, a
//! full queue, shutdown, and a webhook URL that never leaks.
//!
//! Each test runs the real delivery task (`spawn`, `AlertQueue::submit`) on
//! its own tokio runtime with small backoffs, and checks what reached the
//! webhook, the outcomes reported, the metrics and what was logged.

#[path = "common/webhook.rs"]
mod webhook;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use poolwatch::alerting::delivery::{
    DeliveryConfig, DeliveryHandle, DeliveryMetrics, Outcome, ShutdownReport, SinkName,
};
use poolwatch::alerting::finding::{Kind, Severity};
use poolwatch::alerting::sinks::slack::check_contract;
use poolwatch::alerting::sinks::{self, AlertQueue};
use poolwatch::alerting::wording::Notification;
use poolwatch::secret::Secret;
use tokio::sync::oneshot;
use webhook::{Mode, Webhook};

/// A release id an attacker controls, as it could reach a field value.
const HOSTILE: &str = "<!channel> & <http://evil|click>";
const HOSTILE_ESCAPED: &str = "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;";

/// The secret part of every webhook URL these tests use.
const TOKEN: &str = "XXXXXXXXXXXXXXXXXXXXXXXX";

/// How long to wait for what must happen: it only bounds a failure, so it
/// is generous for a busy machine (as `tests/common`'s).
const PATIENCE: Duration = Duration::from_secs(30);

/// Everything logged by this test binary, at every level (`log` records
/// of reqwest and hyper included), to search for the webhook URL.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn assert_no_secret_logged() {
    let logs = logs();
    assert!(
        !logs.contains(TOKEN) && !logs.contains("/services/T000"),
        "the webhook URL was logged:\n{logs}"
    );
}

fn notification(i: usize) -> Notification {
    Notification {
        kind: Kind::Failover,
        severity: Severity::Critical,
        pool: Some("blue".into()),
        title: format!("alert #{i}"),
        summary: "blue fails; green serves.".into(),
        fields: vec![
            ("Release".into(), HOSTILE.into()),
            ("Error ratio".into(), "0.40".into()),
        ],
        first_seen: "2026-11-05T09:07:03Z".into(),
        resolved: false,
        runbook_url: Some("https://runbooks.example/RUNBOOK.md#failover".into()),
        status_url: None,
    }
}

/// The `#i` of the `alert #i` in a delivered body's header.
fn number(body: &serde_json::Value) -> usize {
    let header = body["blocks"][0]["text"]["text"].as_str().expect("header");
    header
        .rsplit('#')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no alert number in {header:?}"))
}

/// Quick retries; a request timeout no answering webhook reaches on a busy
/// machine (a timed-out request that did arrive would be sent twice).
fn config(url: &str) -> DeliveryConfig {
    DeliveryConfig {
        webhook: Some(Secret::new(url)),
        queue_size: 100,
        timeout: PATIENCE,
        max_retry_for: Duration::from_secs(20),
        drain_deadline: Duration::from_secs(5),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        status_url: None,
    }
}

/// A delivery task on its own runtime, with its own metrics registry.
struct Harness {
    rt: tokio::runtime::Runtime,
    queue: AlertQueue,
    handle: Option<DeliveryHandle>,
    _recorder: PrometheusRecorder,
    prom: PrometheusHandle,
}

impl Harness {
    fn start(cfg: DeliveryConfig) -> Harness {
        capture_logs();
        // The test thread blocks on the webhook and on outcomes; the
        // delivery task runs on the worker meanwhile.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recorder = PrometheusBuilder::new().build_recorder();
        let prom = recorder.handle();
        let metrics =
            metrics::with_local_recorder(&recorder, || DeliveryMetrics::new(SinkName::Slack));
        let (queue, handle) = {
            let _in_runtime = rt.enter();
            sinks::spawn(cfg, metrics).expect("start delivery")
        };
        Harness {
            rt,
            queue,
            handle: Some(handle),
            _recorder: recorder,
            prom,
        }
    }

    fn submit(&self, n: Notification) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        if let Err(n) = self.queue.submit(n, Some(tx)) {
            panic!("queue refused {:?}", n.title);
        }
        rx
    }

    fn outcome(&self, rx: oneshot::Receiver<Outcome>, within: Duration) -> Outcome {
        self.rt
            .block_on(async { tokio::time::timeout(within, rx).await })
            .expect("no outcome in time")
            .expect("outcome sender dropped")
    }

    fn shutdown(&mut self) -> ShutdownReport {
        let handle = self.handle.take().expect("shut down once");
        self.rt.block_on(handle.shutdown())
    }

    /// A sample from the registry: `name{labels…} value`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.prom.render();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(['{', ' ']))
            })
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
    }

    fn alerts(&self, kind: &str, outcome: &str) -> f64 {
        self.metric(
            "poolwatch_alerts_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    }
}

/// Three notifications arrive in order, each body within the webhook
/// contract, with request-borne text escaped; metrics say `sent`.
#[test]
fn delivers_in_order_within_the_contract() {
    let hook = Webhook::start();
    let h = Harness::start(config(&hook.url()));
    let done: Vec<_> = (0..3).map(|i| h.submit(notification(i))).collect();
    for rx in done {
        assert_eq!(h.outcome(rx, PATIENCE), Outcome::Sent);
    }

    let received = hook.wait_for(3, PATIENCE);
    assert_eq!(received.len(), 3);
    let numbers: Vec<usize> = received.iter().map(|r| number(&r.body)).collect();
    assert_eq!(numbers, [0, 1, 2]);
    for r in &received {
        assert_eq!(r.answered, 200);
        check_contract(&r.body).unwrap();
        assert!(r.raw.contains(HOSTILE_ESCAPED), "{}", r.raw);
        assert!(!r.raw.contains("<!channel>"), "{}", r.raw);
        assert!(!r.raw.contains("<http://evil"), "{}", r.raw);
    }
    assert_eq!(hook.violations(), Vec::<String>::new());

    assert_eq!(h.alerts("failover", "sent"), 3.0);
    assert_eq!(h.alerts("failover", "failed"), 0.0);
    assert_eq!(h.alerts("recovery", "dropped"), 0.0);
    assert_eq!(h.metric("poolwatch_alert_queue_depth", &[]), 0.0);
    assert_eq!(h.metric("poolwatch_alert_delivery_seconds_count", &[]), 3.0);
    let text = h.prom.render();
    for help in [
        "# HELP poolwatch_alerts_total",
        "# HELP poolwatch_alert_delivery_seconds",
        "# HELP poolwatch_alert_queue_depth",
    ] {
        assert!(text.contains(help), "{help} missing:\n{text}");
    }
    assert_no_secret_logged();
}

/// Slack fails with 500 for a while (five attempts), then recovers: every
/// notification is delivered exactly once afterwards, in order; only the
/// head of the queue was retried meanwhile.
#[test]
fn server_errors_are_retried_in_order_without_loss() {
    let hook = Webhook::start();
    hook.set_mode(Mode::Status(500, "internal_error"));
    let h = Harness::start(config(&hook.url()));
    let done: Vec<_> = (0..5).map(|i| h.submit(notification(i))).collect();

    // Slack failing, as in an outage of theirs, for five attempts.
    hook.wait_for(5, PATIENCE);
    hook.set_mode(Mode::Ok);
    for rx in done {
        assert_eq!(h.outcome(rx, PATIENCE), Outcome::Sent);
    }

    let received = hook.received();
    let refused: Vec<_> = received.iter().filter(|r| r.answered == 500).collect();
    assert!(
        refused.len() >= 5,
        "only {} refused attempts",
        refused.len()
    );
    assert!(
        refused.iter().all(|r| number(&r.body) == 0),
        "only the head of the queue is retried"
    );
    let accepted: Vec<usize> = hook.accepted().iter().map(number).collect();
    assert_eq!(accepted, [0, 1, 2, 3, 4]);
    assert_eq!(hook.violations(), Vec::<String>::new());
    assert_eq!(h.alerts("failover", "sent"), 5.0);
    assert_eq!(h.alerts("failover", "failed"), 0.0);
    assert_no_secret_logged();
}

/// A 429 with `Retry-After: 2` holds the retry back at least 2 s.
#[test]
fn rate_limit_waits_for_retry_after() {
    let hook = Webhook::start();
    hook.set_mode(Mode::RateLimited {
        retry_after_secs: 2,
    });
    let h = Harness::start(config(&hook.url()));
    let done = h.submit(notification(0));
    hook.wait_for(1, PATIENCE);
    hook.set_mode(Mode::Ok);
    assert_eq!(h.outcome(done, PATIENCE), Outcome::Sent);

    let received = hook.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].answered, 429);
    assert_eq!(received[1].answered, 200);
    let answered = received[0].answered_at.unwrap();
    let waited = received[1].at.duration_since(answered);
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(hook.violations(), Vec::<String>::new());
    assert_no_secret_logged();
}

/// A permanent refusal fails at once, with Slack's error text and no
/// retry; the next notification is delivered as usual.
#[test]
fn permanent_refusals_fail_at_once() {
    let hook = Webhook::start();
    let h = Harness::start(config(&hook.url()));
    let refusals = [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ];
    for (i, (status, text)) in refusals.into_iter().enumerate() {
        hook.set_mode(Mode::Status(status, text));
        let done = h.submit(notification(i));
        match h.outcome(done, PATIENCE) {
            Outcome::Failed(reason) => {
                assert!(reason.contains(&status.to_string()), "{reason}");
                assert!(reason.contains(text), "{reason}");
            }
            Outcome::Sent => panic!("{status} reported as sent"),
        }
        // At once: the failure came back after one request.
        assert_eq!(hook.received().len(), i + 1);
    }

    // No retries: delivery is one at a time, in order, so any retry of a
    // refused one would have reached the webhook before the next.
    hook.set_mode(Mode::Ok);
    let done = h.submit(notification(9));
    assert_eq!(h.outcome(done, PATIENCE), Outcome::Sent);
    assert_eq!(hook.received().len(), refusals.len() + 1);
    let accepted: Vec<usize> = hook.accepted().iter().map(number).collect();
    assert_eq!(accepted, [9]);
    assert_eq!(h.alerts("failover", "failed"), 4.0);
    assert_eq!(h.alerts("failover", "sent"), 1.0);
    assert!(logs().contains("channel_is_archived"));
    assert_eq!(hook.violations(), Vec::<String>::new());
    assert_no_secret_logged();
}

/// A server that never answers: submitting never waits, each attempt
/// ends at `timeout` and is retried, a full queue hands the notification
/// back and counts it `dropped`, and shutdown reports what was left.
#[test]
fn hanging_server_never_blocks_submit() {
    let hook = Webhook::start();
    hook.set_mode(Mode::Hang);
    let timeout = Duration::from_secs(1);
    let mut h = Harness::start(DeliveryConfig {
        queue_size: 1000,
        timeout,
        drain_deadline: Duration::from_millis(500),
        ..config(&hook.url())
    });

    // Every submit returns while delivery is stuck on the first.
    let batch: Vec<Notification> = (0..1000).map(notification).collect();
    for n in batch {
        h.queue
            .submit(n, None)
            .unwrap_or_else(|n| panic!("refused {:?}", n.title));
    }

    // The task holds at most one notification, so the queue fills within
    // two more.
    let mut returned = None;
    for i in 1000..1002 {
        if let Err(n) = h.queue.submit(notification(i), None) {
            returned = Some((i, n));
            break;
        }
    }
    let (i, n) = returned.expect("a full queue refuses");
    assert_eq!(
        n,
        notification(i),
        "the refused notification comes back whole"
    );
    assert_eq!(h.alerts("failover", "dropped"), 1.0);
    assert!(logs().contains(&format!("alert #{i}")), "drop not logged");

    // Each attempt ends at the timeout and is retried. A retry that did
    // not wait for the timeout would arrive after the backoff alone (at
    // most 200 ms). Arrivals trail the client's start of each request by
    // however long a busy machine keeps the threads waiting, so the bound
    // is half the timeout: the other half absorbs that delay.
    let received = hook.wait_for(3, PATIENCE);
    for pair in received.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= timeout / 2,
            "retried {gap:?} after a hanging attempt"
        );
    }
    assert!(
        received
            .iter()
            .all(|r| r.answered == 0 && number(&r.body) == 0)
    );

    let report = h.shutdown();
    assert_eq!(report.delivered, 0);
    assert_eq!(report.undelivered + report.failed, i as u64);
    assert_eq!(h.alerts("failover", "failed"), i as f64);
    assert_eq!(h.metric("poolwatch_alert_queue_depth", &[]), 0.0);
    assert_no_secret_logged();
}

/// Shutdown keeps delivering what is queued until the deadline; what is
/// left then is reported undelivered, and the queue refuses more.
#[test]
fn shutdown_drains_then_reports_the_rest() {
    // Enough time: everything queued goes out.
    let hook = Webhook::start();
    hook.set_mode(Mode::Slow(Duration::from_millis(200)));
    let mut h = Harness::start(DeliveryConfig {
        drain_deadline: PATIENCE,
        ..config(&hook.url())
    });
    let done: Vec<_> = (0..5).map(|i| h.submit(notification(i))).collect();
    let report = h.shutdown();
    assert_eq!(
        report,
        ShutdownReport {
            delivered: 5,
            failed: 0,
            undelivered: 0
        }
    );
    for rx in done {
        assert_eq!(h.outcome(rx, PATIENCE), Outcome::Sent);
    }
    let accepted: Vec<usize> = hook.accepted().iter().map(number).collect();
    assert_eq!(accepted, [0, 1, 2, 3, 4]);
    let refused = h.queue.submit(notification(5), None);
    assert_eq!(refused.unwrap_err().title, "alert #5");
    assert_eq!(h.alerts("failover", "dropped"), 1.0);

    // Not enough time: five answers take 3 s, the deadline is 1 s; what is
    // left then is reported.
    let hook = Webhook::start();
    hook.set_mode(Mode::Slow(Duration::from_millis(600)));
    let mut h = Harness::start(DeliveryConfig {
        drain_deadline: Duration::from_secs(1),
        ..config(&hook.url())
    });
    // Numbers no other test uses, to find this test's log lines.
    let done: Vec<_> = (2000..2005).map(|i| h.submit(notification(i))).collect();
    let report = h.shutdown();
    assert!(report.undelivered >= 1, "{report:?}");
    assert_eq!(report.failed, 0);
    assert_eq!(report.delivered + report.undelivered, 5, "{report:?}");
    let outcomes: Vec<Outcome> = done.into_iter().map(|rx| h.outcome(rx, PATIENCE)).collect();
    let sent = outcomes.iter().filter(|o| **o == Outcome::Sent).count();
    assert_eq!(sent as u64, report.delivered);
    assert!(
        outcomes[sent..]
            .iter()
            .all(|o| matches!(o, Outcome::Failed(r) if r.contains("undelivered"))),
        "{outcomes:?}"
    );
    assert_eq!(h.alerts("failover", "failed"), report.undelivered as f64);
    assert_eq!(h.metric("poolwatch_alert_queue_depth", &[]), 0.0);
    let undelivered_lines = logs()
        .lines()
        .filter(|l| l.contains("alert undelivered") && l.contains("alert #2004"))
        .count();
    assert!(undelivered_lines >= 1, "undelivered alert #2004 not logged");
    assert_eq!(hook.violations(), Vec::<String>::new());
    assert_no_secret_logged();
}

/// Whatever goes wrong, the webhook URL is in no reason and no log line.
#[test]
fn webhook_url_never_leaks() {
    capture_logs();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let short = |url: String| DeliveryConfig {
        timeout: Duration::from_millis(200),
        max_retry_for: Duration::from_millis(400),
        ..config(&url)
    };
    let mut reasons = Vec::new();

    // Nothing listening: a port bound and never listened on, held for the
    // test, so connecting is refused and no one else can take it.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = closed.local_addr().unwrap().as_socket().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/services/T000/B000/{TOKEN}");
    reasons.push(rt.block_on(sinks::send_one(&short(url), &notification(0))));

    // No answer; then refusals with a body.
    let hook = Webhook::start();
    hook.set_mode(Mode::Hang);
    reasons.push(rt.block_on(sinks::send_one(&short(hook.url()), &notification(1))));
    for mode in [
        Mode::Status(404, "no_service"),
        Mode::Status(503, "service_unavailable"),
        Mode::RateLimited {
            retry_after_secs: 30,
        },
    ] {
        hook.set_mode(mode);
        reasons.push(rt.block_on(sinks::send_one(&short(hook.url()), &notification(2))));
    }

    // Not a URL at all, and a wrong scheme.
    for bad in [
        format!("hooks.slack.com/services/T000/B000/{TOKEN}"),
        format!("ftp://hooks.slack.com/services/T000/B000/{TOKEN}"),
    ] {
        reasons.push(rt.block_on(sinks::send_one(&short(bad.clone()), &notification(3))));
        let spawned = {
            let _in_runtime = rt.enter();
            sinks::spawn(short(bad), DeliveryMetrics::new(SinkName::Slack)).map(|_| ())
        };
        reasons.push(spawned);
    }

    // Through the queue, as `Outcome` reasons.
    let h = Harness::start(short(hook.url()));
    hook.set_mode(Mode::Status(400, "invalid_payload"));
    match h.outcome(h.submit(notification(4)), PATIENCE) {
        Outcome::Failed(reason) => reasons.push(Err(reason)),
        Outcome::Sent => panic!("a 400 was reported as sent"),
    }

    let expected = reasons.len();
    let reasons: Vec<String> = reasons.into_iter().filter_map(Result::err).collect();
    assert_eq!(reasons.len(), expected, "every case fails: {reasons:?}");
    for reason in &reasons {
        assert!(!reason.contains(TOKEN), "{reason}");
        assert!(!reason.contains("/services/"), "{reason}");
        assert!(!reason.is_empty());
    }
    assert!(reasons[0].contains("cannot reach Slack"), "{}", reasons[0]);
    assert!(reasons[1].contains("no answer"), "{}", reasons[1]);
    assert!(reasons[2].contains("no_service"), "{}", reasons[2]);
    assert!(reasons[4].contains("rate limited"), "{}", reasons[4]);

    let cfg = short(hook.url());
    assert!(!format!("{cfg:?}").contains(TOKEN));
    assert_eq!(
        serde_json::to_string(&cfg.webhook).unwrap(),
        "\"[redacted]\""
    );
    assert_no_secret_logged();
}

/// One incident's notification hangs at the webhook: another incident's
/// critical notification goes out once that first attempt has timed out,
/// while the hung one is still outstanding (being retried); the hung
/// incident's next notification waits its turn.
#[test]
fn a_hanging_notification_never_holds_up_another_incident() {
    let hook = Webhook::start();
    hook.hang_when(Some("alert #0"));
    let h = Harness::start(DeliveryConfig {
        // Each attempt at #0 ends here; its retries would go on far longer
        // than any wait below.
        timeout: Duration::from_secs(2),
        max_retry_for: Duration::from_secs(3600),
        ..config(&hook.url())
    });
    let mut hung = h.submit(notification(0));
    hook.wait_for(1, PATIENCE);
    // The same incident's next notification queues behind it.
    let behind = h.submit(notification(1));
    let critical = h.submit(Notification {
        kind: Kind::UsersSeeingErrors,
        pool: None,
        title: "Users are seeing errors: alert #7".into(),
        ..notification(7)
    });
    assert_eq!(h.outcome(critical, PATIENCE), Outcome::Sent);

    // Delivered while #0 was still outstanding, none of its attempts
    // answered, and #1 not tried before it.
    assert!(
        matches!(hung.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "#0 was over before #7 went out"
    );
    let received = hook.received();
    let accepted: Vec<usize> = hook.accepted().iter().map(number).collect();
    assert!(
        !accepted.is_empty() && accepted.iter().all(|n| *n == 7),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .filter(|r| number(&r.body) == 0)
            .all(|r| r.answered == 0),
        "{received:?}"
    );
    assert!(
        received.iter().all(|r| number(&r.body) != 1),
        "{received:?}"
    );

    // Released: the incident's notifications go out in order, #1 only
    // once #0 was done.
    hook.hang_when(None);
    assert_eq!(h.outcome(hung, PATIENCE), Outcome::Sent);
    assert_eq!(h.outcome(behind, PATIENCE), Outcome::Sent);
    let received = hook.received();
    let first_of_1 = received.iter().position(|r| number(&r.body) == 1);
    let last_of_0 = received.iter().rposition(|r| number(&r.body) == 0);
    assert!(first_of_1 > last_of_0, "{received:?}");
    assert_eq!(hook.violations(), Vec::<String>::new());
    assert_no_secret_logged();
}

/// First attempts take turns: with a receiver that answers (slowly), two
/// incidents decided one after the other reach it in that order, the
/// second only once the first was answered.
#[test]
fn first_attempts_go_out_in_the_order_decided() {
    let hook = Webhook::start();
    hook.set_mode(Mode::Slow(Duration::from_millis(300)));
    let h = Harness::start(config(&hook.url()));
    let failover = h.submit(notification(0));
    let error_rate = h.submit(Notification {
        kind: Kind::ErrorRate,
        title: "High error rate on blue: alert #1".into(),
        ..notification(1)
    });
    assert_eq!(h.outcome(failover, PATIENCE), Outcome::Sent);
    assert_eq!(h.outcome(error_rate, PATIENCE), Outcome::Sent);
    let received = hook.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let numbers: Vec<usize> = received.iter().map(|r| number(&r.body)).collect();
    assert_eq!(numbers, [0, 1]);
    let answered = received[0].answered_at.expect("the first was answered");
    assert!(received[1].at >= answered, "{received:?}");
    assert_eq!(hook.violations(), Vec::<String>::new());
}
