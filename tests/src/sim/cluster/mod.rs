//! A deterministic simulation of a gateway cluster: two to four gateways,
//! each one gateway machine (a member of the cluster, as in production)
//! with a receiver and a scripted service behind it, exchanging cluster
//! messages over a simulated bus in virtual time, with public clients at
//! every gateway.
//!
//! A seed fixes the scenario (how many gateways, who serves what, bus
//! latency and loss, crashes, service churn, timeouts, and in a third of
//! the seeds one bus fault: failing publishes, a gateway's subscriptions
//! ending, a gateway leaving the cluster; see `bus_faults.rs`) and every
//! choice after it. The bus keeps NATS's promises and no more: per sender
//! and receiver messages arrive in order, a message may be lost, a service
//! subject's message goes to one member of its queue group, and one with
//! no member comes back as "no responders". Every gateway's machine runs
//! the cluster: its announcement rounds go on the bus to the others'
//! machines, its joins and leaves make the queue groups, and a public
//! client's request goes in as the shell's driver puts it there (the
//! machine's choice, forwarded or served here, the fall back after a local
//! refusal), its messages out and its replies in through the machine, its
//! upload paced by the machine's `Writable`, its reads and cancel told to
//! it. A request another gateway forwarded takes the production path into
//! the serving gateway's machine (`serve_forwarded`, which holds its
//! serving machine), its answers out on the bus to the forwarding
//! gateway's reply inbox and that gateway's messages to its inbox back in
//! (`served_origin`), so what it meets there (a refusal, the request
//! timeout, the receiver's credit windows) is the real machines' doing,
//! not a script's. Some clients open WebSockets: after the `101` they send
//! pieces with pauses (some longer than the WebSocket idle timeout) and
//! close their side or fall silent; the service echoes and may close
//! first. Checked throughout: the service gets the head and the upload
//! bytes its client sent, in order; every client sees its response in
//! order and each byte as the service sent it; no body piece is sent
//! beyond the credit its reader granted, nor found missing by it on a bus
//! that loses nothing, where no forwarded request times out long after a
//! live serving gateway's service sent its whole response; the machine
//! lets an upload go on only when it told it to wait, gives out no
//! response event of a request no public client holds, and holds no more
//! unread response bytes than a receiver window for each request that may
//! hold some. On such a bus a forwarded request served by a live gateway
//! fails only for what that gateway answered, "no responders" or a
//! timeout, even once a gateway left the cluster (it finishes what it
//! holds); a bus fault makes the bus lossy from then on, and the machine's
//! reaction to it must end at once what it ends. Checked at the end: every
//! client request ended exactly once (or was cancelled by its client, or
//! died with its gateway), and no
//! gateway holds a request in its machine (its own, forwarded or served,
//! `/stats` counting none and no byte buffered), its receiver or its
//! service any more.

mod backend;
mod bus;
mod bus_faults;
mod public;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anpx_core::cluster::{
    Announcement, ClusterOutput, MembershipConfig, Reply, To, Transmit, WireMessage, DEFAULT_WINDOW,
};
use anpx_core::ServiceUrl;
use anpx_core::{GatewayConfig, ReceiverConfig, RequestId};
use bytes::Bytes;

use backend::{Backend, Outward};
use bus::{Bus, Dest, Envelope, Side};
use bus_faults::{Ending, Faults};
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
    /// The serving side drops every response body piece its machine
    /// answers with instead of publishing it, as a shell that lost those
    /// publishes would.
    DropServedPieces,
    /// The forwarding side drops the first upload piece its machine
    /// publishes, as a shell that lost a publish would.
    DropForwardedPiece,
    /// The serving side takes no credit message from the forwarding side
    /// into its machine, as a shell whose served inbox lost them would.
    SkipServedCredit,
    /// A forwarded request's start that could not be published is not
    /// reported to the machine, as a shell that ignored the publish error
    /// would.
    ForgetStartFailed,
    /// A serving subscription that ended is not reported to the machine,
    /// as a shell that did not watch its subscription would.
    ForgetOriginsEnded,
}

/// What a run saw, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCounters {
    /// Requests forwarded to another gateway.
    pub forwarded: u64,
    /// Of those, the ones forwarded after the gateway's own receiver
    /// refused them.
    pub fell_back: u64,
    /// Requests served by the gateway they reached.
    pub local: u64,
    /// Of those, the ones answered completely.
    pub local_completed: u64,
    /// Of those, the ones failed.
    pub local_failed: u64,
    /// Requests nobody served (404 at the gateway reached).
    pub no_route: u64,
    /// Requests the gateway reached refused otherwise, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Gateways another forgot once they fell silent.
    pub forgotten: u64,
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
    /// Served upload pieces the serving machine held for its receiver's
    /// credit.
    pub upload_held: u64,
    /// Response steps the service held for the receiver's credit.
    pub response_held: u64,
    /// Times a gateway's write queue to its receiver filled.
    pub backlogs: u64,
    /// Bus messages carried and lost.
    pub messages: u64,
    /// Bus messages lost.
    pub lost: u64,
    /// Gateways that crashed.
    pub crashes: u64,
    /// Forwarded requests' starts that could not be published
    /// (`forward_start_failed`).
    pub start_failed: u64,
    /// Served requests' answers that could not be published
    /// (`served_publish_failed`).
    pub answer_failed: u64,
    /// Reply subscriptions that ended (`forward_replies_ended`), and the
    /// forwarded requests in flight then.
    pub replies_ended: u64,
    pub replies_ended_failed: u64,
    /// Serving subscriptions that ended (`served_origins_ended`), and the
    /// served requests in flight then.
    pub origins_ended: u64,
    pub origins_ended_cancelled: u64,
    /// Gateways that left the cluster (`leave_cluster`), and the requests
    /// in flight there then, forwarded or served.
    pub leaves: u64,
    pub leave_in_flight: u64,
}

impl ClusterCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ClusterCounters) {
        self.forwarded += other.forwarded;
        self.fell_back += other.fell_back;
        self.local += other.local;
        self.local_completed += other.local_completed;
        self.local_failed += other.local_failed;
        self.no_route += other.no_route;
        for (r, n) in &other.refused {
            *self.refused.entry(r).or_default() += n;
        }
        self.forgotten += other.forgotten;
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
        self.backlogs += other.backlogs;
        self.messages += other.messages;
        self.lost += other.lost;
        self.crashes += other.crashes;
        self.start_failed += other.start_failed;
        self.answer_failed += other.answer_failed;
        self.replies_ended += other.replies_ended;
        self.replies_ended_failed += other.replies_ended_failed;
        self.origins_ended += other.origins_ended;
        self.origins_ended_cancelled += other.origins_ended_cancelled;
        self.leaves += other.leaves;
        self.leave_in_flight += other.leave_in_flight;
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
        let (upload, response, backlogs) = n.backend.held();
        world.counters.upload_held += upload;
        world.counters.response_held += response;
        world.counters.backlogs += backlogs;
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
    /// Its request in that gateway's machine, once it went in.
    request: Option<RequestId>,
    /// It went to another gateway.
    forwarded: bool,
    /// Its method, and every body byte it sends (a whole body or every
    /// piece of `upload`), for the service to hold what it gets against.
    method: String,
    sends: Bytes,
    /// Its body streams: the pieces of `upload`, and how many went out
    /// (one past the last once its side is over).
    streaming: bool,
    upload: Vec<Bytes>,
    uploaded: usize,
    /// Its last piece waits for the machine's `Writable`.
    waiting: bool,
    /// Credit the serving gateway granted for a forwarded upload.
    credit: u64,
    /// The bus said no gateway serves its route any more.
    nobody_serves: bool,
    got_head: Option<u16>,
    /// The status it failed with.
    failed: Option<u16>,
    body: Vec<u8>,
    ended: bool,
    cancelled: bool,
    died: bool,
    /// Refused at the gateway it reached.
    settled: bool,
    /// A WebSocket: the pause before each piece of `upload`, and whether
    /// the client closes its side after the last (else it falls silent).
    websocket: Option<(Vec<Duration>, bool)>,
    /// When its next WebSocket piece is ready.
    next_piece_at: Option<Instant>,
    /// When it sent or got anything.
    activity: Vec<Instant>,
    /// When its start could not be published.
    start_failed_at: Option<Instant>,
    /// The gateway whose machine took its start.
    served_by: Option<usize>,
    /// The failure the serving gateway answered it with.
    answered_failure: Option<u16>,
}

struct Node {
    name: String,
    alive: bool,
    /// It left the cluster.
    left: bool,
    /// Services its receivers serve now.
    services: BTreeSet<usize>,
    /// Service subjects its machine joined and has not left.
    joined: BTreeSet<usize>,
    /// Its gateway machine, receiver and service.
    backend: Backend,
    /// Its public clients' requests in its machine, and whose they are.
    public: BTreeMap<RequestId, usize>,
    /// The credit the forwarding gateway granted for each served request's
    /// response, until its last piece or failure went out.
    answer_credit: BTreeMap<RequestId, u64>,
}

/// What a service sent one client so far.
#[derive(Debug, Default)]
struct Response {
    status: Option<u16>,
    body: Vec<u8>,
    complete: bool,
    /// The gateway whose service sent it, and when it ended.
    node: usize,
    ended_at: Option<Instant>,
}

/// Things the simulation schedules.
#[derive(Debug)]
enum Ev {
    Join(usize),
    NewClient,
    Cancel(usize),
    Crash(usize),
    Churn(usize),
    SubscriptionsEnd(usize, Ending),
    Leave(usize),
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
    faults: Faults,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
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
                    name,
                    alive: true,
                    left: false,
                    services: serves,
                    joined: BTreeSet::new(),
                    public: BTreeMap::new(),
                    answer_credit: BTreeMap::new(),
                })
            })
            .collect::<Result<Vec<Node>, String>>()?;
        let bus = Bus::new(&mut rng, start);
        let faults = Faults::new(seed, n_nodes, start);
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
            faults,
            queue: BTreeMap::new(),
            seq: 0,
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
            let at = start + Duration::from_millis(w.rng.u64(0..200));
            w.schedule(at, Ev::Join(i));
            if w.rng.u8(0..6) == 0 {
                let at = start + Duration::from_millis(w.rng.u64(2000..40_000));
                w.schedule(at, Ev::Crash(i));
            }
            if w.rng.u8(0..3) == 0 {
                let at = start + Duration::from_millis(w.rng.u64(1000..40_000));
                w.schedule(at, Ev::Churn(i));
            }
        }
        w.schedule_faults();
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
            && self
                .nodes
                .iter()
                .all(|n| !n.alive || (n.public.is_empty() && n.backend.is_idle()))
            && self.bus.requests_in_flight() == 0
    }

    fn busy_summary(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| {
                format!(
                    "{}: {} public ({})",
                    n.name,
                    n.public.len(),
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
            take(n.backend.poll_timeout());
            for c in n.public.values() {
                take(self.clients[*c].next_piece_at());
            }
        }
        take(self.bus.next_delivery());
        next
    }

    /// Everything due at `now`.
    fn step(&mut self) -> Result<(), String> {
        let now = self.now;
        let arrived = self.bus.due(now);
        let any = !arrived.is_empty();
        for env in arrived {
            self.deliver(env)?;
        }
        // The shell's driver flushes the machine's outputs after every
        // input: what the bus brought comes out before a client cancels.
        if any {
            self.settle()?;
        }
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ev = entry.remove();
            match ev {
                Ev::Join(i) => {
                    let config = MembershipConfig {
                        node: self.nodes[i].name.clone(),
                        announce_interval: self.announce_interval,
                        route_ttl: self.route_ttl,
                    };
                    self.nodes[i].backend.join_cluster(now, config);
                }
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
                Ev::SubscriptionsEnd(i, which) => self.subscriptions_end(i, which)?,
                Ev::Leave(i) => self.leave(i),
            }
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            self.nodes[i].backend.handle_timeout(now);
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.alive {
            return;
        }
        node.alive = false;
        self.counters.crashes += 1;
        for c in std::mem::take(&mut node.public).into_values() {
            let client = &mut self.clients[c];
            if !client.ended && !client.cancelled {
                client.died = true;
                self.counters.died += 1;
            }
        }
        node.answer_credit.clear();
    }

    /// A bus message reached its destination.
    fn deliver(&mut self, env: Envelope) -> Result<(), String> {
        let now = self.now;
        match env.dest {
            Dest::Routes => {
                let a = Announcement::from_json(&env.payload)
                    .map_err(|e| format!("an undecodable announcement: {e}"))?;
                for node in self.nodes.iter_mut().filter(|n| n.alive && !n.left) {
                    node.backend.handle_announcement(now, a.clone());
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
                let Some((i, side, request)) = bus::parse_inbox(&inbox) else {
                    return Err(format!("a message for an unknown inbox {inbox}"));
                };
                let node = &mut self.nodes[i];
                if !node.alive || self.faults.closed(i, side) {
                    return Ok(());
                }
                let credit = match WireMessage::decode(env.payload.clone()) {
                    Ok(WireMessage::Credit { upto }) => Some(upto),
                    _ => None,
                };
                match side {
                    Side::Serving => {
                        if let (Some(upto), Some(granted)) =
                            (credit, node.answer_credit.get_mut(&request))
                        {
                            *granted = (*granted).max(upto);
                        }
                        if credit.is_some() && self.injection == ClusterInjection::SkipServedCredit
                        {
                            return Ok(());
                        }
                        // As the shell's one subscription for every served
                        // request: whatever arrives goes in, the machine
                        // knowing which requests are over.
                        node.backend.served_origin(now, &request, env.payload)?;
                    }
                    Side::Forwarding => {
                        if let Some(c) = node.public.get(&request) {
                            let client = &mut self.clients[*c];
                            client.nobody_serves |= env.no_responders;
                            if let Some(upto) = credit {
                                client.credit = client.credit.max(upto);
                            }
                        }
                        let reply = if env.no_responders {
                            Reply::NoResponders
                        } else {
                            Reply::Message(env.payload)
                        };
                        // As the shell's reply subscription: whatever
                        // arrives goes in, the machine knowing which
                        // requests are over.
                        node.backend.forward_reply(now, &request, reply);
                    }
                }
            }
        }
        Ok(())
    }

    /// A start message reached gateway `i`: its machine serves it, as the
    /// shell's service subscription puts it there.
    fn serve(&mut self, i: usize, reply: String, payload: Bytes) -> Result<(), String> {
        let start = WireMessage::decode(payload)
            .map_err(|e| format!("an undecodable start message: {e}"))?;
        let WireMessage::Start { head, .. } = &start else {
            return Err("a service subject carried something other than a start".into());
        };
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
        self.clients[client].served_by = Some(i);
        let prefix = bus::serving_prefix(i);
        let node = &mut self.nodes[i];
        if let Some(request) = node
            .backend
            .serve(self.now, start, reply, &prefix, expected)
        {
            node.answer_credit.insert(request, DEFAULT_WINDOW);
        }
        Ok(())
    }

    /// A served request's answer goes on the bus to the forwarding
    /// gateway's reply inbox, its response pieces within that gateway's
    /// credit.
    fn answer(
        &mut self,
        i: usize,
        request: Option<RequestId>,
        to: String,
        message: WireMessage,
    ) -> Result<(), String> {
        let node = &mut self.nodes[i];
        if let Some(request) = &request {
            let Some(&credit) = node.answer_credit.get(request) else {
                return Err(format!(
                    "{} answered for {request} after its last piece or failure: {message:?}",
                    node.name
                ));
            };
            match &message {
                WireMessage::Data { seq, .. } if *seq >= credit => {
                    return Err(format!(
                        "response piece {seq} of {request} sent beyond the credit {credit}"
                    ));
                }
                WireMessage::Data { last: true, .. } | WireMessage::Failed(_) => {
                    node.answer_credit.remove(request);
                }
                _ => {}
            }
        }
        if self.injection == ClusterInjection::DropServedPieces
            && matches!(&message, WireMessage::Data { data, .. } if !data.is_empty())
        {
            return Ok(());
        }
        if self.faults.publish_fails() {
            if let Some(request) = &request {
                self.answer_unpublished(i, request);
            }
            return Ok(());
        }
        if let (WireMessage::Failed(f), Some((n, Side::Forwarding, theirs))) =
            (&message, bus::parse_inbox(&to))
        {
            if let Some(&c) = self.nodes[n].public.get(&theirs) {
                self.clients[c].answered_failure = Some(f.status);
            }
        }
        let name = self.nodes[i].name.clone();
        self.bus.publish(
            &mut self.rng,
            self.now,
            &name,
            Dest::Inbox(to),
            None,
            message.encode(),
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
                moved |= self.settle_clients(i, now)?;
                moved |= self.settle_backend(i, now)?;
            }
        }
        self.check_faults_settled()
    }

    /// The gateway's machine, receiver and service; what the service sent
    /// is noted for its client to be held against, and what the machine
    /// said goes to the public clients and the bus.
    fn settle_backend(&mut self, i: usize, now: Instant) -> Result<bool, String> {
        let backend = &mut self.nodes[i].backend;
        let mut moved = backend.settle(&mut self.rng, now)?;
        for sent in backend.take_sent() {
            match sent {
                Sent::Head { client, status } => {
                    self.served.insert(
                        client,
                        Response {
                            status: Some(status),
                            node: i,
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
                Sent::End { client } => {
                    let r = self.served.entry(client).or_default();
                    r.complete = true;
                    r.ended_at = Some(now);
                }
            }
        }
        for out in self.nodes[i].backend.take_outward() {
            moved = true;
            match out {
                Outward::Response { request, event } => self.public_event(i, &request, event)?,
                Outward::Writable { request } => self.writable(i, &request)?,
                Outward::Publish {
                    request,
                    route,
                    transmit,
                } => self.publish(i, &request, &route, transmit)?,
                Outward::Cluster(out) => self.cluster_output(i, out)?,
                Outward::Answer {
                    request,
                    to,
                    message,
                } => self.answer(i, request, to, message)?,
            }
        }
        self.nodes[i].backend.check_unread()?;
        Ok(moved)
    }

    /// A forwarded request's message goes on the bus: its start to its
    /// route's subject with its reply inbox, the rest to the serving
    /// gateway's inbox.
    fn publish(
        &mut self,
        i: usize,
        request: &RequestId,
        route: &ServiceUrl,
        transmit: Transmit,
    ) -> Result<(), String> {
        if let (WireMessage::Data { seq, .. }, Some(c)) =
            (&transmit.message, self.nodes[i].public.get(request))
        {
            let credit = self.clients[*c].credit;
            if *seq >= credit {
                return Err(format!(
                    "upload piece {seq} of client {c} sent beyond the credit {credit}"
                ));
            }
            if self.injection == ClusterInjection::DropForwardedPiece && *seq == 0 {
                return Ok(());
            }
        }
        let (dest, reply) = match transmit.to {
            To::Service => {
                if !matches!(transmit.message, WireMessage::Start { .. }) {
                    return Err("only a start goes to a service subject".into());
                }
                let k = self
                    .services
                    .iter()
                    .position(|s| s == route)
                    .ok_or_else(|| format!("a start for an unknown route {route}"))?;
                (Dest::Service(k), Some(bus::reply_inbox(i, request)))
            }
            To::Inbox(theirs) => (Dest::Inbox(theirs), None),
        };
        if self.faults.publish_fails() {
            // The shell reports only a start's failure; any other message
            // lost so is as lost on the bus.
            if matches!(dest, Dest::Service(_)) {
                self.start_unpublished(i, request);
            }
            return Ok(());
        }
        let name = self.nodes[i].name.clone();
        let payload = transmit.message.encode();
        self.bus
            .publish(&mut self.rng, self.now, &name, dest, reply, payload);
        Ok(())
    }

    /// What gateway `i`'s machine asks of the cluster's bus.
    fn cluster_output(&mut self, i: usize, out: ClusterOutput) -> Result<(), String> {
        let service = |url: &ServiceUrl| {
            self.services
                .iter()
                .position(|s| s == url)
                .ok_or_else(|| format!("{} joined an unknown route {url}", self.nodes[i].name))
        };
        match out {
            // The shell logs a failed announcement and goes on.
            ClusterOutput::Announce(_) if self.faults.publish_fails() => {}
            ClusterOutput::Announce(a) => {
                let name = self.nodes[i].name.clone();
                let payload = a.to_json().into();
                self.bus
                    .publish(&mut self.rng, self.now, &name, Dest::Routes, None, payload);
            }
            ClusterOutput::Join(url) => {
                let k = service(&url)?;
                self.nodes[i].joined.insert(k);
            }
            ClusterOutput::Leave(url) => {
                let k = service(&url)?;
                self.nodes[i].joined.remove(&k);
            }
            ClusterOutput::Forgotten(_) => self.counters.forgotten += 1,
        }
        Ok(())
    }

    /// Whether every message published so far reached its subscriber.
    fn delivered_all(&self) -> bool {
        self.bus.is_lossless() && self.faults.delivered_all()
    }

    fn final_checks(&self) -> Result<(), String> {
        self.check_frozen_books()?;
        for (c, client) in self.clients.iter().enumerate() {
            if !(client.ended || client.cancelled || client.died || client.settled) {
                return Err(format!(
                    "client {c} (at {}) never saw its request end",
                    self.nodes[client.node].name
                ));
            }
            // "No responders" ends a forwarded request at once.
            if client.nobody_serves && client.ended && client.failed != Some(502) {
                return Err(format!(
                    "client {c} was told no gateway serves its route, yet ended with {:?}",
                    client.failed
                ));
            }
        }
        for n in self.nodes.iter().filter(|n| n.alive) {
            if !n.public.is_empty() || !n.backend.is_idle() {
                return Err(format!(
                    "{} still holds requests: {}",
                    n.name,
                    self.busy_summary()
                ));
            }
            if let Some(leak) = n.backend.leaks(self.now) {
                return Err(format!("{} holds nothing, yet {leak}", n.name));
            }
        }
        Ok(())
    }
}
