//! The forwarding side: a request this gateway's receivers cannot serve,
//! carried to a gateway whose receivers can.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anpx_core::cluster::{BodyMode, Intake, Plan, Window, WireMessage, DEFAULT_WINDOW, MAX_PIECE};
use anpx_core::forward::normalize_path;
use anpx_core::{Failure, FailureKind, RequestBody, ResponseEvent};
use anpx_core::{RequestHead, RequestId};
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{FutureExt, StreamExt};

use crate::driver::Events;
use crate::remote::{Remote, RemoteRequest};

use super::serve::pieces;
use super::Inner;

/// Extra time a forwarded request waits beyond the request timeout, so
/// that the serving gateway's own 504 (which names the cause) comes first.
const TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// How often a waiting request checks that its client and the serving
/// gateway are still there.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The gateway task's [`Remote`]: the rest of the cluster.
pub(super) struct Forwarder(pub(super) Arc<Inner>);

enum Upload {
    Body(Bytes, bool),
    Cancel,
}

struct Handle(mpsc::UnboundedSender<Upload>);

impl RemoteRequest for Handle {
    fn body(&mut self, data: Bytes, last: bool) {
        let _ = self.0.unbounded_send(Upload::Body(data, last));
    }

    fn cancel(self: Box<Self>) {
        let _ = self.0.unbounded_send(Upload::Cancel);
    }
}

impl Remote for Forwarder {
    fn prefers_remote(&self, host: &str, path: &str) -> bool {
        matches!(self.0.book().plan(host, path), Plan::Remote(_))
    }

    fn start(
        &self,
        host: &str,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Option<(RequestId, Box<dyn RemoteRequest>)> {
        let path = normalize_path(&head.path).ok()?;
        let url = self.0.book().remote_route(host, &path)?.clone();
        let subject = self.0.options.subjects.service(&url);
        let id = RequestId::uuid_v4(fastrand::u128(..).to_le_bytes());
        let (tx, rx) = mpsc::unbounded();
        self.0.forwarded.fetch_add(1, Ordering::Relaxed);
        let inner = self.0.clone();
        let request = Forwarded {
            id: id.clone(),
            subject,
            host: host.to_owned(),
            head,
            body,
        };
        // Detached: the request ends by itself (response, failure, cancel
        // or timeout), not by a handle.
        drop(self.0.spawn(async move {
            run(&inner, request, events, rx).await;
            inner.forwarded.fetch_sub(1, Ordering::Relaxed);
        }));
        Some((id, Box::new(Handle(tx))))
    }

    fn in_flight(&self) -> usize {
        self.0.forwarded.load(Ordering::Relaxed)
    }
}

struct Forwarded {
    id: RequestId,
    subject: String,
    host: String,
    head: RequestHead,
    body: RequestBody,
}

/// Carries one request: start, then response messages into `events` and
/// upload pieces out, until the response ends or fails.
async fn run(
    inner: &Inner,
    request: Forwarded,
    events: Events,
    mut uploads: mpsc::UnboundedReceiver<Upload>,
) {
    let fail = |kind: FailureKind, status: u16, error: String| {
        let _ = events.unbounded_send(ResponseEvent::Failed(Failure::new(kind, status, error)));
    };
    let client = &inner.client;
    let inbox = client.new_inbox();
    let mut replies = match client.subscribe(inbox.clone()).await {
        Ok(s) => s,
        Err(e) => {
            return fail(
                FailureKind::ReceiverLost,
                502,
                format!("Cluster unavailable: {e}"),
            )
        }
    };
    // A whole body too large for one message goes as pieces instead.
    let mut outgoing: VecDeque<WireMessage> = VecDeque::new();
    let (mode, payload) = match request.body {
        RequestBody::Empty => (BodyMode::Empty, Bytes::new()),
        RequestBody::Full(b) if b.len() <= MAX_PIECE => (BodyMode::Full, b),
        RequestBody::Full(b) => {
            outgoing.extend(pieces(b));
            outgoing.push_back(WireMessage::Data {
                seq: 0,
                last: true,
                data: Bytes::new(),
            });
            (BodyMode::Stream, Bytes::new())
        }
        // The length is not carried between gateways; the serving one
        // sends the body as it comes.
        RequestBody::Streaming | RequestBody::Sized(_) => (BodyMode::Stream, Bytes::new()),
    };
    let mut uploading = mode == BodyMode::Stream && outgoing.is_empty();
    let start = WireMessage::Start {
        host: request.host,
        head: request.head,
        body: mode,
        payload,
    };
    if let Err(e) = client
        .publish_with_reply(request.subject, inbox, start.encode())
        .await
    {
        return fail(
            FailureKind::ReceiverLost,
            502,
            format!("Could not forward the request: {e}"),
        );
    }
    let idle = inner.options.request_timeout + TIMEOUT_SLACK;
    let mut deadline = Instant::now() + idle;
    let mut window = Window::new(DEFAULT_WINDOW);
    let mut intake = Intake::new(DEFAULT_WINDOW);
    // Set once the serving gateway accepted: its name and inbox.
    let mut serving: Option<(String, String)> = None;
    // Whether the serving gateway's announcements were heard since it
    // accepted; one that accepted before its first announcement reached
    // us is not yet known, which is no sign of its death.
    let mut seen_alive = false;
    let mut check = inner.runtime.sleep_until(Instant::now() + CHECK_EVERY);
    let id = request.id;
    loop {
        if let Some((_, theirs)) = &serving {
            while window.can_send() {
                let Some(mut m) = outgoing.pop_front() else {
                    break;
                };
                if let WireMessage::Data { seq, .. } = &mut m {
                    *seq = window.try_send().unwrap_or_default();
                }
                let _ = client.publish(theirs.clone(), m.encode()).await;
            }
        }
        let may_read_upload = uploading && serving.is_some() && outgoing.is_empty();
        let step = poll_fn(|cx| {
            if check.poll_unpin(cx).is_ready() {
                return Poll::Ready(Step::Check);
            }
            if let Poll::Ready(msg) = replies.poll_next_unpin(cx) {
                return Poll::Ready(Step::Reply(msg));
            }
            if may_read_upload {
                if let Poll::Ready(up) = uploads.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Upload(up));
                }
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Reply(msg) => {
                let Some(msg) = msg else {
                    return fail(
                        FailureKind::ReceiverLost,
                        502,
                        "Cluster connection lost".into(),
                    );
                };
                if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    return fail(
                        FailureKind::ReceiverLost,
                        502,
                        "No gateway serves this route any more".into(),
                    );
                }
                deadline = Instant::now() + idle;
                let m = match WireMessage::decode(msg.payload) {
                    Ok(m) => m,
                    Err(e) => {
                        cancel(inner, &serving).await;
                        return fail(
                            FailureKind::InvalidResponse,
                            502,
                            format!("Bad message from the serving gateway: {e}"),
                        );
                    }
                };
                let event = match m {
                    WireMessage::Accepted { node, inbox } => {
                        tracing::debug!(request = %id, %node, "forwarded");
                        serving = Some((node, inbox));
                        continue;
                    }
                    WireMessage::Credit { upto } => {
                        window.handle_credit(upto);
                        continue;
                    }
                    WireMessage::Head(h) => ResponseEvent::Head(h),
                    WireMessage::Data { seq, last, data } => {
                        match intake.accept(seq) {
                            Ok(Some(upto)) => {
                                if let Some((_, theirs)) = &serving {
                                    let m = WireMessage::Credit { upto };
                                    let _ = client.publish(theirs.clone(), m.encode()).await;
                                }
                            }
                            Ok(None) => {}
                            Err(gap) => {
                                cancel(inner, &serving).await;
                                return fail(
                                    FailureKind::InvalidResponse,
                                    502,
                                    format!("Response from the serving gateway broken: {gap}"),
                                );
                            }
                        }
                        if !data.is_empty()
                            && events.unbounded_send(ResponseEvent::Body(data)).is_err()
                        {
                            return cancel(inner, &serving).await;
                        }
                        if last {
                            let _ = events.unbounded_send(ResponseEvent::End);
                            return;
                        }
                        continue;
                    }
                    WireMessage::Failed(f) => {
                        let _ = events.unbounded_send(ResponseEvent::Failed(f));
                        return;
                    }
                    WireMessage::Start { .. } | WireMessage::Cancel => continue,
                };
                if events.unbounded_send(event).is_err() {
                    return cancel(inner, &serving).await;
                }
            }
            Step::Upload(up) => match up {
                Some(Upload::Body(data, last)) => {
                    outgoing.extend(pieces(data));
                    if last {
                        uploading = false;
                        outgoing.push_back(WireMessage::Data {
                            seq: 0,
                            last: true,
                            data: Bytes::new(),
                        });
                    }
                }
                Some(Upload::Cancel) => return cancel(inner, &serving).await,
                // The gateway task let go of the upload without ending it:
                // the client is gone.
                None => return cancel(inner, &serving).await,
            },
            Step::Check => {
                check = inner.runtime.sleep_until(Instant::now() + CHECK_EVERY);
                if events.is_closed() {
                    return cancel(inner, &serving).await;
                }
                if let Some((node, _)) = &serving {
                    let alive = inner.book().is_alive(node);
                    if seen_alive && !alive {
                        return fail(
                            FailureKind::ReceiverLost,
                            502,
                            format!("Gateway {node} serving the request left the cluster"),
                        );
                    }
                    seen_alive |= alive;
                }
                if Instant::now() >= deadline {
                    cancel(inner, &serving).await;
                    return fail(
                        FailureKind::HeadTimeout,
                        504,
                        "Gateway serving the route did not respond in time".into(),
                    );
                }
            }
        }
    }
}

/// What woke a forwarded request's loop.
enum Step {
    /// A message on its reply inbox; `None` when the subscription ended.
    Reply(Option<async_nats::Message>),
    /// A piece of the client's upload, or its end.
    Upload(Option<Upload>),
    /// Time to check the client, the serving gateway and the deadline.
    Check,
}

/// Tells the serving gateway (when known) to drop the request.
async fn cancel(inner: &Inner, serving: &Option<(String, String)>) {
    if let Some((_, theirs)) = serving {
        let _ = inner
            .client
            .publish(theirs.clone(), WireMessage::Cancel.encode())
            .await;
    }
}
