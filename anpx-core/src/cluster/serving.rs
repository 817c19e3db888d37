//! The serving side of one cluster request; see [`Serving`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::gateway::{Failure, FailureKind, Reject, RequestBody, ResponseEvent};
use crate::passthrough;

use super::forwarding::{end_of_body, pieces};
use super::window::{Intake, Window, DEFAULT_WINDOW};
use super::wire::{BodyMode, WireError, WireMessage};

/// What the shell does to the local request on the serving machine's
/// behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// Pass this piece of the request body to the local request, then
    /// report with [`Serving::handle_body_passed`] whether it was taken
    /// (the credit for it goes back only then, so a slow receiver slows
    /// the forwarding gateway's upload instead of piling it up here).
    Body {
        /// The bytes.
        data: Bytes,
        /// The body ends with them.
        last: bool,
    },
    /// `bytes` of the response went on to the forwarding gateway: reopen
    /// the receiver's window for them (`flow-control`).
    Read(usize),
    /// Stop the local request.
    Cancel,
}

/// Why a served request ended without finishing its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The forwarding gateway granted no credit for a whole request
    /// timeout: it is gone or stuck.
    NoCredit,
}

/// The serving side of one request: a request another gateway forwarded
/// here, started in this gateway's own machine like a public request, its
/// response streamed back under credit.
///
/// [`Serving`] is pure state: the shell feeds it the local response events
/// ([`Serving::handle_event`], taken only while
/// [`Serving::wants_events`]), what the forwarding gateway sends
/// ([`Serving::handle_origin`]) and time ([`Serving::handle_timeout`]);
/// it polls messages to publish to the forwarding gateway
/// ([`Serving::poll_transmit`]) and what to do to the local request
/// ([`Serving::poll_local`]). Credit, the stall deadline and the failures
/// sent back are decided here.
///
/// A forwarded WebSocket upgrade is served like any streamed request; once
/// the local response is a `101`, the stall deadline becomes the WebSocket
/// idle timeout, as the local machine times the tunnel.
#[derive(Debug)]
pub struct Serving {
    window: Window,
    intake: Intake,
    /// Messages waiting for credit (body pieces) or behind them.
    queue: VecDeque<WireMessage>,
    transmits: VecDeque<WireMessage>,
    local: VecDeque<Local>,
    /// Credit to grant once the piece just handed on is taken.
    pending_credit: Option<u64>,
    response_done: bool,
    idle: Duration,
    websocket_idle: Duration,
    credit_deadline: Instant,
    done: bool,
}

impl Serving {
    /// The body of a forwarded request as the local machine takes it.
    pub fn request_body(mode: BodyMode, payload: Bytes) -> RequestBody {
        match mode {
            BodyMode::Empty => RequestBody::Empty,
            BodyMode::Full => RequestBody::Full(payload),
            BodyMode::Stream => RequestBody::Streaming,
        }
    }

    /// The answer to a forwarded request this gateway's machine refused.
    pub fn refused(reject: &Reject) -> WireMessage {
        WireMessage::Failed(reject.failure())
    }

    /// The answer to a forwarded request when this gateway cannot take
    /// any (it is shutting down).
    pub fn shutting_down(reason: impl std::fmt::Display) -> WireMessage {
        WireMessage::Failed(Failure::new(FailureKind::Refused, 503, reason.to_string()))
    }

    /// The answer when no inbox could be set up for the request.
    pub fn unavailable(reason: impl std::fmt::Display) -> WireMessage {
        WireMessage::Failed(Failure::new(
            FailureKind::ReceiverLost,
            502,
            format!("Serving gateway could not subscribe: {reason}"),
        ))
    }

    /// A request started locally: the first transmit accepts it, naming
    /// this gateway `node` and the `inbox` the forwarding gateway should
    /// send body pieces, credit and a cancel to. A response waiting for
    /// credit is dropped after `request_timeout`, or `websocket_idle` once
    /// it switched to a WebSocket.
    pub fn new(
        now: Instant,
        node: String,
        inbox: String,
        request_timeout: Duration,
        websocket_idle: Duration,
    ) -> Self {
        Serving {
            window: Window::new(DEFAULT_WINDOW),
            intake: Intake::new(DEFAULT_WINDOW),
            queue: VecDeque::new(),
            transmits: VecDeque::from([WireMessage::Accepted { node, inbox }]),
            local: VecDeque::new(),
            pending_credit: None,
            response_done: false,
            idle: request_timeout,
            websocket_idle,
            credit_deadline: now + request_timeout,
            done: false,
        }
    }

    /// Whether the machine takes the next local response event now: only
    /// when what came before went out, so a response never piles up here
    /// beyond one event.
    pub fn wants_events(&self) -> bool {
        !self.done && !self.response_done && self.queue.is_empty()
    }

    /// A local response event; `None` when the local machine lost the
    /// request.
    pub fn handle_event(&mut self, now: Instant, event: Option<ResponseEvent>) {
        if self.done {
            return;
        }
        match event {
            Some(ResponseEvent::Head(h)) => {
                if passthrough::is_switch(&h) {
                    self.idle = self.websocket_idle;
                }
                self.queue.push_back(WireMessage::Head(h));
            }
            Some(ResponseEvent::Body(b)) => self.queue.extend(pieces(b)),
            Some(ResponseEvent::End) => {
                self.response_done = true;
                self.queue.push_back(end_of_body());
            }
            Some(ResponseEvent::Failed(f)) => {
                self.response_done = true;
                self.queue.push_back(WireMessage::Failed(f));
            }
            None => {
                self.response_done = true;
                self.queue.push_back(WireMessage::Failed(Failure::new(
                    FailureKind::ReceiverLost,
                    502,
                    "Serving gateway lost the response",
                )));
            }
        }
        self.release(now);
    }

    /// A message from the forwarding gateway; `None` when the subscription
    /// ended. An undecodable message is ignored and returned for the log.
    pub fn handle_origin(&mut self, now: Instant, payload: Option<Bytes>) -> Result<(), WireError> {
        if self.done {
            return Ok(());
        }
        let Some(payload) = payload else {
            return {
                self.cancel_local();
                Ok(())
            };
        };
        self.credit_deadline = now + self.idle;
        match WireMessage::decode(payload)? {
            WireMessage::Credit { upto } => {
                self.window.handle_credit(upto);
                self.release(now);
            }
            WireMessage::Data { seq, last, data } => match self.intake.accept(seq) {
                Ok(credit) => {
                    self.pending_credit = credit;
                    self.local.push_back(Local::Body { data, last });
                }
                Err(gap) => {
                    self.local.push_back(Local::Cancel);
                    self.transmits.push_back(WireMessage::Failed(Failure::new(
                        FailureKind::InvalidResponse,
                        502,
                        format!("Forwarded request body broken: {gap}"),
                    )));
                    self.done = true;
                }
            },
            WireMessage::Cancel => self.cancel_local(),
            // Anything else has no meaning from the forwarding side.
            _ => {}
        }
        Ok(())
    }

    /// The piece from [`Local::Body`] was taken (`true`) or the local
    /// request had already ended (`false`: the rest of the body is not
    /// wanted and gets no credit; its response may still be queued here).
    pub fn handle_body_passed(&mut self, passed: bool) {
        let credit = self.pending_credit.take();
        if let (true, Some(upto), false) = (passed, credit, self.done) {
            self.transmits.push_back(WireMessage::Credit { upto });
        }
    }

    /// Publishing to the forwarding gateway failed: the bus is gone, so is
    /// the request.
    pub fn handle_publish_failed(&mut self) {
        if !self.done {
            self.cancel_local();
        }
    }

    /// Time passed: a response waiting for credit for a whole request
    /// timeout is dropped.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Stall> {
        if self.done || self.queue.is_empty() || now < self.credit_deadline {
            return None;
        }
        self.cancel_local();
        Some(Stall::NoCredit)
    }

    /// When to call [`Serving::handle_timeout`] next: while a response
    /// waits for credit.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done && !self.queue.is_empty()).then_some(self.credit_deadline)
    }

    /// The next message for the forwarding gateway.
    pub fn poll_transmit(&mut self) -> Option<WireMessage> {
        self.transmits.pop_front()
    }

    /// The next thing to do to the local request.
    pub fn poll_local(&mut self) -> Option<Local> {
        self.local.pop_front()
    }

    /// The request ended and everything it had to say was polled.
    pub fn is_finished(&self) -> bool {
        self.done && self.transmits.is_empty() && self.local.is_empty()
    }

    fn cancel_local(&mut self) {
        self.local.push_back(Local::Cancel);
        self.queue.clear();
        self.done = true;
    }

    /// Moves what credit allows from the queue to the transmits.
    fn release(&mut self, now: Instant) {
        while let Some(front) = self.queue.front() {
            let is_data = matches!(front, WireMessage::Data { .. });
            if is_data && !self.window.can_send() {
                break;
            }
            let Some(mut m) = self.queue.pop_front() else {
                break;
            };
            if let WireMessage::Data { seq, data, .. } = &mut m {
                *seq = self.window.try_send().unwrap_or_default();
                if !data.is_empty() {
                    self.local.push_back(Local::Read(data.len()));
                }
            }
            self.transmits.push_back(m);
            self.credit_deadline = now + self.idle;
        }
        if self.response_done && self.queue.is_empty() {
            self.done = true;
        }
    }
}
