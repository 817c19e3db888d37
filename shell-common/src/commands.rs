//! What `gateway`, `receiver`, `both` and `demo` run, written once for
//! every shell: the order things start in, what is printed where, how the
//! process waits for its end and stops. A shell supplies only its I/O
//! through [`Shell`]: binding its gateway and receiver, its upstreams, and
//! waiting for the stop signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anpx_core::config::Config;
use anyhow::{bail, Context, Result};

use crate::banner::{self, Forwarding};
use crate::options::{GatewayOptions, ReceiverOptions, Status};
use crate::reload::Reloader;
use crate::setup::{SetupError, Upstreams};
use crate::signal::Watch;

/// A shell's running gateway.
pub trait RunningGateway: Sized {
    /// Where public clients connect.
    fn public_addr(&self) -> SocketAddr;
    /// The separate receivers' listener, when configured.
    fn ws_addr(&self) -> Option<SocketAddr>;
    /// The admin plane's address, when configured.
    fn admin_addr(&self) -> Option<SocketAddr>;
    /// Joins the cluster of `options` over NATS.
    #[cfg(feature = "cluster")]
    fn join_cluster(
        &mut self,
        options: crate::cluster::ClusterOptions,
    ) -> impl Future<Output = Result<(), crate::cluster::ClusterError>>;
    /// Drains and stops.
    fn shutdown(self) -> impl Future<Output = ()>;
}

/// A shell's running receiver.
pub trait RunningReceiver: Sized {
    /// The admin plane's address, when one was opened.
    fn admin_addr(&self) -> Option<SocketAddr>;
    /// The receiver's status, to follow.
    fn watch(&self) -> Watch<Status>;
    /// Drains, closes and waits for the connection loops.
    fn shutdown(self) -> impl Future<Output = ()>;
}

/// The upstream type a shell's receiver serves from.
pub type UpstreamOf<S> = <<S as Shell>::Upstreams as Upstreams>::Upstream;

/// What a shell supplies to run the long-running subcommands.
pub trait Shell {
    /// The binary's name, in front of what it prints (`anpx`, `anpx-smol`).
    const PROGRAM: &'static str;
    /// Its gateway.
    type Gateway: RunningGateway;
    /// Its receiver.
    type Receiver: RunningReceiver;
    /// Its upstreams.
    type Upstreams: Upstreams;

    /// Whether its gateway's TLS offers HTTP/2.
    const HTTP2: bool;
    /// Its DID document fetcher.
    fn documents(&self) -> Arc<dyn crate::did_wba::DocumentIo>;
    /// The registry database of `gateway.registry.url`, on its runtime.
    fn registry(
        &self,
        section: &anpx_core::config::GatewaySection,
    ) -> Result<Arc<dyn anpx_core::registry::Registry>, String>;
    /// Binds the gateway's listeners and starts serving.
    fn bind_gateway(&self, options: GatewayOptions) -> impl Future<Output = Result<Self::Gateway>>;
    /// The upstreams its receiver serves from.
    fn upstreams(&self) -> Arc<Self::Upstreams>;
    /// Binds the receiver's admin listener, if any, and starts dialing.
    fn bind_receiver(
        &self,
        options: ReceiverOptions<UpstreamOf<Self>>,
    ) -> impl Future<Output = std::io::Result<Self::Receiver>>;
    /// Resolves on Ctrl-C or SIGTERM.
    fn shutdown_signal(&self) -> impl Future<Output = Result<()>>;
}

/// `gateway`: binds, joins the cluster when one is configured, prints
/// where it is reachable, serves until the stop signal, drains.
pub async fn gateway<S: Shell>(
    shell: &S,
    config: &Config,
    reloader: Option<&Reloader>,
) -> Result<()> {
    let gateway = start_gateway(shell, config, reloader).await?;
    print_gateway::<S>(&gateway, config);
    shell.shutdown_signal().await?;
    tracing::info!("shutting down: draining requests in flight");
    gateway.shutdown().await;
    Ok(())
}

/// `receiver`: dials, prints what it forwards whenever the grants change,
/// and runs until the stop signal (then drains) or until it stops for good
/// (an error naming why).
pub async fn receiver<S: Shell>(
    shell: &S,
    config: &Config,
    demo: bool,
    reloader: Option<&Reloader>,
) -> Result<()> {
    let receiver = start_receiver(shell, config, demo, reloader).await?;
    let mut forwarding = Forwarding::new(config, demo);
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
    let signal = async { shell.shutdown_signal().await.map(|()| None) };
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
    tracing::info!("shutting down the receiver");
    receiver.shutdown().await;
    Ok(())
}

/// `both` (and `demo`, with `print_try`): a gateway and a receiver that
/// dials it in one process; prints where the gateway is reachable once the
/// receiver is connected, and with `print_try` how to try it.
pub async fn both<S: Shell>(
    shell: &S,
    mut config: Config,
    demo: bool,
    print_try: bool,
    reloader: Option<&Reloader>,
) -> Result<()> {
    config.check_both()?;
    let gateway = start_gateway(shell, &config, reloader).await?;
    let addr = gateway.public_addr();
    // With TLS on, the in-process receiver dials wss:// like any other and
    // trusts the gateway through receiver.ca_file or the system roots.
    let (http, ws) = if config.gateway.tls.enabled() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    config.receiver.gateway = format!("{ws}://{addr}/ws");
    let receiver = start_receiver(shell, &config, demo, reloader).await?;
    let granted = match wait_ready(&receiver.watch()).await {
        Status::Connected { granted, .. } => granted,
        Status::Stopped(why) => bail!("the receiver could not connect to its own gateway: {why}"),
        Status::Connecting => bail!("the receiver could not connect to its own gateway"),
    };
    print_gateway::<S>(&gateway, &config);
    Forwarding::new(&config, demo).print(&granted);
    if print_try {
        let program = S::PROGRAM;
        println!("{program} demo: gateway on {http}://{addr}, receiver connected, echo agent serving every path.");
        let admin = crate::admin::dashboard_hint(gateway.admin_addr());
        println!("Try:\n  curl -s '{http}://{addr}/agents/hello?name=anpx' -d 'ping'\n  {admin}\nCtrl-C to stop.");
    }
    shell.shutdown_signal().await?;
    receiver.shutdown().await;
    gateway.shutdown().await;
    Ok(())
}

/// Waits until `status` is no longer `Connecting`.
async fn wait_ready(status: &Watch<Status>) -> Status {
    loop {
        let (s, seen) = status.get_versioned();
        if !matches!(s, Status::Connecting) {
            return s;
        }
        status.changed(seen).await;
    }
}

/// The gateway, bound and, when `[gateway.cluster]` is configured, joined
/// to its cluster; its changeable settings handed to `reloader`.
async fn start_gateway<S: Shell>(
    shell: &S,
    config: &Config,
    reloader: Option<&Reloader>,
) -> Result<S::Gateway> {
    let registry = || {
        shell
            .registry(&config.gateway)
            .map_err(SetupError::Registry)
    };
    let options = crate::setup::gateway_options(config, S::HTTP2, shell.documents(), registry)?;
    if let Some(r) = reloader {
        r.set_gateway(options.live.clone());
    }
    let listen = options.listen;
    #[cfg_attr(not(feature = "cluster"), allow(unused_mut))]
    let mut gateway = shell
        .bind_gateway(options)
        .await
        .with_context(|| format!("cannot start the gateway on {listen}"))?;
    #[cfg(feature = "cluster")]
    join_cluster::<S>(&mut gateway, config).await?;
    Ok(gateway)
}

/// Joins the cluster of `[gateway.cluster]`, when one is configured.
#[cfg(feature = "cluster")]
async fn join_cluster<S: Shell>(gateway: &mut S::Gateway, config: &Config) -> Result<()> {
    let options = crate::cluster::ClusterOptions::from_config(
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
        eprintln!("{} gateway: node {node} of the cluster", S::PROGRAM);
    }
    Ok(())
}

/// The receiver from `config`, with its admin listener when
/// `receiver.admin_listen` is set (announced on stderr).
async fn start_receiver<S: Shell>(
    shell: &S,
    config: &Config,
    demo: bool,
    reloader: Option<&Reloader>,
) -> Result<S::Receiver> {
    let options = crate::setup::running_receiver(config, demo, shell.upstreams(), reloader)?;
    let admin = options.admin_listen;
    let receiver = shell
        .bind_receiver(options)
        .await
        .with_context(|| banner::receiver_admin_bind_context(admin))?;
    if let Some(addr) = receiver.admin_addr() {
        eprintln!("{}", banner::receiver_admin_line(S::PROGRAM, addr));
    }
    Ok(receiver)
}

/// Where the gateway is reachable, on stdout.
fn print_gateway<S: Shell>(gateway: &S::Gateway, config: &Config) {
    let lines = banner::gateway_lines(
        gateway.public_addr(),
        gateway.ws_addr(),
        gateway.admin_addr(),
        config.gateway.tls.enabled(),
    );
    for line in lines {
        println!("{} gateway: {line}", S::PROGRAM);
    }
}
