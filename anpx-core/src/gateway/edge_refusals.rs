//! What the public edge refused, by reason, kept by the gateway machine:
//! the receivers' handshake slots it refuses itself
//! ([`Gateway::begin_handshake`](super::Gateway::begin_handshake)), and
//! what the shells' HTTP servers refuse by its limits, handed in with
//! [`Gateway::edge_refused`](super::Gateway::edge_refused).

use std::fmt::Write as _;

use serde::{Serialize, Serializer};

use crate::edge::EdgeRefusal;

use super::endings::ByLabel;
use super::Gateway;

/// How many times the public edge refused each way
/// (`anpx_edge_refused_total`).
///
/// ```
/// use std::time::Instant;
/// use anpx_core::edge::EdgeRefusal;
/// use anpx_core::{Gateway, GatewayConfig};
///
/// let mut gw = Gateway::new(GatewayConfig::default(), 1);
/// gw.edge_refused(EdgeRefusal::HeadTimeout);
/// let refused = gw.stats(Instant::now()).edge_refused;
/// assert_eq!(refused.get(EdgeRefusal::HeadTimeout), 1);
/// assert!(refused.to_prometheus().contains("anpx_edge_refused_total{reason=\"malformed\"} 0\n"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeRefusals {
    counts: [u64; EdgeRefusal::ALL.len()],
}

impl EdgeRefusals {
    /// How many times `refusal` happened.
    pub fn get(&self, refusal: EdgeRefusal) -> u64 {
        self.counts[refusal.index()]
    }

    pub(super) fn count(&mut self, refusal: EdgeRefusal) {
        self.counts[refusal.index()] += 1;
    }

    /// `anpx_edge_refused_total`, every reason listed even at zero.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP anpx_edge_refused_total Requests and connections refused at the public edge, by reason. Kept for compatibility: refused requests are also in anpx_requests_refused_total{reason}; connections that never sent a request (head_timeout) and receiver handshakes are only here.\n# TYPE anpx_edge_refused_total counter\n",
        );
        for r in EdgeRefusal::ALL {
            let _ = writeln!(
                out,
                "anpx_edge_refused_total{{reason=\"{}\"}} {}",
                r.label(),
                self.get(r)
            );
        }
        out
    }
}

impl Gateway {
    /// The public edge refused something by its limits (a head, a body, a
    /// malformed request, a connection that sent no head in time).
    pub fn edge_refused(&mut self, refusal: EdgeRefusal) {
        self.edge_refusals.count(refusal);
    }
}

impl Serialize for EdgeRefusals {
    /// `{"body_too_large": n, ...}`, every reason listed.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ByLabel(EdgeRefusal::ALL.iter().map(|r| r.label()).zip(self.counts)).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_with_its_count() {
        let mut e = EdgeRefusals::default();
        e.count(EdgeRefusal::BodyTooLarge);
        e.count(EdgeRefusal::BodyTooLarge);
        e.count(EdgeRefusal::TooManyFromIp);
        assert_eq!(e.get(EdgeRefusal::BodyTooLarge), 2);
        assert_eq!(e.get(EdgeRefusal::Malformed), 0);
        let text = e.to_prometheus();
        assert_eq!(
            text.matches("# TYPE anpx_edge_refused_total counter\n")
                .count(),
            1
        );
        for r in EdgeRefusal::ALL {
            let want = match r {
                EdgeRefusal::BodyTooLarge => 2,
                EdgeRefusal::TooManyFromIp => 1,
                _ => 0,
            };
            let line = format!(
                "anpx_edge_refused_total{{reason=\"{}\"}} {want}\n",
                r.label()
            );
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["body_too_large"], 2);
        assert_eq!(v["receivers_per_ip"], 1);
        assert_eq!(v["head_timeout"], 0);
    }
}
