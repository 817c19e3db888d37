//! A streaming HTTP body fed through a channel: the request bodies the
//! receiver streams to its upstream, as an [`http_body::Body`] over the
//! shared [`shell_common::body`] channel.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use shell_common::body::BodyStream;

pub use shell_common::body::{Aborted, BodySender};
pub use shell_common::BoxError;

/// The receiving half: an [`http_body::Body`].
pub struct ChannelBody {
    inner: BodyStream,
    on_abandon: Option<Box<dyn FnOnce() + Send>>,
}

/// A connected sender and body. `size` is the exact length, when known.
pub fn channel(size: Option<u64>) -> (BodySender, ChannelBody) {
    let (tx, rx) = shell_common::body::channel(size);
    (tx, ChannelBody::from(rx))
}

impl From<BodyStream> for ChannelBody {
    fn from(inner: BodyStream) -> Self {
        ChannelBody {
            inner,
            on_abandon: None,
        }
    }
}

impl ChannelBody {
    /// A body with no bytes, already ended.
    pub fn empty() -> Self {
        let (sender, body) = channel(Some(0));
        drop(sender);
        body
    }

    /// Runs `f` if the body is dropped before its end was read: the reader
    /// (the HTTP client or upstream) went away.
    pub fn on_abandon(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_abandon = Some(Box::new(f));
        self
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        if !self.inner.is_end() {
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
        self.inner
            .poll_next_unpin(cx)
            .map(|piece| piece.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match self.inner.size() {
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
        let (mut tx, body) = channel(None);
        tx.send(Bytes::from_static(b"ab"))
            .expect("the reader is there");
        tx.send(Bytes::from_static(b"cd"))
            .expect("the reader is there");
        tx.finish();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn dropped_sender_is_an_error_not_an_end() {
        let (mut tx, body) = channel(None);
        tx.send(Bytes::from_static(b"ab"))
            .expect("the reader is there");
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
