//! What the upstream calls of one gateway connection hand back to its
//! loop. Each request the machine started has one slot of fixed size: its
//! answer (a head or a failure), the next step of a streamed body, the
//! loop's own failure for it, and a count of upload bytes the service read.
//! A slot is in the ready list at most once, and there are never more slots
//! than [`ReceiverConfig::max_in_flight`](anpx_core::ReceiverConfig::max_in_flight),
//! so what waits here is bounded by the structure, whatever the calls do.
//! A slot ends when the loop takes its request's last step or closes it.

use std::collections::VecDeque;

use crate::id_map::IdMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use anpx_core::upstream_failure::{UpstreamCause, UpstreamFailure};
use anpx_core::{RelayStep, RequestId};
use futures_channel::oneshot;

/// One thing for the loop to hand the machine.
pub(super) enum ReplyMsg {
    /// A step of the request's response.
    Step {
        request: RequestId,
        step: RelayStep,
        /// For a [`RelayStep::Piece`]: completed once the piece left for
        /// the gateway (with `flow-control`, once its credit covered it).
        sent: Option<oneshot::Sender<()>>,
    },
    /// The service read this many bytes of the request's upload since the
    /// last report.
    Read { request: RequestId, bytes: usize },
}

/// Why a slot could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{open} replies are open on this connection, its limit")]
pub(super) struct SlotsFull {
    open: usize,
}

/// The loop's side: opens and closes slots, takes what is ready.
pub(super) struct Replies {
    shared: Arc<Mutex<Slots>>,
}

/// A call's side, for one request.
#[derive(Clone)]
pub(super) struct ReplyTx {
    shared: Arc<Mutex<Slots>>,
    request: RequestId,
}

struct Slots {
    slots: IdMap<RequestId, Slot>,
    ready: VecDeque<RequestId>,
    capacity: usize,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    /// The response's head (or its whole) or its failure before a head.
    answer: Option<RelayStep>,
    /// Whether an answer was put: what comes after it goes to `next`.
    answered: bool,
    /// A streamed body's next piece, its end, or its failure. A relay puts
    /// the next only once this one left, so one is all it ever holds.
    next: Option<(RelayStep, Option<oneshot::Sender<()>>)>,
    /// The loop's own failure for the request.
    cut: Option<UpstreamFailure>,
    /// Failed by the loop, or its last step taken: nothing from the call
    /// is taken any more.
    closed: bool,
    /// Upload bytes read and not yet reported: pieces read meanwhile add
    /// to it instead of waiting one by one.
    read: usize,
    /// In `ready`.
    queued: bool,
}

impl Slot {
    fn has_work(&self) -> bool {
        self.answer.is_some() || self.next.is_some() || self.cut.is_some() || self.read > 0
    }

    fn take(&mut self, request: &RequestId) -> Option<ReplyMsg> {
        let step = |step, sent| ReplyMsg::Step {
            request: request.clone(),
            step,
            sent,
        };
        if let Some(answer) = self.answer.take() {
            return Some(step(answer, None));
        }
        if let Some((next, sent)) = self.next.take() {
            return Some(step(next, sent));
        }
        if let Some(failure) = self.cut.take() {
            return Some(step(RelayStep::Failed(failure), None));
        }
        (self.read > 0).then(|| ReplyMsg::Read {
            request: request.clone(),
            bytes: std::mem::take(&mut self.read),
        })
    }
}

fn lock(shared: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    // The slots stay consistent across a panic: every change is one
    // assignment under the lock.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slots {
    /// Puts `request` in the ready list unless it is there or has nothing
    /// ready; `true` when it did.
    fn queue(&mut self, request: &RequestId) -> bool {
        let Some(slot) = self.slots.get_mut(request) else {
            return false;
        };
        if slot.queued || !slot.has_work() {
            return false;
        }
        slot.queued = true;
        self.ready.push_back(request.clone());
        true
    }

    /// [`queue`](Self::queue), and wakes the loop.
    fn ready(&mut self, request: &RequestId) {
        if self.queue(request) {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }
}

impl Replies {
    /// Slots for at most `capacity` requests at once.
    pub(super) fn new(capacity: usize) -> Self {
        Replies {
            shared: Arc::new(Mutex::new(Slots {
                slots: IdMap::default(),
                ready: VecDeque::new(),
                capacity,
                waker: None,
            })),
        }
    }

    /// A slot for `request`, which the machine just started. When every
    /// slot is taken, those of requests `in_flight` says the machine ended
    /// go first: the machine starts no more than `capacity` requests, so
    /// one is then free.
    pub(super) fn open(
        &self,
        request: &RequestId,
        in_flight: impl Fn(&RequestId) -> bool,
    ) -> Result<ReplyTx, SlotsFull> {
        let full = |s: &Slots| s.slots.len() >= s.capacity && !s.slots.contains_key(request);
        let mut s = lock(&self.shared);
        if full(&s) {
            let Slots { slots, ready, .. } = &mut *s;
            slots.retain(|id, _| in_flight(id));
            ready.retain(|id| slots.contains_key(id));
        }
        if full(&s) {
            return Err(SlotsFull {
                open: s.slots.len(),
            });
        }
        s.slots.insert(request.clone(), Slot::default());
        Ok(ReplyTx {
            shared: self.shared.clone(),
            request: request.clone(),
        })
    }

    /// The request ended in the machine (aborted): what its call still
    /// puts is dropped, and tells a relay to stop.
    pub(super) fn close(&self, request: &RequestId) {
        let mut s = lock(&self.shared);
        if s.slots.remove(request).is_some() {
            s.ready.retain(|id| id != request);
        }
    }

    /// The loop fails `request` itself: after what its call already put,
    /// and nothing the call puts later.
    pub(super) fn cut(&self, request: &RequestId, cause: UpstreamCause, message: String) {
        let mut s = lock(&self.shared);
        if let Some(slot) = s.slots.get_mut(request) {
            if !slot.closed {
                slot.closed = true;
                slot.cut = Some(UpstreamFailure::new(cause, message));
                s.ready(request);
            }
        }
    }

    /// The next thing ready, in the order the requests became ready.
    pub(super) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<ReplyMsg> {
        let mut s = lock(&self.shared);
        while let Some(id) = s.ready.pop_front() {
            let Some(slot) = s.slots.get_mut(&id) else {
                continue;
            };
            slot.queued = false;
            let Some(msg) = slot.take(&id) else {
                continue;
            };
            if matches!(&msg, ReplyMsg::Step { step, .. } if step.is_last()) {
                // Nothing the call puts after its last step is taken.
                slot.closed = true;
            }
            if slot.closed && !slot.has_work() {
                // The request's last step is taken, and the count of
                // upload bytes read with it: the slot goes. Kept until
                // `open` found every slot taken, the slots of ended
                // requests held their ids, and with them the frames those
                // were read from, scattered over the heap of an idle
                // receiver (up to `capacity` per connection).
                s.slots.remove(&id);
            } else {
                // The loop is running: it polls again without a wake-up.
                s.queue(&id);
            }
            return Poll::Ready(msg);
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Replies {
    /// The loop is gone: calls still running find their request ended, and
    /// a relay waiting for its piece to leave is told it never will.
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.slots.clear();
        s.ready.clear();
    }
}

impl ReplyTx {
    /// Hands the loop `step` of the response; `false` when the request
    /// ended meanwhile (the call stops).
    pub(super) fn put(&self, step: RelayStep, sent: Option<oneshot::Sender<()>>) -> bool {
        let mut s = lock(&self.shared);
        let Some(slot) = s.slots.get_mut(&self.request) else {
            return false;
        };
        if slot.closed {
            return false;
        }
        let placed = match step {
            RelayStep::Whole { .. } | RelayStep::Head(_) | RelayStep::Failed(_)
                if !slot.answered =>
            {
                slot.answered = true;
                slot.answer = Some(step);
                true
            }
            RelayStep::Piece(_) | RelayStep::End | RelayStep::Failed(_)
                if slot.answered && slot.next.is_none() =>
            {
                slot.next = Some((step, sent));
                true
            }
            _ => false,
        };
        if !placed {
            // A reply out of order cannot happen through `Reply`; should it,
            // the request fails rather than the loop holding more.
            tracing::error!(request = %self.request, "reply out of order: the request fails");
            slot.closed = true;
            slot.cut = Some(UpstreamFailure::new(
                UpstreamCause::Failed,
                "receiver error: reply out of order",
            ));
        }
        s.ready(&self.request);
        placed
    }

    /// The service read `bytes` of the request's upload.
    pub(super) fn read(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut s = lock(&self.shared);
        if let Some(slot) = s.slots.get_mut(&self.request) {
            slot.read = slot.read.saturating_add(bytes);
            s.ready(&self.request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::{ResponseBody, ResponseHead};

    fn poll(replies: &Replies) -> Option<ReplyMsg> {
        let waker = futures_util::task::noop_waker_ref();
        match replies.poll_next(&mut Context::from_waker(waker)) {
            Poll::Ready(m) => Some(m),
            Poll::Pending => None,
        }
    }

    fn id(s: &str) -> RequestId {
        RequestId::from(s)
    }

    #[test]
    fn a_request_holds_one_answer_one_next_step_and_a_count_of_reads() {
        let replies = Replies::new(2);
        let tx = replies.open(&id("a"), |_| true).unwrap();
        assert!(tx.put(RelayStep::Head(ResponseHead::new(200)), None));
        tx.read(3);
        tx.read(4);
        let (sent, _rx) = oneshot::channel();
        assert!(tx.put(RelayStep::Piece("x".into()), Some(sent)));
        assert!(
            !tx.put(RelayStep::Piece("y".into()), None),
            "a second piece before the first was taken is refused"
        );
        let steps: Vec<ReplyMsg> = std::iter::from_fn(|| poll(&replies)).collect();
        assert!(matches!(
            &steps[0],
            ReplyMsg::Step {
                step: RelayStep::Head(_),
                ..
            }
        ));
        assert!(matches!(
            &steps[1],
            ReplyMsg::Step {
                step: RelayStep::Piece(_),
                sent: Some(_),
                ..
            }
        ));
        assert!(
            matches!(&steps[2], ReplyMsg::Step { step: RelayStep::Failed(f), .. } if f.message.contains("out of order")),
            "the request fails instead"
        );
        assert!(matches!(&steps[3], ReplyMsg::Read { bytes: 7, .. }));
        assert_eq!(steps.len(), 4);
        assert!(
            !tx.put(RelayStep::End, None),
            "nothing is taken after a failure"
        );
    }

    #[test]
    fn the_loops_own_failure_comes_after_what_the_call_put_and_ends_it() {
        let replies = Replies::new(1);
        let tx = replies.open(&id("a"), |_| true).unwrap();
        assert!(tx.put(RelayStep::Head(ResponseHead::new(200)), None));
        replies.cut(&id("a"), UpstreamCause::Failed, "cut".into());
        assert!(!tx.put(RelayStep::End, None));
        assert!(matches!(
            poll(&replies),
            Some(ReplyMsg::Step {
                step: RelayStep::Head(_),
                ..
            })
        ));
        assert!(matches!(
            poll(&replies),
            Some(ReplyMsg::Step {
                step: RelayStep::Failed(_),
                ..
            })
        ));
        assert!(poll(&replies).is_none());
    }

    #[test]
    fn a_relay_waiting_on_a_loop_that_ended_is_released() {
        let replies = Replies::new(1);
        let tx = replies.open(&id("a"), |_| true).unwrap();
        assert!(tx.put(RelayStep::Head(ResponseHead::new(200)), None));
        let (sent, mut left) = oneshot::channel();
        assert!(tx.put(RelayStep::Piece("x".into()), Some(sent)));
        drop(replies);
        assert!(left.try_recv().is_err(), "the piece never leaves");
        assert!(!tx.put(RelayStep::End, None));
    }

    #[test]
    fn a_slot_ends_with_the_last_step_taken() {
        let replies = Replies::new(4);
        let whole = replies.open(&id("whole"), |_| true).unwrap();
        let streamed = replies.open(&id("streamed"), |_| true).unwrap();
        let failed = replies.open(&id("failed"), |_| true).unwrap();
        let body = ResponseBody::Empty;
        let head = ResponseHead::new(200);
        assert!(whole.put(RelayStep::Whole { head, body }, None));
        assert!(streamed.put(RelayStep::Head(ResponseHead::new(200)), None));
        let failure = UpstreamFailure::new(UpstreamCause::Failed, "gone");
        assert!(failed.put(RelayStep::Failed(failure), None));
        assert_eq!(std::iter::from_fn(|| poll(&replies)).count(), 3);
        let open = || lock(&replies.shared).slots.len();
        assert_eq!(open(), 1, "only the streamed response is open");
        assert!(!whole.put(RelayStep::End, None), "whole: ended");
        assert!(streamed.put(RelayStep::Piece("x".into()), None));
        assert!(poll(&replies).is_some());
        assert!(streamed.put(RelayStep::End, None));
        assert!(poll(&replies).is_some());
        assert_eq!(open(), 0);
        assert!(poll(&replies).is_none());
    }

    #[test]
    fn slots_are_bounded_and_those_of_ended_requests_make_room() {
        let replies = Replies::new(2);
        let a = replies.open(&id("a"), |_| true).unwrap();
        let _b = replies.open(&id("b"), |_| true).unwrap();
        assert!(replies.open(&id("c"), |_| true).is_err(), "all in flight");
        let whole = RelayStep::Whole {
            head: ResponseHead::new(200),
            body: ResponseBody::Empty,
        };
        assert!(a.put(whole, None));
        let c = replies.open(&id("c"), |r| *r != id("a")).unwrap();
        assert!(!a.put(RelayStep::End, None), "a's slot is gone");
        assert!(poll(&replies).is_none(), "with what waited in it");
        replies.close(&id("c"));
        assert!(!c.put(RelayStep::End, None));
    }
}
