//! The serving side: requests other gateways forward here, injected into
//! this gateway's own core like public requests, their responses streamed
//! back under credit. Every decision of a served request's life is made by
//! [`anpx_core::cluster::Serving`]; this loop only moves NATS messages,
//! local response events and timer ticks between it and the world.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use anpx_core::cluster::{Local, Serving, Stall, WireMessage};
use anpx_core::RequestBody;
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
                let body = Serving::request_body(body, payload);
                // Detached: the request ends by itself, like a local one.
                drop(inner.spawn(serve_one(inner.clone(), host, head, body, reply)));
            }
            Ok(_) => tracing::debug!("ignoring a non-start message on a service subject"),
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
            send(Serving::unavailable(e)).await;
            return;
        }
    };
    let (events_tx, mut events) = crate::driver::events();
    let id = match inner.driver.start_local(host, head, body, events_tx).await {
        Err(e) => {
            send(Serving::shutting_down(e)).await;
            return;
        }
        Ok(Err(reject)) => {
            send(Serving::refused(&reject)).await;
            return;
        }
        Ok(Ok(started)) => started.id,
    };
    let mut machine = Serving::new(
        Instant::now(),
        inner.options.node_name.clone(),
        inbox,
        inner.options.request_timeout,
        inner.options.websocket_idle_timeout,
    );
    let mut timer = None;
    loop {
        // A failed publish or a refused body piece makes more to do: drain
        // until the machine is quiet.
        let mut moved = true;
        while moved {
            moved = false;
            while let Some(m) = machine.poll_transmit() {
                moved = true;
                if !send(m).await {
                    machine.handle_publish_failed();
                }
            }
            while let Some(action) = machine.poll_local() {
                moved = true;
                match action {
                    Local::Body { data, last } => {
                        let passed = inner.driver.send_body(id.clone(), data, last).await;
                        machine.handle_body_passed(passed);
                    }
                    // Passed on: reopens the receiver's window (`flow-control`).
                    Local::Read(n) => inner.driver.read(id.clone(), n),
                    Local::Cancel => inner.driver.cancel(id.clone()),
                }
            }
        }
        if machine.is_finished() {
            return;
        }
        let wake = machine.poll_timeout();
        if timer.as_ref().map(|(at, _)| *at) != wake {
            timer = wake.map(|at| (at, inner.runtime.sleep_until(at)));
        }
        let want_events = machine.wants_events();
        let step = poll_fn(|cx| {
            if want_events {
                if let Poll::Ready(event) = events.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Event(event));
                }
            }
            if let Poll::Ready(msg) = from_origin.poll_next_unpin(cx) {
                return Poll::Ready(Step::Origin(msg));
            }
            if let Some((_, sleep)) = &mut timer {
                if sleep.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Step::Timer);
                }
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        match step {
            Step::Event(event) => machine.handle_event(now, event),
            Step::Origin(msg) => {
                if let Err(e) = machine.handle_origin(now, msg.map(|m| m.payload)) {
                    tracing::warn!(error = %e, "bad message from the forwarding gateway");
                }
            }
            Step::Timer => {
                timer = None;
                if machine.handle_timeout(now) == Some(Stall::NoCredit) {
                    tracing::info!(request = %id, "forwarding gateway stopped reading; request cancelled");
                }
            }
        }
    }
}

/// What woke a served request's loop.
enum Step {
    /// A response event from this gateway's core; `None` when it lost
    /// the request.
    Event(Option<anpx_core::ResponseEvent>),
    /// A message from the forwarding gateway; `None` when the
    /// subscription ended.
    Origin(Option<async_nats::Message>),
    /// The stall timer fired.
    Timer,
}
