//! `anpx`: the ANPX v1 tunnel on tokio.
//!
//! Each subcommand lives in its own module; this file only parses the
//! command line and hands over.

mod cli;
mod decode;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::Cli::parse().command {
        cli::Command::Decode(args) => decode::main(&args),
    }
}
