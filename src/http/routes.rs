//! What each path answers. Reading is open to anyone who can reach the
//! port; changing state goes through [`Admin`], which is decided before the
//! body is read.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;

use super::AppState;
use super::admin::Admin;
use crate::alerting::now_unix;
use crate::duration::parse_duration;
use crate::maintenance::Source;

pub async fn metrics(State(s): State<AppState>) -> Response {
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

/// 200 while every receive thread is in its receive call or left it only
/// just (see [`crate::state::Liveness`]); 503 naming the ones that are
/// stuck or stopped.
pub async fn healthz(State(s): State<AppState>) -> Response {
    let problems = s.shared.health_problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

pub async fn state_doc(State(s): State<AppState>) -> Response {
    let mut doc = serde_json::to_value(s.shared.snapshot()).unwrap_or_default();
    doc["alerting"] = serde_json::to_value(s.alerts.status()).unwrap_or_default();
    // The alert loop's copy is up to a tick old; maintenance is read live so
    // that a change made a moment ago shows.
    doc["alerting"]["maintenance"] =
        serde_json::to_value(s.alerts.maintenance().status()).unwrap_or_default();
    // The settings in force, a reload's changes included.
    if let Some(r) = &s.reloader {
        doc["settings"] = r.settings();
    }
    Json(doc).into_response()
}

/// `POST /reload`: re-read `ENV_FILE` and apply what can change live, as
/// SIGHUP does. 200 with what changed, or 422 with why the file was
/// rejected (and nothing changed). No body is read.
pub async fn reload(State(s): State<AppState>, admin: Admin) -> Response {
    let Some(r) = s.reloader.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing to reload here".into(),
        );
    };
    let trigger = format!("API from {}", admin.peer_ip());
    match tokio::task::spawn_blocking(move || r.reload(&trigger)).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {e}"),
        ),
    }
}

pub async fn maintenance_get(State(s): State<AppState>) -> Response {
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

/// `admin` is extracted before `body`: a caller that may not change state
/// is answered from its headers, and its body is never read.
pub async fn maintenance_post(
    State(s): State<AppState>,
    admin: Admin,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        // Over `MAX_ADMIN_BODY` (413), or the client went away mid-body.
        Err(e) => return error(e.status(), e.body_text()),
    };
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
    let by = req.by.unwrap_or_else(|| admin.peer_ip().to_string());
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
    // Announced by the alert loop, which may be asleep.
    s.shared.wake_alert_loop();
    Json(s.alerts.maintenance().status()).into_response()
}

/// A JSON error body, the shape `poolwatch maintenance` reads.
pub fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
