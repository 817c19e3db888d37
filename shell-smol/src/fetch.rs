//! A small, bounded HTTP(S) GET for DID documents over async-h1 and
//! futures-rustls, where a slow or huge answer from a stranger's server
//! must cost the gateway little: smol's half of the shared DID-WBA check.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::AsyncReadExt;
use http_types::{Method, Request, Url};
use shell_common::did_wba::{DocumentIo, FetchError};
use shell_common::receiver::BoxFuture;
use smol::net::TcpStream;

/// Document fetches over async-h1, file reads on smol's blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolDocuments;

impl DocumentIo for SmolDocuments {
    fn get(
        &self,
        url: String,
        timeout: Duration,
        max_bytes: usize,
        tls: Arc<rustls::ClientConfig>,
    ) -> BoxFuture<Result<Bytes, FetchError>> {
        Box::pin(async move {
            let deadline = async {
                smol::Timer::after(timeout).await;
                Err(FetchError::Timeout(timeout))
            };
            smol::future::or(get(&url, max_bytes, tls), deadline).await
        })
    }

    fn unblock(&self, work: Box<dyn FnOnce() -> Option<Bytes> + Send>) -> BoxFuture<Option<Bytes>> {
        Box::pin(smol::unblock(work))
    }
}

fn transport(e: impl std::fmt::Display) -> FetchError {
    FetchError::Transport(e.to_string())
}

async fn get(
    url: &str,
    max_bytes: usize,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Bytes, FetchError> {
    let bad_url = || FetchError::Url(url.to_owned());
    let parsed = Url::parse(url).map_err(|_| bad_url())?;
    let secure = match parsed.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(bad_url()),
    };
    let host = parsed
        .host_str()
        .ok_or_else(bad_url)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(transport)?;
    let mut request = Request::new(Method::Get, parsed);
    request.insert_header("accept", "application/json");
    let mut response = if secure {
        let (config, name) = shell_common::tls::dial(&host, Some(tls)).map_err(transport)?;
        let stream = futures_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(transport)?;
        crate::response::exchange(stream, request).await
    } else {
        crate::response::exchange(tcp, request).await
    }
    .map_err(transport)?;
    let status = u16::from(response.status());
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let mut body = Vec::new();
    response
        .take_body()
        .into_reader()
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut body)
        .await
        .map_err(transport)?;
    if body.len() > max_bytes {
        return Err(FetchError::TooLarge(max_bytes));
    }
    Ok(Bytes::from(body))
}
