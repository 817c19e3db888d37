//! An agent written with axum, given a public address through anpx.
//!
//! The agent is an ordinary axum `Router`; handing it to the receiver is one
//! line: `ServiceUpstream::new(SyncBodies(router))`. No local port is opened
//! for the agent itself: requests reach its handlers in-process.
//!
//! To try it on its own, this example also runs the gateway in-process:
//!
//! ```text
//! cargo run -p shell-tokio --example axum_agent [LISTEN_ADDR]
//! ```
//!
//! In real use the gateway runs on a public host (`anpx gateway`) and only
//! the receiver runs next to the agent, with `gateway` set to
//! `wss://PUBLIC_HOST/ws`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::HttpBody;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body::{Frame, SizeHint};
use serde_json::{json, Value};
use shell_tokio::gateway::{Gateway, GatewayOptions};
use shell_tokio::receiver::{Receiver, ReceiverOptions, Status};
use shell_tokio::upstream::ServiceUpstream;

/// The agent: plain axum, nothing anpx-specific.
pub fn agent() -> Router {
    Router::new()
        .route("/agents/hello", get(hello))
        .route("/agents/echo", post(echo))
}

async fn hello() -> Json<Value> {
    Json(json!({ "agent": "axum_agent", "message": "hello through the tunnel" }))
}

async fn echo(
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> impl axum::response::IntoResponse {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| axum::http::HeaderValue::from_static("application/octet-stream"));
    ([(axum::http::header::CONTENT_TYPE, content_type)], body)
}

/// Lets a service whose response bodies are `Send` but not `Sync` (axum's
/// `Body` is one) be used with `ServiceUpstream`, which asks for `Sync`
/// bodies. Remove it, and pass the router directly, once that bound is gone.
#[derive(Clone)]
pub struct SyncBodies<S>(pub S);

impl<S, Req, B> tower_service::Service<Req> for SyncBodies<S>
where
    S: tower_service::Service<Req, Response = axum::http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Send + 'static,
{
    type Response = axum::http::Response<SyncBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let response = self.0.call(request);
        Box::pin(async move { Ok(response.await?.map(|b| SyncBody(Mutex::new(b)))) })
    }
}

/// A body made `Sync` by a mutex that polling never locks: `poll_frame`
/// has `&mut self`, so it reaches the body through `Mutex::get_mut`.
pub struct SyncBody<B>(Mutex<B>);

impl<B: HttpBody + Unpin> HttpBody for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let body = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        Pin::new(body).poll_frame(cx)
    }

    // The receiver sends a body of known small size as one frame, so the
    // size hint must come through.
    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size_hint()
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }
}

/// A gateway on `listen` and a receiver serving [`agent`] behind it,
/// connected before this returns.
pub async fn start(listen: SocketAddr) -> Result<(Gateway, Receiver), Box<dyn std::error::Error>> {
    let gateway = Gateway::bind(GatewayOptions::open(listen)).await?;
    let receiver = Receiver::spawn(ReceiverOptions {
        gateway: format!("ws://{}/ws", gateway.public_addr()),
        // Every host, paths under /agents: curl works without a Host header.
        services: vec!["*/agents".parse()?],
        core: Default::default(),
        backoff: Default::default(),
        upstream: Arc::new(ServiceUpstream::new(SyncBodies(agent()))),
        credentials: None,
    });
    match receiver.wait_ready().await {
        Status::Connected { .. } => Ok((gateway, receiver)),
        other => Err(format!("the receiver did not connect: {other:?}").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()?;
    let (gateway, receiver) = start(listen).await?;
    let addr = gateway.public_addr();
    println!("The axum agent is reachable through the anpx gateway at http://{addr}");
    println!("  curl http://{addr}/agents/hello");
    println!("  curl -H 'content-type: text/plain' --data 'hi there' http://{addr}/agents/echo");
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    receiver.shutdown().await;
    gateway.shutdown().await;
    Ok(())
}
