//! The WebSocket between gateway and receiver, after its handshake: frames
//! read and written by the core's sans-IO codec (`anpx_core::ws`: its
//! `Decoder` and `encode`) rather than by tungstenite, which runs only the
//! handshakes. tungstenite zero-fills its read buffer before every read
//! (also reads that find the socket empty), reads at most that buffer's
//! size at a time even into a frame it reserved whole, and its split
//! halves take a lock on every poll; on small requests its reading was
//! 7% of a request's instructions.
//!
//! [`WsSocket`] runs the codec on a byte stream, [`Arriving`] reports what
//! a connection holds of a message still arriving, and [`HoldBack`] keeps
//! a receiver's first frames away from tungstenite's handshake.

mod arriving;
mod hold_back;
mod socket;
#[cfg(test)]
mod tests;

pub use anpx_core::ws::{
    encode, CloseFrame, Decoder, FrameError, Incoming, Role, READ_BUFFER_SIZE,
};
pub use arriving::{Arriving, REPORT_STEP, UNCHARGED};
pub use hold_back::HoldBack;
pub use socket::{WsError, WsSocket, WRITE_BATCH};
