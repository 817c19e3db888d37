//! The receiver runtime: dials the gateway over tokio's TCP (and rustls for
//! `wss://`) and runs the shared reconnect and connection loops, serving
//! requests from an [`Upstream`].

mod admin;

pub use shell_common::did_credentials::{CredentialsError, DidCredentials};
pub use shell_common::{Credentials, Status};

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use async_tungstenite::tokio::TokioAdapter;
use shell_common::receiver::{BoxFuture, Connector, DialError, Io, Target};
use shell_common::signal::{Stop, Watch};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rt::Tokio;
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
    stop: Stop,
    status: watch::Receiver<Status>,
    task: JoinHandle<()>,
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Receiver {
    /// Binds the admin listener when `options.admin_listen` asks for one,
    /// then starts dialing in the background.
    pub async fn bind(options: ReceiverOptions) -> std::io::Result<Receiver> {
        let admin = match options.admin_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let addr = listener.local_addr()?;
                tracing::info!(admin_addr = %addr, "receiver admin plane listening");
                let task = tokio::spawn(admin::serve(listener, options.monitor.clone()));
                Some((addr, task))
            }
            None => None,
        };
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
        let stop = Stop::new(false);
        let (status_tx, status) = watch::channel(Status::Connecting);
        let shared = Watch::new(Status::Connecting);
        let run = shell_common::receiver::run(
            options,
            Arc::new(Tokio),
            Arc::new(Tcp),
            stop.clone(),
            shared.clone(),
        );
        let task = tokio::spawn(async move {
            // The shared loop reports on a runtime-free watch; callers of
            // this shell follow a tokio watch, which ends with the task.
            let forward = async {
                loop {
                    let (s, seen) = shared.get_versioned();
                    status_tx.send_replace(s);
                    shared.changed(seen).await;
                }
            };
            futures_util::future::select(pin!(run), pin!(forward)).await;
            status_tx.send_replace(shared.get());
        });
        Receiver {
            stop,
            status,
            task,
            admin: None,
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until the receiver is connected (or stopped) and returns that status.
    pub async fn wait_ready(&self) -> Status {
        let mut rx = self.status.clone();
        loop {
            let s = rx.borrow_and_update().clone();
            if !matches!(s, Status::Connecting) {
                return s;
            }
            if rx.changed().await.is_err() {
                return Status::Stopped("receiver task ended".into());
            }
        }
    }

    /// A watch on the status, for callers that follow reconnects.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Stops reconnecting, closes the connection and waits for the task.
    pub async fn shutdown(self) {
        self.stop.set(true);
        let _ = self.task.await;
        if let Some((_, admin)) = self.admin {
            admin.abort();
        }
    }
}
