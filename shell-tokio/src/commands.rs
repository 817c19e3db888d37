//! What `gateway`, `receiver`, `both`, `demo` and `registry` run.

use std::sync::Arc;

use anpx_core::cli::Command;
use anpx_core::config::Config;
use anyhow::{bail, Context, Result};
use shell_common::banner::{self, Forwarding};
use shell_common::reload::Reloader;
use shell_common::setup::{self, SetupError};
use shell_tokio::cluster::ClusterOptions;
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions, Status};
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
        Command::Gateway(_) => gateway_until_signal(config, reloader).await,
        Command::Receiver(args) => {
            let receiver = bind_receiver(receiver_options(&config, args.demo, reloader)?).await?;
            let forwarding = Forwarding::new(&config, args.demo);
            follow_until_signal(receiver, forwarding).await
        }
        Command::Both(args) => both(config, args.demo, false, reloader).await,
        Command::Demo(_) => both(config, true, true, reloader).await,
        Command::Registry(args) => shell_common::registry_cmd::run("anpx", args, &config).await,
        // Run by shell_common::process::run_local before the runtime.
        Command::CheckConfig(_) => shell_common::check_config::online("anpx", &config).await,
        Command::Did(_) | Command::Decode(_) => Ok(()),
    }
}

fn gateway_options(config: &Config, reloader: Option<&Reloader>) -> Result<GatewayOptions> {
    let registry = || {
        shell_tokio::registry::try_registry_from_config(&config.gateway)
            .map_err(|e| SetupError::Registry(e.to_string()))
    };
    let documents = Arc::new(shell_tokio::fetch::TokioDocuments);
    let options = setup::gateway_options(config, true, documents, registry)?;
    if let Some(r) = reloader {
        r.set_gateway(options.live.clone());
    }
    Ok(options)
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
        eprintln!("{}", banner::receiver_admin_line("anpx", addr));
    }
    Ok(receiver)
}

async fn gateway_until_signal(config: Config, reloader: Option<&Reloader>) -> Result<()> {
    let options = gateway_options(&config, reloader)?;
    let listen = options.listen;
    let mut gateway = Gateway::bind(options)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    join_cluster(&mut gateway, &config).await?;
    print_gateway(&gateway, &config);
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests in flight");
    gateway.shutdown().await;
    Ok(())
}

/// Joins the cluster of `[gateway.cluster]`, when one is configured.
async fn join_cluster(gateway: &mut Gateway, config: &Config) -> Result<()> {
    let options = ClusterOptions::from_config(
        &config.gateway.cluster,
        config.gateway.request_timeout(),
        config.gateway.websocket_idle_timeout(),
    )
    .context("gateway.cluster")?;
    if let Some(options) = options {
        let node = options.node_name.clone();
        gateway
            .join_cluster(options)
            .await
            .context("gateway.cluster.nats_url")?;
        eprintln!("anpx gateway: node {node} of the cluster");
    }
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
        println!("anpx gateway: {line}");
    }
}

async fn follow_until_signal(receiver: Receiver, mut forwarding: Forwarding) -> Result<()> {
    let status = receiver.watch();
    tokio::select! {
        () = shutdown_signal() => {}
        () = async {
            loop {
                let (now, seen) = status.get_versioned();
                match now {
                    Status::Stopped(_) => return,
                    Status::Connected { granted, .. } => forwarding.print(&granted),
                    Status::Connecting => {}
                }
                status.changed(seen).await;
            }
        } => {
            if let Status::Stopped(why) = receiver.status() {
                bail!("receiver stopped: {why}");
            }
        }
    }
    tracing::info!("shutting down the receiver");
    receiver.shutdown().await;
    Ok(())
}

/// Gateway and receiver in one process; `demo` prints how to try it.
async fn both(
    mut config: Config,
    demo: bool,
    print_try: bool,
    reloader: Option<&Reloader>,
) -> Result<()> {
    config.check_both()?;
    let options = gateway_options(&config, reloader)?;
    let listen = options.listen;
    let mut gateway = Gateway::bind(options)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    join_cluster(&mut gateway, &config).await?;
    let addr = gateway.public_addr();
    // With TLS on, the in-process receiver dials wss:// like any other and
    // trusts the gateway through receiver.ca_file or the system roots.
    let scheme = if config.gateway.tls.enabled() {
        "wss"
    } else {
        "ws"
    };
    config.receiver.gateway = format!("{scheme}://{addr}/ws");
    let receiver = bind_receiver(receiver_options(&config, demo, reloader)?).await?;
    let granted = match receiver.wait_ready().await {
        Status::Connected { granted, .. } => granted,
        Status::Stopped(why) => bail!("the receiver could not connect to its own gateway: {why}"),
        Status::Connecting => bail!("the receiver could not connect to its own gateway"),
    };
    print_gateway(&gateway, &config);
    Forwarding::new(&config, demo).print(&granted);
    if print_try {
        println!("anpx demo: gateway on http://{addr}, receiver connected, echo agent serving every path.");
        let admin = shell_common::admin::dashboard_hint(gateway.admin_addr());
        println!("Try:\n  curl -s 'http://{addr}/agents/hello?name=anpx' -d 'ping'\n  {admin}\nCtrl-C to stop.");
    }
    shutdown_signal().await;
    receiver.shutdown().await;
    gateway.shutdown().await;
    Ok(())
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
