//! The receiver runtime on smol: dials the gateway over smol's TCP (and
//! futures-rustls for `wss://`) and runs the shared reconnect and
//! connection loops.

use std::net::SocketAddr;
use std::sync::Arc;

use shell_common::accept::accept_loop;
use shell_common::admin::ReceiverMonitor;
use shell_common::dialing::{ClientTls, ReceiverIo, Running};
use shell_common::receiver::{BoxFuture, Io};

use crate::rt::{Smol, TcpAccept};
use crate::tcp::TcpStream;
use crate::upstream::Upstream;

pub use shell_common::{Credentials, Status};

/// How to run a receiver.
pub type ReceiverOptions = shell_common::ReceiverOptions<dyn Upstream>;

/// A running receiver on smol.
pub type Receiver = Running<Smol>;

impl ReceiverIo for Smol {
    type Upstream = dyn Upstream;

    fn plain(tcp: TcpStream) -> Box<dyn Io> {
        Box::new(tcp)
    }

    async fn tls(tcp: TcpStream, (config, name): ClientTls) -> std::io::Result<Box<dyn Io>> {
        let stream = futures_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Box::new(stream))
    }

    /// Serves the admin listener (plain HTTP/1.1 on async-h1) until
    /// cancelled; each connection is a task of its own, dropped with this
    /// one.
    async fn serve_admin(listener: TcpAccept, monitor: Arc<ReceiverMonitor>) {
        let serve = move |tcp: TcpStream, peer: SocketAddr| -> BoxFuture<()> {
            let monitor = monitor.clone();
            Box::pin(async move {
                let served = async_h1::accept(tcp, |req| {
                    let monitor = monitor.clone();
                    async move {
                        let headers = admin_headers(&req);
                        let reply =
                            monitor.admin(req.method().as_ref(), req.url().path(), &headers);
                        Ok(crate::gateway::admin_response(reply))
                    }
                })
                .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                }
            })
        };
        accept_loop(listener, &Smol, None, "receiver admin", serve).await;
    }
}

/// The request's headers as the shared admin code reads them.
fn admin_headers(req: &http_types::Request) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, values) in req.iter() {
        for value in values.iter() {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_str(value.as_str()),
            ) {
                map.append(n, v);
            }
        }
    }
    map
}
