//! Where a receiver sends the requests it gets: a local HTTP service
//! through async-h1's client, or the built-in demo agent.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use anpx_cli::setup::Upstreams;
use anpx_core::RequestHead;
use futures_util::AsyncBufReadExt;
use futures_util::{StreamExt, TryStreamExt};
use http_types::{Body, Method, Request, Response, StatusCode, Url};
use shell_common::body::BodyStream;
use shell_common::receiver::{upstream_request_parts, BoxFuture, Dispatch, Reply};
use shell_common::websocket;
use shell_common::BoxError;

use crate::head_edit::HeadEdit;
use crate::response::ServiceResponse;
use crate::rt::body_stream;
use crate::tcp::TcpStream;

/// The future an upstream returns.
pub type UpstreamFuture = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

/// What a service made of a WebSocket upgrade request.
pub enum Upgrade {
    /// It switched protocols (`101`): the response (its body is what the
    /// service sends from then on, to the close) and the connection's
    /// writing side, for what the client sends.
    Switched {
        /// The `101`.
        response: Response,
        /// Writes to the service.
        writer: Box<dyn futures_util::AsyncWrite + Send + Unpin>,
    },
    /// It answered otherwise (a refusal, a redirect): relayed as is.
    Answered(Response),
}

/// The future [`Upstream::upgrade`] returns.
pub type UpgradeFuture = Pin<Box<dyn Future<Output = Result<Upgrade, BoxError>> + Send>>;

/// Something that answers HTTP requests for a receiver. The request's URL
/// is `http://upstream` followed by the path and query.
///
/// http-types holds ASCII header values only: a name with a value of
/// non-ASCII text is not among the request's headers. [`HttpUpstream`]
/// writes such values to its service all the same, as the tokio shell does.
pub trait Upstream: Send + Sync + 'static {
    /// Serves one request.
    fn call(&self, request: Request) -> UpstreamFuture;

    /// This upstream as an [`HttpUpstream`], which writes a request that
    /// turns out to have no body straight from the gateway's head instead
    /// of building a [`Request`] for [`call`](Self::call); `None` (the
    /// default) for every other upstream.
    fn as_http(&self) -> Option<&HttpUpstream> {
        None
    }

    /// Sends a WebSocket upgrade request, `head` as it came from the
    /// gateway (`connection: upgrade` and `upgrade: websocket` included).
    /// The default, for upstreams that are not reached over a connection
    /// of their own, answers 501. An in-process upstream that serves
    /// WebSockets implements this itself, returning [`Upgrade::Switched`]
    /// with its side of the byte stream: unlike hyper on the tokio shell
    /// (where `ServiceUpstream` answers upgrades), async-h1 has no upgrade
    /// handle that a generic service adapter could pass on.
    fn upgrade(&self, head: RequestHead) -> UpgradeFuture {
        drop(head);
        Box::pin(async {
            let mut response = Response::new(StatusCode::NotImplemented);
            let body =
                serde_json::json!({ "error": "This upstream does not take WebSocket upgrades" });
            response.set_body(body.to_string());
            response.insert_header("content-type", "application/json");
            Ok(Upgrade::Answered(response))
        })
    }
}

/// An upstream URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Not a URL.
    #[error("invalid upstream url {url:?}: {source}")]
    Invalid {
        /// The text given.
        url: String,
        /// Why it does not parse.
        source: http_types::url::ParseError,
    },
    /// Only `http://` with a host is reached directly.
    #[error("upstream url {0:?} must start with http:// and name a host")]
    Scheme(String),
}

/// A local HTTP service, reached over keep-alive connections: one whose
/// response was read to its end is kept for the next request. Cloned for
/// every request, so nothing in it is copied.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    host: Arc<str>,
    port: u16,
    /// Path prefix from the URL, without a trailing `/`.
    prefix: Arc<str>,
    /// The `host` header async-h1 would derive from a request URL of
    /// this host and port, for requests that come without one.
    host_header: Arc<str>,
    idle: Arc<Idle>,
}

/// The most idle connections kept; more are closed.
const MAX_IDLE: usize = 256;

/// Idle keep-alive connections to the service, most recently used last.
#[derive(Debug, Default)]
struct Idle(Mutex<Vec<TcpStream>>);

impl Idle {
    /// An idle connection the service has not closed, if there is one.
    fn take(&self) -> Option<TcpStream> {
        loop {
            let tcp = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            // A closed connection reads as ready (end of file, or bytes
            // nobody asked for); an open idle one has nothing to read.
            // Peeked without waiting: smol's peek would also register
            // interest with the reactor, a system call for nothing.
            let open = {
                let mut probe = [0u8; 1];
                matches!(
                    tcp.try_peek(&mut probe),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                )
            };
            if open {
                return Some(tcp);
            }
        }
    }

    fn put(&self, tcp: TcpStream) {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(tcp);
        }
    }

    fn recycler(self: &Arc<Self>) -> crate::response::Recycler<TcpStream> {
        let idle: Weak<Idle> = Arc::downgrade(self);
        Box::new(move |tcp| {
            if let Some(idle) = idle.upgrade() {
                idle.put(tcp);
            }
        })
    }
}

impl HttpUpstream {
    /// An upstream at `url`, e.g. `http://127.0.0.1:8000`. A path in the URL
    /// is put in front of every request path.
    pub fn new(url: &str) -> Result<Self, UpstreamUrlError> {
        let parsed = Url::parse(url).map_err(|source| UpstreamUrlError::Invalid {
            url: url.to_owned(),
            source,
        })?;
        let host = match (parsed.scheme(), parsed.host_str()) {
            ("http", Some(h)) => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            _ => return Err(UpstreamUrlError::Scheme(url.to_owned())),
        };
        let host_header = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_owned(),
        };
        Ok(HttpUpstream {
            host: host.into(),
            port: parsed.port_or_known_default().unwrap_or(80),
            prefix: parsed.path().trim_end_matches('/').into(),
            host_header: host_header.into(),
            idle: Arc::default(),
        })
    }

    /// Points `request` at this service: the URL's path prefix in front,
    /// and a `host` when the request has none. async-h1's encoder takes
    /// only the path and query from the URL, and the host for a request
    /// without a `host` header: the URL parsed from the gateway's target is
    /// not parsed again with the service's authority in it.
    pub(crate) fn aim(&self, request: &mut Request) {
        if !self.prefix.is_empty() {
            let path = format!("{}{}", self.prefix, request.url().path());
            request.url_mut().set_path(&path);
        }
        if request.header(http_types::headers::HOST).is_none() {
            request.insert_header(http_types::headers::HOST, &*self.host_header);
        }
    }

    /// The bytes of a request without a body for this service, written
    /// from the gateway's head (`crate::bodiless::encode`).
    pub(crate) fn encode_bodiless(&self, head: &RequestHead) -> Option<crate::response::Encoded> {
        crate::bodiless::encode(head, &self.prefix, &self.host_header)
    }

    /// A new connection to the service.
    async fn connect(&self) -> std::io::Result<TcpStream> {
        let tcp = TcpStream::connect((&*self.host, self.port)).await?;
        // Heads and small bodies go out at once, not after a delayed ACK.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Sends a request without a body, encoded once. The service may close
    /// an idle connection just as it is reused; the request is then sent
    /// again on a new one.
    async fn send_encoded(
        &self,
        request: &crate::response::Encoded,
    ) -> Result<ServiceResponse, BoxError> {
        let recycler = || Some(self.idle.recycler());
        if let Some(tcp) = self.idle.take() {
            match crate::response::exchange_encoded(tcp, request, recycler()).await {
                Err(crate::response::ResponseError::NotAnswered(_)) => {}
                other => return Ok(other?),
            }
        }
        let tcp = self.connect().await?;
        Ok(crate::response::exchange_encoded(tcp, request, recycler()).await?)
    }

    /// Sends `request` to the service and reads its response head.
    async fn send(&self, mut request: Request) -> Result<ServiceResponse, BoxError> {
        self.aim(&mut request);
        if request.len().is_none() {
            // A request without a declared length can still turn out
            // to have no body (a GET relayed by the gateway). Sent
            // chunked, its empty last chunk is bytes a service that
            // expects no body never reads, and closing a socket with
            // unread bytes makes the kernel reset the connection, which
            // can destroy the end of the response before it is read.
            // So the framing waits for the body's first bytes or end.
            // `take_body` and `set_body` label the request with the
            // body's type when it has none.
            let had_type = has_content_type(&request);
            let mut body = request.take_body();
            let empty = body.fill_buf().await?.is_empty();
            request.set_body(if empty { Body::empty() } else { body });
            if !had_type {
                request.remove_header("content-type");
            }
        }
        // async-h1 writes the request; the response is read by
        // `response`, whose module says why.
        if request.len() == Some(0) {
            let request = crate::response::Encoded::new(request).await?;
            return self.send_encoded(&request).await;
        }
        let recycler = || Some(self.idle.recycler());
        // One with a body is gone with the connection if it fails.
        if let Some(tcp) = self.idle.take() {
            return match crate::response::exchange(tcp, request, recycler()).await {
                Err(crate::response::ResponseError::NotAnswered(e)) => Err(e.into()),
                other => Ok(other?),
            };
        }
        let tcp = self.connect().await?;
        Ok(crate::response::exchange(tcp, request, recycler()).await?)
    }
}

impl Upstream for HttpUpstream {
    fn as_http(&self) -> Option<&HttpUpstream> {
        Some(self)
    }

    /// A connection of its own: the request written as is, the response
    /// read by `response`, which after a 101 reads on to the close.
    fn upgrade(&self, head: RequestHead) -> UpgradeFuture {
        let this = self.clone();
        Box::pin(async move {
            let tcp = this.connect().await?;
            let mut writer = tcp.clone();
            let request = websocket::upgrade_request_bytes(&head, &this.prefix);
            futures_util::AsyncWriteExt::write_all(&mut writer, &request).await?;
            let response = crate::response::read(tcp, false).await?;
            if response.status() != StatusCode::SwitchingProtocols {
                return Ok(Upgrade::Answered(response));
            }
            Ok(Upgrade::Switched {
                response,
                writer: Box::new(writer),
            })
        })
    }

    fn call(&self, request: Request) -> UpstreamFuture {
        let this = self.clone();
        Box::pin(async move { Ok(this.send(request).await?.into_response()) })
    }
}

/// The built-in echo agent (`anpx-smol demo`, `--demo`): answers every
/// request with a JSON description of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoUpstream;

impl Upstream for DemoUpstream {
    fn call(&self, mut request: Request) -> UpstreamFuture {
        Box::pin(async move {
            let body = request.body_bytes().await.map_err(|e| e.into_inner())?;
            let url = request.url();
            let mut head = RequestHead::new(request.method().as_ref(), url.path())
                .with_query(url.query().unwrap_or_default());
            for (name, values) in request.iter() {
                for value in values {
                    head.headers.push(name.as_str(), value.as_str());
                }
            }
            let (rhead, rbody) = anpx_core::demo::respond(&head, &body);
            let mut response = Response::new(status_code(rhead.status));
            for (name, value) in rhead.headers.iter() {
                response.append_header(name, value);
            }
            response.set_body(rbody.to_vec());
            Ok(response)
        })
    }
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::try_from(status).unwrap_or(StatusCode::BadGateway)
}

/// Whether the request carries a `content-type` (asked without parsing
/// it as `Request::content_type` does).
fn has_content_type(request: &Request) -> bool {
    request.header(http_types::headers::CONTENT_TYPE).is_some()
}

/// The http-types request for a head from the gateway, its body read from
/// `body` (`size` bytes, when known); `Err` is the 400's reason.
pub(crate) fn build_request(
    head: &RequestHead,
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, shell_common::body::Aborted>>
        + Send
        + Sync
        + Unpin
        + 'static,
    size: Option<u64>,
) -> Result<Request, String> {
    let method: Method = head
        .method
        .parse()
        .map_err(|_| format!("unsupported method {}", head.method))?;
    let (target, headers) = upstream_request_parts(head);
    let url = Url::parse(&format!("http://upstream{target}"))
        .map_err(|e| format!("Bad request from gateway: {e}"))?;
    let mut request = Request::new(method, url);
    // Every name is a token (the core refuses a head with any other);
    // values async-h1 cannot write go into its head as an edit
    // (`crate::head_edit`), when the request is sent.
    let mut edit = HeadEdit::default();
    let fields = headers
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
    for (name, value) in edit.split_fields(fields) {
        request.append_header(name, value);
    }
    if !edit.is_noop() {
        request.ext_mut().insert(edit);
    }
    let reader = body
        .map_err(|e| std::io::Error::other(e.to_string()))
        .into_async_read();
    let len = size.and_then(|n| usize::try_from(n).ok());
    let had_type = has_content_type(&request);
    request.set_body(http_types::Body::from_reader(reader, len));
    // `set_body` labels the request with the body's type; the client may
    // have sent none.
    if !had_type {
        request.remove_header("content-type");
    }
    Ok(request)
}

/// Sends `encoded` (the head written without a body) unless `body`, of
/// undeclared length, turns out to have one: a GET relayed by the gateway
/// declares none, so its first piece decides. A body goes the way of every
/// other request, that piece put back in front.
async fn send_unless_body(
    http: HttpUpstream,
    encoded: crate::response::Encoded,
    head: RequestHead,
    mut body: BodyStream,
    reply: Reply,
) {
    let size = body.size();
    let answer = match body.next().await {
        None => http.send_encoded(&encoded).await,
        Some(first) => {
            let rest = futures_util::stream::iter([first]).chain(body);
            match build_request(&head, rest, size) {
                Ok(request) => http.send(request).await,
                Err(message) => return reply.bad_request(&message),
            }
        }
    };
    match answer {
        Ok(r) => relay_service(reply, r).await,
        Err(e) => reply.upstream_error(&*e),
    }
}

impl Dispatch for dyn Upstream {
    fn dispatch(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        let size = body.size();
        let http = self.as_http().cloned();
        let encoded = http
            .as_ref()
            .filter(|_| size.is_none_or(|n| n == 0))
            .and_then(|http| http.encode_bodiless(&head));
        let http = match (http, encoded) {
            (Some(http), Some(encoded)) => {
                return Box::pin(send_unless_body(http, encoded, head, body, reply))
            }
            (http, _) => http,
        };
        let request = match build_request(&head, body, size) {
            Ok(r) => r,
            Err(message) => {
                reply.bad_request(&message);
                return Box::pin(async {});
            }
        };
        // The service's own connection is read without http-types'
        // `Response`; any other upstream answers with one.
        let Some(http) = http else {
            let call = self.call(request);
            return Box::pin(async move {
                match call.await {
                    Ok(r) => relay(reply, r).await,
                    Err(e) => reply.upstream_error(&*e),
                }
            });
        };
        Box::pin(async move {
            match http.send(request).await {
                Ok(r) => relay_service(reply, r).await,
                Err(e) => reply.upstream_error(&*e),
            }
        })
    }

    fn upgrade(&self, head: RequestHead, body: BodyStream, reply: Reply) -> BoxFuture<()> {
        let call = Upstream::upgrade(self, head);
        Box::pin(async move {
            match call.await {
                Ok(Upgrade::Switched {
                    mut response,
                    writer,
                }) => {
                    let headers = headers_of(&response);
                    let from_service = response.take_body().into_reader();
                    websocket::serve_upstream(reply, headers, body, from_service, writer).await
                }
                Ok(Upgrade::Answered(r)) => relay(reply, r).await,
                Err(e) => reply.upstream_error(&*e),
            }
        })
    }
}

/// A response's headers as pairs, in order.
fn headers_of(response: &Response) -> Vec<(String, String)> {
    response
        .iter()
        .flat_map(|(n, vs)| {
            vs.iter()
                .map(|v| (n.as_str().to_owned(), v.as_str().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Relays a response read from the service's connection to the gateway.
async fn relay_service(reply: Reply, response: ServiceResponse) {
    let exact = response.body.len().map(|n| n as u64);
    let body = body_stream(response.body).boxed();
    reply
        .relay(response.status, response.headers, exact, body)
        .await;
}

/// Relays an upstream's response to the gateway.
async fn relay(reply: Reply, mut response: Response) {
    let status = u16::from(response.status());
    let body = response.take_body();
    let exact = body.len().map(|n| n as u64);
    // Names borrowed from the response, each value copied once.
    let headers: Vec<(&str, String)> = response
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.as_str(), value.as_str().to_owned()))
        })
        .collect();
    reply
        .relay(status, headers, exact, body_stream(body).boxed())
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

    #[test]
    fn a_header_value_async_h1_cannot_hold_goes_in_the_edit() {
        let head = RequestHead::new("POST", "/x")
            .with_header("x-name", "caf\u{e9}")
            .with_header("x-kept", "yes");
        let mut request = build_request(&head, futures_util::stream::empty(), None).expect("built");
        let names: Vec<&str> = request.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        let edit: Option<&crate::head_edit::HeadEdit> = request.ext_mut().get();
        let extra = &edit.expect("an edit").extra;
        assert_eq!(extra, &[("x-name".to_owned(), "caf\u{e9}".to_owned())]);
    }
}
