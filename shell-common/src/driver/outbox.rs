//! One receiver connection's outgoing queue, held beside the gateway
//! machine: whoever feeds the machine moves its transmits here and wakes
//! the connection's writer, which takes everything queued at once and
//! writes it with one flush.
//!
//! The queue is bounded by pacing, not by refusing: a streamed upload's
//! next piece is not accepted ([`Driver::send_body`] does not resolve)
//! while the queue of the request's connection holds [`HIGH_WATER`] bytes
//! or more, and what else goes here (request heads, whole bodies, credit,
//! pings) is bounded by the machine's in-flight and body limits.
//!
//! [`Driver::send_body`]: super::Driver::send_body

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use anpx_core::WsMessage;

/// Queued bytes at which uploads to the connection wait for its writer.
pub const HIGH_WATER: usize = 1024 * 1024;

/// What a receiver connection's writer is asked to do.
#[derive(Debug)]
pub enum LinkOut {
    /// Send this message.
    Send(WsMessage),
    /// Send a close frame and stop.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Why.
        reason: String,
    },
}

#[derive(Default)]
struct Queue {
    out: VecDeque<LinkOut>,
    bytes: usize,
    waker: Option<Waker>,
    /// The gateway let go of the connection: once the queue is empty the
    /// writer stops.
    detached: bool,
}

/// A receiver connection's queue of messages to write.
#[derive(Default)]
pub struct Outbox(Mutex<Queue>);

/// What [`Outbox::poll_take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Messages were moved out; `was_full`: the queue held
    /// [`HIGH_WATER`] bytes or more, so uploads may be waiting for room.
    Some {
        /// Uploads may wait for the room just made.
        was_full: bool,
    },
    /// Nothing is queued and nothing will be: the writer stops.
    Ended,
}

fn size(out: &LinkOut) -> usize {
    match out {
        LinkOut::Send(WsMessage::Binary(b) | WsMessage::Ping(b) | WsMessage::Pong(b)) => b.len(),
        LinkOut::Send(WsMessage::Text(t)) => t.len(),
        LinkOut::Close { reason, .. } => reason.len(),
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `out`; returns the writer's waker to wake once the caller
    /// let go of its own locks.
    pub(crate) fn push(&self, out: LinkOut) -> Option<Waker> {
        let mut q = self.lock();
        q.bytes += size(&out);
        q.out.push_back(out);
        q.waker.take()
    }

    /// Whether uploads to the connection should wait for its writer.
    pub(crate) fn is_full(&self) -> bool {
        self.lock().bytes >= HIGH_WATER
    }

    /// The gateway let go of the connection: the writer writes what is
    /// queued and stops.
    pub(crate) fn detach(&self) -> Option<Waker> {
        let mut q = self.lock();
        q.detached = true;
        q.waker.take()
    }

    /// Moves everything queued to `into` (the writer's), or waits for
    /// something to be queued.
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut VecDeque<LinkOut>) -> Poll<Taken> {
        let mut q = self.lock();
        if q.out.is_empty() {
            if q.detached {
                return Poll::Ready(Taken::Ended);
            }
            q.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let was_full = q.bytes >= HIGH_WATER;
        q.bytes = 0;
        into.append(&mut q.out);
        Poll::Ready(Taken::Some { was_full })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn takes_everything_then_ends_once_detached() {
        let outbox = Outbox::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut into = VecDeque::new();
        assert_eq!(outbox.poll_take(&mut cx, &mut into), Poll::Pending);
        let big = Bytes::from(vec![0; HIGH_WATER]);
        outbox.push(LinkOut::Send(WsMessage::Binary(big)));
        outbox.push(LinkOut::Send(WsMessage::Text("ping".into())));
        assert!(outbox.is_full());
        assert_eq!(
            outbox.poll_take(&mut cx, &mut into),
            Poll::Ready(Taken::Some { was_full: true })
        );
        assert_eq!(into.len(), 2);
        assert!(!outbox.is_full());
        outbox.detach();
        assert_eq!(
            outbox.poll_take(&mut cx, &mut into),
            Poll::Ready(Taken::Ended)
        );
    }
}
