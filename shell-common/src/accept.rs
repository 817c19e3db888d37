//! The accept loop every listener of both shells runs (the gateway's
//! public, receiver and admin listeners, the receiver's admin listener):
//! accept, serve each connection in a task of its own, keep going after an
//! accept error, stop accepting on the stop order. Only what a connection
//! is served with differs, and that is the caller's `serve`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};

use crate::gateway::Listener;
use crate::lanes::{self, Lane};
use crate::receiver::{BoxFuture, Owned, Runtime};
use crate::signal::Stop;

/// How long to wait after a failed accept (out of file descriptors, say)
/// before the next, so that a persistent error does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A bound listener of the shell's runtime.
pub trait Listen: Send + Sized + 'static {
    /// An accepted connection.
    type Conn: Send + 'static;
    /// Binds `addr`.
    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<Self>> + Send;
    /// The address bound (useful with port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// The next connection and its peer's address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send + '_;
    /// Turns Nagle's algorithm off on `conn`.
    fn set_nodelay(conn: &Self::Conn) -> io::Result<()>;
    /// The local address `conn` came in on.
    fn conn_local_addr(conn: &Self::Conn) -> io::Result<SocketAddr>;
    /// A connection of the same kind to `host`:`port`, Nagle's algorithm
    /// off (the receiver's to its gateway).
    fn connect(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Conn>> + Send;
    /// An accepted connection on its way to another lane: no longer tied
    /// to the accepting lane's event loop, where the runtime ties one.
    type Moving: Send + 'static;
    /// Frees `conn` from the lane that accepted it.
    fn unsettle(conn: Self::Conn) -> io::Result<Self::Moving>;
    /// The connection again, tied to the calling lane.
    fn settle(moving: Self::Moving) -> io::Result<Self::Conn>;
}

/// Declares `$name`, the shell's TCP listener (and client) as [`Listen`]
/// takes it.
///
/// tokio's and smol's `TcpListener` and `TcpStream` have the same methods
/// under the same names, so the adapter is written once here and each
/// shell names its types, and how a connection moves between lanes (what
/// [`Listen::unsettle`] gives, and the two conversions):
/// `tcp_listen!(TcpAccept, tokio::net::TcpListener, tokio::net::TcpStream,
/// std::net::TcpStream, tokio::net::TcpStream::into_std,
/// tokio::net::TcpStream::from_std)`.
#[macro_export]
macro_rules! tcp_listen {
    ($name:ident, $listener:ty, $stream:ty, $moving:ty, $unsettle:expr, $settle:expr) => {
        /// The runtime's TCP listener as the shared accept loop takes it.
        pub struct $name(pub(crate) $listener);

        impl $crate::accept::Listen for $name {
            type Conn = $stream;

            async fn bind(addr: ::std::net::SocketAddr) -> ::std::io::Result<Self> {
                Ok($name(<$listener>::bind(addr).await?))
            }

            fn local_addr(&self) -> ::std::io::Result<::std::net::SocketAddr> {
                self.0.local_addr()
            }

            fn accept(
                &self,
            ) -> impl ::std::future::Future<
                Output = ::std::io::Result<($stream, ::std::net::SocketAddr)>,
            > + Send
                   + '_ {
                self.0.accept()
            }

            fn set_nodelay(conn: &$stream) -> ::std::io::Result<()> {
                conn.set_nodelay(true)
            }

            fn conn_local_addr(conn: &$stream) -> ::std::io::Result<::std::net::SocketAddr> {
                conn.local_addr()
            }

            async fn connect(host: &str, port: u16) -> ::std::io::Result<$stream> {
                let conn = <$stream>::connect((host, port)).await?;
                let _ = conn.set_nodelay(true);
                Ok(conn)
            }

            type Moving = $moving;

            fn unsettle(conn: $stream) -> ::std::io::Result<$moving> {
                ($unsettle)(conn)
            }

            fn settle(moving: $moving) -> ::std::io::Result<$stream> {
                ($settle)(moving)
            }
        }
    };
}

/// An accepted connection of a gateway listener, readied by [`serve_each`].
pub struct Incoming<C> {
    /// The connection, Nagle's algorithm off.
    pub conn: C,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address it came in on (the client's, when the system cannot
    /// say).
    pub local: SocketAddr,
}

/// The `serve` of [`accept_loop`] for a gateway listener: each connection
/// gets Nagle's algorithm turned off (answers and frames are written
/// whole and flushed, and a small one must not wait for the ack of the
/// one before) and its local address read, then goes to `serve` with a
/// clone of `with`, what every connection is served with (the shared
/// state, the TLS acceptor).
pub fn serve_each<L, W, F>(with: W, serve: F) -> impl Fn(L::Conn, SocketAddr) -> BoxFuture<()>
where
    L: Listen,
    W: Clone,
    F: Fn(Incoming<L::Conn>, W) -> BoxFuture<()>,
{
    move |conn, peer| {
        let _ = L::set_nodelay(&conn);
        let local = L::conn_local_addr(&conn).unwrap_or(peer);
        serve(Incoming { conn, peer, local }, with.clone())
    }
}

/// Accepts on `listener` until `stop` is set (never, for `None`), serving
/// each connection with `serve` in a task of its own; `what` names the
/// listener in the log. Once stopped it closes the listener and waits: the
/// connections it serves live until this future is dropped, which cancels
/// them.
///
/// With more than one lane ([`crate::lanes`]) the connections go to the
/// lanes in turn, each served wholly on its lane.
pub async fn accept_loop<L, S>(
    listener: L,
    runtime: &dyn Runtime,
    stop: Option<Stop>,
    what: &'static str,
    serve: S,
) where
    L: Listen,
    S: Fn(L::Conn, SocketAddr) -> BoxFuture<()> + Send + Sync + 'static,
{
    let lanes = runtime.lanes();
    let serve = Arc::new(serve);
    // The loop's own lane: a task stays on the lane it was spawned on.
    let here = lanes::current().unwrap_or(Lane(0));
    let mut lane = here;
    let mut connections: Vec<Owned> = Vec::new();
    loop {
        let accepted = match &stop {
            None => listener.accept().await,
            Some(stop) => {
                let accept = std::pin::pin!(listener.accept());
                let stopped = std::pin::pin!(stop.changed(0));
                match select(accept, stopped).await {
                    Either::Left((accepted, _)) => accepted,
                    Either::Right(_) => break,
                }
            }
        };
        let (conn, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                runtime.sleep_until(Instant::now() + ACCEPT_RETRY).await;
                continue;
            }
        };
        connections.retain(|t| !t.is_finished());
        let task = if lane == here {
            runtime.spawn_owned(serve(conn, peer))
        } else {
            match moved::<L, S>(conn, peer, serve.clone(), what) {
                Some(task) => runtime.spawn_owned_on(lane, task),
                None => continue,
            }
        };
        lane = lanes::next(lane, lanes);
        connections.push(task);
    }
    drop(listener);
    std::future::pending::<()>().await;
    drop(connections);
}

/// `serve(conn, peer)` as a task for another lane, `conn` freed from this
/// one's event loop first; `None` (and a warning) when it cannot be.
fn moved<L, S>(
    conn: L::Conn,
    peer: SocketAddr,
    serve: Arc<S>,
    what: &'static str,
) -> Option<BoxFuture<()>>
where
    L: Listen,
    S: Fn(L::Conn, SocketAddr) -> BoxFuture<()> + Send + Sync + 'static,
{
    let moving = match L::unsettle(conn) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(listener = what, %peer, error = %e, "cannot hand a connection to another lane");
            return None;
        }
    };
    Some(Box::pin(async move {
        match L::settle(moving) {
            Ok(conn) => serve(conn, peer).await,
            Err(e) => {
                tracing::warn!(listener = what, %peer, error = %e, "cannot take a connection on its lane");
            }
        }
    }))
}

/// How the log names one of the gateway's listeners.
pub fn listener_name(which: Listener) -> &'static str {
    match which {
        Listener::Public => "public",
        Listener::Receivers => "receivers",
        Listener::Admin => "admin",
    }
}

/// A gateway's listeners, bound: the public one, and the receivers' and
/// the admin plane's when configured.
pub struct Bound<L> {
    public: (L, SocketAddr),
    receivers: Option<(L, SocketAddr)>,
    admin: Option<(L, SocketAddr)>,
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    pub source: io::Error,
}

impl<L: Listen> Bound<L> {
    /// Binds `public`, and `receivers` and `admin` when set.
    pub async fn bind(
        public: SocketAddr,
        receivers: Option<SocketAddr>,
        admin: Option<SocketAddr>,
    ) -> Result<Bound<L>, BindError> {
        async fn one<L: Listen>(addr: SocketAddr) -> Result<(L, SocketAddr), BindError> {
            let bound = async {
                let l = L::bind(addr).await?;
                let local = l.local_addr()?;
                Ok((l, local))
            };
            bound.await.map_err(|source| BindError { addr, source })
        }
        let public = one(public).await?;
        let receivers = match receivers {
            Some(addr) => Some(one(addr).await?),
            None => None,
        };
        let admin = match admin {
            Some(addr) => Some(one(addr).await?),
            None => None,
        };
        Ok(Bound {
            public,
            receivers,
            admin,
        })
    }

    /// The public address bound (useful with port 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public.1
    }

    /// The receivers' address bound, when asked for.
    pub fn receivers_addr(&self) -> Option<SocketAddr> {
        self.receivers.as_ref().map(|(_, a)| *a)
    }

    /// The admin plane's address bound, when asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, a)| *a)
    }

    /// Logs where the gateway listens and gives each listener with what it
    /// serves and whether TLS applies to it: not to the admin plane, which
    /// is for loopback or a private network.
    pub fn into_served(self) -> Vec<(L, Listener, bool)> {
        let or_none =
            |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        tracing::info!(
            public_addr = %self.public_addr(),
            ws_addr = %or_none(self.receivers_addr()),
            admin_addr = %or_none(self.admin_addr()),
            "gateway listening"
        );
        let mut served = vec![(self.public.0, Listener::Public, true)];
        served.extend(self.receivers.map(|(l, _)| (l, Listener::Receivers, true)));
        served.extend(self.admin.map(|(l, _)| (l, Listener::Admin, false)));
        served
    }
}
