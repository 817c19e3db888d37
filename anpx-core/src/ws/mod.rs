//! What travels on the WebSocket between gateway and receiver, as the state
//! machines see it, and the WebSocket framing itself (RFC 6455 §5), sans-IO
//! like the machines: [`Decoder`] turns bytes read into messages and
//! [`encode`] messages into bytes to write. The shells run them on their
//! sockets (`shell_common::ws::WsSocket`) after a handshake of their own.

mod decode;
pub mod encode;

pub use decode::{Decoder, FrameError, LARGE_STEP};

use bytes::Bytes;

/// Which end of the connection this side is: a client masks what it sends
/// and a server what it receives (RFC 6455 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gateway, which accepted the connection.
    Server,
    /// The receiver, which dialed.
    Client,
}

/// What the peer sent: a message, or a close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message.
    Message(WsMessage),
    /// A close frame, with its code and reason if it had them.
    Close(Option<CloseFrame>),
}

/// A close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code.
    pub code: u16,
    /// Why, possibly empty.
    pub reason: String,
}

// Frame opcodes (§5.2), for the decoder and the encoder alike.
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A control frame's payload limit (§5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Bytes read from the socket at a time into a connection's read buffer,
/// which is zero-filled once, when the connection first reads. A frame
/// larger than what is left of it is read into a buffer of its own.
pub const READ_BUFFER_SIZE: usize = 8 * 1024;

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
