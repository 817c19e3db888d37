//! Dialing the gateway: TCP (and TLS for `wss://`), the WebSocket handshake
//! with our headers, and what the gateway answered.

use std::sync::Arc;

use anpx_core::features::{negotiate, Features};
use anpx_core::handshake::{self, FEATURES_HEADER, GRANTED_HEADER, SERVICES_HEADER};
use async_tungstenite::tokio::{client_async_with_config, TokioAdapter};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::WebSocketStream;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{supported_features, ReceiverOptions};
use crate::ws;

/// A byte stream to the gateway, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The WebSocket to the gateway.
pub(crate) type GatewaySocket = WebSocketStream<TokioAdapter<Box<dyn Io>>>;

/// An open connection to the gateway.
pub(crate) struct Connection {
    pub ws: GatewaySocket,
    pub features: Features,
    pub granted: Vec<String>,
}

/// Why dialing failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("invalid gateway url: {0}")]
    Url(String),
    #[error("could not build credentials: {0}")]
    Credentials(String),
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(String),
    #[error("the gateway refused the connection with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("{0}")]
    WebSocket(#[from] async_tungstenite::tungstenite::Error),
}

pub(crate) async fn dial(options: &ReceiverOptions) -> Result<Connection, DialError> {
    let mut request = options
        .gateway
        .as_str()
        .into_client_request()
        .map_err(|e| DialError::Url(e.to_string()))?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        other => return Err(DialError::Url(format!("scheme {other:?} is not ws or wss"))),
    };
    let host = uri
        .host()
        .ok_or_else(|| DialError::Url("no host".into()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });

    let headers = request.headers_mut();
    let header = |v: String| HeaderValue::from_str(&v).map_err(|e| DialError::Url(e.to_string()));
    headers.insert(
        FEATURES_HEADER,
        header(supported_features().to_header_value())?,
    );
    if !options.services.is_empty() {
        headers.insert(
            SERVICES_HEADER,
            header(handshake::format_services(&options.services))?,
        );
    }
    if let Some(creds) = &options.credentials {
        let value = creds.authorization(&host).map_err(DialError::Credentials)?;
        headers.insert("authorization", header(value)?);
    }

    // Brackets of an IPv6 literal are URL syntax, not part of the address.
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|source| DialError::Connect {
            addr: format!("{host}:{port}"),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if secure {
        let config = match &options.tls {
            Some(c) => c.clone(),
            None => crate::tls::client_config(None).map_err(|e| DialError::Tls(e.to_string()))?,
        };
        let name = ServerName::try_from(bare_host).map_err(|e| DialError::Tls(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
            .connect(name, tcp)
            .await
            .map_err(|e| DialError::Tls(e.to_string()))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };

    let config = ws::config(options.core.frame_limits.max_frame_len);
    let (ws, response) = match client_async_with_config(request, stream, Some(config)).await {
        Ok(ok) => ok,
        Err(async_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(DialError::Refused { status, body });
        }
        Err(e) => return Err(e.into()),
    };
    let theirs = response
        .headers()
        .get(FEATURES_HEADER)
        .and_then(|v| v.to_str().ok());
    let features = negotiate(supported_features(), theirs);
    let granted = response
        .headers()
        .get(GRANTED_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Connection {
        ws,
        features,
        granted,
    })
}
