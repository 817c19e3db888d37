//! Log output: human-readable lines by default, JSON lines on request.
//! `RUST_LOG` picks what is logged (default `info`).

use anpx_core::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        _ => builder.init(),
    }
}
