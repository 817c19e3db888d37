//! `anpx registry`: add, remove and list which service URLs each DID may
//! serve, in the database at `gateway.registry.url`. Both binaries run it;
//! its futures must be polled inside a tokio runtime (see
//! [`shell_common::registry`]). Without the `sql-registry` feature only `list`
//! of the static table and `reload` work; the database commands say which
//! feature they need.

use std::sync::Arc;

use anpx_core::cli::{RegistryAction, RegistryArgs};
use anpx_core::config::Config;
use anpx_core::registry::{Registry, StaticRegistry};
use anyhow::{bail, Context, Result};

use crate::process::{note, UsageError};

/// Runs `args` against `config`'s registry; `prog` (the binary's name)
/// starts the lines written to stderr.
pub async fn run(prog: &str, args: RegistryArgs, config: &Config) -> Result<()> {
    let url = config.gateway.registry.url.as_deref();
    match args.action {
        RegistryAction::Reload => {
            println!("{}", reload_text(config.gateway.registry.refresh_secs));
            Ok(())
        }
        RegistryAction::List { did } => {
            // Without a database the static table is what a gateway would
            // use, so that is what is listed.
            let registry: Arc<dyn Registry> = match url {
                Some(url) => Arc::new(database(url).await?),
                None => Arc::new(StaticRegistry::from_config(&config.gateway)),
            };
            if url.is_none() && config.gateway.routes.grant.is_empty() {
                return Err(UsageError(
                    "no registry configured: set gateway.registry.url (--registry-url, \
                     ANPX_GATEWAY_REGISTRY_URL) for a database, or [[gateway.routes.grant]] \
                     in the config file for a static table"
                        .into(),
                )
                .into());
            }
            let entries = registry.list().await.context("cannot list the registry")?;
            for (d, service) in entries {
                if did.as_deref().is_none_or(|want| want == d) {
                    println!("{d}\t{service}");
                }
            }
            Ok(())
        }
        RegistryAction::Add(entry) => {
            // Remove takes any DID, so a malformed row can still be
            // withdrawn; add stores only DIDs a receiver can log in as.
            anpx_core::auth::Did::parse(&entry.did)
                .map_err(|e| UsageError(format!("{e} (expected did:wba:HOST[:PATH...])")))?;
            let registry = database(require_url(url)?).await?;
            registry
                .add(&entry.did, &entry.service)
                .await
                .with_context(|| format!("cannot add {} for {}", entry.service, entry.did))?;
            let format = config.gateway.log_format;
            note(
                prog,
                format,
                format_args!("{} may serve {}", entry.did, entry.service),
            );
            Ok(())
        }
        RegistryAction::Remove(entry) => {
            let registry = database(require_url(url)?).await?;
            let removed = registry
                .remove(&entry.did, &entry.service)
                .await
                .with_context(|| format!("cannot remove {} from {}", entry.service, entry.did))?;
            if !removed {
                bail!("{} has no registry entry for {}", entry.did, entry.service);
            }
            let format = config.gateway.log_format;
            let done = format_args!("{} no longer serves {}", entry.did, entry.service);
            note(prog, format, done);
            Ok(())
        }
    }
}

fn require_url(url: Option<&str>) -> Result<&str> {
    url.ok_or_else(|| {
        UsageError(
            "no registry database: set gateway.registry.url (--registry-url, \
             ANPX_GATEWAY_REGISTRY_URL); static grants are edited in the config file \
             ([[gateway.routes.grant]])"
                .into(),
        )
        .into()
    })
}

#[cfg(feature = "sql-registry")]
pub(crate) async fn database(url: &str) -> Result<shell_common::registry::SqlRegistry> {
    Ok(shell_common::registry::SqlRegistry::connect(url).await?)
}

#[cfg(not(feature = "sql-registry"))]
pub(crate) async fn database(url: &str) -> Result<StaticRegistry> {
    Err(shell_common::integrations::MissingIntegration::SqlRegistry)
        .with_context(|| format!("cannot open the registry at {url}"))
}

/// A gateway has no reload endpoint: it reads the registry on its own
/// schedule, which is what `anpx registry reload` explains.
fn reload_text(refresh_secs: u64) -> String {
    format!(
        "A running gateway needs no reload: it reads a DID's grants from the registry when \
         that DID's receiver connects, and again every gateway.registry.refresh_secs \
         ({refresh_secs} s) while it stays connected. Changes reach connected receivers \
         within that time, without a reconnect; requests in flight finish."
    )
}
