//! anpx on tokio + hyper: the gateway and receiver runtimes around the
//! sans-IO `anpx-core` state machines.
//!
//! The binary `anpx` is a thin command line over this library; tests and
//! programs that embed anpx start the same pieces in-process:
//! [`gateway::Gateway::bind`] and [`receiver::Receiver::spawn`].

pub mod body;
pub use shell_common::cluster;
pub mod fetch;
pub mod futures_io;
pub mod gateway;
pub mod receiver;
pub use shell_common::registry;
pub mod rt;
pub mod spin;
pub use shell_common::tls;
pub mod upstream;

pub use rt::Tokio;
