//! One connection shared by clones. async-h1 reads requests and writes
//! responses through clones of its connection; a TCP socket clones, a TLS
//! stream does not, so the clones of a [`SharedIo`] take turns on it
//! behind a lock that is held for one poll, never across an await.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};

/// A stream shared by its clones.
#[derive(Debug)]
pub(crate) struct SharedIo<S>(Arc<Mutex<S>>);

impl<S> Clone for SharedIo<S> {
    fn clone(&self) -> Self {
        SharedIo(self.0.clone())
    }
}

impl<S> SharedIo<S> {
    /// Shares `stream`.
    pub(crate) fn new(stream: S) -> Self {
        SharedIo(Arc::new(Mutex::new(stream)))
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, S>> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("a task panicked while using this connection"))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SharedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.lock()?;
        Pin::new(&mut *s).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SharedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.lock()?;
        Pin::new(&mut *s).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.lock()?;
        Pin::new(&mut *s).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.lock()?;
        Pin::new(&mut *s).poll_close(cx)
    }
}
