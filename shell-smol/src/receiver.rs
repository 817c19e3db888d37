//! The receiver runtime on smol: dials the gateway over smol's TCP (and
//! futures-rustls for `wss://`) and runs the shared reconnect and
//! connection loops.

use std::sync::Arc;

use shell_common::receiver::{BoxFuture, Connector, DialError, Io, Target};
use shell_common::signal::{Stop, Watch};
use smol::Task;

use crate::rt::Smol;
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

/// A running receiver.
pub struct Receiver {
    stop: Stop,
    status: Watch<Status>,
    task: Task<()>,
}

impl Receiver {
    /// Starts dialing in the background.
    pub fn spawn(options: ReceiverOptions) -> Receiver {
        let stop = Stop::new(false);
        let status = Watch::new(Status::Connecting);
        let task = smol::spawn(shell_common::receiver::run(
            options,
            Arc::new(Smol),
            Arc::new(Tcp),
            stop.clone(),
            status.clone(),
        ));
        Receiver { stop, status, task }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.get()
    }

    /// Waits until the receiver is connected (or stopped) and returns that status.
    pub async fn wait_ready(&self) -> Status {
        loop {
            let (s, seen) = self.status.get_versioned();
            if !matches!(s, Status::Connecting) {
                return s;
            }
            self.status.changed(seen).await;
        }
    }

    /// Waits for the next status change after `seen` (from
    /// [`Receiver::watch`]), for callers that follow reconnects.
    pub fn watch(&self) -> Watch<Status> {
        self.status.clone()
    }

    /// Stops reconnecting, closes the connection and waits for the task.
    pub async fn shutdown(self) {
        self.stop.set(true);
        self.task.await;
    }
}
