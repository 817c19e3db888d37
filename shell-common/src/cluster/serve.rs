//! The serving side's I/O. A request another gateway forwards here is the
//! gateway machine's (`Gateway::serve_forwarded`): a local request on this
//! gateway's receivers with its `Serving` in front, every decision of its
//! life made there. Here the start messages of each joined service subject
//! go in, one subscription takes the forwarding gateways' messages for
//! every served request (a request's inbox is `<prefix>.<request id>`
//! under this gateway's serving prefix), and the bus task publishes the
//! machine's answers.

use std::sync::Arc;

use anpx_core::cluster::{Serving, WireMessage};
use anpx_core::RequestId;
use futures_util::StreamExt;

use crate::driver::Answer;

use super::Inner;

/// The subject of every served request's inbox, for the one subscription
/// that takes them all.
pub(super) fn origins_subject(prefix: &str) -> String {
    format!("{prefix}.*")
}

/// Takes the requests of one service subject.
pub(super) async fn serve(inner: Arc<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.map(|r| r.to_string()) else {
            continue;
        };
        match WireMessage::decode(msg.payload) {
            Ok(start @ WireMessage::Start { .. }) => {
                let served =
                    inner
                        .driver
                        .serve_forwarded(start, reply.clone(), &inner.serve_prefix);
                if let Err(gone) = served {
                    let refusal = Serving::shutting_down(gone);
                    let _ = inner.client.publish(reply, refusal.encode()).await;
                }
            }
            Ok(_) => tracing::debug!("ignoring a non-start message on a service subject"),
            Err(e) => tracing::warn!(error = %e, "ignoring a bad forwarded request"),
        }
    }
}

/// Feeds the forwarding gateways' messages for the served requests into
/// the gateway machine; once the subscription ends (the bus connection is
/// gone), every served request is cancelled.
pub(super) async fn take_origins(inner: Arc<Inner>, mut origins: async_nats::Subscriber) {
    let prefix = format!("{}.", inner.serve_prefix);
    while let Some(msg) = origins.next().await {
        if let Some(id) = msg.subject.as_str().strip_prefix(&prefix) {
            inner
                .driver
                .served_origin(&RequestId::from(id), msg.payload);
        }
    }
    tracing::warn!("the cluster's serving subscription ended; served requests are cancelled");
    inner.driver.served_origins_ended();
}

/// Publishes a served request's answer to the forwarding gateway.
pub(super) async fn answer(inner: &Inner, answer: Answer) {
    let Answer {
        request,
        to,
        message,
    } = answer;
    if inner.client.publish(to, message.encode()).await.is_err() {
        if let Some(request) = request {
            inner.driver.served_publish_failed(&request);
        }
    }
}
