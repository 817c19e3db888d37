//! The receiver runtime on smol: dials the gateway over smol's TCP (and
//! futures-rustls for `wss://`) and runs the shared reconnect and
//! connection loops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use shell_common::accept::accept_loop;
use shell_common::admin::ReceiverMonitor;
use shell_common::dialing::{ReceiverIo, Running};
use shell_common::receiver::{BoxFuture, Connector, DialError, Io, Runtime, Target};

use crate::rt::{Smol, TcpAccept};
use crate::upstream::Upstream;

pub use shell_common::{Credentials, Status};

/// How to run a receiver.
pub type ReceiverOptions = shell_common::ReceiverOptions<dyn Upstream>;

/// TCP, and rustls over it for `wss://`.
struct Tcp;

impl Connector for Tcp {
    fn connect(
        &self,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> BoxFuture<Result<Box<dyn Io>, DialError>> {
        Box::pin(async move {
            let tcp = smol::net::TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|source| DialError::Connect {
                    addr: format!("{}:{}", target.host, target.port),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            if !target.secure {
                return Ok(Box::new(tcp) as Box<dyn Io>);
            }
            let (config, name) = shell_common::tls::dial(&target.host, tls)
                .map_err(|e| DialError::Tls(e.to_string()))?;
            let stream = futures_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| DialError::Tls(e.to_string()))?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

/// A running receiver on smol.
pub type Receiver = Running<Smol>;

impl ReceiverIo for Smol {
    const SHELL: &'static str = "anpx-smol";
    type Upstream = dyn Upstream;
    type Listener = TcpAccept;

    fn runtime() -> Arc<dyn Runtime> {
        Arc::new(Smol)
    }

    fn connector() -> Arc<dyn Connector> {
        Arc::new(Tcp)
    }

    fn serve_admin(
        listener: TcpAccept,
        monitor: Arc<ReceiverMonitor>,
    ) -> impl Future<Output = ()> + Send + 'static {
        serve_admin(listener, monitor)
    }
}

/// Serves the admin listener (plain HTTP/1.1 on async-h1) until cancelled;
/// each connection is a task of its own, dropped with this one.
async fn serve_admin(listener: TcpAccept, monitor: Arc<ReceiverMonitor>) {
    let serve = move |tcp: smol::net::TcpStream, peer: SocketAddr| -> BoxFuture<()> {
        let monitor = monitor.clone();
        Box::pin(async move {
            let served = async_h1::accept(tcp, |req| {
                let monitor = monitor.clone();
                async move {
                    let headers = admin_headers(&req);
                    let reply = monitor.admin(req.method().as_ref(), req.url().path(), &headers);
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
