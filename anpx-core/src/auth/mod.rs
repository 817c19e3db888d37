//! DID-WBA authentication of receivers, both sides, without I/O.
//!
//! A receiver proves it controls a `did:wba` DID by sending, on its
//! WebSocket handshake,
//! `Authorization: DIDWba did="…", nonce="…", timestamp="…", verification_method="…", signature="…"`:
//! a signature over the SHA-256 of the RFC 8785 canonical JSON of
//! `{nonce, timestamp, service, did}` made with a key listed in the DID's
//! document, which lives at an HTTPS URL derived from the DID.
//!
//! - Gateway: [`Verifier::check_header`] (no document needed: syntax,
//!   timestamp window, nonce not yet used) tells which document to fetch;
//!   [`Verifier::verify`] checks it and the signature and spends the nonce.
//!   The same split in two owners: [`Checker`] (the pure checks, the
//!   signature among them) and [`Nonces`] (what was spent), which the
//!   gateway machine keeps so that the signature is checked outside its
//!   lock.
//! - Callers at the edge: [`CallerPolicy`] says which routes require a
//!   DID, [`Credential`] reads the caller's header, [`TokenKey`] mints and
//!   checks the bearer tokens a verified caller gets.
//! - Receiver: [`build_header`] signs; [`generate_did_document`] makes a new
//!   DID document and key.
//!
//! Nothing here reads the clock or draws randomness: `now`, nonces and key
//! material come from the caller. Wire format and verdicts follow the
//! reference SDK, except that a genuine secp256k1 signature whose r or s
//! lost a leading zero byte is accepted (the reference mis-splits it).

mod caller;
mod did;
mod document;
mod error;
mod generate;
mod header;
mod jcs;
mod key;
mod login;
mod nonce;
mod private_key;
mod sign;
mod time;
mod token;
mod verify;

pub use caller::{challenge, forward_did, CallerPolicy, Credential};
pub use did::{Did, MAX_DID_LEN};
pub use document::{Authentication, DidDocument, Jwk, KeyEncoding, VerificationMethod};
pub use error::AuthError;
pub use generate::generate_did_document;
pub use header::{AuthHeader, MAX_HEADER_LEN, SCHEME};
pub use jcs::{canonical_json, content_hash, signed_content};
pub use key::{KeyType, PublicKey, MIN_SECP256K1_SIGNATURE_LEN};
pub use login::Login;
pub use nonce::NonceStore;
pub use private_key::{KeyMaterial, PrivateKey};
pub use sign::{build_header, build_header_with_key};
pub use time::{format_timestamp, parse_timestamp};
pub use token::{TokenClaims, TokenError, TokenKey, MAX_TOKEN_LEN};
pub use verify::{Checker, Nonces, ParsedHeader, VerifiedDid, Verifier, VerifierConfig};

/// The service name a client signs for: the host of the gateway address
/// without its port (`gateway.example.com:9878` → `gateway.example.com`,
/// `[::1]:80` → `[::1]`), as the reference client derives it.
///
/// ```
/// use anpx_core::auth::service_domain;
/// assert_eq!(service_domain("gateway.example.com:9878"), "gateway.example.com");
/// assert_eq!(service_domain("gateway.example.com"), "gateway.example.com");
/// assert_eq!(service_domain("[::1]:9878"), "[::1]");
/// ```
pub fn service_domain(authority: &str) -> &str {
    let authority = authority.trim();
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}
