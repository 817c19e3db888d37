//! Dialing the gateway: the WebSocket handshake with our headers, and what
//! the gateway answered.

use anpx_core::features::{negotiate, Features};
use anpx_core::handshake::{self, FEATURES_HEADER, GRANTED_HEADER, SERVICES_HEADER};
use async_tungstenite::tokio::{connect_async_with_config, ConnectStream};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::WebSocketStream;

use super::{supported_features, ReceiverOptions};
use crate::ws;

/// An open connection to the gateway.
pub(crate) struct Connection {
    pub ws: WebSocketStream<ConnectStream>,
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
    let service = request.uri().host().unwrap_or_default().to_owned();
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
        let value = creds
            .authorization(&service)
            .map_err(DialError::Credentials)?;
        headers.insert("authorization", header(value)?);
    }
    let config = ws::config(options.core.frame_limits.max_frame_len);
    let (ws, response) = match connect_async_with_config(request, Some(config)).await {
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
