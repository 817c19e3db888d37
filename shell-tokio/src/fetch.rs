//! A small, bounded HTTP(S) GET: for DID documents, where a slow or huge
//! answer from a stranger's server must cost the gateway little. This is
//! tokio's half of the shared DID-WBA check ([`TokioDocuments`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use shell_common::did_wba::{DocumentIo, FetchError};
use shell_common::receiver::BoxFuture;
use tokio::net::TcpStream;

/// Document fetches over hyper, file reads on tokio's blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioDocuments;

impl DocumentIo for TokioDocuments {
    fn get(
        &self,
        url: String,
        timeout: Duration,
        max_bytes: usize,
        tls: Arc<rustls::ClientConfig>,
    ) -> BoxFuture<Result<Bytes, FetchError>> {
        Box::pin(async move { get(&url, timeout, max_bytes, &tls).await })
    }

    fn unblock(&self, work: Box<dyn FnOnce() -> Option<Bytes> + Send>) -> BoxFuture<Option<Bytes>> {
        Box::pin(async move { tokio::task::spawn_blocking(work).await.ok().flatten() })
    }
}

/// GETs `url`, giving up after `timeout` in all and refusing bodies over `max_bytes`.
pub async fn get(
    url: &str,
    timeout: Duration,
    max_bytes: usize,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Bytes, FetchError> {
    tokio::time::timeout(timeout, get_inner(url, max_bytes, tls))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn get_inner(
    url: &str,
    max_bytes: usize,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Bytes, FetchError> {
    let uri: http::Uri = url.parse().map_err(|_| FetchError::Url(url.to_owned()))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url(url.to_owned())),
    };
    let host = uri.host().ok_or_else(|| FetchError::Url(url.to_owned()))?;
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let transport = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| transport(&e))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let request = http::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(&e))?;
    let response = if secure {
        let name = ServerName::try_from(bare).map_err(|e| transport(&e))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| transport(&e))?;
        send(TokioIo::new(stream), request).await?
    } else {
        send(TokioIo::new(tcp), request).await?
    };
    if response.status() != http::StatusCode::OK {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let mut body = response.into_body();
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| transport(&e))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

async fn send<IO>(
    io: IO,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, FetchError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| FetchError::Transport(e.to_string()))
}
