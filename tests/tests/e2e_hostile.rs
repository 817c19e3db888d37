//! Both gateways (tokio and smol) under hostile input, on real loopback
//! sockets, each scenario once per gateway shell (receivers are tokio's):
//! public
//! clients that dribble, oversize, malform or smuggle requests or aim odd
//! paths at services they did not match; floods of receiver handshakes; and
//! receivers that send garbage, oversized or endless messages, or answer for
//! requests that are not theirs — while a well-behaved receiver's requests
//! keep succeeding.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anpx_core::auth::{build_header, VerifierConfig};
use anpx_core::frame::{ChunkInfo, Frame, FrameLimits, MessageKind, Meta};
use anpx_core::registry::StaticRegistry;
use anpx_core::Identity;
use anpx_core::{RequestId, ResponseHead};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_common::did_wba::{
    DidWbaAdmission, DocumentFetch, DocumentIo, DocumentSources, FetchError,
};
use shell_common::receiver::BoxFuture;
use shell_common::{Admission, Admitted, GatewayOptions, Refusal};
use support::pairs::{Gw, Shell};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "api.agent.com";
/// Longest wait for anything that should happen promptly on loopback.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A backend that records every path it is asked for.

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// - `*/hold`: never answers (and never reads the request body);
/// - `*/trickle`: answers at once, then a byte every 50 ms forever;
/// - anything else: echoes the body, with the path and body length in
///   headers.
async fn recording_backend() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(answer(req, log).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn answer(req: http::Request<Incoming>, log: Seen) -> http::Response<Body> {
    let path = req.uri().path().to_owned();
    log.0.lock().unwrap().push(path.clone());
    if path.ends_with("/hold") {
        std::future::pending::<()>().await;
    }
    if path.ends_with("/trickle") {
        let drip = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, Infallible>(BodyFrame::data(Bytes::from_static(b"x"))),
                (),
            ))
        });
        return http::Response::new(BodyExt::boxed(StreamBody::new(drip)));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    http::Response::builder()
        .header("x-path", path)
        .header("x-body-len", body.len().to_string())
        .body(Full::new(body).boxed())
        .unwrap()
}

// ---------------------------------------------------------------------------
// Raw HTTP/1 over TCP, so requests go out exactly as written.

/// Sends `request` and reads until the gateway closes (or `PATIENCE`).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The gateway may refuse before reading everything; what it answered is
    // still worth reading.
    let _ = tcp.write_all(request).await;
    String::from_utf8_lossy(&read_to_close(&mut tcp).await).into_owned()
}

async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Waits until the gateway's connection is gone; returns how long that took.
async fn time_until_closed(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {PATIENCE:?}"),
        }
    }
}

/// One counter from /metrics, e.g. `anpx_edge_refused_total{reason="malformed"}`.
async fn metric(gw: &Gw, series: &str) -> u64 {
    let m = send(gw.admin_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Polls a counter until it reaches `want` (counters of closed connections
/// are bumped as the connection task ends).
async fn wait_metric(gw: &Gw, series: &str, want: u64) {
    for _ in 0..100 {
        if metric(gw, series).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{series} never reached {want}: {}",
        metric(gw, series).await
    );
}

fn edge(reason: &str) -> String {
    format!("anpx_edge_refused_total{{reason=\"{reason}\"}}")
}

fn fault(reason: &str) -> String {
    format!("anpx_receiver_faults_total{{reason=\"{reason}\"}}")
}

// ---------------------------------------------------------------------------
// Hostile public clients.

async fn slow_and_silent_clients_are_cut_at_the_header_read_timeout(shell: Shell) {
    let gw = Gw::start(shell, |o| {
        o.edge.header_read_timeout = Duration::from_secs(1)
    })
    .await;
    let addr = gw.addr();

    // Connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Sends part of the HTTP/2 preface, which keeps hyper from choosing a
    // protocol, and stops.
    let mut preface = TcpStream::connect(addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // Dribbles a header line every 200 ms, for longer than the timeout.
    let dribble = TcpStream::connect(addr).await.unwrap();
    let (mut dribble_rx, mut dribble_tx) = dribble.into_split();
    dribble_tx
        .write_all(format!("GET /x HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if dribble_tx
                .write_all(format!("x-drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let dribble_closed = tokio::spawn(async move {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(PATIENCE, dribble_rx.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("a dribbling client held its connection for {PATIENCE:?}"),
            }
        }
    });

    for (what, tcp) in [("silent", &mut silent), ("preface", &mut preface)] {
        let took = time_until_closed(tcp).await;
        assert!(took < Duration::from_secs(3), "{what} held on for {took:?}");
    }
    let took = dribble_closed.await.unwrap();
    assert!(
        took < Duration::from_secs(3),
        "dribble held on for {took:?}"
    );
    dripping.abort();
    // hyper waits for the rest of an HTTP/2 preface until the deadline;
    // anpx-smol speaks HTTP/1 only and refuses the preface's request line
    // at once.
    let (timeouts, malformed) = match shell {
        Shell::Tokio => (3, 0),
        Shell::Smol => (2, 1),
    };
    wait_metric(&gw, &edge("head_timeout"), timeouts).await;
    assert_eq!(metric(&gw, &edge("malformed")).await, malformed);

    // A kept-alive connection that goes idle after a request is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = time_until_closed(&mut idle).await;
    assert!(
        took < Duration::from_secs(3),
        "idle connection held for {took:?}"
    );
}

/// Sends a head declaring `len` body bytes, then a byte every 200 ms;
/// returns what the gateway answered and whether the client was still
/// sending when it did.
async fn trickle(gw: &Gw, len: usize) -> (String, bool) {
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut rx, mut tx) = tcp.into_split();
    tx.write_all(
        format!("POST /good/echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let dripping = tokio::spawn(async move {
        for _ in 0..len {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("_secs)") {
        match tokio::time::timeout(PATIENCE, rx.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer to a trickled upload in {PATIENCE:?}"),
        }
    }
    let sending = !dripping.is_finished();
    dripping.abort();
    (String::from_utf8_lossy(&answer).into_owned(), sending)
}

async fn a_trickled_upload_is_cut_at_the_upload_timeout_with_408(shell: Shell) {
    let (backend, _) = recording_backend().await;
    let gw = Gw::start(shell, |o| {
        o.core.request_timeout = Duration::from_secs(1);
        o.core.upload_timeout = Duration::from_secs(2);
    })
    .await;
    let _receiver = start_receiver(gw.addr(), backend, &["api.agent.com/good"]).await;
    gw.wait_for_receivers(1).await;
    // A byte every 200 ms: never quiet for the request timeout, never done
    // within the upload timeout. A body over one chunk streams to the
    // receiver as it comes; a small one is read whole first; both are cut.
    for len in [100_000, 1000] {
        let (answer, sending) = trickle(&gw, len).await;
        assert_eq!(status_of(&answer), 408, "{len}: {answer}");
        assert!(
            answer.contains("Request body not received within 2 s (upload_timeout_secs)"),
            "{len}: {answer}"
        );
        assert!(sending, "{len}: answered after the whole body");
    }
    wait_metric(&gw, "anpx_requests_failed_total{status=\"408\"}", 1).await;
    // Each ends exactly once, the small body read before its request
    // started as much as the streamed one.
    wait_metric(&gw, "anpx_requests_ended_total{ending=\"timed_out\"}", 2).await;
    let m = send(gw.admin_addr(), "GET", HOST, "/metrics", "").await;
    let ended: u64 = String::from_utf8_lossy(&m.body)
        .lines()
        .filter(|l| l.starts_with("anpx_requests_ended_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(ended, 2, "two uploads, two endings");
}

/// A TCP connection to `addr` from the loopback address `from` (any of
/// 127.0.0.0/8 is this host), so one test can be several clients.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

async fn one_address_cannot_take_a_whole_route(shell: Shell) {
    let (backend, _) = recording_backend().await;
    // One receiver of 4 places; one address may hold half of them.
    let gw = Gw::start(shell, |o| {
        o.core.max_inflight_per_link = 4;
        o.core.max_inflight_percent_per_client = 50;
    })
    .await;
    let _receiver = start_receiver(gw.addr(), backend, &["api.agent.com/good"]).await;
    gw.wait_for_receivers(1).await;
    // 127.0.0.1 starts slow uploads (the head, and a body that never
    // comes): each holds a place until the upload timeout.
    let slow =
        format!("POST /good/echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = connect_from("127.0.0.1", gw.addr()).await;
        tcp.write_all(slow.as_bytes()).await.unwrap();
        held.push(tcp);
    }
    for _ in 0..100 {
        if gw.stats().await.in_flight == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gw.stats().await.in_flight,
        2,
        "the two slow uploads started"
    );
    // A third from the same address is over its share: 429 at once.
    let mut third = connect_from("127.0.0.1", gw.addr()).await;
    third.write_all(slow.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut third).await).into_owned();
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert!(
        answer.contains("max_inflight_percent_per_client"),
        "{answer}"
    );
    assert_eq!(metric(&gw, "anpx_client_share_refused_total").await, 1);
    assert_eq!(
        metric(&gw, "anpx_requests_failed_total{status=\"429\"}").await,
        1
    );
    wait_metric(&gw, "anpx_requests_ended_total{ending=\"refused\"}", 1).await;
    // Another address is served while the first one's uploads hang.
    for _ in 0..2 {
        let mut other = connect_from("127.0.0.2", gw.addr()).await;
        other
            .write_all(
                format!(
                    "POST /good/echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&read_to_close(&mut other).await).into_owned();
        assert_eq!(status_of(&answer), 200, "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
    }
    assert_eq!(gw.stats().await.in_flight, 2, "the slow uploads still hold");
    drop(held);
}

async fn oversized_heads_get_431(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let addr = gw.addr();
    let head = |size: usize| {
        format!(
            "GET /health HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        )
        .into_bytes()
    };
    // Under the 64 KiB default: served.
    let r = raw_exchange(addr, &head(40 * 1024)).await;
    assert_eq!(status_of(&r), 200, "{}", &r[..r.len().min(200)]);
    // Over it (hyper's own default would still take 100 KiB): refused.
    let r = raw_exchange(addr, &head(100 * 1024)).await;
    assert_eq!(status_of(&r), 431, "{}", &r[..r.len().min(200)]);
    // Many small headers adding up count the same.
    let many: String = (0..2000)
        .map(|i| format!("x-h{i}: {}\r\n", "b".repeat(40)))
        .collect();
    let r = raw_exchange(
        addr,
        format!("GET /health HTTP/1.1\r\nHost: {HOST}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&r), 431, "{}", &r[..r.len().min(200)]);
    wait_metric(&gw, &edge("head_too_large"), 2).await;
}

async fn malformed_requests_get_400(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let addr = gw.addr();
    let cases: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost api.agent.com\r\n\r\n",
        b"GET /he alth HTTP/1.1\r\nHost: api.agent.com\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: api.agent.com\r\nContent-Length: ten\r\n\r\n",
    ];
    for request in cases {
        let r = raw_exchange(addr, request).await;
        assert_eq!(
            status_of(&r),
            400,
            "{:?} got {r:?}",
            String::from_utf8_lossy(request)
        );
    }
    wait_metric(&gw, &edge("malformed"), cases.len() as u64).await;
}

async fn request_smuggling_is_refused_or_defused(shell: Shell) {
    let (backend, seen) = recording_backend().await;
    let gw = Gw::start(shell, |_| {}).await;
    let addr = gw.addr();
    let _rx = start_receiver(addr, backend, &["api.agent.com/svc"]).await;

    let refused: [&[u8]; 4] = [
        // Two lengths that differ.
        b"POST /svc/echo HTTP/1.1\r\nHost: api.agent.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /svc/echo HTTP/1.1\r\nHost: api.agent.com\r\nContent-Length: 5, 6\r\n\r\nhello!",
        // A transfer coding that does not end in chunked.
        b"POST /svc/echo HTTP/1.1\r\nHost: api.agent.com\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        // Transfer-Encoding in HTTP/1.0.
        b"POST /svc/echo HTTP/1.0\r\nHost: api.agent.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for request in refused {
        let r = raw_exchange(addr, request).await;
        assert_eq!(
            status_of(&r),
            400,
            "{:?} got {r:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(
        seen.paths().is_empty(),
        "a refused request reached the backend: {:?}",
        seen.paths()
    );

    // Content-Length with Transfer-Encoding, in both orders: the chunked
    // framing wins, the length is dropped, and the connection is closed
    // after the answer (RFC 9112 §6.3), so whatever the length would have
    // covered can never be read as a second request.
    for (first, second) in [
        ("Content-Length: 48", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 48"),
    ] {
        let smuggled = format!("GET /svc/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        let request = format!(
            "POST /svc/echo HTTP/1.1\r\nHost: {HOST}\r\n{first}\r\n{second}\r\n\r\n0\r\n\r\n{smuggled}"
        );
        let r = raw_exchange(addr, request.as_bytes()).await;
        assert_eq!(status_of(&r), 200, "{r:?}");
        assert_eq!(header_of(&r, "x-body-len"), Some("0"), "{r:?}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "two answers: {r:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.paths(), ["/svc/echo", "/svc/echo"]);
}

async fn bodies_over_the_limit_get_413_or_a_cut_response(shell: Shell) {
    const LIMIT: u64 = 1024 * 1024;
    let (backend, seen) = recording_backend().await;
    let gw = Gw::start(shell, |o| o.edge.max_body_bytes = LIMIT).await;
    let addr = gw.addr();
    let _rx = start_receiver(addr, backend, &["api.agent.com/svc"]).await;

    // A declared length over the limit: 413 before a byte of body is sent.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!(
            "POST /svc/echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
            LIMIT + 1
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = String::from_utf8_lossy(&read_to_close(&mut tcp).await).into_owned();
    assert_eq!(status_of(&r), 413, "{r:?}");
    assert!(r.contains("\"limit\":1048576"), "{r:?}");
    assert!(seen.paths().is_empty(), "{:?}", seen.paths());

    // A chunked body at the limit goes through whole.
    let chunk = vec![b'z'; 64 * 1024];
    let chunked = |pieces: usize| {
        let mut body = Vec::new();
        for _ in 0..pieces {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(&chunk);
            body.extend_from_slice(b"\r\n");
        }
        body
    };
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .into_bytes()
    };
    let mut request = head("/svc/echo");
    request.extend(chunked(16));
    request.extend_from_slice(b"0\r\n\r\n");
    let r = raw_exchange(addr, &request).await;
    assert_eq!(status_of(&r), 200, "{}", &r[..r.len().min(300)]);
    assert_eq!(header_of(&r, "x-body-len"), Some("1048576"));

    // One chunk more, before any answer: 413.
    let mut request = head("/svc/hold");
    request.extend(chunked(17));
    let r = raw_exchange(addr, &request).await;
    assert_eq!(status_of(&r), 413, "{r:?}");

    // One chunk more after the answer began: the answer is cut, never
    // finished.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&head("/svc/trickle")).await.unwrap();
    tcp.write_all(&chunked(1)).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
        .await
        .expect("the trickle starts")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let _ = tcp.write_all(&chunked(16)).await;
    let started = Instant::now();
    let rest = read_to_close(&mut tcp).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the response went on for {:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("\r\n0\r\n\r\n"),
        "the cut response looks complete"
    );
    wait_metric(&gw, &edge("body_too_large"), 3).await;
}

/// A body nobody reads (of a request the gateway answers itself, or
/// refuses before routing) is not drained: the connection ends with the
/// answer, however long the client goes on sending.
async fn unread_bodies_are_not_drained(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let addr = gw.addr();
    for (head, status) in [
        ("GET /health", 200),
        // Not the gateway's own any more: proxied, and no receiver serves it.
        ("GET /metrics", 404),
        ("POST /nowhere", 404),
    ] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut rx, mut tx) = tcp.into_split();
        tx.write_all(
            format!("{head} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let dripping = tokio::spawn(async move {
            while tx.write_all(b"1\r\nx\r\n").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(PATIENCE, rx.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => panic!("{head}: the gateway drained an endless body for {PATIENCE:?}"),
            }
        }
        dripping.abort();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(status_of(&answer), status, "{head}: {answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{head}: the connection stayed {:?}",
            started.elapsed()
        );
    }
}

async fn odd_paths_reach_only_the_route_they_match(shell: Shell) {
    let (backend, seen) = recording_backend().await;
    let gw = Gw::start(shell, |_| {}).await;
    let addr = gw.addr();
    // Only /public is exposed; the backend behind it also has /admin.
    let _rx = start_receiver(addr, backend, &["api.agent.com/public"]).await;

    let routed = [
        ("/public/x", "/public/x"),
        ("/public//x", "/public/x"),
        ("//public///x/", "/public/x/"),
        ("/public/./a/../x", "/public/x"),
        ("/%70ublic/x", "/public/x"),
        ("/public/a%2ab", "/public/a%2Ab"),
        ("/public/%7Euser", "/public/~user"),
        ("/public/%252e%252e/admin", "/public/%252e%252e/admin"),
    ];
    for (raw, forwarded) in routed {
        let r = raw_exchange(addr, &get(raw)).await;
        assert_eq!(status_of(&r), 200, "{raw}: {r:?}");
        assert_eq!(header_of(&r, "x-path"), Some(forwarded), "{raw}");
    }
    // Resolved, these leave /public: no route, so nothing is forwarded.
    for raw in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
    ] {
        let r = raw_exchange(addr, &get(raw)).await;
        assert_eq!(status_of(&r), 404, "{raw}: {r:?}");
        assert!(r.contains("\"path\":\"/admin\""), "{raw}: {r:?}");
    }
    // Refused outright.
    for raw in [
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public/..%5cadmin",
        "/public/%00",
        "/public/..;/admin",
        "/..",
        "/public/../../admin",
        "/public/%zz",
    ] {
        let r = raw_exchange(addr, &get(raw)).await;
        assert_eq!(status_of(&r), 400, "{raw}: {r:?}");
    }
    let paths = seen.paths();
    assert!(
        paths.iter().all(|p| p.starts_with("/public/")),
        "the backend saw {paths:?}"
    );
    assert_eq!(paths.len(), routed.len());
    assert_eq!(
        metric(&gw, "anpx_requests_failed_total{status=\"400\"}").await,
        8
    );
}

// ---------------------------------------------------------------------------
// Receiver handshake floods.

/// Admission that holds handshakes carrying `x-test-stall` until released.
struct Stalling(Arc<tokio::sync::Semaphore>);

impl Admission for Stalling {
    fn check<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        _service: &'a str,
        _gateway: &'a shell_common::driver::Driver,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Admitted, Refusal>> + Send + 'a>>
    {
        Box::pin(async move {
            if headers.contains_key("x-test-stall") {
                let _ = self.0.acquire().await.map(|p| p.forget());
            }
            Ok(Admitted {
                identity: Identity::Anonymous,
                allowed: None,
            })
        })
    }
}

type RawWs = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

async fn ws_connect(addr: SocketAddr, headers: &[(&'static str, &str)]) -> Result<RawWs, WsError> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    tokio::time::timeout(PATIENCE, async_tungstenite::tokio::connect_async(request))
        .await
        .expect("handshake answered in time")
        .map(|(ws, _)| ws)
}

/// Connects once a place is free again: a closed connection gives its
/// place back as its task ends, shortly after the gateway stops counting it
/// among the receivers. Until then each try must be refused with `status`.
async fn connect_when_freed(addr: SocketAddr, status: u16) -> RawWs {
    for _ in 0..50 {
        match ws_connect(addr, &[]).await {
            Ok(ws) => return ws,
            Err(e) => assert_eq!(refused_with(Err(e)), status),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the freed place was never given back");
}

fn refused_with(result: Result<RawWs, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("refused without an HTTP answer: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

async fn handshakes_in_progress_are_bounded(shell: Shell) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let admission = Arc::new(Stalling(gate.clone()));
    let gw = Gw::start(shell, |o| {
        o.admission = admission;
        o.edge.max_pending_handshakes = 2;
    })
    .await;
    let addr = gw.addr();
    let stalled: Vec<_> = (0..2)
        .map(|_| tokio::spawn(ws_connect(addr, &[("x-test-stall", "1")])))
        .collect();
    // Both stalled handshakes must be in progress before the third.
    let mut third = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match ws_connect(addr, &[]).await {
            Ok(_) => continue,
            Err(e) => {
                third = Some(refused_with(Err(e)));
                break;
            }
        }
    }
    assert_eq!(third, Some(503));
    assert_eq!(metric(&gw, &edge("handshakes_pending")).await, 1);

    gate.add_permits(2);
    for s in stalled {
        assert!(s.await.unwrap().is_ok(), "a stalled handshake failed");
    }
    // Their places are free again.
    assert!(ws_connect(addr, &[]).await.is_ok());
    assert!(ws_connect(addr, &[]).await.is_ok());
}

async fn receiver_connections_per_address_are_bounded(shell: Shell) {
    let gw = Gw::start(shell, |o| o.edge.max_receivers_per_ip = 3).await;
    let addr = gw.addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(ws_connect(addr, &[]).await.expect("under the limit"));
    }
    gw.wait_for_receivers(3).await;
    assert_eq!(refused_with(ws_connect(addr, &[]).await), 429);
    assert_eq!(metric(&gw, &edge("receivers_per_ip")).await, 1);
    // A closed connection gives its place back.
    let mut one = held.pop().unwrap();
    one.close(None).await.unwrap();
    drop(one);
    gw.wait_for_receivers(2).await;
    connect_when_freed(addr, 429).await;
}

/// Receiver connections are capped in all, whatever their addresses: past
/// `max_receivers` a handshake gets 503 before any check that costs
/// anything, counted and logged; the receivers already connected keep
/// serving, and a connection that ends gives its place back.
async fn receiver_connections_in_all_are_bounded(shell: Shell) {
    let (backend, _) = recording_backend().await;
    let gw = Gw::start(shell, |o| o.edge.max_receivers = 3).await;
    let addr = gw.addr();
    let _good = start_receiver(addr, backend, &["api.agent.com/good"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(ws_connect(addr, &[]).await.expect("under the cap"));
    }
    gw.wait_for_receivers(3).await;
    assert_eq!(refused_with(ws_connect(addr, &[]).await), 503);
    assert_eq!(metric(&gw, &edge("receivers")).await, 1);
    let refused = "anpx_receiver_handshakes_refused_total{reason=\"receivers\"}";
    assert_eq!(metric(&gw, refused).await, 1);
    // Those connected are untouched: the good one still serves.
    gw.wait_for_receivers(3).await;
    let r = send(addr, "GET", HOST, "/good/while-full", "").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    // A closed connection gives its place back, once.
    let mut one = held.pop().unwrap();
    one.close(None).await.unwrap();
    drop(one);
    gw.wait_for_receivers(2).await;
    held.push(connect_when_freed(addr, 503).await);
    gw.wait_for_receivers(3).await;
    let before = metric(&gw, refused).await;
    assert_eq!(refused_with(ws_connect(addr, &[]).await), 503);
    assert_eq!(metric(&gw, refused).await, before + 1);
    // Connections dropped without a close frame free theirs too.
    held.clear();
    gw.wait_for_receivers(1).await;
    let mut back = Vec::new();
    for _ in 0..100 {
        if back.len() == 2 {
            break;
        }
        if let Ok(ws) = ws_connect(addr, &[]).await {
            back.push(ws);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(back.len(), 2, "the places of dropped connections leaked");
    let r = send(addr, "GET", HOST, "/good/after", "").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
}

/// The handshake's 101 goes out only once the receiver's routes are live:
/// a receiver told it is connected may be sent requests at once.
async fn a_receiver_is_routable_when_its_handshake_is_answered(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let mut held = Vec::new();
    for i in 0..20 {
        let service = format!("api.agent.com/r{i}");
        held.push(
            ws_connect(gw.addr(), &[("x-anpx-services", &service)])
                .await
                .unwrap(),
        );
        let routes = gw.stats().await.routes;
        assert!(
            routes.iter().any(|(url, _)| *url == service),
            "{service} not routable yet: {routes:?}"
        );
    }
}

/// Document fetches and file reads, counted and never served: a check that
/// reaches for a DID document fails, and the count shows it tried.
struct CountingDocuments(Arc<AtomicUsize>);

impl DocumentIo for CountingDocuments {
    fn get(&self, _fetch: DocumentFetch) -> BoxFuture<Result<Bytes, FetchError>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Err(FetchError::Status(404)) })
    }

    fn unblock(
        &self,
        _work: Box<dyn FnOnce() -> Option<Bytes> + Send>,
    ) -> BoxFuture<Option<Bytes>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { None })
    }
}

/// A flood of handshakes whose DID-WBA headers fail the cheap checks
/// (syntax, DID method, timestamp) is refused without a single document
/// fetch, and every refused handshake gives its slot back.
async fn did_wba_failures_are_cheap(shell: Shell) {
    const PENDING: usize = 4;
    let documents = Arc::new(AtomicUsize::new(0));
    let admission = DidWbaAdmission::new(
        VerifierConfig::default(),
        DocumentSources {
            directory: None,
            tls: shell_common::tls::client_config(None).unwrap(),
        },
        Arc::new(CountingDocuments(documents.clone())),
        Arc::new(StaticRegistry::new([])),
    );
    let gw = Gw::start(shell, |o| {
        o.admission = Arc::new(admission);
        o.edge.max_pending_handshakes = PENDING;
    })
    .await;
    let addr = gw.addr();
    let dir = anpx_tests::testdata_dir().join("did-wba-vectors");
    let doc = std::fs::read(dir.join("secp256k1-did.json")).unwrap();
    let pem = std::fs::read_to_string(dir.join("secp256k1-key-1_private.pem")).unwrap();
    let signed = |at: std::time::SystemTime| {
        build_header(
            &doc,
            &pem,
            "127.0.0.1",
            at,
            fastrand::u128(..).to_le_bytes(),
        )
        .unwrap()
    };
    let now = std::time::SystemTime::now();
    let headers = [
        "Bearer x".to_owned(),
        signed(now).replace("did:wba:", "did:web:"),
        signed(now - Duration::from_secs(600)),
    ];
    let mut refused = 0u64;
    // Batches as large as the pending limit: a slot a refusal kept would
    // turn the next batch's handshakes into 503s.
    for round in 0..6 {
        let batch: Vec<_> = (0..PENDING)
            .map(|i| {
                let header = headers[(round + i) % headers.len()].clone();
                tokio::spawn(async move { ws_connect(addr, &[("authorization", &header)]).await })
            })
            .collect();
        for handshake in batch {
            assert_eq!(refused_with(handshake.await.unwrap()), 401);
            refused += 1;
        }
    }
    assert_eq!(
        documents.load(Ordering::Relaxed),
        0,
        "a bad header cost a fetch"
    );
    let m = send(gw.admin_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("anpx_receiver_auth_refused_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, refused, "{text}");
    assert_eq!(metric(&gw, &edge("handshakes_pending")).await, 0);
}

// ---------------------------------------------------------------------------
// Hostile receivers, with a well-behaved one under load beside them.

/// Requests sent through the good receiver for as long as the abuse lasts.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

fn start_load(addr: SocketAddr) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let tasks = (0..3)
        .map(|worker| {
            let stop = stop.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = format!("worker {worker} request {i}");
                    let path = format!("/good/echo/{worker}/{i}");
                    let r = send(addr, "POST", HOST, &path, body.clone()).await;
                    if r.status != 200 || r.body != body.as_bytes() || r.header("x-path") != path {
                        return Err(format!(
                            "{path}: {} {:?}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    Load { stop, done, tasks }
}

impl Load {
    /// Stops the load and checks every request succeeded.
    async fn finish(self) {
        // At least a few requests overlap the abuse.
        for _ in 0..200 {
            if self.done.load(Ordering::Relaxed) >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("a good request failed: {e}"));
        }
        assert!(self.done.load(Ordering::Relaxed) >= 20);
    }
}

/// A gateway with a good receiver on `/good` under load, and a hostile raw
/// receiver serving `/evil`.
struct Arena {
    gw: Gw,
    _good: shell_tokio::receiver::Receiver,
    load: Load,
}

async fn arena(shell: Shell, tune: impl FnOnce(&mut GatewayOptions)) -> (Arena, RawWs) {
    let (backend, _) = recording_backend().await;
    let gw = Gw::start(shell, tune).await;
    let good = start_receiver(gw.addr(), backend, &["api.agent.com/good"]).await;
    let evil = ws_connect(gw.addr(), &[("x-anpx-services", "api.agent.com/evil")])
        .await
        .expect("the hostile receiver connects");
    gw.wait_for_receivers(2).await;
    let load = start_load(gw.addr());
    (
        Arena {
            gw,
            _good: good,
            load,
        },
        evil,
    )
}

impl Arena {
    fn addr(&self) -> SocketAddr {
        self.gw.addr()
    }

    /// Sends a public request to the hostile receiver in the background.
    fn request(&self, path: &str) -> tokio::task::JoinHandle<Reply> {
        let addr = self.addr();
        let path = path.to_owned();
        tokio::spawn(async move { send(addr, "GET", HOST, &path, "").await })
    }

    async fn finish(self) {
        self.load.finish().await;
        // The good receiver is still connected.
        let s = self.gw.stats().await;
        assert!(
            s.links.iter().any(|l| l.routes == ["api.agent.com/good"]),
            "{:?}",
            s.links
        );
    }
}

/// The next request frame the gateway sends the raw receiver.
async fn next_request(ws: &mut RawWs) -> Frame {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a request in time")
            .expect("connection open")
            .expect("readable");
        if let WsMessage::Binary(b) = msg {
            return Frame::decode(b, &FrameLimits::default()).unwrap();
        }
    }
}

/// Reads until the gateway closes; the close code if it sent one.
async fn closed_with(ws: &mut RawWs) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Err(_) => panic!("the gateway kept the hostile receiver for {PATIENCE:?}"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn response_frame(id: &RequestId, chunk: Option<ChunkInfo>, head: bool, body: &[u8]) -> WsMessage {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk,
        meta: head.then(|| Meta::Response(ResponseHead::new(200))),
        body: (!body.is_empty()).then(|| Bytes::copy_from_slice(body)),
    };
    WsMessage::Binary(frame.encode().unwrap())
}

fn chunk(index: u32) -> Option<ChunkInfo> {
    Some(ChunkInfo {
        index,
        total: None,
        final_marker: None,
    })
}

async fn garbage_frames_close_the_hostile_receiver(shell: Shell) {
    let (arena, mut evil) = arena(shell, |_| {}).await;
    evil.send(WsMessage::Binary(Bytes::from_static(b"\x00 not a frame")))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut evil).await, Some(1002));
    wait_metric(&arena.gw, &fault("bad_frame"), 1).await;

    // Below the frames: bytes that are not WebSocket framing at all.
    let mut tcp = TcpStream::connect(arena.addr()).await.unwrap();
    tcp.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nx-anpx-services: api.agent.com/evil2\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // Reserved opcode 0x3, unmasked: two protocol errors in one byte pair.
    tcp.write_all(&[0x83, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .await
        .unwrap();
    time_until_closed(&mut tcp).await;
    wait_metric(&arena.gw, &fault("bad_frame"), 2).await;
    arena.finish().await;
}

async fn messages_over_the_size_limit_close_the_hostile_receiver(shell: Shell) {
    let (arena, mut evil) = arena(shell, |o| o.core.frame_limits.max_frame_len = 1024 * 1024).await;
    let _ = evil
        .send(WsMessage::Binary(Bytes::from(vec![0u8; 2 * 1024 * 1024])))
        .await;
    closed_with(&mut evil).await;
    wait_metric(&arena.gw, &fault("too_big"), 1).await;
    arena.gw.wait_for_receivers(1).await;
    arena.finish().await;
}

async fn endless_empty_chunks_close_the_hostile_receiver(shell: Shell) {
    let (arena, mut evil) = arena(shell, |_| {}).await;
    let client = arena.request("/evil/x");
    let id = next_request(&mut evil).await.request_id;
    for i in 0..5000 {
        if evil
            .send(response_frame(&id, chunk(i), false, b""))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(closed_with(&mut evil).await, Some(1008));
    let r = tokio::time::timeout(PATIENCE, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 502);
    wait_metric(&arena.gw, &fault("flood"), 1).await;
    arena.finish().await;
}

async fn chunks_past_the_message_limit_fail_that_request_only(shell: Shell) {
    let (arena, mut evil) =
        arena(shell, |o| o.core.reassembly.max_message_size = 1024 * 1024).await;
    let client = arena.request("/evil/big");
    let id = next_request(&mut evil).await.request_id;
    // Meta-last layout: the body is held for a head that never comes.
    let piece = vec![b'e'; 64 * 1024];
    for i in 0..40 {
        evil.send(response_frame(&id, chunk(i), false, &piece))
            .await
            .unwrap();
    }
    let r = tokio::time::timeout(PATIENCE, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("max_response_bytes"),
        "{:?}",
        r.json()
    );
    // A configured limit, not a fault of the receiver.
    assert_eq!(metric(&arena.gw, &fault("invalid_response")).await, 0);
    // The connection stays, and its next answer goes through.
    let client = arena.request("/evil/small");
    let id = next_request(&mut evil).await.request_id;
    evil.send(response_frame(&id, None, true, b"fine"))
        .await
        .unwrap();
    let r = tokio::time::timeout(PATIENCE, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"fine"[..]));
    arena.finish().await;
}

async fn answers_for_requests_never_sent_are_dropped(shell: Shell) {
    let (arena, mut evil) = arena(shell, |_| {}).await;
    for i in 0..200 {
        let id = RequestId::from(format!("00000000-0000-4000-8000-{i:012}").as_str());
        evil.send(response_frame(&id, None, true, b"unasked"))
            .await
            .unwrap();
    }
    wait_metric(&arena.gw, "anpx_stray_frames_total", 200).await;
    // Dropped, not fatal: a late answer after a 504 looks the same.
    let client = arena.request("/evil/x");
    let id = next_request(&mut evil).await.request_id;
    evil.send(response_frame(&id, None, true, b"asked"))
        .await
        .unwrap();
    let r = tokio::time::timeout(PATIENCE, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"asked"[..]));
    arena.finish().await;
}

async fn answering_another_connections_request_closes_the_forger(shell: Shell) {
    let (arena, mut evil) = arena(shell, |_| {}).await;
    let mut victim = ws_connect(arena.addr(), &[("x-anpx-services", "api.agent.com/victim")])
        .await
        .unwrap();
    arena.gw.wait_for_receivers(3).await;
    let client = arena.request("/victim/secret");
    let id = next_request(&mut victim).await.request_id;
    // The forger learned the id somehow and answers first.
    evil.send(response_frame(&id, None, true, b"forged"))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut evil).await, Some(1002));
    wait_metric(&arena.gw, &fault("foreign_request"), 1).await;
    // The real answer still reaches the client.
    victim
        .send(response_frame(&id, None, true, b"real"))
        .await
        .unwrap();
    let r = tokio::time::timeout(PATIENCE, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"real"[..]));
    arena.finish().await;
}

async fn a_ping_flood_closes_the_hostile_receiver(shell: Shell) {
    let (arena, mut evil) = arena(shell, |_| {}).await;
    for i in 0..3000 {
        let json = WsMessage::Text(format!(r#"{{"type":"ping","timestamp":{i}}}"#).into());
        if evil.send(json).await.is_err()
            || evil
                .send(WsMessage::Ping(Bytes::from_static(b"p")))
                .await
                .is_err()
        {
            break;
        }
    }
    assert_eq!(closed_with(&mut evil).await, Some(1008));
    wait_metric(&arena.gw, &fault("flood"), 1).await;
    arena.finish().await;
}

// ---------------------------------------------------------------------------
// The unsigned authentication message.

async fn an_unsigned_authentication_message_grants_nothing(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let addr = gw.addr();
    // Open mode, nothing declared: anonymous, granted the wildcard.
    let mut ws = ws_connect(addr, &[]).await.unwrap();
    gw.wait_for_receivers(1).await;
    let link = |s: &serde_json::Value| {
        let l = &s["links"][0];
        (l["id"].clone(), l["identity"].clone(), l["routes"].clone())
    };
    let before = send(gw.admin_addr(), "GET", HOST, "/stats", "")
        .await
        .json();
    assert_eq!(before["links"][0]["identity"]["kind"], "anonymous");
    assert_eq!(before["links"][0]["routes"], serde_json::json!(["*"]));

    let claim =
        r#"{"type":"authentication","data":{"did_token":"did:wba:victim.example:agents:a1"}}"#;
    ws.send(WsMessage::Text(claim.into())).await.unwrap();
    wait_metric(&gw, "anpx_unsigned_auth_ignored_total", 1).await;

    let after = send(gw.admin_addr(), "GET", HOST, "/stats", "")
        .await
        .json();
    assert_eq!(link(&after), link(&before));
    assert_eq!(after["routes"], before["routes"]);
    assert_eq!(after["links"].as_array().unwrap().len(), 1);
    assert!(!after.to_string().contains("victim.example"), "{after}");
    // Still connected: the message is ignored, not punished.
    ws.send(WsMessage::Text(r#"{"type":"ping","timestamp":1}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(matches!(pong, Some(Ok(WsMessage::Text(_)))), "{pong:?}");
}

async fn bodies_held_past_the_receiver_budget_close_the_hostile_receiver(shell: Shell) {
    let (arena, mut evil) = arena(shell, |o| {
        o.core.buffers.per_link = 1 << 20;
        o.core.buffers.total = 8 << 20;
    })
    .await;
    // Eleven bodies of 100 KiB in the meta-last layout, each far under
    // every per-message limit, whose heads never come: the eleventh takes
    // the connection past 1 MiB.
    let piece = vec![b'e'; 100 * 1024];
    let mut clients = Vec::new();
    for i in 0..11 {
        clients.push(arena.request(&format!("/evil/{i}")));
        let id = next_request(&mut evil).await.request_id;
        evil.send(response_frame(&id, chunk(0), false, &piece))
            .await
            .unwrap();
        if i == 4 {
            // What it makes the gateway hold shows on /metrics.
            wait_metric(&arena.gw, "anpx_buffered_bytes", 5 * 100 * 1024).await;
        }
    }
    assert_eq!(closed_with(&mut evil).await, Some(1008));
    for client in clients {
        let r = tokio::time::timeout(PATIENCE, client)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    }
    wait_metric(&arena.gw, &fault("over_budget"), 1).await;
    arena.gw.wait_for_receivers(1).await;
    arena.finish().await;
}

async fn messages_over_the_receiver_budget_are_refused_by_size(shell: Shell) {
    // The frame limit is left at its default; the budget is what applies.
    let (arena, mut evil) = arena(shell, |o| {
        o.core.buffers.per_link = 1 << 20;
        o.core.buffers.total = 8 << 20;
    })
    .await;
    let _ = evil
        .send(WsMessage::Binary(Bytes::from(vec![0u8; (1 << 20) + 1])))
        .await;
    closed_with(&mut evil).await;
    wait_metric(&arena.gw, &fault("too_big"), 1).await;
    arena.gw.wait_for_receivers(1).await;
    arena.finish().await;
}

async fn a_flow_controlled_receivers_messages_are_limited_to_a_window(shell: Shell) {
    let (arena, _evil) = arena(shell, |_| {}).await;
    // A receiver with flow-control never needs a message much over its
    // 1 MiB window, so one of 2 MiB is refused by size (with the default
    // 32 MiB limit it was read whole first).
    let mut windowed = ws_connect(
        arena.addr(),
        &[
            ("x-anpx-services", "api.agent.com/windowed"),
            ("x-anpx-features", "streaming,flow-control"),
        ],
    )
    .await
    .expect("the flow-controlled receiver connects");
    let _ = windowed
        .send(WsMessage::Binary(Bytes::from(vec![0u8; 2 << 20])))
        .await;
    // Closed (the close frame may be lost to the reset of a socket with
    // unread bytes), counted as too big, not as a bad frame.
    closed_with(&mut windowed).await;
    wait_metric(&arena.gw, &fault("too_big"), 1).await;
    assert_eq!(metric(&arena.gw, &fault("bad_frame")).await, 0);
    arena.finish().await;
}

async fn streaming_is_granted_only_with_flow_control(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let agreed = |offer: &'static str| {
        let addr = gw.addr();
        async move {
            let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
            let headers = request.headers_mut();
            headers.insert(
                "x-anpx-services",
                HeaderValue::from_static("api.agent.com/s"),
            );
            headers.insert("x-anpx-features", HeaderValue::from_static(offer));
            let (_ws, response) =
                tokio::time::timeout(PATIENCE, async_tungstenite::tokio::connect_async(request))
                    .await
                    .expect("handshake answered in time")
                    .expect("admitted");
            response
                .headers()
                .get("x-anpx-features")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        }
    };
    // Streamed without credit windows, a response arrives as fast as the
    // receiver sends it, however slowly its client reads.
    let without = agreed("streaming,cancel").await;
    assert!(!without.contains("streaming"), "{without}");
    assert!(without.contains("cancel"), "{without}");
    let with = agreed("streaming,flow-control").await;
    assert!(
        with.contains("streaming") && with.contains("flow-control"),
        "{with}"
    );
}

/// A raw receiver connection on which a binary message of `len` bytes,
/// `frame`, is sent masked up to `sent` bytes and left unfinished.
struct Unfinished {
    tcp: TcpStream,
    masked: Vec<u8>,
    sent: usize,
}

impl Unfinished {
    async fn open(addr: SocketAddr, frame: &[u8], sent: usize) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nx-anpx-services: api.agent.com/unfinished\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{:?}",
            String::from_utf8_lossy(&head)
        );
        let mask = [0x5a, 0xa5, 0x3c, 0xc3];
        let mut masked = vec![0x82, 0x80 | 127];
        masked.extend_from_slice(&(frame.len() as u64).to_be_bytes());
        masked.extend_from_slice(&mask);
        masked.extend(frame.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let mut this = Unfinished {
            tcp,
            masked,
            sent: 0,
        };
        this.send_to(sent).await;
        this
    }

    /// Sends the message up to `upto` bytes of its payload.
    async fn send_to(&mut self, upto: usize) {
        let end = (14 + upto).min(self.masked.len());
        // The peer may have closed us: what it wrote no longer matters.
        let _ = self.tcp.write_all(&self.masked[self.sent..end]).await;
        self.sent = end;
    }
}

/// Receivers each keeping a large message unfinished: what tungstenite
/// holds of them is charged against the total as it arrives, so they cannot
/// take the gateway past it; the one that would is closed (`over_budget`),
/// the others and the good receiver stay, and a finished message gives its
/// charge back.
async fn unfinished_messages_are_charged_against_the_total(shell: Shell) {
    // No load: bodies on their way to the load's clients count in the same
    // total, which would make the count below vary.
    let (backend, _) = recording_backend().await;
    let gw = Gw::start(shell, |o| {
        o.core.buffers.per_link = 1 << 20;
        o.core.buffers.total = 3 << 20;
    })
    .await;
    let _good = start_receiver(gw.addr(), backend, &["api.agent.com/good"]).await;
    gw.wait_for_receivers(1).await;
    // A whole ANPX frame just under the 1 MiB message limit: an answer for
    // a request never sent, which is dropped when it arrives whole.
    let id = RequestId::from("00000000-0000-4000-8000-000000000001");
    let WsMessage::Binary(frame) = response_frame(&id, None, true, &vec![b'u'; 1000 * 1024]) else {
        unreachable!()
    };
    let sent = 900 * 1024;
    let mut hostile = Vec::new();
    for i in 0..3 {
        hostile.push(Unfinished::open(gw.addr(), &frame, sent).await);
        // Each unfinished message shows as it arrives.
        wait_metric(&gw, "anpx_buffer_arriving_bytes", (i + 1) * 800 * 1024).await;
    }
    gw.wait_for_receivers(4).await;
    assert_eq!(metric(&gw, &fault("over_budget")).await, 0);
    // A fourth would take the total (3 MiB) past: one connection goes.
    hostile.push(Unfinished::open(gw.addr(), &frame, sent).await);
    wait_metric(&gw, &fault("over_budget"), 1).await;
    gw.wait_for_receivers(4).await;
    let arriving = metric(&gw, "anpx_buffer_arriving_bytes").await;
    let charged = arriving + metric(&gw, "anpx_buffered_bytes").await;
    assert!(charged <= 3 << 20, "charged {charged}");
    assert!(arriving >= 2 * 800 * 1024, "arriving {arriving}");
    // The survivors finish their messages: each is taken whole (dropped as
    // stray) and its charge given back.
    for h in &mut hostile {
        h.send_to(frame.len()).await;
    }
    wait_metric(&gw, "anpx_stray_frames_total", 3).await;
    for _ in 0..100 {
        if metric(&gw, "anpx_buffer_arriving_bytes").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&gw, "anpx_buffer_arriving_bytes").await, 0);
    assert_eq!(metric(&gw, &fault("over_budget")).await, 1);
    gw.wait_for_receivers(4).await;
    // The good receiver still serves.
    let r = send(gw.addr(), "GET", HOST, "/good/after", "").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
}

/// A flow-controlled receiver that takes requests and never answers holds
/// no memory: however many it holds, other receivers' requests start and
/// are answered (credit granted and unused is not charged against the
/// total, which here has room for four windows).
async fn requests_held_unanswered_keep_no_one_else_out(shell: Shell) {
    let (backend, _) = recording_backend().await;
    let gw = Gw::start(shell, |o| o.core.buffers.total = 4 << 20).await;
    let _good = start_receiver(gw.addr(), backend, &["api.agent.com/good"]).await;
    let mut silent = ws_connect(
        gw.addr(),
        &[
            ("x-anpx-services", "api.agent.com/held"),
            ("x-anpx-features", "streaming,flow-control"),
        ],
    )
    .await
    .expect("the silent receiver connects");
    gw.wait_for_receivers(2).await;
    let held: Vec<_> = (0..12)
        .map(|i| {
            let addr = gw.addr();
            tokio::spawn(async move { send(addr, "GET", HOST, &format!("/held/{i}"), "").await })
        })
        .collect();
    for _ in 0..12 {
        next_request(&mut silent).await;
    }
    for i in 0..8 {
        let r = send(gw.addr(), "GET", HOST, &format!("/good/{i}"), "").await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    }
    // The held requests end when their receiver goes.
    drop(silent);
    for h in held {
        let r = h.await.expect("the held request's task");
        assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    }
}

for_every_gateway!(
    requests_held_unanswered_keep_no_one_else_out,
    unfinished_messages_are_charged_against_the_total,
    one_address_cannot_take_a_whole_route,
    a_flow_controlled_receivers_messages_are_limited_to_a_window,
    a_trickled_upload_is_cut_at_the_upload_timeout_with_408,
    bodies_held_past_the_receiver_budget_close_the_hostile_receiver,
    streaming_is_granted_only_with_flow_control,
    messages_over_the_receiver_budget_are_refused_by_size,
    slow_and_silent_clients_are_cut_at_the_header_read_timeout,
    oversized_heads_get_431,
    malformed_requests_get_400,
    request_smuggling_is_refused_or_defused,
    bodies_over_the_limit_get_413_or_a_cut_response,
    odd_paths_reach_only_the_route_they_match,
    handshakes_in_progress_are_bounded,
    receiver_connections_per_address_are_bounded,
    receiver_connections_in_all_are_bounded,
    a_receiver_is_routable_when_its_handshake_is_answered,
    garbage_frames_close_the_hostile_receiver,
    messages_over_the_size_limit_close_the_hostile_receiver,
    endless_empty_chunks_close_the_hostile_receiver,
    chunks_past_the_message_limit_fail_that_request_only,
    answers_for_requests_never_sent_are_dropped,
    answering_another_connections_request_closes_the_forger,
    a_ping_flood_closes_the_hostile_receiver,
    an_unsigned_authentication_message_grants_nothing,
    did_wba_failures_are_cheap,
    unread_bodies_are_not_drained,
);
