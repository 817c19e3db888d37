//! The service registry on smol: the shared one from
//! [`shell_common::registry`] (the static table, or SQLite, MySQL and
//! PostgreSQL through sqlx), with every call run through `async-compat`.
//!
//! sqlx's drivers do their I/O on tokio, and async-compat keeps one small
//! tokio runtime on its own thread for exactly such futures, so the
//! registry is written once and this shell stays on smol.

use std::sync::Arc;

use anpx_core::config::GatewaySection;
use anpx_core::registry::{Registry, RegistryError, RegistryFuture};
use anpx_core::ServiceUrl;
use async_compat::Compat;

/// [`shell_common::registry::try_registry_from_config`], callable from smol.
pub fn try_registry_from_config(
    section: &GatewaySection,
) -> Result<Arc<dyn Registry>, RegistryError> {
    let inner = shell_common::registry::try_registry_from_config(section)?;
    Ok(Arc::new(OnTokio(inner)))
}

/// A registry whose futures are polled inside async-compat's tokio context.
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
