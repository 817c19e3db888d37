//! What the receiver asks its shell to do.

use bytes::Bytes;

use crate::message::{RequestHead, RequestId};
use crate::ws::WsMessage;

/// One instruction for the shell, from [`Receiver::poll_output`](super::Receiver::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverOutput {
    /// Send this on the WebSocket.
    Transmit(WsMessage),
    /// Something happened to a request from the gateway.
    Event(RequestEvent),
    /// The streamed response of `request` may go on: a
    /// [`respond_body`](super::Receiver::respond_body) that was not the
    /// last left body bytes waiting for the gateway's credit
    /// ([`unsent`](super::Receiver::unsent) above 0), and the credit has
    /// since sent them all. Read more from the service. Given once per such
    /// wait, and only while the response is still open; never for a body
    /// that did not wait (without `flow-control` none does).
    Writable {
        /// The request.
        request: RequestId,
    },
    /// Close the WebSocket (the gateway broke the protocol or went silent);
    /// every request in flight has been aborted. Reconnect with backoff.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Why.
        reason: String,
    },
}

/// The parts of a request, in order: `Head`, any number of `Body`, `End`;
/// or `Aborted` at any point, after which the shell stops the upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEvent {
    /// Start the upstream call. Every header of `head` can be written into
    /// an HTTP/1 request as it is: the machine answers a head with any
    /// other 400 itself ([`crate::edge::field`]) and gives no event for it.
    Head {
        /// The request.
        request: RequestId,
        /// Method, path, query, headers.
        head: RequestHead,
    },
    /// A piece of the request body.
    Body {
        /// The request.
        request: RequestId,
        /// The bytes.
        data: Bytes,
    },
    /// The request body is complete.
    End {
        /// The request.
        request: RequestId,
    },
    /// The request will not complete; stop serving it.
    Aborted {
        /// The request.
        request: RequestId,
        /// Why.
        reason: String,
    },
}

/// How the response body reaches the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body.
    Empty,
    /// The whole body at once.
    Full(Bytes),
    /// The body follows through [`Receiver::respond_body`](super::Receiver::respond_body).
    Streaming,
}

impl ResponseBody {
    /// A body held whole: [`Empty`](Self::Empty) when it has no bytes.
    pub fn whole(body: Bytes) -> Self {
        if body.is_empty() {
            ResponseBody::Empty
        } else {
            ResponseBody::Full(body)
        }
    }
}

/// A response call that does not fit the request's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No such request in flight (it was aborted, or never existed).
    #[error("request {0} is not in flight")]
    UnknownRequest(RequestId),
    /// The head was already sent.
    #[error("request {0} already has a response head")]
    AlreadyResponded(RequestId),
    /// Body for a response that is not streaming, or that already ended.
    #[error("request {0} has no streaming response open")]
    NotStreaming(RequestId),
    /// The response could not be encoded or buffered; the gateway was sent
    /// a 502 (or an abort) in its place.
    #[error("request {request}: {reason}")]
    Failed {
        /// The request.
        request: RequestId,
        /// Why.
        reason: String,
    },
}
