//! A guard against async-h1's server stalling on a chunked request body.
//!
//! async-h1 decodes a chunked request body itself, and its decoder can
//! return `Pending` without having asked the socket to wake it: when the
//! empty line that ends the body arrives in two reads (`\r`, then `\n`),
//! it sees a partial line and parks. Nothing wakes the reader again, and
//! the upload stalls until the request times out.
//!
//! A connection counts the reads on which the socket itself parked
//! ([`Parked`]); a body read through [`Guarded`] notices a
//! `Pending` during which the socket did not park, and asks to be polled
//! again at once. Each such retry consumes the bytes that were there, so it
//! cannot spin.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;

/// The count of a connection's parked reads: the connection bumps it
/// ([`crate::edge::Replay`]), bodies read from it are guarded with it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parked(Arc<AtomicU64>);

impl Parked {
    /// The connection's read returned `Pending` (so it will wake the reader).
    pub(crate) fn parked(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Guards a body read from the connection.
    pub(crate) fn guard<B>(&self, body: B) -> Guarded<B> {
        Guarded {
            body,
            parked: self.0.clone(),
        }
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
