//! The receiver's admin listener on hyper: plain HTTP/1.1, answered by
//! the shared [`ReceiverMonitor`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_common::accept::accept_loop;
use shell_common::admin::ReceiverMonitor;
use shell_common::receiver::BoxFuture;
use tokio::net::TcpStream;

use crate::gateway::http::admin_response;
use crate::rt::{TcpAccept, Tokio};

/// Accepts and serves admin connections until the task is aborted.
pub(super) async fn serve(listener: TcpAccept, monitor: Arc<ReceiverMonitor>) {
    let serve = move |tcp: TcpStream, peer: SocketAddr| -> BoxFuture<()> {
        let monitor = monitor.clone();
        Box::pin(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let reply = monitor.admin(req.method().as_str(), req.uri().path(), req.headers());
                async move { Ok::<_, Infallible>(admin_response(reply)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        })
    };
    accept_loop(listener, &Tokio, None, "receiver admin", serve).await;
}
