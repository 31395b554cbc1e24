//! The shipped Grafana dashboard as the tests see it: its panels, every
//! query they run, and running a query against Prometheus's HTTP API.
//!
//! No Grafana runs in the suite, so the dashboard is proven through a real
//! Prometheus instead: `stack_e2e` (programs on loopback) and
//! `stack_docker` (the Docker stack) both run every query through this one
//! reading of the JSON, and `stack_configs` checks the panels statically.

use std::time::Duration;

use serde_json::Value;

/// `grafana/dashboards/poolwatch.json`.
pub fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/grafana/dashboards/poolwatch.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Every panel that is not a row, panels nested in rows included, in
/// dashboard order.
pub fn panels() -> Vec<Value> {
    fn walk(panels: &Value, out: &mut Vec<Value>) {
        for p in panels.as_array().into_iter().flatten() {
            if p["type"] != "row" {
                out.push(p.clone());
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard()["panels"], &mut out);
    out
}

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct Query {
    /// The panel's title.
    pub panel: String,
    /// The PromQL expression, as the panel sends it with every instance
    /// selected (the `instance` variable's default, All: `.+`).
    pub expr: String,
}

/// Every query of every panel.
pub fn queries() -> Vec<Query> {
    panels()
        .iter()
        .flat_map(|p| {
            let panel = p["title"].as_str().unwrap_or("(untitled)").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| {
                    t["expr"].as_str().map(|e| Query {
                        panel: panel.clone(),
                        expr: e.replace("$instance", ".+"),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An instant query against the Prometheus at `addr` (`host:port`);
/// returns `data.result`.
pub fn prometheus_query(addr: &str, expr: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", percent_encode(expr));
    let v = prometheus_get(addr, &path)?;
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// `GET path` from Prometheus's API; the whole response, when its status
/// is `success`.
pub fn prometheus_get(addr: &str, path: &str) -> Result<Value, String> {
    let (status, _, body) = super::try_http_request("GET", addr, path, b"", Duration::from_secs(5))
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(body);
    }
    Ok(v)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
