//! Requests this gateway sends to another gateway of its cluster. Each is
//! a [`Forwarding`] machine held by the gateway machine beside its own
//! requests, so the client's side of it (body pieces, reads, the cancel,
//! [`Output::Writable`]) goes through the same calls as a local request's,
//! its checks run on the machine's timer, `/stats` counts it with the
//! rest, and the bus is one more kind of output ([`Output::Publish`]) and
//! input ([`Gateway::forward_reply`]).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cluster::{Forwarding, Reply, RouteBook, Upload};
use crate::message::{RequestHead, RequestId};
use crate::route::ServiceUrl;

use super::{rearm, Gateway, Output, RequestBody, Timer};

/// A forwarded request as the gateway machine holds it.
#[derive(Debug)]
pub(super) struct Forwarded {
    machine: Forwarding,
    /// The route it was sent to: the shell publishes its start on that
    /// route's subject.
    route: ServiceUrl,
    /// The client's upload was told to wait for an [`Output::Writable`].
    upload_waiting: bool,
    /// The machine's check, as armed in the gateway's timers.
    armed: Option<Instant>,
}

impl Gateway {
    /// Sends a public request for `host` to the gateway of the cluster
    /// that serves `route` (from [`cluster_choice`](Self::cluster_choice),
    /// or the route book's `remote_route` once no local receiver served
    /// it). Its start message comes out as [`Output::Publish`], its
    /// response as [`Output::Response`] like a local request's, and the
    /// client's side of it goes through [`push_body`](Self::push_body),
    /// [`body_read`](Self::body_read) and [`cancel`](Self::cancel). What
    /// arrives on its reply inbox goes into
    /// [`forward_reply`](Self::forward_reply).
    pub fn start_forwarded(
        &mut self,
        now: Instant,
        host: &str,
        route: ServiceUrl,
        head: RequestHead,
        body: RequestBody,
    ) -> RequestId {
        let id = RequestId::uuid_v4(self.rng.u128(..).to_le_bytes());
        let machine = Forwarding::new(
            now,
            host.to_owned(),
            head,
            body,
            self.config.request_timeout,
            self.config.websocket_idle_timeout,
        );
        self.forwarded.insert(
            id.clone(),
            Forwarded {
                machine,
                route,
                upload_waiting: false,
                armed: None,
            },
        );
        if self.replies_ended {
            if let Some(f) = self.forwarded.get_mut(&id) {
                f.machine.handle_reply(now, Reply::Ended);
            }
        }
        self.drain_forwarded(&id);
        id
    }

    /// Something arrived on a forwarded request's reply inbox. Returns the
    /// serving gateway's name when it was its acceptance (for the log).
    pub fn forward_reply(
        &mut self,
        now: Instant,
        request: &RequestId,
        reply: Reply,
    ) -> Option<String> {
        let f = self.forwarded.get_mut(request)?;
        let accepted = f.machine.handle_reply(now, reply);
        self.drain_forwarded(request);
        accepted
    }

    /// The start message of a forwarded request could not be published:
    /// it fails 502.
    pub fn forward_start_failed(&mut self, _now: Instant, request: &RequestId, reason: &str) {
        if let Some(f) = self.forwarded.get_mut(request) {
            f.machine.handle_start_failed(reason);
            self.drain_forwarded(request);
        }
    }

    /// The reply inboxes are gone (the bus connection ended): every
    /// forwarded request fails 502, and so does every one started later.
    pub fn forward_replies_ended(&mut self, now: Instant) {
        self.replies_ended = true;
        let ids: Vec<RequestId> = self.forwarded.keys().cloned().collect();
        for id in ids {
            self.forward_reply(now, &id, Reply::Ended);
        }
    }

    /// Requests sent to other gateways and not yet ended.
    pub fn forwarded_in_flight(&self) -> usize {
        self.forwarded.len()
    }

    /// A piece of a forwarded request's upload; `None` when `request` is
    /// not a forwarded one.
    pub(super) fn forwarded_upload(
        &mut self,
        now: Instant,
        request: &RequestId,
        data: Bytes,
        last: bool,
    ) -> Option<()> {
        let f = self.forwarded.get_mut(request)?;
        f.machine.handle_upload(now, Upload::Body(data, last));
        f.upload_waiting = f.machine.upload_waits();
        self.drain_forwarded(request);
        Some(())
    }

    /// What of a forwarded request's upload waits: `Some(1)` while the
    /// client must wait for [`Output::Writable`], `Some(0)` when it may go
    /// on; `None` when `request` is not a forwarded one.
    pub(super) fn forwarded_upload_queued(&self, request: &RequestId) -> Option<u64> {
        self.forwarded
            .get(request)
            .map(|f| u64::from(f.upload_waiting))
    }

    /// The client read `n` bytes of a forwarded response; false when
    /// `request` is not a forwarded one.
    pub(super) fn forwarded_read(&mut self, request: &RequestId, n: usize) -> bool {
        let Some(f) = self.forwarded.get_mut(request) else {
            return false;
        };
        f.machine.handle_read(n);
        self.drain_forwarded(request);
        true
    }

    /// The client of a forwarded request went away; false when `request`
    /// is not a forwarded one.
    pub(super) fn forwarded_cancel(&mut self, request: &RequestId) -> bool {
        let Some(f) = self.forwarded.get_mut(request) else {
            return false;
        };
        f.machine.cancel();
        self.totals.cancelled += 1;
        self.drain_forwarded(request);
        true
    }

    /// A forwarded request's check came due.
    pub(super) fn forwarded_timeout(&mut self, now: Instant, request: &RequestId) {
        let Some(f) = self.forwarded.get_mut(request) else {
            return;
        };
        f.armed = None;
        match self.membership.as_ref() {
            Some(m) => f.machine.handle_timeout(now, m.book()),
            // Never joined a cluster: no gateway to watch, only the
            // deadline.
            None => f
                .machine
                .handle_timeout(now, &RouteBook::new("", Duration::ZERO)),
        }
        self.drain_forwarded(request);
    }

    /// Moves what a forwarded request's machine produced to the outputs,
    /// re-arms its check, and lets it go once it is finished.
    fn drain_forwarded(&mut self, request: &RequestId) {
        let Some(f) = self.forwarded.get_mut(request) else {
            return;
        };
        while let Some(transmit) = f.machine.poll_transmit() {
            self.out.push_back(Output::Publish {
                request: request.clone(),
                route: f.route.clone(),
                transmit,
            });
        }
        while let Some(event) = f.machine.poll_event() {
            self.out.push_back(Output::Response {
                request: request.clone(),
                event,
            });
        }
        if f.upload_waiting && !f.machine.upload_waits() {
            f.upload_waiting = false;
            if !f.machine.is_done() {
                self.out.push_back(Output::Writable {
                    request: request.clone(),
                });
            }
        }
        let finished = f.machine.is_finished();
        let next = if finished {
            None
        } else {
            f.machine.poll_timeout()
        };
        rearm(
            &mut self.timers,
            &mut f.armed,
            next,
            Timer::Forwarded(request.clone()),
        );
        if finished {
            self.forwarded.remove(request);
        }
    }
}
