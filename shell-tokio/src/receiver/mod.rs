//! The receiver runtime: dials the gateway over tokio's TCP (and rustls for
//! `wss://`) and runs the shared reconnect and connection loops, serving
//! requests from an [`Upstream`].

mod admin;

pub use shell_common::did_credentials::{CredentialsError, DidCredentials};
pub use shell_common::{Credentials, Status};

use std::future::Future;
use std::sync::Arc;

use crate::futures_io::FuturesIo;
use shell_common::admin::ReceiverMonitor;
use shell_common::dialing::{ClientTls, ReceiverIo, Running};
use shell_common::receiver::Io;
use tokio::net::TcpStream;

use crate::rt::{TcpAccept, Tokio};
use crate::upstream::Upstream;

/// How to run a receiver.
pub type ReceiverOptions = shell_common::ReceiverOptions<dyn Upstream>;

/// A running receiver on tokio.
pub type Receiver = Running<Tokio>;

impl ReceiverIo for Tokio {
    type Upstream = dyn Upstream;

    fn plain(tcp: TcpStream) -> Box<dyn Io> {
        Box::new(FuturesIo(tcp))
    }

    async fn tls(tcp: TcpStream, (config, name): ClientTls) -> std::io::Result<Box<dyn Io>> {
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Box::new(FuturesIo(stream)))
    }

    fn serve_admin(
        listener: TcpAccept,
        monitor: Arc<ReceiverMonitor>,
    ) -> impl Future<Output = ()> + Send + 'static {
        admin::serve(listener, monitor)
    }
}
