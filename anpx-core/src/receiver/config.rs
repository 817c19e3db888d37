//! Receiver settings the state machine needs.

use std::time::Duration;

use crate::chunk::{
    ReassemblyLimits, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_HELD_BYTES, STREAMING_CHUNK_SIZE,
};
use crate::frame::FrameLimits;

/// [`ReceiverConfig::max_in_flight`] by default: ten times what an anpx
/// gateway sends one receiver connection by default
/// (`gateway.max_inflight_per_receiver`), so only a gateway without such
/// a cap reaches it.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;

/// [`ReceiverConfig::max_buffered_total`] by default, as a gateway's
/// `gateway.max_buffered_bytes`: four of the largest response held.
pub const DEFAULT_MAX_BUFFERED_RESPONSES: u64 = 4 * DEFAULT_MAX_HELD_BYTES;

/// What [`Receiver::upload_budget`](crate::Receiver::upload_budget)
/// allows without `flow-control`: request body bytes held for the
/// services and not yet read by them, every request of a connection
/// together.
pub const DEFAULT_MAX_UNREAD_UPLOAD: u64 = 64 * 1024 * 1024;

/// What the receiver state machine needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    /// How often a JSON ping is sent; the gateway counts a receiver stale
    /// after twice this, and so does the receiver count a silent gateway.
    pub ping_interval: Duration,
    /// Largest frame sent; bigger messages are chunked.
    pub chunk_size: usize,
    /// Largest frame of a streamed response to a gateway that negotiated
    /// `streaming`. Below `chunk_size` (0, say) it is `chunk_size`; it is
    /// never more than the flow-control window when that is in use.
    pub streaming_chunk_size: usize,
    /// Largest response body held in memory for a gateway that cannot take
    /// a streamed response (a reference gateway).
    pub max_buffered_response: u64,
    /// Most response bytes held that way on the connection, every request
    /// together: past it the response that would go over fails with 502,
    /// so the number of requests a gateway sends at once does not multiply
    /// [`max_buffered_response`](Self::max_buffered_response).
    pub max_buffered_total: u64,
    /// Limits on frames received.
    pub frame_limits: FrameLimits,
    /// Most requests served at once on this connection. A request past it
    /// is answered 503 at once, without reaching the service: each request
    /// in flight holds an upstream call and its upload, so without a bound
    /// a gateway (a hostile one, or one with no cap of its own) decides how
    /// much of the receiver it fills.
    pub max_in_flight: usize,
    /// Limits on request reassembly. A request body streams on to the
    /// upstream as it comes, so the default sets no size limit: the
    /// gateway's `max_body_bytes` bounds uploads. Nor does it hold any
    /// body ahead of a request's head (`max_headless_bytes` 0): the head
    /// is in a request's first chunk, so a gateway that sends body first
    /// gets the request refused rather than 1024 partial requests of
    /// held bytes.
    pub reassembly: ReassemblyLimits,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            ping_interval: Duration::from_secs(30),
            chunk_size: DEFAULT_CHUNK_SIZE,
            streaming_chunk_size: STREAMING_CHUNK_SIZE,
            max_buffered_response: DEFAULT_MAX_HELD_BYTES,
            max_buffered_total: DEFAULT_MAX_BUFFERED_RESPONSES,
            frame_limits: FrameLimits::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            // A request's head is in its first chunk (the reference's
            // layout too): body bytes before it would only be held, up
            // to this much per partial request, for a gateway that breaks
            // the layout. None are.
            reassembly: ReassemblyLimits {
                max_headless_bytes: 0,
                ..ReassemblyLimits::default()
            },
        }
    }
}
