//! HTTP: `/metrics`, `/healthz` and `/state` for Prometheus and operators.
//!
//! Served by axum on the tokio runtime, never on a receive thread: a slow
//! scraper or a stuck client cannot delay a datagram.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use crate::metrics::Exporter;
use crate::state::Shared;

/// A receive loop wakes at least every 200 ms; this much silence means it
/// is stuck.
const STALE_AFTER: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub exporter: Arc<Exporter>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/state", get(state_doc))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    let body = tokio::task::spawn_blocking(move || s.exporter.render(&s.shared))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    let age = s.shared.heartbeat_age();
    if age < STALE_AFTER {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("receive loop silent for {:.1} s\n", age.as_secs_f64()),
        )
            .into_response()
    }
}

async fn state_doc(State(s): State<AppState>) -> Response {
    Json(s.shared.snapshot()).into_response()
}
