//! Where a receiver sends the requests it gets: a local HTTP service
//! (reverse-proxy style) or an in-process `tower` service such as an axum
//! `Router`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::futures_io::FuturesIo;
use anpx_core::RequestHead;
use bytes::Bytes;
use futures_util::AsyncReadExt;
use http::header::{HeaderName, HeaderValue};
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use anpx_cli::setup::Upstreams;
use shell_common::body::BodyStream;
use shell_common::header_text::header_text;
use shell_common::receiver::{upstream_request_parts, BoxFuture, Dispatch, Reply};
use shell_common::websocket;

use crate::body::{BoxError, ChannelBody};

mod pool;
use pool::Pool;

/// The request an upstream gets: the body streams in as the gateway sends it.
pub type UpstreamRequest = http::Request<ChannelBody>;
/// The response an upstream gives: any body of `Bytes`.
/// Each body is read by one task, so it need not be `Sync` (axum's is not).
pub type UpstreamResponse = http::Response<UnsyncBoxBody<Bytes, BoxError>>;
/// The future an upstream returns.
pub type UpstreamFuture = Pin<Box<dyn Future<Output = Result<UpstreamResponse, BoxError>> + Send>>;

/// What a service made of a WebSocket upgrade request.
pub enum Upgrade {
    /// It switched protocols (`101`): its headers, and the connection, now
    /// carrying WebSocket bytes both ways.
    Switched {
        /// The `101`'s headers, in order.
        headers: Vec<(String, String)>,
        /// The upgraded connection.
        io: hyper::upgrade::Upgraded,
    },
    /// It answered otherwise (a refusal, a redirect): relayed as is.
    Answered(UpstreamResponse),
}

/// The future [`Upstream::upgrade`] returns.
pub type UpgradeFuture = Pin<Box<dyn Future<Output = Result<Upgrade, BoxError>> + Send>>;

/// Something that answers HTTP requests for a receiver.
pub trait Upstream: Send + Sync + 'static {
    /// Serves one request.
    fn call(&self, request: UpstreamRequest) -> UpstreamFuture;

    /// Sends a WebSocket upgrade request (method, origin-form target and
    /// headers, `connection: upgrade` and `upgrade: websocket` included).
    /// The default, for upstreams that are not reached over a connection
    /// of their own, answers 501.
    fn upgrade(&self, request: http::Request<()>) -> UpgradeFuture {
        drop(request);
        Box::pin(async {
            let body =
                serde_json::json!({ "error": "This upstream does not take WebSocket upgrades" });
            let response = http::Response::builder()
                .status(501)
                .header("content-type", "application/json")
                .body(
                    http_body_util::Full::new(Bytes::from(body.to_string()))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )?;
            Ok(Upgrade::Answered(response))
        })
    }
}

/// The most a pooled upstream connection reads at once. hyper grows a
/// connection's read buffer while it reads a large body (up to ~400 KiB by
/// default) and keeps it for as long as the connection idles in the pool:
/// after 32 connections carried 1 MiB responses, an idle `anpx both` held
/// 58 MiB against 14 MiB at startup, most of it these buffers (heaptrack).
/// At 64 KiB it held 20–23 MiB (`benches/vs-rathole.sh`, docs/BENCHMARKS.md).
const UPSTREAM_READ_BUFFER_MAX: usize = 64 * 1024;

/// How long a keep-alive connection to the local service waits in the
/// pool for its next request before it is closed. Under the 5 s
/// keep-alive of common agent servers (uvicorn, Node's `http`), so a
/// request is not sent on a connection the service is closing at that
/// moment; and each idle connection holds its task and
/// its read buffer (up to the 64 KiB above): 32 of them after a load were
/// 1–3 MiB of an idle process's RSS (`benches/vs-rathole.sh`). A
/// connection opened again after a quiet spell costs one loopback
/// connect.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// A local HTTP service reached over a keep-alive connection pool.
#[derive(Clone)]
pub struct HttpUpstream {
    pool: Pool,
    /// Where the service listens (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `host` header of a request that has none, as a client of
    /// `http://host:port` writes it.
    host_header: HeaderValue,
    /// Path prefix from the URL, without a trailing `/`.
    prefix: String,
}

/// An upstream URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Not a URI.
    #[error("invalid upstream url {url:?}: {source}")]
    Invalid {
        /// The text given.
        url: String,
        /// Why it does not parse.
        source: http::uri::InvalidUri,
    },
    /// Only `http://` is reached directly.
    #[error("upstream url {0:?} must start with http://")]
    Scheme(String),
    /// Its host cannot be written as a `host` header. Not expected: every
    /// character `http` accepts in an authority is one a header value may
    /// hold; kept as an error rather than a panic should that change.
    #[error("upstream url {0:?} has a host that cannot be a host header")]
    Host(String),
}

impl HttpUpstream {
    /// An upstream at `url`, e.g. `http://127.0.0.1:8000`. A path in the URL
    /// is put in front of every request path.
    pub fn new(url: &str) -> Result<Self, UpstreamUrlError> {
        let uri: http::Uri = url.parse().map_err(|source| UpstreamUrlError::Invalid {
            url: url.to_owned(),
            source,
        })?;
        let Some(authority) = uri.authority().filter(|_| uri.scheme_str() == Some("http")) else {
            return Err(UpstreamUrlError::Scheme(url.to_owned()));
        };
        let port = authority.port_u16().unwrap_or(80);
        let host_header = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host_header = HeaderValue::from_str(&host_header)
            .map_err(|_| UpstreamUrlError::Host(url.to_owned()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let mut builder = hyper::client::conn::http1::Builder::new();
        builder.max_buf_size(UPSTREAM_READ_BUFFER_MAX);
        Ok(HttpUpstream {
            pool: Pool::new(host.clone(), port, builder, UPSTREAM_IDLE_TIMEOUT),
            host,
            port,
            host_header,
            prefix,
        })
    }

    /// The request target the service gets for `target` (origin-form, as
    /// the gateway sent it): behind the URL's path prefix, if it has one.
    fn target(&self, target: &http::Uri) -> Result<Option<http::Uri>, http::uri::InvalidUri> {
        if self.prefix.is_empty() {
            return Ok(None);
        }
        let path_and_query = target.path_and_query().map_or("/", |p| p.as_str());
        format!("{}{path_and_query}", self.prefix).parse().map(Some)
    }
}

impl Upstream for HttpUpstream {
    /// A connection of its own (never the pool's, since it will not come
    /// back), the request, and on `101` hyper's upgrade.
    fn upgrade(&self, request: http::Request<()>) -> UpgradeFuture {
        let (host, port) = (self.host.clone(), self.port);
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            upgrade_over(TokioIo::new(tcp), request, &prefix).await
        })
    }

    fn call(&self, mut request: UpstreamRequest) -> UpstreamFuture {
        let target = self.target(request.uri());
        let pool = self.pool.clone();
        let host = self.host_header.clone();
        Box::pin(async move {
            if let Some(target) = target? {
                *request.uri_mut() = target;
            }
            request
                .headers_mut()
                .entry(http::header::HOST)
                .or_insert(host);
            let response = pool.send(request).await?;
            Ok(response.map(|b| b.map_err(BoxError::from).boxed_unsync()))
        })
    }
}

/// Sends the upgrade `request` (its target behind `prefix`) as the only
/// request on connection `io`, and on `101` takes the connection over.
async fn upgrade_over<I>(
    io: I,
    request: http::Request<()>,
    prefix: &str,
) -> Result<Upgrade, BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream upgrade connection failed");
        }
    });
    let (mut parts, ()) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{prefix}{target}").parse()?;
    let request = http::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
    let mut response = sender.send_request(request).await?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let response = response.map(|b| b.map_err(BoxError::from).boxed_unsync());
        return Ok(Upgrade::Answered(response));
    }
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), header_text(v.as_bytes())))
        .collect();
    let io = hyper::upgrade::on(&mut response).await?;
    Ok(Upgrade::Switched { headers, io })
}

/// An in-process service's error, as a type of its own: hyper's server
/// takes it where a bare boxed error trips the compiler's lifetime
/// inference.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct InProcessError(BoxError);

impl InProcessError {
    fn of(e: impl Into<BoxError>) -> Self {
        InProcessError(e.into())
    }
}

/// How much an in-process WebSocket may have in flight each way between the
/// receiver and the service before the writer waits.
const IN_PROCESS_PIPE: usize = 64 * 1024;

/// Any `tower` service as an upstream: an axum `Router`, a hyper
/// `service_fn`, ... Plugging one in is one line:
///
/// ```no_run
/// # use shell_tokio::upstream::ServiceUpstream;
/// # fn demo<S: Clone>(router: S) {
/// let upstream = ServiceUpstream::new(router);
/// # }
/// ```
#[derive(Clone)]
pub struct ServiceUpstream<S> {
    service: S,
}

impl<S> ServiceUpstream<S> {
    /// Wraps `service`.
    pub fn new(service: S) -> Self {
        ServiceUpstream { service }
    }
}

impl<S, B> Upstream for ServiceUpstream<S>
where
    S: tower_service::Service<UpstreamRequest, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn call(&self, request: UpstreamRequest) -> UpstreamFuture {
        let mut service = self.service.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let response = service.call(request).await.map_err(Into::into)?;
            Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    }

    /// The service answers upgrades the way it does on a server of its own
    /// (an axum `WebSocketUpgrade` needs hyper's upgrade handle in the
    /// request): hyper serves it on one end of an in-memory pipe, and the
    /// upgrade is sent from the other end, as to a local HTTP service.
    fn upgrade(&self, request: http::Request<()>) -> UpgradeFuture {
        let service = self.service.clone();
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(IN_PROCESS_PIPE);
            let serve = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let mut service = service.clone();
                async move {
                    // An upgrade request has no body; its extensions carry
                    // the upgrade handle.
                    let (parts, _) = req.into_parts();
                    let req = http::Request::from_parts(parts, ChannelBody::empty());
                    // Converted at once: the service's own error type
                    // need not be `Send` across the next await.
                    let ready = std::future::poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(InProcessError::of);
                    ready?;
                    let response = service.call(req).await.map_err(InProcessError::of)?;
                    Ok::<_, InProcessError>(
                        response.map(|b| b.map_err(InProcessError::of).boxed_unsync()),
                    )
                }
            });
            tokio::spawn(async move {
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(theirs), serve)
                    .with_upgrades()
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "in-process upgrade connection failed");
                }
            });
            upgrade_over(TokioIo::new(ours), request, "").await
        })
    }
}

/// The built-in echo agent (`anpx demo`, `--demo`): answers every request
/// with a JSON description of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoUpstream;

impl Upstream for DemoUpstream {
    fn call(&self, request: UpstreamRequest) -> UpstreamFuture {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let mut head = anpx_core::RequestHead::new(parts.method.as_str(), parts.uri.path())
                .with_query(parts.uri.query().unwrap_or_default());
            for (name, value) in &parts.headers {
                head.headers
                    .push(name.as_str(), header_text(value.as_bytes()));
            }
            let (rhead, rbody) = anpx_core::demo::respond(&head, &body);
            let mut response = http::Response::builder().status(rhead.status);
            for (name, value) in rhead.headers.iter() {
                response = response.header(name, value);
            }
            let body = http_body_util::Full::new(rbody)
                .map_err(|never| match never {})
                .boxed_unsync();
            Ok(response.body(body)?)
        })
    }
}

/// Serves the shared connection loop's requests: each becomes an
/// [`UpstreamRequest`] whose body streams in, and the response is relayed.
impl Dispatch for dyn Upstream {
    fn dispatch(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        let request = match upstream_request(&head, head.method.as_str(), ChannelBody::from(body)) {
            Ok(r) => r,
            Err(e) => return bad_request(reply, e),
        };
        let call = self.call(request);
        Box::pin(async move {
            match call.await {
                Ok(r) => relay(reply, r).await,
                Err(e) => reply.upstream_error(&*e),
            }
        })
    }

    fn upgrade(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        let mut request = match upstream_request(&head, "GET", ()) {
            Ok(r) => r,
            Err(e) => return bad_request(reply, e),
        };
        let headers = request.headers_mut();
        headers.append(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        headers.append(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        let call = Upstream::upgrade(self, request);
        Box::pin(async move {
            match call.await {
                Ok(Upgrade::Switched { headers, io }) => {
                    let (from_service, to_service) = FuturesIo(TokioIo::new(io)).split();
                    websocket::serve_upstream(reply, headers, body, from_service, to_service).await
                }
                Ok(Upgrade::Answered(r)) => relay(reply, r).await,
                Err(e) => reply.upstream_error(&*e),
            }
        })
    }
}

/// The upstream request for what the gateway sent: `method`, its target,
/// the headers that are forwarded, and `body`; the first part `http`
/// refuses is the error, as `http::request::Builder` would give it. Built
/// in place: the builder moves the whole request through a `Result` for
/// each header, which made this 6 850 instructions of a small request,
/// 2 300 more than now (`benches/instructions.sh`, docs/BENCHMARKS.md
/// run 14).
fn upstream_request<B>(
    head: &RequestHead,
    method: &str,
    body: B,
) -> Result<http::Request<B>, http::Error> {
    let (target, headers) = upstream_request_parts(head);
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::from_bytes(method.as_bytes())?;
    *request.uri_mut() = http::Uri::try_from(target)?;
    let map = request.headers_mut();
    map.reserve(headers.len());
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    Ok(request)
}

/// Answers a request that cannot be put on the wire to the service (a
/// header or target `http` refuses) with 400, without calling the service.
fn bad_request(reply: Reply, e: http::Error) -> BoxFuture<()> {
    reply.bad_request(&format!("Bad request from gateway: {e}"));
    Box::pin(async {})
}

/// Relays a service's response to the gateway.
async fn relay(reply: Reply, response: UpstreamResponse) {
    let (parts, body) = response.into_parts();
    let exact = if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    };
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), header_text(v.as_bytes())));
    reply
        .relay(
            parts.status.as_u16(),
            headers,
            exact,
            BodyDataStream::new(body),
        )
        .await;
}

/// The upstreams this shell's receiver serves from: the demo agent, or
/// [`HttpUpstream`] at `receiver.upstream` (again on a SIGHUP that
/// changes it).
pub const UPSTREAMS: Upstreams<dyn Upstream> = Upstreams {
    demo: || Arc::new(DemoUpstream),
    at: |url| Ok(Arc::new(HttpUpstream::new(url)?)),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// What `http::request::Builder` made of the same parts, the
    /// construction `upstream_request` replaced.
    fn built(head: &RequestHead, method: &str) -> Result<http::Request<()>, http::Error> {
        let (target, headers) = upstream_request_parts(head);
        headers
            .into_iter()
            .fold(
                http::Request::builder().method(method).uri(target),
                |b, (name, value)| b.header(name, value),
            )
            .body(())
    }

    fn head(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut head = RequestHead::new(method, path).with_query(query);
        for (name, value) in headers {
            head.headers.push(*name, *value);
        }
        head
    }

    /// Reads a request head (up to its blank line) off `tcp`.
    pub(super) async fn read_head(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        head
    }

    /// The head of the one request a service on a port of its own gets,
    /// answered with an empty 200.
    async fn head_seen(url_path: &str, request: UpstreamRequest) -> String {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let head = read_head(&mut tcp).await;
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let upstream = HttpUpstream::new(&format!("http://127.0.0.1:{port}{url_path}")).unwrap();
        let response = upstream.call(request).await.expect("an answer");
        assert_eq!(response.status(), 200);
        service.await.unwrap().replace(&port.to_string(), "PORT")
    }

    fn request(target: &str, host: Option<&'static str>) -> UpstreamRequest {
        let mut request = http::Request::new(ChannelBody::empty());
        *request.uri_mut() = target.parse().unwrap();
        if let Some(host) = host {
            request
                .headers_mut()
                .insert(http::header::HOST, HeaderValue::from_static(host));
        }
        request
    }

    #[tokio::test]
    async fn the_service_gets_the_target_behind_the_url_path_and_a_host() {
        let head = head_seen("/base/", request("/x/y?q=1", None)).await;
        assert!(head.starts_with("GET /base/x/y?q=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("host: 127.0.0.1:PORT\r\n"), "{head}");

        let head = head_seen("", request("/x?q=1", Some("agent.example"))).await;
        assert!(head.starts_with("GET /x?q=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("host: agent.example\r\n"), "{head}");
        assert!(!head.contains("127.0.0.1"), "{head}");
    }

    #[test]
    fn a_request_is_what_the_builder_made() {
        let heads = [
            head("GET", "/agents/a", "", &[]),
            head(
                "POST",
                "/x y/é",
                "a=1&b=%20",
                &[
                    ("Host", "agent.example"),
                    ("Accept", "*/*"),
                    ("x-repeat", "1"),
                    ("connection", "keep-alive, x-hop"),
                    ("x-hop", "dropped"),
                    ("X-Repeat", "2"),
                    ("keep-alive", "timeout=5"),
                    ("te", "trailers"),
                ],
            ),
            head("PATCH", "/", "q", &[("x-empty", "")]),
        ];
        for head in &heads {
            let ours = upstream_request(head, &head.method, ()).expect("a valid head");
            let theirs = built(head, &head.method).expect("a valid head");
            assert_eq!(ours.method(), theirs.method());
            assert_eq!(ours.uri(), theirs.uri());
            assert_eq!(ours.version(), theirs.version());
            let pairs = |r: &http::Request<()>| {
                r.headers()
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(pairs(&ours), pairs(&theirs), "{head:?}");
        }
    }

    #[test]
    fn a_refused_part_is_the_error_the_builder_gave() {
        let cases = [
            (head("GET", "/", "", &[("bad name", "v")]), "GET"),
            (head("GET", "/", "", &[("x-ok", "line\nbreak")]), "GET"),
            (head("GET", "/", "", &[]), "NO T"),
            (head("GET", "/a b\u{7f}", "", &[("bad name", "v")]), "GET"),
            (
                head("GET", "/", "", &[("x-a", "\u{0}"), ("bad name", "v")]),
                "GET",
            ),
        ];
        for (head, method) in &cases {
            let ours = upstream_request(head, method, ()).expect_err("refused");
            let theirs = built(head, method).expect_err("refused");
            assert_eq!(ours.to_string(), theirs.to_string(), "{head:?}");
        }
    }
}
