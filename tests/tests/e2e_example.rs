//! The axum example (`shell-tokio/examples/axum_agent.rs`) driven through
//! its tunnel. The example is compiled in here as a module, so what is tested
//! is its own router and setup, not a copy that could drift from it.

mod support;

#[path = "../../shell-tokio/examples/axum_agent.rs"]
#[allow(dead_code)] // its `main` is for `cargo run`
mod axum_agent;

use support::*;

const HOST: &str = "agent.example";

async fn start() -> (
    shell_tokio::gateway::Gateway,
    shell_tokio::receiver::Receiver,
) {
    let started = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        axum_agent::start("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .expect("the example starts in time");
    started.unwrap_or_else(|e| panic!("the example failed to start: {e}"))
}

async fn post(
    gateway: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{gateway}{path}"))
        .header("host", HOST)
        .header("content-type", content_type)
        .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .unwrap();
    let resp = client().request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .expect("whole body")
        .to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_handlers_answer_through_the_tunnel() {
    let (gw, rx) = start().await;
    let addr = gw.public_addr();

    let r = send(addr, "GET", HOST, "/agents/hello", "").await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({ "agent": "axum_agent", "message": "hello through the tunnel" })
    );

    let r = post(addr, "/agents/echo", "text/plain", b"hi there".to_vec()).await;
    assert_eq!((r.status, r.header("content-type")), (200, "text/plain"));
    assert_eq!(r.body, "hi there");

    // Bigger than one frame both ways: the upload arrives in chunks and the
    // answer leaves the agent as a stream.
    let big = pattern(300 * 1024 + 5);
    let r = post(
        addr,
        "/agents/echo",
        "application/octet-stream",
        big.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert_eq!(sha256(&r.body), sha256(&big));

    rx.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_errors_come_through_and_the_gateway_keeps_its_own() {
    let (gw, rx) = start().await;
    let addr = gw.public_addr();

    // Under the routed prefix, axum answers: its own 404 and 405.
    let r = send(addr, "GET", HOST, "/agents/nobody", "").await;
    assert_eq!(
        (r.status, r.body.len()),
        (404, 0),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let r = send(addr, "GET", HOST, "/agents/echo", "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "POST");

    // Outside it, the request never reaches the agent.
    let r = send(addr, "GET", HOST, "/elsewhere", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "No route found");

    rx.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_concurrent_requests() {
    let (gw, rx) = start().await;
    let addr = gw.public_addr();
    let calls: Vec<_> = (0..16)
        .map(|i| {
            tokio::spawn(async move {
                let body = format!("request {i}").into_bytes();
                let r = post(addr, "/agents/echo", "text/plain", body.clone()).await;
                (r.status, r.body == body)
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), (200, true), "request {i}");
    }
    rx.shutdown().await;
    gw.shutdown().await;
}
