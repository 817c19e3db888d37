//! The task that owns the gateway state machine. Everything else talks to
//! it through [`Driver`], so the core needs no locks. The shell spawns the
//! task's future on its runtime and supplies the sleep.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use anpx_core::cluster::Choice;
use anpx_core::Features;
use anpx_core::ServiceUrl;
use anpx_core::WsMessage;
use anpx_core::{
    Gateway as Core, GatewayStats, Identity, LinkFault, LinkId, Output, Reject, RequestBody,
    ResponseEvent,
};
use anpx_core::{RequestHead, RequestId};
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::future::{select, Either};
use futures_util::StreamExt;

use crate::remote::{Remote, RemoteRequest};

/// What a receiver connection's writer is asked to do.
#[derive(Debug)]
pub enum LinkOut {
    /// Send this message.
    Send(WsMessage),
    /// Send a close frame and stop.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Why.
        reason: String,
    },
}

/// The sending end of a receiver connection's queue.
pub type Outbox = mpsc::UnboundedSender<LinkOut>;
/// The sending end of one public request's response events.
pub type Events = mpsc::UnboundedSender<ResponseEvent>;

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

enum Command {
    Admit {
        identity: Identity,
        grants: Vec<ServiceUrl>,
        features: Features,
        outbox: Outbox,
        reply: oneshot::Sender<LinkId>,
    },
    Message {
        link: LinkId,
        message: WsMessage,
    },
    Closed {
        link: LinkId,
    },
    Arriving {
        link: LinkId,
        bytes: u64,
    },
    Regrant {
        link: LinkId,
        grants: Vec<ServiceUrl>,
    },
    Fault {
        link: LinkId,
        fault: LinkFault,
        detail: String,
    },
    Start {
        client: Option<IpAddr>,
        host: String,
        head: RequestHead,
        body: RequestBody,
        events: Events,
        /// Whether the request may go to another gateway (false for one
        /// that another gateway forwarded here).
        may_forward: bool,
        reply: oneshot::Sender<Result<Started, Reject>>,
    },
    SetRemote {
        remote: Arc<dyn Remote>,
    },
    Body {
        request: RequestId,
        data: Bytes,
        last: bool,
    },
    SendBody {
        request: RequestId,
        data: Bytes,
        last: bool,
        sent: oneshot::Sender<()>,
    },
    Read {
        request: RequestId,
        bytes: usize,
    },
    Cancel {
        request: RequestId,
    },
    Stats {
        reply: oneshot::Sender<GatewayStats>,
    },
    Shutdown,
}

/// The gateway task stopped (the gateway is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the gateway is shutting down")]
pub struct DriverGone;

/// A cheap handle to the gateway task.
#[derive(Clone)]
pub struct Driver {
    tx: mpsc::UnboundedSender<Command>,
}

impl Driver {
    /// A handle and the task to spawn. `sleep(at)` must resolve at `at`.
    pub fn new<S, F>(core: Core, sleep: S) -> (Driver, impl Future<Output = ()> + Send + 'static)
    where
        S: Fn(Instant) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded();
        (Driver { tx }, run(core, rx, sleep))
    }

    /// Registers an admitted receiver connection.
    pub async fn admit(
        &self,
        identity: Identity,
        grants: Vec<ServiceUrl>,
        features: Features,
        outbox: Outbox,
    ) -> Result<LinkId, DriverGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Admit {
            identity,
            grants,
            features,
            outbox,
            reply,
        })?;
        rx.await.map_err(|_| DriverGone)
    }

    /// A message from a receiver connection.
    pub fn message(&self, link: LinkId, message: WsMessage) -> Result<(), DriverGone> {
        self.send(Command::Message { link, message })
    }

    /// `bytes` of a WebSocket message from `link` are read and not yet a
    /// whole message.
    pub fn arriving(&self, link: LinkId, bytes: u64) {
        let _ = self.send(Command::Arriving { link, bytes });
    }

    /// A receiver connection ended.
    pub fn closed(&self, link: LinkId) {
        let _ = self.send(Command::Closed { link });
    }

    /// Replaces what receiver connection `link` serves (the registry
    /// changed while it stayed connected); in-flight requests finish.
    pub fn regrant(&self, link: LinkId, grants: Vec<ServiceUrl>) {
        let _ = self.send(Command::Regrant { link, grants });
    }

    /// The connection broke the protocol below the frames (a message over
    /// the size limit, invalid WebSocket framing).
    pub fn fault(&self, link: LinkId, fault: LinkFault, detail: String) {
        let _ = self.send(Command::Fault {
            link,
            fault,
            detail,
        });
    }

    /// Routes a public request from the client address `client`; its
    /// response comes on `events`. With a [`Remote`] set, a request this
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
        self.start_with(Some(client), host, head, body, events, true)
            .await
    }

    /// Routes a request another gateway forwarded here: to this gateway's
    /// own receivers only, so a request never travels twice.
    pub async fn start_local(
        &self,
        host: String,
        head: RequestHead,
        body: RequestBody,
        events: Events,
    ) -> Result<Result<Started, Reject>, DriverGone> {
        self.start_with(None, host, head, body, events, false).await
    }

    async fn start_with(
        &self,
        client: Option<IpAddr>,
        host: String,
        head: RequestHead,
        body: RequestBody,
        events: Events,
        may_forward: bool,
    ) -> Result<Result<Started, Reject>, DriverGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Start {
            client,
            host,
            head,
            body,
            events,
            may_forward,
            reply,
        })?;
        rx.await.map_err(|_| DriverGone)
    }

    /// Lets requests go to other gateways through `remote` from now on.
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.send(Command::SetRemote { remote });
    }

    /// A piece of a streamed request body.
    pub fn body(&self, request: RequestId, data: Bytes, last: bool) {
        let _ = self.send(Command::Body {
            request,
            data,
            last,
        });
    }

    /// A piece of a streamed request body, resolving once the gateway sent
    /// it to the receiver (with `flow-control`, once the receiver's credit
    /// covered it), so a shell that awaits it before reading more of the
    /// client's body holds at most a window of it. False when the request
    /// is no longer in flight: stop reading the body.
    pub async fn send_body(&self, request: RequestId, data: Bytes, last: bool) -> bool {
        let (sent, rx) = oneshot::channel();
        if self
            .send(Command::SendBody {
                request,
                data,
                last,
                sent,
            })
            .is_err()
        {
            return false;
        }
        rx.await.is_ok()
    }

    /// `bytes` of a response body went to the public client: reopens the
    /// receiver's window for it (`flow-control`).
    pub fn read(&self, request: RequestId, bytes: usize) {
        let _ = self.send(Command::Read { request, bytes });
    }

    /// The client went away.
    pub fn cancel(&self, request: RequestId) {
        let _ = self.send(Command::Cancel { request });
    }

    /// A snapshot of the state.
    pub async fn stats(&self) -> Result<GatewayStats, DriverGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { reply })?;
        rx.await.map_err(|_| DriverGone)
    }

    /// Closes every receiver connection and stops the task.
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }

    fn send(&self, cmd: Command) -> Result<(), DriverGone> {
        self.tx.unbounded_send(cmd).map_err(|_| DriverGone)
    }
}

struct State {
    core: Core,
    links: HashMap<LinkId, Outbox>,
    requests: HashMap<RequestId, Events>,
    remote: Option<Arc<dyn Remote>>,
    /// Requests at other gateways whose body is still being streamed (the
    /// only ones that still need commands from here).
    remotes: HashMap<RequestId, Remoted>,
    /// Uploads waiting for the receiver's credit, told when it came.
    credit_waits: HashMap<RequestId, oneshot::Sender<()>>,
}

/// A request served by another gateway, as the gateway task tracks it.
struct Remoted {
    request: Box<dyn RemoteRequest>,
    /// Its body is still being streamed.
    uploading: bool,
}

async fn run<S, F>(core: Core, mut rx: mpsc::UnboundedReceiver<Command>, sleep: S)
where
    S: Fn(Instant) -> F,
    F: Future<Output = ()>,
{
    let mut st = State {
        core,
        links: HashMap::new(),
        requests: HashMap::new(),
        remote: None,
        credit_waits: HashMap::new(),
        remotes: HashMap::new(),
    };
    loop {
        let wake = st.core.poll_timeout();
        let timer = async {
            match wake {
                Some(at) => sleep(at).await,
                None => std::future::pending().await,
            }
        };
        match select(rx.next(), pin!(timer)).await {
            Either::Left((None, _)) => return,
            Either::Left((Some(Command::Shutdown), _)) => return st.close_all(),
            Either::Left((Some(cmd), _)) => {
                st.apply(cmd);
                // Take whatever else is already queued before flushing, so a
                // burst of commands costs one pass over the outputs.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(Command::Shutdown) => return st.close_all(),
                        Ok(cmd) => st.apply(cmd),
                        Err(_) => break,
                    }
                }
            }
            Either::Right(((), _)) => st.core.handle_timeout(Instant::now()),
        }
        st.flush();
        st.release_credit_waits();
    }
}

impl State {
    fn apply(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Admit {
                identity,
                grants,
                features,
                outbox,
                reply,
            } => {
                let link = self.core.admit(now, identity, grants, features);
                self.links.insert(link, outbox);
                if reply.send(link).is_err() {
                    self.links.remove(&link);
                    self.core.close_link(now, link);
                }
            }
            Command::Message { link, message } => {
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
            Command::Regrant { link, grants } => {
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
            Command::Closed { link } => {
                self.links.remove(&link);
                self.core.close_link(now, link);
            }
            Command::Arriving { link, bytes } => self.core.message_arriving(now, link, bytes),
            Command::Fault {
                link,
                fault,
                detail,
            } => self.core.link_fault(now, link, fault, &detail),
            Command::Start {
                client,
                host,
                head,
                body,
                events,
                may_forward,
                reply,
            } => {
                // The route book decides; a request another gateway
                // forwarded here never travels again.
                let remote = self.remote.clone().filter(|_| may_forward);
                let choice = remote
                    .as_ref()
                    .map_or(Choice::Local { fallback: false }, |r| {
                        r.choose(&host, &head)
                    });
                if let (Choice::Remote(_), Some(remote)) = (&choice, &remote) {
                    if let Some(started) =
                        self.start_remote(remote, &host, head.clone(), body.clone(), &events)
                    {
                        let _ = reply.send(Ok(started));
                        return;
                    }
                }
                // Kept only when another gateway may take the request after
                // the core finds no receiver for it.
                let retry = remote
                    .filter(|_| choice != Choice::Local { fallback: false })
                    .map(|r| (r, head.clone(), body.clone()));
                let result = self.core.start_request_from(now, client, &host, head, body);
                let result = match (result, retry) {
                    // Every local receiver of the route draining: another
                    // gateway's may take it.
                    (
                        Err(reject @ (Reject::NoRoute { .. } | Reject::Draining { .. })),
                        Some((remote, head, body)),
                    ) => self
                        .start_remote(&remote, &host, head, body, &events)
                        .ok_or(reject),
                    (result, _) => result.map(|id| self.started(id, events)),
                };
                match result {
                    Ok(started) => {
                        if reply.send(Ok(started.clone())).is_err() {
                            self.cancel(&started.id);
                        }
                    }
                    Err(reject) => {
                        let _ = reply.send(Err(reject));
                    }
                }
            }
            Command::SetRemote { remote } => self.remote = Some(remote),
            Command::Body {
                request,
                data,
                last,
            } if self.remote_uploading(&request) => {
                if let Some(r) = self.remotes.get_mut(&request) {
                    r.request.body(data, last, None);
                    r.uploading = !last;
                }
            }
            Command::Body {
                request,
                data,
                last,
            } => {
                // A body for a request that already ended is dropped: the
                // client was already answered.
                let _ = self.core.push_body(now, &request, data, last);
            }
            Command::SendBody {
                request,
                data,
                last,
                sent,
            } if self.remote_uploading(&request) => {
                // Another gateway's request: the cluster link paces it;
                // `sent` is told once the forwarding machine took the piece.
                if let Some(r) = self.remotes.get_mut(&request) {
                    r.request.body(data, last, Some(sent));
                    r.uploading = !last;
                }
            }
            Command::SendBody {
                request,
                data,
                last,
                sent,
            } => {
                if self.core.push_body(now, &request, data, last).is_ok() {
                    // Dropping `sent` tells the pump the request is gone.
                    self.credit_waits.insert(request, sent);
                }
            }
            Command::Read { request, bytes } => match self.remotes.get_mut(&request) {
                Some(r) => r.request.read(bytes),
                None => self.core.body_read(now, &request, bytes),
            },
            Command::Cancel { request } => self.cancel(&request),
            Command::Stats { reply } => {
                // Also the time to let go of remote requests that ended.
                self.remotes.retain(|_, r| !r.request.is_finished());
                let mut stats = self.core.stats(now);
                stats.in_flight += self.remote.as_ref().map_or(0, |r| r.in_flight());
                let _ = reply.send(stats);
            }
            Command::Shutdown => {}
        }
    }

    /// Whether `request` is another gateway's whose body still streams.
    fn remote_uploading(&self, request: &RequestId) -> bool {
        self.remotes.get(request).is_some_and(|r| r.uploading)
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

    /// Hands a request to another gateway; `None` when none serves it.
    fn start_remote(
        &mut self,
        remote: &Arc<dyn Remote>,
        host: &str,
        head: RequestHead,
        body: RequestBody,
        events: &Events,
    ) -> Option<Started> {
        let streaming = body.is_streaming();
        let (id, request) = remote.start(host, head, body, events.clone())?;
        // Remote requests that ended (nothing else removes one the client
        // did not cancel) go as new ones come, and at each stats call.
        self.remotes.retain(|_, r| !r.request.is_finished());
        self.remotes.insert(
            id.clone(),
            Remoted {
                request,
                uploading: streaming,
            },
        );
        Some(Started {
            id,
            receiver: "another gateway".into(),
            route: "cluster".into(),
        })
    }

    fn cancel(&mut self, request: &RequestId) {
        if let Some(r) = self.remotes.remove(request) {
            r.request.cancel();
            return;
        }
        self.requests.remove(request);
        self.core.cancel(Instant::now(), request);
    }

    /// Tells each waiting upload whose body the gateway has sent on; drops
    /// the ones whose request ended.
    fn release_credit_waits(&mut self) {
        let core = &self.core;
        let mut done = Vec::new();
        for id in self.credit_waits.keys() {
            match core.upload_queued(id) {
                Some(0) => done.push((id.clone(), true)),
                Some(_) => {}
                None => done.push((id.clone(), false)),
            }
        }
        for (id, in_flight) in done {
            if let Some(tx) = self.credit_waits.remove(&id) {
                if in_flight {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn close_all(mut self) {
        let now = Instant::now();
        for (link, tx) in self.links.drain() {
            let _ = tx.unbounded_send(LinkOut::Close {
                code: anpx_core::CLOSE_GOING_AWAY,
                reason: "gateway shutting down".into(),
            });
            self.core.close_link(now, link);
        }
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { link, message } => {
                    if let Some(tx) = self.links.get(&link) {
                        let _ = tx.unbounded_send(LinkOut::Send(message));
                    }
                }
                Output::Response { request, event } => {
                    let terminal = matches!(event, ResponseEvent::End | ResponseEvent::Failed(_));
                    let sent = self
                        .requests
                        .get(&request)
                        .is_some_and(|tx| tx.unbounded_send(event).is_ok());
                    if terminal {
                        self.requests.remove(&request);
                        if !sent {
                            // Nobody will take the body passed on before
                            // the end: the core stops counting it.
                            self.core.cancel(Instant::now(), &request);
                        }
                    } else if !sent && self.requests.remove(&request).is_some() {
                        // The client is gone: stop the request.
                        self.core.cancel(Instant::now(), &request);
                    }
                }
                Output::Close { link, code, reason } => {
                    if let Some(tx) = self.links.remove(&link) {
                        let _ = tx.unbounded_send(LinkOut::Close { code, reason });
                    }
                }
            }
        }
    }
}
