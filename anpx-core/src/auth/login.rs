//! A receiver's DID-WBA login as decisions around its I/O: which checks run
//! before the DID document is fetched, what the document and the registry
//! say, and when the nonce is spent. The shell fetches the document
//! (through [`crate::handshake::DocumentFetches`]) and reads the registry;
//! every refusal, with its label, is decided here.

use std::fmt::Display;
use std::time::SystemTime;

use super::{AuthError, ParsedHeader, VerifiedDid, Verifier};
use crate::handshake::{header_text, Admitted, AuthRefusal};
use crate::{Identity, ServiceUrl};

fn refused(e: AuthError) -> AuthRefusal {
    AuthRefusal::new(e.reason(), e.to_string())
}

/// One login in progress: its header passed the checks that need no
/// document.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{build_header, generate_did_document, KeyMaterial, Login, Verifier, VerifierConfig};
/// use anpx_core::Identity;
///
/// let (doc, pem) =
///     generate_did_document("didhost.cc", Some("agent1"), KeyMaterial::Secp256k1([7; 32])).unwrap();
/// let now = UNIX_EPOCH + Duration::from_secs(1_795_311_328);
/// let header = build_header(doc.as_bytes(), &pem, "gateway.example.com", now, [1; 16]).unwrap();
/// let mut verifier = Verifier::new(VerifierConfig::default());
///
/// // No header: refused before anything else.
/// let refused = Login::start(&mut verifier, now, None, "gateway.example.com").unwrap_err();
/// assert_eq!(refused.label, "missing_authorization");
///
/// let login = Login::start(&mut verifier, now, Some(header.as_bytes()), "gateway.example.com").unwrap();
/// assert_eq!(login.document_url(), "https://didhost.cc/agent1/did.json");
/// let verified = login.document(&mut verifier, now, doc.as_bytes()).unwrap();
/// // The registry grants nothing: refused, and the nonce is not spent...
/// let none: Result<_, String> = Ok(vec![]);
/// assert_eq!(login.clone().finish(&mut verifier, now, verified.clone(), none).unwrap_err().label, "no_grants");
/// // ...so the same login passes once the registry has grants.
/// let grants: Result<_, String> = Ok(vec!["api.agent.com".parse().unwrap()]);
/// let admitted = login.finish(&mut verifier, now, verified, grants).unwrap();
/// assert_eq!(admitted.identity, Identity::Did("did:wba:didhost.cc:agent1".into()));
/// ```
#[derive(Debug, Clone)]
pub struct Login {
    parsed: ParsedHeader,
}

impl Login {
    /// The checks that need no document, on the `Authorization` header's
    /// value (`None`: absent) for `service`, the gateway's host name as the
    /// receiver addressed it: refused with `missing_authorization`,
    /// `malformed_header` or the [`AuthError`]'s reason.
    pub fn start(
        verifier: &mut Verifier,
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
        let parsed = verifier
            .check_header(now, header, service)
            .map_err(refused)?;
        Ok(Login { parsed })
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
    /// signature. Spends nothing yet.
    pub fn document(
        &self,
        verifier: &mut Verifier,
        now: SystemTime,
        document: &[u8],
    ) -> Result<VerifiedDid, AuthRefusal> {
        verifier
            .check_document_json(now, &self.parsed, document)
            .map_err(refused)
    }

    /// Ends the login with what the registry said the DID may serve
    /// (`allowed`, or why it could not be read: `registry_unavailable`):
    /// nothing is `no_grants`; otherwise the nonce is spent, only now that
    /// every check passed, so a failed login leaves none to fill the store.
    pub fn finish<E: Display>(
        self,
        verifier: &mut Verifier,
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
        verifier.spend(now, &self.parsed).map_err(refused)?;
        Ok(Admitted {
            identity: Identity::Did(verified.did),
            allowed: Some(allowed),
        })
    }
}
