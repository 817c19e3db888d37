//! How far a string runs before the first byte its JSON form escapes,
//! found eight bytes at a time (as serde_json scans its strings): the meta
//! reader's strings end at such a byte, and the meta writer copies what
//! comes before one as it is. A byte at a time, the reader's scan cost
//! more than the serde_json path it replaced.

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each byte of `x` below `n` (at most 0x80). Borrows may
/// flag bytes above the first such byte too, never one below it, so the
/// lowest flag is exact.
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// The high bit of each byte of `x` equal to `b`; the lowest is exact.
fn equal(x: u64, b: u8) -> u64 {
    below(x ^ (ONES * u64::from(b)), 1)
}

/// Bytes before the first for which `stops` holds; `flags` marks such
/// bytes of eight at a time, the lowest exactly.
#[inline(always)]
fn run_len(bytes: &[u8], flags: impl Fn(u64) -> u64, stops: impl Fn(u8) -> bool) -> usize {
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let found = flags(x);
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| stops(b))
        .unwrap_or(bytes.len() - at)
}

/// Bytes before the first `"`, `\` or control character: what a JSON
/// string holds unescaped.
pub(super) fn json_plain_len(bytes: &[u8]) -> usize {
    run_len(
        bytes,
        |x| equal(x, b'"') | equal(x, b'\\') | below(x, 0x20),
        |b| b == b'"' || b == b'\\' || b < 0x20,
    )
}

/// Bytes before the first one Python's `json.dumps` escapes: a quote, a
/// backslash, or anything outside printable ASCII.
pub(super) fn ascii_plain_len(bytes: &[u8]) -> usize {
    run_len(
        bytes,
        |x| equal(x, b'"') | equal(x, b'\\') | below(x, 0x20) | equal(x, 0x7f) | (x & HIGH),
        |b| !is_printable(b),
    )
}

/// Printable ASCII other than the quote and the backslash: written as it is.
pub(super) fn is_printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes with every kind a scan stops at, in runs long enough to span
    /// several words.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                8 => 0x20u8..=0x7e,
                1 => Just(b'"'),
                1 => Just(b'\\'),
                1 => 0u8..0x20,
                1 => 0x7fu8..=0xff,
            ],
            0..40,
        )
    }

    proptest! {
        #[test]
        fn json_plain_len_stops_where_a_byte_at_a_time_stops(bytes in text()) {
            let slow = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len());
            prop_assert_eq!(json_plain_len(&bytes), slow);
        }

        #[test]
        fn ascii_plain_len_stops_where_a_byte_at_a_time_stops(bytes in text()) {
            let slow = bytes.iter().position(|&b| !is_printable(b)).unwrap_or(bytes.len());
            prop_assert_eq!(ascii_plain_len(&bytes), slow);
        }
    }
}
