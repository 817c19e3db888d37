//! The receiver's admin listener on hyper: plain HTTP/1.1, answered by
//! the shared [`ReceiverMonitor`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_common::admin::ReceiverMonitor;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::gateway::http::admin_response;

/// Accepts and serves admin connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, monitor: Arc<ReceiverMonitor>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let monitor = monitor.clone();
                connections.spawn(async move {
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
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
