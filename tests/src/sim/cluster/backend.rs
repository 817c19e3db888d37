//! What stands behind a serving gateway's [`Serving`] machines: the
//! gateway's own core machine, one receiver admitted to it through the
//! core's handshake calls (so the extensions in use are the ones the core
//! agreed to), the WebSocket between them and the scripted service behind
//! the receiver. A forwarded
//! request enters the core as production's `Driver::start_local` puts it
//! there, so the 404s and 501s it refuses, the 504s of its timeouts, the
//! credit windows of both directions and every frame between the gateway
//! and the receiver are the real machines' own, not a script's idea of
//! them.
//!
//! Held throughout: the core never holds more unread response bytes of a
//! request than the receiver's credit window allows, says an upload may
//! go on only when it waits with nothing queued, and makes no event for a
//! request after its end; neither side closes the connection (nothing here
//! gives it cause).
//!
//! [`Serving`]: anpx_core::cluster::Serving

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anpx_core::handshake::{self, Admitted, Offer};
use anpx_core::INITIAL_WINDOW;
use anpx_core::{Feature, Features, Gateway, GatewayConfig, Identity, LinkId, Output};
use anpx_core::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent, WsMessage};
use anpx_core::{Reject, RequestBody, RequestHead, RequestId, ResponseEvent, ServiceUrl};
use bytes::Bytes;

use super::service::{Expected, Sent, Service};
use crate::sim::network::{Dir, Latency, Wire};

/// A request's response events the core made and its serving machine has
/// not taken yet.
#[derive(Debug, Default)]
struct Pending {
    events: VecDeque<ResponseEvent>,
    /// Body bytes made and not yet read by the forwarding side.
    unread: u64,
    ended: bool,
}

/// One serving gateway's local half; see the [module docs](self).
#[derive(Debug)]
pub struct Backend {
    /// The wire's clock counts from here.
    start: Instant,
    gw: Gateway,
    link: LinkId,
    rx: Receiver,
    wire: Wire,
    service: Service,
    pending: BTreeMap<RequestId, Pending>,
    /// Uploads the core told to wait for the receiver's credit.
    upload_waits: BTreeSet<RequestId>,
    /// How many upload pieces waited so.
    uploads_held: u64,
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
            pending: BTreeMap::new(),
            upload_waits: BTreeSet::new(),
            uploads_held: 0,
        })
    }

    /// The receiver serves `grants` from now on.
    pub fn regrant(&mut self, now: Instant, grants: &[ServiceUrl]) {
        self.gw.regrant(now, self.link, grants);
    }

    /// A forwarded request enters the core, for the service to get as
    /// `expected`.
    pub fn start(
        &mut self,
        now: Instant,
        host: &str,
        head: RequestHead,
        body: RequestBody,
        expected: Expected,
    ) -> Result<RequestId, Reject> {
        let id = self.gw.start_request_from(now, None, host, head, body)?;
        self.pending.insert(id.clone(), Pending::default());
        self.service.expect(id.clone(), expected);
        Ok(id)
    }

    /// A piece of `request`'s upload: `Some(passed)` when that is known at
    /// once, `None` when it waits for the receiver's credit (then ask
    /// [`Backend::body_passed`]).
    pub fn push_body(
        &mut self,
        now: Instant,
        request: &RequestId,
        data: Bytes,
        last: bool,
    ) -> Option<bool> {
        if self.gw.push_body(now, request, data, last).is_err() {
            return Some(false);
        }
        match self.gw.upload_queued(request) {
            Some(0) => Some(true),
            Some(_) => {
                self.upload_waits.insert(request.clone());
                self.uploads_held += 1;
                None
            }
            None => Some(false),
        }
    }

    /// Whether the upload piece of `request` that waited went on
    /// (`Some(true)`), or the request ended first (`Some(false)`).
    pub fn body_passed(&self, request: &RequestId) -> Option<bool> {
        match self.gw.upload_queued(request) {
            None => Some(false),
            Some(0) => Some(true),
            Some(_) => None,
        }
    }

    /// `n` response bytes of `request` went on to the forwarding gateway.
    pub fn read(&mut self, now: Instant, request: &RequestId, n: usize) {
        self.gw.body_read(now, request, n);
        if let Some(p) = self.pending.get_mut(request) {
            p.unread = p.unread.saturating_sub(n as u64);
        }
    }

    /// The serving machine stops `request`.
    pub fn cancel(&mut self, now: Instant, request: &RequestId) {
        self.gw.cancel(now, request);
    }

    /// The next response event of `request`.
    pub fn poll_event(&mut self, request: &RequestId) -> Option<ResponseEvent> {
        self.pending.get_mut(request)?.events.pop_front()
    }

    /// The serving machine of `request` finished: the core must have let
    /// go of the request by now.
    pub fn release(&mut self, request: &RequestId) -> Result<(), String> {
        self.pending.remove(request);
        self.upload_waits.remove(request);
        if self.gw.request_link(request).is_some() {
            return Err(format!(
                "the serving machine of {request} finished while the gateway's core still runs it"
            ));
        }
        Ok(())
    }

    /// Upload pieces that waited for the receiver's credit, and response
    /// steps of the service that did.
    pub fn held(&self) -> (u64, u64) {
        (self.uploads_held, self.service.held())
    }

    /// What the service sent since the last call.
    pub fn take_sent(&mut self) -> Vec<Sent> {
        self.service.take_sent()
    }

    /// Whether no request is in flight in the core, the receiver or the
    /// service.
    pub fn is_idle(&self) -> bool {
        self.gw.in_flight() == 0 && self.rx.in_flight() == 0 && self.service.in_flight() == 0
    }

    /// What is in flight, for a message.
    pub fn summary(&self) -> String {
        format!(
            "{} in its core, {} at its receiver, {} at the service [{}]",
            self.gw.in_flight(),
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
            moved |= self.drain_receiver(rng, now)?;
            moved |= self.service.act(&mut self.rx, now)?;
            if !moved {
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
                Output::Writable { request } => {
                    if !self.upload_waits.remove(&request) {
                        return Err(format!(
                            "the gateway's core said the upload of {request} may go on; it was not waiting"
                        ));
                    }
                    if self.gw.upload_queued(&request) != Some(0) {
                        return Err(format!(
                            "the gateway's core said the upload of {request} may go on with bytes queued"
                        ));
                    }
                }
                Output::Response { request, event } => self.response(request, event)?,
                Output::Close { code, reason, .. } => {
                    return Err(format!(
                        "the gateway's core closed its receiver's connection ({code}): {reason}"
                    ))
                }
                out @ (Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. }) => {
                    return Err(format!(
                        "the serving core, which joined no cluster here, asked the bus for {out:?}"
                    ))
                }
            }
        }
        Ok(moved)
    }

    /// A response event of the core, held for the serving machine.
    fn response(&mut self, request: RequestId, event: ResponseEvent) -> Result<(), String> {
        let Some(p) = self.pending.get_mut(&request) else {
            return Err(format!(
                "the gateway's core made {event:?} for {request}, whose serving machine is done"
            ));
        };
        if p.ended {
            return Err(format!(
                "the gateway's core made {event:?} for {request} after its end"
            ));
        }
        match &event {
            ResponseEvent::Body(b) => {
                p.unread += b.len() as u64;
                if p.unread > INITIAL_WINDOW {
                    return Err(format!(
                        "the gateway's core holds {} unread response bytes of {request}, past the receiver's window of {INITIAL_WINDOW}",
                        p.unread
                    ));
                }
            }
            ResponseEvent::End | ResponseEvent::Failed(_) => {
                p.ended = true;
            }
            ResponseEvent::Head(_) => {}
        }
        p.events.push_back(event);
        Ok(())
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
