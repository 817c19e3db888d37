//! SIGHUP: the configuration is read again and what can change without a
//! restart is applied in place, with one log line per change.
//!
//! Applied in place: the log level (`gateway.log_level`, or
//! `receiver.log_level` for a receiver alone; not while `RUST_LOG` is set),
//! the static grant table (`[[gateway.routes.grant]]`, when
//! `gateway.registry.url` is unset: connected receivers get the change at
//! their next grants refresh, without reconnecting),
//! `gateway.registry.refresh_secs`, a receiver's trust in the gateway
//! (`receiver.ca_file`, `receiver.pin_sha256`, for its next dials), its
//! upstream (`receiver.upstream`, for new requests), the services it
//! declares (`receiver.services`: the gateway grants at the handshake, so
//! each connection loop opens a new connection declaring them and drains
//! the old one, see [`shell_common::receiver`]), and the gateway's TLS
//! certificate and
//! key (read again from their files, same paths or new ones, for new
//! connections; turning TLS on or off needs a restart). Every other
//! changed key is logged as
//! `needs restart` and not applied. A configuration that does not load is
//! refused with a logged error; the running one stays.
//!
//! What changed is decided by [`diff`], a pure function over two
//! configurations; [`Reloader`] reads the file, calls it and applies the
//! changes through the running gateway's and receiver's handles
//! ([`shell_common::live`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anpx_core::config::{keys, Config, Grant, CONFIG_FILE_ENV};
use shell_common::live::{GatewayLive, ReceiverLive};
use shell_common::receiver::Dispatch;

use crate::process::{check_log_filter, log_filter_from_env, set_log_filter};

/// Which sections a process runs, so which keys a reload looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `anpx gateway`.
    Gateway,
    /// `anpx receiver`.
    Receiver,
    /// `anpx both` and `anpx demo`: both sections, the gateway's log level.
    Both,
}

impl Scope {
    fn covers(self, section: &str) -> bool {
        match self {
            Scope::Gateway => section == "gateway",
            Scope::Receiver => section == "receiver",
            Scope::Both => true,
        }
    }

    /// The key whose value is the process's log level.
    pub fn log_level_key(self) -> &'static str {
        match self {
            Scope::Receiver => "receiver.log_level",
            Scope::Gateway | Scope::Both => "gateway.log_level",
        }
    }

    fn log_level(self, config: &Config) -> &str {
        match self {
            Scope::Receiver => &config.receiver.log_level,
            Scope::Gateway | Scope::Both => &config.gateway.log_level,
        }
    }
}

/// How a changed key is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// The process's log level.
    LogLevel,
    /// The static grant table: service URLs added and removed, each as
    /// `host/path (did)`.
    Routes {
        /// Granted now, not before.
        added: Vec<String>,
        /// Granted before, not now.
        removed: Vec<String>,
    },
    /// `gateway.registry.refresh_secs`.
    GrantsRefresh,
    /// `receiver.ca_file` or `receiver.pin_sha256`: the trust of new
    /// dials to the gateway.
    Trust,
    /// `receiver.upstream`: new requests go to the new URL, requests in
    /// flight finish where they started.
    Upstream,
    /// `receiver.services`: a new connection to each gateway declares the
    /// new set (the gateway grants at the handshake); once it is up, the
    /// old one drains.
    Services {
        /// Declared now, not before.
        added: Vec<String>,
        /// Declared before, not now.
        removed: Vec<String>,
    },
    /// The path of the gateway's certificate or key, TLS on before and
    /// after: read with the files on every reload (logged there).
    Tls,
    /// Not applied: only a restart takes it.
    NeedsRestart,
    /// Not used by this process (another section's log level, or the
    /// static table while a registry database is configured).
    Unused,
}

/// One key whose value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The dotted key.
    pub key: &'static str,
    /// Its running value as text (`unset` when unset).
    pub old: String,
    /// Its new value as text.
    pub new: String,
    /// What a reload does with it.
    pub apply: Apply,
}

impl Change {
    /// The log line for this change, e.g. `reloaded: log level info ->
    /// debug`, `routes: +a.example (did:wba:x) -b.example/x (did:wba:y)`
    /// or `needs restart: gateway.listen 127.0.0.1:8080 -> 0.0.0.0:8080
    /// (not applied)`; `None` for an unused key.
    pub fn line(&self) -> Option<String> {
        Some(match &self.apply {
            Apply::LogLevel => format!("reloaded: log level {} -> {}", self.old, self.new),
            Apply::Routes { added, removed } => {
                let mut parts: Vec<String> = added.iter().map(|u| format!("+{u}")).collect();
                parts.extend(removed.iter().map(|u| format!("-{u}")));
                format!("routes: {}", parts.join(" "))
            }
            Apply::GrantsRefresh => {
                format!("reloaded: {} {} -> {}", self.key, self.old, self.new)
            }
            Apply::Trust => format!(
                "reloaded: {} {} -> {} (new connections to the gateway)",
                self.key, self.old, self.new
            ),
            Apply::Upstream => format!(
                "reloaded: {} {} -> {} (new requests; those in flight finish)",
                self.key, self.old, self.new
            ),
            Apply::Services { added, removed } => {
                let mut parts: Vec<String> = added.iter().map(|u| format!("+{u}")).collect();
                parts.extend(removed.iter().map(|u| format!("-{u}")));
                if parts.is_empty() {
                    parts.push(format!("{} -> {}", self.old, self.new));
                }
                format!("services: {}", parts.join(" "))
            }
            Apply::NeedsRestart => format!(
                "needs restart: {} {} -> {} (not applied)",
                self.key, self.old, self.new
            ),
            Apply::Unused | Apply::Tls => return None,
        })
    }
}

/// Every key of the sections `scope` runs whose value differs between
/// `old` and `new`, in key-table order, each with how a reload applies it.
/// Pure: reads nothing but its arguments.
///
/// ```
/// use anpx_core::config::Config;
/// use anpx_cli::reload::{diff, Apply, Scope};
///
/// let old = Config::default();
/// let mut new = old.clone();
/// new.gateway.log_level = "debug".into();
/// new.gateway.listen = "0.0.0.0:9000".parse().unwrap();
/// new.receiver.upstream = Some("http://127.0.0.1:1".into());
/// let changes = diff(&old, &new, Scope::Gateway);
/// let keys: Vec<_> = changes.iter().map(|c| (c.key, c.apply.clone())).collect();
/// assert_eq!(
///     keys,
///     [("gateway.listen", Apply::NeedsRestart), ("gateway.log_level", Apply::LogLevel)]
/// );
/// assert_eq!(changes[1].line().unwrap(), "reloaded: log level info -> debug");
/// ```
pub fn diff(old: &Config, new: &Config, scope: Scope) -> Vec<Change> {
    let text = |v: Option<String>| v.unwrap_or_else(|| "unset".to_owned());
    keys()
        .iter()
        .filter(|k| scope.covers(k.section()))
        .filter_map(|k| {
            let (before, after) = (k.value_text(old), k.value_text(new));
            if before == after {
                return None;
            }
            let apply = match k.key {
                key if key == scope.log_level_key() => Apply::LogLevel,
                "gateway.log_level" | "receiver.log_level" => Apply::Unused,
                "gateway.routes.grant"
                    if old.gateway.registry.url.is_none() && new.gateway.registry.url.is_none() =>
                {
                    let (added, removed) =
                        route_changes(&old.gateway.routes.grant, &new.gateway.routes.grant);
                    Apply::Routes { added, removed }
                }
                "gateway.routes.grant" if new.gateway.registry.url.is_some() => Apply::Unused,
                "gateway.registry.refresh_secs" => Apply::GrantsRefresh,
                "receiver.ca_file" | "receiver.pin_sha256" => Apply::Trust,
                // Without an upstream a receiver has nothing to serve.
                "receiver.upstream" if new.receiver.upstream.is_some() => Apply::Upstream,
                "receiver.services" => {
                    let (added, removed) =
                        list_changes(&old.receiver.services, &new.receiver.services);
                    Apply::Services { added, removed }
                }
                "gateway.tls.cert" | "gateway.tls.key"
                    if old.gateway.tls.enabled() && new.gateway.tls.enabled() =>
                {
                    Apply::Tls
                }
                _ => Apply::NeedsRestart,
            };
            Some(Change {
                key: k.key,
                old: text(before),
                new: text(after),
                apply,
            })
        })
        .collect()
}

/// The grants in `new` and not in `old`, and those in `old` and not in
/// `new`, each as `host/path (did)`, in table order.
///
/// ```
/// use anpx_core::config::Grant;
/// use anpx_cli::reload::route_changes;
///
/// let g = |did: &str, urls: &[&str]| Grant {
///     did: did.into(),
///     services: urls.iter().map(|u| u.parse().unwrap()).collect(),
/// };
/// let (added, removed) = route_changes(
///     &[g("did:wba:a", &["a.example/x", "a.example/y"])],
///     &[g("did:wba:a", &["a.example/y"]), g("did:wba:b", &["b.example/"])],
/// );
/// assert_eq!(added, ["b.example (did:wba:b)"]);
/// assert_eq!(removed, ["a.example/x (did:wba:a)"]);
/// ```
pub fn route_changes(old: &[Grant], new: &[Grant]) -> (Vec<String>, Vec<String>) {
    let pairs = |grants: &[Grant]| -> Vec<(String, String)> {
        grants
            .iter()
            .flat_map(|g| {
                g.services
                    .iter()
                    .map(move |u| (g.did.clone(), u.to_string()))
            })
            .collect()
    };
    let (old, new) = (pairs(old), pairs(new));
    let only = |a: &[(String, String)], b: &[(String, String)]| {
        a.iter()
            .filter(|p| !b.contains(p))
            .map(|(did, url)| format!("{url} ({did})"))
            .collect()
    };
    (only(&new, &old), only(&old, &new))
}

/// The entries of `new` not in `old`, and those of `old` not in `new`.
fn list_changes<T: PartialEq + ToString>(old: &[T], new: &[T]) -> (Vec<String>, Vec<String>) {
    let only = |a: &[T], b: &[T]| {
        a.iter()
            .filter(|x| !b.contains(x))
            .map(ToString::to_string)
            .collect()
    };
    (only(new, old), only(old, new))
}

/// Where the configuration comes from, to read it again: the `--config`
/// file, the environment and the subcommand's flags (which still win).
#[derive(Debug, Clone)]
pub struct Source {
    /// The `--config` file, if any.
    pub file: Option<PathBuf>,
    /// The subcommand's flags as `(key, value)` pairs.
    pub flags: Vec<(String, String)>,
}

impl Source {
    /// Where `cli`'s configuration comes from: its `--config` file and the
    /// chosen subcommand's flags.
    pub fn of(cli: &anpx_core::cli::Cli) -> Self {
        Source {
            file: cli.config.clone(),
            flags: cli.flag_pairs(),
        }
    }

    /// The configuration as the process would load it now.
    pub fn load(&self) -> Result<Config, crate::process::LoadError> {
        use crate::process::LoadError;
        let text = match &self.file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?,
            None => String::new(),
        };
        let env = std::env::vars().filter(|(k, _)| k != CONFIG_FILE_ENV);
        Config::load(&text, env, self.flags.clone()).map_err(|source| LoadError::Invalid {
            path: self.file.clone(),
            source,
        })
    }
}

/// The reloader for the subcommand of `cli`, which runs `config`: `None`
/// for the subcommands that do not keep running.
pub fn for_command(cli: &anpx_core::cli::Cli, config: &Config) -> Option<Arc<Reloader>> {
    use anpx_core::cli::Command;
    let scope = match cli.command {
        Command::Gateway(_) => Scope::Gateway,
        Command::Receiver(_) => Scope::Receiver,
        Command::Both(_) | Command::Demo(_) => Scope::Both,
        _ => return None,
    };
    Some(Arc::new(Reloader::new(
        Source::of(cli),
        scope,
        config.clone(),
    )))
}

/// What a process does on SIGHUP: reload with `reloader`, or, for a
/// command without one, say that nothing is reloaded.
pub fn on_hangup(reloader: Option<&Reloader>) {
    match reloader {
        Some(r) => {
            r.reload();
        }
        None => log_hangup(),
    }
}

/// What a process without a [`Reloader`] logs on SIGHUP: the signal is
/// caught so that it never ends the process (its default action), and
/// nothing is reloaded.
pub fn log_hangup() {
    tracing::warn!("SIGHUP received: this command reloads nothing");
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or a value is invalid.
    #[error(transparent)]
    Load(crate::process::LoadError),
    /// `receiver.ca_file` or `receiver.pin_sha256` cannot be used.
    #[error("receiver.ca_file / receiver.pin_sha256: {0}")]
    Trust(shell_common::tls::TlsError),
    /// `receiver.upstream` cannot be used.
    #[error("receiver.upstream: {0}")]
    Upstream(String),
    /// The log level does not parse as log directives.
    #[error("{key}: {source}")]
    LogLevel {
        /// The key.
        key: &'static str,
        /// Why.
        source: crate::process::LogFilterError,
    },
}

/// Reads the configuration again on SIGHUP and applies what can change.
#[derive(Debug)]
pub struct Reloader {
    source: Source,
    scope: Scope,
    running: Mutex<Config>,
    gateway: OnceLock<Arc<GatewayLive>>,
    receiver: OnceLock<Arc<ReceiverLive>>,
}

impl Reloader {
    /// A reloader for a process running `config` in `scope`. Applies the
    /// configured log level now, unless `RUST_LOG` decides it.
    pub fn new(source: Source, scope: Scope, config: Config) -> Self {
        if !log_filter_from_env() {
            if let Err(e) = set_log_filter(scope.log_level(&config)) {
                tracing::warn!(key = scope.log_level_key(), error = %e, "log level not applied");
            }
        }
        Reloader {
            source,
            scope,
            running: Mutex::new(config),
            gateway: OnceLock::new(),
            receiver: OnceLock::new(),
        }
    }

    /// The running gateway's changeable settings, once it is set up.
    pub fn set_gateway(&self, live: Arc<GatewayLive>) {
        let _ = self.gateway.set(live);
    }

    /// The running receiver's changeable settings, once it is set up.
    pub fn set_receiver(&self, live: Arc<ReceiverLive>) {
        let _ = self.receiver.set(live);
    }

    /// Reads the configuration again and applies what changed; logs one
    /// line per change. Returns the changes, or `None` when the new
    /// configuration was refused (and the running one kept).
    pub fn reload(&self) -> Option<Vec<Change>> {
        let loaded = self.source.load().map_err(ReloadError::Load);
        let new = match loaded.and_then(|c| self.check(c)) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused, the running configuration stays");
                return None;
            }
        };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let changes = diff(&running, &new, self.scope);
        let trust = if changes.iter().any(|c| c.apply == Apply::Trust) {
            match Self::receiver_trust(&new) {
                Ok(trust) => Some(trust),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload refused, the running configuration stays");
                    return None;
                }
            }
        } else {
            None
        };
        // A new upstream is built before anything is applied: one that
        // cannot be refuses the whole reload.
        let upstream = match self.new_upstream(&new, &changes) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused, the running configuration stays");
                return None;
            }
        };
        if let (Some(trust), Some(live)) = (trust, self.receiver.get()) {
            live.set_tls(trust);
        }
        if let (Some((url, upstream)), Some(live)) = (upstream, self.receiver.get()) {
            live.replace_upstream(&url, upstream);
        }
        let tls = self.reload_certificate(&new, &changes);
        if changes.is_empty() && !tls {
            tracing::info!("SIGHUP: configuration read again, nothing changed");
        }
        for change in &changes {
            self.apply(change, &new);
        }
        // What a restart would take is kept as it runs, so the next
        // reload still reports it.
        let mut kept = new;
        for change in changes.iter().filter(|c| c.apply == Apply::NeedsRestart) {
            if let Some(info) = anpx_core::config::find_key(change.key) {
                if let Some(value) = info.value_text(&running) {
                    let _ = kept.set(info.key, &value);
                }
            }
        }
        *running = kept;
        Some(changes)
    }

    /// Reads the gateway's certificate and key again (their paths may be
    /// the same, their contents renewed) unless a restart is needed to
    /// turn TLS on or off; returns whether anything was logged.
    fn reload_certificate(&self, new: &Config, changes: &[Change]) -> bool {
        let tls = &new.gateway.tls;
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            return false;
        };
        let Some(slot) = self.gateway.get().and_then(|g| g.tls()) else {
            return false;
        };
        if changes
            .iter()
            .any(|c| c.key.starts_with("gateway.tls.") && c.apply == Apply::NeedsRestart)
        {
            return false;
        }
        match slot.load(cert, key) {
            Ok(true) => {
                tracing::info!(
                    "reloaded: TLS certificate {} (new connections; open ones keep theirs)",
                    cert.display()
                );
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded: the running one stays");
                true
            }
        }
    }

    /// Refuses a configuration whose log level the filter cannot take, or
    /// whose changed receiver trust cannot be built.
    fn check(&self, config: Config) -> Result<Config, ReloadError> {
        check_log_filter(self.scope.log_level(&config)).map_err(|source| {
            ReloadError::LogLevel {
                key: self.scope.log_level_key(),
                source,
            }
        })?;
        Ok(config)
    }

    /// The upstream for a changed `receiver.upstream`, built by the
    /// receiver's shell; `None` when it did not change or this receiver
    /// serves the demo agent.
    #[allow(clippy::type_complexity)]
    fn new_upstream(
        &self,
        new: &Config,
        changes: &[Change],
    ) -> Result<Option<(String, Arc<dyn Dispatch>)>, ReloadError> {
        let (Some(url), Some(live)) = (&new.receiver.upstream, self.receiver.get()) else {
            return Ok(None);
        };
        if !changes.iter().any(|c| c.apply == Apply::Upstream) {
            return Ok(None);
        }
        match live.make_upstream(url) {
            None => Ok(None),
            Some(Ok(upstream)) => Ok(Some((url.clone(), upstream))),
            Some(Err(e)) => Err(ReloadError::Upstream(e)),
        }
    }

    /// The trust `config` gives the receiver's dials.
    fn receiver_trust(config: &Config) -> Result<Option<Arc<rustls::ClientConfig>>, ReloadError> {
        let r = &config.receiver;
        if r.ca_file.is_none() && r.pin_sha256.is_empty() {
            return Ok(None);
        }
        shell_common::tls::receiver_client_config(r.ca_file.as_deref(), &r.pin_sha256)
            .map(Some)
            .map_err(ReloadError::Trust)
    }

    fn apply(&self, change: &Change, new: &Config) {
        let Some(line) = change.line() else { return };
        match &change.apply {
            Apply::LogLevel if log_filter_from_env() => {
                tracing::warn!("{line}: not applied, RUST_LOG is set and decides what is logged");
            }
            Apply::LogLevel => {
                // Logged before the switch, so it shows at the old level.
                tracing::info!("{line}");
                if let Err(e) = set_log_filter(self.scope.log_level(new)) {
                    tracing::error!(error = %e, "log level not applied");
                }
            }
            Apply::Routes { .. } => match self.gateway.get().and_then(|g| g.routes()) {
                Some(table) => {
                    table.replace_grants(&new.gateway.routes.grant);
                    tracing::info!("{line}");
                }
                None => tracing::info!("{line} (no static grant table in use: nothing to apply)"),
            },
            Apply::GrantsRefresh => {
                if let Some(g) = self.gateway.get() {
                    g.set_grants_refresh(new.gateway.registry.refresh_interval());
                }
                tracing::info!("{line}");
            }
            Apply::Trust => tracing::info!("{line}"),
            Apply::Upstream => match self.receiver.get() {
                Some(live) if live.has_upstream_maker() => tracing::info!("{line}"),
                _ => tracing::warn!("{line}: not applied, the built-in demo agent serves (--demo)"),
            },
            Apply::Services { .. } => match self.receiver.get() {
                Some(live) => {
                    tracing::info!(
                        "{line} (a new connection to the gateway declares them; \
                         the running one drains once it is up)"
                    );
                    live.set_services(new.receiver.services.clone());
                }
                None => tracing::warn!("{line}: no receiver runs here, nothing to apply"),
            },
            Apply::NeedsRestart => tracing::warn!("{line}"),
            Apply::Unused | Apply::Tls => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(did: &str, urls: &[&str]) -> Grant {
        Grant::parse(did, urls).expect("service URLs")
    }

    #[test]
    fn same_configuration_no_change() {
        let c = Config::default();
        for scope in [Scope::Gateway, Scope::Receiver, Scope::Both] {
            assert!(diff(&c, &c.clone(), scope).is_empty());
        }
    }

    #[test]
    fn each_scope_sees_its_own_sections() {
        let old = Config::default();
        let mut new = old.clone();
        new.receiver.log_level = "debug".into();
        new.receiver.pin_sha256 = vec!["00".repeat(32)];
        new.gateway.request_timeout_secs = 99;
        let keys = |scope| {
            diff(&old, &new, scope)
                .into_iter()
                .map(|c| (c.key, c.apply))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(Scope::Receiver),
            [
                ("receiver.pin_sha256", Apply::Trust),
                ("receiver.log_level", Apply::LogLevel)
            ]
        );
        assert_eq!(
            keys(Scope::Gateway),
            [("gateway.request_timeout_secs", Apply::NeedsRestart)]
        );
        // `both` logs at the gateway's level: the receiver's is unused.
        assert_eq!(
            keys(Scope::Both),
            [
                ("gateway.request_timeout_secs", Apply::NeedsRestart),
                ("receiver.pin_sha256", Apply::Trust),
                ("receiver.log_level", Apply::Unused)
            ]
        );
    }

    #[test]
    fn routes_and_refresh_apply_listen_needs_restart() {
        let mut old = Config::default();
        old.gateway.routes.grant = vec![grant("did:wba:a", &["a.example/", "b.example/x"])];
        let mut new = old.clone();
        new.gateway.routes.grant = vec![
            grant("did:wba:a", &["a.example/"]),
            grant("did:wba:c", &["c.example/"]),
        ];
        new.gateway.registry.refresh_secs = 1;
        new.gateway.listen = "127.0.0.1:9".parse().unwrap();
        let changes = diff(&old, &new, Scope::Gateway);
        let lines: Vec<_> = changes.iter().filter_map(Change::line).collect();
        // In key-table order: listen, then the registry, then the routes.
        assert_eq!(
            lines,
            [
                "needs restart: gateway.listen 127.0.0.1:8080 -> 127.0.0.1:9 (not applied)",
                "reloaded: gateway.registry.refresh_secs 60 -> 1",
                "routes: +c.example (did:wba:c) -b.example/x (did:wba:a)",
            ]
        );
    }

    #[test]
    fn grants_with_a_registry_database_are_unused() {
        let mut old = Config::default();
        old.gateway.registry.url = Some("sqlite://x.db".into());
        let mut new = old.clone();
        new.gateway.routes.grant = vec![grant("did:wba:a", &["a.example/"])];
        let changes = diff(&old, &new, Scope::Gateway);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].apply, Apply::Unused);
        assert_eq!(changes[0].line(), None);
        // Setting the database itself needs a restart.
        let mut new = Config::default();
        new.gateway.registry.url = Some("sqlite://y.db".into());
        let changes = diff(&Config::default(), &new, Scope::Gateway);
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.key, c.apply.clone()))
                .collect::<Vec<_>>(),
            [("gateway.registry.url", Apply::NeedsRestart)]
        );
        assert_eq!(changes[0].old, "unset");
    }

    #[test]
    fn certificate_paths_reload_while_tls_stays_on() {
        let mut old = Config::default();
        old.gateway.tls.cert = Some("/a/cert.pem".into());
        old.gateway.tls.key = Some("/a/key.pem".into());
        let mut new = old.clone();
        new.gateway.tls.cert = Some("/b/cert.pem".into());
        let changes = diff(&old, &new, Scope::Gateway);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].key, &changes[0].apply),
            ("gateway.tls.cert", &Apply::Tls)
        );
        assert_eq!(changes[0].line(), None, "logged when the files are read");
        // Turning TLS off (or on) needs a restart.
        let changes = diff(&old, &Config::default(), Scope::Gateway);
        assert!(
            changes.iter().all(|c| c.apply == Apply::NeedsRestart),
            "{changes:?}"
        );
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn receiver_services_and_upstream_apply() {
        let mut old = Config::default();
        old.receiver.upstream = Some("http://127.0.0.1:1".into());
        old.receiver.services = vec!["a.example/x".parse().unwrap()];
        let mut new = old.clone();
        new.receiver.upstream = Some("http://127.0.0.1:2".into());
        new.receiver.services = vec!["b.example/".parse().unwrap()];
        let changes = diff(&old, &new, Scope::Receiver);
        let lines: Vec<_> = changes.iter().filter_map(Change::line).collect();
        assert_eq!(
            lines,
            [
                "reloaded: receiver.upstream http://127.0.0.1:1 -> http://127.0.0.1:2 \
                 (new requests; those in flight finish)",
                "services: +b.example -a.example/x",
            ]
        );
        // The gateway alone runs no receiver.
        assert!(diff(&old, &new, Scope::Gateway).is_empty());
        // An upstream taken away leaves nothing to serve: a restart.
        let mut gone = old.clone();
        gone.receiver.upstream = None;
        let changes = diff(&old, &gone, Scope::Both);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].apply, Apply::NeedsRestart);
    }
}
