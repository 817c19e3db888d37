//! DID-WBA authentication of callers at the edge, for the routes
//! `[gateway.caller_auth]` lists: the same verifier, window and
//! single-use nonces as receiver logins (the service being the route's
//! host), documents from the same [`DocumentResolver`], and the access
//! tokens of [`anpx_core::auth::TokenKey`]. What is decided lives in
//! `anpx_core::auth`; the callers' spent nonces and the verdicts' counts
//! are the gateway machine's (`anpx_caller_auth_*` in its snapshot). This
//! is the clock, the fetch and the signature check, outside the machine's
//! lock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use anpx_core::auth::{
    challenge, service_domain, CallerPolicy, Checker, Credential, VerifierConfig,
};
use anpx_core::CallerProof;

use crate::did_wba::{gone, DocumentResolver};
use crate::driver::Driver;
use crate::gateway::Answer;
use crate::Refusal;

/// A caller that proved its DID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The DID, for the agent.
    pub did: String,
    /// A new access token, for a caller that signed a `DIDWba` header:
    /// returned as `Authorization: Bearer <token>` on the response.
    pub token: Option<String>,
}

/// The callers' check; what it remembers and counts is the gateway
/// machine's.
pub struct CallerAuth {
    policy: CallerPolicy,
    checker: Checker,
    documents: Arc<DocumentResolver>,
}

impl CallerAuth {
    /// A check applying `policy`, verifying `DIDWba` headers with `config`
    /// (the machine keeps the callers' nonces apart, so callers cannot
    /// fill the receivers' memory), and resolving documents through
    /// `documents`.
    pub fn new(
        policy: CallerPolicy,
        config: VerifierConfig,
        documents: Arc<DocumentResolver>,
    ) -> Self {
        CallerAuth {
            policy,
            // A caller signs for the route's host, whatever names receivers
            // must sign for.
            checker: Checker::new(VerifierConfig {
                service_names: Vec::new(),
                ..config
            }),
            documents,
        }
    }

    /// The gateway machine `machine`, set up to keep the callers' nonces
    /// and counts (and the document fetches' limits).
    pub fn prepare(&self, machine: anpx_core::Gateway) -> anpx_core::Gateway {
        self.documents
            .prepare(machine)
            .with_caller_auth(self.checker.config())
    }

    /// The header the verified DID is forwarded in.
    pub fn did_header(&self) -> &str {
        self.policy.did_header()
    }

    /// Checks a public request to `host` (as routed) and `path` whose
    /// `Authorization` headers are `authorization`, from `peer`, on the
    /// gateway `gateway`:
    /// `Ok(None)` when its route does not require a DID, `Ok(Some)` for a
    /// caller that proved one, `Err` the 401 to answer.
    pub async fn check(
        &self,
        gateway: &Driver,
        host: &str,
        path: &str,
        authorization: &[&str],
        peer: IpAddr,
    ) -> Result<Option<Verified>, Answer> {
        if !self.policy.requires(host, path) {
            return Ok(None);
        }
        let service = service_domain(host).to_ascii_lowercase();
        let credential = match authorization {
            [] => Credential::Missing,
            [one] => Credential::of(Some(one)),
            // Which one would the agent read? Neither is trusted.
            _ => Credential::Unsupported,
        };
        let verdict = match credential {
            Credential::Missing => Err((
                refusal("missing_authorization", "no Authorization header"),
                false,
            )),
            Credential::Unsupported => Err((
                refusal(
                    "unsupported_scheme",
                    "Authorization is not one DIDWba or Bearer header",
                ),
                false,
            )),
            Credential::Bearer(token) => self.bearer(token, &service).map_err(|r| (r, true)),
            Credential::DidWba(header) => self
                .signed(gateway, header, &service)
                .await
                .map_err(|r| (r, false)),
        };
        match verdict {
            Ok(v) => {
                let proof = if v.token.is_some() {
                    CallerProof::Signature
                } else {
                    CallerProof::Token
                };
                gateway.caller_accepted(proof);
                tracing::debug!(%peer, host, path, did = %v.did, by = proof.label(), "caller authenticated");
                Ok(Some(v))
            }
            Err((r, bad_token)) => {
                tracing::info!(%peer, host, path, reason = r.label, error = %r.reason, "caller refused: 401");
                gateway.caller_refused(r.label);
                let mut answer = Answer::json(
                    401,
                    &serde_json::json!({ "error": "Authentication required", "reason": r.reason }),
                );
                answer
                    .headers
                    .push(("www-authenticate", challenge(bad_token).to_owned()));
                Err(answer)
            }
        }
    }

    fn bearer(&self, token: &str, service: &str) -> Result<Verified, Refusal> {
        let claims = self
            .policy
            .key()
            .check(token, service, SystemTime::now())
            .map_err(|e| refusal(e.reason(), e.to_string()))?;
        Ok(Verified {
            did: claims.did,
            token: None,
        })
    }

    async fn signed(
        &self,
        gateway: &Driver,
        header: &str,
        service: &str,
    ) -> Result<Verified, Refusal> {
        let auth_refusal = |e: anpx_core::auth::AuthError| refusal(e.reason(), e.to_string());
        let parsed = self
            .checker
            .check_header(SystemTime::now(), header, service)
            .map_err(auth_refusal)?;
        // A replay is refused before it costs a fetch.
        gateway
            .caller_unspent(SystemTime::now(), &parsed)
            .map_err(gone)?
            .map_err(auth_refusal)?;
        let did = parsed.did().as_str().to_owned();
        let document = self
            .documents
            .document(gateway, &did, parsed.document_url())
            .await?;
        // The signature, outside the machine's lock; then the machine
        // spends the nonce, refusing it if another call spent it meanwhile.
        let verified = self
            .checker
            .check_document_json(SystemTime::now(), &parsed, &document)
            .map_err(auth_refusal)?;
        gateway
            .spend_caller_nonce(SystemTime::now(), &parsed)
            .map_err(gone)?
            .map_err(auth_refusal)?;
        let token = self
            .policy
            .key()
            .mint(
                &verified.did,
                service,
                SystemTime::now(),
                self.policy.lifetime(),
            )
            .map_err(|e| refusal("internal", e.to_string()))?;
        Ok(Verified {
            did: verified.did,
            token: Some(token),
        })
    }
}

fn refusal(label: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        label,
        reason: reason.into(),
    }
}
