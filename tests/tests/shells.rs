//! The end-to-end scenarios against every shell and every cross-runtime
//! pair: one table of (gateway shell, receiver shell), the same scenario
//! functions for each. The smol pieces run on smol's own executor threads
//! while the test drives them from tokio.

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anpx_core::auth::VerifierConfig;
use anpx_core::policy::{CorsConfig, RateConfig};
use anpx_core::registry::{Registry, StaticRegistry};
use shell_common::did_credentials::DidCredentials;
use shell_common::did_wba::{
    DidWbaAdmission, DocumentFetch, DocumentIo, DocumentSources, FetchError,
};
use shell_common::GatewayOptions;
use support::pairs::{Gw, Rx, Shell};
use support::pki::TestPki;
use support::{pattern, send, send_with, sha256, start_backend};

const HOST: &str = "api.agent.com";

/// A gateway of `shell` in open mode, with a short drain so that the
/// shutdown scenarios end quickly, configured by `tune`.
async fn gateway(shell: Shell, tune: impl FnOnce(&mut GatewayOptions)) -> Gw {
    Gw::start(shell, |o| {
        o.drain_grace = Duration::from_secs(2);
        tune(o)
    })
    .await
}

async fn every_method_round_trips(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let body = format!("body of {method}");
        let r = send(g.addr(), method, HOST, "/svc/echo", body.clone()).await;
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("x-method"), method);
        assert_eq!(r.header("x-path"), "/svc/echo");
        assert_eq!(r.body, body.as_bytes(), "{method}");
    }
    let r = send(g.addr(), "HEAD", HOST, "/svc/echo", "").await;
    assert_eq!(
        (r.status, r.header("x-method"), r.body.len()),
        (200, "HEAD", 0)
    );
}

async fn repeated_query_keys_and_set_cookie(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let r = send(g.addr(), "GET", HOST, "/svc/q?tag=a&tag=b&x=%20y", "").await;
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

/// A header value with non-ASCII text (RFC 9110 `obs-text`) reaches the
/// service from every receiver, on requests with and without a body, and
/// the client from every gateway.
async fn non_ascii_header_values_cross_both_ways(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let file = "caf\u{e9} \u{65c5}.txt";
    for (method, body) in [("GET", ""), ("POST", "a body")] {
        let headers = [("x-file", file), ("x-plain", "yes")];
        let r = send_with(g.addr(), method, HOST, "/svc/echo", &headers, body).await;
        assert_eq!(r.status, 200, "{method}");
        let seen = r.headers.get("x-file-seen").map(|v| v.as_bytes());
        assert_eq!(seen, Some(file.as_bytes()), "{method}: the service's view");
        let utf8 = r.headers.get("x-utf8").map(|v| v.as_bytes());
        assert_eq!(
            utf8,
            Some("caf\u{e9}".as_bytes()),
            "{method}: the client's view"
        );
        assert_eq!(r.body, body.as_bytes(), "{method}");
    }
}

async fn ten_mebibytes_each_way(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let upload = pattern(10 * 1024 * 1024);
    let r = send(g.addr(), "POST", HOST, "/svc/upload", upload.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-body-sha256"), sha256(&upload));
    assert_eq!(sha256(&r.body), sha256(&upload));
    let size = 10 * 1024 * 1024 + 7;
    let path = format!("/svc/download?size={size}");
    let r = send(g.addr(), "GET", HOST, &path, "").await;
    assert_eq!(r.body.len(), size);
    assert_eq!(sha256(&r.body), sha256(&pattern(size)));
}

/// A chunked upload whose closing empty line reaches the gateway in two
/// reads (`\r`, then `\n`) still ends: the request is answered, not left
/// waiting for the request timeout.
async fn chunked_upload_whose_end_is_split(gw: Shell, rx: Shell) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let mut tcp = tokio::net::TcpStream::connect(g.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(
        b"POST /svc/echo HTTP/1.1\r\nhost: api.agent.com\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r",
    )
    .await
    .unwrap();
    // Not a wait for state: the pause only makes the last byte arrive in
    // a read of its own, after the gateway has read the rest.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(b"\n").await.unwrap();
    let mut head = Vec::new();
    let read_head = async {
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "connection closed: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_head)
        .await
        .expect("the gateway answers a chunked upload once its last line is in");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("x-body-sha256: {}", sha256(b"hello"))),
        "{head}"
    );
}

async fn no_route_is_404_and_at_capacity_is_503(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.core.max_inflight_per_link = 1).await;
    let r = send(g.addr(), "GET", HOST, "/svc/x", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "No route found");
    assert_eq!(r.json()["path"], "/svc/x");
    let _r = Rx::start(rx, g.addr(), backend).await;
    assert_eq!(send(g.addr(), "GET", HOST, "/other", "").await.status, 404);
    // One request holds the only slot; the next finds every receiver at cap.
    let addr = g.addr();
    let held = tokio::spawn(async move { send(addr, "GET", HOST, "/svc/hold", "").await });
    g.wait_in_flight(1).await;
    let r = send(g.addr(), "GET", HOST, "/svc/x", "").await;
    assert_eq!(r.status, 503, "{:?}", String::from_utf8_lossy(&r.body));
    held.abort();
}

async fn slow_upstream_is_504(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.core.request_timeout = Duration::from_millis(500)).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let r = send(g.addr(), "GET", HOST, "/svc/slow", "").await;
    assert_eq!(r.status, 504);
}

async fn upstream_down_is_502(gw: Shell, rx: Shell) {
    let g = gateway(gw, |_| {}).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = Rx::start(rx, g.addr(), dead).await;
    for _ in 0..3 {
        let reply = send(g.addr(), "GET", HOST, "/svc/x", "").await;
        assert_eq!(reply.status, 502);
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("Upstream error"), "{error}");
    }
    assert!(r.connected());
}

async fn receiver_killed_mid_request_is_502(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let r = Rx::start(rx, g.addr(), backend).await;
    let addr = g.addr();
    let pending = tokio::spawn(async move { send(addr, "GET", HOST, "/svc/hold", "").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.shutdown().await;
    assert_eq!(pending.await.unwrap().status, 502);
}

async fn receiver_comes_back_after_gateway_restart(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let addr = g.addr();
    let r = Rx::start(rx, addr, backend).await;
    assert_eq!(send(addr, "GET", HOST, "/svc/a", "x").await.status, 200);
    g.shutdown().await;
    let g = gateway(gw, |o| o.listen = addr).await;
    g.wait_for_receivers(1).await;
    assert_eq!(send(addr, "GET", HOST, "/svc/a", "x").await.status, 200);
    r.shutdown().await;
}

async fn health_and_metrics(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    send(g.addr(), "GET", HOST, "/svc/a", "").await;
    send(g.addr(), "GET", HOST, "/nowhere", "").await;
    assert_eq!(
        send(g.addr(), "GET", HOST, "/health", "").await.json()["status"],
        "ok"
    );
    let s = send(g.admin_addr(), "GET", HOST, "/stats", "").await;
    assert_eq!(s.json()["links"].as_array().unwrap().len(), 1);
    assert_eq!(s.json()["routes"][0][0], "api.agent.com/svc");
    let m = send(g.admin_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    assert!(text.contains("anpx_requests_completed_total 1\n"), "{text}");
    assert!(
        text.contains("anpx_requests_failed_total{status=\"404\"} 1\n"),
        "{text}"
    );
}

async fn middlewares_are_off_by_default(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    // A probe path is forwarded like any other, nothing is added to the
    // response, a preflight reaches the service, and rapid requests are
    // all served.
    let r = send(g.addr(), "GET", HOST, "/svc/wp-admin/", "").await;
    assert_eq!((r.status, r.header("x-path")), (200, "/svc/wp-admin/"));
    assert!(r.headers.get("x-frame-options").is_none());
    let preflight = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "PUT"),
    ];
    let r = send_with(g.addr(), "OPTIONS", HOST, "/svc/p", &preflight, "").await;
    assert_eq!((r.status, r.header("x-method")), (200, "OPTIONS"));
    assert!(r.headers.get("access-control-allow-origin").is_none());
    for _ in 0..50 {
        assert_eq!(send(g.addr(), "GET", HOST, "/svc/a", "").await.status, 200);
    }
    let m = send(g.admin_addr(), "GET", HOST, "/metrics", "").await;
    assert!(!String::from_utf8_lossy(&m.body).contains("anpx_policy_answered_total"));
}

/// Sends until the gateway answers 429; returns that answer and how many
/// were served before it.
async fn until_429(addr: SocketAddr, path: &str) -> (support::Reply, usize) {
    for served in 0..30 {
        let r = send(addr, "GET", HOST, path, "").await;
        if r.status == 429 {
            return (r, served);
        }
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    }
    panic!("no 429 after 30 requests at a limit of 1 a second");
}

async fn rate_limits_answer_429_with_retry_after(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let per_ip = gateway(gw, |o| {
        o.policy.per_ip = Some(RateConfig {
            per_sec: 1,
            burst: 3,
        })
    })
    .await;
    let _r = Rx::start(rx, per_ip.addr(), backend).await;
    let started = std::time::Instant::now();
    let (r, served) = until_429(per_ip.addr(), "/svc/a").await;
    // The burst, plus at most one token per second that passed.
    let most = 3 + started.elapsed().as_secs() as usize + 1;
    assert!(
        (3..=most).contains(&served),
        "{served} served before the 429"
    );
    assert_eq!(r.header("retry-after"), "1");
    assert_eq!(r.json()["error"], "Too many requests");
    assert!(
        r.headers.get("x-method").is_none(),
        "a 429 is not forwarded"
    );
    // Waiting as told is enough: served again within a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if send(per_ip.addr(), "GET", HOST, "/svc/a", "").await.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served again");
    }
    let m = send(per_ip.admin_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        !text.contains("anpx_policy_answered_total{reason=\"rate_limited_ip\"} 0\n")
            && text.contains("anpx_policy_answered_total{reason=\"rate_limited_ip\"}"),
        "{text}"
    );

    let backend = start_backend().await;
    let per_route = gateway(gw, |o| {
        o.policy.per_route = Some(RateConfig {
            per_sec: 1,
            burst: 2,
        })
    })
    .await;
    let _r = Rx::start(rx, per_route.addr(), backend).await;
    let (r, served) = until_429(per_route.addr(), "/svc/a").await;
    assert!(served >= 2, "{served}");
    assert_eq!(r.json()["reason"], "rate limit of this route");
    assert!(!r.header("retry-after").is_empty());
    // Another route has its own budget: /other reaches routing (404).
    assert_eq!(
        send(per_route.addr(), "GET", HOST, "/other", "")
            .await
            .status,
        404
    );
}

async fn cors_security_headers_and_blocklist(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| {
        o.policy.security_headers = true;
        o.policy.block_probes = true;
        o.policy.blocked_paths = vec!["/svc/private/".into()];
        o.policy.cors = CorsConfig {
            origins: vec!["https://app.test".into()],
            max_age: Duration::from_secs(42),
        };
    })
    .await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let addr = g.addr();

    // Security headers on forwarded responses; no HSTS over plain HTTP.
    let r = send(addr, "GET", HOST, "/svc/a", "").await;
    assert_eq!((r.status, r.header("x-method")), (200, "GET"));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("x-frame-options"), "DENY");
    assert_eq!(
        r.header("referrer-policy"),
        "strict-origin-when-cross-origin"
    );
    assert!(r.headers.get("strict-transport-security").is_none());

    // Probes and configured patterns: 403, never forwarded, however spelled.
    for path in [
        "/svc/wp-admin/install.php",
        "/svc/%77p-login.php",
        "/phpmyadmin/",
        "/svc/x?page=php%3A%2F%2Finput",
        "/svc/private/keys",
        "/svc/.env",
    ] {
        let r = send(addr, "GET", HOST, path, "").await;
        assert_eq!(r.status, 403, "{path}");
        assert!(r.headers.get("x-method").is_none(), "{path} was forwarded");
        assert_eq!(r.json()["error"], "Forbidden");
        assert_eq!(r.header("x-frame-options"), "DENY");
    }

    // A preflight from an allowed origin is answered at the gateway.
    let preflight = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-token"),
    ];
    let r = send_with(addr, "OPTIONS", HOST, "/svc/p", &preflight, "").await;
    assert_eq!(r.status, 204);
    assert!(r.headers.get("x-method").is_none(), "preflight forwarded");
    assert_eq!(r.header("access-control-allow-origin"), "https://app.test");
    assert!(r.header("access-control-allow-methods").contains("PUT"));
    assert_eq!(r.header("access-control-allow-headers"), "x-token");
    assert_eq!(r.header("access-control-max-age"), "42");
    // An empty answer of the gateway's own has no type.
    assert_eq!(r.headers.get("content-type"), None);
    // What the preflight echoes back is the client's: a value that is not
    // ASCII (legal obs-text) is answered like any other, and the gateway
    // goes on serving.
    let utf8 = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-caf\u{e9}"),
    ];
    let r = send_with(addr, "OPTIONS", HOST, "/svc/p", &utf8, "").await;
    assert_eq!(r.status, 204);
    let r = send(addr, "GET", HOST, "/svc/a", "").await;
    assert_eq!(r.status, 200);
    // From another origin it is refused.
    let evil = [
        ("origin", "https://evil.test"),
        ("access-control-request-method", "PUT"),
    ];
    let r = send_with(addr, "OPTIONS", HOST, "/svc/p", &evil, "").await;
    assert_eq!(r.status, 403);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    // The actual request is forwarded and labelled for the allowed origin
    // only.
    let r = send_with(
        addr,
        "POST",
        HOST,
        "/svc/p",
        &[("origin", "https://app.test")],
        "b",
    )
    .await;
    assert_eq!((r.status, r.header("x-method")), (200, "POST"));
    assert_eq!(r.header("access-control-allow-origin"), "https://app.test");
    assert_eq!(r.header("vary"), "Origin");
    let r = send_with(
        addr,
        "POST",
        HOST,
        "/svc/p",
        &[("origin", "https://evil.test")],
        "b",
    )
    .await;
    assert_eq!((r.status, r.header("x-method")), (200, "POST"));
    assert!(r.headers.get("access-control-allow-origin").is_none());

    let m = send(g.admin_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    for line in [
        "anpx_policy_answered_total{reason=\"blocked_path\"} 6\n",
        "anpx_policy_answered_total{reason=\"cors_preflight\"} 2\n",
        "anpx_policy_answered_total{reason=\"cors_origin_refused\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
}

/// A gateway with a certificate from a private CA: the receiver dials
/// `wss://` trusting that CA, a public client gets through over `https://`.
async fn wss_and_https_with_a_private_ca(gw: Shell, rx: Shell) {
    let pki = TestPki::new("ok");
    let backend = start_backend().await;
    let tls = shell_common::tls::server_config(&pki.cert, &pki.key, false).unwrap();
    let g = gateway(gw, |o| o.tls = Some(tls)).await;
    let url = format!("wss://localhost:{}/ws", g.addr().port());
    let trust = shell_common::tls::client_config(Some(&pki.ca)).unwrap();
    let r = Rx::dial(rx, url, Some(trust), None, backend, &["api.agent.com/svc"]);
    r.wait_connected().await;
    let (status, headers) = pki.https_get(g.addr(), "/svc/hello").await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-path").unwrap(), "/svc/hello");
    r.shutdown().await;
}

/// A receiver that does not trust the gateway's certificate never
/// connects, and the gateway never lists it.
async fn a_receiver_that_does_not_trust_the_gateway_does_not_connect(gw: Shell, rx: Shell) {
    let pki = TestPki::new("untrusted");
    let backend = start_backend().await;
    let tls = shell_common::tls::server_config(&pki.cert, &pki.key, false).unwrap();
    let g = gateway(gw, |o| o.tls = Some(tls)).await;
    let url = format!("wss://localhost:{}/ws", g.addr().port());
    // System roots only: the private CA is unknown.
    let r = Rx::dial(rx, url, None, None, backend, &["api.agent.com/svc"]);
    let wait = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if r.connected() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    assert!(wait.await.is_err(), "connected without trusting the CA");
    assert_eq!(g.stats().await.links.len(), 0);
    r.shutdown().await;
}

#[test]
fn unreadable_tls_files_are_reported_with_their_path() {
    let err = shell_common::tls::server_config(
        "/nonexistent/cert.pem".as_ref(),
        "/nonexistent/key.pem".as_ref(),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

const DID: &str = "did:wba:didhost.cc:anpproxy1";

/// DID-WBA admission as `shell`'s gateway runs it: documents from the test
/// vectors, anpproxy1 granted api.agent.com/one, anpproxy2
/// api.agent.com/two.
fn did_admission(shell: Shell) -> Arc<DidWbaAdmission> {
    let registry = StaticRegistry::new([
        (DID.to_owned(), "api.agent.com/one".parse().unwrap()),
        (
            "did:wba:didhost.cc:anpproxy2".to_owned(),
            "api.agent.com/two".parse().unwrap(),
        ),
    ]);
    did_admission_with(shell, Arc::new(registry))
}

/// DID-WBA admission through `shell`'s document fetch, granting from
/// `registry`.
fn did_admission_with(shell: Shell, registry: Arc<dyn Registry>) -> Arc<DidWbaAdmission> {
    let io: Arc<dyn DocumentIo> = match shell {
        Shell::Tokio => Arc::new(shell_tokio::fetch::TokioDocuments),
        Shell::Smol => Arc::new(shell_smol::fetch::SmolDocuments),
    };
    Arc::new(DidWbaAdmission::new(
        VerifierConfig::default(),
        DocumentSources {
            directory: Some(did_vectors()),
            tls: shell_common::tls::client_config(None).unwrap(),
        },
        io,
        registry,
    ))
}

fn did_vectors() -> std::path::PathBuf {
    anpx_tests::testdata_dir().join("did-wba-vectors")
}

async fn auth_refusals(addr: SocketAddr, reason: &str) -> u64 {
    let m = send(addr, "GET", "x", "/metrics", "").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let needle = format!("anpx_receiver_auth_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

/// A receiver that signs its handshake with its DID key gets exactly the
/// routes the registry grants its DID.
async fn did_wba_signed_receiver_gets_exactly_its_routes(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.admission = did_admission(gw)).await;
    let dir = did_vectors();
    let creds = DidCredentials::load(
        &dir.join("secp256k1-did.json"),
        &dir.join("secp256k1-key-1_private.pem"),
    )
    .unwrap();
    assert_eq!(creds.did(), DID);
    let url = format!("ws://{}/ws", g.addr());
    let r = Rx::dial(rx, url, None, Some(Arc::new(creds)), backend, &[]);
    r.wait_connected().await;
    let stats = g.stats().await;
    assert_eq!(stats.links.len(), 1);
    assert_eq!(
        stats.links[0].identity,
        anpx_core::Identity::Did(DID.into())
    );
    assert_eq!(send(g.addr(), "GET", HOST, "/one/x", "").await.status, 200);
    assert_eq!(send(g.addr(), "GET", HOST, "/two/x", "").await.status, 404);
    r.shutdown().await;
}

/// The same with the grants in a SQLite registry, opened the way each
/// shell's binary opens `gateway.registry.url` (the smol one drives sqlx
/// through async-compat) and filled beforehand by another connection, as
/// `anpx registry add` would.
async fn did_wba_grants_come_from_a_sqlite_registry(gw: Shell, rx: Shell) {
    let dir = std::env::temp_dir().join(format!(
        "anpx-shells-sqlite-{gw:?}-{rx:?}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("registry.db").display());
    let writer = shell_common::registry::SqlRegistry::connect(&url)
        .await
        .unwrap();
    for (did, service) in [
        (DID, "api.agent.com/one"),
        ("did:wba:didhost.cc:anpproxy2", "api.agent.com/two"),
    ] {
        writer.add(did, &service.parse().unwrap()).await.unwrap();
    }
    let mut section = anpx_core::config::GatewaySection::default();
    section.registry.url = Some(url);
    let registry = match gw {
        Shell::Tokio => shell_tokio::registry::try_registry_from_config(&section),
        Shell::Smol => shell_smol::registry::try_registry_from_config(&section),
    }
    .unwrap();

    let backend = start_backend().await;
    let g = gateway(gw, |o| o.admission = did_admission_with(gw, registry)).await;
    let creds = DidCredentials::load(
        &did_vectors().join("secp256k1-did.json"),
        &did_vectors().join("secp256k1-key-1_private.pem"),
    )
    .unwrap();
    let r = Rx::dial(
        rx,
        format!("ws://{}/ws", g.addr()),
        None,
        Some(Arc::new(creds)),
        backend,
        &[],
    );
    r.wait_connected().await;
    let stats = g.stats().await;
    assert_eq!(stats.links.len(), 1);
    assert_eq!(
        stats.links[0].identity,
        anpx_core::Identity::Did(DID.into())
    );
    assert_eq!(send(g.addr(), "GET", HOST, "/one/x", "").await.status, 200);
    assert_eq!(send(g.addr(), "GET", HOST, "/two/x", "").await.status, 404);
    r.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a signature the handshake is refused, counted by reason, and
/// the receiver never connects.
async fn did_wba_unsigned_receiver_is_refused(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.admission = did_admission(gw)).await;
    let url = format!("ws://{}/ws", g.addr());
    let r = Rx::dial(rx, url, None, None, backend, &["api.agent.com/one"]);
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        while auth_refusals(g.admin_addr(), "missing_authorization").await == 0 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    counted.await.expect("the refusal is counted");
    assert!(!r.connected());
    assert_eq!(g.stats().await.links.len(), 0);
    r.shutdown().await;
}

/// DID documents over HTTPS through each shell's fetch: a private CA is
/// trusted when given, sizes over the limit and non-200 answers fail.
#[test]
fn did_documents_fetch_over_https_in_both_shells() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pki = TestPki::new("did-fetch");
        let document = std::fs::read(did_vectors().join("secp256k1-did.json")).unwrap();
        let addr = pki.serve_https(document.clone()).await;
        let ios: [(&str, Arc<dyn DocumentIo>); 2] = [
            ("tokio", Arc::new(shell_tokio::fetch::TokioDocuments)),
            ("smol", Arc::new(shell_smol::fetch::SmolDocuments)),
        ];
        let trust = shell_common::tls::client_config(Some(&pki.ca)).unwrap();
        let url = format!("https://localhost:{}/user/did.json", addr.port());
        let missing = format!("https://localhost:{}/missing", addr.port());
        let fetch = |url: &str, max_bytes, tls: &Arc<rustls::ClientConfig>| DocumentFetch {
            url: url.to_owned(),
            timeout: Duration::from_secs(5),
            max_bytes,
            tls: tls.clone(),
        };
        for (name, io) in ios {
            let got = io.get(fetch(&url, 1 << 20, &trust)).await;
            assert_eq!(got.unwrap(), document, "{name}");
            let small = io.get(fetch(&url, 10, &trust)).await;
            assert!(
                matches!(small, Err(FetchError::TooLarge(10))),
                "{name}: {small:?}"
            );
            let gone = io.get(fetch(&missing, 1 << 20, &trust)).await;
            assert!(
                matches!(gone, Err(FetchError::Status(404))),
                "{name}: {gone:?}"
            );
            let roots = shell_common::tls::client_config(None).unwrap();
            let untrusted = io.get(fetch(&url, 1 << 20, &roots)).await;
            assert!(
                matches!(untrusted, Err(FetchError::Transport(_))),
                "{name}: {untrusted:?}"
            );
        }
    });
}

async fn binary_and_empty_bodies(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let binary: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let r = send(g.addr(), "POST", HOST, "/svc/bin", binary.clone()).await;
    assert_eq!(r.body, binary);
    let r = send(g.addr(), "POST", HOST, "/svc/empty", "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("x-body-sha256"), sha256(b""));
    // The service names no type, and no receiver makes one up.
    assert_eq!(r.headers.get("content-type"), None);
}

/// Concurrent requests on one route spread over both of its receivers.
async fn two_receivers_share_the_load_of_one_route(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _a = Rx::start(rx, g.addr(), backend).await;
    let _b = Rx::start(rx, g.addr(), backend).await;
    g.wait_for_receivers(2).await;
    let addr = g.addr();
    let holds: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { send(addr, "GET", HOST, "/svc/hold", "").await }))
        .collect();
    g.wait_in_flight(6).await;
    let stats = g.stats().await;
    let loads: Vec<usize> = stats.links.iter().map(|l| l.in_flight).collect();
    assert_eq!(loads, [3, 3], "{loads:?}");
    for h in holds {
        h.abort();
    }
}

/// On a separate receiver port any path upgrades.
async fn separate_receiver_port_accepts_any_path(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.ws_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let url = format!("ws://{}/any/path", g.ws_addr().unwrap());
    let r = Rx::dial(rx, url, None, None, backend, &["api.agent.com/svc"]);
    r.wait_connected().await;
    assert_eq!(send(g.addr(), "GET", HOST, "/svc/a", "").await.status, 200);
    r.shutdown().await;
}

/// Shutting down waits for requests in flight (within the grace period),
/// then nothing listens.
async fn shutdown_lets_requests_in_flight_finish(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.drain_grace = Duration::from_secs(10)).await;
    let addr = g.addr();
    let _r = Rx::start(rx, addr, backend).await;
    let slow = tokio::spawn(async move { send(addr, "GET", HOST, "/svc/slow", "").await });
    g.wait_in_flight(1).await;
    g.shutdown().await;
    // The drain waited for the slow answer rather than cutting it.
    let r = slow.await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"late"[..]));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

for_every_pair!(
    every_method_round_trips,
    repeated_query_keys_and_set_cookie,
    non_ascii_header_values_cross_both_ways,
    ten_mebibytes_each_way,
    binary_and_empty_bodies,
    two_receivers_share_the_load_of_one_route,
    separate_receiver_port_accepts_any_path,
    shutdown_lets_requests_in_flight_finish,
    chunked_upload_whose_end_is_split,
    no_route_is_404_and_at_capacity_is_503,
    slow_upstream_is_504,
    upstream_down_is_502,
    receiver_killed_mid_request_is_502,
    receiver_comes_back_after_gateway_restart,
    health_and_metrics,
    wss_and_https_with_a_private_ca,
    a_receiver_that_does_not_trust_the_gateway_does_not_connect,
    did_wba_signed_receiver_gets_exactly_its_routes,
    did_wba_grants_come_from_a_sqlite_registry,
    did_wba_unsigned_receiver_is_refused,
    middlewares_are_off_by_default,
    rate_limits_answer_429_with_retry_after,
    cors_security_headers_and_blocklist,
);
