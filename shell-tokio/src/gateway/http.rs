//! The public HTTP side: health, stats and metrics, the receivers'
//! WebSocket upgrade, and proxying everything else through the tunnel.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use anpx_core::edge::{BodyMeter, EdgeRefusal};
use anpx_core::features::{negotiate, Features};
use anpx_core::forward::{self, ClientInfo};
use anpx_core::gateway::{Failure, RequestBody, ResponseEvent};
use anpx_core::handshake::{self, FEATURES_HEADER, GRANTED_HEADER, SERVICES_HEADER};
use anpx_core::RequestId;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use shell_common::driver::Driver;
use shell_common::Admission;
use shell_common::{link, ws};

use super::edge::Edge;
use crate::body::BoxError;
use crate::rt::Tokio;

/// The body of every response the gateway gives.
pub(crate) type GatewayBody = BoxBody<Bytes, BoxError>;

/// What every connection handler shares.
pub(crate) struct Shared {
    pub driver: Driver,
    pub admission: Arc<dyn Admission>,
    /// Extensions this gateway implements.
    pub features: Features,
    pub chunk_size: usize,
    pub max_frame_len: usize,
    pub scheme: &'static str,
    pub draining: AtomicBool,
    pub auth_refusals: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub edge: Arc<Edge>,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The public port: proxying, `/health`, `/stats`, `/metrics`, `/ws`.
    Public,
    /// The separate receiver port: WebSocket at any path.
    Receivers,
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    listener: Listener,
) -> Result<Response<GatewayBody>, Infallible> {
    let is_ws = is_websocket_upgrade(&req);
    let path = req.uri().path();
    let response = match (listener, is_ws, req.method(), path) {
        (Listener::Receivers, true, _, _) | (Listener::Public, true, _, "/ws") => {
            upgrade(req, shared, peer).await
        }
        (Listener::Receivers, false, _, _) => text(
            StatusCode::BAD_REQUEST,
            "receivers connect here with a WebSocket upgrade\n",
        ),
        (Listener::Public, false, &http::Method::GET, "/health") => health(&shared),
        (Listener::Public, false, &http::Method::GET, "/stats") => stats(&shared).await,
        (Listener::Public, false, &http::Method::GET, "/metrics") => metrics(&shared).await,
        _ => proxy(req, shared, peer, local).await,
    };
    Ok(response)
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == http::Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
        && req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<GatewayBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<GatewayBody> {
    full(status, "text/plain; charset=utf-8", body)
}

/// The answer to a request the edge refused.
fn refusal_response(refusal: EdgeRefusal, limit: Option<u64>) -> Response<GatewayBody> {
    let status = refusal
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let body = match limit {
        Some(limit) => serde_json::json!({ "error": refusal.to_string(), "limit": limit }),
        None => serde_json::json!({ "error": refusal.to_string() }),
    };
    let mut r = full(status, "application/json", body.to_string());
    if refusal == EdgeRefusal::BodyTooLarge {
        // The rest of the body is not read, so the connection cannot carry
        // another request.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn failure_response(f: &Failure) -> Response<GatewayBody> {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
    full(status, "application/json", f.body_json())
}

fn health(shared: &Shared) -> Response<GatewayBody> {
    let status = if shared.draining.load(Ordering::Relaxed) {
        "draining"
    } else {
        "ok"
    };
    full(
        StatusCode::OK,
        "application/json",
        serde_json::json!({ "status": status }).to_string(),
    )
}

async fn stats(shared: &Shared) -> Response<GatewayBody> {
    match shared.driver.stats().await {
        Ok(s) => full(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&s).unwrap_or_default(),
        ),
        Err(e) => failure_response(&Failure::new(503, e.to_string())),
    }
}

async fn metrics(shared: &Shared) -> Response<GatewayBody> {
    let stats = match shared.driver.stats().await {
        Ok(s) => s,
        Err(e) => return failure_response(&Failure::new(503, e.to_string())),
    };
    let mut text = stats.to_prometheus();
    let refusals = shared
        .auth_refusals
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    text.push_str(
        "# HELP anpx_receiver_auth_refused_total Receiver handshakes refused, by reason.\n",
    );
    text.push_str("# TYPE anpx_receiver_auth_refused_total counter\n");
    for (label, n) in refusals {
        text.push_str(&format!(
            "anpx_receiver_auth_refused_total{{reason=\"{label}\"}} {n}\n"
        ));
    }
    text.push_str(&shared.edge.prometheus());
    full(StatusCode::OK, "text/plain; version=0.0.4", text)
}

async fn upgrade(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
) -> Response<GatewayBody> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::BAD_REQUEST, "missing sec-websocket-key\n");
    };
    // Before the admission check, which may fetch a DID document: a flood
    // of handshakes is turned away before it costs anything.
    let mut slot = match shared.edge.begin_handshake(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::warn!(%peer, reason = %refusal, "receiver handshake refused");
            return refusal_response(refusal, None);
        }
    };
    let service = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
        .unwrap_or_default();
    let admitted = match shared.admission.check(req.headers(), &service).await {
        Ok(a) => a,
        Err(refusal) => {
            tracing::warn!(reason = %refusal.reason, label = refusal.label, "receiver refused");
            if let Ok(mut m) = shared.auth_refusals.lock() {
                *m.entry(refusal.label).or_default() += 1;
            }
            let body =
                serde_json::json!({ "error": "Authentication failed", "reason": refusal.reason })
                    .to_string();
            return full(StatusCode::UNAUTHORIZED, "application/json", body);
        }
    };
    let declared = match req
        .headers()
        .get(SERVICES_HEADER)
        .map(|v| {
            v.to_str()
                .map_err(|e| e.to_string())
                .and_then(|s| handshake::parse_services(s).map_err(|e| e.to_string()))
        })
        .transpose()
    {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => {
            return full(
                StatusCode::BAD_REQUEST,
                "application/json",
                serde_json::json!({ "error": format!("bad {SERVICES_HEADER}: {e}") }).to_string(),
            )
        }
    };
    let grants = handshake::grant(&declared, admitted.allowed.as_deref());
    if grants.is_empty() {
        let body = serde_json::json!({ "error": "None of the declared service URLs is granted to this identity" }).to_string();
        return full(StatusCode::FORBIDDEN, "application/json", body);
    }
    let theirs = req
        .headers()
        .get(FEATURES_HEADER)
        .and_then(|v| v.to_str().ok());
    let features = negotiate(shared.features, theirs);

    let on_upgrade = hyper::upgrade::on(&mut req);
    let ws_config = ws::config(shared.max_frame_len);
    let driver = shared.driver.clone();
    let granted = handshake::format_services(&grants);
    let admitted = match link::admit(&driver, admitted.identity, grants, features).await {
        Ok(a) => a,
        Err(e) => return failure_response(&Failure::new(503, e.to_string())),
    };
    // Admission is done, which is what the pending limit guards; the 101
    // and the hand-over of the socket are cheap.
    slot.upgraded();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioAdapter::new(TokioIo::new(upgraded));
                let stream =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
                link::serve(stream, driver, admitted, &Tokio).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiver upgrade failed");
                driver.closed(admitted.link);
            }
        }
        // The connection's place in the per-address count ends with it.
        drop(slot);
    });

    let mut r = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&features.to_header_value()) {
        h.insert(FEATURES_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&granted) {
        h.insert(GRANTED_HEADER, v);
    }
    r
}

async fn proxy(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Response<GatewayBody> {
    if shared.draining.load(Ordering::Relaxed) {
        return failure_response(&Failure::new(503, "Gateway is shutting down"));
    }
    let started_at = Instant::now();
    let (parts, body) = req.into_parts();
    let limits = shared.edge.limits;
    // A Content-Length (or HTTP/2 content-length) over the limit is refused
    // before a byte of the body is read.
    if let Err(refusal) = limits.check_declared_body(Some(body.size_hint().lower())) {
        shared.edge.count(refusal);
        tracing::info!(method = %parts.method, path = %parts.uri.path(), status = 413, declared = body.size_hint().lower(), "request refused: body over the limit");
        return refusal_response(refusal, Some(limits.max_body_bytes));
    }
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let host_header = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let host = forward::routing_host(host_header, authority.as_deref()).to_owned();
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if host_header.is_none() && !host.is_empty() {
        // HTTP/2 carries the host in :authority; receivers expect `host`.
        headers.push(("host".into(), host.clone()));
    }
    let client = ClientInfo {
        ip: peer.ip(),
        scheme: shared.scheme,
        local_port: local.port(),
    };
    let head = forward::request_head(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        &client,
    );
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();

    let (request_body, stream_body) = match body.size_hint().exact() {
        Some(0) => (RequestBody::Empty, None),
        Some(n) if n <= shared.chunk_size as u64 => match body.collect().await {
            Ok(b) => (RequestBody::Full(b.to_bytes()), None),
            Err(e) => {
                return failure_response(&Failure::new(
                    400,
                    format!("Could not read the request body: {e}"),
                ))
            }
        },
        _ => (RequestBody::Streaming, Some(body)),
    };

    let (events_tx, mut events) = mpsc::unbounded();
    let started = match shared
        .driver
        .start(host, head, request_body, events_tx)
        .await
    {
        Err(e) => return failure_response(&Failure::new(503, e.to_string())),
        Ok(Err(reject)) => {
            let f = reject.failure();
            tracing::info!(%method, %path, status = f.status, duration_ms = started_at.elapsed().as_secs_f64() * 1e3, "request refused");
            return failure_response(&f);
        }
        Ok(Ok(s)) => s,
    };
    let mut guard = Guard {
        driver: shared.driver.clone(),
        id: Some(started.id.clone()),
        method,
        path,
        receiver: started.receiver,
        started_at,
        status: None,
        error: None,
    };
    // Fires when a body of unannounced length crosses the limit; the pump
    // has then cancelled the request.
    let (over_limit, refused) = oneshot::channel();
    let mut upload_refused = UploadRefused(Some(refused));
    if let Some(body) = stream_body {
        tokio::spawn(pump_request_body(
            body,
            shared.driver.clone(),
            started.id.clone(),
            Upload {
                meter: BodyMeter::new(limits.max_body_bytes),
                over_limit,
                edge: shared.edge.clone(),
            },
        ));
    }
    let first = tokio::select! {
        biased;
        () = std::future::poll_fn(|cx| upload_refused.poll(cx)) => None,
        event = events.next() => Some(event),
    };
    // The pump signals before it cancels, so a channel closed by that
    // cancel finds the signal already there.
    let first = match first {
        Some(None) if upload_refused.now() => None,
        other => other,
    };
    let Some(first) = first else {
        guard.fail(413, "request body over the limit");
        return refusal_response(EdgeRefusal::BodyTooLarge, Some(limits.max_body_bytes));
    };
    match first {
        Some(ResponseEvent::Head(head)) => {
            let head = forward::response_head_for_client(head);
            guard.status = Some(head.status);
            let mut builder = Response::builder().status(head.status);
            for (name, value) in head.headers.iter() {
                builder = builder.header(name, value);
            }
            let body = ResponseStream {
                events,
                guard,
                upload_refused,
            }
            .boxed();
            builder.body(body).unwrap_or_else(|e| {
                failure_response(&Failure::new(
                    502,
                    format!("Receiver sent an invalid response head: {e}"),
                ))
            })
        }
        Some(ResponseEvent::Failed(f)) => {
            guard.fail(f.status, &f.error);
            failure_response(&f)
        }
        Some(ResponseEvent::Body(_) | ResponseEvent::End) | None => {
            guard.fail(502, "receiver response ended before its head");
            failure_response(&Failure::new(
                502,
                "Receiver response ended before its head",
            ))
        }
    }
}

/// What the upload pump needs to hold a body to the limit.
struct Upload {
    meter: BodyMeter,
    over_limit: oneshot::Sender<()>,
    edge: Arc<Edge>,
}

async fn pump_request_body(mut body: Incoming, driver: Driver, id: RequestId, mut upload: Upload) {
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if let Err(refusal) = upload.meter.add(data.len()) {
                        upload.edge.count(refusal);
                        tracing::info!(request = %id, received = upload.meter.seen(), "request body over the limit; request cancelled");
                        let _ = upload.over_limit.send(());
                        driver.cancel(id);
                        return;
                    }
                    if !data.is_empty() {
                        driver.body(id.clone(), data, false);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::debug!(request = %id, error = %e, "client upload failed");
                driver.cancel(id);
                return;
            }
            None => {
                driver.body(id, Bytes::new(), true);
                return;
            }
        }
    }
}

/// Tracks one proxied request: logs it once, and cancels it in the gateway
/// if the client goes away before the end.
struct Guard {
    driver: Driver,
    id: Option<RequestId>,
    method: http::Method,
    path: String,
    receiver: String,
    started_at: Instant,
    status: Option<u16>,
    /// Why the request failed, when it did.
    error: Option<String>,
}

impl Guard {
    fn finish(&mut self, status: u16) {
        self.status = Some(status);
        if let Some(id) = self.id.take() {
            self.log(&id, "done");
        }
    }

    fn fail(&mut self, status: u16, error: &str) {
        self.error = Some(error.to_owned());
        self.finish(status);
    }

    fn log(&self, id: &RequestId, outcome: &str) {
        tracing::info!(
            request = %id,
            method = %self.method,
            path = %self.path,
            status = self.status.unwrap_or(0),
            duration_ms = self.started_at.elapsed().as_secs_f64() * 1e3,
            receiver = %self.receiver,
            outcome,
            error = self.error.as_deref().unwrap_or(""),
            "request"
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.log(&id, "client went away");
            self.driver.cancel(id);
        }
    }
}

/// The response body, fed by the gateway task's events.
struct ResponseStream {
    events: mpsc::UnboundedReceiver<ResponseEvent>,
    guard: Guard,
    /// Fires when the upload crossed the body limit after the response
    /// began: the response is cut.
    upload_refused: UploadRefused,
}

/// The pump's signal that the upload crossed the body limit. Ready only
/// when it did; an upload that ended normally leaves it pending forever.
struct UploadRefused(Option<oneshot::Receiver<()>>);

impl UploadRefused {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rx) = self.0.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => {
                self.0 = None;
                Poll::Ready(())
            }
            // A completed receiver must not be polled again.
            Poll::Ready(Err(_)) => {
                self.0 = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the signal has been sent, without waiting.
    fn now(&mut self) -> bool {
        match self.0.as_mut().map(oneshot::Receiver::try_recv) {
            Some(Ok(())) => {
                self.0 = None;
                true
            }
            Some(Err(oneshot::error::TryRecvError::Closed)) => {
                self.0 = None;
                false
            }
            Some(Err(oneshot::error::TryRecvError::Empty)) | None => false,
        }
    }
}

/// The response was cut short; the client's connection is reset so the
/// truncated body cannot pass for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("response aborted: {0}")]
struct ResponseAborted(String);

impl Body for ResponseStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.upload_refused.poll(cx).is_ready() {
            self.guard.fail(413, "request body over the limit");
            return Poll::Ready(Some(Err(Box::new(ResponseAborted(
                "request body over the limit".into(),
            )))));
        }
        loop {
            return match self.events.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(ResponseEvent::Body(b))) if b.is_empty() => continue,
                Poll::Ready(Some(ResponseEvent::Body(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(ResponseEvent::End)) => {
                    let status = self.guard.status.unwrap_or(0);
                    self.guard.finish(status);
                    Poll::Ready(None)
                }
                Poll::Ready(Some(ResponseEvent::Failed(f))) => {
                    self.guard.fail(f.status, &f.error);
                    Poll::Ready(Some(Err(Box::new(ResponseAborted(f.error)))))
                }
                Poll::Ready(Some(ResponseEvent::Head(_))) | Poll::Ready(None) => {
                    self.guard.fail(502, "gateway lost the response");
                    Poll::Ready(Some(Err(Box::new(ResponseAborted(
                        "gateway lost the response".into(),
                    )))))
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
