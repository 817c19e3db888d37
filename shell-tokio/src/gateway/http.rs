//! The public HTTP side on hyper: the edge limits around the shared
//! gateway answers (health, stats, metrics, the receivers' handshake) and
//! proxying through the tunnel.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::futures_io::FuturesIo;
use anpx_core::edge::BodyPlan;
use anpx_core::passthrough;
use anpx_core::RequestId;
use anpx_core::{Failure, FailureKind, RequestBody};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use shell_common::admin::{AdminReply, EVENT_HEADERS};
use shell_common::edge::UploadCut;
use shell_common::gateway::{
    decorate, header_pairs, is_websocket_upgrade, pump_upload, Answer, Endpoint, Listener,
    PublicRequest, Shared,
};
use shell_common::{link, websocket, ws};

use crate::body::BoxError;
use crate::rt::Tokio;

/// The body of every response the gateway gives.
pub(crate) type GatewayBody = BoxBody<Bytes, BoxError>;

pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    listener: Listener,
) -> Result<Response<GatewayBody>, Infallible> {
    let method = req.method().as_str();
    let is_ws = is_websocket_upgrade(method, req.headers());
    let health_path = shared.health_path.as_deref();
    let response = match Endpoint::of(listener, is_ws, method, req.uri().path(), health_path) {
        Endpoint::Upgrade => upgrade(req, shared, peer).await,
        Endpoint::NotAWebSocket => answer(Answer::text(
            400,
            "receivers connect here with a WebSocket upgrade\n",
        )),
        Endpoint::Health => answer(shared.health()),
        Endpoint::Admin => {
            admin_response(shared.admin(method, req.uri().path(), req.headers()).await)
        }
        Endpoint::Proxy => {
            let screened = shared.screen(
                method,
                req.uri().path(),
                req.uri().query(),
                req.headers(),
                req.uri().authority().map(|a| a.as_str()),
                peer.ip(),
            );
            match screened {
                Err(a) => answer(a),
                Ok(decorations) => {
                    let mut r = proxy(req, shared, peer, local, is_ws).await;
                    let headers = r.headers_mut();
                    for (name, value) in decorate(&decorations, |n| headers.contains_key(n)) {
                        if let Ok(v) = HeaderValue::from_str(value) {
                            headers.insert(name, v);
                        }
                    }
                    r
                }
            }
        }
    };
    Ok(response)
}

/// The hyper response for an answer of an admin plane, the gateway's or
/// the receiver's.
pub(crate) fn admin_response(reply: AdminReply) -> Response<GatewayBody> {
    match reply {
        AdminReply::Answer(a) => answer(a),
        AdminReply::Events(events) => {
            let body = StreamBody::new(events.map(|b| Ok::<_, BoxError>(Frame::data(b))));
            let mut r = Response::new(BodyExt::boxed(body));
            for (name, value) in EVENT_HEADERS {
                r.headers_mut()
                    .insert(name, HeaderValue::from_static(value));
            }
            r
        }
    }
}

/// The hyper response for an answer of the shared gateway.
fn answer(a: Answer) -> Response<GatewayBody> {
    let mut r = Response::new(Full::new(a.body).map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in a.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

fn failure_response(f: &Failure) -> Response<GatewayBody> {
    answer(Answer::failure(f))
}

async fn upgrade(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
) -> Response<GatewayBody> {
    let receiver = match shared.admit_receiver(req.headers(), peer.ip()).await {
        Ok(r) => r,
        Err(refusal) => return answer(refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limit = receiver.link.message_limit(shared.max_frame_len);
    let driver = shared.driver.clone();
    let (admitted, slot) = (receiver.link, receiver.slot);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = FuturesIo(TokioIo::new(upgraded));
                let stream = ws::WsSocket::new(io, ws::Role::Server, limit, &[]);
                link::serve(stream, driver, admitted, &Tokio).await;
            }
            Err(e) => {
                tracing::warn!(peer = %admitted.peer, error = %e, "receiver upgrade failed");
                driver.closed(admitted.link);
            }
        }
        // The connection's place in the per-address count ends with it.
        drop(slot);
    });
    answer(receiver.answer)
}

/// Proxies a public request; `is_ws`: a WebSocket handshake, which is
/// carried through when the service accepts it.
async fn proxy(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    is_ws: bool,
) -> Response<GatewayBody> {
    let started_at = std::time::Instant::now();
    if shared.draining.load(Ordering::Relaxed) {
        let f = Failure::new(FailureKind::Refused, 503, "Gateway is shutting down");
        let why = Some("shutting_down");
        shared.refused(
            peer,
            why,
            req.method().as_str(),
            req.uri().path(),
            &f,
            started_at,
        );
        return failure_response(&f);
    }
    let on_upgrade = is_ws.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let limits = shared.edge.limits;
    // Every refusal below ends the request with the same log line and counts.
    let refused = |why: Option<&'static str>, f: &Failure| {
        shared.refused(
            peer,
            why,
            parts.method.as_str(),
            parts.uri.path(),
            f,
            started_at,
        )
    };
    // A Content-Length (or HTTP/2 content-length) over the limit is refused
    // before a byte of the body is read.
    let declared = body.size_hint().exact();
    let request = (peer, parts.method.as_str(), parts.uri.path());
    let plan = match shared.body_plan(declared, is_ws, request, started_at) {
        Ok(plan) => plan,
        Err(refused) => return answer(refused),
    };
    let (request_body, stream_body) = match plan {
        BodyPlan::AfterUpgrade => (RequestBody::Streaming, None),
        BodyPlan::Empty => (RequestBody::Empty, None),
        BodyPlan::Whole(_) => {
            match tokio::time::timeout(shared.upload_timeout, body.collect()).await {
                Err(_) => {
                    let f = Failure::upload_timed_out(shared.upload_timeout);
                    refused(None, &f);
                    return failure_response(&f);
                }
                Ok(Ok(b)) => (RequestBody::Full(b.to_bytes()), None),
                Ok(Err(e)) => {
                    let f = Failure::body_cut_short(e);
                    refused(None, &f);
                    return failure_response(&f);
                }
            }
        }
        BodyPlan::Sized(n) => (RequestBody::Sized(n), Some(body)),
        BodyPlan::Streaming => (RequestBody::Streaming, Some(body)),
    };
    let public = PublicRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        host_header: parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
        authority: parts.uri.authority().map(|a| a.as_str().to_owned()),
        version: parts.version,
        headers: header_pairs(&parts.headers),
        peer,
        local,
    };
    let pending = match shared.proxy(public, request_body).await {
        Ok(p) => p,
        Err(a) => return answer(a),
    };
    let id = pending.id().clone();
    // The cut fires when a body of unannounced length crosses the limit;
    // the pump has then cancelled the request.
    let mut cut = UploadCut::never();
    if let Some(body) = stream_body {
        let (limit, upload_cut) = shared.edge.upload_limit();
        cut = upload_cut;
        tokio::spawn(pump_upload(
            pending.meter(body.into_data_stream()),
            shared.driver.clone(),
            pending.id().clone(),
            limit,
        ));
    }
    let (head, events) = match pending.response_within(cut, limits.max_body_bytes).await {
        Ok(r) => r,
        Err(a) => return answer(a),
    };
    if let Some(on_upgrade) = on_upgrade {
        if passthrough::is_switch(&head) {
            return switch(on_upgrade, &head, events, &shared, id);
        }
        // Refused by the service: an ordinary answer, and the body the
        // request kept open for the WebSocket's bytes ends empty.
        shared.driver.body(id.clone(), Bytes::new(), true);
    }
    let (status, headers) = match response_head(head) {
        Ok(h) => h,
        Err(e) => return invalid_head(&e, events, &shared, id),
    };
    let mut r = Response::new(ResponseStream(events).boxed());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Answers a response head from the receiver that cannot be sent on (a
/// header or status `http` refuses) with 502, failing its events and
/// cancelling the request at the receiver.
fn invalid_head(
    e: &http::Error,
    mut events: shell_common::gateway::ResponseStream,
    shared: &Shared,
    id: RequestId,
) -> Response<GatewayBody> {
    let f = Failure::new(
        FailureKind::InvalidResponse,
        502,
        format!("Receiver sent an invalid response head: {e}"),
    );
    events.fail(&f);
    shared.driver.cancel(id);
    failure_response(&f)
}

/// The status and header map of a response head from a receiver. The
/// decoded strings move into the map (`from_maybe_shared` takes a `String`'s
/// buffer as it is); names and values are still checked.
fn response_head(
    head: anpx_core::ResponseHead,
) -> Result<(StatusCode, http::HeaderMap), http::Error> {
    let status = StatusCode::from_u16(head.status)?;
    let mut headers = http::HeaderMap::with_capacity(head.headers.len());
    for (name, value) in head.headers {
        let name = HeaderName::from_bytes(name.as_bytes())?;
        let value = HeaderValue::from_maybe_shared(Bytes::from(value))?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

/// Answers a WebSocket handshake the service accepted: the 101 goes to
/// the client, and once hyper hands over the connection, its bytes are
/// carried both ways until either side ends.
fn switch(
    on_upgrade: hyper::upgrade::OnUpgrade,
    head: &anpx_core::ResponseHead,
    events: shell_common::gateway::ResponseStream,
    shared: &Shared,
    id: RequestId,
) -> Response<GatewayBody> {
    let mut builder = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in head.headers.iter() {
        builder = builder.header(name, value);
    }
    let response = match builder.body(GatewayBody::default()) {
        Ok(r) => r,
        Err(e) => return invalid_head(&e, events, shared, id),
    };
    let driver = shared.driver.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = FuturesIo(TokioIo::new(upgraded));
                websocket::serve_public(io, driver, id, events).await;
            }
            Err(e) => {
                tracing::debug!(request = %id, error = %e, "websocket upgrade failed");
                driver.cancel(id);
            }
        }
    });
    response
}

/// The response body, fed by the gateway machine's events.
struct ResponseStream(shell_common::gateway::ResponseStream);

impl Body for ResponseStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_next_unpin(cx)
            .map(|piece| piece.map(|r| r.map(Frame::data).map_err(|e| Box::new(e) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
