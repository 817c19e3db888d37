//! The public edge: the limits a gateway puts on what public clients and
//! not-yet-authenticated receivers may send, and the decisions behind each
//! refusal. The shells apply them to their sockets; the decisions live here
//! so that every shell refuses the same things with the same status.
//!
//! ```
//! use anpx_core::edge::{BodyMeter, EdgeLimits, EdgeRefusal};
//!
//! let limits = EdgeLimits { max_body_bytes: 10, ..EdgeLimits::default() };
//! // A declared length over the limit is refused before any byte is read.
//! assert_eq!(limits.check_declared_body(Some(11)), Err(EdgeRefusal::BodyTooLarge));
//! // A body of unknown length is metered as it comes.
//! let mut meter = BodyMeter::new(limits.max_body_bytes);
//! assert!(meter.add(6).is_ok());
//! assert_eq!(meter.add(6), Err(EdgeRefusal::BodyTooLarge));
//! ```
//!
//! The receivers' handshake slots (in progress, connections in all and
//! per address) are counted by [`crate::handshake::Admissions`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

mod body_plan;
pub mod chunk_ext;
pub mod field;
pub mod head;
pub mod response;

pub use body_plan::BodyPlan;
pub use response::ResponseLimits;

/// The limits of the public edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// How long a client may take to send a request head; on HTTP/1 this
    /// also bounds how long a kept-alive connection may sit idle.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// WebSocket handshakes that may be in progress at once, all receivers
    /// together (DID-WBA checks may fetch documents, so they take time).
    pub max_pending_handshakes: usize,
    /// Receiver connections (established or in their handshake) one client
    /// address may hold. IPv6 addresses count per /64.
    pub max_receivers_per_ip: usize,
    /// Receiver connections (established or in their handshake) the
    /// gateway holds in all: what each costs beyond the buffer budgets
    /// (its socket, WebSocket read buffer, the part of a message still
    /// arriving that is not charged) is fixed, so this bounds their sum.
    pub max_receivers: usize,
    /// Forward request headers whose names have underscores; off drops
    /// them ([`crate::forward::has_underscore`]).
    pub keep_underscore_headers: bool,
}

/// The default request head limit: 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The default request body limit: 1 GiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
/// The default cap on receiver connections in all: 4096, at about 40 KiB
/// each not charged against the buffer budgets (SECURITY.md has the
/// arithmetic), 160 MiB beside the 256 MiB of `max_buffered_bytes`.
pub const DEFAULT_MAX_RECEIVERS: usize = 4096;

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_pending_handshakes: 256,
            max_receivers_per_ip: 64,
            max_receivers: DEFAULT_MAX_RECEIVERS,
            keep_underscore_headers: false,
        }
    }
}

impl EdgeLimits {
    /// Refuses a body whose announced length (`Content-Length`, or the
    /// smallest length the protocol promises) is over the limit.
    pub fn check_declared_body(&self, declared: Option<u64>) -> Result<(), EdgeRefusal> {
        match declared {
            Some(n) if n > self.max_body_bytes => Err(EdgeRefusal::BodyTooLarge),
            _ => Ok(()),
        }
    }
}

/// Why the edge refused a request or a connection. Each has a stable label
/// for metrics and the status the client gets, when it gets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeRefusal {
    /// The request body is over `max_body_bytes` (413).
    #[error("request body over the size limit")]
    BodyTooLarge,
    /// The request head is over `max_header_bytes` (431).
    #[error("request head over the size limit")]
    HeadTooLarge,
    /// The request could not be parsed (400).
    #[error("malformed request")]
    Malformed,
    /// The request head did not arrive within `header_read_timeout`; the
    /// connection is closed without an answer.
    #[error("request head not received in time")]
    HeadTimeout,
    /// `max_pending_handshakes` receiver handshakes already in progress (503).
    #[error("too many receiver handshakes in progress")]
    TooManyHandshakes,
    /// The client address already holds `max_receivers_per_ip` receiver
    /// connections (429).
    #[error("too many receiver connections from this address")]
    TooManyFromIp,
    /// The gateway already holds `max_receivers` receiver connections
    /// (503).
    #[error("too many receiver connections")]
    TooManyReceivers,
}

impl EdgeRefusal {
    /// Every refusal, in the order metrics list them.
    pub const ALL: [EdgeRefusal; 7] = [
        EdgeRefusal::BodyTooLarge,
        EdgeRefusal::HeadTooLarge,
        EdgeRefusal::Malformed,
        EdgeRefusal::HeadTimeout,
        EdgeRefusal::TooManyHandshakes,
        EdgeRefusal::TooManyFromIp,
        EdgeRefusal::TooManyReceivers,
    ];

    /// The label in `anpx_edge_refused_total{reason="..."}`.
    pub fn label(self) -> &'static str {
        match self {
            EdgeRefusal::BodyTooLarge => "body_too_large",
            EdgeRefusal::HeadTooLarge => "head_too_large",
            EdgeRefusal::Malformed => "malformed",
            EdgeRefusal::HeadTimeout => "head_timeout",
            EdgeRefusal::TooManyHandshakes => "handshakes_pending",
            EdgeRefusal::TooManyFromIp => "receivers_per_ip",
            EdgeRefusal::TooManyReceivers => "receivers",
        }
    }

    /// The HTTP status answered, when an answer is sent at all.
    pub fn status(self) -> Option<u16> {
        match self {
            EdgeRefusal::BodyTooLarge => Some(413),
            EdgeRefusal::HeadTooLarge => Some(431),
            EdgeRefusal::Malformed => Some(400),
            EdgeRefusal::HeadTimeout => None,
            EdgeRefusal::TooManyHandshakes => Some(503),
            EdgeRefusal::TooManyFromIp => Some(429),
            EdgeRefusal::TooManyReceivers => Some(503),
        }
    }

    /// Position in [`EdgeRefusal::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        match self {
            EdgeRefusal::BodyTooLarge => 0,
            EdgeRefusal::HeadTooLarge => 1,
            EdgeRefusal::Malformed => 2,
            EdgeRefusal::HeadTimeout => 3,
            EdgeRefusal::TooManyHandshakes => 4,
            EdgeRefusal::TooManyFromIp => 5,
            EdgeRefusal::TooManyReceivers => 6,
        }
    }
}

/// Counts the bytes of a request body whose length was not announced (HTTP/1
/// chunked, HTTP/2 without `content-length`) against the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyMeter {
    limit: u64,
    seen: u64,
}

impl BodyMeter {
    /// A meter allowing `limit` bytes.
    pub fn new(limit: u64) -> Self {
        BodyMeter { limit, seen: 0 }
    }

    /// Counts `n` more bytes; refuses once the total is over the limit.
    pub fn add(&mut self, n: usize) -> Result<(), EdgeRefusal> {
        self.seen = self
            .seen
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if self.seen > self.limit {
            Err(EdgeRefusal::BodyTooLarge)
        } else {
            Ok(())
        }
    }

    /// Bytes counted so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// The address a per-IP limit counts under: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64, since one host commonly holds a whole /64.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Bookkeeping for receiver connections: how many WebSocket handshakes
/// are in progress, how many connections the gateway holds in all and how
/// many each address holds. [`crate::handshake::Admissions`] keeps one and follows
/// each handshake for it: [`begin`](Self::begin) when an upgrade request
/// arrives, then exactly one of [`abandoned`](Self::abandoned) (refused or
/// failed) or [`upgraded`](Self::upgraded) followed later by
/// [`closed`](Self::closed).
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeSlots {
    max_pending: usize,
    max_per_ip: usize,
    max_held: usize,
    pending: usize,
    /// Handshakes and connections, all addresses together: the sum of
    /// `per_ip`.
    held: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl HandshakeSlots {
    /// Slots for at most `max_pending` handshakes at once, `max_held`
    /// connections in all and `max_per_ip` per address.
    pub(crate) fn new(max_pending: usize, max_held: usize, max_per_ip: usize) -> Self {
        HandshakeSlots {
            max_pending,
            max_per_ip,
            max_held,
            pending: 0,
            held: 0,
            per_ip: HashMap::new(),
        }
    }

    /// From the edge limits.
    pub(crate) fn from_limits(limits: &EdgeLimits) -> Self {
        Self::new(
            limits.max_pending_handshakes,
            limits.max_receivers,
            limits.max_receivers_per_ip,
        )
    }

    /// A handshake from `ip` starts, unless a limit is reached.
    pub(crate) fn begin(&mut self, ip: IpAddr) -> Result<(), EdgeRefusal> {
        let key = ip_key(ip);
        if self.pending >= self.max_pending {
            return Err(EdgeRefusal::TooManyHandshakes);
        }
        if self.held >= self.max_held {
            return Err(EdgeRefusal::TooManyReceivers);
        }
        let held = self.per_ip.get(&key).copied().unwrap_or(0);
        if held >= self.max_per_ip {
            return Err(EdgeRefusal::TooManyFromIp);
        }
        self.pending += 1;
        self.held += 1;
        self.per_ip.insert(key, held + 1);
        Ok(())
    }

    /// The handshake from `ip` succeeded: it no longer counts as pending,
    /// but its connection still counts for its address.
    pub(crate) fn upgraded(&mut self, _ip: IpAddr) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// The handshake from `ip` was refused or failed.
    pub(crate) fn abandoned(&mut self, ip: IpAddr) {
        self.pending = self.pending.saturating_sub(1);
        self.release(ip);
    }

    /// An upgraded connection from `ip` closed.
    pub(crate) fn closed(&mut self, ip: IpAddr) {
        self.release(ip);
    }

    /// Handshakes in progress.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Handshakes and connections, all addresses together.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Connections counted for `ip`'s address.
    pub(crate) fn held_by(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection; zero once everything closed.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.per_ip.len()
    }

    fn release(&mut self, ip: IpAddr) {
        let key = ip_key(ip);
        if let Some(n) = self.per_ip.get_mut(&key) {
            *n = n.saturating_sub(1);
            self.held = self.held.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a = ip_key("2001:db8::1".parse().unwrap());
        assert_eq!(a, ip_key("2001:db8::ffff:2".parse().unwrap()));
        assert_ne!(a, ip_key("2001:db8:0:1::1".parse().unwrap()));
        assert_eq!(
            ip_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn declared_bodies_over_the_limit_are_refused() {
        let l = EdgeLimits {
            max_body_bytes: 100,
            ..EdgeLimits::default()
        };
        assert_eq!(l.check_declared_body(None), Ok(()));
        assert_eq!(l.check_declared_body(Some(100)), Ok(()));
        assert_eq!(
            l.check_declared_body(Some(101)),
            Err(EdgeRefusal::BodyTooLarge)
        );
        assert_eq!(
            l.check_declared_body(Some(u64::MAX)),
            Err(EdgeRefusal::BodyTooLarge)
        );
    }

    #[test]
    fn the_meter_refuses_the_byte_that_crosses_the_limit() {
        let mut m = BodyMeter::new(10);
        assert_eq!(m.add(10), Ok(()));
        assert_eq!(m.add(0), Ok(()));
        assert_eq!(m.add(1), Err(EdgeRefusal::BodyTooLarge));
        assert_eq!(m.seen(), 11);
        let mut m = BodyMeter::new(u64::MAX);
        assert_eq!(m.add(usize::MAX), Ok(()));
        assert_eq!(m.add(usize::MAX), Ok(()), "saturates at the limit");
    }

    #[test]
    fn labels_statuses_and_indexes() {
        for (i, r) in EdgeRefusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.label().is_empty());
        }
        assert_eq!(EdgeRefusal::BodyTooLarge.status(), Some(413));
        assert_eq!(EdgeRefusal::HeadTooLarge.status(), Some(431));
        assert_eq!(EdgeRefusal::TooManyHandshakes.status(), Some(503));
        assert_eq!(EdgeRefusal::TooManyFromIp.status(), Some(429));
        assert_eq!(EdgeRefusal::TooManyReceivers.status(), Some(503));
        assert_eq!(EdgeRefusal::TooManyReceivers.label(), "receivers");
        assert_eq!(EdgeRefusal::HeadTimeout.status(), None);
    }

    #[test]
    fn per_address_and_pending_limits() {
        let mut s = HandshakeSlots::new(3, 100, 2);
        let a = ip("192.0.2.1");
        let b = ip("192.0.2.2");
        s.begin(a).unwrap();
        s.begin(a).unwrap();
        assert_eq!(s.begin(a), Err(EdgeRefusal::TooManyFromIp));
        s.begin(b).unwrap();
        assert_eq!(s.begin(b), Err(EdgeRefusal::TooManyHandshakes));
        s.upgraded(a);
        s.begin(b).unwrap();
        assert_eq!(s.held_by(b), 2);
        // An upgraded connection still holds its address's slot.
        assert_eq!(s.begin(a), Err(EdgeRefusal::TooManyHandshakes));
        s.abandoned(b);
        assert_eq!(s.begin(a), Err(EdgeRefusal::TooManyFromIp));
        s.closed(a);
        s.begin(a).unwrap();
        // The same /64 counts as one address.
        let mut s = HandshakeSlots::new(10, 100, 1);
        s.begin(ip("2001:db8::1")).unwrap();
        assert_eq!(s.begin(ip("2001:db8::2")), Err(EdgeRefusal::TooManyFromIp));
        s.begin(ip("2001:db8:1::1")).unwrap();
    }

    #[test]
    fn receivers_in_all_are_capped_and_closing_one_frees_its_slot() {
        let mut s = HandshakeSlots::new(10, 3, 10);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for who in [a, b, b] {
            s.begin(who).unwrap();
            s.upgraded(who);
        }
        // Connections and handshakes alike hold the cap, whatever the
        // address: the fourth is refused before any other check.
        assert_eq!(s.begin(ip("192.0.2.3")), Err(EdgeRefusal::TooManyReceivers));
        assert_eq!((s.held(), s.pending()), (3, 0));
        s.closed(b);
        s.begin(a).unwrap();
        assert_eq!(s.begin(a), Err(EdgeRefusal::TooManyReceivers));
        // A handshake that fails gives its place back too.
        s.abandoned(a);
        s.begin(b).unwrap();
        assert_eq!(s.held(), 3);
        // Releasing what was never held does not free a place.
        s.closed(ip("192.0.2.9"));
        assert_eq!(s.begin(a), Err(EdgeRefusal::TooManyReceivers));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Begin(u8),
        Upgrade,
        Abandon,
        Close,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..4).prop_map(Step::Begin),
            Just(Step::Upgrade),
            Just(Step::Abandon),
            Just(Step::Close),
        ]
    }

    proptest! {
        /// Whatever the order of events, the limits hold and everything
        /// released leaves nothing behind.
        #[test]
        fn slots_never_exceed_their_limits_and_never_leak(steps in prop::collection::vec(step(), 0..200)) {
            let mut s = HandshakeSlots::new(4, 6, 3);
            let mut pending: Vec<IpAddr> = Vec::new();
            let mut open: Vec<IpAddr> = Vec::new();
            for st in steps {
                match st {
                    Step::Begin(n) => {
                        let a = IpAddr::from([10, 0, 0, n]);
                        let held = pending.iter().chain(&open).filter(|x| **x == a).count();
                        match s.begin(a) {
                            Ok(()) => pending.push(a),
                            Err(EdgeRefusal::TooManyHandshakes) => prop_assert_eq!(pending.len(), 4),
                            Err(EdgeRefusal::TooManyReceivers) => prop_assert_eq!(pending.len() + open.len(), 6),
                            Err(EdgeRefusal::TooManyFromIp) => prop_assert_eq!(held, 3),
                            Err(e) => prop_assert!(false, "{e:?}"),
                        }
                    }
                    Step::Upgrade => if let Some(a) = pending.pop() { s.upgraded(a); open.push(a) },
                    Step::Abandon => if let Some(a) = pending.pop() { s.abandoned(a) },
                    Step::Close => if let Some(a) = open.pop() { s.closed(a) },
                }
                prop_assert_eq!(s.pending(), pending.len());
                prop_assert!(s.pending() <= 4);
                prop_assert_eq!(s.held(), pending.len() + open.len());
                prop_assert!(s.held() <= 6);
                for n in 0..4u8 {
                    let a = IpAddr::from([10, 0, 0, n]);
                    prop_assert!(s.held_by(a) <= 3);
                    prop_assert_eq!(s.held_by(a), pending.iter().chain(&open).filter(|x| **x == a).count());
                }
            }
            for a in pending.drain(..) { s.abandoned(a) }
            for a in open.drain(..) { s.closed(a) }
            prop_assert_eq!((s.pending(), s.held(), s.addresses()), (0, 0, 0));
        }
    }
}
