//! A WebSocket after its handshake: frames read with [`Decoder`] and
//! written with [`encode`](super::encode), on any byte stream.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use anpx_core::WsMessage;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::io::{AsyncRead, AsyncWrite};

use super::{encode, Decoder, FrameError, Incoming, Role};

/// A payload this large or larger is written from its own bytes (masked
/// in place for a client), not copied with its frame's header.
const OWN_SEGMENT: usize = 16 * 1024;

/// A buffer of small frames that held more than this at once is let go
/// once written, so an idle connection keeps no more (its frozen runs
/// share the buffer's allocation, whose size `BytesMut` does not tell).
const KEEP_WRITE_BUFFER: usize = 16 * 1024;

/// Queued bytes at which a writer should write before it queues more
/// ([`WsSocket::write_due`]): many small frames still go out in one write,
/// and large bodies go out as they are queued rather than all together,
/// which would hold them all in memory at once.
pub const WRITE_BATCH: usize = 128 * 1024;

/// Segments offered to one vectored write.
const MAX_SLICES: usize = 16;

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
    /// Small frames, and large frames' headers, not written yet; they go
    /// to `segments` before what follows them does.
    out: BytesMut,
    /// What is to be written before `out`, in order: runs of small frames
    /// and large payloads.
    segments: VecDeque<Bytes>,
    /// Bytes in `segments`.
    queued: usize,
    /// `out` held more than [`KEEP_WRITE_BUFFER`] since it was last let go.
    out_grew: bool,
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
            out: BytesMut::new(),
            segments: VecDeque::new(),
            queued: 0,
            out_grew: false,
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
                Ok(n) => {
                    crate::spin::worked();
                    self.decoder.filled(n)
                }
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
            // A peer that pings without reading does not grow the queue
            // past a batch: §5.5.3 lets pongs to earlier pings go unsent.
            Incoming::Message(WsMessage::Ping(payload)) if !self.write_due() => {
                self.feed(WsMessage::Pong(payload.clone()));
            }
            Incoming::Close(frame) => {
                self.read_done = true;
                // Echo the code, as §5.5.1 suggests; no code, no code.
                self.queue_close(frame.as_ref().map(|f| f.code), "");
            }
            _ => return,
        }
        // Best effort now; what the socket does not take waits for the
        // next flush, or the connection's end.
        let _ = self.poll_flush(cx);
    }

    /// The stream, once the connection is done with.
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Bytes held of a message still arriving (see [`Decoder::arriving`]).
    pub fn arriving(&self) -> u64 {
        self.decoder.arriving()
    }

    /// Queues `message`; [`poll_flush`](Self::poll_flush) writes it.
    pub fn feed(&mut self, message: WsMessage) {
        if self.close_sent {
            return;
        }
        let (opcode, payload) = encode::parts(message);
        if payload.len() < OWN_SEGMENT {
            let mask = self.mask();
            encode::frame(&mut self.out, opcode, &payload, mask);
            return;
        }
        let key = self.mask();
        encode::header(&mut self.out, opcode, payload.len(), key);
        let payload = match key {
            Some(key) => encode::masked(payload, key),
            None => payload,
        };
        self.seal_out();
        self.queued += payload.len();
        self.segments.push_back(payload);
    }

    /// A masking key for the next frame if this side is the client:
    /// unpredictable, as RFC 6455 §10.3 asks, from the thread's
    /// cryptographically secure generator.
    fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(rand::random)
    }

    /// Bytes queued and not written yet.
    pub fn unsent(&self) -> usize {
        self.queued + self.out.len()
    }

    /// Whether enough is queued ([`WRITE_BATCH`]) that it should be
    /// written before more is queued.
    pub fn write_due(&self) -> bool {
        self.unsent() >= WRITE_BATCH
    }

    /// Moves what `out` holds to the end of `segments`.
    fn seal_out(&mut self) {
        if !self.out.is_empty() {
            self.out_grew |= self.out.len() > KEEP_WRITE_BUFFER;
            let run = self.out.split().freeze();
            self.queued += run.len();
            self.segments.push_back(run);
        }
    }

    /// Queues a close frame; nothing is queued after it.
    pub fn feed_close(&mut self, code: u16, reason: &str) {
        self.queue_close(Some(code), reason);
    }

    /// Queues the close frame, with `code` and `reason` or without a code,
    /// unless one was queued already.
    fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        let mask = self.mask();
        match code {
            Some(code) => encode::close(&mut self.out, code, reason, mask),
            None => encode::close_without_code(&mut self.out, mask),
        }
    }

    /// Writes everything queued and flushes the stream.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.seal_out();
        while !self.segments.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            for (slice, segment) in slices.iter_mut().zip(&self.segments) {
                *slice = IoSlice::new(segment);
            }
            let count = self.segments.len().min(MAX_SLICES);
            let written =
                match ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                };
            self.queued -= written;
            let mut left = written;
            while left > 0 {
                let front = self.segments.front_mut().expect("written from a segment");
                if front.len() <= left {
                    left -= front.len();
                    self.segments.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        if std::mem::take(&mut self.out_grew) {
            self.out = BytesMut::new();
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Queues a close frame and writes it.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.feed_close(code, reason);
        self.flush().await
    }
}
