//! The gateway runtime on smol: listeners served by async-h1, receivers'
//! WebSockets through async-h1's upgrade, and the shared gateway machine.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anpx_core::edge::head::{BodyFraming, RequestHead};
use anpx_core::edge::BodyPlan;
use anpx_core::passthrough;
use anpx_core::{Failure, FailureKind, RequestBody};
use async_h1::server::ConnectionStatus;
use bytes::Bytes;
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{StreamExt, TryStreamExt};
use http_types::{Request, Response};
use shell_common::accept::{self, Incoming};
use shell_common::admin::{AdminReply, EVENT_HEADERS};
use shell_common::edge::UploadCut;
use shell_common::gateway::{
    decorate, header_pairs, is_websocket_upgrade, pump_upload, Answer, Endpoint, Listener,
    PublicRequest, Shared, UploadEnd,
};
use shell_common::serving::{GatewayIo, Served, Serving};
use shell_common::signal::Stop;
use shell_common::{link, websocket, ws};
use smol::Task;

#[cfg(feature = "cluster")]
use crate::cluster::SmolWithTokio;
use crate::edge::{answer_refusal, next_head, Cutter, HeadClock, NextHead, Replay};
use crate::head_edit::{carried, HeadEdit, LengthLine};
use crate::rt::{body_stream, Smol, TcpAccept};
use crate::shared_io::SharedIo;
use crate::stall::Parked;
use crate::tcp::TcpStream;
use crate::upstream::status_code;

pub use shell_common::accept::BindError;

/// A running gateway on smol.
pub type Gateway = Serving<Smol>;

impl GatewayIo for Smol {
    type Tls = futures_rustls::TlsAcceptor;

    async fn timer(at: Instant) {
        smol::Timer::at(at).await;
    }

    fn tls(config: Arc<rustls::ServerConfig>) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(config)
    }

    fn serve(listeners: Vec<Served<Smol>>, shared: &Arc<Shared>, stop: &Stop) -> Vec<Task<()>> {
        listeners
            .into_iter()
            .map(|(listener, which, tls)| {
                crate::rt::spawn(accept_loop(
                    listener,
                    which,
                    shared.clone(),
                    tls,
                    stop.clone(),
                ))
            })
            .collect()
    }

    #[cfg(feature = "cluster")]
    fn cluster_runtime() -> Arc<dyn shell_common::receiver::Runtime> {
        Arc::new(SmolWithTokio)
    }

    #[cfg(feature = "cluster")]
    fn in_tokio<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
        async_compat::Compat::new(future)
    }
}

/// Serves `listener`'s connections (after TLS when `tls` is given) until
/// `stop`.
async fn accept_loop(
    listener: TcpAccept,
    which: Listener,
    shared: Arc<Shared>,
    tls: Option<futures_rustls::TlsAcceptor>,
    stop: Stop,
) {
    let with = (shared, tls);
    let serve = accept::serve_each::<TcpAccept, _, _>(
        with,
        move |Incoming { conn, peer, local }, (shared, tls)| {
            Box::pin(async move {
                let Some(acceptor) = tls else {
                    let client = Some(conn.clone());
                    return serve_connection(conn, client, peer, local, which, shared).await;
                };
                let handshake = async { Some(acceptor.accept(conn).await) };
                let deadline = async {
                    smol::Timer::after(shell_common::tls::HANDSHAKE_TIMEOUT).await;
                    None
                };
                match smol::future::or(handshake, deadline).await {
                    Some(Ok(stream)) => {
                        serve_connection(SharedIo::new(stream), None, peer, local, which, shared)
                            .await
                    }
                    Some(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                    None => tracing::debug!(%peer, "tls handshake timed out"),
                }
            })
        },
    );
    accept::accept_loop(
        listener,
        &Smol,
        Some(stop),
        accept::listener_name(which),
        serve,
    )
    .await;
}

/// `client` is the plain TCP connection, watched for the client leaving
/// before its answer; `None` under TLS, where a close cannot be seen below
/// the TLS records (it is noticed when the answer is written).
///
/// Each request head is read and checked by the edge first; async-h1 then
/// parses the canonical head the edge queued and serves that request (see
/// [`crate::edge`]).
async fn serve_connection<S>(
    stream: S,
    client: Option<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    which: Listener,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Clone + Send + Sync + Unpin + 'static,
{
    let mut conn = Replay::new(stream);
    let parked = conn.parked();
    // The head the edge checked, for the request async-h1 parses next.
    let checked: Arc<Mutex<Option<RequestHead>>> = Arc::default();
    let take_checked = checked.clone();
    let cutter = conn.cutter();
    let edge_shared = shared.clone();
    let answering = conn.clone();
    let mut server = async_h1::server::Server::new(conn.clone(), move |req| {
        let head = take_checked.lock().ok().and_then(|mut h| h.take());
        let shared = shared.clone();
        let parked = parked.clone();
        let client = client.clone();
        let cutter = cutter.clone();
        let answering = answering.clone();
        async move {
            let head = head.ok_or_else(|| {
                http_types::Error::from_str(
                    500,
                    "a request async-h1 parsed was not read by the edge",
                )
            })?;
            let at = At {
                client,
                peer,
                local,
                which,
                parked: &parked,
                cutter: &cutter,
            };
            let mut response = handle(head, req, shared, at).await;
            if response.status() != http_types::StatusCode::SwitchingProtocols {
                // The connection is handed over after a 101: nothing of it
                // may wait in a hold, nor in an edit of its head.
                hold_answer(&answering, &mut response);
                let mut edit: HeadEdit = response.ext_mut().remove().unwrap_or_default();
                let bodiless = matches!(u16::from(response.status()), 204 | 304);
                if bodiless && edit.length == LengthLine::Keep {
                    // Every 204 and 304, the service's and the gateway's
                    // own (a preflight's), unless `proxy` kept a 304's
                    // length of the representation.
                    edit.length = LengthLine::Drop;
                }
                answering.edit_head(edit);
            }
            Ok(response)
        }
    });
    let mut clock = HeadClock::new();
    loop {
        match next_head(&mut conn, &edge_shared.edge.limits, &mut clock).await {
            NextHead::Closed => return,
            NextHead::Refused(refusal) => {
                edge_shared.head_refused(refusal, peer);
                tracing::debug!(%peer, error = %refusal, "connection ended with an error");
                if let Some(status) = refusal.status() {
                    answer_refusal(&mut conn, status).await;
                }
                return;
            }
            NextHead::Request(head) => {
                if let Ok(mut slot) = checked.lock() {
                    *slot = Some(*head);
                }
                match server.accept_one().await {
                    Ok(ConnectionStatus::KeepAlive) => {}
                    Ok(ConnectionStatus::Close) => return,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                        return;
                    }
                }
            }
        }
    }
}

/// Has `response` written through `conn`'s hold (see [`Replay::hold`]),
/// its body read so that what is held goes out whenever the body waits.
fn hold_answer<S>(conn: &Replay<S>, response: &mut Response)
where
    S: AsyncWrite + Clone + Send + Sync + Unpin + 'static,
{
    let typed = response.header("content-type").is_some();
    let mut body = http_types::Body::empty();
    response.swap_body(&mut body);
    let len = body.len();
    let mut released = http_types::Body::from_reader(conn.released(body), len);
    response.swap_body(&mut released);
    if !typed {
        // The swap labels a body without a type; the answer had none.
        response.remove_header("content-type");
    }
    conn.hold();
}

/// Where a request came from, and its connection's pieces.
struct At<'a> {
    client: Option<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    which: Listener,
    parked: &'a Parked,
    cutter: &'a Cutter,
}

/// Resolves when the client closes (or resets) a connection on which it
/// sent nothing more; bytes of a next request leave it pending for good,
/// since the close can then no longer be told apart.
async fn client_gone(client: TcpStream) {
    loop {
        // The reactor's word first, not a peek: right after a head the
        // socket is all but always empty, and the peek would only fail.
        if std::future::poll_fn(|cx| client.poll_readable(cx))
            .await
            .is_err()
        {
            return;
        }
        let mut byte = [0u8; 1];
        match client.try_peek(&mut byte) {
            Ok(1..) => std::future::pending::<()>().await,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
}

async fn handle(head: RequestHead, mut req: Request, shared: Arc<Shared>, at: At<'_>) -> Response {
    let method = head.method.as_str();
    let headers = &head.headers;
    let (path, query) = (head.uri.path(), head.uri.query());
    let is_ws = is_websocket_upgrade(method, headers);
    let endpoint = Endpoint::of(at.which, is_ws, method, path, shared.health_path.as_deref());
    let mut response = match endpoint {
        Endpoint::Upgrade => upgrade(headers, &shared, at.peer).await,
        Endpoint::NotAWebSocket => answer(Answer::text(
            400,
            "receivers connect here with a WebSocket upgrade\n",
        )),
        Endpoint::Health => answer(shared.health()),
        Endpoint::Admin => admin_response(shared.admin(method, path, headers).await),
        Endpoint::Proxy => {
            let authority = head.uri.authority().map(|a| a.as_str());
            match shared.screen(method, path, query, headers, authority, at.peer.ip()) {
                Err(a) => answer(a),
                Ok(decorations) => {
                    let mut r = proxy(&head, req.take_body(), shared, &at, is_ws).await;
                    let set = decorate(&decorations, |name| r.header(name).is_some());
                    for (name, value) in set {
                        r.insert_header(name, value);
                    }
                    r
                }
            }
        }
    };
    let own_answer = matches!(
        endpoint,
        Endpoint::NotAWebSocket | Endpoint::Health | Endpoint::Admin
    );
    if own_answer && head.framing != BodyFraming::Empty {
        // A body nobody reads is not drained (it could go on for ever):
        // the connection ends with the answer, as in anpx.
        at.cutter.cut();
    }
    let closing = !head.keep_alive || at.cutter.is_cut();
    if closing && response.status() != http_types::StatusCode::SwitchingProtocols {
        response.insert_header("connection", "close");
    }
    response
}

/// The async-h1 response for an answer of an admin plane, the gateway's
/// or the receiver's.
pub(crate) fn admin_response(reply: AdminReply) -> Response {
    match reply {
        AdminReply::Answer(a) => answer(a),
        AdminReply::Events(events) => {
            let mut r = Response::new(http_types::StatusCode::Ok);
            let reader = events.map(Ok::<_, std::io::Error>).into_async_read();
            r.set_body(http_types::Body::from_reader(
                futures_util::io::BufReader::new(reader),
                None,
            ));
            for (name, value) in EVENT_HEADERS {
                r.insert_header(name, value);
            }
            r
        }
    }
}

fn answer(a: Answer) -> Response {
    let mut r = Response::new(status_code(a.status));
    r.set_body(a.body.to_vec());
    // `set_body` labels the body octet-stream; the answer's own headers
    // say what it is, or that it is nothing (a preflight's 204).
    r.remove_header("content-type");
    for (name, value) in a.headers {
        r.insert_header(name, value.as_str());
    }
    r
}

async fn upgrade(headers: &http::HeaderMap, shared: &Arc<Shared>, peer: SocketAddr) -> Response {
    let receiver = match shared.admit_receiver(headers, peer.ip()).await {
        Ok(r) => r,
        Err(refusal) => return answer(refusal),
    };
    let mut response = Response::new(http_types::StatusCode::SwitchingProtocols);
    for (name, value) in &receiver.answer.headers {
        response.insert_header(*name, value.as_str());
    }
    let upgraded = response.recv_upgrade().await;
    let limit = receiver.link.message_limit(shared.max_frame_len);
    let driver = shared.driver.clone();
    let (admitted, slot) = (receiver.link, receiver.slot);
    crate::rt::spawn(async move {
        match upgraded.await {
            Some(io) => {
                let stream = ws::WsSocket::new(io, ws::Role::Server, limit, &[]);
                link::serve(stream, driver, admitted, &Smol).await;
            }
            None => {
                tracing::warn!(peer = %admitted.peer, "receiver upgrade failed");
                driver.closed(admitted.link);
            }
        }
        // The connection's place in the per-address count ends with it.
        drop(slot);
    })
    .detach();
    response
}

/// Proxies a public request; `is_ws`: a WebSocket handshake, which is
/// carried through when the service accepts it.
async fn proxy(
    head: &RequestHead,
    body: http_types::Body,
    shared: Arc<Shared>,
    at: &At<'_>,
    is_ws: bool,
) -> Response {
    let started_at = std::time::Instant::now();
    let method = head.method.as_str();
    let path = head.uri.path();
    let limits = shared.edge.limits;
    // A Content-Length over the limit is refused before a byte of the body
    // is read, and the body is never read.
    let declared = match head.framing {
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Empty => Some(0),
        BodyFraming::Chunked => None,
    };
    let plan = match shared.body_plan(declared, is_ws, (at.peer, method, path), started_at) {
        Ok(plan) => plan,
        Err(refused) => {
            at.cutter.cut();
            return answer(refused);
        }
    };
    let (request_body, upload) = match plan {
        BodyPlan::AfterUpgrade => (RequestBody::Streaming, None),
        BodyPlan::Empty => (RequestBody::Empty, None),
        BodyPlan::Whole(n) => {
            match smol::future::or(async { Some(body.into_bytes().await) }, async {
                smol::Timer::after(shared.upload_timeout).await;
                None
            })
            .await
            {
                None => {
                    at.cutter.cut();
                    let f = Failure::upload_timed_out(shared.upload_timeout);
                    shared.refused(at.peer, None, method, path, &f, started_at);
                    return answer(Answer::failure(&f));
                }
                // async-h1 ends a body whose connection closed early as if
                // it were whole: a short one is a cut, never a request.
                Some(Ok(b)) if b.len() as u64 == n => (RequestBody::Full(Bytes::from(b)), None),
                read => {
                    at.cutter.cut();
                    let f = match read {
                        Some(Err(e)) => Failure::body_cut_short(e),
                        _ => Failure::body_cut_short(format!(
                            "the connection ended before its {n} bytes"
                        )),
                    };
                    shared.refused(at.peer, None, method, path, &f, started_at);
                    return answer(Answer::failure(&f));
                }
            }
        }
        BodyPlan::Sized(n) => (RequestBody::Sized(n), Some(body)),
        BodyPlan::Streaming => (RequestBody::Streaming, Some(body)),
    };
    let public = PublicRequest {
        method,
        path,
        query: head.uri.query(),
        host_header: head
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok()),
        authority: head.uri.authority().map(|a| a.as_str().to_owned()),
        version: head.version,
        headers: header_pairs(&head.headers),
        peer: at.peer,
        local: at.local,
    };
    let pending = match shared.proxy(public, request_body).await {
        Ok(p) => p,
        Err(a) => {
            if upload.is_some() {
                // Refused before its body was read: the body is not read
                // at all (async-h1 would drain it, however long it is).
                at.cutter.cut();
            }
            return answer(a);
        }
    };
    // The cut fires when a body of unannounced length crosses the limit;
    // the pump has then cancelled the request and stopped reading.
    let mut cut = UploadCut::never();
    let id = pending.id().clone();
    let pump = upload.map(|body| {
        let (limit, upload_cut) = shared.edge.upload_limit();
        cut = upload_cut;
        let pieces = at.parked.guard(pending.meter(body_stream(body)));
        let (driver, id, cutter) = (
            shared.driver.clone(),
            pending.id().clone(),
            at.cutter.clone(),
        );
        crate::rt::spawn(async move {
            if pump_upload(pieces, driver, id, limit).await == UploadEnd::OverLimit {
                cutter.cut();
            }
        })
    });
    let watched = at.client.clone().filter(|_| pump.is_none());
    let first = if let Some(client) = watched {
        // async-h1 does not read the connection while the handler runs:
        // watch it, so a client that leaves before the head cancels the
        // request (and, with `cancel`, the upstream's).
        let id = pending.id().clone();
        let gone = Box::pin(client_gone(client));
        match pending
            .response_unless(
                gone,
                Failure::new(
                    FailureKind::ClientLeft,
                    499,
                    "client went away before the response",
                ),
            )
            .await
        {
            Some(r) => r,
            None => {
                shared.driver.cancel(id);
                return Response::new(http_types::StatusCode::BadGateway);
            }
        }
    } else {
        // A client going away mid-upload is seen by the upload pump.
        pending.response_within(cut, limits.max_body_bytes).await
    };
    let (response_head, stream) = match first {
        Ok(r) => r,
        Err(a) => {
            if pump.is_some() {
                // The pump stops with this answer; the rest of the body is
                // not read.
                at.cutter.cut();
            }
            return answer(a);
        }
    };
    if is_ws {
        if passthrough::is_switch(&response_head) {
            return switch(&response_head, stream, &shared, id).await;
        }
        // Refused by the service: an ordinary answer, and the body the
        // request kept open for the WebSocket's bytes ends empty.
        shared.driver.body(id.clone(), Bytes::new(), true);
    }
    // The upload goes on while the response streams.
    if let Some(pump) = pump {
        pump.detach();
    }
    let mut response = Response::new(status_code(response_head.status));
    let mut length = None;
    let mut content_type = false;
    let mut edit = HeadEdit::default();
    for (name, value) in edit.split_fields(response_head.headers.iter()) {
        if name.eq_ignore_ascii_case("content-length") {
            // async-h1 frames the body itself, from the length it is given.
            length = Some(value);
            continue;
        }
        content_type |= name.eq_ignore_ascii_case("content-type");
        response.append_header(name, value);
    }
    if matches!(response_head.status, 204 | 304) {
        // No body, whatever the head says (the gateway state machine drops
        // what the receiver sends): async-h1 would otherwise frame one,
        // and a client reads those bytes as its next response. async-h1
        // always writes a framing header, here `content-length: 0`, which
        // the edit takes out (`serve_connection`), or replaces on a 304
        // with its service's length of the representation (RFC 9110 §8.6).
        let representation = length.map(str::trim).filter(|v| v.parse::<u64>().is_ok());
        if let Some(value) = representation.filter(|_| response_head.status == 304) {
            edit.length = LengthLine::Set(value.to_owned());
        }
        response.set_body(http_types::Body::empty());
        // Read to its end, so the request ends as answered, not cancelled.
        crate::rt::spawn(async move {
            let mut stream = stream;
            while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {}
        })
        .detach();
    } else {
        // Buffered already: reads come out of the frames' pieces, not
        // through a copy in a buffer of its own.
        let reader = stream
            .map_err(|e| std::io::Error::other(e.to_string()))
            .into_async_read();
        let length = length.and_then(|v| v.trim().parse::<usize>().ok());
        response.set_body(http_types::Body::from_reader(reader, length));
    }
    if !content_type {
        // set_body labels the body octet-stream; the upstream said nothing.
        response.remove_header("content-type");
    }
    if !edit.is_noop() {
        response.ext_mut().insert(edit);
    }
    response
}

/// Answers a WebSocket handshake the service accepted: the 101 goes to the
/// client, and once async-h1 hands over the connection, its bytes are
/// carried both ways until either side ends.
async fn switch(
    head: &anpx_core::ResponseHead,
    events: shell_common::gateway::ResponseStream,
    shared: &Shared,
    id: anpx_core::RequestId,
) -> Response {
    let mut response = Response::new(http_types::StatusCode::SwitchingProtocols);
    for (name, value) in head.headers.iter() {
        // A 101's head is not edited (`crate::head_edit`): the connection
        // is handed over as soon as async-h1 has written it, and an edited
        // head would wait for the next write.
        if carried(value) {
            response.append_header(name, value);
        } else {
            tracing::debug!(
                header = name,
                "a 101's header value that is not ASCII left out"
            );
        }
    }
    let upgraded = response.recv_upgrade().await;
    let driver = shared.driver.clone();
    crate::rt::spawn(async move {
        match upgraded.await {
            Some(io) => websocket::serve_public(io, driver, id, events).await,
            None => {
                tracing::debug!(request = %id, "websocket upgrade failed");
                driver.cancel(id);
            }
        }
    })
    .detach();
    response
}
