//! DID-WBA authentication of callers at the edge, for the routes
//! `[gateway.caller_auth]` lists: the same verifier, window and
//! single-use nonces as receiver logins (the service being the route's
//! host), documents from the same [`DocumentResolver`], and the access
//! tokens of [`anpx_core::auth::TokenKey`]. What is decided lives in
//! `anpx_core::auth`; this is the clock, the fetch and the counters.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anpx_core::auth::{
    challenge, service_domain, CallerPolicy, Credential, Verifier, VerifierConfig,
};

use crate::did_wba::DocumentResolver;
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

/// The callers' check and its counters.
pub struct CallerAuth {
    policy: CallerPolicy,
    verifier: Mutex<Verifier>,
    documents: Arc<DocumentResolver>,
    by_signature: AtomicU64,
    by_token: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl CallerAuth {
    /// A check applying `policy`, verifying `DIDWba` headers with `config`
    /// (its own nonce memory, so callers cannot fill the receivers'), and
    /// resolving documents through `documents`.
    pub fn new(
        policy: CallerPolicy,
        config: VerifierConfig,
        documents: Arc<DocumentResolver>,
    ) -> Self {
        CallerAuth {
            policy,
            // A caller signs for the route's host, whatever names receivers
            // must sign for.
            verifier: Mutex::new(Verifier::new(VerifierConfig {
                service_names: Vec::new(),
                ..config
            })),
            documents,
            by_signature: AtomicU64::new(0),
            by_token: AtomicU64::new(0),
            refused: Mutex::default(),
        }
    }

    /// The header the verified DID is forwarded in.
    pub fn did_header(&self) -> &str {
        self.policy.did_header()
    }

    /// Checks a public request to `host` (as routed) and `path` whose
    /// `Authorization` headers are `authorization`, from `peer`:
    /// `Ok(None)` when its route does not require a DID, `Ok(Some)` for a
    /// caller that proved one, `Err` the 401 to answer.
    pub async fn check(
        &self,
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
            Credential::DidWba(header) => {
                self.signed(header, &service).await.map_err(|r| (r, false))
            }
        };
        match verdict {
            Ok(v) => {
                let how = if v.token.is_some() {
                    self.by_signature.fetch_add(1, Ordering::Relaxed);
                    "didwba"
                } else {
                    self.by_token.fetch_add(1, Ordering::Relaxed);
                    "bearer"
                };
                tracing::debug!(%peer, host, path, did = %v.did, by = how, "caller authenticated");
                Ok(Some(v))
            }
            Err((r, bad_token)) => {
                tracing::info!(%peer, host, path, reason = r.label, error = %r.reason, "caller refused: 401");
                if let Ok(mut m) = self.refused.lock() {
                    *m.entry(r.label).or_default() += 1;
                }
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

    async fn signed(&self, header: &str, service: &str) -> Result<Verified, Refusal> {
        let verifier = || {
            self.verifier
                .lock()
                .map_err(|_| refusal("internal", "verifier unavailable"))
        };
        let parsed = verifier()?
            .check_header(SystemTime::now(), header, service)
            .map_err(|e| refusal(e.reason(), e.to_string()))?;
        let did = parsed.did().as_str().to_owned();
        let document = self.documents.document(&did, parsed.document_url()).await?;
        let verified = {
            let mut v = verifier()?;
            let verified = v
                .check_document_json(SystemTime::now(), &parsed, &document)
                .map_err(|e| refusal(e.reason(), e.to_string()))?;
            v.spend(SystemTime::now(), &parsed)
                .map_err(|e| refusal(e.reason(), e.to_string()))?;
            verified
        };
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

    /// `anpx_caller_auth_accepted_total` by how, and
    /// `anpx_caller_auth_refused_total` by reason.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP anpx_caller_auth_accepted_total Calls to protected routes let through, by credential.\n# TYPE anpx_caller_auth_accepted_total counter\n",
        );
        for (how, n) in [("didwba", &self.by_signature), ("bearer", &self.by_token)] {
            out.push_str(&format!(
                "anpx_caller_auth_accepted_total{{by=\"{how}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP anpx_caller_auth_refused_total Calls to protected routes refused with 401, by reason.\n# TYPE anpx_caller_auth_refused_total counter\n");
        let refused = self.refused.lock().map(|m| m.clone()).unwrap_or_default();
        for (reason, n) in refused {
            out.push_str(&format!(
                "anpx_caller_auth_refused_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
        out
    }
}

fn refusal(label: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        label,
        reason: reason.into(),
    }
}
