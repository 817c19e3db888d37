//! Faults at the process and network level, with the `anpx` and the
//! `anpx-smol` binary as the receiver (and, for restarts, as the gateway):
//! a receiver killed with SIGKILL, a connection that goes silent without
//! closing (a relay that stops forwarding), and a gateway killed and started
//! again. Each scenario is one function taking the binaries, so both shells
//! are held to the same limits.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shell_tokio::gateway::{Gateway, GatewayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{Binary, Proc};

const HOST: &str = "faults.test";

fn spawn(binary: Binary, args: &[&str]) -> Proc {
    let mut c = binary.command();
    c.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc(
        c.spawn()
            .unwrap_or_else(|e| panic!("{binary:?} starts: {e}")),
    )
}

/// `<binary> receiver` dialing `gateway` (a host:port), serving `HOST/svc`
/// from `backend`, pinging every second and retrying quickly.
fn receiver_process(binary: Binary, gateway: SocketAddr, backend: SocketAddr) -> Proc {
    spawn(
        binary,
        &[
            "receiver",
            "--gateway",
            &format!("ws://{gateway}/ws"),
            "--upstream",
            &format!("http://{backend}"),
            "--services",
            &format!("{HOST}/svc"),
            "--ping-interval-secs",
            "1",
            "--reconnect-first-delay-ms",
            "100",
            "--reconnect-max-delay-secs",
            "1",
        ],
    )
}

/// `/svc/hold` never answers; anything else answers `ok`.
async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    if req.uri().path().ends_with("/hold") {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn start_gateway(ping: Duration) -> Gateway {
    let mut o = GatewayOptions::open("127.0.0.1:0".parse().unwrap());
    o.core.ping_interval = ping;
    o.drain_grace = Duration::from_millis(100);
    Gateway::bind(o).await.unwrap()
}

struct Reply {
    status: u16,
    body: String,
}

/// One GET; `None` when the connection fails.
async fn get(addr: SocketAddr, path: &str) -> Option<Reply> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn links(g: &Gateway) -> usize {
    g.stats().await.map_or(0, |s| s.links.len())
}

async fn in_flight(g: &Gateway) -> usize {
    g.stats().await.map_or(0, |s| s.in_flight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_process_killed_mid_request_is_502_within_a_second() {
    receiver_killed_mid_request(Binary::Anpx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smol_receiver_process_killed_mid_request_is_502_within_a_second() {
    receiver_killed_mid_request(Binary::AnpxSmol).await;
}

async fn receiver_killed_mid_request(receiver: Binary) {
    let backend = start_backend().await;
    let g = start_gateway(Duration::from_secs(30)).await;
    let mut rx = receiver_process(receiver, g.public_addr(), backend);
    wait_until(Duration::from_secs(20), "the receiver connects", || async {
        links(&g).await == 1
    })
    .await;
    assert_eq!(get(g.public_addr(), "/svc/a").await.unwrap().status, 200);

    let addr = g.public_addr();
    let pending = tokio::spawn(async move {
        let r = get(addr, "/svc/hold").await;
        (r, Instant::now())
    });
    wait_until(
        Duration::from_secs(10),
        "the request is in flight",
        || async { in_flight(&g).await == 1 },
    )
    .await;
    let killed_at = Instant::now();
    rx.0.kill().expect("SIGKILL the receiver");
    let (reply, answered_at) = pending.await.unwrap();
    let reply = reply.expect("an answer, not a dropped connection");
    let took = answered_at - killed_at;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(took < Duration::from_secs(1), "502 after {took:?}");
    assert!(reply.body.contains("error"), "{}", reply.body);
    eprintln!("{receiver:?} receiver killed: 502 after {took:?}");
    wait_until(Duration::from_secs(2), "the link is gone", || async {
        links(&g).await == 0
    })
    .await;
}

/// A TCP relay that can stop forwarding without closing anything, as a
/// network that silently drops packets would.
struct Relay {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(to).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pipe(ri, wo, f.clone()));
                tokio::spawn(pipe(ro, wi, f.clone()));
            }
        });
        Relay { addr, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

/// Copies bytes one way; while frozen, reads nothing and holds what it has,
/// so the sockets stay open and silent.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the relay froze are held until it thaws.
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_network_cut_is_detected_within_two_ping_intervals() {
    silent_network_cut(Binary::Anpx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_network_cut_to_a_smol_receiver_is_detected_within_two_ping_intervals() {
    silent_network_cut(Binary::AnpxSmol).await;
}

async fn silent_network_cut(receiver: Binary) {
    let ping = Duration::from_secs(1);
    let backend = start_backend().await;
    let g = start_gateway(ping).await;
    let relay = Relay::start(g.public_addr()).await;
    let _rx = receiver_process(receiver, relay.addr, backend);
    wait_until(Duration::from_secs(20), "the receiver connects", || async {
        links(&g).await == 1
    })
    .await;
    assert_eq!(get(g.public_addr(), "/svc/a").await.unwrap().status, 200);

    relay.freeze(true);
    let cut_at = Instant::now();
    // A request sent into the cut waits for the silent receiver, then fails
    // when the gateway gives up on it.
    let addr = g.public_addr();
    let pending = tokio::spawn(async move {
        let r = get(addr, "/svc/a").await;
        (r, Instant::now())
    });
    wait_until(
        2 * ping + Duration::from_secs(1),
        "the gateway drops the silent receiver",
        || async { links(&g).await == 0 },
    )
    .await;
    let detected = cut_at.elapsed();
    let (reply, answered_at) = pending.await.unwrap();
    let reply = reply.expect("an answer");
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(answered_at - cut_at <= 2 * ping + Duration::from_secs(1));
    assert!(
        g.stats().await.unwrap().totals.links_silent >= 1,
        "counted as silent"
    );
    eprintln!(
        "{receiver:?} receiver: silent cut detected after {detected:?} (ping interval {ping:?})"
    );

    // The network comes back: the receiver, which gave up on the old
    // connection too, dials again through the relay.
    relay.freeze(false);
    wait_until(
        Duration::from_secs(15),
        "the receiver reconnects",
        || async { links(&g).await == 1 },
    )
    .await;
    assert_eq!(get(g.public_addr(), "/svc/a").await.unwrap().status, 200);
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn gateway_process(binary: Binary, listen: SocketAddr) -> Proc {
    // No admin listener: its default port would be shared by every process.
    spawn(
        binary,
        &[
            "gateway",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            "off",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_process_is_back_within_its_backoff_after_a_gateway_process_restart() {
    back_after_gateway_restart(Binary::Anpx, Binary::Anpx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smol_receiver_is_back_within_its_backoff_after_a_smol_gateway_restart() {
    back_after_gateway_restart(Binary::AnpxSmol, Binary::AnpxSmol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smol_receiver_is_back_within_its_backoff_after_an_anpx_gateway_restart() {
    back_after_gateway_restart(Binary::AnpxSmol, Binary::Anpx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anpx_receiver_is_back_within_its_backoff_after_a_smol_gateway_restart() {
    back_after_gateway_restart(Binary::Anpx, Binary::AnpxSmol).await;
}

/// The `receiver` process served through a `gateway` process that is killed
/// and started again on the same address.
async fn back_after_gateway_restart(receiver: Binary, gateway: Binary) {
    let backend = start_backend().await;
    let listen = free_port();
    let gw = gateway_process(gateway, listen);
    let _rx = receiver_process(receiver, listen, backend);
    wait_until(
        Duration::from_secs(20),
        "served through the tunnel",
        || async { get(listen, "/svc/a").await.is_some_and(|r| r.status == 200) },
    )
    .await;

    drop(gw); // SIGKILL
    assert!(get(listen, "/svc/a").await.is_none(), "the gateway is down");
    let _gw = gateway_process(gateway, listen);
    let restarted = Instant::now();
    // The receiver retries at most a second apart (its maximum delay); the
    // new gateway needs a moment to bind.
    wait_until(Duration::from_secs(5), "the receiver is back", || async {
        get(listen, "/svc/a").await.is_some_and(|r| r.status == 200)
    })
    .await;
    eprintln!(
        "{receiver:?} receiver back {:?} after the {gateway:?} gateway restarted",
        restarted.elapsed()
    );
}
