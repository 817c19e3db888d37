//! Every public request ends with one log line and one
//! `anpx_requests_ended_total` increment naming how it ended, on both
//! gateways: the line is read from the tracing output of the gateway in
//! this process, the counter from the admin listener's /metrics.

#[macro_use]
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use support::pairs::{Gw, Rx, Shell};
use support::{send, start_backend};
use tokio::io::AsyncWriteExt;

const HOST: &str = "api.agent.com";

/// Every line the gateways in this test binary logged.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(|| Sink)
            .with_env_filter("shell_common=info")
            .init();
    });
}

/// A path no other scenario in this binary uses, ending in `tail`.
fn unique(tail: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("/svc/e{}{tail}", N.fetch_add(1, Ordering::Relaxed))
}

/// The `request` log lines for `path`, waiting up to 5 s for at least one.
async fn lines_for(path: &str) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let text = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "request" && v["path"] == path)
            .collect();
        if !lines.is_empty() {
            // Give a second line, were one to come, the time to show.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let text = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
            return text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["message"] == "request" && v["path"] == path)
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no request line for {path}");
}

/// `anpx_requests_ended_total` for each ending, from the admin listener.
async fn ended(g: &Gw) -> Vec<(String, u64)> {
    let m = send(g.admin_addr(), "GET", HOST, "/metrics", "").await;
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    let counts: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("anpx_requests_ended_total{ending=\""))
        .filter_map(|l| {
            let (label, n) = l.split_once("\"} ")?;
            Some((label.to_owned(), n.parse().ok()?))
        })
        .collect();
    assert!(!counts.is_empty(), "no anpx_requests_ended_total in {text}");
    counts
}

/// Asserts one line for `path` naming `ending`, and that the counters are
/// exactly one for `ending` and zero for the rest.
async fn assert_ended(g: &Gw, path: &str, ending: &str) -> serde_json::Value {
    let lines = lines_for(path).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], ending, "{:?}", lines[0]);
    for (label, n) in ended(g).await {
        let want = u64::from(label == ending);
        assert_eq!(n, want, "anpx_requests_ended_total{{ending=\"{label}\"}}");
    }
    lines[0].clone()
}

async fn gateway(shell: Shell, tune: impl FnOnce(&mut shell_common::GatewayOptions)) -> Gw {
    capture_logs();
    Gw::start(shell, |o| {
        o.drain_grace = Duration::from_secs(1);
        tune(o)
    })
    .await
}

/// A whole Content-Length response is completed, not a client that left
/// (the HTTP server drops the body stream once the length is met).
async fn content_length_response_is_completed(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/echo");
    let r = send(g.addr(), "POST", HOST, &path, "hello").await;
    assert_eq!(r.status, 200);
    let line = assert_ended(&g, &path, "completed").await;
    assert_eq!(line["status"], 200);
}

/// A client that hangs up before the answer left.
async fn client_that_hangs_up_left(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/hold");
    let mut c = tokio::net::TcpStream::connect(g.addr()).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n\r\n");
    c.write_all(head.as_bytes()).await.unwrap();
    g.wait_in_flight(1).await;
    drop(c);
    assert_ended(&g, &path, "client_left").await;
}

/// No answer within the request timeout is a timeout.
async fn slow_upstream_timed_out(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.core.request_timeout = Duration::from_millis(300)).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/slow");
    assert_eq!(send(g.addr(), "GET", HOST, &path, "").await.status, 504);
    let line = assert_ended(&g, &path, "timed_out").await;
    assert_eq!(line["status"], 504);
}

/// A request with no route is refused, with the reason in the line.
async fn no_route_is_refused(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = format!("/nowhere{}", unique(""));
    assert_eq!(send(g.addr(), "GET", HOST, &path, "").await.status, 404);
    let line = assert_ended(&g, &path, "refused").await;
    assert_ne!(line["error"], "");
}

/// The receiver's connection dropping under an open request is a lost
/// receiver.
async fn receiver_killed_is_receiver_lost(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/hold");
    let addr = g.addr();
    let p = path.clone();
    let waiting = tokio::spawn(async move { send(addr, "GET", HOST, &p, "").await });
    g.wait_in_flight(1).await;
    r.shutdown().await;
    assert_eq!(waiting.await.unwrap().status, 502);
    assert_ended(&g, &path, "receiver_lost").await;
}

/// The receiver's own 502 for a service it cannot reach is an upstream
/// failure with its cause, not a completed response: the receiver marks
/// it, the gateway logs the cause and takes the marker off, and the
/// client still gets the 502 with a body that names the cause.
async fn unreachable_upstream_is_upstream_failed(gw: Shell, rx: Shell) {
    // A port nothing listens on any more.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), nowhere).await;
    let path = unique("/echo");
    let r = send(g.addr(), "GET", HOST, &path, "").await;
    assert_eq!(r.status, 502);
    let body = String::from_utf8_lossy(&r.body).to_lowercase();
    assert!(body.contains("refused"), "the body names the cause: {body}");
    assert!(
        r.headers.get(anpx_core::upstream_failure::HEADER).is_none(),
        "the marker is the gateway's, not the client's: {:?}",
        r.headers
    );
    let line = assert_ended(&g, &path, "upstream_failed").await;
    assert_eq!(line["status"], 502);
    let error = line["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.starts_with("upstream unreachable: ") && error.contains("refused"),
        "{line:?}"
    );
}

/// A body whose Content-Length is over `max_body_bytes` is refused at the
/// edge, before routing: one `refused` line naming the limit, one count.
async fn body_over_the_limit_is_refused(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |o| o.edge.max_body_bytes = 16).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/echo");
    let r = send(g.addr(), "POST", HOST, &path, vec![b'x'; 100]).await;
    assert_eq!(r.status, 413);
    let line = assert_ended(&g, &path, "refused").await;
    assert_eq!(line["status"], 413);
    let error = line["error"].as_str().unwrap();
    assert!(error.contains("over the size limit"), "{line:?}");
}

/// A request the gateway refuses before routing for its Host is refused
/// with its line and count too.
async fn bad_host_is_refused(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/echo");
    let r = send(g.addr(), "GET", "bad host name", &path, "").await;
    assert_eq!(r.status, 400);
    let line = assert_ended(&g, &path, "refused").await;
    assert!(
        line["error"].as_str().unwrap().starts_with("Bad host"),
        "{line:?}"
    );
}

/// A small body (read whole before the request starts) that the client
/// abandons half-way ends once, as the client leaving.
async fn small_body_cut_before_the_start_left(gw: Shell, rx: Shell) {
    let backend = start_backend().await;
    let g = gateway(gw, |_| {}).await;
    let _r = Rx::start(rx, g.addr(), backend).await;
    let path = unique("/echo");
    let mut c = tokio::net::TcpStream::connect(g.addr()).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: 10\r\n\r\nabc");
    c.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    let line = assert_ended(&g, &path, "client_left").await;
    assert_eq!(line["request"], "", "{line:?}");
}

/// The same over HTTP/2 (the tokio gateway), where the client resets the
/// stream: the server drops the request's handling at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_http2_body_reset_before_the_start_left() {
    let backend = start_backend().await;
    let g = gateway(Shell::Tokio, |_| {}).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let path = unique("/echo");
    let tcp = tokio::net::TcpStream::connect(g.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (tx, mut pieces) = tokio::sync::mpsc::unbounded_channel::<
        Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>,
    >();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{HOST}{path}"))
        .header("content-length", "10")
        .body(http_body_util::StreamBody::new(
            futures_util::stream::poll_fn(move |cx| pieces.poll_recv(cx)),
        ))
        .unwrap();
    let response = tokio::spawn(async move { sender.send_request(req).await });
    tx.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
        b"abc",
    ))))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The body fails: the client resets the stream.
    tx.send(Err(std::io::Error::other("gave up"))).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), response).await;
    assert_ended(&g, &path, "client_left").await;
}

for_every_pair!(
    small_body_cut_before_the_start_left,
    unreachable_upstream_is_upstream_failed,
    body_over_the_limit_is_refused,
    bad_host_is_refused,
    content_length_response_is_completed,
    client_that_hangs_up_left,
    slow_upstream_timed_out,
    no_route_is_refused,
    receiver_killed_is_receiver_lost,
);
