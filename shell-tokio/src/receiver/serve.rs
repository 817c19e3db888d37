//! One gateway connection: WebSocket messages into the receiver state
//! machine, requests out to the upstream, responses back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anpx_core::forward;
use anpx_core::receiver::{Receiver as Core, ReceiverOutput, RequestEvent, ResponseBody};
use anpx_core::{canonical_reason, RequestHead, RequestId, ResponseHead};
use async_tungstenite::tungstenite::Message;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::connection::Connection;
use super::ReceiverOptions;
use crate::body::{self, BodySender};
use crate::upstream::{Upstream, UpstreamResponse};
use crate::ws::{close, from_wire, to_wire};

/// What an upstream task reports back to the connection loop.
enum Reply {
    Head {
        request: RequestId,
        head: ResponseHead,
        body: ResponseBody,
    },
    Body {
        request: RequestId,
        data: Bytes,
        last: bool,
    },
    Failed {
        request: RequestId,
        message: String,
    },
}

struct InFlight {
    upload: Option<BodySender>,
    task: Option<AbortHandle>,
}

/// Serves until the connection ends; returns why it ended.
pub(crate) async fn serve(
    conn: Connection,
    options: &ReceiverOptions,
    stop: &mut watch::Receiver<bool>,
) -> String {
    let mut core = Core::new(options.core.clone(), conn.features, Instant::now());
    let (mut sink, mut stream) = conn.ws.split();
    let (reply_tx, mut replies) = mpsc::unbounded_channel::<Reply>();
    let mut in_flight: HashMap<RequestId, InFlight> = HashMap::new();
    let chunk_size = options.core.chunk_size;

    let reason = loop {
        let wake = core.poll_timeout();
        tokio::select! {
            msg = stream.next() => {
                let now = Instant::now();
                match msg {
                    Some(Ok(Message::Close(frame))) => {
                        core.handle_close(now);
                        break format!("gateway closed the connection: {frame:?}");
                    }
                    Some(Ok(m)) => {
                        if let Some(m) = from_wire(m) {
                            core.handle_message(now, m);
                        }
                    }
                    Some(Err(e)) => {
                        core.handle_close(now);
                        break format!("connection error: {e}");
                    }
                    None => {
                        core.handle_close(now);
                        break "connection closed".into();
                    }
                }
            }
            Some(reply) = replies.recv() => apply_reply(&mut core, &mut in_flight, reply),
            () = sleep_until(wake), if wake.is_some() => core.handle_timeout(Instant::now()),
            _ = stop.changed() => {
                core.handle_close(Instant::now());
                let _ = sink.send(close(1001, "receiver shutting down")).await;
                break "shut down".into();
            }
        }
        let mut closing = None;
        while let Some(out) = core.poll_output() {
            match out {
                ReceiverOutput::Transmit(m) => {
                    if sink.feed(to_wire(m)).await.is_err() {
                        closing.get_or_insert_with(|| "write to gateway failed".to_owned());
                    }
                }
                ReceiverOutput::Event(event) => on_event(
                    event,
                    &options.upstream,
                    &reply_tx,
                    &mut in_flight,
                    chunk_size,
                    &mut core,
                ),
                ReceiverOutput::Close { code, reason } => {
                    let _ = sink.send(close(code, &reason)).await;
                    closing = Some(reason);
                }
            }
        }
        if sink.flush().await.is_err() {
            closing.get_or_insert_with(|| "write to gateway failed".to_owned());
        }
        if let Some(reason) = closing {
            core.handle_close(Instant::now());
            break reason;
        }
    };
    // Everything still running belongs to a connection that is gone.
    for (_, f) in in_flight.drain() {
        if let Some(t) = f.task {
            t.abort();
        }
        if let Some(u) = f.upload {
            u.abort("connection to the gateway lost");
        }
    }
    reason
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

fn apply_reply(core: &mut Core, in_flight: &mut HashMap<RequestId, InFlight>, reply: Reply) {
    let now = Instant::now();
    let (request, result) = match reply {
        Reply::Head {
            request,
            head,
            body,
        } => {
            let r = core.respond(now, &request, head, body);
            (request, r)
        }
        Reply::Body {
            request,
            data,
            last,
        } => {
            let r = core.respond_body(now, &request, data, last);
            (request, r)
        }
        Reply::Failed { request, message } => {
            tracing::warn!(%request, %message, "upstream failed");
            let r = core.respond_error(now, &request, &message);
            (request, r)
        }
    };
    if let Err(e) = result {
        // The request was aborted meanwhile, or the response could not be
        // sent: stop the upstream work for it.
        tracing::debug!(%request, error = %e, "response dropped");
        if let Some(f) = in_flight.remove(&request) {
            if let Some(t) = f.task {
                t.abort();
            }
        }
    }
}

fn on_event(
    event: RequestEvent,
    upstream: &Arc<dyn Upstream>,
    replies: &mpsc::UnboundedSender<Reply>,
    in_flight: &mut HashMap<RequestId, InFlight>,
    chunk_size: usize,
    core: &mut Core,
) {
    match event {
        RequestEvent::Head { request, head } => match upstream_request(&head) {
            Ok((req, upload)) => {
                let task = tokio::spawn(call_upstream(
                    upstream.clone(),
                    req,
                    request.clone(),
                    replies.clone(),
                    chunk_size,
                ));
                in_flight.insert(
                    request,
                    InFlight {
                        upload: Some(upload),
                        task: Some(task.abort_handle()),
                    },
                );
            }
            Err(message) => {
                let body = serde_json::json!({ "error": message }).to_string();
                let head = ResponseHead::new(400).with_header("content-type", "application/json");
                let _ = core.respond(
                    Instant::now(),
                    &request,
                    head,
                    ResponseBody::Full(body.into()),
                );
            }
        },
        RequestEvent::Body { request, data } => {
            if let Some(upload) = in_flight.get(&request).and_then(|f| f.upload.as_ref()) {
                upload.send(data);
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
                if let Some(t) = f.task {
                    t.abort();
                }
            }
        }
    }
}

/// The upstream request for a head, with the sender of its body.
fn upstream_request(
    head: &RequestHead,
) -> Result<(crate::upstream::UpstreamRequest, BodySender), String> {
    let length = head
        .headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (upload, body) = body::channel(length);
    let mut builder = http::Request::builder()
        .method(head.method.as_str())
        .uri(forward::upstream_target(head));
    for (name, value) in head.headers.iter() {
        if !forward::is_hop_by_hop(name) {
            builder = builder.header(name, value);
        }
    }
    let request = builder
        .body(body)
        .map_err(|e| format!("Bad request from gateway: {e}"))?;
    Ok((request, upload))
}

async fn call_upstream(
    upstream: Arc<dyn Upstream>,
    request: crate::upstream::UpstreamRequest,
    id: RequestId,
    replies: mpsc::UnboundedSender<Reply>,
    chunk_size: usize,
) {
    let response = match upstream.call(request).await {
        Ok(r) => r,
        Err(e) => {
            let _ = replies.send(Reply::Failed {
                request: id,
                message: format!("Upstream error: {e}"),
            });
            return;
        }
    };
    relay_response(response, id, &replies, chunk_size).await;
}

async fn relay_response(
    response: UpstreamResponse,
    id: RequestId,
    replies: &mpsc::UnboundedSender<Reply>,
    chunk_size: usize,
) {
    let (parts, mut body) = response.into_parts();
    let mut head = ResponseHead {
        status: parts.status.as_u16(),
        reason: canonical_reason(parts.status.as_u16()).to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    forward::strip_hop_by_hop(&mut head.headers);
    let exact = body.size_hint().exact();
    if body.is_end_stream() || exact == Some(0) {
        let _ = replies.send(Reply::Head {
            request: id,
            head,
            body: ResponseBody::Empty,
        });
        return;
    }
    // Small bodies of known size go whole: one frame, which every gateway
    // (the reference included) handles best.
    if exact.is_some_and(|n| n <= chunk_size as u64) {
        let reply = match body.collect().await {
            Ok(b) => Reply::Head {
                request: id,
                head,
                body: ResponseBody::Full(b.to_bytes()),
            },
            Err(e) => Reply::Failed {
                request: id,
                message: format!("Upstream body failed: {e}"),
            },
        };
        let _ = replies.send(reply);
        return;
    }
    if replies
        .send(Reply::Head {
            request: id.clone(),
            head,
            body: ResponseBody::Streaming,
        })
        .is_err()
    {
        return;
    }
    loop {
        let reply = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => Reply::Body {
                    request: id.clone(),
                    data,
                    last: false,
                },
                _ => continue,
            },
            Some(Err(e)) => Reply::Failed {
                request: id.clone(),
                message: format!("Upstream body failed: {e}"),
            },
            None => Reply::Body {
                request: id.clone(),
                data: Bytes::new(),
                last: true,
            },
        };
        let done = !matches!(reply, Reply::Body { last: false, .. });
        if replies.send(reply).is_err() || done {
            return;
        }
    }
}
