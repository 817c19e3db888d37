//! The public edge on smol: request heads are read and checked here, before
//! async-h1 sees them.
//!
//! async-h1's server caps a head at 8 KiB whatever is configured, answers
//! nothing when it refuses one (the client sees a closed connection, not a
//! 400 or 431), takes the first of two different `Content-Length`s, refuses
//! HTTP/1.0, and waits 60 s for a head. So each head is read here, within
//! the header read timeout and the size limit, and checked with
//! `anpx_core::edge::head` (the rules hyper applies in the tokio shell);
//! a refused head gets its status and the connection closes. async-h1 is
//! then handed a canonical head that carries only what it acts on (the
//! body's framing, `100-continue`, an upgrade, whether to close), and is
//! left the body framing, the response encoding and the upgrade hand-over.
//! The request itself, as checked, goes to the handler beside it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use anpx_core::edge::chunk_ext::{ChunkExtStrip, ChunkLineError};
use anpx_core::edge::head::{chunked_body_len, parse_head, BodyFraming, RequestHead};
use anpx_core::edge::{EdgeLimits, EdgeRefusal};
use bytes::Bytes;
use futures_util::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::head_edit::{HeadBytes, HeadEdit};
use crate::stall::Parked;

/// How much is read from the socket at a time while waiting for a head.
const READ_SIZE: usize = 8 * 1024;
/// The first read of a head: most heads fit, and a read buffer is
/// zero-filled when it is made, for every head, so the first is small; a
/// head that fills it is read on in `READ_SIZE` pieces.
const FIRST_READ: usize = 2 * 1024;
/// The most bytes of an answer held back to go out in one write with what
/// follows them.
const HOLD_MAX: usize = 64 * 1024;
/// A hold buffer with more room than this is let go once written out, so
/// an idle connection does not keep a large one.
const HOLD_KEEP: usize = 4 * 1024;

/// A connection whose reads first return bytes put back in front of the
/// socket's: the canonical head for async-h1, then what was read past the
/// real head. Clones share the queue (async-h1 reads through clones).
/// Once [`cut`](Self::cut), reads end: async-h1 then stops draining a body
/// the gateway refused.
///
/// It also counts the reads on which the socket parked, for the guard
/// against async-h1's chunked decoder stalling ([`crate::stall`]).
#[derive(Debug)]
pub(crate) struct Replay<S> {
    inner: S,
    state: Arc<Mutex<ReplayState>>,
    parked: Parked,
}

#[derive(Debug, Default)]
struct ReplayState {
    /// Pieces served one per read, so async-h1's buffered reader never
    /// takes a head and what follows it in one read.
    queued: VecDeque<Bytes>,
    cut: bool,
    /// A chunked body still coming from the socket, its extensions
    /// dropped on the way: async-h1's decoder refuses them.
    strip: Option<ChunkExtStrip>,
    /// The chunked body could not be passed on: reads fail with this.
    failed: Option<ChunkLineError>,
    /// Written bytes not yet on the socket (see [`Replay::hold`]).
    held: Vec<u8>,
    /// Writes are held until the next flush.
    holding: bool,
    /// The next head written, gathered to be written again edited.
    edit: Option<(HeadEdit, HeadBytes)>,
}

impl<S: Clone> Clone for Replay<S> {
    fn clone(&self) -> Self {
        Replay {
            inner: self.inner.clone(),
            state: self.state.clone(),
            parked: self.parked.clone(),
        }
    }
}

impl<S> Replay<S> {
    pub(crate) fn new(inner: S) -> Self {
        Replay {
            inner,
            state: Arc::default(),
            parked: Parked::default(),
        }
    }

    /// The count of this connection's parked reads.
    pub(crate) fn parked(&self) -> Parked {
        self.parked.clone()
    }

    fn state(&self) -> MutexGuard<'_, ReplayState> {
        // Only ever held for a queue operation; a poisoned lock still holds
        // a consistent queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `pieces` in front of whatever is queued, in order.
    fn put_back(&self, pieces: impl IntoIterator<Item = Bytes>) {
        let mut state = self.state();
        let mut front: VecDeque<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        front.append(&mut state.queued);
        state.queued = front;
    }

    /// What ends reading on this connection.
    pub(crate) fn cutter(&self) -> Cutter {
        Cutter(self.state.clone())
    }

    /// Holds what is written from now to the next flush, up to
    /// [`HOLD_MAX`] bytes, so that an answer's head and the body bytes
    /// ready behind it leave in one write: async-h1 copies a head and
    /// its body in separate writes of at most 8 KiB each, a system call
    /// and a wake-up of the client apiece. Held bytes go out with the
    /// next write that does not fit, at the flush that ends the answer,
    /// or as soon as the body waits for more (a body read through
    /// [`Replay::released`]), so nothing waits on bytes yet to come.
    pub(crate) fn hold(&self) {
        self.state().holding = true;
    }

    /// Has the next head written (async-h1's, of the answer it is about
    /// to write) go out with `edit` made: what async-h1 cannot write
    /// itself ([`crate::head_edit`]).
    pub(crate) fn edit_head(&self, edit: HeadEdit) {
        if !edit.is_noop() {
            self.state().edit = Some((edit, HeadBytes::default()));
        }
    }
}

impl<S: AsyncWrite + Unpin> Replay<S> {
    /// `body` read so that the held bytes go out whenever it has to wait
    /// for more (or fails).
    pub(crate) fn released<R>(&self, body: R) -> Released<R, S>
    where
        S: Clone,
    {
        Released {
            body,
            conn: self.clone(),
            failed: None,
        }
    }
}

/// Writes the held bytes out, ahead of `buf` when it is given; the
/// count is of `buf`'s bytes written along with them.
fn poll_held<S: AsyncWrite + Unpin>(
    inner: &mut S,
    state: &mut ReplayState,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    while !state.held.is_empty() {
        let slices = [IoSlice::new(&state.held), IoSlice::new(buf)];
        let n = ready!(Pin::new(&mut *inner).poll_write_vectored(cx, &slices))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        if n < state.held.len() {
            state.held.drain(..n);
            continue;
        }
        let of_buf = n - state.held.len();
        if state.held.capacity() > HOLD_KEEP {
            state.held = Vec::new();
        } else {
            state.held.clear();
        }
        return Poll::Ready(Ok(of_buf));
    }
    Poll::Ready(Ok(0))
}

/// A response body read through [`Replay::released`].
pub(crate) struct Released<R, S> {
    body: R,
    conn: Replay<S>,
    /// The body's error, returned once the held bytes are out.
    failed: Option<io::Error>,
}

impl<R, S: AsyncWrite + Unpin> Released<R, S> {
    /// Writes out what is held; `Pending` until it is all written.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = &mut self.conn;
        let mut state = conn.state.lock().unwrap_or_else(|p| p.into_inner());
        ready!(poll_held(&mut conn.inner, &mut state, cx, &[]))?;
        Poll::Ready(Ok(()))
    }

    /// The body's error, once what is held is out: the client gets what
    /// was written before the failure, as it would have unheld.
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let _ = ready!(self.poll_release(cx));
        Poll::Ready(
            self.failed
                .take()
                .unwrap_or_else(|| io::Error::other("the body failed")),
        )
    }
}

impl<R: AsyncRead + Unpin, S: AsyncWrite + Unpin> AsyncRead for Released<R, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.failed.is_none() {
            match Pin::new(&mut this.body).poll_read(cx, buf) {
                Poll::Ready(Ok(n)) => return Poll::Ready(Ok(n)),
                Poll::Pending => {
                    // A failed write shows again on the next one.
                    let _ = this.poll_release(cx);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => this.failed = Some(e),
            }
        }
        this.poll_failure(cx).map(Err)
    }
}

impl<R: AsyncBufRead + Unpin, S: AsyncWrite + Unpin> AsyncBufRead for Released<R, S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.failed.is_none() {
            let waits = match Pin::new(&mut this.body).poll_fill_buf(cx) {
                Poll::Ready(Ok(_)) => false,
                Poll::Pending => true,
                Poll::Ready(Err(e)) => {
                    this.failed = Some(e);
                    false
                }
            };
            if waits {
                let _ = this.poll_release(cx);
                return Poll::Pending;
            }
            if this.failed.is_none() {
                // Filled: this returns what is buffered without reading.
                return Pin::new(&mut this.body).poll_fill_buf(cx);
            }
        }
        this.poll_failure(cx).map(Err)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.body).consume(amt);
    }
}

/// Ends reading on a [`Replay`] connection: the request body is not read
/// any further, so async-h1 does not drain what the gateway refused.
#[derive(Debug, Clone)]
pub(crate) struct Cutter(Arc<Mutex<ReplayState>>);

impl Cutter {
    pub(crate) fn cut(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.cut = true;
        state.queued.clear();
    }

    /// Whether reading was ended: the connection cannot carry another
    /// request.
    pub(crate) fn is_cut(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).cut
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        {
            let mut state = self.state();
            if state.cut {
                return Poll::Ready(Ok(0));
            }
            if let Some(piece) = state.queued.front_mut() {
                let n = piece.len().min(buf.len());
                buf[..n].copy_from_slice(&piece.split_to(n));
                if piece.is_empty() {
                    state.queued.pop_front();
                }
                return Poll::Ready(Ok(n));
            }
            if let Some(e) = state.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
        loop {
            let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
            let n = match polled {
                Poll::Pending => {
                    self.parked.parked();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut state = self.state();
            let Some(strip) = state.strip.as_mut() else {
                return Poll::Ready(Ok(n));
            };
            let stripped = strip.strip_in_place(&mut buf[..n]);
            let done = strip.is_done();
            if done {
                state.strip = None;
            }
            match stripped {
                // A read that was all extension bytes gives nothing to
                // return, and 0 would read as the end: read again.
                Ok(0) if n > 0 => continue,
                Ok(kept) => return Poll::Ready(Ok(kept)),
                Err(e) => {
                    state.strip = None;
                    state.failed = Some(e);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut guard = this.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        if let Some((edit, head)) = state.edit.as_mut() {
            // The head is taken whole, then written edited ahead of
            // whatever comes next.
            let (taken, whole) = head.take(buf);
            if whole {
                state.held.extend_from_slice(&edit.apply(head.bytes()));
                state.edit = None;
            }
            return Poll::Ready(Ok(taken));
        }
        let after = state.held.len() + buf.len();
        if state.holding && after <= HOLD_MAX {
            if after > HOLD_KEEP && after > state.held.capacity() {
                // A body past a small answer fills the hold to its limit:
                // room for all of it at once, where growing by doubling
                // copied every held byte again at each step (an extra copy
                // of a large body, `benches/instructions.sh` FILE=big).
                let held = &mut state.held;
                held.reserve_exact(HOLD_MAX - held.len());
            }
            state.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        if !state.held.is_empty() {
            let n = ready!(poll_held(&mut this.inner, state, cx, buf))?;
            if n > 0 || buf.is_empty() {
                return Poll::Ready(Ok(n));
            }
        }
        drop(guard);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        {
            let mut state = this.state.lock().unwrap_or_else(|p| p.into_inner());
            ready!(poll_held(&mut this.inner, &mut state, cx, &[]))?;
            state.holding = false;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// What waiting for the next request head gave.
pub(crate) enum NextHead {
    /// A head that passed the checks, now queued for async-h1 in canonical
    /// form.
    Request(Box<RequestHead>),
    /// The client closed the connection (or it failed) between requests.
    Closed,
    /// The edge refused the head; the connection is to be closed after the
    /// answer, if the refusal has one.
    Refused(EdgeRefusal),
}

/// The timer of a connection's head reads: one for the connection's life
/// rather than one per head. Setting a timer costs the reactor a wake-up;
/// this one is set again only when it fires before the deadline of the
/// head being read (the deadline moved on since it was set).
pub(crate) struct HeadClock {
    timer: smol::Timer,
    /// When `timer` fires, if it is set.
    set_for: Option<Instant>,
}

impl HeadClock {
    pub(crate) fn new() -> Self {
        HeadClock {
            timer: smol::Timer::never(),
            set_for: None,
        }
    }

    /// Resolves at `deadline`.
    async fn until(&mut self, deadline: Instant) {
        loop {
            if self.set_for.is_none_or(|at| at > deadline) {
                self.timer.set_at(deadline);
                self.set_for = Some(deadline);
            }
            (&mut self.timer).await;
            self.set_for = None;
            if Instant::now() >= deadline {
                return;
            }
        }
    }
}

/// Reads the next request head from `conn` within the limits. A head that
/// passes is queued back on `conn` for async-h1 in canonical form, followed
/// by whatever was read past it.
pub(crate) async fn next_head<S>(
    conn: &mut Replay<S>,
    limits: &EdgeLimits,
    clock: &mut HeadClock,
) -> NextHead
where
    S: AsyncRead + Unpin,
{
    let reading = read_head(conn, limits.max_header_bytes);
    let deadline = Instant::now() + limits.header_read_timeout;
    let deadline = async {
        clock.until(deadline).await;
        Err(EdgeRefusal::HeadTimeout)
    };
    match smol::future::or(reading, deadline).await {
        Ok(Some((head, rest))) => {
            let canonical = canonical_head(&head);
            match head.framing {
                // The body's own bytes as a piece of their own, so async-h1
                // does not take a pipelined request with them.
                BodyFraming::Length(n) => {
                    let body_len = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
                    let mut rest = Bytes::from(rest);
                    let body = rest.split_to(body_len);
                    conn.put_back([canonical, body, rest]);
                }
                // async-h1's chunked decoder fails on bytes after the body
                // in the read that holds its end, so a body that is whole
                // here is a piece of its own too. Its chunk extensions are
                // dropped (RFC 9112 §7.1.1: ignored), here and in what
                // the socket brings of it later, as that decoder refuses
                // them.
                BodyFraming::Chunked => {
                    let mut rest = Bytes::from(rest);
                    let body = rest.split_to(chunked_body_len(&rest).unwrap_or(rest.len()));
                    let mut body = body.to_vec();
                    let mut strip = ChunkExtStrip::new();
                    match strip.strip_in_place(&mut body) {
                        Ok(kept) => {
                            body.truncate(kept);
                            conn.put_back([canonical, Bytes::from(body), rest]);
                            if !strip.is_done() {
                                conn.state().strip = Some(strip);
                            }
                        }
                        Err(e) => {
                            conn.put_back([canonical]);
                            conn.state().failed = Some(e);
                        }
                    }
                }
                BodyFraming::Empty => conn.put_back([canonical, Bytes::from(rest)]),
            }
            NextHead::Request(Box::new(head))
        }
        Ok(None) => NextHead::Closed,
        Err(refusal) => NextHead::Refused(refusal),
    }
}

/// Reads until a head is complete: the head and the bytes read past it,
/// `None` if the connection ends first.
async fn read_head<S>(
    conn: &mut Replay<S>,
    max_bytes: usize,
) -> Result<Option<(RequestHead, Vec<u8>)>, EdgeRefusal>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let mut piece = vec![0u8; FIRST_READ];
    loop {
        let n = match conn.read(&mut piece).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&piece[..n]);
        // A head can only end with a line: parsing again only when one
        // ended keeps a head dribbled byte by byte from costing a parse
        // per byte.
        if piece[..n].contains(&b'\n') || buf.len() >= max_bytes {
            if let Some((head, len)) = parse_head(&buf, max_bytes)? {
                let rest = buf.split_off(len);
                return Ok(Some((head, rest)));
            }
        }
        if n == piece.len() && piece.len() < READ_SIZE {
            piece = vec![0u8; READ_SIZE];
        }
    }
}

/// The head async-h1 parses in place of the real one: what it acts on, in a
/// form it accepts whatever the request's method, target or version.
fn canonical_head(head: &RequestHead) -> Bytes {
    // HEAD decides whether async-h1 writes a response body.
    let method = if head.method == http::Method::HEAD {
        "HEAD"
    } else {
        "GET"
    };
    let mut out = format!("{method} / HTTP/1.1\r\nhost: anpx\r\n");
    match head.framing {
        BodyFraming::Empty => {}
        BodyFraming::Length(n) => out.push_str(&format!("content-length: {n}\r\n")),
        BodyFraming::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
    }
    if head.expect_continue {
        out.push_str("expect: 100-continue\r\n");
    }
    let connection_upgrade = head
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if head.wants_upgrade && connection_upgrade {
        out.push_str("upgrade: websocket\r\nconnection: upgrade\r\n");
    } else if !head.keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    Bytes::from(out)
}

/// Answers a refused head the way hyper does: the status, no body, and the
/// connection closes.
pub(crate) async fn answer_refusal<S>(conn: &mut S, status: u16)
where
    S: AsyncWrite + Unpin,
{
    let mut response = http_types::Response::new(crate::upstream::status_code(status));
    response.insert_header("connection", "close");
    // An empty body labels itself octet-stream; hyper's answer has no type.
    response.remove_header("content-type");
    let mut encoded = async_h1::server::Encoder::new(response, http_types::Method::Get);
    let mut bytes = Vec::new();
    if encoded.read_to_end(&mut bytes).await.is_ok() {
        let write = async {
            let _ = conn.write_all(&bytes).await;
            let _ = conn.flush().await;
        };
        // A client that does not read its answer does not hold the task.
        let give_up = async {
            smol::Timer::after(Duration::from_secs(5)).await;
        };
        smol::future::or(write, give_up).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::Cursor;

    fn replay(bytes: &[u8]) -> Replay<Cursor<Vec<u8>>> {
        Replay::new(Cursor::new(bytes.to_vec()))
    }

    async fn read_all(conn: &mut Replay<Cursor<Vec<u8>>>) -> Vec<u8> {
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        out
    }

    #[test]
    fn a_checked_head_is_replayed_in_canonical_form_before_the_rest() {
        smol::block_on(async {
            let limits = EdgeLimits::default();
            let mut conn = replay(
                b"PURGE /a/../b?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n",
            );
            let NextHead::Request(head) =
                next_head(&mut conn, &limits, &mut HeadClock::new()).await
            else {
                panic!("refused");
            };
            assert_eq!(head.method.as_str(), "PURGE");
            assert_eq!(head.uri.path(), "/a/../b");
            // One piece per read: the canonical head alone, then the body.
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap();
            assert_eq!(
                &buf[..n],
                b"GET / HTTP/1.1\r\nhost: anpx\r\ncontent-length: 3\r\n\r\n"
            );
            let n = conn.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"abc");
            assert_eq!(read_all(&mut conn).await, b"GET /next HTTP/1.1\r\n");
        });
    }

    #[test]
    fn heads_longer_than_the_first_read_are_read_whole() {
        smol::block_on(async {
            let limits = EdgeLimits::default();
            // Around the first read's size and past the larger pieces'.
            for len in [FIRST_READ - 40, FIRST_READ, FIRST_READ + 1, 3 * READ_SIZE] {
                let mut raw = b"GET /long HTTP/1.1\r\nx-long: ".to_vec();
                raw.resize(len, b'v');
                raw.extend_from_slice(b"\r\n\r\nGET /next HTTP/1.1\r\n");
                let mut conn = replay(&raw);
                let NextHead::Request(head) =
                    next_head(&mut conn, &limits, &mut HeadClock::new()).await
                else {
                    panic!("refused at {len}");
                };
                let value = head.headers.get("x-long").unwrap();
                assert_eq!(value.len(), len - b"GET /long HTTP/1.1\r\nx-long: ".len());
                let mut canonical = [0u8; 1024];
                let n = conn.read(&mut canonical).await.unwrap();
                assert!(canonical[..n].starts_with(b"GET / HTTP/1.1\r\n"));
                assert_eq!(read_all(&mut conn).await, b"GET /next HTTP/1.1\r\n");
            }
        });
    }

    #[test]
    fn refused_heads_and_a_closed_connection() {
        smol::block_on(async {
            let limits = EdgeLimits {
                max_header_bytes: 64,
                ..EdgeLimits::default()
            };
            let refused = |raw: &'static [u8]| async move {
                match next_head(&mut replay(raw), &limits, &mut HeadClock::new()).await {
                    NextHead::Refused(r) => Some(r),
                    _ => None,
                }
            };
            assert_eq!(
                refused(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").await,
                Some(EdgeRefusal::Malformed)
            );
            let big = [b'a'; 100];
            let mut raw = b"GET / HTTP/1.1\r\nx: ".to_vec();
            raw.extend_from_slice(&big);
            let mut conn = replay(&raw);
            assert!(matches!(
                next_head(&mut conn, &limits, &mut HeadClock::new()).await,
                NextHead::Refused(EdgeRefusal::HeadTooLarge)
            ));
            let mut conn = replay(b"GET / HT");
            assert!(matches!(
                next_head(&mut conn, &limits, &mut HeadClock::new()).await,
                NextHead::Closed
            ));
        });
    }

    #[test]
    fn a_silent_client_times_out() {
        smol::block_on(async {
            let limits = EdgeLimits {
                header_read_timeout: Duration::from_millis(50),
                ..EdgeLimits::default()
            };
            let (_keep, server) = smol::net::unix::UnixStream::pair().unwrap();
            let mut conn = Replay::new(server);
            assert!(matches!(
                next_head(&mut conn, &limits, &mut HeadClock::new()).await,
                NextHead::Refused(EdgeRefusal::HeadTimeout)
            ));
        });
    }

    #[test]
    fn a_refusal_is_answered_like_hyper_does() {
        smol::block_on(async {
            let mut out = Cursor::new(Vec::new());
            answer_refusal(&mut out, 431).await;
            let text = String::from_utf8(out.into_inner()).unwrap();
            assert!(
                text.starts_with(
                    "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: "
                ),
                "{text:?}"
            );
            assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        });
    }

    /// A socket that records each write it is given, a gathered write as
    /// one.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Writes {
        fn taken(&self) -> Vec<Vec<u8>> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len();
            self.0.lock().unwrap().push(all);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_held_answer_leaves_in_one_write_at_the_flush() {
        smol::block_on(async {
            let socket = Writes::default();
            let mut conn = Replay::new(socket.clone());
            conn.hold();
            conn.write_all(b"head ").await.unwrap();
            conn.write_all(b"body").await.unwrap();
            assert!(socket.taken().is_empty());
            conn.flush().await.unwrap();
            assert_eq!(socket.taken(), [b"head body".to_vec()]);
            // The flush ended the hold: the next write goes out as is.
            conn.write_all(b"more").await.unwrap();
            assert_eq!(socket.taken(), [b"more".to_vec()]);
        });
    }

    #[test]
    fn a_held_body_grows_its_hold_once_and_leaves_whole() {
        smol::block_on(async {
            let socket = Writes::default();
            let mut conn = Replay::new(socket.clone());
            conn.hold();
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let mut grown = Vec::new();
            for piece in body.chunks(8 * 1024) {
                conn.write_all(piece).await.unwrap();
                grown.push(conn.state().held.capacity());
            }
            conn.flush().await.unwrap();
            // Past the first few KiB the hold is the whole limit at once,
            // not doubled into it with a copy at each step.
            assert!(
                grown.iter().all(|&c| c <= HOLD_KEEP || c == HOLD_MAX),
                "hold capacities {grown:?}"
            );
            let writes = socket.taken();
            assert!(writes.iter().all(|w| w.len() <= HOLD_MAX + 8 * 1024));
            let sent: Vec<u8> = writes.concat();
            assert_eq!(&sent[..19], b"HTTP/1.1 200 OK\r\n\r\n");
            assert_eq!(&sent[19..], &body[..]);
        });
    }

    #[test]
    fn held_bytes_leave_when_the_body_waits() {
        let socket = Writes::default();
        let mut conn = Replay::new(socket.clone());
        conn.hold();
        smol::block_on(conn.write_all(b"head")).unwrap();
        use futures_util::TryStreamExt;
        let never = futures_util::stream::pending::<io::Result<Vec<u8>>>();
        let waiting = futures_util::io::BufReader::new(never.into_async_read());
        let mut body = conn.released(waiting);
        let mut buf = [0u8; 16];
        let polled = Pin::new(&mut body)
            .poll_read(&mut Context::from_waker(std::task::Waker::noop()), &mut buf);
        assert!(polled.is_pending());
        assert_eq!(socket.taken(), [b"head".to_vec()]);
    }

    #[test]
    fn a_cut_connection_reads_nothing_more() {
        smol::block_on(async {
            let mut conn = replay(b"more body");
            conn.put_back([Bytes::from_static(b"queued")]);
            conn.cutter().cut();
            assert!(read_all(&mut conn).await.is_empty());
        });
    }

    #[test]
    fn canonical_heads_carry_framing_continue_upgrade_and_close() {
        let head = |raw: &str| parse_head(raw.as_bytes(), 4096).unwrap().unwrap().0;
        let c = |raw: &str| String::from_utf8(canonical_head(&head(raw)).to_vec()).unwrap();
        assert_eq!(
            c("HEAD /x HTTP/1.0\r\n\r\n"),
            "HEAD / HTTP/1.1\r\nhost: anpx\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            c("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"),
            "GET / HTTP/1.1\r\nhost: anpx\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n"
        );
        assert_eq!(
            c("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "GET / HTTP/1.1\r\nhost: anpx\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
    }
}
