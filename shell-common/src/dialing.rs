//! A running receiver as both shells hold it: the stop order, the status
//! it reports, its admin listener, and the tasks it runs in
//! ([`Running`]). A shell names only its types ([`ReceiverIo`]).

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use crate::accept::Listen;
use crate::admin::ReceiverMonitor;
use crate::options::{ReceiverOptions, Status};
use crate::receiver::{BoxFuture, Connector, DialError, Dispatch, Io, Runtime, Target};
use crate::repoll::Repoll;
use crate::shell_io::ShellIo;
use crate::signal::{Stop, Watch};

/// The stop order and status of a receiver started with
/// [`Dialing::start`].
pub struct Dialing {
    stop: Stop,
    status: Watch<Status>,
}

impl Dialing {
    /// The receiver's loops ([`crate::receiver::run`]), for the shell to
    /// spawn, and the handle that follows and stops them. Should the loops
    /// end without reporting `Stopped` (a panic, the task aborted), the
    /// status says so rather than staying `Connecting`.
    pub fn start<U>(
        options: ReceiverOptions<U>,
        runtime: Arc<dyn Runtime>,
        connector: Arc<dyn Connector>,
    ) -> (Dialing, impl Future<Output = ()> + Send + 'static)
    where
        U: Dispatch + ?Sized,
    {
        let stop = Stop::new(false);
        let status = Watch::new(Status::Connecting);
        let guard = Ended(status.clone());
        let run = crate::receiver::run(options, runtime, connector, stop.clone(), status.clone());
        // The connection loop polls its calls and reads what they reply in
        // the same poll, which wakes it: polled again at once rather than
        // handed to another worker as a yield (see `repoll`).
        let task = Repoll::new(async move {
            let _guard = guard;
            run.await;
        });
        (Dialing { stop, status }, task)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.get()
    }

    /// Waits until the receiver is connected (or stopped) and returns that
    /// status.
    pub async fn wait_ready(&self) -> Status {
        loop {
            let (s, seen) = self.status.get_versioned();
            if !matches!(s, Status::Connecting) {
                return s;
            }
            self.status.changed(seen).await;
        }
    }

    /// The status, to follow reconnects with.
    pub fn watch(&self) -> Watch<Status> {
        self.status.clone()
    }

    /// Orders the loops to close the connection and stop reconnecting.
    pub fn stop(&self) {
        self.stop.set(true);
    }
}

/// Marks the status stopped when the loops' task ends or is dropped
/// without having said so.
struct Ended(Watch<Status>);

impl Drop for Ended {
    fn drop(&mut self) {
        if matches!(self.0.get(), Status::Connecting | Status::Connected { .. }) {
            self.0.set(Status::Stopped("receiver task ended".into()));
        }
    }
}

/// Binds the receiver's admin listener when `addr` is set, and logs where.
pub async fn bind_admin<L: Listen>(
    addr: Option<SocketAddr>,
) -> io::Result<Option<(SocketAddr, L)>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = L::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(admin_addr = %addr, "receiver admin plane listening");
    Ok(Some((addr, listener)))
}

/// What a shell runs a receiver with, besides its runtime.
pub trait ReceiverIo: ShellIo {
    /// The shell's upstream trait object.
    type Upstream: Dispatch + ?Sized;
    /// A TCP connection to the gateway, as the connection loop reads it.
    fn plain(tcp: Conn<Self>) -> Box<dyn Io>;
    /// TLS over `tcp`, for `wss://`.
    fn tls(tcp: Conn<Self>, tls: ClientTls)
        -> impl Future<Output = io::Result<Box<dyn Io>>> + Send;
    /// Serves the admin plane on `listener` until cancelled.
    fn serve_admin(
        listener: Self::Listener,
        monitor: Arc<ReceiverMonitor>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// A running receiver of the shell `R`: dialing in the background, with
/// its admin listener when it was asked for. Its status, readiness and
/// watch are [`Dialing`]'s.
pub struct Running<R: ReceiverIo> {
    dialing: Dialing,
    task: R::Task,
    admin: Option<(SocketAddr, R::Task)>,
}

impl<R: ReceiverIo> Running<R> {
    /// Binds the admin listener when `options.admin_listen` asks for one,
    /// then starts dialing in the background.
    pub async fn bind(options: ReceiverOptions<R::Upstream>) -> io::Result<Self> {
        let _ = options.monitor.shell.set(R::NAME);
        let admin = bind_admin::<R::Listener>(options.admin_listen)
            .await?
            .map(|(addr, l)| (addr, R::start(R::serve_admin(l, options.monitor.clone()))));
        let mut receiver = Self::spawn(options);
        receiver.admin = admin;
        Ok(receiver)
    }

    /// Starts dialing in the background, without an admin listener (see
    /// [`Running::bind`]).
    pub fn spawn(options: ReceiverOptions<R::Upstream>) -> Self {
        let (dialing, run) = Dialing::start(
            options,
            Arc::new(R::default()),
            Arc::new(Tcp::<R>(PhantomData)),
        );
        Running {
            dialing,
            task: R::start(run),
            admin: None,
        }
    }

    /// The admin plane's address, when [`Running::bind`] opened one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// Stops reconnecting, closes the connection and waits for the task,
    /// then closes the admin listener.
    pub async fn shutdown(self) {
        self.dialing.stop();
        R::join(self.task).await;
        if let Some((_, admin)) = self.admin {
            R::cancel(admin).await;
        }
    }
}

impl<R: ReceiverIo> Deref for Running<R> {
    type Target = Dialing;

    fn deref(&self) -> &Dialing {
        &self.dialing
    }
}

/// An accepted or dialed connection of the shell `R`.
pub type Conn<R> = <<R as ShellIo>::Listener as Listen>::Conn;

/// The client configuration and server name a TLS connection to the
/// gateway is made with.
pub type ClientTls = (
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
);

/// How the receivers of the shell `R` dial: TCP, and TLS over it for
/// `wss://`.
struct Tcp<R>(PhantomData<R>);

impl<R: ReceiverIo> Connector for Tcp<R> {
    fn connect(
        &self,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> BoxFuture<Result<Box<dyn Io>, DialError>> {
        Box::pin(async move {
            let tcp = R::Listener::connect(&target.host, target.port)
                .await
                .map_err(|source| DialError::Connect {
                    addr: format!("{}:{}", target.host, target.port),
                    source,
                })?;
            if !target.secure {
                return Ok(R::plain(tcp));
            }
            let client =
                crate::tls::dial(&target.host, tls).map_err(|e| DialError::Tls(e.to_string()))?;
            R::tls(tcp, client)
                .await
                .map_err(|e| DialError::Tls(e.to_string()))
        })
    }
}
