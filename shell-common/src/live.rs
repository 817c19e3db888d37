//! What a running gateway or receiver lets change without a restart: the
//! handles its options carry ([`GatewayOptions::live`],
//! [`ReceiverOptions::live`]) and its tasks read, so that whoever runs it
//! can change those settings in place. The `anpx` binaries change them on
//! SIGHUP, from the configuration read again (`anpx_cli::reload`).
//!
//! [`GatewayOptions::live`]: crate::GatewayOptions::live
//! [`ReceiverOptions::live`]: crate::ReceiverOptions::live

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::Poll;
use std::time::Duration;

use anpx_core::registry::StaticRegistry;
use anpx_core::ServiceUrl;

use crate::admin::ReceiverMonitor;
use crate::receiver::Dispatch;
use crate::signal::Watch;
use crate::tls::CertSlot;

/// What a running gateway lets SIGHUP change: its grants refresh
/// interval and, when grants come from `[[gateway.routes.grant]]`, that
/// table.
#[derive(Debug)]
pub struct GatewayLive {
    refresh_ms: AtomicU64,
    routes: OnceLock<Arc<StaticRegistry>>,
    tls: OnceLock<Arc<CertSlot>>,
}

impl GatewayLive {
    /// Grants read again every `refresh`; no static table yet.
    pub fn new(refresh: Duration) -> Self {
        GatewayLive {
            refresh_ms: AtomicU64::new(millis(refresh)),
            routes: OnceLock::new(),
            tls: OnceLock::new(),
        }
    }

    /// How often a connected receiver's grants are read again.
    pub fn grants_refresh(&self) -> Duration {
        Duration::from_millis(self.refresh_ms.load(Ordering::Relaxed).max(1))
    }

    /// Sets [`GatewayLive::grants_refresh`]; each connection takes it after
    /// its current wait.
    pub fn set_grants_refresh(&self, every: Duration) {
        self.refresh_ms.store(millis(every), Ordering::Relaxed);
    }

    /// The static grant table the gateway's admission reads, once set up.
    pub fn set_routes(&self, table: Arc<StaticRegistry>) {
        let _ = self.routes.set(table);
    }

    /// The static grant table, when the gateway reads one.
    pub fn routes(&self) -> Option<&Arc<StaticRegistry>> {
        self.routes.get()
    }

    /// The certificate slot the gateway's TLS reads, when TLS is on.
    pub fn set_tls(&self, slot: Arc<CertSlot>) {
        let _ = self.tls.set(slot);
    }

    /// The certificate slot, when TLS is on.
    pub fn tls(&self) -> Option<&Arc<CertSlot>> {
        self.tls.get()
    }
}

/// Builds the receiver's upstream for a `receiver.upstream` URL: each
/// shell supplies its own HTTP client.
pub type MakeUpstream = dyn Fn(&str) -> Result<Arc<dyn Dispatch>, String> + Send + Sync;

/// What a running receiver lets SIGHUP change: the trust its next dials
/// to the gateway use (`receiver.ca_file`, `receiver.pin_sha256`), the
/// upstream its requests go to (`receiver.upstream`) and the services it
/// declares (`receiver.services`).
pub struct ReceiverLive {
    /// `None` until a reload sets it; then `Some(None)` means the
    /// system's roots.
    tls: RwLock<Option<Option<Arc<rustls::ClientConfig>>>>,
    /// The upstream a reload put in place of the one the receiver started
    /// with; `replaced` says whether there is one, so that a receiver
    /// never reloaded takes no lock per request.
    upstream: RwLock<Option<Arc<dyn Dispatch>>>,
    replaced: AtomicBool,
    /// How to build an upstream for a URL; unset for the demo agent.
    make_upstream: OnceLock<Box<MakeUpstream>>,
    /// The services a reload declared (`None`: those the receiver started
    /// with); each connection loop follows it and opens a new connection
    /// when it changes.
    services: Watch<Option<Vec<ServiceUrl>>>,
    /// The admin plane's view, told of a new upstream or services.
    monitor: OnceLock<Arc<ReceiverMonitor>>,
}

impl Default for ReceiverLive {
    fn default() -> Self {
        ReceiverLive {
            tls: RwLock::default(),
            upstream: RwLock::default(),
            replaced: AtomicBool::new(false),
            make_upstream: OnceLock::new(),
            services: Watch::new(None),
            monitor: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for ReceiverLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverLive")
            .field("upstream_replaced", &self.replaced.load(Ordering::Relaxed))
            .field("services", &self.services.get())
            .finish_non_exhaustive()
    }
}

impl ReceiverLive {
    /// The trust a reload set, if any (`Some(None)`: the system's roots).
    pub fn tls(&self) -> Option<Option<Arc<rustls::ClientConfig>>> {
        self.tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the trust of the next dials.
    pub fn set_tls(&self, tls: Option<Arc<rustls::ClientConfig>>) {
        *self.tls.write().unwrap_or_else(PoisonError::into_inner) = Some(tls);
    }

    /// How a reload builds a new upstream; without it (the demo agent) a
    /// changed `receiver.upstream` is not applied.
    pub fn set_upstream_maker(&self, make: Box<MakeUpstream>) {
        let _ = self.make_upstream.set(make);
    }

    /// The admin plane's view to keep up to date.
    pub fn set_monitor(&self, monitor: Arc<ReceiverMonitor>) {
        let _ = self.monitor.set(monitor);
    }

    /// The upstream a reload set, if any: new requests go there.
    pub fn upstream(&self) -> Option<Arc<dyn Dispatch>> {
        if !self.replaced.load(Ordering::Acquire) {
            return None;
        }
        self.upstream
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether [`ReceiverLive::make_upstream`] can build an upstream (it
    /// cannot for the demo agent).
    pub fn has_upstream_maker(&self) -> bool {
        self.make_upstream.get().is_some()
    }

    /// Builds the upstream for `url`: `None` when this receiver has no way
    /// to (it serves the demo agent).
    pub fn make_upstream(&self, url: &str) -> Option<Result<Arc<dyn Dispatch>, String>> {
        self.make_upstream.get().map(|make| make(url))
    }

    /// Sends new requests to `upstream` (at `url`); requests in flight
    /// finish where they started.
    pub fn replace_upstream(&self, url: &str, upstream: Arc<dyn Dispatch>) {
        *self
            .upstream
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(upstream);
        self.replaced.store(true, Ordering::Release);
        if let Some(m) = self.monitor.get() {
            m.set_upstream(url);
        }
    }

    /// The services a reload declared, if any.
    pub fn services(&self) -> Option<Vec<ServiceUrl>> {
        self.services.get()
    }

    /// The declared services and their version, for
    /// [`ReceiverLive::poll_services_changed`].
    pub fn services_versioned(&self) -> (Option<Vec<ServiceUrl>>, u64) {
        self.services.get_versioned()
    }

    /// Ready once the declared services changed after version `seen`.
    pub fn poll_services_changed(&self, cx: &mut std::task::Context<'_>, seen: u64) -> Poll<()> {
        self.services.poll_changed(cx, seen)
    }

    /// Declares `services` on the next connections: every connection loop
    /// opens a new connection with them and drains its old one.
    pub fn set_services(&self, services: Vec<ServiceUrl>) {
        if let Some(m) = self.monitor.get() {
            m.set_services(services.iter().map(ToString::to_string).collect());
        }
        self.services.set(Some(services));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::config::Grant;

    fn grant(did: &str, urls: &[&str]) -> Grant {
        Grant::parse(did, urls).expect("service URLs")
    }

    #[test]
    fn new_services_reach_the_connection_loops() {
        let live = ReceiverLive::default();
        let (services, seen) = live.services_versioned();
        assert_eq!(services, None, "those started with");
        live.set_services(vec!["a.example/x".parse().unwrap()]);
        let (services, now) = live.services_versioned();
        assert_ne!(now, seen);
        assert_eq!(services.unwrap()[0].to_string(), "a.example/x");
        assert!(live.upstream().is_none(), "no upstream replaced yet");
    }

    #[test]
    fn live_settings_change() {
        let live = GatewayLive::new(Duration::from_secs(30));
        assert_eq!(live.grants_refresh(), Duration::from_secs(30));
        live.set_grants_refresh(Duration::from_secs(2));
        assert_eq!(live.grants_refresh(), Duration::from_secs(2));
        assert!(live.routes().is_none());
        let table = Arc::new(StaticRegistry::from_grants(&[grant(
            "did:wba:a",
            &["a.example/"],
        )]));
        live.set_routes(table.clone());
        live.routes()
            .unwrap()
            .replace_grants(&[grant("did:wba:b", &["b.example/"])]);
        assert_eq!(
            table.entries(),
            [("did:wba:b".to_owned(), "b.example/".parse().unwrap())]
        );
    }
}
