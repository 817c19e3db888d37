//! The receiver's keep-alive connections to its local service.
//!
//! One [`Pool`] serves one service (one `HttpUpstream`), so a connection
//! needs no key: hyper-util's pooled client hashed the scheme and
//! authority of every request on each checkout and return (~2 300
//! instructions a small request), and spawned a task for every response
//! with a body to wait for the connection to be ready again. Here each
//! connection runs on a task of its own, as there, and its sender comes
//! back to the pool when the response body has been read to its end: a
//! small request through `anpx both` takes 0.938× the instructions
//! (`benches/instructions.sh`, docs/BENCHMARKS.md run 23). Connections
//! driven by their request's future instead, with no task of their own,
//! took fewer still but served fewer requests a second (run 12).

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::body::{BoxError, ChannelBody};

type Sender = http1::SendRequest<ChannelBody>;

/// Keep-alive HTTP/1.1 connections to one service.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the service listens, as `TcpStream::connect` takes it.
    host: String,
    port: u16,
    builder: http1::Builder,
    /// How long a connection waits unused before it is closed.
    idle_timeout: Duration,
    idle: Mutex<Idle>,
}

/// The connections waiting for a request, most recently used last (the
/// warmest one is taken first and the coldest ones expire).
#[derive(Default)]
struct Idle {
    senders: Vec<(Sender, Instant)>,
    /// Whether a sweeper task is running: one while anything idles.
    sweeping: bool,
}

/// The most connections kept idle; more are closed when they come back.
const MAX_IDLE: usize = 256;

impl Pool {
    /// A pool for the service at `host`:`port`, its connections made by
    /// `builder` and closed after `idle_timeout` unused.
    pub(crate) fn new(
        host: String,
        port: u16,
        builder: http1::Builder,
        idle_timeout: Duration,
    ) -> Self {
        Pool {
            inner: Arc::new(Inner {
                host,
                port,
                builder,
                idle_timeout,
                idle: Mutex::default(),
            }),
        }
    }

    /// Sends `request` (origin-form target, `host` header set) on an idle
    /// connection or a new one. A request that never went out on a
    /// reused connection (the service closed it while it idled) is sent
    /// again on another, as hyper-util's client did; one that went out is
    /// not, since the service may have acted on it.
    pub(crate) async fn send(
        &self,
        mut request: http::Request<ChannelBody>,
    ) -> Result<http::Response<PooledBody>, BoxError> {
        loop {
            let (mut sender, reused) = match self.inner.take() {
                Some(sender) => (sender, true),
                None => (self.inner.connect().await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let pool = Arc::downgrade(&self.inner);
                    return Ok(response.map(|body| PooledBody {
                        body,
                        sender: Some(sender),
                        pool,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// How many connections idle now.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.inner.lock().senders.len()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The warmest idle connection still open.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some((sender, _)) = idle.senders.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// A new connection, served by a task of its own.
    async fn connect(&self) -> Result<Sender, BoxError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Heads and small bodies go out at once instead of waiting for
        // the service's acknowledgement of the previous segment.
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = self.builder.handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection failed");
            }
        });
        Ok(sender)
    }

    /// Takes back `sender` after its response ended. A connection still
    /// busy (its request's body still going out) becomes idle when hyper
    /// says it is ready.
    fn give_back(self: Arc<Self>, mut sender: Sender) {
        if sender.is_ready() {
            self.put(sender);
        } else if !sender.is_closed() {
            let pool = Arc::downgrade(&self);
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    if let Some(pool) = pool.upgrade() {
                        pool.put(sender);
                    }
                }
            });
        }
    }

    fn put(self: Arc<Self>, sender: Sender) {
        let mut idle = self.lock();
        if idle.senders.len() >= MAX_IDLE {
            return;
        }
        idle.senders.push((sender, Instant::now()));
        if !idle.sweeping {
            idle.sweeping = true;
            drop(idle);
            tokio::spawn(sweep(Arc::downgrade(&self)));
        }
    }
}

/// Closes the connections idle longer than the pool's timeout, waking
/// when the coldest one is due; ends when none idles (the next one to
/// come back starts it again) or the pool is gone.
async fn sweep(pool: Weak<Inner>) {
    loop {
        let due = {
            let Some(pool) = pool.upgrade() else { return };
            let mut idle = pool.lock();
            let now = Instant::now();
            let timeout = pool.idle_timeout;
            // Most recently used last: the expired ones are a prefix.
            let expired = idle
                .senders
                .iter()
                .take_while(|(_, since)| now.saturating_duration_since(*since) >= timeout)
                .count();
            // Dropping a sender lets its connection's task close it.
            idle.senders.drain(..expired);
            match idle.senders.first() {
                Some((_, since)) => *since + timeout,
                None => {
                    idle.sweeping = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(due).await;
    }
}

/// A response body from the pool: hyper's, and the connection it came on,
/// which goes back to the pool once the body has been read to its end.
/// Dropped before that, the connection is closed.
pub(crate) struct PooledBody {
    body: Incoming,
    sender: Option<Sender>,
    pool: Weak<Inner>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let (Some(sender), Some(pool)) = (self.sender.take(), self.pool.upgrade()) {
            pool.give_back(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !self.body.is_end_stream() => {}
            Some(Ok(_)) | None => self.give_back(),
            Some(Err(_)) => self.sender = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body nobody reads, or one whose last frame was read
        // without asking for the end.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Full, StreamBody};

    /// What the test service saw: connections accepted and closed.
    #[derive(Default)]
    struct Seen {
        accepted: AtomicUsize,
        closed: AtomicUsize,
    }

    /// A service on a port of its own: `/small` answers 5 bytes, `/big`
    /// 1 MiB, `/chunked` three chunks without a length, `/empty` 204.
    async fn service() -> (u16, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                tokio::spawn(async move {
                    let serve =
                        hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                            let body = match req.uri().path() {
                                "/big" => Full::new(Bytes::from(vec![7u8; 1 << 20])).boxed_unsync(),
                                "/chunked" => {
                                    let chunks = ["a", "bb", "ccc"]
                                        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
                                    StreamBody::new(futures_util::stream::iter(chunks))
                                        .boxed_unsync()
                                }
                                "/empty" => {
                                    let mut response =
                                        http::Response::new(Full::new(Bytes::new()).boxed_unsync());
                                    *response.status_mut() = http::StatusCode::NO_CONTENT;
                                    return Ok::<_, Infallible>(response);
                                }
                                _ => Full::new(Bytes::from_static(b"hello")).boxed_unsync(),
                            };
                            Ok::<_, Infallible>(http::Response::new(body))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), serve)
                        .await;
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (port, seen)
    }

    fn pool(port: u16, idle_timeout: Duration) -> Pool {
        Pool::new(
            "127.0.0.1".into(),
            port,
            http1::Builder::new(),
            idle_timeout,
        )
    }

    fn get(path: &str) -> http::Request<ChannelBody> {
        let mut request = http::Request::new(ChannelBody::empty());
        *request.uri_mut() = path.parse().unwrap();
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("service"),
        );
        request
    }

    async fn body_of(pool: &Pool, path: &str) -> (http::StatusCode, Bytes) {
        let response = pool.send(get(path)).await.expect("an answer");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, body)
    }

    /// Waits (at most 10 s) for `count` to reach `n`.
    async fn until(count: &AtomicUsize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n}",
                count.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn one_connection_serves_request_after_request() {
        let (port, seen) = service().await;
        let pool = pool(port, Duration::from_secs(60));
        for path in ["/small", "/big", "/chunked", "/empty", "/small"] {
            let (status, body) = body_of(&pool, path).await;
            let expected: &[u8] = match path {
                "/big" => &[7u8; 1 << 20],
                "/chunked" => b"abbccc",
                "/empty" => b"",
                _ => b"hello",
            };
            assert_eq!(&body[..], expected, "{path}");
            assert_eq!(status.as_u16(), if path == "/empty" { 204 } else { 200 });
        }
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_get_connections_of_their_own_and_all_come_back() {
        let (port, seen) = service().await;
        let pool = pool(port, Duration::from_secs(60));
        let responses =
            futures_util::future::join_all((0..4).map(|_| pool.send(get("/small")))).await;
        for response in responses {
            let body = response
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], b"hello");
        }
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 4);
        assert_eq!(pool.idle(), 4);
        body_of(&pool, "/small").await;
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_closes_its_connection() {
        let (port, seen) = service().await;
        let pool = pool(port, Duration::from_secs(60));
        let response = pool.send(get("/big")).await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| d.len() < 1 << 20));
        drop(body);
        until(&seen.closed, 1).await;
        assert_eq!(pool.idle(), 0);
        assert_eq!(body_of(&pool, "/small").await.1, "hello");
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_service_closed_while_idle_is_not_used() {
        // A service that answers one request a connection and then closes
        // it, without saying so in the response.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = Arc::new(AtomicUsize::new(0));
        let counts = closed.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                super::super::tests::read_head(&mut tcp).await;
                tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                drop(tcp);
                counts.fetch_add(1, Ordering::SeqCst);
            }
        });
        let pool = pool(port, Duration::from_secs(60));
        for round in 1..=3 {
            assert_eq!(body_of(&pool, "/").await.1, "ok");
            until(&closed, round).await;
            // The connection's task sees the end of the stream.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_timeout() {
        let (port, seen) = service().await;
        let pool = pool(port, Duration::from_millis(50));
        body_of(&pool, "/small").await;
        assert_eq!(pool.idle(), 1);
        until(&seen.closed, 1).await;
        assert_eq!(pool.idle(), 0);
        // The pool goes on: a new connection, swept again.
        body_of(&pool, "/small").await;
        until(&seen.closed, 2).await;
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pool = pool(port, Duration::from_secs(60));
        let error = pool.send(get("/")).await.err().expect("no service");
        let io = error
            .downcast_ref::<std::io::Error>()
            .expect("an I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
