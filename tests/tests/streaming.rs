//! Streaming, flow control and cancellation end to end, over every
//! (gateway shell, receiver shell) pair: server-sent events arrive event by
//! event; a client that goes away gets its upstream request aborted; an
//! upstream that fails mid-body gets the client's connection cut; one
//! download nobody reads does not hold up the other requests; a stream
//! that goes quiet for longer than the request timeout is held, and one
//! quiet for longer than the body idle timeout is cut.

#[macro_use]
mod support;

use support::pairs::{Gw, Rx, Shell};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::send;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "api.agent.com";

/// What the backend saw.
#[derive(Default)]
struct Seen {
    /// `/svc/hold` requests that arrived.
    held: AtomicUsize,
    /// `/svc/hold` requests whose connection went away before an answer.
    held_dropped: AtomicUsize,
    /// Bytes of `/svc/big` the receiver has pulled from the backend.
    big_sent: AtomicUsize,
}

struct OnDrop(Arc<Seen>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.held_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// - `/svc/sse`: ten events, one every 100 ms, each carrying the time it
///   was emitted;
/// - `/svc/hold`: never answers, and counts when it is abandoned;
/// - `/svc/fail`: announces 1 MiB, sends 100 KiB, then fails;
/// - `/svc/big`: 256 MiB, as fast as it is read, counting what left;
/// - `/svc/quiet/<ms>`: an event, `<ms>` of silence, a second event, end;
/// - anything else: `ok`.
async fn backend(
    seen: Arc<Seen>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let body: Body = match path.as_str() {
        "/svc/sse" => {
            let events = futures_util::stream::unfold(0u32, |i| async move {
                if i == 10 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let event = format!("id: {i}\ndata: {}\n\n", unix_micros());
                Some((Ok(Frame::data(Bytes::from(event))), i + 1))
            });
            return Ok(http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(events)))
                .unwrap());
        }
        "/svc/hold" => {
            seen.held.fetch_add(1, Ordering::SeqCst);
            let _guard = OnDrop(seen.clone());
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/svc/fail" => {
            // The failure comes after the head and the first piece are out.
            let pieces = futures_util::stream::unfold(0, |i| async move {
                match i {
                    0 => Some((Ok(Frame::data(Bytes::from(vec![b'x'; 100 * 1024]))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Some((Err(std::io::Error::other("upstream broke")), 2))
                    }
                    _ => None,
                }
            });
            return Ok(http::Response::builder()
                .header("content-length", (1 << 20).to_string())
                .body(BodyExt::boxed(StreamBody::new(pieces)))
                .unwrap());
        }
        "/svc/big" => {
            let seen = seen.clone();
            let piece = Bytes::from(vec![b'b'; 64 * 1024]);
            let pieces =
                futures_util::StreamExt::map(futures_util::stream::iter(0..4096), move |_| {
                    seen.big_sent.fetch_add(piece.len(), Ordering::SeqCst);
                    Ok(Frame::data(piece.clone()))
                });
            BodyExt::boxed(StreamBody::new(pieces))
        }
        quiet if quiet.starts_with("/svc/quiet/") => {
            let gap: u64 = quiet["/svc/quiet/".len()..].parse().unwrap();
            let events = futures_util::stream::unfold(0u32, move |i| async move {
                match i {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(gap)).await;
                        Some((Ok(Frame::data(Bytes::from_static(b"data: second\n\n"))), 2))
                    }
                    _ => None,
                }
            });
            return Ok(http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(events)))
                .unwrap());
        }
        _ => http_body_util::Full::new(Bytes::from_static(b"ok"))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    };
    Ok(http::Response::new(body))
}

async fn start_backend() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(tcp),
                        service_fn(move |req| backend(s.clone(), req)),
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Polls `cond` until it holds or `within` passes.
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens a raw connection and sends a GET; returns the socket unread.
async fn raw_get(gateway: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(gateway).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tcp
}

async fn events_arrive_as_they_are_emitted(gw: Shell, rx: Shell) {
    let (backend, _) = start_backend().await;
    let g = Gw::start(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let req = http::Request::builder()
        .uri(format!("http://{}/svc/sse", g.addr()))
        .header("host", HOST)
        .body(
            http_body_util::Empty::<Bytes>::new()
                .map_err(|e: Infallible| match e {})
                .boxed(),
        )
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::combinators::BoxBody<Bytes, Infallible>>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("head in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut text = String::new();
    let mut lags = Vec::new();
    while lags.len() < 10 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("event in time")
            .expect("body continues")
            .expect("body ok");
        let arrived = unix_micros();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        text.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let emitted: u64 = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("bad event {event:?}"));
            lags.push(arrived.saturating_sub(emitted));
        }
    }
    // Event by event, not batched: each one is at the client before the
    // upstream emits the next. (The 50 ms figure is a timing claim, held
    // by the streaming benchmark, not by a test on a shared machine.)
    let worst = lags.iter().max().copied().unwrap();
    assert!(
        worst < 100_000,
        "each event reaches the client before the next is emitted; lags in µs: {lags:?}"
    );
}

async fn a_client_going_away_aborts_the_upstream_request(gw: Shell, rx: Shell) {
    let (backend, seen) = start_backend().await;
    let g = Gw::start(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let tcp = raw_get(g.addr(), "/svc/hold").await;
    wait_until(
        "the upstream to get the request",
        Duration::from_secs(10),
        || seen.held.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(seen.held_dropped.load(Ordering::SeqCst), 0);
    drop(tcp);
    wait_until(
        "the upstream request to be aborted",
        Duration::from_secs(10),
        || seen.held_dropped.load(Ordering::SeqCst) == 1,
    )
    .await;
    let stats = g.stats().await;
    assert_eq!(stats.totals.cancels_sent, 1);
    assert_eq!(stats.in_flight, 0);
}

async fn an_upstream_failing_mid_body_cuts_the_client(gw: Shell, rx: Shell) {
    let (backend, _) = start_backend().await;
    let g = Gw::start(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let mut tcp = raw_get(g.addr(), "/svc/fail").await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
    let read = read.unwrap_or_else(|_| {
        panic!(
            "the gateway ends the connection in time; got {} bytes: {:?}",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(300)])
        )
    });
    let text = String::from_utf8_lossy(&got);
    let head_end = text.find("\r\n\r\n").expect("the head came first") + 4;
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..head_end]);
    let body = &got[head_end..];
    // Whatever the framing, the body must not look complete: neither the
    // announced length nor a chunked terminator.
    let head = text[..head_end].to_ascii_lowercase();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        assert!(
            body.len() < len.trim().parse::<usize>().unwrap(),
            "a cut body must be shorter than announced"
        );
    } else {
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(
            !body.ends_with(b"0\r\n\r\n"),
            "a cut chunked body must not end with the last chunk"
        );
    }
    // A reset is as good as a close; both end the read.
    let _ = read;
}

async fn an_unread_download_does_not_hold_up_other_requests(gw: Shell, rx: Shell) {
    let (backend, seen) = start_backend().await;
    let g = Gw::start(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    // The client asks for 256 MiB and reads nothing but what its socket
    // buffers take.
    let stalled = raw_get(g.addr(), "/svc/big").await;
    wait_until("the download to start", Duration::from_secs(10), || {
        seen.big_sent.load(Ordering::SeqCst) > 0
    })
    .await;
    // Meanwhile small requests on the same receiver go through.
    let started = Instant::now();
    for i in 0..200 {
        let r = send(g.addr(), "GET", HOST, &format!("/svc/small/{i}"), "").await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(g.stats().await.in_flight, 1, "only the download is left");
    // All that while, flow control kept the receiver from pulling the
    // download: a window per hop and what the sockets buffer, well short
    // of the 256 MiB.
    let pulled = seen.big_sent.load(Ordering::SeqCst);
    assert!(
        pulled < 32 << 20,
        "the receiver pulled {pulled} bytes of a download nobody reads"
    );
    drop(stalled);
}

/// GETs `/svc/quiet/<gap_ms>` through a gateway whose request timeout is
/// 1 s and whose body idle timeout is `body_idle`; what the client read,
/// and whether the body ended cleanly.
async fn quiet_stream(gw: Shell, rx: Shell, gap_ms: u64, body_idle: Duration) -> (String, bool) {
    let (backend, _) = start_backend().await;
    let g = Gw::start(gw, |o| {
        o.core.request_timeout = Duration::from_secs(1);
        o.core.body_idle_timeout = body_idle;
    })
    .await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let mut tcp = raw_get(g.addr(), &format!("/svc/quiet/{gap_ms}")).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
        .await
        .expect("the stream ends or is cut in time")
        .ok();
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // A chunked body that ended cleanly closes with the zero-size chunk.
    let clean = text.ends_with("0\r\n\r\n");
    (text, clean)
}

async fn a_quiet_stream_outlives_the_request_timeout(gw: Shell, rx: Shell) {
    // Two seconds of silence after the head: twice the request timeout,
    // within the body idle timeout.
    let (text, clean) = quiet_stream(gw, rx, 2000, Duration::from_secs(4)).await;
    assert!(text.contains("data: first"), "{text}");
    assert!(text.contains("data: second"), "{text}");
    assert!(clean, "the stream ends cleanly: {text:?}");
}

async fn a_stream_quiet_past_the_body_idle_timeout_is_cut(gw: Shell, rx: Shell) {
    let (text, clean) = quiet_stream(gw, rx, 4000, Duration::from_secs(2)).await;
    assert!(text.contains("data: first"), "{text}");
    assert!(!text.contains("data: second"), "{text}");
    assert!(!clean, "a cut stream must not look complete: {text:?}");
}

for_every_pair!(
    a_quiet_stream_outlives_the_request_timeout,
    a_stream_quiet_past_the_body_idle_timeout_is_cut,
    events_arrive_as_they_are_emitted,
    a_client_going_away_aborts_the_upstream_request,
    an_upstream_failing_mid_body_cuts_the_client,
    an_unread_download_does_not_hold_up_other_requests,
);
