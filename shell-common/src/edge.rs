//! The public edge's state, the same in every shell: what the edge refused
//! (`anpx_edge_refused_total`), the gateway's receiver admissions (the
//! core's [`Admissions`]: handshake slots and decisions), and the answers
//! refusals get. What is refused is decided in `anpx_core::edge` and
//! `anpx_core::handshake`; each shell applies the limits to its own
//! sockets and HTTP library.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use std::time::Instant;

use anpx_core::edge::{BodyMeter, EdgeLimits, EdgeRefusal};
use anpx_core::handshake::Refusal as HandshakeRefusal;
use anpx_core::handshake::{Acceptance, Admissions, Admitted, AuthRefusal, HandshakeId, Offer};
use anpx_core::RequestId;
use futures_channel::oneshot;

use crate::gateway::Answer;

/// The edge limits and what they refused, shared by every connection.
#[derive(Debug)]
pub struct Edge {
    /// The configured limits.
    pub limits: EdgeLimits,
    refused: [AtomicU64; EdgeRefusal::ALL.len()],
    admissions: Mutex<Admissions>,
}

impl Edge {
    /// An edge applying `limits`, nothing refused yet.
    pub fn new(limits: EdgeLimits) -> Self {
        Edge {
            limits,
            refused: Default::default(),
            admissions: Mutex::new(Admissions::new(
                crate::options::supported_features(),
                &limits,
            )),
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
            "# HELP anpx_edge_refused_total Requests and connections refused at the public edge, by reason. Kept for compatibility: refused requests are also in anpx_requests_refused_total{reason}; connections that never sent a request (head_timeout) and receiver handshakes are only here.\n# TYPE anpx_edge_refused_total counter\n",
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

    /// A receiver's handshake from `ip` offering `offer` arrives: the
    /// core's checks before authentication (a WebSocket key, a handshake
    /// slot). A refusal for want of a slot is counted.
    pub fn begin_handshake(
        self: &Arc<Self>,
        ip: IpAddr,
        offer: &Offer<'_>,
    ) -> Result<ReceiverSlot, HandshakeRefusal> {
        let mut began = Err(HandshakeRefusal::MissingKey);
        self.with_admissions(|a| began = a.begin(Instant::now(), ip, offer));
        match began {
            Ok(id) => Ok(ReceiverSlot {
                edge: self.clone(),
                id,
            }),
            Err(r) => {
                if let HandshakeRefusal::Slots(edge) = &r {
                    self.count(*edge);
                }
                Err(r)
            }
        }
    }

    /// `anpx_receiver_auth_refused_total`, by reason.
    pub fn auth_refusals_prometheus(&self) -> String {
        let mut text = String::new();
        self.with_admissions(|a| text = a.prometheus());
        text
    }

    /// Holds a request body of unannounced length (chunked) to the body
    /// limit as it is read: the [`UploadLimit`] meters it, the
    /// [`UploadCut`] tells the response side when it crossed the limit.
    pub fn upload_limit(self: &Arc<Self>) -> (UploadLimit, UploadCut) {
        let (over, cut) = oneshot::channel();
        (
            UploadLimit {
                meter: BodyMeter::new(self.limits.max_body_bytes),
                over: Some(over),
                edge: self.clone(),
            },
            UploadCut(Some(cut)),
        )
    }

    /// Whether any receiver connection (or handshake) is still open.
    pub fn receivers_open(&self) -> bool {
        let mut open = false;
        self.with_admissions(|a| open = a.open() > 0);
        open
    }

    fn with_admissions(&self, f: impl FnOnce(&mut Admissions)) {
        match self.admissions.lock() {
            Ok(mut admissions) => f(&mut admissions),
            // A panic elsewhere while holding the lock: keep serving with
            // the counts as they are rather than refusing every receiver.
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// A receiver connection's place in the gateway's admissions, from its
/// handshake until it closes. Dropping it ends it: as an abandoned
/// handshake before [`upgraded`](Self::upgraded), as a closed connection
/// after.
#[derive(Debug)]
pub struct ReceiverSlot {
    edge: Arc<Edge>,
    id: HandshakeId,
}

impl ReceiverSlot {
    /// The core's decision on this handshake once authentication said
    /// `auth`: the acceptance (grants, features, the 101's headers) or the
    /// refusal, after which the slot is already given back.
    pub fn decide(
        &mut self,
        offer: &Offer<'_>,
        auth: Result<Admitted, AuthRefusal>,
    ) -> Result<Acceptance, HandshakeRefusal> {
        let mut decided = Err(HandshakeRefusal::MissingKey);
        let id = self.id;
        self.edge
            .with_admissions(|a| decided = a.decide(Instant::now(), id, offer, auth));
        decided
    }

    /// The receiver is admitted: no longer a pending handshake, still a
    /// connection of its address.
    pub fn upgraded(&mut self) {
        let id = self.id;
        self.edge.with_admissions(|a| a.upgraded(id));
    }
}

impl Drop for ReceiverSlot {
    fn drop(&mut self) {
        let id = self.id;
        self.edge.with_admissions(|a| a.end(Instant::now(), id));
    }
}

/// Meters an upload against the body limit.
#[derive(Debug)]
pub struct UploadLimit {
    meter: BodyMeter,
    over: Option<oneshot::Sender<()>>,
    edge: Arc<Edge>,
}

impl UploadLimit {
    /// Counts `n` more bytes of request `id`'s body. `false` once the body
    /// is over the limit: the refusal is counted and logged, and the
    /// [`UploadCut`] fires; the caller stops reading and cancels the
    /// request.
    pub fn add(&mut self, n: usize, id: &RequestId) -> bool {
        let Err(refusal) = self.meter.add(n) else {
            return true;
        };
        if let Some(over) = self.over.take() {
            self.edge.count(refusal);
            tracing::info!(request = %id, received = self.meter.seen(), "request body over the limit; request cancelled");
            let _ = over.send(());
        }
        false
    }
}

/// Fires when the upload crossed the body limit. Ready only when it did; an
/// upload that ended normally leaves it pending forever.
#[derive(Debug)]
pub struct UploadCut(Option<oneshot::Receiver<()>>);

impl UploadCut {
    /// A cut that never fires, for a body whose length was announced.
    pub fn never() -> Self {
        UploadCut(None)
    }

    /// Ready once the upload crossed the limit.
    pub fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rx) = self.0.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.0 = None;
                Poll::Ready(())
            }
            // The upload ended without crossing the limit; a completed
            // receiver must not be polled again.
            Poll::Ready(Err(_)) => {
                self.0 = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
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
        let offer = Offer {
            websocket_key: true,
            ..Offer::default()
        };
        let mut slot = edge.begin_handshake(ip, &offer).unwrap();
        assert_eq!(
            edge.begin_handshake(ip, &offer).unwrap_err(),
            HandshakeRefusal::Slots(EdgeRefusal::TooManyHandshakes)
        );
        slot.upgraded();
        assert!(edge.receivers_open());
        assert_eq!(
            edge.begin_handshake(ip, &offer).unwrap_err(),
            HandshakeRefusal::Slots(EdgeRefusal::TooManyFromIp)
        );
        drop(slot);
        assert!(!edge.receivers_open());
        drop(edge.begin_handshake(ip, &offer).unwrap());
        // A refused login gives its slot back at once.
        let mut refused = edge.begin_handshake(ip, &offer).unwrap();
        let auth = Err(AuthRefusal::new("bad_signature", "no"));
        assert_eq!(refused.decide(&offer, auth).unwrap_err().status(), 401);
        assert!(!edge.receivers_open());
        drop(refused);
        assert!(edge.begin_handshake(ip, &offer).is_ok());
        assert!(edge
            .auth_refusals_prometheus()
            .contains("anpx_receiver_auth_refused_total{reason=\"bad_signature\"} 1\n"));
        assert_eq!(edge.refused(EdgeRefusal::TooManyHandshakes), 1);
        assert_eq!(edge.refused(EdgeRefusal::TooManyFromIp), 1);
        let text = edge.prometheus();
        assert!(text.contains("anpx_edge_refused_total{reason=\"receivers_per_ip\"} 1\n"));
        assert!(text.contains("anpx_edge_refused_total{reason=\"head_timeout\"} 0\n"));
    }

    #[test]
    fn an_upload_over_the_limit_fires_the_cut_once() {
        let edge = Arc::new(Edge::new(EdgeLimits {
            max_body_bytes: 10,
            ..EdgeLimits::default()
        }));
        let id = RequestId::from("r");
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut limit, mut cut) = edge.upload_limit();
        assert!(limit.add(10, &id));
        assert!(cut.poll_cut(&mut cx).is_pending());
        assert!(!limit.add(1, &id));
        assert!(!limit.add(1, &id));
        assert!(cut.poll_cut(&mut cx).is_ready());
        assert!(cut.poll_cut(&mut cx).is_pending());
        assert_eq!(edge.refused(EdgeRefusal::BodyTooLarge), 1);
        // An upload that ends within the limit never fires.
        let (limit, mut cut) = edge.upload_limit();
        drop(limit);
        assert!(cut.poll_cut(&mut cx).is_pending());
        assert!(UploadCut::never().poll_cut(&mut cx).is_pending());
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
