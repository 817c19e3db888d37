//! A receiver's DID-WBA login as decisions around its I/O: which checks run
//! before the DID document is fetched, what the document and the registry
//! say, and when the nonce is spent. The shell fetches the document
//! (through [`crate::handshake::DocumentFetches`]) and reads the registry;
//! every refusal, with its label, is decided here.

use std::fmt::Display;
use std::time::SystemTime;

use super::{AuthError, Checker, Nonces, ParsedHeader, VerifiedDid};
use crate::handshake::{header_text, Admitted, AuthRefusal};
use crate::{Identity, ServiceUrl};

fn refused(e: AuthError) -> AuthRefusal {
    AuthRefusal::new(e.reason(), e.to_string())
}

/// One login in progress: its header passed the checks that need no
/// document. The pure checks take a [`Checker`] and run anywhere; the
/// nonce's checks take the [`Nonces`] their owner (the gateway machine)
/// keeps.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{build_header, generate_did_document, Checker, KeyMaterial, Login, Nonces, VerifierConfig};
/// use anpx_core::Identity;
///
/// let (doc, pem) =
///     generate_did_document("didhost.cc", Some("agent1"), KeyMaterial::Secp256k1([7; 32])).unwrap();
/// let now = UNIX_EPOCH + Duration::from_secs(1_795_311_328);
/// let header = build_header(doc.as_bytes(), &pem, "gateway.example.com", now, [1; 16]).unwrap();
/// let config = VerifierConfig::default();
/// let (checker, mut nonces) = (Checker::new(config.clone()), Nonces::new(&config));
///
/// // No header: refused before anything else.
/// let refused = Login::start(&checker, now, None, "gateway.example.com").unwrap_err();
/// assert_eq!(refused.label, "missing_authorization");
///
/// let login = Login::start(&checker, now, Some(header.as_bytes()), "gateway.example.com").unwrap();
/// login.unspent(&mut nonces, now).unwrap();
/// assert_eq!(login.document_url(), "https://didhost.cc/agent1/did.json");
/// let verified = login.document(&checker, now, doc.as_bytes()).unwrap();
/// // The registry grants nothing: refused, and the nonce is not spent...
/// let none: Result<_, String> = Ok(vec![]);
/// assert_eq!(login.clone().finish(&mut nonces, now, verified.clone(), none).unwrap_err().label, "no_grants");
/// // ...so the same login passes once the registry has grants.
/// let grants: Result<_, String> = Ok(vec!["api.agent.com".parse().unwrap()]);
/// let admitted = login.clone().finish(&mut nonces, now, verified, grants).unwrap();
/// assert_eq!(admitted.identity, Identity::Did("did:wba:didhost.cc:agent1".into()));
/// // Spent: the same header again is a replay.
/// assert_eq!(login.unspent(&mut nonces, now).unwrap_err().label, "replayed_nonce");
/// ```
#[derive(Debug, Clone)]
pub struct Login {
    parsed: ParsedHeader,
}

impl Login {
    /// The checks that need no document and no memory of nonces, on the
    /// `Authorization` header's value (`None`: absent) for `service`, the
    /// gateway's host name as the receiver addressed it: refused with
    /// `missing_authorization`, `malformed_header` or the [`AuthError`]'s
    /// reason.
    pub fn start(
        checker: &Checker,
        now: SystemTime,
        authorization: Option<&[u8]>,
        service: &str,
    ) -> Result<Login, AuthRefusal> {
        let header = authorization.ok_or_else(|| {
            AuthRefusal::new(
                "missing_authorization",
                "no Authorization header (DID-WBA required)",
            )
        })?;
        let header = header_text(header).map_err(|_| {
            AuthRefusal::new("malformed_header", "Authorization header is not text")
        })?;
        let parsed = checker
            .check_header(now, header, service)
            .map_err(refused)?;
        Ok(Login { parsed })
    }

    /// The nonce is not spent yet (nor the store full for it): checked
    /// before the document is fetched, so a replay costs no fetch, and
    /// again after the signature, as another login may have spent it
    /// meanwhile. Records nothing.
    pub fn unspent(&self, nonces: &mut Nonces, now: SystemTime) -> Result<(), AuthRefusal> {
        nonces.check(now, &self.parsed).map_err(refused)
    }

    /// The DID whose document is needed.
    pub fn did(&self) -> &str {
        self.parsed.did().as_str()
    }

    /// Where that document is.
    pub fn document_url(&self) -> &str {
        self.parsed.document_url()
    }

    /// The checks on the fetched `document` (JSON): its id, the key, the
    /// signature. Spends nothing.
    pub fn document(
        &self,
        checker: &Checker,
        now: SystemTime,
        document: &[u8],
    ) -> Result<VerifiedDid, AuthRefusal> {
        checker
            .check_document_json(now, &self.parsed, document)
            .map_err(refused)
    }

    /// Ends the login with what the registry said the DID may serve
    /// (`allowed`, or why it could not be read: `registry_unavailable`):
    /// nothing is `no_grants`; otherwise the nonce is spent, only now that
    /// every check passed, so a failed login leaves none to fill the store.
    pub fn finish<E: Display>(
        self,
        nonces: &mut Nonces,
        now: SystemTime,
        verified: VerifiedDid,
        allowed: Result<Vec<ServiceUrl>, E>,
    ) -> Result<Admitted, AuthRefusal> {
        let allowed =
            allowed.map_err(|e| AuthRefusal::new("registry_unavailable", e.to_string()))?;
        if allowed.is_empty() {
            return Err(AuthRefusal::new(
                "no_grants",
                format!("{} has no registered service URLs", verified.did),
            ));
        }
        nonces.spend(now, &self.parsed).map_err(refused)?;
        Ok(Admitted {
            identity: Identity::Did(verified.did),
            allowed: Some(allowed),
        })
    }
}
