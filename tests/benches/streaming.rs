//! Streaming benchmark, both shells:
//!
//! - **memory**: 1 GiB up and 1 GiB down through gateway + receiver, each
//!   shell in a fresh process that holds everything (backend, gateway,
//!   receiver, client), so its peak RSS (`VmHWM`) bounds each part's;
//!   it must stay under 64 MiB.
//! - **head-of-line**: 1 000 small requests through one receiver, alone and
//!   then while one 1 GiB download is not read by its client, side by side;
//!   the second rate must be at least 90% of the first.
//!
//! - **sse**: an upstream emits a server-sent event every 100 ms; each must
//!   reach the client within 50 ms of being emitted.
//!
//! `cargo bench -p anpx-tests --bench streaming` (add `-- memory`,
//! `-- rate` or `-- sse` for one part). Exits non-zero when a bound is
//! missed.

#[path = "../tests/support/pairs.rs"]
#[allow(dead_code)]
mod pairs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pairs::{Gw, Rx, Shell};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const GIB: u64 = 1 << 30;
const PIECE: usize = 64 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const HOST: &str = "api.agent.com";

type Body = BoxBody<Bytes, Infallible>;

/// `/svc/up` counts and drops the body and answers with the count;
/// `/svc/down?size=N` streams N bytes made on the fly; anything else: `ok`.
async fn backend(req: http::Request<Incoming>) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/svc/up" {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data() {
                n += d.len() as u64;
            }
        }
        return Ok(http::Response::new(
            Full::new(Bytes::from(n.to_string())).boxed(),
        ));
    }
    if path == "/svc/down" {
        let size: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("size="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        return Ok(http::Response::new(generated(size)));
    }
    if path == "/svc/sse" {
        let events = futures_util::stream::unfold(0u32, |i| async move {
            if i == SSE_EVENTS {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let event = format!("id: {i}\ndata: {}\n\n", unix_micros());
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), i + 1))
        });
        return Ok(http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(BodyExt::boxed(StreamBody::new(events)))
            .unwrap());
    }
    Ok(http::Response::new(
        Full::new(Bytes::from_static(b"ok")).boxed(),
    ))
}

const SSE_EVENTS: u32 = 50;

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Lag of each event, emission to arrival at the client, in µs.
async fn sse(shell: Shell) -> Vec<u64> {
    let (g, _r) = pair(shell).await;
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(format!("http://{}/svc/sse", g.addr()))
        .header("host", HOST)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let mut body = client.request(req).await.expect("sse response").into_body();
    let mut text = String::new();
    let mut lags = Vec::new();
    while let Some(frame) = body.frame().await {
        let arrived = unix_micros();
        let Ok(data) = frame.expect("sse body").into_data() else {
            continue;
        };
        text.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let emitted: u64 = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|v| v.parse().ok())
                .expect("event carries its emission time");
            lags.push(arrived.saturating_sub(emitted));
        }
    }
    assert_eq!(lags.len(), SSE_EVENTS as usize);
    lags
}

/// `size` bytes in 64 KiB pieces, all slices of one buffer: nothing held.
fn generated(size: u64) -> Body {
    let piece = Bytes::from(vec![0x5a; PIECE]);
    let pieces = size.div_ceil(PIECE as u64);
    let stream = futures_util::stream::iter(0..pieces).map(move |i| {
        let len = (size - i * PIECE as u64).min(PIECE as u64) as usize;
        Ok::<_, Infallible>(Frame::data(piece.slice(..len)))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(backend))
                    .await;
            });
        }
    });
    addr
}

async fn pair(shell: Shell) -> (Gw, Rx) {
    let backend = start_backend().await;
    // Streamed bodies have no size limit by default; only the upload
    // limit (1 GiB by default) is raised past the 1 GiB sent.
    let g = Gw::start(shell, |o| o.edge.max_body_bytes = 2 * GIB).await;
    let r = Rx::start_with(shell, g.addr(), backend, |_| {}).await;
    (g, r)
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// The child: one shell, 1 GiB each way, then the peak RSS.
async fn memory_child(shell: Shell) {
    let (g, _r) = pair(shell).await;
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let baseline = vm_hwm_kib();

    let started = Instant::now();
    let upload = generated(GIB);
    let req = http::Request::post(format!("http://{}/svc/up", g.addr()))
        .header("host", HOST)
        .body(upload)
        .unwrap();
    let resp = client.request(req).await.expect("upload response");
    assert_eq!(resp.status(), 200);
    let echoed = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed, GIB.to_string().as_bytes(), "the upstream got 1 GiB");
    let up_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let req = http::Request::get(format!("http://{}/svc/down?size={GIB}", g.addr()))
        .header("host", HOST)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let resp = client.request(req).await.expect("download response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.expect("download body").into_data() {
            n += d.len() as u64;
        }
    }
    assert_eq!(n, GIB, "the client got 1 GiB");
    let down_secs = started.elapsed().as_secs_f64();
    println!(
        "baseline_kib={baseline} peak_kib={} up_mib_s={:.0} down_mib_s={:.0}",
        vm_hwm_kib(),
        1024.0 / up_secs,
        1024.0 / down_secs
    );
}

/// Time for `n` small requests, 8 at a time.
async fn small_requests(gateway: SocketAddr, n: usize) -> Duration {
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                    let req = http::Request::get(format!("http://{gateway}/svc/small"))
                        .header("host", HOST)
                        .body(Full::new(Bytes::new()).boxed())
                        .unwrap();
                    let resp = client.request(req).await.expect("small response");
                    assert_eq!(resp.status(), 200);
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], b"ok");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    started.elapsed()
}

/// Requests per second alone and beside an unread 1 GiB download.
async fn rate(shell: Shell) -> (f64, f64) {
    let (g, _r) = pair(shell).await;
    const N: usize = 1000;
    small_requests(g.addr(), 100).await; // warm-up
                                         // Medians of five runs each: one run is a fraction of a second, and
                                         // the machine is shared.
    let mut alone = Vec::new();
    for _ in 0..5 {
        alone.push(small_requests(g.addr(), N).await);
    }
    // A client that asks for 1 GiB and never reads past its socket buffer.
    let mut stalled = TcpStream::connect(g.addr()).await.unwrap();
    stalled
        .write_all(format!("GET /svc/down?size={GIB} HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Let the download fill every buffer it can before measuring.
    for _ in 0..500 {
        if g.stats().await.in_flight == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut beside = Vec::new();
    for _ in 0..5 {
        beside.push(small_requests(g.addr(), N).await);
    }
    assert_eq!(g.stats().await.in_flight, 1, "the download is still held");
    drop(stalled);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (
        N as f64 / median(alone).as_secs_f64(),
        N as f64 / median(beside).as_secs_f64(),
    )
}

fn shell_name(s: Shell) -> &'static str {
    match s {
        Shell::Tokio => "tokio",
        Shell::Smol => "smol",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let shell = match args.get(i + 1).map(String::as_str) {
            Some("smol") => Shell::Smol,
            _ => Shell::Tokio,
        };
        runtime().block_on(memory_child(shell));
        return;
    }
    let parts = ["memory", "rate", "sse"];
    let only = |part: &str| {
        !args.iter().any(|a| parts.contains(&a.as_str())) || args.iter().any(|a| a == part)
    };
    let mut ok = true;
    if only("memory") {
        println!("memory: 1 GiB up, then 1 GiB down, one process per shell");
        for shell in [Shell::Tokio, Shell::Smol] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--memory-child", shell_name(shell)])
                .output()
                .expect("run the memory child");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with("baseline_kib="))
                .unwrap_or_else(|| {
                    panic!(
                        "{} child failed: {}\n{}",
                        shell_name(shell),
                        text,
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let peak: u64 = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("peak_kib="))
                .and_then(|v| v.parse().ok())
                .unwrap();
            let verdict = if peak < RSS_LIMIT_KIB {
                "ok"
            } else {
                "OVER 64 MiB"
            };
            ok &= peak < RSS_LIMIT_KIB;
            println!(
                "  {:<5} {line}  peak {:.1} MiB  {verdict}",
                shell_name(shell),
                peak as f64 / 1024.0
            );
        }
    }
    if only("rate") {
        println!("head-of-line: 1000 small requests, 8 at a time, median of 5 runs, alone vs beside an unread 1 GiB download");
        for shell in [Shell::Tokio, Shell::Smol] {
            let (alone, beside) = runtime().block_on(rate(shell));
            let ratio = beside / alone;
            let verdict = if ratio >= 0.9 { "ok" } else { "UNDER 90%" };
            ok &= ratio >= 0.9;
            println!(
                "  {:<5} alone {alone:.0} req/s  beside {beside:.0} req/s  ratio {:.2}  {verdict}",
                shell_name(shell),
                ratio
            );
        }
    }
    if only("sse") {
        println!("sse: {SSE_EVENTS} events, one every 100 ms; lag from emission to the client");
        for shell in [Shell::Tokio, Shell::Smol] {
            let mut lags = runtime().block_on(sse(shell));
            lags.sort_unstable();
            let worst = *lags.last().unwrap();
            let verdict = if worst < 50_000 { "ok" } else { "OVER 50 ms" };
            ok &= worst < 50_000;
            println!(
                "  {:<5} median {:.2} ms  worst {:.2} ms  {verdict}",
                shell_name(shell),
                lags[lags.len() / 2] as f64 / 1e3,
                worst as f64 / 1e3
            );
        }
    }
    if !ok {
        std::process::exit(1);
    }
}
