//! The id that ties the frames of one request and its response together.

use std::fmt;

use bytestring::ByteString;

/// A request id: UTF-8, a UUID v4 string in practice. Cheap to clone (it
/// shares the received frame's buffer).
///
/// ```
/// use anpx_core::RequestId;
/// let id = RequestId::from("550e8400-e29b-41d4-a716-446655440000");
/// assert_eq!(id.as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(ByteString);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Formats 16 random bytes as a UUID v4 string, as the reference's ids
    /// are. The caller supplies the randomness: the core reads no entropy.
    pub fn uuid_v4(mut random: [u8; 16]) -> Self {
        random[6] = (random[6] & 0x0f) | 0x40;
        random[8] = (random[8] & 0x3f) | 0x80;
        // Written into a fixed array, then copied once: every request gets
        // an id, and pushing chars one at a time cost five times as much.
        let mut text = [b'-'; 36];
        for (b, at) in random.iter().zip(UUID_DIGITS) {
            text[at] = HEX[usize::from(b >> 4)];
            text[at + 1] = HEX[usize::from(b & 0x0f)];
        }
        RequestId(ByteString::from(
            std::str::from_utf8(&text).expect("hex digits and dashes"),
        ))
    }

    pub(crate) fn from_utf8(bytes: bytes::Bytes) -> Result<Self, std::str::Utf8Error> {
        ByteString::try_from(bytes).map(RequestId)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Where each byte's two digits go in `8-4-4-4-12`.
const UUID_DIGITS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId(ByteString::from(s))
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        RequestId(ByteString::from(s))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v4_sets_version_and_variant() {
        let id = RequestId::uuid_v4([0xff; 16]);
        assert_eq!(id.as_str(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = RequestId::uuid_v4([0; 16]);
        assert_eq!(id.as_str(), "00000000-0000-4000-8000-000000000000");
    }

    proptest::proptest! {
        /// Each byte's digits land where the `8-4-4-4-12` layout puts them.
        #[test]
        fn uuid_v4_is_the_bytes_in_hex(random in proptest::array::uniform16(proptest::num::u8::ANY)) {
            let mut set = random;
            set[6] = (set[6] & 0x0f) | 0x40;
            set[8] = (set[8] & 0x3f) | 0x80;
            let hex: String = set.iter().map(|b| format!("{b:02x}")).collect();
            let want = [&hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]].join("-");
            let id = RequestId::uuid_v4(random);
            proptest::prop_assert_eq!(id.as_str(), want);
        }
    }
}
