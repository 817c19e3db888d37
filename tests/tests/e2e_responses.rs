//! What a receiver's response head can do to a public client's connection,
//! on both gateways, over real sockets: a raw receiver answers with crafted
//! heads and bodies (statuses outside 200–599, header lines broken by CR
//! or LF, bodies on responses that have none, lengths the body
//! contradicts, thousands of headers), and a client that keeps its
//! connection open checks that what it reads is either the gateway's 502,
//! the response as it should be framed, or a cut connection — and never
//! bytes it would take for the answer to its *next* request.

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anpx_core::edge::ResponseLimits;
use anpx_core::frame::{Frame, FrameLimits, MessageKind, Meta};
use anpx_core::{RequestId, ResponseHead};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::Message as WsMessage;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::pairs::{Gw, Shell};
use tokio::net::TcpStream;

const HOST: &str = "api.agent.com";
const PATIENCE: Duration = Duration::from_secs(10);

/// Bytes that look like a whole response to a client that reads them
/// where a response should start.
const SMUGGLED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nx-smuggled: 1\r\n\r\nsmuggled";

/// What the client must see for the first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This status, a whole body, and the connection carries the next
    /// request to its own answer.
    Status(u16),
    /// The connection is cut: the head (this status) then a failed body,
    /// or, when the gateway knew before it wrote the head, no answer.
    Cut(u16),
}

struct Case {
    name: &'static str,
    method: &'static str,
    head: ResponseHead,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, head: ResponseHead, body: &[u8], expect: Expect) -> Case {
    Case {
        name,
        method: "GET",
        head,
        body: body.to_vec(),
        expect,
    }
}

/// The scenario table: one crafted answer per case.
fn cases() -> Vec<Case> {
    use Expect::*;
    let many = (0..32_768).fold(ResponseHead::new(200), |h, i| {
        h.with_header(format!("x-{i}"), "1")
    });
    let mut head_request = case(
        "a HEAD response with a body",
        ResponseHead::new(200).with_header("content-length", SMUGGLED.len().to_string()),
        SMUGGLED,
        Status(200),
    );
    head_request.method = "HEAD";
    vec![
        case("status 600", ResponseHead::new(600), b"x", Status(502)),
        case("status 999", ResponseHead::new(999), b"x", Status(502)),
        case("a final 100", ResponseHead::new(100), SMUGGLED, Status(502)),
        case("a final 103", ResponseHead::new(103), SMUGGLED, Status(502)),
        case(
            "an unasked 101",
            ResponseHead::new(101),
            SMUGGLED,
            Status(502),
        ),
        case(
            "CRLF in a header name",
            ResponseHead::new(200).with_header(
                "x-a\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\nx-b",
                "1",
            ),
            b"",
            Status(502),
        ),
        case(
            "CRLF in a header value",
            ResponseHead::new(200)
                .with_header("x-a", "1\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK"),
            b"",
            Status(502),
        ),
        case(
            "NUL in a header value",
            ResponseHead::new(200).with_header("x-a", "1\0"),
            b"",
            Status(502),
        ),
        case("32768 headers", many, b"", Status(502)),
        case(
            "headers over 64 KiB",
            ResponseHead::new(200).with_header("x-big", "a".repeat(70 * 1024)),
            b"",
            Status(502),
        ),
        case(
            "conflicting lengths",
            ResponseHead::new(200).with_header("content-length", "5, 6"),
            b"hello",
            Status(502),
        ),
        case(
            "a 204 with a body",
            ResponseHead::new(204),
            SMUGGLED,
            Status(204),
        ),
        case(
            "a 204 declaring a length",
            ResponseHead::new(204).with_header("content-length", SMUGGLED.len().to_string()),
            SMUGGLED,
            Status(204),
        ),
        case(
            "a 304 with a body",
            ResponseHead::new(304),
            SMUGGLED,
            Status(304),
        ),
        head_request,
        case(
            "a body shorter than its length",
            ResponseHead::new(200).with_header("content-length", "100"),
            b"only ten b",
            Cut(200),
        ),
        case(
            "a body longer than its length",
            ResponseHead::new(200).with_header("content-length", "5"),
            &[b"hello".as_slice(), SMUGGLED].concat(),
            Cut(200),
        ),
        case(
            "a plain answer (control)",
            ResponseHead::new(200).with_header("content-length", "5"),
            b"hello",
            Status(200),
        ),
    ]
}

type RawWs = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

async fn raw_receiver(addr: SocketAddr) -> RawWs {
    let request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let (ws, _) = async_tungstenite::tokio::connect_async(request)
        .await
        .expect("the raw receiver connects");
    ws
}

fn response(id: &RequestId, head: ResponseHead, body: &[u8]) -> WsMessage {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk: None,
        meta: Some(Meta::Response(head)),
        body: (!body.is_empty()).then(|| Bytes::copy_from_slice(body)),
    };
    WsMessage::Binary(frame.encode().unwrap())
}

/// Answers requests for `/first` with the case's crafted response and any
/// other with `200 second`, until the gateway closes the connection.
async fn serve(mut ws: RawWs, head: ResponseHead, body: Vec<u8>) {
    while let Some(Ok(msg)) = ws.next().await {
        let WsMessage::Binary(bytes) = msg else {
            continue;
        };
        let Ok(frame) = Frame::decode(bytes, &FrameLimits::default()) else {
            continue;
        };
        let Some(Meta::Request(request)) = &frame.meta else {
            continue;
        };
        let answer = if request.path.ends_with("/first") {
            response(&frame.request_id, head.clone(), &body)
        } else {
            let second = ResponseHead::new(200).with_header("content-length", "6");
            response(&frame.request_id, second, b"second")
        };
        if ws.send(answer).await.is_err() {
            return;
        }
    }
}

fn request(method: &str, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .body(Empty::new())
        .unwrap()
}

/// Runs one case on a fresh gateway with the default response limits:
/// what went wrong, if anything.
async fn run_case(shell: Shell, case: &Case) -> Result<(), String> {
    run_case_with(shell, case, ResponseLimits::default()).await
}

/// [`run_case`] on a gateway capping response heads at `limits`.
async fn run_case_with(shell: Shell, case: &Case, limits: ResponseLimits) -> Result<(), String> {
    let gw = Gw::start(shell, |o| o.core.response = limits).await;
    let ws = raw_receiver(gw.addr()).await;
    gw.wait_for_receivers(1).await;
    tokio::spawn(serve(ws, case.head.clone(), case.body.clone()));
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let first = match sender
        .send_request(request(case.method, "/case/first"))
        .await
    {
        Ok(r) => r,
        Err(e) if matches!(case.expect, Expect::Cut(_)) && e.is_incomplete_message() => {
            return Ok(())
        }
        Err(e) => return Err(format!("first request failed: {e}")),
    };
    let status = first.status().as_u16();
    let body = first.into_body().collect().await;
    match case.expect {
        Expect::Status(want) => {
            if status != want {
                return Err(format!("first answer {status}, not {want}"));
            }
            let body = body.map_err(|e| format!("first body failed: {e}"))?;
            if body.to_bytes().windows(8).any(|w| w == b"smuggled") {
                return Err("the first body carries the smuggled bytes".into());
            }
            sender
                .ready()
                .await
                .map_err(|e| format!("connection not reusable: {e}"))?;
            let second = sender
                .send_request(request("GET", "/case/second"))
                .await
                .map_err(|e| format!("second request failed: {e}"))?;
            let smuggled = second.headers().contains_key("x-smuggled");
            let status = second.status().as_u16();
            let body = second
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("second body failed: {e}"))?
                .to_bytes();
            if smuggled || status != 200 || body != "second" {
                return Err(format!(
                    "the second request read {status} {:?} (smuggled: {smuggled})",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        Expect::Cut(want) => {
            if status != want {
                return Err(format!("first answer {status}, not {want}"));
            }
            if let Ok(b) = body {
                return Err(format!(
                    "a contradicted length passed as a whole body: {:?}",
                    String::from_utf8_lossy(&b.to_bytes())
                ));
            }
            // The connection is closed, never reused.
            match tokio::time::timeout(PATIENCE, conn).await {
                Ok(_) => {}
                Err(_) => return Err("the connection stayed open after a cut body".into()),
            }
        }
    }
    Ok(())
}

async fn crafted_response_heads_never_reach_a_client_unchecked(shell: Shell) {
    let mut failures = Vec::new();
    for case in cases() {
        match tokio::time::timeout(PATIENCE * 2, run_case(shell, &case)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", case.name)),
            Err(_) => failures.push(format!("{}: no outcome in time", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{shell:?} gateway:\n  {}",
        failures.join("\n  ")
    );
}

for_every_gateway!(crafted_response_heads_never_reach_a_client_unchecked);

/// `gateway.max_response_headers` and `gateway.max_response_header_bytes`
/// set the caps: a head at them passes, one over either gets 502 and the
/// connection carries the next request.
async fn configured_response_header_caps_apply(shell: Shell) {
    let limits = ResponseLimits {
        max_headers: 4,
        max_header_bytes: 200,
    };
    let headers = |n: usize, len: usize| {
        (0..n).fold(ResponseHead::new(200), |h, i| {
            h.with_header(format!("x-{i}"), "v".repeat(len))
        })
    };
    // Each field counts name, value and 4 bytes: x-N (3) + 40 + 4 = 47.
    let cases = [
        case(
            "4 headers, 188 bytes",
            headers(4, 40),
            b"",
            Expect::Status(200),
        ),
        case("5 headers", headers(5, 1), b"", Expect::Status(502)),
        case(
            "4 headers, 204 bytes",
            headers(4, 44),
            b"",
            Expect::Status(502),
        ),
    ];
    for case in &cases {
        let outcome = tokio::time::timeout(PATIENCE * 2, run_case_with(shell, case, limits)).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{shell:?} gateway, {}: {e}", case.name),
            Err(_) => panic!("{shell:?} gateway, {}: no outcome in time", case.name),
        }
    }
}

for_every_gateway!(configured_response_header_caps_apply);

/// The same table over HTTP/2, which only the tokio gateway serves
/// (async-h1 is HTTP/1 only): statuses and headers HTTP/2 could carry are
/// refused the same way, and a length the body contradicts resets the
/// stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crafted_response_heads_over_http2() {
    let mut failures = Vec::new();
    for case in cases() {
        let outcome = tokio::time::timeout(PATIENCE * 2, async {
            let gw = Gw::start(Shell::Tokio, |_| {}).await;
            let ws = raw_receiver(gw.addr()).await;
            gw.wait_for_receivers(1).await;
            tokio::spawn(serve(ws, case.head.clone(), case.body.clone()));
            let tcp = TcpStream::connect(gw.addr()).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(case.method)
                .uri(format!("http://{HOST}/case/first"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let first = match sender.send_request(req).await {
                Ok(r) => r,
                // The stream reset before its head: cut too.
                Err(_) if matches!(case.expect, Expect::Cut(_)) => return Ok(()),
                Err(e) => return Err(format!("request failed: {e}")),
            };
            let status = first.status().as_u16();
            let body = first.into_body().collect().await.map(|b| b.to_bytes());
            match case.expect {
                Expect::Status(want) if status != want => {
                    Err(format!("answer {status}, not {want}"))
                }
                Expect::Status(_) => match body {
                    Ok(b) if b.windows(8).any(|w| w == b"smuggled") => {
                        Err("the body carries the smuggled bytes".into())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("body failed: {e}")),
                },
                Expect::Cut(want) if status != want => Err(format!("answer {status}, not {want}")),
                Expect::Cut(_) => match body {
                    Ok(b) => Err(format!(
                        "a contradicted length passed as a whole body: {:?}",
                        String::from_utf8_lossy(&b)
                    )),
                    Err(_) => Ok(()),
                },
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", case.name)),
            Err(_) => failures.push(format!("{}: no outcome in time", case.name)),
        }
    }
    assert!(failures.is_empty(), "HTTP/2:\n  {}", failures.join("\n  "));
}

/// The head a client reads when the receiver answers `head` and `body`,
/// and what follows it: `expect_body` bytes, waited for, and whatever
/// else comes within a short wait.
async fn raw_answer(
    shell: Shell,
    head: ResponseHead,
    body: &[u8],
    expect_body: usize,
) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gw::start(shell, |_| {}).await;
    let ws = raw_receiver(gw.addr()).await;
    gw.wait_for_receivers(1).await;
    tokio::spawn(serve(ws, head, body.to_vec()));
    let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
    tcp.write_all(format!("GET /case/first HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Reads once more into `read`, in time and before the connection ends.
    async fn more(tcp: &mut TcpStream, read: &mut Vec<u8>, shell: Shell, what: &str) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{shell:?}: no {what} in time"))
            .unwrap();
        assert!(n > 0, "{shell:?}: closed before the {what}: {read:?}");
        read.extend_from_slice(&buf[..n]);
    }
    let mut read = Vec::new();
    let end = loop {
        if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        more(&mut tcp, &mut read, shell, "whole head").await;
    };
    // The body the client should get, then whatever else the gateway
    // writes soon after it.
    while read.len() - end < expect_body {
        more(&mut tcp, &mut read, shell, "body").await;
    }
    let mut buf = [0u8; 4096];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await {
        read.extend_from_slice(&buf[..n]);
    }
    let rest = read.split_off(end);
    (String::from_utf8(read).expect("a UTF-8 head"), rest)
}

/// The header lines of `head` named `name`, values as written.
fn fields<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// What a client reads is what the service said, on both gateways: no
/// `content-length` on a 204 (RFC 9110 §8.6 forbids one), a 304's
/// `content-length` as the service gave it (the length of the
/// representation, not of the empty body), and a header value with
/// non-ASCII text (`obs-text`) passed on, not dropped.
async fn answers_keep_what_the_service_said(shell: Shell) {
    let (head, rest) = raw_answer(
        shell,
        ResponseHead::new(204).with_header("x-a", "1"),
        b"",
        0,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 204"), "{shell:?}: {head}");
    assert_eq!(
        fields(&head, "content-length"),
        Vec::<&str>::new(),
        "{shell:?}: {head}"
    );
    assert_eq!(
        fields(&head, "transfer-encoding"),
        Vec::<&str>::new(),
        "{shell:?}: {head}"
    );
    assert_eq!(fields(&head, "x-a"), ["1"], "{shell:?}: {head}");
    assert!(
        rest.is_empty(),
        "{shell:?}: bytes after a 204's head: {rest:?}"
    );

    let not_modified = ResponseHead::new(304)
        .with_header("content-length", "1234")
        .with_header("etag", "\"v1\"");
    let (head, rest) = raw_answer(shell, not_modified, b"", 0).await;
    assert!(head.starts_with("HTTP/1.1 304"), "{shell:?}: {head}");
    assert_eq!(
        fields(&head, "content-length"),
        ["1234"],
        "{shell:?}: {head}"
    );
    assert_eq!(fields(&head, "etag"), ["\"v1\""], "{shell:?}: {head}");
    assert!(
        rest.is_empty(),
        "{shell:?}: bytes after a 304's head: {rest:?}"
    );

    let named = ResponseHead::new(200)
        .with_header("content-length", "2")
        .with_header("x-file", "caf\u{e9} \u{65c5}.txt")
        .with_header("x-plain", "yes");
    let (head, rest) = raw_answer(shell, named, b"ok", 2).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{shell:?}: {head}");
    assert_eq!(
        fields(&head, "x-file"),
        ["caf\u{e9} \u{65c5}.txt"],
        "{shell:?}: {head}"
    );
    assert_eq!(fields(&head, "x-plain"), ["yes"], "{shell:?}: {head}");
    assert_eq!(fields(&head, "content-length"), ["2"], "{shell:?}: {head}");
    assert_eq!(rest, b"ok", "{shell:?}");
}

for_every_gateway!(answers_keep_what_the_service_said);
