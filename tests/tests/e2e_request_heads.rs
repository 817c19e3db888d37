//! What of a public request's head reaches a receiver, on both gateways,
//! over raw sockets: the host it is routed by (RFC 9112 §3.2: one valid
//! `Host`, an absolute-form target's authority first), header names with
//! underscores (dropped unless configured), and a framing edge case both
//! gateways must treat alike (`Content-Length: 5, 5`). Raw receivers
//! report exactly what they were sent.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anpx_core::frame::{Frame, FrameLimits, MessageKind, Meta};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message as WsMessage;
use bytes::Bytes;
use futures_util::StreamExt;
use support::pairs::{Gw, Shell};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(10);

/// What a raw receiver was sent: one `(host, header names, body)` per
/// request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Sent>>>);

/// One request as a receiver got it: its host, header names and body.
type Sent = (String, Vec<String>, Vec<u8>);

impl Seen {
    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

type RawWs = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

/// A raw receiver declaring `services` (none: the open mode's wildcard),
/// answering every request `200` with its name, and recording it.
async fn raw_receiver(addr: SocketAddr, services: Option<&str>, name: &'static str) -> Seen {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(s) = services {
        request
            .headers_mut()
            .insert("x-anpx-services", HeaderValue::from_str(s).unwrap());
    }
    let (ws, _) = async_tungstenite::tokio::connect_async(request)
        .await
        .expect("the raw receiver connects");
    let seen = Seen::default();
    tokio::spawn(serve(ws, name, seen.clone()));
    seen
}

async fn serve(mut ws: RawWs, name: &'static str, seen: Seen) {
    let mut partial: HashMap<RequestId, (Option<RequestHead>, Vec<u8>)> = HashMap::new();
    while let Some(Ok(msg)) = ws.next().await {
        let WsMessage::Binary(bytes) = msg else {
            continue;
        };
        let Ok(frame) = Frame::decode(bytes, &FrameLimits::default()) else {
            continue;
        };
        let entry = partial.entry(frame.request_id.clone()).or_default();
        if let Some(Meta::Request(head)) = frame.meta {
            entry.0 = Some(head);
        }
        if let Some(b) = frame.body {
            entry.1.extend_from_slice(&b);
        }
        if frame.chunk.is_some_and(|c| !c.is_final()) {
            continue;
        }
        let Some((Some(head), body)) = partial.remove(&frame.request_id) else {
            continue;
        };
        let host = head.headers.get("host").unwrap_or("").to_owned();
        let names = head.headers.iter().map(|(n, _)| n.to_owned()).collect();
        seen.0.lock().unwrap().push((host, names, body));
        let answer = Frame {
            kind: MessageKind::Response,
            request_id: frame.request_id,
            chunk: None,
            meta: Some(Meta::Response(
                ResponseHead::new(200).with_header("content-length", name.len().to_string()),
            )),
            body: Some(Bytes::from_static(name.as_bytes())),
        };
        if ws
            .send(WsMessage::Binary(answer.encode().unwrap()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Sends `request` as written; the status and body of the answer.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut out)).await;
    status_and_body(&out)
}

/// Sends `pieces` one write at a time, a moment apart; the status and
/// body of the answer.
async fn exchange_in_pieces(addr: SocketAddr, pieces: &[String]) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for piece in pieces {
        let _ = tcp.write_all(piece.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut out)).await;
    status_and_body(&out)
}

fn status_and_body(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// A gateway with receivers for `a.example/admin`, `b.example/admin` and
/// the wildcard.
struct Hosts {
    gw: Gw,
    a: Seen,
    b: Seen,
    wild: Seen,
}

async fn hosts(shell: Shell, keep_underscores: bool) -> Hosts {
    let gw = Gw::start(shell, |o| o.edge.keep_underscore_headers = keep_underscores).await;
    let a = raw_receiver(gw.addr(), Some("a.example/admin"), "a").await;
    let b = raw_receiver(gw.addr(), Some("b.example/admin"), "b").await;
    let wild = raw_receiver(gw.addr(), None, "wild").await;
    gw.wait_for_receivers(3).await;
    Hosts { gw, a, b, wild }
}

async fn hosts_are_checked_and_the_authority_routes(shell: Shell) {
    let h = hosts(shell, false).await;
    let addr = h.gw.addr();
    let mut failures = Vec::new();
    // (what, request, status, answering receiver, host it saw)
    let table: &[(&str, &str, u16, &str, &str)] = &[
        (
            "no Host",
            "GET /admin HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
            "",
            "",
        ),
        (
            "two Hosts",
            "GET /admin HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            400,
            "",
            "",
        ),
        (
            "user info in Host",
            "GET /admin HTTP/1.1\r\nHost: a.example@b.example\r\nConnection: close\r\n\r\n",
            400,
            "",
            "",
        ),
        (
            "a space in Host",
            "GET /admin HTTP/1.1\r\nHost: a.example b.example\r\nConnection: close\r\n\r\n",
            400,
            "",
            "",
        ),
        (
            "a port out of range",
            "GET /admin HTTP/1.1\r\nHost: a.example:99999\r\nConnection: close\r\n\r\n",
            400,
            "",
            "",
        ),
        (
            "an empty Host",
            "GET /admin HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
            400,
            "",
            "",
        ),
        (
            "an absolute-form target",
            "GET http://a.example/admin HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            200,
            "a",
            "a.example",
        ),
        (
            "an origin-form target",
            "GET /admin HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            200,
            "b",
            "b.example",
        ),
        (
            "a host with a port",
            "GET /x HTTP/1.1\r\nHost: c.example:8080\r\nConnection: close\r\n\r\n",
            200,
            "wild",
            "c.example:8080",
        ),
    ];
    for (what, request, status, by, host) in table {
        let (got, body) = exchange(addr, request).await;
        let seen: Vec<(&str, Vec<Sent>)> = vec![
            ("a", h.a.take()),
            ("b", h.b.take()),
            ("wild", h.wild.take()),
        ];
        let reached: Vec<(&str, String)> = seen
            .iter()
            .flat_map(|(n, reqs)| reqs.iter().map(move |(host, _, _)| (*n, host.clone())))
            .collect();
        let want: Vec<(&str, String)> = if by.is_empty() {
            Vec::new()
        } else {
            vec![(*by, host.to_string())]
        };
        if got != *status || reached != want {
            failures.push(format!(
                "{what}: {got} {body:?}, reached {reached:?}; wanted {status}, {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{shell:?}:\n  {}",
        failures.join("\n  ")
    );
}

/// HTTP/2's `:authority` routes too (the tokio gateway; async-h1 is
/// HTTP/1 only), and the receiver sees it as `host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_authority_routes_and_is_the_host_seen() {
    let h = hosts(Shell::Tokio, false).await;
    let tcp = TcpStream::connect(h.gw.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://a.example/admin")
        .header("host", "b.example")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = h.a.take();
    assert_eq!(seen.len(), 1, "a.example's receiver answered");
    assert_eq!(seen[0].0, "a.example");
    assert!(h.b.take().is_empty() && h.wild.take().is_empty());
}

async fn underscore_headers_are_dropped_unless_kept(shell: Shell) {
    let request = "GET /admin HTTP/1.1\r\nHost: a.example\r\nContent_Length: 5\r\nX_Api_Key: k\r\nX-Ok: 1\r\nConnection: close\r\n\r\n";
    for keep in [false, true] {
        let h = hosts(shell, keep).await;
        let (status, _) = exchange(h.gw.addr(), request).await;
        assert_eq!(status, 200, "keep={keep}");
        let seen = h.a.take();
        let names = &seen[0].1;
        assert!(names.iter().any(|n| n == "x-ok"), "{names:?}");
        for n in ["content_length", "x_api_key"] {
            assert_eq!(
                names.iter().any(|m| m == n),
                keep,
                "{shell:?} keep={keep}: {n} in {names:?}"
            );
        }
    }
}

async fn framing_edge_cases_are_treated_alike(shell: Shell) {
    let h = hosts(shell, false).await;
    let addr = h.gw.addr();
    let mut failures = Vec::new();
    // A list of lengths is refused, even of one length repeated: hyper
    // refuses it, so both gateways do.
    let (status, body) = exchange(
        addr,
        "POST /admin HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    let seen = h.a.take();
    if status != 400 || !seen.is_empty() {
        failures.push(format!(
            "Content-Length: 5, 5: {status} {body:?}, {} reached a receiver",
            seen.len()
        ));
    }
    // Chunk extensions are ignored (RFC 9112 §7.1.1), whether the body
    // comes with the head or after it.
    let chunked = "POST /admin HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    for (what, pieces) in [
        (
            "with the head",
            vec![format!("{chunked}5;a=b\r\nhello\r\n0\r\n\r\n")],
        ),
        (
            "after the head",
            vec![
                chunked.to_owned(),
                "3;name=\"quoted;value\"\r\nhel\r\n2 ;x\r\n".to_owned(),
                "lo\r\n0;last\r\n\r\n".to_owned(),
            ],
        ),
    ] {
        let (status, body) = exchange_in_pieces(addr, &pieces).await;
        let seen = h.a.take();
        let bodies: Vec<String> = seen
            .iter()
            .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        if status != 200 || body != "a" || bodies != ["hello"] {
            failures.push(format!(
                "chunk extensions {what}: {status} {body:?}, the receiver got {bodies:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{shell:?}:\n  {}",
        failures.join("\n  ")
    );
}

for_every_gateway!(
    hosts_are_checked_and_the_authority_routes,
    underscore_headers_are_dropped_unless_kept,
    framing_edge_cases_are_treated_alike,
);
