//! HTTP: `/metrics`, `/healthz` and `/state` for Prometheus and operators,
//! `/maintenance` to switch maintenance mode at run time, and `/reload` to
//! re-read the settings file.
//!
//! Served on the tokio runtime, never on a receive thread: a slow scraper
//! or a stuck client cannot delay a datagram. The parts:
//!
//! - [`serve`]: the accept loop and what bounds it (header-read and idle
//!   timeouts, a connection cap derived from the file limit that sheds the
//!   oldest idle connection, small buffers), so that held connections can
//!   starve neither the health check nor the webhook client;
//! - [`routes`]: what each path answers;
//! - [`admin`]: who may change state, decided from the request's headers
//!   and peer before any body is read;
//! - [`status`]: the status page at `/` and the stream of figures it
//!   shows (`/events`).

pub mod admin;
pub mod routes;
pub mod serve;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_http::timeout::TimeoutLayer;

use crate::alerting::AlertShared;
use crate::metrics::Exporter;
use crate::reload::Reloader;
use crate::secret::Secret;
use crate::state::Shared;

pub use serve::{HttpMetrics, Limits, serve};

/// Largest `POST /maintenance` body: a reason is capped at 500 bytes, so a
/// few KiB leave room for JSON escapes and the other fields.
pub const MAX_ADMIN_BODY: usize = 4 * 1024;

/// Longest a request may take once its head has arrived, body included;
/// then it is answered `408` (every handler takes milliseconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub exporter: Arc<Exporter>,
    pub alerts: Arc<AlertShared>,
    pub admin_token: Option<Secret>,
    /// `POST /reload`; `None` where nothing can be reloaded.
    pub reloader: Option<Arc<Reloader>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/events", get(status::events))
        .layer(Extension(status::HubCell::default()))
        .route("/metrics", get(routes::metrics))
        .route("/healthz", get(routes::healthz))
        .route("/state", get(routes::state_doc))
        .route(
            "/maintenance",
            get(routes::maintenance_get)
                .post(routes::maintenance_post)
                .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY)),
        )
        .route("/reload", post(routes::reload))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}
