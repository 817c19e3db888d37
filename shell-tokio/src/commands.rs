//! What `gateway`, `receiver`, `both`, `demo` and `registry` run: the
//! shared [`shell_common::commands`] over this shell's I/O.

use std::sync::Arc;

use anpx_core::cli::Command;
use anpx_core::config::{Config, GatewaySection};
use anpx_core::registry::Registry;
use anyhow::Result;
use shell_common::commands::{self, Shell};
use shell_common::did_wba::DocumentIo;
use shell_common::reload::Reloader;
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions};
use shell_tokio::upstream::Upstreams;

pub(crate) async fn run(
    command: Command,
    config: Config,
    reloader: Option<Arc<Reloader>>,
) -> Result<()> {
    #[cfg(unix)]
    if let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    {
        let reloader = reloader.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                shell_common::reload::on_hangup(reloader.as_deref());
            }
        });
    }
    let reloader = reloader.as_deref();
    match command {
        Command::Gateway(_) => commands::gateway(&Tokio, &config, reloader).await,
        Command::Receiver(args) => commands::receiver(&Tokio, &config, args.demo, reloader).await,
        Command::Both(args) => commands::both(&Tokio, config, args.demo, false, reloader).await,
        Command::Demo(_) => commands::both(&Tokio, config, true, true, reloader).await,
        Command::Registry(args) => shell_common::registry_cmd::run("anpx", args, &config).await,
        // Run by shell_common::process::run_local before the runtime.
        Command::CheckConfig(_) => shell_common::check_config::online("anpx", &config).await,
        Command::Did(_) | Command::Decode(_) => Ok(()),
    }
}

/// This shell's I/O for the shared commands.
struct Tokio;

impl Shell for Tokio {
    const PROGRAM: &'static str = "anpx";
    type Gateway = Gateway;
    type Receiver = Receiver;
    type Upstreams = Upstreams;

    const HTTP2: bool = true;

    fn documents(&self) -> Arc<dyn DocumentIo> {
        Arc::new(shell_tokio::fetch::TokioDocuments)
    }

    fn registry(&self, section: &GatewaySection) -> Result<Arc<dyn Registry>, String> {
        shell_tokio::registry::try_registry_from_config(section).map_err(|e| e.to_string())
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
        shutdown_signal().await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
