//! Reading a local HTTP service's response: the head, then the body as
//! its framing says (chunked, a declared length, or up to the close).
//!
//! The request still goes out through async-h1's encoder, but its response
//! decoder is not used: when the end of a chunked body (the empty line
//! after the last chunk) arrives split across reads, that decoder returns
//! `Pending` without arranging to be woken, so the relay stalls with the
//! whole body delivered but never ended, until the gateway's request
//! timeout cuts the public response mid-body. Every `Pending` here comes
//! from the socket itself.
//!
//! A connection whose response was read to its end, with nothing after it
//! and no `connection: close`, can carry another request: [`exchange`]
//! hands it to a [`Recycler`] then (the receiver's upstream keeps a pool).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use http_types::{Body, Request, Response};

use crate::head_edit::{carried, encode_request};
use crate::upstream::status_code;

/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response head may carry.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 4096;
/// The most bytes of trailers after the last chunk (they are dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// The connection failed or closed before the head was complete.
    #[error("reading the response head: {0}")]
    Io(#[from] io::Error),
    /// The head is not valid HTTP/1.x.
    #[error("malformed response head: {0}")]
    Malformed(String),
    /// The head is larger than [`MAX_HEAD`].
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The connection failed or closed before any byte of the response
    /// arrived: on a reused connection, most likely the service closed it
    /// while it was idle, and a request without a body can be sent again.
    #[error("the connection closed before any response: {0}")]
    NotAnswered(io::Error),
}

/// A service's response as read from its connection: what the relay needs,
/// without the http-types [`Response`] (a map that hashes and allocates
/// each name, and adds a `content-type` to a response that has none).
pub(crate) struct ServiceResponse {
    /// The status code.
    pub(crate) status: u16,
    /// The headers in the service's order, names lowercased (as hyper
    /// gives them to the tokio shell); `content-length` left out where
    /// the body is not framed by it (chunked, or after a `101`).
    pub(crate) headers: Vec<(String, String)>,
    /// The body, framed as the head says.
    pub(crate) body: Body,
}

impl ServiceResponse {
    /// The same response as http-types', for [`Upstream`](crate::upstream::Upstream)'s API.
    /// A value that is not ASCII is left out: http-types takes none (its
    /// `append_header` panics on one).
    pub(crate) fn into_response(self) -> Response {
        let mut response = Response::new(status_code(self.status));
        for (name, value) in &self.headers {
            if carried(value) {
                response.append_header(name.as_str(), value.as_str());
            }
        }
        let typed = response.header(http_types::headers::CONTENT_TYPE).is_some();
        response.set_body(self.body);
        // `set_body` labels a response that has no type with the body's.
        if !typed {
            response.remove_header(http_types::headers::CONTENT_TYPE);
        }
        response
    }
}

/// Takes back a connection whose response was read to its end, for the
/// next request.
pub(crate) type Recycler<S> = Box<dyn FnOnce(S) + Send + Sync>;

/// Sends `request` over `stream` (async-h1 encodes it) and reads the
/// response. `recycle` gets the connection back once the response's body
/// has been read to its end, when the connection may be used again.
pub(crate) async fn exchange<S>(
    mut stream: S,
    request: Request,
    recycle: Option<Recycler<S>>,
) -> Result<ServiceResponse, ResponseError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let head_request = request.method() == http_types::Method::Head;
    futures_util::io::copy(encode_request(request), &mut stream)
        .await
        .map_err(ResponseError::NotAnswered)?;
    read_response(stream, head_request, recycle).await
}

/// A request without a body, as async-h1 encodes it: sent again as is
/// when a reused connection turns out closed.
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    head_request: bool,
}

impl Encoded {
    /// A request's bytes, written elsewhere (`crate::bodiless`).
    pub(crate) fn from_bytes(bytes: Vec<u8>, head_request: bool) -> Encoded {
        Encoded {
            bytes,
            head_request,
        }
    }

    /// The bytes sent.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) async fn new(request: Request) -> io::Result<Encoded> {
        let head_request = request.method() == http_types::Method::Head;
        let mut bytes = Vec::new();
        encode_request(request).read_to_end(&mut bytes).await?;
        Ok(Encoded {
            bytes,
            head_request,
        })
    }
}

/// [`exchange`] for a request encoded beforehand.
pub(crate) async fn exchange_encoded<S>(
    mut stream: S,
    request: &Encoded,
    recycle: Option<Recycler<S>>,
) -> Result<ServiceResponse, ResponseError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    stream
        .write_all(&request.bytes)
        .await
        .map_err(ResponseError::NotAnswered)?;
    read_response(stream, request.head_request, recycle).await
}

/// Reads one response from `stream`. `head_request`: the request was
/// `HEAD`, so the response has no body whatever its headers say.
pub async fn read<S>(stream: S, head_request: bool) -> Result<Response, ResponseError>
where
    S: AsyncRead + Unpin + Send + Sync + 'static,
{
    Ok(read_response(stream, head_request, None)
        .await?
        .into_response())
}

/// The read buffer of a response's head (and of its body, for reads
/// smaller than this).
const HEAD_BUFFER: usize = 2 * 1024;

async fn read_response<S>(
    stream: S,
    head_request: bool,
    recycle: Option<Recycler<S>>,
) -> Result<ServiceResponse, ResponseError>
where
    S: AsyncRead + Unpin + Send + Sync + 'static,
{
    // The buffer is zero-filled when made, for every response: a small one
    // holds a usual head, and body reads of its size or more bypass it.
    let mut reader = BufReader::with_capacity(HEAD_BUFFER, stream);
    let mut head = Vec::new();
    loop {
        let n = (&mut reader)
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .await
            .map_err(|e| {
                if head.is_empty() {
                    ResponseError::NotAnswered(e)
                } else {
                    ResponseError::Io(e)
                }
            })?;
        if n == 0 {
            if head.len() > MAX_HEAD {
                return Err(ResponseError::HeadTooLarge);
            }
            let eof = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response head was complete",
            );
            return Err(if head.is_empty() {
                ResponseError::NotAnswered(eof)
            } else {
                ResponseError::Io(eof)
            });
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(ResponseError::HeadTooLarge);
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ResponseError::Malformed("incomplete head".into()))
        }
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    }
    let code = parsed
        .code
        .ok_or_else(|| ResponseError::Malformed("no status code".into()))?;
    let mut fields = Vec::with_capacity(parsed.headers.len());
    let mut chunked = false;
    let mut length: Option<u64> = None;
    // HTTP/1.0 closes by default (a keep-alive opt-in is not worth
    // following here).
    let mut reusable = parsed.version == Some(1);
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ResponseError::Malformed(format!("header {} is not UTF-8", h.name)))?;
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = value.trim().parse::<u64>().map_err(|_| {
                ResponseError::Malformed(format!("invalid content-length {value:?}"))
            })?;
            if length.is_some_and(|m| m != n) {
                return Err(ResponseError::Malformed(
                    "conflicting content-length headers".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
        {
            reusable = false;
        }
        fields.push((h.name.to_ascii_lowercase(), value.to_owned()));
    }
    // RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked wins over
    // a length; otherwise the body runs to the close. After a 101 the
    // connection speaks the protocol switched to: what follows is its
    // bytes, to the close, whatever the head says.
    let bodiless = head_request || code < 200 || code == 204 || code == 304;
    let mut conn = Conn {
        reader: Some(reader),
        recycle: recycle.filter(|_| reusable && code != 101),
    };
    if code == 101 || chunked {
        fields.retain(|(name, _)| name != "content-length");
    }
    let body = if code == 101 {
        Body::from_reader(conn, None)
    } else if bodiless {
        conn.ended();
        Body::empty()
    } else if chunked {
        Body::from_reader(BufReader::new(Chunked::new(conn)), None)
    } else if let Some(n) = length {
        if n == 0 {
            conn.ended();
        }
        // No buffer of its own: buffered reads come out of the
        // connection's, and reads of a known length go past it.
        Body::from_reader(
            Exact {
                inner: conn,
                left: n,
            },
            usize::try_from(n).ok(),
        )
    } else {
        Body::from_reader(conn, None)
    };
    Ok(ServiceResponse {
        status: code,
        headers: fields,
        body,
    })
}

/// A reader told when the body it carries has been read to its end.
pub(crate) trait BodyEnd {
    /// The body's last byte has been read.
    fn ended(&mut self) {}
}

impl<R> BodyEnd for BufReader<R> {}

/// The connection a response is read from; at the body's end it goes to
/// its recycler if nothing follows the body (bytes after it would be a
/// service breaking HTTP, and would corrupt the next response).
struct Conn<S> {
    reader: Option<BufReader<S>>,
    recycle: Option<Recycler<S>>,
}

impl<S> BodyEnd for Conn<S> {
    fn ended(&mut self) {
        let Some(recycle) = self.recycle.take() else {
            return;
        };
        if self.reader.as_ref().is_some_and(|r| r.buffer().is_empty()) {
            if let Some(reader) = self.reader.take() {
                recycle(reader.into_inner());
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.reader.as_mut() {
            Some(r) => Pin::new(r).poll_read(cx, out),
            None => Poll::Ready(Ok(0)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncBufRead for Conn<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        match self.get_mut().reader.as_mut() {
            Some(r) => Pin::new(r).poll_fill_buf(cx),
            None => Poll::Ready(Ok(&[])),
        }
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        if let Some(r) = self.reader.as_mut() {
            Pin::new(r).consume(amt);
        }
    }
}

/// A body of a declared length: ends after exactly that many bytes, and a
/// close before them is an error, not a shorter body.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: AsyncRead + BodyEnd + Unpin> AsyncRead for Exact<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.left == 0 || out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Read, not copied out of the connection's buffer: a read larger
        // than that buffer goes to the socket whole once it is empty,
        // rather than 8 KiB at a time.
        let max = out
            .len()
            .min(usize::try_from(this.left).unwrap_or(usize::MAX));
        let n = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut out[..max]))?;
        if n == 0 {
            return Poll::Ready(Err(closed_before_end(this.left)));
        }
        this.left -= n as u64;
        if this.left == 0 {
            this.inner.ended();
        }
        Poll::Ready(Ok(n))
    }
}

impl<R: AsyncBufRead + BodyEnd + Unpin> AsyncBufRead for Exact<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let left = this.left;
        if left == 0 {
            return Poll::Ready(Ok(&[]));
        }
        let held = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
        if held.is_empty() {
            return Poll::Ready(Err(closed_before_end(left)));
        }
        let max = held.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        Poll::Ready(Ok(&held[..max]))
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        let this = &mut *self;
        Pin::new(&mut this.inner).consume(amt);
        this.left -= amt as u64;
        if amt > 0 && this.left == 0 {
            this.inner.ended();
        }
    }
}

fn closed_before_end(left: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed {left} bytes before the end of the body or chunk"),
    )
}

/// Copies at most `left` bytes of what `inner` holds into `out`; a close
/// before any byte is an error (the body was cut short).
fn poll_copy<R: AsyncBufRead + Unpin>(
    inner: &mut R,
    cx: &mut Context<'_>,
    out: &mut [u8],
    left: u64,
) -> Poll<io::Result<usize>> {
    let available = ready!(Pin::new(&mut *inner).poll_fill_buf(cx))?;
    if available.is_empty() {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed {left} bytes before the end of the body or chunk"),
        )));
    }
    let n = available
        .len()
        .min(out.len())
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    out[..n].copy_from_slice(&available[..n]);
    Pin::new(inner).consume(n);
    Poll::Ready(Ok(n))
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// Reading the line break after a chunk's data.
    DataEnd,
    /// After the last chunk: reading trailer lines up to the empty one,
    /// with this many trailer bytes read so far.
    Trailers(usize),
    /// The body is complete.
    Done,
}

/// Decodes a chunked body (RFC 9112 §7.1). Trailers are read and dropped.
pub(crate) struct Chunked<R> {
    inner: R,
    state: State,
    /// The current line, gathered across reads.
    line: Vec<u8>,
}

impl<R> Chunked<R> {
    pub(crate) fn new(inner: R) -> Self {
        Chunked {
            inner,
            state: State::Size,
            line: Vec::new(),
        }
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl<R: AsyncBufRead + Unpin> Chunked<R> {
    /// Gathers bytes into `self.line` up to and including a LF.
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let available = ready!(Pin::new(&mut self.inner).poll_fill_buf(cx))?;
            if available.is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                )));
            }
            let (take, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.line.len() + take > MAX_LINE {
                return Poll::Ready(Err(invalid("chunked body line too long")));
            }
            self.line.extend_from_slice(&available[..take]);
            Pin::new(&mut self.inner).consume(take);
            if complete {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// True for a line holding only its line break.
fn is_empty_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

impl<R: AsyncBufRead + BodyEnd + Unpin> AsyncRead for Chunked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Done => return Poll::Ready(Ok(0)),
                State::Size => {
                    ready!(this.poll_line(cx))?;
                    let size = match httparse::parse_chunk_size(&this.line) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => {
                            return Poll::Ready(Err(invalid(format!(
                                "invalid chunk size line {:?}",
                                String::from_utf8_lossy(&this.line)
                            ))))
                        }
                    };
                    this.line.clear();
                    this.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if out.is_empty() {
                        return Poll::Ready(Ok(0));
                    }
                    let n = ready!(poll_copy(&mut this.inner, cx, out, left))?;
                    let left = left - n as u64;
                    this.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Poll::Ready(Ok(n));
                }
                State::DataEnd => {
                    ready!(this.poll_line(cx))?;
                    if !is_empty_line(&this.line) {
                        return Poll::Ready(Err(invalid("chunk data longer than its size")));
                    }
                    this.line.clear();
                    this.state = State::Size;
                }
                State::Trailers(seen) => {
                    ready!(this.poll_line(cx))?;
                    let seen = seen + this.line.len();
                    if seen > MAX_TRAILERS {
                        return Poll::Ready(Err(invalid("trailers too large")));
                    }
                    let last = is_empty_line(&this.line);
                    this.line.clear();
                    if last {
                        this.state = State::Done;
                        this.inner.ended();
                    } else {
                        this.state = State::Trailers(seen);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::{AsyncReadExt, Cursor};
    use std::collections::VecDeque;

    /// A reader that hands out `pieces` one per read, answering `Pending`
    /// (after waking itself) between them, like a socket whose bytes come
    /// in separate segments.
    struct Pieces {
        pieces: VecDeque<Vec<u8>>,
        pending: bool,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.pending {
                self.pending = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pending = true;
            let Some(mut piece) = self.pieces.pop_front() else {
                return Poll::Ready(Ok(0));
            };
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                piece.drain(..n);
                self.pieces.push_front(piece);
            }
            Poll::Ready(Ok(n))
        }
    }

    fn decode(pieces: &[&[u8]]) -> io::Result<Vec<u8>> {
        let reader = Pieces {
            pieces: pieces
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.to_vec())
                .collect(),
            pending: false,
        };
        let mut chunked = Chunked::new(BufReader::new(reader));
        let mut out = Vec::new();
        smol::block_on(chunked.read_to_end(&mut out))?;
        Ok(out)
    }

    /// Every split of a body into two reads decodes to the same bytes.
    #[test]
    fn every_split_point_decodes_the_same() {
        let wire: &[u8] = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        for at in 0..=wire.len() {
            let (a, b) = wire.split_at(at);
            assert_eq!(
                decode(&[a, b]).unwrap(),
                b"hello 0123456789",
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode(&bytes).unwrap(), b"hello 0123456789");
    }

    #[test]
    fn a_close_before_the_end_is_an_error() {
        let wire: &[u8] = b"5\r\nhello\r\n0\r\n";
        for at in 0..wire.len() {
            let err = decode(&[&wire[..at]]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {at}");
        }
    }

    #[test]
    fn malformed_framing_is_an_error() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"3\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            let err = decode(&[wire]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{wire:?}");
        }
        let long = [b"1;".as_slice(), &[b'a'; MAX_LINE], b"\r\n"].concat();
        assert_eq!(
            decode(&[&long]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_declared_length_cut_short_is_an_error() {
        let reader = Pieces {
            pieces: VecDeque::from([b"hel".to_vec()]),
            pending: false,
        };
        let mut exact = Exact {
            inner: BufReader::new(reader),
            left: 5,
        };
        let mut out = Vec::new();
        let err = smol::block_on(exact.read_to_end(&mut out)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out, b"hel");
    }

    #[test]
    fn a_head_longer_than_its_buffer_and_the_body_after_it_are_read_whole() {
        for value_len in [HEAD_BUFFER - 60, HEAD_BUFFER, 3 * HEAD_BUFFER] {
            let value = "v".repeat(value_len);
            let body = vec![b'b'; 3 * HEAD_BUFFER + 5];
            let wire = [
                format!(
                    "HTTP/1.1 200 OK\r\nx-long: {value}\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
                &body,
            ]
            .concat();
            let (response, got) = smol::block_on(async {
                let mut response = read(Cursor::new(wire), false).await.unwrap();
                let got = response.take_body().into_bytes().await.unwrap();
                (response, got)
            });
            assert_eq!(response.header("x-long").unwrap().as_str(), value);
            assert_eq!(got, body, "value of {value_len} bytes");
        }
    }

    /// The head as the service wrote it, in its order, names lowercased;
    /// no `content-type` where the service sent none (http-types'
    /// `Response` adds `application/octet-stream`, which gave a 204, a
    /// 304 or a redirect a type the tokio shell did not); no
    /// `content-length` beside a chunked body; a value that is not ASCII
    /// kept (http-types' map panicked on one).
    #[test]
    fn the_head_is_relayed_as_the_service_wrote_it() {
        type Fields = &'static [(&'static str, &'static str)];
        let cases: [(&[u8], Fields); 3] = [
            (
                "HTTP/1.1 204 No Content\r\nX-B: 2\r\nx-a: 1\r\nX-B: 3\r\nx-name: caf\u{e9}\r\n\r\n"
                    .as_bytes(),
                &[("x-b", "2"), ("x-a", "1"), ("x-b", "3"), ("x-name", "caf\u{e9}")],
            ),
            (
                b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
                &[("location", "/x"), ("content-length", "0")],
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
                &[("transfer-encoding", "chunked")],
            ),
        ];
        for (wire, want) in cases {
            let response = smol::block_on(read_response(Cursor::new(wire), false, None)).unwrap();
            let got: Vec<(&str, &str)> = response
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            assert_eq!(got, want);
            let typed = response.into_response();
            assert!(typed.header("content-type").is_none());
            // http-types cannot hold a value that is not ASCII.
            assert!(typed.header("x-name").is_none());
        }
    }
}
