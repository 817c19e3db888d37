//! An agent written with axum, given a public address through anpx.
//!
//! The agent is an ordinary axum `Router`; handing it to the receiver is one
//! line: `ServiceUpstream::new(router)`. No local port is opened
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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
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

/// A gateway on `listen` and a receiver serving [`agent`] behind it,
/// connected before this returns.
pub async fn start(listen: SocketAddr) -> Result<(Gateway, Receiver), Box<dyn std::error::Error>> {
    let gateway = Gateway::bind(GatewayOptions::open(listen)).await?;
    let gateway_url = format!("ws://{}/ws", gateway.public_addr());
    let mut options = ReceiverOptions::new(gateway_url, Arc::new(ServiceUpstream::new(agent())));
    // Every host, paths under /agents: curl works without a Host header.
    options.services = vec!["*/agents".parse()?];
    let receiver = Receiver::spawn(options);
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
