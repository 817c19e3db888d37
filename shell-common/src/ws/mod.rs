//! The WebSocket between gateway and receiver, after its handshake: frames
//! read and written here rather than by tungstenite, which runs only the
//! handshakes. tungstenite zero-fills its read buffer before every read
//! (also reads that find the socket empty), reads at most that buffer's
//! size at a time even into a frame it reserved whole, and its split
//! halves take a lock on every poll; on small requests its reading was
//! 7% of a request's instructions.
//!
//! [`Decoder`] and the [`encode`] functions do no I/O; [`WsSocket`] runs
//! them on a byte stream, and [`HoldBack`] keeps a receiver's first frames
//! away from tungstenite's handshake.

mod arriving;
mod decode;
pub mod encode;
mod hold_back;
mod socket;
#[cfg(test)]
mod tests;

pub use arriving::{Arriving, REPORT_STEP, UNCHARGED};
pub use decode::{Decoder, FrameError};
pub use hold_back::HoldBack;
pub use socket::{WsError, WsSocket, WRITE_BATCH};

use anpx_core::WsMessage;

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

/// Bytes read from the socket at a time into a connection's read buffer,
/// which is zero-filled once, when the connection first reads. A frame
/// larger than what is left of it is read into a buffer of its own.
pub const READ_BUFFER_SIZE: usize = 8 * 1024;
