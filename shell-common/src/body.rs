//! A streaming body fed through a channel: the request bodies a receiver
//! streams to its upstream. Each shell wraps [`BodyStream`] in its HTTP
//! library's body type.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};

/// The body stopped before it was complete.
#[derive(Debug, Clone, thiserror::Error)]
#[error("body aborted: {0}")]
pub struct Aborted(pub String);

/// The receiving half.
pub struct BodyStream {
    rx: mpsc::UnboundedReceiver<Result<Bytes, Aborted>>,
    size: Option<u64>,
    ended: bool,
    /// Told how many bytes each piece the reader took had: that is what
    /// reopens the sender's credit window (`flow-control`).
    on_read: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

/// The sending half. Dropping it without [`finish`](Self::finish) ends the
/// body with an error, so a cut-short body can never pass for a whole one.
pub struct BodySender {
    tx: Option<mpsc::UnboundedSender<Result<Bytes, Aborted>>>,
}

/// A connected sender and body. `size` is the exact length, when known.
pub fn channel(size: Option<u64>) -> (BodySender, BodyStream) {
    let (tx, rx) = mpsc::unbounded();
    (
        BodySender { tx: Some(tx) },
        BodyStream {
            rx,
            size,
            ended: false,
            on_read: None,
        },
    )
}

/// Like [`channel`], and `on_read(n)` runs each time the reader takes a
/// piece of `n` bytes.
pub fn channel_reporting(
    size: Option<u64>,
    on_read: impl Fn(usize) + Send + Sync + 'static,
) -> (BodySender, BodyStream) {
    let (tx, mut rx) = channel(size);
    rx.on_read = Some(Box::new(on_read));
    (tx, rx)
}

impl BodySender {
    /// Sends a piece; false when the reader is gone.
    pub fn send(&self, data: Bytes) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.unbounded_send(Ok(data)).is_ok())
    }

    /// Ends the body normally.
    pub fn finish(mut self) {
        self.tx = None;
    }

    /// Ends the body with an error.
    pub fn abort(mut self, why: impl Into<String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.unbounded_send(Err(Aborted(why.into())));
        }
    }

    /// True when the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.unbounded_send(Err(Aborted("the sender went away".into())));
        }
    }
}

impl BodyStream {
    /// The exact length, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// True once the end (or an error) was read, or for an empty body.
    pub fn is_end(&self) -> bool {
        self.ended || self.size == Some(0)
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, Aborted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(data))) => {
                if let Some(on_read) = &self.on_read {
                    on_read(data.len());
                }
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
