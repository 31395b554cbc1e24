//! Settings: command-line flags with environment fallbacks.
//!
//! Every setting is a flag and an upper-case environment variable of the
//! same meaning (the names `.env.example` documents); a `.env` file in the
//! working directory is read first and never overrides the real environment.
//! A bad value stops start-up with a message that names the setting, the
//! value and what is accepted: the value name shown by clap is the variable's
//! name, so `--window-size <WINDOW_SIZE>` identifies both spellings.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::pipeline::PipelineConfig;
use crate::pools::PoolSet;

const ABOUT: &str = "Watch a blue/green nginx pair through its syslog access log.";

const LONG_ABOUT: &str = "\
Watch a blue/green nginx pair through its syslog access log.

nginx ships one JSON line per request with `access_log syslog:server=HOST:5514`.
poolwatch decodes each datagram, attributes every upstream attempt to the pool
of the server tried (so a failure masked by a same-request retry still counts
against the pool that failed), keeps per-pool windows of the last N attempts
and the last T seconds, and serves Prometheus metrics, a health check and a
JSON state dump over HTTP.

Without a subcommand, runs the receiver. Every option can also be given as the
environment variable shown next to it, or in a .env file in the working
directory.";

/// Top-level command line.
#[derive(Parser, Debug, Clone)]
#[command(name = "poolwatch", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub receiver: ReceiverArgs,

    #[command(flatten)]
    pub pipeline: PipelineArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the receiver (the default when no subcommand is given).
    Run,
    /// Run the same pipeline over saved log lines and print a per-pool
    /// summary: for backtesting thresholds and measuring decode speed.
    Replay(ReplayArgs),
}

/// Where the receiver listens.
#[derive(Args, Debug, Clone, Serialize)]
pub struct ReceiverArgs {
    /// UDP address for nginx's syslog datagrams.
    #[arg(
        long,
        env = "UDP_LISTEN",
        value_name = "UDP_LISTEN",
        default_value = "0.0.0.0:5514"
    )]
    pub udp_listen: SocketAddr,

    /// Also receive on a unix datagram socket at this path (nginx:
    /// `syslog:server=unix:PATH`): same-host deployments, no network loss.
    /// The socket is created writable by all local users; restrict access
    /// with the permissions of its directory.
    #[arg(long, env = "UNIX_LISTEN", value_name = "UNIX_LISTEN")]
    pub unix_listen: Option<PathBuf>,

    /// Kernel receive buffer to ask for, e.g. 8MiB or 4194304. The kernel
    /// caps it at net.core.rmem_max unless poolwatch may raise it
    /// (CAP_NET_ADMIN); the granted size is logged at start-up.
    #[arg(
        long,
        env = "RECV_BUFFER",
        value_name = "RECV_BUFFER",
        default_value = "8MiB",
        value_parser = parse_byte_size
    )]
    pub recv_buffer: ByteSize,

    /// HTTP address for /metrics, /healthz and /state.
    #[arg(
        long,
        env = "HTTP_LISTEN",
        value_name = "HTTP_LISTEN",
        default_value = "0.0.0.0:9514"
    )]
    pub http_listen: SocketAddr,
}

/// How requests are attributed and windowed; shared by `run` and `replay`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct PipelineArgs {
    /// Known pool names, comma-separated. Any other X-App-Pool value counts
    /// as pool="other", an empty one as pool="none".
    #[arg(
        long,
        env = "POOLS",
        value_name = "POOLS",
        default_value = "blue,green",
        value_parser = parse_pools,
        global = true
    )]
    pub pools: PoolList,

    /// Server addresses of each pool, as nginx logs them in $upstream_addr:
    /// `blue=10.0.0.2:3000,green=10.0.0.3:3000`. Optional: poolwatch learns
    /// addresses from responses that name their pool; attempts at a server
    /// not known yet count as pool="unknown".
    #[arg(
        long,
        env = "POOL_ADDRS",
        value_name = "POOL_ADDRS",
        value_parser = parse_pool_addrs,
        global = true
    )]
    pub pool_addrs: Option<PoolAddrs>,

    /// Count window: the last N upstream attempts per pool (1 to 1000000).
    #[arg(
        long,
        env = "WINDOW_SIZE",
        value_name = "WINDOW_SIZE",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub window_size: u32,

    /// Time window: per-second buckets over the last T seconds (1 to 3600).
    #[arg(
        long,
        env = "WINDOW_SECONDS",
        value_name = "WINDOW_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..=3600),
        global = true
    )]
    pub window_seconds: u32,

    /// The serving pool is the one that produced the final response for
    /// most of the last N requests (1 to 100000).
    #[arg(
        long,
        env = "SERVING_WINDOW",
        value_name = "SERVING_WINDOW",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        global = true
    )]
    pub serving_window: u32,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct LogArgs {
    /// Log level filter (error, warn, info, debug, trace, or a tracing
    /// directive such as `poolwatch=debug`).
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,

    /// Log line format on stderr.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Log files: one JSON object or one syslog line per line; `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A byte count given as `8MiB`, `512KiB`, `4M` or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bytesize::ByteSize(self.0).display().iec().fmt(f)
    }
}

fn parse_byte_size(s: &str) -> Result<ByteSize, String> {
    let accepted = "accepted: a size from 64KiB to 1GiB, such as 8MiB, 512KiB or 4194304";
    let b: bytesize::ByteSize = s.trim().parse().map_err(|_| accepted.to_string())?;
    if (64 * 1024..=1 << 30).contains(&b.0) {
        Ok(ByteSize(b.0))
    } else {
        Err(accepted.to_string())
    }
}

/// Known pool names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PoolList(pub Vec<String>);

const RESERVED_POOLS: [&str; 3] = ["other", "none", "unknown"];

fn parse_pools(s: &str) -> Result<PoolList, String> {
    let accepted = "accepted: comma-separated names of letters, digits, '-' and '_' \
                    (at most 16 pools, not 'other', 'none' or 'unknown'), such as blue,green";
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    let valid = |n: &String| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !RESERVED_POOLS.contains(&n.as_str())
    };
    if names.is_empty() || names.len() > 16 || !names.iter().all(valid) {
        return Err(accepted.to_string());
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != names.len() {
        return Err(format!("pool names must be distinct; {accepted}"));
    }
    Ok(PoolList(names))
}

/// `POOL_ADDRS` entries, checked against `POOLS` after parsing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PoolAddrs(pub Vec<(String, String)>);

fn parse_pool_addrs(s: &str) -> Result<PoolAddrs, String> {
    let accepted = "accepted: comma-separated POOL=ADDRESS pairs with addresses as nginx \
                    logs them in $upstream_addr, such as blue=10.0.0.2:3000,green=10.0.0.3:3000";
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (pool, addr) = pair.split_once('=').ok_or_else(|| accepted.to_string())?;
        let (pool, addr) = (pool.trim(), addr.trim());
        if pool.is_empty() || addr.is_empty() || !addr.contains(':') {
            return Err(accepted.to_string());
        }
        out.push((pool.to_string(), addr.to_string()));
    }
    Ok(PoolAddrs(out))
}

impl PipelineArgs {
    /// Check what one value alone cannot, and build the pipeline settings.
    pub fn pipeline_config(&self) -> Result<PipelineConfig, String> {
        let pools = PoolSet::new(&self.pools.0);
        let mut configured = Vec::new();
        for (pool, addr) in self.pool_addrs.iter().flat_map(|a| a.0.iter()) {
            let id = pools.find(pool).ok_or_else(|| {
                format!(
                    "invalid value for POOL_ADDRS (--pool-addrs): pool '{pool}' is not in \
                     POOLS; accepted pools: {}",
                    self.pools.0.join(", ")
                )
            })?;
            configured.push((addr.clone(), id));
        }
        Ok(PipelineConfig {
            pools,
            configured_addrs: configured,
            window_size: self.window_size as usize,
            window_seconds: self.window_seconds,
            serving_window: self.serving_window as usize,
        })
    }
}

/// Load `.env` from the working directory, if present, without overriding
/// variables already set.
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(format!("cannot read .env: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["poolwatch"]).unwrap();
        assert_eq!(cli.receiver.udp_listen.port(), 5514);
        assert_eq!(cli.receiver.http_listen.port(), 9514);
        assert_eq!(cli.receiver.recv_buffer, ByteSize(8 << 20));
        assert_eq!(cli.pipeline.pools.0, ["blue", "green"]);
        assert_eq!(cli.pipeline.window_size, 200);
    }

    #[test]
    fn bad_values_name_the_setting_and_what_is_accepted() {
        let err = Cli::try_parse_from(["poolwatch", "--window-size", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WINDOW_SIZE"), "{err}");
        assert!(err.contains("1..=1000000"), "{err}");
        let err = Cli::try_parse_from(["poolwatch", "--pools", "blue,other"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("POOLS") && err.contains("accepted"), "{err}");
        let err = Cli::try_parse_from(["poolwatch", "--recv-buffer", "lots"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RECV_BUFFER") && err.contains("8MiB"), "{err}");
    }

    #[test]
    fn pool_addrs_must_name_known_pools() {
        let cli = Cli::try_parse_from(["poolwatch", "--pool-addrs", "blue=10.0.0.2:3000,red=x:1"])
            .unwrap();
        let err = cli.pipeline.pipeline_config().unwrap_err();
        assert!(err.contains("POOL_ADDRS") && err.contains("red"), "{err}");
        let cli =
            Cli::try_parse_from(["poolwatch", "--pool-addrs", "green=10.0.0.3:3000"]).unwrap();
        let cfg = cli.pipeline.pipeline_config().unwrap();
        assert_eq!(cfg.configured_addrs, [("10.0.0.3:3000".to_string(), 1)]);
    }

    #[test]
    fn replay_takes_pipeline_settings() {
        let cli =
            Cli::try_parse_from(["poolwatch", "replay", "--window-size", "50", "a.log"]).unwrap();
        assert_eq!(cli.pipeline.window_size, 50);
        assert!(matches!(cli.command, Some(Command::Replay(_))));
    }
}
