//! The gateway state machine and the one lock around it. Whoever has
//! something for the machine (a public connection's task, a receiver
//! connection's reader, the timer task, a cluster request's loop) locks
//! it, feeds the input with `now`, drains every output to where it goes
//! (a receiver connection's [`Outbox`], a request's [`EventTx`]) and wakes
//! whoever waits there, after letting go of the lock. The machine stays
//! the single owner of the gateway's state; the critical section is the
//! machine's own work and a few queue pushes. The shell spawns the timer
//! task [`Driver::new`] returns and supplies its sleep.

mod auth;
mod cluster_port;
mod events;
mod outbox;
mod reports;
mod slot;

use crate::id_map::IdMap;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Waker};
use std::time::Instant;

use anpx_core::cluster::{Announcement, Choice, ClusterOutput, MembershipConfig, Reply, RouteBook};
use anpx_core::forward::normalize_path;
use anpx_core::policy::{PublicHead, Screen};
use anpx_core::ServiceUrl;
use anpx_core::WsMessage;
use anpx_core::{
    Gateway as Core, GatewayStats, Identity, LinkFault, LinkId, Output, Reject, RequestBody,
    ResponseEvent,
};
use anpx_core::{RequestHead, RequestId};
use bytes::Bytes;
use futures_channel::oneshot;

pub use cluster_port::{Answer, BusWork, Publish};
pub use events::{events, EventRx, EventTx, Gone};
pub use outbox::{LinkOut, Outbox, Taken, HIGH_WATER};
pub use slot::ReceiverSlot;

/// The sending end of one public request's response events.
pub type Events = EventTx;

/// A started request: its id and the receiver connection serving it.
#[derive(Debug, Clone)]
pub struct Started {
    /// The request.
    pub id: RequestId,
    /// Who serves it, for the log.
    pub receiver: String,
    /// The granted service URL that routed it (the metrics' `route`
    /// label); `cluster` for one handed to another gateway.
    pub route: String,
}

/// The gateway stopped (it is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the gateway is shutting down")]
pub struct DriverGone;

impl DriverGone {
    /// What a request or handshake that found the gateway gone is told:
    /// 503, refused.
    pub fn failure(&self) -> anpx_core::Failure {
        anpx_core::Failure::new(anpx_core::FailureKind::Refused, 503, self.to_string())
    }
}

/// A cheap handle to the gateway machine.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Mutex<State>>,
    /// Reports waiting for the machine's next lock.
    reports: Arc<reports::Reports>,
}

impl Driver {
    /// A handle and the timer task to spawn. `sleep(at)` must resolve at
    /// `at`. The task ends when the gateway shuts down or every handle is
    /// gone.
    pub fn new<S, F>(core: Core, sleep: S) -> (Driver, impl Future<Output = ()> + Send + 'static)
    where
        S: Fn(Instant) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = Arc::new(Mutex::new(State {
            core,
            links: IdMap::default(),
            requests: IdMap::default(),
            forwarding: false,
            uploads: IdMap::default(),
            cluster: cluster_port::ClusterPort::default(),
            timer: Timer::default(),
            wake: Vec::new(),
            stopped: false,
        }));
        let timer = run_timer(Arc::downgrade(&inner), sleep);
        let reports = Arc::default();
        (Driver { inner, reports }, timer)
    }

    /// Runs `f` on the machine at the current time, then moves what it
    /// produced to the queues it goes to and wakes their owners.
    fn with<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> Result<R, DriverGone> {
        with_state(&self.inner, f)
    }

    /// The middlewares' verdict on a public request, before it is routed.
    pub fn screen(&self, head: &PublicHead<'_>) -> Result<Screen, DriverGone> {
        self.with(|st, now| st.core.screen(now, head))
    }

    /// A message from a receiver connection.
    pub fn message(&self, link: LinkId, message: WsMessage) -> Result<(), DriverGone> {
        self.with(|st, now| st.message(now, link, message))
    }

    /// `bytes` of a WebSocket message from `link` are read and not yet a
    /// whole message.
    pub fn arriving(&self, link: LinkId, bytes: u64) {
        let _ = self.with(|st, now| st.core.message_arriving(now, link, bytes));
    }

    /// A receiver connection ended.
    pub fn closed(&self, link: LinkId) {
        let _ = self.with(|st, now| {
            if let Some(attached) = st.links.remove(&link) {
                st.wake.extend(attached.outbox.detach());
            }
            st.core.close_link(now, link);
        });
    }

    /// The writer of connection `link` took a full queue: the uploads
    /// waiting for room in it may go on.
    pub fn writable(&self, link: LinkId) {
        let _ = self.with(|st, now| st.room_made(now, link));
    }

    /// Replaces what receiver connection `link` serves (the registry
    /// changed while it stayed connected); in-flight requests finish.
    pub fn regrant(&self, link: LinkId, grants: Vec<ServiceUrl>) {
        let _ = self.with(|st, now| st.regrant(now, link, grants));
    }

    /// The connection broke the protocol below the frames (a message over
    /// the size limit, invalid WebSocket framing).
    pub fn fault(&self, link: LinkId, fault: LinkFault, detail: String) {
        let _ = self.with(|st, now| st.core.link_fault(now, link, fault, &detail));
    }

    /// Routes a public request from the client address `client`; its
    /// response comes on `events`. In a cluster, a request this
    /// gateway's receivers do not serve (or another gateway serves more
    /// specifically) goes there. Served here, it is held to the address's
    /// share of the route's in-flight cap.
    pub async fn start(
        &self,
        client: IpAddr,
        host: String,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Result<Result<Started, Reject>, DriverGone> {
        self.with(|st, now| {
            self.reports.deliver(&mut st.core);
            st.start(now, client, host, head, body, events)
        })
    }

    /// Joins a cluster: the machine keeps the cluster's routes, chooses
    /// where each request goes and holds the requests it sends elsewhere.
    /// What the bus must do comes from
    /// [`cluster_outputs`](Self::cluster_outputs); what arrives on the
    /// forwarded requests' reply inboxes goes to
    /// [`forward_reply`](Self::forward_reply).
    pub fn join_cluster(&self, config: MembershipConfig) {
        let _ = self.with(|st, now| {
            st.forwarding = true;
            st.core.join_cluster(now, config);
        });
    }

    /// Leaves the cluster: no new request goes elsewhere from now on (those
    /// forwarded already go on). Returns what the bus must still do (the
    /// withdrawal, the subjects to leave, the forwarded requests' last
    /// messages), for the caller to do at once.
    pub fn leave_cluster(&self) -> BusWork {
        self.with(|st, now| {
            st.forwarding = false;
            st.core.leave_cluster(now);
            st.flush();
            st.cluster.take()
        })
        .unwrap_or_default()
    }

    /// Something arrived on forwarded request `request`'s reply inbox.
    pub fn forward_reply(&self, request: &RequestId, reply: Reply) {
        let _ = self.with(|st, now| {
            if let Some(node) = st.core.forward_reply(now, request, reply) {
                tracing::debug!(%request, %node, "forwarded");
            }
        });
    }

    /// The start message of forwarded request `request` could not be
    /// published.
    pub fn forward_start_failed(&self, request: &RequestId, reason: &str) {
        let _ = self.with(|st, now| st.core.forward_start_failed(now, request, reason));
    }

    /// A start message heard on a joined service subject, with `reply` its
    /// reply subject: the request starts here (`Gateway::serve_forwarded`);
    /// the forwarding gateway's messages for it are to be taken on
    /// `<inbox_prefix>.<request id>` and given to
    /// [`served_origin`](Self::served_origin).
    pub fn serve_forwarded(
        &self,
        start: anpx_core::cluster::WireMessage,
        reply: String,
        inbox_prefix: &str,
    ) -> Result<Option<RequestId>, DriverGone> {
        self.with(|st, now| {
            self.reports.deliver(&mut st.core);
            st.core.serve_forwarded(now, start, reply, inbox_prefix)
        })
    }

    /// A message from the forwarding gateway on served request
    /// `request`'s inbox.
    pub fn served_origin(&self, request: &RequestId, payload: bytes::Bytes) {
        let decoded = self.with(|st, now| st.core.served_origin(now, request, Some(payload)));
        if let Ok(Err(e)) = decoded {
            tracing::warn!(%request, error = %e, "bad message from the forwarding gateway");
        }
    }

    /// The served requests' inboxes' subscription ended: every served
    /// request is cancelled.
    pub fn served_origins_ended(&self) {
        let _ = self.with(|st, now| st.core.served_origins_ended(now));
    }

    /// An answer of served request `request` could not be published.
    pub fn served_publish_failed(&self, request: &RequestId) {
        let _ = self.with(|st, now| st.core.served_publish_failed(now, request));
    }

    /// The reply inboxes' subscription ended: every forwarded request fails.
    pub fn forward_replies_ended(&self) {
        let _ = self.with(|st, now| st.core.forward_replies_ended(now));
    }

    /// Another gateway's announcement, heard on the routes subject.
    pub fn announcement(&self, announcement: Announcement) {
        let _ = self.with(|st, now| st.core.handle_announcement(now, announcement));
    }

    /// What the bus must do next (announcements, service subjects to join
    /// or leave, forwarded requests' messages), once there is some.
    pub async fn cluster_outputs(&self) -> Result<BusWork, DriverGone> {
        poll_fn(|cx| {
            let mut st = lock(&self.inner);
            if st.stopped {
                return Poll::Ready(Err(DriverGone));
            }
            st.cluster.poll_take(cx).map(Ok)
        })
        .await
    }

    /// `f` on the cluster's route book (`None` outside a cluster).
    pub fn route_book<R>(&self, f: impl FnOnce(Option<&RouteBook>) -> R) -> Result<R, DriverGone> {
        self.with(|st, _| f(st.core.route_book()))
    }

    /// A piece of a streamed request body.
    pub fn body(&self, request: RequestId, data: Bytes, last: bool) {
        // A body for a request that already ended is dropped: the client
        // was already answered.
        let _ = self.with(|st, now| st.core.push_body(now, &request, data, last));
    }

    /// A piece of a streamed request body, resolving once the gateway sent
    /// it to the receiver (with `flow-control`, once the receiver's credit
    /// covered it: at once, or at the machine's `Output::Writable` for the
    /// request; always, once the connection's queue is below
    /// [`HIGH_WATER`]), so a shell that awaits it before reading more of
    /// the client's body holds at most a window of it. False when the
    /// request is no longer in flight: stop reading the body.
    pub async fn send_body(&self, request: RequestId, data: Bytes, last: bool) -> bool {
        let (sent, rx) = oneshot::channel();
        let queued = self.with(|st, now| {
            if st.core.push_body(now, &request, data, last).is_ok() {
                // The piece's frames go to the connection's queue first,
                // so that the room left counts them.
                st.flush();
                match st.core.upload_waits(&request) {
                    Some(false) => {
                        let _ = sent.send(());
                    }
                    // Waits for the machine's `Output::Writable`.
                    Some(true) => {
                        st.uploads.insert(request, sent);
                    }
                    // Ended meanwhile: dropping `sent` tells the pump.
                    None => {}
                }
            }
        });
        queued.is_ok() && rx.await.is_ok()
    }

    /// `bytes` of a response body went to the public client: reopens the
    /// receiver's window for it (`flow-control`).
    pub fn read(&self, request: RequestId, bytes: usize) {
        let _ = self.with(|st, now| st.core.body_read(now, &request, bytes));
    }

    /// The client went away.
    pub fn cancel(&self, request: RequestId) {
        let _ = self.with(|st, now| st.cancel(now, &request));
    }

    /// A snapshot of the state, counting every request end and edge
    /// refusal reported before it.
    pub async fn stats(&self) -> Result<GatewayStats, DriverGone> {
        self.with(|st, now| {
            self.reports.deliver(&mut st.core);
            st.core.stats(now)
        })
    }

    /// Closes every receiver connection and stops the timer task; every
    /// call after it finds the gateway gone.
    pub fn shutdown(&self) {
        let _ = self.with(|st, now| st.close_all(now));
    }
}

fn lock(inner: &Mutex<State>) -> MutexGuard<'_, State> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The critical section: `f`, then the outputs moved out (uploads the
/// machine says may go on released with them) and the timer told of an
/// earlier deadline; the wake-ups happen after the lock is let go, so a
/// woken task does not find it held.
fn with_state<R>(
    inner: &Mutex<State>,
    f: impl FnOnce(&mut State, Instant) -> R,
) -> Result<R, DriverGone> {
    let (result, wake) = {
        let mut st = lock(inner);
        if st.stopped {
            return Err(DriverGone);
        }
        let result = f(&mut st, Instant::now());
        st.flush();
        st.rearm_timer();
        (result, std::mem::take(&mut st.wake))
    };
    for w in wake {
        w.wake();
    }
    Ok(result)
}

/// The timer task: sleeps until the machine's next deadline, or until a
/// call made an earlier one, and runs what is due.
async fn run_timer<S, F>(inner: Weak<Mutex<State>>, sleep: S)
where
    S: Fn(Instant) -> F,
    F: Future<Output = ()>,
{
    loop {
        let at = {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let mut st = lock(&strong);
            if st.stopped {
                return;
            }
            st.timer.kicked = false;
            st.timer.armed = st.core.poll_timeout();
            st.timer.armed
        };
        let mut nap = pin!(async {
            match at {
                Some(at) => sleep(at).await,
                None => std::future::pending().await,
            }
        });
        let due = poll_fn(|cx| {
            if nap.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            let Some(strong) = inner.upgrade() else {
                return Poll::Ready(false);
            };
            let mut st = lock(&strong);
            if st.stopped || st.timer.kicked {
                return Poll::Ready(false);
            }
            st.timer.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if due {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            if with_state(&strong, |st, now| st.core.handle_timeout(now)).is_err() {
                return;
            }
        }
    }
}

/// What the timer task sleeps towards.
#[derive(Default)]
struct Timer {
    /// The deadline it sleeps until.
    armed: Option<Instant>,
    /// Its waker while it sleeps.
    waker: Option<Waker>,
    /// A call made a deadline earlier than `armed`: sleep again.
    kicked: bool,
}

/// A receiver connection as the driver knows it: where its frames go,
/// and its address for the log when the machine closes it.
struct Attached {
    outbox: Arc<Outbox>,
    peer: IpAddr,
    /// The machine was told its outbox is full (`Gateway::link_backlog`).
    backlogged: bool,
}

struct State {
    core: Core,
    links: IdMap<LinkId, Attached>,
    requests: IdMap<RequestId, Events>,
    /// In a cluster: requests may go to other gateways.
    forwarding: bool,
    /// What the cluster's bus task must still do.
    cluster: cluster_port::ClusterPort,
    /// Uploads the machine told to wait (`Gateway::upload_waits`), for the
    /// receiver's credit or for room in their connection's queue, until
    /// its `Output::Writable` names them. An entry goes when its request
    /// ends, which tells the pump. At most one per request in flight.
    uploads: IdMap<RequestId, oneshot::Sender<()>>,
    timer: Timer,
    /// Tasks to wake once the lock is let go.
    wake: Vec<Waker>,
    /// Shut down: every call finds the gateway gone.
    stopped: bool,
}

impl State {
    fn message(&mut self, now: Instant, link: LinkId, message: WsMessage) {
        let text = matches!(message, WsMessage::Text(_));
        let was = text && self.core.link_draining(link) == Some(true);
        self.core.handle_message(now, link, message);
        if text && !was && self.core.link_draining(link) == Some(true) {
            let identity = self
                .core
                .link_identity(link)
                .map(|i| i.to_string())
                .unwrap_or_default();
            tracing::info!(
                %link,
                %identity,
                "receiver draining: new requests go to other receivers of its routes"
            );
        }
    }

    fn regrant(&mut self, now: Instant, link: LinkId, grants: Vec<ServiceUrl>) {
        let change = self.core.regrant(now, link, &grants);
        if !change.is_empty() {
            let list = |urls: &[ServiceUrl]| {
                urls.iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            tracing::info!(
                %link,
                added = %list(&change.added),
                removed = %list(&change.removed),
                "receiver's grants changed in the registry"
            );
        }
    }

    fn start(
        &mut self,
        now: Instant,
        client: IpAddr,
        host: String,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Result<Started, Reject> {
        // The route book decides. (A request another gateway forwarded
        // here never comes this way: `Gateway::serve_forwarded` starts it
        // on this gateway's receivers only, so it never travels again.)
        let forwarding = self.forwarding;
        let choice = if forwarding {
            self.core.cluster_choice(&host, &head)
        } else {
            Choice::Local { fallback: false }
        };
        if let Choice::Remote(route) = choice {
            return Ok(self.start_forwarded(now, &host, route, head, body, events));
        }
        // Kept only when another gateway may take the request after the
        // core finds no receiver for it.
        let retry =
            (choice != Choice::Local { fallback: false }).then(|| (head.clone(), body.clone()));
        let result = self.core.start_request_on(
            now,
            Some(client),
            crate::lanes::current(),
            &host,
            head,
            body,
        );
        match (result, retry) {
            // Every local receiver of the route draining: another
            // gateway's may take it.
            (
                Err(reject @ (Reject::NoRoute { .. } | Reject::Draining { .. })),
                Some((head, body)),
            ) => match self.remote_route(&host, &head) {
                Some(route) => Ok(self.start_forwarded(now, &host, route, head, body, events)),
                None => Err(reject),
            },
            (result, _) => result.map(|id| self.started(id, events)),
        }
    }

    /// The most specific route another gateway serves for the request.
    fn remote_route(&self, host: &str, head: &RequestHead) -> Option<ServiceUrl> {
        let path = normalize_path(&head.path).ok()?;
        self.core.route_book()?.remote_route(host, &path).cloned()
    }

    /// Records a request the core started.
    fn started(&mut self, id: RequestId, events: Events) -> Started {
        let link = self.core.request_link(&id);
        let receiver = link
            .and_then(|l| self.core.link_identity(l))
            .map(|i| match i {
                Identity::Anonymous => link.map(|l| l.to_string()).unwrap_or_default(),
                Identity::Did(did) => did.clone(),
            })
            .unwrap_or_default();
        let route = self
            .core
            .request_route(&id)
            .map(ToString::to_string)
            .unwrap_or_default();
        self.requests.insert(id.clone(), events);
        Started {
            id,
            receiver,
            route,
        }
    }

    /// Sends a request to the gateway serving `route`.
    fn start_forwarded(
        &mut self,
        now: Instant,
        host: &str,
        route: ServiceUrl,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Started {
        let id = self.core.start_forwarded(now, host, route, head, body);
        self.requests.insert(id.clone(), events);
        Started {
            id,
            receiver: "another gateway".into(),
            route: anpx_core::CLUSTER_ROUTE.into(),
        }
    }

    fn cancel(&mut self, now: Instant, request: &RequestId) {
        self.requests.remove(request);
        self.uploads.remove(request);
        self.core.cancel(now, request);
    }

    /// The writer of `link` took its full queue: the machine learns it has
    /// room, unless it filled up again meanwhile (then the writer calls
    /// again after its next take).
    fn room_made(&mut self, now: Instant, link: LinkId) {
        let Some(attached) = self.links.get_mut(&link) else {
            return;
        };
        if attached.outbox.is_full() {
            return;
        }
        if std::mem::take(&mut attached.backlogged) {
            // The uploads that waited for room are named by the
            // machine's `Output::Writable`.
            self.core.link_backlog(now, link, false);
        }
    }

    /// Tells the timer task when a call made a deadline earlier than the
    /// one it sleeps until.
    fn rearm_timer(&mut self) {
        let next = self.core.poll_timeout();
        let earlier = match (next, self.timer.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier && !self.timer.kicked {
            self.timer.kicked = true;
            self.wake.extend(self.timer.waker.take());
        }
    }

    fn close_all(&mut self, now: Instant) {
        if !self.links.is_empty() {
            tracing::info!(
                receivers = self.links.len(),
                "closing receiver connections: gateway shutting down"
            );
        }
        for (link, Attached { outbox, .. }) in std::mem::take(&mut self.links) {
            self.wake.extend(outbox.push(LinkOut::Close {
                code: anpx_core::CLOSE_GOING_AWAY,
                reason: "gateway shutting down".into(),
            }));
            outbox.detach();
            self.core.close_link(now, link);
        }
        // The requests on them learn how they ended; then every stream
        // still open ends.
        self.flush();
        self.requests.clear();
        self.uploads.clear();
        self.stopped = true;
        self.wake.extend(self.timer.waker.take());
        self.wake.extend(self.cluster.waker());
    }

    fn flush(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { link, message } => {
                    if let Some(attached) = self.links.get_mut(&link) {
                        self.wake
                            .extend(attached.outbox.push(LinkOut::Send(message)));
                        // While the queue is full, the machine holds every
                        // upload on it (`Gateway::upload_waits`).
                        if attached.outbox.is_full() && !attached.backlogged {
                            attached.backlogged = true;
                            self.core.link_backlog(Instant::now(), link, true);
                        }
                    }
                }
                Output::Response { request, event } => {
                    let terminal = matches!(event, ResponseEvent::End | ResponseEvent::Failed(_));
                    let sent = match self.requests.get(&request).map(|tx| tx.push(event)) {
                        Some(Ok(waker)) => {
                            self.wake.extend(waker);
                            true
                        }
                        _ => false,
                    };
                    if terminal {
                        // An upload still waiting learns the request ended.
                        self.uploads.remove(&request);
                        self.requests.remove(&request);
                        if !sent {
                            // Nobody will take the body passed on before
                            // the end: the core stops counting it.
                            self.core.cancel(Instant::now(), &request);
                        }
                    } else if !sent && self.requests.remove(&request).is_some() {
                        // The client is gone: stop the request.
                        self.uploads.remove(&request);
                        self.core.cancel(Instant::now(), &request);
                    }
                }
                Output::Writable { request } => {
                    if let Some(sent) = self.uploads.remove(&request) {
                        let _ = sent.send(());
                    }
                }
                Output::Cluster(ClusterOutput::Forgotten(node)) => {
                    tracing::warn!(%node, "gateway fell silent; its routes are forgotten");
                }
                Output::Cluster(out) => self.wake.extend(self.cluster.push(out)),
                Output::Publish {
                    request,
                    route,
                    transmit,
                } => self.wake.extend(self.cluster.publish(Publish {
                    request,
                    route,
                    transmit,
                })),
                Output::Answer {
                    request,
                    to,
                    message,
                } => self.wake.extend(self.cluster.answer(Answer {
                    request,
                    to,
                    message,
                })),
                Output::Close {
                    link,
                    code,
                    reason,
                    fault,
                } => {
                    if let Some(Attached { outbox, peer, .. }) = self.links.remove(&link) {
                        // Logged here, once, when the machine decides: the
                        // writer may never get to send the close frame.
                        tracing::warn!(
                            %link,
                            %peer,
                            code,
                            fault = fault.map_or("silent", LinkFault::label),
                            %reason,
                            "closing receiver connection"
                        );
                        // The writer's waker comes back from the push:
                        // detach finds none left to take.
                        self.wake
                            .extend(outbox.push(LinkOut::Close { code, reason }));
                        outbox.detach();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::counting_waker;
    use anpx_core::Features;
    use std::collections::VecDeque;
    use std::task::Context;

    /// A driver with one flow-controlled receiver connection serving
    /// `api.agent.com`, and a streamed request started on it.
    fn uploading() -> (Driver, Arc<Outbox>, LinkId, RequestId, EventRx) {
        let core = Core::new(anpx_core::GatewayConfig::default(), 7);
        let (driver, _timer) = Driver::new(core, |_| std::future::pending());
        let outbox = Arc::new(Outbox::default());
        let features = [
            anpx_core::Feature::Streaming,
            anpx_core::Feature::FlowControl,
        ]
        .into_iter()
        .collect();
        let link = connect(&driver, [192, 0, 2, 9], features, outbox.clone());
        let (tx, rx) = events();
        let start = driver.start(
            IpAddr::from([192, 0, 2, 1]),
            "api.agent.com".into(),
            RequestHead::new("POST", "/up"),
            RequestBody::Streaming,
            tx,
        );
        let started = futures_util::FutureExt::now_or_never(start)
            .expect("started at once")
            .expect("running")
            .expect("routed");
        (driver, outbox, link, started.id, rx)
    }

    /// A receiver from `ip` serving `api.agent.com` with `features`,
    /// through the machine's handshake (open mode). Its slot is dropped:
    /// the place it held in the admissions is not what these tests look at.
    fn connect(driver: &Driver, ip: [u8; 4], features: Features, outbox: Arc<Outbox>) -> LinkId {
        use anpx_core::handshake::{Admitted, Offer};
        let offered = features.to_string();
        let offer = Offer {
            websocket_key: true,
            services: Some(b"api.agent.com"),
            features: Some(offered.as_bytes()),
        };
        let mut slot = driver
            .begin_handshake(ip.into(), &offer)
            .expect("running")
            .expect("a handshake slot");
        let open = Admitted {
            identity: Identity::Anonymous,
            allowed: None,
        };
        let accepted = slot
            .decide(&offer, Ok(open))
            .expect("running")
            .expect("accepted");
        assert_eq!(accepted.features, features, "offered {offered}");
        slot.admit(
            ip.into(),
            accepted.identity,
            accepted.grants,
            accepted.features,
            outbox,
        )
        .expect("running")
    }

    /// Empties the connection's queue as its writer would; true when it
    /// was full.
    fn take_all(outbox: &Outbox) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = VecDeque::new();
        matches!(
            outbox.poll_take(&mut cx, &mut batch),
            Poll::Ready(Taken::Some { was_full: true })
        )
    }

    fn credit(request: &RequestId, increment: u32) -> WsMessage {
        let frame = anpx_core::frame::ExtFrame::WindowUpdate {
            request_id: request.clone(),
            increment,
        };
        WsMessage::Binary(frame.encode())
    }

    #[test]
    fn an_upload_waiting_for_credit_goes_on_when_the_credit_comes() {
        let (driver, outbox, link, id, _rx) = uploading();
        let mut cx = Context::from_waker(Waker::noop());
        let piece = || Bytes::from(vec![1u8; 256 * 1024]);
        // Within the window, with room in the queue: at once.
        for _ in 0..3 {
            let mut send = pin!(driver.send_body(id.clone(), piece(), false));
            assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(true));
            take_all(&outbox);
        }
        // This one fills the window and then some: it waits.
        let mut send =
            pin!(driver.send_body(id.clone(), Bytes::from(vec![1u8; 512 * 1024]), false));
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        take_all(&outbox);
        // Credit for less than what waits: still waiting.
        driver.message(link, credit(&id, 1024)).expect("running");
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        // Credit for all of it: it goes on.
        driver
            .message(link, credit(&id, 256 * 1024))
            .expect("running");
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(true));
    }

    #[test]
    fn an_upload_waiting_for_room_goes_on_when_the_writer_takes_the_queue() {
        let (driver, outbox, link, id, _rx) = uploading();
        let mut cx = Context::from_waker(Waker::noop());
        take_all(&outbox);
        // A whole window, never taken by the writer: the queue is full.
        let mut send =
            pin!(driver.send_body(id.clone(), Bytes::from(vec![1u8; HIGH_WATER]), false));
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        // Another connection's writer: no.
        let other = connect(
            &driver,
            [192, 0, 2, 10],
            Features::default(),
            Arc::new(Outbox::default()),
        );
        driver.writable(other);
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        // Its own, before it took the queue: no.
        driver.writable(link);
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        assert!(take_all(&outbox));
        driver.writable(link);
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(true));
    }

    #[test]
    fn an_upload_waiting_learns_that_its_request_ended() {
        // Waiting for credit.
        let (driver, outbox, _link, id, _rx) = uploading();
        let mut cx = Context::from_waker(Waker::noop());
        take_all(&outbox);
        let mut send =
            pin!(driver.send_body(id.clone(), Bytes::from(vec![1u8; 2 * HIGH_WATER]), false));
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        driver.cancel(id.clone());
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(false));

        // Waiting for room, when the connection goes.
        let (driver, _outbox, link, id, _rx) = uploading();
        let mut send =
            pin!(driver.send_body(id.clone(), Bytes::from(vec![1u8; HIGH_WATER]), false));
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Pending);
        driver.closed(link);
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(false));
    }

    #[test]
    fn a_link_the_machine_closes_wakes_its_writer_with_the_close() {
        let core = Core::new(anpx_core::GatewayConfig::default(), 7);
        let (driver, _timer) = Driver::new(core, |_| std::future::pending());
        let outbox = Arc::new(Outbox::default());
        let link = connect(&driver, [127, 0, 0, 1], Features::default(), outbox.clone());
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        // Whatever admission queued (a greeting) is taken; then it waits.
        while outbox.poll_take(&mut cx, &mut batch).is_ready() {}
        batch.clear();
        driver.fault(link, LinkFault::BadFrame, "garbage".into());
        assert!(count.get() > 0, "the writer was not woken");
        assert!(outbox.poll_take(&mut cx, &mut batch).is_ready());
        assert!(batch.iter().any(|o| matches!(o, LinkOut::Close { .. })));
        assert_eq!(
            outbox.poll_take(&mut cx, &mut batch),
            Poll::Ready(Taken::Ended)
        );
    }

    fn member() -> MembershipConfig {
        MembershipConfig {
            node: "me".into(),
            announce_interval: std::time::Duration::from_secs(1),
            route_ttl: std::time::Duration::from_secs(3),
        }
    }

    #[test]
    fn the_bus_is_told_what_the_machine_decides_and_leaving_hands_over_the_rest() {
        let core = Core::new(anpx_core::GatewayConfig::default(), 7);
        // Due deadlines pass at once, later ones never.
        let (driver, timer) = Driver::new(core, |at| async move {
            if at > Instant::now() {
                std::future::pending::<()>().await;
            }
        });
        driver.join_cluster(member());
        // The first round is due at once: the timer task runs it.
        let mut timer = Box::pin(timer);
        let (_, waker) = counting_waker();
        let _ = timer.as_mut().poll(&mut Context::from_waker(&waker));
        let first = futures_util::FutureExt::now_or_never(driver.cluster_outputs())
            .expect("work waits")
            .expect("running");
        assert_eq!(
            first.membership,
            vec![ClusterOutput::Announce(Announcement::new("me", Vec::new()))]
        );
        assert_eq!(
            driver.leave_cluster().membership,
            vec![ClusterOutput::Announce(Announcement::new("me", Vec::new()))],
            "the withdrawal, handed to the caller"
        );
        assert!(
            futures_util::FutureExt::now_or_never(driver.cluster_outputs()).is_none(),
            "nothing left for the bus task"
        );
        driver.shutdown();
        assert!(matches!(
            futures_util::FutureExt::now_or_never(driver.cluster_outputs()),
            Some(Err(DriverGone))
        ));
    }

    #[test]
    fn a_forwarded_request_is_published_answered_through_its_events_and_in_flight_until_it_ends() {
        use anpx_core::cluster::{Reply, To, WireMessage};
        use futures_util::StreamExt;
        let core = Core::new(anpx_core::GatewayConfig::default(), 7);
        let (driver, _timer) = Driver::new(core, |_| std::future::pending());
        driver.join_cluster(member());
        driver.announcement(Announcement::new(
            "other",
            vec!["api.agent.com".parse().expect("a service URL")],
        ));
        let in_flight = || {
            futures_util::FutureExt::now_or_never(driver.stats())
                .expect("at once")
                .expect("running")
                .in_flight
        };
        assert_eq!(in_flight(), 0);
        let (tx, mut rx) = events();
        let start = driver.start(
            IpAddr::from([192, 0, 2, 1]),
            "api.agent.com".into(),
            RequestHead::new("GET", "/x"),
            RequestBody::Empty,
            tx,
        );
        let started = futures_util::FutureExt::now_or_never(start)
            .expect("started at once")
            .expect("running")
            .expect("forwarded");
        assert_eq!(started.route, anpx_core::CLUSTER_ROUTE);
        assert_eq!(in_flight(), 1);
        let work = futures_util::FutureExt::now_or_never(driver.cluster_outputs())
            .expect("work waits")
            .expect("running");
        let publish = work.publishes.first().expect("the start is published");
        assert_eq!(publish.request, started.id);
        assert_eq!(publish.route.to_string(), "api.agent.com");
        assert_eq!(publish.transmit.to, To::Service);
        assert!(matches!(
            publish.transmit.message,
            WireMessage::Start { .. }
        ));

        // The serving gateway accepts and answers.
        for m in [
            WireMessage::Accepted {
                node: "other".into(),
                inbox: "their-inbox".into(),
            },
            WireMessage::Head(anpx_core::ResponseHead::new(200)),
            WireMessage::Data {
                seq: 0,
                last: true,
                data: Bytes::from_static(b"hi"),
            },
        ] {
            driver.forward_reply(&started.id, Reply::Message(m.encode()));
        }
        let mut got = Vec::new();
        let (_, waker) = counting_waker();
        while let Poll::Ready(Some(e)) = rx.poll_next_unpin(&mut Context::from_waker(&waker)) {
            got.push(e);
        }
        assert_eq!(
            got,
            vec![
                ResponseEvent::Head(anpx_core::ResponseHead::new(200)),
                ResponseEvent::Body(Bytes::from_static(b"hi")),
                ResponseEvent::End,
            ]
        );
        assert_eq!(in_flight(), 0, "ended, so no longer in flight");
    }
}
