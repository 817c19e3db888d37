//! The anpx command line, written once for both binaries (`anpx` on tokio,
//! `anpx-smol` on smol): the configuration from file, environment and
//! flags, what each command does, and how the process starts, logs,
//! reloads on SIGHUP and exits.
//!
//! A binary implements [`Shell`] (its runtime, its gateway and receiver,
//! its signals) and calls [`main`]. The gateway and receiver themselves,
//! and the options they run with, are the driver glue of `shell-common`,
//! which a program that embeds anpx uses without this crate.
//!
//! The `sql-registry` and `cluster` features turn on shell-common's
//! features of the same name, and with them the registry database
//! commands and the gateway's cluster.

pub mod banner;
pub mod check_config;
pub mod commands;
pub mod decode;
pub mod did_cmd;
pub mod log_clock;
pub mod log_format;
pub mod log_writer;
pub mod process;
pub mod registry_cmd;
pub mod reload;
pub mod setup;

pub use commands::{main, Shell};
