//! The gateway runtime: listeners, the receivers' WebSocket endpoint, and
//! the task that drives `anpx_core::gateway`.

mod edge;
mod head_timer;
pub(crate) mod http;

pub use shell_common::did_wba::{DidWbaAdmission, DocumentSources};
pub use shell_common::{Admission, Admitted, GatewayOptions, OpenAdmission, Refusal};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anpx_core::GatewayStats;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_common::accept::{self, Bound, Incoming};
use shell_common::signal::Stop;
use tokio::task::JoinSet;

use self::edge::FirstBytesDeadline;
use self::head_timer::HeadTimer;
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::rt::{TcpAccept, Tokio};
use shell_common::driver::Driver;
use shell_common::gateway::{Listener, Shared};

/// A running gateway.
pub struct Gateway {
    public_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: Stop,
    tasks: JoinSet<()>,
    drain_grace: Duration,
    cluster: Option<Cluster>,
}

impl Gateway {
    /// Binds the listeners and starts serving.
    pub async fn bind(options: GatewayOptions) -> std::io::Result<Gateway> {
        let bound =
            Bound::<TcpAccept>::bind(options.listen, options.ws_listen, options.admin_listen)
                .await
                .map_err(|e| e.source)?;
        let (driver, task) = Driver::new(options.machine(fastrand::u64(..)), |at| {
            tokio::time::sleep_until(at.into())
        });
        tokio::spawn(task);
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let shared = Arc::new(Shared::new(driver, &options, scheme, "anpx"));
        let stop = Stop::new(false);
        let (public_addr, ws_addr, admin_addr) = (
            bound.public_addr(),
            bound.receivers_addr(),
            bound.admin_addr(),
        );
        let mut tasks = JoinSet::new();
        let head_timer = HeadTimer::default();
        tasks.spawn(head_timer.fire());
        let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
        for (listener, which, secure) in bound.into_served() {
            let tls = if secure { tls.clone() } else { None };
            tasks.spawn(accept_loop(
                listener,
                which,
                shared.clone(),
                tls,
                stop.clone(),
                head_timer.clone(),
            ));
        }
        Ok(Gateway {
            public_addr,
            ws_addr,
            admin_addr,
            shared,
            stop,
            tasks,
            drain_grace: options.drain_grace,
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
    pub async fn join_cluster(&mut self, options: ClusterOptions) -> Result<(), ClusterError> {
        let cluster = Cluster::start(
            options,
            self.shared.driver.clone(),
            Arc::new(crate::rt::Tokio),
        )
        .await?;
        let _ = self.shared.cluster_view.set(cluster.view());
        self.cluster = Some(cluster);
        Ok(())
    }

    /// The cluster membership, when this gateway joined one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// A snapshot of the gateway's state.
    pub async fn stats(&self) -> Option<GatewayStats> {
        self.shared.driver.stats().await.ok()
    }

    /// Stops accepting, lets requests in flight finish within the drain
    /// grace period, then stops.
    pub async fn shutdown(mut self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        self.stop.set(true);
        // The other gateways stop forwarding here at once, rather than
        // after the announcement's time to live.
        if let Some(cluster) = self.cluster.take() {
            cluster.leave().await;
        }
        self.shared
            .wait_in_flight(self.drain_grace, &crate::rt::Tokio)
            .await;
        self.shared.driver.shutdown();
        self.shared
            .wait_receivers_closed(
                shell_common::gateway::RECEIVER_CLOSE_WAIT,
                &crate::rt::Tokio,
            )
            .await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Serves `listener`'s connections with hyper (after TLS when `tls` is
/// given) until `stop`.
async fn accept_loop(
    listener: TcpAccept,
    which: Listener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: Stop,
    head_timer: HeadTimer,
) {
    let with = (shared, tls, head_timer);
    let serve =
        accept::serve_each::<TcpAccept, _, _>(with, |incoming, (shared, tls, head_timer)| {
            let Incoming {
                conn: tcp,
                peer,
                local,
            } = incoming;
            Box::pin(async move {
                let edge = shared.edge.clone();
                let reporting = shared.clone();
                let first_bytes = edge.limits.header_read_timeout;
                let service =
                    service_fn(move |req| http::handle(req, shared.clone(), peer, local, which));
                let builder = edge::builder(&edge.limits, &head_timer);
                let served = match tls {
                    None => {
                        builder
                            .serve_connection_with_upgrades(
                                TokioIo::new(FirstBytesDeadline::new(tcp, first_bytes)),
                                service,
                            )
                            .await
                    }
                    Some(acceptor) => match tokio::time::timeout(
                        shell_common::tls::HANDSHAKE_TIMEOUT,
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection_with_upgrades(
                                    TokioIo::new(FirstBytesDeadline::new(stream, first_bytes)),
                                    service,
                                )
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    },
                };
                if let Err(e) = served {
                    edge::connection_error(&reporting, &*e, peer);
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            })
        });
    accept::accept_loop(
        listener,
        &Tokio,
        Some(stop),
        accept::listener_name(which),
        serve,
    )
    .await;
}

impl shell_common::commands::RunningGateway for Gateway {
    fn public_addr(&self) -> SocketAddr {
        Gateway::public_addr(self)
    }

    fn ws_addr(&self) -> Option<SocketAddr> {
        Gateway::ws_addr(self)
    }

    fn admin_addr(&self) -> Option<SocketAddr> {
        Gateway::admin_addr(self)
    }

    async fn join_cluster(&mut self, options: ClusterOptions) -> Result<(), ClusterError> {
        Gateway::join_cluster(self, options).await
    }

    async fn shutdown(self) {
        Gateway::shutdown(self).await
    }
}
