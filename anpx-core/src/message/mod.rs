//! Typed HTTP messages and their meta JSON, as the reference writes and reads it.

mod headers;
mod meta_scan;
mod pyjson;
mod query;
mod request;
mod request_id;
mod response;

pub use headers::HeaderList;
pub use request::RequestHead;
pub use request_id::RequestId;
pub use response::{canonical_reason, ResponseHead};

use bytes::Bytes;

/// Parses an `http_meta` or `resp_meta` object: with `scan` where it
/// takes the document (`meta_scan`), else with serde_json. The bytes are
/// checked as UTF-8 once, as the reference decodes them, and serde_json
/// then reads text, which it does not check again string by string
/// (reading bytes, it validates every string it meets: 1.6% of a
/// request's instructions).
fn parse_meta<'a, T: serde::Deserialize<'a>>(
    json: &'a [u8],
    scan: impl FnOnce(&'a str) -> Option<T>,
) -> Result<T, serde_json::Error> {
    let text = std::str::from_utf8(json).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("meta is not UTF-8: {e}"))
    })?;
    match scan(text) {
        Some(wire) => Ok(wire),
        None => serde_json::from_str(text),
    }
}

/// The head of a message: what comes before its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// An HTTP request's method, path, query and headers.
    Request(RequestHead),
    /// An HTTP response's status, reason and headers.
    Response(ResponseHead),
    /// An error about a request; its body is a UTF-8 message.
    Error,
}

impl Head {
    /// The frame type that carries this head.
    pub fn kind(&self) -> crate::frame::MessageKind {
        use crate::frame::MessageKind;
        match self {
            Head::Request(_) => MessageKind::Request,
            Head::Response(_) => MessageKind::Response,
            Head::Error => MessageKind::Error,
        }
    }
}

/// A whole message: a request, a response or an error, with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request this message belongs to.
    pub request_id: RequestId,
    /// What kind of message, and its head.
    pub head: Head,
    /// The body; empty when there is none (no `http_body` TLV on the wire).
    pub body: Bytes,
}
