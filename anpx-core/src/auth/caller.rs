//! DID-WBA authentication of callers at the edge, as decisions: which
//! requests must prove a DID, what their `Authorization` header offers,
//! the header the verified DID reaches the agent in, and the challenge a
//! refused call gets. The shell fetches DID documents and runs the
//! [`Verifier`](super::Verifier) for the `DIDWba` case; tokens are
//! [`TokenKey`]'s.

use std::time::Duration;

use crate::route::{RouteTable, ServiceUrl};

use super::TokenKey;

/// What a caller's `Authorization` header offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header.
    Missing,
    /// A `DIDWba …` header, whole, for the verifier.
    DidWba(&'a str),
    /// A `Bearer …` token, without the scheme.
    Bearer(&'a str),
    /// Another scheme, or not text.
    Unsupported,
}

impl<'a> Credential<'a> {
    /// Reads an `Authorization` value (`None`: no header). Schemes are
    /// matched case-insensitively (RFC 9110 §11.1).
    ///
    /// ```
    /// use anpx_core::auth::Credential;
    /// assert_eq!(Credential::of(Some("bearer abc")), Credential::Bearer("abc"));
    /// assert_eq!(Credential::of(Some("DIDWba did=\"x\"")), Credential::DidWba("DIDWba did=\"x\""));
    /// assert_eq!(Credential::of(Some("Basic eDp5")), Credential::Unsupported);
    /// assert_eq!(Credential::of(None), Credential::Missing);
    /// ```
    pub fn of(authorization: Option<&'a str>) -> Self {
        let Some(value) = authorization.map(str::trim) else {
            return Credential::Missing;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case(super::SCHEME) {
            Credential::DidWba(value)
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            Credential::Bearer(rest.trim())
        } else {
            Credential::Unsupported
        }
    }
}

/// The `WWW-Authenticate` value of a refused call: `DIDWba`, and a
/// `Bearer` challenge naming the error when a token was offered and
/// refused (RFC 6750 §3).
pub fn challenge(bad_token: bool) -> &'static str {
    if bad_token {
        "Bearer error=\"invalid_token\", DIDWba"
    } else {
        "DIDWba"
    }
}

/// Sets the header the agent learns the caller's DID from: every header
/// the caller sent under that name (or its `_` spelling, which some
/// frameworks read as the same) is removed, then the verified DID, if any,
/// is added.
///
/// ```
/// use anpx_core::auth::forward_did;
/// let mut h = vec![
///     ("X-Anpx-Caller-Did".to_owned(), "did:wba:forged".to_owned()),
///     ("x_anpx_caller_did".to_owned(), "did:wba:forged".to_owned()),
///     ("accept".to_owned(), "*/*".to_owned()),
/// ];
/// forward_did(&mut h, "x-anpx-caller-did", Some("did:wba:example.com:alice"));
/// assert_eq!(h, [
///     ("accept".to_owned(), "*/*".to_owned()),
///     ("x-anpx-caller-did".to_owned(), "did:wba:example.com:alice".to_owned()),
/// ]);
/// ```
pub fn forward_did(headers: &mut Vec<(String, String)>, did_header: &str, did: Option<&str>) {
    headers.retain(|(name, _)| {
        name.len() != did_header.len()
            || !name
                .bytes()
                .zip(did_header.bytes())
                .all(|(a, b)| fold(a) == fold(b))
    });
    if let Some(did) = did {
        headers.push((did_header.to_owned(), did.to_owned()));
    }
}

/// Case and `-`/`_` folded, for header name comparison.
fn fold(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        b'_' => b'-',
        b => b,
    }
}

/// Which routes require callers to prove a DID, and the token settings.
#[derive(Debug, Clone)]
pub struct CallerPolicy {
    routes: RouteTable<()>,
    key: TokenKey,
    lifetime: Duration,
    did_header: String,
}

impl CallerPolicy {
    /// A policy protecting `services` (host and path prefix, matched as
    /// routes are), minting tokens with `key` good for `lifetime`, and
    /// forwarding the DID in `did_header`.
    pub fn new(
        services: &[ServiceUrl],
        key: TokenKey,
        lifetime: Duration,
        did_header: &str,
    ) -> Self {
        let mut routes = RouteTable::new();
        for s in services {
            routes.insert(s, ());
        }
        CallerPolicy {
            routes,
            key,
            lifetime,
            did_header: did_header.to_ascii_lowercase(),
        }
    }

    /// Whether a request to `host` and `path` must prove a DID. The path
    /// is also looked at percent-decoded, so `/%73ecure` is as protected
    /// as `/secure` (an agent behind a broader route may decode it).
    ///
    /// ```
    /// use std::time::Duration;
    /// use anpx_core::auth::{CallerPolicy, TokenKey};
    /// let p = CallerPolicy::new(
    ///     &["api.example.com/secure".parse().unwrap()],
    ///     TokenKey::from_seed([1; 32]),
    ///     Duration::from_secs(60),
    ///     "x-anpx-caller-did",
    /// );
    /// assert!(p.requires("API.example.com:8080", "/secure/chat?x=1"));
    /// assert!(p.requires("api.example.com", "/%73ecure/chat"));
    /// assert!(!p.requires("api.example.com", "/securex"));
    /// assert!(!p.requires("other.example.com", "/secure"));
    /// ```
    pub fn requires(&self, host: &str, path: &str) -> bool {
        if self.routes.lookup(host, path).is_some() {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        decoded != path && self.routes.lookup(host, &decoded).is_some()
    }

    /// The key tokens are signed with.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// How long a minted token is good for.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The header the verified DID is forwarded in, lower-case.
    pub fn did_header(&self) -> &str {
        &self.did_header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(services: &[&str]) -> CallerPolicy {
        let services: Vec<ServiceUrl> = services.iter().map(|s| s.parse().unwrap()).collect();
        CallerPolicy::new(
            &services,
            TokenKey::from_seed([3; 32]),
            Duration::from_secs(3600),
            "X-Caller-DID",
        )
    }

    #[test]
    fn only_the_listed_routes_require_a_did() {
        let p = policy(&["api.example.com/secure", "*/tools"]);
        assert!(p.requires("api.example.com", "/secure"));
        assert!(p.requires("api.example.com", "/secure/"));
        assert!(p.requires("api.example.com.", "//secure//x"));
        assert!(!p.requires("api.example.com", "/"));
        assert!(!p.requires("api.example.com", "/Secure"));
        // The wildcard entry covers hosts the other entries do not name.
        assert!(p.requires("any.example.org", "/tools/x"));
        assert!(!p.requires("any.example.org", "/other"));
        assert!(policy(&[]).routes.is_empty());
        assert!(!policy(&[]).requires("api.example.com", "/secure"));
        assert_eq!(p.did_header(), "x-caller-did");
    }

    #[test]
    fn an_encoded_path_is_protected_as_its_decoded_form() {
        let p = policy(&["api.example.com/secure"]);
        assert!(p.requires("api.example.com", "/%73ecure"));
        assert!(p.requires("api.example.com", "/%73%65cure/a%2Fb"));
        assert!(!p.requires("api.example.com", "/%ff"));
    }

    #[test]
    fn credentials_are_read_by_scheme() {
        assert_eq!(
            Credential::of(Some("  Bearer  t.o.k ")),
            Credential::Bearer("t.o.k")
        );
        assert_eq!(Credential::of(Some("BEARER x")), Credential::Bearer("x"));
        assert_eq!(Credential::of(Some("Bearer")), Credential::Unsupported);
        assert_eq!(Credential::of(Some("Bearer ")), Credential::Unsupported);
        assert_eq!(
            Credential::of(Some("didwba a")),
            Credential::DidWba("didwba a")
        );
        assert_eq!(Credential::of(Some("")), Credential::Unsupported);
        assert_eq!(Credential::of(Some("Bearerx y")), Credential::Unsupported);
    }

    #[test]
    fn challenges_name_didwba_and_bearer_only_for_a_bad_token() {
        assert_eq!(challenge(false), "DIDWba");
        assert!(challenge(true).starts_with("Bearer error=\"invalid_token\""));
        assert!(challenge(true).ends_with("DIDWba"));
    }

    #[test]
    fn forwarding_replaces_every_caller_sent_spelling() {
        let mut h = vec![
            ("x-caller-did".to_owned(), "a".to_owned()),
            ("X_CALLER_DID".to_owned(), "b".to_owned()),
            ("x-caller-didx".to_owned(), "kept".to_owned()),
        ];
        forward_did(&mut h, "x-caller-did", None);
        assert_eq!(h, [("x-caller-didx".to_owned(), "kept".to_owned())]);
    }
}
