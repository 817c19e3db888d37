//! smol's half of the shared loops: spawning, timers, accepting.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use shell_common::accept::Listen;
use smol::net::{TcpListener, TcpStream};

use shell_common::receiver::{BoxFuture, Owned, OwnedTask, Runtime};

/// Tasks on smol's global executor, timers from async-io.
pub(crate) struct Smol;

impl Runtime for Smol {
    fn spawn(&self, task: BoxFuture<()>) {
        smol::spawn(task).detach();
    }

    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned {
        Owned::new(OwnedSmol(smol::spawn(task)))
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(async move {
            smol::Timer::at(at).await;
        })
    }
}

/// A smol task, which cancels itself when dropped.
pub(crate) struct OwnedSmol(pub(crate) smol::Task<()>);

impl OwnedTask for OwnedSmol {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// smol's TCP listener as the shared accept loop takes it.
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
}

/// Reads an async-h1 body as a stream of pieces.
pub(crate) fn body_stream(
    body: http_types::Body,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin {
    use futures_util::AsyncReadExt;
    let reader = body.into_reader();
    Box::pin(futures_util::stream::unfold(
        (reader, false),
        |(mut reader, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), (reader, false)))
                }
                Err(e) => Some((Err(e), (reader, true))),
            }
        },
    ))
}
