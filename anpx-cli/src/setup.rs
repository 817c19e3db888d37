//! The options a configuration asks for, built the same way for every
//! shell: the gateway's TLS and DID-WBA admission, the receiver's
//! credentials and trust. A shell passes in only what is its own: whether
//! its server speaks HTTP/2, its document fetcher and its registry.

use std::sync::Arc;
use std::time::Duration;

use anpx_core::auth::{CallerPolicy, TokenKey, VerifierConfig};
use anpx_core::config::{AuthMode, Config};
use anpx_core::handshake::FetchLimits;
use anpx_core::registry::{Registry, StaticRegistry};
use shell_common::caller_auth::CallerAuth;
use shell_common::did_credentials::{CredentialsError, DidCredentials};
use shell_common::did_wba::{DidWbaAdmission, DocumentIo, DocumentResolver, DocumentSources};
use shell_common::receiver::Dispatch;
use shell_common::tls::TlsError;
use shell_common::{GatewayOptions, ReceiverOptions};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A receiver with nothing to serve.
    #[error(
        "no upstream: set receiver.upstream (--upstream, ANPX_RECEIVER_UPSTREAM) or use --demo"
    )]
    NoUpstream,
    /// The gateway's certificate or key.
    #[error("gateway.tls: {0}")]
    GatewayTls(TlsError),
    /// The roots for fetching DID documents.
    #[error("loading the system's TLS roots for DID documents: {0}")]
    DocumentRoots(TlsError),
    /// The registry cannot be set up.
    #[error("gateway.registry: {0}")]
    Registry(String),
    /// The key callers' access tokens are signed with.
    #[error("gateway.caller_auth.token_key: {0}")]
    TokenKey(String),
    /// What the receiver trusts for `wss://`.
    #[error("receiver.ca_file / receiver.pin_sha256: {0}")]
    ReceiverCa(TlsError),
    /// The receiver's DID identity.
    #[error("receiver.did_document / receiver.private_key: {0}")]
    Credentials(CredentialsError),
}

/// The gateway's options from `config`: listeners and limits, TLS when
/// `gateway.tls` is set (offering HTTP/2 when `http2`), and DID-WBA
/// admission when `gateway.auth.mode = did-wba`, with documents fetched
/// through `io` and grants from `registry()` (only called in that mode),
/// and the callers' check when `gateway.caller_auth.services` is set.
pub fn gateway_options(
    config: &Config,
    http2: bool,
    io: Arc<dyn DocumentIo>,
    registry: impl FnOnce() -> Result<Arc<dyn Registry>, SetupError>,
) -> Result<GatewayOptions, SetupError> {
    let mut options = GatewayOptions::from_config(&config.gateway);
    let auth = &config.gateway.auth;
    let callers = &config.gateway.caller_auth;
    let verifier = VerifierConfig {
        max_age: auth.timestamp_window(),
        resolver_base: auth.resolver_base_url.clone(),
        service_names: auth.service_names.clone(),
        max_nonces_per_did: auth.max_nonces_per_did,
        max_nonces: auth.max_nonces,
        ..VerifierConfig::default()
    };
    let fetches = FetchLimits {
        max_in_flight: auth.max_document_fetches,
        per_host: auth.max_document_fetches_per_host,
        failed_host_memory: Duration::from_secs(auth.failed_host_memory_secs),
    };
    // One resolver for receiver logins and callers: one cache, one pool of
    // fetches.
    let documents = if auth.mode == AuthMode::DidWba || callers.enabled() {
        let sources = DocumentSources {
            directory: auth.did_documents_dir.clone(),
            tls: shell_common::tls::client_config(None).map_err(SetupError::DocumentRoots)?,
        };
        Some(Arc::new(
            DocumentResolver::new(sources, io, verifier.max_document_bytes)
                .with_fetch_limits(fetches),
        ))
    } else {
        None
    };
    if let (AuthMode::DidWba, Some(documents)) = (auth.mode, &documents) {
        // The static table is kept where SIGHUP can replace it.
        let registry: Arc<dyn Registry> = match &config.gateway.registry.url {
            None => {
                let table = Arc::new(StaticRegistry::from_config(&config.gateway));
                options.live.set_routes(table.clone());
                table
            }
            Some(_) => registry()?,
        };
        options.admission = Arc::new(DidWbaAdmission::with_resolver(
            verifier.clone(),
            documents.clone(),
            registry,
        ));
    }
    if let (true, Some(documents)) = (callers.enabled(), documents) {
        let key = callers
            .token_key
            .as_deref()
            .ok_or_else(|| {
                SetupError::TokenKey("required with gateway.caller_auth.services".into())
            })
            .and_then(|path| {
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| SetupError::TokenKey(format!("{}: {e}", path.display())))?;
                TokenKey::from_pem(&pem)
                    .map_err(|e| SetupError::TokenKey(format!("{}: {e}", path.display())))
            })?;
        let policy = CallerPolicy::new(
            &callers.services,
            key,
            callers.token_lifetime(),
            &callers.did_header,
        );
        options.caller_auth = Some(Arc::new(CallerAuth::new(policy, verifier, documents)));
    }
    let tls = &config.gateway.tls;
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        let (config, slot) = shell_common::tls::server_config_swappable(cert, key, http2)
            .map_err(SetupError::GatewayTls)?;
        options.tls = Some(config);
        options.live.set_tls(slot);
    }
    Ok(options)
}

/// What a receiver serves: the built-in demo agent, or the service at a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamChoice<'a> {
    /// The demo agent (`--demo`).
    Demo,
    /// `receiver.upstream`.
    Url(&'a str),
}

/// The upstream a receiver started with `demo` serves: the demo agent when
/// asked for, otherwise `receiver.upstream`, which must then be set. Each
/// shell builds its own client for the choice.
pub fn upstream_choice(config: &Config, demo: bool) -> Result<UpstreamChoice<'_>, SetupError> {
    if demo {
        return Ok(UpstreamChoice::Demo);
    }
    match &config.receiver.upstream {
        Some(url) => Ok(UpstreamChoice::Url(url)),
        None => Err(SetupError::NoUpstream),
    }
}

/// How a shell makes the upstreams its receiver serves from; `U` is its
/// upstream trait object.
pub struct Upstreams<U: ?Sized> {
    /// The built-in demo agent (`--demo`).
    pub demo: fn() -> Arc<U>,
    /// The service at `url` (`receiver.upstream`).
    pub at: fn(&str) -> anyhow::Result<Arc<U>>,
}

/// A running receiver's options from `config`, for `anpx receiver` and
/// `anpx both` of every shell: the demo agent when `demo`, else
/// `receiver.upstream` made by `upstreams` (which a SIGHUP that changes it
/// uses again), handed to `reloader` when there is one.
pub fn running_receiver<U: Dispatch + ?Sized>(
    config: &Config,
    demo: bool,
    upstreams: Upstreams<U>,
    reloader: Option<&crate::reload::Reloader>,
) -> anyhow::Result<ReceiverOptions<U>> {
    let options = receiver_options(config, upstream(config, demo, &upstreams)?)?;
    if !demo {
        let at = upstreams.at;
        options.live.set_upstream_maker(Box::new(move |url| {
            at(url)
                .map(shell_common::receiver::dispatcher)
                .map_err(|e| format!("{e:#}"))
        }));
    }
    if let Some(r) = reloader {
        r.set_receiver(options.live.clone());
    }
    Ok(options)
}

/// The upstream of `config` (the demo agent when `demo`), a new one
/// with its own connections.
fn upstream<U: ?Sized>(
    config: &Config,
    demo: bool,
    upstreams: &Upstreams<U>,
) -> anyhow::Result<Arc<U>> {
    use anyhow::Context;
    Ok(match upstream_choice(config, demo)? {
        UpstreamChoice::Demo => (upstreams.demo)(),
        UpstreamChoice::Url(url) => (upstreams.at)(url).context("receiver.upstream")?,
    })
}

/// The options of one more receiver beside the one `options` runs, for
/// another lane of `anpx both` ([`shell_common::lanes`]): the same
/// gateway, identity and settings, and what a SIGHUP changes shared with
/// it, but an upstream of its own, so that its connections to the service
/// are made and served on its lane; no admin plane of its own (the first
/// receiver's reports every connection).
pub fn lane_receiver<U: ?Sized>(
    config: &Config,
    demo: bool,
    upstreams: Upstreams<U>,
    options: &ReceiverOptions<U>,
) -> anyhow::Result<ReceiverOptions<U>> {
    Ok(ReceiverOptions {
        upstream: upstream(config, demo, &upstreams)?,
        admin_listen: None,
        ..options.clone()
    })
}

/// The receiver's options from `config`, serving `upstream`: DID-WBA
/// signing when `receiver.did_document` and `receiver.private_key` are set,
/// and `receiver.ca_file` / `receiver.pin_sha256` trusted for `wss://`.
pub fn receiver_options<U: ?Sized>(
    config: &Config,
    upstream: Arc<U>,
) -> Result<ReceiverOptions<U>, SetupError> {
    let mut options = ReceiverOptions::from_config(&config.receiver, upstream);
    if let (Some(doc), Some(key)) = (&config.receiver.did_document, &config.receiver.private_key) {
        let creds = DidCredentials::load(doc, key).map_err(SetupError::Credentials)?;
        tracing::info!(
            did = creds.did(),
            "signing the gateway handshake with DID-WBA"
        );
        options.monitor.set_identity(creds.did());
        options.credentials = Some(Arc::new(creds));
    }
    if let Some(upstream) = &config.receiver.upstream {
        options.monitor.set_upstream(upstream);
    }
    let receiver = &config.receiver;
    if receiver.ca_file.is_some() || !receiver.pin_sha256.is_empty() {
        options.tls = Some(
            shell_common::tls::receiver_client_config(
                receiver.ca_file.as_deref(),
                &receiver.pin_sha256,
            )
            .map_err(SetupError::ReceiverCa)?,
        );
    }
    Ok(options)
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    #[test]
    fn a_receiver_serves_the_demo_or_its_configured_upstream() {
        let mut config = Config::default();
        assert!(matches!(
            upstream_choice(&config, false),
            Err(SetupError::NoUpstream)
        ));
        assert_eq!(
            upstream_choice(&config, true).unwrap(),
            UpstreamChoice::Demo
        );
        config.receiver.upstream = Some("http://127.0.0.1:9000".into());
        assert_eq!(
            upstream_choice(&config, false).unwrap(),
            UpstreamChoice::Url("http://127.0.0.1:9000")
        );
        assert_eq!(
            upstream_choice(&config, true).unwrap(),
            UpstreamChoice::Demo
        );
    }
}
