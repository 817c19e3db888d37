//! Grants read from a registry, kept for a while.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::route::ServiceUrl;

/// Each DID's grants as last read, with when they were read.
///
/// The shells read a DID's grants when its receiver connects and keep them
/// here: within `ttl` a reconnect is served from memory ([`fresh`]); after
/// that it reads the registry again; if that read fails, the last grants
/// read ([`last_known`]) keep the DID's receivers working through a
/// registry outage. [`mark_stale`] makes the next connect of every DID read
/// again (a reload) and keeps the fallback. The time is passed in, never
/// read.
///
/// [`fresh`]: CachedGrants::fresh
/// [`last_known`]: CachedGrants::last_known
/// [`mark_stale`]: CachedGrants::mark_stale
///
/// ```
/// use std::time::{Duration, Instant};
/// use anpx_core::registry::CachedGrants;
///
/// let t0 = Instant::now();
/// let mut cache = CachedGrants::new(Duration::from_secs(60));
/// cache.store("did:wba:a", vec!["h/x".parse().unwrap()], t0);
/// assert!(cache.fresh("did:wba:a", t0 + Duration::from_secs(59)).is_some());
/// assert!(cache.fresh("did:wba:a", t0 + Duration::from_secs(60)).is_none());
/// assert!(cache.last_known("did:wba:a").is_some());
/// ```
#[derive(Debug, Clone)]
pub struct CachedGrants {
    ttl: Duration,
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    grants: Vec<ServiceUrl>,
    read_at: Instant,
    stale: bool,
}

impl CachedGrants {
    /// An empty cache whose entries stay fresh for `ttl`; a zero `ttl`
    /// makes every connect read the registry.
    pub fn new(ttl: Duration) -> Self {
        CachedGrants {
            ttl,
            entries: HashMap::new(),
        }
    }

    /// How long an entry stays fresh.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `did`'s grants if they were read less than `ttl` before `now`.
    pub fn fresh(&self, did: &str, now: Instant) -> Option<&[ServiceUrl]> {
        self.entries
            .get(did)
            .filter(|e| !e.stale && now.saturating_duration_since(e.read_at) < self.ttl)
            .map(|e| e.grants.as_slice())
    }

    /// `did`'s grants as last read, however long ago: the fallback when the
    /// registry cannot be read.
    pub fn last_known(&self, did: &str) -> Option<&[ServiceUrl]> {
        self.entries.get(did).map(|e| e.grants.as_slice())
    }

    /// Records `did`'s grants as read at `now`.
    pub fn store(&mut self, did: impl Into<String>, grants: Vec<ServiceUrl>, now: Instant) {
        self.entries.insert(
            did.into(),
            Entry {
                grants,
                read_at: now,
                stale: false,
            },
        );
    }

    /// Forgets `did`, so its next connect reads the registry.
    pub fn invalidate(&mut self, did: &str) {
        self.entries.remove(did);
    }

    /// Makes every entry stale, so each DID's next connect reads the
    /// registry again, while keeping them as [`last_known`](Self::last_known)
    /// fallbacks (a reload).
    pub fn mark_stale(&mut self) {
        for e in self.entries.values_mut() {
            e.stale = true;
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Drops entries read more than `max_age` before `now`, so DIDs that
    /// stopped connecting do not stay in memory for ever. Entries kept as a
    /// fallback should outlive `ttl`, so `max_age` is usually a multiple of
    /// it.
    pub fn evict_older_than(&mut self, now: Instant, max_age: Duration) {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.read_at) <= max_age);
    }

    /// Number of DIDs held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no DID is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    #[test]
    fn freshness_follows_the_ttl_and_the_time_passed_in() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = CachedGrants::new(s(10));
        assert!(c.fresh("d", t0).is_none());
        c.store("d", vec![u("h/a")], t0);
        assert_eq!(c.fresh("d", t0), Some(&[u("h/a")][..]));
        assert!(c.fresh("d", t0 + s(9)).is_some());
        assert!(c.fresh("d", t0 + s(10)).is_none());
        // A clock that appears to go back does not expire anything.
        c.store("e", vec![], t0 + s(5));
        assert_eq!(c.fresh("e", t0), Some(&[][..]));
        // A re-read refreshes.
        c.store("d", vec![u("h/b")], t0 + s(10));
        assert_eq!(c.fresh("d", t0 + s(15)), Some(&[u("h/b")][..]));
    }

    #[test]
    fn stale_entries_remain_as_fallback_until_evicted_or_cleared() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = CachedGrants::new(s(10));
        c.store("a", vec![u("h/a")], t0);
        c.store("b", vec![u("h/b")], t0 + s(50));
        assert!(c.fresh("a", t0 + s(60)).is_none());
        assert_eq!(c.last_known("a"), Some(&[u("h/a")][..]));
        c.evict_older_than(t0 + s(60), s(30));
        assert!(c.last_known("a").is_none());
        assert_eq!(c.len(), 1);
        c.mark_stale();
        assert!(c.fresh("b", t0 + s(50)).is_none());
        assert_eq!(c.last_known("b"), Some(&[u("h/b")][..]));
        c.store("b", vec![u("h/c")], t0 + s(51));
        assert!(c.fresh("b", t0 + s(52)).is_some());
        c.invalidate("b");
        assert!(c.is_empty());
        c.store("a", vec![], t0);
        c.clear();
        assert!(c.is_empty());
        assert!(CachedGrants::new(Duration::ZERO).fresh("a", t0).is_none());
    }
}
