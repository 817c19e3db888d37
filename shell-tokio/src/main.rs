//! `anpx`: the ANPX v1 tunnel on tokio.
//!
//! The command line is defined once in `anpx_core::cli`; this binary only
//! supplies what runs. Each subcommand lives in its own module.

mod commands;

use std::process::ExitCode;

use anpx_core::cli::Cli;
use clap::Parser;
use shell_common::process::{
    exit_code, init_logging, load_config, report_fatal, EXIT_FAILURE, EXIT_USAGE,
};

/// mimalloc instead of glibc's malloc: the request path allocates many
/// small, short-lived objects, often freed on another worker than the one
/// that allocated them, which mimalloc handles without a lock. It is
/// maintained by Microsoft Research, and its Rust binding builds from C
/// sources with `cc` alone (jemalloc's needs autotools and builds far
/// longer).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anpx: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let log_format = config.gateway.log_format;
    init_logging(log_format);
    if let Some(code) = shell_common::process::run_local("anpx", &cli.command, &config) {
        return code;
    }
    let reloader = shell_common::reload::for_command(&cli, &config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Workers gather their log lines and write them when they park
        // (shell_common::log_writer): one write for many request lines
        // under load.
        .on_thread_park(shell_common::log_writer::parked)
        .on_thread_stop(shell_common::log_writer::parked)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_fatal(
                "anpx",
                log_format,
                format_args!("cannot start the async runtime: {e}"),
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli.command, config, reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_fatal("anpx", log_format, format_args!("{e:#}"));
            exit_code(&e)
        }
    }
}
