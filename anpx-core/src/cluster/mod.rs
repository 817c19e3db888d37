//! Several gateways acting as one service: the pure logic of the cluster
//! extension (see `docs/PROTOCOL.md`, "Cluster forwarding").
//!
//! Gateways share a NATS server. Each announces, about once a second, the
//! service URLs its own receivers serve ([`Announcement`] on
//! `Subjects::routes`); every gateway keeps what it hears in a
//! [`RouteBook`], which forgets a gateway that falls silent. A public
//! request that no local receiver can serve, but another gateway's can, is
//! carried over NATS to `Subjects::service` of the matched service URL,
//! where every gateway serving that URL listens in one queue group; the
//! answer streams back as [`WireMessage`]s, each side keeping at most a
//! credit window of body pieces (16 of at most 64 KiB) unacknowledged.
//!
//! Like the rest of the crate this module does no I/O and reads no clock:
//! the shell owns the NATS connection and passes `now` in. The life of a
//! forwarded request is two machines, one per side: [`Forwarding`] at the
//! gateway the client reached, [`Serving`] at the gateway whose receiver
//! answers; the bus carries their [`WireMessage`]s.

mod announce;
mod book;
mod forwarding;
mod membership;
mod serving;
#[cfg(feature = "subjects")]
mod subject;
mod window;
mod wire;

pub use announce::{check_node_name, Announcement, AnnouncementError, MAX_NODE_NAME, MAX_SERVICES};
pub use book::{Choice, Plan, RouteBook};
pub use forwarding::{Forwarding, Reply, To, Transmit, Upload, CHECK_EVERY, TIMEOUT_SLACK};
pub use membership::{ClusterOutput, Membership, MembershipConfig};
pub use serving::{Local, Serving, Stall};
#[cfg(feature = "subjects")]
pub use subject::{check_prefix, SubjectPrefixError, Subjects, DEFAULT_SUBJECT_PREFIX};

pub use window::DEFAULT_WINDOW;
pub use wire::{BodyMode, WireError, WireMessage};
