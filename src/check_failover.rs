//! `poolwatch check-failover`: prove that a failing primary costs clients
//! nothing.
//!
//! Against a running stack: a baseline request must be served by the
//! primary; then, for each chaos mode (error, then timeout), chaos is started
//! on the primary and requests are sent through nginx for a while, one at a
//! time with a per-request timeout. A mode passes only with zero non-200
//! responses and at least 95 % served by the backup. Chaos is always stopped
//! on the way out (failure and Ctrl-C included), and traffic must come back
//! to the primary. A summary table is printed; the exit status says pass or
//! fail.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::duration::parse_duration;
use crate::tls::install_crypto_provider;

/// Share of responses that must come from the backup during chaos.
const BACKUP_SHARE: f64 = 0.95;

#[derive(Args, Debug, Clone)]
pub struct CheckFailoverArgs {
    /// nginx, as clients reach it.
    #[arg(long, env = "CHECK_NGINX_URL", default_value = "http://localhost:8080")]
    pub nginx: String,

    /// The blue app directly (for its chaos endpoints).
    #[arg(long, env = "CHECK_BLUE_URL", default_value = "http://localhost:8081")]
    pub blue: String,

    /// The green app directly (for its chaos endpoints).
    #[arg(long, env = "CHECK_GREEN_URL", default_value = "http://localhost:8082")]
    pub green: String,

    /// Chaos modes to check, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "error,timeout"
    )]
    pub modes: Vec<ChaosMode>,

    /// How long to send requests in each mode, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Longest a single request may take before it counts as failed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long the primary may take to serve again after chaos stops.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,

    /// Path requested through nginx.
    #[arg(long, default_value = "/version")]
    pub path: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosMode {
    /// The primary answers 500.
    Error,
    /// The primary hangs past nginx's read timeout.
    Timeout,
}

impl ChaosMode {
    fn name(self) -> &'static str {
        match self {
            ChaosMode::Error => "error",
            ChaosMode::Timeout => "timeout",
        }
    }
}

/// What one mode's traffic looked like.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    by_pool: BTreeMap<String, u64>,
    /// Status code, or `error` for a request that got no response.
    by_status: BTreeMap<String, u64>,
    max_latency: Duration,
}

impl Tally {
    fn non_200(&self) -> u64 {
        self.requests - self.by_status.get("200").copied().unwrap_or(0)
    }

    fn share(&self, pool: &str) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        self.by_pool.get(pool).copied().unwrap_or(0) as f64 / self.requests as f64
    }
}

/// Run the check with chaos on `active_pool` (`ACTIVE_POOL`).
pub fn main(args: &CheckFailoverArgs, active_pool: &str) -> Result<(), String> {
    if !matches!(active_pool, "blue" | "green") {
        return Err(format!(
            "invalid value '{active_pool}' for ACTIVE_POOL (--active-pool); accepted: blue, green"
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(run(args, active_pool))
}

async fn run(args: &CheckFailoverArgs, active_pool: &str) -> Result<(), String> {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(args.request_timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let (primary, backup) = if active_pool == "blue" {
        ("blue", "green")
    } else {
        ("green", "blue")
    };
    let primary_url = if primary == "blue" {
        &args.blue
    } else {
        &args.green
    };
    let checks = checks(&client, args, primary, backup, primary_url);
    // Whatever happens, including Ctrl-C, chaos is stopped on the way out.
    let result = tokio::select! {
        r = checks => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
    };
    let stopped = chaos(&client, primary_url, None).await;
    if let Err(e) = &stopped {
        eprintln!("check-failover: could not stop chaos on {primary}: {e}");
    }
    let report = result?;
    print!("{report}");
    stopped?;
    if report.contains("FAIL") {
        Err("failover check failed".into())
    } else {
        Ok(())
    }
}

async fn checks(
    client: &reqwest::Client,
    args: &CheckFailoverArgs,
    primary: &str,
    backup: &str,
    primary_url: &str,
) -> Result<String, String> {
    let url = format!("{}{}", args.nginx.trim_end_matches('/'), args.path);
    let (status, pool, _) = request(client, &url).await;
    if status != "200" || pool != primary {
        return Err(format!(
            "baseline: expected 200 from {primary}, got {status} from {}",
            if pool.is_empty() { "no pool" } else { &pool }
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>8} {:>8} {:>14} {:>10} {:>12}  result",
        "mode", "requests", primary, backup, "statuses", "non-200", "max latency"
    );
    let mut failed = false;
    for mode in &args.modes {
        chaos(client, primary_url, Some(*mode)).await?;
        let tally = drive(client, &url, args.duration).await;
        chaos(client, primary_url, None).await?;
        let pass = tally.requests > 0
            && tally.non_200() == 0
            && tally.share(backup) >= BACKUP_SHARE
            && tally.max_latency <= args.request_timeout;
        failed |= !pass;
        let statuses = tally
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>8} {:>8} {:>14} {:>10} {:>10.3} s  {}",
            mode.name(),
            tally.requests,
            tally.by_pool.get(primary).copied().unwrap_or(0),
            tally.by_pool.get(backup).copied().unwrap_or(0),
            statuses,
            tally.non_200(),
            tally.max_latency.as_secs_f64(),
            if pass {
                "PASS".to_string()
            } else {
                format!(
                    "FAIL (need 0 non-200 and >= {:.0} % from {backup}, got {:.1} %)",
                    BACKUP_SHARE * 100.0,
                    tally.share(backup) * 100.0
                )
            }
        );
    }
    // Traffic must come back to the primary once chaos is over.
    let started = Instant::now();
    let mut back = false;
    while started.elapsed() < args.recovery_timeout {
        let (status, pool, _) = request(client, &url).await;
        if status == "200" && pool == primary {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = writeln!(
        out,
        "recovery: {}",
        if back {
            format!(
                "{primary} serving again after {:.1} s  PASS",
                started.elapsed().as_secs_f64()
            )
        } else {
            format!(
                "{primary} not serving after {:.0} s  FAIL",
                args.recovery_timeout.as_secs_f64()
            )
        }
    );
    failed |= !back;
    if failed {
        let _ = writeln!(out, "check-failover: FAIL");
    } else {
        let _ = writeln!(out, "check-failover: pass");
    }
    Ok(out)
}

/// Send requests one after another for `duration`.
async fn drive(client: &reqwest::Client, url: &str, duration: Duration) -> Tally {
    let mut t = Tally::default();
    let started = Instant::now();
    while started.elapsed() < duration {
        let (status, pool, latency) = request(client, url).await;
        t.requests += 1;
        *t.by_status.entry(status).or_default() += 1;
        if !pool.is_empty() {
            *t.by_pool.entry(pool).or_default() += 1;
        }
        t.max_latency = t.max_latency.max(latency);
    }
    t
}

/// One GET: status (or `error`), `X-App-Pool`, latency.
async fn request(client: &reqwest::Client, url: &str) -> (String, String, Duration) {
    let started = Instant::now();
    match client.get(url).send().await {
        Ok(r) => {
            let pool = r
                .headers()
                .get("x-app-pool")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let status = r.status().as_u16().to_string();
            let _ = r.bytes().await;
            (status, pool, started.elapsed())
        }
        Err(_) => ("error".into(), String::new(), started.elapsed()),
    }
}

/// Start chaos in `mode` on the app at `base`, or stop it.
async fn chaos(
    client: &reqwest::Client,
    base: &str,
    mode: Option<ChaosMode>,
) -> Result<(), String> {
    let base = base.trim_end_matches('/');
    let url = match mode {
        Some(m) => format!("{base}/chaos/start?mode={}", m.name()),
        None => format!("{base}/chaos/stop"),
    };
    let r = client
        .post(&url)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("POST {url}: {}", r.status()))
    }
}
