//! The gateway state machine: receiver connections, routing, and the requests in flight on them (documented on [`Gateway`]).

#[cfg(feature = "auth")]
mod auth;
mod callers;
mod config;
mod duration_histogram;
mod edge_refusals;
mod ending;
mod endings;
mod fault;
mod fetches;
mod forwarded;
mod handshakes;
mod output;
#[cfg(feature = "policy")]
mod screening;
mod served;
mod stats;

pub use callers::{CallerAuthCounts, CallerProof};
pub use config::{
    BufferBudget, GatewayConfig, MessageBudget, DEFAULT_MAX_BUFFERED_PER_LINK,
    DEFAULT_MAX_BUFFERED_TOTAL, DEFAULT_MAX_INFLIGHT_PERCENT_PER_CLIENT,
};
pub use duration_histogram::DurationHistogram;
pub use edge_refusals::EdgeRefusals;
pub use ending::{Ending, FailureKind};
pub use endings::{RequestEnd, RequestEndings, RouteSeries, CLUSTER_ROUTE, UNROUTED};
pub use fault::LinkFault;
pub use output::{Failure, Output, Reject, RequestGone, ResponseEvent};
pub use stats::{label_value, GatewayStats, LinkStats, Totals};

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::id_map::{IdMap, IdSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::chunk::{ChunkError, ChunkStream, Chunker, Reassembler};
use crate::cluster::{Announcement, Choice, Membership, MembershipConfig, RouteBook};
use crate::control::{self, Control};
use crate::edge::response::{check_head, Asked, BodyCheck};
use crate::features::{Feature, Features};
use crate::flow::{Flow, INITIAL_WINDOW};
use crate::forward::normalize_path;
use crate::frame::{tag, ExtFrame, Frame, MessageKind};
use crate::handshake::{Admissions, DocumentFetches, FetchLimits};
use crate::lane::{rank, Lane};
use crate::message::{Head, Message, RequestHead, RequestId};
use crate::passthrough;
use crate::route::{RouteTable, ServiceUrl};
use crate::timer::TimerQueue;
use crate::upstream_failure;
use crate::ws::{WsMessage, CLOSE_GOING_AWAY};

use self::fault::Bucket;

/// A receiver connection, as numbered by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LinkId(u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link-{}", self.0)
    }
}

/// Who a receiver connection proved to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "did", rename_all = "snake_case")]
pub enum Identity {
    /// No authentication (open mode).
    Anonymous,
    /// A DID-WBA identity, e.g. `did:wba:example.com:agents:a1`.
    Did(String),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("anonymous"),
            Identity::Did(did) => f.write_str(did),
        }
    }
}

/// How the body of a public request reaches the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// The whole body, already read (small requests): sent in one frame
    /// when it fits, which every receiver handles best.
    Full(Bytes),
    /// The body follows through [`Gateway::push_body`].
    Streaming,
    /// The body follows through [`Gateway::push_body`] and is exactly this
    /// many bytes (a Content-Length). A receiver that takes only whole
    /// messages (no `streaming` extension, e.g. the reference) then gets it
    /// in full chunks that carry `chunk_tot`, as the reference sends them;
    /// a body that ends short of the length or runs past it fails the
    /// request.
    Sized(u64),
}

impl RequestBody {
    /// True when the body follows through [`Gateway::push_body`].
    pub fn is_streaming(&self) -> bool {
        matches!(self, RequestBody::Streaming | RequestBody::Sized(_))
    }
}

/// What [`Gateway::regrant`] changed on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regrant {
    /// Service URLs the connection serves now and did not before.
    pub added: Vec<ServiceUrl>,
    /// Service URLs it no longer serves.
    pub removed: Vec<ServiceUrl>,
}

impl Regrant {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[derive(Debug)]
struct Link {
    identity: Identity,
    /// The address it connected from, when it came through a handshake.
    peer: Option<IpAddr>,
    features: Features,
    admitted_at: Instant,
    last_seen: Instant,
    requests: IdSet<RequestId>,
    reassembler: Reassembler,
    /// Messages carrying no response data it may still send.
    chatter: Bucket,
    /// Response body bytes passed on for its requests and not yet taken by
    /// their clients.
    unread: u64,
    /// Bytes of WebSocket messages still arriving on the connection (read
    /// from its socket, not yet a whole message), as the shell reports
    /// them.
    arriving: u64,
    /// With `drain`: the receiver said it is shutting down. No new request
    /// is routed to it; those in flight run to their end.
    draining: bool,
    /// Its queue of frames to write is full, as the shell said
    /// ([`Gateway::link_backlog`]).
    backlogged: bool,
    /// The shell's lane it is served on ([`Gateway::set_link_lane`]).
    lane: Option<Lane>,
}

impl Link {
    /// The response bytes the gateway holds because of this connection.
    fn buffered(&self) -> u64 {
        self.reassembler.held_bytes() + self.unread
    }

    /// What counts against the budgets: what it holds and what messages
    /// still arriving hold. Credit a flow-controlled receiver has not used
    /// is not counted: a receiver that holds requests without answering
    /// holds no memory, and must not keep others' requests out.
    fn charge(&self) -> u64 {
        self.buffered() + self.arriving
    }

    fn flow_controlled(&self) -> bool {
        self.features.contains(Feature::FlowControl)
    }
}

/// Response body bytes passed on for one request and not yet taken by its
/// client. Kept after the request ends: a slow client's unread body is
/// still in memory.
#[derive(Debug)]
struct Unread {
    link: LinkId,
    bytes: u64,
}

#[derive(Debug)]
struct Pending {
    link: LinkId,
    head_sent: bool,
    /// Head deadline, then idle deadline once the head is out.
    deadline: Instant,
    /// Upload progress moves the head deadline no later than this.
    upload_until: Instant,
    /// Where this request's entry sits in the timer queue (it lags
    /// `deadline` until it comes due and is re-armed), so that finishing
    /// the request can remove it.
    armed: Instant,
    /// The request body still being sent, when it streams.
    upload: Option<ChunkStream>,
    /// Credit windows, when the link negotiated `flow-control`.
    flow: Option<Flow>,
    /// Whether the link negotiated `cancel`.
    cancel: bool,
    /// A WebSocket upgrade request (`websocket`).
    upgrade: bool,
    /// A `HEAD` request: its response has no body.
    head_method: bool,
    /// How the response body is delimited, once its head passed the checks.
    body: Option<BodyCheck>,
    /// The receiver answered the upgrade with `101`: the request is now a
    /// byte stream each way, timed by the WebSocket idle timeout.
    tunnel: bool,
    /// The route and client address it counts under in
    /// [`Gateway::client_load`], when started with an address.
    client: Option<(ServiceUrl, IpAddr)>,
    /// The granted service URL it was routed by: the label of its
    /// per-route metrics.
    route: ServiceUrl,
    /// An [`Output::Writable`] for it went into the output queue and may
    /// not be polled yet: taken out again if the request ends first.
    writable_out: bool,
    /// Its client's upload waits for room in the connection's write queue
    /// ([`Gateway::link_backlog`]): [`Output::Writable`] names it once
    /// the queue has room.
    room_wait: bool,
}

impl Pending {
    /// Why the request timed out on its client, when it did: its body had
    /// not all arrived (and none was waiting for the receiver's credit),
    /// either past the upload timeout or after a quiet request timeout.
    fn upload_late(&self, now: Instant, config: &GatewayConfig) -> Option<Failure> {
        // An upgrade's "body" is the client's bytes after a 101 that has
        // not come: the wait is the receiver's.
        let waiting_for_client = !self.upgrade
            && self.upload.is_some()
            && self.flow.as_ref().is_none_or(|f| f.send.queued() == 0);
        if !waiting_for_client {
            return None;
        }
        Some(if now >= self.upload_until {
            Failure::upload_timed_out(config.upload_timeout)
        } else {
            Failure::new(
                FailureKind::UploadTimeout,
                408,
                format!(
                    "Request body quiet for {} s (request_timeout_secs)",
                    config.request_timeout.as_secs()
                ),
            )
        })
    }

    /// The request's deadline after activity at `now`: the head has
    /// `request_timeout`, a body then `body_idle_timeout` between parts,
    /// a WebSocket its idle timeout.
    fn deadline_after(&self, now: Instant, config: &GatewayConfig) -> Instant {
        if self.tunnel {
            now + config.websocket_idle_timeout
        } else if self.head_sent {
            now + config.body_idle_timeout
        } else {
            now + config.request_timeout
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Request(RequestId),
    Ping(LinkId),
    Liveness(LinkId),
    /// The cluster membership's next round.
    Announce,
    /// A forwarded request's check of its serving gateway and deadline.
    Forwarded(RequestId),
    /// A served request's check for a forwarding gateway that stopped
    /// granting credit.
    Served(RequestId),
}

/// Moves the timer entry of `key` from `armed` to `next` (`None`: no
/// entry), for a machine held inside the gateway that says when it next
/// wants its time.
fn rearm(
    timers: &mut TimerQueue<Timer>,
    armed: &mut Option<Instant>,
    next: Option<Instant>,
    key: Timer,
) {
    if next == *armed {
        return;
    }
    if let Some(at) = armed.take() {
        timers.disarm(at, key.clone());
    }
    if let Some(at) = next {
        timers.arm(at, key);
        *armed = Some(at);
    }
}

/// The gateway state machine: receiver connections, routing, and the
/// requests in flight on them.
///
/// The shell owns the sockets. It admits a receiver connection after its
/// WebSocket handshake (and DID-WBA check), feeds every WebSocket message to
/// [`Gateway::handle_message`], starts public requests with
/// [`Gateway::start_request`], and after each call drains
/// [`Gateway::poll_output`] and sleeps until [`Gateway::poll_timeout`].
///
/// ```
/// use std::time::Instant;
/// use anpx_core::{Gateway, GatewayConfig, Identity, Output, RequestBody, ResponseEvent};
/// use anpx_core::Features;
/// use anpx_core::ServiceUrl;
/// use anpx_core::RequestHead;
///
/// let now = Instant::now();
/// let mut gw = Gateway::new(GatewayConfig::default(), 7);
/// let link = gw.admit(now, Identity::Anonymous, vec!["api.agent.com/travel".parse().unwrap()], Features::empty());
///
/// // No route: refused at once, with the reference's 404.
/// let err = gw.start_request(now, "other.com", RequestHead::new("GET", "/"), RequestBody::Empty).unwrap_err();
/// assert_eq!(err.failure().status, 404);
///
/// // A routed request becomes a frame to send on the receiver's connection.
/// let id = gw.start_request(now, "api.agent.com", RequestHead::new("GET", "/travel/x"), RequestBody::Empty).unwrap();
/// assert!(matches!(gw.poll_output(), Some(Output::Transmit { link: l, .. }) if l == link));
///
/// // Nothing comes back in time: 504.
/// gw.handle_timeout(now + std::time::Duration::from_secs(31));
/// let failed = std::iter::from_fn(|| gw.poll_output()).find_map(|o| match o {
///     Output::Response { request, event: ResponseEvent::Failed(f) } if request == id => Some(f.status),
///     _ => None,
/// });
/// assert_eq!(failed, Some(504));
/// ```
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    chunker: Chunker,
    rng: fastrand::Rng,
    next_link: u64,
    links: IdMap<LinkId, Link>,
    routes: RouteTable<LinkId>,
    pending: IdMap<RequestId, Pending>,
    timers: TimerQueue<Timer>,
    out: VecDeque<Output>,
    totals: Totals,
    unread: IdMap<RequestId, Unread>,
    /// What the gateway holds because of receivers (connected or not, as
    /// long as a client has not taken it), counted against
    /// [`BufferBudget::total`].
    buffered: u64,
    /// Bytes of WebSocket messages still arriving: the sum of
    /// [`Link::arriving`], counted against the total.
    arriving: u64,
    /// Requests in flight per route and client address (IPv6 by /64),
    /// held to [`GatewayConfig::client_share`].
    client_load: HashMap<(ServiceUrl, IpAddr), usize>,
    /// Receivers' handshakes and connections, from the first header to
    /// the closed socket.
    admissions: Admissions,
    /// How public requests ended, as the shell reported them.
    endings: RequestEndings,
    /// What the public edge refused.
    edge_refusals: EdgeRefusals,
    /// Every service URL ever granted: the route labels
    /// [`RequestEndings`] takes, so that its series stay bounded by the
    /// grants even for a route granted away while its requests ran.
    granted: HashSet<ServiceUrl>,
    /// The middlewares screening public requests, when configured.
    #[cfg(feature = "policy")]
    policy: Option<crate::policy::Policy>,
    /// DID document fetches in flight and fetched lately, for receiver
    /// logins and callers alike.
    documents: DocumentFetches,
    /// The nonces receiver logins spent.
    #[cfg(feature = "auth")]
    login_nonces: crate::auth::Nonces,
    /// The nonces callers spent.
    #[cfg(feature = "auth")]
    caller_nonces: crate::auth::Nonces,
    /// Caller authentication's verdicts, once it runs.
    callers: Option<CallerAuthCounts>,
    /// This gateway's part in a cluster, once it joined one.
    membership: Option<Membership>,
    /// Public requests sent to other gateways of the cluster.
    forwarded: IdMap<RequestId, forwarded::Forwarded>,
    /// The reply inboxes are gone for good ([`Gateway::forward_replies_ended`]):
    /// a request forwarded from now on could never hear back, so it fails
    /// at once instead of waiting for its deadline.
    replies_ended: bool,
    /// Requests other gateways of the cluster forwarded here.
    served: IdMap<RequestId, served::Served>,
    /// Served requests with response events or upload room new since
    /// they last ran.
    served_dirty: BTreeSet<RequestId>,
    /// The latest time an input brought, for the served requests' machines
    /// run from [`poll_output`](Self::poll_output).
    clock: Option<Instant>,
}

impl Gateway {
    /// A gateway with no receivers. `seed` feeds the request-id generator;
    /// the shells seed it from the OS, tests from a fixed value.
    pub fn new(mut config: GatewayConfig, seed: u64) -> Self {
        config.frame_limits.max_frame_len = config.max_message_len();
        Gateway {
            chunker: Chunker::new(config.chunk_size),
            config,
            rng: fastrand::Rng::with_seed(seed),
            next_link: 1,
            links: IdMap::default(),
            routes: RouteTable::default(),
            pending: IdMap::default(),
            timers: TimerQueue::default(),
            out: VecDeque::new(),
            totals: Totals::default(),
            unread: IdMap::default(),
            buffered: 0,
            arriving: 0,
            client_load: HashMap::new(),
            admissions: Self::default_admissions(),
            endings: RequestEndings::default(),
            edge_refusals: EdgeRefusals::default(),
            granted: HashSet::new(),
            #[cfg(feature = "policy")]
            policy: None,
            documents: DocumentFetches::new(FetchLimits::default()),
            #[cfg(feature = "auth")]
            login_nonces: crate::auth::Nonces::new(&Default::default()),
            #[cfg(feature = "auth")]
            caller_nonces: crate::auth::Nonces::new(&Default::default()),
            callers: None,
            membership: None,
            forwarded: IdMap::default(),
            replies_ended: false,
            served: IdMap::default(),
            served_dirty: BTreeSet::new(),
            clock: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Admits a receiver connection that serves `grants`.
    pub fn admit(
        &mut self,
        now: Instant,
        identity: Identity,
        grants: Vec<ServiceUrl>,
        features: Features,
    ) -> LinkId {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        for url in &grants {
            self.routes.insert(url, id);
            self.remember_grant(url);
        }
        self.links.insert(
            id,
            Link {
                identity,
                peer: None,
                features,
                admitted_at: now,
                last_seen: now,
                requests: IdSet::default(),
                reassembler: Reassembler::new(self.config.reassembly),
                chatter: Bucket::new(self.config.chatter, now),
                unread: 0,
                arriving: 0,
                draining: false,
                backlogged: false,
                lane: None,
            },
        );
        self.timers
            .arm(now + self.config.ping_interval, Timer::Ping(id));
        self.timers
            .arm(now + self.config.liveness_timeout(), Timer::Liveness(id));
        self.totals.links_admitted += 1;
        id
    }

    /// Replaces what `link` serves with `grants`, as when the registry
    /// changed while the receiver stayed connected. Requests already on
    /// the link run to their end; only new requests are routed by the new
    /// grants. An empty `grants` leaves the connection up with no routes
    /// (a later grant can give them back). Unknown links change nothing.
    ///
    /// ```
    /// use std::time::Instant;
    /// use anpx_core::Features;
    /// use anpx_core::{Gateway, GatewayConfig, Identity};
    ///
    /// let mut gw = Gateway::new(GatewayConfig::default(), 1);
    /// let now = Instant::now();
    /// let u = |s: &str| s.parse().unwrap();
    /// let link = gw.admit(now, Identity::Anonymous, vec![u("a.com/x"), u("a.com/y")], Features::empty());
    /// let change = gw.regrant(now, link, &[u("a.com/y"), u("b.com")]);
    /// assert_eq!(change.removed, [u("a.com/x")]);
    /// assert_eq!(change.added, [u("b.com")]);
    /// assert!(gw.regrant(now, link, &[u("a.com/y"), u("b.com")]).is_empty());
    /// ```
    pub fn regrant(&mut self, _now: Instant, link: LinkId, grants: &[ServiceUrl]) -> Regrant {
        let mut change = Regrant::default();
        if !self.links.contains_key(&link) {
            return change;
        }
        let current: Vec<ServiceUrl> = self.routes.links_of(link).cloned().collect();
        for url in current.iter().filter(|u| !grants.contains(u)) {
            self.routes.remove(url, link);
            change.removed.push(url.clone());
        }
        for url in grants {
            if self.routes.insert(url, link) {
                self.remember_grant(url);
                change.added.push(url.clone());
            }
        }
        change
    }

    /// The shell saw the connection close: fail its requests with 502 and
    /// forget its routes.
    pub fn close_link(&mut self, now: Instant, link: LinkId) {
        self.tick(now);
        self.drop_link(now, link, "receiver disconnected");
    }

    /// Takes one WebSocket message received on `link`.
    pub fn handle_message(&mut self, now: Instant, link: LinkId, message: WsMessage) {
        self.tick(now);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.last_seen = now;
        if matches!(message, WsMessage::Binary(_) | WsMessage::Text(_)) {
            // A whole data message ends the one that was arriving (control
            // messages may come between its fragments).
            self.arriving -= l.arriving;
            l.arriving = 0;
        }
        match message {
            WsMessage::Binary(bytes) => self.handle_frame(now, link, bytes),
            WsMessage::Text(text) => {
                if self.chatter_allowed(now, link, "control messages") {
                    self.handle_control(link, &text);
                }
            }
            WsMessage::Ping(_) | WsMessage::Pong(_) => {
                self.chatter_allowed(now, link, "WebSocket pings or pongs");
            }
        }
    }

    /// The shell found `link` misbehaving in a way only it can see (a
    /// WebSocket message over the size limit): count it and close the
    /// connection.
    pub fn link_fault(&mut self, now: Instant, link: LinkId, fault: LinkFault, detail: &str) {
        self.tick(now);
        self.fault(now, link, fault, detail.to_owned());
    }

    /// Spends one message of `link`'s chatter budget; an empty budget closes
    /// the connection. Returns whether the message may be handled.
    fn chatter_allowed(&mut self, now: Instant, link: LinkId, what: &str) -> bool {
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        if l.chatter.take(now) {
            return true;
        }
        let b = self.config.chatter;
        self.fault(
            now,
            link,
            LinkFault::Flood,
            format!(
                "too many {what} (budget {} at once, {} per second)",
                b.burst, b.per_second
            ),
        );
        false
    }

    fn handle_control(&mut self, link: LinkId, text: &str) {
        match Control::parse(text) {
            Ok(Control::Ping { timestamp }) => self.out.push_back(Output::Transmit {
                link,
                message: WsMessage::Text(control::pong(timestamp.as_deref())),
            }),
            Ok(Control::Pong | Control::Heartbeat) => {}
            // Identity comes only from a verified handshake, never from an
            // unsigned message (the reference's newer gateway trusts it).
            Ok(Control::Authentication) => self.totals.unsigned_auth_ignored += 1,
            // Only a receiver that negotiated `drain` may say it is going;
            // the answer follows every request already routed to it.
            Ok(Control::Draining) => match self.links.get_mut(&link) {
                Some(l) if l.features.contains(Feature::Drain) => {
                    l.draining = true;
                    self.out.push_back(Output::Transmit {
                        link,
                        message: WsMessage::Text(control::draining_ack()),
                    });
                }
                _ => self.totals.bad_control += 1,
            },
            Ok(Control::DrainingAck | Control::Unknown(_)) | Err(_) => self.totals.bad_control += 1,
        }
    }

    fn handle_frame(&mut self, now: Instant, link: LinkId, bytes: Bytes) {
        if ExtFrame::peek(&bytes).is_some() {
            return self.handle_ext_frame(now, link, bytes);
        }
        let frame = match Frame::decode(bytes, &self.config.frame_limits) {
            Ok(frame) => frame,
            Err(e) => return self.fault(now, link, LinkFault::BadFrame, format!("bad frame: {e}")),
        };
        if frame.kind == MessageKind::Request {
            return self.fault(
                now,
                link,
                LinkFault::RequestFrame,
                "a receiver sent a request frame".into(),
            );
        }
        let id = frame.request_id.clone();
        match self.pending.get(&id) {
            Some(p) if p.link == link => {}
            // Ids are random and only ever sent to the connection serving
            // them, so naming another connection's request is an attack (or
            // a badly broken peer); the other request is left alone.
            Some(_) => {
                self.totals.stray_frames += 1;
                return self.fault(
                    now,
                    link,
                    LinkFault::ForeignRequest,
                    format!("frame for request {id}, which another connection serves"),
                );
            }
            // Late responses (after a 504 or a cancel) are dropped and
            // counted, never delivered. They are not charged to the chatter
            // budget: a cancelled download can leave many chunks in flight.
            None => {
                self.totals.stray_frames += 1;
                return;
            }
        }
        let carries_nothing = frame.chunk.is_some_and(|c| !c.is_final())
            && frame.meta.is_none()
            && frame.body.as_ref().is_none_or(Bytes::is_empty);
        if carries_nothing && !self.chatter_allowed(now, link, "empty chunks") {
            return;
        }
        if frame.kind == MessageKind::Response {
            let n = frame.body.as_ref().map_or(0, |b| b.len() as u64);
            let over = self
                .pending
                .get_mut(&id)
                .and_then(|p| p.flow.as_mut())
                .and_then(|f| f.recv.receive(n).err());
            if let Some(e) = over {
                return self.fault(
                    now,
                    link,
                    LinkFault::FlowControl,
                    format!("request {id}: {e}"),
                );
            }
        }
        // An error frame ends the request whatever else is in progress for
        // it (a receiver whose upstream failed mid-body sends one unchunked).
        if frame.kind == MessageKind::Error {
            let message = frame
                .body
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return self.fail(
                &id,
                Failure::new(
                    FailureKind::Upstream,
                    502,
                    format!("Receiver error: {message}"),
                ),
            );
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let held_before = l.reassembler.held_bytes();
        let pushed = l.reassembler.push(now, frame);
        self.buffered = self.buffered + l.reassembler.held_bytes() - held_before;
        let assembled = match pushed {
            Ok(a) => a,
            Err(ChunkError::TooLarge { size, max, .. }) => {
                // A limit, not a fault of the receiver: the link stays.
                self.send_cancel(&id, "response over the limit");
                let limit = if self.config.reassembly.max_message_size == max {
                    "max_response_bytes"
                } else {
                    "max_buffered_response_bytes"
                };
                return self.fail(
                    &id,
                    Failure::new(
                        FailureKind::ResponseTooLarge,
                        502,
                        format!(
                            "Response body of {size} bytes is over the gateway's {limit} ({max})"
                        ),
                    ),
                );
            }
            Err(e) => {
                self.count_fault(LinkFault::InvalidResponse);
                self.send_cancel(&id, "invalid response");
                return self.fail(
                    &id,
                    Failure::new(
                        FailureKind::InvalidResponse,
                        502,
                        format!("Invalid response from receiver: {e}"),
                    ),
                );
            }
        };
        let incoming = assembled.body.iter().map(|b| b.len() as u64).sum();
        if !self.within_budget(now, link, incoming) {
            if self.links.contains_key(&link) {
                // A flow-controlled receiver kept to its windows: only
                // this response, not the connection, pays for the room
                // slow clients took.
                self.cut_for_buffers(&id);
            }
            return;
        }
        match assembled.head {
            Some(Head::Response(mut head)) => {
                let marks = self
                    .links
                    .get(&link)
                    .is_some_and(|l| l.features.contains(Feature::UpstreamFailure));
                if !marks {
                    // Only a receiver that negotiated the extension marks
                    // its own 502s; from any other peer the header is a
                    // service's, and means nothing.
                    head.headers.remove(upstream_failure::HEADER);
                }
                let Some(p) = self.pending.get_mut(&id) else {
                    return;
                };
                let asked = Asked {
                    head: p.head_method,
                    upgrade: p.upgrade,
                };
                match check_head(&mut head, asked, &self.config.response) {
                    Ok(rule) => p.body = Some(BodyCheck::new(rule)),
                    Err(e) => return self.invalid_response(&id, &e.to_string()),
                }
                p.head_sent = true;
                p.tunnel = passthrough::is_switch(&head);
                p.deadline = p.deadline_after(now, &self.config);
                if p.deadline < p.armed {
                    // An idle timeout shorter than the request timeout: the
                    // timer must come due sooner.
                    self.timers.disarm(p.armed, Timer::Request(id.clone()));
                    p.armed = p.deadline;
                    self.timers.arm(p.deadline, Timer::Request(id.clone()));
                }
                if p.tunnel {
                    self.totals.websockets += 1;
                }
                self.emit(&id, ResponseEvent::Head(head));
            }
            // Error frames were handled above; request heads cannot reach
            // here (request frames from a receiver close the link).
            Some(Head::Error | Head::Request(_)) | None => {}
        }
        for piece in assembled.body {
            let check = self
                .pending
                .get_mut(&id)
                .and_then(|p| p.body.as_mut())
                .map(|b| b.piece(piece.len()));
            match check {
                Some(Err(e)) => return self.invalid_response(&id, &e.to_string()),
                // A body on a response that has none is dropped, and
                // counts as read so a flow-controlled receiver is not
                // left waiting for credit.
                Some(Ok(false)) => self.body_read(now, &id, piece.len()),
                Some(Ok(true)) | None => self.emit(&id, ResponseEvent::Body(piece)),
            }
        }
        if assembled.end {
            let short = self
                .pending
                .get(&id)
                .and_then(|p| p.body.as_ref())
                .and_then(|b| b.end().err());
            if let Some(e) = short {
                return self.invalid_response(&id, &e.to_string());
            }
            let uploading = self.pending.get(&id).is_some_and(|p| {
                p.upload.is_some() || p.flow.as_ref().is_some_and(|f| f.send.queued() > 0)
            });
            if uploading {
                // The answer is complete before the upload: the receiver
                // stops waiting for the rest of it.
                self.send_cancel(&id, "response complete before the request body");
            }
            self.emit(&id, ResponseEvent::End);
            self.totals.completed += 1;
            self.finish(&id);
        } else if let Some(p) = self.pending.get_mut(&id) {
            p.deadline = p.deadline_after(now, &self.config);
        }
    }

    /// Routes a public request and sends its head (and body, when given)
    /// to the chosen receiver. `host` is the request's Host, port allowed.
    ///
    /// The path is normalized first ([`normalize_path`]) and the normalized
    /// path is both what is routed and what the receiver gets; a path that
    /// does not normalize is refused with 400.
    ///
    /// A WebSocket upgrade ([`passthrough::is_upgrade`]: the shell kept
    /// its `connection` and `upgrade` headers with
    /// [`passthrough::mark_upgrade`]) goes only to a receiver whose link
    /// [`carries`](passthrough::carries) WebSockets, else it is refused
    /// ([`Reject::NoWebSocket`], 501); its body must be
    /// [`RequestBody::Streaming`], the client's bytes after a `101`.
    pub fn start_request(
        &mut self,
        now: Instant,
        host: &str,
        head: RequestHead,
        body: RequestBody,
    ) -> Result<RequestId, Reject> {
        self.start_request_from(now, None, host, head, body)
    }

    /// [`start_request`](Self::start_request) for a request from the
    /// client address `client`: it is also held to that address's share
    /// of the route's in-flight cap ([`GatewayConfig::client_share`];
    /// an IPv6 address counts by its /64). Over it the request is refused
    /// ([`Reject::ClientShare`], 429) and counted. `None` counts under no
    /// address.
    pub fn start_request_from(
        &mut self,
        now: Instant,
        client: Option<IpAddr>,
        host: &str,
        head: RequestHead,
        body: RequestBody,
    ) -> Result<RequestId, Reject> {
        self.start_request_on(now, client, None, host, head, body)
    }

    /// [`start_request_from`](Self::start_request_from) for a request
    /// that came in on the shell's `lane`: among the route's receiver
    /// connections it prefers one served on the same lane, unless that
    /// one holds [`LANE_SLACK`](crate::lane::LANE_SLACK) more requests
    /// than the least loaded elsewhere. `None`: no preference.
    pub fn start_request_on(
        &mut self,
        now: Instant,
        client: Option<IpAddr>,
        lane: Option<Lane>,
        host: &str,
        mut head: RequestHead,
        body: RequestBody,
    ) -> Result<RequestId, Reject> {
        self.tick(now);
        match normalize_path(&head.path) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => head.path = normal,
            Err(error) => {
                self.totals.bad_request += 1;
                return Err(Reject::BadPath { error });
            }
        }
        let upgrade = passthrough::is_upgrade(&head);
        let head_method = head.method.eq_ignore_ascii_case("HEAD");
        let client = client.map(crate::edge::ip_key);
        let (link, route) = self.choose_link(host, &head.path, upgrade, client, lane)?;
        let client = client.map(|ip| (route.clone(), ip));
        let features = self
            .links
            .get(&link)
            .map_or(Features::empty(), |l| l.features);
        let id = RequestId::uuid_v4(self.rng.u128(..).to_le_bytes());
        let mut frames = Vec::new();
        let mut upload = None;
        let encoded = match body {
            RequestBody::Empty | RequestBody::Full(_) => {
                let body = match body {
                    RequestBody::Full(b) => b,
                    _ => Bytes::new(),
                };
                let msg = Message {
                    request_id: id.clone(),
                    head: Head::Request(head),
                    body,
                };
                self.chunker.frames(&msg).map(|f| frames = f)
            }
            RequestBody::Streaming | RequestBody::Sized(_) => {
                let chunk_size = self.config.chunk_size;
                let mut stream = match body {
                    // A peer that reassembles whole messages gains nothing
                    // from pieces sent early; the reference's own layout
                    // (full chunks, `chunk_tot`) is the one it knows best.
                    RequestBody::Sized(len) if !features.contains(Feature::Streaming) => {
                        ChunkStream::sized(MessageKind::Request, id.clone(), chunk_size, len)
                    }
                    _ => ChunkStream::new(MessageKind::Request, id.clone(), chunk_size),
                };
                let json = head.to_meta_json();
                let r = stream.write(Some((tag::HTTP_META, &json)), &[], false, &mut frames);
                upload = Some(stream);
                r
            }
        };
        if let Err(e) = encoded {
            // A head too large for one frame; the shell answers it like a 502.
            self.totals.bad_gateway += 1;
            let failure = Failure::new(
                FailureKind::Unencodable,
                502,
                format!("Request could not be encoded: {e}"),
            );
            self.out.push_back(Output::Response {
                request: id.clone(),
                event: ResponseEvent::Failed(failure),
            });
            return Ok(id);
        }
        let deadline = now + self.config.request_timeout;
        self.pending.insert(
            id.clone(),
            Pending {
                link,
                head_sent: false,
                deadline,
                upload_until: now + self.config.upload_timeout,
                armed: deadline,
                upload,
                flow: features.contains(Feature::FlowControl).then(Flow::new),
                cancel: features.contains(Feature::Cancel),
                upgrade,
                head_method,
                body: None,
                tunnel: false,
                client: client.clone(),
                route,
                writable_out: false,
                room_wait: false,
            },
        );
        if let Some(key) = client {
            *self.client_load.entry(key).or_default() += 1;
        }
        self.send_frames(&id, frames);
        if let Some(l) = self.links.get_mut(&link) {
            l.requests.insert(id.clone());
        }
        self.timers.arm(deadline, Timer::Request(id.clone()));
        self.totals.started += 1;
        Ok(id)
    }

    fn choose_link(
        &mut self,
        host: &str,
        path: &str,
        upgrade: bool,
        client: Option<IpAddr>,
        lane: Option<Lane>,
    ) -> Result<(LinkId, ServiceUrl), Reject> {
        let Some(route) = self.routes.lookup(host, path) else {
            self.totals.not_found += 1;
            return Err(Reject::NoRoute {
                path: path.to_owned(),
            });
        };
        // At 100 % the route's own cap is the only limit (503 past it).
        let client = client.filter(|_| self.config.max_inflight_percent_per_client < 100);
        if let Some(ip) = client {
            let share = self.config.client_share(route.links.len());
            let held = self
                .client_load
                .get(&(route.url.clone(), ip))
                .copied()
                .unwrap_or(0);
            // A share that is the whole route leaves it to the cap (503).
            let cap = route
                .links
                .len()
                .saturating_mul(self.config.max_inflight_per_link);
            if held >= share && share < cap {
                self.totals.client_share_refused += 1;
                return Err(Reject::ClientShare {
                    route: route.url.to_string(),
                    share,
                });
            }
        }
        let cap = self.config.max_inflight_per_link;
        let links = &self.links;
        let able = |id: &&LinkId| {
            !upgrade
                || links
                    .get(id)
                    .is_some_and(|l| passthrough::carries(l.features))
        };
        if upgrade && !route.links.iter().any(|id| able(&id)) {
            self.totals.websockets_refused += 1;
            return Err(Reject::NoWebSocket {
                route: route.url.to_string(),
            });
        }
        // A flow-controlled connection takes a request only while a window
        // of its response would still fit in the bytes actually held (on
        // the connection, within the larger of its budget and a window for
        // each request it may have in flight, and in the gateway's total):
        // past that, the response would only be cut. Windows granted and
        // not used are not counted, so requests a receiver holds without
        // answering keep nobody else's out.
        let budget = self.config.buffers;
        let link_room = budget
            .per_link
            .max(INITIAL_WINDOW.saturating_mul(cap as u64));
        let total_room = budget.total.saturating_sub(self.charged()) >= INITIAL_WINDOW;
        let fits = |l: &Link| {
            !l.flow_controlled() || (total_room && l.charge() + INITIAL_WINDOW <= link_room)
        };
        // A draining receiver takes no new request: another of the route
        // does, or the request is refused.
        let open = |l: &&Link| !l.draining;
        let with_room = || {
            route
                .links
                .iter()
                .filter(able)
                .filter_map(|id| links.get(id).map(|l| (*id, l)))
                .filter(|(_, l)| open(l) && l.requests.len() < cap)
        };
        let best = with_room()
            .filter(|(_, l)| fits(l))
            .min_by_key(|(id, l)| (rank(l.requests.len(), l.lane, lane), *id))
            .map(|(id, _)| id);
        // A receiver under its cap was passed over only for the budget.
        let short_of_buffers = best.is_none() && with_room().next().is_some();
        let all_draining = || {
            route
                .links
                .iter()
                .filter(able)
                .filter_map(|id| links.get(id))
                .all(|l| l.draining)
        };
        match best {
            Some(link) => Ok((link, route.url.clone())),
            None => {
                self.totals.unavailable += 1;
                let route = route.url.to_string();
                Err(if all_draining() {
                    Reject::Draining { route }
                } else if short_of_buffers {
                    Reject::BuffersFull { route }
                } else {
                    Reject::AtCapacity { route }
                })
            }
        }
    }

    /// A request left the in-flight set: its client's share is free again.
    fn release_client(&mut self, p: &Pending) {
        let Some(key) = &p.client else {
            return;
        };
        if let Some(n) = self.client_load.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.client_load.remove(key);
            }
        }
    }

    /// Sends more of a streaming request body; `last` ends it.
    pub fn push_body(
        &mut self,
        now: Instant,
        request: &RequestId,
        data: Bytes,
        last: bool,
    ) -> Result<(), RequestGone> {
        self.tick(now);
        let gone = || RequestGone(request.clone());
        if !self.pending.contains_key(request) {
            return self
                .forwarded_upload(now, request, data, last)
                .ok_or_else(gone);
        }
        let p = self.pending.get_mut(request).ok_or_else(gone)?;
        let stream = p.upload.as_mut().ok_or_else(gone)?;
        let mut frames = Vec::new();
        let written = stream.write(None, &data, last, &mut frames);
        if stream.is_finished() {
            p.upload = None;
        }
        if p.tunnel {
            // On a WebSocket, the client's bytes are half of its traffic.
            p.deadline = p.deadline_after(now, &self.config);
        } else if !p.head_sent {
            // Upload progress counts as activity on the request, up to
            // the upload timeout: trickled bytes cannot hold it longer.
            // Never earlier than it was, so the armed timer stays valid.
            p.deadline = p
                .deadline_after(now, &self.config)
                .min(p.upload_until)
                .max(p.deadline);
        }
        if let Err(e) = written {
            self.send_cancel(request, "request body could not be encoded");
            self.fail(
                request,
                Failure::new(
                    FailureKind::Unencodable,
                    502,
                    format!("Request body could not be encoded: {e}"),
                ),
            );
            return Err(gone());
        }
        self.send_frames(request, frames);
        if let Some(flow) = self.pending.get_mut(request).and_then(|p| p.flow.as_mut()) {
            flow.send.note_write();
        }
        Ok(())
    }

    /// Transmits the frames of `request`'s message, or queues them until
    /// the receiver's credit covers them.
    fn send_frames(&mut self, request: &RequestId, frames: Vec<Bytes>) {
        let Some(p) = self.pending.get_mut(request) else {
            return;
        };
        let link = p.link;
        match p.flow.as_mut() {
            Some(flow) => {
                for frame in frames {
                    flow.send.push(frame);
                }
                while let Some(frame) = flow.send.pop_ready() {
                    self.out.push_back(Output::Transmit {
                        link,
                        message: WsMessage::Binary(frame),
                    });
                }
                if flow.send.take_writable() {
                    // Credit came, but the connection's queue is full: the
                    // upload goes on once it has room, not before.
                    if self.links.get(&link).is_some_and(|l| l.backlogged) {
                        p.room_wait = true;
                    } else {
                        p.writable_out = true;
                        self.out.push_back(Output::Writable {
                            request: request.clone(),
                        });
                    }
                }
            }
            None => {
                for frame in frames {
                    self.out.push_back(Output::Transmit {
                        link,
                        message: WsMessage::Binary(frame),
                    });
                }
            }
        }
    }

    /// Body bytes of `request`'s upload the gateway holds until the
    /// receiver grants credit for them (`flow-control`); 0 without it.
    /// `None` once the request is no longer in flight. A shell feeding a
    /// body reads more from the client only while this is 0, which bounds
    /// the memory an upload takes; when a [`push_body`](Self::push_body)
    /// leaves it above 0, [`Output::Writable`] says when it is 0 again.
    pub fn upload_queued(&self, request: &RequestId) -> Option<u64> {
        let Some(p) = self.pending.get(request) else {
            return self.forwarded_upload_queued(request);
        };
        Some(p.flow.as_ref().map_or(0, |f| f.send.queued()))
    }

    /// Whether the shell must stop reading `request`'s upload for now;
    /// asked after a [`push_body`](Self::push_body), once the transmits it
    /// made were taken from [`poll_output`](Self::poll_output). It waits
    /// while the receiver's credit does not cover what was pushed
    /// (`flow-control`) or while the receiver connection's write queue is
    /// full ([`link_backlog`](Self::link_backlog)). After `Some(true)`,
    /// [`Output::Writable`] names the request once it may go on; `None`
    /// once the request is no longer in flight.
    ///
    /// This is the one place an upload waits: a shell keeps no list of
    /// its own of uploads waiting for a connection's room.
    pub fn upload_waits(&mut self, request: &RequestId) -> Option<bool> {
        let Some(p) = self.pending.get_mut(request) else {
            return self.forwarded_upload_queued(request).map(|q| q > 0);
        };
        if p.flow.as_ref().is_some_and(|f| f.send.queued() > 0) {
            // The credit's `Output::Writable` says when: `send_frames`.
            return Some(true);
        }
        if self.links.get(&p.link).is_some_and(|l| l.backlogged) {
            p.room_wait = true;
            return Some(true);
        }
        Some(false)
    }

    /// The shell handed `n` bytes of `request`'s response body to the
    /// public client. With `flow-control`, this is what reopens the
    /// receiver's window for that response; without it, nothing happens.
    pub fn body_read(&mut self, now: Instant, request: &RequestId, n: usize) {
        self.tick(now);
        if self.forwarded_read(request, n) {
            return;
        }
        self.release_unread(request, n as u64);
        let Some(p) = self.pending.get_mut(request) else {
            return;
        };
        let link = p.link;
        if let Some(increment) = p.flow.as_mut().and_then(|f| f.recv.consumed(n as u64)) {
            let frame = ExtFrame::WindowUpdate {
                request_id: request.clone(),
                increment,
            };
            self.out.push_back(Output::Transmit {
                link,
                message: WsMessage::Binary(frame.encode()),
            });
        }
    }

    /// Tells the receiver serving `request` to abandon it, when the link
    /// negotiated `cancel`; the request itself is forgotten by the caller.
    fn send_cancel(&mut self, request: &RequestId, reason: &str) {
        let Some(p) = self.pending.get(request) else {
            return;
        };
        if !p.cancel || !self.links.contains_key(&p.link) {
            return;
        }
        let frame = ExtFrame::Cancel {
            request_id: request.clone(),
            reason: reason.to_owned(),
        };
        self.totals.cancels_sent += 1;
        self.out.push_back(Output::Transmit {
            link: p.link,
            message: WsMessage::Binary(frame.encode()),
        });
    }

    fn handle_ext_frame(&mut self, now: Instant, link: LinkId, bytes: Bytes) {
        let features = self
            .links
            .get(&link)
            .map_or(Features::empty(), |l| l.features);
        let frame = match ExtFrame::decode(bytes, &self.config.frame_limits) {
            Ok(f) => f,
            Err(e) => return self.fault(now, link, LinkFault::BadFrame, format!("bad frame: {e}")),
        };
        let (id, increment) = match frame {
            ExtFrame::WindowUpdate {
                request_id,
                increment,
            } if features.contains(Feature::FlowControl) => (request_id, increment),
            ExtFrame::WindowUpdate { .. } => {
                return self.fault(
                    now,
                    link,
                    LinkFault::BadFrame,
                    "a window update without flow-control negotiated".into(),
                )
            }
            ExtFrame::Cancel { .. } => {
                return self.fault(
                    now,
                    link,
                    LinkFault::BadFrame,
                    "a cancel frame, which only gateways send".into(),
                )
            }
        };
        match self.pending.get_mut(&id) {
            Some(p) if p.link == link => {
                let Some(flow) = p.flow.as_mut() else {
                    return;
                };
                if let Err(e) = flow.send.grant(increment) {
                    return self.fault(
                        now,
                        link,
                        LinkFault::FlowControl,
                        format!("request {id}: {e}"),
                    );
                }
                self.send_frames(&id, Vec::new());
            }
            Some(_) => {
                self.totals.stray_frames += 1;
                self.fault(
                    now,
                    link,
                    LinkFault::ForeignRequest,
                    format!("window update for request {id}, which another connection serves"),
                )
            }
            // A request that ended meanwhile; updates for it are chatter.
            None => {
                self.totals.stray_frames += 1;
                self.chatter_allowed(now, link, "window updates for requests not in flight");
            }
        }
    }

    /// The public client went away: forget the request, and tell the
    /// receiver when the link negotiated `cancel`. A late response is
    /// dropped when it comes.
    pub fn cancel(&mut self, now: Instant, request: &RequestId) {
        self.tick(now);
        if self.forwarded_cancel(request) {
            return;
        }
        // What the client never took goes with its connection.
        self.release_unread(request, u64::MAX);
        if self.pending.contains_key(request) {
            self.send_cancel(request, "the client went away");
            self.totals.cancelled += 1;
            self.finish(request);
        }
    }

    /// Drains the next instruction for the shell.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            // What a served request's local request said since its
            // machine last ran goes to that machine first.
            if !self.served_dirty.is_empty() {
                self.pump_dirty_served();
            }
            let out = self.out.pop_front()?;
            match out {
                Output::Writable { request } if self.is_served(&request) => {
                    self.served_writable(&request);
                }
                out => return Some(out),
            }
        }
    }

    /// Keeps the latest time an input brought.
    fn tick(&mut self, now: Instant) {
        self.clock = Some(self.clock.map_or(now, |c| c.max(now)));
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs what is due at `now`: request deadlines (504), pings, and the
    /// removal of silent receivers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Request(id) => {
                    let Some(p) = self.pending.get_mut(&id) else {
                        continue;
                    };
                    if p.deadline > now {
                        let at = p.deadline;
                        p.armed = at;
                        self.timers.arm(at, Timer::Request(id));
                    } else if p.tunnel {
                        self.send_cancel(&id, "websocket idle");
                        self.fail(
                            &id,
                            Failure::new(
                                FailureKind::WebSocketIdle,
                                504,
                                "WebSocket idle past its timeout",
                            ),
                        );
                    } else if p.head_sent {
                        self.send_cancel(&id, "response body idle");
                        let secs = self.config.body_idle_timeout.as_secs_f64();
                        self.fail(
                            &id,
                            Failure::new(
                                FailureKind::BodyIdle,
                                504,
                                format!("Response body idle for {secs} s (body_idle_timeout_secs)"),
                            ),
                        );
                    } else if let Some(why) = p.upload_late(now, &self.config) {
                        // The client, not the receiver, is late: RFC 9110
                        // §15.5.9 (408), and the shell closes its connection.
                        self.send_cancel(&id, "request body timed out");
                        self.fail(&id, why);
                    } else {
                        self.send_cancel(&id, "timed out");
                        self.fail(
                            &id,
                            Failure::new(
                                FailureKind::HeadTimeout,
                                504,
                                "Receiver did not respond in time",
                            ),
                        );
                    }
                }
                Timer::Ping(link) => {
                    if self.links.contains_key(&link) {
                        self.out.push_back(Output::Transmit {
                            link,
                            message: WsMessage::Ping(Bytes::new()),
                        });
                        self.timers
                            .arm(now + self.config.ping_interval, Timer::Ping(link));
                    }
                }
                Timer::Announce => self.cluster_round(now),
                Timer::Forwarded(id) => self.forwarded_timeout(now, &id),
                Timer::Served(id) => self.served_timeout(now, &id),
                Timer::Liveness(link) => {
                    let Some(l) = self.links.get(&link) else {
                        continue;
                    };
                    let deadline = l.last_seen + self.config.liveness_timeout();
                    if deadline > now {
                        self.timers.arm(deadline, Timer::Liveness(link));
                    } else {
                        self.totals.links_silent += 1;
                        self.out.push_back(Output::Close {
                            link,
                            code: CLOSE_GOING_AWAY,
                            reason: "receiver silent past its liveness deadline".into(),
                            fault: None,
                        });
                        self.drop_link(now, link, "receiver went silent");
                    }
                }
            }
        }
    }

    /// Joins a cluster as `config.node`: from now on the machine keeps the
    /// other gateways' routes ([`handle_announcement`]), chooses where
    /// each public request goes ([`cluster_choice`]), and at every
    /// announce interval asks its shell, with [`Output::Cluster`], to
    /// announce this gateway's routes and to join the subjects of the
    /// routes its receivers serve. The first round is due at `now`.
    ///
    /// [`handle_announcement`]: Self::handle_announcement
    /// [`cluster_choice`]: Self::cluster_choice
    pub fn join_cluster(&mut self, now: Instant, config: MembershipConfig) {
        self.leave_cluster(now);
        self.membership = Some(Membership::new(now, config));
        self.timers.arm(now, Timer::Announce);
    }

    /// Leaves the cluster: an empty announcement (the others stop
    /// forwarding here at once) and the service subjects to leave come out
    /// as [`Output::Cluster`]. Requests already forwarded here go on.
    /// What the machine knew of the cluster stays for those requests
    /// ([`route_book`](Self::route_book)); no new one goes elsewhere.
    pub fn leave_cluster(&mut self, _now: Instant) {
        let Some(m) = &mut self.membership else {
            return;
        };
        if let Some(at) = m.poll_timeout() {
            self.timers.disarm(at, Timer::Announce);
        }
        self.out.extend(m.leave().into_iter().map(Output::Cluster));
    }

    /// Another gateway's announcement, heard on the routes subject. Ignored
    /// outside a cluster.
    pub fn handle_announcement(&mut self, now: Instant, announcement: Announcement) {
        if let Some(m) = &mut self.membership {
            m.handle_announcement(now, announcement);
        }
    }

    /// Where a public request for `host` goes first: here, or (in a
    /// cluster) another gateway that serves it more specifically; see
    /// [`RouteBook::choose`]. Outside a cluster, always here with no
    /// fallback.
    pub fn cluster_choice(&self, host: &str, head: &RequestHead) -> Choice {
        self.membership
            .as_ref()
            .map_or(Choice::Local { fallback: false }, |m| m.choose(host, head))
    }

    /// What this gateway knows of the cluster's routes, once it joined a
    /// cluster (frozen after it left).
    pub fn route_book(&self) -> Option<&RouteBook> {
        self.membership.as_ref().map(Membership::book)
    }

    fn cluster_round(&mut self, now: Instant) {
        let Some(m) = &mut self.membership else {
            return;
        };
        let local: Vec<ServiceUrl> = self.routes.routes().map(|(url, _)| url.clone()).collect();
        let out = m.round(now, local);
        if let Some(at) = m.poll_timeout() {
            self.timers.arm(at, Timer::Announce);
        }
        self.out.extend(out.into_iter().map(Output::Cluster));
    }

    /// The receiver connection serving `request`, while it is in flight.
    pub fn request_link(&self, request: &RequestId) -> Option<LinkId> {
        self.pending.get(request).map(|p| p.link)
    }

    /// The granted service URL `request` was routed by, while it is in
    /// flight.
    pub fn request_route(&self, request: &RequestId) -> Option<&ServiceUrl> {
        self.pending.get(request).map(|p| &p.route)
    }

    /// The identity of `link`.
    pub fn link_identity(&self, link: LinkId) -> Option<&Identity> {
        self.links.get(&link).map(|l| &l.identity)
    }

    /// Requests in flight: on this gateway's receivers, forwarded to other
    /// gateways, and served for other gateways (counted once, also after
    /// the local request ended while its answers still go out). `/stats`
    /// and `/metrics` read this figure ([`GatewayStats::in_flight`]).
    pub fn in_flight(&self) -> usize {
        let served_past_local = self
            .served
            .keys()
            .filter(|id| !self.pending.contains_key(*id))
            .count();
        self.pending.len() + self.forwarded.len() + served_past_local
    }

    /// Receiver connections.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Records the shell's lane `link` is served on, which requests that
    /// say their lane prefer ([`start_request_on`](Self::start_request_on)).
    pub fn set_link_lane(&mut self, link: LinkId, lane: Lane) {
        if let Some(l) = self.links.get_mut(&link) {
            l.lane = Some(lane);
        }
    }

    /// Whether `link`'s receiver said it is draining (`drain`): no new
    /// request goes to it. `None` for an unknown link.
    pub fn link_draining(&self, link: LinkId) -> Option<bool> {
        self.links.get(&link).map(|l| l.draining)
    }

    /// The negotiated extensions of `link`.
    pub fn link_features(&self, link: LinkId) -> Option<Features> {
        self.links.get(&link).map(|l| l.features)
    }

    /// A snapshot for `/stats` and `/metrics`.
    pub fn stats(&self, now: Instant) -> GatewayStats {
        let mut links: Vec<LinkStats> = self
            .links
            .iter()
            .map(|(id, l)| LinkStats {
                id: *id,
                identity: l.identity.clone(),
                address: l.peer,
                age: now.saturating_duration_since(l.admitted_at),
                in_flight: l.requests.len(),
                routes: self.routes.links_of(*id).map(ToString::to_string).collect(),
                features: stats::features_label(l.features),
            })
            .collect();
        links.sort_by_key(|l| l.id);
        let mut routes: Vec<(String, usize)> = self
            .routes
            .routes()
            .map(|(url, links)| (url.to_string(), links.len()))
            .collect();
        routes.sort();
        let mut route_in_flight: BTreeMap<String, usize> = self
            .routes
            .routes()
            .map(|(url, _)| (url.to_string(), 0))
            .collect();
        for p in self.pending.values() {
            *route_in_flight.entry(p.route.to_string()).or_default() += 1;
        }
        GatewayStats {
            links,
            routes,
            route_in_flight: route_in_flight.into_iter().collect(),
            in_flight: self.in_flight(),
            buffered_bytes: self.buffered,
            arriving_bytes: self.arriving,
            totals: self.totals.clone(),
            handshakes: self.admissions.stats(),
            endings: self.endings.clone(),
            edge_refused: self.edge_refusals.clone(),
            #[cfg(feature = "policy")]
            policy_answered: self.policy_answered(),
            #[cfg(not(feature = "policy"))]
            policy_answered: None,
            caller_auth: self.callers.clone(),
        }
    }

    /// Internal sizes, for leak checks: (links, requests, partial
    /// responses, routes, timers).
    pub fn table_sizes(&self) -> (usize, usize, usize, usize, usize) {
        let partials = self
            .links
            .values()
            .map(|l| l.reassembler.in_progress())
            .sum();
        (
            self.links.len(),
            self.pending.len(),
            partials,
            self.routes.len(),
            self.timers.len(),
        )
    }

    fn emit(&mut self, request: &RequestId, event: ResponseEvent) {
        if let ResponseEvent::Body(piece) = &event {
            let n = piece.len() as u64;
            if let Some(link) = self.pending.get(request).map(|p| p.link) {
                if let Some(l) = self.links.get_mut(&link) {
                    l.unread += n;
                }
                self.unread
                    .entry(request.clone())
                    .or_insert(Unread { link, bytes: 0 })
                    .bytes += n;
                self.buffered += n;
            }
        }
        if self.is_served(request) {
            self.hold_served(request, event);
            return;
        }
        self.out.push_back(Output::Response {
            request: request.clone(),
            event,
        });
    }

    fn fail(&mut self, request: &RequestId, failure: Failure) {
        if !self.pending.contains_key(request) {
            return;
        }
        match (failure.kind, failure.status) {
            (FailureKind::BuffersFull, _) => self.totals.buffers_cut += 1,
            (_, 504) => self.totals.timed_out += 1,
            (_, 408) => self.totals.upload_timed_out += 1,
            _ => self.totals.bad_gateway += 1,
        }
        self.emit(request, ResponseEvent::Failed(failure));
        self.finish(request);
    }

    /// Forgets a request everywhere it is recorded, except its unread
    /// body, which lasts until the client takes it or leaves.
    fn finish(&mut self, request: &RequestId) {
        if let Some(p) = self.pending.remove(request) {
            self.forget_writable(request, &p);
            self.release_client(&p);
            self.timers.disarm(p.armed, Timer::Request(request.clone()));
            if let Some(l) = self.links.get_mut(&p.link) {
                l.requests.remove(request);
                let before = l.reassembler.held_bytes();
                l.reassembler.discard(request);
                self.buffered -= before - l.reassembler.held_bytes();
            }
        }
    }

    /// A request that ended takes back an [`Output::Writable`] the shell
    /// has not polled yet: there is nothing left to write.
    fn forget_writable(&mut self, request: &RequestId, p: &Pending) {
        if p.writable_out {
            self.out
                .retain(|o| !matches!(o, Output::Writable { request: r } if r == request));
        }
    }

    /// `n` bytes of `request`'s response left the gateway (or will never
    /// be taken: `u64::MAX`).
    fn release_unread(&mut self, request: &RequestId, n: u64) {
        let Some(u) = self.unread.get_mut(request) else {
            return;
        };
        let n = n.min(u.bytes);
        u.bytes -= n;
        let link = u.link;
        if u.bytes == 0 {
            self.unread.remove(request);
        }
        // A closed connection's bytes count in the total until freed.
        self.buffered -= n;
        if let Some(l) = self.links.get_mut(&link) {
            l.unread -= n;
        }
    }

    /// Whether `link` may have `incoming` more response bytes passed on
    /// for it. Past its own budget it is closed. Past the gateway's, the
    /// connection without `flow-control` holding the most is closed:
    /// counting `incoming` for this one, it holds at least `incoming`, so
    /// the total fits again. A flow-controlled connection is never closed
    /// for the total (it sent only what its windows allowed; slow clients
    /// took the room): `false` with the connection still there, and the
    /// caller refuses the bytes instead.
    fn within_budget(&mut self, now: Instant, link: LinkId, incoming: u64) -> bool {
        let Some(l) = self.links.get(&link) else {
            return false;
        };
        let budget = self.config.buffers;
        let charge = l.charge() + incoming;
        let limit = self.link_limit(link).unwrap_or(budget.per_link);
        if charge > limit {
            self.fault(
                now,
                link,
                LinkFault::OverBudget,
                format!(
                    "over_budget: {charge} response bytes held for this connection, over \
                     gateway.max_buffered_per_receiver_bytes ({limit})"
                ),
            );
            return false;
        }
        if self.charged() + incoming <= budget.total {
            return true;
        }
        // Flow-controlled connections hold only what their windows allowed:
        // they are never the ones at fault.
        let largest = self
            .links
            .iter()
            .filter(|(_, l)| !l.flow_controlled())
            .map(|(id, l)| {
                let extra = if *id == link { incoming } else { 0 };
                (l.buffered() + l.arriving + extra, *id == link, *id)
            })
            .max();
        let flow = l.flow_controlled();
        // For a flow-controlled one's bytes, a connection holding nothing
        // is no culprit: closing it would free nothing.
        let largest = largest.filter(|&(held, ..)| !flow || held > 0);
        if flow && largest.is_none() {
            return false;
        }
        let victim = largest.map_or(link, |(_, _, id)| id);
        let total = self.charged() + incoming;
        let why = |held: u64| {
            format!(
                "over_budget: receivers' response bytes at {total}, over gateway.max_buffered_bytes \
                 ({}); this connection holds {held}",
                budget.total
            )
        };
        let held = largest.map_or(charge, |(held, ..)| held);
        self.fault(now, victim, LinkFault::OverBudget, why(held));
        if victim == link {
            return false;
        }
        if self.charged() + incoming <= budget.total {
            return true;
        }
        if flow {
            return false;
        }
        // Not reached while the total fitted before this frame; kept so the
        // budget holds whatever happened before.
        self.fault(now, link, LinkFault::OverBudget, why(charge));
        false
    }

    /// A flow-controlled response whose next bytes do not fit in the total
    /// is ended: 503 before its head, a cut body after. Its receiver keeps
    /// serving its other requests, and is told to stop this one.
    fn cut_for_buffers(&mut self, request: &RequestId) {
        self.send_cancel(request, "gateway buffers full");
        let total = self.config.buffers.total;
        self.fail(
            request,
            Failure::new(
                FailureKind::BuffersFull,
                503,
                format!(
                    "The gateway is holding as much as its buffers allow \
                     (gateway.max_buffered_bytes, {total})"
                ),
            ),
        );
    }

    /// Response bytes held because of `link` (bodies awaiting their heads,
    /// bodies not yet taken by their clients); `None` for a connection not
    /// admitted or gone.
    pub fn link_buffered(&self, link: LinkId) -> Option<u64> {
        self.links.get(&link).map(Link::buffered)
    }

    /// Response bytes held because of receivers: bodies awaiting their
    /// heads, and bodies not yet taken by their clients, including those
    /// of connections closed since (they are freed as those clients read
    /// them or leave). The `anpx_buffered_bytes` gauge.
    pub fn buffered(&self) -> u64 {
        self.buffered
    }

    /// What counts against [`BufferBudget::total`]: [`buffered`] and
    /// [`arriving`] together. Never past the total, except by messages
    /// still arriving from flow-controlled receivers, which may pass it by
    /// [`BufferBudget::arriving_slack`].
    ///
    /// [`buffered`]: Self::buffered
    /// [`arriving`]: Self::arriving
    pub fn charged(&self) -> u64 {
        self.buffered + self.arriving
    }

    /// Bytes of WebSocket messages still arriving from receivers, counted
    /// against the budgets (`anpx_buffer_arriving_bytes`).
    pub fn arriving(&self) -> u64 {
        self.arriving
    }

    /// The shell read `bytes` of a WebSocket message (or of several
    /// fragments of one) from `link` that are not yet a whole message: what
    /// the WebSocket library holds for it. Set back to 0 before the message
    /// is handed over with [`handle_message`](Self::handle_message), which
    /// also ends it.
    /// Charged like a held body: past the connection's budget it is closed,
    /// past the gateway's the connection without `flow-control` holding the
    /// most is (`over_budget` either way). A flow-controlled receiver's
    /// message is a response within its windows, which is cut, not its
    /// connection, if it does not fit when whole; meanwhile it may take the
    /// total past by [`BufferBudget::arriving_slack`], and past that its
    /// connection is closed too.
    pub fn message_arriving(&mut self, now: Instant, link: LinkId, bytes: u64) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let before = l.arriving;
        if bytes > before && !self.within_budget(now, link, bytes - before) {
            let budget = self.config.buffers;
            if !self.links.contains_key(&link) {
                return;
            }
            let total = self.charged() + bytes - before;
            if total > budget.total + budget.arriving_slack() {
                self.fault(
                    now,
                    link,
                    LinkFault::OverBudget,
                    format!(
                        "over_budget: receivers' response bytes at {total}, over \
                         gateway.max_buffered_bytes ({}) and what messages still \
                         arriving may add ({})",
                        budget.total,
                        budget.arriving_slack()
                    ),
                );
                return;
            }
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.arriving = bytes;
            self.arriving = self.arriving - before + bytes;
        }
    }

    /// What counts against `link`'s budget: what it holds and what
    /// messages still arriving on it hold. A flow-controlled connection's
    /// limit is [`link_limit`](Self::link_limit).
    pub fn link_charged(&self, link: LinkId) -> Option<u64> {
        self.links.get(&link).map(Link::charge)
    }

    /// The most `link` may have charged: its budget, or for a
    /// flow-controlled connection the larger of that and a window for
    /// each request it may have in flight.
    pub fn link_limit(&self, link: LinkId) -> Option<u64> {
        let l = self.links.get(&link)?;
        let per_link = self.config.buffers.per_link;
        Some(if l.flow_controlled() {
            per_link.max(INITIAL_WINDOW.saturating_mul(self.config.max_inflight_per_link as u64))
        } else {
            per_link
        })
    }

    /// The receiver's response broke the rules a client's connection
    /// depends on: the request fails with 502 (or, after its head, the
    /// client's connection is cut), and the receiver stops serving it.
    fn invalid_response(&mut self, request: &RequestId, why: &str) {
        self.count_fault(LinkFault::InvalidResponse);
        self.send_cancel(request, "invalid response");
        self.fail(
            request,
            Failure::new(
                FailureKind::InvalidResponse,
                502,
                format!("Invalid response from receiver: {why}"),
            ),
        );
    }

    fn count_fault(&mut self, fault: LinkFault) {
        *self
            .totals
            .receiver_faults
            .entry(fault.label())
            .or_default() += 1;
    }

    /// Counts `fault` and, when it is one that does, closes `link`.
    fn fault(&mut self, now: Instant, link: LinkId, fault: LinkFault, reason: String) {
        if !self.links.contains_key(&link) {
            return;
        }
        self.count_fault(fault);
        let Some(code) = fault.close_code() else {
            return;
        };
        self.totals.protocol_errors += 1;
        self.out.push_back(Output::Close {
            link,
            code,
            reason: reason.clone(),
            fault: Some(fault),
        });
        self.drop_link(now, link, &reason);
    }

    fn drop_link(&mut self, _now: Instant, link: LinkId, why: &str) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        // Bodies on their way to slow clients stay counted until freed.
        self.buffered -= l.reassembler.held_bytes();
        self.arriving -= l.arriving;
        self.routes.remove_link(link);
        let mut ids: Vec<RequestId> = l.requests.into_iter().collect();
        ids.sort();
        for id in ids {
            self.totals.bad_gateway += 1;
            self.emit(
                &id,
                ResponseEvent::Failed(Failure::new(
                    FailureKind::ReceiverLost,
                    502,
                    format!("{}: {why}", ending::LINK_LOST),
                )),
            );
            if let Some(p) = self.pending.remove(&id) {
                self.forget_writable(&id, &p);
                self.release_client(&p);
                self.timers.disarm(p.armed, Timer::Request(id));
            }
        }
    }
}
