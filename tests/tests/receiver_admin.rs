//! The receiver's admin plane on both receiver shells, behind both
//! gateway shells: its status, its metrics, and the inspector of the
//! requests it replayed to its upstream, captured and bounded as the
//! gateway's are.

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anpx_core::config::InspectorSection;
use serde_json::Value;
use support::pairs::{Gw, Rx, Shell};
use support::{send, send_with, start_backend};

const HOST: &str = "api.agent.com";

fn bodies() -> InspectorSection {
    InspectorSection {
        bodies: true,
        ..InspectorSection::default()
    }
}

async fn status(admin: SocketAddr) -> Value {
    let r = send(admin, "GET", "127.0.0.1", "/status", "").await;
    assert_eq!(r.status, 200);
    r.json()
}

async fn metrics(admin: SocketAddr) -> String {
    let r = send(admin, "GET", "127.0.0.1", "/metrics", "").await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// The receiver's inspector entries once `n` of them ended.
async fn ended(admin: SocketAddr, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let r = send(admin, "GET", "127.0.0.1", "/api/requests", "").await;
        assert_eq!(r.status, 200);
        let rows = r.json()["requests"].as_array().unwrap().clone();
        if rows.iter().filter(|e| !e["ending"].is_null()).count() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} requests ended at the receiver");
}

async fn status_metrics_and_inspector(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(gw, |_| {}).await;
    let (_r, admin) = Rx::start_with_admin(rx, g.addr(), backend, bodies()).await;

    let s = status(admin).await;
    assert_eq!(s["identity"], "anonymous");
    assert_eq!(s["services"][0], "api.agent.com/svc");
    assert_eq!(s["upstream"], format!("http://{backend}"));
    let gateway = &s["gateways"][0];
    assert_eq!(gateway["url"], format!("ws://{}/ws", g.addr()));
    assert_eq!(gateway["connected"], true);
    assert_eq!(gateway["granted"][0], "api.agent.com/svc");
    assert!(gateway["features"].as_str().unwrap().contains("streaming"));
    assert_eq!(
        (s["requests"].as_u64(), s["in_flight"].as_u64()),
        (Some(0), Some(0))
    );

    let secret = [("authorization", "Bearer s3cret")];
    let r = send_with(g.addr(), "POST", HOST, "/svc/echo?x=1", &secret, "hello").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));

    let rows = ended(admin, 1).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["method"], "POST");
    assert_eq!(row["host"], HOST);
    assert_eq!(row["path"], "/svc/echo");
    assert_eq!(row["query"], "x=1");
    assert_eq!(row["status"], 200);
    assert_eq!(row["ending"], "completed");
    assert_eq!(row["receiver"], format!("ws://{}/ws", g.addr()));
    assert!(row["client"].is_null(), "{row}");
    assert_eq!(row["request_bytes"], 5);
    assert_eq!(row["response_bytes"], 5);

    let detail = send(
        admin,
        "GET",
        "127.0.0.1",
        &format!("/api/requests/{}", row["id"]),
        "",
    )
    .await
    .json();
    assert_eq!(detail["request_body"]["text"], "hello");
    assert_eq!(detail["response_body"]["text"], "hello");
    let sent = detail["sent_head"]["headers"].as_array().unwrap();
    assert!(
        sent.iter()
            .any(|h| h[0] == "authorization" && h[1] == "[redacted]"),
        "{sent:?}"
    );
    assert!(!detail.to_string().contains("s3cret"));
    assert!(!detail["frames_from_receiver"]
        .as_array()
        .unwrap()
        .is_empty());
    // The receiver has no client to replay for.
    let replay = send(
        admin,
        "POST",
        "127.0.0.1",
        &format!("/api/requests/{}/replay", row["id"]),
        "",
    )
    .await;
    assert_eq!(replay.status, 405);

    let s = status(admin).await;
    assert_eq!(s["requests"], 1);
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["request_bytes"], 5);
    assert_eq!(s["response_bytes"], 5);
    assert_eq!(s["ended"]["completed"], 1);
    assert!(s["uptime_secs"].is_u64());

    let text = metrics(admin).await;
    for line in [
        "anpx_receiver_requests_total 1\n".to_owned(),
        "anpx_receiver_requests_in_flight 0\n".to_owned(),
        "anpx_receiver_request_bytes_total 5\n".to_owned(),
        "anpx_receiver_response_bytes_total 5\n".to_owned(),
        "anpx_receiver_requests_ended_total{ending=\"completed\"} 1\n".to_owned(),
        "anpx_receiver_requests_ended_total{ending=\"upstream_failed\"} 0\n".to_owned(),
        format!(
            "anpx_receiver_gateway_connected{{gateway=\"ws://{}/ws\"}} 1\n",
            g.addr()
        ),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    assert_eq!(
        send(admin, "GET", "127.0.0.1", "/nowhere", "").await.status,
        404
    );
}

async fn an_upstream_failure_is_counted_and_named(gw: Shell, rx: Shell) {
    // Nothing listens on a port just freed.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let g = Gw::start(gw, |_| {}).await;
    let (_r, admin) = Rx::start_with_admin(rx, g.addr(), down, bodies()).await;
    let r = send(g.addr(), "GET", HOST, "/svc/a", "").await;
    assert_eq!(r.status, 502);
    let rows = ended(admin, 1).await;
    assert_eq!(rows[0]["status"], 502);
    assert_eq!(rows[0]["ending"], "upstream_failed");
    assert!(
        !rows[0]["error"].as_str().unwrap_or_default().is_empty(),
        "{}",
        rows[0]
    );
    let text = metrics(admin).await;
    assert!(
        text.contains("anpx_receiver_requests_ended_total{ending=\"upstream_failed\"} 1\n"),
        "{text}"
    );
}

async fn the_capture_is_bounded_and_can_be_off(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(gw, |_| {}).await;
    let few = InspectorSection {
        requests: 3,
        ..InspectorSection::default()
    };
    let (r, admin) = Rx::start_with_admin(rx, g.addr(), backend, few).await;
    for i in 0..5 {
        let r = send(g.addr(), "GET", HOST, &format!("/svc/n{i}"), "").await;
        assert_eq!(r.status, 200);
    }
    let rows = ended(admin, 3).await;
    let paths: Vec<&str> = rows.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/svc/n2", "/svc/n3", "/svc/n4"]);
    let s = status(admin).await;
    assert_eq!(
        (s["requests"].as_u64(), s["inspector"]["kept"].as_u64()),
        (Some(5), Some(3))
    );
    assert!(
        s["inspector"]["bytes"].as_u64().unwrap() <= s["inspector"]["max_bytes"].as_u64().unwrap()
    );

    let off = InspectorSection {
        requests: 0,
        ..InspectorSection::default()
    };
    // The only receiver of the route from now on.
    r.shutdown().await;
    let (_r2, admin2) = Rx::start_with_admin(rx, g.addr(), backend, off).await;
    g.wait_for_receivers(1).await;
    for _ in 0..4 {
        assert_eq!(send(g.addr(), "GET", HOST, "/svc/x", "").await.status, 200);
    }
    let s = status(admin2).await;
    assert_eq!(s["requests"], 4);
    assert_eq!(s["ended"]["completed"], 4);
    let rows = send(admin2, "GET", "127.0.0.1", "/api/requests", "").await;
    assert_eq!(rows.json()["requests"].as_array().unwrap().len(), 0);
    assert_eq!(s["inspector"]["bytes"], 0);
}

for_every_pair!(
    status_metrics_and_inspector,
    an_upstream_failure_is_counted_and_named,
    the_capture_is_bounded_and_can_be_off,
);
