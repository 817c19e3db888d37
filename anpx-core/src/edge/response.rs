//! What a response head from a receiver must be before any of it reaches a
//! public client. A receiver is a peer the gateway does not trust with the
//! client's connection: a head a client would frame differently from the
//! gateway (a body on a 204, a length the body then contradicts, a header
//! line broken by CR or LF) lets one response's bytes be read as the
//! answer to the client's *next* request on that connection, which may be
//! for another receiver's route. So every head is checked here, once, in
//! the gateway state machine, for every shell and HTTP version:
//!
//! - the status is final, 200–599, or a 101 to a request that asked for an
//!   upgrade; anything else (1xx, 600, 999) is refused;
//! - header names are tokens, values carry no control character but tab
//!   (so no CR, LF or NUL), and there are at most
//!   [`ResponseLimits::max_headers`] of them, of at most
//!   [`ResponseLimits::max_header_bytes`] together;
//! - `Content-Length` is digits (repeats allowed only when equal) and is
//!   dropped from a 204 and from a response that also names a transfer
//!   coding (the receiver already decoded it);
//! - a response to `HEAD`, a 204 and a 304 have no body: whatever body the
//!   receiver sends is dropped ([`BodyCheck`]);
//! - a body longer or shorter than the declared `Content-Length` ends the
//!   response as cut, so the client's connection is closed rather than
//!   reused.
//!
//! ```
//! use anpx_core::edge::response::{check_head, Asked, BodyCheck, BodyRule, ResponseLimits};
//! use anpx_core::ResponseHead;
//!
//! let limits = ResponseLimits::default();
//! let mut head = ResponseHead::new(200).with_header("content-length", "5");
//! let rule = check_head(&mut head, Asked::default(), &limits).unwrap();
//! assert_eq!(rule, BodyRule::Length(5));
//! let mut body = BodyCheck::new(rule);
//! assert_eq!(body.piece(3), Ok(true));
//! assert!(body.end().is_err(), "two bytes short: the response is cut");
//!
//! let mut bad = ResponseHead::new(999);
//! assert!(check_head(&mut bad, Asked::default(), &limits).is_err());
//! ```

use super::field::{is_field_name, is_field_value};
use crate::message::ResponseHead;

/// The default cap on the header fields of one response.
pub const DEFAULT_MAX_RESPONSE_HEADERS: usize = 256;
/// The default cap on the size of one response's header fields, in bytes
/// (each counted as name, value and four bytes for `: ` and CRLF).
pub const DEFAULT_MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// Caps on a response head from a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Most header fields.
    pub max_headers: usize,
    /// Largest total size of the header fields, in bytes.
    pub max_header_bytes: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            max_headers: DEFAULT_MAX_RESPONSE_HEADERS,
            max_header_bytes: DEFAULT_MAX_RESPONSE_HEADER_BYTES,
        }
    }
}

/// What the public request asked for that decides how its response is
/// framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Asked {
    /// The method was `HEAD`: the response has no body.
    pub head: bool,
    /// The request asked to switch protocols: a 101 may answer it.
    pub upgrade: bool,
}

/// Why a response head was refused; the client gets 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadResponse {
    /// A 1xx other than an asked-for 101, or a status over 599.
    #[error("status {0} is not a final HTTP status")]
    Status(u16),
    /// A 101 to a request that asked for no upgrade.
    #[error("switched protocols unasked")]
    UnaskedSwitch,
    /// More header fields than [`ResponseLimits::max_headers`].
    #[error("{count} header fields, over the limit of {limit}")]
    TooManyHeaders {
        /// Fields in the head.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Header fields larger than [`ResponseLimits::max_header_bytes`].
    #[error("header fields over the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A header name that is not a token (RFC 9110 §5.1).
    #[error("header name {0:?} is not a token")]
    HeaderName(String),
    /// A header value with a control character (CR, LF, NUL, ...).
    #[error("header {0} has a control character in its value")]
    HeaderValue(String),
    /// A `Content-Length` that is not digits, or repeats that disagree.
    #[error("invalid content-length {0:?}")]
    ContentLength(String),
}

/// How the body of a checked response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// No body (`HEAD`, 204, 304): what the receiver sends is dropped.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Up to the end the receiver marks (chunked or close-delimited for
    /// the client; a switched connection's bytes).
    Open,
}

/// Checks `head` for a request that asked `asked`, fixing what can be
/// fixed without changing its meaning (see the [module docs](self)): a
/// 204's `Content-Length` and one beside a transfer coding are removed,
/// equal repeats become one. The rule its body must then follow, or why
/// it is refused.
pub fn check_head(
    head: &mut ResponseHead,
    asked: Asked,
    limits: &ResponseLimits,
) -> Result<BodyRule, BadResponse> {
    match head.status {
        101 if asked.upgrade => {}
        101 => return Err(BadResponse::UnaskedSwitch),
        200..=599 => {}
        other => return Err(BadResponse::Status(other)),
    }
    let count = head.headers.len();
    if count > limits.max_headers {
        return Err(BadResponse::TooManyHeaders {
            count,
            limit: limits.max_headers,
        });
    }
    let mut bytes = 0usize;
    let mut length: Option<u64> = None;
    let mut coded = false;
    for (name, value) in head.headers.iter() {
        bytes = bytes.saturating_add(name.len() + value.len() + 4);
        if bytes > limits.max_header_bytes {
            return Err(BadResponse::HeadersTooLarge {
                limit: limits.max_header_bytes,
            });
        }
        if !is_field_name(name) {
            return Err(BadResponse::HeaderName(name.to_owned()));
        }
        if !is_field_value(value) {
            return Err(BadResponse::HeaderValue(name.to_owned()));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(value)
                .filter(|n| length.is_none_or(|l| l == *n))
                .ok_or_else(|| BadResponse::ContentLength(value.to_owned()))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
        }
    }
    let no_body = asked.head || matches!(head.status, 204 | 304);
    let drop_length = head.status == 204 || coded || head.status == 101;
    if length.is_some() {
        head.headers
            .retain(|name, _| !name.eq_ignore_ascii_case("content-length"));
        if let (Some(n), false) = (length, drop_length) {
            head.headers.push("content-length", n.to_string());
        }
    }
    Ok(match (no_body, length) {
        (true, _) => BodyRule::None,
        (false, Some(n)) if !drop_length => BodyRule::Length(n),
        (false, _) => BodyRule::Open,
    })
}

/// A `Content-Length` value: digits, or a comma-separated list of the same
/// digits (RFC 9110 §8.6).
fn content_length(value: &str) -> Option<u64> {
    let mut length = None;
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = part.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// A body that broke its head's promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyMismatch {
    /// More bytes than `Content-Length` said.
    #[error("response body longer than its content-length of {declared}")]
    Longer {
        /// The declared length.
        declared: u64,
    },
    /// The body ended before `Content-Length` bytes.
    #[error("response body of {got} bytes ended short of its content-length of {declared}")]
    Shorter {
        /// The declared length.
        declared: u64,
        /// Bytes received.
        got: u64,
    },
}

/// Holds a response body to its [`BodyRule`] as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyCheck {
    rule: BodyRule,
    seen: u64,
}

impl BodyCheck {
    /// A check for a body under `rule`.
    pub fn new(rule: BodyRule) -> Self {
        BodyCheck { rule, seen: 0 }
    }

    /// The rule the body follows.
    pub fn rule(&self) -> BodyRule {
        self.rule
    }

    /// `n` more bytes arrived: `Ok(true)` to pass them on, `Ok(false)` to
    /// drop them (a response that has no body), `Err` when they overrun
    /// the declared length (none of them may be passed on).
    pub fn piece(&mut self, n: usize) -> Result<bool, BodyMismatch> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.seen = self.seen.saturating_add(n);
        match self.rule {
            BodyRule::None => Ok(false),
            BodyRule::Open => Ok(true),
            BodyRule::Length(declared) if self.seen > declared => {
                Err(BodyMismatch::Longer { declared })
            }
            BodyRule::Length(_) => Ok(true),
        }
    }

    /// The body ended: `Err` when it is shorter than declared.
    pub fn end(&self) -> Result<(), BodyMismatch> {
        match self.rule {
            BodyRule::Length(declared) if self.seen < declared => Err(BodyMismatch::Shorter {
                declared,
                got: self.seen,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(head: &mut ResponseHead, asked: Asked) -> Result<BodyRule, BadResponse> {
        check_head(head, asked, &ResponseLimits::default())
    }

    const PLAIN: Asked = Asked {
        head: false,
        upgrade: false,
    };

    #[test]
    fn statuses_outside_the_final_range_are_refused() {
        for status in [100, 102, 103, 199, 600, 999] {
            assert_eq!(
                check(&mut ResponseHead::new(status), PLAIN),
                Err(BadResponse::Status(status))
            );
        }
        assert_eq!(
            check(&mut ResponseHead::new(101), PLAIN),
            Err(BadResponse::UnaskedSwitch)
        );
        let upgrade = Asked {
            upgrade: true,
            ..PLAIN
        };
        assert_eq!(
            check(&mut ResponseHead::new(101), upgrade),
            Ok(BodyRule::Open)
        );
        for status in [200, 299, 404, 599] {
            assert_eq!(
                check(&mut ResponseHead::new(status), PLAIN),
                Ok(BodyRule::Open)
            );
        }
    }

    #[test]
    fn names_must_be_tokens_and_values_free_of_controls() {
        for name in [
            "x\r\nset-cookie",
            "x y",
            "",
            "x:",
            "\0",
            "x(",
            "é",
            "content-length\n",
        ] {
            let mut h = ResponseHead::new(200).with_header(name, "v");
            assert!(
                matches!(check(&mut h, PLAIN), Err(BadResponse::HeaderName(_))),
                "{name:?}"
            );
        }
        for value in ["a\r\nb", "a\nb", "a\rb", "a\0b", "\x7f", "\x01"] {
            let mut h = ResponseHead::new(200).with_header("x", value);
            assert!(
                matches!(check(&mut h, PLAIN), Err(BadResponse::HeaderValue(_))),
                "{value:?}"
            );
        }
        let mut h = ResponseHead::new(200)
            .with_header("x_under.score~", "tab\there, é, \"quoted\"")
            .with_header("x-empty", "");
        assert_eq!(check(&mut h, PLAIN), Ok(BodyRule::Open));
    }

    #[test]
    fn header_count_and_size_are_capped() {
        let limits = ResponseLimits {
            max_headers: 3,
            max_header_bytes: 40,
        };
        let mut h = ResponseHead::new(200);
        for i in 0..4 {
            h.headers.push(format!("x-{i}"), "1");
        }
        assert_eq!(
            check_head(&mut h, PLAIN, &limits),
            Err(BadResponse::TooManyHeaders { count: 4, limit: 3 })
        );
        let mut h = ResponseHead::new(200).with_header("x", "a".repeat(36));
        assert_eq!(
            check_head(&mut h, PLAIN, &limits),
            Err(BadResponse::HeadersTooLarge { limit: 40 })
        );
        let mut h = ResponseHead::new(200).with_header("x", "a".repeat(35));
        assert!(check_head(&mut h, PLAIN, &limits).is_ok());
    }

    #[test]
    fn content_length_is_checked_and_made_one() {
        let mut h = ResponseHead::new(200)
            .with_header("Content-Length", "5, 5")
            .with_header("content-length", "5");
        assert_eq!(check(&mut h, PLAIN), Ok(BodyRule::Length(5)));
        assert_eq!(
            h.headers.iter().collect::<Vec<_>>(),
            [("content-length", "5")]
        );
        for bad in ["5, 6", "+5", "", "five", "-1", "99999999999999999999999"] {
            let mut h = ResponseHead::new(200).with_header("content-length", bad);
            assert_eq!(
                check(&mut h, PLAIN),
                Err(BadResponse::ContentLength(bad.into())),
                "{bad:?}"
            );
        }
        let mut h = ResponseHead::new(200)
            .with_header("content-length", "5")
            .with_header("content-length", "6");
        assert!(matches!(
            check(&mut h, PLAIN),
            Err(BadResponse::ContentLength(_))
        ));
        // Beside a transfer coding the length means nothing: dropped.
        let mut h = ResponseHead::new(200)
            .with_header("transfer-encoding", "chunked")
            .with_header("content-length", "5");
        assert_eq!(check(&mut h, PLAIN), Ok(BodyRule::Open));
        assert_eq!(h.headers.get("content-length"), None);
    }

    #[test]
    fn bodiless_responses() {
        let mut h = ResponseHead::new(204).with_header("content-length", "10");
        assert_eq!(check(&mut h, PLAIN), Ok(BodyRule::None));
        assert_eq!(h.headers.get("content-length"), None);
        // 304 and HEAD keep the length they describe.
        let mut h = ResponseHead::new(304).with_header("content-length", "10");
        assert_eq!(check(&mut h, PLAIN), Ok(BodyRule::None));
        assert_eq!(h.headers.get("content-length"), Some("10"));
        let head = Asked {
            head: true,
            ..PLAIN
        };
        let mut h = ResponseHead::new(200).with_header("content-length", "10");
        assert_eq!(check(&mut h, head), Ok(BodyRule::None));
        assert_eq!(h.headers.get("content-length"), Some("10"));
    }

    #[test]
    fn bodies_are_held_to_their_rule() {
        let mut b = BodyCheck::new(BodyRule::Length(4));
        assert_eq!(b.piece(2), Ok(true));
        assert_eq!(
            b.end(),
            Err(BodyMismatch::Shorter {
                declared: 4,
                got: 2
            })
        );
        assert_eq!(b.piece(2), Ok(true));
        assert_eq!(b.end(), Ok(()));
        assert_eq!(b.piece(1), Err(BodyMismatch::Longer { declared: 4 }));
        let mut b = BodyCheck::new(BodyRule::None);
        assert_eq!(b.piece(7), Ok(false));
        assert_eq!(b.end(), Ok(()));
        let mut b = BodyCheck::new(BodyRule::Open);
        assert_eq!(b.piece(usize::MAX), Ok(true));
        assert_eq!(b.piece(usize::MAX), Ok(true));
        assert_eq!(b.end(), Ok(()));
    }

    proptest! {
        /// Whatever the head, a head that passes can be written on an
        /// HTTP/1 connection as it is: one status line, each field one
        /// line, and a length that is a plain number.
        #[test]
        fn passed_heads_frame_cleanly(
            status in 0u16..1200,
            fields in prop::collection::vec((".{0,12}", ".{0,12}"), 0..8),
            head_method: bool,
        ) {
            let mut h = ResponseHead::new(status);
            for (n, v) in fields {
                h.headers.push(n, v);
            }
            let asked = Asked { head: head_method, upgrade: false };
            if let Ok(rule) = check(&mut h, asked) {
                prop_assert!((200..=599).contains(&h.status));
                for (n, v) in h.headers.iter() {
                    prop_assert!(!n.is_empty() && http::HeaderName::from_bytes(n.as_bytes()).is_ok(), "{:?}", n);
                    prop_assert!(http::HeaderValue::from_str(v).is_ok(), "{:?}", v);
                }
                let lengths: Vec<String> = h.headers.get_all("content-length").map(str::to_owned).collect();
                prop_assert!(lengths.len() <= 1);
                if let BodyRule::Length(n) = rule {
                    prop_assert_eq!(lengths, vec![n.to_string()]);
                }
                if head_method || matches!(h.status, 204 | 304) {
                    prop_assert_eq!(rule, BodyRule::None);
                }
            }
        }
    }
}
