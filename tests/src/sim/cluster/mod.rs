//! A deterministic simulation of a gateway cluster: two to four gateways,
//! each with its route book, the core's forwarding and serving machines
//! and its own gateway core with a receiver and a scripted service behind
//! it, exchanging cluster messages over a simulated bus in virtual time,
//! with public clients at every gateway.
//!
//! A seed fixes the scenario (how many gateways, who serves what, bus
//! latency and loss, crashes, service churn, timeouts) and every choice
//! after it. The bus keeps NATS's promises and no more: per sender and
//! receiver messages arrive in order, a message may be lost, a service
//! subject's message goes to one member of its queue group, and one with
//! no member comes back as "no responders". A served request takes the
//! production path into the serving gateway's core, so what it meets there
//! (a refusal, the request timeout, the receiver's credit windows) is the
//! real machines' doing, not a script's. Some clients open WebSockets:
//! after the `101` they send pieces with pauses (some longer than the
//! WebSocket idle timeout) and close their side or fall silent; the
//! service echoes and may close first. Checked throughout: the service
//! gets the head and the upload bytes its client sent, in order; every
//! client sees its response in order and each byte as the service sent
//! it; no body piece is sent beyond the credit its reader granted; the
//! serving core holds no more unread bytes than a window. Checked at the
//! end: every client request ended exactly once (or was cancelled by its
//! client, or died with its gateway), and no gateway holds a machine or a
//! request in its core, its receiver or its service any more.

mod backend;
mod bus;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anpx_core::cluster::{
    Announcement, Choice, Forwarding, Local, Reply, RouteBook, Serving, To, Upload, WireMessage,
    DEFAULT_WINDOW,
};
use anpx_core::ServiceUrl;
use anpx_core::{GatewayConfig, ReceiverConfig, RequestHead, RequestId};
use anpx_core::{RequestBody, ResponseEvent};
use bytes::Bytes;

use backend::Backend;
use bus::{Bus, Dest, Envelope};
use service::{Expected, Sent};

/// A wrong turn the simulation injects into itself, to prove the checks
/// catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterInjection {
    /// Nothing.
    #[default]
    None,
    /// The clients lose every `End` event, as a forwarding side that
    /// forgot to finish would look.
    LoseEnds,
    /// The serving side drops every response body piece of its core's
    /// instead of handing it to its serving machine.
    DropServedPieces,
}

/// What a run saw, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    /// Requests forwarded to another gateway.
    pub forwarded: u64,
    /// Requests served by the gateway they reached.
    pub local: u64,
    /// Requests nobody served (404 at the gateway reached).
    pub no_route: u64,
    /// Forwarded requests answered completely.
    pub completed: u64,
    /// Forwarded requests failed, by status.
    pub failed: BTreeMap<u16, u64>,
    /// Requests their client cancelled.
    pub cancelled: u64,
    /// Requests lost with the gateway their client reached.
    pub died: u64,
    /// Streamed uploads carried.
    pub uploads: u64,
    /// WebSockets switched through a forwarding gateway.
    pub websockets: u64,
    /// Of those, the ones the idle timeout ended.
    pub websocket_idle: u64,
    /// WebSocket upgrades refused by the serving gateway (501: no receiver
    /// there carries WebSockets).
    pub websocket_refused: u64,
    /// Upload pieces the serving core held for its receiver's credit.
    pub upload_held: u64,
    /// Response steps the service held for the receiver's credit.
    pub response_held: u64,
    /// Bus messages carried and lost.
    pub messages: u64,
    /// Bus messages lost.
    pub lost: u64,
    /// Gateways that crashed.
    pub crashes: u64,
}

impl ClusterCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ClusterCounters) {
        self.forwarded += other.forwarded;
        self.local += other.local;
        self.no_route += other.no_route;
        self.completed += other.completed;
        for (s, n) in &other.failed {
            *self.failed.entry(*s).or_default() += n;
        }
        self.cancelled += other.cancelled;
        self.died += other.died;
        self.uploads += other.uploads;
        self.websockets += other.websockets;
        self.websocket_idle += other.websocket_idle;
        self.websocket_refused += other.websocket_refused;
        self.upload_held += other.upload_held;
        self.response_held += other.response_held;
        self.messages += other.messages;
        self.lost += other.lost;
        self.crashes += other.crashes;
    }
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    /// The seed.
    pub seed: u64,
    /// What happened.
    pub counters: ClusterCounters,
    /// Virtual time the run covered.
    pub virtual_time: Duration,
}

/// Runs the cluster scenario of `seed` and checks it throughout.
pub fn run_cluster(seed: u64, injection: ClusterInjection) -> Result<ClusterReport, String> {
    let mut world = World::new(seed, injection)
        .map_err(|e| format!("cluster seed {seed} at the start: {e}"))?;
    world
        .run()
        .map_err(|e| format!("cluster seed {seed} at {:?}: {e}", world.now - world.start))?;
    world.counters.messages = world.bus.messages;
    world.counters.lost = world.bus.lost;
    for n in &world.nodes {
        let (upload, response) = n.backend.held();
        world.counters.upload_held += upload;
        world.counters.response_held += response;
    }
    Ok(ClusterReport {
        seed,
        counters: world.counters.clone(),
        virtual_time: world.now - world.start,
    })
}

/// One public client's request and what it saw.
#[derive(Debug, Default)]
struct Client {
    /// The gateway it reached.
    node: usize,
    /// Its method, and every body byte it sends (a whole body or every
    /// piece of `upload`), for the service to hold what it gets against.
    method: String,
    sends: Bytes,
    /// Its upload, when streamed, and how much of it went out.
    upload: Vec<Bytes>,
    uploaded: usize,
    got_head: Option<u16>,
    body: Vec<u8>,
    ended: bool,
    cancelled: bool,
    died: bool,
    /// Not forwarded: answered at the gateway it reached.
    settled: bool,
    /// A WebSocket: the pause before each piece of `upload`, and whether
    /// the client closes its side after the last (else it falls silent).
    websocket: Option<(Vec<Duration>, bool)>,
    /// When its next WebSocket piece is ready.
    next_piece_at: Option<Instant>,
    /// When it sent or got anything.
    activity: Vec<Instant>,
}

/// A forwarding machine and its bookkeeping.
struct Fwd {
    machine: Forwarding,
    client: usize,
    /// Credit the serving side granted for the upload.
    credit: u64,
}

/// A serving machine, its request in the gateway's own core and its
/// bookkeeping.
struct Srv {
    machine: Serving,
    /// The forwarding side's reply inbox.
    origin: String,
    /// The request in the gateway's core.
    request: RequestId,
    /// An upload piece went to the core and waits for the receiver's
    /// credit.
    passing: bool,
    /// Credit the forwarding side granted for the response.
    credit: u64,
}

struct Node {
    name: String,
    alive: bool,
    /// Services its receivers serve now.
    services: BTreeSet<usize>,
    /// Service subjects it has joined (at its last announcement round).
    joined: BTreeSet<usize>,
    book: RouteBook,
    /// Its own core, receiver and service.
    backend: Backend,
    forwards: BTreeMap<u64, Fwd>,
    serves: BTreeMap<u64, Srv>,
    next_announce: Instant,
}

/// What a service sent one client so far.
#[derive(Debug, Default)]
struct Response {
    status: Option<u16>,
    body: Vec<u8>,
    complete: bool,
}

/// Things the simulation schedules.
#[derive(Debug)]
enum Ev {
    NewClient,
    Cancel(usize),
    Crash(usize),
    Churn(usize),
}

struct World {
    rng: fastrand::Rng,
    injection: ClusterInjection,
    start: Instant,
    now: Instant,
    /// Clients stop arriving then.
    arrivals_end: Instant,
    nodes: Vec<Node>,
    services: Vec<ServiceUrl>,
    clients: Vec<Client>,
    /// What the service sent each client so far.
    served: BTreeMap<usize, Response>,
    bus: Bus,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    next_key: u64,
    request_timeout: Duration,
    websocket_idle: Duration,
    announce_interval: Duration,
    route_ttl: Duration,
    counters: ClusterCounters,
}

impl World {
    fn new(seed: u64, injection: ClusterInjection) -> Result<World, String> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let start = Instant::now();
        let n_nodes = rng.usize(2..=4);
        let n_services = rng.usize(1..=4);
        let services: Vec<ServiceUrl> = (0..n_services)
            .map(|k| format!("svc{k}.sim/").parse().expect("a valid service URL"))
            .collect();
        let announce_interval = Duration::from_millis(rng.u64(200..=1500));
        let route_ttl = announce_interval * rng.u32(3..=5);
        let request_timeout = Duration::from_secs(rng.u64(2..=30));
        let websocket_idle = Duration::from_secs(rng.u64(1..=20));
        let config = GatewayConfig {
            request_timeout,
            websocket_idle_timeout: websocket_idle,
            ..GatewayConfig::default()
        };
        // A request whose response ended while its upload had yet to come
        // is held at the receiver until its stale sweep: within the run.
        let mut receiver = ReceiverConfig::default();
        receiver.reassembly.stale_after = request_timeout;
        let nodes = (0..n_nodes)
            .map(|i| {
                let name = format!("n{i}");
                let serves: BTreeSet<usize> = (0..n_services).filter(|_| rng.bool()).collect();
                let grants: Vec<ServiceUrl> = serves.iter().map(|k| services[*k].clone()).collect();
                // Now and then a gateway whose receiver carries no
                // WebSockets: its core refuses upgrades, 501.
                let websocket = rng.u8(0..4) != 0;
                let backend = Backend::new(
                    &mut rng,
                    start,
                    config.clone(),
                    receiver.clone(),
                    websocket,
                    &services,
                    &grants,
                )
                .map_err(|e| format!("{name}: {e}"))?;
                Ok(Node {
                    backend,
                    book: RouteBook::new(name.clone(), route_ttl),
                    name,
                    alive: true,
                    services: serves,
                    joined: BTreeSet::new(),
                    forwards: BTreeMap::new(),
                    serves: BTreeMap::new(),
                    next_announce: start + Duration::from_millis(rng.u64(0..200)),
                })
            })
            .collect::<Result<Vec<Node>, String>>()?;
        let bus = Bus::new(&mut rng, start);
        let mut w = World {
            injection,
            start,
            now: start,
            arrivals_end: start + Duration::from_secs(rng.u64(5..=40)),
            nodes,
            services,
            clients: Vec::new(),
            served: BTreeMap::new(),
            bus,
            queue: BTreeMap::new(),
            seq: 0,
            next_key: 0,
            request_timeout,
            websocket_idle,
            announce_interval,
            route_ttl,
            counters: ClusterCounters::default(),
            rng,
        };
        let first = start + Duration::from_millis(w.rng.u64(0..3000));
        w.schedule(first, Ev::NewClient);
        for i in 0..n_nodes {
            if w.rng.u8(0..6) == 0 {
                let at = start + Duration::from_millis(w.rng.u64(2000..40_000));
                w.schedule(at, Ev::Crash(i));
            }
            if w.rng.u8(0..3) == 0 {
                let at = start + Duration::from_millis(w.rng.u64(1000..40_000));
                w.schedule(at, Ev::Churn(i));
            }
        }
        Ok(w)
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn run(&mut self) -> Result<(), String> {
        // Long enough for the slowest request to end by its deadlines; a
        // WebSocket lives through its client's pauses (each under 1.2 idle
        // timeouts) and then its idle timeout.
        let limit = self.arrivals_end
            + self.request_timeout * 4
            + self.route_ttl * 4
            + self.websocket_idle * 10;
        loop {
            self.settle()?;
            if self.now > self.arrivals_end && self.all_quiet() {
                return self.final_checks();
            }
            let Some(next) = self.next_wake() else {
                return self.final_checks();
            };
            if next > limit {
                return Err(format!(
                    "still busy long after the last client arrived: {}",
                    self.busy_summary()
                ));
            }
            self.now = self.now.max(next);
            self.step()?;
        }
    }

    /// Whether no request is in flight anywhere.
    fn all_quiet(&self) -> bool {
        self.queue
            .values()
            .all(|e| !matches!(e, Ev::NewClient | Ev::Cancel(_)))
            && self.nodes.iter().all(|n| {
                !n.alive || (n.forwards.is_empty() && n.serves.is_empty() && n.backend.is_idle())
            })
            && self.bus.requests_in_flight() == 0
    }

    fn busy_summary(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| {
                format!(
                    "{}: {} forwarding, {} serving ({})",
                    n.name,
                    n.forwards.len(),
                    n.serves.len(),
                    n.backend.summary()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The earliest instant something wants to happen.
    fn next_wake(&self) -> Option<Instant> {
        let mut next = self.queue.keys().next().map(|(at, _)| *at);
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for n in self.nodes.iter().filter(|n| n.alive) {
            take(Some(n.next_announce));
            take(n.book.poll_timeout());
            for f in n.forwards.values() {
                take(f.machine.poll_timeout());
            }
            for s in n.serves.values() {
                take(s.machine.poll_timeout());
            }
            take(n.backend.poll_timeout());
        }
        for f in self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .flat_map(|n| n.forwards.values())
        {
            let client = &self.clients[f.client];
            let more = client.uploaded <= client.upload.len();
            if client.got_head == Some(101) && more && f.machine.wants_upload() {
                take(client.next_piece_at);
            }
        }
        take(self.bus.next_delivery());
        next
    }

    /// Everything due at `now`.
    fn step(&mut self) -> Result<(), String> {
        let now = self.now;
        for env in self.bus.due(now) {
            self.deliver(env)?;
        }
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ev = entry.remove();
            match ev {
                Ev::NewClient => self.new_client(),
                Ev::Cancel(c) => self.cancel(c),
                Ev::Crash(i) => self.crash(i),
                Ev::Churn(i) => {
                    let k = self.rng.usize(0..self.services.len());
                    let node = &mut self.nodes[i];
                    if !node.services.remove(&k) {
                        node.services.insert(k);
                    }
                    let grants: Vec<ServiceUrl> = node
                        .services
                        .iter()
                        .map(|k| self.services[*k].clone())
                        .collect();
                    node.backend.regrant(now, &grants);
                }
            }
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            if self.nodes[i].next_announce <= now {
                self.announce(i);
            }
            let node = &mut self.nodes[i];
            node.book.handle_timeout(now);
            for f in node.forwards.values_mut() {
                if f.machine.poll_timeout().is_some_and(|t| t <= now) {
                    f.machine.handle_timeout(now, &node.book);
                }
            }
            for s in node.serves.values_mut() {
                if s.machine.poll_timeout().is_some_and(|t| t <= now) {
                    s.machine.handle_timeout(now);
                }
            }
            node.backend.handle_timeout(now);
        }
        Ok(())
    }

    /// One announcement round, as the shell's: the local routes into the
    /// book, the service subjects joined, the announcement out.
    fn announce(&mut self, i: usize) {
        let urls: Vec<ServiceUrl> = self.nodes[i]
            .services
            .iter()
            .map(|k| self.services[*k].clone())
            .collect();
        let node = &mut self.nodes[i];
        node.book.set_local(urls.clone());
        node.joined = node.services.clone();
        node.next_announce = self.now + self.announce_interval;
        let a = Announcement::new(node.name.clone(), urls);
        let name = node.name.clone();
        self.bus.publish(
            &mut self.rng,
            self.now,
            &name,
            Dest::Routes,
            None,
            a.to_json().into(),
        );
    }

    fn new_client(&mut self) {
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
        let sends = match &body {
            RequestBody::Full(b) => b.clone(),
            _ => upload.concat().into(),
        };
        self.clients.push(Client {
            node,
            method: head.method.clone(),
            sends,
            upload,
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
        let n = &self.nodes[node];
        let serves_here = n.services.contains(&k);
        let go = match n.book.choose(&host, &head) {
            Choice::Remote(_) => true,
            Choice::Local { fallback } => {
                !serves_here && fallback && {
                    let path = anpx_core::forward::normalize_path(&head.path).unwrap_or_default();
                    n.book.remote_route(&host, &path).is_some()
                }
            }
        };
        if !go {
            self.clients[c].settled = true;
            if serves_here {
                self.counters.local += 1;
            } else {
                self.counters.no_route += 1;
            }
            return;
        }
        self.counters.forwarded += 1;
        if streaming {
            self.counters.uploads += 1;
        }
        let key = self.next_key;
        self.next_key += 1;
        let machine = Forwarding::new(
            self.now,
            host,
            head,
            body,
            self.request_timeout,
            self.websocket_idle,
        );
        self.nodes[node].forwards.insert(
            key,
            Fwd {
                machine,
                client: c,
                credit: DEFAULT_WINDOW,
            },
        );
    }

    fn cancel(&mut self, c: usize) {
        let client = &mut self.clients[c];
        if client.ended || client.died || client.settled || client.cancelled {
            return;
        }
        client.cancelled = true;
        self.counters.cancelled += 1;
        let node = &mut self.nodes[client.node];
        if let Some(f) = node.forwards.values_mut().find(|f| f.client == c) {
            f.machine.handle_upload(self.now, Upload::Cancel);
        }
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.alive {
            return;
        }
        node.alive = false;
        self.counters.crashes += 1;
        for f in std::mem::take(&mut node.forwards).into_values() {
            let client = &mut self.clients[f.client];
            if !client.ended && !client.cancelled {
                client.died = true;
                self.counters.died += 1;
            }
        }
        node.serves.clear();
    }

    /// A bus message reached its destination.
    fn deliver(&mut self, env: Envelope) -> Result<(), String> {
        let now = self.now;
        match env.dest {
            Dest::Routes => {
                for node in self.nodes.iter_mut().filter(|n| n.alive) {
                    if let Ok(a) = Announcement::from_json(&env.payload) {
                        node.book.handle_announcement(now, a);
                    }
                }
            }
            Dest::Service(k) => {
                let members: Vec<usize> = (0..self.nodes.len())
                    .filter(|i| self.nodes[*i].alive && self.nodes[*i].joined.contains(&k))
                    .collect();
                let Some(reply) = env.reply else {
                    return Err("a start message without a reply inbox".into());
                };
                if members.is_empty() {
                    self.bus.no_responders(&mut self.rng, now, &reply);
                    return Ok(());
                }
                let i = members[self.rng.usize(0..members.len())];
                self.serve(i, reply, env.payload)?;
            }
            Dest::Inbox(inbox) => {
                let Some((i, side, key)) = bus::parse_inbox(&inbox) else {
                    return Err(format!("a message for an unknown inbox {inbox}"));
                };
                let node = &mut self.nodes[i];
                if !node.alive {
                    return Ok(());
                }
                if side == 'f' {
                    let Some(f) = node.forwards.get_mut(&key) else {
                        return Ok(());
                    };
                    if let Ok(WireMessage::Credit { upto }) =
                        WireMessage::decode(env.payload.clone())
                    {
                        f.credit = f.credit.max(upto);
                    }
                    let reply = if env.no_responders {
                        Reply::NoResponders
                    } else {
                        Reply::Message(env.payload)
                    };
                    f.machine.handle_reply(now, reply);
                } else {
                    let Some(s) = node.serves.get_mut(&key) else {
                        return Ok(());
                    };
                    if let Ok(WireMessage::Credit { upto }) =
                        WireMessage::decode(env.payload.clone())
                    {
                        s.credit = s.credit.max(upto);
                    }
                    s.machine
                        .handle_origin(now, Some(env.payload))
                        .map_err(|e| format!("an undecodable message between gateways: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// A start message reached gateway `i`: the request enters its core,
    /// as the shell's `Driver::start_local` puts it there.
    fn serve(&mut self, i: usize, reply: String, payload: Bytes) -> Result<(), String> {
        let Ok(WireMessage::Start {
            host,
            head,
            body,
            payload,
        }) = WireMessage::decode(payload)
        else {
            return Err("a service subject carried something other than a start".into());
        };
        let name = self.nodes[i].name.clone();
        let client: usize = head
            .headers
            .get("x-sim-client")
            .and_then(|v| v.parse().ok())
            .ok_or("a forwarded head lost its client header")?;
        let expected = Expected {
            client,
            method: self.clients[client].method.clone(),
            path: format!("/c/{client}"),
            body: self.clients[client].sends.clone(),
        };
        let body = Serving::request_body(body, payload);
        let started = self.nodes[i]
            .backend
            .start(self.now, &host, head, body, expected);
        let request = match started {
            Ok(request) => request,
            Err(reject) => {
                // Its receiver left since the last round (404), or carries
                // no WebSockets (501).
                let m = Serving::refused(&reject);
                self.bus.publish(
                    &mut self.rng,
                    self.now,
                    &name,
                    Dest::Inbox(reply),
                    None,
                    m.encode(),
                );
                return Ok(());
            }
        };
        let key = self.next_key;
        self.next_key += 1;
        let inbox = bus::inbox(i, 's', key);
        let machine = Serving::new(
            self.now,
            name,
            inbox,
            self.request_timeout,
            self.websocket_idle,
        );
        self.nodes[i].serves.insert(
            key,
            Srv {
                machine,
                origin: reply,
                request,
                passing: false,
                credit: DEFAULT_WINDOW,
            },
        );
        Ok(())
    }

    /// Moves everything the machines have to say until nothing moves.
    fn settle(&mut self) -> Result<(), String> {
        let now = self.now;
        let mut moved = true;
        while moved {
            moved = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].alive {
                    continue;
                }
                moved |= self.settle_forwards(i, now)?;
                moved |= self.settle_serves(i, now)?;
                moved |= self.settle_backend(i, now)?;
            }
        }
        Ok(())
    }

    fn settle_forwards(&mut self, i: usize, now: Instant) -> Result<bool, String> {
        let mut moved = false;
        let name = self.nodes[i].name.clone();
        let keys: Vec<u64> = self.nodes[i].forwards.keys().copied().collect();
        for key in keys {
            let Some(f) = self.nodes[i].forwards.get_mut(&key) else {
                continue;
            };
            let c = f.client;
            let credit = f.credit;
            let transmits: Vec<_> = std::iter::from_fn(|| f.machine.poll_transmit()).collect();
            let events: Vec<_> = std::iter::from_fn(|| f.machine.poll_event()).collect();
            for t in transmits {
                moved = true;
                if let WireMessage::Data { seq, .. } = &t.message {
                    if *seq >= credit {
                        return Err(format!(
                            "upload piece {seq} sent beyond the credit {credit}"
                        ));
                    }
                }
                let (dest, reply) = match t.to {
                    To::Service => {
                        let WireMessage::Start { host, .. } = &t.message else {
                            return Err("only a start goes to a service subject".into());
                        };
                        let k = self.service_of(host)?;
                        (Dest::Service(k), Some(bus::inbox(i, 'f', key)))
                    }
                    To::Inbox(theirs) => (Dest::Inbox(theirs), None),
                };
                self.bus
                    .publish(&mut self.rng, now, &name, dest, reply, t.message.encode());
            }
            let read: usize = events
                .iter()
                .map(|e| match e {
                    ResponseEvent::Body(b) => b.len(),
                    _ => 0,
                })
                .sum();
            for event in events {
                moved = true;
                self.client_event(c, event)?;
            }
            let Some(f) = self.nodes[i].forwards.get_mut(&key) else {
                continue;
            };
            // The client reads what it got at once.
            f.machine.handle_read(read);
            let client = &mut self.clients[c];
            if let Some((gaps, closes)) = &client.websocket {
                // A WebSocket client talks only once switched, and at its
                // own pace.
                let ready =
                    client.got_head == Some(101) && client.next_piece_at.is_none_or(|at| at <= now);
                if ready && f.machine.wants_upload() && client.uploaded <= client.upload.len() {
                    if let Some(piece) = client.upload.get(client.uploaded).cloned() {
                        let gap = gaps.get(client.uploaded + 1).copied().unwrap_or_default();
                        client.uploaded += 1;
                        client.next_piece_at = Some(now + gap);
                        client.activity.push(now);
                        f.machine.handle_upload(now, Upload::Body(piece, false));
                        moved = true;
                    } else if *closes {
                        client.uploaded += 1;
                        client.activity.push(now);
                        f.machine
                            .handle_upload(now, Upload::Body(Bytes::new(), true));
                        moved = true;
                    } else {
                        client.next_piece_at = None;
                        client.uploaded += 1;
                    }
                }
            } else if f.machine.wants_upload() {
                let client = &mut self.clients[c];
                if let Some(piece) = client.upload.get(client.uploaded).cloned() {
                    client.uploaded += 1;
                    let last = client.uploaded == client.upload.len();
                    f.machine.handle_upload(now, Upload::Body(piece, last));
                    moved = true;
                } else if client.upload.is_empty() && client.uploaded == 0 {
                    client.uploaded = 1;
                    f.machine
                        .handle_upload(now, Upload::Body(Bytes::new(), true));
                    moved = true;
                }
            }
            if f.machine.is_finished() {
                self.nodes[i].forwards.remove(&key);
                let client = &self.clients[c];
                if !client.ended && !client.cancelled {
                    return Err(format!("request of client {c} finished without an ending"));
                }
                moved = true;
            }
        }
        Ok(moved)
    }

    fn settle_serves(&mut self, i: usize, now: Instant) -> Result<bool, String> {
        let mut moved = false;
        let keys: Vec<u64> = self.nodes[i].serves.keys().copied().collect();
        for key in keys {
            let node = &mut self.nodes[i];
            let Some(s) = node.serves.get_mut(&key) else {
                continue;
            };
            if s.passing {
                // The shell awaits the piece: nothing else moves for the
                // request meanwhile.
                let Some(passed) = node.backend.body_passed(&s.request) else {
                    continue;
                };
                s.passing = false;
                s.machine.handle_body_passed(passed);
                moved = true;
            }
            let credit = s.credit;
            let origin = s.origin.clone();
            let transmits: Vec<_> = std::iter::from_fn(|| s.machine.poll_transmit()).collect();
            let name = node.name.clone();
            for m in transmits {
                moved = true;
                if let WireMessage::Data { seq, .. } = &m {
                    if *seq >= credit {
                        return Err(format!(
                            "response piece {seq} sent beyond the credit {credit}"
                        ));
                    }
                }
                self.bus.publish(
                    &mut self.rng,
                    now,
                    &name,
                    Dest::Inbox(origin.clone()),
                    None,
                    m.encode(),
                );
            }
            let node = &mut self.nodes[i];
            let Some(s) = node.serves.get_mut(&key) else {
                continue;
            };
            while !s.passing {
                let Some(action) = s.machine.poll_local() else {
                    break;
                };
                moved = true;
                match action {
                    Local::Body { data, last } => {
                        match node.backend.push_body(now, &s.request, data, last) {
                            Some(passed) => s.machine.handle_body_passed(passed),
                            None => s.passing = true,
                        }
                    }
                    Local::Read(n) => node.backend.read(now, &s.request, n),
                    Local::Cancel => node.backend.cancel(now, &s.request),
                }
            }
            if s.passing {
                continue;
            }
            if s.machine.wants_events() {
                if let Some(event) = node.backend.poll_event(&s.request) {
                    let dropped = self.injection == ClusterInjection::DropServedPieces
                        && matches!(&event, ResponseEvent::Body(b) if !b.is_empty());
                    if !dropped {
                        s.machine.handle_event(now, Some(event));
                    }
                    moved = true;
                }
            }
            if s.machine.is_finished() {
                let s = node.serves.remove(&key).ok_or("vanished")?;
                node.backend.release(&s.request)?;
                moved = true;
            }
        }
        Ok(moved)
    }

    /// The serving gateway's own core, receiver and service; what the
    /// service sent is noted for its client to be held against.
    fn settle_backend(&mut self, i: usize, now: Instant) -> Result<bool, String> {
        let backend = &mut self.nodes[i].backend;
        let moved = backend.settle(&mut self.rng, now)?;
        for sent in backend.take_sent() {
            match sent {
                Sent::Head { client, status } => {
                    self.served.insert(
                        client,
                        Response {
                            status: Some(status),
                            ..Response::default()
                        },
                    );
                }
                Sent::Body { client, data } => self
                    .served
                    .entry(client)
                    .or_default()
                    .body
                    .extend_from_slice(&data),
                Sent::End { client } => self.served.entry(client).or_default().complete = true,
            }
        }
        Ok(moved)
    }

    fn service_of(&self, host: &str) -> Result<usize, String> {
        host.strip_prefix("svc")
            .and_then(|r| r.strip_suffix(".sim"))
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| format!("a start for an unknown host {host}"))
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
                if h.status == 101 {
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
                self.counters.completed += 1;
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
                client.ended = true;
                *self.counters.failed.entry(f.status).or_default() += 1;
                if client.got_head == Some(101) && f.status == 504 {
                    self.counters.websocket_idle += 1;
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
                    if too_soon && self.bus.is_lossless() {
                        return Err(format!(
                            "client {c}'s WebSocket timed out after {quiet:?} of quiet (and {margin:?}), idle timeout {:?}",
                            self.websocket_idle
                        ));
                    }
                }
                if f.status == 501 && client.websocket.is_some() {
                    self.counters.websocket_refused += 1;
                } else if f.status == 408 && !self.bus.is_lossless() {
                    // A piece of the upload was lost on the bus: the
                    // serving core timed the stalled upload out.
                } else if !matches!(f.status, 404 | 502 | 503 | 504) {
                    return Err(format!("client {c} failed with an unexpected {}", f.status));
                }
            }
        }
        Ok(())
    }

    fn final_checks(&self) -> Result<(), String> {
        for (c, client) in self.clients.iter().enumerate() {
            if !(client.ended || client.cancelled || client.died || client.settled) {
                return Err(format!(
                    "client {c} (at {}) never saw its request end",
                    self.nodes[client.node].name
                ));
            }
        }
        for n in self.nodes.iter().filter(|n| n.alive) {
            if !n.forwards.is_empty() || !n.serves.is_empty() || !n.backend.is_idle() {
                return Err(format!(
                    "{} still holds requests: {}",
                    n.name,
                    self.busy_summary()
                ));
            }
        }
        Ok(())
    }
}
