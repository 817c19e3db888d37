//! The optional integrations a build may leave out, and the start-up check
//! that refuses a configuration asking for one that is missing.
//!
//! The SQL registry (sqlx) and cluster mode (async-nats) do their I/O on
//! tokio. A shell that does not run on tokio can be built without them
//! (`anpx-smol --no-default-features`), and then a configuration naming a
//! registry database or a NATS server must be refused at start-up with the
//! feature to build with, not quietly served in another mode.

use anpx_core::config::{Config, GatewaySection};

/// Which optional integrations a binary carries: its own cargo features,
/// passed in by the binary (`cfg!(feature = "...")`) because a library's
/// features can be switched on by another crate in the same build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integrations {
    /// The SQL service registry (`gateway.registry.url`), feature
    /// `sql-registry`.
    pub sql_registry: bool,
    /// Cluster mode over NATS (`gateway.cluster.nats_url`), feature
    /// `cluster`.
    pub cluster: bool,
}

/// A configured setting whose integration this build leaves out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissingIntegration {
    /// `gateway.registry.url` without the SQL registry.
    #[error(
        "gateway.registry.url is set, but this build has no SQL registry: \
         build with the `sql-registry` feature, or leave the URL unset to use \
         the [[gateway.routes.grant]] table"
    )]
    SqlRegistry,
    /// `gateway.cluster.nats_url` without cluster mode.
    #[error(
        "gateway.cluster.nats_url is set, but this build has no cluster mode: \
         build with the `cluster` feature, or leave the URL unset to run a \
         single gateway"
    )]
    Cluster,
}

impl Integrations {
    /// Every integration: what a default build carries.
    pub const ALL: Integrations = Integrations {
        sql_registry: true,
        cluster: true,
    };

    /// Whether `section`'s registry (and so the `registry` command) can be
    /// used: a `gateway.registry.url` needs the SQL registry.
    pub fn check_registry(&self, section: &GatewaySection) -> Result<(), MissingIntegration> {
        if section.registry.url.is_some() && !self.sql_registry {
            return Err(MissingIntegration::SqlRegistry);
        }
        Ok(())
    }

    /// Whether a gateway configured by `section` can run: its registry, and
    /// cluster mode when `gateway.cluster.nats_url` is set.
    pub fn check_gateway(&self, section: &GatewaySection) -> Result<(), MissingIntegration> {
        self.check_registry(section)?;
        if section.cluster.nats_url.is_some() && !self.cluster {
            return Err(MissingIntegration::Cluster);
        }
        Ok(())
    }

    /// Whether `config` can be used as a whole: what `check-config` and a
    /// command that runs a gateway ask before anything starts.
    pub fn check(&self, config: &Config) -> Result<(), MissingIntegration> {
        self.check_gateway(&config.gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Integrations = Integrations {
        sql_registry: false,
        cluster: false,
    };

    #[test]
    fn the_embedded_defaults_need_no_integration() {
        assert_eq!(NONE.check(&Config::default()), Ok(()));
    }

    #[test]
    fn a_registry_url_needs_the_sql_registry() {
        let mut config = Config::default();
        config.gateway.registry.url = Some("sqlite::memory:".into());
        assert_eq!(NONE.check(&config), Err(MissingIntegration::SqlRegistry));
        let with = Integrations {
            sql_registry: true,
            ..NONE
        };
        assert_eq!(with.check(&config), Ok(()));
    }

    #[test]
    fn a_nats_url_needs_cluster_mode() {
        let mut config = Config::default();
        config.gateway.cluster.nats_url = Some("nats://127.0.0.1:4222".into());
        assert_eq!(NONE.check(&config), Err(MissingIntegration::Cluster));
        // The registry command does not run a gateway, so it does not care.
        assert_eq!(NONE.check_registry(&config.gateway), Ok(()));
        let with = Integrations {
            cluster: true,
            ..NONE
        };
        assert_eq!(with.check(&config), Ok(()));
        assert_eq!(Integrations::ALL.check(&config), Ok(()));
    }
}
