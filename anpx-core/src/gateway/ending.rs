//! How a public request ended: the one value its log line and its
//! `anpx_requests_ended_total` counter name.

use super::Failure;

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

    /// The ending a failure answered with `status` stands for: 504 is a
    /// timeout, 499 a client that left, a 502 whose receiver link dropped is a lost receiver, any
    /// other 502 an upstream failure, everything else a refusal.
    pub fn of_failure(failure: &Failure) -> Ending {
        match failure.status {
            // The status shells log for a client that hung up.
            499 => Ending::ClientLeft,
            408 | 504 => Ending::TimedOut,
            502 if failure.error.starts_with(LINK_LOST) => Ending::ReceiverLost,
            502 => Ending::UpstreamFailed,
            _ => Ending::Refused,
        }
    }
}

/// How the core words the failure of a request whose receiver dropped.
pub(crate) const LINK_LOST: &str = "Receiver connection lost";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_endings() {
        let f = |s, e: &str| Ending::of_failure(&Failure::new(s, e.to_owned()));
        assert_eq!(f(504, "Receiver did not respond in time"), Ending::TimedOut);
        assert_eq!(
            f(408, "Request body not received in time"),
            Ending::TimedOut
        );
        assert_eq!(
            f(502, "Receiver connection lost: closed"),
            Ending::ReceiverLost
        );
        assert_eq!(f(502, "Receiver error: boom"), Ending::UpstreamFailed);
        assert_eq!(f(499, "client went away"), Ending::ClientLeft);
        assert_eq!(f(413, "too big"), Ending::Refused);
        assert_eq!(f(404, "no route"), Ending::Refused);
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
