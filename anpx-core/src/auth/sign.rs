//! The client side: making a `DIDWba` header.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::jcs::content_hash;
use super::key::encode_base64url;
use super::{
    format_timestamp, service_domain, AuthError, AuthHeader, Did, DidDocument, PrivateKey,
};

/// Makes the `Authorization` header value for logging in to `service`.
///
/// `did_document_json` is the client's own DID document, `private_key_pem`
/// its PKCS#8 PEM key (secp256k1 or Ed25519), `service` the gateway's host
/// name (a `:port` is dropped, as the reference client does). The nonce
/// bytes come from the caller's CSPRNG and are written as 32 hex digits;
/// the timestamp is `now` in whole seconds.
///
/// The signing method is the first `authentication` entry whose key is the
/// given key; a key that is not in the document is refused up front
/// ([`AuthError::KeyNotInDocument`]) rather than making a header no
/// gateway would accept.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{build_header, AuthHeader};
///
/// let doc = include_str!("../../../testdata/did-wba-vectors/ed25519-did.json");
/// let pem = include_str!("../../../testdata/did-wba-vectors/ed25519-key-1_private.pem");
/// let now = UNIX_EPOCH + Duration::from_secs(1_795_311_330);
/// let nonce = [0xab; 16]; // from a CSPRNG in real use
/// let header = build_header(doc.as_bytes(), pem, "gateway.example.com:9878", now, nonce).unwrap();
///
/// let fields = AuthHeader::parse(&header).unwrap();
/// assert_eq!(fields.did, "did:wba:didhost.cc:anpproxy2");
/// assert_eq!(fields.nonce, "abababababababababababababababab");
/// assert_eq!(fields.timestamp, "2026-11-22T01:35:30Z");
/// assert_eq!(fields.verification_method, "key-1");
/// ```
pub fn build_header(
    did_document_json: &[u8],
    private_key_pem: &str,
    service: &str,
    now: SystemTime,
    nonce: [u8; 16],
) -> Result<String, AuthError> {
    let document = DidDocument::from_json(did_document_json)?;
    let key = PrivateKey::from_pem(private_key_pem)?;
    build_header_with_key(&document, &key, service, now, nonce)
}

/// [`build_header`] with the document and key already loaded, for clients
/// that log in repeatedly.
pub fn build_header_with_key(
    document: &DidDocument,
    key: &PrivateKey,
    service: &str,
    now: SystemTime,
    nonce: [u8; 16],
) -> Result<String, AuthError> {
    let did = Did::parse(&document.id)?;
    let public = key.public_key();
    // The fragment must lead the verifier back to this very key, so each
    // candidate is looked up the way the verifier will look it up.
    let fragment = document
        .authentication_methods()
        .filter_map(|m| m.id.rsplit_once('#').map(|(_, frag)| frag))
        .find(|frag| {
            document
                .find_method(&format!("{}#{frag}", did.as_str()))
                .and_then(|m| m.public_key().ok())
                .is_some_and(|k| k == public)
        })
        .ok_or(AuthError::KeyNotInDocument)?;

    let nonce = nonce.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let timestamp = format_timestamp(now)?;
    let service = service_domain(service);
    let hash = content_hash(did.as_str(), &nonce, &timestamp, service)?;
    Ok(AuthHeader {
        did: did.as_str().to_owned(),
        nonce,
        timestamp,
        verification_method: fragment.to_owned(),
        signature: encode_base64url(&key.sign(&hash)),
    }
    .to_string())
}
