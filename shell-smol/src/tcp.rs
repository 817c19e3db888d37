//! TCP on async-io, read the way tokio reads.
//!
//! smol's `TcpStream` tries every read on the socket first and waits for
//! readiness only once the read fails with `WouldBlock`, and a task woken
//! for anything else (a frame queued for writing, a timer) reads again to
//! the same failure. Each such attempt is a system call that returns
//! nothing. Here, a read that returned less than it asked for marks the
//! socket as drained: the next read waits for the reactor's word that
//! bytes came in before it asks the socket, as tokio does after a short
//! read.
//!
//! Readiness is awaited with `Async::poll_readable`, which keeps one waker
//! per direction and registers interest with the reactor only when there
//! was none: a task that waits on the same socket again (a connection
//! watching for its client's close, then reading its next head) costs no
//! second registration.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};
use smol::Async;

/// A TCP connection; clones share the socket.
#[derive(Debug, Clone)]
pub struct TcpStream {
    io: Arc<Async<std::net::TcpStream>>,
    /// The last read returned less than it asked for (or nothing): the
    /// socket most likely holds no more until the reactor says so.
    drained: Arc<AtomicBool>,
}

impl From<smol::net::TcpStream> for TcpStream {
    fn from(stream: smol::net::TcpStream) -> Self {
        TcpStream {
            io: stream.into(),
            drained: Arc::default(),
        }
    }
}

impl TcpStream {
    /// Connects to `addr` (a host name is resolved).
    pub async fn connect<A: smol::net::AsyncToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        Ok(smol::net::TcpStream::connect(addr).await?.into())
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(on)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// Peeks at what the socket holds without waiting: `WouldBlock` when
    /// it holds nothing.
    pub(crate) fn try_peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.get_ref().peek(buf)
    }

    /// Ready when the reactor says bytes (or the end) came in.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_readable(cx)
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.drained.load(Ordering::Relaxed) {
                ready!(self.io.poll_readable(cx))?;
                self.drained.store(false, Ordering::Relaxed);
            }
            match (&mut self.io.get_ref()).read(buf) {
                Ok(n) => {
                    if n > 0 && n < buf.len() {
                        self.drained.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained.store(true, Ordering::Relaxed);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match (&mut self.io.get_ref()).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
            ready!(self.io.poll_writable(cx))?;
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match (&mut self.io.get_ref()).write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
            ready!(self.io.poll_writable(cx))?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.get_ref().shutdown(Shutdown::Write))
    }
}

/// A TCP listener whose connections are [`TcpStream`]s.
#[derive(Debug)]
pub struct TcpListener(smol::net::TcpListener);

impl TcpListener {
    pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        Ok(TcpListener(smol::net::TcpListener::bind(addr).await?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((stream.into(), peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_drained_socket_still_reads_what_comes_later() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            client.write_all(b"one").await.unwrap();
            let mut buf = [0u8; 16];
            let n = server.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"one");
            // The short read marked the socket drained: the next read
            // waits for the reactor, and still gets what follows.
            let reading = smol::spawn({
                let mut server = server.clone();
                async move {
                    let mut buf = [0u8; 16];
                    let n = server.read(&mut buf).await.unwrap();
                    buf[..n].to_vec()
                }
            });
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
            client.write_all(b"two").await.unwrap();
            assert_eq!(reading.await, b"two");
            client.close().await.unwrap();
            assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        });
    }
}
