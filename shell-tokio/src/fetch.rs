//! A small, bounded HTTP(S) GET: for DID documents, where a slow or huge
//! answer from a stranger's server must cost the gateway little. This is
//! tokio's half of the shared DID-WBA check ([`TokioDocuments`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use shell_common::did_wba::{read_limited, DocumentFetch, DocumentIo, DocumentUrl, FetchError};
use shell_common::receiver::BoxFuture;
use tokio::net::TcpStream;

/// Document fetches over hyper, file reads on tokio's blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioDocuments;

impl DocumentIo for TokioDocuments {
    fn get(&self, fetch: DocumentFetch) -> BoxFuture<Result<Bytes, FetchError>> {
        Box::pin(async move { get(&fetch.url, fetch.timeout, fetch.max_bytes, &fetch.tls).await })
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
    let target = DocumentUrl::parse(url)?;
    let transport = |e: &dyn std::fmt::Display| FetchError::Transport(e.to_string());
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| transport(&e))?;
    let request = http::Request::get(target.path_and_query.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(&e))?;
    let response = if target.secure {
        let name = ServerName::try_from(target.host).map_err(|e| transport(&e))?;
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
    read_limited(response.into_body().into_data_stream(), max_bytes).await
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
