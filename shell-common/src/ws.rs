//! Conversions between the core's WebSocket messages and tungstenite's.

use anpx_core::WsMessage;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message;

/// The tungstenite message for a core message.
pub fn to_wire(message: WsMessage) -> Message {
    match message {
        WsMessage::Binary(b) => Message::Binary(b),
        WsMessage::Text(t) => Message::Text(t.into()),
        WsMessage::Ping(b) => Message::Ping(b),
        WsMessage::Pong(b) => Message::Pong(b),
    }
}

/// The core message for a tungstenite message; `None` for a close (handled
/// by the caller) or a raw frame (never produced when reading).
pub fn from_wire(message: Message) -> Option<WsMessage> {
    match message {
        Message::Binary(b) => Some(WsMessage::Binary(b)),
        Message::Text(t) => Some(WsMessage::Text(t.as_str().to_owned())),
        Message::Ping(b) => Some(WsMessage::Ping(b)),
        Message::Pong(b) => Some(WsMessage::Pong(b)),
        Message::Close(_) | Message::Frame(_) => None,
    }
}

/// A close message; the reason is cut to what the protocol allows.
pub fn close(code: u16, reason: &str) -> Message {
    // Close reasons are limited to 123 bytes by the protocol.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_owned().into(),
    }))
}

/// Bytes read from the socket at a time. tungstenite's default (128 KiB)
/// is allocated for every connection and zero-filled before each read, so
/// an idle receiver held 134 KiB on its gateway; a frame larger than this
/// takes a few reads into a buffer reserved for its whole length instead.
pub const READ_BUFFER_SIZE: usize = 16 * 1024;

/// WebSocket limits matching the largest frame the core accepts.
pub fn config(max_frame_len: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame_len))
        .max_frame_size(Some(max_frame_len))
        .read_buffer_size(READ_BUFFER_SIZE)
}
