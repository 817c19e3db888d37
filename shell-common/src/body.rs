//! A streaming body fed through a channel: the request bodies a receiver
//! streams to its upstream. Each shell wraps [`BodyStream`] in its HTTP
//! library's body type.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};

/// The body stopped before it was complete.
#[derive(Debug, Clone, thiserror::Error)]
#[error("body aborted: {0}")]
pub struct Aborted(pub String);

/// Why a piece was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsent {
    /// The reader went away.
    #[error("the body's reader went away")]
    ReaderGone,
    /// The piece would leave more than the sender's limit sent and not yet
    /// read: the reader does not keep up with the writer.
    #[error("{unread} bytes of the body sent and not yet read, over the limit of {limit}")]
    OverLimit {
        /// Bytes sent and not read, this piece included.
        unread: u64,
        /// The limit.
        limit: u64,
    },
}

/// The receiving half.
pub struct BodyStream {
    rx: mpsc::UnboundedReceiver<Result<Bytes, Aborted>>,
    /// Bytes sent and not yet read, shared with the sender.
    unread: Arc<AtomicU64>,
    size: Option<u64>,
    ended: bool,
    /// Told how many bytes each piece the reader took had: that is what
    /// reopens the sender's credit window (`flow-control`).
    on_read: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

/// The sending half. Dropping it without [`finish`](Self::finish) ends the
/// body with an error, so a cut-short body can never pass for a whole one.
///
/// The channel itself is unbounded; what bounds it is the sender's limit on
/// bytes sent and not yet read ([`channel_limited`]), or, without one, the
/// writer's own credit window.
pub struct BodySender {
    tx: Option<mpsc::UnboundedSender<Result<Bytes, Aborted>>>,
    unread: Arc<AtomicU64>,
    limit: u64,
}

/// A connected sender and body. `size` is the exact length, when known.
/// The sender has no limit of its own: its writer must be bounded
/// otherwise (a credit window, a body read in order).
pub fn channel(size: Option<u64>) -> (BodySender, BodyStream) {
    channel_limited(size, u64::MAX)
}

/// Like [`channel`], and [`BodySender::send`] refuses a piece that would
/// leave more than `limit` bytes sent and not yet read.
pub fn channel_limited(size: Option<u64>, limit: u64) -> (BodySender, BodyStream) {
    let (tx, rx) = mpsc::unbounded();
    let unread = Arc::new(AtomicU64::new(0));
    (
        BodySender {
            tx: Some(tx),
            unread: unread.clone(),
            limit,
        },
        BodyStream {
            rx,
            unread,
            size,
            ended: false,
            on_read: None,
        },
    )
}

/// Like [`channel_limited`], and `on_read(n)` runs each time the reader
/// takes a piece of `n` bytes.
pub fn channel_reporting(
    size: Option<u64>,
    limit: u64,
    on_read: impl Fn(usize) + Send + Sync + 'static,
) -> (BodySender, BodyStream) {
    let (tx, mut rx) = channel_limited(size, limit);
    rx.on_read = Some(Box::new(on_read));
    (tx, rx)
}

impl BodySender {
    /// Sends a piece, unless the reader is gone or the piece would leave
    /// more than the limit unread (the piece is then dropped: the caller
    /// ends the body with [`abort`](Self::abort)).
    pub fn send(&self, data: Bytes) -> Result<(), Unsent> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(Unsent::ReaderGone);
        };
        let len = data.len() as u64;
        let unread = self.unread.fetch_add(len, Ordering::AcqRel) + len;
        if unread > self.limit {
            self.unread.fetch_sub(len, Ordering::AcqRel);
            return Err(Unsent::OverLimit {
                unread,
                limit: self.limit,
            });
        }
        tx.unbounded_send(Ok(data)).map_err(|_| Unsent::ReaderGone)
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
                self.unread.fetch_sub(data.len() as u64, Ordering::AcqRel);
                if let Some(on_read) = &self.on_read {
                    on_read(data.len());
                }
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_piece_past_the_unread_limit_is_refused_until_the_reader_takes_some() {
        let (tx, mut rx) = channel_limited(None, 5);
        assert_eq!(tx.send(Bytes::from_static(b"abc")), Ok(()));
        assert_eq!(
            tx.send(Bytes::from_static(b"def")),
            Err(Unsent::OverLimit {
                unread: 6,
                limit: 5
            })
        );
        let first = rx.next().now_or_never().flatten().expect("a piece");
        assert_eq!(first.expect("not aborted"), Bytes::from_static(b"abc"));
        assert_eq!(tx.send(Bytes::from_static(b"def")), Ok(()));
        assert_eq!(tx.send(Bytes::from_static(b"gh")), Ok(()));
        assert!(tx.send(Bytes::from_static(b"i")).is_err(), "5 unread");
    }

    #[test]
    fn a_gone_reader_is_told() {
        let (tx, rx) = channel(None);
        drop(rx);
        assert_eq!(tx.send(Bytes::from_static(b"a")), Err(Unsent::ReaderGone));
    }
}
