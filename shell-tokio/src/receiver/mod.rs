//! The receiver runtime: dials the gateway over tokio's TCP (and rustls for
//! `wss://`) and runs the shared reconnect and connection loops, serving
//! requests from an [`Upstream`].

mod admin;

pub use shell_common::did_credentials::{CredentialsError, DidCredentials};
pub use shell_common::{Credentials, Status};

use std::future::Future;
use std::sync::Arc;

use async_tungstenite::tokio::TokioAdapter;
use shell_common::admin::ReceiverMonitor;
use shell_common::dialing::{ReceiverIo, Running};
use shell_common::receiver::{BoxFuture, Connector, DialError, Io, Runtime, Target};
use tokio::net::TcpStream;

use crate::rt::{TcpAccept, Tokio};
use crate::upstream::Upstream;

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
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|source| DialError::Connect {
                    addr: format!("{}:{}", target.host, target.port),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            if !target.secure {
                return Ok(Box::new(TokioAdapter::new(tcp)) as Box<dyn Io>);
            }
            let (config, name) = shell_common::tls::dial(&target.host, tls)
                .map_err(|e| DialError::Tls(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| DialError::Tls(e.to_string()))?;
            Ok(Box::new(TokioAdapter::new(stream)) as Box<dyn Io>)
        })
    }
}

/// A running receiver on tokio.
pub type Receiver = Running<Tokio>;

impl ReceiverIo for Tokio {
    const SHELL: &'static str = "anpx";
    type Upstream = dyn Upstream;
    type Listener = TcpAccept;

    fn runtime() -> Arc<dyn Runtime> {
        Arc::new(Tokio)
    }

    fn connector() -> Arc<dyn Connector> {
        Arc::new(Tcp)
    }

    fn serve_admin(
        listener: TcpAccept,
        monitor: Arc<ReceiverMonitor>,
    ) -> impl Future<Output = ()> + Send + 'static {
        admin::serve(listener, monitor)
    }
}
