//! Caller authentication's counters, kept by the gateway machine so that
//! `/stats` and `/metrics` read them in the same snapshot as everything
//! else: the calls to protected routes let through, by credential, and
//! those refused with 401, by reason. The shell reports each verdict
//! ([`Gateway::caller_accepted`], [`Gateway::caller_refused`]); the
//! verdicts themselves are `anpx_core::auth`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Gateway;

/// How a caller proved its DID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerProof {
    /// A signed `DIDWba` header (the caller got a new token).
    Signature,
    /// An access token from an earlier signature (`Bearer`).
    Token,
}

impl CallerProof {
    /// The `by` label of `anpx_caller_auth_accepted_total`.
    pub fn label(self) -> &'static str {
        match self {
            CallerProof::Signature => "didwba",
            CallerProof::Token => "bearer",
        }
    }
}

/// Calls to protected routes let through and refused
/// (`anpx_caller_auth_accepted_total`, `anpx_caller_auth_refused_total`).
///
/// ```
/// use std::time::Instant;
/// use anpx_core::{CallerProof, Gateway, GatewayConfig};
///
/// let mut gw = Gateway::new(GatewayConfig::default(), 1).with_caller_counts();
/// gw.caller_accepted(CallerProof::Token);
/// gw.caller_refused("replayed_nonce");
/// let text = gw.stats(Instant::now()).to_prometheus();
/// assert!(text.contains("anpx_caller_auth_accepted_total{by=\"bearer\"} 1\n"));
/// assert!(text.contains("anpx_caller_auth_refused_total{reason=\"replayed_nonce\"} 1\n"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallerAuthCounts {
    /// Let through on a signed `DIDWba` header.
    pub didwba: u64,
    /// Let through on an access token.
    pub bearer: u64,
    /// Refused with 401, by reason (labels from a fixed set: the
    /// credential's, `auth::AuthError::reason`'s, the token's).
    pub refused: BTreeMap<&'static str, u64>,
}

impl CallerAuthCounts {
    /// Calls let through with `proof`.
    pub fn accepted(&self, proof: CallerProof) -> u64 {
        match proof {
            CallerProof::Signature => self.didwba,
            CallerProof::Token => self.bearer,
        }
    }

    /// Calls refused for `reason`.
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused.get(reason).copied().unwrap_or(0)
    }

    /// `anpx_caller_auth_accepted_total` by how, and
    /// `anpx_caller_auth_refused_total` by reason (only reasons seen).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP anpx_caller_auth_accepted_total Calls to protected routes let through, by credential.\n# TYPE anpx_caller_auth_accepted_total counter\n",
        );
        for proof in [CallerProof::Signature, CallerProof::Token] {
            let _ = writeln!(
                out,
                "anpx_caller_auth_accepted_total{{by=\"{}\"}} {}",
                proof.label(),
                self.accepted(proof)
            );
        }
        out.push_str("# HELP anpx_caller_auth_refused_total Calls to protected routes refused with 401, by reason.\n# TYPE anpx_caller_auth_refused_total counter\n");
        for (reason, n) in &self.refused {
            let _ = writeln!(
                out,
                "anpx_caller_auth_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out
    }
}

impl Gateway {
    /// This gateway, counting caller authentication from the start, so
    /// that its metrics are listed (at zero) before the first call.
    pub fn with_caller_counts(mut self) -> Self {
        self.callers.get_or_insert_with(CallerAuthCounts::default);
        self
    }

    /// A call to a protected route was let through on `proof`.
    pub fn caller_accepted(&mut self, proof: CallerProof) {
        let counts = self.callers.get_or_insert_with(CallerAuthCounts::default);
        match proof {
            CallerProof::Signature => counts.didwba += 1,
            CallerProof::Token => counts.bearer += 1,
        }
    }

    /// A call to a protected route was refused with 401 for `reason`.
    pub fn caller_refused(&mut self, reason: &'static str) {
        let counts = self.callers.get_or_insert_with(CallerAuthCounts::default);
        *counts.refused.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GatewayConfig;
    use std::time::Instant;

    #[test]
    fn caller_counts_are_in_the_snapshot_and_its_prometheus_text() {
        let plain = Gateway::new(GatewayConfig::default(), 1);
        let text = plain.stats(Instant::now()).to_prometheus();
        assert!(
            !text.contains("anpx_caller_auth"),
            "no caller auth, no series"
        );
        let mut gw = Gateway::new(GatewayConfig::default(), 1).with_caller_counts();
        let text = gw.stats(Instant::now()).to_prometheus();
        assert!(text.contains("anpx_caller_auth_accepted_total{by=\"didwba\"} 0\n"));
        assert!(!text.contains("anpx_caller_auth_refused_total{"));
        gw.caller_accepted(CallerProof::Signature);
        gw.caller_accepted(CallerProof::Signature);
        gw.caller_accepted(CallerProof::Token);
        gw.caller_refused("missing_authorization");
        gw.caller_refused("replayed_nonce");
        gw.caller_refused("missing_authorization");
        let stats = gw.stats(Instant::now());
        let counts = stats.caller_auth.as_ref().expect("counted");
        assert_eq!(counts.accepted(CallerProof::Signature), 2);
        assert_eq!(counts.refused("missing_authorization"), 2);
        let text = stats.to_prometheus();
        let want = "# HELP anpx_caller_auth_accepted_total Calls to protected routes let through, by credential.\n\
            # TYPE anpx_caller_auth_accepted_total counter\n\
            anpx_caller_auth_accepted_total{by=\"didwba\"} 2\n\
            anpx_caller_auth_accepted_total{by=\"bearer\"} 1\n\
            # HELP anpx_caller_auth_refused_total Calls to protected routes refused with 401, by reason.\n\
            # TYPE anpx_caller_auth_refused_total counter\n\
            anpx_caller_auth_refused_total{reason=\"missing_authorization\"} 2\n\
            anpx_caller_auth_refused_total{reason=\"replayed_nonce\"} 1\n";
        assert!(text.contains(want), "{text}");
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["caller_auth"]["refused"]["replayed_nonce"], 1);
    }
}
