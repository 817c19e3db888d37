//! End-to-end through the tokio shell on real loopback sockets: a public
//! client → gateway → WebSocket → receiver → backend, and back.

mod support;

use std::time::Duration;

use support::*;

const HOST: &str = "api.agent.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_round_trips() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let body = format!("body of {method}");
        let r = send(gw.public_addr(), method, HOST, "/svc/echo", body.clone()).await;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("x-method"), method);
        assert_eq!(r.header("x-path"), "/svc/echo");
        assert_eq!(r.body, body.as_bytes(), "{method}");
    }
    let r = send(gw.public_addr(), "HEAD", HOST, "/svc/echo", "").await;
    assert_eq!(
        (r.status, r.header("x-method"), r.body.len()),
        (200, "HEAD", 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_query_keys_and_set_cookie_headers_survive() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let r = send(
        gw.public_addr(),
        "GET",
        HOST,
        "/svc/q?tag=a&tag=b&x=%20y",
        "",
    )
    .await;
    assert_eq!(r.header("x-query"), "tag=a&tag=b&x=%20y");
    let cookies: Vec<_> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);
    assert_eq!(r.header("x-forwarded-for-seen"), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_empty_bodies() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let r = send(gw.public_addr(), "POST", HOST, "/svc/bin", binary.clone()).await;
    assert_eq!(r.body, binary);
    let r = send(gw.public_addr(), "POST", HOST, "/svc/empty", "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("x-body-sha256"), sha256(b""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mebibytes_each_way() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let upload = pattern(10 * 1024 * 1024);
    let r = send(
        gw.public_addr(),
        "POST",
        HOST,
        "/svc/upload",
        upload.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-body-sha256"),
        sha256(&upload),
        "the backend saw the whole upload"
    );
    assert_eq!(sha256(&r.body), sha256(&upload), "and echoed it whole");

    let size = 10 * 1024 * 1024 + 7;
    let r = send(
        gw.public_addr(),
        "GET",
        HOST,
        &format!("/svc/download?size={size}"),
        "",
    )
    .await;
    assert_eq!(r.body.len(), size);
    assert_eq!(sha256(&r.body), sha256(&pattern(size)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_no_receiver_is_404_then_503_at_capacity() {
    let backend = start_backend().await;
    let gw = start_gateway(|o| o.core.max_inflight_per_link = 1).await;
    let r = send(gw.public_addr(), "GET", HOST, "/svc/x", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "No route found");
    assert_eq!(r.json()["path"], "/svc/x");

    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let r = send(gw.public_addr(), "GET", HOST, "/other", "").await;
    assert_eq!(r.status, 404);
    // One request holds the only slot; the next finds every receiver at cap.
    let addr = gw.public_addr();
    let held = tokio::spawn(async move { send(addr, "GET", HOST, "/svc/hold", "").await });
    wait_in_flight(&gw, 1).await;
    let r = send(gw.public_addr(), "GET", HOST, "/svc/x", "").await;
    assert_eq!(r.status, 503, "{:?}", String::from_utf8_lossy(&r.body));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let backend = start_backend().await;
    let gw = start_gateway(|o| o.core.request_timeout = Duration::from_millis(500)).await;
    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let r = send(gw.public_addr(), "GET", HOST, "/svc/slow", "").await;
    assert_eq!(r.status, 504);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("did not respond"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_mid_request_is_502() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let addr = gw.public_addr();
    let pending = tokio::spawn(async move { send(addr, "GET", HOST, "/svc/hold", "").await });
    wait_in_flight(&gw, 1).await;
    let killed_at = std::time::Instant::now();
    rx.shutdown().await;
    let r = pending.await.unwrap();
    assert_eq!(r.status, 502);
    assert!(
        killed_at.elapsed() < Duration::from_secs(1),
        "502 took {:?}",
        killed_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_the_receiver_stays_up() {
    let gw = start_gateway(|_| {}).await;
    // Nothing listens on this port.
    let dead: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rx = start_receiver(gw.public_addr(), dead, &["api.agent.com/svc"]).await;
    for _ in 0..3 {
        let r = send(gw.public_addr(), "GET", HOST, "/svc/x", "").await;
        assert_eq!(r.status, 502);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("Upstream error"),
            "{:?}",
            r.json()
        );
    }
    assert!(matches!(
        rx.status(),
        shell_tokio::receiver::Status::Connected { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_load_of_one_route() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let _a = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    let _b = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    wait_for_receivers(&gw, 2).await;
    // Concurrent slow-ish requests: the least-loaded choice must use both.
    let addr = gw.public_addr();
    let holds: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { send(addr, "GET", HOST, "/svc/hold", "").await }))
        .collect();
    wait_in_flight(&gw, 6).await;
    let stats = gw.stats().await.unwrap();
    let loads: Vec<usize> = stats.links.iter().map(|l| l.in_flight).collect();
    assert_eq!(loads, [3, 3], "{loads:?}");
    for h in holds {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_come_back_after_a_gateway_restart() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let addr = gw.public_addr();
    let rx = start_receiver(addr, backend, &["api.agent.com/svc"]).await;
    assert_eq!(send(addr, "GET", HOST, "/svc/a", "x").await.status, 200);
    gw.shutdown().await;
    // A new gateway on the same port: the receiver finds it by itself.
    let gw = start_gateway(|o| o.listen = addr).await;
    wait_for_receivers(&gw, 1).await;
    assert_eq!(send(addr, "GET", HOST, "/svc/a", "x").await.status, 200);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stats_and_metrics() {
    let backend = start_backend().await;
    let gw = start_gateway(|_| {}).await;
    let _rx = start_receiver(gw.public_addr(), backend, &["api.agent.com/svc"]).await;
    send(gw.public_addr(), "GET", HOST, "/svc/a", "").await;
    send(gw.public_addr(), "GET", HOST, "/nowhere", "").await;
    let h = send(gw.public_addr(), "GET", HOST, "/health", "").await;
    assert_eq!(h.json()["status"], "ok");
    let s = send(gw.public_addr(), "GET", HOST, "/stats", "").await;
    assert_eq!(s.json()["links"].as_array().unwrap().len(), 1);
    assert_eq!(s.json()["routes"][0][0], "api.agent.com/svc");
    let m = send(gw.public_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    assert!(text.contains("anpx_requests_completed_total 1\n"), "{text}");
    assert!(
        text.contains("anpx_requests_failed_total{status=\"404\"} 1\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_receiver_port_accepts_any_path() {
    let backend = start_backend().await;
    let gw = start_gateway(|o| o.ws_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let ws = gw.ws_addr().unwrap();
    let mut options = receiver_options(ws, backend, &["api.agent.com/svc"]);
    options.gateway = format!("ws://{ws}/any/path");
    let rx = shell_tokio::receiver::Receiver::spawn(options);
    assert!(matches!(
        rx.wait_ready().await,
        shell_tokio::receiver::Status::Connected { .. }
    ));
    assert_eq!(
        send(gw.public_addr(), "GET", HOST, "/svc/a", "")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let backend = start_backend().await;
    let gw = start_gateway(|o| o.drain_grace = Duration::from_secs(10)).await;
    let addr = gw.public_addr();
    let _rx = start_receiver(addr, backend, &["api.agent.com/svc"]).await;
    let slow = tokio::spawn(async move { send(addr, "GET", HOST, "/svc/slow", "").await });
    wait_in_flight(&gw, 1).await;
    let started = std::time::Instant::now();
    gw.shutdown().await;
    // The drain waited for the slow answer (3 s) rather than cutting it.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "drain returned after {:?}",
        started.elapsed()
    );
    let r = slow.await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"late"[..]));
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
