//! The simulated world and its event loop: one gateway, its receivers,
//! their connections and upstreams, the public clients, and virtual time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anpx_core::edge::EdgeLimits;
use anpx_core::handshake::{Admissions, DocumentFetches, HandshakeId};
use anpx_core::Features;
use anpx_core::Receiver;
use anpx_core::RequestId;
use anpx_core::ServiceUrl;
use anpx_core::WsMessage;
use anpx_core::{Gateway, LinkId};
use bytes::Bytes;

use super::client::ClientRequest;
use super::invariants::{bail, Ledger, UpstreamRecord, Violation};
use super::network::{describe, Dir, Wire};
use super::outcome::{Counters, Options, Report, SimFailure};
use super::routes::Grant;
use super::scenario::{NodeSpec, Scenario};
use super::trace::Trace;
use super::upstream::Served;

/// Writes a trace line when tracing is on; costs nothing otherwise.
macro_rules! log {
    ($w:expr, $($arg:tt)*) => {
        if $w.trace.on() {
            let label = $w.label();
            let now = $w.now;
            $w.trace.line(&label, now, format_args!($($arg)*));
        }
    };
}

mod admission;
mod checks;
mod clients;
mod peers;

/// Runs the scenario of `seed` to the end and checks it throughout.
pub fn run(seed: u64, options: &Options) -> Result<Report, SimFailure> {
    let mut world = World::new(seed, *options);
    match world.run() {
        Ok(()) => Ok(Report {
            seed,
            digest: world.trace.digest(),
            trace_lines: world.trace.lines(),
            trace: world.trace.take_kept(),
            counters: world.counters.clone(),
            virtual_time: world.now,
        }),
        Err(violation) => Err(SimFailure {
            seed,
            step: world.label(),
            violation,
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Steps,
    Drain,
    Final,
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closer {
    /// A fault the simulation injected: both sides learn at once.
    Network,
    /// The gateway (liveness); it has already dropped the link.
    Gateway,
    /// The receiver (liveness); it has already closed itself.
    Receiver,
}

/// Things the simulation itself schedules.
#[derive(Debug)]
enum Task {
    Upstream {
        node: usize,
        generation: u64,
        request: RequestId,
    },
    Unfreeze {
        node: usize,
    },
    Reconnect {
        node: usize,
    },
    /// The scripted verifier answers a node's handshake.
    Authenticated {
        node: usize,
        number: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Task,
    Deliver(usize, Dir),
    GatewayTimer,
    ReceiverTimer(usize),
}

/// One receiver connection.
#[derive(Debug)]
struct Conn {
    generation: u64,
    link: LinkId,
    rx: Receiver,
    /// The extensions its handshake agreed.
    features: Features,
    /// Its place in the gateway's admissions.
    handshake: HandshakeId,
    wire: Wire,
    /// The upstream's requests on this connection.
    served: BTreeMap<RequestId, Served>,
    /// Streamed responses the receiver told to wait for the gateway's
    /// credit (a piece left bytes unsent): each must get one
    /// `ReceiverOutput::Writable` when the credit sent them, unless it ends.
    reply_waits: BTreeSet<RequestId>,
    /// Requests and aborts the upstream was told of, to hold the receiver's
    /// own totals against.
    heads: u64,
    aborts: u64,
}

/// One receiver process; it reconnects with a fresh `Receiver`.
#[derive(Debug)]
struct Node {
    spec: NodeSpec,
    grants: Vec<Grant>,
    urls: Vec<ServiceUrl>,
    conn: Option<Conn>,
    /// Its handshake in progress, if any.
    attempt: Option<admission::Attempt>,
    generation: u64,
    /// The process is stalled until then: it handles nothing, and nothing
    /// it would send goes out.
    frozen_until: Option<Duration>,
}

struct World {
    seed: u64,
    options: Options,
    sc: Scenario,
    rng: fastrand::Rng,
    base: Instant,
    now: Duration,
    step: usize,
    stage: Stage,
    gw: Gateway,
    /// Every handshake the admissions hold, by the simulation's account.
    held: BTreeMap<HandshakeId, admission::Held>,
    /// Logins refused by authentication (the script or a document).
    auth_refused: u64,
    /// The gateway's DID document fetch decisions, and the simulation's
    /// own model of them.
    documents: DocumentFetches,
    fetches: admission::FetchModel,
    nodes: Vec<Node>,
    /// Every node's grants, for clients to aim at.
    all_grants: Vec<Grant>,
    ledger: Ledger,
    records: BTreeMap<RequestId, UpstreamRecord>,
    clients: BTreeMap<RequestId, ClientRequest>,
    /// The route and client address of every request started from one,
    /// for the oracle of each address's share of a route.
    client_from: BTreeMap<RequestId, (String, std::net::IpAddr)>,
    /// Open requests whose body is still being pushed.
    uploading: BTreeSet<RequestId>,
    /// Uploads the gateway told to wait for the receiver's credit (a piece
    /// left bytes queued): their client pushes nothing more until the
    /// gateway's `Output::Writable`, which each must get once, unless it
    /// ends.
    upload_waits: BTreeSet<RequestId>,
    agenda: BTreeMap<(Duration, u64), Task>,
    agenda_seq: u64,
    serial: u64,
    closed_links: BTreeSet<LinkId>,
    /// Which node every connection ever admitted belongs to.
    link_nodes: BTreeMap<LinkId, usize>,
    draining: bool,
    closing: bool,
    injected: bool,
    same_instant_events: u64,
    trace: Trace,
    counters: Counters,
}

/// Most events one instant may hold before the run counts as livelocked.
const MAX_EVENTS_PER_INSTANT: u64 = 100_000;

impl World {
    fn new(seed: u64, options: Options) -> World {
        let mut rng = fastrand::Rng::with_seed(seed);
        let sc = Scenario::generate(&mut rng);
        let admissions = Admissions::new(
            Features::all(),
            &EdgeLimits {
                max_pending_handshakes: sc.handshakes.max_pending,
                max_receivers_per_ip: sc.handshakes.per_ip,
                max_receivers: sc.handshakes.total,
                ..EdgeLimits::default()
            },
        );
        let gw = Gateway::new(sc.gateway.clone(), rng.u64(..)).with_admissions(admissions);
        let documents = DocumentFetches::new(sc.handshakes.fetch_limits);
        let nodes = sc
            .nodes
            .iter()
            .map(|spec| {
                let mut grants: Vec<Grant> = spec.grants.iter().map(|g| Grant::parse(g)).collect();
                grants.sort();
                grants.dedup();
                let urls = spec
                    .grants
                    .iter()
                    .map(|g| {
                        g.parse()
                            .unwrap_or_else(|e| panic!("scenario grant {g:?}: {e}"))
                    })
                    .collect();
                Node {
                    spec: spec.clone(),
                    grants,
                    urls,
                    conn: None,
                    attempt: None,
                    generation: 0,
                    frozen_until: None,
                }
            })
            .collect::<Vec<Node>>();
        let all_grants = nodes
            .iter()
            .flat_map(|n| n.grants.iter().cloned())
            .collect();
        World {
            seed,
            options,
            sc,
            rng,
            base: Instant::now(),
            now: Duration::ZERO,
            step: 0,
            stage: Stage::Steps,
            gw,
            held: BTreeMap::new(),
            auth_refused: 0,
            documents,
            fetches: admission::FetchModel::default(),
            nodes,
            all_grants,
            ledger: Ledger::new(),
            records: BTreeMap::new(),
            clients: BTreeMap::new(),
            client_from: BTreeMap::new(),
            uploading: BTreeSet::new(),
            upload_waits: BTreeSet::new(),
            agenda: BTreeMap::new(),
            agenda_seq: 0,
            serial: 0,
            closed_links: BTreeSet::new(),
            link_nodes: BTreeMap::new(),
            draining: false,
            closing: false,
            injected: false,
            same_instant_events: 0,
            trace: Trace::new(options.trace),
            counters: Counters::default(),
        }
    }

    fn label(&self) -> String {
        match self.stage {
            Stage::Steps => self.step.to_string(),
            Stage::Drain => "drain".to_owned(),
            Stage::Final => "final".to_owned(),
        }
    }

    fn at(&self) -> Instant {
        self.base + self.now
    }

    fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.base)
    }

    fn run(&mut self) -> Result<(), Violation> {
        log!(
            self,
            "seed {} scenario: {} steps, gateway {:?}, rates {:?}",
            self.seed,
            self.sc.steps,
            self.sc.gateway,
            self.sc.rates
        );
        for i in 0..self.nodes.len() {
            log!(
                self,
                "node {i}: grants {:?}, features {}, {:?}, {:?}",
                self.nodes[i].spec.grants,
                self.nodes[i].spec.features,
                self.nodes[i].spec.config,
                self.nodes[i].spec.latency
            );
            self.connect(i)?;
        }
        for step in 0..self.sc.steps {
            self.step = step;
            self.client_actions()?;
            self.fault_actions()?;
            let dt = self.step_length();
            self.run_until(self.now + dt)?;
            self.check_state()?;
        }
        self.drain()?;
        self.close_everything()
    }

    fn roll(&mut self, per_mille: u32) -> bool {
        self.rng.u32(..1000) < per_mille
    }

    fn step_length(&mut self) -> Duration {
        let ms = Duration::from_millis;
        if self.roll(self.sc.rates.jump) {
            return self.sc.gateway.request_timeout + ms(self.rng.u64(..=2_000));
        }
        match self.rng.u32(..100) {
            0..=69 => ms(self.rng.u64(..=100)),
            70..=94 => ms(self.rng.u64(100..=1_000)),
            _ => ms(self.rng.u64(1_000..=3_000)),
        }
    }

    // ----- connections -----

    /// Ends node `i`'s connection on both sides and schedules a reconnect.
    fn close_conn(&mut self, i: usize, closer: Closer) -> Result<(), Violation> {
        let at = self.at();
        let Some(conn) = self.nodes[i].conn.as_mut() else {
            return Ok(());
        };
        let link = conn.link;
        let handshake = conn.handshake;
        log!(self, "close {link} of node {i} ({closer:?})");
        self.closed_links.insert(link);
        if closer != Closer::Receiver {
            if let Some(conn) = self.nodes[i].conn.as_mut() {
                conn.rx.handle_close(at);
            }
        }
        // The receiver's aborts reach the upstream before the connection goes.
        self.drain_receiver(i)?;
        self.nodes[i].conn = None;
        if closer != Closer::Gateway {
            self.gw.close_link(at, link);
        }
        self.drain_gateway()?;
        // The connection's place in the admissions ends with it.
        self.end_handshake(handshake)?;
        if self.ledger.open_on(link) > 0 {
            bail!(
                "{link} closed, yet {} of its requests are still open",
                self.ledger.open_on(link)
            );
        }
        if !self.closing {
            let resume = self.nodes[i].frozen_until.unwrap_or(self.now).max(self.now);
            let backoff = Duration::from_millis(self.rng.u64(20..=2_000));
            self.schedule(resume + backoff, Task::Reconnect { node: i });
        }
        Ok(())
    }

    fn node_of(&self, link: LinkId) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.conn.as_ref().is_some_and(|c| c.link == link))
    }

    fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].conn.is_some())
            .collect()
    }

    fn schedule(&mut self, at: Duration, task: Task) {
        self.agenda_seq += 1;
        self.agenda.insert((at, self.agenda_seq), task);
    }

    // ----- faults -----

    fn fault_actions(&mut self) -> Result<(), Violation> {
        let rates = self.sc.rates;
        if self.roll(rates.stale_call) && !self.closed_links.is_empty() {
            let n = self.rng.usize(..self.closed_links.len());
            if let Some(&link) = self.closed_links.iter().nth(n) {
                let at = self.at();
                log!(
                    self,
                    "a late socket task calls the gateway for closed {link}"
                );
                self.gw.handle_message(
                    at,
                    link,
                    WsMessage::Text(r#"{"type": "ping", "timestamp": 1}"#.into()),
                );
                self.gw.close_link(at, link);
                if let Some(out) = self.gw.poll_output() {
                    bail!("calls for closed {link} produced {out:?}");
                }
            }
        }
        if self.roll(rates.disconnect) {
            let live = self.live_nodes();
            if !live.is_empty() {
                let i = live[self.rng.usize(..live.len())];
                self.counters.disconnects += 1;
                self.close_conn(i, Closer::Network)?;
            }
        }
        if self.roll(rates.freeze) {
            let idle: Vec<usize> = self
                .live_nodes()
                .into_iter()
                .filter(|&i| self.nodes[i].frozen_until.is_none())
                .collect();
            if !idle.is_empty() {
                let i = idle[self.rng.usize(..idle.len())];
                let liveness = self
                    .sc
                    .gateway
                    .liveness_timeout()
                    .max(self.nodes[i].spec.config.ping_interval * 2);
                let until =
                    self.now + Duration::from_millis(100) + liveness.mul_f64(3.0 * self.rng.f64());
                self.nodes[i].frozen_until = Some(until);
                self.counters.freezes += 1;
                log!(self, "node {i} freezes until {until:?}");
                self.schedule(until, Task::Unfreeze { node: i });
            }
        }
        if self.roll(rates.cut) {
            let live = self.live_nodes();
            if !live.is_empty() {
                let i = live[self.rng.usize(..live.len())];
                if let Some(conn) = self.nodes[i].conn.as_mut() {
                    conn.wire.cut();
                    self.counters.cuts += 1;
                    let link = conn.link;
                    log!(self, "{link} of node {i} goes silent both ways");
                }
            }
        }
        Ok(())
    }

    // ----- the event loop -----

    fn run_until(&mut self, until: Duration) -> Result<(), Violation> {
        while let Some((t, event)) = self.next_event() {
            if t > until {
                break;
            }
            if t > self.now {
                self.now = t;
                self.same_instant_events = 0;
            }
            self.same_instant_events += 1;
            if self.same_instant_events > MAX_EVENTS_PER_INSTANT {
                bail!("livelock: over {MAX_EVENTS_PER_INSTANT} events at one instant (last {event:?})");
            }
            self.counters.events += 1;
            self.fire(event)?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// The earliest thing due, ties going to the first found.
    fn next_event(&self) -> Option<(Duration, Event)> {
        let now = self.now;
        let mut best: Option<(Duration, Event)> = None;
        let mut consider = |t: Duration, e: Event| {
            let t = t.max(now);
            match &best {
                Some((b, _)) if *b <= t => {}
                _ => best = Some((t, e)),
            }
        };
        if let Some(&(t, _)) = self.agenda.keys().next() {
            consider(t, Event::Task);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(conn) = &node.conn else { continue };
            let frozen = node.frozen_until.is_some();
            if let Some(t) = conn.wire.next_at(Dir::Up) {
                consider(t, Event::Deliver(i, Dir::Up));
            }
            if frozen {
                continue;
            }
            if let Some(t) = conn.wire.next_at(Dir::Down) {
                consider(t, Event::Deliver(i, Dir::Down));
            }
            if let Some(t) = conn.rx.poll_timeout() {
                consider(self.offset(t), Event::ReceiverTimer(i));
            }
        }
        if let Some(t) = self.gw.poll_timeout() {
            consider(self.offset(t), Event::GatewayTimer);
        }
        best
    }

    fn fire(&mut self, event: Event) -> Result<(), Violation> {
        let at = self.at();
        match event {
            Event::Task => {
                if let Some((_, task)) = self.agenda.pop_first() {
                    self.run_task(task)?;
                }
                Ok(())
            }
            Event::Deliver(i, dir) => self.deliver(i, dir),
            Event::GatewayTimer => {
                self.gw.handle_timeout(at);
                self.drain_gateway()
            }
            Event::ReceiverTimer(i) => {
                if let Some(conn) = self.nodes[i].conn.as_mut() {
                    conn.rx.handle_timeout(at);
                }
                self.drain_receiver(i)
            }
        }
    }

    fn run_task(&mut self, task: Task) -> Result<(), Violation> {
        match task {
            Task::Upstream {
                node: i,
                generation,
                request,
            } => {
                if let Some(until) = self.nodes[i].frozen_until {
                    // The shell cannot pass anything on while it is stalled.
                    self.schedule(
                        until,
                        Task::Upstream {
                            node: i,
                            generation,
                            request,
                        },
                    );
                    return Ok(());
                }
                self.upstream_act(i, generation, &request)
            }
            Task::Unfreeze { node } => {
                if self.nodes[node].frozen_until.is_some_and(|t| t <= self.now) {
                    self.nodes[node].frozen_until = None;
                    log!(self, "node {node} resumes");
                }
                Ok(())
            }
            Task::Reconnect { node } => {
                if self.nodes[node].conn.is_some()
                    || self.nodes[node].attempt.is_some()
                    || self.closing
                {
                    return Ok(());
                }
                self.counters.reconnects += 1;
                self.connect(node)
            }
            Task::Authenticated { node, number } => self.authenticated(node, number),
        }
    }

    fn deliver(&mut self, i: usize, dir: Dir) -> Result<(), Violation> {
        let at = self.at();
        let now = self.now;
        let Some(conn) = self.nodes[i].conn.as_mut() else {
            return Ok(());
        };
        let Some(message) = conn.wire.pop(dir) else {
            return Ok(());
        };
        let link = conn.link;
        match dir {
            Dir::Down => {
                let ping = matches!(message, WsMessage::Ping(_));
                log!(self, "{link} delivers to node {i}: {}", describe(&message));
                let Some(conn) = self.nodes[i].conn.as_mut() else {
                    return Ok(());
                };
                conn.rx.handle_message(at, message);
                if ping {
                    // WebSocket libraries answer pings themselves.
                    let delay = conn.wire.latency.sample(&mut self.rng);
                    conn.wire
                        .send(Dir::Up, now, delay, WsMessage::Pong(Bytes::new()));
                }
                self.drain_receiver(i)
            }
            Dir::Up => {
                log!(
                    self,
                    "{link} delivers to the gateway: {}",
                    describe(&message)
                );
                self.gw.handle_message(at, link, message);
                self.drain_gateway()
            }
        }
    }
}
