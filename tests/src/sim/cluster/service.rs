//! The local side of a served request: what the serving gateway's own
//! machine and receiver would make of it, as a script drawn from the seed.
//! It answers with a head, body pieces and an end, or fails, or hangs until
//! the local request timeout answers 504; it holds back while too much of
//! its response is unread (the receiver's flow-control window), and it
//! takes the forwarded upload.
//!
//! A WebSocket upgrade is answered `101`, then every piece the client sends
//! is echoed back; the service closes (the response ends) once the client
//! closed its side or after a number of pieces drawn from the seed, and the
//! local machine fails the tunnel with 504 once nothing moved either way
//! for the WebSocket idle timeout.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use anpx_core::passthrough::SWITCHING_PROTOCOLS;
use anpx_core::ResponseHead;
use anpx_core::{Failure, FailureKind, RequestBody, ResponseEvent};
use bytes::Bytes;

/// Unread response bytes after which the local side waits for reads.
const WINDOW: usize = 256 * 1024;

/// `len` random bytes.
pub fn bytes(rng: &mut fastrand::Rng, len: Range<usize>) -> Bytes {
    let n = rng.usize(len);
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    Bytes::from(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    End,
    Fail,
    Hang,
}

/// One local request; see the [module docs](self).
#[derive(Debug)]
pub struct LocalRequest {
    client: usize,
    status: u16,
    pieces: VecDeque<Bytes>,
    outcome: Outcome,
    head_sent: bool,
    /// Whether the response waits for the whole upload first.
    after_upload: bool,
    upload_done: bool,
    upload: Vec<u8>,
    events: VecDeque<ResponseEvent>,
    next_at: Instant,
    step: (u64, u64),
    /// The local request timeout: a request with no head by then fails 504.
    deadline: Instant,
    unread: usize,
    sent: Vec<u8>,
    ended: bool,
    finished_ok: bool,
    /// A WebSocket: what the service still has to echo and how it ends.
    ws: Option<Tunnel>,
}

/// The WebSocket side of a local request.
#[derive(Debug)]
struct Tunnel {
    /// Client pieces not yet echoed.
    echo: VecDeque<Bytes>,
    /// The service closes after echoing this many pieces.
    close_after: Option<usize>,
    echoed: usize,
    idle: Duration,
    /// Last activity either way.
    active_at: Instant,
}

impl LocalRequest {
    /// A local request for `client`'s forwarded request.
    pub fn new(
        rng: &mut fastrand::Rng,
        now: Instant,
        client: usize,
        body: RequestBody,
        timeout: Duration,
        websocket_idle: Option<Duration>,
    ) -> LocalRequest {
        let outcome = match rng.u8(0..10) {
            0 => Outcome::Fail,
            1 => Outcome::Hang,
            _ => Outcome::End,
        };
        let pieces = (0..rng.usize(0..6))
            .map(|_| bytes(rng, 0..90_000))
            .collect();
        let step = if rng.u8(0..4) == 0 {
            (500, 5000)
        } else {
            (0, 200)
        };
        let mut upload = Vec::new();
        let streaming = body.is_streaming();
        if let RequestBody::Full(b) = body {
            upload.extend_from_slice(&b);
        }
        let websocket = websocket_idle.is_some();
        let ws = websocket_idle.map(|idle| Tunnel {
            echo: VecDeque::new(),
            close_after: rng.bool().then(|| rng.usize(0..4)),
            echoed: 0,
            idle,
            active_at: now,
        });
        let status = if ws.is_some() {
            SWITCHING_PROTOCOLS
        } else {
            [200, 201, 404, 500][rng.usize(0..4)]
        };
        LocalRequest {
            ws,
            client,
            status,
            pieces,
            outcome,
            head_sent: false,
            after_upload: streaming && !websocket && rng.bool(),
            upload_done: !streaming,
            upload,
            events: VecDeque::new(),
            next_at: now + Duration::from_millis(rng.u64(step.0..=step.1)),
            step,
            deadline: now + timeout,
            unread: 0,
            sent: Vec::new(),
            ended: false,
            finished_ok: false,
        }
    }

    /// The client it answers.
    pub fn client(&self) -> usize {
        self.client
    }

    /// A piece of the forwarded upload; false once the request ended.
    pub fn take_upload(&mut self, now: Instant, data: Bytes, last: bool) -> bool {
        if self.ended {
            return false;
        }
        if let Some(t) = &mut self.ws {
            t.active_at = now;
            if !data.is_empty() {
                t.echo.push_back(data.clone());
            }
        }
        self.upload.extend_from_slice(&data);
        self.upload_done |= last;
        true
    }

    /// `n` response bytes went on.
    pub fn read(&mut self, n: usize) {
        self.unread = self.unread.saturating_sub(n);
    }

    /// The serving side stopped the request.
    pub fn cancel(&mut self) {
        self.ended = true;
        self.events.clear();
    }

    /// Whether it ended (answered completely, failed or cancelled).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Events made and not yet taken.
    pub fn waiting(&self) -> usize {
        self.events.len()
    }

    /// The next event for the serving machine.
    pub fn poll_event(&mut self) -> Option<ResponseEvent> {
        let e = self.events.pop_front()?;
        if matches!(e, ResponseEvent::End | ResponseEvent::Failed(_)) {
            self.ended = true;
        }
        Some(e)
    }

    /// Status and body, once answered completely.
    pub fn truth(&self) -> Option<(u16, Vec<u8>)> {
        self.finished_ok.then(|| (self.status, self.sent.clone()))
    }

    /// Whether a switched WebSocket has something to do now: echo a piece
    /// (window allowing) or close.
    fn tunnel_due(&self) -> Option<bool> {
        let t = self.ws.as_ref().filter(|_| self.head_sent)?;
        let closing = t.close_after.is_some_and(|n| t.echoed >= n) || self.upload_done;
        Some((!t.echo.is_empty() && self.unread <= WINDOW) || (t.echo.is_empty() && closing))
    }

    /// When it wants to make its next event.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended || !self.events.is_empty() {
            return None;
        }
        if let (Some(due), Some(t)) = (self.tunnel_due(), &self.ws) {
            return Some(if due {
                t.active_at
            } else {
                t.active_at + t.idle
            });
        }
        match self.outcome {
            Outcome::Hang if !self.head_sent => Some(self.deadline),
            _ if self.unread > WINDOW || (self.after_upload && !self.upload_done) => {
                (!self.head_sent).then_some(self.deadline)
            }
            _ if self.head_sent => Some(self.next_at),
            _ => Some(self.next_at.min(self.deadline)),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended || !self.events.is_empty() {
            return;
        }
        if !self.head_sent && now >= self.deadline {
            let f = Failure::new(
                FailureKind::HeadTimeout,
                504,
                "Receiver did not respond in time",
            );
            self.events.push_back(ResponseEvent::Failed(f));
            return;
        }
        if let Some(due) = self.tunnel_due() {
            return self.tunnel_step(now, due);
        }
        if self.outcome == Outcome::Hang && !self.head_sent {
            return;
        }
        if now < self.next_at || self.unread > WINDOW || (self.after_upload && !self.upload_done) {
            return;
        }
        self.next_at = now + Duration::from_millis(fastrand_step(self.step, self.sent.len()));
        if !self.head_sent {
            self.head_sent = true;
            if let Some(t) = &mut self.ws {
                t.active_at = now;
            }
            let head = ResponseHead::new(self.status);
            self.events.push_back(ResponseEvent::Head(head));
        } else if let Some(p) = self.pieces.pop_front() {
            self.unread += p.len();
            self.sent.extend_from_slice(&p);
            self.events.push_back(ResponseEvent::Body(p));
        } else if self.outcome == Outcome::Fail {
            let f = Failure::new(FailureKind::Upstream, 502, "Receiver reported an error");
            self.events.push_back(ResponseEvent::Failed(f));
        } else {
            self.finished_ok = true;
            self.events.push_back(ResponseEvent::End);
        }
    }
}

impl LocalRequest {
    /// One step of a switched WebSocket: the next echo, the service's
    /// close, or the idle timeout.
    fn tunnel_step(&mut self, now: Instant, due: bool) {
        let Some(t) = &mut self.ws else {
            return;
        };
        if !due {
            if now >= t.active_at + t.idle {
                let f = Failure::new(
                    FailureKind::WebSocketIdle,
                    504,
                    "WebSocket idle past its timeout",
                );
                self.events.push_back(ResponseEvent::Failed(f));
            }
            return;
        }
        t.active_at = now;
        if let Some(p) = t.echo.pop_front() {
            t.echoed += 1;
            self.unread += p.len();
            self.sent.extend_from_slice(&p);
            self.events.push_back(ResponseEvent::Body(p));
        } else {
            self.finished_ok = true;
            self.events.push_back(ResponseEvent::End);
        }
    }
}

/// A delay in the step range that needs no RNG (the local side must not
/// draw from the world's RNG out of order): spread by how much was sent.
fn fastrand_step(step: (u64, u64), sent: usize) -> u64 {
    let span = step.1 - step.0 + 1;
    step.0 + (sent as u64 % span)
}
