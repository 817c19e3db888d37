//! The simulated NATS: latency, loss, per-pair order, queue groups and "no
//! responders", and nothing NATS does not promise.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anpx_core::RequestId;
use bytes::Bytes;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// The route announcement subject: every gateway.
    Routes,
    /// The subject of service `k`: one member of its queue group.
    Service(usize),
    /// One request's inbox at one gateway.
    Inbox(String),
}

/// A message on its way.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Where it goes.
    pub dest: Dest,
    /// Its reply subject.
    pub reply: Option<String>,
    /// The payload.
    pub payload: Bytes,
    /// The bus's own "no responders" status instead of a payload.
    pub no_responders: bool,
}

/// The bus.
#[derive(Debug)]
pub struct Bus {
    latency_ms: (u64, u64),
    /// Chance in a thousand that a message is lost.
    loss: u32,
    queue: BTreeMap<(Instant, u64), Envelope>,
    /// When the last message from a sender to a destination arrives, so
    /// the next one from the same sender to the same place comes later.
    last: BTreeMap<(String, String), Instant>,
    seq: u64,
    /// Messages published.
    pub messages: u64,
    /// Messages lost.
    pub lost: u64,
}

/// The prefix of gateway `node`'s served requests' inboxes: its machine
/// names each `<prefix>.<request id>`.
pub fn serving_prefix(node: usize) -> String {
    format!("_INBOX.n{node}.s")
}

/// The reply inbox of forwarded request `request` at gateway `node`.
pub fn reply_inbox(node: usize, request: &RequestId) -> String {
    format!("_INBOX.n{node}.f.{}", request.as_str())
}

/// Which side of a gateway an inbox is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// A request it forwarded.
    Forwarding,
    /// A request another gateway forwarded to it.
    Serving,
}

/// The gateway, side and request of an inbox.
pub fn parse_inbox(inbox: &str) -> Option<(usize, Side, RequestId)> {
    let rest = inbox.strip_prefix("_INBOX.n")?;
    let (node, tail) = rest.split_once('.')?;
    let (side, request) = tail.split_once('.')?;
    let side = match side {
        "f" => Side::Forwarding,
        "s" => Side::Serving,
        _ => return None,
    };
    Some((node.parse().ok()?, side, RequestId::from(request)))
}

impl Bus {
    /// A bus with the seed's latency and loss.
    pub fn new(rng: &mut fastrand::Rng, _start: Instant) -> Bus {
        let low = rng.u64(0..20);
        Bus {
            latency_ms: (low, low + rng.u64(1..100)),
            loss: if rng.u8(0..3) == 0 { 0 } else { rng.u32(1..20) },
            queue: BTreeMap::new(),
            last: BTreeMap::new(),
            seq: 0,
            messages: 0,
            lost: 0,
        }
    }

    /// Whether this bus loses no message.
    pub fn is_lossless(&self) -> bool {
        self.loss == 0
    }

    /// Publishes `payload` from gateway `from`.
    pub fn publish(
        &mut self,
        rng: &mut fastrand::Rng,
        now: Instant,
        from: &str,
        dest: Dest,
        reply: Option<String>,
        payload: Bytes,
    ) {
        self.messages += 1;
        if self.loss > 0 && rng.u32(0..1000) < self.loss {
            self.lost += 1;
            return;
        }
        let env = Envelope {
            dest,
            reply,
            payload,
            no_responders: false,
        };
        self.enqueue(rng, now, from, env);
    }

    /// Tells `reply` that nobody listens on the subject it asked.
    pub fn no_responders(&mut self, rng: &mut fastrand::Rng, now: Instant, reply: &str) {
        let env = Envelope {
            dest: Dest::Inbox(reply.to_owned()),
            reply: None,
            payload: Bytes::new(),
            no_responders: true,
        };
        self.enqueue(rng, now, "bus", env);
    }

    fn enqueue(&mut self, rng: &mut fastrand::Rng, now: Instant, from: &str, env: Envelope) {
        let target = match &env.dest {
            Dest::Routes => "routes".to_owned(),
            Dest::Service(k) => format!("svc{k}"),
            Dest::Inbox(s) => s.clone(),
        };
        let delay = Duration::from_millis(rng.u64(self.latency_ms.0..=self.latency_ms.1));
        let key = (from.to_owned(), target);
        let at = self
            .last
            .get(&key)
            .map_or(now + delay, |l| (*l).max(now + delay));
        self.last.insert(key, at);
        self.seq += 1;
        self.queue.insert((at, self.seq), env);
    }

    /// When the next message arrives.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// The messages arriving by `now`, in order.
    pub fn due(&mut self, now: Instant) -> Vec<Envelope> {
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        out
    }

    /// Messages of requests (not announcements) still on their way.
    pub fn requests_in_flight(&self) -> usize {
        self.queue
            .values()
            .filter(|e| e.dest != Dest::Routes)
            .count()
    }
}
