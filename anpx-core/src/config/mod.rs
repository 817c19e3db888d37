//! The `anpx` configuration: one TOML file, overlaid by `ANPX_` environment
//! variables and then by command-line flags.
//!
//! Every option is one entry of [`keys`]: a dotted file key
//! (`gateway.tls.cert`), an environment variable (`ANPX_GATEWAY_TLS_CERT`),
//! a flag of its section's subcommand (`anpx gateway --tls-cert`), a default
//! and a line of help. The file, [`Config::apply_env`] and [`Config::set`]
//! all go through that table and the same parser per key, so a value means
//! the same wherever it comes from, and a refusal always names the key.
//!
//! Like the rest of the crate this module does no I/O: the shells read the
//! file and the environment and pass their contents in.
//!
//! The defaults work on loopback: a gateway on `127.0.0.1:8080` and a
//! receiver dialing `ws://127.0.0.1:8080/ws`.

mod error;
mod file;
mod gateway;
mod keys;
mod overlay;
mod receiver;
mod value;

pub use error::{ConfigError, ValueError};
pub use gateway::{
    AuthMode, AuthSection, CallerAuthSection, ClusterSection, CorsSection, GatewaySection, Grant,
    InspectorSection, LogFormat, RateLimitSection, RegistrySection, RoutesSection, TlsSection,
    DEFAULT_CALLER_DID_HEADER, DEFAULT_CALLER_TOKEN_LIFETIME_SECS,
};
pub use keys::{
    find_env, find_flag, find_key, keys, KeyInfo, CONFIG_FILE_ENV, ENV_PREFIX, LANE_SPIN_ENV,
};
pub use receiver::ReceiverSection;

use value::Input;

/// The whole configuration: both sections, each used by its own
/// subcommand.
///
/// ```
/// use anpx_core::config::Config;
///
/// let file = r#"
///     [gateway]
///     listen = "0.0.0.0:8080"
///     request_timeout_secs = 60
///
///     [receiver]
///     upstream = "http://127.0.0.1:9000"
///     services = ["api.example.com/agents"]
/// "#;
/// let env = [("ANPX_GATEWAY_REQUEST_TIMEOUT_SECS".to_string(), "45".to_string())];
/// let flags = [("receiver.services", "api.example.com/agents,api.example.com/tools")];
/// let config = Config::load(file, env, flags).unwrap();
///
/// assert_eq!(config.gateway.listen.port(), 8080);
/// assert_eq!(config.gateway.request_timeout().as_secs(), 45); // env beats file
/// assert_eq!(config.receiver.services.len(), 2); // flag beats file
/// assert_eq!(config.gateway.core_config().request_timeout.as_secs(), 45);
///
/// // The effective configuration prints as TOML and reads back the same.
/// let printed = config.to_toml_string();
/// assert_eq!(Config::from_toml_str(&printed).unwrap(), config);
///
/// // Refusals name the key.
/// let err = Config::from_toml_str("[gateway]\nrequest_timeout_secs = 0").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "gateway.request_timeout_secs: expected a positive integer, got 0"
/// );
/// let err = Config::from_toml_str("[gateway]\nlistne = \"127.0.0.1:1\"").unwrap_err();
/// assert!(err.to_string().starts_with("unknown key gateway.listne"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: GatewaySection,
    /// `[receiver]`.
    pub receiver: ReceiverSection,
}

impl Config {
    /// Reads a configuration file: defaults overlaid with its keys, checked
    /// as a whole. Unknown keys and bad values are refused, naming the key.
    ///
    /// To overlay environment variables and flags, use [`Config::load`],
    /// which checks across keys only once everything is applied.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        let config = file::parse(toml)?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as a TOML file that [`Config::from_toml_str`]
    /// reads back as the same configuration: every key, each under its
    /// help as a comment, unset ones commented out. For `anpx check-config`.
    pub fn to_toml_string(&self) -> String {
        file::write(self)
    }

    /// Checks every value and the rules between keys: the chunk size within
    /// the frame limit, TLS certificate and key together, the DID document
    /// and its private key together, the reconnect cap no shorter than the
    /// first delay, the WebSocket address apart from the HTTP one.
    ///
    /// [`Config::from_toml_str`] and [`Config::load`] call this; call it
    /// after changing fields or calling [`Config::set`] directly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // The fields are public, so values may not have come through a
        // parser: each goes through its key's parser again.
        let mut scratch = self.clone();
        for info in keys() {
            if let Some(value) = info.render(self) {
                info.apply(&mut scratch, Input::Toml(&value))?;
            }
        }
        self.check_gateway()?;
        self.check_receiver()
    }

    fn check_gateway(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        if g.chunk_size > g.max_frame_bytes {
            return Err(ValueError::Exceeds {
                value: g.chunk_size as u64,
                other: "gateway.max_frame_bytes",
                limit: g.max_frame_bytes as u64,
            }
            .at("gateway.chunk_size"));
        }
        if g.max_buffered_per_receiver_bytes > g.max_buffered_bytes {
            return Err(ValueError::Exceeds {
                value: g.max_buffered_per_receiver_bytes,
                other: "gateway.max_buffered_bytes",
                limit: g.max_buffered_bytes,
            }
            .at("gateway.max_buffered_per_receiver_bytes"));
        }
        if g.auth.max_nonces_per_did > g.auth.max_nonces {
            return Err(ValueError::Exceeds {
                value: g.auth.max_nonces_per_did as u64,
                other: "gateway.auth.max_nonces",
                limit: g.auth.max_nonces as u64,
            }
            .at("gateway.auth.max_nonces_per_did"));
        }
        if g.auth.max_document_fetches_per_host > g.auth.max_document_fetches {
            return Err(ValueError::Exceeds {
                value: g.auth.max_document_fetches_per_host as u64,
                other: "gateway.auth.max_document_fetches",
                limit: g.auth.max_document_fetches as u64,
            }
            .at("gateway.auth.max_document_fetches_per_host"));
        }
        if g.cluster.route_ttl_ms <= g.cluster.announce_interval_ms {
            return Err(ValueError::NotLongerThan {
                other: "gateway.cluster.announce_interval_ms",
                limit: g.cluster.announce_interval_ms,
                value: g.cluster.route_ttl_ms,
            }
            .at("gateway.cluster.route_ttl_ms"));
        }
        if g.caller_auth.enabled() && g.caller_auth.token_key.is_none() {
            return Err(ValueError::RequiredWith {
                other: "gateway.caller_auth.services",
            }
            .at("gateway.caller_auth.token_key"));
        }
        if g.ws_listen == Some(g.listen) {
            return Err(ValueError::SameAs {
                other: "gateway.listen",
            }
            .at("gateway.ws_listen"));
        }
        if let Some(admin) = g.admin_listen.filter(|a| a.port() != 0) {
            if admin == g.listen {
                return Err(ValueError::SameAs {
                    other: "gateway.listen",
                }
                .at("gateway.admin_listen"));
            }
            if g.ws_listen == Some(admin) {
                return Err(ValueError::SameAs {
                    other: "gateway.ws_listen",
                }
                .at("gateway.admin_listen"));
            }
        }
        pair(
            (&g.tls.cert, "gateway.tls.cert"),
            (&g.tls.key, "gateway.tls.key"),
        )
    }

    /// The checks a gateway and a receiver in one process (`anpx both`)
    /// need beyond [`validate`](Config::validate): the receiver's admin
    /// plane on an address none of the gateway's listeners takes.
    pub fn check_both(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        let Some(admin) = self.receiver.admin_listen.filter(|a| a.port() != 0) else {
            return Ok(());
        };
        let taken = [
            (Some(g.listen), "gateway.listen"),
            (g.ws_listen, "gateway.ws_listen"),
            (g.admin_listen, "gateway.admin_listen"),
        ];
        for (addr, key) in taken {
            if addr == Some(admin) {
                return Err(ValueError::SameAs { other: key }.at("receiver.admin_listen"));
            }
        }
        Ok(())
    }

    fn check_receiver(&self) -> Result<(), ConfigError> {
        let r = &self.receiver;
        if r.reconnect_max_delay() < r.reconnect_first_delay() {
            return Err(ValueError::ShorterThan {
                value: r.reconnect_max_delay(),
                other: "receiver.reconnect_first_delay_ms",
                limit: r.reconnect_first_delay(),
            }
            .at("receiver.reconnect_max_delay_secs"));
        }
        pair(
            (&r.did_document, "receiver.did_document"),
            (&r.private_key, "receiver.private_key"),
        )
    }
}

/// Two optional keys that are set together or not at all; the error names
/// the missing one.
fn pair<A, B>(
    a: (&Option<A>, &'static str),
    b: (&Option<B>, &'static str),
) -> Result<(), ConfigError> {
    match (a.0.is_some(), b.0.is_some()) {
        (true, false) => Err(ValueError::RequiredWith { other: a.1 }.at(b.1)),
        (false, true) => Err(ValueError::RequiredWith { other: b.1 }.at(a.1)),
        _ => Ok(()),
    }
}
