//! HTTP/1 request heads at the public edge: where a head ends, whether it
//! fits the limits, and how the body after it is framed. The rules are the
//! ones hyper (the tokio shell's server) applies, so a shell that reads
//! request heads itself refuses the same requests with the same status:
//!
//! - more than [`MAX_HEADERS`] headers, or a head over the byte limit: 431;
//! - anything httparse or the `http` types reject, a `Content-Length` that
//!   is not digits or that disagrees with another, `Transfer-Encoding` in
//!   HTTP/1.0 or not ending in `chunked`: 400;
//! - `Content-Length` with `Transfer-Encoding`: the chunked framing wins,
//!   the length is dropped, and the connection closes after the answer
//!   (RFC 9112 §6.1), so what the length covered is never read as another
//!   request.
//!
//! ```
//! use anpx_core::edge::head::{parse_head, BodyFraming};
//!
//! let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
//! let (head, len) = parse_head(raw, 1024).unwrap().unwrap();
//! assert_eq!((head.framing, len), (BodyFraming::Length(5), raw.len() - 5));
//! // Not complete yet: read on.
//! assert!(parse_head(&raw[..20], 1024).unwrap().is_none());
//! ```

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};

use super::EdgeRefusal;

/// The most headers a request head may carry (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed the edge's checks.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target as sent (origin or absolute form).
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The headers, in order; a `Content-Length` overridden by
    /// `Transfer-Encoding` is left out.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// The client asks to switch protocols (HTTP/1.1 `Upgrade`).
    pub wants_upgrade: bool,
}

/// Looks for a complete request head at the start of `buf`, allowing at
/// most `max_bytes` for it. `Ok(None)`: not complete yet and still within
/// the limit, read more. `Ok(Some((head, len)))`: the head and how many
/// bytes of `buf` it took; what follows is the body or the next request.
pub fn parse_head(
    buf: &[u8],
    max_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, EdgeRefusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => Err(EdgeRefusal::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) if len > max_bytes => Err(EdgeRefusal::HeadTooLarge),
        Ok(httparse::Status::Complete(len)) => check(&req).map(|head| Some((head, len))),
        Err(httparse::Error::TooManyHeaders) => Err(EdgeRefusal::HeadTooLarge),
        Err(_) => Err(EdgeRefusal::Malformed),
    }
}

fn check(req: &httparse::Request<'_, '_>) -> Result<RequestHead, EdgeRefusal> {
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(EdgeRefusal::Malformed);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| EdgeRefusal::Malformed)?;
    let uri: Uri = path.parse().map_err(|_| EdgeRefusal::Malformed)?;
    let http11 = minor == 1;
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut content_length: Option<u64> = None;
    let mut saw_length = false;
    let mut chunked: Option<bool> = None;
    let mut expect_continue = false;
    let mut wants_upgrade = false;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| EdgeRefusal::Malformed)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| EdgeRefusal::Malformed)?;
        match name {
            header::TRANSFER_ENCODING => {
                if !http11 {
                    return Err(EdgeRefusal::Malformed);
                }
                if content_length.take().is_some() {
                    headers.remove(header::CONTENT_LENGTH);
                }
                chunked = Some(ends_in_chunked(&value));
            }
            header::CONTENT_LENGTH => {
                saw_length = true;
                if chunked.is_some() {
                    continue;
                }
                let n = content_length_of(&value).ok_or(EdgeRefusal::Malformed)?;
                match content_length {
                    Some(before) if before != n => return Err(EdgeRefusal::Malformed),
                    // The same length again adds nothing.
                    Some(_) => continue,
                    None => content_length = Some(n),
                }
            }
            header::CONNECTION => {
                if saw_close || has_token(&value, "close") {
                    // A later `keep-alive` does not undo a `close`.
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
            }
            header::EXPECT => {
                expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            }
            header::UPGRADE => wants_upgrade = http11,
            _ => {}
        }
        headers.append(name, value);
    }
    let framing = match (chunked, content_length) {
        (Some(false), _) => return Err(EdgeRefusal::Malformed),
        (Some(true), _) => BodyFraming::Chunked,
        (None, Some(0) | None) => BodyFraming::Empty,
        (None, Some(n)) => BodyFraming::Length(n),
    };
    if chunked.is_some() && saw_length {
        keep_alive = false;
    }
    Ok(RequestHead {
        method,
        uri,
        version: if http11 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        },
        headers,
        framing,
        keep_alive,
        expect_continue: expect_continue && http11,
        wants_upgrade,
    })
}

/// `chunked` is the last transfer coding (only then is the body's end
/// known).
fn ends_in_chunked(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// A `Content-Length` value: digits only. A comma-separated list, even of
/// one length repeated, is refused, as hyper refuses it in a request;
/// separate equal `Content-Length` lines are one length.
fn content_length_of(value: &HeaderValue) -> Option<u64> {
    let digits = value.to_str().ok()?.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The length of the chunked body at the start of `buf` (up to and
/// including the blank line after the last chunk and its trailers), when
/// `buf` holds all of it; `None` when it does not, or does not look like
/// chunked framing (the decoder reading it then says so).
///
/// ```
/// use anpx_core::edge::head::chunked_body_len;
/// assert_eq!(chunked_body_len(b"3\r\nabc\r\n0\r\n\r\nGET /"), Some(13));
/// assert_eq!(chunked_body_len(b"3\r\nabc\r\n0\r\nx: y\r\n"), None);
/// ```
pub fn chunked_body_len(buf: &[u8]) -> Option<usize> {
    let line_end = |from: usize| {
        buf.get(from..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let mut at = 0;
    loop {
        let end = line_end(at)?;
        let line = &buf[at..end];
        let size = line.split(|b| *b == b';').next().unwrap_or(line);
        let size = std::str::from_utf8(size).ok()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        at = end + 2;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let end = line_end(at)?;
                if end == at {
                    return Some(at + 2);
                }
                at = end + 2;
            }
        }
        at = at.checked_add(size)?;
        if buf.get(at..at.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(raw: &str) -> Result<Option<(RequestHead, usize)>, EdgeRefusal> {
        parse_head(raw.as_bytes(), 64 * 1024)
    }

    fn head(raw: &str) -> RequestHead {
        parse(raw).unwrap().expect("complete").0
    }

    fn refusal(raw: &str) -> EdgeRefusal {
        parse(raw).unwrap_err()
    }

    #[test]
    fn plain_heads_and_their_framing() {
        let h = head("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.uri.path(), "/a");
        assert_eq!(h.uri.query(), Some("b=1"));
        assert_eq!(h.framing, BodyFraming::Empty);
        assert!(h.keep_alive);
        let h = head("POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(7));
        assert_eq!(h.headers.get_all(header::CONTENT_LENGTH).iter().count(), 1);
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(h.keep_alive);
        // Custom methods are requests like any other.
        assert_eq!(head("PURGE /x HTTP/1.1\r\n\r\n").method.as_str(), "PURGE");
    }

    #[test]
    fn connection_expect_and_upgrade() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n")
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expect_continue);
        assert!(!head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        assert!(head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").wants_upgrade);
        assert!(!head("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n").wants_upgrade);
    }

    #[test]
    fn length_with_chunked_keeps_chunked_and_closes() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n",
        ] {
            let h = head(raw);
            assert_eq!(h.framing, BodyFraming::Chunked, "{raw}");
            assert!(!h.keep_alive, "{raw}");
            assert!(!h.headers.contains_key(header::CONTENT_LENGTH), "{raw}");
        }
    }

    #[test]
    fn malformed_and_smuggling_heads_are_refused() {
        for raw in [
            "GARBAGE\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost api.agent.com\r\n\r\n",
            "GET /he alth HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            assert_eq!(refusal(raw), EdgeRefusal::Malformed, "{raw:?}");
        }
    }

    #[test]
    fn heads_over_the_limits_get_431() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(
            parse_head(big.as_bytes(), 1024).unwrap_err(),
            EdgeRefusal::HeadTooLarge
        );
        assert!(parse_head(big.as_bytes(), big.len()).unwrap().is_some());
        // Incomplete but already over the limit: no need to wait for more.
        assert_eq!(
            parse_head(&big.as_bytes()[..1500], 1024).unwrap_err(),
            EdgeRefusal::HeadTooLarge
        );
        assert!(parse_head(&big.as_bytes()[..1000], 1024).unwrap().is_none());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            refusal(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            EdgeRefusal::HeadTooLarge
        );
    }

    #[test]
    fn chunked_bodies_are_measured_only_when_whole() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\n";
        let mut buf = body.to_vec();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        assert_eq!(chunked_body_len(&buf), Some(body.len()));
        for cut in 0..body.len() {
            assert_eq!(chunked_body_len(&body[..cut]), None, "{cut}");
        }
        assert_eq!(chunked_body_len(b"0\r\n\r\n"), Some(5));
        assert_eq!(chunked_body_len(b"zz\r\n"), None);
        assert_eq!(chunked_body_len(b"3\r\nabcX\r\n0\r\n\r\n"), None);
        assert_eq!(chunked_body_len(b"ffffffffffffffffff\r\n"), None);
    }

    proptest! {
        /// A measured chunked body never claims more than the buffer.
        #[test]
        fn chunked_lengths_stay_within_the_buffer(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Some(n) = chunked_body_len(&bytes) {
                prop_assert!(n <= bytes.len());
            }
        }

        /// Whatever the bytes, a head is refused, incomplete, or complete
        /// within the buffer and the limit; never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), max in 1usize..700) {
            match parse_head(&bytes, max) {
                Ok(Some((_, len))) => prop_assert!(len <= bytes.len() && len <= max),
                Ok(None) => prop_assert!(bytes.len() < max),
                Err(_) => {}
            }
        }
    }
}
