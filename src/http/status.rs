//! The status page: `GET /` serves one self-contained page (HTML, CSS and
//! script compiled into the binary, nothing from any other host), and
//! `GET /events` streams what it shows as server-sent events, once a
//! second.
//!
//! One task ([`Hub`]) builds and serializes the page's document once per
//! second and hands the same bytes to every open page through a `watch`
//! channel: fifty open pages cost one copy of the figures and one JSON
//! encoding per second, plus fifty socket writes. Polling `/state` would
//! cost a lock, a copy and an encoding per page per second (DECISION.md has
//! the measurement). With no page open the task only samples the counters
//! it turns into rates.
//!
//! The per-second series come from the time window, so a page opened
//! mid-incident draws the whole `WINDOW_SECONDS` at once.
//!
//! A stream is an HTTP response that never ends by itself: it ends when the
//! server shuts down (the cancellation token `serve` puts on each request),
//! so an open page never holds shutdown up.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::alerting::engine::RecentNotification;
use crate::alerting::incident::OpenIncident;
use crate::alerting::{AlertShared, now_unix};
use crate::maintenance::MaintenanceStatus;
use crate::state::{PageFigures, RateCounters as Counters, Shared};

/// How often the page's document is rebuilt and sent.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The page, assembled at compile time from the files beside this module.
pub const PAGE: &str = concat!(
    include_str!("status_page/head.html"),
    "<style>\n",
    include_str!("status_page/page.css"),
    "</style>\n",
    include_str!("status_page/body.html"),
    "<script>\n",
    include_str!("status_page/page.js"),
    "</script>\n</body>\n</html>\n",
);

/// What the page may load and where it may connect: only this server,
/// whatever ends up in the page.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The shutdown signal of the server, put on every request by `serve`.
#[derive(Clone)]
pub struct Shutdown(pub CancellationToken);

/// `GET /`.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /events`: the page's document now, then once a second, as
/// `data:` lines of server-sent events, until the server shuts down.
pub async fn events(
    State(s): State<AppState>,
    Extension(cell): Extension<HubCell>,
    shutdown: Option<Extension<Shutdown>>,
) -> Response {
    // Without `serve` (a router driven directly), streams end only with
    // their client.
    let cancel = shutdown.map_or_else(CancellationToken::new, |e| e.0.0);
    let hub = cell.get_or_init(&s, &cancel);
    let mut rx = hub.subscribe();
    // The newest frame at once, so a page shows something before the next
    // tick; built now if none is recent.
    let first = hub.fresh_frame();
    rx.mark_unchanged();
    let stream = futures_util::stream::unfold(
        (Some(first), rx, cancel),
        |(first, mut rx, cancel)| async move {
            if let Some(frame) = first {
                return Some((Ok::<_, Infallible>(frame), (None, rx, cancel)));
            }
            tokio::select! {
                changed = rx.changed() => {
                    changed.ok()?;
                    let frame = rx.borrow_and_update().clone();
                    Some((Ok(frame), (None, rx, cancel)))
                }
                _ = cancel.cancelled() => None,
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx in front must pass each event on, not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The hub, started by the first page that connects (with the server's
/// shutdown token, which ends it).
#[derive(Default, Clone)]
pub struct HubCell(Arc<OnceLock<Arc<Hub>>>);

impl HubCell {
    fn get_or_init(&self, s: &AppState, cancel: &CancellationToken) -> Arc<Hub> {
        self.0
            .get_or_init(|| {
                let token_required = s
                    .admin_token
                    .as_ref()
                    .is_some_and(|t| !t.expose().is_empty());
                Hub::start(
                    s.shared.clone(),
                    s.alerts.clone(),
                    token_required,
                    cancel.clone(),
                )
            })
            .clone()
    }
}

/// Builds the page's document once a second and shares it.
pub struct Hub {
    shared: Arc<Shared>,
    alerts: Arc<AlertShared>,
    token_required: bool,
    tx: watch::Sender<Bytes>,
    rates: Mutex<Rates>,
    /// When the frame in `tx` was built.
    built: Mutex<Option<Instant>>,
}

/// The counters of the last look, and the rates between the two before.
#[derive(Debug, Default)]
struct Rates {
    last: Option<(Instant, Counters)>,
    /// Datagrams per second, and retries per second `[from][to]`.
    current: Option<(f64, Vec<Vec<f64>>)>,
}

/// Looks closer together than this leave the previous rates standing.
const MIN_RATE_SPAN: Duration = Duration::from_millis(500);

impl Rates {
    fn note(&mut self, at: Instant, c: Counters) -> Option<(f64, Vec<Vec<f64>>)> {
        match &self.last {
            // Too close to the last look for a rate: the last rates stand.
            Some((then, _)) if at.duration_since(*then) < MIN_RATE_SPAN => {}
            Some((then, prev)) => {
                let secs = at.duration_since(*then).as_secs_f64();
                let per_sec = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
                let retries = c
                    .retried
                    .iter()
                    .zip(&prev.retried)
                    .map(|(a, b)| a.iter().zip(b).map(|(a, b)| per_sec(*a, *b)).collect())
                    .collect();
                self.current = Some((per_sec(c.datagrams, prev.datagrams), retries));
                self.last = Some((at, c));
            }
            None => self.last = Some((at, c)),
        }
        self.current.clone()
    }
}

impl Hub {
    fn start(
        shared: Arc<Shared>,
        alerts: Arc<AlertShared>,
        token_required: bool,
        cancel: CancellationToken,
    ) -> Arc<Hub> {
        let (tx, _) = watch::channel(Bytes::new());
        let hub = Arc::new(Hub {
            shared,
            alerts,
            token_required,
            tx,
            rates: Mutex::new(Rates::default()),
            built: Mutex::new(None),
        });
        let task = hub.clone();
        tokio::spawn(async move {
            // The first page got its frame when it connected.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => task.tick(),
                    _ = cancel.cancelled() => break,
                }
            }
            // Dropping the last sender ends every stream.
        });
        hub
    }

    fn subscribe(&self) -> watch::Receiver<Bytes> {
        self.tx.subscribe()
    }

    /// Once a second: with pages open, a new frame for all of them;
    /// without, only a look at the counters for the next rates.
    fn tick(&self) {
        if self.tx.receiver_count() == 0 {
            let c = self.shared.rate_counters();
            lock(&self.rates).note(Instant::now(), c);
            return;
        }
        let frame = self.build();
        self.tx.send_replace(frame);
    }

    /// The newest frame if it is less than a period old, else a new one
    /// (which also goes to every open page).
    fn fresh_frame(&self) -> Bytes {
        let recent = lock(&self.built).is_some_and(|at| at.elapsed() < PERIOD);
        if recent {
            return self.tx.borrow().clone();
        }
        let frame = self.build();
        self.tx.send_replace(frame.clone());
        frame
    }

    /// The document, serialized as one server-sent event.
    fn build(&self) -> Bytes {
        let figures = self.shared.page_figures();
        let rates = lock(&self.rates).note(
            Instant::now(),
            Counters {
                datagrams: figures.datagrams,
                retried: figures.retried.clone(),
            },
        );
        let alerting = self.alerts.status();
        let maintenance = self.alerts.maintenance().status();
        let labels: Vec<&str> = figures
            .pools
            .iter()
            .filter(|p| p.known)
            .map(|p| p.pool.as_str())
            .collect();
        let mut retries = Vec::new();
        for (from, row) in figures.retried.iter().enumerate() {
            for (to, total) in row.iter().enumerate() {
                if from == to {
                    continue;
                }
                let (Some(f), Some(t)) = (labels.get(from), labels.get(to)) else {
                    continue;
                };
                retries.push(Retries {
                    from: f,
                    to: t,
                    per_second: rates.as_ref().map(|r| r.1[from][to]),
                    total: *total,
                });
            }
        }
        let doc = Doc {
            now: now_unix(),
            figures: &figures,
            primary: &alerting.primary,
            retries,
            ingest: Ingest {
                datagrams: figures.datagrams,
                datagrams_per_second: rates.as_ref().map(|r| r.0),
                malformed: &figures.malformed,
                rejected: &figures.rejected,
                kernel_drops: self.shared.kernel_drops(),
            },
            open_incidents: &alerting.open_incidents,
            recent: &alerting.recent,
            maintenance: &maintenance,
            admin_token_required: self.token_required,
        };
        let mut out = Vec::with_capacity(16 * 1024);
        out.extend_from_slice(b"data: ");
        // Plain data into a Vec cannot fail; JSON holds no raw newline, so
        // the event is one `data:` line.
        serde_json::to_writer(&mut out, &doc).expect("the page document serializes");
        out.extend_from_slice(b"\n\n");
        *lock(&self.built) = Some(Instant::now());
        Bytes::from(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Requests retried from one pool to another.
#[derive(Debug, Serialize)]
struct Retries<'a> {
    from: &'a str,
    to: &'a str,
    /// Over the last second or so; `null` until two looks were taken.
    per_second: Option<f64>,
    total: u64,
}

#[derive(Debug, Serialize)]
struct Ingest<'a> {
    datagrams: u64,
    datagrams_per_second: Option<f64>,
    malformed: &'a BTreeMap<String, u64>,
    rejected: &'a BTreeMap<String, u64>,
    /// `null` when a socket was not found in `/proc/net/udp`.
    kernel_drops: Option<u64>,
}

/// The page's document.
#[derive(Debug, Serialize)]
struct Doc<'a> {
    /// Server time (Unix seconds), for ages: the browser's clock may be off.
    now: f64,
    #[serde(flatten)]
    figures: &'a PageFigures,
    /// The pool whose failures count as a failover.
    primary: &'a str,
    retries: Vec<Retries<'a>>,
    ingest: Ingest<'a>,
    open_incidents: &'a [OpenIncident],
    /// The last notifications, newest last.
    recent: &'a VecDeque<RecentNotification>,
    maintenance: &'a MaintenanceStatus,
    /// `ADMIN_TOKEN` is set: the maintenance control asks for it.
    admin_token_required: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(datagrams: u64, blue_to_green: u64) -> Counters {
        Counters {
            datagrams,
            retried: vec![vec![0, blue_to_green], vec![0, 0]],
        }
    }

    #[test]
    fn rates_come_from_two_looks_far_enough_apart() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        assert_eq!(r.note(t0, counters(100, 3)), None);
        let (dgrams, retries) = r
            .note(t0 + Duration::from_secs(2), counters(300, 13))
            .unwrap();
        assert!((dgrams - 100.0).abs() < 1e-9);
        assert!((retries[0][1] - 5.0).abs() < 1e-9);
        // A look right after another leaves the last rates standing and
        // measures the next interval from the earlier look.
        let again = r.note(t0 + Duration::from_millis(2100), counters(1000, 13));
        assert_eq!(again.map(|r| r.0), Some(dgrams));
        let (dgrams, _) = r
            .note(t0 + Duration::from_secs(3), counters(400, 13))
            .unwrap();
        assert!((dgrams - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_page_is_one_document_with_its_assets_inline() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("<style>") && PAGE.contains("<script>"));
        assert!(PAGE.trim_end().ends_with("</html>"));
        assert!(PAGE.len() < 64 * 1024, "{} bytes", PAGE.len());
    }
}
