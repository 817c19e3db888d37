//! What every anpx runtime shell shares, written once and free of any
//! async runtime: the task that owns the gateway state machine, one
//! receiver link's reader and writer, the gateway's own HTTP answers
//! (health, stats, metrics, the receiver handshake, proxy set-up), the
//! admin plane, the receiver's connection loop, and the options a gateway
//! or a receiver runs with. A program that embeds a gateway or a receiver
//! builds on this crate and a shell; the `anpx` command line
//! (configuration files, flags and the commands both binaries run) is the
//! `anpx-cli` crate, built on this one.
//!
//! A shell supplies only what is runtime-specific: sockets, TLS, its HTTP
//! server and client, spawning and a sleep.
//!
//! The exceptions are the `sql-registry` feature (the SQL backend of
//! `registry`) and the `cluster` feature (`cluster`): sqlx and async-nats
//! do their I/O on tokio, so those futures must be polled in a tokio
//! context (the smol shell gets one from async-compat). Without them there
//! is no tokio at all, and [`integrations`] refuses a configuration that
//! names a registry database or a NATS server.

pub mod accept;
pub mod admin;
pub mod admission;
pub mod body;
pub mod caller_auth;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod decode;
pub mod dialing;
pub mod did_credentials;
pub mod did_wba;
pub mod driver;
pub mod edge;
pub mod endings;
pub mod gateway;
pub mod header_text;
mod id_map;
pub mod integrations;
pub mod lanes;
pub mod link;
pub mod live;
pub mod options;
pub mod process_metrics;
pub mod receiver;
pub mod registry;
pub mod repoll;
pub mod request_bytes;
pub mod serving;
pub mod shell_io;
pub mod signal;
pub mod spin;
#[cfg(test)]
mod test_waker;
pub mod tls;
pub mod websocket;
pub mod ws;

pub use admission::{Admission, Admitted, OpenAdmission, Refusal};
pub use options::{Credentials, GatewayOptions, ReceiverOptions, Status};

/// Errors that can end a body or an upstream call early.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
