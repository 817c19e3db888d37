//! # anpx-core
//!
//! The sans-IO heart of anpx, a reverse tunnel that gives HTTP services on
//! private networks (AI agents behind NAT) a public address, wire-compatible
//! with the ANP Proxy reference implementation.
//!
//! This crate does no I/O: no sockets, no files, no async runtime, and it
//! never reads the clock. Callers hand it bytes and the current time, and
//! it hands back bytes to send, events and the next instant it wants to be
//! woken at. The runtime shells (`shell-tokio`, `shell-smol`) are thin loops
//! around it, and it can be embedded in any other transport the same way.
//!
//! Modules:
//! - [`frame`]: the ANPX v1 frame codec (24-byte header, TLV body, CRC-32s).
//! - [`message`]: typed request/response heads and their meta JSON.
//! - [`chunk`]: splitting messages into chunk frames and reassembling them.
//! - [`route`]: service URLs and the routing table.
//! - [`gateway`]: the gateway state machine (receiver connections, routing,
//!   requests in flight, timeouts).
//! - [`receiver`]: the receiver state machine (one per connection).
//! - [`edge`], [`forward`]: the limits and checks of the public edge, and
//!   the rules for forwarding a public request (path normalization, hop-by-hop
//!   headers).
//! - [`backoff`], [`features`], [`control`], [`ws`]: reconnect schedule,
//!   extension negotiation, JSON control messages, WebSocket message types.
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

pub mod auth;
pub mod backoff;
pub mod chunk;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod edge;
pub mod features;
pub mod flow;
pub mod forward;
pub mod frame;
pub mod gateway;
pub mod handshake;
pub mod message;
pub mod passthrough;
pub mod policy;
pub mod receiver;
pub mod registry;
pub mod route;
mod timer;
pub mod ws;

pub use message::{
    canonical_reason, Head, HeaderList, Message, RequestHead, RequestId, ResponseHead,
};
