//! The `poolwatch` command: parse settings, set up logging, dispatch.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use poolwatch::config::{self, Command, LogArgs, LogFormat};
use poolwatch::secret::{RedactingWriter, Redactor, redact_panics};
use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactingWriter::new(redactor.clone()));
    match log.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
