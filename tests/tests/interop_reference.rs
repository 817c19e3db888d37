//! Live interop with the Python reference implementation, both ways and on
//! both shells: the reference receiver (serving `testdata/interop/
//! echo_app.py`) behind each anpx gateway, and each anpx receiver (serving
//! the Rust twin of that app) behind the reference gateway. Every method,
//! bodies of 0 B to several MB with Content-Length and chunked, responses of
//! the same sizes, status codes, headers and query strings, requests in
//! parallel on one connection, and the reference's JSON ping/pong; bodies
//! compared byte for byte.
//!
//! Where the reference changes a request or a response on its own (its
//! flat header and query maps, its gateway dropping GET/HEAD/DELETE bodies
//! and answering OPTIONS itself), the tests assert that documented
//! behaviour (docs/PROTOCOL.md, "Interoperating with the reference").

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::pairs::{Gw, Rx, Shell};
use support::reference::{
    download_pattern, reference, start_echo_backend, tail, RefProcess, STARTUP,
};
use support::{client, sha256, Body, Reply};

/// Which side the reference plays in a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// anpx gateway in front, reference receiver behind.
    ReferenceReceiver,
    /// Reference gateway in front, anpx receiver behind.
    ReferenceGateway,
}

/// A working tunnel: where public clients send requests.
struct Tunnel {
    addr: SocketAddr,
    peer: Peer,
    name: String,
}

const CHUNK: usize = 64 * 1024;

/// Request and response body sizes: empty, one byte, around one chunk (the
/// frame overhead puts the first split a little under 64 KiB), a few
/// hundred KB, several MB.
const SIZES: [usize; 8] = [
    0,
    1,
    CHUNK - 200,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    300_000,
    5_000_000,
];

enum Upload {
    Length(Bytes),
    Chunked(Bytes),
}

/// One request through the tunnel; the body is sent with a Content-Length
/// or as chunked pieces of 10 000 bytes.
async fn request(
    t: &Tunnel,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Upload,
) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", t.addr))
        .header("host", "api.agent.com");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let body: Body = match body {
        Upload::Length(b) => http_body_util::Full::new(b).boxed(),
        Upload::Chunked(b) => {
            let pieces: Vec<Result<Frame<Bytes>, Infallible>> = (0..b.len())
                .step_by(10_000)
                .map(|i| Ok(Frame::data(b.slice(i..(i + 10_000).min(b.len())))))
                .collect();
            StreamBody::new(futures_util::stream::iter(pieces)).boxed()
        }
    };
    let req = req.body(body).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(90), client().request(req))
        .await
        .unwrap_or_else(|_| panic!("{}: {method} {path}: no response in 90 s", t.name))
        .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", t.name));
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(90), body.collect())
        .await
        .unwrap_or_else(|_| panic!("{}: {method} {path}: body not done in 90 s", t.name))
        .unwrap_or_else(|e| panic!("{}: {method} {path}: body cut: {e}", t.name))
        .to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

fn body_of(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(131) as u8) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// `%XX` and `+` decoded, as a form decoder does.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_map(q: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    m
}

fn echoed_headers(r: &Reply) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(r.header("x-echo-headers")) {
        Ok(serde_json::Value::Object(m)) => m,
        other => panic!("x-echo-headers is not a JSON object: {other:?}"),
    }
}

/// Every method the reference gateway routes. The reference gateway drops
/// the body of GET, HEAD and DELETE and answers OPTIONS itself (its CORS
/// middleware), so those reach an anpx receiver behind it that way.
async fn methods(t: &Tunnel) {
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let sends_body = !matches!(method, "GET" | "HEAD" | "OPTIONS");
        let sent = if sends_body {
            Bytes::from(format!("the body of a {method}"))
        } else {
            Bytes::new()
        };
        let r = request(t, method, "/svc/echo/m", &[], Upload::Length(sent.clone())).await;
        let context = format!("{}: {method}", t.name);
        assert_eq!(r.status, 200, "{context}: {:?}", r.body);
        if method == "OPTIONS" && t.peer == Peer::ReferenceGateway {
            // Answered by the reference gateway's CORS middleware.
            assert_eq!(
                r.header("x-echo-method"),
                "",
                "{context}: OPTIONS reached the receiver"
            );
            assert!(r.body.is_empty(), "{context}");
            assert!(
                !r.header("access-control-allow-methods").is_empty(),
                "{context}"
            );
            continue;
        }
        assert_eq!(r.header("x-echo-method"), method, "{context}");
        assert_eq!(r.header("x-echo-path"), "/svc/echo/m", "{context}");
        let delivered = if method == "DELETE" && t.peer == Peer::ReferenceGateway {
            Bytes::new()
        } else {
            sent.clone()
        };
        assert_eq!(
            r.header("x-echo-body-len"),
            delivered.len().to_string(),
            "{context}: body the service got"
        );
        assert_eq!(
            r.header("x-echo-body-sha256"),
            sha256(&delivered),
            "{context}"
        );
        if method == "HEAD" {
            assert!(r.body.is_empty(), "{context}: a HEAD answer has no body");
        } else {
            assert_eq!(r.body, delivered, "{context}: echoed body");
        }
    }
}

/// Uploads of every size, with a Content-Length and chunked; each is
/// echoed back, so responses of the same sizes come back too.
async fn uploads(t: &Tunnel) {
    for (i, len) in SIZES.into_iter().enumerate() {
        for chunked in [false, true] {
            let sent = body_of(len, i as u8);
            let upload = if chunked {
                Upload::Chunked(sent.clone())
            } else {
                Upload::Length(sent.clone())
            };
            let started = Instant::now();
            let r = request(t, "POST", "/svc/echo/upload", &[], upload).await;
            let context = format!(
                "{}: POST of {len} B {}",
                t.name,
                if chunked {
                    "chunked"
                } else {
                    "with Content-Length"
                }
            );
            assert_eq!(
                r.status,
                200,
                "{context}: {:?}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("x-echo-body-len"), len.to_string(), "{context}");
            assert_eq!(r.header("x-echo-body-sha256"), sha256(&sent), "{context}");
            assert_eq!(r.body.len(), len, "{context}: echoed length");
            assert!(r.body == sent, "{context}: echoed bytes differ");
            eprintln!("{context}: {:?}", started.elapsed());
        }
    }
}

/// Responses of every size, made by the service.
async fn downloads(t: &Tunnel) {
    for len in SIZES {
        let r = request(
            t,
            "GET",
            &format!("/svc/download/{len}"),
            &[],
            Upload::Length(Bytes::new()),
        )
        .await;
        let context = format!("{}: GET of {len} B", t.name);
        assert_eq!(r.status, 200, "{context}");
        assert_eq!(r.body.len(), len, "{context}");
        assert!(r.body == download_pattern(len), "{context}: bytes differ");
        if let Some(cl) = r.headers.get("content-length") {
            assert_eq!(
                cl.to_str().unwrap(),
                len.to_string(),
                "{context}: content-length"
            );
        }
    }
}

async fn statuses(t: &Tunnel) {
    for status in [
        200u16, 201, 202, 204, 301, 400, 403, 404, 418, 500, 502, 503,
    ] {
        let r = request(
            t,
            "GET",
            &format!("/svc/status/{status}"),
            &[],
            Upload::Length(Bytes::new()),
        )
        .await;
        let context = format!("{}: status {status}", t.name);
        assert_eq!(r.status, status, "{context}: {:?}", r.body);
        let expected = if status == 204 {
            String::new()
        } else {
            format!("status {status}")
        };
        assert_eq!(String::from_utf8_lossy(&r.body), expected, "{context}");
    }
}

/// Headers and query strings, as far as the reference's flat maps carry
/// them: names lower-cased, one value per name (repeated headers joined by
/// anpx gateways, the last value of a repeated query key kept).
async fn headers_and_query(t: &Tunnel) {
    let path = "/svc/echo/q?alpha=1&beta=two%20words&gamma=%E2%9C%93&dup=first&dup=second&empty=";
    let r = request(
        t,
        "GET",
        path,
        &[
            ("X-Custom-One", "value one"),
            ("x-custom-two", "a;b=c, d"),
            ("x-repeated", "r1"),
            ("x-repeated", "r2"),
            ("x-want-header", "x-reply-header=reply value"),
        ],
        Upload::Length(Bytes::new()),
    )
    .await;
    let context = format!("{}: headers and query", t.name);
    assert_eq!(r.status, 200, "{context}");
    assert_eq!(
        r.header("x-echo-path"),
        "/svc/echo/q",
        "{context}: path without query"
    );
    let q = query_map(r.header("x-echo-query"));
    let one = |k: &str| q.get(k).cloned().unwrap_or_default();
    assert_eq!(one("alpha"), ["1"], "{context}: {q:?}");
    assert_eq!(one("beta"), ["two words"], "{context}: {q:?}");
    assert_eq!(one("gamma"), ["\u{2713}"], "{context}: {q:?}");
    assert_eq!(one("empty"), [""], "{context}: {q:?}");
    // A flat map keeps one value of a repeated key: the last.
    assert_eq!(one("dup"), ["second"], "{context}: {q:?}");
    let seen = echoed_headers(&r);
    let get = |k: &str| {
        seen.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("<absent>")
            .to_owned()
    };
    assert_eq!(get("x-custom-one"), "value one", "{context}: {seen:?}");
    assert_eq!(get("x-custom-two"), "a;b=c, d", "{context}");
    let repeated = get("x-repeated");
    match t.peer {
        // anpx gateways join repeated headers, as HTTP allows.
        Peer::ReferenceReceiver => assert_eq!(repeated, "r1, r2", "{context}"),
        // The reference gateway's dict keeps the last.
        Peer::ReferenceGateway => assert_eq!(repeated, "r2", "{context}"),
    }
    assert_eq!(get("host"), "api.agent.com", "{context}");
    assert_eq!(get("x-forwarded-for"), "127.0.0.1", "{context}");
    assert_eq!(
        r.header("x-reply-header"),
        "reply value",
        "{context}: response header"
    );
}

/// Many requests at once, all over the one receiver connection.
async fn parallel(t: &Tunnel) {
    let n = 40;
    let mut tasks = Vec::new();
    for i in 0..n {
        let len = if i % 4 == 0 {
            150_000 + i * 17
        } else {
            500 + i * 997
        };
        let sent = body_of(len, i as u8);
        let tunnel = Tunnel {
            addr: t.addr,
            peer: t.peer,
            name: format!("{} parallel #{i}", t.name),
        };
        tasks.push(tokio::spawn(async move {
            let path = format!("/svc/echo/parallel/{i}");
            let r = request(&tunnel, "PUT", &path, &[], Upload::Length(sent.clone())).await;
            assert_eq!(r.status, 200, "{}", tunnel.name);
            assert_eq!(r.header("x-echo-path"), path, "{}", tunnel.name);
            assert!(r.body == sent, "{}: body differs", tunnel.name);
        }));
    }
    for task in tasks {
        task.await.expect("a parallel request failed");
    }
}

async fn all_scenarios(t: &Tunnel) {
    methods(t).await;
    headers_and_query(t).await;
    statuses(t).await;
    uploads(t).await;
    downloads(t).await;
    parallel(t).await;
}

/// Waits (the reference's start-up included) until `gw` lists a receiver.
async fn wait_for_reference_receiver(gw: &Gw, rx: &mut RefProcess) {
    let started = Instant::now();
    while gw.stats().await.links.is_empty() {
        rx.assert_running();
        assert!(
            started.elapsed() < STARTUP,
            "the reference receiver never connected; its log:\n{}",
            tail(&rx.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reference_receiver_behind(shell: Shell, test: &str) {
    let Some(reference) = reference(test) else {
        return;
    };
    let gw = Gw::start(shell, |o| {
        o.ws_listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let ws = gw.ws_addr().expect("separate receiver address");
    let mut rx = reference.receiver(&format!("ws://{ws}/"), 10.0, "INFO");
    wait_for_reference_receiver(&gw, &mut rx).await;
    let stats = gw.stats().await;
    assert_eq!(
        stats.links[0].features, "",
        "the reference negotiates no extension"
    );
    let t = Tunnel {
        addr: gw.addr(),
        peer: Peer::ReferenceReceiver,
        name: format!("{shell:?} gateway -> reference receiver"),
    };
    all_scenarios(&t).await;
    rx.assert_running();
    assert_eq!(
        gw.stats().await.links.len(),
        1,
        "{}: still one link",
        t.name
    );
}

async fn anpx_receiver_behind_reference(shell: Shell, test: &str) {
    let Some(reference) = reference(test) else {
        return;
    };
    let mut gateway = reference.gateway("INFO").await;
    let backend = start_echo_backend().await;
    let rx = Rx::dial(
        shell,
        format!("ws://{}/", gateway.ws),
        None,
        None,
        backend,
        &[],
    );
    rx.wait_connected().await;
    let t = Tunnel {
        addr: gateway.http,
        peer: Peer::ReferenceGateway,
        name: format!("reference gateway -> {shell:?} receiver"),
    };
    all_scenarios(&t).await;
    gateway.process.assert_running();
    assert!(rx.connected(), "{}: receiver still connected", t.name);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_receiver_behind_the_tokio_gateway() {
    reference_receiver_behind(Shell::Tokio, "reference_receiver_behind_the_tokio_gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_receiver_behind_the_smol_gateway() {
    reference_receiver_behind(Shell::Smol, "reference_receiver_behind_the_smol_gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokio_receiver_behind_the_reference_gateway() {
    anpx_receiver_behind_reference(Shell::Tokio, "tokio_receiver_behind_the_reference_gateway")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smol_receiver_behind_the_reference_gateway() {
    anpx_receiver_behind_reference(Shell::Smol, "smol_receiver_behind_the_reference_gateway").await;
}

/// The `(ping, pong)` timestamps of the JSON control messages in a
/// reference process's debug log (its WebSocket library logs each text
/// message: `> TEXT '…'` sent, `< TEXT '…'` received).
fn control_messages(log: &str, direction: &str, kind: &str) -> Vec<String> {
    let marker = format!("{direction} TEXT '{{\"type\": \"{kind}\", \"timestamp\": ");
    log.lines()
        .filter_map(|l| l.split_once(&marker))
        .filter_map(|(_, rest)| rest.split_once('}').map(|(t, _)| t.to_owned()))
        .collect()
}

/// The reference receiver's JSON pings get the reference's pong, timestamp
/// echoed as sent, from both anpx gateways; the link stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anpx_gateways_answer_the_reference_json_ping() {
    let test = "anpx_gateways_answer_the_reference_json_ping";
    let Some(reference) = reference(test) else {
        return;
    };
    for shell in [Shell::Tokio, Shell::Smol] {
        let gw = Gw::start(shell, |o| {
            o.ws_listen = Some("127.0.0.1:0".parse().unwrap())
        })
        .await;
        let ws = gw.ws_addr().expect("separate receiver address");
        let mut rx = reference.receiver(&format!("ws://{ws}/"), 0.3, "DEBUG");
        wait_for_reference_receiver(&gw, &mut rx).await;
        let started = Instant::now();
        loop {
            let log = rx.log();
            let pings = control_messages(&log, ">", "ping");
            let pongs = control_messages(&log, "<", "pong");
            if pongs.len() >= 3 {
                for pong in &pongs {
                    assert!(
                        pings.contains(pong),
                        "{shell:?}: pong {pong} answers no ping: {pings:?}"
                    );
                }
                assert!(log.contains("Received pong from gateway"), "{shell:?}");
                break;
            }
            rx.assert_running();
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{shell:?}: pings {pings:?}, pongs {pongs:?}; log:\n{}",
                tail(&log, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            gw.stats().await.links.len(),
            1,
            "{shell:?}: the link stayed"
        );
        let r = request(
            &Tunnel {
                addr: gw.addr(),
                peer: Peer::ReferenceReceiver,
                name: format!("{shell:?} after pings"),
            },
            "GET",
            "/svc/status/201",
            &[],
            Upload::Length(Bytes::new()),
        )
        .await;
        assert_eq!(r.status, 201);
    }
}

/// anpx receivers ping the reference gateway in its JSON form and take its
/// pong as the sign of life they need: with pings every 300 ms (silence for
/// twice that would drop the link), the link outlives many intervals on
/// one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anpx_receivers_live_on_the_reference_json_pong() {
    let test = "anpx_receivers_live_on_the_reference_json_pong";
    let Some(reference) = reference(test) else {
        return;
    };
    let mut gateway = reference.gateway("DEBUG").await;
    let backend = start_echo_backend().await;
    for shell in [Shell::Tokio, Shell::Smol] {
        let rx = Rx::dial_with(shell, format!("ws://{}/", gateway.ws), backend, |core| {
            core.ping_interval = Duration::from_millis(300)
        });
        rx.wait_connected().await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(rx.connected(), "{shell:?}: receiver connected");
        let log = gateway.process.log();
        let pings = control_messages(&log, "<", "ping");
        let pongs = control_messages(&log, ">", "pong");
        assert!(
            pings.len() >= 5,
            "{shell:?}: the gateway got pings {pings:?}"
        );
        assert!(
            pongs.len() >= 5,
            "{shell:?}: the gateway sent pongs {pongs:?}"
        );
        rx.shutdown().await;
    }
    // One connection per receiver: none was dropped and made again.
    let log = gateway.process.log();
    let connections = log.matches("New WebSocket connection").count();
    assert_eq!(connections, 2, "{}", tail(&log, 40));
    gateway.process.assert_running();
}
