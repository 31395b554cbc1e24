//! `demo-app`: the upstream application behind nginx in the blue/green stack
//! and in the integration tests.
//!
//! Every response, including failures it injects itself, carries
//! `X-App-Pool` and `X-Release-Id`, which nginx logs as
//! `$upstream_http_x_app_pool` / `$upstream_http_x_release_id`; that is how
//! poolwatch attributes a request to a pool.
//!
//! Environment:
//!
//! | variable            | default   | meaning                                        |
//! |---------------------|-----------|------------------------------------------------|
//! | `APP_POOL`          | `unknown` | value of `X-App-Pool` (e.g. `blue`)            |
//! | `RELEASE_ID`        | `unknown` | value of `X-Release-Id` (e.g. `blue-v1`)       |
//! | `PORT`              | `3000`    | TCP port to listen on; `0`: the kernel picks   |
//! | `BIND`              | `0.0.0.0` | address to listen on                           |
//! | `CHAOS_TIMEOUT_SEC` | `30`      | delay in `timeout` chaos (fractions allowed)   |
//!
//! The first line on stdout names the address bound (`demo-app pool=blue
//! release=blue-v1 listening on 127.0.0.1:40123`), so whoever starts it
//! with `PORT=0` learns the port without choosing one first (the tests do).
//!
//! Routes:
//!
//! - `GET /version`: `{"status":"OK","message":"Application version in header"}`.
//! - `GET /healthz`: always 200, even in chaos, so that injected failures are
//!   only visible on application routes.
//! - `POST /chaos/start?mode=error|timeout`, `POST /chaos/stop`.
//!   `error` makes application routes answer 500; `timeout` makes them wait
//!   `CHAOS_TIMEOUT_SEC` first, longer than nginx's `proxy_read_timeout`.
//! - `GET /status/{code}`: answers with that status code (200..=599).
//! - any other `GET` path: 200 with a small JSON body, so load has varied URIs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MODE_NORMAL: u8 = 0;
const MODE_ERROR: u8 = 1;
const MODE_TIMEOUT: u8 = 2;

struct App {
    pool: HeaderValue,
    release: HeaderValue,
    mode: AtomicU8,
    chaos_timeout: Duration,
    /// Cancels chaos delays on shutdown; otherwise graceful shutdown would
    /// wait for every delayed request and outlive `docker stop`'s grace period.
    shutdown: CancellationToken,
}

type Shared = Arc<App>;

#[tokio::main]
async fn main() {
    if let Err(message) = run().await {
        eprintln!("demo-app: {message}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let pool = env_or("APP_POOL", "unknown");
    let release = env_or("RELEASE_ID", "unknown");
    let port: u16 = env_or("PORT", "3000")
        .parse()
        .map_err(|e| format!("invalid PORT: {e}"))?;
    let bind: IpAddr = env_or("BIND", "0.0.0.0")
        .parse()
        .map_err(|e| format!("invalid BIND: {e}"))?;
    let chaos_secs: f64 = env_or("CHAOS_TIMEOUT_SEC", "30")
        .parse()
        .map_err(|e| format!("invalid CHAOS_TIMEOUT_SEC: {e}"))?;
    let chaos_timeout = Duration::try_from_secs_f64(chaos_secs)
        .map_err(|e| format!("invalid CHAOS_TIMEOUT_SEC: {e}"))?;

    let app = Arc::new(App {
        pool: HeaderValue::from_str(&pool).map_err(|e| format!("invalid APP_POOL: {e}"))?,
        release: HeaderValue::from_str(&release).map_err(|e| format!("invalid RELEASE_ID: {e}"))?,
        mode: AtomicU8::new(MODE_NORMAL),
        chaos_timeout,
        shutdown: CancellationToken::new(),
    });

    let router = Router::new()
        .route("/version", get(version))
        .route("/healthz", get(healthz))
        .route("/chaos/start", post(chaos_start))
        .route("/chaos/stop", post(chaos_stop))
        .route("/status/{code}", get(status_code))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(app.clone(), chaos))
        // Outermost, so that chaos answers and extractor rejections get the
        // pool headers too.
        .layer(middleware::from_fn_with_state(app.clone(), pool_headers))
        .with_state(app.clone());

    let addr = SocketAddr::new(bind, port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("demo-app pool={pool} release={release} listening on {local}");

    let token = app.shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            token.cancel();
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn pool_headers(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    headers.insert(HeaderName::from_static("x-app-pool"), app.pool.clone());
    headers.insert(HeaderName::from_static("x-release-id"), app.release.clone());
    res
}

async fn chaos(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Health and chaos control must keep working, or a test could never
    // switch chaos off again and orchestrators would restart the container.
    if path == "/healthz" || path.starts_with("/chaos/") {
        return next.run(req).await;
    }
    match app.mode.load(Ordering::Relaxed) {
        MODE_ERROR => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"status": "ERROR", "message": "chaos mode: error"})),
        )
            .into_response(),
        MODE_TIMEOUT => {
            tokio::select! {
                _ = tokio::time::sleep(app.chaos_timeout) => {}
                _ = app.shutdown.cancelled() => {}
            }
            next.run(req).await
        }
        _ => next.run(req).await,
    }
}

async fn version() -> impl IntoResponse {
    Json(json!({"status": "OK", "message": "Application version in header"}))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "OK"}))
}

async fn chaos_start(
    State(app): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mode = query.get("mode").map(String::as_str);
    let value = match mode {
        Some("error") => MODE_ERROR,
        Some("timeout") => MODE_TIMEOUT,
        other => {
            let got = other.unwrap_or("");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "status": "ERROR",
                    "message": format!("unknown chaos mode '{got}'; accepted modes: error, timeout"),
                })),
            )
                .into_response();
        }
    };
    app.mode.store(value, Ordering::Relaxed);
    Json(json!({"status": "OK", "message": "chaos started", "mode": mode})).into_response()
}

async fn chaos_stop(State(app): State<Shared>) -> impl IntoResponse {
    app.mode.store(MODE_NORMAL, Ordering::Relaxed);
    Json(json!({"status": "OK", "message": "chaos stopped"}))
}

async fn status_code(Path(code): Path<String>) -> Response {
    match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
        Some(code) => {
            let status = StatusCode::from_u16(code).expect("200..=599 is a valid status");
            (status, Json(json!({"status": code}))).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "ERROR", "message": "status code must be 200..=599"})),
        )
            .into_response(),
    }
}

async fn fallback(method: axum::http::Method, uri: Uri) -> Response {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        Json(json!({"status": "OK", "path": uri.path()})).into_response()
    } else {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    }
}
