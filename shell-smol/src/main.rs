//! `anpx-smol`: the ANPX v1 tunnel on smol, with the same command line as
//! `anpx` (defined once in `anpx_core::cli`).

use std::process::ExitCode;
use std::sync::Arc;

use anpx_core::cli::{Cli, Command};
use anpx_core::config::Config;
use anyhow::{bail, Context, Result};
use clap::Parser;
use shell_common::banner::{self, Forwarding};
use shell_common::process::{exit_code, init_logging, load_config, report_fatal, EXIT_USAGE};
use shell_common::reload::Reloader;
use shell_common::setup::{self, SetupError};
#[cfg(feature = "cluster")]
use shell_smol::cluster::ClusterOptions;
use shell_smol::fetch::SmolDocuments;
use shell_smol::gateway::Gateway;
use shell_smol::receiver::{Receiver, ReceiverOptions};
use shell_smol::upstream::Upstreams;
use shell_smol::{Status, INTEGRATIONS};

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
        Command::Gateway(_) => {
            let gateway = gateway(&config, reloader).await?;
            print_gateway(&gateway, &config);
            shutdown_signal().await?;
            gateway.shutdown().await;
            Ok(())
        }
        Command::Receiver(args) => {
            let receiver = bind_receiver(receiver_options(&config, args.demo, reloader)?).await?;
            let mut forwarding = Forwarding::new(&config, args.demo);
            let watch = receiver.watch();
            let stopped = async {
                loop {
                    let (status, seen) = watch.get_versioned();
                    match status {
                        Status::Stopped(why) => return why,
                        Status::Connected { granted, .. } => forwarding.print(&granted),
                        Status::Connecting => {}
                    }
                    watch.changed(seen).await;
                }
            };
            let signal = async { shutdown_signal().await.map(|()| None) };
            let why = futures_util::future::select(
                std::pin::pin!(signal),
                std::pin::pin!(async { Ok(Some(stopped.await)) }),
            )
            .await
            .factor_first()
            .0?;
            if let Some(why) = why {
                bail!("receiver stopped: {why}");
            }
            receiver.shutdown().await;
            Ok(())
        }
        Command::Both(args) => both(config, args.demo, false, reloader).await,
        Command::Demo(_) => both(config, true, true, reloader).await,
        Command::CheckConfig(_) | Command::Decode(_) | Command::Registry(_) | Command::Did(_) => {
            Ok(())
        }
    }
}

/// The gateway, bound and, when `[gateway.cluster]` is configured, joined
/// to its cluster.
async fn gateway(config: &Config, reloader: Option<&Reloader>) -> Result<Gateway> {
    let registry = || {
        shell_smol::registry::try_registry_from_config(&config.gateway)
            .map_err(|e| SetupError::Registry(e.to_string()))
    };
    // async-h1 speaks HTTP/1.1 only, so ALPN offers nothing else.
    let options = setup::gateway_options(config, false, Arc::new(SmolDocuments), registry)?;
    if let Some(r) = reloader {
        r.set_gateway(options.live.clone());
    }
    let listen = options.listen;
    #[cfg_attr(not(feature = "cluster"), allow(unused_mut))]
    let mut gateway = Gateway::bind(options)
        .await
        .with_context(|| format!("cannot start the gateway on {listen}"))?;
    #[cfg(feature = "cluster")]
    join_cluster(&mut gateway, config).await?;
    Ok(gateway)
}

/// Joins the cluster when `[gateway.cluster]` is configured.
#[cfg(feature = "cluster")]
async fn join_cluster(gateway: &mut Gateway, config: &Config) -> Result<()> {
    let cluster = ClusterOptions::from_config(
        &config.gateway.cluster,
        config.gateway.request_timeout(),
        config.gateway.websocket_idle_timeout(),
    )
    .context("gateway.cluster")?;
    if let Some(options) = cluster {
        let node = options.node_name.clone();
        gateway
            .join_cluster(options)
            .await
            .context("gateway.cluster.nats_url")?;
        eprintln!("anpx-smol gateway: node {node} of the cluster");
    }
    Ok(())
}

fn receiver_options(
    config: &Config,
    demo: bool,
    reloader: Option<&Reloader>,
) -> Result<ReceiverOptions> {
    setup::running_receiver(config, demo, Arc::new(Upstreams), reloader)
}

/// The receiver, with its admin listener when `receiver.admin_listen` is set.
async fn bind_receiver(options: ReceiverOptions) -> Result<Receiver> {
    let admin = options.admin_listen;
    let receiver = Receiver::bind(options)
        .await
        .with_context(|| banner::receiver_admin_bind_context(admin))?;
    if let Some(addr) = receiver.admin_addr() {
        eprintln!("{}", banner::receiver_admin_line("anpx-smol", addr));
    }
    Ok(receiver)
}

/// Gateway and receiver in one process; `demo` prints how to try it.
async fn both(
    mut config: Config,
    demo: bool,
    print_try: bool,
    reloader: Option<&Reloader>,
) -> Result<()> {
    config.check_both()?;
    let gateway = gateway(&config, reloader).await?;
    let addr = gateway.public_addr();
    // With TLS on, the in-process receiver dials wss:// like any other and
    // trusts the gateway through receiver.ca_file or the system roots.
    let (http, ws) = schemes(&config);
    config.receiver.gateway = format!("{ws}://{addr}/ws");
    let receiver = bind_receiver(receiver_options(&config, demo, reloader)?).await?;
    let granted = match receiver.wait_ready().await {
        Status::Connected { granted, .. } => granted,
        Status::Stopped(why) => bail!("the receiver could not connect to its own gateway: {why}"),
        Status::Connecting => bail!("the receiver could not connect to its own gateway"),
    };
    print_gateway(&gateway, &config);
    Forwarding::new(&config, demo).print(&granted);
    if print_try {
        println!("anpx-smol demo: gateway on {http}://{addr}, receiver connected, echo agent serving every path.");
        let admin = shell_common::admin::dashboard_hint(gateway.admin_addr());
        println!("Try:\n  curl -s '{http}://{addr}/agents/hello?name=anpx' -d 'ping'\n  {admin}\nCtrl-C to stop.");
    }
    shutdown_signal().await?;
    receiver.shutdown().await;
    gateway.shutdown().await;
    Ok(())
}

/// Where the gateway is reachable, on stdout.
fn print_gateway(gateway: &Gateway, config: &Config) {
    let lines = banner::gateway_lines(
        gateway.public_addr(),
        gateway.ws_addr(),
        gateway.admin_addr(),
        config.gateway.tls.enabled(),
    );
    for line in lines {
        println!("anpx-smol gateway: {line}");
    }
}

/// The public and receiver URL schemes: with or without TLS.
fn schemes(config: &Config) -> (&'static str, &'static str) {
    if config.gateway.tls.enabled() {
        ("https", "wss")
    } else {
        ("http", "ws")
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
