//! The gateway runtime: listeners, the receivers' WebSocket endpoint, and
//! the task that drives `anpx_core::gateway`.

mod edge;
pub(crate) mod http;

pub use shell_common::did_wba::{DidWbaAdmission, DocumentSources};
pub use shell_common::{Admission, Admitted, GatewayOptions, OpenAdmission, Refusal};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anpx_core::{Gateway as Core, GatewayStats};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::edge::FirstBytesDeadline;
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use shell_common::driver::Driver;
use shell_common::gateway::{Listener, Shared};

/// A running gateway.
pub struct Gateway {
    public_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    drain_grace: Duration,
    cluster: Option<Cluster>,
}

impl Gateway {
    /// Binds the listeners and starts serving.
    pub async fn bind(options: GatewayOptions) -> std::io::Result<Gateway> {
        let public = TcpListener::bind(options.listen).await?;
        let ws = match options.ws_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let admin = match options.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let seed = fastrand::u64(..);
        let (driver, task) = Driver::new(Core::new(options.core.clone(), seed), |at| {
            tokio::time::sleep_until(at.into())
        });
        tokio::spawn(task);
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let shared = Arc::new(Shared::new(driver, &options, scheme));
        let (stop, stopped) = watch::channel(false);
        let public_addr = public.local_addr()?;
        let ws_addr = ws.as_ref().map(TcpListener::local_addr).transpose()?;
        let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
        let mut tasks = JoinSet::new();
        let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
        tasks.spawn(accept_loop(
            public,
            Listener::Public,
            shared.clone(),
            tls.clone(),
            stopped.clone(),
        ));
        if let Some(ws) = ws {
            tasks.spawn(accept_loop(
                ws,
                Listener::Receivers,
                shared.clone(),
                tls,
                stopped.clone(),
            ));
        }
        if let Some(admin) = admin {
            // Plain HTTP: the admin plane is for loopback or a private network.
            tasks.spawn(accept_loop(
                admin,
                Listener::Admin,
                shared.clone(),
                None,
                stopped,
            ));
        }
        let or_none =
            |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        tracing::info!(
            %public_addr,
            ws_addr = %or_none(ws_addr),
            admin_addr = %or_none(admin_addr),
            "gateway listening"
        );
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
        let _ = self.stop.send(true);
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

async fn accept_loop(
    listener: TcpListener,
    which: Listener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().unwrap_or(peer);
                let shared = shared.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let edge = shared.edge.clone();
                    let reporting = shared.clone();
                    let first_bytes = edge.limits.header_read_timeout;
                    let service = service_fn(move |req| http::handle(req, shared.clone(), peer, local, which));
                    let builder = edge::builder(&edge.limits);
                    let served = match tls {
                        None => builder.serve_connection_with_upgrades(TokioIo::new(FirstBytesDeadline::new(tcp, first_bytes)), service).await,
                        Some(acceptor) => match tokio::time::timeout(shell_common::tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => builder.serve_connection_with_upgrades(TokioIo::new(FirstBytesDeadline::new(stream, first_bytes)), service).await,
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
                });
            }
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Connections already open keep running until the caller aborts us.
    while connections.join_next().await.is_some() {}
}
