//! The `[gateway]` section.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::chunk::{ReassemblyLimits, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_HELD_BYTES};
use crate::edge::response::{
    ResponseLimits, DEFAULT_MAX_RESPONSE_HEADERS, DEFAULT_MAX_RESPONSE_HEADER_BYTES,
};
use crate::edge::{
    EdgeLimits, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_RECEIVERS,
};
use crate::frame::{FrameLimits, DEFAULT_MAX_FRAME_LEN};
use crate::gateway::{
    BufferBudget, GatewayConfig, DEFAULT_MAX_BUFFERED_PER_LINK, DEFAULT_MAX_BUFFERED_TOTAL,
    DEFAULT_MAX_INFLIGHT_PERCENT_PER_CLIENT,
};
use crate::policy::{CorsConfig, PolicyConfig, RateConfig, DEFAULT_MAX_TRACKED};
use crate::route::ServiceUrl;

/// Default of `gateway.body_idle_timeout_secs`: long enough for a model
/// that thinks between tokens or an event stream with sparse events.
pub const DEFAULT_BODY_IDLE_TIMEOUT_SECS: u64 = 300;

/// Settings of `anpx gateway`: the public HTTP front end that receivers
/// connect to over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySection {
    /// Address of the HTTP front end (`gateway.listen`).
    pub listen: SocketAddr,
    /// Separate address for receivers' WebSocket connections
    /// (`gateway.ws_listen`); `None` serves them on [`listen`](Self::listen)
    /// at `/ws`.
    pub ws_listen: Option<SocketAddr>,
    /// Address of the admin plane (`gateway.admin_listen`): `/metrics`,
    /// `/stats`, the dashboard and its API; `None` serves none of them.
    pub admin_listen: Option<SocketAddr>,
    /// Path the public listener answers itself for health checks
    /// (`gateway.health_path`); `None` sends every path through the tunnel.
    pub health_path: Option<String>,
    /// Seconds a request may wait for its response head
    /// (`gateway.request_timeout_secs`).
    pub request_timeout_secs: u64,
    /// Seconds a response may go without a body part once its head is
    /// sent (`gateway.body_idle_timeout_secs`).
    pub body_idle_timeout_secs: u64,
    /// Seconds a request's upload may keep it waiting for its response
    /// head, however steadily its bytes come
    /// (`gateway.upload_timeout_secs`).
    pub upload_timeout_secs: u64,
    /// Seconds a WebSocket carried through the tunnel may stay silent in
    /// both directions before it is closed
    /// (`gateway.websocket_idle_timeout_secs`).
    pub websocket_idle_timeout_secs: u64,
    /// Requests one receiver connection may have in flight
    /// (`gateway.max_inflight_per_receiver`).
    pub max_inflight_per_receiver: usize,
    /// Percent of a route's in-flight cap one client address may hold
    /// (`gateway.max_inflight_percent_per_client`), 1 to 100.
    pub max_inflight_percent_per_client: u32,
    /// Seconds between WebSocket pings to each receiver
    /// (`gateway.ping_interval_secs`).
    pub ping_interval_secs: u64,
    /// Largest frame sent, in bytes (`gateway.chunk_size`).
    pub chunk_size: usize,
    /// Largest frame accepted, in bytes (`gateway.max_frame_bytes`).
    pub max_frame_bytes: usize,
    /// Seconds requests in flight get to finish on shutdown
    /// (`gateway.drain_grace_secs`); 0 stops at once.
    pub drain_grace_secs: u64,
    /// Log line format (`gateway.log_format`).
    pub log_format: LogFormat,
    /// What is logged, as `RUST_LOG` directives (`gateway.log_level`):
    /// `info`, `warn,shell_common=debug`, ... `RUST_LOG`, when set, wins.
    /// SIGHUP applies a changed value.
    pub log_level: String,
    /// Seconds a client may take to send a request head, and on HTTP/1 to
    /// stay idle between requests (`gateway.header_read_timeout_secs`).
    pub header_read_timeout_secs: u64,
    /// Largest request head, in bytes (`gateway.max_header_bytes`).
    pub max_header_bytes: usize,
    /// Largest request body, in bytes (`gateway.max_body_bytes`).
    pub max_body_bytes: u64,
    /// Largest response body, in bytes (`gateway.max_response_bytes`);
    /// `None` sets no limit.
    pub max_response_bytes: Option<u64>,
    /// Largest response body held whole for a receiver that sends its head
    /// last, in bytes (`gateway.max_buffered_response_bytes`).
    pub max_buffered_response_bytes: u64,
    /// Most header fields in a response head from a receiver
    /// (`gateway.max_response_headers`).
    pub max_response_headers: usize,
    /// Largest total size of a response head's header fields, in bytes
    /// (`gateway.max_response_header_bytes`).
    pub max_response_header_bytes: usize,
    /// Response bytes one receiver connection may make the gateway hold
    /// (`gateway.max_buffered_per_receiver_bytes`); also caps the
    /// WebSocket message and frame sizes and `max_buffered_response_bytes`.
    pub max_buffered_per_receiver_bytes: u64,
    /// Response bytes all receiver connections together may make the
    /// gateway hold (`gateway.max_buffered_bytes`).
    pub max_buffered_bytes: u64,
    /// Receiver handshakes in progress at once
    /// (`gateway.max_pending_handshakes`).
    pub max_pending_handshakes: usize,
    /// Receiver connections per client address
    /// (`gateway.max_receivers_per_ip`).
    pub max_receivers_per_ip: usize,
    /// Receiver connections in all (`gateway.max_receivers`).
    pub max_receivers: usize,
    /// Forward request headers with underscores in their names
    /// (`gateway.keep_underscore_headers`).
    pub keep_underscore_headers: bool,
    /// Add security headers to responses (`gateway.security_headers`).
    pub security_headers: bool,
    /// Answer common scanner probes with 403 (`gateway.block_probes`).
    pub block_probes: bool,
    /// More path patterns answered with 403 (`gateway.blocked_paths`).
    pub blocked_paths: Vec<String>,
    /// `[gateway.inspector]`.
    pub inspector: InspectorSection,
    /// `[gateway.tls]`.
    pub tls: TlsSection,
    /// `[gateway.auth]`.
    pub auth: AuthSection,
    /// `[gateway.caller_auth]`.
    pub caller_auth: CallerAuthSection,
    /// `[gateway.registry]`.
    pub registry: RegistrySection,
    /// `[gateway.rate_limit]`.
    pub rate_limit: RateLimitSection,
    /// `[gateway.cors]`.
    pub cors: CorsSection,
    /// `[gateway.cluster]`.
    pub cluster: ClusterSection,
    /// `[gateway.routes]`.
    pub routes: RoutesSection,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            ws_listen: None,
            admin_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 8081))),
            health_path: Some("/health".to_owned()),
            request_timeout_secs: 30,
            body_idle_timeout_secs: DEFAULT_BODY_IDLE_TIMEOUT_SECS,
            upload_timeout_secs: 600,
            websocket_idle_timeout_secs: 300,
            max_inflight_per_receiver: 100,
            max_inflight_percent_per_client: u32::from(DEFAULT_MAX_INFLIGHT_PERCENT_PER_CLIENT),
            ping_interval_secs: 30,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_frame_bytes: DEFAULT_MAX_FRAME_LEN,
            drain_grace_secs: 10,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            header_read_timeout_secs: 10,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: None,
            max_buffered_response_bytes: DEFAULT_MAX_HELD_BYTES,
            max_response_headers: DEFAULT_MAX_RESPONSE_HEADERS,
            max_response_header_bytes: DEFAULT_MAX_RESPONSE_HEADER_BYTES,
            max_buffered_per_receiver_bytes: DEFAULT_MAX_BUFFERED_PER_LINK,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_TOTAL,
            max_pending_handshakes: 256,
            max_receivers_per_ip: 64,
            max_receivers: DEFAULT_MAX_RECEIVERS,
            keep_underscore_headers: false,
            security_headers: false,
            block_probes: false,
            blocked_paths: Vec::new(),
            inspector: InspectorSection::default(),
            tls: TlsSection::default(),
            auth: AuthSection::default(),
            caller_auth: CallerAuthSection::default(),
            registry: RegistrySection::default(),
            rate_limit: RateLimitSection::default(),
            cors: CorsSection::default(),
            cluster: ClusterSection::default(),
            routes: RoutesSection::default(),
        }
    }
}

impl GatewaySection {
    /// `request_timeout_secs` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `websocket_idle_timeout_secs` as a duration.
    pub fn websocket_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.websocket_idle_timeout_secs)
    }

    /// `ping_interval_secs` as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// `drain_grace_secs` as a duration.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.drain_grace_secs)
    }

    /// The limits of the public edge.
    pub fn edge_limits(&self) -> EdgeLimits {
        EdgeLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            max_pending_handshakes: self.max_pending_handshakes,
            max_receivers_per_ip: self.max_receivers_per_ip,
            max_receivers: self.max_receivers,
            keep_underscore_headers: self.keep_underscore_headers,
        }
    }

    /// The optional middlewares: rate limits, CORS, security headers and
    /// the blocklist.
    pub fn policy_config(&self) -> PolicyConfig {
        let rate = |per_sec: Option<u32>, burst: Option<u32>| {
            per_sec.map(|per_sec| RateConfig {
                per_sec,
                burst: burst.unwrap_or(per_sec),
            })
        };
        PolicyConfig {
            per_ip: rate(self.rate_limit.ip_per_sec, self.rate_limit.ip_burst),
            per_route: rate(self.rate_limit.route_per_sec, self.rate_limit.route_burst),
            max_tracked: self.rate_limit.max_tracked,
            cors: CorsConfig {
                origins: self.cors.origins.clone(),
                max_age: Duration::from_secs(self.cors.max_age_secs),
            },
            security_headers: self.security_headers,
            block_probes: self.block_probes,
            blocked_paths: self.blocked_paths.clone(),
        }
    }

    /// The largest WebSocket message and ANPX frame a receiver may send:
    /// `max_frame_bytes`, but never more than the connection's buffer
    /// budget, since a message received whole is held whole (a reference
    /// receiver sends each response as one message).
    pub fn max_frame_len(&self) -> usize {
        let budget = usize::try_from(self.max_buffered_per_receiver_bytes).unwrap_or(usize::MAX);
        self.max_frame_bytes.min(budget)
    }

    /// The gateway state machine's settings. Settings this file has no key
    /// for keep their defaults.
    pub fn core_config(&self) -> GatewayConfig {
        GatewayConfig {
            request_timeout: self.request_timeout(),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs),
            upload_timeout: Duration::from_secs(self.upload_timeout_secs),
            websocket_idle_timeout: Duration::from_secs(self.websocket_idle_timeout_secs),
            max_inflight_per_link: self.max_inflight_per_receiver,
            ping_interval: self.ping_interval(),
            chunk_size: self.chunk_size,
            frame_limits: FrameLimits {
                max_frame_len: self.max_frame_len(),
            },
            reassembly: ReassemblyLimits {
                max_message_size: self.max_response_bytes.unwrap_or(u64::MAX),
                // One message held whole past the connection's budget would
                // close the connection; over this it fails alone (502).
                max_headless_bytes: self
                    .max_buffered_response_bytes
                    .min(self.max_buffered_per_receiver_bytes),
                ..ReassemblyLimits::default()
            },
            response: ResponseLimits {
                max_headers: self.max_response_headers,
                max_header_bytes: self.max_response_header_bytes,
            },
            buffers: BufferBudget {
                per_link: self.max_buffered_per_receiver_bytes,
                total: self.max_buffered_bytes,
            },
            max_inflight_percent_per_client: u8::try_from(
                self.max_inflight_percent_per_client.min(100),
            )
            .unwrap_or(100),
            ..GatewayConfig::default()
        }
    }
}

/// `[gateway.cluster]`: several gateways acting as one over NATS. Off
/// while `nats_url` is unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSection {
    /// The NATS server (`gateway.cluster.nats_url`); `None` runs a single
    /// gateway.
    pub nats_url: Option<String>,
    /// This gateway's name in the cluster (`gateway.cluster.node_name`);
    /// `None` derives one from the host name and process id. Must be
    /// unique in the cluster.
    pub node_name: Option<String>,
    /// Prefix of every NATS subject (`gateway.cluster.subject_prefix`), so
    /// that clusters sharing a NATS server stay apart.
    pub subject_prefix: String,
    /// Milliseconds between route announcements
    /// (`gateway.cluster.announce_interval_ms`).
    pub announce_interval_ms: u64,
    /// Milliseconds of silence after which a gateway's routes are
    /// forgotten (`gateway.cluster.route_ttl_ms`).
    pub route_ttl_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            nats_url: None,
            node_name: None,
            subject_prefix: crate::cluster::DEFAULT_SUBJECT_PREFIX.to_owned(),
            announce_interval_ms: 1000,
            route_ttl_ms: 3000,
        }
    }
}

impl ClusterSection {
    /// Whether the cluster is on.
    pub fn enabled(&self) -> bool {
        self.nats_url.is_some()
    }

    /// `announce_interval_ms` as a duration.
    pub fn announce_interval(&self) -> Duration {
        Duration::from_millis(self.announce_interval_ms)
    }

    /// `route_ttl_ms` as a duration.
    pub fn route_ttl(&self) -> Duration {
        Duration::from_millis(self.route_ttl_ms)
    }
}

/// `[gateway.inspector]`: what the admin dashboard's request inspector
/// keeps of recent requests, in memory only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectorSection {
    /// Requests kept, newest first (`gateway.inspector.requests`); 0
    /// captures nothing.
    pub requests: usize,
    /// Bytes the kept requests may hold together
    /// (`gateway.inspector.max_bytes`).
    pub max_bytes: usize,
    /// Keep the first KiB of each body (`gateway.inspector.bodies`).
    pub bodies: bool,
    /// Show credentials rather than redact them
    /// (`gateway.inspector.show_secrets`).
    pub show_secrets: bool,
}

impl Default for InspectorSection {
    fn default() -> Self {
        InspectorSection {
            requests: 100,
            max_bytes: 4 << 20,
            bodies: false,
            show_secrets: false,
        }
    }
}

/// `[gateway.tls]`: serve HTTPS and WSS instead of plain HTTP and WS. Both
/// files or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSection {
    /// PEM certificate chain (`gateway.tls.cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key (`gateway.tls.key`).
    pub key: Option<PathBuf>,
}

impl TlsSection {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// `[gateway.auth]`: how receivers prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSection {
    /// `gateway.auth.mode`.
    pub mode: AuthMode,
    /// Base URL of a DID document resolver (`gateway.auth.resolver_base_url`),
    /// used instead of fetching `did:wba` documents from their own hosts.
    pub resolver_base_url: Option<String>,
    /// Directory of DID documents known in advance
    /// (`gateway.auth.did_documents_dir`), consulted before resolving.
    pub did_documents_dir: Option<PathBuf>,
    /// Largest clock difference, in seconds, tolerated in a signed
    /// authentication header (`gateway.auth.timestamp_window_secs`).
    pub timestamp_window_secs: u64,
    /// The names this gateway accepts as the signed service
    /// (`gateway.auth.service_names`), lowercased. Empty accepts whatever
    /// Host the receiver dialled, so a header signed for one gateway is
    /// good at every gateway reachable under that name.
    pub service_names: Vec<String>,
    /// Most unexpired login nonces one DID may hold
    /// (`gateway.auth.max_nonces_per_did`): a DID logging in more often
    /// within the nonce memory (7 minutes) is refused, others are not.
    pub max_nonces_per_did: usize,
    /// Unexpired login nonces all DIDs together may hold
    /// (`gateway.auth.max_nonces`); logins past it are refused until old
    /// nonces expire. Bounds the nonce store's memory.
    pub max_nonces: usize,
    /// DID document fetches in flight at once, all hosts together
    /// (`gateway.auth.max_document_fetches`); a handshake that would start
    /// one more is refused at once (`document_fetch_refused`).
    pub max_document_fetches: usize,
    /// DID document fetches in flight at once to one host
    /// (`gateway.auth.max_document_fetches_per_host`).
    pub max_document_fetches_per_host: usize,
    /// Seconds a host whose document fetch failed is not asked again
    /// (`gateway.auth.failed_host_memory_secs`; 0: always ask).
    pub failed_host_memory_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: AuthMode::None,
            resolver_base_url: None,
            did_documents_dir: None,
            timestamp_window_secs: 300,
            service_names: Vec::new(),
            max_nonces_per_did: 1_000,
            max_nonces: 100_000,
            max_document_fetches: 64,
            max_document_fetches_per_host: 4,
            failed_host_memory_secs: 10,
        }
    }
}

impl AuthSection {
    /// `timestamp_window_secs` as a duration.
    pub fn timestamp_window(&self) -> Duration {
        Duration::from_secs(self.timestamp_window_secs)
    }
}

/// Default of `gateway.caller_auth.did_header`.
pub const DEFAULT_CALLER_DID_HEADER: &str = "x-anpx-caller-did";

/// Default of `gateway.caller_auth.token_lifetime_secs`: an hour, as the
/// reference SDK's verifier.
pub const DEFAULT_CALLER_TOKEN_LIFETIME_SECS: u64 = 3600;

/// `[gateway.caller_auth]`: routes whose callers must prove a DID with a
/// DID-WBA `Authorization` header (or a bearer token the gateway issued
/// for one). Off while `services` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerAuthSection {
    /// Service URLs (`host/prefix`) whose callers must authenticate
    /// (`gateway.caller_auth.services`); empty turns it off.
    pub services: Vec<ServiceUrl>,
    /// PEM PKCS#8 Ed25519 private key the access tokens are signed with
    /// (`gateway.caller_auth.token_key`); required when `services` is set.
    pub token_key: Option<PathBuf>,
    /// Seconds an access token is good for
    /// (`gateway.caller_auth.token_lifetime_secs`).
    pub token_lifetime_secs: u64,
    /// The request header the verified DID is forwarded to the agent in
    /// (`gateway.caller_auth.did_header`), lower-case. Any header of that
    /// name a caller sends is removed on every route.
    pub did_header: String,
}

impl Default for CallerAuthSection {
    fn default() -> Self {
        CallerAuthSection {
            services: Vec::new(),
            token_key: None,
            token_lifetime_secs: DEFAULT_CALLER_TOKEN_LIFETIME_SECS,
            did_header: DEFAULT_CALLER_DID_HEADER.to_owned(),
        }
    }
}

impl CallerAuthSection {
    /// Whether any route requires caller authentication.
    pub fn enabled(&self) -> bool {
        !self.services.is_empty()
    }

    /// `token_lifetime_secs` as a duration.
    pub fn token_lifetime(&self) -> Duration {
        Duration::from_secs(self.token_lifetime_secs)
    }
}

/// `[gateway.registry]`: the service registry database, which replaces the
/// static table when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySection {
    /// `sqlite:`, `mysql://` or `postgres://` URL of the registry database
    /// (`gateway.registry.url`); `None` uses the static table.
    pub url: Option<String>,
    /// Seconds a DID's grants, once read, are reused before the registry is
    /// read again (`gateway.registry.refresh_secs`).
    pub refresh_secs: u64,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            url: None,
            refresh_secs: 60,
        }
    }
}

impl RegistrySection {
    /// `refresh_secs` as a duration.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_secs)
    }
}

/// `[gateway.rate_limit]`: token-bucket limits on public requests, per
/// client address and per route; unset rates are off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSection {
    /// Requests a second per client address (`gateway.rate_limit.ip_per_sec`).
    pub ip_per_sec: Option<u32>,
    /// Burst per client address (`gateway.rate_limit.ip_burst`); unset:
    /// one second's worth.
    pub ip_burst: Option<u32>,
    /// Requests a second per route (`gateway.rate_limit.route_per_sec`).
    pub route_per_sec: Option<u32>,
    /// Burst per route (`gateway.rate_limit.route_burst`); unset: one
    /// second's worth.
    pub route_burst: Option<u32>,
    /// Client addresses, and routes, whose buckets are kept
    /// (`gateway.rate_limit.max_tracked`).
    pub max_tracked: usize,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection {
            ip_per_sec: None,
            ip_burst: None,
            route_per_sec: None,
            route_burst: None,
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

/// `[gateway.cors]`: cross-origin answers for chosen origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSection {
    /// Origins allowed (`gateway.cors.origins`); empty is off.
    pub origins: Vec<String>,
    /// Seconds browsers may cache a preflight answer
    /// (`gateway.cors.max_age_secs`).
    pub max_age_secs: u64,
}

impl Default for CorsSection {
    fn default() -> Self {
        CorsSection {
            origins: Vec::new(),
            max_age_secs: 600,
        }
    }
}

/// `[gateway.routes]`: the static table of which DID may serve which
/// services. Used when receivers authenticate; without authentication
/// receivers declare their own services and the table is not needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutesSection {
    /// `[[gateway.routes.grant]]` entries, in file order.
    pub grant: Vec<Grant>,
}

/// One `[[gateway.routes.grant]]`: the services a DID may serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The receiver's DID (`did:wba:...`).
    pub did: String,
    /// Service URLs (`host/prefix`) it may register.
    pub services: Vec<ServiceUrl>,
}

impl Grant {
    /// A grant of `services`, each written `host/prefix` as in the
    /// configuration file.
    ///
    /// ```
    /// use anpx_core::config::Grant;
    ///
    /// let g = Grant::parse("did:wba:agent.example", &["api.example.com/travel"]).unwrap();
    /// assert_eq!(g.services[0].to_string(), "api.example.com/travel");
    /// assert!(Grant::parse("did:wba:agent.example", &["not a url"]).is_err());
    /// ```
    pub fn parse(did: &str, services: &[&str]) -> Result<Grant, crate::route::ServiceUrlError> {
        Ok(Grant {
            did: did.to_owned(),
            services: services
                .iter()
                .map(|u| u.parse())
                .collect::<Result<_, _>>()?,
        })
    }
}

/// `gateway.auth.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Any receiver may connect and serve what it declares (`"none"`).
    #[default]
    None,
    /// Receivers authenticate with DID-WBA signatures (`"did-wba"`).
    DidWba,
}

impl AuthMode {
    /// Every mode, in the order the help text lists them.
    pub const ALL: [AuthMode; 2] = [AuthMode::None, AuthMode::DidWba];

    /// The spelling in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::DidWba => "did-wba",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `gateway.log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`"text"`).
    #[default]
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

impl LogFormat {
    /// Every format, in the order the help text lists them.
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The spelling in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
