//! Why a DID-WBA login (or the building of a header) was refused.

use thiserror::Error;

/// A DID-WBA failure, one variant per reason.
///
/// Every variant is a refusal of the login (the reference closes the
/// WebSocket with code 4003 for all of them); the variants exist so logs and
/// metrics can tell a misconfigured client from an attack or a full store.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The `Authorization` value is not a well-formed `DIDWba` header.
    #[error("malformed DIDWba Authorization header: {0}")]
    MalformedHeader(String),
    /// The DID is not a `did:wba` DID this crate can resolve safely.
    #[error("malformed DID {did:?}: {reason}")]
    MalformedDid {
        /// The DID as received.
        did: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The timestamp is not RFC 3339 (`2026-11-22T01:35:42Z`), or the clock
    /// value given cannot be written as one.
    #[error("bad timestamp {0:?}: expected RFC 3339 such as 2026-11-22T01:35:42Z")]
    BadTimestamp(String),
    /// The timestamp is older than the verifier's window.
    #[error("timestamp expired: {age_secs} s old, at most {max_secs} s allowed")]
    Expired {
        /// How old the timestamp is, in whole seconds.
        age_secs: u64,
        /// The configured maximum age.
        max_secs: u64,
    },
    /// The timestamp lies further in the future than clock skew explains.
    #[error("timestamp from the future: {ahead_secs} s ahead, at most {max_secs} s allowed")]
    FromFuture {
        /// How far ahead of `now` the timestamp is, in whole seconds.
        ahead_secs: u64,
        /// The configured maximum.
        max_secs: u64,
    },
    /// This DID already logged in with this nonce inside the window.
    #[error("nonce already used")]
    ReplayedNonce,
    /// The header was signed for a service name this gateway does not
    /// answer to (`gateway.auth.service_names`).
    #[error("signed for service {0:?}, which is not one of this gateway's names")]
    WrongService(String),
    /// The nonce store holds its maximum of unexpired nonces. Forgetting one
    /// early would reopen it to replay, so new logins wait instead.
    #[error(
        "nonce store full ({capacity} unexpired nonces); refusing new logins until some expire"
    )]
    NonceStoreFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// This DID holds its maximum of unexpired nonces: it logged in that
    /// many times within the nonce memory. Other DIDs are not affected.
    #[error(
        "this DID already holds {per_did} unexpired nonces; refusing its new logins until some expire"
    )]
    NonceQuotaFull {
        /// The configured per-DID quota.
        per_did: usize,
    },
    /// The DID document's `id` is not the DID of the header.
    #[error("DID document id {found:?} does not match the DID {expected:?}")]
    DidMismatch {
        /// The DID of the header.
        expected: String,
        /// The document's `id`.
        found: String,
    },
    /// The verification method named by the header is not in the document.
    #[error("verification method {0:?} is not a key of the DID document")]
    UnknownKey(String),
    /// The verification method has a type or key encoding this crate does
    /// not verify (for example a P-256 key).
    #[error("unsupported key type: {0}")]
    UnsupportedKeyType(String),
    /// The verification method's public key is of a supported type but its
    /// bytes are not a valid key.
    #[error("invalid public key in {id:?}: {reason}")]
    BadKey {
        /// The verification method's id.
        id: String,
        /// What is wrong with the key.
        reason: &'static str,
    },
    /// The signature does not verify with the named key.
    #[error("signature verification failed")]
    BadSignature,
    /// The DID document is not valid JSON of the expected shape.
    #[error("invalid DID document: {0}")]
    BadDocument(String),
    /// The private key is not a PKCS#8 (or SEC1) PEM secp256k1 or Ed25519
    /// key, or key material cannot form one.
    #[error("invalid private key: {0}")]
    BadPrivateKey(&'static str),
    /// No authentication method of the DID document holds the public half of
    /// the private key, so a header signed with it could never verify.
    #[error("the private key matches no authentication method of the DID document")]
    KeyNotInDocument,
}

impl AuthError {
    /// A short stable name for the reason, for metric labels and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MalformedHeader(_) => "malformed_header",
            Self::MalformedDid { .. } => "malformed_did",
            Self::BadTimestamp(_) => "bad_timestamp",
            Self::Expired { .. } => "expired",
            Self::FromFuture { .. } => "from_future",
            Self::ReplayedNonce => "replayed_nonce",
            Self::WrongService(_) => "wrong_service",
            Self::NonceStoreFull { .. } => "nonce_store_full",
            Self::NonceQuotaFull { .. } => "nonce_quota_full",
            Self::DidMismatch { .. } => "did_mismatch",
            Self::UnknownKey(_) => "unknown_key",
            Self::UnsupportedKeyType(_) => "unsupported_key_type",
            Self::BadKey { .. } => "bad_key",
            Self::BadSignature => "bad_signature",
            Self::BadDocument(_) => "bad_document",
            Self::BadPrivateKey(_) => "bad_private_key",
            Self::KeyNotInDocument => "key_not_in_document",
        }
    }
}
