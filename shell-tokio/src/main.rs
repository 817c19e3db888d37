//! `anpx`: the ANPX v1 tunnel on tokio.
//!
//! The command line is defined once in `anpx_core::cli`; this binary only
//! supplies what runs. Each subcommand lives in its own module.

mod commands;

use std::process::ExitCode;

use anpx_core::cli::{Cli, Command};
use clap::Parser;
use shell_common::process::{init_logging, load_config, report_fatal};

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
    if let Command::Decode(args) = &cli.command {
        return shell_common::decode::main(args);
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anpx: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        print!("{}", config.to_toml_string());
        return ExitCode::SUCCESS;
    }
    let log_format = config.gateway.log_format;
    init_logging(log_format);
    let reloader = shell_common::reload::for_command(&cli, &config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("anpx: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli.command, config, reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_fatal("anpx", log_format, format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
