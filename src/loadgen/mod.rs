//! `poolwatch loadgen`: send realistic nginx syslog datagrams to a receiver.
//!
//! For sizing and soak runs without an nginx in front: the lines are the
//! ones nginx writes with the shipped log format (see [`lines`]), for a
//! chosen scenario. A fixed set of distinct lines is generated before the
//! clock starts and cycled, so the sender measures the receiver rather than
//! its own formatting; `--hostile` makes every line unique by stamping a
//! counter into it, to show that the receiver's memory stays flat when
//! addresses, URIs, agents and pool names never repeat.

pub mod lines;
pub mod send;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use lines::{FAILOVER_AT, Generator, Scenario};
use send::{MAX_BURST, Messages, Sender, Shape, Stop, Traffic};

/// Datagrams sent when neither `--count` nor `--duration` is given.
pub const DEFAULT_COUNT: u64 = 100_000;

/// Send realistic nginx syslog datagrams to a receiver, for sizing and soak
/// runs without nginx.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// Receiver to send to, as HOST:PORT: the address poolwatch's
    /// UDP_LISTEN is bound to.
    #[arg(
        long,
        env = "LOADGEN_TARGET",
        value_name = "LOADGEN_TARGET",
        default_value = "127.0.0.1:5514"
    )]
    pub target: String,

    /// Datagrams per second; 0 or absent sends as fast as the socket takes
    /// them.
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,

    /// Send N datagrams per `sendmmsg` call, every N / rate seconds at a
    /// --rate (back to back without one), as a relay flushing a buffer or
    /// a load tool does. Without it, datagrams are spread evenly: each send
    /// carries only those due by then.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=MAX_BURST as u64)
    )]
    pub burst: Option<u64>,

    /// Datagrams to send [default: 100000, unless --duration is given].
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "duration",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub count: Option<u64>,

    /// Send for this many seconds (decimals allowed) instead of a count.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<Duration>,

    /// What the pools are doing in the logged traffic.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    pub scenario: Scenario,

    /// Seed of the traffic mix: the same seed sends the same lines.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Distinct lines generated before sending and then cycled, about
    /// 0.5 KiB of memory each (twice that for the failover scenario).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub distinct: u32,

    /// Make every datagram unique: remote addresses, URIs, user agents,
    /// request ids, upstream addresses and pool names the receiver has
    /// never seen, to check that its memory does not grow with them.
    #[arg(long)]
    pub hostile: bool,

    /// Print the result as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Default for LoadgenArgs {
    fn default() -> Self {
        LoadgenArgs {
            target: "127.0.0.1:5514".to_string(),
            rate: None,
            burst: None,
            count: None,
            duration: None,
            scenario: Scenario::Steady,
            seed: 1,
            distinct: 4096,
            hostile: false,
            json: false,
        }
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let accepted = "accepted: a number of seconds greater than 0, such as 30 or 2.5";
    let secs: f64 = s.trim().parse().map_err(|_| accepted.to_string())?;
    if secs > 0.0 {
        Duration::try_from_secs_f64(secs).map_err(|_| accepted.to_string())
    } else {
        Err(accepted.to_string())
    }
}

/// What a run sent, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: SocketAddr,
    pub scenario: Scenario,
    pub hostile: bool,
    pub distinct: u32,
    pub seed: u64,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Achieved datagrams per second.
    pub rate: f64,
    /// `--rate`, if one was set.
    pub requested_rate: Option<u64>,
    /// `--burst`, if one was set.
    pub burst: Option<u64>,
    /// Batches handed to `sendmmsg`.
    pub sends: u64,
    /// Sends refused because nothing was listening at the target for an
    /// earlier datagram; those datagrams were lost.
    pub refused: u64,
}

impl Report {
    /// The one-line text summary.
    pub fn line(&self) -> String {
        let mib = |b: f64| b / (1024.0 * 1024.0);
        let mut s = format!(
            "sent {} datagrams ({:.1} MiB) to {} in {:.3} s: {:.0} datagrams/s, {:.1} MiB/s \
             (scenario {}{}, {} distinct, seed {}, rate {}, {})",
            self.sent,
            mib(self.bytes as f64),
            self.target,
            self.seconds,
            self.rate,
            mib(self.bytes as f64 / self.seconds.max(1e-9)),
            self.scenario.name(),
            if self.hostile { ", hostile" } else { "" },
            self.distinct,
            self.seed,
            self.requested_rate
                .map_or_else(|| "unlimited".to_string(), |r| format!("{r}/s")),
            match self.burst {
                Some(n) => format!("bursts of {n}"),
                None if self.requested_rate.is_some() => "smooth".to_string(),
                None => format!("batches of {}", send::BATCH),
            },
        );
        if self.refused > 0 {
            s.push_str(&format!("; {} sends refused", self.refused));
        }
        s
    }
}

/// Run `poolwatch loadgen` and print its summary. Errors are worded for the
/// operator.
pub fn main(args: &LoadgenArgs) -> Result<(), String> {
    let report = run(args)?;
    if args.json {
        let line = serde_json::to_string(&report).map_err(|e| format!("cannot print: {e}"))?;
        println!("{line}");
    } else {
        println!("{}", report.line());
    }
    if report.refused > 0 {
        // Each refusal stands for datagrams that were lost: a run that
        // measured nothing must not look like a success to a script.
        return Err(format!(
            "{} refused {} sends (ICMP port unreachable), so some datagrams reached no \
             receiver; is poolwatch listening there (UDP_LISTEN)?",
            report.target, report.refused
        ));
    }
    Ok(())
}

/// Generate the traffic, send it, and say what was sent.
pub fn run(args: &LoadgenArgs) -> Result<Report, String> {
    let target = resolve(&args.target)?;
    let rate = args.rate.filter(|&r| r > 0);
    let stop = match (args.count, args.duration) {
        (_, Some(d)) => Stop::After(d),
        (Some(n), None) => Stop::Count(n),
        (None, None) => Stop::Count(DEFAULT_COUNT),
    };
    let shape = match args.burst {
        Some(n) => Shape::Burst(n as usize),
        None => Shape::Smooth,
    };
    if args.hostile
        && let Some(n) = args.burst
        && n > u64::from(args.distinct)
    {
        // Each datagram of a burst is stamped before the burst is sent, so
        // a burst cannot hold a template twice.
        return Err(format!(
            "--burst {n} with --hostile needs at least as many --distinct lines (now {})",
            args.distinct
        ));
    }
    let mut traffic = traffic(args);
    let mut sender = Sender::connect(target)
        .map_err(|e| format!("cannot send to LOADGEN_TARGET (--target) {target}: {e}"))?;
    let sent = sender
        .run(&mut traffic, stop, rate, shape)
        .map_err(|e| format!("sending to {target} failed: {e}"))?;
    let seconds = sent.elapsed.as_secs_f64();
    Ok(Report {
        target,
        scenario: args.scenario,
        hostile: args.hostile,
        distinct: args.distinct,
        seed: args.seed,
        sent: sent.datagrams,
        bytes: sent.bytes,
        seconds,
        rate: sent.datagrams as f64 / seconds.max(1e-9),
        requested_rate: rate,
        burst: args.burst,
        sends: sent.sends,
        refused: sent.refused,
    })
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    let accepted = "accepted: HOST:PORT, such as 127.0.0.1:5514 or poolwatch:5514";
    let mut addrs = target.to_socket_addrs().map_err(|e| {
        format!("invalid value '{target}' for LOADGEN_TARGET (--target): {e}; {accepted}")
    })?;
    addrs.next().ok_or_else(|| {
        format!("invalid value '{target}' for LOADGEN_TARGET (--target): no address; {accepted}")
    })
}

/// Everything the run will send, generated before the clock starts.
fn traffic(args: &LoadgenArgs) -> Traffic {
    let n = args.distinct as usize;
    let mut g = Generator::new(args.scenario, args.seed);
    let mut set = |progress: f64| {
        if args.hostile {
            Messages::Hostile((0..n).map(|_| g.template(progress)).collect())
        } else {
            Messages::Fixed((0..n).map(|_| g.line(progress)).collect())
        }
    };
    let before = set(0.0);
    let after = (args.scenario == Scenario::Failover).then(|| (FAILOVER_AT, set(1.0)));
    Traffic {
        before,
        after,
        // Counting from the current time in nanoseconds keeps successive
        // runs against one receiver from ever repeating a value.
        counter: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::record::{Decoder, INPUT_PADDING};
    use clap::{CommandFactory, Parser};
    use std::net::UdpSocket;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    fn parse(argv: &[&str]) -> Result<LoadgenArgs, String> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(argv.iter().copied()))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn options() {
        Cli::command().debug_assert();
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.count, a.duration, a.distinct, a.scenario),
            (None, None, 4096, Scenario::Steady)
        );
        let a = parse(&["--scenario", "failover", "--duration", "2.5", "--hostile"]).unwrap();
        assert_eq!(a.duration, Some(Duration::from_millis(2500)));
        assert!(a.hostile);
        let err = parse(&["--count", "5", "--duration", "1"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = parse(&["--duration", "0"]).unwrap_err();
        assert!(err.contains("accepted"), "{err}");
        let err = parse(&["--scenario", "chaos"]).unwrap_err();
        assert!(err.contains("steady") && err.contains("errors"), "{err}");
        let err = resolve("nowhere").unwrap_err();
        assert!(err.contains("LOADGEN_TARGET"), "{err}");
        assert_eq!(parse(&["--burst", "64"]).unwrap().burst, Some(64));
        for bad in ["0", "1025", "x"] {
            assert!(parse(&["--burst", bad]).is_err(), "--burst {bad}");
        }
        let err = run(&LoadgenArgs {
            burst: Some(20),
            distinct: 10,
            hostile: true,
            ..LoadgenArgs::default()
        })
        .unwrap_err();
        assert!(err.contains("--distinct"), "{err}");
    }

    /// Receive what a run sent and push it through the pipeline.
    fn sink(args: LoadgenArgs) -> (Report, Pipeline) {
        // A large buffer, so a slow debug build drops nothing.
        let l = crate::ingest::socket::bind_udp("127.0.0.1:0".parse().unwrap(), 8 << 20).unwrap();
        let rx = UdpSocket::from(l.fd);
        let args = LoadgenArgs {
            target: rx.local_addr().unwrap().to_string(),
            ..args
        };
        let expected = args.count.expect("a count to wait for");
        let sender = std::thread::spawn(move || run(&args));
        let mut p = Pipeline::new(&PipelineConfig::default());
        let mut d = Decoder::new();
        let mut buf = vec![0u8; 65536 + INPUT_PADDING];
        while p.totals.datagrams < expected {
            let n = rx.recv(&mut buf[..65536]).unwrap();
            p.process(&mut d, &mut buf, n, |_| 0).unwrap();
        }
        (sender.join().unwrap().unwrap(), p)
    }

    #[test]
    fn sends_failover_traffic_that_the_pipeline_reads() {
        let (report, p) = sink(LoadgenArgs {
            count: Some(2000),
            scenario: Scenario::Failover,
            distinct: 100,
            rate: Some(10_000),
            ..LoadgenArgs::default()
        });
        assert_eq!(report.sent, 2000);
        assert!(
            report.rate > 0.0 && report.rate < 12_000.0,
            "{}",
            report.rate
        );
        assert_eq!(p.totals.datagrams, 2000);
        assert_eq!(p.totals.malformed_count(), 0);
        // The first 10% before blue fails, the rest retried on green.
        assert_eq!(p.totals.retried.iter().flatten().sum::<u64>(), 1800);
        assert_eq!(p.totals.requests[1].iter().sum::<u64>(), 1800);
        assert!(p.totals.requests[1][1] > 1500, "{:?}", p.totals.requests);
        assert!(report.line().contains("sent 2000 datagrams"));
    }

    #[test]
    fn bursts_are_sent_whole_at_the_rate() {
        let (report, p) = sink(LoadgenArgs {
            count: Some(1000),
            burst: Some(64),
            rate: Some(20_000),
            ..LoadgenArgs::default()
        });
        assert_eq!(report.sent, 1000);
        assert_eq!(p.totals.datagrams, 1000);
        // 15 bursts of 64 and the 40 left over.
        assert_eq!(report.sends, 16);
        assert!(report.line().contains("bursts of 64"), "{}", report.line());
        // Without --burst the same rate goes out in many smaller sends.
        let (smooth, _) = sink(LoadgenArgs {
            count: Some(1000),
            rate: Some(20_000),
            ..LoadgenArgs::default()
        });
        assert!(smooth.sends > 16, "{} sends", smooth.sends);
        assert!(smooth.line().contains("smooth"), "{}", smooth.line());
    }

    #[test]
    fn hostile_traffic_is_unique_and_bounded() {
        let (report, p) = sink(LoadgenArgs {
            count: Some(3000),
            distinct: 10,
            hostile: true,
            rate: Some(10_000),
            ..LoadgenArgs::default()
        });
        assert_eq!(report.sent, 3000);
        assert_eq!(p.totals.datagrams, 3000);
        assert_eq!(p.totals.malformed_count(), 0);
        assert_eq!(p.pools.len(), 5);
        assert_eq!(p.addrs.len(), crate::pools::MAX_ADDRS);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["hostile"], true);
        assert_eq!(json["scenario"], "steady");
    }
}
