//! Serving HTTP/1.1 with bounds: every connection costs a file descriptor
//! and some memory, and anyone who can reach the port can open many and
//! send nothing. Without bounds, a thousand held connections exhaust the
//! file limit: `/healthz` stops answering and the webhook client cannot
//! open a socket to deliver a failover notice.
//!
//! hyper does the protocol; this module adds what hyper leaves to the
//! server that runs it:
//!
//! - **Header-read and idle timeout** ([`HEADER_READ_TIMEOUT`], hyper's own
//!   timer): hyper starts it whenever a connection waits for a request
//!   head, on a new connection and between keep-alive requests alike, so
//!   the same 10 s bound a slow head and an idle keep-alive connection.
//! - **Request timeout**: see [`super::REQUEST_TIMEOUT`] (tower-http, on
//!   the router): a handler, body read included, gets 10 s.
//! - **Small buffers**: a request head may be at most [`MAX_BUF`] bytes
//!   (`431` beyond), which also caps hyper's buffers per connection.
//! - **A connection cap** ([`Limits`]), derived from `RLIMIT_NOFILE` at
//!   start so that the webhook client, the receive sockets and files always
//!   find a descriptor. At the cap a new connection is still accepted, and
//!   the oldest connection that has not completed a request is closed to
//!   make room (else the oldest idle one, else the oldest): refusing the
//!   newest, or no longer accepting, would leave `/healthz` behind a queue
//!   that held connections never drain.
//!
//! Shutdown has one path, the receiver's cancellation token: accepting
//! stops, idle connections close, requests in progress finish, within
//! [`SHUTDOWN_GRACE`].

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Counter, Gauge};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Longest wait for a complete request head, on a new connection or between
/// keep-alive requests; hyper then closes the connection. Prometheus and
/// the admin client send their head in one write.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head, and so the largest read buffer hyper keeps for a
/// connection (hyper's minimum is 8 KiB; its default is 400 KiB).
pub const MAX_BUF: usize = 16 * 1024;

/// Most connections ever held, whatever the file limit: about 20 KiB each
/// at worst (buffers and task), so the cap bounds memory too.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long shutdown waits for requests in progress.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// After an accept error that says the process or system is out of
/// descriptors or memory, wait this long before accepting again rather
/// than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
}

impl Limits {
    /// Half the soft `RLIMIT_NOFILE`, at most [`MAX_CONNECTIONS`]: the other
    /// half stays for the webhook client (one socket per delivery attempt),
    /// the receive sockets, `/proc` reads, logs and the runtime. 1024 (the
    /// usual default) gives 512.
    pub fn from_file_limit() -> Limits {
        Limits::for_file_limit(soft_file_limit())
    }

    pub fn for_file_limit(nofile: u64) -> Limits {
        let half = usize::try_from(nofile / 2).unwrap_or(usize::MAX);
        Limits {
            max_connections: half.clamp(1, MAX_CONNECTIONS),
        }
    }
}

/// The soft limit on open files; the common default if it cannot be read.
fn soft_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc == 0 { lim.rlim_cur } else { 1024 }
}

/// `poolwatch_http_*`.
#[derive(Clone)]
pub struct HttpMetrics {
    open: Gauge,
    shed: Counter,
    header_timeout: Counter,
}

impl HttpMetrics {
    /// Register on the current recorder (see `Exporter::register`).
    pub fn new(limits: Limits) -> HttpMetrics {
        use metrics::{counter, describe_counter, describe_gauge, gauge};
        describe_gauge!("poolwatch_http_connections", "HTTP connections open.");
        describe_gauge!(
            "poolwatch_http_connections_limit",
            "Most HTTP connections held at once; at the limit the oldest idle one is closed for each new one."
        );
        describe_counter!(
            "poolwatch_http_connections_closed_total",
            "HTTP connections closed by poolwatch: shed at the connection limit, or no complete request head within the header-read timeout."
        );
        gauge!("poolwatch_http_connections_limit").set(limits.max_connections as f64);
        HttpMetrics {
            open: gauge!("poolwatch_http_connections"),
            shed: counter!("poolwatch_http_connections_closed_total", "reason" => "shed"),
            header_timeout: counter!(
                "poolwatch_http_connections_closed_total",
                "reason" => "header_timeout"
            ),
        }
    }
}

/// Serve `app` on `listener` until `cancel`, then shut down gracefully.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: HttpMetrics,
    cancel: CancellationToken,
) {
    let table = Arc::new(Table::new(limits.max_connections, metrics.clone()));
    let tracker = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if accept_errors.note(&e) {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
                continue;
            }
        };
        let conn = table.admit();
        tracker.spawn(connection(
            builder.clone(),
            stream,
            peer,
            app.clone(),
            conn,
            metrics.clone(),
            cancel.clone(),
        ));
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

/// One connection, until it closes, is shed, or shutdown.
async fn connection(
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    conn: Conn,
    metrics: HttpMetrics,
    cancel: CancellationToken,
) {
    let flags = conn.flags.clone();
    let shutdown = cancel.clone();
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        // Lets a response that streams (the status page's events) end at
        // shutdown instead of holding the connection open.
        req.extensions_mut()
            .insert(super::status::Shutdown(shutdown.clone()));
        let busy = Busy::enter(&flags);
        let call = app.clone().oneshot(req.map(Body::new));
        async move {
            let response = call.await;
            drop(busy);
            response
        }
    });
    let mut serving = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        r = serving.as_mut() => r,
        // Dropping the connection closes the socket.
        _ = conn.shed.cancelled() => return,
        _ = cancel.cancelled() => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(e) = result
        && e.is_timeout()
    {
        metrics.header_timeout.increment(1);
    }
}

/// Open connections, oldest first.
struct Table {
    slots: Mutex<Slots>,
    limit: usize,
    metrics: HttpMetrics,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    open: BTreeMap<u64, Slot>,
}

struct Slot {
    flags: Arc<Flags>,
    shed: CancellationToken,
}

/// What the shedding choice needs to know about a connection.
#[derive(Default)]
struct Flags {
    /// Requests in a handler (0 or 1 on HTTP/1.1).
    busy: AtomicUsize,
    /// A request has completed on it.
    served: AtomicBool,
}

/// A connection's place in the table, given up on drop.
struct Conn {
    id: u64,
    table: Arc<Table>,
    flags: Arc<Flags>,
    shed: CancellationToken,
}

impl Table {
    fn new(limit: usize, metrics: HttpMetrics) -> Table {
        Table {
            slots: Mutex::new(Slots::default()),
            limit: limit.max(1),
            metrics,
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Give a new connection a place, shedding one at the limit.
    fn admit(self: &Arc<Table>) -> Conn {
        let mut slots = self.slots();
        while slots.open.len() >= self.limit {
            let Some(victim) = shed_choice(&slots.open) else {
                break;
            };
            if let Some(slot) = slots.open.remove(&victim) {
                slot.shed.cancel();
                self.metrics.shed.increment(1);
            }
        }
        let id = slots.next_id;
        slots.next_id += 1;
        let flags = Arc::new(Flags::default());
        let shed = CancellationToken::new();
        slots.open.insert(
            id,
            Slot {
                flags: flags.clone(),
                shed: shed.clone(),
            },
        );
        self.metrics.open.set(slots.open.len() as f64);
        Conn {
            id,
            table: self.clone(),
            flags,
            shed,
        }
    }
}

/// The connection to close for a new one: the oldest that has not completed
/// a request and is not in one (held open or half-sent: what an attacker
/// holds), else the oldest idle one, else the oldest.
fn shed_choice(open: &BTreeMap<u64, Slot>) -> Option<u64> {
    let idle = |s: &Slot| s.flags.busy.load(Ordering::Relaxed) == 0;
    let fresh = |s: &Slot| !s.flags.served.load(Ordering::Relaxed);
    open.iter()
        .find(|(_, s)| idle(s) && fresh(s))
        .or_else(|| open.iter().find(|(_, s)| idle(s)))
        .or_else(|| open.iter().next())
        .map(|(id, _)| *id)
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut slots = self.table.slots();
        slots.open.remove(&self.id);
        self.table.metrics.open.set(slots.open.len() as f64);
    }
}

/// Marks a connection busy while a handler runs, served once it is done.
struct Busy(Arc<Flags>);

impl Busy {
    fn enter(flags: &Arc<Flags>) -> Busy {
        flags.busy.fetch_add(1, Ordering::Relaxed);
        Busy(flags.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accept errors, logged at most every 10 s.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since: u64,
}

impl AcceptErrors {
    /// Note an accept error; returns whether to back off before the next
    /// accept (the process or system is out of a resource that only time
    /// gives back).
    fn note(&mut self, e: &io::Error) -> bool {
        self.since += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(error = %e, errors = self.since, "HTTP accept failed");
            self.last_logged = Some(Instant::now());
            self.since = 0;
        }
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> HttpMetrics {
        HttpMetrics::new(Limits::for_file_limit(1024))
    }

    #[test]
    fn the_cap_leaves_half_the_file_limit() {
        assert_eq!(Limits::for_file_limit(1024).max_connections, 512);
        assert_eq!(Limits::for_file_limit(1).max_connections, 1);
        assert_eq!(Limits::for_file_limit(0).max_connections, 1);
        assert_eq!(
            Limits::for_file_limit(1 << 20).max_connections,
            MAX_CONNECTIONS
        );
        assert!(Limits::from_file_limit().max_connections >= 1);
    }

    #[test]
    fn at_the_cap_the_oldest_fresh_idle_connection_goes() {
        let table = Arc::new(Table::new(3, metrics()));
        let a = table.admit(); // served, now idle
        let b = table.admit(); // in a request
        let c = table.admit(); // fresh: nothing completed yet
        drop(Busy::enter(&a.flags));
        let _busy = Busy::enter(&b.flags);
        let d = table.admit();
        assert!(c.shed.is_cancelled());
        assert!(!a.shed.is_cancelled() && !b.shed.is_cancelled());
        // No fresh idle one left but d: d goes, it is the only fresh one.
        let e = table.admit();
        assert!(d.shed.is_cancelled());
        // Then the oldest idle (served) one, never the one in a request.
        drop(Busy::enter(&e.flags));
        let _f = table.admit();
        assert!(a.shed.is_cancelled());
        assert!(!b.shed.is_cancelled());
        assert_eq!(table.slots().open.len(), 3);
    }

    #[test]
    fn a_closed_connection_gives_its_place_back() {
        let table = Arc::new(Table::new(2, metrics()));
        let a = table.admit();
        let b = table.admit();
        drop(a);
        let _c = table.admit();
        assert!(!b.shed.is_cancelled());
        assert_eq!(table.slots().open.len(), 2);
    }
}
