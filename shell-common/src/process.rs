//! What every shell's binary does before its runtime starts: the
//! configuration from file, environment and flags, and log output.

use std::path::PathBuf;

use anpx_core::cli::Cli;
use anpx_core::config::{Config, ConfigError, LogFormat, CONFIG_FILE_ENV};
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

/// Defaults < `--config` file < `ANPX_*` environment < flags.
pub fn load_config(cli: &Cli) -> Result<Config, LoadError> {
    let text = match &cli.config {
        Some(path) => std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?,
        None => String::new(),
    };
    let env = std::env::vars().filter(|(k, _)| k != CONFIG_FILE_ENV);
    cli.load_config(&text, env)
        .map_err(|source| LoadError::Invalid {
            path: cli.config.clone(),
            source,
        })
}

/// Log output: human-readable lines by default, JSON lines on request.
/// `RUST_LOG` picks what is logged (default `info`). Colour only when
/// stderr is a terminal and `NO_COLOR` is unset: escape codes in a log
/// file or a journal are noise.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        _ => builder.init(),
    }
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
