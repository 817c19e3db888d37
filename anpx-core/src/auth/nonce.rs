//! Single-use nonces, remembered for a fixed time and bounded in number,
//! in all and per DID.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::AuthError;

/// Remembers which (DID, nonce) pairs have been used.
///
/// Entries are keyed by a SHA-256 of the pair, so each costs the same small
/// amount whatever the client sent. An entry is forgotten once more than
/// `memory` has passed since it was recorded; until then it is never
/// dropped, and a full store refuses new entries instead, since forgetting
/// early would reopen a replay window.
///
/// Each DID may hold at most `per_did` entries, so one DID logging in
/// over and over fills only its own quota, not the store other DIDs need.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{AuthError, NonceStore};
/// let mut store = NonceStore::new(1, 1, Duration::from_secs(60));
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
    per_did: usize,
    memory: Duration,
    seen: HashSet<Key>,
    // Ordered by recording time, so expiry pops from the front. A clock that
    // steps back only makes later entries live longer, never shorter.
    // Each entry also names its DID's key, to give back its quota.
    by_time: BTreeSet<(SystemTime, Key, Key)>,
    // Entries per DID; never more keys than `seen` has entries.
    per_did_count: HashMap<Key, usize>,
}

type Key = [u8; 32];

impl NonceStore {
    /// A store holding at most `capacity` nonces, at most `per_did` of
    /// them for one DID, each for `memory`.
    pub fn new(capacity: usize, per_did: usize, memory: Duration) -> Self {
        Self {
            capacity,
            per_did,
            memory,
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
            per_did_count: HashMap::new(),
        }
    }

    /// Fails if the pair is still remembered, or if the store is full, as
    /// [`NonceStore::insert`] would; records nothing.
    pub fn check(&mut self, now: SystemTime, did: &str, nonce: &str) -> Result<(), AuthError> {
        self.expire(now);
        self.check_key(&key(did, nonce), &did_key(did))
    }

    /// Records the pair as used.
    pub fn insert(&mut self, now: SystemTime, did: &str, nonce: &str) -> Result<(), AuthError> {
        self.expire(now);
        let (key, did) = (key(did, nonce), did_key(did));
        self.check_key(&key, &did)?;
        self.seen.insert(key);
        self.by_time.insert((now, key, did));
        *self.per_did_count.entry(did).or_default() += 1;
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
        while let Some(&(at, key, did)) = self.by_time.first() {
            match now.duration_since(at) {
                Ok(age) if age > self.memory => {
                    self.by_time.pop_first();
                    self.seen.remove(&key);
                    if let Some(n) = self.per_did_count.get_mut(&did) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_did_count.remove(&did);
                        }
                    }
                }
                _ => break,
            }
        }
    }

    /// How many nonces of `did` are remembered.
    pub fn len_for(&self, did: &str) -> usize {
        self.per_did_count.get(&did_key(did)).copied().unwrap_or(0)
    }

    fn check_key(&self, key: &Key, did: &Key) -> Result<(), AuthError> {
        if self.seen.contains(key) {
            return Err(AuthError::ReplayedNonce);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::NonceStoreFull {
                capacity: self.capacity,
            });
        }
        if self.per_did_count.get(did).copied().unwrap_or(0) >= self.per_did {
            return Err(AuthError::NonceQuotaFull {
                per_did: self.per_did,
            });
        }
        Ok(())
    }
}

fn did_key(did: &str) -> Key {
    Sha256::digest(did.as_bytes()).into()
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
        let mut s = NonceStore::new(10, 10, Duration::from_secs(360));
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
        let mut s = NonceStore::new(2, 2, Duration::from_secs(360));
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
        let mut s = NonceStore::new(10, 10, Duration::from_secs(60));
        s.insert(t(1000), "d", "1").unwrap();
        s.insert(t(10), "d", "2").unwrap();
        s.expire(t(500));
        assert_eq!(s.len(), 1);
        assert_eq!(s.check(t(500), "d", "1"), Err(AuthError::ReplayedNonce));
        s.expire(t(1061));
        assert!(s.is_empty());
    }

    #[test]
    fn one_did_fills_only_its_own_quota() {
        let mut s = NonceStore::new(10, 3, Duration::from_secs(360));
        for n in 0..3 {
            s.insert(t(0), "did:wba:flood", &n.to_string()).unwrap();
        }
        assert_eq!(
            s.insert(t(1), "did:wba:flood", "3"),
            Err(AuthError::NonceQuotaFull { per_did: 3 })
        );
        // Another DID still has all of its own.
        for n in 0..3 {
            s.insert(t(1), "did:wba:genuine", &n.to_string()).unwrap();
        }
        assert_eq!(s.len_for("did:wba:flood"), 3);
        // A replay is still a replay, not a quota matter.
        assert_eq!(
            s.insert(t(2), "did:wba:flood", "0"),
            Err(AuthError::ReplayedNonce)
        );
        // Expiry gives the quota back, and forgets the DID once empty.
        s.insert(t(361), "did:wba:flood", "3").unwrap();
        assert_eq!(s.len_for("did:wba:flood"), 1);
        s.expire(t(1000));
        assert!(s.is_empty());
        assert!(s.per_did_count.is_empty());
    }

    #[test]
    fn zero_capacity_refuses_all() {
        let mut s = NonceStore::new(0, 0, Duration::from_secs(60));
        assert_eq!(
            s.insert(t(0), "d", "1"),
            Err(AuthError::NonceStoreFull { capacity: 0 })
        );
    }
}
