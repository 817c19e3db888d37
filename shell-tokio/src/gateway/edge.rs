//! The public edge on tokio: hyper configured with the edge limits, a
//! deadline on a connection's first bytes, and hyper's connection errors
//! counted as refusals. What is refused is decided in `anpx_core::edge`;
//! the counters and handshake slots are `shell_common::edge`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anpx_core::edge::{EdgeLimits, EdgeRefusal};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use shell_common::gateway::Shared;

use super::head_timer::HeadTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// hyper refuses an HTTP/1 read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;
/// HTTP/2 peers are pinged this often, and dropped when a ping goes
/// unanswered for [`H2_PING_TIMEOUT`]: dead peers do not hold streams.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The hyper connection builder with the edge limits applied; HTTP/1's
/// head timeouts wait on `head_timer`.
pub(crate) fn builder(limits: &EdgeLimits, head_timer: &HeadTimer) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(head_timer.clone())
        // hyper's timer starts whenever it waits for a head, so this
        // also closes kept-alive connections idle for that long.
        .header_read_timeout(limits.header_read_timeout)
        // The whole head must fit the read buffer, so this bounds it;
        // hyper answers a head that does not fit with 431.
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// Counts a connection that hyper (or the first-bytes deadline) ended for
/// one of the edge's reasons, with the refused request's line when hyper
/// answered it (431, 400).
pub(crate) fn connection_error(
    shared: &Shared,
    error: &(dyn std::error::Error + 'static),
    peer: std::net::SocketAddr,
) {
    if let Some(r) = classify(error) {
        shared.head_refused(r, peer);
    }
}

/// Which edge refusal ended a connection, if any.
fn classify(error: &(dyn std::error::Error + 'static)) -> Option<EdgeRefusal> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Some(EdgeRefusal::HeadTimeout);
            }
            if h.is_parse_too_large() {
                return Some(EdgeRefusal::HeadTooLarge);
            }
            if h.is_parse() {
                return Some(EdgeRefusal::Malformed);
            }
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return Some(EdgeRefusal::HeadTimeout);
            }
        }
        source = e.source();
    }
    None
}

/// HTTP/2's connection preface, which hyper waits for in full before it
/// picks a protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Puts a deadline on a connection's first bytes. hyper's header timeout
/// only starts once it has chosen HTTP/1 or HTTP/2, and it chooses only
/// after seeing bytes that rule out the HTTP/2 preface, so a client that
/// connects and sends nothing (or a piece of the preface) would otherwise
/// hold its connection forever. The deadline is dropped as soon as the bytes
/// read differ from the preface or complete it; from then on hyper's own
/// timeouts apply.
///
/// The timer is boxed so the wrapper is `Unpin` and needs no projection.
pub(crate) struct FirstBytesDeadline<I> {
    io: I,
    deadline: Option<Pin<Box<Sleep>>>,
    seen: usize,
}

impl<I> FirstBytesDeadline<I> {
    pub(crate) fn new(io: I, within: Duration) -> Self {
        FirstBytesDeadline {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            seen: 0,
        }
    }

    /// Looks at bytes just read; disarms once they settle the protocol.
    fn saw(&mut self, bytes: &[u8]) {
        let Some(rest) = H2_PREFACE.get(self.seen..) else {
            self.deadline = None;
            return;
        };
        let n = bytes.len().min(rest.len());
        if bytes[..n] != rest[..n] || self.seen + n >= H2_PREFACE.len() {
            self.deadline = None;
        } else {
            self.seen += n;
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    let fresh = buf.filled()[before..].to_vec();
                    this.saw(&fresh);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the header read timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silence_times_out_but_a_request_disarms_the_deadline() {
        let (client, server) = tokio::io::duplex(1024);
        let mut io = FirstBytesDeadline::new(server, Duration::from_millis(50));
        let mut buf = [0u8; 16];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = FirstBytesDeadline::new(server, Duration::from_millis(50));
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0);
        // Past the deadline, a quiet but settled connection is hyper's
        // business: reads just wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waited = tokio::time::timeout(Duration::from_millis(50), io.read(&mut buf)).await;
        assert!(waited.is_err(), "the deadline fired after the first bytes");
    }

    #[tokio::test]
    async fn a_partial_http2_preface_keeps_the_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = FirstBytesDeadline::new(server, Duration::from_millis(50));
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 10);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = FirstBytesDeadline::new(server, Duration::from_millis(50));
        client.write_all(H2_PREFACE).await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), H2_PREFACE.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waited = tokio::time::timeout(Duration::from_millis(50), io.read(&mut buf)).await;
        assert!(
            waited.is_err(),
            "a complete preface must disarm the deadline"
        );
    }

    #[test]
    fn connection_errors_are_classified() {
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "x");
        assert_eq!(classify(&timeout), Some(EdgeRefusal::HeadTimeout));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "x");
        assert_eq!(classify(&reset), None);
    }
}
