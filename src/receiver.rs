//! The receiver: binds the sockets, starts the receive threads and the HTTP
//! server, and shuts them down in order.
//!
//! Shutdown on SIGINT or SIGTERM: stop the HTTP server, tell the receive
//! threads to stop (each finishes the batch in hand within one poll
//! interval), wait for them, exit 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Cli;
use crate::http::{self, AppState};
use crate::ingest::{self, socket};
use crate::metrics::Exporter;
use crate::pipeline::Pipeline;
use crate::state::{ListenerInfo, Shared};

/// Run until a signal arrives. Errors are start-up failures, already worded
/// for the operator.
pub fn main(cli: &Cli) -> Result<(), String> {
    let cfg = cli.pipeline.pipeline_config()?;
    let want = cli.receiver.recv_buffer.0 as usize;
    let mut listeners = vec![
        socket::bind_udp(cli.receiver.udp_listen, want).map_err(|e| {
            format!(
                "cannot listen on UDP_LISTEN (--udp-listen) {}: {e}",
                cli.receiver.udp_listen
            )
        })?,
    ];
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
        if l.granted_buffer < want {
            tracing::warn!(
                listener = %l.name,
                "the kernel granted a smaller receive buffer than RECV_BUFFER asks for; \
                 raise net.core.rmem_max (sysctl -w net.core.rmem_max={want}) or grant CAP_NET_ADMIN"
            );
        }
    }
    let infos = listeners
        .iter()
        .map(|l| ListenerInfo {
            name: l.name.clone(),
            granted_buffer_bytes: l.granted_buffer,
            inode: l.inode,
        })
        .collect();
    let settings = serde_json::json!({
        "receiver": cli.receiver,
        "pipeline": cli.pipeline,
        "log": cli.log,
    });
    let exporter = Arc::new(Exporter::new(&cfg.pools));
    let shared = Arc::new(Shared::new(Pipeline::new(&cfg), infos, settings));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("poolwatch-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(cli, listeners, shared, exporter))
}

async fn serve(
    cli: &Cli,
    listeners: Vec<socket::Listener>,
    shared: Arc<Shared>,
    exporter: Arc<Exporter>,
) -> Result<(), String> {
    let addr = cli.receiver.http_listen;
    let http_listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on HTTP_LISTEN (--http-listen) {addr}: {e}"))?;
    let local = http_listener.local_addr().unwrap_or(addr);
    tracing::info!(http = %local, "serving /metrics, /healthz and /state");

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for l in listeners {
        let name = l.name.clone();
        threads.push(
            ingest::spawn(l, shared.clone(), stop.clone())
                .map_err(|e| format!("cannot start the receive thread for {name}: {e}"))?,
        );
    }
    shared.beat();

    let cancel = CancellationToken::new();
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
    let app = http::router(AppState {
        shared: shared.clone(),
        exporter,
    });
    let server = tokio::spawn(
        axum::serve(http_listener, app)
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .into_future(),
    );

    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down");
    cancel.cancel();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = upkeep.await;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await
    .map_err(|e| format!("receive thread failed: {e}"))?;
    let t = shared.pipeline().totals.clone();
    tracing::info!(
        datagrams = t.datagrams,
        requests = t.request_count(),
        malformed = t.malformed_count(),
        "stopped"
    );
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
