//! tokio's half of the shared loops: spawning, timers, accepting.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use shell_common::accept::Listen;
use tokio::net::{TcpListener, TcpStream};

use shell_common::receiver::{BoxFuture, Owned, OwnedTask, Runtime};

/// Tasks and timers on the current tokio runtime.
pub(crate) struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(AbortOnDrop(tokio::spawn(task)))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(at.into()))
    }
}

/// A tokio task aborted when its handle is dropped (a `JoinHandle` alone
/// would detach it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl OwnedTask for AbortOnDrop {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// tokio's TCP listener as the shared accept loop takes it.
pub(crate) struct TcpAccept(pub(crate) TcpListener);

impl Listen for TcpAccept {
    type Conn = TcpStream;

    async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(TcpAccept(TcpListener::bind(addr).await?))
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send + '_ {
        self.0.accept()
    }

    fn set_nodelay(conn: &TcpStream) -> std::io::Result<()> {
        conn.set_nodelay(true)
    }

    fn conn_local_addr(conn: &TcpStream) -> std::io::Result<SocketAddr> {
        conn.local_addr()
    }
}
