//! Token-bucket rate limits in virtual time: a bucket per key (a client
//! address, a route) in a table of bounded size.
//!
//! Each bucket is kept as the generic cell rate algorithm's "theoretical
//! arrival time", which is a token bucket stored in one `Instant`: a
//! request is allowed when that time is at most `burst - 1` intervals ahead
//! of now, and pushes it one interval further. A bucket whose time is in
//! the past is full, the same as no bucket at all, so idle entries can be
//! dropped without changing any decision.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use anpx_core::policy::{RateLimit, RateTable};
//!
//! let t0 = Instant::now();
//! let mut table = RateTable::new(RateLimit::new(2, 2).unwrap(), 1000);
//! assert!(table.check("a", t0).is_ok());
//! assert!(table.check("a", t0).is_ok());
//! // The burst is spent: the next token comes in half a second.
//! assert_eq!(table.check("a", t0), Err(Duration::from_millis(500)));
//! assert!(table.check("b", t0).is_ok()); // other keys have their own bucket
//! assert!(table.check("a", t0 + Duration::from_millis(500)).is_ok());
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// Requests allowed at once after a quiet period.
    burst: u32,
}

impl RateLimit {
    /// `per_sec` requests a second, with bursts of up to `burst` requests.
    /// `None` when either is zero.
    pub fn new(per_sec: u32, burst: u32) -> Option<RateLimit> {
        if per_sec == 0 || burst == 0 {
            return None;
        }
        Some(RateLimit {
            interval: Duration::from_secs(1) / per_sec,
            burst,
        })
    }

    /// Requests allowed a second, sustained.
    pub fn per_sec(&self) -> u32 {
        // `interval` is 1 s divided by a non-zero u32, so this inverts it.
        (Duration::from_secs(1).as_nanos() / self.interval.as_nanos().max(1))
            .try_into()
            .unwrap_or(u32::MAX)
    }

    /// The burst allowance.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How far ahead of now a bucket's time may be and still allow a request.
    fn tolerance(&self) -> Duration {
        self.interval * (self.burst - 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When the bucket would be full again with no further request.
    full_at: Instant,
}

/// Buckets by key, at most `capacity` of them.
///
/// When the table is full, buckets that have refilled are dropped (that
/// changes nothing); if that frees less than a quarter of the table, the
/// buckets that refill soonest go until half the table is free. Evicting a
/// bucket that was not full forgets part of a client's spending, so a flood
/// of distinct keys can relax the limit for others: the price of bounded
/// memory, and the reason `capacity` should exceed the number of clients
/// expected at once. Each eviction pass is linear in the table's size and
/// frees a constant fraction of it, so the cost per request stays constant
/// on average.
#[derive(Debug, Clone)]
pub struct RateTable<K> {
    limit: RateLimit,
    capacity: usize,
    buckets: HashMap<K, Bucket>,
    evicted: u64,
}

impl<K: Hash + Eq + Clone> RateTable<K> {
    /// A table applying `limit` to each key, holding at most `capacity`
    /// buckets (at least 1).
    pub fn new(limit: RateLimit, capacity: usize) -> Self {
        RateTable {
            limit,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            evicted: 0,
        }
    }

    /// The limit applied.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token for `key` at `now`; `Err` holds how long until one is
    /// available.
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        let tolerance = self.limit.tolerance();
        if let Some(bucket) = self.buckets.get_mut(&key) {
            let start = bucket.full_at.max(now);
            let ahead = start - now;
            if ahead > tolerance {
                return Err(ahead - tolerance);
            }
            bucket.full_at = start + self.limit.interval;
            return Ok(());
        }
        if self.buckets.len() >= self.capacity {
            self.evict(now);
        }
        // A new key starts full; the burst is at least 1, so this is allowed.
        self.buckets.insert(
            key,
            Bucket {
                full_at: now + self.limit.interval,
            },
        );
        Ok(())
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Buckets dropped before they had refilled, since the start.
    pub fn evicted_early(&self) -> u64 {
        self.evicted
    }

    fn evict(&mut self, now: Instant) {
        self.buckets.retain(|_, b| b.full_at > now);
        if self.buckets.len() <= self.capacity - self.capacity / 4 {
            return;
        }
        // Keep the half that stays spent longest.
        let keep = self.capacity / 2;
        let mut times: Vec<Instant> = self.buckets.values().map(|b| b.full_at).collect();
        let last = times.len().saturating_sub(1);
        let cut_at = (times.len() - keep.min(times.len())).min(last);
        let (_, cut, _) = times.select_nth_unstable(cut_at);
        let cut = *cut;
        let before = self.buckets.len();
        self.buckets.retain(|_, b| b.full_at >= cut);
        // Ties at the cut can keep more than half; drop arbitrary ones then.
        if self.buckets.len() > keep {
            let extra: Vec<K> = self
                .buckets
                .iter()
                .filter(|(_, b)| b.full_at == cut)
                .map(|(k, _)| k.clone())
                .take(self.buckets.len() - keep)
                .collect();
            for k in extra {
                self.buckets.remove(&k);
            }
        }
        self.evicted += (before - self.buckets.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn zero_is_no_limit() {
        assert!(RateLimit::new(0, 5).is_none());
        assert!(RateLimit::new(5, 0).is_none());
        assert_eq!(
            RateLimit::new(4, 9).map(|l| (l.per_sec(), l.burst())),
            Some((4, 9))
        );
    }

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut t = RateTable::new(RateLimit::new(10, 5).unwrap(), 16);
        for _ in 0..5 {
            assert_eq!(t.check(1, t0), Ok(()));
        }
        assert_eq!(t.check(1, t0), Err(ms(100)));
        // Refused requests do not spend tokens.
        assert_eq!(t.check(1, t0 + ms(40)), Err(ms(60)));
        // One token every 100 ms from then on, and no more.
        let mut allowed = 0;
        for step in 0..=100 {
            if t.check(1, t0 + ms(10 * step)).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10, "10 tokens refill in the 1 s that followed");
        // After a long pause the bucket is full again, but not fuller.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(t.check(1, later).is_ok());
        }
        assert!(t.check(1, later).is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_go_first() {
        let t0 = Instant::now();
        let mut t = RateTable::new(RateLimit::new(1, 2).unwrap(), 100);
        // A spent bucket for "hot".
        t.check(u32::MAX, t0).unwrap();
        t.check(u32::MAX, t0).unwrap();
        assert!(t.check(u32::MAX, t0).is_err());
        // A million distinct keys over time never hold more than 100 buckets.
        for i in 0..1_000_000u32 {
            let _ = t.check(i, t0 + ms(u64::from(i / 1000)));
            assert!(t.len() <= 100);
        }
        assert!(t.evicted_early() > 0);
        // Keys that went idle long ago were dropped without changing a
        // decision: a returning key has its full burst.
        let later = t0 + Duration::from_secs(10_000);
        assert!(t.check(7, later).is_ok() && t.check(7, later).is_ok());
        assert!(t.check(7, later).is_err());
    }

    #[test]
    fn eviction_keeps_the_spent_buckets() {
        let t0 = Instant::now();
        let mut t = RateTable::new(RateLimit::new(1, 1).unwrap(), 4);
        // Four buckets spent at different times: 0 refills first.
        for k in 0..4u32 {
            t.check(k, t0 + ms(u64::from(k) * 100)).unwrap();
        }
        let now = t0 + ms(350);
        t.check(99, now).unwrap();
        assert!(t.len() <= 4);
        // The bucket spent last is still there and still refuses.
        assert!(t.check(3, now).is_err());
    }

    proptest! {
        /// Over any window, a key is allowed at most burst + rate × window
        /// requests, whatever the timing.
        #[test]
        fn never_more_than_the_bucket_holds(
            per_sec in 1u32..50,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0u64..200, 1..300),
        ) {
            let t0 = Instant::now();
            let mut t = RateTable::new(RateLimit::new(per_sec, burst).unwrap(), 8);
            let mut now = t0;
            let mut allowed = 0u64;
            for g in gaps {
                now += ms(g);
                match t.check(0u8, now) {
                    Ok(()) => allowed += 1,
                    Err(wait) => {
                        prop_assert!(wait > Duration::ZERO);
                        // Waiting as told is enough.
                        prop_assert!(t.clone().check(0u8, now + wait).is_ok());
                    }
                }
            }
            let window = (now - t0).as_secs_f64();
            let most = f64::from(burst) + f64::from(per_sec) * window + 1.0;
            prop_assert!(allowed as f64 <= most, "{allowed} > {most}");
        }
    }
}
