//! The admin plane on both shells: `/metrics`, `/stats` and the dashboard
//! answer on the admin listener only; the public listener keeps its health
//! path; the inspector captures, redacts, bounds, streams and replays.

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anpx_core::config::InspectorSection;
use serde_json::Value;
use support::pairs::{Gw, Rx, Shell};
use support::{send, send_with, sha256, start_backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "api.agent.com";

fn inspector(bodies: bool) -> InspectorSection {
    InspectorSection {
        bodies,
        ..InspectorSection::default()
    }
}

/// Entries of the inspector, oldest first.
async fn requests(admin: SocketAddr) -> Vec<Value> {
    let r = send(admin, "GET", "admin", "/api/requests", "").await;
    assert_eq!(r.status, 200);
    r.json()["requests"].as_array().unwrap().clone()
}

/// The first entry for `path` that has ended.
async fn ended(admin: SocketAddr, path: &str) -> Value {
    for _ in 0..200 {
        let found = requests(admin)
            .await
            .into_iter()
            .find(|e| e["path"] == path && !e["ending"].is_null());
        if let Some(e) = found {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no ended request for {path} in {:?}", requests(admin).await);
}

async fn public_listener_answers_only_its_health_path(shell: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(shell, |_| {}).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    for path in ["/metrics", "/stats", "/", "/api/requests"] {
        let r = send(g.addr(), "GET", HOST, path, "").await;
        // Proxied like any path; this receiver serves /svc only.
        assert_eq!(r.status, 404, "public {path}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("anpx_receivers") && !body.contains("links"),
            "public {path} gave the gateway's own answer: {body}"
        );
    }
    assert_eq!(
        send(g.addr(), "GET", HOST, "/health", "").await.json()["status"],
        "ok"
    );
    let admin = g.admin_addr();
    let m = send(admin, "GET", "any", "/metrics", "").await;
    assert_eq!(m.status, 200);
    assert!(String::from_utf8_lossy(&m.body).contains("anpx_receivers 1\n"));
    let s = send(admin, "GET", "any", "/stats", "").await;
    assert_eq!(s.json()["links"].as_array().unwrap().len(), 1);
    assert_eq!(
        send(admin, "GET", "any", "/health", "").await.json()["status"],
        "ok"
    );
    let page = send(admin, "GET", "any", "/", "").await;
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(String::from_utf8_lossy(&page.body).contains("/dashboard.js"));
    for asset in ["/dashboard.js", "/dashboard.css"] {
        let r = send(admin, "GET", "any", asset, "").await;
        assert!(r.status == 200 && !r.body.is_empty(), "{asset}");
    }
    // Nothing on the admin listener is proxied.
    assert_eq!(send(admin, "GET", HOST, "/svc/a", "").await.status, 404);
    let o = send(admin, "GET", "any", "/api/overview", "").await.json();
    assert_eq!(o["receivers"][0]["routes"][0], "api.agent.com/svc");
    assert_eq!(o["receivers"][0]["address"], "127.0.0.1");
    assert_eq!(o["routes"][0]["route"], "api.agent.com/svc");
}

async fn the_health_path_is_configurable(shell: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(shell, |o| o.health_path = Some("/svc/lb-check".into())).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let r = send(g.addr(), "GET", HOST, "/svc/lb-check", "").await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, "ok".into()));
    assert!(r.headers.get("x-path").is_none(), "went to the service");
    // /health is the service's now, like any other path.
    assert_eq!(send(g.addr(), "GET", HOST, "/health", "").await.status, 404);
    g.shutdown().await;

    let g = Gw::start(shell, |o| o.health_path = None).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let r = send(g.addr(), "GET", HOST, "/svc/health", "").await;
    assert_eq!(r.header("x-path"), "/svc/health");
    assert_eq!(send(g.addr(), "GET", HOST, "/health", "").await.status, 404);
}

async fn the_inspector_captures_redacts_and_replays(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(gw, |o| o.inspector = inspector(true)).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let admin = g.admin_addr();
    let secret = [("authorization", "Bearer s3cret"), ("cookie", "sid=s3cret")];
    let r = send_with(g.addr(), "POST", HOST, "/svc/echo?x=1", &secret, "hello").await;
    assert_eq!(r.status, 200);

    let row = ended(admin, "/svc/echo").await;
    assert_eq!(row["method"], "POST");
    assert_eq!(row["host"], HOST);
    assert_eq!(row["query"], "x=1");
    assert_eq!(row["status"], 200);
    // How it ended is the request log line's outcome.
    assert!(row["ending"].is_string(), "{row}");
    assert_eq!(row["request_bytes"], 5);
    assert_eq!(row["response_bytes"], 5);
    assert!(row["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let id = row["id"].as_u64().unwrap();

    let d = send(admin, "GET", "a", &format!("/api/requests/{id}"), "").await;
    let text = String::from_utf8_lossy(&d.body).into_owned();
    assert!(!text.contains("s3cret"), "a secret is shown: {text}");
    let d = d.json();
    let header = |list: &Value, name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == name)
            .map(|p| p[1].clone())
    };
    assert_eq!(
        header(&d["request_headers"], "authorization"),
        Some("[redacted]".into())
    );
    assert_eq!(
        header(&d["response_head"]["headers"], "set-cookie"),
        Some("[redacted]".into())
    );
    assert_eq!(
        header(&d["response_head"]["headers"], "x-body-sha256"),
        Some(sha256(b"hello").into())
    );
    assert_eq!(d["request_body"]["text"], "hello");
    assert_eq!(d["response_body"]["text"], "hello");
    // The frames, decoded as `anpx decode` prints them.
    let out = &d["frames_to_receiver"][0];
    assert_eq!(out["type"], "http_request");
    assert_eq!(out["request_id"], row["request_id"]);
    assert_eq!(out["meta"]["method"], "POST");
    assert_eq!(out["body_text"], "hello");
    assert_eq!(d["frames_from_receiver"][0]["type"], "http_response");
    assert_eq!(d["replayable"], true);

    // A replay needs the admin header (a cross-site form cannot send it).
    let path = format!("/api/requests/{id}/replay");
    assert_eq!(send(admin, "POST", "a", &path, "").await.status, 403);
    let replayed = send_with(admin, "POST", "a", &path, &[("x-anpx-admin", "1")], "").await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    let replayed = replayed.json();
    assert_eq!(replayed["status"], 200);
    let again = replayed["id"].as_u64().unwrap();
    assert!(again > id);
    let d = send(admin, "GET", "a", &format!("/api/requests/{again}"), "").await;
    let d = d.json();
    assert_eq!(d["replay_of"], id);
    assert_eq!(d["request_body"]["text"], "hello");
    assert_eq!(
        header(&d["response_head"]["headers"], "x-body-sha256"),
        Some(sha256(b"hello").into()),
        "the service got the same body again"
    );
    assert_eq!(
        send(admin, "GET", "a", "/api/requests/999999", "")
            .await
            .status,
        404
    );
}

async fn bodies_and_secrets_stay_out_unless_asked(shell: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(shell, |_| {}).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let admin = g.admin_addr();
    send(g.addr(), "POST", HOST, "/svc/upload", "private body").await;
    let id = ended(admin, "/svc/upload").await["id"].as_u64().unwrap();
    let d = send(admin, "GET", "a", &format!("/api/requests/{id}"), "").await;
    assert!(!String::from_utf8_lossy(&d.body).contains("private body"));
    let d = d.json();
    assert!(d["request_body"].is_null() && d["response_body"].is_null());
    assert_eq!(d["request_bytes"], 12);
    assert_eq!(d["replayable"], false);
    let path = format!("/api/requests/{id}/replay");
    let r = send_with(admin, "POST", "a", &path, &[("x-anpx-admin", "1")], "").await;
    assert_eq!(r.status, 409);
    g.shutdown().await;

    let g = Gw::start(shell, |o| {
        o.inspector.show_secrets = true;
    })
    .await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let admin = g.admin_addr();
    let auth = [("authorization", "Bearer visible")];
    send_with(g.addr(), "GET", HOST, "/svc/a", &auth, "").await;
    let id = ended(admin, "/svc/a").await["id"].as_u64().unwrap();
    let d = send(admin, "GET", "a", &format!("/api/requests/{id}"), "").await;
    assert!(String::from_utf8_lossy(&d.body).contains("Bearer visible"));
}

async fn the_capture_buffer_is_bounded(shell: Shell) {
    let backend = start_backend().await;
    let max_bytes = 16 * 1024;
    let g = Gw::start(shell, |o| {
        o.inspector = InspectorSection {
            requests: 5,
            max_bytes,
            bodies: true,
            show_secrets: false,
        }
    })
    .await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let admin = g.admin_addr();
    let big = "v".repeat(3000);
    for i in 0..12 {
        let path = format!("/svc/n{i}");
        let r = send_with(
            g.addr(),
            "POST",
            HOST,
            &path,
            &[("x-big", &big)],
            vec![7u8; 5000],
        )
        .await;
        assert_eq!(r.status, 200);
        let o = send(admin, "GET", "a", "/api/overview", "").await.json();
        let kept = o["inspector"]["kept"].as_u64().unwrap();
        let bytes = o["inspector"]["bytes"].as_u64().unwrap();
        assert!(kept <= 5, "{kept} requests kept");
        assert!(bytes <= max_bytes as u64, "{bytes} bytes kept");
    }
    ended(admin, "/svc/n11").await;
    let kept = requests(admin).await;
    assert!(!kept.is_empty() && kept.len() <= 5);
    assert!(
        kept.iter().all(|e| e["path"] != "/svc/n0"),
        "the oldest stays"
    );
}

async fn the_live_feed_streams_each_request(shell: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(shell, |_| {}).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let mut feed = TcpStream::connect(g.admin_addr()).await.unwrap();
    feed.write_all(b"GET /api/events HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The head and the opening comment first, so the subscription is in
    // place before the request is sent.
    while !String::from_utf8_lossy(&seen).contains("retry:") {
        let n = tokio::time::timeout(Duration::from_secs(10), feed.read(&mut buf))
            .await
            .expect("feed opens")
            .unwrap();
        assert!(n > 0, "feed closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    send(g.addr(), "GET", HOST, "/svc/watched", "").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        // Announced when it comes in (still in flight) and when it ends.
        let events: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("\"path\":\"/svc/watched\""))
            .collect();
        if events.iter().any(|l| l.contains("\"ending\":null"))
            && events
                .iter()
                .any(|l| l.contains("\"status\":200") && !l.contains("\"ending\":null"))
        {
            break;
        }
        let n = tokio::time::timeout_at(deadline, feed.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no event for the request in\n{text}"))
            .unwrap();
        assert!(n > 0, "feed closed");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The value of the series `name` (labels included) in `/metrics`.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics_measure_requests_and_the_process(shell: Shell) {
    let backend = start_backend().await;
    let g = Gw::start(shell, |_| {}).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let mut relayed = 0;
    for i in 0..3 {
        let r = send(g.addr(), "POST", HOST, &format!("/svc/m{i}"), "hello").await;
        assert_eq!(r.status, 200);
        relayed += r.body.len();
    }
    // Larger than a chunk: streamed to the receiver, counted as read.
    let big = vec![b'x'; 300_000];
    let r = send(g.addr(), "POST", HOST, "/svc/big", big.clone()).await;
    assert_eq!(r.status, 200);
    relayed += r.body.len();
    assert_eq!(
        send(g.addr(), "GET", HOST, "/nowhere", "").await.status,
        404
    );
    // A request's end is counted just after its last byte went out.
    let mut text = String::new();
    for _ in 0..200 {
        text =
            String::from_utf8_lossy(&send(g.admin_addr(), "GET", "a", "/metrics", "").await.body)
                .into_owned();
        if series(
            &text,
            "anpx_request_duration_seconds_count{route=\"api.agent.com/svc\"}",
        ) == Some(4.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        series(
            &text,
            "anpx_request_duration_seconds_count{route=\"api.agent.com/svc\"}"
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "anpx_request_duration_seconds_bucket{route=\"api.agent.com/svc\",le=\"+Inf\"}"
        ),
        Some(4.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            "anpx_request_duration_seconds_sum{route=\"api.agent.com/svc\"}"
        )
        .unwrap()
            > 0.0,
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "anpx_responses_total{route=\"api.agent.com/svc\",class=\"2xx\"}"
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "anpx_responses_total{route=\"(unrouted)\",class=\"4xx\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "anpx_responses_total{route=\"api.agent.com/svc\",class=\"5xx\"}"
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "anpx_response_body_bytes_total{route=\"api.agent.com/svc\"}"
        ),
        Some(relayed as f64),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "anpx_request_body_bytes_total{route=\"api.agent.com/svc\"}"
        ),
        Some((3 * "hello".len() + big.len()) as f64),
        "{text}"
    );
    assert_eq!(
        series(&text, "anpx_requests_refused_total{reason=\"no_route\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "anpx_route_in_flight{route=\"api.agent.com/svc\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "anpx_receiver_in_flight{receiver=\"anonymous\"}"),
        Some(0.0),
        "{text}"
    );
    let shell_label = match shell {
        Shell::Tokio => "anpx",
        Shell::Smol => "anpx-smol",
    };
    assert!(
        text.contains(&format!("\",shell=\"{shell_label}\"}} 1\n")),
        "{text}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            series(&text, "process_resident_memory_bytes").unwrap() > 0.0,
            "{text}"
        );
        assert!(series(&text, "process_open_fds").unwrap() > 0.0, "{text}");
    }
}

for_every_gateway!(
    metrics_measure_requests_and_the_process,
    public_listener_answers_only_its_health_path,
    the_health_path_is_configurable,
    bodies_and_secrets_stay_out_unless_asked,
    the_capture_buffer_is_bounded,
    the_live_feed_streams_each_request,
);

for_every_pair!(the_inspector_captures_redacts_and_replays);
