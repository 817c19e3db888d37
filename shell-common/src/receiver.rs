//! The receiver's connection to its gateway, whatever the runtime: dialing
//! (the shell supplies the byte stream), the reconnect loop, and one
//! connection's loop between the WebSocket, the state machine and the
//! upstream calls.

use crate::id_map::IdMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use anpx_core::backoff::{Backoff, Failure, Next};
use anpx_core::handshake::{self, FEATURES_HEADER, GRANTED_HEADER};
use anpx_core::upstream_failure::{UpstreamCause, UpstreamFailure};
use anpx_core::{Feature, Features};
use anpx_core::{Receiver as Core, ReceiverOutput, RequestEvent, ResponseBody};
use anpx_core::{RelayPolicy, RelayStep, RequestHead, RequestId, ResponseHead, ResponseRelay};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Stream, StreamExt};

use crate::admin::{ReceiverEnding, ReceiverMonitor, Tracked};
use crate::body::{self, BodySender, BodyStream};
use crate::options::{supported_features, ReceiverOptions, Status};
use crate::signal::{Stop, Watch};
use crate::ws::{HoldBack, Incoming, Role, WsError, WsSocket};

mod replies;

use replies::{Replies, ReplyMsg, ReplyTx};

/// A boxed future of the runtime.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a shell's runtime provides to the shared loops.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<()>);
    /// Runs `task` in the background until it ends or the returned handle
    /// is dropped, which cancels it.
    fn spawn_owned(&self, task: BoxFuture<()>) -> Owned;
    /// Resolves at `at`.
    fn sleep_until(&self, at: Instant) -> BoxFuture<()>;
    /// How many lanes the runtime runs tasks on ([`crate::lanes`]).
    fn lanes(&self) -> u16 {
        1
    }
    /// [`spawn_owned`](Self::spawn_owned) on `lane` (of
    /// [`lanes`](Self::lanes)): the task and whatever it spawns run on that
    /// lane's thread.
    fn spawn_owned_on(&self, lane: crate::lanes::Lane, task: BoxFuture<()>) -> Owned {
        let _ = lane;
        self.spawn_owned(task)
    }
}

/// A task of the runtime's that is cancelled when this is dropped.
pub struct Owned(Box<dyn OwnedTask>);

/// A runtime's task handle that cancels its task when dropped.
pub trait OwnedTask: Send {
    /// Whether the task ended.
    fn is_finished(&self) -> bool;
}

impl Owned {
    /// Wraps a runtime's handle.
    pub fn new(task: impl OwnedTask + 'static) -> Owned {
        Owned(Box::new(task))
    }

    /// Whether the task ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// A byte stream to the gateway, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where to open the byte stream to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or address, IPv6 without brackets.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `wss://`: wrap the stream in TLS.
    pub secure: bool,
}

/// Opens byte streams to the gateway: TCP, and TLS for `wss://`.
pub trait Connector: Send + Sync + 'static {
    /// One stream to `target`, using `tls` (or the system's roots) when secure.
    fn connect(
        &self,
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> BoxFuture<Result<Box<dyn Io>, DialError>>;
}

/// Serves requests: the shell turns them into its HTTP library's types,
/// calls its upstream, and answers through [`Reply`].
pub trait Dispatch: Send + Sync + 'static {
    /// Serves one request. `body` streams in as the gateway sends it.
    fn dispatch(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()>;

    /// Serves a WebSocket upgrade (the connection negotiated `websocket`;
    /// the head keeps `connection: upgrade` and `upgrade: websocket`).
    /// The shell sends it to the service as an HTTP/1.1 upgrade: on `101`
    /// it hands the connection to [`websocket::serve_upstream`](crate::websocket::serve_upstream),
    /// any other answer goes back as an ordinary response. The default,
    /// for upstreams that cannot be upgraded, answers 501.
    fn upgrade(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        drop((head, body));
        let answer =
            serde_json::json!({ "error": "This upstream does not take WebSocket upgrades" });
        let head = ResponseHead::new(501).with_header("content-type", "application/json");
        reply.whole(head, Bytes::from(answer.to_string()));
        Box::pin(async {})
    }
}

/// `upstream` as a shared [`Dispatch`] trait object, whatever the shell's
/// upstream type (a reload swaps one in while the receiver runs).
pub fn dispatcher<U: Dispatch + ?Sized>(upstream: Arc<U>) -> Arc<dyn Dispatch> {
    Arc::new(Shared(upstream))
}

/// An upstream behind an `Arc`, dispatching through it.
struct Shared<U: ?Sized>(Arc<U>);

impl<U: Dispatch + ?Sized> Dispatch for Shared<U> {
    fn dispatch(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        self.0.dispatch(head, body, reply)
    }

    fn upgrade(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        self.0.upgrade(head, body, reply)
    }
}

/// Why dialing failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The gateway URL cannot be used.
    #[error("invalid gateway url: {0}")]
    Url(String),
    /// The credentials could not produce a header.
    #[error("could not build credentials: {0}")]
    Credentials(String),
    /// No TCP connection.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// Host and port.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The gateway answered the handshake with an error status.
    #[error("the gateway refused the connection with {status}: {}", refusal_text(.body))]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its body.
        body: String,
    },
    /// The WebSocket handshake failed otherwise.
    #[error("{0}")]
    WebSocket(#[from] async_tungstenite::tungstenite::Error),
}

impl DialError {
    /// Whether retrying could fix this: a refusal with 401, 403 or 404, an
    /// unusable URL or identity cannot be; being unreachable, TLS, other
    /// statuses and broken handshakes may.
    pub fn failure(&self) -> Failure {
        match self {
            DialError::Url(_) | DialError::Credentials(_) => Failure::Permanent,
            DialError::Refused { status, .. } => Failure::of_handshake_status(*status),
            DialError::Connect { .. } | DialError::Tls(_) | DialError::WebSocket(_) => {
                Failure::Transient
            }
        }
    }
}

/// A refusal's body for a person: a JSON answer's `error` and `reason`,
/// else the text itself, trimmed.
fn refusal_text(body: &str) -> String {
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    match (field("error"), field("reason")) {
        (Some(error), Some(reason)) => format!("{error} ({reason})"),
        (Some(error), None) => error,
        _ if body.trim().is_empty() => "(no body)".to_owned(),
        _ => body.trim().to_owned(),
    }
}

/// An open connection to the gateway.
pub struct Connection {
    /// The WebSocket.
    pub ws: WsSocket<Box<dyn Io>>,
    /// Extensions in use.
    pub features: Features,
    /// What the gateway granted.
    pub granted: Vec<String>,
}

/// Dials the gateway: the stream from `connector`, then the WebSocket
/// handshake with our headers.
pub async fn dial<U: ?Sized>(
    options: &ReceiverOptions<U>,
    connector: &dyn Connector,
) -> Result<Connection, DialError> {
    let mut request = options
        .gateway
        .as_str()
        .into_client_request()
        .map_err(|e| DialError::Url(e.to_string()))?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        other => {
            return Err(DialError::Url(format!(
                "scheme {} is not ws or wss",
                other.unwrap_or("(none)")
            )))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| DialError::Url("no host".into()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let headers = request.headers_mut();
    let header = |v: String| HeaderValue::from_str(&v).map_err(|e| DialError::Url(e.to_string()));
    // A reload's services, once there are any, replace those started with.
    let services = options.live.services();
    let services = services.as_deref().unwrap_or(&options.services);
    for (name, value) in handshake::offer_headers(supported_features(), services) {
        headers.insert(name, header(value)?);
    }
    if let Some(creds) = &options.credentials {
        let value = creds.authorization(&host).map_err(DialError::Credentials)?;
        headers.insert("authorization", header(value)?);
    }
    let target = Target {
        // Brackets of an IPv6 literal are URL syntax, not part of the address.
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        secure,
    };
    let tls = options.live.tls().unwrap_or_else(|| options.tls.clone());
    let stream = connector.connect(target, tls).await?;
    // tungstenite runs the handshake; the frames after it are ours.
    let (ws, response) =
        match async_tungstenite::client_async_with_config(request, HoldBack::new(stream), None)
            .await
        {
            Ok(ok) => ok,
            Err(async_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(DialError::Refused { status, body });
            }
            Err(e) => return Err(e.into()),
        };
    let value = |name: &str| response.headers().get(name).map(|v| v.as_bytes());
    let (features, granted) = handshake::answered(
        supported_features(),
        value(FEATURES_HEADER),
        value(GRANTED_HEADER),
    );
    let (io, read_ahead) = ws.into_inner().into_parts();
    let max_message = options.core.frame_limits.max_frame_len;
    Ok(Connection {
        ws: WsSocket::new(io, Role::Client, max_message, &read_ahead),
        features,
        granted,
    })
}

/// Dials, serves, and redials on the backoff schedule until `stop` fires
/// or the schedule gives up; reports each step on `status`.
///
/// With [`extra_gateways`](ReceiverOptions::extra_gateways), one such loop
/// runs per gateway, each with its own connection and backoff; `status` is
/// then `Connected` while any connection is up (granted services merged),
/// and `Stopped` once every loop stopped.
pub async fn run<U>(
    options: ReceiverOptions<U>,
    runtime: Arc<dyn Runtime>,
    connector: Arc<dyn Connector>,
    stop: Stop,
    status: Watch<Status>,
) where
    U: Dispatch + ?Sized,
{
    if options.extra_gateways.is_empty() {
        return run_one(options, runtime, connector, stop, status).await;
    }
    let urls: Vec<String> = std::iter::once(options.gateway.clone())
        .chain(options.extra_gateways.iter().cloned())
        .collect();
    let watches: Vec<Watch<Status>> = urls
        .iter()
        .map(|_| Watch::new(Status::Connecting))
        .collect();
    let loops = urls.into_iter().zip(&watches).map(|(url, w)| {
        let mut one = options.clone();
        one.gateway = url;
        one.extra_gateways.clear();
        run_one(
            one,
            runtime.clone(),
            connector.clone(),
            stop.clone(),
            w.clone(),
        )
    });
    let all = futures_util::future::join_all(loops);
    let follow = async {
        loop {
            let seen: Vec<u64> = watches.iter().map(|w| w.get_versioned().1).collect();
            status.set(merge_status(watches.iter().map(Watch::get)));
            let changes = watches
                .iter()
                .zip(seen)
                .map(|(w, v)| Box::pin(w.changed(v)));
            futures_util::future::select_all(changes).await;
        }
    };
    futures_util::future::select(std::pin::pin!(all), std::pin::pin!(follow)).await;
    status.set(merge_status(watches.iter().map(Watch::get)));
}

/// One status for several connections: connected if any is, stopped when
/// all are.
fn merge_status(all: impl Iterator<Item = Status>) -> Status {
    let mut granted: Vec<String> = Vec::new();
    let mut features = None;
    let mut stopped = Vec::new();
    let mut connecting = false;
    for s in all {
        match s {
            Status::Connected {
                granted: g,
                features: f,
            } => {
                for url in g {
                    if !granted.contains(&url) {
                        granted.push(url);
                    }
                }
                features.get_or_insert(f);
            }
            Status::Connecting => connecting = true,
            Status::Stopped(why) => stopped.push(why),
        }
    }
    match features {
        Some(features) => Status::Connected { granted, features },
        None if connecting => Status::Connecting,
        None => Status::Stopped(stopped.join("; ")),
    }
}

async fn run_one<U>(
    options: ReceiverOptions<U>,
    runtime: Arc<dyn Runtime>,
    connector: Arc<dyn Connector>,
    stop: Stop,
    status: Watch<Status>,
) where
    U: Dispatch + ?Sized,
{
    let mut backoff = match Backoff::new(options.backoff, fastrand_seed()) {
        Ok(b) => b,
        Err(e) => {
            status.set(Status::Stopped(format!("invalid reconnect settings: {e}")));
            return;
        }
    };
    let monitor = options.monitor.clone();
    // Connections a change of services replaced, still draining: each says
    // here when it closed, so that stopping waits for their requests too.
    let mut retiring: Vec<futures_channel::oneshot::Receiver<()>> = Vec::new();
    loop {
        if stop.get() {
            break;
        }
        status.set(Status::Connecting);
        monitor.connecting(&options.gateway);
        // Read before dialing: a change of services while the dial is under
        // way is then seen as a change once connected.
        let services_seen = options.live.services_versioned().1;
        let (failure, cause) = match dial(&options, connector.as_ref()).await {
            Ok(conn) => {
                backoff.on_connected(Instant::now());
                tracing::info!(
                    gateway = %options.gateway,
                    granted = %conn.granted.join(", "),
                    features = %conn.features,
                    "connected to gateway"
                );
                show_connected(&options, &status, &conn);
                let ended = serve_relinking(
                    (conn, services_seen),
                    &options,
                    &runtime,
                    connector.as_ref(),
                    (&stop, &status),
                    &mut retiring,
                )
                .await;
                backoff.on_disconnected(Instant::now());
                monitor.disconnected(&options.gateway, &ended.reason);
                if !stop.get() {
                    tracing::warn!(gateway = %options.gateway, reason = %ended.reason, "connection to gateway ended");
                }
                (ended.failure, ended.reason)
            }
            Err(e) => {
                monitor.disconnected(&options.gateway, &e.to_string());
                tracing::warn!(gateway = %options.gateway, error = %e, "could not connect to gateway");
                (e.failure(), e.to_string())
            }
        };
        if stop.get() {
            break;
        }
        let delay = match backoff.after(failure) {
            Next::Retry(delay) => delay,
            Next::StopPermanent => {
                status.set(Status::Stopped(format!(
                    "{cause}; retrying cannot fix this, so the receiver stops \
                     (receiver.keep_retrying or --keep-retrying retries anyway)"
                )));
                return;
            }
            Next::GiveUp { attempts } => {
                status.set(Status::Stopped(format!(
                    "gave up after {attempts} reconnect attempts; last error: {cause}"
                )));
                return;
            }
        };
        status.set(Status::Connecting);
        tracing::info!(gateway = %options.gateway, delay_ms = delay.as_millis() as u64, "reconnecting");
        let mut sleep = runtime.sleep_until(Instant::now() + delay);
        let stopped = poll_fn(|cx| {
            if stop.poll_changed(cx, 0).is_ready() {
                return Poll::Ready(true);
            }
            sleep.poll_unpin(cx).map(|()| false)
        })
        .await;
        if stopped {
            break;
        }
    }
    for closed in retiring {
        let _ = closed.await;
    }
    status.set(Status::Stopped("shut down".into()));
}

/// Shows `conn` as the connection now serving: on the admin plane and in
/// the status the embedder watches.
fn show_connected<U: Dispatch + ?Sized>(
    options: &ReceiverOptions<U>,
    status: &Watch<Status>,
    conn: &Connection,
) {
    options
        .monitor
        .connected(&options.gateway, &conn.features.to_string(), &conn.granted);
    status.set(Status::Connected {
        granted: conn.granted.clone(),
        features: conn.features,
    });
}

/// Serves `conn` until it ends, as [`serve`]; when the declared services
/// change (SIGHUP, [`ReceiverLive::set_services`](crate::live::ReceiverLive::set_services)),
/// dials a new connection declaring them while the old one serves on, then
/// has the old one drain in a task of its own (its requests in flight
/// finish; with `drain`, the gateway sends new requests to the new one)
/// and serves the new one. A new connection that cannot be opened leaves
/// the old one serving (a later reconnect declares the new set). `seen` is
/// the version of the services `conn` was dialed with. Returns how the
/// last connection ended.
async fn serve_relinking<U>(
    (mut conn, mut seen): (Connection, u64),
    options: &ReceiverOptions<U>,
    runtime: &Arc<dyn Runtime>,
    connector: &dyn Connector,
    (stop, status): (&Stop, &Watch<Status>),
    retiring: &mut Vec<futures_channel::oneshot::Receiver<()>>,
) -> Ended
where
    U: Dispatch + ?Sized,
{
    retiring.retain_mut(|closed| !matches!(closed.try_recv(), Ok(Some(())) | Err(_)));
    loop {
        let retire = Stop::new(false);
        let mut serving: BoxFuture<Ended> = {
            let (options, runtime, stop, retire) = (
                options.clone(),
                runtime.clone(),
                stop.clone(),
                retire.clone(),
            );
            Box::pin(
                async move { serve_until(conn, &options, runtime.as_ref(), &stop, &retire).await },
            )
        };
        let next = loop {
            let changed = poll_fn(|cx| {
                if let Poll::Ready(ended) = serving.poll_unpin(cx) {
                    return Poll::Ready(Err(ended));
                }
                options.live.poll_services_changed(cx, seen).map(Ok)
            })
            .await;
            if let Err(ended) = changed {
                return ended;
            }
            seen = options.live.services_versioned().1;
            tracing::info!(gateway = %options.gateway, "services changed: opening a new connection that declares them");
            // The old connection serves while the new one is dialed.
            let mut dialing = std::pin::pin!(dial(options, connector));
            let dialed = poll_fn(|cx| {
                if let Poll::Ready(ended) = serving.poll_unpin(cx) {
                    return Poll::Ready(Err(ended));
                }
                dialing.as_mut().poll(cx).map(Ok)
            })
            .await;
            match dialed {
                Err(ended) => return ended,
                Ok(Ok(next)) => break next,
                Ok(Err(e)) => tracing::warn!(
                    gateway = %options.gateway,
                    error = %e,
                    "services not changed: the new connection failed, the running one stays"
                ),
            }
        };
        tracing::info!(
            gateway = %options.gateway,
            granted = %next.granted.join(", "),
            features = %next.features,
            "relinked: the new connection declares the new services, the previous one drains"
        );
        show_connected(options, status, &next);
        retire.set(true);
        let (closed, closed_rx) = futures_channel::oneshot::channel();
        let gateway = options.gateway.clone();
        runtime.spawn(Box::pin(async move {
            let ended = serving.await;
            tracing::info!(%gateway, reason = %ended.reason, "previous connection to gateway closed");
            let _ = closed.send(());
        }));
        retiring.push(closed_rx);
        conn = next;
    }
}

/// The backoff's jitter seed; any varying number will do.
fn fastrand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Where one upstream call sends its response.
pub struct Reply {
    tx: ReplyTx,
    policy: RelayPolicy,
}

impl Reply {
    /// The request could not be served because of `cause`: the gateway
    /// answers 502 with `message`.
    pub fn failed(self, cause: UpstreamCause, message: String) {
        self.tx.put(
            RelayStep::Failed(UpstreamFailure::new(cause, message)),
            None,
        );
    }

    /// The service could not be called, or gave no response: 502 naming
    /// the error and each error under it, with its cause read off the
    /// first I/O error in that chain.
    pub fn upstream_error(self, error: &(dyn std::error::Error + 'static)) {
        let (cause, message) = upstream_cause(error);
        self.failed(cause, format!("Upstream error: {message}"));
    }

    /// The request cannot be put on the wire to the service (a method,
    /// target or header the shell's HTTP client refuses): 400 with
    /// `{"error": message}`, without calling the service.
    pub fn bad_request(self, message: &str) {
        let answer = serde_json::json!({ "error": message }).to_string();
        let head = ResponseHead::new(400).with_header("content-type", "application/json");
        self.whole(head, Bytes::from(answer));
    }

    /// The receiver is draining: 503 with `{"error": ...}` and
    /// `Retry-After: 1`, without calling the service, so a client may try
    /// again (another receiver, or this one restarted).
    fn refuse_draining(self) {
        let answer = serde_json::json!({ "error": "receiver shutting down" }).to_string();
        let head = ResponseHead::new(503)
            .with_header("content-type", "application/json")
            .with_header("retry-after", "1");
        self.whole(head, Bytes::from(answer));
    }

    /// A whole response.
    pub fn whole(self, head: ResponseHead, body: Bytes) {
        let body = ResponseBody::whole(body);
        self.tx.put(RelayStep::Whole { head, body }, None);
    }

    /// Relays an upstream response as the machine's [`RelayPolicy`] says:
    /// hop-by-hop headers dropped, a body of known small size whole,
    /// anything else streamed, and a body that is not as long as
    /// `exact_len` (when known) failed as cut.
    pub async fn relay<N, V, E, B>(
        self,
        status: u16,
        headers: impl IntoIterator<Item = (N, V)>,
        exact_len: Option<u64>,
        body: B,
    ) where
        N: Into<String>,
        V: Into<String>,
        E: std::fmt::Display,
        B: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let relay = self.policy.response(status, headers, exact_len);
        self.follow(relay, body).await
    }

    /// Relays the `101` of a WebSocket upgrade the service accepted, then
    /// what the service sends after it (`body`, to its end) as the response
    /// body ([`ResponseRelay::tunnel`]).
    pub async fn tunnel<E, B>(self, headers: impl IntoIterator<Item = (String, String)>, body: B)
    where
        E: std::fmt::Display,
        B: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        self.follow(ResponseRelay::tunnel(headers), body).await
    }

    /// Reads `body` into `relay` and hands on each step it gives.
    async fn follow<E, B>(self, mut relay: ResponseRelay, mut body: B)
    where
        E: std::fmt::Display,
        B: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let mut step = relay.start();
        loop {
            if let Some(step) = step.take() {
                let last = step.is_last();
                // Each piece is read from the upstream only once the one
                // before it left, so a client that does not read holds the
                // upstream, not our memory.
                let (sent, left) = match step {
                    RelayStep::Piece(_) => {
                        let (tx, rx) = futures_channel::oneshot::channel();
                        (Some(tx), Some(rx))
                    }
                    _ => (None, None),
                };
                if !self.tx.put(step, sent) || last {
                    return;
                }
                if let Some(left) = left {
                    if left.await.is_err() {
                        // The request ended (cancelled, connection lost).
                        return;
                    }
                }
            }
            step = match body.next().await {
                Some(Ok(data)) => relay.piece(data),
                Some(Err(e)) => relay.fail(e),
                None => relay.end(),
            };
            if step.is_none() && relay.is_finished() {
                return;
            }
        }
    }
}

struct InFlight {
    upload: Option<BodySender>,
    task: AbortHandle,
}

enum Event {
    Ws(Option<Result<Incoming, WsError>>),
    Reply(ReplyMsg),
    Timeout,
    Stop,
    /// The drain's grace period is over.
    DrainEnd,
    /// Nothing else is ready (or [`BATCH_EVENTS`] were handled): what the
    /// events since the last write left in the WebSocket goes out.
    Flush,
}

/// Events handled one after another before what they wrote to the gateway
/// is flushed. Under load several replies are ready at once; flushed
/// together they go out in one `send` instead of one each, and the
/// gateway reads them in one read. The bound keeps a long run of ready
/// events from holding back what the first ones wrote.
const BATCH_EVENTS: usize = 32;

/// How a connection ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Why, for a person.
    pub reason: String,
    /// What it means for reconnecting.
    pub failure: Failure,
}

/// Serves until the connection ends; returns how it ended. `stop` drains
/// and closes it (see `receiver.drain_grace_secs`).
pub async fn serve<U>(
    conn: Connection,
    options: &ReceiverOptions<U>,
    runtime: &dyn Runtime,
    stop: &Stop,
) -> Ended
where
    U: Dispatch + ?Sized,
{
    serve_until(conn, options, runtime, stop, &Stop::new(false)).await
}

/// [`serve`], also drained and closed by `retire` (a newer connection took
/// its place).
async fn serve_until<U>(
    conn: Connection,
    options: &ReceiverOptions<U>,
    runtime: &dyn Runtime,
    stop: &Stop,
    retire: &Stop,
) -> Ended
where
    U: Dispatch + ?Sized,
{
    let mut core = Core::new(options.core.clone(), conn.features, Instant::now());
    let mut ws = conn.ws;
    // One slot per request the core has in flight (it caps them,
    // `max_in_flight`): a head or a failure, one body step (a relay waits
    // for its piece to be sent before it reads the next) and a count of
    // upload bytes read.
    let replies = Replies::new(options.core.max_in_flight);
    let policy = core.relay_policy();
    let uploads = body::Budget::new(core.upload_budget());
    let mut in_flight: IdMap<RequestId, InFlight> = IdMap::default();
    let monitor = options.monitor.as_ref();
    // What the admin plane follows of each request, from its head to its end.
    let mut tracked: IdMap<RequestId, Tracked> = IdMap::default();
    // Relays told to wait for the gateway's credit, released by the core's
    // `ReceiverOutput::Writable` or dropped (which stops the relay) when
    // their request is aborted. At most one per request in flight.
    let mut unsent: IdMap<RequestId, futures_channel::oneshot::Sender<()>> = IdMap::default();
    // The upstream calls run here, polled by this loop, not as tasks of
    // their own: a reply then reaches the core without waking another
    // task, and a call costs no spawn.
    let mut calls: FuturesUnordered<Abortable<BoxFuture<()>>> = FuturesUnordered::new();
    // The core's next deadline and its sleep, kept while the deadline
    // stays the same instead of a new sleep for every event.
    let mut timer: Option<(Instant, BoxFuture<()>)> = None;
    // Once stopped with requests in flight: the end of the grace period.
    // New requests are refused meanwhile; the connection closes when the
    // last one finishes or the period ends.
    let mut draining: Option<BoxFuture<()>> = None;
    // With `drain`: the gateway was told, and requests it routed before it
    // knew are served until its answer.
    let mut announced = false;
    // Events handled since the WebSocket was last flushed.
    let mut unflushed = 0usize;

    let reason = loop {
        match core.poll_timeout() {
            None => timer = None,
            Some(at) if timer.as_ref().is_some_and(|(t, _)| *t == at) => {}
            Some(at) => timer = Some((at, runtime.sleep_until(at))),
        }
        let event = poll_fn(|cx| {
            if unflushed >= BATCH_EVENTS {
                return Poll::Ready(Event::Flush);
            }
            match draining.as_mut() {
                None => {
                    if stop.poll_changed(cx, 0).is_ready() || retire.poll_changed(cx, 0).is_ready()
                    {
                        return Poll::Ready(Event::Stop);
                    }
                }
                Some(end) => {
                    if end.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Event::DrainEnd);
                    }
                }
            }
            // Calls first: what they reply is then read below, in the same
            // turn. `Ready(None)` means none is left.
            while let Poll::Ready(Some(_)) = calls.poll_next_unpin(cx) {}
            if let Poll::Ready(r) = replies.poll_next(cx) {
                crate::spin::worked();
                return Poll::Ready(Event::Reply(r));
            }
            if let Poll::Ready(m) = ws.poll_next(cx) {
                return Poll::Ready(Event::Ws(m));
            }
            if let Some((_, t)) = timer.as_mut() {
                if t.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Event::Timeout);
                }
            }
            if unflushed > 0 {
                return Poll::Ready(Event::Flush);
            }
            Poll::Pending
        })
        .await;
        let flush = matches!(event, Event::Flush);
        let now = Instant::now();
        match event {
            Event::Ws(Some(Ok(Incoming::Close(frame)))) => {
                core.handle_close(now);
                let Some(frame) = frame else {
                    break transient("the gateway closed the connection without a code".into());
                };
                let code = frame.code;
                let why = if frame.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", frame.reason)
                };
                break Ended {
                    reason: format!("the gateway closed the connection with {code}{why}"),
                    failure: Failure::of_close_code(code),
                };
            }
            Event::Ws(Some(Ok(Incoming::Message(m)))) => core.handle_message(now, m),
            Event::Ws(Some(Err(e))) => {
                core.handle_close(now);
                break transient(format!("connection error: {e}"));
            }
            Event::Ws(None) => {
                core.handle_close(now);
                break transient("connection closed".into());
            }
            Event::Reply(reply) => apply_reply(
                &mut core,
                &mut in_flight,
                &mut unsent,
                (monitor, &mut tracked),
                (&replies, reply),
            ),
            Event::Timeout => {
                timer = None;
                core.handle_timeout(now);
            }
            Event::Stop
                if !options.drain_grace.is_zero()
                    && (!in_flight.is_empty() || core.features().contains(Feature::Drain)) =>
            {
                announced = core.start_drain(now);
                if announced {
                    tracing::info!(
                        gateway = %options.gateway,
                        in_flight = in_flight.len(),
                        grace_secs = options.drain_grace.as_secs(),
                        "draining: the gateway routes new requests to other receivers, \
                         requests in flight may finish"
                    );
                } else {
                    tracing::info!(
                        gateway = %options.gateway,
                        in_flight = in_flight.len(),
                        grace_secs = options.drain_grace.as_secs(),
                        "draining: requests in flight may finish, new ones are refused with 503"
                    );
                }
                draining = Some(runtime.sleep_until(now + options.drain_grace));
            }
            Event::DrainEnd => {
                tracing::warn!(
                    gateway = %options.gateway,
                    in_flight = in_flight.len(),
                    "drain grace period over: closing with requests still in flight"
                );
                core.handle_close(now);
                let _ = ws.close(1001, "receiver shutting down").await;
                break transient("shut down".into());
            }
            Event::Stop => {
                core.handle_close(now);
                let _ = ws.close(1001, "receiver shutting down").await;
                break transient("shut down".into());
            }
            Event::Flush => {}
        }
        let mut closing = None;
        while let Some(out) = core.poll_output() {
            match out {
                ReceiverOutput::Transmit(m) => {
                    ws.feed(m);
                    if ws.write_due() && ws.flush().await.is_err() {
                        closing.get_or_insert_with(|| "write to gateway failed".to_owned());
                    }
                }
                ReceiverOutput::Event(RequestEvent::Head { request, .. })
                    if draining.is_some() && (!announced || core.drain_acknowledged()) =>
                {
                    // Refused with 503 (a request the gateway routed before
                    // it heard of the drain is served instead). Held until
                    // its 503 is sent, so the drain does not close the
                    // connection under it.
                    if let Some(tx) = open_reply(&replies, &mut core, &request) {
                        let (task, _) = AbortHandle::new_pair();
                        in_flight.insert(request, InFlight { upload: None, task });
                        Reply { tx, policy }.refuse_draining();
                    }
                }
                ReceiverOutput::Writable { request } => {
                    if let Some(sent) = unsent.remove(&request) {
                        let _ = sent.send(());
                    }
                }
                ReceiverOutput::Event(event) => {
                    let reply = match &event {
                        RequestEvent::Head { request, .. } => {
                            match open_reply(&replies, &mut core, request) {
                                Some(tx) => Some(tx),
                                None => continue,
                            }
                        }
                        RequestEvent::Aborted { request, .. } => {
                            unsent.remove(request);
                            replies.close(request);
                            None
                        }
                        RequestEvent::Body { .. } | RequestEvent::End { .. } => None,
                    };
                    track(monitor, &options.gateway, &mut tracked, &event);
                    let new_calls = Calls {
                        upstream: options.upstream.as_ref(),
                        replaced: options.live.upstream(),
                        runtime,
                        replies: &replies,
                        policy,
                        websocket: anpx_core::passthrough::carries(core.features()),
                        uploads: &uploads,
                    };
                    new_calls.on_event((event, reply), &mut in_flight, &calls);
                }
                ReceiverOutput::Close { code, reason } => {
                    let _ = ws.close(code, &reason).await;
                    closing = Some(reason);
                }
            }
        }
        // Written out once nothing else is ready (the next event is then
        // `Flush`), or at once when the connection is closing.
        if flush || closing.is_some() {
            unflushed = 0;
            if ws.flush().await.is_err() {
                closing.get_or_insert_with(|| "write to gateway failed".to_owned());
            }
        } else {
            unflushed += 1;
        }
        if let Some(reason) = closing {
            core.handle_close(Instant::now());
            break transient(reason);
        }
        if draining.is_some() && in_flight.is_empty() && (!announced || core.drain_acknowledged()) {
            tracing::info!(gateway = %options.gateway, "drained: every request in flight finished");
            core.handle_close(Instant::now());
            let _ = ws.close(1001, "receiver shutting down").await;
            break transient("shut down".into());
        }
    };
    // Everything still running belongs to a connection that is gone.
    for (_, t) in tracked.drain() {
        monitor.ended(t, ReceiverEnding::ConnectionLost, Some(&reason.reason));
    }
    for (_, f) in in_flight.drain() {
        f.task.abort();
        if let Some(u) = f.upload {
            u.abort("connection to the gateway lost");
        }
    }
    reason
}

/// The reply slot of a request the core just started. The core starts no
/// more requests than there are slots, so there is always one; should
/// there be none, the request fails at once instead of waiting for a reply
/// that has nowhere to go.
fn open_reply(replies: &Replies, core: &mut Core, request: &RequestId) -> Option<ReplyTx> {
    match replies.open(request, |r| core.unsent(r).is_some()) {
        Ok(tx) => Some(tx),
        Err(e) => {
            tracing::error!(%request, error = %e, "no reply slot: the request fails");
            let failure =
                UpstreamFailure::new(UpstreamCause::Failed, format!("receiver error: {e}"));
            let _ = core.respond_upstream_failure(Instant::now(), request, &failure);
            None
        }
    }
}

fn transient(reason: String) -> Ended {
    Ended {
        reason,
        failure: Failure::Transient,
    }
}

/// Follows a request event from the gateway for the admin plane.
fn track(
    monitor: &ReceiverMonitor,
    gateway: &str,
    tracked: &mut IdMap<RequestId, Tracked>,
    event: &RequestEvent,
) {
    match event {
        RequestEvent::Head { request, head } => {
            let t = monitor.request(gateway, request.as_str(), head);
            tracked.insert(request.clone(), t);
        }
        RequestEvent::Body { request, data } => {
            if let Some(t) = tracked.get_mut(request) {
                t.request_piece(monitor, data);
            }
        }
        RequestEvent::End { .. } => {}
        RequestEvent::Aborted { request, reason } => {
            if let Some(t) = tracked.remove(request) {
                monitor.ended(t, ReceiverEnding::Cancelled, Some(reason));
            }
        }
    }
}

/// What the admin plane needs of a reply, kept before the reply moves
/// into the core.
enum Seen {
    Head {
        status: u16,
        /// The head itself, only when the inspector keeps it.
        head: Option<ResponseHead>,
        /// The whole body, or `None` when it streams.
        whole: Option<Bytes>,
    },
    Body {
        data: Bytes,
        last: bool,
    },
    Failed(String),
}

impl Seen {
    fn of(reply: &ReplyMsg, capturing: bool) -> Option<Seen> {
        let ReplyMsg::Step { step, .. } = reply else {
            return None;
        };
        let head = |head: &ResponseHead, whole| Seen::Head {
            status: head.status,
            head: capturing.then(|| head.clone()),
            whole,
        };
        Some(match step {
            RelayStep::Whole { head: h, body } => head(
                h,
                Some(match body {
                    ResponseBody::Full(b) => b.clone(),
                    ResponseBody::Empty | ResponseBody::Streaming => Bytes::new(),
                }),
            ),
            RelayStep::Head(h) => head(h, None),
            RelayStep::Piece(data) => Seen::Body {
                data: data.clone(),
                last: false,
            },
            RelayStep::End => Seen::Body {
                data: Bytes::new(),
                last: true,
            },
            RelayStep::Failed(f) => Seen::Failed(f.message.clone()),
        })
    }
}

/// Follows a reply for the admin plane: `result` says whether the core
/// took it.
fn track_reply<E: std::fmt::Display>(
    monitor: &ReceiverMonitor,
    tracked: &mut IdMap<RequestId, Tracked>,
    request: &RequestId,
    seen: Seen,
    result: &Result<(), E>,
) {
    if let Err(e) = result {
        if let Some(t) = tracked.remove(request) {
            monitor.ended(t, ReceiverEnding::Cancelled, Some(&e.to_string()));
        }
        return;
    }
    let Some(t) = tracked.get_mut(request) else {
        return;
    };
    let done = match seen {
        Seen::Head {
            status,
            head,
            whole,
        } => {
            t.head(status, head.as_ref());
            if let Some(b) = &whole {
                t.response_piece(monitor, b);
            }
            whole.is_some()
        }
        Seen::Body { data, last } => {
            t.response_piece(monitor, &data);
            last
        }
        Seen::Failed(message) => {
            if let Some(t) = tracked.remove(request) {
                monitor.ended(t, ReceiverEnding::UpstreamFailed, Some(&message));
            }
            return;
        }
    };
    if done {
        if let Some(t) = tracked.remove(request) {
            monitor.ended(t, ReceiverEnding::Completed, None);
        }
    }
}

fn apply_reply(
    core: &mut Core,
    in_flight: &mut IdMap<RequestId, InFlight>,
    unsent: &mut IdMap<RequestId, futures_channel::oneshot::Sender<()>>,
    (monitor, tracked): (&ReceiverMonitor, &mut IdMap<RequestId, Tracked>),
    (replies, reply): (&Replies, ReplyMsg),
) {
    let now = Instant::now();
    let seen = Seen::of(&reply, monitor.inspector().enabled());
    let (request, result) = match reply {
        ReplyMsg::Read { request, bytes } => {
            core.request_body_read(now, &request, bytes);
            return;
        }
        ReplyMsg::Step {
            request,
            step,
            sent,
        } => {
            match &step {
                // A whole response ends the request here: no `last` body
                // follows to clear its entry, which would otherwise hold
                // the upload channel (and anything buffered in it) until
                // the connection closes.
                RelayStep::Whole { .. } | RelayStep::End => {
                    in_flight.remove(&request);
                }
                RelayStep::Failed(failure) => {
                    let (cause, message) = (failure.cause, &failure.message);
                    tracing::warn!(%request, %cause, %message, "upstream failed");
                    in_flight.remove(&request);
                }
                RelayStep::Head(_) | RelayStep::Piece(_) => {}
            }
            let r = core.respond_step(now, &request, step);
            if let Some(sent) = sent {
                match core.unsent(&request) {
                    // Sent on at once: the relay reads the next piece.
                    Some(0) => {
                        let _ = sent.send(());
                    }
                    // Waits for the core's `Writable`.
                    Some(_) => {
                        unsent.insert(request.clone(), sent);
                    }
                    // Ended: dropping `sent` stops the relay.
                    None => {}
                }
            }
            (request, r)
        }
    };
    if let Some(seen) = seen {
        track_reply(monitor, tracked, &request, seen, &result);
    }
    if let Err(e) = result {
        // The request was aborted meanwhile, or the response could not be
        // sent: stop the upstream work for it.
        tracing::debug!(%request, error = %e, "response dropped");
        if let Some(f) = in_flight.remove(&request) {
            f.task.abort();
        }
        replies.close(&request);
    }
}

struct Calls<'a, U: ?Sized> {
    upstream: &'a U,
    /// The upstream a reload put in place of `upstream`, if any.
    replaced: Option<Arc<dyn Dispatch>>,
    runtime: &'a dyn Runtime,
    replies: &'a Replies,
    policy: RelayPolicy,
    /// The connection carries WebSockets: upgrade requests are upgraded.
    websocket: bool,
    /// Request body bytes held for the services and not yet read by them,
    /// every request of the connection together, up to the machine's
    /// `upload_budget`.
    uploads: &'a body::Budget,
}

/// The most of the request bodies held unread for the services on one
/// gateway connection without `flow-control`, each piece counted with
/// [`body::PIECE_OVERHEAD`]: the machine's
/// [`anpx_core::Receiver::upload_budget`] decides, this is its figure.
pub const UNREAD_UPLOAD_LIMIT: u64 = anpx_core::DEFAULT_MAX_UNREAD_UPLOAD;

impl<U: Dispatch + ?Sized> Calls<'_, U> {
    /// Serves `event`; `reply` is the slot opened for a `Head`.
    fn on_event(
        &self,
        (event, reply): (RequestEvent, Option<ReplyTx>),
        in_flight: &mut IdMap<RequestId, InFlight>,
        calls: &FuturesUnordered<Abortable<BoxFuture<()>>>,
    ) {
        match event {
            RequestEvent::Head { request, head } => {
                let Some(tx) = reply else {
                    return;
                };
                let length = head
                    .headers
                    .get("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let reads = tx.clone();
                let (upload, body) =
                    body::channel_reporting(length, self.uploads.clone(), move |bytes| {
                        reads.read(bytes)
                    });
                let reply = Reply {
                    tx,
                    policy: self.policy,
                };
                let (task, abort) = AbortHandle::new_pair();
                if self.websocket && anpx_core::passthrough::is_upgrade(&head) {
                    // A WebSocket lives as long as its connection and
                    // carries bytes both ways: a task of its own.
                    let call = match &self.replaced {
                        Some(u) => u.upgrade(head, body, reply),
                        None => self.upstream.upgrade(head, body, reply),
                    };
                    self.runtime
                        .spawn(Box::pin(Abortable::new(call, abort).map(|_| ())));
                } else {
                    let call = match &self.replaced {
                        Some(u) => u.dispatch(head, body, reply),
                        None => self.upstream.dispatch(head, body, reply),
                    };
                    calls.push(Abortable::new(call, abort));
                }
                in_flight.insert(
                    request,
                    InFlight {
                        upload: Some(upload),
                        task,
                    },
                );
            }
            RequestEvent::Body { request, data } => {
                let Some(flight) = in_flight.get_mut(&request) else {
                    return;
                };
                let Some(upload) = flight.upload.as_mut() else {
                    return;
                };
                if let Err(e @ (body::Unsent::OverLimit { .. } | body::Unsent::Full)) =
                    upload.send(data)
                {
                    // A gateway without flow control sends a body as fast
                    // as it likes: held unread past the limit, the upload
                    // is cut and the request fails with the reason. The
                    // call is stopped too: an HTTP client blocked on a
                    // service that reads nothing would never see the cut.
                    let message = format!(
                        "request body cut: {e} (the service reads it slower than the gateway sends it)"
                    );
                    if let Some(u) = flight.upload.take() {
                        u.abort(message.clone());
                    }
                    flight.task.abort();
                    self.replies.cut(&request, UpstreamCause::Failed, message);
                }
            }
            RequestEvent::End { request } => {
                if let Some(upload) = in_flight.get_mut(&request).and_then(|f| f.upload.take()) {
                    upload.finish();
                }
            }
            RequestEvent::Aborted { request, reason } => {
                if let Some(f) = in_flight.remove(&request) {
                    if let Some(u) = f.upload {
                        u.abort(reason);
                    }
                    f.task.abort();
                }
            }
        }
    }
}

/// The upstream request line and headers for a head from the gateway:
/// method, request-target, and the end-to-end headers.
pub fn upstream_request_parts(head: &RequestHead) -> (String, Vec<(&str, &str)>) {
    let headers = head
        .headers
        .iter()
        .filter(|(n, _)| !anpx_core::forward::is_hop_by_hop(n))
        .collect();
    (anpx_core::forward::upstream_target(head), headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_the_client_refuses_is_answered_400_with_the_reason() {
        let replies = Replies::new(1);
        let reply = Reply {
            tx: replies.open(&RequestId::from("r1"), |_| true).unwrap(),
            policy: RelayPolicy::new(1024),
        };
        reply.bad_request("Bad request from gateway: invalid header name");
        let waker = futures_util::task::noop_waker_ref();
        let Poll::Ready(ReplyMsg::Step {
            request,
            step: RelayStep::Whole { head, body },
            ..
        }) = replies.poll_next(&mut std::task::Context::from_waker(waker))
        else {
            panic!("a whole response is sent");
        };
        assert_eq!(request, RequestId::from("r1"));
        assert_eq!(head.status, 400);
        assert_eq!(head.headers.get("content-type"), Some("application/json"));
        let ResponseBody::Full(body) = body else {
            panic!("the reason is in the body");
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["error"],
            "Bad request from gateway: invalid header name"
        );
    }

    fn connected(granted: &[&str]) -> Status {
        Status::Connected {
            granted: granted.iter().map(|s| s.to_string()).collect(),
            features: supported_features(),
        }
    }

    #[test]
    fn several_connections_report_as_one() {
        // Any connection up: connected, grants merged without repeats.
        assert_eq!(
            merge_status(
                [
                    connected(&["a.test"]),
                    Status::Connecting,
                    connected(&["a.test", "b.test"])
                ]
                .into_iter()
            ),
            connected(&["a.test", "b.test"])
        );
        // None up, one still trying: connecting.
        assert_eq!(
            merge_status([Status::Stopped("x".into()), Status::Connecting].into_iter()),
            Status::Connecting
        );
        // All stopped: stopped, with every reason.
        assert_eq!(
            merge_status([Status::Stopped("a".into()), Status::Stopped("b".into())].into_iter()),
            Status::Stopped("a; b".into())
        );
    }
}

/// The cause and the words of an upstream error: its message and each
/// source's after it (`client error (Connect): tcp connect error:
/// Connection refused`), the cause from the first I/O error among them.
fn upstream_cause(error: &(dyn std::error::Error + 'static)) -> (UpstreamCause, String) {
    let mut cause = None;
    let mut message = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        // Wrappers often repeat their source's words.
        if !message.ends_with(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        if cause.is_none() {
            cause = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| UpstreamCause::of_io(io.kind()));
        }
        next = e.source();
    }
    (cause.unwrap_or(UpstreamCause::Failed), message)
}

#[cfg(test)]
mod upstream_cause_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn the_cause_is_read_off_the_chain() {
        let e = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        let (cause, message) = upstream_cause(&e);
        assert_eq!(cause, UpstreamCause::Unreachable);
        assert_eq!(message, "client error (Connect): Connection refused");
        let other = std::fmt::Error;
        assert_eq!(upstream_cause(&other).0, UpstreamCause::Failed);
    }
}
