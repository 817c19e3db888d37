//! A small, bounded HTTP(S) GET for DID documents over async-h1 and
//! futures-rustls, where a slow or huge answer from a stranger's server
//! must cost the gateway little: smol's half of the shared DID-WBA check.

use std::sync::Arc;

use bytes::Bytes;
use http_types::{Method, Request, Url};
use shell_common::did_wba::{read_limited, DocumentFetch, DocumentIo, DocumentUrl, FetchError};
use shell_common::receiver::BoxFuture;
use smol::net::TcpStream;

use crate::rt::body_stream;

/// Document fetches over async-h1, file reads on smol's blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolDocuments;

impl DocumentIo for SmolDocuments {
    fn get(&self, fetch: DocumentFetch) -> BoxFuture<Result<Bytes, FetchError>> {
        let DocumentFetch {
            url,
            timeout,
            max_bytes,
            tls,
        } = fetch;
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
    let target = DocumentUrl::parse(url)?;
    let parsed = Url::parse(url).map_err(|_| FetchError::Url(url.to_owned()))?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(transport)?;
    let mut request = Request::new(Method::Get, parsed);
    request.insert_header("accept", "application/json");
    let response = if target.secure {
        let (config, name) = shell_common::tls::dial(&target.host, Some(tls)).map_err(transport)?;
        let stream = futures_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(transport)?;
        crate::response::exchange(stream, request, None).await
    } else {
        crate::response::exchange(tcp, request, None).await
    }
    .map_err(transport)?;
    if response.status != 200 {
        return Err(FetchError::Status(response.status));
    }
    read_limited(body_stream(response.body), max_bytes).await
}
