//! The `[receiver]` section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::BackoffConfig;
use crate::chunk::{DEFAULT_CHUNK_SIZE, DEFAULT_MAX_HELD_BYTES};
use crate::receiver::{ReceiverConfig, DEFAULT_MAX_BUFFERED_RESPONSES, DEFAULT_MAX_IN_FLIGHT};
use crate::route::ServiceUrl;

use super::InspectorSection;

/// Settings of `anpx receiver`: the side next to the private service, which
/// dials out to the gateway and forwards requests to its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverSection {
    /// `ws://` or `wss://` URL of the gateway's WebSocket endpoint
    /// (`receiver.gateway`).
    pub gateway: String,
    /// More gateways to keep a connection to at the same time
    /// (`receiver.extra_gateways`): each request arrives over exactly one
    /// connection, and losing one gateway loses no service.
    pub extra_gateways: Vec<String>,
    /// `http://` or `https://` base URL requests are forwarded to
    /// (`receiver.upstream`); `None` when the service runs in-process.
    pub upstream: Option<String>,
    /// Services to register (`receiver.services`); empty registers
    /// everything the gateway grants.
    pub services: Vec<ServiceUrl>,
    /// PEM file of CA certificates trusted for a `wss://` gateway, besides
    /// the system's (`receiver.ca_file`).
    pub ca_file: Option<PathBuf>,
    /// SHA-256 digests of the public keys (SPKI) a `wss://` gateway may
    /// present (`receiver.pin_sha256`), as `sha256//BASE64` (curl's
    /// `--pinnedpubkey`) or 64 hex digits; when set, the gateway is
    /// trusted exactly when its key matches one.
    pub pin_sha256: Vec<String>,
    /// Seconds a stopping receiver (SIGTERM, Ctrl-C) lets requests in
    /// flight finish while refusing new ones with 503
    /// (`receiver.drain_grace_secs`); 0 closes at once.
    pub drain_grace_secs: u64,
    /// What is logged, as `RUST_LOG` directives (`receiver.log_level`);
    /// `RUST_LOG`, when set, wins. SIGHUP applies a changed value.
    pub log_level: String,
    /// Seconds between pings to the gateway (`receiver.ping_interval_secs`).
    pub ping_interval_secs: u64,
    /// Ceiling of the first reconnect delay, in milliseconds
    /// (`receiver.reconnect_first_delay_ms`).
    pub reconnect_first_delay_ms: u64,
    /// Cap of every reconnect delay, in seconds
    /// (`receiver.reconnect_max_delay_secs`).
    pub reconnect_max_delay_secs: u64,
    /// Consecutive failed attempts before giving up
    /// (`receiver.reconnect_max_attempts`); `None` (also spelled `0`)
    /// retries forever.
    pub reconnect_max_attempts: Option<u32>,
    /// Seconds a connection must stay up for the reconnect schedule to
    /// start over from the first delay
    /// (`receiver.reconnect_reset_after_secs`).
    pub reconnect_reset_after_secs: u64,
    /// Retry failures that retrying cannot fix (a 401, 403 or 404
    /// handshake) instead of stopping (`receiver.keep_retrying`).
    pub keep_retrying: bool,
    /// This receiver's DID document, for DID-WBA authentication
    /// (`receiver.did_document`).
    pub did_document: Option<PathBuf>,
    /// The private key matching the DID document
    /// (`receiver.private_key`).
    pub private_key: Option<PathBuf>,
    /// Largest frame sent, in bytes (`receiver.chunk_size`).
    pub chunk_size: usize,
    /// Largest response body held whole for a gateway that cannot take it
    /// streamed, in bytes (`receiver.max_buffered_response_bytes`).
    pub max_buffered_response_bytes: u64,
    /// Response bytes held whole for such a gateway, every request of a
    /// connection together (`receiver.max_buffered_bytes`).
    pub max_buffered_bytes: u64,
    /// Requests served at once on one gateway connection; more are
    /// answered 503 (`receiver.max_inflight`).
    pub max_inflight: usize,
    /// Address of the receiver's admin plane (`receiver.admin_listen`):
    /// its status, `/metrics` and request inspector; `None` (the default)
    /// serves none.
    pub admin_listen: Option<SocketAddr>,
    /// `[receiver.inspector]`: what the receiver's request inspector keeps
    /// of the requests it replayed to its upstream.
    pub inspector: InspectorSection,
}

impl Default for ReceiverSection {
    fn default() -> Self {
        ReceiverSection {
            gateway: "ws://127.0.0.1:8080/ws".to_owned(),
            extra_gateways: Vec::new(),
            upstream: None,
            services: Vec::new(),
            ca_file: None,
            pin_sha256: Vec::new(),
            drain_grace_secs: 10,
            log_level: "info".to_owned(),
            ping_interval_secs: 30,
            reconnect_first_delay_ms: 1000,
            reconnect_max_delay_secs: 300,
            reconnect_max_attempts: None,
            reconnect_reset_after_secs: 60,
            keep_retrying: false,
            did_document: None,
            private_key: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_buffered_response_bytes: DEFAULT_MAX_HELD_BYTES,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_RESPONSES,
            max_inflight: DEFAULT_MAX_IN_FLIGHT,
            admin_listen: None,
            inspector: InspectorSection::default(),
        }
    }
}

impl ReceiverSection {
    /// `ping_interval_secs` as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// `reconnect_first_delay_ms` as a duration.
    pub fn reconnect_first_delay(&self) -> Duration {
        Duration::from_millis(self.reconnect_first_delay_ms)
    }

    /// `reconnect_max_delay_secs` as a duration.
    pub fn reconnect_max_delay(&self) -> Duration {
        Duration::from_secs(self.reconnect_max_delay_secs)
    }

    /// The receiver state machine's settings. Settings this file has no key
    /// for keep their defaults.
    pub fn core_config(&self) -> ReceiverConfig {
        ReceiverConfig {
            ping_interval: self.ping_interval(),
            chunk_size: self.chunk_size,
            max_buffered_response: self.max_buffered_response_bytes,
            max_buffered_total: self.max_buffered_bytes,
            max_in_flight: self.max_inflight,
            ..ReceiverConfig::default()
        }
    }

    /// The reconnect schedule's settings; growth keeps its default.
    pub fn backoff_config(&self) -> BackoffConfig {
        BackoffConfig {
            first_delay: self.reconnect_first_delay(),
            max_delay: self.reconnect_max_delay(),
            max_attempts: self.reconnect_max_attempts,
            reset_after: Duration::from_secs(self.reconnect_reset_after_secs),
            keep_retrying: self.keep_retrying,
            ..BackoffConfig::default()
        }
    }
}
