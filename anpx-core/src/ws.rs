//! What travels on the WebSocket between gateway and receiver, as the state
//! machines see it. The shells map these to and from their WebSocket library.

use bytes::Bytes;

/// One WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// An ANPX frame.
    Binary(Bytes),
    /// A JSON control message (`ping`, `pong`, `heartbeat`, ...).
    Text(String),
    /// A WebSocket-level ping. Libraries answer these themselves; the state
    /// machines only count them as a sign of life.
    Ping(Bytes),
    /// A WebSocket-level pong.
    Pong(Bytes),
}

/// WebSocket close code for a peer that broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// WebSocket close code for a peer that went silent.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a peer that broke a policy (flooding).
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// WebSocket close code for a message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code the reference uses for a failed DID-WBA login.
pub const CLOSE_AUTH_FAILED: u16 = 4003;
