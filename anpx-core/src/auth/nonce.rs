//! Single-use nonces, remembered for a fixed time and bounded in number.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::AuthError;

/// Remembers which (DID, nonce) pairs have been used.
///
/// Entries are keyed by a SHA-256 of the pair, so each costs the same small
/// amount whatever the client sent. An entry is forgotten once more than
/// `memory` has passed since it was recorded; until then it is never dropped, and a full store refuses
/// new entries instead, since forgetting early would reopen a replay window.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{AuthError, NonceStore};
/// let mut store = NonceStore::new(1, Duration::from_secs(60));
/// let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
/// store.insert(t, "did:wba:a.example", "n1").unwrap();
/// assert_eq!(store.insert(t, "did:wba:a.example", "n1"), Err(AuthError::ReplayedNonce));
/// assert_eq!(store.insert(t, "did:wba:a.example", "n2"), Err(AuthError::NonceStoreFull { capacity: 1 }));
/// // Just over a minute later the first has been forgotten.
/// store.insert(t + Duration::from_secs(61), "did:wba:a.example", "n2").unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct NonceStore {
    capacity: usize,
    memory: Duration,
    seen: HashSet<Key>,
    // Ordered by recording time, so expiry pops from the front. A clock that
    // steps back only makes later entries live longer, never shorter.
    by_time: BTreeSet<(SystemTime, Key)>,
}

type Key = [u8; 32];

impl NonceStore {
    /// A store holding at most `capacity` nonces, each for `memory`.
    pub fn new(capacity: usize, memory: Duration) -> Self {
        Self {
            capacity,
            memory,
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// Fails if the pair is still remembered, or if the store is full, as
    /// [`NonceStore::insert`] would; records nothing.
    pub fn check(&mut self, now: SystemTime, did: &str, nonce: &str) -> Result<(), AuthError> {
        self.expire(now);
        self.check_key(&key(did, nonce))
    }

    /// Records the pair as used.
    pub fn insert(&mut self, now: SystemTime, did: &str, nonce: &str) -> Result<(), AuthError> {
        self.expire(now);
        let key = key(did, nonce);
        self.check_key(&key)?;
        self.seen.insert(key);
        self.by_time.insert((now, key));
        Ok(())
    }

    /// How many nonces are remembered (expired ones included until the next
    /// call that passes a time).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets what was recorded more than `memory` before `now`. Strictly
    /// more: the timestamp window is inclusive at both ends, so a nonce
    /// must outlive the exact boundary.
    pub fn expire(&mut self, now: SystemTime) {
        while let Some(&(at, key)) = self.by_time.first() {
            match now.duration_since(at) {
                Ok(age) if age > self.memory => {
                    self.by_time.pop_first();
                    self.seen.remove(&key);
                }
                _ => break,
            }
        }
    }

    fn check_key(&self, key: &Key) -> Result<(), AuthError> {
        if self.seen.contains(key) {
            return Err(AuthError::ReplayedNonce);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::NonceStoreFull {
                capacity: self.capacity,
            });
        }
        Ok(())
    }
}

fn key(did: &str, nonce: &str) -> Key {
    // Length-prefixed so no two pairs hash the same input.
    let mut h = Sha256::new();
    h.update((did.len() as u64).to_be_bytes());
    h.update(did.as_bytes());
    h.update(nonce.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn replay_is_per_did() {
        let mut s = NonceStore::new(10, Duration::from_secs(360));
        s.insert(t(0), "did:wba:a", "n").unwrap();
        assert_eq!(
            s.check(t(1), "did:wba:a", "n"),
            Err(AuthError::ReplayedNonce)
        );
        s.insert(t(1), "did:wba:b", "n").unwrap();
        // "a"+"bn" and "ab"+"n" are different pairs.
        s.insert(t(1), "did:wba:ab", "").unwrap();
        s.insert(t(1), "did:wba:a", "b").unwrap();
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn expiry_and_capacity() {
        let mut s = NonceStore::new(2, Duration::from_secs(360));
        s.insert(t(0), "d", "1").unwrap();
        s.insert(t(100), "d", "2").unwrap();
        assert_eq!(
            s.check(t(359), "d", "3"),
            Err(AuthError::NonceStoreFull { capacity: 2 })
        );
        assert_eq!(s.insert(t(359), "d", "1"), Err(AuthError::ReplayedNonce));
        // Kept through the exact end of its memory, forgotten after.
        assert_eq!(s.insert(t(360), "d", "1"), Err(AuthError::ReplayedNonce));
        s.insert(t(361), "d", "3").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.insert(t(460), "d", "2"), Err(AuthError::ReplayedNonce));
    }

    #[test]
    fn clock_stepping_back_keeps_entries() {
        let mut s = NonceStore::new(10, Duration::from_secs(60));
        s.insert(t(1000), "d", "1").unwrap();
        s.insert(t(10), "d", "2").unwrap();
        s.expire(t(500));
        assert_eq!(s.len(), 1);
        assert_eq!(s.check(t(500), "d", "1"), Err(AuthError::ReplayedNonce));
        s.expire(t(1061));
        assert!(s.is_empty());
    }

    #[test]
    fn zero_capacity_refuses_all() {
        let mut s = NonceStore::new(0, Duration::from_secs(60));
        assert_eq!(
            s.insert(t(0), "d", "1"),
            Err(AuthError::NonceStoreFull { capacity: 0 })
        );
    }
}
