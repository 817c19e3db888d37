//! The forwarding side: a request this gateway's receivers cannot serve,
//! carried to a gateway whose receivers can. Every decision of its life is
//! made by [`anpx_core::cluster::Forwarding`]; this loop only moves NATS
//! messages, upload pieces, response events and timer ticks between it and
//! the world.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use anpx_core::cluster::{Forwarding, Reply, To, Upload};
use anpx_core::ServiceUrl;
use anpx_core::{RequestBody, ResponseEvent};
use anpx_core::{RequestHead, RequestId};
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, StreamExt};

use crate::driver::Events;
use crate::remote::{Remote, RemoteRequest};

use super::Inner;

/// The gateway machine's [`Remote`]: the rest of the cluster.
pub(super) struct Forwarder(pub(super) Arc<Inner>);

/// A piece of the client's upload and who waits for the forwarding machine
/// to take it.
type Piece = (Upload, Option<oneshot::Sender<()>>);

/// What the upload channel holds at most besides one message per sender:
/// the client's pump awaits each piece's `taken` before it reads more, so
/// one piece waits at a time, and after it at most the body's empty end or
/// the cancel (a bounded channel of buffer 1 and its one sender holds two).
const UPLOAD_BUFFER: usize = 1;

/// Response bytes the client read and the request's loop has not yet
/// handed to its machine: a count, not a queue, so however small the
/// pieces and however late the loop, what waits is one number.
#[derive(Default)]
struct Reads {
    bytes: AtomicUsize,
    waker: AtomicWaker,
}

impl Reads {
    fn add(&self, n: usize) {
        if n > 0 {
            self.bytes.fetch_add(n, Ordering::AcqRel);
            self.waker.wake();
        }
    }

    /// What was read since the last call, or `Pending` (the task is woken
    /// by the next [`add`](Self::add)).
    fn poll_take(&self, cx: &mut std::task::Context<'_>) -> Poll<usize> {
        // Registered before looking, so an add between the two still wakes.
        self.waker.register(cx.waker());
        match self.bytes.swap(0, Ordering::AcqRel) {
            0 => Poll::Pending,
            n => Poll::Ready(n),
        }
    }
}

/// The gateway machine's handle on a forwarded request: the client's upload
/// and the response bytes the client read, both bounded whatever the
/// client or the serving gateway do.
struct Handle {
    uploads: mpsc::Sender<Piece>,
    reads: Arc<Reads>,
}

impl RemoteRequest for Handle {
    fn body(&mut self, data: Bytes, last: bool, taken: Option<oneshot::Sender<()>>) {
        // Cannot be full (see `UPLOAD_BUFFER`); were it so, `taken` is
        // dropped with the piece and the pump stops reading the client.
        let _ = self.uploads.try_send((Upload::Body(data, last), taken));
    }

    fn read(&mut self, bytes: usize) {
        self.reads.add(bytes);
    }

    fn cancel(mut self: Box<Self>) {
        // Dropping the sender also cancels (`Step::Upload(None)`), so a
        // full channel loses nothing here.
        let _ = self.uploads.try_send((Upload::Cancel, None));
    }

    fn is_finished(&self) -> bool {
        // The request's loop let go of the channel when it ended.
        self.uploads.is_closed()
    }
}

impl Remote for Forwarder {
    fn start(
        &self,
        host: &str,
        url: ServiceUrl,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Option<(RequestId, Box<dyn RemoteRequest>)> {
        let subject = self.0.options.subjects.service(&url);
        let id = RequestId::uuid_v4(fastrand::u128(..).to_le_bytes());
        let (tx, rx) = mpsc::channel(UPLOAD_BUFFER);
        let reads = Arc::new(Reads::default());
        let reads_rx = reads.clone();
        let inner = self.0.clone();
        let machine = Forwarding::new(
            Instant::now(),
            host.to_owned(),
            head,
            body,
            self.0.options.request_timeout,
            self.0.options.websocket_idle_timeout,
        );
        let request_id = id.clone();
        // Detached: the request ends by itself (response, failure, cancel
        // or timeout), not by a handle.
        drop(self.0.spawn(async move {
            run(&inner, &request_id, subject, machine, events, rx, &reads_rx).await;
        }));
        let handle = Handle { uploads: tx, reads };
        Some((id, Box::new(handle)))
    }
}

/// Carries one request between its machine and the world until the
/// machine is finished.
async fn run(
    inner: &Inner,
    id: &RequestId,
    subject: String,
    mut machine: Forwarding,
    events: Events,
    mut uploads: mpsc::Receiver<Piece>,
    reads: &Reads,
) {
    let client = &inner.client;
    let inbox = client.new_inbox();
    let mut replies = match client.subscribe(inbox.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let failure = Forwarding::unavailable(e);
            let _ = events.send(ResponseEvent::Failed(failure));
            return;
        }
    };
    let mut timer = None;
    loop {
        // A failed publish or a gone client makes more to say: drain until
        // the machine is quiet.
        let mut moved = true;
        while moved {
            moved = false;
            while let Some(t) = machine.poll_transmit() {
                moved = true;
                let payload = t.message.encode();
                match t.to {
                    To::Service => {
                        if let Err(e) = client
                            .publish_with_reply(subject.clone(), inbox.clone(), payload)
                            .await
                        {
                            machine.handle_start_failed(e);
                        }
                    }
                    To::Inbox(theirs) => {
                        let _ = client.publish(theirs, payload).await;
                    }
                }
            }
            while let Some(event) = machine.poll_event() {
                moved = true;
                if events.send(event).is_err() {
                    machine.cancel();
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
        let wants_upload = machine.wants_upload();
        let step = poll_fn(|cx| {
            if let Some((_, sleep)) = &mut timer {
                if sleep.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Step::Timer);
                }
            }
            if let Poll::Ready(msg) = replies.poll_next_unpin(cx) {
                return Poll::Ready(Step::Reply(msg));
            }
            if let Poll::Ready(n) = reads.poll_take(cx) {
                return Poll::Ready(Step::Read(n));
            }
            if wants_upload {
                if let Poll::Ready(up) = uploads.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Upload(up));
                }
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        match step {
            Step::Reply(msg) => {
                let reply = match msg {
                    None => Reply::Ended,
                    Some(m) if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) => {
                        Reply::NoResponders
                    }
                    Some(m) => Reply::Message(m.payload),
                };
                if let Some(node) = machine.handle_reply(now, reply) {
                    tracing::debug!(request = %id, %node, "forwarded");
                }
            }
            Step::Read(n) => machine.handle_read(n),
            Step::Upload(Some((upload, taken))) => {
                machine.handle_upload(now, upload);
                if let Some(taken) = taken {
                    let _ = taken.send(());
                }
            }
            // The gateway machine let go of the upload without ending it: the
            // client is gone.
            Step::Upload(None) => machine.cancel(),
            Step::Timer => {
                timer = None;
                if events.is_closed() {
                    machine.cancel();
                } else if inner
                    .driver
                    .route_book(|book| match book {
                        Some(book) => machine.handle_timeout(now, book),
                        // Never joined: this loop would not run.
                        None => machine.cancel(),
                    })
                    .is_err()
                {
                    // The gateway is shutting down.
                    machine.cancel();
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
    Upload(Option<Piece>),
    /// Response bytes the client read.
    Read(usize),
    /// Time to check the client, the serving gateway and the deadline.
    Timer,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::counting_waker;
    use std::task::Context;

    #[test]
    fn reads_add_up_into_one_count_and_wake_the_loop() {
        let reads = Reads::default();
        let (woken, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(reads.poll_take(&mut cx), Poll::Pending);
        for _ in 0..1000 {
            reads.add(1);
        }
        reads.add(0);
        assert!(woken.get() >= 1, "the loop is woken");
        assert_eq!(
            reads.poll_take(&mut cx),
            Poll::Ready(1000),
            "one count, not 1000 messages"
        );
        assert_eq!(reads.poll_take(&mut cx), Poll::Pending);
    }

    #[test]
    fn the_upload_channel_holds_a_piece_and_its_cancel() {
        let (tx, mut rx) = mpsc::channel::<Piece>(UPLOAD_BUFFER);
        let mut handle = Handle {
            uploads: tx,
            reads: Arc::default(),
        };
        let (taken, _wait) = oneshot::channel();
        handle.body(Bytes::from_static(b"piece"), false, Some(taken));
        Box::new(handle).cancel();
        let first = rx.try_recv().expect("a piece");
        assert!(matches!(first.0, Upload::Body(_, false)), "{:?}", first.0);
        let second = rx.try_recv().expect("the cancel");
        assert_eq!(second.0, Upload::Cancel);
        assert!(rx.try_recv().is_err(), "nothing more");
    }
}
