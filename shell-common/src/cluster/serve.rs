//! The serving side: requests other gateways forward here, injected into
//! this gateway's own core like public requests, their responses streamed
//! back under credit.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use anpx_core::cluster::{BodyMode, Intake, Window, WireMessage, DEFAULT_WINDOW, MAX_PIECE};
use anpx_core::RequestId;
use anpx_core::{Failure, FailureKind, RequestBody, ResponseEvent};
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{FutureExt, StreamExt};

use super::Inner;

/// Takes the requests of one service subject.
pub(super) async fn serve(inner: Arc<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.map(|r| r.to_string()) else {
            continue;
        };
        match WireMessage::decode(msg.payload) {
            Ok(WireMessage::Start {
                host,
                head,
                body,
                payload,
            }) => {
                let body = match body {
                    BodyMode::Empty => RequestBody::Empty,
                    BodyMode::Full => RequestBody::Full(payload),
                    BodyMode::Stream => RequestBody::Streaming,
                };
                // Detached: the request ends by itself, like a local one.
                drop(inner.spawn(serve_one(inner.clone(), host, head, body, reply)));
            }
            Ok(other) => {
                tracing::debug!(message = ?other, "ignoring a non-start message on a service subject")
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a bad forwarded request"),
        }
    }
}

/// One forwarded request, from start to its last response piece.
async fn serve_one(
    inner: Arc<Inner>,
    host: String,
    head: anpx_core::RequestHead,
    body: RequestBody,
    reply: String,
) {
    let client = &inner.client;
    let send = |m: WireMessage| {
        let reply = reply.clone();
        async move { client.publish(reply, m.encode()).await.is_ok() }
    };
    let inbox = client.new_inbox();
    let mut from_origin = match client.subscribe(inbox.clone()).await {
        Ok(s) => s,
        Err(e) => {
            send(WireMessage::Failed(Failure::new(
                FailureKind::ReceiverLost,
                502,
                format!("Serving gateway could not subscribe: {e}"),
            )))
            .await;
            return;
        }
    };
    let (events_tx, mut events) = mpsc::unbounded();
    let id = match inner.driver.start_local(host, head, body, events_tx).await {
        Err(e) => {
            send(WireMessage::Failed(Failure::new(
                FailureKind::Refused,
                503,
                e.to_string(),
            )))
            .await;
            return;
        }
        Ok(Err(reject)) => {
            send(WireMessage::Failed(reject.failure())).await;
            return;
        }
        Ok(Ok(started)) => started.id,
    };
    let cancel = |id: &RequestId| inner.driver.cancel(id.clone());
    if !send(WireMessage::Accepted {
        node: inner.options.node_name.clone(),
        inbox,
    })
    .await
    {
        return cancel(&id);
    }
    let mut window = Window::new(DEFAULT_WINDOW);
    let mut intake = Intake::new(DEFAULT_WINDOW);
    // Messages waiting for credit (body pieces) or behind them.
    let mut queue: VecDeque<WireMessage> = VecDeque::new();
    let mut response_done = false;
    let idle = inner.options.request_timeout;
    let mut credit_deadline = Instant::now() + idle;
    // Re-armed lazily: it wakes the loop at the deadline it was set for,
    // which then checks the current one.
    let mut stall_timer = inner.runtime.sleep_until(credit_deadline);
    loop {
        // Send what credit allows, in order.
        while let Some(front) = queue.front() {
            let is_data = matches!(front, WireMessage::Data { .. });
            if is_data && !window.can_send() {
                break;
            }
            let mut m = queue.pop_front().unwrap_or(WireMessage::Cancel);
            let mut piece = 0;
            if let WireMessage::Data { seq, data, .. } = &mut m {
                *seq = window.try_send().unwrap_or_default();
                piece = data.len();
            }
            if !send(m).await {
                return cancel(&id);
            }
            if piece > 0 {
                // Passed on: reopens the receiver's window (`flow-control`).
                inner.driver.read(id.clone(), piece);
            }
            credit_deadline = Instant::now() + idle;
        }
        if response_done && queue.is_empty() {
            return;
        }
        let want_events = !response_done && queue.is_empty();
        let step = poll_fn(|cx| {
            if want_events {
                if let Poll::Ready(event) = events.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Event(event));
                }
            }
            if let Poll::Ready(msg) = from_origin.poll_next_unpin(cx) {
                return Poll::Ready(Step::Origin(msg));
            }
            if stall_timer.poll_unpin(cx).is_ready() {
                return Poll::Ready(Step::Timer);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Event(event) => match event {
                Some(ResponseEvent::Head(h)) => queue.push_back(WireMessage::Head(h)),
                Some(ResponseEvent::Body(b)) => queue.extend(pieces(b)),
                Some(ResponseEvent::End) => {
                    response_done = true;
                    queue.push_back(WireMessage::Data {
                        seq: 0,
                        last: true,
                        data: Bytes::new(),
                    });
                }
                Some(ResponseEvent::Failed(f)) => {
                    response_done = true;
                    queue.push_back(WireMessage::Failed(f));
                }
                None => {
                    response_done = true;
                    queue.push_back(WireMessage::Failed(Failure::new(
                        FailureKind::ReceiverLost,
                        502,
                        "Serving gateway lost the response",
                    )));
                }
            },
            Step::Origin(msg) => {
                let Some(msg) = msg else { return cancel(&id) };
                credit_deadline = Instant::now() + idle;
                match WireMessage::decode(msg.payload) {
                    Ok(WireMessage::Credit { upto }) => window.handle_credit(upto),
                    Ok(WireMessage::Data { seq, last, data }) => match intake.accept(seq) {
                        Ok(credit) => {
                            // Credit goes back only once the core passed the
                            // piece on (as the receiver's window allows), so a
                            // slow receiver slows the forwarding gateway's
                            // upload instead of piling it up here. False: the
                            // request ended in the core (its response may still
                            // be queued here), so the rest of the body is not
                            // wanted and gets no credit.
                            if !inner.driver.send_body(id.clone(), data, last).await {
                                continue;
                            }
                            if let Some(upto) = credit {
                                send(WireMessage::Credit { upto }).await;
                            }
                        }
                        Err(gap) => {
                            cancel(&id);
                            send(WireMessage::Failed(Failure::new(
                                FailureKind::InvalidResponse,
                                502,
                                format!("Forwarded request body broken: {gap}"),
                            )))
                            .await;
                            return;
                        }
                    },
                    Ok(WireMessage::Cancel) => return cancel(&id),
                    Ok(other) => {
                        tracing::debug!(message = ?other, "unexpected message from the forwarding gateway")
                    }
                    Err(e) => tracing::warn!(error = %e, "bad message from the forwarding gateway"),
                }
            }
            Step::Timer => {
                let now = Instant::now();
                if !queue.is_empty() && now >= credit_deadline {
                    // No credit for a whole request timeout: the forwarding
                    // gateway is gone or stuck.
                    tracing::info!(request = %id, "forwarding gateway stopped reading; request cancelled");
                    return cancel(&id);
                }
                let next = if credit_deadline > now {
                    credit_deadline
                } else {
                    now + idle
                };
                stall_timer = inner.runtime.sleep_until(next);
            }
        }
    }
}

/// What woke a served request's loop.
enum Step {
    /// A response event from this gateway's core; `None` when it lost
    /// the request.
    Event(Option<ResponseEvent>),
    /// A message from the forwarding gateway; `None` when the
    /// subscription ended.
    Origin(Option<async_nats::Message>),
    /// The stall timer fired.
    Timer,
}

/// A body piece as credit-sized messages (sequence numbers are set when
/// sent).
pub(super) fn pieces(b: Bytes) -> impl Iterator<Item = WireMessage> {
    let n = b.len().div_ceil(MAX_PIECE);
    (0..n).map(move |i| WireMessage::Data {
        seq: 0,
        last: false,
        data: b.slice(i * MAX_PIECE..((i + 1) * MAX_PIECE).min(b.len())),
    })
}
