//! The service registry: which service URLs each DID may serve.
//!
//! The gateway asks the registry what an authenticated receiver may serve
//! ([`Registry::grants_for`]) and grants the overlap with what the receiver
//! declares ([`crate::handshake::grant`]). Operators add and remove entries
//! with `anpx registry`.
//!
//! This module is pure: the [`Registry`] trait is runtime-agnostic (it
//! returns boxed `Send` futures and names no executor), the rules are plain
//! functions, and the only implementation here, `StaticRegistry` (feature
//! `config`), is the in-memory table from `[[gateway.routes.grant]]`.
//! Database backends live in the runtime shells.
//!
//! # The reference's table
//!
//! The reference keeps one row per (DID, service) in `did_proxy_path(did,
//! proxy_path, created_at, updated_at)`, and a `proxy_path` may end in
//! `/ad.json` (the agent description's address), which it strips to get the
//! route prefix. [`proxy_path_to_service_url`] reads such rows;
//! [`service_url_to_proxy_path`] writes the canonical service URL without
//! the suffix, which the reference reads back unchanged.
//!
//! # Ownership
//!
//! A DID can never take over a service URL registered to another DID:
//! [`check_add`] refuses a URL that [`overlaps`] one owned by someone else.
//! Overlap is deliberately wider than equality: a longer prefix nested
//! under another DID's URL would win the longest-prefix match and so take
//! part of its traffic, and a shorter one above it would take every path the
//! owner does not route itself. The wildcard host overlaps every host,
//! because a host's requests fall back to wildcard routes where the host has
//! no route of its own; pairs that routing would in fact settle in the
//! owner's favour are refused all the same, since which side wins would
//! then depend on routes added later. One DID may nest its own URLs freely.
//!
//! # Rows that are not service URLs
//!
//! A row whose `proxy_path` does not parse is skipped, not fatal:
//! [`parse_rows`] returns it as a [`RegistryError::BadRow`] naming the DID
//! and the text, for the caller to log, and keeps every good row. One bad
//! row written by another tool must not lock a DID (or every DID) out of the
//! services that are registered correctly.
//!
//! # Caching
//!
//! A gateway reads a DID's grants when its receiver connects and keeps them
//! in a [`CachedGrants`] for `gateway.registry.refresh_secs`; a change is
//! picked up by the next connect after that, or at once when the cache is
//! cleared. When the backend fails, the last grants read are still there to
//! fall back on.
//!
//! ```
//! use anpx_core::registry::{check_add, proxy_path_to_service_url, RegistryError};
//!
//! let url = proxy_path_to_service_url("api.agent.com/anpproxy1/ad.json").unwrap();
//! assert_eq!(url.to_string(), "api.agent.com/anpproxy1");
//!
//! let existing = vec![("did:wba:a".to_owned(), url)];
//! let nested = "api.agent.com/anpproxy1/admin".parse().unwrap();
//! assert!(matches!(check_add(&existing, "did:wba:b", &nested), Err(RegistryError::Conflict { .. })));
//! assert!(check_add(&existing, "did:wba:a", &nested).is_ok());
//! ```

mod backend;
mod cache;
mod rules;
#[cfg(feature = "config")]
mod static_table;

pub use backend::BackendKind;
pub use cache::CachedGrants;
pub use rules::{
    check_add, check_entry, overlaps, parse_rows, proxy_path_to_service_url,
    service_url_to_proxy_path, MAX_DID_LEN, MAX_PROXY_PATH_LEN, SUFFIX,
};
#[cfg(feature = "config")]
pub use static_table::StaticRegistry;

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use crate::route::ServiceUrl;
#[cfg(doc)]
use crate::route::ServiceUrlError;

/// What the [`Registry`] methods return: a boxed future, so that the trait
/// is object-safe and any runtime can drive it.
pub type RegistryFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// A store of which service URLs each DID may serve.
///
/// Implementations enforce [`check_add`] in [`add`](Registry::add), and
/// read rows through [`parse_rows`], so every backend follows the same
/// ownership and bad-row rules.
pub trait Registry: Send + Sync {
    /// The service URLs `did` may serve, oldest registration first.
    fn grants_for<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>>;

    /// Lets `did` serve `url`. Adding what the DID already has is a no-op;
    /// a URL that overlaps another DID's is refused with
    /// [`RegistryError::Conflict`].
    fn add<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, ()>;

    /// Withdraws `url` from `did` (every row that reads as `url`, including
    /// the reference's `/ad.json` form). `false` when there was none.
    fn remove<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, bool>;

    /// Every `(did, service URL)` entry.
    fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>>;

    /// [`grants_for`](Registry::grants_for) read from the store itself,
    /// past any cache: what a connected receiver's grants follow.
    fn current_grants<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
        self.grants_for(did)
    }
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The backing store failed (connection, query, schema); `context` says
    /// what was being done.
    #[error("{context}: {message}")]
    Backend {
        /// What was being done, e.g. `reading table did_proxy_path`.
        context: String,
        /// The backend's own error message.
        message: String,
    },
    /// `url` overlaps `owned`, which another DID owns.
    #[error("{url} overlaps {owned}, which is registered to {owner}")]
    Conflict {
        /// The service URL that was to be added.
        url: ServiceUrl,
        /// The DID that owns `owned`.
        owner: String,
        /// The owner's service URL that `url` equals, lies under or covers.
        owned: ServiceUrl,
    },
    /// A stored row whose `proxy_path` is not a service URL.
    #[error("registry row did={did:?} proxy_path={proxy_path:?} is not a service URL: {reason}")]
    BadRow {
        /// The row's DID.
        did: String,
        /// The row's `proxy_path`, as stored.
        proxy_path: String,
        /// Why it cannot be read (a [`ServiceUrlError`]'s message, or the
        /// backend's when a column is NULL or not text).
        reason: String,
    },
    /// A DID or service URL that cannot be stored.
    #[error("cannot register {field} {value:?}: {reason}")]
    Invalid {
        /// `"did"` or `"service URL"`.
        field: &'static str,
        /// The value refused.
        value: String,
        /// Why.
        reason: String,
    },
    /// A registry URL no backend handles.
    #[error("unsupported registry URL {0:?}: expected sqlite:, mysql:// or postgres://")]
    UnsupportedUrl(String),
}

impl RegistryError {
    /// A [`Backend`](RegistryError::Backend) error: `context` says what was
    /// being done, `error` is the backend's own.
    pub fn backend(context: impl Into<String>, error: impl Display) -> Self {
        RegistryError::Backend {
            context: context.into(),
            message: error.to_string(),
        }
    }
}
