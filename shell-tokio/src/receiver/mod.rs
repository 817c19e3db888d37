//! The receiver runtime: dials the gateway, keeps the connection up with
//! the core's backoff schedule, and serves requests from an [`Upstream`].

mod connection;
mod did_credentials;
mod serve;

pub use did_credentials::{CredentialsError, DidCredentials};

use std::sync::Arc;
use std::time::Instant;

use anpx_core::backoff::{Backoff, BackoffConfig};
use anpx_core::features::{Feature, Features};
use anpx_core::receiver::ReceiverConfig;
use anpx_core::route::ServiceUrl;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::upstream::Upstream;

/// Supplies the `Authorization` header for each connection attempt (a
/// DID-WBA header needs a fresh nonce and timestamp every time).
pub trait Credentials: Send + Sync + 'static {
    /// The header value for a gateway whose host name is `service`.
    fn authorization(&self, service: &str) -> Result<String, String>;
}

/// How to run a receiver.
#[derive(Clone)]
pub struct ReceiverOptions {
    /// `ws://` or `wss://` URL of the gateway's receiver endpoint.
    pub gateway: String,
    /// Service URLs to serve; empty = whatever the gateway grants.
    pub services: Vec<ServiceUrl>,
    /// The state machine's settings.
    pub core: ReceiverConfig,
    /// Reconnect schedule.
    pub backoff: BackoffConfig,
    /// Where requests go.
    pub upstream: Arc<dyn Upstream>,
    /// Identity proof for the handshake, if the gateway wants one.
    pub credentials: Option<Arc<dyn Credentials>>,
    /// Trust for a `wss://` gateway; `None` uses the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ReceiverOptions {
    /// Default settings for a receiver dialing `gateway` (`ws://` or
    /// `wss://`) and serving from `upstream`; set the other fields as needed.
    pub fn new(gateway: impl Into<String>, upstream: Arc<dyn Upstream>) -> Self {
        ReceiverOptions {
            gateway: gateway.into(),
            services: Vec::new(),
            core: ReceiverConfig::default(),
            backoff: BackoffConfig::default(),
            upstream,
            credentials: None,
            tls: None,
        }
    }

    /// Options from the `[receiver]` configuration section, serving from `upstream`.
    pub fn from_config(
        section: &anpx_core::config::ReceiverSection,
        upstream: Arc<dyn Upstream>,
    ) -> Self {
        ReceiverOptions {
            gateway: section.gateway.clone(),
            services: section.services.clone(),
            core: section.core_config(),
            backoff: section.backoff_config(),
            upstream,
            credentials: None,
            tls: None,
        }
    }
}

/// Where the receiver stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Dialing (first time or after a loss).
    Connecting,
    /// Connected and serving.
    Connected {
        /// Service URLs the gateway granted.
        granted: Vec<String>,
        /// Extensions negotiated.
        features: Features,
    },
    /// Stopped for good: shut down, or out of reconnect attempts.
    Stopped(String),
}

/// A running receiver.
pub struct Receiver {
    stop: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    task: JoinHandle<()>,
}

/// The extensions this receiver implements.
pub(crate) fn supported_features() -> Features {
    [Feature::Streaming, Feature::Lossless]
        .into_iter()
        .collect()
}

impl Receiver {
    /// Starts dialing in the background.
    pub fn spawn(options: ReceiverOptions) -> Receiver {
        let (stop, stopped) = watch::channel(false);
        let (status_tx, status) = watch::channel(Status::Connecting);
        let task = tokio::spawn(run(options, stopped, status_tx));
        Receiver { stop, status, task }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until the receiver is connected (or stopped) and returns that status.
    pub async fn wait_ready(&self) -> Status {
        let mut rx = self.status.clone();
        loop {
            let s = rx.borrow_and_update().clone();
            if !matches!(s, Status::Connecting) {
                return s;
            }
            if rx.changed().await.is_err() {
                return Status::Stopped("receiver task ended".into());
            }
        }
    }

    /// A watch on the status, for callers that follow reconnects.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Stops reconnecting, closes the connection and waits for the task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    options: ReceiverOptions,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<Status>,
) {
    let mut backoff = match Backoff::new(options.backoff, fastrand::u64(..)) {
        Ok(b) => b,
        Err(e) => {
            let _ = status.send(Status::Stopped(format!("invalid reconnect settings: {e}")));
            return;
        }
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let _ = status.send(Status::Connecting);
        match connection::dial(&options).await {
            Ok(conn) => {
                backoff.on_connected(Instant::now());
                tracing::info!(gateway = %options.gateway, granted = ?conn.granted, features = %conn.features, "connected to gateway");
                let _ = status.send(Status::Connected {
                    granted: conn.granted.clone(),
                    features: conn.features,
                });
                let why = serve::serve(conn, &options, &mut stop).await;
                backoff.on_disconnected(Instant::now());
                tracing::warn!(gateway = %options.gateway, reason = %why, "connection to gateway ended");
            }
            Err(e) => {
                tracing::warn!(gateway = %options.gateway, error = %e, "could not connect to gateway")
            }
        }
        if *stop.borrow() {
            break;
        }
        let Some(delay) = backoff.next_delay() else {
            let _ = status.send(Status::Stopped("gave up reconnecting".into()));
            return;
        };
        let _ = status.send(Status::Connecting);
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = status.send(Status::Stopped("shut down".into()));
}
