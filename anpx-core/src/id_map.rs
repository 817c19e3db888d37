//! Maps keyed by request and link ids, the ones on every request's path.
//!
//! Hashed with foldhash instead of std's SipHash: a request's id is looked
//! up a few dozen times on its way through the gateway and the receiver,
//! and SipHash was 9% of the instructions of a small request through
//! `anpx both` (docs/BENCHMARKS.md, "Instructions per request"). Like
//! std's `RandomState`, foldhash's is seeded at random per process, so ids
//! a peer picks are no easier to collide; maps keyed by what the public
//! chooses (hosts, client addresses) keep std's hasher. A request id goes
//! one step further: it is hashed once, when it is made, with a hasher
//! seeded the same way, and the maps mix that `u64`
//! ([`RequestId`](crate::RequestId)'s `Hash`), instead of hashing its 36
//! bytes again at every lookup.

/// A map keyed by a request or link id.
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A set of request or link ids.
pub(crate) type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
