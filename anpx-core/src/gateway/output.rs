//! What the gateway asks its shell to do.

use bytes::Bytes;

use crate::cluster::{ClusterOutput, Transmit, WireMessage};
use crate::forward::PathError;
use crate::message::{RequestId, ResponseHead};
use crate::route::ServiceUrl;
use crate::ws::WsMessage;

use super::{Ending, FailureKind, LinkFault, LinkId};

/// One instruction for the shell, from [`Gateway::poll_output`](super::Gateway::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `message` on the receiver connection `link`.
    Transmit {
        /// The connection.
        link: LinkId,
        /// What to send.
        message: WsMessage,
    },
    /// Something happened to the response of a public request.
    Response {
        /// The request.
        request: RequestId,
        /// What happened.
        event: ResponseEvent,
    },
    /// The upload of `request` may go on: a [`push_body`] left body bytes
    /// waiting for the receiver's credit
    /// ([`upload_queued`](super::Gateway::upload_queued) above 0), and the
    /// credit has since sent them all. Read more of the client's body (after
    /// the last piece: the body is all sent). Given once per such wait,
    /// and only while the request is in flight; never for an upload that
    /// did not wait (without `flow-control` none does).
    ///
    /// [`push_body`]: super::Gateway::push_body
    Writable {
        /// The request.
        request: RequestId,
    },
    /// Publish a forwarded request's message on the bus
    /// ([`Gateway::start_forwarded`](super::Gateway::start_forwarded)):
    /// its start on the subject of `route`, with the request's reply inbox
    /// as the reply subject; everything else to the serving gateway's
    /// inbox the transmit names.
    Publish {
        /// The forwarded request.
        request: RequestId,
        /// The route it was sent to.
        route: ServiceUrl,
        /// Where and what.
        transmit: Transmit,
    },
    /// Publish `message` on `to`, a forwarding gateway's reply inbox: the
    /// answers of a request another gateway forwarded here
    /// ([`Gateway::serve_forwarded`](super::Gateway::serve_forwarded)).
    /// When it cannot be published, tell the machine
    /// ([`Gateway::served_publish_failed`](super::Gateway::served_publish_failed)
    /// for `request`; `None` for a refusal, which ends nothing).
    Answer {
        /// The served request, once started.
        request: Option<RequestId>,
        /// The subject.
        to: String,
        /// What.
        message: WireMessage,
    },
    /// For the cluster side of the shell (after
    /// [`Gateway::join_cluster`](super::Gateway::join_cluster)): publish
    /// an announcement, join or leave a service subject, or log a gateway
    /// forgotten.
    Cluster(ClusterOutput),
    /// Close the receiver connection `link`. Its requests have already been
    /// failed and its routes removed.
    Close {
        /// The connection.
        link: LinkId,
        /// WebSocket close code.
        code: u16,
        /// Why, for the close frame and the log.
        reason: String,
        /// The fault that closed it, counted in
        /// `anpx_receiver_faults_total`; `None` for a receiver that went
        /// silent.
        fault: Option<LinkFault>,
    },
}

/// The parts of a response, in order: `Head`, any number of `Body`, then
/// `End`; or `Failed` at any point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    /// Status and headers: send them to the client now.
    Head(ResponseHead),
    /// A piece of the body.
    Body(Bytes),
    /// The body is complete.
    End,
    /// The request failed. Before `Head`, answer with this status and JSON
    /// body; after it, cut the client's connection so a truncated body never
    /// looks complete.
    Failed(Failure),
}

/// Why a request got no (complete) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed, as named where it happened: how the request ended.
    pub kind: FailureKind,
    /// HTTP status for the client: 400, 404, 408, 429, 501, 502, 503 or 504.
    pub status: u16,
    /// A human-readable message.
    pub error: String,
    /// The path, for 404s, as the reference reports it.
    pub path: Option<String>,
}

impl Failure {
    /// A failure of `kind` with a status and message.
    pub fn new(kind: FailureKind, status: u16, error: impl Into<String>) -> Self {
        Failure {
            kind,
            status,
            error: error.into(),
            path: None,
        }
    }

    /// How the request ended.
    pub fn ending(&self) -> Ending {
        self.kind.ending()
    }

    /// The client's body did not all arrive within `upload_timeout`
    /// (`gateway.upload_timeout_secs`): 408, the client being the one late
    /// (RFC 9110 §15.5.9), with a message naming the setting.
    pub fn upload_timed_out(upload_timeout: std::time::Duration) -> Self {
        Failure::new(
            FailureKind::UploadTimeout,
            408,
            format!(
                "Request body not received within {} s (upload_timeout_secs)",
                upload_timeout.as_secs()
            ),
        )
    }

    /// A body of announced length that did not come whole (the client's
    /// connection ended or failed while it was read, `why`): 400, ended as
    /// the client leaving; it never reaches a receiver.
    pub fn body_cut_short(why: impl std::fmt::Display) -> Self {
        Failure::new(
            FailureKind::ClientLeft,
            400,
            format!("Could not read the request body: {why}"),
        )
    }

    /// The JSON body the reference answers with, e.g.
    /// `{"error": "No route found", "path": "/x"}`.
    ///
    /// ```
    /// use anpx_core::Reject;
    /// let f = Reject::NoRoute { path: "/x".into() }.failure();
    /// assert_eq!(f.status, 404);
    /// assert_eq!(f.body_json(), r#"{"error":"No route found","path":"/x"}"#);
    /// ```
    pub fn body_json(&self) -> String {
        match &self.path {
            Some(path) => serde_json::json!({"error": self.error, "path": path}).to_string(),
            None => serde_json::json!({"error": self.error}).to_string(),
        }
    }
}

/// Why a request could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// No service URL matches the host and path.
    #[error("no route for {path}")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// A route matches, but every receiver serving it is at its in-flight cap.
    #[error("every receiver for {route} is at capacity")]
    AtCapacity {
        /// The matching service URL.
        route: String,
    },
    /// A route matches and a receiver serving it has room under its
    /// in-flight cap, but the gateway cannot reserve the request's credit
    /// window in its buffer budgets (`gateway.max_buffered_bytes`, or the
    /// connection's share of it): 503, and nobody is closed. Told apart
    /// from [`Reject::AtCapacity`] so that an operator sees which limit to
    /// raise.
    #[error("no room in the gateway's buffer budget for a request to {route}")]
    BuffersFull {
        /// The matching service URL.
        route: String,
    },
    /// A route matches, but every receiver serving it is draining (it said
    /// so with the `drain` extension): 503 like [`Reject::AtCapacity`].
    #[error("every receiver for {route} is draining")]
    Draining {
        /// The matching service URL.
        route: String,
    },
    /// The client's address already has its share of the route's
    /// in-flight cap ([`GatewayConfig::client_share`]).
    ///
    /// [`GatewayConfig::client_share`]: super::GatewayConfig::client_share
    #[error("this client address has its share ({share}) of {route} in flight")]
    ClientShare {
        /// The matching service URL.
        route: String,
        /// The requests the address may have in flight on it.
        share: usize,
    },
    /// A WebSocket upgrade for a route whose receivers cannot carry one
    /// (their links did not negotiate `websocket`, `streaming` and
    /// `flow-control`, e.g. reference receivers).
    #[error("no receiver for {route} carries WebSockets")]
    NoWebSocket {
        /// The matching service URL.
        route: String,
    },
    /// The path does not normalize (it climbs above the root, hides a
    /// separator in an escape, ...).
    #[error("bad request path: {error}")]
    BadPath {
        /// Why.
        error: PathError,
    },
}

impl Reject {
    /// The label in `anpx_requests_refused_total{reason="..."}`.
    pub fn label(&self) -> &'static str {
        match self {
            Reject::NoRoute { .. } => "no_route",
            Reject::AtCapacity { .. } => "at_capacity",
            Reject::BuffersFull { .. } => "buffers_full",
            Reject::Draining { .. } => "receivers_draining",
            Reject::ClientShare { .. } => "client_share",
            Reject::NoWebSocket { .. } => "no_websocket",
            Reject::BadPath { .. } => "bad_path",
        }
    }

    /// The granted service URL that matched, when one did.
    pub fn route(&self) -> Option<&str> {
        match self {
            Reject::AtCapacity { route }
            | Reject::BuffersFull { route }
            | Reject::Draining { route }
            | Reject::ClientShare { route, .. }
            | Reject::NoWebSocket { route } => Some(route),
            Reject::NoRoute { .. } | Reject::BadPath { .. } => None,
        }
    }

    /// The response the client gets.
    pub fn failure(&self) -> Failure {
        match self {
            Reject::NoRoute { path } => Failure {
                kind: FailureKind::Refused,
                status: 404,
                error: "No route found".into(),
                path: Some(path.clone()),
            },
            Reject::AtCapacity { .. } | Reject::Draining { .. } => {
                Failure::new(FailureKind::Refused, 503, "No healthy receiver available")
            }
            Reject::BuffersFull { .. } => Failure::new(
                FailureKind::Refused,
                503,
                "The gateway is holding as much as its buffers allow; try again shortly",
            ),
            Reject::ClientShare { share, .. } => Failure::new(
                FailureKind::Refused,
                429,
                format!(
                    "Too many requests in flight from this address on this route ({share}, max_inflight_percent_per_client)"
                ),
            ),
            Reject::NoWebSocket { .. } => Failure::new(
                FailureKind::Refused,
                501,
                "The receiver serving this route cannot carry WebSockets",
            ),
            Reject::BadPath { error } => Failure::new(
                FailureKind::Refused,
                400,
                format!("Bad request path: {error}"),
            ),
        }
    }
}

/// The request is no longer in flight (it failed, timed out or was
/// cancelled); drop whatever body the client is still sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request {0} is no longer in flight")]
pub struct RequestGone(pub RequestId);
