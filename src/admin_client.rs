//! `poolwatch maintenance on|off|status` and `poolwatch reload`: clients of
//! a running poolwatch's HTTP API, so the procedure in RUNBOOK.md is one command that works at
//! run time, from the host or inside the container.

use std::time::Duration;

use crate::config::{MaintenanceAction, MaintenanceArgs, ReloadArgs};
use crate::maintenance::MaintenanceStatus;
use crate::reload::Report;
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

/// `poolwatch reload`: ask the running poolwatch to re-read its ENV_FILE;
/// prints what changed. A rejected file is an error, with the reason.
pub fn reload(args: &ReloadArgs, token: Option<&Secret>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let report: Report = rt.block_on(async {
        let client = client()?;
        let url = format!("{}/reload", args.url.trim_end_matches('/'));
        let request = client.post(&url);
        send(request, token, &args.url).await
    })?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("settings reloaded; changed: {}", list(&report.changed));
    if !report.needs_restart.is_empty() {
        println!(
            "changed but in force only after a restart: {}",
            list(&report.needs_restart)
        );
    }
    Ok(())
}

fn client() -> Result<reqwest::Client, String> {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

async fn call(args: &MaintenanceArgs, token: Option<&Secret>) -> Result<MaintenanceStatus, String> {
    let client = client()?;
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
    send(request, token, &args.url).await
}

/// Send `request` (with the token, if any) and read the JSON answer; an
/// error status becomes the error it carries.
async fn send<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    token: Option<&Secret>,
    base: &str,
) -> Result<T, String> {
    let request = match token {
        Some(t) => request.bearer_auth(t.expose()),
        None => request,
    };
    let response = request.send().await.map_err(|e| {
        format!("cannot reach poolwatch at {base} ({e}); is it running? set POOLWATCH_URL")
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
