//! The gateway's HTTP side as data: which endpoint a request goes to, the
//! answers of `/health`, `/stats`, `/metrics`, the receiver handshake, and
//! a proxied request from its head to its response events. A shell maps
//! [`Answer`]s and [`ResponseStream`]s to its HTTP library's types.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anpx_core::edge::{BodyPlan, EdgeRefusal};
use anpx_core::forward::{self, ClientInfo};
use anpx_core::handshake::{self, Offer, FEATURES_HEADER, SERVICES_HEADER};
use anpx_core::passthrough;
use anpx_core::policy::{Decoration, PublicHead, Screen};
use anpx_core::upstream_failure::UpstreamFailure;
use anpx_core::Ending;
use anpx_core::Features;
use anpx_core::{Failure, FailureKind, RequestBody, ResponseEvent};
use anpx_core::{RequestId, ResponseHead};
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use bytes::Bytes;
use futures_util::future::{select, Either};
use futures_util::{FutureExt, Stream, StreamExt};

use crate::admission::Admission;
use crate::driver::{Driver, DriverGone, ReceiverSlot};
use crate::edge::{refusal_answer, Edge, UploadCut, UploadLimit};
use crate::link::{self, AdmittedLink};
use crate::receiver::Runtime;

/// A complete answer the gateway gives by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// An answer with a content type.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Answer {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.into(),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: &'static str) -> Self {
        Answer::new(status, "text/plain; charset=utf-8", body)
    }

    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Answer::new(status, "application/json", value.to_string())
    }

    /// The reference's JSON answer for a failed request.
    pub fn failure(f: &Failure) -> Self {
        Answer::new(f.status, "application/json", f.body_json())
    }
}

/// The reason label of a request refused because the gateway is
/// shutting down.
const SHUTTING_DOWN: &str = "shutting_down";

/// Who a request the gateway answered itself came from, what route it
/// matched and why it was refused: its log line and counters.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// The request's method (empty when its head did not parse).
    pub method: &'a str,
    /// The request's path (empty when its head did not parse).
    pub path: &'a str,
    /// The granted service URL that matched; empty when none did.
    pub route: &'a str,
    /// The label in `anpx_requests_refused_total{reason}`; `None` for an
    /// answer that is no refusal (a CORS preflight, a late client).
    pub reason: Option<&'static str>,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public port: proxying, the health path, `/ws`.
    Public,
    /// The separate receiver port: WebSocket at any path.
    Receivers,
    /// The admin plane: `/metrics`, `/stats`, `/health`, the dashboard
    /// and its API; never proxied.
    Admin,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A receiver's WebSocket handshake.
    Upgrade,
    /// A plain request on the receivers' port.
    NotAWebSocket,
    /// `GET` of the public health path.
    Health,
    /// Anything on the admin listener ([`Shared::admin`]).
    Admin,
    /// Through the tunnel.
    Proxy,
}

impl Endpoint {
    /// Routes a request by listener, upgrade, method and path;
    /// `health_path` is the one path the public listener answers itself.
    pub fn of(
        listener: Listener,
        is_websocket: bool,
        method: &str,
        path: &str,
        health_path: Option<&str>,
    ) -> Endpoint {
        match (listener, is_websocket, method, path) {
            (Listener::Admin, _, _, _) => Endpoint::Admin,
            (Listener::Receivers, true, _, _) | (Listener::Public, true, _, "/ws") => {
                Endpoint::Upgrade
            }
            (Listener::Receivers, false, _, _) => Endpoint::NotAWebSocket,
            (Listener::Public, false, "GET" | "HEAD", p) if Some(p) == health_path => {
                Endpoint::Health
            }
            _ => Endpoint::Proxy,
        }
    }
}

/// True for a WebSocket handshake request.
pub fn is_websocket_upgrade(method: &str, headers: &http::HeaderMap) -> bool {
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    method == "GET"
        && has_token(http::header::UPGRADE, "websocket")
        && has_token(http::header::CONNECTION, "upgrade")
        && headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// A receiver past its handshake checks and admitted to the gateway machine:
/// what the shell answers, serves, and holds while the connection lasts.
pub struct AdmittedReceiver {
    /// The `101 Switching Protocols` answer, headers included.
    pub answer: Answer,
    /// The admitted link, to serve once the WebSocket is up.
    pub link: AdmittedLink,
    /// The connection's place in the per-address limit; drop it when the
    /// connection ends.
    pub slot: ReceiverSlot,
}

/// How long a gateway shutting down waits for its receiver connections to
/// close: a receiver's answer to the close frame may take up to a second.
pub const RECEIVER_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What every connection handler shares.
pub struct Shared {
    /// The gateway machine and its lock.
    pub driver: Driver,
    /// The public edge's limits, reporting its refusals to the machine.
    pub edge: Arc<Edge>,
    /// Who may connect as a receiver.
    pub admission: Arc<dyn Admission>,
    /// Extensions this gateway implements.
    pub features: Features,
    /// Bodies up to this size are read whole before the request starts.
    pub chunk_size: usize,
    /// How long such a body may take to arrive (`gateway.upload_timeout_secs`):
    /// past it the client gets [`Failure::upload_timed_out`].
    pub upload_timeout: std::time::Duration,
    /// The largest WebSocket message accepted.
    pub max_frame_len: usize,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The path the public listener answers itself (`gateway.health_path`).
    pub health_path: Option<String>,
    /// What the admin plane's inspector keeps of recent requests.
    pub inspector: Arc<crate::admin::Inspector>,
    /// The cluster, for the dashboard, once the gateway joined one.
    pub cluster_view: std::sync::OnceLock<Arc<dyn crate::admin::ClusterView>>,
    /// Set on shutdown: new requests get 503.
    pub draining: AtomicBool,
    /// The binary serving it (`anpx`, `anpx-smol`): `anpx_build_info{shell}`.
    pub shell: &'static str,
    /// What SIGHUP may change: how often a connected receiver's grants
    /// are read again from the registry (`gateway.registry.refresh_secs`).
    pub live: Arc<crate::live::GatewayLive>,
    /// Caller authentication on the routes that require it.
    caller_auth: Option<Arc<crate::caller_auth::CallerAuth>>,
    /// The header a verified caller's DID is forwarded in, and that no
    /// caller may send.
    caller_did_header: String,
    /// Whether the gateway machine screens requests with middlewares:
    /// when all are off, a plain tunnel takes no lock for them.
    screening: bool,
}

impl Shared {
    /// The shared state of a gateway driven by `driver`.
    pub fn new(
        driver: Driver,
        options: &crate::options::GatewayOptions,
        scheme: &'static str,
        shell: &'static str,
    ) -> Self {
        Shared {
            shell,
            edge: Arc::new(Edge::new(options.edge, driver.clone())),
            driver,
            admission: options.admission.clone(),
            features: crate::options::supported_features(),
            chunk_size: options.core.chunk_size,
            upload_timeout: options.core.upload_timeout,
            max_frame_len: options.core.max_message_len(),
            scheme,
            health_path: options.health_path.clone(),
            inspector: crate::admin::Inspector::new(options.inspector.clone()),
            cluster_view: std::sync::OnceLock::new(),
            draining: AtomicBool::new(false),
            live: options.live.clone(),
            caller_auth: options.caller_auth.clone(),
            caller_did_header: match &options.caller_auth {
                Some(c) => c.did_header().to_owned(),
                None => options.caller_did_header.clone(),
            },
            screening: options.policy.enabled(),
        }
    }

    /// The middlewares' verdict on a public request, before it is routed:
    /// `Err` is the gateway's own answer (429, 403, a CORS preflight's
    /// 204), `Ok` the headers to add to the response once forwarded (see
    /// [`decorate`]).
    pub fn screen(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        authority: Option<&str>,
        peer: IpAddr,
    ) -> Result<Vec<Decoration>, Answer> {
        if !self.screening {
            return Ok(Vec::new());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let head = PublicHead {
            method,
            path,
            query,
            host: forward::routing_host(header("host"), authority),
            origin: header("origin"),
            request_method: header("access-control-request-method"),
            request_headers: header("access-control-request-headers"),
            ip: peer,
        };
        let screen = match self.driver.screen(&head) {
            Ok(screen) => screen,
            // Shutting down: routing refuses it next, with the reason.
            Err(DriverGone) => return Ok(Vec::new()),
        };
        match screen {
            Screen::Forward(decorations) => Ok(decorations),
            Screen::Refuse(r) => {
                // A CORS preflight answered here is served, not refused.
                let ending = if r.status < 400 {
                    Ending::Completed
                } else {
                    Ending::Refused
                };
                let refused = (ending == Ending::Refused).then(|| r.reason.label());
                self.answered_itself(
                    Answered {
                        peer: Some(peer),
                        method,
                        path,
                        route: "",
                        reason: refused,
                    },
                    ending,
                    r.status,
                    refused,
                    Instant::now(),
                );
                let mut headers = Vec::with_capacity(r.headers.len() + 1);
                if !r.body.is_empty() {
                    headers.push(("content-type", "application/json".to_owned()));
                }
                headers.extend(r.headers);
                Err(Answer {
                    status: r.status,
                    headers,
                    body: r.body.into(),
                })
            }
        }
    }

    /// Ends a public request the gateway answered without routing it (a
    /// limit, a bad host, the middlewares, shutting down): its one log
    /// line and count, like every routed request's.
    pub fn answered_itself(
        &self,
        who: Answered<'_>,
        ending: Ending,
        status: u16,
        error: Option<&str>,
        started_at: Instant,
    ) {
        crate::endings::report(
            &self.driver,
            ending,
            crate::endings::EndLine {
                request: "".into(),
                client: who.peer,
                route: who.route.to_owned(),
                method: who.method.into(),
                path: who.path.into(),
                status,
                duration: started_at.elapsed(),
                receiver: "".into(),
                error: error.map(Into::into),
                bytes_in: 0,
                bytes_out: 0,
            },
            who.reason,
        );
    }

    /// How a public request's body goes ([`BodyPlan::of`] with this
    /// gateway's limits and chunk size), given the length its head
    /// declared. `Err` is a declared length over the limit: counted,
    /// logged as refused, and answered 413 before a byte is read.
    pub fn body_plan(
        &self,
        declared: Option<u64>,
        upgrade: bool,
        request: (SocketAddr, &str, &str),
        started_at: Instant,
    ) -> Result<BodyPlan, Answer> {
        let limits = &self.edge.limits;
        BodyPlan::of(declared, upgrade, self.chunk_size, limits).map_err(|refusal| {
            self.driver.edge_refused(refusal);
            let why = format!("{refusal}: {} bytes declared", declared.unwrap_or_default());
            let f = Failure::new(FailureKind::Refused, 413, why);
            let (peer, method, path) = request;
            self.refused(peer, Some(refusal.label()), method, path, &f, started_at);
            refusal_answer(refusal, Some(limits.max_body_bytes))
        })
    }

    /// [`answered_itself`](Self::answered_itself) for a `failure` the
    /// gateway gave the client at `peer`; `reason` labels a refusal (a
    /// client that left or was late is none).
    pub fn refused(
        &self,
        peer: SocketAddr,
        reason: Option<&'static str>,
        method: &str,
        path: &str,
        failure: &Failure,
        started_at: Instant,
    ) {
        let error = Some(failure.error.as_str());
        self.answered_itself(
            Answered {
                peer: Some(peer.ip()),
                method,
                path,
                route: "",
                reason,
            },
            failure.ending(),
            failure.status,
            error,
            started_at,
        );
    }

    /// The edge ended a connection while reading a request head: counted
    /// by reason (`anpx_edge_refused_total`), and, when the client got an
    /// answer (431, 400), as a refused request with its line. A head that
    /// never came (`head_timeout`, also an idle kept-alive connection) was
    /// no request.
    pub fn head_refused(&self, refusal: EdgeRefusal, peer: SocketAddr) {
        self.driver.edge_refused(refusal);
        if let Some(status) = refusal.status() {
            let reason = refusal.to_string();
            self.answered_itself(
                Answered {
                    peer: Some(peer.ip()),
                    method: "",
                    path: "",
                    route: "",
                    reason: Some(refusal.label()),
                },
                Ending::Refused,
                status,
                Some(&reason),
                Instant::now(),
            );
        }
    }

    /// Waits, at most `grace`, for the requests in flight to finish;
    /// `runtime` times the pauses between looks.
    pub async fn wait_in_flight(&self, grace: Duration, runtime: &dyn Runtime) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.driver.stats().await {
                Ok(s) if s.in_flight > 0 => {
                    runtime
                        .sleep_until(Instant::now() + Duration::from_millis(50))
                        .await
                }
                _ => break,
            }
        }
    }

    /// After the gateway machine told every receiver connection to close,
    /// waits (at most `limit`) for them to send their close frames: a
    /// process that exits first leaves the receivers a reset connection
    /// instead of 1001 "going away", and they would not know to come back
    /// at once.
    pub async fn wait_receivers_closed(&self, limit: Duration, runtime: &dyn Runtime) {
        let deadline = Instant::now() + limit;
        while self.driver.receivers_open() && Instant::now() < deadline {
            runtime
                .sleep_until(Instant::now() + Duration::from_millis(10))
                .await;
        }
    }

    /// `GET /health`.
    pub fn health(&self) -> Answer {
        let status = if self.draining.load(Ordering::Relaxed) {
            "draining"
        } else {
            "ok"
        };
        Answer::json(200, &serde_json::json!({ "status": status }))
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Answer {
        match self.driver.stats().await {
            Ok(s) => Answer::new(
                200,
                "application/json",
                serde_json::to_string_pretty(&s).unwrap_or_default(),
            ),
            Err(e) => Answer::failure(&e.failure()),
        }
    }

    /// `GET /metrics`: the machine's snapshot (its counters, handshakes,
    /// what the edge refused, how requests ended, caller authentication),
    /// then the process's.
    pub async fn metrics(&self) -> Answer {
        let stats = match self.driver.stats().await {
            Ok(s) => s,
            Err(e) => return Answer::failure(&e.failure()),
        };
        let mut text = stats.to_prometheus();
        text.push_str(&crate::process_metrics::prometheus(self.shell));
        Answer::new(200, "text/plain; version=0.0.4", text)
    }

    /// A receiver's way in, from its upgrade request to its admission.
    /// The decisions are the gateway machine's (its
    /// [`anpx_core::handshake::Admissions`]): a handshake slot first, so a
    /// flood of handshakes is turned away before it costs anything, then,
    /// once the [`Admission`] check (which may fetch a DID document) said
    /// who the receiver is, the grants and features. The machine then
    /// admits the link, so the receiver's routes are live before its 101
    /// goes out. `Err` is the answer to send instead of 101.
    pub async fn admit_receiver(
        &self,
        headers: &http::HeaderMap,
        peer: IpAddr,
    ) -> Result<AdmittedReceiver, Answer> {
        let gone = |e: DriverGone| Answer::failure(&e.failure());
        let offer = Offer {
            websocket_key: headers.contains_key(http::header::SEC_WEBSOCKET_KEY),
            services: headers.get(SERVICES_HEADER).map(|v| v.as_bytes()),
            features: headers.get(FEATURES_HEADER).map(|v| v.as_bytes()),
        };
        let mut slot = self
            .driver
            .begin_handshake(peer, &offer)
            .map_err(gone)?
            // The machine counted a slot refused as the edge's refusal.
            .map_err(|refusal| handshake_refusal(peer, &refusal))?;
        let service = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
            .unwrap_or_default();
        let auth = self.admission.check(headers, &service, &self.driver).await;
        let accepted = slot
            .decide(&offer, auth)
            .map_err(gone)?
            .map_err(|refusal| handshake_refusal(peer, &refusal))?;
        let key = headers
            .get(http::header::SEC_WEBSOCKET_KEY)
            .map_or(&[][..], |k| k.as_bytes());
        let mut answer = Answer {
            status: 101,
            headers: vec![
                ("upgrade", "websocket".to_owned()),
                ("connection", "Upgrade".to_owned()),
                ("sec-websocket-accept", derive_accept_key(key)),
            ],
            body: Bytes::new(),
        };
        answer.headers.extend(accepted.headers());
        let follow = link::FollowGrants {
            admission: self.admission.clone(),
            identity: accepted.identity.clone(),
            declared: accepted.declared,
            granted: accepted.grants.clone(),
            live: self.live.clone(),
        };
        let link = link::admit(
            &mut slot,
            peer,
            accepted.identity,
            accepted.grants,
            accepted.features,
            follow,
        )
        .map_err(gone)?;
        Ok(AdmittedReceiver { answer, link, slot })
    }

    /// Starts proxying a public request: builds the head the receiver gets
    /// and routes it. `body` says how the request body comes; with
    /// [`RequestBody::Streaming`] the shell then feeds [`Pending::id`]
    /// through [`Driver::body`] while it waits for [`Pending::response`].
    pub async fn proxy(
        &self,
        request: PublicRequest<'_>,
        body: RequestBody,
    ) -> Result<Pending, Answer> {
        self.proxy_capturing(request, body, None)
            .await
            .map(|(pending, _)| pending)
            .map_err(|(answer, _)| answer)
    }

    /// [`proxy`](Self::proxy), also saying which inspector entry records
    /// the request (when capture is on); `replay_of` marks a replay.
    pub(crate) async fn proxy_capturing(
        &self,
        request: PublicRequest<'_>,
        body: RequestBody,
        replay_of: Option<u64>,
    ) -> Result<(Pending, Option<u64>), (Answer, Option<u64>)> {
        crate::spin::worked();
        let started_at = Instant::now();
        if self.draining.load(Ordering::Relaxed) {
            let f = Failure::new(FailureKind::Refused, 503, "Gateway is shutting down");
            let (peer, why) = (request.peer, Some(SHUTTING_DOWN));
            self.refused(peer, why, request.method, request.path, &f, started_at);
            return Err((Answer::failure(&f), None));
        }
        let hosts: Vec<&str> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.as_str())
            .collect();
        let http10 = request.version == http::Version::HTTP_10;
        let host = match forward::request_host(&hosts, request.authority.as_deref(), http10) {
            Ok(h) => h,
            Err(e) => {
                self.driver.edge_refused(EdgeRefusal::Malformed);
                let f = Failure::new(FailureKind::Refused, 400, format!("Bad host: {e}"));
                let (peer, why) = (request.peer, Some(EdgeRefusal::Malformed.label()));
                self.refused(peer, why, request.method, request.path, &f, started_at);
                return Err((Answer::failure(&f), None));
            }
        };
        let caller = match &self.caller_auth {
            None => None,
            Some(auth) => {
                let authorization: Vec<&str> = request
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.as_str())
                    .collect();
                auth.check(
                    &self.driver,
                    &host,
                    request.path,
                    &authorization,
                    request.peer.ip(),
                )
                .await
                .map_err(|answer| (answer, None))?
            }
        };
        let keep_underscores = self.edge.limits.keep_underscore_headers;
        let capture = self.inspector.arrive(crate::admin::Arrival {
            client: Some(request.peer),
            local: Some(request.local),
            method: request.method,
            host: &host,
            path: request.path,
            query: request.query,
            headers: &request.headers,
            body: match &body {
                RequestBody::Full(b) => Some(b),
                RequestBody::Empty => Some(&EMPTY),
                RequestBody::Streaming | RequestBody::Sized(_) => None,
            },
            replay_of,
        });
        let entry = capture.as_ref().map(|c| c.id());
        let mut headers = request.headers;
        // The host routed by is the host the receiver sees (HTTP/2 carries
        // it in :authority, an absolute-form target in the request line).
        headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("host") && (keep_underscores || !forward::has_underscore(n))
        });
        if !host.is_empty() {
            headers.insert(0, ("host".into(), host.clone()));
        }
        // The agent trusts this header to be the gateway's: whatever a
        // caller sent under its name is dropped on every route.
        anpx_core::auth::forward_did(
            &mut headers,
            &self.caller_did_header,
            caller.as_ref().map(|c| c.did.as_str()),
        );
        let client = ClientInfo {
            ip: request.peer.ip(),
            scheme: self.scheme,
            local_port: request.local.port(),
        };
        // Looked at before the headers move into the head, which drops the
        // connection headers this depends on.
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let upgrade = passthrough::is_upgrade_request(request.method, pairs);
        let mut head = forward::request_head(
            request.method,
            request.path,
            request.query,
            headers,
            &client,
        );
        if upgrade {
            // The one request whose connection headers travel: the
            // receiver replays it as an upgrade (and the core sends it only
            // to a receiver that can).
            passthrough::mark_upgrade(&mut head.headers);
        }
        let sent = capture.as_ref().map(|_| head.clone());
        let received = Arc::new(AtomicU64::new(match &body {
            RequestBody::Full(b) => b.len() as u64,
            _ => 0,
        }));
        let (events_tx, events) = crate::driver::events();
        let started = match self
            .driver
            .start(request.peer.ip(), host, head, body, events_tx)
            .await
        {
            Err(e) => {
                let f = e.failure();
                let (peer, why) = (request.peer, Some(SHUTTING_DOWN));
                self.refused(peer, why, request.method, request.path, &f, started_at);
                if let Some(c) = capture {
                    c.end(f.status, "refused", Some(&f.error));
                }
                return Err((Answer::failure(&f), entry));
            }
            Ok(Err(reject)) => {
                let f = reject.failure();
                let who = Answered {
                    peer: Some(request.peer.ip()),
                    method: request.method,
                    path: request.path,
                    route: reject.route().unwrap_or(""),
                    reason: Some(reject.label()),
                };
                let error = Some(f.error.as_str());
                self.answered_itself(who, f.ending(), f.status, error, started_at);
                if let Some(c) = capture {
                    c.end(f.status, "refused", Some(&f.error));
                }
                return Err((Answer::failure(&f), entry));
            }
            Ok(Ok(s)) => s,
        };
        if let (Some(c), Some(head)) = (&capture, sent) {
            c.started(started.id.as_str(), &started.receiver, head);
        }
        let pending = Pending {
            id: started.id.clone(),
            events,
            guard: Guard {
                driver: self.driver.clone(),
                id: Some(started.id),
                method: request.method.to_owned(),
                path: request.path.to_owned(),
                receiver: started.receiver,
                client: request.peer.ip(),
                route: started.route,
                started_at,
                status: None,
                error: None,
                capture,
                declared_len: None,
                sent: 0,
                received,
                issued: caller.and_then(|c| c.token),
                upstream: None,
            },
        };
        Ok((pending, entry))
    }
}

/// The body of a request without one, for the inspector.
static EMPTY: Bytes = Bytes::new();

/// The answer to a refused receiver handshake, as the core decided it,
/// after its one log line naming the peer, the status and the reason.
fn handshake_refusal(peer: IpAddr, refusal: &handshake::Refusal) -> Answer {
    tracing::warn!(
        %peer,
        status = refusal.status(),
        reason = refusal.label(),
        error = %refusal,
        "receiver handshake refused"
    );
    Answer::new(refusal.status(), refusal.content_type(), refusal.body())
}

/// Which of the middlewares' headers to set on a response, given whether
/// it `contains` a header already: those that replace the service's, and
/// those it left out.
pub fn decorate(
    decorations: &[Decoration],
    contains: impl Fn(&str) -> bool,
) -> Vec<(&'static str, &str)> {
    decorations
        .iter()
        .filter(|d| d.replace || !contains(d.name))
        .map(|d| (d.name, d.value.as_str()))
        .collect()
}

/// A request's headers as the name and value pairs of
/// [`PublicRequest::headers`], in order; a value that is not UTF-8 is
/// carried lossily.
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                crate::header_text::header_text(v.as_bytes()),
            )
        })
        .collect()
}

/// How an upload fed by [`pump_upload`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadEnd {
    /// The whole body went to the receiver.
    Done,
    /// The client's body failed (reset, bad chunk); the request is cancelled.
    Failed,
    /// The body crossed the limit; the request is cancelled and the
    /// [`UploadCut`] fired.
    OverLimit,
    /// The request ended first (answered, cancelled, gateway stopping).
    Gone,
}

/// Feeds a streamed request body to the receiver of request `id`, held to
/// the body limit by `limit`.
pub async fn pump_upload<S, E>(
    mut body: S,
    driver: Driver,
    id: RequestId,
    mut limit: UploadLimit,
) -> UploadEnd
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(piece) = body.next().await {
        match piece {
            Ok(data) => {
                if !limit.add(data.len(), &id) {
                    driver.cancel(id);
                    return UploadEnd::OverLimit;
                }
                if !data.is_empty() && !driver.send_body(id.clone(), data, false).await {
                    return UploadEnd::Gone;
                }
            }
            Err(e) => {
                tracing::debug!(request = %id, error = %e, "client upload failed");
                driver.cancel(id);
                return UploadEnd::Failed;
            }
        }
    }
    driver.send_body(id, Bytes::new(), true).await;
    UploadEnd::Done
}

/// A routed request waiting for its response.
pub struct Pending {
    id: RequestId,
    events: crate::driver::EventRx,
    guard: Guard,
}

impl Pending {
    /// The request, for feeding a streamed body.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// A streamed request `body`, counted for the request's log line and
    /// the inspector as it is read; wrap what goes to [`pump_upload`] in
    /// it.
    pub fn meter<S>(&self, body: S) -> crate::admin::Metered<S> {
        let mut counters = vec![self.guard.received.clone()];
        counters.extend(self.guard.capture.as_ref().map(|c| c.uploaded()));
        crate::admin::Metered::new(body, counters)
    }

    /// Waits for the response head: the head and body stream, or the
    /// failure to answer with.
    pub async fn response(self) -> Result<(ResponseHead, ResponseStream), Answer> {
        let Pending {
            mut events, guard, ..
        } = self;
        let first = events.next().await;
        head_or_failure(first, events, guard)
    }

    /// Like [`response`](Self::response), unless `cut` resolves first (the
    /// shell gave up on the request, say its body crossed a limit): then
    /// `None`, and the request ends as `failure` says.
    pub async fn response_unless<F>(
        self,
        mut cut: F,
        failure: Failure,
    ) -> Option<Result<(ResponseHead, ResponseStream), Answer>>
    where
        F: Future<Output = ()> + Unpin,
    {
        let Pending {
            mut events,
            mut guard,
            ..
        } = self;
        // The cut is looked at first, and once more when the events end:
        // a shell that cuts a request cancels it too, which ends them.
        let first = match select(&mut cut, events.next()).await {
            Either::Left(((), _)) => None,
            Either::Right((event, _)) => Some(event),
        };
        let first = match first {
            Some(None) if (&mut cut).now_or_never().is_some() => None,
            other => other,
        };
        let Some(first) = first else {
            guard.fail(&failure);
            return None;
        };
        Some(head_or_failure(first, events, guard))
    }

    /// Like [`response`](Self::response), for a request whose body is held
    /// to `max_body_bytes` by `cut` (see [`Edge::upload_limit`]): the 413
    /// refusal when the body crossed the limit before the head came, else
    /// a body stream that is cut short if it crosses the limit later.
    pub async fn response_within(
        self,
        mut cut: UploadCut,
        max_body_bytes: u64,
    ) -> Result<(ResponseHead, ResponseStream), Answer> {
        const OVER: &str = "request body over the limit";
        let cutting = std::future::poll_fn(|cx| cut.poll_cut(cx));
        let over = Failure::new(FailureKind::Refused, 413, OVER);
        let Some(first) = self.response_unless(cutting, over).await else {
            return Err(refusal_answer(
                EdgeRefusal::BodyTooLarge,
                Some(max_body_bytes),
            ));
        };
        let (head, mut stream) = first?;
        stream.cut_by(cut);
        Ok((head, stream))
    }
}

fn head_or_failure(
    first: Option<ResponseEvent>,
    events: crate::driver::EventRx,
    mut guard: Guard,
) -> Result<(ResponseHead, ResponseStream), Answer> {
    match first {
        Some(ResponseEvent::Head(mut head)) => {
            // The receiver's own 502 for a service it could not reach ends
            // the request as an upstream failure; its marker is ours, not
            // the client's.
            guard.upstream = UpstreamFailure::take(&mut head);
            if let Some(c) = &guard.capture {
                c.head(&head, head.status);
            }
            let mut head = forward::response_head_for_client(head);
            if let Some(token) = guard.issued.take() {
                // Where the reference SDK's client looks for it
                // (`DIDWbaAuthHeader.update_token`).
                head.headers
                    .push("authorization", format!("Bearer {token}"));
            }
            if passthrough::is_switch(&head) {
                // The core lets a 101 through only for an upgrade request.
                passthrough::mark_upgrade(&mut head.headers);
            }
            guard.status = Some(head.status);
            // A HEAD answer, a 204 or a 304 has no body whatever its
            // Content-Length says.
            guard.declared_len = if guard.method == "HEAD" || matches!(head.status, 204 | 304) {
                Some(0)
            } else {
                head.headers
                    .get("content-length")
                    .and_then(|v| v.trim().parse().ok())
            };
            let id = guard.id.clone();
            Ok((
                head,
                ResponseStream {
                    events,
                    guard,
                    id,
                    cut: UploadCut::never(),
                },
            ))
        }
        Some(ResponseEvent::Failed(f)) => {
            guard.fail(&f);
            Err(Answer::failure(&f))
        }
        Some(ResponseEvent::Body(_) | ResponseEvent::End) | None => {
            let f = Failure::new(
                FailureKind::ReceiverLost,
                502,
                "Receiver response ended before its head",
            );
            guard.fail(&f);
            Err(Answer::failure(&f))
        }
    }
}

/// A public request as the shell's HTTP server parsed it.
pub struct PublicRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, still percent-encoded.
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// The `host` header.
    pub host_header: Option<&'a str>,
    /// The URI's authority (HTTP/2 `:authority`, absolute-form targets).
    pub authority: Option<String>,
    /// The HTTP version (HTTP/1.0 may name no host).
    pub version: http::Version,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

/// Tracks one proxied request: logs it once, and cancels it in the gateway
/// if the client goes away before the end.
struct Guard {
    driver: Driver,
    id: Option<RequestId>,
    method: String,
    path: String,
    receiver: String,
    client: IpAddr,
    /// The granted service URL that routed it.
    route: String,
    started_at: Instant,
    status: Option<u16>,
    /// Why the request failed, when it did.
    error: Option<String>,
    /// The inspector's record of it, when capture is on.
    capture: Option<crate::admin::Capture>,
    /// The response's Content-Length, when it declared one.
    declared_len: Option<u64>,
    /// Response body bytes handed to the shell.
    sent: u64,
    /// Request body bytes read from the client: the whole body given at
    /// the start, or what [`Pending::meter`] has counted of a streamed one.
    received: Arc<AtomicU64>,
    /// An access token minted for a caller that signed a `DIDWba` header,
    /// for the response head.
    issued: Option<String>,
    /// The receiver's account of its service failing, when its response
    /// is its own 502 in the service's place.
    upstream: Option<UpstreamFailure>,
}

impl Guard {
    fn finish(&mut self, status: u16) {
        self.status = Some(status);
        if let Some(id) = self.id.take() {
            let ending = self.answered_ending();
            self.log(&id, ending);
        }
    }

    /// How a request whose whole response reached the client ended:
    /// completed, unless that response was the receiver's 502 for a
    /// service that failed.
    fn answered_ending(&mut self) -> Ending {
        match self.upstream.take() {
            Some(u) => {
                self.error = Some(u.to_string());
                Ending::UpstreamFailed
            }
            None => Ending::Completed,
        }
    }

    /// Whether the client has had the whole body a Content-Length
    /// declared: an HTTP server may drop the stream then, before the
    /// receiver's end is read, and that is a completed response.
    fn body_complete(&self) -> bool {
        self.declared_len == Some(self.sent)
    }

    /// Ends the inspector's record with the log line's outcome.
    fn record(&mut self, outcome: &str) {
        if let Some(c) = self.capture.take() {
            c.end(self.status.unwrap_or(0), outcome, self.error.as_deref());
        }
    }

    fn fail(&mut self, failure: &Failure) {
        self.error = Some(failure.error.clone());
        self.status = Some(failure.status);
        if let Some(id) = self.id.take() {
            self.log(&id, failure.ending());
        }
    }

    fn log(&mut self, id: &RequestId, ending: Ending) {
        self.record(ending.label());
        // Logged once (the id is taken first): what the line names can go
        // with it instead of being copied.
        crate::endings::report(
            &self.driver,
            ending,
            crate::endings::EndLine {
                request: id.as_str().into(),
                client: Some(self.client),
                route: std::mem::take(&mut self.route),
                method: std::mem::take(&mut self.method).into(),
                path: std::mem::take(&mut self.path).into(),
                status: self.status.unwrap_or(0),
                duration: self.started_at.elapsed(),
                receiver: std::mem::take(&mut self.receiver).into(),
                error: self.error.take().map(Into::into),
                bytes_in: self.received.load(Ordering::Relaxed),
                bytes_out: self.sent,
            },
            None,
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let ending = if self.body_complete() {
                self.answered_ending()
            } else {
                Ending::ClientLeft
            };
            self.log(&id, ending);
            self.driver.cancel(id);
        }
    }
}

/// The response was cut short; the shell must reset the client's
/// connection so the truncated body cannot pass for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("response aborted: {0}")]
pub struct ResponseAborted(pub String);

/// A proxied response body: pieces until the end, or an error when it was
/// cut short. Dropping it early cancels the request.
pub struct ResponseStream {
    events: crate::driver::EventRx,
    guard: Guard,
    /// The request, to report what the client took (`flow-control`).
    id: Option<RequestId>,
    /// Fires when the upload crossed the body limit after the response
    /// began: the response is cut.
    cut: UploadCut,
}

impl ResponseStream {
    /// Cuts the response short (an error, after which the shell resets the
    /// connection) when `cut` fires.
    pub fn cut_by(&mut self, cut: UploadCut) {
        self.cut = cut;
    }

    /// The shell cut the response short (the request is cancelled
    /// separately): the request ends as `failure` says.
    pub fn fail(&mut self, failure: &Failure) {
        self.guard.fail(failure);
    }
}

impl Stream for ResponseStream {
    type Item = Result<Bytes, ResponseAborted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        const OVER: &str = "request body over the limit";
        if self.cut.poll_cut(cx).is_ready() {
            self.guard
                .fail(&Failure::new(FailureKind::Refused, 413, OVER));
            return Poll::Ready(Some(Err(ResponseAborted(OVER.into()))));
        }
        loop {
            return match self.events.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(ResponseEvent::Body(b))) if b.is_empty() => continue,
                Poll::Ready(Some(ResponseEvent::Body(b))) => {
                    if let Some(c) = &mut self.guard.capture {
                        c.response_piece(&b);
                    }
                    if let Some(id) = &self.id {
                        self.guard.driver.read(id.clone(), b.len());
                    }
                    self.guard.sent += b.len() as u64;
                    Poll::Ready(Some(Ok(b)))
                }
                Poll::Ready(Some(ResponseEvent::End)) => {
                    let status = self.guard.status.unwrap_or(0);
                    self.guard.finish(status);
                    Poll::Ready(None)
                }
                Poll::Ready(Some(ResponseEvent::Failed(f))) => {
                    self.guard.fail(&f);
                    Poll::Ready(Some(Err(ResponseAborted(f.error))))
                }
                Poll::Ready(Some(ResponseEvent::Head(_))) | Poll::Ready(None) => {
                    self.guard.fail(&Failure::new(
                        FailureKind::ReceiverLost,
                        502,
                        "gateway lost the response",
                    ));
                    Poll::Ready(Some(Err(ResponseAborted(
                        "gateway lost the response".into(),
                    ))))
                }
            };
        }
    }
}
