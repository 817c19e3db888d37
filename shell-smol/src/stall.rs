//! A guard against async-h1's server stalling on a chunked request body.
//!
//! async-h1 decodes a chunked request body itself, and its decoder can
//! return `Pending` without having asked the socket to wake it: when the
//! empty line that ends the body arrives in two reads (`\r`, then `\n`),
//! it sees a partial line and parks. Nothing wakes the reader again, and
//! the upload stalls until the request times out.
//!
//! A connection served through [`Watched`] counts the reads on which the
//! socket itself parked; a body read through [`Guarded`] notices a
//! `Pending` during which the socket did not park, and asks to be polled
//! again at once. Each such retry consumes the bytes that were there, so it
//! cannot spin.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::Stream;

/// A socket that counts the reads on which it parked (returned `Pending`,
/// so it will wake the reader).
#[derive(Debug, Clone)]
pub(crate) struct Watched<S> {
    inner: S,
    parked: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    /// Watches `inner`.
    pub(crate) fn new(inner: S) -> Self {
        Watched {
            inner,
            parked: Arc::default(),
        }
    }

    /// What a body read from this connection is guarded with.
    pub(crate) fn parked(&self) -> Parked {
        Parked(self.parked.clone())
    }
}

/// The count of a [`Watched`] connection's parked reads.
#[derive(Debug, Clone)]
pub(crate) struct Parked(Arc<AtomicU64>);

impl Parked {
    /// Guards a body read from the connection.
    pub(crate) fn guard<B>(&self, body: B) -> Guarded<B> {
        Guarded {
            body,
            parked: self.0.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_pending() {
            self.parked.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// A request body that is polled again when it parks without its socket
/// having parked.
pub(crate) struct Guarded<B> {
    body: B,
    parked: Arc<AtomicU64>,
}

impl<B: Stream + Unpin> Stream for Guarded<B> {
    type Item = B::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<B::Item>> {
        let before = self.parked.load(Ordering::Relaxed);
        let polled = Pin::new(&mut self.body).poll_next(cx);
        if polled.is_pending() && self.parked.load(Ordering::Relaxed) == before {
            cx.waker().wake_by_ref();
        }
        polled
    }
}
