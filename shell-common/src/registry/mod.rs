//! The service registry both shells use: SQL backends (`SqlRegistry`),
//! the choice between them and the static table ([`registry_from_config`]),
//! and the cache a gateway reads grants through ([`GrantCache`]).
//!
//! sqlx does its I/O on tokio, so `SqlRegistry`'s futures must be polled
//! inside a tokio runtime: the tokio shell polls them directly, the smol
//! shell wraps them in `async_compat::Compat`. Only with the
//! `sql-registry` feature; without it a `gateway.registry.url` is refused
//! (see [`crate::integrations`]) and only the static table is served.
//!
//! The rules (ownership, `/ad.json`, bad rows) are
//! [`anpx_core::registry`]'s; this module only does the I/O.

#[cfg(feature = "sql-registry")]
mod sql;

#[cfg(feature = "sql-registry")]
pub use sql::{SqlRegistry, DEFAULT_TABLE};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anpx_core::config::GatewaySection;
use anpx_core::registry::{CachedGrants, Registry, RegistryError, RegistryFuture, StaticRegistry};
use anpx_core::ServiceUrl;

/// The registry a gateway configured by `section` uses: the database at
/// `gateway.registry.url` when set, read through a [`GrantCache`] that
/// reuses a DID's grants for `gateway.registry.refresh_secs`; otherwise the
/// static `[[gateway.routes.grant]]` table.
///
/// Never fails: the database is connected on first use (and again after a
/// failure), and a URL that cannot be used at all is logged now and
/// reported by every call, so a gateway still starts and serves in open
/// mode. [`try_registry_from_config`] reports that URL instead.
pub fn registry_from_config(section: &GatewaySection) -> Arc<dyn Registry> {
    try_registry_from_config(section).unwrap_or_else(|e| {
        tracing::error!(error = %e, "gateway.registry.url cannot be used; every registry read will fail");
        Arc::new(Unusable(e))
    })
}

/// [`registry_from_config`], failing on a `gateway.registry.url` that no
/// backend can use.
pub fn try_registry_from_config(
    section: &GatewaySection,
) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(match &section.registry.url {
        Some(url) => Arc::new(GrantCache::new(
            database(url)?,
            section.registry.refresh_interval(),
        )),
        None => Arc::new(StaticRegistry::from_config(section)),
    })
}

/// The database at `url`, connected on first use.
#[cfg(feature = "sql-registry")]
fn database(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(SqlRegistry::new(url, DEFAULT_TABLE)?))
}

/// Without the SQL backends a database URL cannot be served.
#[cfg(not(feature = "sql-registry"))]
fn database(url: &str) -> Result<Arc<dyn Registry>, RegistryError> {
    Err(RegistryError::backend(
        format!("opening {url}"),
        crate::integrations::MissingIntegration::SqlRegistry,
    ))
}

/// A registry that could not be set up: every call says why.
struct Unusable(RegistryError);

impl Registry for Unusable {
    fn grants_for<'a>(&'a self, _did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
        Box::pin(async { Err(self.0.clone()) })
    }

    fn add<'a>(&'a self, _did: &'a str, _url: &'a ServiceUrl) -> RegistryFuture<'a, ()> {
        Box::pin(async { Err(self.0.clone()) })
    }

    fn remove<'a>(&'a self, _did: &'a str, _url: &'a ServiceUrl) -> RegistryFuture<'a, bool> {
        Box::pin(async { Err(self.0.clone()) })
    }

    fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>> {
        Box::pin(async { Err(self.0.clone()) })
    }
}

/// How many TTLs the last grants read stay available as a fallback while
/// the registry cannot be read.
const FALLBACK_TTLS: u32 = 10;

/// A registry read through a [`CachedGrants`]: what a gateway asks when a
/// receiver connects.
///
/// A DID's grants are read on its receiver's connect and reused for `ttl`
/// (`gateway.registry.refresh_secs`); a change in the registry reaches the
/// next connect after that, or the very next one after [`reload`]. When the
/// registry cannot be read, the grants last read (up to ten TTLs old) are
/// used and the failure is logged, so a database restart does not lock out
/// every receiver; a DID never read before gets the error.
///
/// [`reload`]: GrantCache::reload
pub struct GrantCache {
    registry: Arc<dyn Registry>,
    cache: Mutex<CachedGrants>,
}

impl GrantCache {
    /// Reads `registry`, reusing what was read for `ttl`.
    pub fn new(registry: Arc<dyn Registry>, ttl: Duration) -> Self {
        GrantCache {
            registry,
            cache: Mutex::new(CachedGrants::new(ttl)),
        }
    }

    /// The registry behind the cache.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// What `did` may serve.
    pub async fn grants_for(&self, did: &str) -> Result<Vec<ServiceUrl>, RegistryError> {
        let now = Instant::now();
        if let Some(grants) = self.lock().fresh(did, now) {
            return Ok(grants.to_vec());
        }
        let read = self.registry.grants_for(did).await;
        let now = Instant::now();
        let mut cache = self.lock();
        match read {
            Ok(grants) => {
                let max_age = cache.ttl().saturating_mul(FALLBACK_TTLS);
                cache.evict_older_than(now, max_age);
                cache.store(did, grants.clone(), now);
                Ok(grants)
            }
            Err(e) => match cache.last_known(did) {
                Some(grants) => {
                    tracing::warn!(%did, error = %e, "registry unreadable; using the grants read before");
                    Ok(grants.to_vec())
                }
                None => Err(e),
            },
        }
    }

    /// Makes every DID's next connect read the registry again; what was
    /// read stays as the fallback.
    pub fn reload(&self) {
        self.lock().mark_stale();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedGrants> {
        // The cache is rebuilt from the registry anyway; a panic elsewhere
        // must not take the gateway's admissions down with it.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The cache is itself a registry, so it goes wherever one does: reads are
/// cached, writes go through and make this process re-read that DID.
impl Registry for GrantCache {
    fn grants_for<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
        Box::pin(GrantCache::grants_for(self, did))
    }

    fn add<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, ()> {
        Box::pin(async move {
            let added = self.registry.add(did, url).await;
            self.lock().invalidate(did);
            added
        })
    }

    fn remove<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, bool> {
        Box::pin(async move {
            let removed = self.registry.remove(did, url).await;
            self.lock().invalidate(did);
            removed
        })
    }

    fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>> {
        self.registry.list()
    }

    /// Reads the registry itself and keeps what it read for the next
    /// connect; a failure is the caller's to handle (a connected receiver
    /// keeps the grants it has).
    fn current_grants<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
        Box::pin(async move {
            let grants = self.registry.grants_for(did).await?;
            self.lock().store(did, grants.clone(), Instant::now());
            Ok(grants)
        })
    }
}

impl std::fmt::Debug for GrantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantCache").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A registry whose reads are counted and can be made to fail.
    #[derive(Default)]
    struct Flaky {
        inner: StaticRegistry,
        reads: AtomicUsize,
        down: AtomicBool,
    }

    impl Registry for Flaky {
        fn grants_for<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(async { Err(RegistryError::backend("reading", "down")) });
            }
            self.inner.grants_for(did)
        }
        fn add<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, ()> {
            self.inner.add(did, url)
        }
        fn remove<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, bool> {
            self.inner.remove(did, url)
        }
        fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>> {
            self.inner.list()
        }
    }

    fn u(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn reads_once_per_ttl_reloads_on_demand_and_falls_back_when_down() {
        let flaky = Arc::new(Flaky::default());
        flaky.add("did:a", &u("h/x")).await.unwrap();
        let cache = GrantCache::new(flaky.clone(), Duration::from_secs(3600));
        assert_eq!(cache.grants_for("did:a").await.unwrap(), [u("h/x")]);
        flaky.add("did:a", &u("h/y")).await.unwrap();
        // Within the TTL the change is not seen, and nothing is read.
        assert_eq!(cache.grants_for("did:a").await.unwrap(), [u("h/x")]);
        assert_eq!(flaky.reads.load(Ordering::SeqCst), 1);
        cache.reload();
        assert_eq!(
            cache.grants_for("did:a").await.unwrap(),
            [u("h/x"), u("h/y")]
        );
        flaky.down.store(true, Ordering::SeqCst);
        cache.reload();
        assert_eq!(
            cache.grants_for("did:a").await.unwrap(),
            [u("h/x"), u("h/y")]
        );
        assert!(cache.grants_for("did:b").await.is_err());
    }

    #[tokio::test]
    async fn writes_through_the_cache_are_seen_at_once() {
        let cache = GrantCache::new(
            Arc::new(StaticRegistry::default()),
            Duration::from_secs(3600),
        );
        assert!(Registry::grants_for(&cache, "did:a")
            .await
            .unwrap()
            .is_empty());
        Registry::add(&cache, "did:a", &u("h/x")).await.unwrap();
        assert_eq!(
            Registry::grants_for(&cache, "did:a").await.unwrap(),
            [u("h/x")]
        );
        assert!(Registry::remove(&cache, "did:a", &u("h/x")).await.unwrap());
        assert!(Registry::grants_for(&cache, "did:a")
            .await
            .unwrap()
            .is_empty());
        assert!(Registry::list(&cache).await.unwrap().is_empty());
    }

    #[cfg(feature = "sql-registry")]
    #[tokio::test]
    async fn the_static_table_without_a_url_and_the_database_with_one() {
        let mut section = GatewaySection::default();
        section.routes.grant = vec![anpx_core::config::Grant {
            did: "did:a".into(),
            services: vec![u("h/x")],
        }];
        let table = registry_from_config(&section);
        assert_eq!(table.grants_for("did:a").await.unwrap(), [u("h/x")]);

        section.registry.url = Some("sqlite::memory:".into());
        let db = registry_from_config(&section);
        assert!(db.grants_for("did:a").await.unwrap().is_empty());
        db.add("did:a", &u("h/y")).await.unwrap();
        assert_eq!(db.grants_for("did:a").await.unwrap(), [u("h/y")]);

        section.registry.url = Some("https://registry.example/grants".into());
        assert!(try_registry_from_config(&section).is_err());
        let unusable = registry_from_config(&section);
        let err = unusable.grants_for("did:a").await.unwrap_err();
        assert!(matches!(err, RegistryError::UnsupportedUrl(_)), "{err}");
    }
}
