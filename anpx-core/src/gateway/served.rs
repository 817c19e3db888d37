//! Requests another gateway of the cluster forwarded here. Each is a
//! local request on this gateway's own receivers with a [`Serving`]
//! machine in front of it, both held by the gateway machine: the local
//! request's response events go to its `Serving` instead of out to a
//! client, the forwarding gateway's messages come in with
//! [`Gateway::served_origin`], and what goes back comes out as
//! [`Output::Answer`].
//!
//! The upload's pace: a piece from the forwarding gateway is credited back
//! only once the local request took it, that is once the receiver's credit
//! covered it and its connection's queue has room ([`Gateway::link_backlog`]),
//! so a slow receiver slows the forwarding gateway's upload instead of
//! piling it up here.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::cluster::{Local, Serving, Stall, WireError, WireMessage};
use crate::message::RequestId;

use super::{rearm, Gateway, LinkId, Output, ResponseEvent, Timer};

/// A served request as the gateway machine holds it.
#[derive(Debug)]
pub(super) struct Served {
    machine: Serving,
    /// The forwarding gateway's reply inbox: where every answer goes.
    reply: String,
    /// Local response events its `Serving` does not take yet.
    held: VecDeque<ResponseEvent>,
    /// A piece of the upload went to the local request and waits for the
    /// receiver's credit or its connection's room before it counts as
    /// taken.
    passing: bool,
    /// The machine's stall check, as armed in the gateway's timers.
    armed: Option<Instant>,
}

impl Gateway {
    /// A start message another gateway published on the subject of a
    /// service URL this gateway joined, with `reply` its reply subject. It
    /// starts on this gateway's own receivers only (a request never
    /// travels twice). Its answers come out as [`Output::Answer`]: first
    /// the acceptance naming this gateway's inbox for the request,
    /// `<inbox_prefix>.<request id>`, where the forwarding gateway's
    /// messages must then be taken and given to
    /// [`served_origin`](Self::served_origin); or, refused, one failure.
    /// `None` when `start` is not a start message.
    pub fn serve_forwarded(
        &mut self,
        now: Instant,
        start: WireMessage,
        reply: String,
        inbox_prefix: &str,
    ) -> Option<RequestId> {
        self.tick(now);
        let WireMessage::Start {
            host,
            head,
            body,
            payload,
        } = start
        else {
            return None;
        };
        let body = Serving::request_body(body, payload);
        let id = match self.start_request_from(now, None, &host, head, body) {
            Ok(id) => id,
            Err(reject) => {
                self.out.push_back(Output::Answer {
                    request: None,
                    to: reply,
                    message: Serving::refused(&reject),
                });
                return None;
            }
        };
        let node = self
            .membership
            .as_ref()
            .map(|m| m.book().me().to_owned())
            .unwrap_or_default();
        let machine = Serving::new(
            now,
            node,
            format!("{inbox_prefix}.{}", id.as_str()),
            self.config.request_timeout,
            self.config.websocket_idle_timeout,
        );
        self.served.insert(
            id.clone(),
            Served {
                machine,
                reply,
                held: VecDeque::new(),
                passing: false,
                armed: None,
            },
        );
        // A response the local start already made (an unencodable head)
        // waits in the outputs: take it back to the `Serving`.
        self.take_back_responses(&id);
        self.pump_served(&id);
        Some(id)
    }

    /// A message from the forwarding gateway on served request `request`'s
    /// inbox; `None` when the subscription ended. A message that does not
    /// decode is ignored and its error returned, for the log.
    pub fn served_origin(
        &mut self,
        now: Instant,
        request: &RequestId,
        payload: Option<Bytes>,
    ) -> Result<(), WireError> {
        self.tick(now);
        let Some(s) = self.served.get_mut(request) else {
            return Ok(());
        };
        let decoded = s.machine.handle_origin(now, payload);
        self.pump_served(request);
        decoded
    }

    /// The served requests' inboxes are gone (the bus connection ended):
    /// every served request is cancelled.
    pub fn served_origins_ended(&mut self, now: Instant) {
        let ids: Vec<RequestId> = self.served.keys().cloned().collect();
        for id in ids {
            let _ = self.served_origin(now, &id, None);
        }
    }

    /// An answer of served request `request` could not be published: the
    /// bus is gone, and so is the request.
    pub fn served_publish_failed(&mut self, _now: Instant, request: &RequestId) {
        if let Some(s) = self.served.get_mut(request) {
            s.machine.handle_publish_failed();
            self.pump_served(request);
        }
    }

    /// Requests other gateways forwarded here and not yet ended.
    pub fn served_in_flight(&self) -> usize {
        self.served.len()
    }

    /// Whether receiver connection `link`'s queue of frames to write is
    /// full (`true`) or has room again (`false`), as the shell's writer
    /// sees it. Uploads on a full connection wait, public and served
    /// alike ([`upload_waits`](Self::upload_waits)); once it has room,
    /// [`Output::Writable`] names the public ones that waited.
    pub fn link_backlog(&mut self, now: Instant, link: LinkId, full: bool) {
        self.tick(now);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.backlogged = full;
        if full {
            return;
        }
        // Only this connection's requests can be waiting for its room;
        // sorted, so the outputs come in the same order on every run.
        let mut waiting: Vec<RequestId> = l.requests.iter().cloned().collect();
        waiting.sort_unstable();
        for id in waiting {
            if let Some(p) = self.pending.get_mut(&id) {
                if std::mem::take(&mut p.room_wait) {
                    p.writable_out = true;
                    self.out.push_back(Output::Writable {
                        request: id.clone(),
                    });
                }
            }
            if self.served.get(&id).is_some_and(|s| s.passing) {
                self.pump_served(&id);
            }
        }
    }

    /// Whether `request` is served for another gateway: its response
    /// events go to its `Serving`.
    pub(super) fn is_served(&self, request: &RequestId) -> bool {
        self.served.contains_key(request)
    }

    /// A local response event of a served request, held for its `Serving`.
    pub(super) fn hold_served(&mut self, request: &RequestId, event: ResponseEvent) {
        if let Some(s) = self.served.get_mut(request) {
            s.held.push_back(event);
            self.served_dirty.insert(request.clone());
        }
    }

    /// The local request's upload may go on: its `Serving` may count the
    /// piece it passed as taken.
    pub(super) fn served_writable(&mut self, request: &RequestId) {
        if self.served.contains_key(request) {
            self.served_dirty.insert(request.clone());
        }
    }

    /// Runs every served request that has something new.
    pub(super) fn pump_dirty_served(&mut self) {
        while let Some(id) = self.served_dirty.pop_first() {
            self.pump_served(&id);
        }
    }

    /// A served request's stall check came due.
    pub(super) fn served_timeout(&mut self, now: Instant, request: &RequestId) {
        let Some(s) = self.served.get_mut(request) else {
            return;
        };
        s.armed = None;
        // A stall cancels the local request (the cancel is counted there);
        // the stall itself is what tells an operator the forwarding
        // gateway is gone or stuck.
        if s.machine.handle_timeout(now) == Some(Stall::NoCredit) {
            self.totals.served_stalled += 1;
        }
        self.pump_served(request);
    }

    /// Responses already in the outputs for `request` go back to its
    /// `Serving`.
    fn take_back_responses(&mut self, request: &RequestId) {
        let mut kept = VecDeque::with_capacity(self.out.len());
        for out in self.out.drain(..) {
            match out {
                Output::Response { request: r, event } if &r == request => {
                    if let Some(s) = self.served.get_mut(request) {
                        s.held.push_back(event);
                    }
                }
                other => kept.push_back(other),
            }
        }
        self.out = kept;
    }

    /// Moves a served request on until its machine is quiet: held events
    /// into it, its local actions onto the local request, its answers out.
    fn pump_served(&mut self, request: &RequestId) {
        // Set by the input that created the served request, and by every
        // input since.
        let Some(now) = self.clock else {
            return;
        };
        loop {
            let Some(s) = self.served.get_mut(request) else {
                return;
            };
            let mut moved = false;
            while s.machine.wants_events() {
                let Some(event) = s.held.pop_front() else {
                    break;
                };
                s.machine.handle_event(now, Some(event));
                moved = true;
            }
            if s.passing && self.upload_taken(request) {
                let s = self.served.get_mut(request).expect("still served");
                s.passing = false;
                s.machine.handle_body_passed(true);
                moved = true;
            }
            let s = self.served.get_mut(request).expect("still served");
            let reply = s.reply.clone();
            while let Some(message) = s.machine.poll_transmit() {
                self.out.push_back(Output::Answer {
                    request: Some(request.clone()),
                    to: reply.clone(),
                    message,
                });
                moved = true;
            }
            let s = self.served.get_mut(request).expect("still served");
            let passing = s.passing;
            let local = if passing {
                None
            } else {
                s.machine.poll_local()
            };
            match local {
                Some(Local::Body { data, last }) => {
                    moved = true;
                    let passed = self.push_body(now, request, data, last).is_ok();
                    let s = self.served.get_mut(request).expect("still served");
                    if !passed {
                        s.machine.handle_body_passed(false);
                    } else {
                        s.passing = true;
                    }
                }
                Some(Local::Read(n)) => {
                    moved = true;
                    self.body_read(now, request, n);
                }
                Some(Local::Cancel) => {
                    moved = true;
                    // The local request ends; what it still says is moot.
                    self.cancel_local_of_served(request);
                }
                None => {}
            }
            if !moved {
                break;
            }
        }
        self.settle_served(request);
    }

    /// Whether the piece a served request passed to its local request was
    /// taken: the receiver's credit covered it and its connection has room
    /// (or the local request ended, which takes nothing more).
    fn upload_taken(&self, request: &RequestId) -> bool {
        match self.upload_queued(request) {
            Some(0) => !self
                .request_link(request)
                .and_then(|l| self.links.get(&l))
                .is_some_and(|l| l.backlogged),
            Some(_) => false,
            None => true,
        }
    }

    fn cancel_local_of_served(&mut self, request: &RequestId) {
        if self.pending.contains_key(request) {
            self.release_unread(request, u64::MAX);
            self.send_cancel(request, "the forwarding gateway went away");
            self.totals.cancelled += 1;
            self.finish(request);
        }
        if let Some(s) = self.served.get_mut(request) {
            s.held.clear();
        }
    }

    /// Re-arms a served request's check, and lets it go once finished.
    fn settle_served(&mut self, request: &RequestId) {
        let Some(s) = self.served.get_mut(request) else {
            return;
        };
        let finished = s.machine.is_finished();
        let next = if finished {
            None
        } else {
            s.machine.poll_timeout()
        };
        rearm(
            &mut self.timers,
            &mut s.armed,
            next,
            Timer::Served(request.clone()),
        );
        if finished {
            self.served.remove(request);
            self.served_dirty.remove(request);
            // Whatever the local request still holds goes with it.
            if self.pending.contains_key(request) {
                self.release_unread(request, u64::MAX);
                self.send_cancel(request, "the forwarding gateway's request ended");
                self.finish(request);
            } else {
                self.release_unread(request, u64::MAX);
            }
        }
    }
}
