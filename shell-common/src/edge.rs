//! The public edge's state, the same in every shell: what the edge refused
//! (`anpx_edge_refused_total`), the receiver handshake slots, and the
//! answers refusals get. What is refused is decided in `anpx_core::edge`;
//! each shell applies the limits to its own sockets and HTTP library.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anpx_core::edge::{EdgeLimits, EdgeRefusal, HandshakeSlots};

use crate::gateway::Answer;

/// The edge limits and what they refused, shared by every connection.
#[derive(Debug)]
pub struct Edge {
    /// The configured limits.
    pub limits: EdgeLimits,
    refused: [AtomicU64; EdgeRefusal::ALL.len()],
    slots: Mutex<HandshakeSlots>,
}

impl Edge {
    /// An edge applying `limits`, nothing refused yet.
    pub fn new(limits: EdgeLimits) -> Self {
        Edge {
            limits,
            refused: Default::default(),
            slots: Mutex::new(HandshakeSlots::from_limits(&limits)),
        }
    }

    /// Counts one refusal.
    pub fn count(&self, refusal: EdgeRefusal) {
        self.refused[refusal.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many times `refusal` happened.
    pub fn refused(&self, refusal: EdgeRefusal) -> u64 {
        self.refused[refusal.index()].load(Ordering::Relaxed)
    }

    /// `anpx_edge_refused_total`, every reason listed even at zero.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP anpx_edge_refused_total Requests and connections refused at the public edge, by reason.\n# TYPE anpx_edge_refused_total counter\n",
        );
        for r in EdgeRefusal::ALL {
            out.push_str(&format!(
                "anpx_edge_refused_total{{reason=\"{}\"}} {}\n",
                r.label(),
                self.refused(r)
            ));
        }
        out
    }

    /// Takes a handshake slot for a receiver connecting from `ip`; a refusal
    /// is counted.
    pub fn begin_handshake(self: &Arc<Self>, ip: IpAddr) -> Result<ReceiverSlot, EdgeRefusal> {
        let mut began = Ok(());
        self.with_slots(|s| began = s.begin(ip));
        match began {
            Ok(()) => Ok(ReceiverSlot {
                edge: self.clone(),
                ip,
                upgraded: false,
            }),
            Err(r) => {
                self.count(r);
                Err(r)
            }
        }
    }

    fn with_slots(&self, f: impl FnOnce(&mut HandshakeSlots)) {
        match self.slots.lock() {
            Ok(mut slots) => f(&mut slots),
            // A panic elsewhere while holding the lock: keep serving with
            // the counts as they are rather than refusing every receiver.
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// A receiver connection's place in the handshake limits. Dropping it gives
/// the place back: as an abandoned handshake before
/// [`upgraded`](Self::upgraded), as a closed connection after.
#[derive(Debug)]
pub struct ReceiverSlot {
    edge: Arc<Edge>,
    ip: IpAddr,
    upgraded: bool,
}

impl ReceiverSlot {
    /// The receiver is admitted: no longer a pending handshake, still a
    /// connection of its address.
    pub fn upgraded(&mut self) {
        if !self.upgraded {
            self.upgraded = true;
            let ip = self.ip;
            self.edge.with_slots(|s| s.upgraded(ip));
        }
    }
}

impl Drop for ReceiverSlot {
    fn drop(&mut self) {
        let (ip, upgraded) = (self.ip, self.upgraded);
        self.edge.with_slots(|s| {
            if upgraded {
                s.closed(ip);
            } else {
                s.abandoned(ip);
            }
        });
    }
}

/// The answer to a request the edge refused: its status and a JSON body
/// naming the reason (and the `limit` crossed, when given).
pub fn refusal_answer(refusal: EdgeRefusal, limit: Option<u64>) -> Answer {
    let body = match limit {
        Some(limit) => serde_json::json!({ "error": refusal.to_string(), "limit": limit }),
        None => serde_json::json!({ "error": refusal.to_string() }),
    };
    let mut answer = Answer::json(refusal.status().unwrap_or(400), &body);
    if refusal == EdgeRefusal::BodyTooLarge {
        // The rest of the body is not read, so the connection cannot carry
        // another request.
        answer.headers.push(("connection", "close".to_owned()));
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_back_and_refusals_counted() {
        let edge = Arc::new(Edge::new(EdgeLimits {
            max_pending_handshakes: 1,
            max_receivers_per_ip: 1,
            ..EdgeLimits::default()
        }));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut slot = edge.begin_handshake(ip).unwrap();
        assert_eq!(
            edge.begin_handshake(ip).unwrap_err(),
            EdgeRefusal::TooManyHandshakes
        );
        slot.upgraded();
        assert_eq!(
            edge.begin_handshake(ip).unwrap_err(),
            EdgeRefusal::TooManyFromIp
        );
        drop(slot);
        drop(edge.begin_handshake(ip).unwrap());
        assert!(edge.begin_handshake(ip).is_ok());
        assert_eq!(edge.refused(EdgeRefusal::TooManyHandshakes), 1);
        assert_eq!(edge.refused(EdgeRefusal::TooManyFromIp), 1);
        let text = edge.prometheus();
        assert!(text.contains("anpx_edge_refused_total{reason=\"receivers_per_ip\"} 1\n"));
        assert!(text.contains("anpx_edge_refused_total{reason=\"head_timeout\"} 0\n"));
    }

    #[test]
    fn a_body_refusal_closes_the_connection() {
        let a = refusal_answer(EdgeRefusal::BodyTooLarge, Some(10));
        assert_eq!(a.status, 413);
        assert!(a.headers.contains(&("connection", "close".to_owned())));
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["limit"], 10);
        let a = refusal_answer(EdgeRefusal::TooManyFromIp, None);
        assert_eq!(a.status, 429);
        assert!(!a.headers.iter().any(|(n, _)| *n == "connection"));
    }
}
