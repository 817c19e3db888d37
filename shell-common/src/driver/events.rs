//! One public request's response events, held beside the gateway machine.
//!
//! Whoever feeds the machine (a receiver connection's reader, the timer,
//! a cluster request's loop) pushes the events the machine emits here and
//! wakes the public connection's task directly: there is no task in
//! between. What the queue can hold is bounded by the machine's buffer
//! budgets (`anpx_core::Gateway` counts every body byte it hands on until
//! the shell reports it read), not by this type.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use anpx_core::ResponseEvent;
use futures_util::Stream;

#[derive(Default)]
struct Slot {
    queue: VecDeque<ResponseEvent>,
    /// The public connection's task, when it waits for an event.
    waker: Option<Waker>,
    /// Live [`EventTx`]s; none left ends the stream after what is queued.
    senders: usize,
    /// The [`EventRx`] was dropped: nothing is taken any more.
    gone: bool,
}

type Shared = Arc<Mutex<Slot>>;

fn lock(slot: &Shared) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new request's event queue: the sending end goes to the gateway with
/// the request, the receiving end stays with the public connection.
pub fn events() -> (EventTx, EventRx) {
    let slot = Arc::new(Mutex::new(Slot {
        senders: 1,
        ..Slot::default()
    }));
    (EventTx(slot.clone()), EventRx(slot))
}

/// The sending end of one request's response events.
pub struct EventTx(Shared);

/// The public connection is gone: the event was not taken.
#[derive(Debug, thiserror::Error)]
#[error("the request's public connection is gone")]
pub struct Gone(pub ResponseEvent);

impl EventTx {
    /// Queues `event` and wakes the public connection.
    pub fn send(&self, event: ResponseEvent) -> Result<(), Gone> {
        let waker = self.push(event)?;
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues `event`, returning the waker to wake once the caller let go
    /// of its own locks.
    pub(crate) fn push(&self, event: ResponseEvent) -> Result<Option<Waker>, Gone> {
        let mut slot = lock(&self.0);
        if slot.gone {
            return Err(Gone(event));
        }
        slot.queue.push_back(event);
        Ok(slot.waker.take())
    }

    /// Whether the public connection let go of the request.
    pub fn is_closed(&self) -> bool {
        lock(&self.0).gone
    }
}

impl Clone for EventTx {
    fn clone(&self) -> Self {
        lock(&self.0).senders += 1;
        EventTx(self.0.clone())
    }
}

impl Drop for EventTx {
    fn drop(&mut self) {
        let waker = {
            let mut slot = lock(&self.0);
            slot.senders -= 1;
            if slot.senders == 0 {
                slot.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The receiving end: the request's response events in order, ending when
/// every sender is gone.
pub struct EventRx(Shared);

impl Stream for EventRx {
    type Item = ResponseEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ResponseEvent>> {
        let mut slot = lock(&self.0);
        if let Some(event) = slot.queue.pop_front() {
            return Poll::Ready(Some(event));
        }
        if slot.senders == 0 {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for EventRx {
    fn drop(&mut self) {
        let mut slot = lock(&self.0);
        slot.gone = true;
        slot.queue.clear();
        slot.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn events_arrive_in_order_and_end_with_the_last_sender() {
        let (tx, mut rx) = events();
        let second = tx.clone();
        tx.send(ResponseEvent::End).unwrap();
        drop(tx);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            rx.poll_next_unpin(&mut cx),
            Poll::Ready(Some(ResponseEvent::End))
        );
        assert_eq!(rx.poll_next_unpin(&mut cx), Poll::Pending);
        drop(second);
        assert_eq!(rx.poll_next_unpin(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_dropped_receiver_refuses_events() {
        let (tx, rx) = events();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert!(tx.send(ResponseEvent::End).is_err());
    }
}
