//! A small, bounded HTTP(S) GET: for DID documents, where a slow or huge
//! answer from a stranger's server must cost the gateway little.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an http(s) URL.
    #[error("invalid url {0}")]
    Url(String),
    /// Took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or HTTP failure.
    #[error("{0}")]
    Transport(String),
    /// A status other than 200.
    #[error("status {0}")]
    Status(u16),
    /// The body exceeded the limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
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
