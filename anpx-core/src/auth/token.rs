//! Access tokens for callers that proved a DID: compact JWS (JWT) signed
//! with Ed25519 (`alg: EdDSA`), claims `sub` (the DID), `aud` (the service
//! name the DID signed for), `iat` and `exp`, as the reference SDK's
//! verifier issues them (`sub`, `iat`, `exp`; `aud` is added so a token
//! earned at one host is not accepted at another).
//!
//! Written here rather than taken from a JWT crate: one fixed algorithm
//! over the `ed25519-dalek` the core already uses is three base64url parts
//! and one signature, while the JWT crates bring a second crypto backend
//! and read the clock themselves, which the sans-IO core must not do.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};

use super::key::{decode_base64url, encode_base64url};

/// The JOSE header every token carries, base64url-encoded once.
const HEADER_JSON: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

/// Longest token read; a real one is under 400 bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// How far `iat` may be ahead of `now` (clock steps), as the SDK allows.
const ISSUED_AHEAD_TOLERANCE: Duration = Duration::from_secs(5);

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with the expected header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature is not this gateway's.
    #[error("token signature does not verify")]
    BadSignature,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Issued later than now (a forged or future-clocked token).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// Issued for another service name.
    #[error("token was issued for {0:?}")]
    WrongAudience(String),
}

impl TokenError {
    /// A short stable name for the reason, for metric labels and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "token_malformed",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::IssuedInFuture => "token_from_future",
            Self::WrongAudience(_) => "token_wrong_service",
        }
    }
}

/// The claims of a token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The DID (`sub`).
    pub did: String,
    /// The service name it was issued for (`aud`).
    pub service: String,
    /// When it expires (`exp`).
    pub expires: SystemTime,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// The key tokens are signed and checked with.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{TokenError, TokenKey};
///
/// let key = TokenKey::from_seed([7; 32]);
/// let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let hour = Duration::from_secs(3600);
/// let token = key.mint("did:wba:example.com:alice", "api.example.com", now, hour).unwrap();
/// let claims = key.check(&token, "api.example.com", now + Duration::from_secs(60)).unwrap();
/// assert_eq!(claims.did, "did:wba:example.com:alice");
/// assert_eq!(key.check(&token, "api.example.com", now + hour), Err(TokenError::Expired));
/// assert!(matches!(key.check(&token, "other.example.com", now), Err(TokenError::WrongAudience(_))));
/// ```
#[derive(Clone)]
pub struct TokenKey {
    key: SigningKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(Ed25519, ..)")
    }
}

impl TokenKey {
    /// Reads an unencrypted PKCS#8 PEM Ed25519 private key (what
    /// `openssl genpkey -algorithm ed25519` writes).
    pub fn from_pem(pem: &str) -> Result<Self, super::AuthError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| TokenKey { key })
            .map_err(|_| {
                super::AuthError::BadPrivateKey("not an unencrypted PKCS#8 PEM Ed25519 key")
            })
    }

    /// A key from a 32-byte seed the caller drew from a CSPRNG.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        TokenKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public key, raw 32 bytes, for an agent that checks tokens itself.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A token for `did`, issued for `service` at `now`, good for `lifetime`.
    /// Fails only for a `now` before 1970.
    pub fn mint(
        &self,
        did: &str,
        service: &str,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<String, TokenError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::Malformed("clock before 1970"))?
            .as_secs();
        let claims = Claims {
            sub: did.to_owned(),
            aud: service.to_ascii_lowercase(),
            iat,
            exp: iat.saturating_add(lifetime.as_secs().max(1)),
        };
        let claims =
            serde_json::to_vec(&claims).map_err(|_| TokenError::Malformed("claims not JSON"))?;
        let signing_input = format!(
            "{}.{}",
            encode_base64url(HEADER_JSON.as_bytes()),
            encode_base64url(&claims)
        );
        let signature = self.key.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            encode_base64url(&signature.to_bytes())
        ))
    }

    /// Checks a token at `now` for a request to `service`: this key's
    /// signature, the header, not expired, issued for `service`.
    pub fn check(
        &self,
        token: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<TokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three parts"));
        };
        let signature = decode_base64url(signature)
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or(TokenError::Malformed("signature"))?;
        let signing_input = &token[..header.len() + 1 + claims.len()];
        self.key
            .verifying_key()
            .verify(
                signing_input.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .map_err(|_| TokenError::BadSignature)?;
        // Signed by this key, so the header is ours; checked anyway so a
        // change of format cannot be misread.
        let header = decode_base64url(header).ok_or(TokenError::Malformed("header"))?;
        if header != HEADER_JSON.as_bytes() {
            return Err(TokenError::Malformed("header"));
        }
        let claims = decode_base64url(claims).ok_or(TokenError::Malformed("claims"))?;
        let claims: Claims =
            serde_json::from_slice(&claims).map_err(|_| TokenError::Malformed("claims"))?;
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if claims.iat > now_secs.saturating_add(ISSUED_AHEAD_TOLERANCE.as_secs()) {
            return Err(TokenError::IssuedInFuture);
        }
        if now_secs >= claims.exp {
            return Err(TokenError::Expired);
        }
        if !claims.aud.eq_ignore_ascii_case(service) {
            return Err(TokenError::WrongAudience(claims.aud));
        }
        Ok(TokenClaims {
            did: claims.sub,
            service: claims.aud,
            expires: UNIX_EPOCH + Duration::from_secs(claims.exp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    const DID: &str = "did:wba:example.com:alice";
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let key = TokenKey::from_seed([1; 32]);
        let token = key.mint(DID, "API.example.com", t(0), HOUR).unwrap();
        let claims = key.check(&token, "api.example.com", t(3599)).unwrap();
        assert_eq!(claims.did, DID);
        assert_eq!(claims.service, "api.example.com");
        assert_eq!(claims.expires, t(3600));
        assert_eq!(
            key.check(&token, "api.example.com", t(3600)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_claims_are_the_sdks_plus_aud() {
        let key = TokenKey::from_seed([1; 32]);
        let token = key.mint(DID, "api.example.com", t(0), HOUR).unwrap();
        let claims = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&decode_base64url(claims).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"sub": DID, "aud": "api.example.com", "iat": 1_800_000_000u64, "exp": 1_800_003_600u64})
        );
    }

    #[test]
    fn another_keys_or_an_altered_token_is_refused() {
        let key = TokenKey::from_seed([1; 32]);
        let other = TokenKey::from_seed([2; 32]);
        let token = other.mint(DID, "api.example.com", t(0), HOUR).unwrap();
        assert_eq!(
            key.check(&token, "api.example.com", t(1)),
            Err(TokenError::BadSignature)
        );
        // The claims swapped for another DID's, the signature kept.
        let genuine = key.mint(DID, "api.example.com", t(0), HOUR).unwrap();
        let forged_claims = key
            .mint("did:wba:example.com:mallory", "api.example.com", t(0), HOUR)
            .unwrap();
        let parts: Vec<&str> = genuine.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            forged_claims.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(
            key.check(&forged, "api.example.com", t(1)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        let key = TokenKey::from_seed([1; 32]);
        for bad in ["", "a", "a.b", "a.b.c", "a.b.c.d", "..", "é.é.é"] {
            assert!(
                matches!(key.check(bad, "x", t(0)), Err(TokenError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            key.check(&long, "x", t(0)),
            Err(TokenError::Malformed("too long"))
        );
    }

    #[test]
    fn a_token_from_the_future_is_refused() {
        let key = TokenKey::from_seed([1; 32]);
        let token = key.mint(DID, "api.example.com", t(100), HOUR).unwrap();
        assert!(key.check(&token, "api.example.com", t(95)).is_ok());
        assert_eq!(
            key.check(&token, "api.example.com", t(94)),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn the_pem_key_is_read() {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/did-wba-vectors/ed25519-key-1_private.pem"
        ))
        .unwrap();
        let key = TokenKey::from_pem(&pem).unwrap();
        let token = key.mint(DID, "h", t(0), HOUR).unwrap();
        assert!(key.check(&token, "h", t(1)).is_ok());
        assert!(TokenKey::from_pem("not a key").is_err());
    }
}
