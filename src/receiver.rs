//! The receiver: binds the sockets, starts the receive threads and the HTTP
//! server, and shuts them down in order.
//!
//! Every port is bound before the unix socket's path is touched: a start
//! that fails (a port taken, a bad address) leaves a running instance's
//! socket alone (and its ready file).
//!
//! Once everything listens, one log line names every address bound, and
//! the ready file (`READY_FILE`) says the same as JSON: with port 0 the
//! kernel picks free ports, so this is how a supervisor or a test learns
//! them without racing anyone for a port it chose beforehand.
//!
//! Shutdown on SIGINT or SIGTERM: stop the HTTP server, stop the receive
//! threads (each is woken from its receive call and finishes the batch in
//! hand) and wait for them, let the alert loop judge that last batch,
//! then drain the alert queue within `ALERT_DRAIN_SEC`, and exit 0.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alerting::delivery::{DeliveryMetrics, SinkName};
use crate::alerting::engine::{AlertLoop, AlertShared};
use crate::alerting::incident::Incidents;
use crate::alerting::now_unix;
use crate::alerting::rules::Rules;
use crate::alerting::sinks::alertmanager::Alertmanager;
use crate::alerting::sinks::{self, Sinks};
use crate::config::Cli;
use crate::http::{self, AppState};
use crate::ingest::allow::SharedAllowList;
use crate::ingest::{self, socket};
use crate::maintenance::Maintenance;
use crate::metrics::Exporter;
use crate::pipeline::Pipeline;
use crate::reload::{self, Reloader};
use crate::state::{ListenerInfo, Shared};
use crate::state_file::{self, Fingerprint};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

/// Run until a signal arrives. Errors are start-up failures, already worded
/// for the operator.
pub fn main(cli: &Cli) -> Result<(), String> {
    let cfg = cli.pipeline.pipeline_config()?;
    let rules_cfg = cli.rules.rules_config(&cfg)?;
    cli.alerts.validate()?;
    let want = cli.receiver.recv_buffer.0 as usize;
    let mut udp = socket::bind_udp(cli.receiver.udp_listen, want).map_err(|e| {
        format!(
            "cannot listen on UDP_LISTEN (--udp-listen) {}: {e}",
            cli.receiver.udp_listen
        )
    })?;
    // Shared with reloads, which may replace it.
    let allow = SharedAllowList::new(cli.receiver.allow_from.clone());
    udp.allow = Some(allow.clone());
    let http_listener = bind_http(cli.receiver.http_listen)?;
    // Before anything is ready: a waiter must never read a previous run's
    // addresses, and an unwritable path is a start-up error, not a hang.
    let ready_file = cli
        .receiver
        .ready_file
        .as_deref()
        .map(ReadyFile::prepare)
        .transpose()?;
    let mut listeners = vec![udp];
    if let Some(path) = &cli.receiver.unix_listen {
        listeners.push(socket::bind_unix(path, want).map_err(|e| {
            format!(
                "cannot listen on UNIX_LISTEN (--unix-listen) {}: {e}",
                path.display()
            )
        })?);
    }
    for l in &listeners {
        tracing::info!(
            listener = %l.name,
            recv_buffer_requested = want,
            recv_buffer_granted = l.granted_buffer,
            "receiving"
        );
        // The kernel cannot grant more than it can store; asking 1GiB and
        // getting 1GiB - 1 byte is not a smaller buffer.
        if l.granted_buffer < socket::grantable(want) {
            tracing::warn!(
                listener = %l.name,
                "the kernel granted a smaller receive buffer than RECV_BUFFER asks for; \
                 raise net.core.rmem_max (sysctl -w net.core.rmem_max={want}) or grant CAP_NET_ADMIN"
            );
        }
    }
    match &cli.receiver.allow_from {
        Some(list) => tracing::info!(
            allow_from = %list.networks().collect::<Vec<_>>().join(","),
            "UDP datagrams from other sources are dropped unread"
        ),
        None if !cli.receiver.udp_listen.ip().to_canonical().is_loopback() => tracing::warn!(
            udp = %cli.receiver.udp_listen,
            "ALLOW_FROM is not set: UDP datagrams from any source are parsed, and anyone who \
             can reach this port can raise or hide alerts; set ALLOW_FROM to nginx's network \
             (and firewall the port)"
        ),
        None => {}
    }
    let infos = listeners
        .iter()
        .map(|l| ListenerInfo {
            name: l.name.clone(),
            granted_buffer_bytes: l.granted_buffer,
            inode: l.inode,
        })
        .collect();
    let settings = reload::settings_json(cli);
    let exporter = Arc::new(Exporter::new(&cfg.pools));
    let pipeline = Pipeline::new(&cfg);
    let labels: Vec<String> = cfg.pools.labels().map(str::to_string).collect();
    let known = cfg.pools.known();
    let shared = Arc::new(Shared::new(pipeline, infos, settings));
    let alerts = Arc::new(AlertShared::new(Maintenance::new(
        cli.admin.maintenance_mode,
        cli.admin.maintenance_file.clone(),
        now_unix(),
    )));
    let rules = Rules::new(rules_cfg);
    let incidents = Incidents::new(cli.rules.alert_cooldown_sec as f64);
    match &cli.alerts.slack_webhook_url {
        Some(_) => tracing::info!("notifications go to Slack"),
        None => {
            tracing::info!("no SLACK_WEBHOOK_URL: notifications go to stdout, one JSON line each")
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("poolwatch-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let delivery_cfg = cli.alerts.delivery_config();
        let delivery_cfg_all = delivery_cfg.clone();
        let delivery_metrics =
            exporter.register(|| DeliveryMetrics::new(sinks::message_sink(&delivery_cfg)));
        let (queue, mut delivery) = sinks::spawn(delivery_cfg, delivery_metrics)
            .map_err(|e| format!("cannot set up alert delivery: {e}"))?;
        let alertmanager = match cli.alerts.alertmanager_config(cli.receiver.http_listen) {
            Some(am_cfg) => {
                let metrics =
                    Arc::new(exporter.register(|| DeliveryMetrics::new(SinkName::Alertmanager)));
                let (am, handle) = Alertmanager::spawn(am_cfg, &delivery_cfg_all, metrics)
                    .map_err(|e| format!("cannot set up alert delivery to Alertmanager: {e}"))?;
                delivery = delivery.join(handle);
                Some(am)
            }
            None => None,
        };
        let webhook = queue.webhook();
        let sinks = Sinks::new(queue, alertmanager);
        let (live_tx, live_rx) = watch::channel(Reloader::live_alerting(cli)?);
        let mut alert_loop = exporter
            .register(|| {
                AlertLoop::new(
                    rules,
                    incidents,
                    cli.rules.runbook_url.clone(),
                    sinks,
                    &labels,
                    known,
                )
            })
            .with_reloads(live_rx);
        let reloader = Arc::new(exporter.register(|| {
            Reloader::new(
                cli,
                reload::Targets {
                    alerting: live_tx,
                    webhook,
                    allow,
                },
            )
        }));
        let state_writer = match &cli.receiver.state_file {
            Some(path) => {
                let (loop_with_state, writer) =
                    open_state_file(path, cli, alert_loop, &shared, &alerts)?;
                alert_loop = loop_with_state;
                Some(writer)
            }
            None => None,
        };
        let sockets = Sockets {
            receivers: listeners,
            http: http_listener,
            ready_file,
        };
        let result = serve(cli, sockets, shared, exporter, alerts, alert_loop, reloader).await;
        // The alert loop is done and its last state published: the writer
        // writes it, if it is new, and ends.
        if let Some(w) = state_writer {
            let _ = w.await;
        }
        let report = delivery.shutdown().await;
        tracing::info!(
            delivered = report.delivered,
            failed = report.failed,
            undelivered = report.undelivered,
            "alert queue drained"
        );
        result
    })
}

/// Bind the HTTP port, before the runtime exists (and before the unix
/// socket's path is touched); `serve` hands it to tokio.
fn bind_http(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot listen on HTTP_LISTEN (--http-listen) {addr}: {e}"))?;
    Ok(listener)
}

async fn serve(
    cli: &Cli,
    sockets: Sockets,
    shared: Arc<Shared>,
    exporter: Arc<Exporter>,
    alerts: Arc<AlertShared>,
    alert_loop: AlertLoop,
    reloader: Arc<Reloader>,
) -> Result<(), String> {
    let addr = cli.receiver.http_listen;
    let Sockets {
        receivers: listeners,
        http: http_listener,
        ready_file,
    } = sockets;
    let http_listener = tokio::net::TcpListener::from_std(http_listener)
        .map_err(|e| format!("cannot listen on HTTP_LISTEN (--http-listen) {addr}: {e}"))?;
    let local = http_listener.local_addr().unwrap_or(addr);
    tracing::info!(http = %local, "serving /metrics, /healthz and /state");
    let bound = Bound::new(&listeners, cli.receiver.unix_listen.as_deref(), local)?;

    let cancel = CancellationToken::new();
    // Off the runtime and off every lock: see `maintenance`.
    let watcher = alerts.maintenance().file_watcher();
    if let Some(watcher) = watcher {
        let shared = shared.clone();
        watcher
            .spawn(cancel.clone(), move || shared.wake_alert_loop())
            .map_err(|e| format!("cannot start the MAINTENANCE_FILE watcher: {e}"))?;
    }
    let mut threads = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let name = l.name.clone();
        threads.push(
            ingest::spawn(l, i, shared.clone())
                .map_err(|e| format!("cannot start the receive thread for {name}: {e}"))?,
        );
    }

    let upkeep = {
        let exporter = exporter.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => exporter.upkeep(),
                    _ = cancel.cancelled() => break,
                }
            }
        })
    };
    let limits = http::Limits::from_file_limit();
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout_sec = http::serve::HEADER_READ_TIMEOUT.as_secs(),
        "HTTP connection limits"
    );
    let http_metrics = exporter.register(|| http::HttpMetrics::new(limits));
    let app = http::router(AppState {
        shared: shared.clone(),
        exporter,
        alerts: alerts.clone(),
        admin_token: cli.admin.admin_token.clone(),
        reloader: Some(reloader.clone()),
    });
    let server = tokio::spawn(http::serve(
        http_listener,
        app,
        limits,
        http_metrics,
        cancel.clone(),
    ));
    let alerts_cancel = CancellationToken::new();
    let alert_task = tokio::spawn(alert_loop.run(shared.clone(), alerts, alerts_cancel.clone()));

    tracing::info!(
        udp = %bound.udp,
        unix = bound.unix.as_deref().unwrap_or("-"),
        http = %bound.http,
        "ready: listening on every address"
    );
    // Handled from before the ready file says so: a supervisor may signal
    // as soon as it sees it.
    let signals = Signals::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let outcome = match ready_file.as_ref().map(|f| f.publish(&bound)) {
        Some(Err(e)) => Err(e),
        _ => {
            let signal = signals.until_shutdown(&reloader).await;
            tracing::info!(signal, "shutting down");
            Ok(())
        }
    };
    // Not ready any more, from the first step of shutdown on.
    if let Some(f) = &ready_file {
        f.remove();
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = upkeep.await;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.stop();
        }
    })
    .await
    .map_err(|e| format!("receive thread failed: {e}"))?;
    // The receivers are done: one last evaluation covers what they finished.
    alerts_cancel.cancel();
    let _ = alert_task.await;
    let t = shared.pipeline().totals.clone();
    tracing::info!(
        datagrams = t.datagrams,
        requests = t.request_count(),
        malformed = t.malformed_count(),
        "stopped"
    );
    outcome
}

/// What `main` bound and prepared for `serve`.
struct Sockets {
    receivers: Vec<socket::Listener>,
    http: std::net::TcpListener,
    ready_file: Option<ReadyFile>,
}

/// The addresses the receiver listens on, as bound (a port 0 resolved).
#[derive(Debug, Serialize)]
struct Bound {
    udp: SocketAddr,
    unix: Option<String>,
    http: SocketAddr,
}

impl Bound {
    /// The unix socket is named by its configured path: it is bound inside
    /// a private directory and renamed into place, so the socket's own
    /// address still names the directory it was bound in.
    fn new(
        listeners: &[socket::Listener],
        unix_path: Option<&std::path::Path>,
        http: SocketAddr,
    ) -> Result<Bound, String> {
        let mut udp = None;
        let unix = unix_path.map(|p| p.display().to_string());
        for l in listeners {
            let addr = socket2::SockRef::from(&l.fd)
                .local_addr()
                .map_err(|e| format!("cannot read the address of {}: {e}", l.name))?;
            if let Some(a) = addr.as_socket() {
                udp = Some(a);
            }
        }
        Ok(Bound {
            udp: udp.ok_or("no UDP listener")?,
            unix,
            http,
        })
    }
}

/// `READY_FILE`: absent until the receiver listens everywhere, then the
/// [`Bound`] addresses as one JSON object, put in place by a rename so that
/// a reader never sees it half written.
struct ReadyFile {
    path: PathBuf,
    temp: PathBuf,
}

impl ReadyFile {
    /// Remove a stale file and check that the directory takes a new one.
    fn prepare(path: &Path) -> Result<ReadyFile, String> {
        let fail = |e: io::Error| {
            format!(
                "cannot write READY_FILE (--ready-file) {}: {e}; accepted: a file path in a \
                 writable directory",
                path.display()
            )
        };
        let name = path
            .file_name()
            .ok_or_else(|| fail(io::Error::other("no file name")))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
        std::fs::File::create(&temp).map_err(fail)?;
        Ok(ReadyFile {
            path: path.to_path_buf(),
            temp,
        })
    }

    fn publish(&self, bound: &Bound) -> Result<(), String> {
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::create(&self.temp)?;
            serde_json::to_writer(&mut f, bound)?;
            f.write_all(b"\n")?;
            std::fs::rename(&self.temp, &self.path)
        };
        write().map_err(|e| {
            format!(
                "cannot write READY_FILE (--ready-file) {}: {e}",
                self.path.display()
            )
        })
    }

    fn remove(&self) {
        for p in [&self.path, &self.temp] {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for ReadyFile {
    /// Also on a start-up error after [`ReadyFile::prepare`].
    fn drop(&mut self) {
        self.remove();
    }
}

/// The signals poolwatch handles. SIGTERM and SIGINT are the one shutdown
/// path; SIGHUP reloads the settings file; SIGUSR1 and SIGUSR2 are
/// ignored (logged), so a stray one never kills the receiver. SIGPIPE is
/// ignored by the Rust runtime; SIGQUIT keeps its core dump, for debugging.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Serve reloads until SIGTERM or SIGINT; returns which.
    async fn until_shutdown(mut self, reloader: &Arc<Reloader>) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    // Off the runtime's workers (it reads a file); logged
                    // and counted there, whatever the outcome.
                    let r = reloader.clone();
                    tokio::task::spawn_blocking(move || r.reload("SIGHUP"));
                }
                _ = self.usr1.recv() => tracing::info!(signal = "SIGUSR1", "signal ignored"),
                _ = self.usr2.recv() => tracing::info!(signal = "SIGUSR2", "signal ignored"),
            }
        }
    }
}

/// Read the state file at `path` into `alert_loop` (or set it aside), check
/// that it can be written by writing the state restored, and start its
/// writer. A path that cannot be written is a start-up error.
fn open_state_file(
    path: &Path,
    cli: &Cli,
    alert_loop: AlertLoop,
    shared: &Shared,
    alerts: &AlertShared,
) -> Result<(AlertLoop, tokio::task::JoinHandle<()>), String> {
    let fingerprint = Fingerprint {
        pools: cli.pipeline.pools.0.clone(),
        active_pool: cli.rules.active_pool.clone(),
    };
    let now = now_unix();
    let (tx, rx) = watch::channel(None);
    let mut alert_loop = alert_loop.with_state_file(tx, fingerprint.clone());
    if let Some(saved) = state_file::load(path, &fingerprint, now)
        && let Err(e) = alert_loop.restore(&saved, shared, alerts, now)
    {
        state_file::set_aside_unusable(path, &e, now);
    }
    // One evaluation publishes the state restored (and proves the path
    // writable) before anything is received.
    alert_loop.tick(shared, alerts, now);
    let first = rx.borrow().clone();
    if let Some(mut saved) = first {
        saved.written_at = now;
        state_file::write(path, &saved).map_err(|e| {
            format!(
                "cannot write STATE_FILE (--state-file) {}: {e}; accepted: a file path in a \
                 writable directory",
                path.display()
            )
        })?;
    }
    Ok((
        alert_loop,
        tokio::spawn(state_file::writer(path.to_path_buf(), rx)),
    ))
}
