//! The receiver runtime: dials the gateway over tokio's TCP (and rustls for
//! `wss://`) and runs the shared reconnect and connection loops, serving
//! requests from an [`Upstream`].

mod admin;

pub use shell_common::did_credentials::{CredentialsError, DidCredentials};
pub use shell_common::{Credentials, Status};

use std::net::SocketAddr;
use std::sync::Arc;

use async_tungstenite::tokio::TokioAdapter;
use shell_common::dialing::{bind_admin, Dialing};
use shell_common::receiver::{BoxFuture, Connector, DialError, Io, Target};
use shell_common::signal::Watch;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

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

/// A running receiver.
pub struct Receiver {
    dialing: Dialing,
    task: JoinHandle<()>,
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Receiver {
    /// Binds the admin listener when `options.admin_listen` asks for one,
    /// then starts dialing in the background.
    pub async fn bind(options: ReceiverOptions) -> std::io::Result<Receiver> {
        let _ = options.monitor.shell.set("anpx");
        let admin = bind_admin::<TcpAccept>(options.admin_listen)
            .await?
            .map(|(addr, l)| (addr, tokio::spawn(admin::serve(l, options.monitor.clone()))));
        let mut receiver = Receiver::spawn(options);
        receiver.admin = admin;
        Ok(receiver)
    }

    /// The admin plane's address, when [`Receiver::bind`] opened one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// Starts dialing in the background, without an admin listener (see
    /// [`Receiver::bind`]).
    pub fn spawn(options: ReceiverOptions) -> Receiver {
        let (dialing, run) = Dialing::start(options, Arc::new(Tokio), Arc::new(Tcp));
        Receiver {
            dialing,
            task: tokio::spawn(run),
            admin: None,
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.dialing.status()
    }

    /// Waits until the receiver is connected (or stopped) and returns that status.
    pub async fn wait_ready(&self) -> Status {
        self.dialing.wait_ready().await
    }

    /// The status, for callers that follow reconnects.
    pub fn watch(&self) -> Watch<Status> {
        self.dialing.watch()
    }

    /// Stops reconnecting, closes the connection and waits for the task.
    pub async fn shutdown(self) {
        self.dialing.stop();
        let _ = self.task.await;
        if let Some((_, admin)) = self.admin {
            admin.abort();
        }
    }
}

impl shell_common::commands::RunningReceiver for Receiver {
    fn admin_addr(&self) -> Option<SocketAddr> {
        Receiver::admin_addr(self)
    }

    fn watch(&self) -> Watch<Status> {
        Receiver::watch(self)
    }

    async fn shutdown(self) {
        Receiver::shutdown(self).await
    }
}
