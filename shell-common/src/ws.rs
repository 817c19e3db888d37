//! Conversions between the core's WebSocket messages and tungstenite's.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anpx_core::WsMessage;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::Message;
use futures_util::io::{AsyncRead, AsyncWrite};

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

/// Bytes read from the socket at a time. tungstenite allocates this for
/// every connection and zero-fills it before each read, so every idle
/// receiver holds it on its gateway (its default, 128 KiB, made 134 KiB a
/// connection; 16 KiB made 20 KiB). A frame larger than this takes
/// several reads into a buffer reserved for its whole length, which the
/// budgets charge as it arrives ([`Arriving`]).
pub const READ_BUFFER_SIZE: usize = 8 * 1024;

/// WebSocket limits matching the largest frame the core accepts.
pub fn config(max_frame_len: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame_len))
        .max_frame_size(Some(max_frame_len))
        .read_buffer_size(READ_BUFFER_SIZE)
}

/// A receiver's socket that counts the bytes read from it, so that what
/// the WebSocket library holds of a message still arriving can be charged
/// against the gateway's budgets (it is not visible otherwise until the
/// message is whole).
pub struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Counted {
            inner,
            read: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes read from the socket so far, shared with the reader.
    pub fn read_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.read)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.read.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Bytes of a message still arriving that are not reported: the header
/// of the frame and what was read ahead of the message's end, both within
/// one read. Bounded so that a message at the size limit is not charged
/// past it.
pub const UNCHARGED: u64 = READ_BUFFER_SIZE as u64;
/// The count is reported in steps of this size, not on every read: two
/// reads a step, so a message arriving takes the gateway's lock at most
/// every other read. What a connection holds uncharged is below
/// `UNCHARGED + REPORT_STEP` (24 KiB) besides its read buffer; SECURITY.md
/// adds it up per connection.
pub const REPORT_STEP: u64 = 16 * 1024;

/// What of a connection's bytes read is a message still arriving: read
/// since the last whole data message, less the control messages received
/// since (which tungstenite hands over whole, even between the fragments
/// of a data message, so they do not end what is arriving).
pub struct Arriving {
    read: Arc<AtomicU64>,
    /// Bytes read up to the end of the last whole message.
    done: u64,
    /// What was last reported.
    reported: u64,
}

impl Arriving {
    /// Follows the counter of a [`Counted`] socket.
    pub fn new(read: Arc<AtomicU64>) -> Self {
        let done = read.load(Ordering::Relaxed);
        Arriving {
            read,
            done,
            reported: 0,
        }
    }

    /// A message was received whole; returns the count to report if it
    /// changed.
    pub fn received(&mut self, message: &Message) -> Option<u64> {
        let read = self.read.load(Ordering::Relaxed);
        match message {
            // A client's control frame is masked: 2 header bytes, 4 of mask,
            // at most 125 of payload.
            Message::Ping(b) | Message::Pong(b) => {
                self.done = (self.done + 6 + b.len() as u64).min(read);
            }
            _ => self.done = read,
        }
        self.report()
    }

    /// The socket was read and no message is whole yet; returns the count
    /// to report if it changed by a step.
    pub fn pending(&mut self) -> Option<u64> {
        self.report()
    }

    fn report(&mut self) -> Option<u64> {
        let read = self.read.load(Ordering::Relaxed);
        let arriving = read.saturating_sub(self.done).saturating_sub(UNCHARGED);
        let stepped = arriving / REPORT_STEP * REPORT_STEP;
        (stepped != self.reported).then(|| {
            self.reported = stepped;
            stepped
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_arriving_is_reported_in_steps_past_the_free_part() {
        let read = Arc::new(AtomicU64::new(100));
        let mut arriving = Arriving::new(Arc::clone(&read));
        let at = |n: u64| read.store(100 + n, Ordering::Relaxed);
        at(UNCHARGED);
        assert_eq!(arriving.pending(), None, "the first read is free");
        at(UNCHARGED + REPORT_STEP - 1);
        assert_eq!(arriving.pending(), None, "less than a step");
        at(UNCHARGED + REPORT_STEP);
        assert_eq!(arriving.pending(), Some(REPORT_STEP));
        assert_eq!(arriving.pending(), None, "reported once");
        at(UNCHARGED + 3 * REPORT_STEP + 5);
        assert_eq!(arriving.pending(), Some(3 * REPORT_STEP));
        // A whole message: nothing arrives any more.
        assert_eq!(
            arriving.received(&Message::Binary(vec![0; 8].into())),
            Some(0)
        );
        // A ping between fragments does not end what is arriving.
        at(UNCHARGED + 3 * REPORT_STEP + 5 + UNCHARGED + REPORT_STEP);
        assert_eq!(arriving.pending(), Some(REPORT_STEP));
        let ping = 6 + 10;
        read.fetch_add(ping, Ordering::Relaxed);
        assert_eq!(arriving.received(&Message::Ping(vec![0; 10].into())), None);
    }

    #[test]
    fn what_is_not_charged_stays_under_the_documented_bound() {
        // SECURITY.md counts 8 KiB read buffer + 8 KiB free + a step under
        // 16 KiB for what a receiver connection holds uncharged.
        assert!(READ_BUFFER_SIZE as u64 + UNCHARGED + REPORT_STEP <= 32 * 1024);
    }
}
