//! The buffer budgets through both gateway binaries: a receiver that
//! streams a response as fast as it can to a client that reads nothing
//! cannot make the gateway hold more than its budgets, whether it offered
//! `streaming` alone (not granted without `flow-control`) or with
//! `flow-control` (held to its credit window): `anpx_buffered_bytes` on
//! /metrics stays within `gateway.max_buffered_bytes`, the receiver is
//! closed with a counted reason and logged on one line with its address,
//! and another receiver keeps serving.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use anpx_core::frame::{ChunkInfo, Frame, FrameLimits, MessageKind, Meta};
use anpx_core::{RequestId, ResponseHead};
use async_tungstenite::tokio::{connect_async, ConnectStream};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_util::StreamExt;
use support::{Binary, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "api.agent.com";
const PER_RECEIVER: u64 = 1 << 20;
const TOTAL: u64 = 3 << 20;
const PIECE: usize = 60 * 1024;

type Ws = WebSocketStream<ConnectStream>;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `series` from /metrics; `None` while the gateway does not answer.
async fn metric(admin: SocketAddr, series: &str) -> Option<u64> {
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    if !text.contains("anpx_receivers") {
        return None;
    }
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0),
    )
}

async fn receiver(gateway: SocketAddr, route: &str, offer: &str) -> (Ws, String) {
    let mut request = format!("ws://{gateway}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("x-anpx-services", HeaderValue::from_str(route).unwrap());
    headers.insert("x-anpx-features", HeaderValue::from_str(offer).unwrap());
    let (ws, response) = connect_async(request).await.expect("admitted");
    let granted = response
        .headers()
        .get("x-anpx-features")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (ws, granted)
}

async fn next_request(ws: &mut Ws) -> RequestId {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a request in time")
            .expect("open")
            .expect("readable");
        if let Message::Binary(b) = msg {
            return Frame::decode(b, &FrameLimits::default())
                .unwrap()
                .request_id;
        }
    }
}

fn piece(id: &RequestId, index: u32, head: bool, body: &[u8], last: bool) -> Message {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk: Some(ChunkInfo {
            index,
            total: None,
            final_marker: last.then_some(anpx_core::frame::FinalMarker::Byte),
        }),
        meta: head.then(|| Meta::Response(ResponseHead::new(200))),
        body: (!body.is_empty()).then(|| Bytes::copy_from_slice(body)),
    };
    Message::Binary(frame.encode().unwrap())
}

async fn budgets_hold_against_a_client_that_reads_nothing(gateway: Binary) {
    let (addr, admin) = (free_addr(), free_addr());
    let log = std::env::temp_dir().join(format!(
        "anpx-flow-policy-{gateway:?}-{}.log",
        std::process::id()
    ));
    let _gw = Proc(
        gateway
            .command()
            .args(["gateway", "--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .env(
                "ANPX_GATEWAY_MAX_BUFFERED_PER_RECEIVER_BYTES",
                PER_RECEIVER.to_string(),
            )
            .env("ANPX_GATEWAY_MAX_BUFFERED_BYTES", TOTAL.to_string())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..150 {
        if metric(admin, "anpx_buffered_bytes").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metric(admin, "anpx_buffered_bytes").await.is_some(),
        "the gateway did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (mut good, _) = receiver(addr, &format!("{HOST}/good"), "").await;
    for (n, offer) in ["streaming", "streaming,flow-control"]
        .into_iter()
        .enumerate()
    {
        let (mut hostile, granted) = receiver(addr, &format!("{HOST}/h{n}"), offer).await;
        assert_eq!(
            granted.contains("streaming"),
            offer.contains("flow-control"),
            "{offer}: granted {granted}"
        );
        // A client that asks and then reads nothing.
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(format!("GET /h{n}/x HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let id = next_request(&mut hostile).await;
        // 20 MB, as fast as the socket takes it, far past every budget.
        let body = vec![b'x'; PIECE];
        let mut highest = 0;
        for index in 0..340u32 {
            if hostile
                .send(piece(&id, index, index == 0, &body, false))
                .await
                .is_err()
            {
                break;
            }
            if index % 20 == 0 {
                let held = metric(admin, "anpx_buffered_bytes").await.unwrap();
                highest = highest.max(held);
                assert!(held <= TOTAL, "{offer}: {held} bytes held, over {TOTAL}");
            }
        }
        // The hostile receiver is closed, for its budget or its window.
        let reason = if offer.contains("flow-control") {
            "flow_control"
        } else {
            "over_budget"
        };
        let series = format!("anpx_receiver_faults_total{{reason=\"{reason}\"}}");
        let mut closed = 0;
        for _ in 0..100 {
            closed = metric(admin, &series).await.unwrap();
            if closed >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(closed, 1, "{offer}: {series}");
        // The close is logged once, on one line, with who was closed
        // (the receiver's address) and why.
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("closing receiver connection") && l.contains(reason))
                .map(str::to_owned)
                .collect();
            if !lines.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(lines.len(), 1, "{offer}: {lines:?}");
        assert!(
            lines[0].contains("peer=127.0.0.1") && lines[0].contains("fault="),
            "{offer}: {}",
            lines[0]
        );
        let held = metric(admin, "anpx_buffered_bytes").await.unwrap();
        assert!(held <= TOTAL, "{offer}: {held} bytes held at the end");
        eprintln!("{gateway:?} {offer}: at most {highest} bytes held while sending, {held} after");
        drop(client);
        // The other receiver is untouched and serves.
        let mut caller = tokio::net::TcpStream::connect(addr).await.unwrap();
        caller
            .write_all(
                format!("GET /good/x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let id = next_request(&mut good).await;
        good.send(piece(&id, 0, true, b"fine", true)).await.unwrap();
        let mut answer = String::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), caller.read_to_string(&mut answer)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{offer}: {answer}");
        assert!(answer.contains("\r\nfine\r\n"), "{offer}: {answer}");
    }
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_against_a_client_that_reads_nothing_on_anpx() {
    budgets_hold_against_a_client_that_reads_nothing(Binary::Anpx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_against_a_client_that_reads_nothing_on_anpx_smol() {
    budgets_hold_against_a_client_that_reads_nothing(Binary::AnpxSmol).await;
}
