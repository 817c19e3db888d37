//! What a DID-WBA signature covers: the RFC 8785 (JCS) canonical JSON of
//! `{"nonce", "timestamp", "service", "did"}`, hashed with SHA-256.
//!
//! Canonicalization is `serde_jcs`'s, so number formatting and key order
//! follow RFC 8785 for any value, not only the four strings signed here.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AuthError;

/// The RFC 8785 canonical form of any JSON value.
///
/// ```
/// use anpx_core::auth::canonical_json;
/// let v: serde_json::Value = serde_json::from_str(r#"{"b": 1e1, "a": [1.50, "\u00e9"]}"#).unwrap();
/// assert_eq!(canonical_json(&v).unwrap(), "{\"a\":[1.5,\"é\"],\"b\":10}".as_bytes());
/// ```
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, AuthError> {
    serde_jcs::to_vec(value).map_err(|e| AuthError::MalformedHeader(format!("canonical JSON: {e}")))
}

#[derive(Serialize)]
struct SignedFields<'a> {
    nonce: &'a str,
    timestamp: &'a str,
    service: &'a str,
    did: &'a str,
}

/// The canonical JSON bytes a header's signature covers (before hashing).
pub fn signed_content(
    did: &str,
    nonce: &str,
    timestamp: &str,
    service: &str,
) -> Result<Vec<u8>, AuthError> {
    canonical_json(&SignedFields {
        nonce,
        timestamp,
        service,
        did,
    })
}

/// SHA-256 of [`signed_content`]: the 32 bytes the client signs. ECDSA then
/// hashes them once more, as the reference does.
pub fn content_hash(
    did: &str,
    nonce: &str,
    timestamp: &str,
    service: &str,
) -> Result<[u8; 32], AuthError> {
    let content = signed_content(did, nonce, timestamp, service)?;
    Ok(Sha256::digest(content).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the vectors' `spec.jcs_example`.
    #[test]
    fn vector_example() {
        let canonical = signed_content(
            "did:wba:didhost.cc:anpproxy1",
            "abc",
            "2026-01-01T00:00:00Z",
            "gateway.example.com",
        )
        .unwrap();
        assert_eq!(
            canonical,
            br#"{"did":"did:wba:didhost.cc:anpproxy1","nonce":"abc","service":"gateway.example.com","timestamp":"2026-01-01T00:00:00Z"}"#
        );
        let hash = content_hash(
            "did:wba:didhost.cc:anpproxy1",
            "abc",
            "2026-01-01T00:00:00Z",
            "gateway.example.com",
        )
        .unwrap();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "8f51874218a140dbf68917c426da999854e674b8037524795eea216481475a9a"
        );
    }

    #[test]
    fn rfc8785_strings_and_numbers() {
        // Escapes per RFC 8785 §3.2.2.2: short forms, lower-case \u00XX, and
        // everything else (including U+2028 and non-ASCII) literal.
        let v = serde_json::json!({
            "s": "\u{8}\t\n\u{c}\r\"\\\u{1f}\u{7f}\u{2028}é/",
            "n": [0.0, -0.0, 1e21, 1e-7, 123456789012345680000.0, 4.5, 2e-3],
        });
        assert_eq!(
            String::from_utf8(canonical_json(&v).unwrap()).unwrap(),
            "{\"n\":[0,0,1e+21,1e-7,123456789012345680000,4.5,0.002],\"s\":\"\\b\\t\\n\\f\\r\\\"\\\\\\u001f\u{7f}\u{2028}é/\"}"
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: U+1F600 (a surrogate pair, 0xD83D...)
        // sorts before U+FB33 in UTF-16, though not in UTF-8 or by scalar.
        let v = serde_json::json!({"\u{fb33}": 1, "\u{1f600}": 2, "\r": 3, "1": 4, "\u{80}": 5, "ö": 6});
        let s = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(
            s,
            "{\"\\r\":3,\"1\":4,\"\u{80}\":5,\"ö\":6,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }
}
