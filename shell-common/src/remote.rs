//! The gateway's hook for requests served by another gateway of a
//! cluster. The gateway machine chooses where a public request goes (its
//! cluster route book); a request it sends to another gateway, first or
//! when no local receiver serves it after all, starts through a [`Remote`]; the shell that
//! implements it carries the request elsewhere and feeds the response
//! events back, so the HTTP side cannot tell a remote request from a
//! local one.

use anpx_core::RequestBody;
use anpx_core::ServiceUrl;
use anpx_core::{RequestHead, RequestId};
use bytes::Bytes;

use crate::driver::Events;

/// Another place requests can be served: the other gateways of a cluster.
pub trait Remote: Send + Sync + 'static {
    /// Starts the request for `host` at a gateway that serves `route` (the
    /// gateway machine chose it); its response events go to `events`.
    /// `None` when it cannot be carried there.
    fn start(
        &self,
        host: &str,
        route: ServiceUrl,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Option<(RequestId, Box<dyn RemoteRequest>)>;
}

/// A request started through [`Remote::start`].
pub trait RemoteRequest: Send {
    /// A piece of its streamed body; `last` ends it. `taken`, when given,
    /// is told once the piece was taken on (so the client's pump, awaiting
    /// it, reads no further ahead than the cluster link allows).
    fn body(
        &mut self,
        data: Bytes,
        last: bool,
        taken: Option<futures_channel::oneshot::Sender<()>>,
    );
    /// The client took `bytes` of the response body (reopens the window
    /// of the cluster link for them).
    fn read(&mut self, bytes: usize);
    /// The client went away.
    fn cancel(self: Box<Self>);
    /// The request ended at the other side (its response is complete or
    /// failed), so it takes no more of the body: a WebSocket the service
    /// closed, an upload answered before it ended.
    fn is_finished(&self) -> bool;
}
