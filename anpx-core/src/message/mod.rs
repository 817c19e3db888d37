//! Typed HTTP messages and their meta JSON, as the reference writes and reads it.

mod headers;
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
