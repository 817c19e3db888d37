//! The local service behind a serving gateway's receiver, scripted from the
//! seed so that a served request meets every kind of service: one that
//! answers with a head, body pieces and an end; one that fails before or
//! after its head; one that never answers (the gateway's request timeout
//! must end it); one that answers only after the whole upload; one that
//! reads the upload slowly (the receiver's window must hold the gateway
//! back). A WebSocket upgrade is answered `101` and every piece the client
//! sends is echoed back; the service closes once the client closed its
//! side or after a number of pieces drawn from the seed, and otherwise
//! waits for the gateway's idle timeout.
//!
//! The service holds what reaches it against what the client sent, so a
//! byte lost, doubled or reordered anywhere between the forwarding client
//! and the receiver is caught where it arrives; what it sends is reported
//! as it goes, for the client's side to be held against.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anpx_core::passthrough::SWITCHING_PROTOCOLS;
use anpx_core::{Receiver, RequestHead, RequestId, ResponseBody, ResponseHead};
use bytes::Bytes;

/// Random bytes that every body is a slice of: drawn once per process,
/// so that a body costs a slice instead of a draw of every byte (most of a
/// run's time otherwise), while two bodies still differ wherever their
/// offsets do.
fn pool() -> &'static Bytes {
    static POOL: OnceLock<Bytes> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut v = vec![0u8; 1 << 20];
        fastrand::Rng::with_seed(0x5eed).fill(&mut v);
        Bytes::from(v)
    })
}

/// `len` random bytes (at most a MiB).
pub fn bytes(rng: &mut fastrand::Rng, len: Range<usize>) -> Bytes {
    let pool = pool();
    let n = rng.usize(len).min(pool.len());
    let at = rng.usize(0..=pool.len() - n);
    pool.slice(at..at + n)
}

/// What a slow reader reads of an upload at a time.
const SLOW_READ: usize = 128 * 1024;

/// What a client's request should look like when it reaches a service.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The client.
    pub client: usize,
    /// Its method.
    pub method: String,
    /// Its path.
    pub path: String,
    /// Every body byte it sends, in order (for a WebSocket, every piece).
    pub body: Bytes,
}

/// What the service did that a client may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// A response head with this status, to `client`.
    Head { client: usize, status: u16 },
    /// Body bytes to `client`, in order.
    Body { client: usize, data: Bytes },
    /// The response to `client` is complete.
    End { client: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answers completely.
    End,
    /// Fails with its head still to send, or after it.
    Fail,
    /// Never answers.
    Hang,
}

/// One request as the service sees it.
#[derive(Debug)]
struct Script {
    expected: Expected,
    status: u16,
    pieces: VecDeque<Bytes>,
    outcome: Outcome,
    head_sent: bool,
    /// Answers only once the whole upload is in.
    after_upload: bool,
    /// Upload bytes checked so far, and the ones not yet read.
    received: usize,
    unread: usize,
    upload_done: bool,
    /// Reads the upload this long after it comes, [`SLOW_READ`] bytes at a
    /// time, instead of all at once.
    slow_read: Option<Duration>,
    read_at: Option<Instant>,
    next_at: Instant,
    step: (u64, u64),
    /// Its response is over (ended or failed): only the upload may still
    /// come, and is read.
    replied: bool,
    /// A WebSocket: pieces to echo, and when the service closes.
    echo: Option<Echo>,
}

#[derive(Debug)]
struct Echo {
    pending: VecDeque<Bytes>,
    close_after: Option<usize>,
    echoed: usize,
}

/// The service behind one receiver; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Service {
    expected: BTreeMap<RequestId, Expected>,
    scripts: BTreeMap<RequestId, Script>,
    sent: Vec<Sent>,
    /// Response steps that waited for the receiver's credit.
    held: u64,
}

impl Service {
    /// The gateway started `request` for a client: what the service should
    /// get for it.
    pub fn expect(&mut self, request: RequestId, expected: Expected) {
        self.expected.insert(request, expected);
    }

    /// Requests the service still serves.
    pub fn in_flight(&self) -> usize {
        self.scripts.len()
    }

    /// What each request it holds is at, for a message.
    pub fn describe(&self) -> String {
        self.scripts
            .values()
            .map(|s| {
                format!(
                    "client {}: {:?}, head sent {}, replied {}, upload {} of {} bytes (ended {}, {} unread)",
                    s.expected.client,
                    s.outcome,
                    s.head_sent,
                    s.replied,
                    s.received,
                    s.expected.body.len(),
                    s.upload_done,
                    s.unread
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Response steps that waited for the receiver's credit.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// What it sent since the last call.
    pub fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    /// The receiver starts `request` with `head`.
    pub fn head(
        &mut self,
        rng: &mut fastrand::Rng,
        now: Instant,
        request: RequestId,
        head: &RequestHead,
    ) -> Result<(), String> {
        if self.scripts.contains_key(&request) {
            return Err(format!("request {request} reached the service twice"));
        }
        let Some(expected) = self.expected.remove(&request) else {
            return Err(format!(
                "the service got request {request}, which its gateway never started"
            ));
        };
        let c = expected.client;
        let client = head.headers.get("x-sim-client");
        if client != Some(c.to_string().as_str()) || head.path != expected.path {
            return Err(format!(
                "the service got {} {} (client header {client:?}) for client {c}'s {} {}",
                head.method, head.path, expected.method, expected.path
            ));
        }
        if head.method != expected.method {
            return Err(format!(
                "the service got a {} for client {c}'s {}",
                head.method, expected.method
            ));
        }
        let websocket = anpx_core::passthrough::is_upgrade(head);
        let outcome = match rng.u8(0..10) {
            0 if !websocket => Outcome::Fail,
            1 => Outcome::Hang,
            _ => Outcome::End,
        };
        // Slow, at a talker's pace, or all at once (past the receiver's
        // window, when the response is large).
        let step = match rng.u8(0..4) {
            0 => (500, 5000),
            1 => (0, 0),
            _ => (0, 200),
        };
        let slow_read =
            (!websocket && rng.u8(0..4) == 0).then(|| Duration::from_millis(rng.u64(50..=1000)));
        let echo = websocket.then(|| Echo {
            pending: VecDeque::new(),
            close_after: rng.bool().then(|| rng.usize(0..4)),
            echoed: 0,
        });
        let script = Script {
            expected,
            status: if websocket {
                SWITCHING_PROTOCOLS
            } else {
                [200, 201, 404, 500][rng.usize(0..4)]
            },
            pieces: (0..if rng.u8(0..16) == 0 {
                // More than the receiver's window.
                rng.usize(25..=50)
            } else {
                rng.usize(0..6)
            })
                .map(|_| bytes(rng, 0..90_000))
                .collect(),
            outcome,
            head_sent: false,
            // A slow reader reads the whole upload before it answers.
            after_upload: !websocket && (slow_read.is_some() || rng.bool()),
            received: 0,
            unread: 0,
            upload_done: false,
            slow_read,
            read_at: None,
            next_at: now + Duration::from_millis(rng.u64(step.0..=step.1)),
            step,
            replied: false,
            echo,
        };
        self.scripts.insert(request, script);
        Ok(())
    }

    /// The receiver passes on a piece of `request`'s body.
    pub fn body(
        &mut self,
        rx: &mut Receiver,
        now: Instant,
        request: &RequestId,
        data: Bytes,
    ) -> Result<(), String> {
        let Some(s) = self.scripts.get_mut(request) else {
            return Err(format!(
                "the service got body for request {request}, which it does not hold"
            ));
        };
        let c = s.expected.client;
        if s.upload_done {
            return Err(format!(
                "the service got body for client {c} after its upload ended"
            ));
        }
        let end = s.received + data.len();
        let Some(want) = s.expected.body.get(s.received..end) else {
            return Err(format!(
                "the service got {end} upload bytes of client {c}, which sends {}",
                s.expected.body.len()
            ));
        };
        if want != &data[..] {
            return Err(format!(
                "the service got upload bytes {}..{end} of client {c} that differ from what it sent",
                s.received
            ));
        }
        s.received = end;
        s.unread += data.len();
        if let Some(e) = &mut s.echo {
            if !data.is_empty() {
                e.pending.push_back(data);
            }
        }
        match s.slow_read {
            Some(gap) => {
                s.read_at.get_or_insert(now + gap);
            }
            None => {
                rx.request_body_read(now, request, s.unread);
                s.unread = 0;
            }
        }
        Ok(())
    }

    /// The receiver passes on the end of `request`'s body.
    pub fn end(&mut self, rx: &Receiver, request: &RequestId) -> Result<(), String> {
        let Some(s) = self.scripts.get_mut(request) else {
            return Err(format!(
                "the service got the end of request {request}, which it does not hold"
            ));
        };
        let c = s.expected.client;
        if s.upload_done || s.received != s.expected.body.len() {
            return Err(format!(
                "the upload of client {c} ended at the service after {} of {} bytes (a second end: {})",
                s.received,
                s.expected.body.len(),
                s.upload_done
            ));
        }
        s.upload_done = true;
        self.retire(rx, request);
        Ok(())
    }

    /// The receiver gave `request` up.
    pub fn aborted(&mut self, request: &RequestId) -> Result<(), String> {
        match self.scripts.remove(request) {
            Some(_) => Ok(()),
            None => Err(format!(
                "the receiver aborted request {request}, which the service does not hold"
            )),
        }
    }

    /// When the service next wants to act: a read due, or a step of a
    /// response whose last piece the receiver has sent on.
    pub fn poll_timeout(&self, rx: &Receiver) -> Option<Instant> {
        self.scripts
            .iter()
            .filter_map(|(id, s)| s.wake(rx.unsent(id) == Some(0)))
            .min()
    }

    /// Does what is due by `now`: reads, response pieces, ends.
    pub fn act(&mut self, rx: &mut Receiver, now: Instant) -> Result<bool, String> {
        let mut moved = false;
        let due: Vec<RequestId> = self
            .scripts
            .iter()
            .filter(|(id, s)| s.wake(rx.unsent(id) == Some(0)).is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(s) = self.scripts.get_mut(&id) else {
                continue;
            };
            if let (Some(at), Some(gap)) = (s.read_at, s.slow_read) {
                if at <= now {
                    let n = s.unread.min(SLOW_READ);
                    rx.request_body_read(now, &id, n);
                    s.unread -= n;
                    s.read_at = (s.unread > 0).then_some(now + gap);
                    moved = true;
                }
            }
            if !s.replied && s.answer_due(now) && rx.unsent(&id) == Some(0) {
                s.answer(rx, now, &id, &mut self.sent)?;
                moved = true;
                if !s.replied && rx.unsent(&id) > Some(0) {
                    self.held += 1;
                }
            }
        }
        let held: Vec<RequestId> = self.scripts.keys().cloned().collect();
        for id in held {
            self.retire(rx, &id);
        }
        Ok(moved)
    }

    /// A request is done with once its response is over and the receiver
    /// let go of it (it wants no more of the upload either).
    fn retire(&mut self, rx: &Receiver, request: &RequestId) {
        if self.scripts.get(request).is_some_and(|s| s.replied) && rx.unsent(request).is_none() {
            self.scripts.remove(request);
        }
    }
}

impl Script {
    /// When it next acts; a response step only when `may_send`.
    fn wake(&self, may_send: bool) -> Option<Instant> {
        let answer = (may_send && !self.replied && self.wants_to_answer()).then_some(self.next_at);
        [answer, self.read_at].into_iter().flatten().min()
    }

    /// Whether it has something to send, time allowing.
    fn wants_to_answer(&self) -> bool {
        if self.outcome == Outcome::Hang && !self.head_sent {
            return false;
        }
        if self.after_upload && !self.upload_done {
            return false;
        }
        match &self.echo {
            Some(e) if self.head_sent => {
                let closing = e.close_after.is_some_and(|n| e.echoed >= n) || self.upload_done;
                !e.pending.is_empty() || closing
            }
            _ => true,
        }
    }

    fn answer_due(&self, now: Instant) -> bool {
        self.wants_to_answer() && self.next_at <= now
    }

    /// The next step of the response.
    fn answer(
        &mut self,
        rx: &mut Receiver,
        now: Instant,
        id: &RequestId,
        sent: &mut Vec<Sent>,
    ) -> Result<(), String> {
        let client = self.expected.client;
        let refused = |e| format!("the receiver refused the service's answer to {id}: {e:?}");
        let span = self.step.1 - self.step.0 + 1;
        // No draw from the world's RNG here: spread by what went out.
        self.next_at = now + Duration::from_millis(self.step.0 + self.pieces.len() as u64 % span);
        if !self.head_sent {
            if self.outcome == Outcome::Fail && self.pieces.len() % 2 == 0 {
                self.replied = true;
                let reason = "service failed before its head";
                rx.respond_error(now, id, reason).map_err(refused)?;
                // The receiver answers for it: a whole 502 whose body
                // names the error.
                let body = serde_json::json!({ "error": reason }).to_string();
                sent.push(Sent::Head {
                    client,
                    status: 502,
                });
                sent.push(Sent::Body {
                    client,
                    data: body.into(),
                });
                sent.push(Sent::End { client });
                return Ok(());
            }
            self.head_sent = true;
            let head = ResponseHead::new(self.status);
            rx.respond(now, id, head, ResponseBody::Streaming)
                .map_err(refused)?;
            sent.push(Sent::Head {
                client,
                status: self.status,
            });
            return Ok(());
        }
        let piece = match &mut self.echo {
            Some(e) => e.pending.pop_front().inspect(|_| e.echoed += 1),
            None => self.pieces.pop_front(),
        };
        if let Some(p) = piece {
            rx.respond_body(now, id, p.clone(), false)
                .map_err(refused)?;
            sent.push(Sent::Body { client, data: p });
            return Ok(());
        }
        self.replied = true;
        if self.outcome == Outcome::Fail {
            return rx
                .respond_error(now, id, "service failed midway")
                .map_err(refused);
        }
        rx.respond_body(now, id, Bytes::new(), true)
            .map_err(refused)?;
        sent.push(Sent::End { client });
        Ok(())
    }
}
