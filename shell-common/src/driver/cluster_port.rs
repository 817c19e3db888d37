//! The gateway machine's bus work waiting for the cluster's bus task.
//!
//! Of the membership's work ([`ClusterOutput`]) what waits is what the bus
//! must still be told, not a history: a newer announcement replaces one
//! not yet published, and a join and a leave of the same service URL
//! cancel out. So however long the bus task is stuck (a NATS publish that
//! does not return), it holds at most one announcement and one entry per
//! local route. The forwarded requests' messages ([`Publish`]) wait in
//! order: each request's credit window bounds what it can have waiting
//! (its body pieces, and the credit and cancels its response draws); the
//! served requests' answers ([`Answer`]) likewise, each bounded by the
//! forwarding gateway's credit.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use anpx_core::cluster::{ClusterOutput, Transmit, WireMessage};
use anpx_core::{RequestId, ServiceUrl};

/// A forwarded request's message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The forwarded request: its reply inbox is the reply subject of its
    /// start.
    pub request: RequestId,
    /// The route it was sent to: its start goes on this route's subject.
    pub route: ServiceUrl,
    /// Where and what.
    pub transmit: Transmit,
}

/// An answer of a request another gateway forwarded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The served request, once started (`None` for a refusal).
    pub request: Option<RequestId>,
    /// The forwarding gateway's reply inbox.
    pub to: String,
    /// What.
    pub message: WireMessage,
}

/// What the bus task has to do, taken whole.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BusWork {
    /// The membership's work, in order.
    pub membership: Vec<ClusterOutput>,
    /// Forwarded requests' messages, in order.
    pub publishes: Vec<Publish>,
    /// Served requests' answers, in order.
    pub answers: Vec<Answer>,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct ClusterPort {
    pending: VecDeque<ClusterOutput>,
    publishes: VecDeque<Publish>,
    answers: VecDeque<Answer>,
    waker: Option<Waker>,
}

impl ClusterPort {
    /// Queues `out` (a [`ClusterOutput::Forgotten`] is the driver's to log,
    /// not the bus's, and is not queued). Returns the bus task's waker to
    /// wake once the lock is let go.
    pub(super) fn push(&mut self, out: ClusterOutput) -> Option<Waker> {
        match &out {
            ClusterOutput::Announce(_) => {
                self.pending
                    .retain(|o| !matches!(o, ClusterOutput::Announce(_)));
            }
            ClusterOutput::Join(url) | ClusterOutput::Leave(url) => {
                let before = self.pending.len();
                self.pending.retain(
                    |o| !matches!(o, ClusterOutput::Join(u) | ClusterOutput::Leave(u) if u == url),
                );
                if self.pending.len() < before {
                    // The opposite was still waiting: the bus is already
                    // where this one would take it.
                    return None;
                }
            }
            ClusterOutput::Forgotten(_) => return None,
        }
        self.pending.push_back(out);
        self.waker.take()
    }

    /// Queues a forwarded request's message. Returns the bus task's waker
    /// to wake once the lock is let go.
    pub(super) fn publish(&mut self, publish: Publish) -> Option<Waker> {
        self.publishes.push_back(publish);
        self.waker.take()
    }

    /// Queues a served request's answer. Returns the bus task's waker to
    /// wake once the lock is let go.
    pub(super) fn answer(&mut self, answer: Answer) -> Option<Waker> {
        self.answers.push_back(answer);
        self.waker.take()
    }

    /// Everything waiting, or `Pending` with the task's waker kept.
    pub(super) fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<BusWork> {
        if self.pending.is_empty() && self.publishes.is_empty() && self.answers.is_empty() {
            self.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(self.take())
        }
    }

    /// Everything waiting, at once.
    pub(super) fn take(&mut self) -> BusWork {
        BusWork {
            membership: self.pending.drain(..).collect(),
            publishes: self.publishes.drain(..).collect(),
            answers: self.answers.drain(..).collect(),
        }
    }

    /// The bus task's waker, for a shutdown that must wake it.
    pub(super) fn waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::counting_waker;
    use anpx_core::cluster::Announcement;
    use anpx_core::ServiceUrl;

    fn url(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    #[test]
    fn what_waits_is_what_the_bus_must_still_be_told() {
        let mut port = ClusterPort::default();
        let (woken, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(port.poll_take(&mut cx).is_pending());
        for round in 0..100 {
            let services = vec![url("a.com")];
            // A route that comes and goes each round while the bus task is
            // stuck: it is joined then left, which the bus need not hear.
            let flicker = if round % 2 == 0 {
                ClusterOutput::Join(url("b.com"))
            } else {
                ClusterOutput::Leave(url("b.com"))
            };
            if let Some(w) = port.push(flicker) {
                w.wake();
            }
            if let Some(w) = port.push(ClusterOutput::Announce(Announcement::new("me", services))) {
                w.wake();
            }
            assert!(port
                .push(ClusterOutput::Forgotten("other".into()))
                .is_none());
        }
        assert_eq!(woken.get(), 1, "woken once, when the first work came");
        let Poll::Ready(taken) = port.poll_take(&mut cx) else {
            panic!("work was waiting");
        };
        assert_eq!(
            taken.membership,
            vec![ClusterOutput::Announce(Announcement::new(
                "me",
                vec![url("a.com")]
            ))],
            "one announcement, the newest; the join and leave of b.com cancelled out"
        );
        assert_eq!(port.take(), BusWork::default());
    }
}
