//! # anpx-core
//!
//! The sans-IO heart of anpx, a reverse tunnel that gives HTTP services on
//! private networks (AI agents behind NAT) a public address, wire-compatible
//! with the ANP Proxy reference implementation.
//!
//! This crate does no I/O: no sockets, no files, no async runtime, and it
//! never reads the clock. Callers hand it bytes and the current time, and
//! it hands back bytes to send, events and the next instant it wants to be
//! woken at. The runtime shells (`shell-tokio`, `shell-smol`) are loops
//! around it, and it embeds in any other transport the same way
//! (`examples/embedded.rs`, `docs/EMBEDDING.md`).
//!
//! ## The machine
//!
//! Two state machines speak ANPX v1 to each other over one ordered,
//! message-oriented connection (a WebSocket in the shells; anything that
//! keeps [`WsMessage`]s whole and in order in an embedding):
//!
//! - [`Gateway`] (one per public gateway) owns every receiver connection it
//!   admitted (a [`LinkId`] each, with its [`Identity`], negotiated
//!   [`Features`] and granted [`ServiceUrl`]s), the routing table, and every
//!   public request in flight (a [`RequestId`] each): its deadlines, its
//!   upload and response credit windows, the checks on its response head
//!   and body, and the memory budgets receivers may make it hold. Public
//!   requests go in with [`Gateway::start_request`] and
//!   [`Gateway::push_body`]; responses come out as [`ResponseEvent`]s.
//! - [`Receiver`] (one per connection to a gateway) reassembles the
//!   requests the gateway sends into [`RequestEvent`]s for the local
//!   service, and turns the service's answers ([`Receiver::respond`],
//!   [`Receiver::respond_body`]) into frames.
//!
//! The gateway also decides on receivers' handshakes
//! ([`Gateway::begin_handshake`], [`Gateway::decide_handshake`],
//! [`Gateway::admit_handshake`], [`Gateway::end_handshake`], through the
//! [`handshake::Admissions`] it owns): header values and the peer's address
//! in, with `now`, an acceptance (grants, negotiated extensions) or a
//! refusal with its status out, holding the handshake slots until each
//! connection ends. With the `policy` feature it screens public requests
//! too (`Gateway::screen`: rate limits, blocklist, CORS).
//! [`handshake::DocumentFetches`] decides around DID document fetches.
//!
//! Around them, plain functions and values that every shell applies the
//! same way: the handshake rules ([`handshake`]: service URLs declared and
//! granted, [`handshake::negotiate_gateway`] for extensions), the public edge's
//! limits ([`edge`]), the forwarding rules ([`forward`]: path
//! normalization, hop-by-hop and `X-Forwarded-*` headers), the receiver's
//! reconnect schedule ([`backoff`]), and, behind features, DID-WBA
//! (`auth`), request policy (`policy`) and configuration files
//! (`config`).
//!
//! ## Run loop
//!
//! Both machines have the same shape, that of quinn-proto's `Connection`
//! or str0m's `Rtc`:
//!
//! - **Inputs** are method calls, each taking `now`: a message from the
//!   connection (`handle_message`), something from the application (a
//!   public request, a body piece, a response, a cancel), or
//!   `handle_timeout(now)` when the deadline came.
//! - **Outputs** are polled from one place, `poll_output`, until it
//!   returns `None`: a message to transmit ([`Output::Transmit`],
//!   [`ReceiverOutput::Transmit`]), an event for the application
//!   ([`Output::Response`], [`ReceiverOutput::Event`]), a body that may
//!   go on after waiting for credit ([`Output::Writable`],
//!   [`ReceiverOutput::Writable`]), or a close ([`Output::Close`],
//!   [`ReceiverOutput::Close`]).
//! - **Time**: `poll_timeout` is the next instant the machine wants
//!   `handle_timeout` called; nothing happens between calls.
//!
//! So a driver repeats: wait for a message, an application call or the
//! timeout; feed that one input with the current time; drain
//! `poll_output`, sending transmits and dispatching events (calls made
//! while draining are fine, the drain goes on); read `poll_timeout`; wait
//! again. Backpressure is the application's to apply from what the
//! machines report: after a body piece, [`Gateway::upload_waits`] says
//! whether an upload must wait (for the receiver's credit, or for room in
//! the connection's write queue the shell reports with
//! [`Gateway::link_backlog`]) and [`Receiver::unsent`] how much of a
//! response waits for the gateway's credit; while they say so, stop
//! reading that body until [`Output::Writable`] /
//! [`ReceiverOutput::Writable`] names it. [`Gateway::body_read`] / [`Receiver::request_body_read`]
//! return credit once a body was consumed.
//!
//! Here both machines are driven by hand in virtual time, their transmits
//! handed straight to each other:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use anpx_core::{
//!     Features, Gateway, GatewayConfig, Identity, Output, Receiver, ReceiverConfig,
//!     ReceiverOutput, RequestBody, RequestEvent, RequestHead, ResponseBody, ResponseEvent,
//!     ResponseHead,
//! };
//!
//! let mut now = Instant::now(); // virtual: only ever moved by hand
//! let mut gw = Gateway::new(GatewayConfig::default(), 1);
//! let mut rx = Receiver::new(ReceiverConfig::default(), Features::empty(), now);
//! let link = gw.admit(now, Identity::Anonymous, vec!["api.agent.com".parse().unwrap()], Features::empty());
//!
//! let id = gw
//!     .start_request(now, "api.agent.com", RequestHead::new("GET", "/hello"), RequestBody::Empty)
//!     .unwrap();
//! let mut status = None;
//! loop {
//!     // Drain the gateway: its transmits are the receiver's input.
//!     while let Some(out) = gw.poll_output() {
//!         match out {
//!             Output::Transmit { message, .. } => rx.handle_message(now, message),
//!             Output::Response { event: ResponseEvent::Head(h), .. } => status = Some(h.status),
//!             Output::Response { .. } | Output::Writable { .. } | Output::Close { .. } => {}
//!             Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. } => {} // only in a cluster
//!         }
//!     }
//!     // Drain the receiver: serve its requests, send its transmits back.
//!     let mut sent = false;
//!     while let Some(out) = rx.poll_output() {
//!         match out {
//!             ReceiverOutput::Transmit(m) => {
//!                 gw.handle_message(now, link, m);
//!                 sent = true;
//!             }
//!             ReceiverOutput::Event(RequestEvent::End { request }) => {
//!                 rx.respond(now, &request, ResponseHead::new(200), ResponseBody::Full("hi".into()))
//!                     .unwrap();
//!             }
//!             ReceiverOutput::Event(_)
//!             | ReceiverOutput::Writable { .. }
//!             | ReceiverOutput::Close { .. } => {}
//!         }
//!     }
//!     if !sent {
//!         // Quiet: jump to the next deadline, as a shell's timer would.
//!         match gw.poll_timeout() {
//!             Some(at) if status.is_none() => { now = at; gw.handle_timeout(now); }
//!             _ => break,
//!         }
//!     }
//! }
//! assert_eq!(status, Some(200));
//! assert_eq!(gw.in_flight(), 0, "request {id} ended");
//! ```
//!
//! ## Modules and features
//!
//! The machines, their inputs and outputs, and the types they speak in
//! (messages, service URLs, features, WebSocket messages, credit
//! constants) are re-exported here, at the root; the modules that hold
//! them are private, and so is what only the machines apply (the
//! handshake slots, the cluster's credit windows, timers). The public modules are the
//! parts an embedder or a shell calls on its own, each a small set of
//! rules or a value with one job:
//!
//! - [`frame`], [`chunk`]: the ANPX v1 frame codec (24-byte header, TLV
//!   body, CRC-32s), and splitting messages into chunk frames and
//!   reassembling them; for tools that read or write frames without a
//!   machine (a decoder, a fuzzer, a reference peer).
//! - [`handshake`]: what the connection handshake carries, and the
//!   gateway's admissions: slots, grants, extensions, refusals, DID
//!   document fetch decisions.
//! - [`edge`]: the public edge's limits ([`edge::EdgeLimits`], checked by
//!   the HTTP server in front of the machine), the limits on receivers'
//!   response heads ([`edge::ResponseLimits`], part of [`GatewayConfig`],
//!   and the checks the gateway applies with them, [`edge::response`],
//!   public for fuzzing and offline checks), and an HTTP/1 head reader for
//!   servers that do not check heads themselves ([`edge::head`],
//!   [`edge::chunk_ext`]).
//! - [`forward`], [`passthrough`], [`upstream_failure`]: what the HTTP
//!   side of each end does to a request or an answer as it crosses the
//!   tunnel: hop-by-hop and `X-Forwarded-*` headers, the routing host,
//!   WebSocket passthrough's headers, the receiver's own 502.
//! - [`backoff`]: the receiver's reconnect schedule.
//! - [`cluster`]: several gateways acting as one: the route book, the
//!   announcements and wire messages, and the two machines of a forwarded
//!   request ([`cluster::Forwarding`], [`cluster::Serving`]).
//! - [`registry`]: where receivers' grants come from (a trait to
//!   implement over your own store) and the rules for its entries.
//! - [`demo`]: the echo agent of `anpx demo`, a service for trying a
//!   tunnel without one of your own.
//!
//! With `default-features = false` the crate is the protocol alone and
//! depends on little more than `bytes`, `crc32fast`, `serde`/`serde_json`
//! and `httparse`. The default features add what the shells need:
//!
//! | feature    | adds                                                       |
//! |------------|------------------------------------------------------------|
//! | `auth`     | `auth`: DID-WBA keys, documents, signing, verifying, nonces |
//! | `policy`   | `policy`: rate limits, blocklist, CORS for public requests |
//! | `subjects` | `cluster::Subjects`: NATS subject names (SHA-256 of a URL) |
//! | `config`   | `config`: files, environment, flags; the static registry   |
//! | `cli`      | `cli`: the `anpx` command line (not default; clap)         |
//!
//! ## The codec alone
//!
//! ```
//! use anpx_core::frame::{Frame, FrameLimits};
//! use anpx_core::chunk::Chunker;
//! use anpx_core::{Head, Message, RequestHead, RequestId};
//!
//! let msg = Message {
//!     request_id: RequestId::from("550e8400-e29b-41d4-a716-446655440000"),
//!     head: Head::Request(RequestHead::new("GET", "/agents/travel").with_header("host", "api.agent.com")),
//!     body: Default::default(),
//! };
//! let frames = Chunker::default().frames(&msg).unwrap();
//! let frame = Frame::decode(frames[0].clone(), &FrameLimits::default()).unwrap();
//! assert_eq!(frame.request_id, msg.request_id);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "auth")]
pub mod auth;
pub mod backoff;
pub mod chunk;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
#[cfg(feature = "config")]
pub mod config;
mod control;
pub mod demo;
mod documents;
pub mod edge;
mod features;
mod flow;
pub mod forward;
pub mod frame;
mod gateway;
pub mod handshake;
mod id_map;
mod ip_text;
pub mod lane;
mod message;
pub mod passthrough;
#[cfg(feature = "policy")]
pub mod policy;
mod receiver;
pub mod registry;
mod route;
mod timer;
pub mod upstream_failure;
pub mod ws;

pub use features::{Feature, Features};
pub use flow::{FlowError, INITIAL_WINDOW, UPDATE_THRESHOLD};
/// Prometheus label escaping, shared by every `/metrics` writer.
pub use gateway::label_value;
pub use gateway::{
    BufferBudget, CallerAuthCounts, CallerProof, DurationHistogram, EdgeRefusals, Ending, Failure,
    FailureKind, Gateway, GatewayConfig, GatewayStats, Identity, LinkFault, LinkId, LinkStats,
    MessageBudget, Output, Regrant, Reject, RequestBody, RequestEnd, RequestEndings, RequestGone,
    ResponseEvent, RouteSeries, Totals, CLUSTER_ROUTE, DEFAULT_MAX_BUFFERED_PER_LINK,
    DEFAULT_MAX_BUFFERED_TOTAL, DEFAULT_MAX_INFLIGHT_PERCENT_PER_CLIENT, UNROUTED,
};
pub use ip_text::push_ip;
pub use message::{
    canonical_reason, Head, HeaderList, Message, RequestHead, RequestId, ResponseHead,
};
pub use receiver::{
    Receiver, ReceiverConfig, ReceiverOutput, ReceiverTotals, RelayMode, RelayPolicy, RelayStep,
    RequestEvent, RespondError, ResponseBody, ResponseRelay, DEFAULT_MAX_BUFFERED_RESPONSES,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_UNREAD_UPLOAD,
};
pub use route::{
    RouteMatch, RouteTable, ServiceUrl, ServiceUrlError, MAX_LEN as MAX_SERVICE_URL_LEN,
};
pub use ws::{
    WsMessage, CLOSE_AUTH_FAILED, CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
};
