//! What the end-to-end scenarios share: a local backend service, an HTTP
//! client, and starting a gateway and receivers in-process on loopback.

#![allow(dead_code)]

#[macro_use]
pub mod pairs;
pub mod pki;
pub mod reference;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions, Status};
use shell_tokio::upstream::HttpUpstream;
use tokio::net::TcpListener;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Deterministic bytes for big bodies.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// The backend behind the receiver:
/// - `/svc/slow`: answers after 3 s;
/// - `/svc/hold`: never answers;
/// - `/svc/download?size=N`: N pattern bytes, streamed in 64 KiB pieces;
/// - anything else: echoes the body, with the method, path, query and body
///   hash in headers, the request's `x-file` as `x-file-seen`, two
///   `set-cookie` headers and a value that is not ASCII (`x-utf8`).
async fn backend(req: http::Request<Incoming>) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return Ok(http::Response::new(full("late")));
    }
    if path.ends_with("/hold") {
        std::future::pending::<()>().await;
    }
    if path.ends_with("/download") {
        let size: usize = query
            .strip_prefix("size=")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let data = Bytes::from(pattern(size));
        let pieces: Vec<Result<Frame<Bytes>, Infallible>> = (0..size)
            .step_by(65536)
            .map(|start| Ok(Frame::data(data.slice(start..(start + 65536).min(size)))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(pieces)).boxed();
        return Ok(http::Response::builder()
            .header("x-body-sha256", sha256(&data))
            .body(body)
            .unwrap());
    }
    let method = req.method().to_string();
    let file_seen = req.headers().get("x-file").cloned();
    let forwarded_for = req
        .headers()
        .get("x-forwarded-for")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut response = http::Response::builder();
    if let Some(file) = file_seen {
        response = response.header("x-file-seen", file);
    }
    Ok(response
        .header("x-method", method)
        .header("x-path", path)
        .header("x-query", query)
        .header("x-forwarded-for-seen", forwarded_for)
        .header("x-body-sha256", sha256(&body))
        .header("set-cookie", "a=1; Path=/")
        .header("set-cookie", "b=2; Path=/")
        // Not ASCII (RFC 9110 obs-text): a receiver must not fail on it.
        .header(
            "x-utf8",
            http::HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        )
        .body(full(body))
        .unwrap())
}

/// Starts the backend on an ephemeral loopback port.
pub async fn start_backend() -> SocketAddr {
    serve_on_loopback(backend).await
}

/// Serves `handler` over HTTP/1 on an ephemeral loopback port until the
/// test's runtime ends; the address it listens on.
pub async fn serve_on_loopback<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(http::Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(handler))
                    .await;
            });
        }
    });
    addr
}

/// A gateway on an ephemeral port, configured by `tune`.
pub async fn start_gateway(tune: impl FnOnce(&mut GatewayOptions)) -> Gateway {
    let mut options = GatewayOptions::open("127.0.0.1:0".parse().unwrap());
    options.drain_grace = Duration::from_secs(2);
    tune(&mut options);
    Gateway::bind(options).await.unwrap()
}

pub fn receiver_options(
    gateway: SocketAddr,
    backend: SocketAddr,
    services: &[&str],
) -> ReceiverOptions {
    let backoff = anpx_core::backoff::BackoffConfig {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        ..Default::default()
    };
    let mut o = ReceiverOptions::new(
        format!("ws://{gateway}/ws"),
        Arc::new(HttpUpstream::new(&format!("http://{backend}")).unwrap()),
    );
    o.services = services.iter().map(|s| s.parse().unwrap()).collect();
    o.backoff = backoff;
    o
}

/// A receiver serving `services` from `backend`, connected before returning.
pub async fn start_receiver(
    gateway: SocketAddr,
    backend: SocketAddr,
    services: &[&str],
) -> Receiver {
    let r = Receiver::spawn(receiver_options(gateway, backend, services));
    let status = tokio::time::timeout(Duration::from_secs(10), r.wait_ready())
        .await
        .expect("receiver connects in time");
    assert!(matches!(status, Status::Connected { .. }), "{status:?}");
    r
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What a test reads of a response.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends a request through the gateway at `gateway`, as for `host`.
pub async fn send(
    gateway: SocketAddr,
    method: &str,
    host: &str,
    path_and_query: &str,
    body: impl Into<Bytes>,
) -> Reply {
    send_with(gateway, method, host, path_and_query, &[], body).await
}

/// [`send`] with extra request headers.
pub async fn send_with(
    gateway: SocketAddr,
    method: &str,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{gateway}{path_and_query}"))
        .header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(full(body)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// Waits until the gateway lists `n` receivers.
pub async fn wait_for_receivers(gateway: &Gateway, n: usize) {
    for _ in 0..200 {
        if gateway.stats().await.is_some_and(|s| s.links.len() == n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "gateway never had {n} receivers: {:?}",
        gateway.stats().await.map(|s| s.links.len())
    );
}

/// Waits until the gateway has `n` requests in flight (a loaded machine can
/// take a while to get a request there).
pub async fn wait_in_flight(gateway: &Gateway, n: usize) {
    for _ in 0..500 {
        if gateway.stats().await.is_some_and(|s| s.in_flight == n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "gateway never had {n} requests in flight: {:?}",
        gateway.stats().await.map(|s| s.in_flight)
    );
}
