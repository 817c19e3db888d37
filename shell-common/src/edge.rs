//! The public edge's limits and answers, the same in every shell: the
//! upload limit's meter and the answers refusals get. What is refused is
//! decided in `anpx_core::edge`; each shell applies the limits to its own
//! sockets and HTTP library, and reports each refusal to the gateway
//! machine, which counts them (`anpx_edge_refused_total`,
//! [`anpx_core::EdgeRefusals`]). Receivers' handshakes are the machine's
//! too (`crate::driver::ReceiverSlot`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anpx_core::edge::{BodyMeter, EdgeLimits, EdgeRefusal};
use anpx_core::RequestId;
use futures_channel::oneshot;

use crate::driver::Driver;
use crate::gateway::Answer;

/// The edge limits, shared by every connection, and the gateway machine
/// its refusals are reported to.
pub struct Edge {
    /// The configured limits.
    pub limits: EdgeLimits,
    driver: Driver,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// An edge applying `limits`, reporting its refusals to `driver`'s
    /// machine.
    pub fn new(limits: EdgeLimits, driver: Driver) -> Self {
        Edge { limits, driver }
    }

    /// Reports one refusal ([`Driver::edge_refused`]).
    pub fn count(&self, refusal: EdgeRefusal) {
        self.driver.edge_refused(refusal);
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
    fn an_upload_over_the_limit_fires_the_cut_once() {
        let core = anpx_core::Gateway::new(anpx_core::GatewayConfig::default(), 7);
        let (driver, _timer) = Driver::new(core, |_| std::future::pending());
        let limits = EdgeLimits {
            max_body_bytes: 10,
            ..EdgeLimits::default()
        };
        let edge = Arc::new(Edge::new(limits, driver.clone()));
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
        let stats = futures_util::FutureExt::now_or_never(driver.stats())
            .expect("at once")
            .expect("running");
        assert_eq!(stats.edge_refused.get(EdgeRefusal::BodyTooLarge), 1);
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
