//! The service registry on smol: the shared one from
//! [`shell_common::registry`] (the static table, or SQLite, MySQL and
//! PostgreSQL through sqlx), with every call run through `async-compat`.
//!
//! sqlx's drivers do their I/O on tokio, and async-compat keeps one small
//! tokio runtime on its own thread for exactly such futures, so the
//! registry is written once and this shell stays on smol.
//!
//! Without the `sql-registry` feature there is no sqlx and no tokio: the
//! static table is served as it is, and a `gateway.registry.url` is
//! refused.

use std::sync::Arc;

use anpx_core::config::GatewaySection;
use anpx_core::registry::{Registry, RegistryError};

#[cfg(feature = "sql-registry")]
pub use on_tokio::OnTokio;

/// [`shell_common::registry::try_registry_from_config`], callable from smol.
#[cfg(feature = "sql-registry")]
pub fn try_registry_from_config(
    section: &GatewaySection,
) -> Result<Arc<dyn Registry>, RegistryError> {
    let inner = shell_common::registry::try_registry_from_config(section)?;
    Ok(Arc::new(OnTokio(inner)))
}

/// The static `[[gateway.routes.grant]]` table; a `gateway.registry.url`
/// needs the `sql-registry` feature and is refused.
#[cfg(not(feature = "sql-registry"))]
pub fn try_registry_from_config(
    section: &GatewaySection,
) -> Result<Arc<dyn Registry>, RegistryError> {
    use shell_common::integrations::MissingIntegration;
    // Checked here, not left to shell-common: another crate in the same
    // build may switch its SQL backends on, and they would need tokio.
    if section.registry.url.is_some() {
        return Err(RegistryError::backend(
            "gateway.registry.url",
            MissingIntegration::SqlRegistry,
        ));
    }
    Ok(Arc::new(anpx_core::registry::StaticRegistry::from_config(
        section,
    )))
}

#[cfg(feature = "sql-registry")]
mod on_tokio {
    use std::sync::Arc;

    use anpx_core::registry::{Registry, RegistryFuture};
    use anpx_core::ServiceUrl;
    use async_compat::Compat;

    /// A registry whose futures are polled inside async-compat's tokio
    /// context.
    pub struct OnTokio(pub Arc<dyn Registry>);

    impl Registry for OnTokio {
        fn grants_for<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
            Box::pin(Compat::new(self.0.grants_for(did)))
        }

        fn add<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, ()> {
            Box::pin(Compat::new(self.0.add(did, url)))
        }

        fn remove<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, bool> {
            Box::pin(Compat::new(self.0.remove(did, url)))
        }

        fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>> {
            Box::pin(Compat::new(self.0.list()))
        }
    }

    impl std::fmt::Debug for OnTokio {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_tuple("OnTokio").finish_non_exhaustive()
        }
    }
}
