//! The in-memory registry built from `[[gateway.routes.grant]]`.

use std::sync::{PoisonError, RwLock};

use crate::config::{GatewaySection, Grant};
use crate::route::ServiceUrl;

use super::{check_add, Registry, RegistryError, RegistryFuture};

/// The static table of `[[gateway.routes.grant]]` as a [`Registry`].
///
/// It lives in memory only: [`add`](Registry::add) and
/// [`remove`](Registry::remove) change this process's table (with the same
/// ownership rule as any backend) and are lost when it exits. The table is
/// taken as the configuration gives it, overlaps between DIDs included:
/// the operator who wrote the file decided them.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// use anpx_core::registry::{Registry, StaticRegistry};
///
/// let reg = StaticRegistry::new([("did:wba:a".to_owned(), "h/x".parse().unwrap())]);
/// let grants = block_on(reg.grants_for("did:wba:a")).unwrap();
/// assert_eq!(grants[0].to_string(), "h/x");
/// assert!(block_on(reg.add("did:wba:b", &"h/x/y".parse().unwrap())).is_err());
/// ```
#[derive(Debug, Default)]
pub struct StaticRegistry {
    entries: RwLock<Vec<(String, ServiceUrl)>>,
}

impl StaticRegistry {
    /// A registry holding `entries`, in that order.
    pub fn new(entries: impl IntoIterator<Item = (String, ServiceUrl)>) -> Self {
        StaticRegistry {
            entries: RwLock::new(entries.into_iter().collect()),
        }
    }

    /// The table of `[[gateway.routes.grant]]` entries, in file order.
    pub fn from_grants(grants: &[Grant]) -> Self {
        StaticRegistry::new(grants.iter().flat_map(|g| {
            g.services
                .iter()
                .map(move |url| (g.did.clone(), url.clone()))
        }))
    }

    /// The static table of a `[gateway]` section.
    pub fn from_config(section: &GatewaySection) -> Self {
        StaticRegistry::from_grants(&section.routes.grant)
    }

    /// Replaces every entry with those of `grants`, as when the
    /// configuration file was read again (SIGHUP). Receivers already
    /// connected get the change at their next grants refresh.
    pub fn replace_grants(&self, grants: &[Grant]) {
        let fresh = StaticRegistry::from_grants(grants).entries();
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// A copy of every entry, synchronously.
    pub fn entries(&self) -> Vec<(String, ServiceUrl)> {
        // The lock guards plain data that no operation leaves half-written,
        // so a panic elsewhere while holding it does not make it unusable.
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn add_now(&self, did: &str, url: &ServiceUrl) -> Result<(), RegistryError> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.iter().any(|(d, u)| d == did && u == url) {
            return Ok(());
        }
        check_add(&entries, did, url)?;
        entries.push((did.to_owned(), url.clone()));
        Ok(())
    }

    fn remove_now(&self, did: &str, url: &ServiceUrl) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let before = entries.len();
        entries.retain(|(d, u)| !(d == did && u == url));
        entries.len() != before
    }
}

impl Registry for StaticRegistry {
    fn grants_for<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
        let grants = self
            .entries()
            .into_iter()
            .filter(|(d, _)| d == did)
            .map(|(_, url)| url)
            .collect();
        Box::pin(async move { Ok(grants) })
    }

    fn add<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, ()> {
        let result = self.add_now(did, url);
        Box::pin(async move { result })
    }

    fn remove<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, bool> {
        let removed = self.remove_now(did, url);
        Box::pin(async move { Ok(removed) })
    }

    fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>> {
        let entries = self.entries();
        Box::pin(async move { Ok(entries) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// The static registry's futures are ready at once, so one poll is all.
    fn now<T>(f: impl Future<Output = T>) -> T {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(f).poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a static registry future was pending"),
        }
    }

    fn u(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    fn grant(did: &str, services: &[&str]) -> Grant {
        Grant {
            did: did.to_owned(),
            services: services.iter().map(|s| u(s)).collect(),
        }
    }

    #[test]
    fn built_from_config_grants_in_file_order() {
        let mut section = GatewaySection::default();
        section.routes.grant = vec![
            grant("did:a", &["h/travel", "h/hotels"]),
            grant("did:b", &["*/tools"]),
        ];
        let reg = StaticRegistry::from_config(&section);
        assert_eq!(
            now(reg.grants_for("did:a")).unwrap(),
            vec![u("h/travel"), u("h/hotels")]
        );
        assert_eq!(now(reg.grants_for("did:b")).unwrap(), vec![u("*/tools")]);
        assert!(now(reg.grants_for("did:c")).unwrap().is_empty());
        assert_eq!(now(reg.list()).unwrap().len(), 3);
    }

    #[test]
    fn add_remove_round_trip_with_the_ownership_rule() {
        let reg = StaticRegistry::from_grants(&[grant("did:a", &["h/x"])]);
        now(reg.add("did:a", &u("h/x/y"))).unwrap();
        now(reg.add("did:a", &u("h/x/y"))).unwrap();
        assert_eq!(
            now(reg.grants_for("did:a")).unwrap(),
            vec![u("h/x"), u("h/x/y")]
        );
        for taken in ["h/x", "h/x/z", "h", "*"] {
            let err = now(reg.add("did:b", &u(taken))).unwrap_err();
            assert!(
                matches!(&err, RegistryError::Conflict { owner, .. } if owner == "did:a"),
                "{taken}: {err}"
            );
        }
        now(reg.add("did:b", &u("g/x"))).unwrap();
        assert!(now(reg.remove("did:a", &u("h/x"))).unwrap());
        assert!(!now(reg.remove("did:a", &u("h/x"))).unwrap());
        assert!(!now(reg.remove("did:b", &u("h/x/y"))).unwrap());
        assert_eq!(
            now(reg.list()).unwrap(),
            vec![
                ("did:a".to_owned(), u("h/x/y")),
                ("did:b".to_owned(), u("g/x"))
            ]
        );
    }

    #[test]
    fn usable_as_a_shared_trait_object() {
        let reg: std::sync::Arc<dyn Registry> = std::sync::Arc::new(StaticRegistry::default());
        assert!(now(reg.list()).unwrap().is_empty());
        assert!(now(reg.add("", &u("h"))).is_err());
    }
}
