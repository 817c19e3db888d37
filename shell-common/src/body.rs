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
    #[error("{unread} bytes of bodies sent and not yet read, over the limit of {limit}")]
    OverLimit {
        /// Bytes sent and not read, this piece included, each piece with
        /// [`PIECE_OVERHEAD`].
        unread: u64,
        /// The limit.
        limit: u64,
    },
    /// The channel holds as many pieces as its budget allows. The budget
    /// refuses a piece first, so this cannot happen while every piece is
    /// counted; it is an error rather than a queue growing past its bound.
    #[error("the body's channel is full")]
    Full,
}

/// What one piece costs a [`Budget`] beyond its bytes: the channel's node
/// and the allocation a piece sliced out of a WebSocket message keeps
/// alive. Counted so that a writer sending many tiny pieces cannot hold
/// far more memory than its byte count says.
pub const PIECE_OVERHEAD: u64 = 128;

/// Bytes sent and not yet read, counted across every body that shares the
/// budget (each piece with [`PIECE_OVERHEAD`]), and the most they may
/// reach. A receiver keeps one per gateway connection, so what a gateway
/// makes it hold for its services is bounded whatever the number of
/// requests.
#[derive(Debug, Clone)]
pub struct Budget {
    held: Arc<AtomicU64>,
    limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Budget {
            held: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    /// A budget that never refuses.
    pub fn unlimited() -> Self {
        Budget::new(u64::MAX)
    }

    /// What its bodies hold now, overheads included.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    fn take(&self, cost: u64) -> Result<(), Unsent> {
        let held = self
            .held
            .fetch_add(cost, Ordering::AcqRel)
            .saturating_add(cost);
        if held > self.limit {
            self.release(cost);
            return Err(Unsent::OverLimit {
                unread: held,
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn release(&self, cost: u64) {
        self.held.fetch_sub(cost, Ordering::AcqRel);
    }
}

fn cost(data: &Bytes) -> u64 {
    data.len() as u64 + PIECE_OVERHEAD
}

/// The pieces a channel under `budget` can hold: each holds at least
/// [`PIECE_OVERHEAD`] of it until read. Capped far below what the channel
/// takes, for budgets without a limit.
fn capacity(budget: &Budget) -> usize {
    usize::try_from(budget.limit / PIECE_OVERHEAD)
        .unwrap_or(usize::MAX)
        .min(usize::MAX >> 3)
}

/// The receiving half.
pub struct BodyStream {
    rx: mpsc::Receiver<Result<Bytes, Aborted>>,
    budget: Budget,
    size: Option<u64>,
    ended: bool,
    /// Told how many bytes each piece the reader took had: that is what
    /// reopens the sender's credit window (`flow-control`).
    on_read: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

/// The sending half. Dropping it without [`finish`](Self::finish) ends the
/// body with an error, so a cut-short body can never pass for a whole one.
///
/// The channel holds at most as many pieces as the sender's [`Budget`]
/// allows ([`channel_limited`]), and the end after them; without a limit
/// ([`channel`]) its writer must be bounded otherwise (a credit window).
pub struct BodySender {
    tx: Option<mpsc::Sender<Result<Bytes, Aborted>>>,
    budget: Budget,
}

/// A connected sender and body. `size` is the exact length, when known.
/// The sender has no limit of its own: its writer must be bounded
/// otherwise (a credit window, a body read in order).
pub fn channel(size: Option<u64>) -> (BodySender, BodyStream) {
    channel_limited(size, Budget::unlimited())
}

/// Like [`channel`], and [`BodySender::send`] refuses a piece that would
/// take `budget` over its limit.
pub fn channel_limited(size: Option<u64>, budget: Budget) -> (BodySender, BodyStream) {
    // The channel keeps one more message for its sender beyond its
    // buffer: the body's end, after as many pieces as the budget allows.
    let (tx, rx) = mpsc::channel(capacity(&budget));
    (
        BodySender {
            tx: Some(tx),
            budget: budget.clone(),
        },
        BodyStream {
            rx,
            budget,
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
    budget: Budget,
    on_read: impl Fn(usize) + Send + Sync + 'static,
) -> (BodySender, BodyStream) {
    let (tx, mut rx) = channel_limited(size, budget);
    rx.on_read = Some(Box::new(on_read));
    (tx, rx)
}

impl BodySender {
    /// Sends a piece, unless the reader is gone or the piece would take
    /// the budget over its limit (the piece is then dropped: the caller
    /// ends the body with [`abort`](Self::abort)).
    pub fn send(&mut self, data: Bytes) -> Result<(), Unsent> {
        let Some(tx) = self.tx.as_mut().filter(|tx| !tx.is_closed()) else {
            return Err(Unsent::ReaderGone);
        };
        let cost = cost(&data);
        self.budget.take(cost)?;
        tx.try_send(Ok(data)).map_err(|e| {
            self.budget.release(cost);
            if e.is_full() {
                Unsent::Full
            } else {
                Unsent::ReaderGone
            }
        })
    }

    /// Ends the body normally.
    pub fn finish(mut self) {
        self.tx = None;
    }

    /// Ends the body with an error.
    pub fn abort(mut self, why: impl Into<String>) {
        if let Some(mut tx) = self.tx.take() {
            let _ = tx.try_send(Err(Aborted(why.into())));
        }
    }

    /// True when the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            let _ = tx.try_send(Err(Aborted("the sender went away".into())));
        }
    }
}

impl Drop for BodyStream {
    /// What was sent and never read leaves the budget with the reader: a
    /// shared budget would otherwise shrink for good with every body
    /// dropped unread.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(piece) = self.rx.try_recv() {
            if let Ok(data) = piece {
                self.budget.release(cost(&data));
            }
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
                self.budget.release(cost(&data));
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
    fn a_piece_past_the_budget_is_refused_until_the_reader_takes_some() {
        let budget = Budget::new(2 * PIECE_OVERHEAD + 5);
        let (mut tx, mut rx) = channel_limited(None, budget.clone());
        assert_eq!(tx.send(Bytes::from_static(b"abc")), Ok(()));
        assert_eq!(
            tx.send(Bytes::from_static(b"def")),
            Err(Unsent::OverLimit {
                unread: 2 * PIECE_OVERHEAD + 6,
                limit: 2 * PIECE_OVERHEAD + 5
            })
        );
        assert_eq!(
            budget.held(),
            PIECE_OVERHEAD + 3,
            "a refused piece takes nothing"
        );
        let first = rx.next().now_or_never().flatten().expect("a piece");
        assert_eq!(first.expect("not aborted"), Bytes::from_static(b"abc"));
        assert_eq!(budget.held(), 0);
        assert_eq!(tx.send(Bytes::from_static(b"def")), Ok(()));
        assert_eq!(tx.send(Bytes::from_static(b"gh")), Ok(()));
        assert!(tx.send(Bytes::from_static(b"i")).is_err(), "5 bytes unread");
    }

    #[test]
    fn many_tiny_pieces_count_for_what_they_hold() {
        let budget = Budget::new(10 * PIECE_OVERHEAD);
        let (mut tx, _rx) = channel_limited(None, budget);
        let sent = (0..100)
            .take_while(|_| tx.send(Bytes::from_static(b"x")).is_ok())
            .count();
        assert_eq!(sent, 9, "ten pieces of one byte cost over ten overheads");
    }

    #[test]
    fn bodies_sharing_a_budget_share_its_limit_and_a_dropped_reader_gives_back_its_share() {
        let budget = Budget::new(2 * (PIECE_OVERHEAD + 10));
        let (mut a, a_rx) = channel_limited(None, budget.clone());
        let (mut b, _b_rx) = channel_limited(None, budget.clone());
        assert_eq!(a.send(Bytes::from_static(b"0123456789")), Ok(()));
        assert_eq!(b.send(Bytes::from_static(b"0123456789")), Ok(()));
        assert!(
            b.send(Bytes::from_static(b"x")).is_err(),
            "a's unread piece counts against b"
        );
        drop(a_rx);
        assert_eq!(budget.held(), PIECE_OVERHEAD + 10);
        assert_eq!(b.send(Bytes::from_static(b"x")), Ok(()));
        assert_eq!(
            a.send(Bytes::from_static(b"y")),
            Err(Unsent::ReaderGone),
            "nothing is taken for a reader that is gone"
        );
        assert_eq!(budget.held(), 2 * PIECE_OVERHEAD + 11);
    }

    #[test]
    fn a_channel_full_to_its_budget_still_takes_its_end() {
        let budget = Budget::new(3 * PIECE_OVERHEAD);
        assert_eq!(capacity(&budget), 3);
        let (mut tx, mut rx) = channel_limited(None, budget);
        for _ in 0..3 {
            assert_eq!(tx.send(Bytes::new()), Ok(()));
        }
        assert!(matches!(
            tx.send(Bytes::new()),
            Err(Unsent::OverLimit { .. })
        ));
        tx.abort("cut");
        let read: Vec<_> = std::iter::from_fn(|| rx.next().now_or_never().flatten()).collect();
        assert_eq!(read.len(), 4);
        assert!(matches!(read.last(), Some(Err(Aborted(why))) if why == "cut"));
    }

    #[test]
    fn a_gone_reader_is_told() {
        let (mut tx, rx) = channel(None);
        drop(rx);
        assert_eq!(tx.send(Bytes::from_static(b"a")), Err(Unsent::ReaderGone));
    }
}
