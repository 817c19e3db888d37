//! The forwarding side's I/O. The gateway machine holds each request it
//! sends to another gateway (`Gateway::start_forwarded`); here its
//! messages are published and what arrives on its reply inbox goes back
//! into the machine. One subscription takes every forwarded request's
//! replies: a request's inbox is `<prefix>.<request id>` under this
//! gateway's own inbox prefix, so a forwarded request costs no
//! subscription and no task of its own.

use std::sync::Arc;

use anpx_core::cluster::{Reply, To};
use anpx_core::RequestId;
use futures_util::StreamExt;

use crate::driver::Publish;

use super::Inner;

/// The reply subject of forwarded request `request`.
fn reply_subject(prefix: &str, request: &RequestId) -> String {
    format!("{prefix}.{}", request.as_str())
}

/// The subject of every forwarded request's reply inbox, for the one
/// subscription that takes them all.
pub(super) fn replies_subject(prefix: &str) -> String {
    format!("{prefix}.*")
}

/// Feeds what arrives on the reply inboxes into the gateway machine; once
/// the subscription ends (the bus connection is gone), every forwarded
/// request fails.
pub(super) async fn take_replies(inner: Arc<Inner>, mut replies: async_nats::Subscriber) {
    let prefix = format!("{}.", inner.reply_prefix);
    while let Some(msg) = replies.next().await {
        let Some(id) = msg.subject.as_str().strip_prefix(&prefix) else {
            continue;
        };
        let reply = if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            Reply::NoResponders
        } else {
            Reply::Message(msg.payload)
        };
        inner.driver.forward_reply(&RequestId::from(id), reply);
    }
    tracing::warn!("the cluster's reply subscription ended; forwarded requests fail");
    inner.driver.forward_replies_ended();
}

/// Publishes a forwarded request's message: its start on its route's
/// service subject with its reply inbox, the rest to the serving
/// gateway's inbox.
pub(super) async fn publish(inner: &Inner, publish: Publish) {
    let Publish {
        request,
        route,
        transmit,
    } = publish;
    let payload = transmit.message.encode();
    match transmit.to {
        To::Service => {
            let subject = inner.options.subjects.service(&route);
            let reply = reply_subject(&inner.reply_prefix, &request);
            if let Err(e) = inner
                .client
                .publish_with_reply(subject, reply, payload)
                .await
            {
                inner.driver.forward_start_failed(&request, &e.to_string());
            }
        }
        To::Inbox(theirs) => {
            let _ = inner.client.publish(theirs, payload).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_subject_is_under_the_one_subscription() {
        let id = RequestId::uuid_v4([7; 16]);
        let subject = reply_subject("_INBOX.abc", &id);
        let pattern = replies_subject("_INBOX.abc");
        let (base, wildcard) = pattern.rsplit_once('.').expect("a token");
        assert_eq!(wildcard, "*");
        let token = subject
            .strip_prefix(&format!("{base}."))
            .expect("under the prefix");
        assert!(!token.contains('.'), "one token, as `*` matches: {token}");
        assert_eq!(RequestId::from(token), id);
    }
}
