//! `anpx-smol`: the ANPX v1 tunnel on smol, with the same command line as
//! `anpx` (defined once in `anpx_core::cli`).

use std::process::ExitCode;
use std::sync::Arc;

use anpx_core::cli::{Cli, Command};
use anpx_core::config::{Config, GatewaySection};
use anpx_core::registry::Registry;
use anyhow::{Context, Result};
use clap::Parser;
use shell_common::commands::{self, Shell};
use shell_common::did_wba::DocumentIo;
use shell_common::process::{exit_code, init_logging, load_config, report_fatal, EXIT_USAGE};
use shell_common::reload::Reloader;
use shell_smol::fetch::SmolDocuments;
use shell_smol::gateway::Gateway;
use shell_smol::receiver::{Receiver, ReceiverOptions};
use shell_smol::upstream::Upstreams;
use shell_smol::{GatewayOptions, INTEGRATIONS};

/// mimalloc instead of glibc's malloc, as in `anpx`: the request path
/// allocates many small, short-lived objects, and glibc's malloc and free
/// were about a sixth of anpx-smol's time per small request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anpx-smol: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let log_format = config.gateway.log_format;
    init_logging(log_format);
    // A registry database or a NATS server this build cannot reach is
    // refused before anything starts (a receiver alone needs neither).
    let usable = match &cli.command {
        Command::Receiver(_) | Command::Decode(_) | Command::Did(_) => Ok(()),
        Command::Registry(_) => INTEGRATIONS.check_registry(&config.gateway),
        _ => INTEGRATIONS.check(&config),
    };
    if let Err(e) = usable {
        report_fatal("anpx-smol", log_format, e);
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(code) = shell_common::process::run_local("anpx-smol", &cli.command, &config) {
        return code;
    }
    let reloader = shell_common::reload::for_command(&cli, &config);
    let result = match cli.command {
        Command::Registry(args) => {
            let run = shell_common::registry_cmd::run("anpx-smol", args, &config);
            // sqlx's futures need tokio's context, which async-compat provides.
            #[cfg(feature = "sql-registry")]
            let run = async_compat::Compat::new(run);
            smol::block_on(run)
        }
        Command::CheckConfig(_) => {
            let run = shell_common::check_config::online("anpx-smol", &config);
            #[cfg(feature = "sql-registry")]
            let run = async_compat::Compat::new(run);
            smol::block_on(run)
        }
        command => smol::block_on(run(command, config, reloader)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_fatal("anpx-smol", log_format, format_args!("{e:#}"));
            exit_code(&e)
        }
    }
}

async fn run(command: Command, config: Config, reloader: Option<Arc<Reloader>>) -> Result<()> {
    // SIGHUP's default action ends the process; caught, it reloads.
    let hangups = async_signal::Signals::new([async_signal::Signal::Hup])
        .context("cannot listen for SIGHUP")?;
    let on_hangup = reloader.clone();
    smol::spawn(async move {
        let mut hangups = std::pin::pin!(hangups);
        while futures_util::StreamExt::next(&mut hangups).await.is_some() {
            shell_common::reload::on_hangup(on_hangup.as_deref());
        }
    })
    .detach();
    let reloader = reloader.as_deref();
    match command {
        Command::Gateway(_) => commands::gateway(&Smol, &config, reloader).await,
        Command::Receiver(args) => commands::receiver(&Smol, &config, args.demo, reloader).await,
        Command::Both(args) => commands::both(&Smol, config, args.demo, false, reloader).await,
        Command::Demo(_) => commands::both(&Smol, config, true, true, reloader).await,
        Command::CheckConfig(_) | Command::Decode(_) | Command::Registry(_) | Command::Did(_) => {
            Ok(())
        }
    }
}

/// This shell's I/O for the shared commands.
struct Smol;

impl Shell for Smol {
    const PROGRAM: &'static str = "anpx-smol";
    type Gateway = Gateway;
    type Receiver = Receiver;
    type Upstreams = Upstreams;

    // async-h1 speaks HTTP/1.1 only, so ALPN offers nothing else.
    const HTTP2: bool = false;

    fn documents(&self) -> Arc<dyn DocumentIo> {
        Arc::new(SmolDocuments)
    }

    fn registry(&self, section: &GatewaySection) -> Result<Arc<dyn Registry>, String> {
        shell_smol::registry::try_registry_from_config(section).map_err(|e| e.to_string())
    }

    async fn bind_gateway(&self, options: GatewayOptions) -> Result<Gateway> {
        Ok(Gateway::bind(options).await?)
    }

    fn upstreams(&self) -> Arc<Upstreams> {
        Arc::new(Upstreams)
    }

    async fn bind_receiver(&self, options: ReceiverOptions) -> std::io::Result<Receiver> {
        Receiver::bind(options).await
    }

    async fn shutdown_signal(&self) -> Result<()> {
        shutdown_signal().await
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> Result<()> {
    let signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
            .context("cannot listen for signals")?;
    let mut signals = std::pin::pin!(signals);
    futures_util::StreamExt::next(&mut signals).await;
    Ok(())
}
