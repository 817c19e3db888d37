//! What `gateway`, `receiver`, `both` and `demo` run, written once for
//! every shell: the order things start in, what is printed where, how the
//! process waits for its end and stops. A shell supplies only its I/O
//! through [`Shell`]: binding its gateway and receiver, its upstreams, and
//! waiting for the stop signal.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anpx_core::cli::{Cli, Command};
use anpx_core::config::Config;
use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::future::Either;
use shell_common::dialing::{ReceiverIo, Running};
use shell_common::integrations::Integrations;
use shell_common::lanes::Lane;
use shell_common::options::{ReceiverOptions, Status};
use shell_common::receiver::Runtime;
use shell_common::serving::{GatewayIo, Serving};
use shell_common::signal::Watch;

use crate::banner::{self, Forwarding};
use crate::process::{exit_code, init_logging, load_config, report_fatal, EXIT_USAGE};
use crate::reload::Reloader;
use crate::setup::{SetupError, Upstreams};

/// What a shell supplies to run the commands: its runtime, its gateway
/// and receiver I/O, its upstreams, and its signals.
pub trait Shell: Sized {
    /// The binary's name, in front of what it prints (`anpx`, `anpx-smol`).
    const PROGRAM: &'static str;
    /// The optional integrations this build carries.
    const INTEGRATIONS: Integrations;
    /// Whether its gateway's TLS offers HTTP/2.
    const HTTP2: bool;
    /// What its gateway runs with.
    type Gateway: GatewayIo;
    /// What its receiver runs with.
    type Receiver: ReceiverIo;
    /// The upstreams its receiver serves from.
    const UPSTREAMS: Upstreams<<Self::Receiver as ReceiverIo>::Upstream>;

    /// Its DID document fetcher.
    fn documents(&self) -> Arc<dyn shell_common::did_wba::DocumentIo>;
    /// The registry database of `gateway.registry.url`, on its runtime.
    fn registry(
        &self,
        section: &anpx_core::config::GatewaySection,
    ) -> Result<Arc<dyn anpx_core::registry::Registry>, String>;
    /// Starts its runtime and runs `future` on it to the end.
    fn block_on(&self, future: impl Future<Output = Result<()>>) -> Result<()>;
    /// `future` polled where the registry's database client can do its
    /// I/O (in a tokio context).
    fn in_tokio<F: Future>(&self, future: F) -> impl Future<Output = F::Output>;
    /// Reloads with `reloader` on every SIGHUP from now on (see
    /// [`crate::reload::on_hangup`]).
    fn watch_hangups(&self, reloader: Option<Arc<Reloader>>) -> Result<()>;
    /// Resolves on Ctrl-C or SIGTERM.
    fn shutdown_signal(&self) -> impl Future<Output = Result<()>>;
}

/// A shell's binary, after its allocator: parses the command line, loads
/// the configuration and sets up logging, refuses what this build cannot
/// run, runs the command on the shell's runtime (the local ones without
/// it) and turns the outcome into the exit code.
pub fn main<S: Shell>(shell: S) -> ExitCode {
    let program = S::PROGRAM;
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let log_format = config.gateway.log_format;
    init_logging(log_format);
    // A registry database or a NATS server this build cannot reach is
    // refused before anything starts (a receiver alone needs neither).
    let usable = match &cli.command {
        Command::Receiver(_) | Command::Decode(_) | Command::Did(_) => Ok(()),
        Command::Registry(_) => S::INTEGRATIONS.check_registry(&config.gateway),
        _ => S::INTEGRATIONS.check(&config),
    };
    if let Err(e) = usable {
        report_fatal(program, log_format, e);
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(code) = crate::process::run_local(program, &cli.command, &config) {
        return code;
    }
    let reloader = crate::reload::for_command(&cli, &config);
    match shell.block_on(run(&shell, cli.command, config, reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_fatal(program, log_format, format_args!("{e:#}"));
            exit_code(&e)
        }
    }
}

/// What a command the shell's runtime runs does, SIGHUP caught throughout.
async fn run<S: Shell>(
    shell: &S,
    command: Command,
    config: Config,
    reloader: Option<Arc<Reloader>>,
) -> Result<()> {
    shell.watch_hangups(reloader.clone())?;
    let reloader = reloader.as_deref();
    let program = S::PROGRAM;
    match command {
        Command::Gateway(_) => gateway(shell, &config, reloader).await,
        Command::Receiver(args) => receiver(shell, &config, args.demo, reloader).await,
        Command::Both(args) => both(shell, config, args.demo, false, reloader).await,
        Command::Demo(_) => both(shell, config, true, true, reloader).await,
        Command::Registry(args) => {
            let run = crate::registry_cmd::run(program, args, &config);
            shell.in_tokio(run).await
        }
        // `check-config --online` (the rest ran in run_local): the
        // registry's database is reached on the shell's runtime.
        Command::CheckConfig(_) => {
            shell
                .in_tokio(crate::check_config::online(program, &config))
                .await
        }
        Command::Did(_) | Command::Decode(_) => Ok(()),
    }
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
    let receiver = start_receiver::<S>(config, demo, reloader).await?;
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
    let options = crate::setup::running_receiver(&config, demo, S::UPSTREAMS, reloader)?;
    let runtime = S::Receiver::default();
    let others = (1..runtime.lanes())
        .map(|_| crate::setup::lane_receiver(&config, demo, S::UPSTREAMS, &options))
        .collect::<Result<Vec<_>>>()?;
    let receiver = bind_receiver::<S>(options).await?;
    let granted = connected(&receiver).await?;
    let lanes = lane_receivers::<S>(&runtime, others).await?;
    print_gateway::<S>(&gateway, &config);
    Forwarding::new(&config, demo).print(&granted);
    if print_try {
        let program = S::PROGRAM;
        println!("{program} demo: gateway on {http}://{addr}, receiver connected, echo agent serving every path.");
        let admin = shell_common::admin::dashboard_hint(gateway.admin_addr());
        println!("Try:\n  curl -s '{http}://{addr}/agents/hello?name=anpx' -d 'ping'\n  {admin}\nCtrl-C to stop.");
    }
    shell.shutdown_signal().await?;
    for running in lanes {
        running.shutdown().await;
    }
    receiver.shutdown().await;
    gateway.shutdown().await;
    Ok(())
}

/// How long `both` waits for the receiver of each further lane to connect
/// before it goes on without waiting (the receiver keeps dialing).
const LANE_CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Starts the receivers of `both`'s further lanes, receiver k on lane k,
/// each connected before the next dials: the gateway hands its
/// connections to the lanes in turn, so receiver k's connection is served
/// on the gateway's lane k too, and a request then stays on one thread.
/// One that does not connect in time is left dialing, with a warning: the
/// first receiver serves every route already.
async fn lane_receivers<S: Shell>(
    runtime: &S::Receiver,
    options: Vec<ReceiverOptions<<S::Receiver as ReceiverIo>::Upstream>>,
) -> Result<Vec<Running<S::Receiver>>> {
    let mut lanes = Vec::new();
    for (k, options) in (1..).zip(options) {
        let (tx, rx) = futures_channel::oneshot::channel();
        let bind = async move {
            let _ = tx.send(Running::<S::Receiver>::bind(options).await);
        };
        let _task = runtime.spawn_owned_on(Lane(k), Box::pin(bind));
        let running = rx
            .await
            .with_context(|| format!("lane {k} stopped"))?
            .with_context(|| format!("cannot start the receiver of lane {k}"))?;
        let watch = running.watch();
        let ready = std::pin::pin!(wait_ready(&watch));
        let late = runtime.sleep_until(Instant::now() + LANE_CONNECT_WAIT);
        match futures_util::future::select(ready, late).await {
            Either::Left((Status::Connected { .. }, _)) => {}
            Either::Left((status, _)) => {
                tracing::warn!(lane = k, ?status, "the receiver of this lane could not connect to its own gateway; the others serve");
            }
            Either::Right(_) => {
                tracing::warn!(
                    lane = k,
                    "the receiver of this lane is not connected yet; going on without it"
                );
            }
        }
        lanes.push(running);
    }
    Ok(lanes)
}

/// What `receiver` was granted once connected to its own gateway, or why
/// it could not connect.
async fn connected<R: ReceiverIo>(receiver: &Running<R>) -> Result<Vec<String>> {
    match wait_ready(&receiver.watch()).await {
        Status::Connected { granted, .. } => Ok(granted),
        Status::Stopped(why) => bail!("the receiver could not connect to its own gateway: {why}"),
        Status::Connecting => bail!("the receiver could not connect to its own gateway"),
    }
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
) -> Result<Serving<S::Gateway>> {
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
    let mut gateway = Serving::<S::Gateway>::bind(options)
        .await
        .with_context(|| format!("cannot start the gateway on {listen}"))?;
    #[cfg(feature = "cluster")]
    join_cluster::<S>(&mut gateway, config).await?;
    Ok(gateway)
}

/// Joins the cluster of `[gateway.cluster]`, when one is configured.
#[cfg(feature = "cluster")]
async fn join_cluster<S: Shell>(gateway: &mut Serving<S::Gateway>, config: &Config) -> Result<()> {
    let options = shell_common::cluster::ClusterOptions::from_config(
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
    config: &Config,
    demo: bool,
    reloader: Option<&Reloader>,
) -> Result<Running<S::Receiver>> {
    let options = crate::setup::running_receiver(config, demo, S::UPSTREAMS, reloader)?;
    bind_receiver::<S>(options).await
}

/// The receiver of `options`, with its admin listener when it has one
/// (announced on stderr).
async fn bind_receiver<S: Shell>(
    options: ReceiverOptions<<S::Receiver as ReceiverIo>::Upstream>,
) -> Result<Running<S::Receiver>> {
    let admin = options.admin_listen;
    let receiver = Running::<S::Receiver>::bind(options)
        .await
        .with_context(|| banner::receiver_admin_bind_context(admin))?;
    if let Some(addr) = receiver.admin_addr() {
        eprintln!("{}", banner::receiver_admin_line(S::PROGRAM, addr));
    }
    Ok(receiver)
}

/// Where the gateway is reachable, on stdout.
fn print_gateway<S: Shell>(gateway: &Serving<S::Gateway>, config: &Config) {
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
