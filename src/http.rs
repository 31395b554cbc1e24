//! HTTP: `/metrics`, `/healthz` and `/state` for Prometheus and operators,
//! and `/maintenance` to switch maintenance mode at run time.
//!
//! Served by axum on the tokio runtime, never on a receive thread: a slow
//! scraper or a stuck client cannot delay a datagram. Changing state needs
//! `Authorization: Bearer ADMIN_TOKEN` when a token is configured, and a
//! loopback client when none is: the API is never open to the network by
//! accident.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::alert::delivery::Secret;
use crate::alerting::{AlertShared, now_unix};
use crate::config::parse_duration;
use crate::maintenance::Source;
use crate::metrics::Exporter;
use crate::state::Shared;

/// A receive loop wakes at least every 200 ms; this much silence means it
/// is stuck.
const STALE_AFTER: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub exporter: Arc<Exporter>,
    pub alerts: Arc<AlertShared>,
    pub admin_token: Option<Secret>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/state", get(state_doc))
        .route("/maintenance", get(maintenance_get).post(maintenance_post))
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
    let mut doc = serde_json::to_value(s.shared.snapshot()).unwrap_or_default();
    doc["alerting"] = serde_json::to_value(s.alerts.status()).unwrap_or_default();
    // The alert loop's copy is up to a tick old; maintenance is read live so
    // that a change made a moment ago shows.
    doc["alerting"]["maintenance"] =
        serde_json::to_value(s.alerts.maintenance().status()).unwrap_or_default();
    Json(doc).into_response()
}

async fn maintenance_get(State(s): State<AppState>) -> Response {
    Json(s.alerts.maintenance().status()).into_response()
}

/// Body of `POST /maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceRequest {
    on: bool,
    /// `30m`, `2h`; absent: until turned off.
    #[serde(rename = "for")]
    duration: Option<String>,
    reason: Option<String>,
    by: Option<String>,
}

async fn maintenance_post(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorize(s.admin_token.as_ref(), peer, &headers) {
        return denied;
    }
    let req: MaintenanceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid body ({e}); accepted: {{\"on\": true, \"for\": \"30m\", \"reason\": \"...\", \"by\": \"...\"}} or {{\"on\": false}}"
                ),
            );
        }
    };
    let now = now_unix();
    let by = req.by.unwrap_or_else(|| peer.ip().to_string());
    {
        let mut m = s.alerts.maintenance();
        if req.on {
            let until = match req.duration.as_deref().map(parse_duration) {
                None => None,
                Some(Ok(d)) => Some(now + d.as_secs_f64()),
                Some(Err(e)) => {
                    return error(StatusCode::BAD_REQUEST, format!("invalid \"for\": {e}"));
                }
            };
            let reason = req.reason.unwrap_or_else(|| "no reason given".into());
            m.turn_on(Source::Api, until, &reason, &by, now);
            tracing::info!(by = ?by, reason = ?reason, "maintenance turned on through the API");
        } else {
            m.turn_off(&by);
            tracing::info!(by = ?by, "maintenance turned off through the API");
        }
    }
    Json(s.alerts.maintenance().status()).into_response()
}

#[allow(clippy::result_large_err)]
fn authorize(
    token: Option<&Secret>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), Response> {
    // An empty token is no token (defence in depth: settings already treat
    // an empty value as unset).
    match token.filter(|t| !t.expose().is_empty()) {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
                Ok(())
            } else {
                Err(error(
                    StatusCode::UNAUTHORIZED,
                    "this API needs Authorization: Bearer <ADMIN_TOKEN>".into(),
                ))
            }
        }
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(error(
            StatusCode::FORBIDDEN,
            "without ADMIN_TOKEN configured, only loopback clients may change state".into(),
        )),
    }
}

/// Compare without an early exit, so response time says nothing about how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_only_without_a_token() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert!(authorize(None, local, &headers(None)).is_ok());
        assert_eq!(
            authorize(None, remote, &headers(None))
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn token_required_when_configured() {
        let t = Secret::new("s3cret");
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert!(authorize(Some(&t), remote, &headers(Some("Bearer s3cret"))).is_ok());
        for h in [
            None,
            Some("Bearer nope"),
            Some("s3cret"),
            Some("Bearer s3cre"),
        ] {
            assert_eq!(
                authorize(Some(&t), remote, &headers(h))
                    .unwrap_err()
                    .status(),
                StatusCode::UNAUTHORIZED
            );
        }
        // An empty token would match an empty header: it counts as none.
        let empty = Secret::new("");
        assert_eq!(
            authorize(Some(&empty), remote, &headers(None))
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
        // A token is required even from loopback once one is configured.
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(authorize(Some(&t), local, &headers(None)).is_err());
    }
}
