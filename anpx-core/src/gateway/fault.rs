//! What a receiver connection did wrong, and the per-connection budget for
//! messages that carry no response data.

use std::time::Instant;

use serde::Serialize;

use super::config::MessageBudget;
use crate::ws::{CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG};

/// A receiver misbehaving. Every fault is counted by its label
/// (`anpx_receiver_faults_total{reason=...}`); all but
/// [`LinkFault::InvalidResponse`] close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkFault {
    /// A binary message that is not an ANPX frame.
    BadFrame,
    /// A request frame, which only gateways send.
    RequestFrame,
    /// A frame for a request in flight on another connection.
    ForeignRequest,
    /// A WebSocket message over the frame size limit (the shell sees it).
    TooBig,
    /// More control messages, pings or empty chunks than the budget allows.
    Flood,
    /// A response that does not reassemble (bad chunk order, over the size
    /// limit): that request fails with 502, the connection stays.
    InvalidResponse,
    /// A response body past its credit window, or window updates opening
    /// more than 2^31-1 bytes (`flow-control`).
    FlowControl,
    /// Response bytes held for the connection past its budget, or the
    /// most held when the whole gateway passed its budget.
    OverBudget,
}

impl LinkFault {
    /// Every fault, in the order metrics list them.
    pub const ALL: [LinkFault; 8] = [
        LinkFault::BadFrame,
        LinkFault::RequestFrame,
        LinkFault::ForeignRequest,
        LinkFault::TooBig,
        LinkFault::Flood,
        LinkFault::InvalidResponse,
        LinkFault::FlowControl,
        LinkFault::OverBudget,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            LinkFault::BadFrame => "bad_frame",
            LinkFault::RequestFrame => "request_frame",
            LinkFault::ForeignRequest => "foreign_request",
            LinkFault::TooBig => "too_big",
            LinkFault::Flood => "flood",
            LinkFault::InvalidResponse => "invalid_response",
            LinkFault::FlowControl => "flow_control",
            LinkFault::OverBudget => "over_budget",
        }
    }

    /// The WebSocket close code, for faults that close the connection.
    pub fn close_code(self) -> Option<u16> {
        match self {
            LinkFault::BadFrame
            | LinkFault::RequestFrame
            | LinkFault::ForeignRequest
            | LinkFault::FlowControl => Some(CLOSE_PROTOCOL_ERROR),
            LinkFault::TooBig => Some(CLOSE_TOO_BIG),
            LinkFault::Flood | LinkFault::OverBudget => Some(CLOSE_POLICY_VIOLATION),
            LinkFault::InvalidResponse => None,
        }
    }
}

/// A token bucket in thousandths of a message, so refills need no floats.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    milli: u64,
    cap: u64,
    /// Thousandths per millisecond, which is whole messages per second.
    rate: u64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(budget: MessageBudget, now: Instant) -> Self {
        let cap = u64::from(budget.burst) * 1000;
        Bucket {
            milli: cap,
            cap,
            rate: u64::from(budget.per_second),
            last: now,
        }
    }

    /// Spends one message; `false` when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if ms > 0 {
            // Advance by whole milliseconds only, so sub-millisecond gaps
            // between messages still add up.
            self.last += std::time::Duration::from_millis(ms);
            self.milli = self
                .milli
                .saturating_add(ms.saturating_mul(self.rate))
                .min(self.cap);
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t = Instant::now();
        let mut b = Bucket::new(
            MessageBudget {
                burst: 3,
                per_second: 2,
            },
            t,
        );
        assert!(b.take(t) && b.take(t) && b.take(t));
        assert!(!b.take(t), "the burst is spent");
        assert!(!b.take(t + Duration::from_millis(499)));
        assert!(b.take(t + Duration::from_millis(500)), "one refilled");
        assert!(!b.take(t + Duration::from_millis(500)));
        // A long pause refills to the burst, never beyond.
        let later = t + Duration::from_secs(3600);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }

    #[test]
    fn sub_millisecond_gaps_add_up() {
        let t = Instant::now();
        let mut b = Bucket::new(
            MessageBudget {
                burst: 1,
                per_second: 1000,
            },
            t,
        );
        assert!(b.take(t));
        let mut at = t;
        let mut allowed = 0;
        for _ in 0..100 {
            at += Duration::from_micros(400);
            allowed += usize::from(b.take(at));
        }
        // 40 ms at 1000/s.
        assert!((39..=41).contains(&allowed), "{allowed}");
    }
}
