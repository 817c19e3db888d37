//! The id that ties the frames of one request and its response together.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::LazyLock;

use bytestring::ByteString;

/// A request id: UTF-8, a UUID v4 string in practice. Cheap to clone (it
/// shares the received frame's buffer).
///
/// ```
/// use anpx_core::RequestId;
/// let id = RequestId::from("550e8400-e29b-41d4-a716-446655440000");
/// assert_eq!(id.as_str().len(), 36);
/// ```
#[derive(Clone)]
pub struct RequestId {
    text: ByteString,
    /// `text` hashed once, when the id is made: an id is looked up a few
    /// dozen times on its way through the gateway and the receiver, and
    /// each lookup hashed all 36 bytes again (see [`Hash`](#impl-Hash-for-RequestId)).
    hash: u64,
}

impl RequestId {
    fn new(text: ByteString) -> Self {
        let hash = ID_HASHER.hash_one(text.as_bytes());
        RequestId { text, hash }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
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
        RequestId::new(ByteString::from(
            std::str::from_utf8(&text).expect("hex digits and dashes"),
        ))
    }

    pub(crate) fn from_utf8(bytes: bytes::Bytes) -> Result<Self, std::str::Utf8Error> {
        ByteString::try_from(bytes).map(RequestId::new)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Where each byte's two digits go in `8-4-4-4-12`.
const UUID_DIGITS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::new(ByteString::from(s))
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        RequestId::new(ByteString::from(s))
    }
}

/// Hashes ids for [`RequestId::new`]. Seeded at random once per process, as
/// the maps' own hashers are: a peer that picks ids (a receiver answering,
/// a gateway sending) cannot predict which of them collide.
static ID_HASHER: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

/// Writes the hash taken when the id was made; the map's hasher mixes it
/// with its own seed. Equal ids have equal texts, hence equal hashes.
impl Hash for RequestId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for RequestId {}

impl PartialOrd for RequestId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By text, as the derived order was.
impl Ord for RequestId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
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

    #[test]
    fn ids_equal_by_text_are_equal_and_hash_alike() {
        use std::collections::HashSet;
        let text = "550e8400-e29b-41d4-a716-446655440000";
        let from_str = RequestId::from(text);
        let from_bytes = RequestId::from_utf8(bytes::Bytes::from_static(text.as_bytes())).unwrap();
        let from_string = RequestId::from(text.to_owned());
        assert_eq!(from_str, from_bytes);
        assert_eq!(from_str, from_string);
        let hash = |id: &RequestId| foldhash::fast::FixedState::default().hash_one(id);
        assert_eq!(hash(&from_str), hash(&from_bytes));
        let other = RequestId::from("550e8400-e29b-41d4-a716-446655440001");
        assert_ne!(from_str, other);
        let set: HashSet<RequestId> = [from_str.clone(), from_bytes, other.clone()].into();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&from_string) && set.contains(&other));
        assert!(from_str < other);
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

        /// Ids compare as their texts do, and equal ones hash alike.
        #[test]
        fn ids_compare_as_their_texts(a in "[0-9a-f-]{0,6}", b in "[0-9a-f-]{0,6}") {
            let (x, y) = (RequestId::from(a.as_str()), RequestId::from(b.as_str()));
            proptest::prop_assert_eq!(x == y, a == b);
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            if x == y {
                let hash = |id: &RequestId| foldhash::fast::FixedState::default().hash_one(id);
                proptest::prop_assert_eq!(hash(&x), hash(&y));
            }
        }
    }
}
