//! The receiver's stream during its WebSocket handshake, which tungstenite
//! runs: it is given the `101` response's head and nothing past it, so
//! that frames the gateway sends right after the head stay here for
//! [`WsSocket`](super::WsSocket) instead of in tungstenite's buffer.
//! Any other answer passes through whole, its body being the reason of a
//! refusal.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};

/// Bytes read from the socket at a time during the handshake.
const CHUNK: usize = 4096;

/// A stream that hands out a `101` response's head and holds back what
/// follows it.
pub struct HoldBack<S> {
    inner: S,
    /// Read from `inner`; `buf[given..]` not handed out yet.
    buf: Vec<u8>,
    given: usize,
    head: Head,
}

/// What is known of the response's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Not whole yet: what arrives is handed out.
    Reading,
    /// A `101`'s, ending at this offset in `buf`: nothing past it is
    /// handed out.
    Switching(usize),
    /// Any other answer, or one that does not parse (tungstenite says
    /// why): everything passes through.
    Other,
}

/// Header fields looked at in a response head, as many as tungstenite's
/// own parse allows.
const MAX_HEADERS: usize = 124;

impl<S> HoldBack<S> {
    /// Wraps `inner` before the handshake request is written.
    pub fn new(inner: S) -> Self {
        HoldBack {
            inner,
            buf: Vec::new(),
            given: 0,
            head: Head::Reading,
        }
    }

    /// The stream and what was read from it past the `101`'s head.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        let rest = self.buf[self.given..].to_vec();
        (self.inner, rest)
    }

    /// What may be handed out of `buf`.
    fn limit(&self) -> usize {
        match self.head {
            Head::Switching(end) => end,
            Head::Reading | Head::Other => self.buf.len(),
        }
    }

    /// Looks at what was read: a head that ended, and whether it is a `101`.
    fn classify(&mut self) {
        if self.head != Head::Reading {
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        self.head = match response.parse(&self.buf) {
            Ok(httparse::Status::Partial) => Head::Reading,
            Ok(httparse::Status::Complete(end)) if response.code == Some(101) => {
                Head::Switching(end)
            }
            Ok(httparse::Status::Complete(_)) | Err(_) => Head::Other,
        };
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HoldBack<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.given == this.limit() {
            if matches!(this.head, Head::Switching(_)) {
                // The head was handed out whole: nothing more until the
                // handshake is over.
                return Poll::Ready(Ok(0));
            }
            let from = this.buf.len();
            this.buf.resize(from + CHUNK, 0);
            let read = Pin::new(&mut this.inner).poll_read(cx, &mut this.buf[from..]);
            let n = match read {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    this.buf.truncate(from);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.buf.truncate(from);
                    return Poll::Pending;
                }
            };
            this.buf.truncate(from + n);
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            this.classify();
        }
        let n = (this.limit() - this.given).min(out.len());
        out[..n].copy_from_slice(&this.buf[this.given..this.given + n]);
        this.given += n;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HoldBack<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::io::{AsyncReadExt, Cursor};
    use futures_util::FutureExt;

    use super::*;

    /// What a reader of `HoldBack` gets, and what is left in it.
    fn read(wire: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut stream = HoldBack::new(Cursor::new(wire.to_vec()));
        let mut given = Vec::new();
        let mut piece = [0u8; 7];
        loop {
            let n = stream.read(&mut piece).now_or_never().unwrap().unwrap();
            if n == 0 {
                break;
            }
            given.extend_from_slice(&piece[..n]);
        }
        (given, stream.into_parts().1)
    }

    #[test]
    fn what_follows_a_101_head_is_held_back() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let frames = [0x81, 0x02, b'h', b'i'];
        let wire = [&head[..], &frames].concat();
        assert_eq!(read(&wire), (head.to_vec(), frames.to_vec()));
    }

    #[test]
    fn a_refusal_passes_through_whole() {
        let wire = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\n\r\nnope".to_vec();
        assert_eq!(read(&wire), (wire.clone(), Vec::new()));
    }
}
