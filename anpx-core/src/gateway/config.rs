//! Gateway settings the state machine needs (plain data; the shells load it).

use std::time::Duration;

use crate::chunk::{ReassemblyLimits, DEFAULT_CHUNK_SIZE};
use crate::edge::response::ResponseLimits;
use crate::frame::FrameLimits;

/// What the gateway state machine needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// How long a request may wait for its response head (upload progress
    /// counts as activity meanwhile). The reference's `timeout`.
    pub request_timeout: Duration,
    /// How long a response may go without a body part once its head is
    /// out: a quiet stream (SSE, a model thinking) lives while its gaps
    /// are shorter, whatever `request_timeout` is.
    pub body_idle_timeout: Duration,
    /// How long after a request began its upload's progress may still
    /// push back the wait for the response head. Past it the request
    /// times out as if the upload were quiet, so a body trickled in a
    /// byte at a time cannot hold the request for ever.
    pub upload_timeout: Duration,
    /// How long a WebSocket carried through the tunnel (after its `101`)
    /// may go without a byte in either direction before it is closed. It
    /// replaces `request_timeout` once the upgrade is through, so a quiet
    /// but live WebSocket is not cut after a request's timeout.
    pub websocket_idle_timeout: Duration,
    /// Requests one receiver connection may have in flight; a connection at
    /// the cap is skipped. The reference uses 100.
    pub max_inflight_per_link: usize,
    /// How often a WebSocket ping is sent to each receiver. A receiver that
    /// sends nothing for twice this long is dropped, as in the reference.
    pub ping_interval: Duration,
    /// Largest frame sent; bigger messages are chunked.
    pub chunk_size: usize,
    /// Limits on frames received.
    pub frame_limits: FrameLimits,
    /// Limits on response reassembly, per connection: the largest response
    /// body (none by default), and what is held for a receiver that sends
    /// its head last.
    pub reassembly: ReassemblyLimits,
    /// How many messages that carry no response data (control messages,
    /// WebSocket pings and pongs, empty chunks) one connection may send.
    pub chatter: MessageBudget,
    /// Caps on the response heads receivers send.
    pub response: ResponseLimits,
    /// Caps on the response bytes the gateway holds for receivers.
    pub buffers: BufferBudget,
    /// The share of a route's in-flight cap (its connections times
    /// `max_inflight_per_link`) that requests from one client address
    /// (an IPv6 /64 counts as one) may hold, in percent (1 to 100; at
    /// least one request always): a request over it is refused with 429,
    /// so one address holding slow requests cannot take a whole route.
    /// 100 puts no limit below the route's cap, nor does a share that
    /// comes to the whole cap (one connection of one place): the cap's
    /// own 503 answers then. Applies to requests
    /// started with a client address ([`Gateway::start_request_from`]).
    ///
    /// [`Gateway::start_request_from`]: super::Gateway::start_request_from
    pub max_inflight_percent_per_client: u8,
}

/// Default of [`GatewayConfig::max_inflight_percent_per_client`].
pub const DEFAULT_MAX_INFLIGHT_PERCENT_PER_CLIENT: u8 = 50;

/// Caps on the response bytes the gateway holds because of what receivers
/// sent: bodies held for a head that comes last, and bodies passed on but
/// not yet taken by their (slow) clients, including after the response
/// ended, also once their connection closed. A receiver connection that
/// would take its holdings past `per_link` is closed (`over_budget`,
/// 1008); when the whole gateway would pass `total`, the connection
/// without `flow-control` holding the most is. A flow-controlled receiver
/// sends only what its windows allow, so it is never closed for the total
/// (its connection's limit is the larger of `per_link` and a window per
/// request it may have in flight): a response of its whose next bytes do
/// not fit is cut instead (503 before its head), and a request is not
/// started on it while a window would not fit in what is held (503).
/// Credit granted and unused is not counted: requests a receiver holds
/// without answering take no room from anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferBudget {
    /// Bytes one receiver connection may make the gateway hold.
    pub per_link: u64,
    /// Bytes all receiver connections together may make it hold.
    pub total: u64,
}

/// Default of [`BufferBudget::per_link`].
pub const DEFAULT_MAX_BUFFERED_PER_LINK: u64 = 32 * 1024 * 1024;
/// Default of [`BufferBudget::total`].
pub const DEFAULT_MAX_BUFFERED_TOTAL: u64 = 256 * 1024 * 1024;

impl BufferBudget {
    /// How far messages still arriving from flow-controlled receivers may
    /// take the gateway past [`total`](Self::total) before the connection
    /// adding to them is closed: a sixteenth of it. Such a message is a
    /// response within its windows, cut if it does not fit once whole; the
    /// slack keeps honest receivers connected while slow clients fill the
    /// total, and still bounds what the gateway holds.
    ///
    /// ```
    /// use anpx_core::BufferBudget;
    /// assert_eq!(BufferBudget::default().arriving_slack(), 16 << 20);
    /// ```
    pub fn arriving_slack(&self) -> u64 {
        self.total / 16
    }
}

impl Default for BufferBudget {
    fn default() -> Self {
        BufferBudget {
            per_link: DEFAULT_MAX_BUFFERED_PER_LINK,
            total: DEFAULT_MAX_BUFFERED_TOTAL,
        }
    }
}

/// A token bucket: `burst` messages at once, refilled at `per_second`. A
/// well-behaved receiver sends a few such messages a minute; a connection
/// that empties the bucket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageBudget {
    /// Messages allowed back to back.
    pub burst: u32,
    /// Messages added back per second.
    pub per_second: u32,
}

impl Default for MessageBudget {
    fn default() -> Self {
        MessageBudget {
            burst: 1000,
            per_second: 100,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            request_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(300),
            upload_timeout: Duration::from_secs(600),
            websocket_idle_timeout: Duration::from_secs(300),
            max_inflight_per_link: 100,
            ping_interval: Duration::from_secs(30),
            chunk_size: DEFAULT_CHUNK_SIZE,
            // A message received whole is held whole: neither it nor a body
            // awaiting its head may pass the connection's budget.
            frame_limits: FrameLimits {
                max_frame_len: FrameLimits::default()
                    .max_frame_len
                    .min(DEFAULT_MAX_BUFFERED_PER_LINK as usize),
            },
            reassembly: ReassemblyLimits {
                max_headless_bytes: ReassemblyLimits::default()
                    .max_headless_bytes
                    .min(DEFAULT_MAX_BUFFERED_PER_LINK),
                ..ReassemblyLimits::default()
            },
            chatter: MessageBudget::default(),
            response: ResponseLimits::default(),
            buffers: BufferBudget::default(),
            max_inflight_percent_per_client: DEFAULT_MAX_INFLIGHT_PERCENT_PER_CLIENT,
        }
    }
}

impl GatewayConfig {
    /// The largest WebSocket message and ANPX frame a receiver may send:
    /// the frame limit, but never past the connection's buffer budget,
    /// since a message is received whole before anything of it moves on.
    pub fn max_message_len(&self) -> usize {
        let budget = usize::try_from(self.buffers.per_link).unwrap_or(usize::MAX);
        self.frame_limits.max_frame_len.min(budget)
    }

    /// The most requests one client address may have in flight on a
    /// route served by `links` connections: its share of the route's cap,
    /// at least one.
    ///
    /// ```
    /// use anpx_core::GatewayConfig;
    /// let c = GatewayConfig::default(); // 100 per connection, 50 %
    /// assert_eq!(c.client_share(1), 50);
    /// assert_eq!(c.client_share(3), 150);
    /// let c = GatewayConfig { max_inflight_per_link: 1, ..c };
    /// assert_eq!(c.client_share(1), 1);
    /// ```
    pub fn client_share(&self, links: usize) -> usize {
        let cap = links.saturating_mul(self.max_inflight_per_link);
        let percent = usize::from(self.max_inflight_percent_per_client.clamp(1, 100));
        (cap.saturating_mul(percent) / 100).max(1)
    }

    /// Silence longer than this ends a receiver connection.
    pub fn liveness_timeout(&self) -> Duration {
        self.ping_interval * 2
    }
}
