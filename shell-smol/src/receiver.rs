//! The receiver runtime on smol: dials the gateway over smol's TCP (and
//! futures-rustls for `wss://`) and runs the shared reconnect and
//! connection loops.

use std::net::SocketAddr;
use std::sync::Arc;

use shell_common::accept::accept_loop;
use shell_common::admin::ReceiverMonitor;
use shell_common::dialing::{bind_admin, Dialing};
use shell_common::receiver::{BoxFuture, Connector, DialError, Io, Target};
use shell_common::signal::Watch;
use smol::Task;

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

/// A running receiver.
pub struct Receiver {
    dialing: Dialing,
    task: Task<()>,
    admin: Option<(SocketAddr, Task<()>)>,
}

impl Receiver {
    /// Binds the admin listener when `options.admin_listen` asks for one,
    /// then starts dialing in the background.
    pub async fn bind(options: ReceiverOptions) -> std::io::Result<Receiver> {
        let _ = options.monitor.shell.set("anpx-smol");
        let admin = bind_admin::<TcpAccept>(options.admin_listen)
            .await?
            .map(|(addr, l)| (addr, smol::spawn(serve_admin(l, options.monitor.clone()))));
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
        let (dialing, run) = Dialing::start(options, Arc::new(Smol), Arc::new(Tcp));
        Receiver {
            dialing,
            task: smol::spawn(run),
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
        self.task.await;
        if let Some((_, admin)) = self.admin {
            admin.cancel().await;
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
