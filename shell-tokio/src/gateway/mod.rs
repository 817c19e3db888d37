//! The gateway runtime: listeners, the receivers' WebSocket endpoint, and
//! the task that drives `anpx_core::gateway`.

mod edge;
mod head_timer;
pub(crate) mod http;

pub use shell_common::did_wba::{DidWbaAdmission, DocumentSources};
pub use shell_common::{Admission, Admitted, GatewayOptions, OpenAdmission, Refusal};

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_common::accept::{self, Incoming};
use shell_common::receiver::Runtime;
use shell_common::serving::{GatewayIo, Served, Serving};
use shell_common::signal::Stop;
use tokio::task::JoinHandle;

use self::edge::FirstBytesDeadline;
use self::head_timer::HeadTimer;
use crate::rt::{TcpAccept, Tokio};
use shell_common::gateway::{Listener, Shared};

pub use shell_common::accept::BindError;

/// A running gateway on tokio.
pub type Gateway = Serving<Tokio>;

impl GatewayIo for Tokio {
    type Tls = tokio_rustls::TlsAcceptor;

    fn timer(at: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(at.into())
    }

    fn tls(config: Arc<rustls::ServerConfig>) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Each listener's accept loop, and the timer that ends connections
    /// whose request head is slow to come, which they share.
    fn serve(
        listeners: Vec<Served<Tokio>>,
        shared: &Arc<Shared>,
        stop: &Stop,
    ) -> Vec<JoinHandle<()>> {
        let head_timer = HeadTimer::default();
        let mut tasks = vec![tokio::spawn(head_timer.fire())];
        for (listener, which, tls) in listeners {
            let serve = accept_loop(
                listener,
                which,
                shared.clone(),
                tls,
                stop.clone(),
                head_timer.clone(),
            );
            tasks.push(tokio::spawn(serve));
        }
        tasks
    }

    fn cluster_runtime() -> Arc<dyn Runtime> {
        Arc::new(Tokio)
    }

    fn in_tokio<F: Future>(future: F) -> impl Future<Output = F::Output> {
        future
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
        accept::serve_each::<TcpAccept, _, _>(with, move |incoming, (shared, tls, head_timer)| {
            let Incoming { conn, peer, local } = incoming;
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
                                TokioIo::new(FirstBytesDeadline::new(conn, first_bytes)),
                                service,
                            )
                            .await
                    }
                    Some(acceptor) => match tokio::time::timeout(
                        shell_common::tls::HANDSHAKE_TIMEOUT,
                        acceptor.accept(conn),
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
