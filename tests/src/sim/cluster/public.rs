//! The public clients: each reaches one gateway and its request goes into
//! that gateway's machine as the shell's driver puts it there; its upload
//! is paced as the driver's `send_body` paces it, it reads what it gets at
//! once, and it may go away. What it sees is checked against what the
//! service sent it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anpx_core::{FailureKind, Reject, RequestBody, RequestHead, RequestId, ResponseEvent};
use bytes::Bytes;

use super::backend::{Pace, Path};
use super::service::{self, Expected};
use super::{Client, ClusterInjection, Ev, World};
use anpx_core::cluster::DEFAULT_WINDOW;

impl Client {
    /// When its next WebSocket piece is due, while it may send one.
    pub(super) fn next_piece_at(&self) -> Option<Instant> {
        let more = self.uploaded <= self.upload.len();
        let open = !(self.ended || self.cancelled || self.died || self.waiting);
        (self.websocket.is_some() && self.got_head == Some(101) && more && open)
            .then_some(self.next_piece_at)
            .flatten()
    }

    /// The next piece of its upload, if it sends one at `now`, and whether
    /// it is the last.
    fn next_piece(&mut self, now: Instant) -> Option<(Bytes, bool)> {
        if !self.streaming || self.waiting || self.ended || self.cancelled || self.died {
            return None;
        }
        let Some((gaps, closes)) = &self.websocket else {
            if let Some(piece) = self.upload.get(self.uploaded).cloned() {
                self.uploaded += 1;
                return Some((piece, self.uploaded == self.upload.len()));
            }
            if self.upload.is_empty() && self.uploaded == 0 {
                self.uploaded = 1;
                return Some((Bytes::new(), true));
            }
            return None;
        };
        // A WebSocket client talks only once switched, and at its own
        // pace.
        let ready = self.got_head == Some(101) && self.next_piece_at.is_none_or(|at| at <= now);
        if !ready || self.uploaded > self.upload.len() {
            return None;
        }
        if let Some(piece) = self.upload.get(self.uploaded).cloned() {
            let gap = gaps.get(self.uploaded + 1).copied().unwrap_or_default();
            self.uploaded += 1;
            self.next_piece_at = Some(now + gap);
            self.activity.push(now);
            Some((piece, false))
        } else if *closes {
            self.uploaded += 1;
            self.activity.push(now);
            Some((Bytes::new(), true))
        } else {
            self.next_piece_at = None;
            self.uploaded += 1;
            None
        }
    }
}

impl World {
    /// A client arrives at a gateway with a request.
    pub(super) fn new_client(&mut self) {
        if self.now < self.arrivals_end {
            let gap = Duration::from_millis(self.rng.u64(1..800));
            self.schedule(self.now + gap, Ev::NewClient);
        }
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .collect();
        if alive.is_empty() {
            return;
        }
        let node = alive[self.rng.usize(0..alive.len())];
        let k = self.rng.usize(0..self.services.len());
        let c = self.clients.len();
        let host = format!("svc{k}.sim");
        let mut head =
            RequestHead::new("POST", format!("/c/{c}")).with_header("x-sim-client", c.to_string());
        let mut websocket = None;
        let (body, upload) = match self.rng.u8(0..5) {
            4 => {
                head.method = "GET".into();
                head.headers
                    .push("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
                anpx_core::passthrough::mark_upgrade(&mut head.headers);
                let n = self.rng.usize(0..6);
                let pieces = (0..n)
                    .map(|_| service::bytes(&mut self.rng, 1..80_000))
                    .collect();
                // Mostly within the idle timeout, now and then past it.
                let idle = self.websocket_idle.as_millis() as u64;
                let gaps = (0..n)
                    .map(|_| Duration::from_millis(self.rng.u64(0..=idle * 6 / 5)))
                    .collect();
                websocket = Some((gaps, self.rng.u8(0..4) != 0));
                (RequestBody::Streaming, pieces)
            }
            0 => (RequestBody::Empty, Vec::new()),
            1 => (
                RequestBody::Full(service::bytes(&mut self.rng, 0..140_000)),
                Vec::new(),
            ),
            _ => {
                // Now and then more than the receiver's window.
                let n = if self.rng.u8(0..16) == 0 {
                    self.rng.usize(30..=50)
                } else {
                    self.rng.usize(0..5)
                };
                let pieces = (0..n)
                    .map(|_| service::bytes(&mut self.rng, 1..80_000))
                    .collect();
                (RequestBody::Streaming, pieces)
            }
        };
        let streaming = body.is_streaming();
        let sends: Bytes = match &body {
            RequestBody::Full(b) => b.clone(),
            _ => upload.concat().into(),
        };
        let expected = Expected {
            client: c,
            method: head.method.clone(),
            path: format!("/c/{c}"),
            body: sends.clone(),
        };
        self.clients.push(Client {
            node,
            method: head.method.clone(),
            sends,
            streaming,
            upload,
            credit: DEFAULT_WINDOW,
            websocket,
            ..Client::default()
        });
        if self.rng.u8(0..5) == 0 {
            let at = self.now
                + Duration::from_millis(
                    self.rng.u64(0..self.request_timeout.as_millis() as u64 * 2),
                );
            self.schedule(at, Ev::Cancel(c));
        }
        // Every client its own address, so no share of a route's cap
        // refuses it.
        let ip = IpAddr::from([10, 1, (c >> 8) as u8, c as u8]);
        let started = self.nodes[node]
            .backend
            .start_public(self.now, ip, &host, head, body, expected);
        let (request, path) = match started {
            Ok(started) => started,
            Err(reject) => {
                self.clients[c].settled = true;
                match reject {
                    Reject::NoRoute { .. } => self.counters.no_route += 1,
                    other => *self.counters.refused.entry(other.label()).or_default() += 1,
                }
                return;
            }
        };
        let client = &mut self.clients[c];
        client.request = Some(request.clone());
        client.forwarded = path != Path::Local;
        match path {
            Path::Local => self.counters.local += 1,
            Path::Forwarded => self.counters.forwarded += 1,
            Path::FellBack => {
                self.counters.forwarded += 1;
                self.counters.fell_back += 1;
            }
        }
        if streaming && client.forwarded {
            self.counters.uploads += 1;
        }
        self.nodes[node].public.insert(request, c);
    }

    /// Client `c` goes away.
    pub(super) fn cancel(&mut self, c: usize) {
        let client = &mut self.clients[c];
        if client.ended || client.died || client.settled || client.cancelled {
            return;
        }
        client.cancelled = true;
        self.counters.cancelled += 1;
        let Some(request) = client.request.clone() else {
            return;
        };
        let node = &mut self.nodes[client.node];
        node.public.remove(&request);
        node.backend.cancel(self.now, &request);
    }

    /// The clients at gateway `i` send what they have ready, each piece
    /// as the driver's `send_body` would: the next at once when the
    /// machine sent it on, else once it says `Writable`.
    pub(super) fn settle_clients(&mut self, i: usize, now: Instant) -> Result<bool, String> {
        let mut moved = false;
        let public: Vec<(RequestId, usize)> = self.nodes[i]
            .public
            .iter()
            .map(|(r, c)| (r.clone(), *c))
            .collect();
        for (request, c) in public {
            while let Some((piece, last)) = self.clients[c].next_piece(now) {
                moved = true;
                match self.nodes[i].backend.send_body(now, &request, piece, last) {
                    Pace::Go => {}
                    Pace::Wait => self.clients[c].waiting = true,
                    Pace::Gone => {
                        let client = &mut self.clients[c];
                        client.uploaded = client.upload.len() + 1;
                    }
                }
            }
        }
        Ok(moved)
    }

    /// The machine of gateway `i` lets a client's upload go on.
    pub(super) fn writable(&mut self, i: usize, request: &RequestId) -> Result<(), String> {
        let Some(&c) = self.nodes[i].public.get(request) else {
            return Err(format!(
                "{} said the upload of {request} may go on, which no client holds",
                self.nodes[i].name
            ));
        };
        let client = &mut self.clients[c];
        if !std::mem::take(&mut client.waiting) {
            return Err(format!(
                "{} said the upload of client {c} may go on; it was not waiting",
                self.nodes[i].name
            ));
        }
        // `None`: the request ended after the machine said so, its end
        // still to come out.
        let queued = self.nodes[i].backend.upload_queued(request);
        if queued.is_some_and(|q| q > 0) {
            return Err(format!(
                "{} said the upload of client {c} may go on with {queued:?} queued",
                self.nodes[i].name
            ));
        }
        Ok(())
    }

    /// A response event of a public request at gateway `i`: its client
    /// reads what it gets at once.
    pub(super) fn public_event(
        &mut self,
        i: usize,
        request: &RequestId,
        event: ResponseEvent,
    ) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let Some(&c) = node.public.get(request) else {
            let event = match &event {
                ResponseEvent::Body(b) => format!("{} body bytes", b.len()),
                other => format!("{other:?}"),
            };
            return Err(format!(
                "{} gave out {event} of {request}, which no client holds (a served request's events are its serving machine's)",
                node.name
            ));
        };
        match &event {
            ResponseEvent::Body(b) => node.backend.read(self.now, request, b.len()),
            ResponseEvent::End | ResponseEvent::Failed(_) => {
                node.public.remove(request);
            }
            ResponseEvent::Head(_) => {}
        }
        self.client_event(c, event)
    }

    /// An event for client `c`, checked as it arrives.
    fn client_event(&mut self, c: usize, event: ResponseEvent) -> Result<(), String> {
        let client = &mut self.clients[c];
        if client.ended || client.cancelled || client.died {
            return Err(format!("client {c} got {event:?} after its request ended"));
        }
        if client.websocket.is_some() {
            client.activity.push(self.now);
        }
        match event {
            ResponseEvent::Head(h) => {
                if client.got_head.is_some() {
                    return Err(format!("client {c} got a second head"));
                }
                if (h.status == 101) != client.websocket.is_some() {
                    return Err(format!("client {c} got a {} head", h.status));
                }
                let sent = self.served.get(&c).and_then(|r| r.status);
                if sent != Some(h.status) {
                    return Err(format!(
                        "client {c} got a {} head, the service sent {sent:?}",
                        h.status
                    ));
                }
                if h.status == 101 && client.forwarded {
                    self.counters.websockets += 1;
                }
                client.got_head = Some(h.status);
            }
            ResponseEvent::Body(b) => {
                if client.got_head.is_none() {
                    return Err(format!("client {c} got body before the head"));
                }
                let from = client.body.len();
                client.body.extend_from_slice(&b);
                let sent = self.served.get(&c).map_or(&[][..], |r| &r.body[..]);
                if sent.get(from..client.body.len()) != Some(&client.body[from..]) {
                    return Err(format!(
                        "client {c} got body bytes {from}..{} that differ from what the service sent ({} bytes so far)",
                        client.body.len(),
                        sent.len()
                    ));
                }
            }
            ResponseEvent::End => {
                if self.injection == ClusterInjection::LoseEnds {
                    return Ok(());
                }
                let Some(status) = client.got_head else {
                    return Err(format!("client {c} got an end without a head"));
                };
                client.ended = true;
                if client.forwarded {
                    self.counters.completed += 1;
                } else {
                    self.counters.local_completed += 1;
                }
                match self.served.get(&c) {
                    Some(r) if r.complete && r.status == Some(status) && r.body == client.body => {}
                    Some(r) => {
                        return Err(format!(
                            "client {c} got {status} and {} bytes, the service sent {:?} and {} bytes (complete: {})",
                            client.body.len(),
                            r.status,
                            r.body.len(),
                            r.complete
                        ))
                    }
                    None => return Err(format!("client {c} completed but no service answered it")),
                }
            }
            ResponseEvent::Failed(f) => {
                let delivered_all = self.delivered_all();
                self.check_start_failure(c, f.status)?;
                let client = &self.clients[c];
                // On a bus that loses nothing, a forwarded request served
                // by a live gateway fails for what that gateway answered,
                // for "no responders" or for a timeout, and for nothing
                // else: not because its serving gateway left the cluster,
                // which ends no request it holds.
                let serving_alive = client.served_by.is_some_and(|n| self.nodes[n].alive);
                if client.forwarded
                    && delivered_all
                    && serving_alive
                    && !client.nobody_serves
                    && f.status != 504
                    && client.answered_failure != Some(f.status)
                {
                    return Err(format!(
                        "client {c} failed {} ({}) though {} serving it is alive and answered no failure, on a bus that loses nothing",
                        f.status,
                        f.error,
                        self.nodes[client.served_by.unwrap_or_default()].name
                    ));
                }
                let client = &mut self.clients[c];
                // A sequence gap either way between the gateways: a
                // message went missing, which only a lossy bus may do.
                if client.forwarded && f.kind == FailureKind::InvalidResponse && delivered_all {
                    return Err(format!(
                        "client {c} failed {} on a bus that loses nothing: {}",
                        f.status, f.error
                    ));
                }
                // The whole response left a live serving gateway long ago
                // and the client read every piece it got: on a bus that
                // loses nothing it must have arrived, every credit for it
                // too.
                let finished = self.served.get(&c).and_then(|r| {
                    let alive = self.nodes[r.node].alive;
                    r.ended_at.filter(|_| alive)
                });
                if client.forwarded
                    && f.status == 504
                    && delivered_all
                    && finished.is_some_and(|at| self.now - at > Duration::from_secs(1))
                {
                    return Err(format!(
                        "client {c} timed out (504: {}) with {} bytes, on a bus that loses nothing, {:?} after the service sent its whole response",
                        f.error,
                        client.body.len(),
                        finished.map(|at| self.now - at)
                    ));
                }
                client.ended = true;
                client.failed = Some(f.status);
                if client.forwarded {
                    *self.counters.failed.entry(f.status).or_default() += 1;
                } else {
                    self.counters.local_failed += 1;
                }
                if client.got_head == Some(101) && f.status == 504 {
                    if client.forwarded {
                        self.counters.websocket_idle += 1;
                    }
                    // Timed by the idle timeout, traffic either way
                    // counting: quiet for that long before the failure
                    // left, give or take the bus's latency (under 120 ms;
                    // what the client sent meanwhile crossed it). On a
                    // lossy bus a lost piece is quiet for the serving side
                    // only, so this holds on a lossless one.
                    let margin = Duration::from_millis(250);
                    let jitter = Duration::from_millis(150);
                    let left = self.now - margin;
                    let quiet = client
                        .activity
                        .iter()
                        .rev()
                        .find(|at| **at <= left)
                        .map(|at| left - *at);
                    let too_soon = quiet.is_none_or(|q| q + margin + jitter < self.websocket_idle);
                    if too_soon && delivered_all {
                        return Err(format!(
                            "client {c}'s WebSocket timed out after {quiet:?} of quiet (and {margin:?}), idle timeout {:?}",
                            self.websocket_idle
                        ));
                    }
                }
                if f.status == 501 && client.websocket.is_some() {
                    self.counters.websocket_refused += 1;
                } else if f.status == 408 && !delivered_all {
                    // A piece of the upload was lost on the bus: the
                    // serving core timed the stalled upload out.
                } else if !matches!(f.status, 404 | 502 | 503 | 504) {
                    return Err(format!("client {c} failed with an unexpected {}", f.status));
                }
            }
        }
        Ok(())
    }
}
