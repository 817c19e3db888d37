//! How to run a gateway or a receiver, whatever the runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anpx_core::backoff::BackoffConfig;
use anpx_core::config::InspectorSection;
use anpx_core::edge::EdgeLimits;
use anpx_core::policy::PolicyConfig;
use anpx_core::GatewayConfig;
use anpx_core::ReceiverConfig;
use anpx_core::ServiceUrl;
use anpx_core::{Feature, Features};

use crate::admin::ReceiverMonitor;
use crate::admission::{Admission, OpenAdmission};

/// How to run a gateway.
#[derive(Clone)]
pub struct GatewayOptions {
    /// Public HTTP address (also serves receivers at `/ws`).
    pub listen: SocketAddr,
    /// Optional separate address where receivers connect at any path.
    pub ws_listen: Option<SocketAddr>,
    /// The admin plane's address (metrics, stats, dashboard); `None` for
    /// no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// The path the public listener answers itself for health checks;
    /// `None` proxies every path.
    pub health_path: Option<String>,
    /// What the admin plane's request inspector keeps.
    pub inspector: InspectorSection,
    /// The state machine's settings.
    pub core: GatewayConfig,
    /// Who may connect as a receiver.
    pub admission: Arc<dyn Admission>,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_grace: Duration,
    /// TLS for both listeners (`https://`, `wss://`); `None` for plain.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What public clients and unauthenticated receivers may send.
    pub edge: EdgeLimits,
    /// What SIGHUP may change while the gateway runs: how often a
    /// connected receiver's grants are read again from the registry
    /// (`gateway.registry.refresh_secs`) and the static grant table.
    pub live: Arc<crate::live::GatewayLive>,
    /// The optional middlewares (rate limits, CORS, security headers,
    /// blocklist); all off by default.
    pub policy: PolicyConfig,
    /// DID-WBA authentication of callers on the routes that require it
    /// (`[gateway.caller_auth]`); `None` when no route does.
    pub caller_auth: Option<Arc<crate::caller_auth::CallerAuth>>,
    /// The header the verified caller DID is forwarded in; removed from
    /// every request a caller sends, whether or not its route is protected.
    pub caller_did_header: String,
}

impl GatewayOptions {
    /// The gateway machine these options describe: the core's
    /// configuration, the extensions this gateway implements, its
    /// handshake limits, the state of its authentication checks and its
    /// middlewares (with the security headers of
    /// a TLS gateway when `tls` is set). `seed` feeds the request-id
    /// generator.
    pub fn machine(&self, seed: u64) -> anpx_core::Gateway {
        let https = self.tls.is_some();
        let gateway = anpx_core::Gateway::new(self.core.clone(), seed).with_admissions(
            anpx_core::handshake::Admissions::new(supported_features(), &self.edge),
        );
        // The authentication checks keep their state in the machine.
        let gateway = self.admission.prepare(gateway);
        let gateway = match &self.caller_auth {
            Some(callers) => callers.prepare(gateway),
            None => gateway,
        };
        if self.policy.enabled() {
            gateway.with_policy(anpx_core::policy::Policy::new(&self.policy, https))
        } else {
            gateway
        }
    }

    /// Options from the `[gateway]` configuration section, in open mode
    /// (the caller swaps `admission` for DID-WBA).
    pub fn from_config(section: &anpx_core::config::GatewaySection) -> Self {
        GatewayOptions {
            listen: section.listen,
            ws_listen: section.ws_listen,
            admin_listen: section.admin_listen,
            health_path: section.health_path.clone(),
            inspector: shown_on(section.admin_listen, &section.inspector),
            core: section.core_config(),
            admission: Arc::new(OpenAdmission),
            drain_grace: section.drain_grace(),
            tls: None,
            edge: section.edge_limits(),
            live: Arc::new(crate::live::GatewayLive::new(
                section.registry.refresh_interval(),
            )),
            policy: section.policy_config(),
            caller_auth: None,
            caller_did_header: section.caller_auth.did_header.clone(),
        }
    }

    /// Open mode on `listen` with default settings; the admin listener
    /// on an ephemeral loopback port.
    pub fn open(listen: SocketAddr) -> Self {
        GatewayOptions {
            listen,
            ws_listen: None,
            admin_listen: Some(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))),
            health_path: Some("/health".to_owned()),
            inspector: InspectorSection::default(),
            core: GatewayConfig::default(),
            admission: Arc::new(OpenAdmission),
            drain_grace: Duration::from_secs(10),
            tls: None,
            edge: EdgeLimits::default(),
            live: Arc::new(crate::live::GatewayLive::new(
                anpx_core::config::RegistrySection::default().refresh_interval(),
            )),
            policy: PolicyConfig::default(),
            caller_auth: None,
            caller_did_header: anpx_core::config::DEFAULT_CALLER_DID_HEADER.to_owned(),
        }
    }
}

/// Supplies the `Authorization` header for each connection attempt (a
/// DID-WBA header needs a fresh nonce and timestamp every time).
pub trait Credentials: Send + Sync + 'static {
    /// The header value for a gateway whose host name is `service`.
    fn authorization(&self, service: &str) -> Result<String, String>;
}

/// How to run a receiver; `U` is the shell's upstream trait object.
pub struct ReceiverOptions<U: ?Sized> {
    /// `ws://` or `wss://` URL of the gateway's receiver endpoint.
    pub gateway: String,
    /// More gateways to hold a connection to at the same time; each
    /// connection dials and reconnects on its own.
    pub extra_gateways: Vec<String>,
    /// Service URLs to serve; empty = whatever the gateway grants.
    pub services: Vec<ServiceUrl>,
    /// The state machine's settings.
    pub core: ReceiverConfig,
    /// Reconnect schedule.
    pub backoff: BackoffConfig,
    /// Where requests go.
    pub upstream: Arc<U>,
    /// Identity proof for the handshake, if the gateway wants one.
    pub credentials: Option<Arc<dyn Credentials>>,
    /// Trust for a `wss://` gateway; `None` uses the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What SIGHUP may change: the trust new dials use, in place of `tls`
    /// once set.
    pub live: Arc<crate::live::ReceiverLive>,
    /// The admin plane's address (`receiver.admin_listen`); `None`
    /// serves none.
    pub admin_listen: Option<SocketAddr>,
    /// How long a stopping receiver lets requests in flight finish
    /// (`receiver.drain_grace_secs`); zero closes at once.
    pub drain_grace: Duration,
    /// What the admin plane reports: connections, counters and the
    /// inspector, shared by every connection loop.
    pub monitor: Arc<ReceiverMonitor>,
}

// Derived Clone would ask `U: Clone`; only the Arc is cloned.
impl<U: ?Sized> Clone for ReceiverOptions<U> {
    fn clone(&self) -> Self {
        ReceiverOptions {
            gateway: self.gateway.clone(),
            extra_gateways: self.extra_gateways.clone(),
            services: self.services.clone(),
            core: self.core.clone(),
            backoff: self.backoff,
            upstream: self.upstream.clone(),
            credentials: self.credentials.clone(),
            tls: self.tls.clone(),
            live: self.live.clone(),
            admin_listen: self.admin_listen,
            drain_grace: self.drain_grace,
            monitor: self.monitor.clone(),
        }
    }
}

impl<U: ?Sized> ReceiverOptions<U> {
    /// Default settings for a receiver dialing `gateway` (`ws://` or
    /// `wss://`) and serving from `upstream`; set the other fields as needed.
    pub fn new(gateway: impl Into<String>, upstream: Arc<U>) -> Self {
        ReceiverOptions {
            gateway: gateway.into(),
            extra_gateways: Vec::new(),
            services: Vec::new(),
            core: ReceiverConfig::default(),
            backoff: BackoffConfig::default(),
            upstream,
            credentials: None,
            tls: None,
            live: Arc::default(),
            admin_listen: None,
            drain_grace: Duration::from_secs(10),
            // Capture off: a library user turns it on with a monitor of
            // its own.
            monitor: Arc::new(ReceiverMonitor::new(
                Vec::new(),
                InspectorSection {
                    requests: 0,
                    ..InspectorSection::default()
                },
                ReceiverConfig::default().chunk_size,
            )),
        }
    }

    /// Options from the `[receiver]` configuration section, serving from `upstream`.
    pub fn from_config(section: &anpx_core::config::ReceiverSection, upstream: Arc<U>) -> Self {
        let monitor = Arc::new(ReceiverMonitor::new(
            section.services.iter().map(ToString::to_string).collect(),
            shown_on(section.admin_listen, &section.inspector),
            section.chunk_size,
        ));
        let live = crate::live::ReceiverLive::default();
        live.set_monitor(monitor.clone());
        ReceiverOptions {
            gateway: section.gateway.clone(),
            extra_gateways: section.extra_gateways.clone(),
            services: section.services.clone(),
            core: section.core_config(),
            backoff: section.backoff_config(),
            upstream,
            credentials: None,
            tls: None,
            live: Arc::new(live),
            admin_listen: section.admin_listen,
            drain_grace: Duration::from_secs(section.drain_grace_secs),
            monitor,
        }
    }
}

/// What the request inspector captures given the admin plane's address:
/// as configured when there is one, nothing without one. Only the admin
/// plane shows the capture, and it is not started later (SIGHUP does not
/// change `admin_listen`), so without one the copies and locks the
/// capture costs every request (4.5% of `anpx both`'s CPU under load,
/// docs/BENCHMARKS.md) would be for no one.
fn shown_on(admin_listen: Option<SocketAddr>, inspector: &InspectorSection) -> InspectorSection {
    match admin_listen {
        Some(_) => inspector.clone(),
        None => InspectorSection {
            requests: 0,
            ..inspector.clone()
        },
    }
}

/// Where a receiver stands.
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

/// The extensions anpx implements, as a receiver and as a gateway.
pub fn supported_features() -> Features {
    [
        Feature::Streaming,
        Feature::FlowControl,
        Feature::Cancel,
        Feature::WebSocket,
        Feature::Lossless,
        Feature::UpstreamFailure,
        Feature::Drain,
    ]
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::config::{GatewaySection, ReceiverSection};

    #[test]
    fn the_inspector_captures_only_where_an_admin_plane_can_show_it() {
        let mut gateway = GatewaySection {
            admin_listen: None,
            ..GatewaySection::default()
        };
        assert_eq!(GatewayOptions::from_config(&gateway).inspector.requests, 0);
        gateway.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 8081)));
        assert_eq!(
            GatewayOptions::from_config(&gateway).inspector.requests,
            gateway.inspector.requests
        );
        assert!(gateway.inspector.requests > 0);

        let upstream = Arc::new(());
        let mut receiver = ReceiverSection::default();
        assert_eq!(receiver.admin_listen, None);
        let off = ReceiverOptions::from_config(&receiver, upstream.clone());
        assert!(!off.monitor.inspector().enabled());
        receiver.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 8082)));
        let on = ReceiverOptions::from_config(&receiver, upstream);
        assert!(on.monitor.inspector().enabled());
    }
}
