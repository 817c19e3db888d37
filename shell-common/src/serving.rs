//! A running gateway as both shells hold it ([`Serving`]): its listeners
//! bound, the task that drives the gateway machine, the order it shuts
//! down in, and its cluster membership. A shell names its types and
//! serves its listeners' connections ([`GatewayIo`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anpx_core::GatewayStats;

use crate::accept::{BindError, Bound};
use crate::driver::Driver;
use crate::gateway::{Listener, Shared, RECEIVER_CLOSE_WAIT};
use crate::options::GatewayOptions;
use crate::shell_io::ShellIo;
use crate::signal::Stop;

#[cfg(feature = "cluster")]
use crate::cluster::{Cluster, ClusterError, ClusterOptions};

/// A gateway listener to serve: the listener, what it serves, and its TLS
/// acceptor when TLS applies to it.
pub type Served<G> = (
    <G as ShellIo>::Listener,
    Listener,
    Option<<G as GatewayIo>::Tls>,
);

/// What a shell runs a gateway with, besides its runtime.
pub trait GatewayIo: ShellIo {
    /// Its TLS acceptor.
    type Tls: Clone + Send + 'static;
    /// The driver's timer: resolves at `at`. Unboxed, unlike
    /// [`Runtime::sleep_until`](crate::receiver::Runtime::sleep_until)'s: the timer task sleeps again towards
    /// every next deadline of the machine.
    fn timer(at: Instant) -> impl Future<Output = ()> + Send + 'static;
    /// The TLS acceptor of `config`.
    fn tls(config: Arc<rustls::ServerConfig>) -> Self::Tls;
    /// Starts serving each listener's connections with `shared` until
    /// `stop`, and any task of the shell's own that serving needs; the
    /// tasks are cancelled when the gateway shuts down.
    fn serve(listeners: Vec<Served<Self>>, shared: &Arc<Shared>, stop: &Stop) -> Vec<Self::Task>;
    /// The cluster's tasks and timers.
    #[cfg(feature = "cluster")]
    fn cluster_runtime() -> Arc<dyn crate::receiver::Runtime>;
    /// `future` polled where the NATS client can do its I/O (in a tokio
    /// context).
    #[cfg(feature = "cluster")]
    fn in_tokio<F: Future>(future: F) -> impl Future<Output = F::Output>;
}

/// A running gateway of the shell `G`.
pub struct Serving<G: GatewayIo> {
    public_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: Stop,
    listeners: Vec<G::Task>,
    driver_task: G::Task,
    drain_grace: Duration,
    #[cfg(feature = "cluster")]
    cluster: Option<Cluster>,
}

impl<G: GatewayIo> Serving<G> {
    /// Binds the listeners and starts serving.
    pub async fn bind(options: GatewayOptions) -> Result<Self, BindError> {
        let bound =
            Bound::<G::Listener>::bind(options.listen, options.ws_listen, options.admin_listen)
                .await?;
        let (public_addr, ws_addr, admin_addr) = (
            bound.public_addr(),
            bound.receivers_addr(),
            bound.admin_addr(),
        );
        let (driver, task) = Driver::new(options.machine(fastrand::u64(..)), G::timer);
        let driver_task = G::start(task);
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let shared = Arc::new(Shared::new(driver, &options, scheme, G::NAME));
        let tls = options.tls.clone().map(G::tls);
        let served = bound
            .into_served()
            .into_iter()
            .map(|(listener, which, secure)| (listener, which, tls.clone().filter(|_| secure)))
            .collect();
        let stop = Stop::new(false);
        let listeners = G::serve(served, &shared, &stop);
        Ok(Serving {
            public_addr,
            ws_addr,
            admin_addr,
            shared,
            stop,
            listeners,
            driver_task,
            drain_grace: options.drain_grace,
            #[cfg(feature = "cluster")]
            cluster: None,
        })
    }

    /// The public address actually bound (useful with port 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The separate receiver address, when configured.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The admin plane's address (metrics, stats, dashboard), when
    /// configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Joins a cluster of gateways over NATS: from now on this gateway
    /// forwards requests its receivers do not serve to the gateway that
    /// serves them, and serves requests forwarded here.
    #[cfg(feature = "cluster")]
    pub async fn join_cluster(&mut self, options: ClusterOptions) -> Result<(), ClusterError> {
        let start = Cluster::start(options, self.shared.driver.clone(), G::cluster_runtime());
        let cluster = G::in_tokio(start).await?;
        let _ = self.shared.cluster_view.set(cluster.view());
        self.cluster = Some(cluster);
        Ok(())
    }

    /// The cluster membership, when this gateway joined one.
    #[cfg(feature = "cluster")]
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// A snapshot of the gateway's state.
    pub async fn stats(&self) -> Option<GatewayStats> {
        self.shared.driver.stats().await.ok()
    }

    /// Stops accepting, lets requests in flight finish within the drain
    /// grace period, then stops.
    // `mut` is for leaving the cluster, which only the `cluster` feature has.
    #[cfg_attr(not(feature = "cluster"), allow(unused_mut))]
    pub async fn shutdown(mut self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        self.stop.set(true);
        // The other gateways stop forwarding here at once, rather than
        // after the announcement's time to live.
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.take() {
            G::in_tokio(cluster.leave()).await;
        }
        let runtime = G::default();
        self.shared.wait_in_flight(self.drain_grace, &runtime).await;
        self.shared.driver.shutdown();
        self.shared
            .wait_receivers_closed(RECEIVER_CLOSE_WAIT, &runtime)
            .await;
        for task in self.listeners {
            G::cancel(task).await;
        }
        G::join(self.driver_task).await;
    }
}
