//! Several gateway processes sharing NATS as one service:
//! every gateway reaches every receiver's routes, bodies stream across
//! intact with local timeouts, and killing a gateway mid-load loses only
//! the requests in flight through it while a receiver connected to two
//! gateways keeps serving. Each scenario runs on `anpx` gateways alone and
//! on a cluster mixing `anpx` and `anpx-smol` gateways.
//!
//! Each test starts a NATS server of its own (and the registry test a
//! PostgreSQL server) from the binaries installed on the machine; where
//! they are not installed the test prints a skip notice naming the install
//! command, and fails when `CI` is set.

#[path = "support/identity.rs"]
mod identity;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anpx_test_servers::{Nats, Postgres};
use identity::{new_identity, registry as registry_cmd};
use support::{Binary, Proc};

/// The cluster's subject prefix; each test has a NATS server of its own.
const PREFIX: &str = "anpxtest";

fn anpx() -> Command {
    Binary::Anpx.command()
}

/// The address after `label` on a line of a gateway's start banner
/// (`public URL:       http://127.0.0.1:PORT`), read from its stdout.
fn banner_addr(line: &str, label: &str) -> Option<SocketAddr> {
    let rest = line.split(label).nth(1)?.trim_start();
    let rest = rest.strip_prefix("http://")?;
    rest.split(['/', ' ']).next()?.parse().ok()
}

/// A scratch directory for the processes' logs, named for the test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anpx-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each gateway process's admin address (where /stats and /metrics are),
/// by its public address.
static ADMIN: std::sync::Mutex<std::collections::BTreeMap<SocketAddr, SocketAddr>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The admin address of the gateway process listening on `public`.
fn admin(public: SocketAddr) -> SocketAddr {
    ADMIN.lock().unwrap()[&public]
}

fn gateway(
    binary: Binary,
    nats: &Nats,
    dir: &Path,
    node: &str,
    extra: &[&str],
) -> (Proc, SocketAddr) {
    // Port 0 and the banner, not a port picked and released beforehand:
    // tests running side by side took such ports from each other.
    let mut child = binary
        .command()
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cluster-nats-url",
            &nats.url(),
            "--cluster-node-name",
            node,
            "--cluster-subject-prefix",
            PREFIX,
            // Faster than the defaults (1 s, 3 s) so the test runs quickly.
            "--cluster-announce-interval-ms",
            "200",
            "--cluster-route-ttl-ms",
            "1000",
            "--drain-grace-secs",
            "0",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(dir.join(format!("{node}.log"))).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut public, mut admin) = (None, None);
    let mut lines = std::io::BufRead::lines(stdout);
    while public.is_none() || admin.is_none() {
        let Some(Ok(line)) = lines.next() else {
            panic!("{node} ended before its banner named its addresses (see {node}.log)");
        };
        public = public.or_else(|| banner_addr(&line, "public URL:"));
        admin = admin.or_else(|| banner_addr(&line, "admin URL:"));
    }
    // Keep reading so the gateway never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let (addr, admin) = (public.unwrap(), admin.unwrap());
    ADMIN.lock().unwrap().insert(addr, admin);
    (Proc(child), addr)
}

fn receiver(
    dir: &Path,
    name: &str,
    gateways: &[SocketAddr],
    service: &str,
    upstream: SocketAddr,
) -> Proc {
    let mut c = anpx();
    c.args([
        "receiver",
        "--gateway",
        &format!("ws://{}/ws", gateways[0]),
        "--service",
        service,
        "--upstream",
        &format!("http://{upstream}"),
        "--reconnect-first-delay-ms",
        "100",
        "--reconnect-max-delay-secs",
        "1",
    ]);
    if gateways.len() > 1 {
        let extra: Vec<String> = gateways[1..]
            .iter()
            .map(|g| format!("ws://{g}/ws"))
            .collect();
        c.args(["--extra-gateways", &extra.join(",")]);
    }
    Proc(
        c.stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// One HTTP/1.1 exchange on its own connection (`anpx-smol`'s server
/// speaks 1.1 only): status and body, or `None` when the connection failed
/// or was cut.
fn http(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix(name)
                .map(|v| v.trim().to_owned())
        })
    };
    let mut body = raw[split + 4..].to_vec();
    if header("transfer-encoding:").is_some_and(|te| te.contains("chunked")) {
        body = dechunk(&body)?;
    }
    // A cut response must not pass for a whole one.
    if let Some(len) = header("content-length:") {
        if len.parse::<usize>().ok()? != body.len() {
            return None;
        }
    }
    Some((status, body))
}

/// A chunked body's data; `None` when it ends before its last chunk.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size_hex = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if raw.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    http(addr, "GET", host, path, b"")
}

/// Polls until `addr` answers `host` `path` with 200. Generous: on a
/// loaded machine three gateways, their NATS and PostgreSQL start slowly,
/// and a wait is not a speed claim.
fn wait_serving(addr: SocketAddr, host: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    while Instant::now() < deadline {
        last = get(addr, host, path).map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()));
        if matches!(&last, Some((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} never served {host}{path}: last answer {last:?}");
}

/// The agents behind the receivers: `/slow?ms=N` answers after N ms,
/// `/echo` returns the request body, anything else names the host.
fn upstream() -> SocketAddr {
    use axum::body::Bytes;
    use axum::extract::Query;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use axum::Router;

    #[derive(serde::Deserialize)]
    struct Slow {
        ms: u64,
    }
    let app = Router::new()
        .route(
            "/slow",
            get(|Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                "slept"
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .fallback(|headers: HeaderMap| async move {
            format!(
                "served {}",
                headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
            )
        });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn every_gateway_reaches_every_service_with_local_semantics() {
    reach("reach", [Binary::Anpx; 3]);
}

/// gw-1 is `anpx`, gw-2 and gw-3 `anpx-smol`: requests cross from tokio to
/// smol, smol to tokio and smol to smol.
#[test]
fn a_cluster_mixing_anpx_and_anpx_smol_reaches_every_service_with_local_semantics() {
    reach(
        "reach-mixed",
        [Binary::Anpx, Binary::AnpxSmol, Binary::AnpxSmol],
    );
}

/// Three gateways of the given binaries, each with its own receiver, one
/// route served on two of them.
fn reach(name: &str, binaries: [Binary; 3]) {
    let Some(nats) = Nats::start_or_skip() else {
        return;
    };
    let dir = scratch(name);
    let up = upstream();
    let timeout = ["--request-timeout-secs", "2"];
    let (_g1, a1) = gateway(binaries[0], &nats, &dir, "gw-1", &timeout);
    let (_g2, a2) = gateway(binaries[1], &nats, &dir, "gw-2", &timeout);
    let (_g3, a3) = gateway(binaries[2], &nats, &dir, "gw-3", &timeout);
    let gws = [a1, a2, a3];
    let _ra = receiver(&dir, "ra", &[a1], "a.test", up);
    let _rb = receiver(&dir, "rb", &[a2], "b.test", up);
    let _rc = receiver(&dir, "rc", &[a3], "c.test", up);
    // One route served on two gateways by two receivers.
    let _rs1 = receiver(&dir, "rs1", &[a1], "shared.test", up);
    let _rs2 = receiver(&dir, "rs2", &[a2], "shared.test", up);

    // Each service through each gateway: one local, two forwarded.
    for gw in gws {
        for host in ["a.test", "b.test", "c.test"] {
            wait_serving(gw, host, "/hello");
            let (status, body) = get(gw, host, "/hello").unwrap();
            assert_eq!(
                (status, String::from_utf8_lossy(&body).into_owned()),
                (200, format!("served {host}"))
            );
        }
    }

    // Local receivers are preferred: gw-1's requests for the shared route
    // all stay on gw-1, even though gw-2 announces it too.
    wait_serving(a2, "shared.test", "/x");
    wait_serving(a3, "shared.test", "/x");
    let before = (started(a1), started(a2));
    for _ in 0..10 {
        assert_eq!(get(a1, "shared.test", "/x").map(|(s, _)| s), Some(200));
    }
    assert_eq!((started(a1), started(a2)), (before.0 + 10, before.1));

    // Bodies bigger than a NATS message and than the credit window, both
    // ways (upload and response), arrive intact, forwarded from gw-1 to
    // gw-2, from gw-2 to gw-1 and from gw-3 to gw-2.
    let big = pattern(3 * 1024 * 1024 + 7);
    for (via, host) in [(a1, "b.test"), (a2, "a.test"), (a3, "b.test")] {
        let (status, body) = http(via, "POST", host, "/echo", &big).expect("a whole response");
        assert_eq!(status, 200, "{via} -> {host}");
        assert_eq!(body.len(), big.len(), "{via} -> {host}");
        assert!(body == big, "the body echoed {via} -> {host} differs");
    }
    // A small body goes whole in the start message.
    let (status, body) = http(a3, "POST", "a.test", "/echo", b"tiny").unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"tiny"[..]));

    // Nobody serves it: the same 404 as a single gateway.
    for gw in gws {
        let (status, body) = get(gw, "nobody.test", "/x").unwrap();
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    }

    // The serving gateway's 504 comes back through the forwarding one.
    for (via, host) in [(a1, "c.test"), (a3, "a.test")] {
        let (status, body) = get(via, host, "/slow?ms=4000").unwrap();
        assert_eq!(
            status,
            504,
            "{via} -> {host}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Requests a gateway's core started on its own receivers (local and
/// forwarded to it), from `/stats`.
fn started(gateway: SocketAddr) -> u64 {
    let (_, body) = get(admin(gateway), "ignored", "/stats").expect("stats");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
    v["totals"]["started"].as_u64().expect("totals.started")
}

/// One request of the load: when it started and ended, and how.
#[derive(Debug, Clone)]
struct Outcome {
    via: SocketAddr,
    started: Instant,
    ended: Instant,
    status: Option<u16>,
}

#[test]
fn killing_a_gateway_loses_only_its_in_flight_requests() {
    kill("kill", [Binary::Anpx; 3]);
}

/// The killed gateway (gw-1) and the one forwarding to it (gw-3) are
/// `anpx-smol`; gw-2, which takes over, is `anpx`.
#[test]
fn killing_an_anpx_smol_gateway_loses_only_its_in_flight_requests() {
    kill(
        "kill-smol",
        [Binary::AnpxSmol, Binary::Anpx, Binary::AnpxSmol],
    );
}

/// SIGKILL of gw-1 under load, through gw-3 (forwarding to gw-1 and gw-2)
/// and gw-2 (local); gateways of the given binaries.
fn kill(name: &str, binaries: [Binary; 3]) {
    let Some(nats) = Nats::start_or_skip() else {
        return;
    };
    let dir = scratch(name);
    let up = upstream();
    let (mut g1, a1) = gateway(binaries[0], &nats, &dir, "gw-1", &[]);
    let (_g2, a2) = gateway(binaries[1], &nats, &dir, "gw-2", &[]);
    let (_g3, a3) = gateway(binaries[2], &nats, &dir, "gw-3", &[]);
    // Multi-homed: one connection to gw-1 and one to gw-2.
    let _rm = receiver(&dir, "rm", &[a1, a2], "multi.test", up);
    for gw in [a1, a2, a3] {
        wait_serving(gw, "multi.test", "/slow?ms=0");
    }
    // gw-3 has no receiver: its requests are forwarded to gw-1 or gw-2.
    // Wait until both take forwarded requests, so some are in flight
    // through gw-1 when it dies.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = (started(a1), started(a2));
        for _ in 0..16 {
            assert_eq!(
                get(a3, "multi.test", "/slow?ms=0").map(|(s, _)| s),
                Some(200)
            );
        }
        if started(a1) > before.0 && started(a2) > before.1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "forwarded requests never reached both gateways"
        );
    }

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = [a3, a3, a3, a3, a2, a2]
        .into_iter()
        .map(|via| {
            let outcomes = outcomes.clone();
            std::thread::spawn(move || {
                while Instant::now() < stop_at {
                    let started = Instant::now();
                    let status = get(via, "multi.test", "/slow?ms=300").map(|(s, _)| s);
                    outcomes.lock().unwrap().push(Outcome {
                        via,
                        started,
                        ended: Instant::now(),
                        status,
                    });
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    g1.0.kill().unwrap();
    g1.0.wait().unwrap();
    for c in clients {
        c.join().unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let in_flight_at_kill = outcomes
        .iter()
        .filter(|o| o.started <= killed_at && o.ended >= killed_at)
        .count();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != Some(200)).collect();
    eprintln!(
        "{} requests, {in_flight_at_kill} in flight at the kill, {} failed",
        outcomes.len(),
        failed.len()
    );
    assert!(in_flight_at_kill > 0, "the kill came between requests");
    // Failures: only 502s, only of requests already running when gw-1 died.
    for f in &failed {
        assert_eq!(f.status, Some(502), "{f:?}");
        assert!(
            f.started <= killed_at,
            "a request started after the kill failed: {f:?}"
        );
    }
    assert!(
        failed.len() <= in_flight_at_kill,
        "{} failures, {in_flight_at_kill} in flight at the kill",
        failed.len()
    );
    // The multi-homed receiver kept serving gw-2's own clients throughout.
    let via_gw2: Vec<&Outcome> = outcomes.iter().filter(|o| o.via == a2).collect();
    assert!(via_gw2.iter().all(|o| o.status == Some(200)), "{via_gw2:?}");
    // And requests through gw-3 were rerouted to gw-2: plenty succeeded
    // after the kill.
    let after = outcomes
        .iter()
        .filter(|o| o.via == a3 && o.started > killed_at && o.status == Some(200))
        .count();
    assert!(
        after >= 20,
        "only {after} requests through gw-3 succeeded after the kill"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gateways_sharing_a_postgres_registry_grant_alike_and_forward_signed_receivers() {
    let Some(nats) = Nats::start_or_skip() else {
        return;
    };
    let Some(postgres) = Postgres::start_or_skip() else {
        return;
    };
    let registry = postgres.url();
    let dir = scratch("did");
    let up = upstream();
    let name = "agent-1";
    let me = new_identity(&dir, name);
    let did = me.did.clone();
    registry_cmd(&registry, "add", &did, &format!("signed.test/{name}"));

    let docs_arg = me.documents_dir.to_string_lossy().into_owned();
    let auth = [
        "--auth-mode",
        "did-wba",
        "--auth-did-documents-dir",
        &docs_arg,
        "--registry-url",
        &registry,
    ];
    let (_g1, a1) = gateway(Binary::Anpx, &nats, &dir, "gw-1", &auth);
    let (_g2, a2) = gateway(Binary::Anpx, &nats, &dir, "gw-2", &auth);
    let (_g3, a3) = gateway(Binary::Anpx, &nats, &dir, "gw-3", &auth);
    // Signed and multi-homed: both gateways must grant it from the registry.
    let _signed = Proc(
        anpx()
            .args([
                "receiver",
                "--gateway",
                &format!("ws://{a1}/ws"),
                "--extra-gateways",
                &format!("ws://{a2}/ws"),
                "--upstream",
                &format!("http://{up}"),
                "--did-document",
            ])
            .arg(&me.document)
            .arg("--private-key")
            .arg(&me.key)
            .args([
                "--reconnect-first-delay-ms",
                "100",
                "--reconnect-max-delay-secs",
                "1",
            ])
            .stderr(std::fs::File::create(dir.join("signed.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let path = format!("/{name}/hello");
    for gw in [a1, a2, a3] {
        wait_serving(gw, "signed.test", &path);
    }
    // Each gateway it dials admits it from the shared registry: both end
    // up holding a connection with its identity.
    for gw in [a1, a2] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = get(admin(gw), "ignored", "/stats").unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let links = v["links"].as_array().unwrap().clone();
            if links.len() == 1 {
                assert_eq!(links[0]["identity"]["did"], did.as_str(), "{v}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{gw} never admitted the receiver: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // An unsigned receiver gets nothing on any gateway, so the cluster
    // still knows only the registry's route.
    let _intruder = receiver(&dir, "intruder", &[a3], "intruder.test", up);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(admin(a3), "ignored", "/metrics").is_some_and(|(_, m)| {
        String::from_utf8_lossy(&m)
            .lines()
            .any(|l| l.starts_with("anpx_receiver_auth_refused_total{") && !l.ends_with(" 0"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the unsigned receiver was never refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for gw in [a1, a2, a3] {
        assert_eq!(get(gw, "intruder.test", "/x").map(|(s, _)| s), Some(404));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the WebSocket service saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The client's close frame, with its code.
    CloseFrame(u16),
    /// The connection ended (closed, reset or failed).
    Ended,
}

/// A WebSocket service: echoes text and binary messages as they are; the
/// text `close` makes it close with 1000. Reports what it saw.
async fn ws_service() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use async_tungstenite::tungstenite::protocol::CloseFrame;
    use async_tungstenite::tungstenite::Message;
    use futures_util::StreamExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let config = async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(Some(64 << 20))
                    .max_frame_size(Some(64 << 20));
                let Ok(mut ws) =
                    async_tungstenite::tokio::accept_async_with_config(tcp, Some(config)).await
                else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    let answer = match m {
                        Message::Text(t) if t.as_str() == "close" => {
                            let bye = CloseFrame {
                                code: CloseCode::Normal,
                                reason: "bye".into(),
                            };
                            let _ = ws.close(Some(bye)).await;
                            continue;
                        }
                        Message::Text(t) => Message::Text(t),
                        Message::Binary(b) => Message::Binary(b),
                        Message::Close(frame) => {
                            let code = frame.map_or(0, |f| u16::from(f.code));
                            let _ = tx.send(Seen::CloseFrame(code));
                            continue;
                        }
                        _ => continue,
                    };
                    if ws.send(answer).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(Seen::Ended);
            });
        }
    });
    (addr, rx)
}

type WsClient = async_tungstenite::WebSocketStream<
    async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>,
>;

/// Opens `ws://<host>/chat` through the gateway at `gw`, retrying until
/// the gateway knows the route (the cluster's announcements take a moment).
async fn ws_open(gw: SocketAddr, host: &str) -> WsClient {
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let request = format!("ws://{host}/chat").into_client_request().unwrap();
        let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
        let config = async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let attempt = tokio::time::timeout(
            Duration::from_secs(20),
            async_tungstenite::tokio::client_async_with_config(request, tcp, Some(config)),
        )
        .await;
        let error = match attempt {
            Ok(Ok((ws, _))) => return ws,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "handshake timed out".to_owned(),
        };
        assert!(
            Instant::now() < deadline,
            "{gw} never switched {host} to a WebSocket: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next data or close message, skipping pings; `None` when the
/// connection ended (cleanly or not).
async fn ws_next(ws: &mut WsClient) -> Option<async_tungstenite::tungstenite::Message> {
    use async_tungstenite::tungstenite::Message;
    use futures_util::StreamExt;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the WebSocket moved in time");
        match next {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

async fn seen_next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("the service saw its connection move in time")
        .expect("the service runs")
}

/// A public WebSocket whose route another gateway's receiver serves is
/// carried over the cluster, on a cluster of one `anpx` gateway (gw-1, a
/// receiver for `wsa.test`) and two `anpx-smol` ones (gw-2 with a receiver
/// for `wsb.test`, gw-3 with none): text and a 3 MiB binary message echo
/// through every forwarding direction, either side may close, a client
/// that vanishes closes the service's socket, and a quiet WebSocket ends
/// at the gateways' `--websocket-idle-timeout-secs`.
#[test]
fn websockets_cross_a_mixed_cluster() {
    use async_tungstenite::tungstenite::Message;

    let Some(nats) = Nats::start_or_skip() else {
        return;
    };
    let dir = scratch("websocket");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (up, mut seen) = rt.block_on(ws_service());
    let idle = ["--websocket-idle-timeout-secs", "4"];
    let (_g1, a1) = gateway(Binary::Anpx, &nats, &dir, "gw-1", &idle);
    let (_g2, a2) = gateway(Binary::AnpxSmol, &nats, &dir, "gw-2", &idle);
    let (_g3, a3) = gateway(Binary::AnpxSmol, &nats, &dir, "gw-3", &idle);
    let _ra = receiver(&dir, "ra", &[a1], "wsa.test", up);
    let _rb = receiver(&dir, "rb", &[a2], "wsb.test", up);
    let big = pattern(3 * 1024 * 1024);

    rt.block_on(async {
        // anpx forwarding to anpx-smol, anpx-smol to anpx, anpx-smol to
        // anpx-smol: text and 3 MiB each way, then the client closes.
        for (via, host) in [(a1, "wsb.test"), (a3, "wsa.test"), (a3, "wsb.test")] {
            let mut ws = ws_open(via, host).await;
            let text = format!("hello {host} through {via}");
            ws.send(Message::text(text.clone())).await.unwrap();
            match ws_next(&mut ws).await {
                Some(Message::Text(t)) => assert_eq!(t.as_str(), text),
                other => panic!("{via} -> {host}: {other:?}"),
            }
            ws.send(Message::binary(big.clone())).await.unwrap();
            match ws_next(&mut ws).await {
                Some(Message::Binary(b)) => {
                    assert_eq!(b.len(), big.len(), "{via} -> {host}");
                    assert!(b == big, "the 3 MiB echoed {via} -> {host} differs");
                }
                other => panic!("{via} -> {host}: {other:?}"),
            }
            let done = async_tungstenite::tungstenite::protocol::CloseFrame {
                code: async_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "done".into(),
            };
            ws.close(Some(done)).await.unwrap();
            // The service's answer to the close, then the end.
            assert!(
                matches!(ws_next(&mut ws).await, Some(Message::Close(_))),
                "{via} -> {host}: no close answer"
            );
            assert_eq!(ws_next(&mut ws).await, None, "{via} -> {host}");
            assert_eq!(seen_next(&mut seen).await, Seen::CloseFrame(1000));
            assert_eq!(seen_next(&mut seen).await, Seen::Ended);
        }

        // The service closes first: its close frame reaches the client
        // through the forwarding gateway, and the client's answer the
        // service.
        let mut ws = ws_open(a1, "wsb.test").await;
        ws.send(Message::text("close")).await.unwrap();
        match ws_next(&mut ws).await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1000);
                assert_eq!(frame.reason.as_str(), "bye");
            }
            other => panic!("expected the service's close: {other:?}"),
        }
        assert_eq!(ws_next(&mut ws).await, None);
        assert_eq!(seen_next(&mut seen).await, Seen::CloseFrame(1000));
        assert_eq!(seen_next(&mut seen).await, Seen::Ended);

        // A client that vanishes without a close: the service's socket
        // closes too.
        let mut ws = ws_open(a3, "wsa.test").await;
        ws.send(Message::text("still there?")).await.unwrap();
        assert!(matches!(ws_next(&mut ws).await, Some(Message::Text(_))));
        drop(ws);
        assert_eq!(seen_next(&mut seen).await, Seen::Ended);

        // A quiet WebSocket: the idle timeout ends it on both ends.
        let mut ws = ws_open(a1, "wsb.test").await;
        ws.send(Message::text("then silence")).await.unwrap();
        assert!(matches!(ws_next(&mut ws).await, Some(Message::Text(_))));
        assert_eq!(ws_next(&mut ws).await, None, "the idle WebSocket ended");
        assert_eq!(seen_next(&mut seen).await, Seen::Ended);
    });
    // The forwarding gateway says why.
    let log = dir.join("gw-1.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("WebSocket idle past its timeout")
    {
        assert!(
            Instant::now() < deadline,
            "gw-1 never logged the idle timeout: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
