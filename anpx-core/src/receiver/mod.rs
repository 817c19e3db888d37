//! The receiver state machine: one per WebSocket connection to a gateway (documented on [`Receiver`]).

mod config;
mod output;
mod relay;

pub use config::{
    ReceiverConfig, DEFAULT_MAX_BUFFERED_RESPONSES, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_UNREAD_UPLOAD,
};
pub use output::{ReceiverOutput, RequestEvent, RespondError, ResponseBody};
pub use relay::{RelayMode, RelayPolicy, RelayStep, ResponseRelay};

use std::collections::VecDeque;

use crate::id_map::IdMap;
use std::time::Instant;

use bytes::Bytes;

use crate::chunk::{concat, ChunkStream, Chunker, Reassembler};
use crate::control::{self, Control};
use crate::edge::field::{self, BadField};
use crate::features::{Feature, Features};
use crate::flow::Flow;
use crate::frame::{tag, ExtFrame, Frame, MessageKind};
use crate::message::{Head, Message, RequestId, ResponseHead};
use crate::passthrough;
use crate::timer::TimerQueue;
use crate::upstream_failure::{self, UpstreamCause, UpstreamFailure};
use crate::ws::{WsMessage, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR};

/// The content type of the receiver's own error answers.
const JSON: &str = "application/json";

#[derive(Debug)]
enum Reply {
    NotStarted,
    Streaming(ChunkStream),
    /// For a gateway that cannot take a streamed response: held until the end.
    Buffering {
        head: ResponseHead,
        body: Vec<Bytes>,
        size: u64,
    },
    Done,
}

#[derive(Debug)]
struct Serving {
    request_done: bool,
    reply: Reply,
    /// Credit windows, when `flow-control` was negotiated.
    flow: Option<Flow>,
    /// A WebSocket upgrade request, on a connection that carries them.
    upgrade: bool,
    /// Answered with `101`: the request body is the client's WebSocket
    /// bytes, which may pause for as long as the client likes.
    tunnel: bool,
    /// A [`ReceiverOutput::Writable`] for it went into the output queue
    /// and may not be polled yet: taken out again if it is aborted first.
    writable_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Ping,
    Liveness,
    Sweep,
}

/// Counters since the connection started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverTotals {
    /// Requests received.
    pub requests: u64,
    /// Responses sent completely.
    pub responses: u64,
    /// Requests aborted.
    pub aborted: u64,
    /// Frames for requests not in flight.
    pub stray_frames: u64,
    /// Requests the gateway cancelled (`cancel` extension).
    pub cancelled: u64,
    /// Requests answered 503 because [`ReceiverConfig::max_in_flight`]
    /// were in flight already.
    pub refused_busy: u64,
    /// Requests answered 400 because their head had a header no HTTP/1
    /// request can carry (see [`crate::edge::field`]).
    pub refused_malformed: u64,
}

/// The receiver state machine: one per WebSocket connection to a gateway.
///
/// The shell dials the gateway, creates a [`Receiver`] with the features the
/// gateway accepted, feeds it every WebSocket message, serves each
/// [`RequestEvent`] from the upstream service, hands the response back with
/// [`Receiver::respond`] / [`Receiver::respond_body`], and drains
/// [`Receiver::poll_output`]. When the connection ends it drops the
/// `Receiver` and reconnects on the [`Backoff`](crate::backoff::Backoff)
/// schedule with a fresh one.
///
/// ```
/// use std::time::Instant;
/// use anpx_core::Features;
/// use anpx_core::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent, ResponseBody};
/// use anpx_core::WsMessage;
/// use anpx_core::{chunk::Chunker, Head, Message, RequestHead, RequestId, ResponseHead};
///
/// let now = Instant::now();
/// let mut rx = Receiver::new(ReceiverConfig::default(), Features::empty(), now);
/// let request = Message {
///     request_id: RequestId::from("r-1"),
///     head: Head::Request(RequestHead::new("GET", "/hello")),
///     body: Default::default(),
/// };
/// for frame in Chunker::default().frames(&request).unwrap() {
///     rx.handle_message(now, WsMessage::Binary(frame));
/// }
/// let events: Vec<_> = std::iter::from_fn(|| rx.poll_output()).collect();
/// assert!(matches!(&events[0], ReceiverOutput::Event(RequestEvent::Head { head, .. }) if head.path == "/hello"));
/// assert!(matches!(&events[1], ReceiverOutput::Event(RequestEvent::End { .. })));
///
/// rx.respond(now, &RequestId::from("r-1"), ResponseHead::new(200), ResponseBody::Full("hi".into())).unwrap();
/// assert!(matches!(rx.poll_output(), Some(ReceiverOutput::Transmit(WsMessage::Binary(_)))));
/// ```
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    features: Features,
    chunker: Chunker,
    started: Instant,
    last_seen: Instant,
    reassembler: Reassembler,
    serving: IdMap<RequestId, Serving>,
    timers: TimerQueue<Timer>,
    sweep_armed: bool,
    closed: bool,
    drain: Drain,
    out: VecDeque<ReceiverOutput>,
    totals: ReceiverTotals,
    /// Response bytes held whole for a gateway without `streaming`, every
    /// request together (each `Reply::Buffering`'s `size`).
    buffered: u64,
}

/// Where a receiver is in telling the gateway it drains (`drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Not draining, or draining without telling (no `drain`).
    Quiet,
    /// Said so; requests the gateway routed before it knew may still come.
    Announced,
    /// The gateway answered: no request comes after.
    Acknowledged,
}

impl Receiver {
    /// A receiver for a connection that just opened, with the extensions the
    /// gateway accepted ([`Features::empty`] for a reference gateway).
    pub fn new(config: ReceiverConfig, features: Features, now: Instant) -> Self {
        let mut timers = TimerQueue::default();
        timers.arm(now + config.ping_interval, Timer::Ping);
        timers.arm(now + config.ping_interval * 2, Timer::Liveness);
        Receiver {
            chunker: Chunker::new(config.chunk_size),
            reassembler: Reassembler::new(config.reassembly),
            config,
            features,
            started: now,
            last_seen: now,
            serving: IdMap::default(),
            timers,
            sweep_armed: false,
            closed: false,
            drain: Drain::Quiet,
            out: VecDeque::new(),
            totals: ReceiverTotals::default(),
            buffered: 0,
        }
    }

    /// The largest frame of a streamed response: bigger than the
    /// reference's chunks, since only a gateway that negotiated `streaming`
    /// gets one.
    fn streamed_frame_len(&self) -> usize {
        let len = self.config.streaming_chunk_size.max(self.config.chunk_size);
        if self.features.contains(Feature::FlowControl) {
            // A frame whose body is over the window could never be sent.
            len.min(crate::flow::INITIAL_WINDOW as usize)
        } else {
            len
        }
    }

    /// How this connection relays its services' responses: which go whole
    /// (those that fit one chunk of [`ReceiverConfig::chunk_size`]).
    pub fn relay_policy(&self) -> RelayPolicy {
        RelayPolicy::new(self.config.chunk_size)
    }

    /// The negotiated extensions.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The receiver is shutting down: with `drain` negotiated, tells the
    /// gateway (the text message `{"type": "draining"}`) so that it routes new requests to
    /// other receivers, and returns `true`. Requests may still arrive
    /// until the gateway's answer ([`Receiver::drain_acknowledged`]): it
    /// routed them before it knew, so they are served. Without `drain`
    /// (or when already told, or closed) nothing is sent and it returns
    /// `false`.
    pub fn start_drain(&mut self, _now: Instant) -> bool {
        if self.closed || self.drain != Drain::Quiet || !self.features.contains(Feature::Drain) {
            return false;
        }
        self.drain = Drain::Announced;
        self.transmit(WsMessage::Text(control::draining()));
        true
    }

    /// Whether the gateway answered [`Receiver::start_drain`]: it routes no
    /// request to this connection any more.
    pub fn drain_acknowledged(&self) -> bool {
        self.drain == Drain::Acknowledged
    }

    /// Takes one WebSocket message from the gateway.
    pub fn handle_message(&mut self, now: Instant, message: WsMessage) {
        if self.closed {
            return;
        }
        self.last_seen = now;
        match message {
            WsMessage::Binary(bytes) => self.handle_frame(now, bytes),
            // Every text message is a sign of life; only a JSON ping needs an
            // answer (gateways do not send one today, but the protocol allows it).
            WsMessage::Text(text) => match Control::parse(&text) {
                Ok(Control::Ping { timestamp }) => {
                    self.transmit(WsMessage::Text(control::pong(timestamp.as_deref())));
                }
                Ok(Control::DrainingAck) if self.drain == Drain::Announced => {
                    self.drain = Drain::Acknowledged;
                }
                _ => {}
            },
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
        }
    }

    fn handle_frame(&mut self, now: Instant, bytes: Bytes) {
        if ExtFrame::peek(&bytes).is_some() {
            return self.handle_ext_frame(bytes);
        }
        let frame = match Frame::decode(bytes, &self.config.frame_limits) {
            Ok(f) => f,
            Err(e) => {
                return self.close(CLOSE_PROTOCOL_ERROR, format!("bad frame from gateway: {e}"))
            }
        };
        match frame.kind {
            MessageKind::Request => {}
            MessageKind::Error => {
                let id = frame.request_id.clone();
                let message = frame
                    .body
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                self.reassembler.discard(&id);
                return self.abort(&id, format!("gateway error: {message}"));
            }
            MessageKind::Response => {
                return self.close(
                    CLOSE_PROTOCOL_ERROR,
                    "the gateway sent a response frame".into(),
                );
            }
        }
        let id = frame.request_id.clone();
        let body_bytes = frame.body.as_ref().map_or(0, |b| b.len() as u64);
        let started = self.serving.contains_key(&id);
        let assembled = match self.reassembler.push(now, frame) {
            Ok(a) => a,
            Err(e) => {
                if started {
                    self.abort(&id, format!("bad request chunks: {e}"));
                }
                // Tell the gateway at once rather than letting it time out.
                return self.send_error_frame(&id, &format!("bad request chunks: {e}"));
            }
        };
        if let Some(Head::Request(mut head)) = assembled.head {
            if assembled.end {
                let actual: u64 = assembled.body.iter().map(|b| b.len() as u64).sum();
                truthful_length(&mut head, actual);
            }
            if started {
                // A second request under a live id: refuse the newcomer.
                self.totals.stray_frames += 1;
                return;
            }
            if let Err(e) = head
                .headers
                .iter()
                .try_for_each(|(n, v)| field::check(n, v))
            {
                // Decided here, not by the HTTP library a shell writes the
                // service's request with: those differ (one refuses such a
                // header, another leaves it out, another writes it as is,
                // line breaks and all).
                self.refuse_malformed(&id, &e);
                return self.arm_sweep(now);
            }
            if self.serving.len() >= self.config.max_in_flight {
                self.refuse_busy(&id);
                // The rest of its upload comes as stray frames, dropped
                // quietly while its partial message lasts (a refusal
                // for each would answer the gateway frame for frame).
                return self.arm_sweep(now);
            }
            self.serving.insert(
                id.clone(),
                Serving {
                    request_done: false,
                    reply: Reply::NotStarted,
                    flow: self.features.contains(Feature::FlowControl).then(Flow::new),
                    upgrade: passthrough::carries(self.features) && passthrough::is_upgrade(&head),
                    tunnel: false,
                    writable_out: false,
                },
            );
            self.totals.requests += 1;
            self.event(RequestEvent::Head {
                request: id.clone(),
                head,
            });
        }
        let Some(serving) = self.serving.get_mut(&id) else {
            self.totals.stray_frames += 1;
            return self.arm_sweep(now);
        };
        if let Some(Err(e)) = serving.flow.as_mut().map(|f| f.recv.receive(body_bytes)) {
            return self.close(
                CLOSE_PROTOCOL_ERROR,
                format!("request {id} body past its window: {e}"),
            );
        }
        // After the response is done the rest of the upload is swallowed.
        let deliver = !matches!(serving.reply, Reply::Done);
        if assembled.end {
            serving.request_done = true;
        }
        if deliver {
            for data in assembled.body {
                self.event(RequestEvent::Body {
                    request: id.clone(),
                    data,
                });
            }
            if assembled.end {
                self.event(RequestEvent::End {
                    request: id.clone(),
                });
            }
        }
        self.retire_if_done(&id);
        self.arm_sweep(now);
    }

    /// Makes sure partial messages in progress go stale on time.
    fn arm_sweep(&mut self, now: Instant) {
        if self.reassembler.in_progress() > 0 && !self.sweep_armed {
            self.sweep_armed = true;
            self.timers
                .arm(now + self.config.reassembly.stale_after, Timer::Sweep);
        }
    }

    /// Starts the response to `request`.
    pub fn respond(
        &mut self,
        _now: Instant,
        request: &RequestId,
        mut head: ResponseHead,
        body: ResponseBody,
    ) -> Result<(), RespondError> {
        // Only the receiver's own 502 may carry the marker; a service's
        // response is never taken for it.
        head.headers.remove(upstream_failure::HEADER);
        let frame_len = self.streamed_frame_len();
        let serving = self
            .serving
            .get_mut(request)
            .ok_or_else(|| RespondError::UnknownRequest(request.clone()))?;
        if !matches!(serving.reply, Reply::NotStarted) {
            return Err(RespondError::AlreadyResponded(request.clone()));
        }
        serving.tunnel = serving.upgrade && passthrough::is_switch(&head);
        match body {
            ResponseBody::Empty | ResponseBody::Full(_) => {
                let body = match body {
                    ResponseBody::Full(b) => b,
                    _ => Bytes::new(),
                };
                serving.reply = Reply::Done;
                self.send_whole(request, head, body)?;
            }
            ResponseBody::Streaming if self.features.contains(Feature::Streaming) => {
                let mut stream =
                    ChunkStream::new(MessageKind::Response, request.clone(), frame_len);
                let mut frames = Vec::new();
                let json = head.to_meta_json();
                let written = stream.write(Some((tag::RESP_META, &json)), &[], false, &mut frames);
                serving.reply = Reply::Streaming(stream);
                if let Err(e) = written {
                    serving.reply = Reply::Done;
                    self.send_failure(request, &format!("response head could not be encoded: {e}"));
                    return Err(RespondError::Failed {
                        request: request.clone(),
                        reason: e.to_string(),
                    });
                }
                self.send_frames(request, frames);
            }
            ResponseBody::Streaming => {
                serving.reply = Reply::Buffering {
                    head,
                    body: Vec::new(),
                    size: 0,
                };
            }
        }
        self.retire_if_done(request);
        Ok(())
    }

    /// Sends more of a streaming response; `last` ends it.
    pub fn respond_body(
        &mut self,
        _now: Instant,
        request: &RequestId,
        data: Bytes,
        last: bool,
    ) -> Result<(), RespondError> {
        let serving = self
            .serving
            .get_mut(request)
            .ok_or_else(|| RespondError::UnknownRequest(request.clone()))?;
        match &mut serving.reply {
            Reply::Streaming(stream) => {
                let mut frames = Vec::new();
                let written = stream.write(None, &data, last, &mut frames);
                if last || written.is_err() {
                    serving.reply = Reply::Done;
                }
                self.send_frames(request, frames);
                if !last && written.is_ok() {
                    if let Some(flow) = self.serving.get_mut(request).and_then(|s| s.flow.as_mut())
                    {
                        flow.send.note_write();
                    }
                }
                if let Err(e) = written {
                    self.send_error_frame(
                        request,
                        &format!("response body could not be encoded: {e}"),
                    );
                    self.retire_if_done(request);
                    return Err(RespondError::Failed {
                        request: request.clone(),
                        reason: e.to_string(),
                    });
                }
            }
            Reply::Buffering { body, size, .. } => {
                let len = data.len() as u64;
                let over = if *size + len > self.config.max_buffered_response {
                    Some(format!(
                        "response over {} bytes cannot be buffered for a gateway without streaming",
                        self.config.max_buffered_response
                    ))
                } else if self.buffered + len > self.config.max_buffered_total {
                    Some(format!(
                        "responses held for a gateway without streaming would pass {} bytes on this connection",
                        self.config.max_buffered_total
                    ))
                } else {
                    None
                };
                if let Some(reason) = over {
                    self.buffered -= *size;
                    serving.reply = Reply::Done;
                    self.send_failure(request, &reason);
                    self.retire_if_done(request);
                    return Err(RespondError::Failed {
                        request: request.clone(),
                        reason,
                    });
                }
                *size += len;
                self.buffered += len;
                if !data.is_empty() {
                    body.push(data);
                }
                if last {
                    let Reply::Buffering { head, body, size } =
                        std::mem::replace(&mut serving.reply, Reply::Done)
                    else {
                        unreachable!("matched Buffering above")
                    };
                    self.buffered -= size;
                    self.send_whole(request, head, concat(body))?;
                }
            }
            Reply::NotStarted | Reply::Done => {
                return Err(RespondError::NotStreaming(request.clone()))
            }
        }
        self.retire_if_done(request);
        Ok(())
    }

    /// Hands on one step of a [`ResponseRelay`]: the call it names
    /// ([`respond`](Self::respond), [`respond_body`](Self::respond_body) or
    /// [`respond_upstream_failure`](Self::respond_upstream_failure)).
    pub fn respond_step(
        &mut self,
        now: Instant,
        request: &RequestId,
        step: RelayStep,
    ) -> Result<(), RespondError> {
        match step {
            RelayStep::Whole { head, body } => self.respond(now, request, head, body),
            RelayStep::Head(head) => self.respond(now, request, head, ResponseBody::Streaming),
            RelayStep::Piece(data) => self.respond_body(now, request, data, false),
            RelayStep::End => self.respond_body(now, request, Bytes::new(), true),
            RelayStep::Failed(failure) => self.respond_upstream_failure(now, request, &failure),
        }
    }

    /// The upstream failed. Before the response head, the gateway is sent a
    /// 502 with `message`; after it, an error frame that makes the gateway cut
    /// the client's connection instead of ending the body as if complete.
    pub fn respond_error(
        &mut self,
        now: Instant,
        request: &RequestId,
        message: &str,
    ) -> Result<(), RespondError> {
        let failure = UpstreamFailure::new(UpstreamCause::Failed, message);
        self.respond_upstream_failure(now, request, &failure)
    }

    /// [`respond_error`](Self::respond_error) with the cause named: with
    /// `upstream-failure` negotiated, the 502 carries it
    /// ([`crate::upstream_failure`]) so the gateway logs and counts the
    /// request as an upstream failure rather than a completed response.
    pub fn respond_upstream_failure(
        &mut self,
        _now: Instant,
        request: &RequestId,
        failure: &UpstreamFailure,
    ) -> Result<(), RespondError> {
        let message = failure.message.as_str();
        let serving = self
            .serving
            .get_mut(request)
            .ok_or_else(|| RespondError::UnknownRequest(request.clone()))?;
        let before_head = matches!(serving.reply, Reply::NotStarted | Reply::Buffering { .. });
        let was_done = matches!(serving.reply, Reply::Done);
        if let Reply::Buffering { size, .. } = std::mem::replace(&mut serving.reply, Reply::Done) {
            self.buffered -= size;
        }
        if was_done {
            return Err(RespondError::NotStreaming(request.clone()));
        }
        if before_head {
            self.send_marked_failure(request, message, Some(failure));
        } else {
            self.send_error_frame(request, message);
        }
        self.retire_if_done(request);
        Ok(())
    }

    /// The WebSocket closed: abort everything in flight.
    pub fn handle_close(&mut self, _now: Instant) {
        self.closed = true;
        self.abort_all("connection to the gateway closed");
    }

    /// Drains the next instruction for the shell.
    pub fn poll_output(&mut self) -> Option<ReceiverOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.timers.next()
    }

    /// Runs what is due: the keep-alive ping, the silent-gateway check and
    /// the expiry of stale partial requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            if self.closed {
                return;
            }
            match timer {
                Timer::Ping => {
                    let seconds = now.saturating_duration_since(self.started).as_secs_f64();
                    self.transmit(WsMessage::Text(control::ping(seconds)));
                    self.timers
                        .arm(now + self.config.ping_interval, Timer::Ping);
                }
                Timer::Liveness => {
                    let deadline = self.last_seen + self.config.ping_interval * 2;
                    if deadline > now {
                        self.timers.arm(deadline, Timer::Liveness);
                    } else {
                        self.close(
                            CLOSE_GOING_AWAY,
                            "gateway silent past its liveness deadline".into(),
                        );
                    }
                }
                Timer::Sweep => {
                    self.sweep_armed = false;
                    // A WebSocket's request body is quiet whenever its
                    // client is; the gateway's idle timeout ends it.
                    for (id, s) in &self.serving {
                        if s.tunnel {
                            self.reassembler.touch(id, now);
                        }
                    }
                    for id in self.reassembler.expire(now) {
                        self.abort(&id, "request body stalled".into());
                        self.send_error_frame(&id, "request body stalled");
                    }
                    if let Some(at) = self.reassembler.next_expiry() {
                        self.sweep_armed = true;
                        self.timers.arm(at, Timer::Sweep);
                    }
                }
            }
        }
    }

    /// What the request bodies held unread for the services on this
    /// connection may cost, each piece counted with the shell's overhead:
    /// [`DEFAULT_MAX_UNREAD_UPLOAD`], and with `flow-control` a full credit
    /// window for each request it may have in flight on top, since a
    /// gateway keeping to its windows is never cut. Past it the shell cuts
    /// the upload that would go over.
    pub fn upload_budget(&self) -> u64 {
        if self.features.contains(Feature::FlowControl) {
            let windows =
                (self.config.max_in_flight as u64).saturating_mul(crate::flow::INITIAL_WINDOW);
            DEFAULT_MAX_UNREAD_UPLOAD.saturating_add(windows)
        } else {
            DEFAULT_MAX_UNREAD_UPLOAD
        }
    }

    /// Requests in flight on this connection.
    pub fn in_flight(&self) -> usize {
        self.serving.len()
    }

    /// Response bytes held whole for a gateway without `streaming`, every
    /// request together.
    pub fn buffered_response_bytes(&self) -> u64 {
        self.buffered
    }

    /// Partially received requests.
    pub fn partial_requests(&self) -> usize {
        self.reassembler.in_progress()
    }

    /// Counters.
    pub fn totals(&self) -> &ReceiverTotals {
        &self.totals
    }

    fn send_whole(
        &mut self,
        request: &RequestId,
        head: ResponseHead,
        body: Bytes,
    ) -> Result<(), RespondError> {
        let msg = Message {
            request_id: request.clone(),
            head: Head::Response(head),
            body,
        };
        match self.chunker.frames(&msg) {
            Ok(frames) => {
                self.send_frames(request, frames);
                self.totals.responses += 1;
                Ok(())
            }
            Err(e) => {
                self.send_failure(request, &format!("response could not be encoded: {e}"));
                Err(RespondError::Failed {
                    request: request.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// A 502 response in place of one that cannot be sent.
    fn send_failure(&mut self, request: &RequestId, message: &str) {
        self.send_marked_failure(request, message, None);
    }

    /// A 502 response with `message`, marked with `upstream` when the
    /// gateway negotiated `upstream-failure`.
    fn send_marked_failure(
        &mut self,
        request: &RequestId,
        message: &str,
        upstream: Option<&UpstreamFailure>,
    ) {
        let mut head = ResponseHead::new(502).with_header("content-type", JSON);
        if let Some(u) = upstream.filter(|_| self.features.contains(Feature::UpstreamFailure)) {
            head.headers
                .push(upstream_failure::HEADER, u.to_header_value());
        }
        self.send_json_error(request, head, message);
    }

    /// A whole response of `head` (which says its body is [`JSON`]) with
    /// `{"error": message}` as its body.
    fn send_json_error(&mut self, request: &RequestId, head: ResponseHead, message: &str) {
        let body = serde_json::json!({ "error": message }).to_string();
        let msg = Message {
            request_id: request.clone(),
            head: Head::Response(head),
            body: body.into(),
        };
        // A short message always fits unless the frame size is absurdly
        // small; then an error frame is the last resort.
        match self.chunker.frames(&msg) {
            Ok(frames) => self.send_frames(request, frames),
            Err(_) => self.send_error_frame(request, message),
        }
    }

    fn send_error_frame(&mut self, request: &RequestId, message: &str) {
        // The error ends the response: what still waits for credit is moot.
        self.discard_queued(request);
        let frame = Frame {
            kind: MessageKind::Error,
            request_id: request.clone(),
            chunk: None,
            meta: None,
            body: Some(Bytes::copy_from_slice(message.as_bytes())),
        };
        if let Ok(bytes) = frame.encode() {
            self.transmit(WsMessage::Binary(bytes));
        }
    }

    /// Answers a request past [`ReceiverConfig::max_in_flight`] with 503
    /// without serving it: the rest of its upload arrives as stray frames,
    /// and the gateway may try another receiver.
    fn refuse_busy(&mut self, request: &RequestId) {
        self.totals.refused_busy += 1;
        let message = format!(
            "receiver busy: {} requests in flight on this connection",
            self.config.max_in_flight
        );
        let head = ResponseHead::new(503)
            .with_header("content-type", JSON)
            .with_header("retry-after", "1");
        self.send_json_error(request, head, &message);
    }

    /// Answers a head no HTTP/1 request can carry with 400, without
    /// asking the shell to call the service.
    fn refuse_malformed(&mut self, request: &RequestId, why: &BadField) {
        self.totals.refused_malformed += 1;
        let message = format!("Bad request from gateway: {why}");
        let head = ResponseHead::new(400).with_header("content-type", JSON);
        self.send_json_error(request, head, &message);
    }

    fn retire_if_done(&mut self, request: &RequestId) {
        let done = self.serving.get(request).is_some_and(|s| {
            s.request_done
                && matches!(s.reply, Reply::Done)
                && s.flow.as_ref().is_none_or(|f| f.send.is_empty())
        });
        if done {
            self.serving.remove(request);
        }
    }

    fn abort(&mut self, request: &RequestId, reason: String) {
        if let Some(s) = self.serving.remove(request) {
            if let Reply::Buffering { size, .. } = s.reply {
                self.buffered -= size;
            }
            if s.writable_out {
                // Nothing is left to write.
                self.out.retain(
                    |o| !matches!(o, ReceiverOutput::Writable { request: r } if r == request),
                );
            }
            self.totals.aborted += 1;
            self.event(RequestEvent::Aborted {
                request: request.clone(),
                reason,
            });
        }
    }

    fn abort_all(&mut self, reason: &str) {
        let mut ids: Vec<RequestId> = self.serving.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.abort(&id, reason.to_owned());
        }
        self.reassembler.clear();
    }

    fn close(&mut self, code: u16, reason: String) {
        if self.closed {
            return;
        }
        self.abort_all(&reason);
        self.closed = true;
        self.out.push_back(ReceiverOutput::Close { code, reason });
    }

    fn event(&mut self, event: RequestEvent) {
        self.out.push_back(ReceiverOutput::Event(event));
    }

    fn transmit(&mut self, message: WsMessage) {
        self.out.push_back(ReceiverOutput::Transmit(message));
    }

    /// Transmits the frames of `request`'s response, or queues them until
    /// the gateway's credit covers them.
    fn send_frames(&mut self, request: &RequestId, frames: Vec<Bytes>) {
        let Some(s) = self.serving.get_mut(request).filter(|s| s.flow.is_some()) else {
            for f in frames {
                self.out
                    .push_back(ReceiverOutput::Transmit(WsMessage::Binary(f)));
            }
            return;
        };
        let streaming = matches!(s.reply, Reply::Streaming(_));
        let Some(flow) = s.flow.as_mut() else {
            return;
        };
        for f in frames {
            flow.send.push(f);
        }
        while let Some(f) = flow.send.pop_ready() {
            self.out
                .push_back(ReceiverOutput::Transmit(WsMessage::Binary(f)));
        }
        // Only a response whose body may still grow is told: after the
        // last piece there is nothing more to read from the service.
        if streaming && flow.send.take_writable() {
            s.writable_out = true;
            self.out.push_back(ReceiverOutput::Writable {
                request: request.clone(),
            });
        }
    }

    fn discard_queued(&mut self, request: &RequestId) {
        if let Some(flow) = self.serving.get_mut(request).and_then(|s| s.flow.as_mut()) {
            flow.send.clear();
        }
    }

    fn handle_ext_frame(&mut self, bytes: Bytes) {
        let frame = match ExtFrame::decode(bytes, &self.config.frame_limits) {
            Ok(f) => f,
            Err(e) => {
                return self.close(CLOSE_PROTOCOL_ERROR, format!("bad frame from gateway: {e}"))
            }
        };
        match frame {
            ExtFrame::WindowUpdate {
                request_id,
                increment,
            } if self.features.contains(Feature::FlowControl) => {
                let Some(flow) = self
                    .serving
                    .get_mut(&request_id)
                    .and_then(|s| s.flow.as_mut())
                else {
                    // The response ended meanwhile.
                    self.totals.stray_frames += 1;
                    return;
                };
                if let Err(e) = flow.send.grant(increment) {
                    return self.close(CLOSE_PROTOCOL_ERROR, format!("request {request_id}: {e}"));
                }
                self.send_frames(&request_id, Vec::new());
                self.retire_if_done(&request_id);
            }
            ExtFrame::Cancel { request_id, reason } if self.features.contains(Feature::Cancel) => {
                self.reassembler.discard(&request_id);
                if self.serving.contains_key(&request_id) {
                    self.totals.cancelled += 1;
                    let why = if reason.is_empty() {
                        "cancelled by the gateway".to_owned()
                    } else {
                        format!("cancelled by the gateway: {reason}")
                    };
                    self.abort(&request_id, why);
                } else {
                    self.totals.stray_frames += 1;
                }
            }
            other => self.close(
                CLOSE_PROTOCOL_ERROR,
                format!(
                    "extension frame {:#04x} that was not negotiated",
                    match other {
                        ExtFrame::WindowUpdate { .. } => crate::frame::TYPE_WINDOW_UPDATE,
                        ExtFrame::Cancel { .. } => crate::frame::TYPE_CANCEL,
                    }
                ),
            ),
        }
    }

    /// The shell handed `n` bytes of `request`'s body to the upstream
    /// service. With `flow-control`, this is what reopens the gateway's
    /// window for that request body; without it, nothing happens.
    pub fn request_body_read(&mut self, _now: Instant, request: &RequestId, n: usize) {
        let Some(increment) = self
            .serving
            .get_mut(request)
            .and_then(|s| s.flow.as_mut())
            .and_then(|f| f.recv.consumed(n as u64))
        else {
            return;
        };
        let frame = ExtFrame::WindowUpdate {
            request_id: request.clone(),
            increment,
        };
        self.transmit(WsMessage::Binary(frame.encode()));
    }

    /// Body bytes of `request`'s response the receiver holds until the
    /// gateway grants credit for them (`flow-control`); 0 without it.
    /// `None` once the request is no longer in flight. A shell relaying an
    /// upstream body reads more only while this is 0, which bounds the
    /// memory a download takes; when a
    /// [`respond_body`](Self::respond_body) that was not the last leaves it
    /// above 0, [`ReceiverOutput::Writable`] says when it is 0 again.
    pub fn unsent(&self, request: &RequestId) -> Option<u64> {
        let s = self.serving.get(request)?;
        Some(s.flow.as_ref().map_or(0, |f| f.send.queued()))
    }
}

/// Makes a whole request's `content-length` (when it has one) say the
/// length of the body that came. The reference gateway drops the body of a
/// GET, HEAD or DELETE but keeps the client's `content-length`; replayed as
/// sent, the service would wait for bytes that never come.
fn truthful_length(head: &mut crate::message::RequestHead, actual: u64) {
    let declared = head.headers.get("content-length").map(str::trim);
    if declared.is_some_and(|d| d.parse::<u64>() != Ok(actual)) {
        head.headers.remove("content-length");
        head.headers.push("content-length", actual.to_string());
    }
}
