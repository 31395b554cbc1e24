//! `poolwatch maintenance on|off|status`: a client of a running poolwatch's
//! HTTP API, so the procedure in RUNBOOK.md is one command that works at
//! run time, from the host or inside the container.

use std::time::Duration;

use crate::config::{MaintenanceAction, MaintenanceArgs};
use crate::maintenance::MaintenanceStatus;
use crate::secret::Secret;

/// Run the subcommand; prints the resulting state.
pub fn main(args: &MaintenanceArgs, token: Option<&Secret>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let status = rt.block_on(call(args, token))?;
    print!("{}", describe(&status));
    Ok(())
}

async fn call(args: &MaintenanceArgs, token: Option<&Secret>) -> Result<MaintenanceStatus, String> {
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let url = format!("{}/maintenance", args.url.trim_end_matches('/'));
    let request = match &args.action {
        MaintenanceAction::Status => client.get(&url),
        MaintenanceAction::On {
            duration,
            reason,
            by,
        } => client.post(&url).json(&serde_json::json!({
            "on": true,
            "for": duration.map(|d| humantime::format_duration(d).to_string()),
            "reason": reason,
            "by": by,
        })),
        MaintenanceAction::Off { by } => client
            .post(&url)
            .json(&serde_json::json!({ "on": false, "by": by })),
    };
    let request = match token {
        Some(t) => request.bearer_auth(t.expose()),
        None => request,
    };
    let response = request.send().await.map_err(|e| {
        format!(
            "cannot reach poolwatch at {} ({e}); is it running? set POOLWATCH_URL",
            args.url
        )
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(format!("poolwatch refused ({status}): {msg}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("unexpected answer from poolwatch: {e}"))
}

fn describe(s: &MaintenanceStatus) -> String {
    if !s.on {
        return "maintenance: off\n".into();
    }
    format!(
        "maintenance: on since {} by {} ({}), {}\nreason: {}\n",
        s.since.as_deref().unwrap_or("?"),
        s.by.as_deref().unwrap_or("?"),
        s.source
            .map_or("?".into(), |src| format!("{src:?}").to_lowercase()),
        s.until
            .as_deref()
            .map_or("until turned off".into(), |u| format!("until {u}")),
        s.reason.as_deref().unwrap_or("")
    )
}
