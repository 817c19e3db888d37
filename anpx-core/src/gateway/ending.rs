//! How a public request ended: the one value its log line and its
//! `anpx_requests_ended_total` counter name.

/// How a public request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// The whole response reached the client.
    Completed,
    /// The client went away before the response was whole.
    ClientLeft,
    /// The receiver or the service behind it failed to answer.
    UpstreamFailed,
    /// The receiver's connection was lost while the request was open.
    ReceiverLost,
    /// No answer (or no next body part) came in time.
    TimedOut,
    /// The gateway refused the request (no route, a limit, capacity).
    Refused,
}

impl Ending {
    /// Every ending, in the order metrics list them.
    pub const ALL: [Ending; 6] = [
        Ending::Completed,
        Ending::ClientLeft,
        Ending::UpstreamFailed,
        Ending::ReceiverLost,
        Ending::TimedOut,
        Ending::Refused,
    ];

    /// The label in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::ClientLeft => "client_left",
            Ending::UpstreamFailed => "upstream_failed",
            Ending::ReceiverLost => "receiver_lost",
            Ending::TimedOut => "timed_out",
            Ending::Refused => "refused",
        }
    }

    /// Position in [`ALL`](Self::ALL), for counters kept in an array.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The ending a failure of `kind` stands for.
    pub fn of(kind: FailureKind) -> Ending {
        match kind {
            FailureKind::Refused | FailureKind::ResponseTooLarge | FailureKind::BuffersFull => {
                Ending::Refused
            }
            FailureKind::HeadTimeout
            | FailureKind::UploadTimeout
            | FailureKind::BodyIdle
            | FailureKind::WebSocketIdle => Ending::TimedOut,
            FailureKind::ReceiverLost => Ending::ReceiverLost,
            FailureKind::Upstream | FailureKind::InvalidResponse | FailureKind::Unencodable => {
                Ending::UpstreamFailed
            }
            FailureKind::ClientLeft => Ending::ClientLeft,
        }
    }
}

/// What made a request fail, named where it happened; its
/// [`Ending`] follows from it ([`Ending::of`]), never from the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The gateway refused it: no route, every receiver at capacity, a bad
    /// path or host, a limit, shutting down.
    Refused,
    /// No response head within `request_timeout_secs`.
    HeadTimeout,
    /// The client's body did not all arrive within `upload_timeout_secs`
    /// (408).
    UploadTimeout,
    /// The response body was quiet past `body_idle_timeout_secs`.
    BodyIdle,
    /// A WebSocket carried through was idle past its timeout.
    WebSocketIdle,
    /// The receiver's connection was lost (closed, silent, faulty).
    ReceiverLost,
    /// The receiver reported its service failed: an error frame, or its
    /// own 502 marked with [`crate::upstream_failure`].
    Upstream,
    /// The receiver's response broke the protocol or HTTP's rules.
    InvalidResponse,
    /// The response was over a gateway limit.
    ResponseTooLarge,
    /// A flow-controlled response's next bytes did not fit in the
    /// gateway's buffer budget (503, or a cut body).
    BuffersFull,
    /// The request could not be encoded for the receiver.
    Unencodable,
    /// The client went away.
    ClientLeft,
}

impl FailureKind {
    /// The ending this failure stands for.
    pub fn ending(self) -> Ending {
        Ending::of(self)
    }
}

/// How the core words the failure of a request whose receiver dropped.
pub(crate) const LINK_LOST: &str = "Receiver connection lost";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_map_to_endings() {
        assert_eq!(FailureKind::HeadTimeout.ending(), Ending::TimedOut);
        assert_eq!(FailureKind::BodyIdle.ending(), Ending::TimedOut);
        assert_eq!(FailureKind::UploadTimeout.ending(), Ending::TimedOut);
        assert_eq!(FailureKind::ReceiverLost.ending(), Ending::ReceiverLost);
        assert_eq!(FailureKind::Upstream.ending(), Ending::UpstreamFailed);
        assert_eq!(
            FailureKind::InvalidResponse.ending(),
            Ending::UpstreamFailed
        );
        assert_eq!(FailureKind::ClientLeft.ending(), Ending::ClientLeft);
        assert_eq!(FailureKind::Refused.ending(), Ending::Refused);
        assert_eq!(FailureKind::ResponseTooLarge.ending(), Ending::Refused);
    }

    #[test]
    fn labels_are_distinct_and_indexed_in_order() {
        for (i, e) in Ending::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        let mut labels: Vec<_> = Ending::ALL.iter().map(|e| e.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), Ending::ALL.len());
    }
}
