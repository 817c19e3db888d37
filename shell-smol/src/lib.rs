//! anpx on smol + async-h1: the gateway and receiver runtimes around the
//! sans-IO `anpx-core` state machines, the same product as `shell-tokio`
//! on another runtime.
//!
//! Everything that is not about the runtime (the gateway machine, receiver
//! links, the connection loop, handshake and proxy rules, options) comes
//! from `shell-common`; this crate supplies sockets, the async-h1 server
//! and client, and smol's spawning and timers.
//!
//! TLS is futures-rustls; DID-WBA admission is the shared check from
//! `shell-common` with documents fetched by [`fetch`]; grants come from the
//! shared registry (static table or SQL database) through [`registry`];
//! cluster mode is the shared one, driven through `cluster`.
//!
//! The SQL registry and cluster mode do their I/O on tokio (reached through
//! async-compat) and are the cargo features `sql-registry` and `cluster`,
//! both on by default. Without them this crate has no tokio in its tree,
//! and [`INTEGRATIONS`] refuses a configuration that needs either.

mod bodiless;
#[cfg(feature = "cluster")]
pub mod cluster;
mod edge;
pub mod fetch;
pub mod gateway;
mod head_edit;
pub mod receiver;
pub mod registry;
mod response;
pub mod rt;
mod shared_io;
mod stall;
mod tcp;
pub mod upstream;

pub use rt::Smol;
pub use shell_common::{GatewayOptions, Status};

/// The optional integrations this build carries: its cargo features.
pub const INTEGRATIONS: shell_common::integrations::Integrations =
    shell_common::integrations::Integrations {
        sql_registry: cfg!(feature = "sql-registry"),
        cluster: cfg!(feature = "cluster"),
    };
