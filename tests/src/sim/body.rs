//! Body contents: every body is a window onto one shared random pattern,
//! placed by a hash of who it belongs to, so bodies cost nothing to make,
//! differ between requests, and can be re-derived for checking.

use std::sync::OnceLock;

use anpx_core::RequestId;
use bytes::Bytes;

/// Largest body the simulation sends either way.
pub const MAX_BODY: usize = 200_000;

const PATTERN_LEN: usize = 512 * 1024;

fn pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut bytes = vec![0u8; PATTERN_LEN];
        fastrand::Rng::with_seed(0x616e_7078_7369_6d00).fill(&mut bytes);
        Bytes::from(bytes)
    })
}

/// `len` bytes of the pattern, starting where `key` says.
pub fn window(key: u64, len: usize) -> Bytes {
    let len = len.min(MAX_BODY);
    let room = (PATTERN_LEN - len + 1) as u64;
    let start = (mix(key) % room) as usize;
    pattern().slice(start..start + len)
}

/// The response body an upstream sends for `request`.
pub fn response_body(request: &RequestId, len: usize) -> Bytes {
    window(fnv1a(request.as_str().as_bytes()) ^ 0x7265_7370, len)
}

/// The request body of the client's `serial`-th request.
pub fn request_body(serial: u64, len: usize) -> Bytes {
    window(serial ^ 0x7265_7175_6573_7400, len)
}

/// A body length: mostly empty or small, rarely large, because large bodies
/// are what makes a seed slow.
pub fn random_len(rng: &mut fastrand::Rng) -> usize {
    match rng.u32(..1000) {
        0..=349 => 0,
        350..=819 => rng.usize(1..=1_500),
        820..=974 => rng.usize(1_501..=16_000),
        975..=994 => rng.usize(16_001..=70_000),
        _ => rng.usize(70_001..=MAX_BODY),
    }
}

/// FNV-1a, for digests that must not change between runs or builds.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(0xcbf2_9ce4_8422_2325, bytes)
}

/// Continues an FNV-1a hash over more bytes.
pub fn fnv1a_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer: spreads nearby keys over the whole pattern.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_stable_and_distinct() {
        assert_eq!(request_body(7, 100), request_body(7, 100));
        assert_ne!(request_body(7, 100), request_body(8, 100));
        assert_eq!(request_body(3, MAX_BODY).len(), MAX_BODY);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
