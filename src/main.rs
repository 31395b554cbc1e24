//! The `poolwatch` command: parse settings, set up logging, dispatch.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use poolwatch::config::{self, Command, LogArgs, LogFormat};
use poolwatch::secret::{RedactingWriter, Redactor, redact_panics};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

fn main() -> ExitCode {
    if let Err(e) = config::load_dotenv() {
        eprintln!("poolwatch: {e}");
        return ExitCode::from(2);
    }
    let cli = config::parse();
    // Whatever prints, secrets do not: log lines, panic messages and the
    // error below all go through the same redaction.
    let redactor = Arc::new(Redactor::new(&cli.secrets()));
    redact_panics(redactor.clone());
    if let Err(e) = init_logging(&cli.log, &redactor) {
        eprintln!("poolwatch: {}", redactor.redact(&e));
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        None | Some(Command::Run) => poolwatch::receiver::main(&cli),
        Some(Command::Replay(args)) => poolwatch::replay::main(&cli, args),
        Some(Command::Maintenance(args)) => {
            poolwatch::admin_client::main(args, cli.admin.admin_token.as_ref())
        }
        Some(Command::Reload(args)) => {
            poolwatch::admin_client::reload(args, cli.admin.admin_token.as_ref())
        }
        Some(Command::AlertTest) => poolwatch::alert_test::main(&cli),
        Some(Command::Loadgen(args)) => poolwatch::loadgen::main(args),
        Some(Command::CheckFailover(args)) => {
            poolwatch::check_failover::main(args, &cli.rules.active_pool)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poolwatch: {}", redactor.redact(&e));
            ExitCode::from(2)
        }
    }
}

fn init_logging(log: &LogArgs, redactor: &Arc<Redactor>) -> Result<(), String> {
    let filter = EnvFilter::try_new(&log.log_level).map_err(|e| {
        format!(
            "invalid value '{}' for LOG_LEVEL (--log-level): {e}; accepted: error, warn, info, \
             debug, trace, or a directive such as poolwatch=debug",
            log.log_level
        )
    })?;
    // The filter sits in a reload layer: a reload may change LOG_LEVEL.
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactingWriter::new(redactor.clone()));
    let registry = tracing_subscriber::registry().with(filter);
    match log.log_format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
    poolwatch::reload::set_log_filter_handle(Box::new(move |f| {
        handle
            .reload(f)
            .map_err(|e| format!("cannot change the log level: {e}"))
    }));
    Ok(())
}
