//! Counters and a snapshot for `/stats` and `/metrics`.

use std::time::Duration;

use serde::Serialize;

use crate::features::Features;

use super::{Identity, LinkId};

/// Totals since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requests started on a receiver.
    pub started: u64,
    /// Responses delivered completely.
    pub completed: u64,
    /// Requests refused: no route.
    pub not_found: u64,
    /// Requests refused: every receiver at capacity.
    pub unavailable: u64,
    /// Requests failed with 502 (receiver gone, bad response, receiver error).
    pub bad_gateway: u64,
    /// Requests failed with 504.
    pub timed_out: u64,
    /// Requests the client gave up on.
    pub cancelled: u64,
    /// Receiver connections admitted.
    pub links_admitted: u64,
    /// Receiver connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Receiver connections dropped for silence.
    pub links_silent: u64,
    /// Frames for requests not in flight on that connection (late, or not theirs).
    pub stray_frames: u64,
    /// Text messages that were not valid control messages.
    pub bad_control: u64,
    /// Unsigned `authentication` messages ignored.
    pub unsigned_auth_ignored: u64,
}

/// One receiver connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Its id.
    pub id: LinkId,
    /// Who it authenticated as.
    pub identity: Identity,
    /// Time since it was admitted.
    pub age: Duration,
    /// Requests in flight on it.
    pub in_flight: usize,
    /// Service URLs it serves.
    pub routes: Vec<String>,
    /// Extensions negotiated with it.
    pub features: String,
}

/// A point-in-time view of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayStats {
    /// Receiver connections.
    pub links: Vec<LinkStats>,
    /// Each service URL and how many connections serve it.
    pub routes: Vec<(String, usize)>,
    /// Requests in flight in all.
    pub in_flight: usize,
    /// Counters.
    pub totals: Totals,
}

pub(crate) fn features_label(f: Features) -> String {
    f.to_string()
}
