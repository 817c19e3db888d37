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
        let mut s = String::with_capacity(36);
        for (i, b) in random.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        RequestId(ByteString::from(s))
    }

    pub(crate) fn from_utf8(bytes: bytes::Bytes) -> Result<Self, std::str::Utf8Error> {
        ByteString::try_from(bytes).map(RequestId)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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
}
