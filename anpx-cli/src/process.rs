//! What every shell's binary does before its runtime starts: the
//! configuration from file, environment and flags, and log output.

use std::path::PathBuf;

use anpx_core::cli::Cli;
use anpx_core::config::{Config, ConfigError, LogFormat};
use std::fmt::Display;
use tracing_subscriber::EnvFilter;

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `--config` file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key has a bad value or is unknown.
    #[error("invalid configuration{}: {source}", .path.as_ref().map(|p| format!(" (file {})", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when one was given.
        path: Option<PathBuf>,
        /// What is wrong.
        source: ConfigError,
    },
}

/// Defaults < `--config` file < `ANPX_*` environment < flags: the same
/// reading a SIGHUP repeats ([`crate::reload::Source::load`]).
pub fn load_config(cli: &Cli) -> Result<Config, LoadError> {
    crate::reload::Source::of(cli).load()
}

/// Log output: human-readable lines by default, JSON lines on request.
/// `RUST_LOG` picks what is logged (default `info`, until
/// [`set_log_filter`] applies the configured `*.log_level`). Colour only
/// when stderr is a terminal and `NO_COLOR` is unset: escape codes in a log
/// file or a journal are noise.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LOG_FILTER.set(handle);
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(crate::log_writer::LogWriter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        _ => {
            let lines = crate::log_format::Lines::new(crate::log_clock::LogClock, colour);
            registry.with(fmt.event_format(lines)).init()
        }
    }
}

type FilterHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// The filter [`init_logging`] installed, for [`set_log_filter`].
static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// A log filter that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    /// The directives do not parse.
    #[error("bad log directives {directives:?}: {reason}")]
    Invalid {
        /// What was given.
        directives: String,
        /// Why.
        reason: String,
    },
    /// [`init_logging`] did not run, or its subscriber is gone.
    #[error("logging is not set up")]
    NotSetUp,
}

/// Checks `directives` as [`set_log_filter`] reads them, without applying
/// them.
pub fn check_log_filter(directives: &str) -> Result<(), LogFilterError> {
    EnvFilter::try_new(directives)
        .map(drop)
        .map_err(|e| LogFilterError::Invalid {
            directives: directives.to_owned(),
            reason: e.to_string(),
        })
}

/// Replaces what is logged with `directives` (`RUST_LOG` syntax), for
/// every line from now on.
pub fn set_log_filter(directives: &str) -> Result<(), LogFilterError> {
    let filter = EnvFilter::try_new(directives).map_err(|e| LogFilterError::Invalid {
        directives: directives.to_owned(),
        reason: e.to_string(),
    })?;
    LOG_FILTER
        .get()
        .ok_or(LogFilterError::NotSetUp)?
        .reload(filter)
        .map_err(|_| LogFilterError::NotSetUp)
}

/// Whether `RUST_LOG` is set: it then decides what is logged, and the
/// configured `*.log_level` is not applied.
pub fn log_filter_from_env() -> bool {
    std::env::var_os("RUST_LOG").is_some()
}

/// Reports the error that ends the process, once: as a JSON log line when
/// the logs are JSON (so the stream stays parseable), else as one
/// `program: error` line on stderr.
pub fn report_fatal(program: &str, format: LogFormat, error: impl Display) {
    match format {
        LogFormat::Json => tracing::error!("{error}"),
        _ => eprintln!("{program}: {error}"),
    }
}

/// The exit codes both binaries use: 0 success, [`EXIT_FAILURE`] when
/// what ran failed, [`EXIT_USAGE`] when what was asked for cannot be run
/// (clap's own usage errors exit 2 as well).
pub const EXIT_FAILURE: u8 = 1;

/// Exit code of a usage or configuration error: a bad flag, key or value, a
/// file the configuration names that cannot be read, a malformed argument.
pub const EXIT_USAGE: u8 = 2;

/// An error in what the user asked for rather than in what ran; a command
/// failing with one exits [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for `error`: [`EXIT_USAGE`] when its chain holds a
/// [`UsageError`], a configuration that does not load or a setting that
/// cannot be used, else [`EXIT_FAILURE`].
pub fn exit_code(error: &anyhow::Error) -> std::process::ExitCode {
    use crate::setup::SetupError;
    let usage = error.chain().any(|e| {
        e.is::<UsageError>()
            || e.is::<LoadError>()
            || e.is::<ConfigError>()
            || e.downcast_ref::<SetupError>().is_some_and(|s| {
                !matches!(s, SetupError::DocumentRoots(_) | SetupError::Registry(_))
            })
    });
    std::process::ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
}

/// Runs the subcommands that need no async runtime (`decode`, `did`,
/// `check-config`) the same way in every binary, after [`load_config`]
/// and [`init_logging`]; `None` for the others, which the shell runs.
pub fn run_local(
    program: &str,
    command: &anpx_core::cli::Command,
    config: &Config,
) -> Option<std::process::ExitCode> {
    use anpx_core::cli::Command;
    let result = match command {
        Command::Decode(args) => return Some(crate::decode::main(args)),
        Command::Did(args) => crate::did_cmd::run(args.clone()),
        // With --online the registry's database client needs the shell's
        // runtime.
        Command::CheckConfig(args) if !args.online => crate::check_config::run(program, config),
        _ => return None,
    };
    Some(match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report_fatal(program, config.gateway.log_format, format_args!("{e:#}"));
            exit_code(&e)
        }
    })
}

/// A one-line note for the operator on stderr: a log line when the logs
/// are JSON (so the stream stays parseable), else `program: note`.
pub fn note(program: &str, format: LogFormat, note: impl Display) {
    match format {
        LogFormat::Json => tracing::info!("{note}"),
        _ => eprintln!("{program}: {note}"),
    }
}
