//! A streaming HTTP body fed through a channel, used both for the responses
//! the gateway streams to public clients and for the request bodies the
//! receiver streams to its upstream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Errors that can end a body early.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body stopped before it was complete.
#[derive(Debug, Clone, thiserror::Error)]
#[error("body aborted: {0}")]
pub struct Aborted(pub String);

/// The receiving half: an [`http_body::Body`].
pub struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, Aborted>>,
    size: Option<u64>,
    on_abandon: Option<Box<dyn FnOnce() + Send>>,
    ended: bool,
}

/// The sending half. Dropping it without [`finish`](Self::finish) ends the
/// body with an error, so a cut-short body can never pass for a whole one.
pub struct BodySender {
    tx: Option<mpsc::UnboundedSender<Result<Bytes, Aborted>>>,
}

/// A connected sender and body. `size` is the exact length, when known.
pub fn channel(size: Option<u64>) -> (BodySender, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        BodySender { tx: Some(tx) },
        ChannelBody {
            rx,
            size,
            on_abandon: None,
            ended: false,
        },
    )
}

impl ChannelBody {
    /// Runs `f` if the body is dropped before its end was read: the reader
    /// (the HTTP client or upstream) went away.
    pub fn on_abandon(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_abandon = Some(Box::new(f));
        self
    }
}

impl BodySender {
    /// Sends a piece; false when the reader is gone.
    pub fn send(&self, data: Bytes) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(Ok(data)).is_ok())
    }

    /// Ends the body normally.
    pub fn finish(mut self) {
        self.tx = None;
    }

    /// Ends the body with an error.
    pub fn abort(mut self, why: impl Into<String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(Aborted(why.into())));
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
            let _ = tx.send(Err(Aborted("the sender went away".into())));
        }
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        if !self.ended {
            if let Some(f) = self.on_abandon.take() {
                f();
            }
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.size == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.size {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn finished_body_reads_whole() {
        let (tx, body) = channel(None);
        tx.send(Bytes::from_static(b"ab"));
        tx.send(Bytes::from_static(b"cd"));
        tx.finish();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn dropped_sender_is_an_error_not_an_end() {
        let (tx, body) = channel(None);
        tx.send(Bytes::from_static(b"ab"));
        drop(tx);
        assert!(body.collect().await.is_err());
    }

    #[tokio::test]
    async fn abandoning_the_body_runs_the_hook() {
        let (tx, body) = channel(None);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let body = body.on_abandon(move || {
            let _ = done_tx.send(());
        });
        drop(body);
        assert!(done_rx.await.is_ok());
        assert!(tx.is_closed());
    }
}
