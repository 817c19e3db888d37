//! Large bodies through a gateway process and a receiver process: a
//! backend that hashes what it is sent and streams what it is asked for,
//! and a client that does the same from the other end, so both sides of a
//! transfer are checked by sha256 without holding the body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Binary, Proc};

/// The service the receiver registers.
pub const HOST: &str = "bodies.test";
const PIECE: usize = 64 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// A pseudo-random body of `size` bytes from `seed`, made piece by piece.
pub fn generated(size: u64, seed: u64) -> impl futures_util::Stream<Item = Bytes> + Send {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut left = size;
    futures_util::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let len = left.min(PIECE as u64) as usize;
        left -= len as u64;
        let mut piece = vec![0u8; len];
        rng.fill(&mut piece);
        std::task::Poll::Ready(Some(Bytes::from(piece)))
    })
}

/// The sha256 of [`generated`]`(size, seed)`, hex.
pub async fn expected_sha256(size: u64, seed: u64) -> String {
    let mut h = Sha256::new();
    let mut s = std::pin::pin!(generated(size, seed));
    while let Some(piece) = s.next().await {
        h.update(&piece);
    }
    hex::encode(h.finalize())
}

fn boxed(size: u64, seed: u64) -> Body {
    BodyExt::boxed(StreamBody::new(
        generated(size, seed).map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ))
}

/// `/svc/up` answers `<bytes> <sha256>` of the body it got;
/// `/svc/down?size=N&seed=S` streams [`generated`]`(N, S)`; anything
/// else answers `ok`.
async fn backend(req: http::Request<Incoming>) -> Result<http::Response<Body>, Infallible> {
    match req.uri().path() {
        "/svc/up" => {
            let mut body = req.into_body();
            let (mut n, mut h) = (0u64, Sha256::new());
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(d) = frame.into_data() {
                    n += d.len() as u64;
                    h.update(&d);
                }
            }
            let answer = format!("{n} {}", hex::encode(h.finalize()));
            Ok(http::Response::new(Full::new(Bytes::from(answer)).boxed()))
        }
        "/svc/down" => {
            let arg = |name: &str| -> u64 {
                req.uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Ok(http::Response::new(boxed(arg("size"), arg("seed"))))
        }
        _ => Ok(http::Response::new(
            Full::new(Bytes::from_static(b"ok")).boxed(),
        )),
    }
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

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A gateway process and a receiver process in front of the backend.
pub struct Tunnel {
    /// The gateway's public address.
    pub public: SocketAddr,
    /// The gateway process.
    pub gateway: Proc,
    /// The receiver process.
    pub receiver: Proc,
}

impl Tunnel {
    /// Starts `gateway` (with `gateway_args` after its listen address) and
    /// `receiver`, and waits until a request goes through.
    pub async fn start(gateway: Binary, receiver: Binary, gateway_args: &[&str]) -> Tunnel {
        let backend = start_backend().await;
        let public = free_port();
        let spawn = |binary: Binary, args: Vec<String>| {
            let mut c = binary.command();
            c.args(args)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            Proc(
                c.spawn()
                    .unwrap_or_else(|e| panic!("{binary:?} starts: {e}")),
            )
        };
        // Without its own admin address every gateway a test starts would
        // bind the default 127.0.0.1:8081, and the second one would fail.
        let mut args = vec![
            "gateway".to_owned(),
            "--listen".into(),
            public.to_string(),
            "--admin-listen".into(),
            "off".into(),
        ];
        args.extend(gateway_args.iter().map(|a| a.to_string()));
        let gateway = spawn(gateway, args);
        let receiver = spawn(
            receiver,
            [
                "receiver",
                "--gateway",
                &format!("ws://{public}/ws"),
                "--upstream",
                &format!("http://{backend}"),
                "--services",
                &format!("{HOST}/svc"),
                "--reconnect-first-delay-ms",
                "100",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        );
        let tunnel = Tunnel {
            public,
            gateway,
            receiver,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(2), tunnel.client_get("/svc/ping")).await
            {
                if r.status == 200 && r.complete {
                    return tunnel;
                }
            }
            assert!(Instant::now() < deadline, "the tunnel is up within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn client_get(&self, path: &str) -> Result<Received, String> {
        send(
            self.public,
            http::Method::GET,
            path,
            Full::new(Bytes::new()).boxed(),
        )
        .await
    }

    /// Uploads [`generated`]`(size, seed)`, with a Content-Length when
    /// `announce`, else chunked; the backend's answer.
    pub async fn upload(&self, size: u64, seed: u64, announce: bool) -> Received {
        let body = boxed(size, seed);
        let body = if announce {
            BodyExt::boxed(Sized(body, size))
        } else {
            BodyExt::boxed(Unsized(body))
        };
        send(self.public, http::Method::POST, "/svc/up", body)
            .await
            .expect("the upload's response head")
    }

    /// Downloads [`generated`]`(size, seed)`.
    pub async fn download(&self, size: u64, seed: u64) -> Received {
        self.client_get(&format!("/svc/down?size={size}&seed={seed}"))
            .await
            .expect("the download's response head")
    }

    /// Peak resident memory of the gateway and receiver processes, KiB.
    pub fn peak_rss_kib(&self) -> (u64, u64) {
        (
            vm_hwm_kib(self.gateway.0.id()),
            vm_hwm_kib(self.receiver.0.id()),
        )
    }
}

/// A response as the client took it, body hashed as it came.
#[derive(Debug)]
pub struct Received {
    /// Status.
    pub status: u16,
    /// Body bytes received.
    pub bytes: u64,
    /// sha256 of them, hex.
    pub sha256: String,
    /// The body ended cleanly (not cut).
    pub complete: bool,
    /// The first bytes of the body, as text (an upload's answer).
    pub text: String,
}

async fn send(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Body,
) -> Result<Received, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to the gateway: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let (mut bytes, mut h, mut text, mut complete) = (0u64, Sha256::new(), Vec::new(), true);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    bytes += d.len() as u64;
                    h.update(&d);
                    if text.len() < 512 {
                        text.extend_from_slice(&d[..d.len().min(512)]);
                    }
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    Ok(Received {
        status,
        bytes,
        sha256: hex::encode(h.finalize()),
        complete,
        text: String::from_utf8_lossy(&text).into_owned(),
    })
}

/// A body with a known length, so the client sends a Content-Length.
struct Sized(Body, u64);

impl http_body::Body for Sized {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.1)
    }
}

/// A body of unknown length, so the client sends it chunked.
struct Unsized(Body);

impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
