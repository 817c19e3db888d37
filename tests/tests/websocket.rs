//! WebSocket passthrough end to end, over every (gateway shell, receiver
//! shell) pair: a public client opens `ws://<gateway>/svc/ws/...` with the
//! service's Host and talks to a WebSocket service behind the receiver —
//! text and binary both ways, a message the service sends unasked, a
//! 4 MiB message, and a clean close seen by both ends; a client that
//! disappears closes the service's socket; a refusal by the service is
//! relayed; a receiver that did not negotiate `websocket` gets nothing and
//! the client a clear 501.

#[macro_use]
mod support;

use support::pairs::{Gw, Rx, Shell};

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HOST: &str = "api.agent.com";
const PATIENCE: Duration = Duration::from_secs(20);

/// What the service saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A handshake: path and Host.
    Opened { path: String, host: String },
    /// The client's close frame, with its code.
    CloseFrame(u16),
    /// The connection ended (closed, reset or failed), after a close frame
    /// or not.
    Ended,
}

/// A WebSocket service: greets each client (a message it sends unasked),
/// then echoes text as `echo: <text>` and binary as is. `/svc/ws/deny` is
/// refused with 403. Reports what it saw on the returned channel.
async fn service() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let seen = tx.clone();
                #[allow(clippy::result_large_err)] // tungstenite's callback type
                let callback = move |req: &WsRequest, resp: WsResponse| {
                    let path = req.uri().path().to_owned();
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if path.ends_with("/deny") {
                        let mut refusal = ErrorResponse::new(Some("denied".into()));
                        *refusal.status_mut() = http::StatusCode::FORBIDDEN;
                        return Err(refusal);
                    }
                    let _ = seen.send(Seen::Opened { path, host });
                    Ok(resp)
                };
                let config = async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(Some(64 << 20));
                let Ok(mut ws) = async_tungstenite::tokio::accept_hdr_async_with_config(
                    tcp,
                    callback,
                    Some(config),
                )
                .await
                else {
                    return;
                };
                if ws.send(Message::text("welcome")).await.is_err() {
                    let _ = tx.send(Seen::Ended);
                    return;
                }
                while let Some(Ok(m)) = ws.next().await {
                    let answer = match m {
                        Message::Text(t) => Message::text(format!("echo: {t}")),
                        Message::Binary(b) => Message::Binary(b),
                        Message::Close(frame) => {
                            let code = frame.map_or(0, |f| u16::from(f.code));
                            let _ = tx.send(Seen::CloseFrame(code));
                            // tungstenite answers the close itself; the
                            // stream then ends and the socket is dropped.
                            continue;
                        }
                        _ => continue,
                    };
                    if ws.send(answer).await.is_err() {
                        break;
                    }
                }
                drop(ws);
                let _ = tx.send(Seen::Ended);
            });
        }
    });
    (addr, rx)
}

type Client = async_tungstenite::WebSocketStream<
    async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>,
>;

/// Opens `ws://api.agent.com<path>` through the gateway at `gw`.
async fn open(gw: SocketAddr, path: &str) -> Result<(Client, u16), WsError> {
    let request = format!("ws://{HOST}{path}").into_client_request().unwrap();
    let tcp = TcpStream::connect(gw).await.unwrap();
    let config = async_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20));
    let (ws, response) = tokio::time::timeout(
        PATIENCE,
        async_tungstenite::tokio::client_async_with_config(request, tcp, Some(config)),
    )
    .await
    .expect("handshake in time")?;
    Ok((ws, response.status().as_u16()))
}

/// A WebSocket handshake sent as a plain request, so that the whole
/// answer (body included) is read when it is not a 101.
async fn handshake_refused(gw: SocketAddr, path: &str) -> support::Reply {
    support::send_with(
        gw,
        "GET",
        HOST,
        path,
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
        "",
    )
    .await
}

async fn next(ws: &mut Client) -> Message {
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a message in time")
        .expect("the connection is open")
        .expect("a good message")
}

async fn seen(events: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("the service reports in time")
        .expect("the service runs")
}

/// Waits until the gateway has nothing in flight.
async fn settled(gw: &Gw) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let stats = gw.stats().await;
        if stats.in_flight == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in flight: {}",
            stats.in_flight
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chat(gw_shell: Shell, rx_shell: Shell) {
    let (backend, mut events) = service().await;
    let gw = Gw::start(gw_shell, |_| {}).await;
    let _rx = Rx::start(rx_shell, gw.addr(), backend).await;

    let (mut ws, status) = open(gw.addr(), "/svc/ws/chat").await.expect("upgrade");
    assert_eq!(status, 101);
    assert_eq!(
        seen(&mut events).await,
        Seen::Opened {
            path: "/svc/ws/chat".into(),
            host: HOST.into()
        }
    );
    // The service speaks first.
    assert_eq!(next(&mut ws).await, Message::text("welcome"));

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("echo: hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));

    // 4 MiB, several times the credit window, both ways.
    let big = support::pattern(4 << 20);
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next(&mut ws).await {
        Message::Binary(b) => {
            assert_eq!(b.len(), big.len());
            assert!(b[..] == big[..], "the 4 MiB message came back changed");
        }
        other => panic!("expected the big message back, got {other:?}"),
    }

    // A clean close: the client's close frame reaches the service, the
    // service's answer reaches the client, and then the TCP connection
    // ends.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(seen(&mut events).await, Seen::CloseFrame(1000));
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the service's close frame, got {other:?}"),
    }
    let after = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the connection ends after the close handshake");
    assert!(
        matches!(after, None | Some(Err(WsError::ConnectionClosed))),
        "{after:?}"
    );
    assert_eq!(seen(&mut events).await, Seen::Ended);
    settled(&gw).await;
    let totals = gw.stats().await.totals;
    assert_eq!(totals.websockets, 1);
    assert_eq!(totals.timed_out, 0);
}

async fn client_disappears(gw_shell: Shell, rx_shell: Shell) {
    let (backend, mut events) = service().await;
    let gw = Gw::start(gw_shell, |_| {}).await;
    let _rx = Rx::start(rx_shell, gw.addr(), backend).await;

    let (mut ws, _) = open(gw.addr(), "/svc/ws/leave").await.expect("upgrade");
    assert!(matches!(seen(&mut events).await, Seen::Opened { .. }));
    assert_eq!(next(&mut ws).await, Message::text("welcome"));
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("echo: still here"));
    // Gone without a close frame: the service's socket must close too.
    drop(ws);
    assert_eq!(seen(&mut events).await, Seen::Ended);
    settled(&gw).await;
}

async fn service_refuses(gw_shell: Shell, rx_shell: Shell) {
    let (backend, _events) = service().await;
    let gw = Gw::start(gw_shell, |_| {}).await;
    let _rx = Rx::start(rx_shell, gw.addr(), backend).await;
    let reply = handshake_refused(gw.addr(), "/svc/ws/deny").await;
    assert_eq!(reply.status, 403);
    assert_eq!(&reply.body[..], b"denied");
    // A tungstenite client sees the same refusal.
    match open(gw.addr(), "/svc/ws/deny").await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        Ok(_) => panic!("the refusal became an upgrade"),
        Err(e) => panic!("expected the service's 403, got {e}"),
    }
    settled(&gw).await;
    assert_eq!(gw.stats().await.totals.websockets, 0);
}

/// A quiet WebSocket outlives the request timeout: that covers a request
/// only until its 101.
async fn outlives_the_request_timeout(gw_shell: Shell, rx_shell: Shell) {
    let (backend, mut events) = service().await;
    let gw = Gw::start(gw_shell, |o| {
        o.core.request_timeout = Duration::from_secs(1)
    })
    .await;
    let _rx = Rx::start(rx_shell, gw.addr(), backend).await;
    let (mut ws, _) = open(gw.addr(), "/svc/ws/quiet").await.expect("upgrade");
    assert!(matches!(seen(&mut events).await, Seen::Opened { .. }));
    assert_eq!(next(&mut ws).await, Message::text("welcome"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send(Message::text("after a pause")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("echo: after a pause"));
    assert_eq!(gw.stats().await.totals.timed_out, 0);
}

/// A WebSocket silent both ways past `websocket_idle_timeout` is closed,
/// at the client and at the service.
async fn idle_is_closed(gw_shell: Shell, rx_shell: Shell) {
    let (backend, mut events) = service().await;
    let gw = Gw::start(gw_shell, |o| {
        o.core.websocket_idle_timeout = Duration::from_secs(1)
    })
    .await;
    let _rx = Rx::start(rx_shell, gw.addr(), backend).await;
    let (mut ws, _) = open(gw.addr(), "/svc/ws/idle").await.expect("upgrade");
    assert!(matches!(seen(&mut events).await, Seen::Opened { .. }));
    assert_eq!(next(&mut ws).await, Message::text("welcome"));
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the idle connection is closed in time");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    assert_eq!(seen(&mut events).await, Seen::Ended);
    settled(&gw).await;
    assert_eq!(gw.stats().await.totals.timed_out, 1);
}

for_every_pair!(
    chat,
    client_disappears,
    service_refuses,
    outlives_the_request_timeout,
    idle_is_closed
);

/// A receiver that offers no extension, as the reference does: the
/// handshake reaches it never, and the client gets a clear 501.
async fn refused_without_the_extension(gw_shell: Shell) {
    let gw = Gw::start(gw_shell, |_| {}).await;
    let mut request = format!("ws://{}/ws", gw.addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-anpx-services", HeaderValue::from_static(HOST));
    let (mut receiver, response) =
        tokio::time::timeout(PATIENCE, async_tungstenite::tokio::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("the gateway admits the receiver");
    assert!(response
        .headers()
        .get("x-anpx-features")
        .is_none_or(|v| v.is_empty()));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while gw.stats().await.links.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "receiver admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let reply = handshake_refused(gw.addr(), "/svc/ws/chat").await;
    assert_eq!(reply.status, 501);
    assert_eq!(
        reply.json()["error"],
        "The receiver serving this route cannot carry WebSockets"
    );
    match open(gw.addr(), "/svc/ws/chat").await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 501),
        Ok(_) => panic!("upgraded through a receiver without websocket"),
        Err(e) => panic!("expected 501, got {e}"),
    }
    // Plain v1 on the wire: not one frame reached the receiver (the
    // gateway's pings aside).
    let got = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match receiver.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(got.is_err(), "the receiver got {got:?}");
    let totals = gw.stats().await.totals;
    assert_eq!(totals.websockets_refused, 2);
    assert_eq!(totals.started, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_without_the_extension_tokio() {
    refused_without_the_extension(Shell::Tokio).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_without_the_extension_smol() {
    refused_without_the_extension(Shell::Smol).await
}

/// An axum `Router` with a WebSocket route, served in-process by a tokio
/// receiver (`ServiceUpstream`, no socket of its own): the upgrade is
/// answered by the router, and text and a 3 MiB binary message go both
/// ways through the gateway.
async fn in_process_service(gw_shell: Shell) {
    use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
    use axum::routing::get;

    async fn echo(mut socket: WebSocket) {
        while let Some(Ok(msg)) = socket.recv().await {
            let answer = match msg {
                AxumMessage::Text(t) => AxumMessage::Text(format!("echo: {}", t.as_str()).into()),
                AxumMessage::Binary(b) => AxumMessage::Binary(b),
                AxumMessage::Close(_) => return,
                _ => continue,
            };
            if socket.send(answer).await.is_err() {
                return;
            }
        }
    }
    let router = axum::Router::new().route(
        "/svc/ws/echo",
        get(|ws: WebSocketUpgrade| async move { ws.max_message_size(64 << 20).on_upgrade(echo) }),
    );

    let gw = Gw::start(gw_shell, |_| {}).await;
    let mut o = shell_tokio::receiver::ReceiverOptions::new(
        format!("ws://{}/ws", gw.addr()),
        std::sync::Arc::new(shell_tokio::upstream::ServiceUpstream::new(router))
            as std::sync::Arc<dyn shell_tokio::upstream::Upstream>,
    );
    o.services = vec![format!("{HOST}/svc").parse().unwrap()];
    let rx = shell_tokio::receiver::Receiver::spawn(o);
    assert!(matches!(
        tokio::time::timeout(PATIENCE, rx.wait_ready()).await,
        Ok(shell_tokio::receiver::Status::Connected { .. })
    ));

    let (mut ws, status) = open(gw.addr(), "/svc/ws/echo").await.expect("upgrade");
    assert_eq!(status, 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("echo: hello"));
    let big = support::pattern(3 << 20);
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next(&mut ws).await {
        Message::Binary(b) => assert!(b[..] == big[..], "the 3 MiB message came back changed"),
        other => panic!("expected the big message back, got {other:?}"),
    }
    ws.close(None).await.unwrap();
    settled(&gw).await;
    assert_eq!(gw.stats().await.totals.websockets, 1);

    // A path the router has no WebSocket route for is its own 404.
    let refused = handshake_refused(gw.addr(), "/svc/ws/none").await;
    assert_eq!(refused.status, 404);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_service_answers_upgrades_tokio_gateway() {
    in_process_service(Shell::Tokio).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_service_answers_upgrades_smol_gateway() {
    in_process_service(Shell::Smol).await
}
