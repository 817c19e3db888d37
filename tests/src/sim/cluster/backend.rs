//! One gateway of the cluster: its gateway machine (one per gateway, as in
//! production, a member of the cluster), one receiver admitted to it
//! through the machine's handshake calls (so the extensions in use are the
//! ones the machine agreed to), the WebSocket between them and the
//! scripted service behind the receiver.
//!
//! The machine takes both kinds of request. A public client's goes in as
//! production's `Driver::start` puts it there: the cluster's choice first,
//! to another gateway (`start_forwarded`) or to the local receiver with
//! the fall back to another gateway's route after a local refusal. A
//! request another gateway forwarded here goes in as production's shell
//! puts it there, `Gateway::serve_forwarded`, never to travel again: the
//! machine holds its `Serving`, its response events never come out, its
//! answers do (`Output::Answer`) and the forwarding gateway's messages go
//! back in with `served_origin`. So the route choices, the 404s and 501s,
//! the 504s of the timeouts, the credit windows of both directions and
//! every frame and bus message are the real machines' own, not a script's
//! idea of them. What the machine says for the public clients and the bus
//! comes out as [`Outward`].
//!
//! The messages on the wire to the receiver stand for the connection's
//! write queue: on some gateways it is bounded, and the machine is told
//! when it fills and when it has room again (`link_backlog`), so a served
//! upload waits for that room as well as for the receiver's credit. Held
//! throughout: neither side closes the connection (nothing here gives it
//! cause), nor does the machine hold more unread response bytes than the
//! receiver's credit windows allow.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anpx_core::cluster::{
    Announcement, Choice, ClusterOutput, MembershipConfig, Reply, Transmit, WireMessage,
};
use anpx_core::forward::normalize_path;
use anpx_core::handshake::{self, Admitted, Offer};
use anpx_core::INITIAL_WINDOW;
use anpx_core::{Feature, Features, Gateway, GatewayConfig, Identity, LinkId, Output};
use anpx_core::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent, WsMessage};
use anpx_core::{Reject, RequestBody, RequestHead, RequestId, ResponseEvent, ServiceUrl};
use bytes::Bytes;

use super::service::{Expected, Sent, Service};
use crate::sim::network::{Dir, Latency, Wire};

/// What the gateway machine said for its public clients and for the bus.
#[derive(Debug)]
pub enum Outward {
    /// A response event of a public client's request.
    Response {
        request: RequestId,
        event: ResponseEvent,
    },
    /// A public client's upload, told to wait, may go on.
    Writable { request: RequestId },
    /// A forwarded request's message for the bus.
    Publish {
        request: RequestId,
        route: ServiceUrl,
        transmit: Transmit,
    },
    /// An announcement, a service subject to join or leave, or a gateway
    /// forgotten.
    Cluster(ClusterOutput),
    /// A served request's answer for the forwarding gateway's reply inbox
    /// `to`.
    Answer {
        request: Option<RequestId>,
        to: String,
        message: WireMessage,
    },
}

/// Where a public client's request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// To this gateway's receiver.
    Local,
    /// To another gateway, as the cluster's choice.
    Forwarded,
    /// To another gateway, after this one's receiver refused it.
    FellBack,
}

/// What became of a piece of an upload, as the shell's `send_body` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Sent on: the next may follow.
    Go,
    /// Waits for the machine's `Output::Writable`.
    Wait,
    /// The request ended: stop uploading.
    Gone,
}

/// One gateway; see the [module docs](self).
#[derive(Debug)]
pub struct Backend {
    /// The wire's clock counts from here.
    start: Instant,
    gw: Gateway,
    link: LinkId,
    rx: Receiver,
    wire: Wire,
    service: Service,
    /// Served requests whose local request may still upload, and whether
    /// a piece of it waits for the receiver's credit now.
    served_uploads: BTreeMap<RequestId, bool>,
    /// How many served upload pieces waited so.
    uploads_held: u64,
    /// The bound of the connection's write queue, if it has one, whether
    /// it is full, and how many times it filled.
    backlog_limit: Option<usize>,
    backlogged: bool,
    backlogs: u64,
    /// What the machine said for the public clients and the bus, not yet
    /// taken.
    outward: Vec<Outward>,
}

impl Backend {
    /// A gateway with `config` and its receiver with `receiver`, both
    /// starting at `start`, carrying WebSockets when `websocket`. The receiver declares every service the scenario has
    /// (`declared`) in its handshake, and is then granted `grants`, what its
    /// gateway serves now, as the registry follow would narrow it.
    pub fn new(
        rng: &mut fastrand::Rng,
        start: Instant,
        config: GatewayConfig,
        receiver: ReceiverConfig,
        websocket: bool,
        declared: &[ServiceUrl],
        grants: &[ServiceUrl],
    ) -> Result<Backend, String> {
        let mut ours = Features::all();
        if !websocket {
            ours.remove(Feature::WebSocket);
        }
        let mut gw = Gateway::new(config, rng.u64(..));
        let (link, features) = admit(&mut gw, start, ours, declared)?;
        gw.regrant(start, link, grants);
        let ms = |r: std::ops::RangeInclusive<u64>, rng: &mut fastrand::Rng| {
            Duration::from_millis(rng.u64(r))
        };
        let latency = Latency {
            base: ms(0..=10, rng),
            jitter: ms(0..=10, rng),
            stall_per_mille: 0,
            stall_max: Duration::ZERO,
        };
        Ok(Backend {
            start,
            gw,
            link,
            rx: Receiver::new(receiver, features, start),
            wire: Wire::new(latency),
            service: Service::default(),
            served_uploads: BTreeMap::new(),
            backlog_limit: rng.bool().then(|| rng.usize(1..=6)),
            backlogged: false,
            backlogs: 0,
            uploads_held: 0,
            outward: Vec::new(),
        })
    }

    /// The gateway joins the cluster; its first round is due at `now`.
    pub fn join_cluster(&mut self, now: Instant, config: MembershipConfig) {
        self.gw.join_cluster(now, config);
    }

    /// Another gateway's announcement arrived.
    pub fn handle_announcement(&mut self, now: Instant, announcement: Announcement) {
        self.gw.handle_announcement(now, announcement);
    }

    /// A public client's request, from `client`, for the service to get as
    /// `expected` if it stays here: the cluster's choice first, and after a
    /// local refusal another gateway's route when the choice allowed it,
    /// as the shell's `Driver::start` does.
    pub fn start_public(
        &mut self,
        now: Instant,
        client: IpAddr,
        host: &str,
        head: RequestHead,
        body: RequestBody,
        expected: Expected,
    ) -> Result<(RequestId, Path), Reject> {
        let choice = self.gw.cluster_choice(host, &head);
        if let Choice::Remote(route) = choice {
            let id = self.gw.start_forwarded(now, host, route, head, body);
            return Ok((id, Path::Forwarded));
        }
        let retry =
            (choice != Choice::Local { fallback: false }).then(|| (head.clone(), body.clone()));
        match (
            self.gw
                .start_request_from(now, Some(client), host, head, body),
            retry,
        ) {
            (
                Err(reject @ (Reject::NoRoute { .. } | Reject::Draining { .. })),
                Some((head, body)),
            ) => {
                let route = normalize_path(&head.path)
                    .ok()
                    .and_then(|path| self.gw.route_book()?.remote_route(host, &path).cloned());
                match route {
                    Some(route) => {
                        let id = self.gw.start_forwarded(now, host, route, head, body);
                        Ok((id, Path::FellBack))
                    }
                    None => Err(reject),
                }
            }
            (result, _) => {
                let id = result?;
                self.service.expect(id.clone(), expected);
                Ok((id, Path::Local))
            }
        }
    }

    /// A piece of a public client's upload, paced as the shell's
    /// `send_body` paces it.
    pub fn send_body(
        &mut self,
        now: Instant,
        request: &RequestId,
        data: Bytes,
        last: bool,
    ) -> Pace {
        if self.gw.push_body(now, request, data, last).is_err() {
            return Pace::Gone;
        }
        // The machine decides the wait: for the receiver's credit, or for
        // room in the connection's write queue (`link_backlog`).
        match self.gw.upload_waits(request) {
            Some(false) => Pace::Go,
            Some(true) => Pace::Wait,
            None => Pace::Gone,
        }
    }

    /// What of `request`'s upload waits, as the machine says.
    pub fn upload_queued(&self, request: &RequestId) -> Option<u64> {
        self.gw.upload_queued(request)
    }

    /// Something arrived on forwarded request `request`'s reply inbox.
    pub fn forward_reply(&mut self, now: Instant, request: &RequestId, reply: Reply) {
        self.gw.forward_reply(now, request, reply);
    }

    /// Publishing forwarded request `request`'s start failed.
    pub fn forward_start_failed(&mut self, now: Instant, request: &RequestId, reason: &str) {
        self.gw.forward_start_failed(now, request, reason);
    }

    /// The subscription for every forwarded request's replies ended.
    pub fn forward_replies_ended(&mut self, now: Instant) {
        self.gw.forward_replies_ended(now);
    }

    /// The subscription for every served request's messages ended.
    pub fn served_origins_ended(&mut self, now: Instant) {
        self.gw.served_origins_ended(now);
    }

    /// Publishing an answer of served request `request` failed.
    pub fn served_publish_failed(&mut self, now: Instant, request: &RequestId) {
        self.gw.served_publish_failed(now, request);
    }

    /// The gateway leaves the cluster.
    pub fn leave_cluster(&mut self, now: Instant) {
        self.gw.leave_cluster(now);
    }

    /// Requests forwarded from here and served here, in the machine.
    pub fn cluster_in_flight(&self) -> (usize, usize) {
        (self.gw.forwarded_in_flight(), self.gw.served_in_flight())
    }

    /// The other gateways the machine's route book knows.
    pub fn book_nodes(&self) -> Vec<String> {
        self.gw.route_book().map_or_else(Vec::new, |b| {
            b.nodes().into_iter().map(str::to_owned).collect()
        })
    }

    /// What the machine said for the public clients and the bus since the
    /// last call.
    pub fn take_outward(&mut self) -> Vec<Outward> {
        std::mem::take(&mut self.outward)
    }

    /// The receiver serves `grants` from now on.
    pub fn regrant(&mut self, now: Instant, grants: &[ServiceUrl]) {
        self.gw.regrant(now, self.link, grants);
    }

    /// A start message another gateway published reaches this gateway,
    /// with `reply` its reply inbox: the machine serves it (its inbox for
    /// the forwarding gateway's messages under `inbox_prefix`), for the
    /// service to get as `expected`; `None` when the machine refused it
    /// (its refusal comes out as an answer).
    pub fn serve(
        &mut self,
        now: Instant,
        start: WireMessage,
        reply: String,
        inbox_prefix: &str,
        expected: Expected,
    ) -> Option<RequestId> {
        let id = self.gw.serve_forwarded(now, start, reply, inbox_prefix)?;
        self.service.expect(id.clone(), expected);
        self.served_uploads.insert(id.clone(), false);
        Some(id)
    }

    /// The forwarding gateway's message on served request `request`'s
    /// inbox.
    pub fn served_origin(
        &mut self,
        now: Instant,
        request: &RequestId,
        payload: Bytes,
    ) -> Result<(), String> {
        self.gw
            .served_origin(now, request, Some(payload))
            .map_err(|e| format!("an undecodable message between gateways: {e}"))
    }

    /// `n` response bytes of public request `request` went on to its
    /// client.
    pub fn read(&mut self, now: Instant, request: &RequestId, n: usize) {
        self.gw.body_read(now, request, n);
    }

    /// Public request `request`'s client went away.
    pub fn cancel(&mut self, now: Instant, request: &RequestId) {
        self.gw.cancel(now, request);
    }

    /// Served upload pieces that waited for the receiver's credit,
    /// response steps of the service that did, and how many times the
    /// connection's write queue filled.
    pub fn held(&self) -> (u64, u64, u64) {
        (self.uploads_held, self.service.held(), self.backlogs)
    }

    /// What the service sent since the last call.
    pub fn take_sent(&mut self) -> Vec<Sent> {
        self.service.take_sent()
    }

    /// Whether no request is in flight in the machine (its own or
    /// forwarded), the receiver or the service.
    pub fn is_idle(&self) -> bool {
        self.gw.in_flight() == 0
            && self.gw.forwarded_in_flight() == 0
            && self.gw.served_in_flight() == 0
            && self.rx.in_flight() == 0
            && self.service.in_flight() == 0
    }

    /// What the machine's `/stats` still counts at `now` once every
    /// request is over: nothing in flight and no byte buffered.
    pub fn leaks(&self, now: Instant) -> Option<String> {
        let stats = self.gw.stats(now);
        (stats.in_flight != 0 || stats.buffered_bytes != 0).then(|| {
            format!(
                "its /stats count {} requests in flight and {} bytes buffered",
                stats.in_flight, stats.buffered_bytes
            )
        })
    }

    /// What is in flight, for a message.
    pub fn summary(&self) -> String {
        format!(
            "{} in its core, {} forwarded, {} served, {} at its receiver, {} at the service [{}]",
            self.gw.in_flight(),
            self.gw.forwarded_in_flight(),
            self.gw.served_in_flight(),
            self.rx.in_flight(),
            self.service.in_flight(),
            self.service.describe()
        )
    }

    /// When something here wants to happen.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wire = [Dir::Down, Dir::Up]
            .into_iter()
            .filter_map(|d| self.wire.next_at(d))
            .map(|d| self.start + d);
        [
            self.gw.poll_timeout(),
            self.rx.poll_timeout(),
            self.service.poll_timeout(&self.rx),
        ]
        .into_iter()
        .flatten()
        .chain(wire)
        .min()
    }

    /// Time passed: the machines' timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.gw.poll_timeout().is_some_and(|t| t <= now) {
            self.gw.handle_timeout(now);
        }
        if self.rx.poll_timeout().is_some_and(|t| t <= now) {
            self.rx.handle_timeout(now);
        }
    }

    /// Moves everything due by `now` between the core, the wire, the
    /// receiver and the service until nothing moves; whether anything did.
    pub fn settle(&mut self, rng: &mut fastrand::Rng, now: Instant) -> Result<bool, String> {
        let mut any = false;
        loop {
            let mut moved = self.deliver(rng, now);
            moved |= self.drain_gateway(rng, now)?;
            moved |= self.note_backlog(now);
            moved |= self.drain_receiver(rng, now)?;
            moved |= self.service.act(&mut self.rx, now)?;
            if !moved {
                self.note_served_uploads();
                return Ok(any);
            }
            any = true;
        }
    }

    /// Delivers what the wire carried by `now`.
    fn deliver(&mut self, rng: &mut fastrand::Rng, now: Instant) -> bool {
        let t = now - self.start;
        let mut moved = false;
        while self.wire.next_at(Dir::Down).is_some_and(|at| at <= t) {
            let Some(m) = self.wire.pop(Dir::Down) else {
                break;
            };
            moved = true;
            let ping = matches!(m, WsMessage::Ping(_));
            self.rx.handle_message(now, m);
            if ping {
                // WebSocket libraries answer pings themselves.
                let delay = self.wire.latency.sample(rng);
                self.wire
                    .send(Dir::Up, t, delay, WsMessage::Pong(Bytes::new()));
            }
        }
        while self.wire.next_at(Dir::Up).is_some_and(|at| at <= t) {
            let Some(m) = self.wire.pop(Dir::Up) else {
                break;
            };
            moved = true;
            self.gw.handle_message(now, self.link, m);
        }
        moved
    }

    fn drain_gateway(&mut self, rng: &mut fastrand::Rng, now: Instant) -> Result<bool, String> {
        let mut moved = false;
        while let Some(out) = self.gw.poll_output() {
            moved = true;
            match out {
                Output::Transmit { link, message } => {
                    if link != self.link {
                        return Err(format!("the gateway's core sends on unknown {link}"));
                    }
                    let delay = self.wire.latency.sample(rng);
                    self.wire.send(Dir::Down, now - self.start, delay, message);
                }
                // A served request's never come out: they are its serving
                // machine's, and no public client would take them.
                Output::Writable { request } => {
                    self.outward.push(Outward::Writable { request });
                }
                Output::Response { request, event } => {
                    self.outward.push(Outward::Response { request, event });
                }
                Output::Close { code, reason, .. } => {
                    return Err(format!(
                        "the gateway's core closed its receiver's connection ({code}): {reason}"
                    ))
                }
                Output::Publish {
                    request,
                    route,
                    transmit,
                } => self.outward.push(Outward::Publish {
                    request,
                    route,
                    transmit,
                }),
                Output::Cluster(out) => self.outward.push(Outward::Cluster(out)),
                Output::Answer {
                    request,
                    to,
                    message,
                } => self.outward.push(Outward::Answer {
                    request,
                    to,
                    message,
                }),
            }
        }
        Ok(moved)
    }

    /// Tells the machine when the connection's write queue fills or has
    /// room again, as the shell's writer does; whether it changed.
    fn note_backlog(&mut self, now: Instant) -> bool {
        let full = self
            .backlog_limit
            .is_some_and(|limit| self.wire.queued(Dir::Down) >= limit);
        if full == self.backlogged {
            return false;
        }
        self.backlogged = full;
        self.backlogs += u64::from(full);
        self.gw.link_backlog(now, self.link, full);
        true
    }

    /// The machine holds no more unread response bytes than the
    /// receiver's window for each request that may still hold some: its
    /// local requests, and served ones whose pieces wait for the
    /// forwarding gateway's credit. Asked once the public clients read
    /// what came out (they read at once).
    pub fn check_unread(&self) -> Result<(), String> {
        let requests = (self.gw.in_flight() + self.gw.served_in_flight()) as u64;
        let unread = self.gw.link_buffered(self.link).unwrap_or(0);
        if unread > requests * INITIAL_WINDOW {
            return Err(format!(
                "the gateway's core holds {unread} response bytes for {requests} requests, past the receiver's window of {INITIAL_WINDOW} each"
            ));
        }
        Ok(())
    }

    /// Counts the served upload pieces waiting for the receiver's credit
    /// (the machine holds them, not crediting them to the forwarding
    /// gateway); a served request whose local request ended uploads no
    /// more.
    fn note_served_uploads(&mut self) {
        let gw = &self.gw;
        let held = &mut self.uploads_held;
        self.served_uploads
            .retain(|id, waiting| match gw.upload_queued(id) {
                None => false,
                Some(queued) => {
                    if queued > 0 && !*waiting {
                        *held += 1;
                    }
                    *waiting = queued > 0;
                    true
                }
            });
    }

    fn drain_receiver(&mut self, rng: &mut fastrand::Rng, now: Instant) -> Result<bool, String> {
        let mut moved = false;
        while let Some(out) = self.rx.poll_output() {
            moved = true;
            match out {
                ReceiverOutput::Transmit(message) => {
                    let delay = self.wire.latency.sample(rng);
                    self.wire.send(Dir::Up, now - self.start, delay, message);
                }
                ReceiverOutput::Event(event) => match event {
                    RequestEvent::Head { request, head } => {
                        self.service.head(rng, now, request, &head)?
                    }
                    RequestEvent::Body { request, data } => {
                        self.service.body(&mut self.rx, now, &request, data)?
                    }
                    RequestEvent::End { request } => self.service.end(&self.rx, &request)?,
                    RequestEvent::Aborted { request, .. } => self.service.aborted(&request)?,
                },
                // The service asks for the receiver's credit whenever it
                // would send.
                ReceiverOutput::Writable { .. } => {}
                ReceiverOutput::Close { code, reason } => {
                    return Err(format!(
                        "the receiver closed its connection ({code}): {reason}"
                    ))
                }
            }
        }
        Ok(moved)
    }
}

/// A receiver offering `ours` and `declared` comes in through `gw`'s
/// handshake calls, its login accepted in open mode: its link and the
/// extensions the gateway agreed to.
fn admit(
    gw: &mut Gateway,
    now: Instant,
    ours: Features,
    declared: &[ServiceUrl],
) -> Result<(LinkId, Features), String> {
    let headers = handshake::offer_headers(ours, declared);
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    };
    let offer = Offer {
        websocket_key: true,
        services: value(handshake::SERVICES_HEADER),
        features: value(handshake::FEATURES_HEADER),
    };
    let peer = IpAddr::from([10, 0, 0, 1]);
    let refused = |e| format!("the gateway's core refused its receiver's handshake: {e:?}");
    let id = gw.begin_handshake(now, peer, &offer).map_err(refused)?;
    let login = Admitted {
        identity: Identity::Anonymous,
        allowed: None,
    };
    let accepted = gw
        .decide_handshake(now, id, &offer, Ok(login))
        .map_err(refused)?;
    let features = accepted.features;
    let link = gw.admit_handshake(now, id, accepted.identity, accepted.grants, features);
    Ok((link, features))
}
