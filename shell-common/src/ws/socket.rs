//! A WebSocket after its handshake: frames read with [`Decoder`] and
//! written with [`encode`](super::encode), on any byte stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use anpx_core::WsMessage;
use futures_util::io::{AsyncRead, AsyncWrite};

use super::decode::{Decoder, FrameError};
use super::{encode, Incoming, Role};

/// Written bytes kept for reuse after a flush; a larger buffer (a large
/// body went out) is let go, so an idle connection does not keep it.
const KEEP_WRITE_BUFFER: usize = 64 * 1024;

/// Queued bytes at which a writer should write before it queues more
/// ([`WsSocket::write_due`]): many small frames still go out in one write,
/// and large bodies go out as they are queued rather than all together,
/// which would hold them all in memory at once.
pub const WRITE_BATCH: usize = 128 * 1024;

/// Why a WebSocket ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The peer's bytes are not acceptable frames.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

/// One side of a WebSocket connection on the stream `S`.
pub struct WsSocket<S> {
    io: S,
    role: Role,
    decoder: Decoder,
    /// Frames to write; `out[written..]` is not written yet.
    out: Vec<u8>,
    written: usize,
    /// A close frame was queued: nothing more is.
    close_sent: bool,
    /// A close frame was received, the socket ended or failed: nothing
    /// more is read.
    read_done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSocket<S> {
    /// The WebSocket on `io`, whose handshake is done; `read_ahead` is
    /// what was read from `io` past the handshake.
    pub fn new(io: S, role: Role, max_message: usize, read_ahead: &[u8]) -> Self {
        WsSocket {
            io,
            role,
            decoder: Decoder::with_read_ahead(role, max_message, read_ahead),
            out: Vec::new(),
            written: 0,
            close_sent: false,
            read_done: false,
        }
    }

    /// The next message or close from the peer; `None` once the
    /// connection ended. Pings are answered and closes replied to here, as
    /// far as the socket takes them without waiting; the rest goes out with
    /// the next [`poll_flush`](Self::poll_flush).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming, WsError>>> {
        if self.read_done {
            return Poll::Ready(None);
        }
        loop {
            match self.decoder.decode() {
                Err(e) => {
                    self.read_done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Ok(Some(incoming)) => {
                    self.answer(cx, &incoming);
                    return Poll::Ready(Some(Ok(incoming)));
                }
                Ok(None) => {}
            }
            let target = self.decoder.read_target();
            match ready!(Pin::new(&mut self.io).poll_read(cx, target)) {
                Ok(0) => {
                    self.read_done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => self.decoder.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// What the protocol answers by itself: a pong for a ping, the close
    /// reply for a close.
    fn answer(&mut self, cx: &mut Context<'_>, incoming: &Incoming) {
        match incoming {
            Incoming::Message(WsMessage::Ping(payload)) if !self.close_sent => {
                encode::message(&mut self.out, self.role, &WsMessage::Pong(payload.clone()));
            }
            Incoming::Close(frame) => {
                self.read_done = true;
                if !self.close_sent {
                    // Echo the code, as §5.5.1 suggests; no code, no code.
                    match frame {
                        Some(f) => self.feed_close(f.code, ""),
                        None => {
                            self.close_sent = true;
                            encode::close_without_code(&mut self.out, self.role);
                        }
                    }
                }
            }
            _ => return,
        }
        // Best effort now; what the socket does not take waits for the
        // next flush, or the connection's end.
        let _ = self.poll_flush(cx);
    }

    /// Bytes held of a message still arriving (see [`Decoder::arriving`]).
    pub fn arriving(&self) -> u64 {
        self.decoder.arriving()
    }

    /// Queues `message`; [`poll_flush`](Self::poll_flush) writes it.
    pub fn feed(&mut self, message: &WsMessage) {
        if !self.close_sent {
            encode::message(&mut self.out, self.role, message);
        }
    }

    /// Whether enough is queued ([`WRITE_BATCH`]) that it should be
    /// written before more is queued.
    pub fn write_due(&self) -> bool {
        self.out.len() - self.written >= WRITE_BATCH
    }

    /// Queues a close frame; nothing is queued after it.
    pub fn feed_close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            encode::close(&mut self.out, self.role, code, reason);
        }
    }

    /// Writes everything queued and flushes the stream.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if self.out.capacity() > KEEP_WRITE_BUFFER {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        self.written = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Queues `message` and writes it.
    pub async fn send(&mut self, message: &WsMessage) -> io::Result<()> {
        self.feed(message);
        self.flush().await
    }

    /// Queues a close frame and writes it.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.feed_close(code, reason);
        self.flush().await
    }
}
