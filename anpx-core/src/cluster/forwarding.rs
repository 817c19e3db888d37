//! The forwarding side of one cluster request; see [`Forwarding`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::gateway::{Failure, FailureKind, RequestBody, ResponseEvent};
use crate::message::RequestHead;
use crate::passthrough;

use super::book::RouteBook;
use super::window::{Intake, Window, DEFAULT_WINDOW, MAX_PIECE};
use super::wire::{BodyMode, WireMessage};

/// Extra time a forwarded request waits beyond the request timeout, so
/// that the serving gateway's own 504 (which names the cause) comes first.
pub const TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// How often a waiting request checks that its client and the serving
/// gateway are still there.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Where a cluster message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// The service subject of the request's route, with the request's
    /// reply inbox as the reply subject (only the start message).
    Service,
    /// The other gateway's inbox for this request.
    Inbox(String),
}

/// A message to publish on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub to: To,
    /// What.
    pub message: WireMessage,
}

/// What arrived on a forwarded request's reply inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A message's payload.
    Message(Bytes),
    /// The bus said nobody listens on the service subject.
    NoResponders,
    /// The subscription ended (the bus connection is gone).
    Ended,
}

/// What the client's side of a forwarded request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// A piece of the streamed body; `last` ends it.
    Body(Bytes, bool),
    /// The client went away.
    Cancel,
}

/// The forwarding side of one request: a public request this gateway's
/// receivers cannot serve, carried to a gateway whose receivers can.
///
/// [`Forwarding`] is pure state in the manner of the gateway machine:
/// the shell feeds it what arrives on the request's reply inbox
/// ([`Forwarding::handle_reply`]), the client's upload
/// ([`Forwarding::handle_upload`]) and time
/// ([`Forwarding::handle_timeout`]), and polls what to publish
/// ([`Forwarding::poll_transmit`]), what to tell the client
/// ([`Forwarding::poll_event`]) and when to wake it
/// ([`Forwarding::poll_timeout`]). Every decision of the request's life
/// (credit, deadlines, 502 and 504, the serving gateway leaving) is made
/// here, so the simulator runs it in virtual time.
///
/// A WebSocket upgrade ([`passthrough::is_upgrade`]) travels the same
/// way, its body streamed: once the serving gateway's `101` came, the
/// request is a tunnel, the client's bytes going as upload pieces and the
/// service's as response pieces under the same credit windows, and the
/// silence allowed becomes the WebSocket idle timeout (activity either
/// way counts) plus [`TIMEOUT_SLACK`]. Its end is the response's end (the
/// service closed) or the upload's end (the client closed its side, the
/// service's side goes on), as for a local WebSocket.
#[derive(Debug)]
pub struct Forwarding {
    /// Messages for the serving gateway waiting for its acceptance or
    /// credit (body pieces, and what follows them).
    outgoing: VecDeque<WireMessage>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ResponseEvent>,
    /// Whether the client's body is still coming.
    uploading: bool,
    /// Silence allowed from the serving gateway.
    idle: Duration,
    /// Silence allowed on a WebSocket once it switched.
    websocket_idle: Duration,
    /// The request asks for a WebSocket upgrade.
    upgrade: bool,
    /// The serving gateway answered the upgrade with `101`: the request
    /// is a byte stream each way.
    tunnel: bool,
    deadline: Instant,
    next_check: Instant,
    window: Window,
    intake: Intake,
    /// Response body bytes passed to the client, and taken by it.
    received: u64,
    read: u64,
    /// Credit to grant once the client has read up to a mark: the
    /// response's window reopens as the client reads, not as pieces arrive.
    credits: VecDeque<(u64, u64)>,
    /// Set once the serving gateway accepted: its name and inbox.
    serving: Option<(String, String)>,
    /// Whether the serving gateway's announcements were heard since it
    /// accepted; one that accepted before its first announcement reached
    /// us is not yet known, which is no sign of its death.
    seen_alive: bool,
    /// Whether the response head came. The bus may lose a message; body
    /// pieces are numbered, the head is not, so a piece before the head
    /// means the head was lost.
    head_seen: bool,
    done: bool,
}

impl Forwarding {
    /// Starts forwarding a request for `host`: the first transmit is the
    /// start message for the service subject. A whole body too large for
    /// one message goes as pieces instead; a streamed one follows through
    /// [`Forwarding::handle_upload`]. `request_timeout` times the wait for
    /// the response, `websocket_idle` a WebSocket once switched (both get
    /// [`TIMEOUT_SLACK`]).
    pub fn new(
        now: Instant,
        host: String,
        head: RequestHead,
        body: RequestBody,
        request_timeout: Duration,
        websocket_idle: Duration,
    ) -> Self {
        let upgrade = passthrough::is_upgrade(&head);
        let mut outgoing = VecDeque::new();
        let (mode, payload) = match body {
            RequestBody::Empty => (BodyMode::Empty, Bytes::new()),
            RequestBody::Full(b) if b.len() <= MAX_PIECE => (BodyMode::Full, b),
            RequestBody::Full(b) => {
                outgoing.extend(pieces(b));
                outgoing.push_back(end_of_body());
                (BodyMode::Stream, Bytes::new())
            }
            // The length is not carried between gateways; the serving one
            // sends the body as it comes.
            RequestBody::Streaming | RequestBody::Sized(_) => (BodyMode::Stream, Bytes::new()),
        };
        let uploading = mode == BodyMode::Stream && outgoing.is_empty();
        let start = WireMessage::Start {
            host,
            head,
            body: mode,
            payload,
        };
        let idle = request_timeout + TIMEOUT_SLACK;
        Forwarding {
            outgoing,
            transmits: VecDeque::from([Transmit {
                to: To::Service,
                message: start,
            }]),
            events: VecDeque::new(),
            uploading,
            idle,
            websocket_idle: websocket_idle + TIMEOUT_SLACK,
            upgrade,
            tunnel: false,
            deadline: now + idle,
            next_check: now + CHECK_EVERY,
            window: Window::new(DEFAULT_WINDOW),
            intake: Intake::new(DEFAULT_WINDOW),
            received: 0,
            read: 0,
            credits: VecDeque::new(),
            serving: None,
            seen_alive: false,
            head_seen: false,
            done: false,
        }
    }

    /// The failure for a request that could not even be sent (no reply
    /// inbox could be set up).
    pub fn unavailable(reason: impl std::fmt::Display) -> Failure {
        Failure::new(
            FailureKind::ReceiverLost,
            502,
            format!("Cluster unavailable: {reason}"),
        )
    }

    /// Publishing the start message failed.
    pub fn handle_start_failed(&mut self, reason: impl std::fmt::Display) {
        self.fail(
            FailureKind::ReceiverLost,
            502,
            format!("Could not forward the request: {reason}"),
        );
    }

    /// Something arrived on the reply inbox. Returns the serving gateway's
    /// name when this message was its acceptance (for the log).
    pub fn handle_reply(&mut self, now: Instant, reply: Reply) -> Option<String> {
        if self.done {
            return None;
        }
        let payload = match reply {
            Reply::Ended => {
                self.fail(FailureKind::ReceiverLost, 502, "Cluster connection lost");
                return None;
            }
            Reply::NoResponders => {
                self.fail(
                    FailureKind::ReceiverLost,
                    502,
                    "No gateway serves this route any more",
                );
                return None;
            }
            Reply::Message(p) => p,
        };
        self.deadline = now + self.idle;
        let m = match WireMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                self.abort_remote();
                self.fail(
                    FailureKind::InvalidResponse,
                    502,
                    format!("Bad message from the serving gateway: {e}"),
                );
                return None;
            }
        };
        let mut accepted = None;
        match m {
            WireMessage::Accepted { node, inbox } => {
                accepted = Some(node.clone());
                self.serving = Some((node, inbox));
            }
            WireMessage::Credit { upto } => self.window.handle_credit(upto),
            WireMessage::Head(h) if passthrough::is_switch(&h) && !self.upgrade => {
                self.abort_remote();
                self.fail(
                    FailureKind::InvalidResponse,
                    502,
                    "Serving gateway switched protocols for a request that asked for no upgrade",
                );
                return None;
            }
            WireMessage::Head(h) => {
                self.head_seen = true;
                if passthrough::is_switch(&h) {
                    self.tunnel = true;
                    self.idle = self.websocket_idle;
                    self.deadline = now + self.idle;
                }
                self.events.push_back(ResponseEvent::Head(h));
            }
            WireMessage::Data { .. } if !self.head_seen => {
                self.abort_remote();
                self.fail(
                    FailureKind::InvalidResponse,
                    502,
                    "Response from the serving gateway broken: its head was lost",
                );
                return None;
            }
            WireMessage::Data { seq, last, data } => {
                let credit = self.intake.accept(seq);
                self.received += data.len() as u64;
                match credit {
                    Ok(Some(upto)) => {
                        self.credits.push_back((self.received, upto));
                        self.release_credit();
                    }
                    Ok(None) => {}
                    Err(gap) => {
                        self.abort_remote();
                        self.fail(
                            FailureKind::InvalidResponse,
                            502,
                            format!("Response from the serving gateway broken: {gap}"),
                        );
                        return None;
                    }
                }
                if !data.is_empty() {
                    self.events.push_back(ResponseEvent::Body(data));
                }
                if last {
                    self.events.push_back(ResponseEvent::End);
                    self.done = true;
                }
            }
            WireMessage::Failed(f) => {
                self.events.push_back(ResponseEvent::Failed(f));
                self.done = true;
            }
            WireMessage::Start { .. } | WireMessage::Cancel => {}
        }
        self.release();
        accepted
    }

    /// The client took `bytes` of the response body: the credit for the
    /// pieces it has read goes to the serving gateway, so a client that
    /// does not read holds at most a window of the response here.
    pub fn handle_read(&mut self, bytes: usize) {
        self.read += bytes as u64;
        if !self.done {
            self.release_credit();
        }
    }

    /// Sends the credit the client's reads cover.
    fn release_credit(&mut self) {
        let mut upto = None;
        while let Some(&(mark, credit)) = self.credits.front() {
            if mark > self.read {
                break;
            }
            self.credits.pop_front();
            upto = Some(credit);
        }
        if let Some(upto) = upto {
            self.send_serving(WireMessage::Credit { upto });
        }
    }

    /// Whether the machine takes the next piece of the client's upload now:
    /// only once the serving gateway accepted and what came before went
    /// out, so an upload never piles up here.
    pub fn wants_upload(&self) -> bool {
        !self.done && self.uploading && self.serving.is_some() && self.outgoing.is_empty()
    }

    /// Whether the client's upload must wait before its next piece: it is
    /// still coming and the machine does not take it yet (the serving
    /// gateway has not accepted, or what came before has not gone out).
    pub fn upload_waits(&self) -> bool {
        !self.done && self.uploading && !self.wants_upload()
    }

    /// The client's side moved.
    pub fn handle_upload(&mut self, now: Instant, upload: Upload) {
        if self.done {
            return;
        }
        match upload {
            Upload::Body(data, last) => {
                if self.tunnel {
                    // On a WebSocket, the client's bytes are half of its
                    // traffic.
                    self.deadline = now + self.idle;
                }
                self.outgoing.extend(pieces(data));
                if last {
                    self.uploading = false;
                    self.outgoing.push_back(end_of_body());
                }
                self.release();
            }
            Upload::Cancel => self.cancel(),
        }
    }

    /// The client went away: tells the serving gateway (when known) to
    /// drop the request, and tells the client nothing more.
    pub fn cancel(&mut self) {
        if self.done {
            return;
        }
        self.events.clear();
        self.abort_remote();
        self.done = true;
    }

    /// Time passed: checks the serving gateway (through the route book,
    /// which forgets silent gateways; one that left the cluster still
    /// finishes what it holds, so only the deadline times it) and the
    /// deadline.
    pub fn handle_timeout(&mut self, now: Instant, book: &RouteBook) {
        if self.done || now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        if let Some((node, _)) = &self.serving {
            let alive = book.is_alive(node);
            if self.seen_alive && !alive && !book.has_left(node) {
                let error = format!("Gateway {node} serving the request left the cluster");
                self.fail(FailureKind::ReceiverLost, 502, error);
                return;
            }
            self.seen_alive |= alive;
        }
        if now >= self.deadline {
            self.abort_remote();
            if self.tunnel {
                self.fail(
                    FailureKind::WebSocketIdle,
                    504,
                    "WebSocket idle past its timeout",
                );
            } else {
                self.fail(
                    FailureKind::HeadTimeout,
                    504,
                    "Gateway serving the route did not respond in time",
                );
            }
        }
    }

    /// When to call [`Forwarding::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then_some(self.next_check)
    }

    /// The next message to publish.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next response event for the client.
    pub fn poll_event(&mut self) -> Option<ResponseEvent> {
        self.events.pop_front()
    }

    /// The request ended and everything it had to say was polled.
    pub fn is_finished(&self) -> bool {
        self.done && self.transmits.is_empty() && self.events.is_empty()
    }

    /// The request ended (its last transmits and events may wait to be
    /// polled).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn fail(&mut self, kind: FailureKind, status: u16, error: impl Into<String>) {
        self.events
            .push_back(ResponseEvent::Failed(Failure::new(kind, status, error)));
        self.done = true;
    }

    /// Tells the serving gateway (when known) to drop the request.
    fn abort_remote(&mut self) {
        self.outgoing.clear();
        self.send_serving(WireMessage::Cancel);
    }

    fn send_serving(&mut self, message: WireMessage) {
        if let Some((_, theirs)) = &self.serving {
            self.transmits.push_back(Transmit {
                to: To::Inbox(theirs.clone()),
                message,
            });
        }
    }

    /// Moves what credit allows from `outgoing` to the transmits.
    fn release(&mut self) {
        let Some((_, theirs)) = &self.serving else {
            return;
        };
        if self.done {
            return;
        }
        while self.window.can_send() {
            let Some(mut m) = self.outgoing.pop_front() else {
                break;
            };
            if let WireMessage::Data { seq, .. } = &mut m {
                *seq = self.window.try_send().unwrap_or_default();
            }
            self.transmits.push_back(Transmit {
                to: To::Inbox(theirs.clone()),
                message: m,
            });
        }
    }
}

/// The empty piece that ends a body.
pub(super) fn end_of_body() -> WireMessage {
    WireMessage::Data {
        seq: 0,
        last: true,
        data: Bytes::new(),
    }
}

/// A body piece as credit-sized messages (sequence numbers are set when
/// sent).
pub(super) fn pieces(b: Bytes) -> impl Iterator<Item = WireMessage> {
    let n = b.len().div_ceil(MAX_PIECE);
    (0..n).map(move |i| WireMessage::Data {
        seq: 0,
        last: false,
        data: b.slice(i * MAX_PIECE..((i + 1) * MAX_PIECE).min(b.len())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Announcement, Serving};
    use crate::message::ResponseHead;

    fn forwarding(now: Instant, body: RequestBody) -> Forwarding {
        let head = RequestHead::new("GET", "/x");
        Forwarding::new(
            now,
            "svc.example".into(),
            head,
            body,
            Duration::from_secs(30),
            Duration::from_secs(300),
        )
    }

    fn failure(f: &mut Forwarding) -> Option<u16> {
        std::iter::from_fn(|| f.poll_event()).find_map(|e| match e {
            ResponseEvent::Failed(f) => Some(f.status),
            _ => None,
        })
    }

    fn reply(m: WireMessage) -> Reply {
        Reply::Message(m.encode())
    }

    fn accepted() -> WireMessage {
        WireMessage::Accepted {
            node: "b".into(),
            inbox: "in.b".into(),
        }
    }

    #[test]
    fn a_silent_serving_gateway_gets_504_after_the_timeout_and_its_slack() {
        let t0 = Instant::now();
        let book = RouteBook::new("a", Duration::from_secs(3));
        let mut f = forwarding(t0, RequestBody::Empty);
        assert_eq!(f.poll_transmit().map(|t| t.to), Some(To::Service));
        let mut now = t0;
        while let Some(at) = f.poll_timeout() {
            now = at;
            f.handle_timeout(now, &book);
        }
        assert_eq!(failure(&mut f), Some(504));
        assert!(now >= t0 + Duration::from_secs(32));
        assert!(now < t0 + Duration::from_secs(32) + CHECK_EVERY * 2);
    }

    fn upgrade() -> RequestHead {
        let mut head = RequestHead::new("GET", "/chat")
            .with_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        crate::passthrough::mark_upgrade(&mut head.headers);
        head
    }

    fn statuses(f: &mut Forwarding) -> Vec<u16> {
        std::iter::from_fn(|| f.poll_event())
            .map(|e| match e {
                ResponseEvent::Head(h) => h.status,
                ResponseEvent::Failed(f) => f.status,
                _ => 0,
            })
            .collect()
    }

    /// Runs the machine's timer until it ends; returns when.
    fn run_out(f: &mut Forwarding, book: &RouteBook, from: Instant) -> Instant {
        let mut now = from;
        while let Some(at) = f.poll_timeout() {
            now = at;
            f.handle_timeout(now, book);
        }
        now
    }

    #[test]
    fn a_switched_websocket_is_timed_by_the_websocket_idle_timeout_both_ways() {
        let t0 = Instant::now();
        let book = RouteBook::new("a", Duration::from_secs(3));
        let idle = Duration::from_secs(5);
        let mut f = Forwarding::new(
            t0,
            "ws.example".into(),
            upgrade(),
            RequestBody::Streaming,
            Duration::from_secs(30),
            idle,
        );
        let start = f.poll_transmit().map(|t| t.message);
        assert!(
            matches!(start, Some(WireMessage::Start { body: BodyMode::Stream, ref head, .. }) if crate::passthrough::is_upgrade(head)),
            "{start:?}"
        );
        f.handle_reply(t0, reply(accepted()));
        let switch = ResponseHead::new(101).with_header("upgrade", "websocket");
        f.handle_reply(t0, reply(WireMessage::Head(switch)));
        assert_eq!(statuses(&mut f), [101]);
        // The client talks every 4 s for a minute: far past the request
        // timeout, never idle.
        let mut now = t0;
        for _ in 0..15 {
            now += Duration::from_secs(4);
            f.handle_timeout(now, &book);
            assert!(f.wants_upload());
            f.handle_upload(now, Upload::Body("hi".into(), false));
        }
        assert!(!f.is_done());
        // The service's bytes count too.
        now += Duration::from_secs(4);
        let piece = WireMessage::Data {
            seq: 0,
            last: false,
            data: "yo".into(),
        };
        f.handle_reply(now, reply(piece));
        let quiet_from = now;
        let ended = run_out(&mut f, &book, now);
        assert!(ended >= quiet_from + idle + TIMEOUT_SLACK, "{ended:?}");
        assert!(ended < quiet_from + idle + TIMEOUT_SLACK + CHECK_EVERY * 2);
        let events: Vec<_> = std::iter::from_fn(|| f.poll_event()).collect();
        assert!(
            matches!(events.last(), Some(ResponseEvent::Failed(x)) if x.status == 504 && x.kind == FailureKind::WebSocketIdle),
            "{events:?}"
        );
        let last = std::iter::from_fn(|| f.poll_transmit()).last();
        assert_eq!(last.map(|t| t.message), Some(WireMessage::Cancel));
    }

    #[test]
    fn a_websocket_refused_by_the_serving_gateway_ends_with_its_status() {
        let t0 = Instant::now();
        let mut f = Forwarding::new(
            t0,
            "ws.example".into(),
            upgrade(),
            RequestBody::Streaming,
            Duration::from_secs(30),
            Duration::from_secs(300),
        );
        let refusal = crate::gateway::Reject::NoWebSocket {
            route: "ws.example".into(),
        };
        assert!(f.poll_transmit().is_some(), "the start");
        f.handle_reply(t0, reply(Serving::refused(&refusal)));
        assert_eq!(statuses(&mut f), [501]);
        assert!(f.is_finished());
    }

    #[test]
    fn response_credit_waits_for_the_client_to_read() {
        let t0 = Instant::now();
        let mut f = forwarding(t0, RequestBody::Empty);
        f.poll_transmit();
        f.handle_reply(t0, reply(accepted()));
        f.handle_reply(t0, reply(WireMessage::Head(ResponseHead::new(200))));
        for seq in 0..DEFAULT_WINDOW {
            let piece = WireMessage::Data {
                seq,
                last: false,
                data: Bytes::from(vec![1u8; 1000]),
            };
            f.handle_reply(t0, reply(piece));
        }
        let credits = |f: &mut Forwarding| {
            std::iter::from_fn(|| f.poll_transmit())
                .filter_map(|t| match t.message {
                    WireMessage::Credit { upto } => Some(upto),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert!(credits(&mut f).is_empty(), "nothing read, no credit");
        // Half the window read: the window reopens from there.
        f.handle_read(1000 * (DEFAULT_WINDOW as usize / 2) - 1);
        assert!(credits(&mut f).is_empty());
        f.handle_read(1);
        assert_eq!(credits(&mut f), [DEFAULT_WINDOW / 2 + DEFAULT_WINDOW]);
        f.handle_read(1000 * (DEFAULT_WINDOW as usize / 2));
        assert_eq!(credits(&mut f), [DEFAULT_WINDOW * 2]);
    }

    #[test]
    fn a_switch_for_a_request_that_asked_no_upgrade_is_refused() {
        let t0 = Instant::now();
        let mut f = forwarding(t0, RequestBody::Empty);
        f.handle_reply(t0, reply(accepted()));
        f.handle_reply(t0, reply(WireMessage::Head(ResponseHead::new(101))));
        assert_eq!(statuses(&mut f), [502]);
        let last = std::iter::from_fn(|| f.poll_transmit()).last();
        assert_eq!(last.map(|t| t.message), Some(WireMessage::Cancel));
        assert!(f.is_finished());
    }

    #[test]
    fn a_served_websocket_waits_for_credit_as_long_as_its_idle_timeout() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(120);
        let mut s = Serving::new(t0, "b".into(), "in.b".into(), Duration::from_secs(30), idle);
        s.handle_event(t0, Some(ResponseEvent::Head(ResponseHead::new(101))));
        for _ in 0..=DEFAULT_WINDOW {
            s.handle_event(t0, Some(ResponseEvent::Body(Bytes::from_static(b"x"))));
        }
        assert!(!s.wants_events());
        assert_eq!(s.poll_timeout(), Some(t0 + idle));
    }

    #[test]
    fn a_body_piece_before_the_head_means_the_head_was_lost() {
        let t0 = Instant::now();
        let mut f = forwarding(t0, RequestBody::Empty);
        f.handle_reply(t0, reply(accepted()));
        let data = WireMessage::Data {
            seq: 0,
            last: true,
            data: "x".into(),
        };
        f.handle_reply(t0, reply(data));
        assert_eq!(failure(&mut f), Some(502));
        let cancel = std::iter::from_fn(|| f.poll_transmit()).last();
        assert_eq!(cancel.map(|t| t.message), Some(WireMessage::Cancel));
        assert!(f.is_finished());
    }

    #[test]
    fn a_serving_gateway_that_leaves_the_cluster_fails_the_request() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut book = RouteBook::new("a", ttl);
        let url = "svc.example/".parse().unwrap();
        book.handle_announcement(t0, Announcement::new("b", vec![url]));
        let mut f = forwarding(t0, RequestBody::Empty);
        f.handle_reply(t0, reply(accepted()));
        f.handle_reply(t0, reply(WireMessage::Head(ResponseHead::new(200))));
        let mut now = t0;
        while let Some(at) = f.poll_timeout() {
            now = at;
            book.handle_timeout(now);
            f.handle_timeout(now, &book);
        }
        let events: Vec<_> = std::iter::from_fn(|| f.poll_event()).collect();
        assert!(matches!(events.last(), Some(ResponseEvent::Failed(x)) if x.status == 502));
        assert!(now >= t0 + ttl && now < t0 + ttl + CHECK_EVERY * 2);
    }

    #[test]
    fn an_upload_waits_for_acceptance_and_credit_and_a_response_streams_back() {
        let t0 = Instant::now();
        let mut f = forwarding(t0, RequestBody::Streaming);
        f.poll_transmit();
        assert!(
            !f.wants_upload(),
            "no upload before the serving gateway accepted"
        );
        f.handle_reply(t0, reply(accepted()));
        assert!(f.wants_upload());
        let big = Bytes::from(vec![7u8; MAX_PIECE * (DEFAULT_WINDOW as usize + 4)]);
        f.handle_upload(t0, Upload::Body(big, true));
        let sent = std::iter::from_fn(|| f.poll_transmit()).count() as u64;
        assert_eq!(sent, DEFAULT_WINDOW, "stops at the credit window");
        assert!(!f.wants_upload());

        // The serving side: the upload as it arrives, the response out.
        let mut s = Serving::new(
            t0,
            "b".into(),
            "in.b".into(),
            Duration::from_secs(30),
            Duration::from_secs(300),
        );
        assert_eq!(s.poll_transmit(), Some(accepted()));
        s.handle_event(t0, Some(ResponseEvent::Head(ResponseHead::new(200))));
        s.handle_event(t0, Some(ResponseEvent::Body("hello".into())));
        s.handle_event(t0, Some(ResponseEvent::End));
        for m in std::iter::from_fn(|| s.poll_transmit()) {
            f.handle_reply(t0, reply(m));
        }
        let events: Vec<_> = std::iter::from_fn(|| f.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                ResponseEvent::Head(ResponseHead::new(200)),
                ResponseEvent::Body("hello".into()),
                ResponseEvent::End
            ]
        );
        let local: Vec<_> = std::iter::from_fn(|| s.poll_local()).collect();
        assert_eq!(local, vec![crate::cluster::Local::Read(5)]);
        assert!(s.is_finished());
    }

    #[test]
    fn a_served_response_without_credit_is_dropped_after_the_timeout() {
        let t0 = Instant::now();
        let mut s = Serving::new(
            t0,
            "b".into(),
            "in.b".into(),
            Duration::from_secs(30),
            Duration::from_secs(300),
        );
        s.handle_event(t0, Some(ResponseEvent::Head(ResponseHead::new(200))));
        for _ in 0..DEFAULT_WINDOW + 1 {
            assert!(s.wants_events());
            s.handle_event(t0, Some(ResponseEvent::Body(Bytes::from(vec![1u8; 10]))));
        }
        assert!(!s.wants_events(), "a piece waits for credit");
        let at = s.poll_timeout().expect("a stall deadline");
        assert_eq!(at, t0 + Duration::from_secs(30));
        assert_eq!(s.handle_timeout(at - Duration::from_millis(1)), None);
        assert_eq!(s.handle_timeout(at), Some(crate::cluster::Stall::NoCredit));
        let local: Vec<_> = std::iter::from_fn(|| s.poll_local()).collect();
        assert_eq!(local.last(), Some(&crate::cluster::Local::Cancel));
        std::iter::from_fn(|| s.poll_transmit()).for_each(drop);
        assert!(s.is_finished());
    }
}
