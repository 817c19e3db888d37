//! The `anpx` command line, shared by every runtime shell: each shell
//! parses this definition and only supplies what runs.
//!
//! ```
//! use anpx_core::cli::Cli;
//! use clap::Parser;
//! let cli = Cli::try_parse_from(["anpx", "receiver", "--gateway", "ws://127.0.0.1:8080/ws", "--service", "a.com/x", "--service", "b.com"]).unwrap();
//! let config = cli.load_config("", std::iter::empty()).unwrap();
//! assert_eq!(config.receiver.services.len(), 2);
//! ```

mod flags;

pub use flags::{
    BothReceiverKeys, GatewayKeys, ReceiverKeys, Section, SectionFlags, BOTH_RECEIVER_KEYS,
};

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, CONFIG_FILE_ENV};
use crate::frame::DEFAULT_MAX_FRAME_LEN;

/// What `anpx --help` says the product is.
pub const ABOUT: &str = "anpx: a reverse HTTP tunnel that gives agents on private networks a \
public address. A gateway takes public requests and passes them over WebSocket (ANPX v1, \
compatible with ANP Proxy) to receivers that dialled out from beside each agent's local HTTP \
service.";

/// The exit codes, shown under `anpx --help`.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 runtime failure (a receiver that stopped, \
a port in use, a registry that does not answer, a frame that does not decode); 2 usage or \
configuration error (a bad flag, key or value, a file the configuration names that cannot be \
read, a malformed DID, no registry configured).";

/// `anpx`: a reverse HTTP tunnel that gives agents on private networks a
/// public address (ANPX v1 over WebSocket, compatible with ANP Proxy).
#[derive(Debug, Parser)]
#[command(name = "anpx", version, about = ABOUT, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// TOML configuration file (see docs/CONFIGURATION.md).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = CONFIG_FILE_ENV,
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    /// Log line format on stderr, for every subcommand (gateway.log_format)
    /// [env: ANPX_GATEWAY_LOG_FORMAT].
    #[arg(long, global = true, value_name = "text|json")]
    pub log_format: Option<String>,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway: the public HTTP front end receivers connect to.
    Gateway(GatewayArgs),
    /// Run a receiver: dial a gateway and serve its requests from a local service.
    Receiver(ReceiverArgs),
    /// Run a gateway and a receiver in one process.
    Both(BothArgs),
    /// Gateway + receiver + a built-in echo agent on loopback; prints a curl to try.
    Demo(DemoArgs),
    /// Print the effective configuration (file, environment, defaults) and
    /// check that the files it names can be read.
    CheckConfig(CheckConfigArgs),
    /// Decode ANPX frames from stdin and print one JSON object per frame.
    ///
    /// Input is hex, one frame per line (blank lines and lines starting
    /// with `#` are skipped), or raw concatenated frames with `--binary`.
    /// Exits 0 when every frame decoded, 1 when any did not or stdin
    /// could not be read.
    Decode(DecodeArgs),
    /// Manage the service registry: which service URLs each DID may serve.
    Registry(RegistryArgs),
    /// DID-WBA identities for receivers.
    Did(DidArgs),
}

/// Options of `anpx check-config`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// Also check that receiver.upstream, the registry database at
    /// gateway.registry.url, the NATS server at gateway.cluster.nats_url and
    /// the gateways of receiver.gateway (when not its default) and
    /// receiver.extra_gateways answer (each one that is set; 5 s each).
    #[arg(long)]
    pub online: bool,
}

/// Options of `anpx did`.
#[derive(Debug, Clone, Args)]
pub struct DidArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DidAction,
}

/// `anpx did` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DidAction {
    /// Make a new identity: writes did.json and its private key (PKCS#8 PEM),
    /// as the reference SDK lays them out. Publish did.json at the printed
    /// URL (or put it in the gateway's did_documents_dir), keep the key.
    New(DidNewArgs),
}

/// Options of `anpx did new`.
#[derive(Debug, Clone, Args)]
pub struct DidNewArgs {
    /// Host that will serve the document, e.g. `agents.example.com` or `localhost:8800`.
    #[arg(long)]
    pub host: String,
    /// Path segments of the DID, e.g. `agents/travel` (none: the host's .well-known document).
    #[arg(long)]
    pub path: Option<String>,
    /// Folder to write `did.json` and `key-1_private.pem` into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Key type.
    #[arg(long, value_enum, default_value = "secp256k1")]
    pub key_type: DidKeyType,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Key types `anpx did new` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DidKeyType {
    /// ECDSA on secp256k1, the reference SDK's default.
    Secp256k1,
    /// Ed25519.
    Ed25519,
}

/// Options of `anpx gateway`.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Gateway settings.
    #[command(flatten)]
    pub flags: SectionFlags<GatewayKeys>,
}

/// Options of `anpx receiver`.
#[derive(Debug, Clone, Args)]
pub struct ReceiverArgs {
    /// Serve requests with the built-in echo agent instead of an upstream.
    #[arg(long)]
    pub demo: bool,
    /// Receiver settings.
    #[command(flatten)]
    pub flags: SectionFlags<ReceiverKeys>,
}

/// Options of `anpx both`.
#[derive(Debug, Clone, Args)]
pub struct BothArgs {
    /// Serve requests with the built-in echo agent instead of an upstream.
    #[arg(long)]
    pub demo: bool,
    /// The receiver's settings, spelled as on `anpx receiver`.
    #[command(flatten)]
    pub receiver: SectionFlags<BothReceiverKeys>,
    /// Gateway settings.
    #[command(flatten)]
    pub flags: SectionFlags<GatewayKeys>,
}

/// Options of `anpx demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Public address of the demo gateway.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

/// Options of `anpx decode`.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Read raw binary frames back to back, split by each header's
    /// total_len, instead of hex lines.
    #[arg(long)]
    pub binary: bool,

    /// Also reassemble chunked messages and print a `message` line when one
    /// completes (or a `reassembly_error` line when the chunks are wrong).
    #[arg(long)]
    pub reassemble: bool,

    /// Largest frame accepted, header included, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME_LEN)]
    pub max_frame_len: usize,
}

/// Options of `anpx registry`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Registry database: sqlite:PATH, mysql://... or postgres://...
    /// (gateway.registry.url) [env: ANPX_GATEWAY_REGISTRY_URL].
    #[arg(long, value_name = "URL", global = true)]
    pub registry_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub action: RegistryAction,
}

/// The `anpx registry` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum RegistryAction {
    /// Let a DID serve a service URL; refused if it overlaps another DID's.
    Add(RegistryEntryArgs),
    /// Withdraw a service URL from a DID.
    Remove(RegistryEntryArgs),
    /// Print the entries, one `DID<TAB>SERVICE_URL` per line.
    List {
        /// Only this DID's entries.
        #[arg(long, value_name = "DID")]
        did: Option<String>,
    },
    /// Tell how a running gateway picks up changes.
    Reload,
}

/// One registry entry on the command line.
#[derive(Debug, Clone, Args)]
pub struct RegistryEntryArgs {
    /// The receiver's DID, e.g. did:wba:example.com:agents:a1.
    #[arg(long, value_name = "DID")]
    pub did: String,
    /// The service URL (host/prefix); a trailing /ad.json is dropped, as the
    /// reference reads its rows.
    #[arg(long, value_name = "SERVICE_URL", value_parser = crate::registry::proxy_path_to_service_url)]
    pub service: crate::route::ServiceUrl,
}

impl Cli {
    /// The effective configuration: defaults < `file_text` (the `--config`
    /// file's contents, empty when none) < `env` (`ANPX_*` variables) <
    /// the subcommand's flags. Reading the file and the environment is the
    /// caller's job.
    pub fn load_config(
        &self,
        file_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::load(file_text, env, self.flag_pairs())
    }

    /// The flags of the chosen subcommand as `(key, value)` pairs.
    pub fn flag_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.command_pairs();
        if let Some(f) = &self.log_format {
            pairs.push(("gateway.log_format".into(), f.clone()));
        }
        pairs
    }

    fn command_pairs(&self) -> Vec<(String, String)> {
        match &self.command {
            Command::Gateway(a) => a.flags.pairs.clone(),
            Command::Receiver(a) => a.flags.pairs.clone(),
            Command::Both(a) => [a.flags.pairs.clone(), a.receiver.pairs.clone()].concat(),
            Command::Demo(a) => vec![("gateway.listen".into(), a.listen.clone())],
            Command::Registry(a) => a
                .registry_url
                .iter()
                .map(|u| ("gateway.registry.url".to_owned(), u.clone()))
                .collect(),
            Command::CheckConfig(_) | Command::Decode(_) | Command::Did(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gateway_flags_become_config_keys() {
        let cli = Cli::try_parse_from([
            "anpx",
            "gateway",
            "--listen",
            "127.0.0.1:9999",
            "--request-timeout-secs",
            "5",
        ])
        .unwrap();
        let config = cli.load_config("", std::iter::empty()).unwrap();
        assert_eq!(config.gateway.listen.port(), 9999);
        assert_eq!(config.gateway.request_timeout_secs, 5);
    }

    #[test]
    fn flags_beat_env_which_beats_the_file() {
        let cli = Cli::try_parse_from(["anpx", "gateway", "--request-timeout-secs", "7"]).unwrap();
        let file = "[gateway]\nrequest_timeout_secs = 3\nping_interval_secs = 4\nmax_inflight_per_receiver = 9\n";
        let env = vec![
            (
                "ANPX_GATEWAY_REQUEST_TIMEOUT_SECS".to_owned(),
                "5".to_owned(),
            ),
            ("ANPX_GATEWAY_PING_INTERVAL_SECS".to_owned(), "6".to_owned()),
        ];
        let config = cli.load_config(file, env).unwrap();
        assert_eq!(
            (
                config.gateway.request_timeout_secs,
                config.gateway.ping_interval_secs,
                config.gateway.max_inflight_per_receiver
            ),
            (7, 6, 9)
        );
    }

    #[test]
    fn a_bad_flag_value_names_the_key() {
        let cli = Cli::try_parse_from(["anpx", "gateway", "--request-timeout-secs", "0"]).unwrap();
        let err = cli.load_config("", std::iter::empty()).unwrap_err();
        assert!(
            err.to_string().contains("gateway.request_timeout_secs"),
            "{err}"
        );
    }

    #[test]
    fn both_maps_upstream_and_services_to_receiver_keys() {
        let cli = Cli::try_parse_from([
            "anpx",
            "both",
            "--upstream",
            "http://127.0.0.1:8000",
            "--service",
            "a.com/x",
        ])
        .unwrap();
        let config = cli.load_config("", std::iter::empty()).unwrap();
        assert_eq!(
            config.receiver.upstream.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(config.receiver.services[0].to_string(), "a.com/x");
    }

    #[test]
    fn registry_commands_parse_and_map_the_registry_url() {
        let cli = Cli::try_parse_from([
            "anpx",
            "registry",
            "add",
            "--did",
            "did:wba:a",
            "--service",
            "api.agent.com/anpproxy1/ad.json",
            "--registry-url",
            "sqlite::memory:",
        ])
        .unwrap();
        let Command::Registry(RegistryArgs {
            action: RegistryAction::Add(entry),
            ..
        }) = &cli.command
        else {
            panic!("{:?}", cli.command);
        };
        assert_eq!(entry.service.to_string(), "api.agent.com/anpproxy1");
        let config = cli.load_config("", std::iter::empty()).unwrap();
        assert_eq!(
            config.gateway.registry.url.as_deref(),
            Some("sqlite::memory:")
        );
        assert!(Cli::try_parse_from(["anpx", "registry", "list"]).is_ok());
        assert!(Cli::try_parse_from([
            "anpx",
            "registry",
            "add",
            "--did",
            "d",
            "--service",
            "h/a?b"
        ])
        .is_err());
    }

    #[test]
    fn a_boolean_flag_alone_means_true_and_zero_attempts_means_no_limit() {
        let load = |args: &[&str]| {
            Cli::try_parse_from(args)
                .unwrap()
                .load_config("", std::iter::empty())
                .unwrap()
        };
        let c = load(&[
            "anpx",
            "receiver",
            "--keep-retrying",
            "--reconnect-max-attempts",
            "0",
        ]);
        assert!(c.receiver.keep_retrying);
        assert_eq!(c.receiver.reconnect_max_attempts, None);
        assert!(c.receiver.backoff_config().max_attempts.is_none());
        let c = load(&["anpx", "receiver", "--keep-retrying", "false"]);
        assert!(!c.receiver.keep_retrying);
        let c = load(&[
            "anpx",
            "receiver",
            "--reconnect-max-attempts",
            "3",
            "--reconnect-reset-after-secs",
            "5",
        ]);
        assert_eq!(c.receiver.reconnect_max_attempts, Some(3));
        let b = c.receiver.backoff_config();
        assert_eq!(b.reset_after, std::time::Duration::from_secs(5));
        assert!(!b.keep_retrying);
    }

    #[test]
    fn log_format_is_taken_by_every_running_subcommand() {
        use crate::config::LogFormat;
        for args in [
            &["anpx", "gateway", "--log-format", "json"][..],
            &["anpx", "receiver", "--log-format", "json"],
            &["anpx", "both", "--log-format", "json"],
            &["anpx", "demo", "--log-format", "json"],
            &["anpx", "check-config", "--log-format", "json"],
            &["anpx", "registry", "list", "--log-format", "json"],
            &["anpx", "--log-format", "json", "did", "new", "--host", "h"],
            &["anpx", "decode", "--log-format", "json"],
        ] {
            let config = Cli::try_parse_from(args)
                .unwrap()
                .load_config("", std::iter::empty())
                .unwrap();
            assert_eq!(config.gateway.log_format, LogFormat::Json, "{args:?}");
        }
        let bad = Cli::try_parse_from(["anpx", "receiver", "--log-format", "xml"]).unwrap();
        assert!(bad.load_config("", std::iter::empty()).is_err());
    }

    #[test]
    fn receiver_and_both_take_the_same_service_and_upstream_flags() {
        for sub in ["receiver", "both"] {
            for flag in ["--service", "--services"] {
                let cli = Cli::try_parse_from([
                    "anpx",
                    sub,
                    "--upstream",
                    "http://127.0.0.1:1",
                    flag,
                    "a.com/x",
                    flag,
                    "b.com",
                ])
                .unwrap_or_else(|e| panic!("{sub} {flag}: {e}"));
                let config = cli.load_config("", std::iter::empty()).unwrap();
                assert_eq!(config.receiver.services.len(), 2, "{sub} {flag}");
                assert!(config.receiver.upstream.is_some(), "{sub} {flag}");
            }
        }
    }

    #[test]
    fn both_spells_each_receiver_flag_as_receiver_does() {
        let mut cli = Cli::command();
        let args = |cli: &mut clap::Command,
                    sub: &str|
         -> Vec<(String, Option<String>, Vec<String>)> {
            cli.find_subcommand_mut(sub)
                .unwrap()
                .get_arguments()
                .filter(|a| a.get_id().as_str().starts_with("receiver.") || a.get_id() == "demo")
                .map(|a| {
                    (
                        a.get_id().to_string(),
                        a.get_long().map(str::to_owned),
                        a.get_all_aliases()
                            .into_iter()
                            .flatten()
                            .map(str::to_owned)
                            .collect(),
                    )
                })
                .collect()
        };
        let receiver = args(&mut cli, "receiver");
        let both = args(&mut cli, "both");
        assert_eq!(both.len(), BOTH_RECEIVER_KEYS.len() + 1, "{both:?}");
        for flag in &both {
            assert!(
                receiver.contains(flag),
                "both's {flag:?} is on receiver as it is"
            );
        }
        // The hidden spelling `--services` is kept on both.
        for sub in ["receiver", "both"] {
            let cli = Cli::try_parse_from([
                "anpx",
                sub,
                "--services",
                "a.com/x,b.com",
                "--ca-file",
                "/ca.pem",
            ])
            .unwrap_or_else(|e| panic!("{sub}: {e}"));
            let config = cli.load_config("", std::iter::empty()).unwrap();
            assert_eq!(config.receiver.services.len(), 2, "{sub}");
            assert_eq!(config.receiver.ca_file, Some("/ca.pem".into()), "{sub}");
        }
    }

    #[test]
    fn help_shows_no_empty_default_and_describes_the_product() {
        let mut cli = Cli::command();
        let top = cli.render_help().to_string();
        assert!(top.contains("reverse HTTP tunnel"), "{top}");
        assert!(!top.contains("Sans-IO"), "{top}");
        assert!(top.contains("Exit codes"), "{top}");
        for sub in [
            "gateway",
            "receiver",
            "both",
            "demo",
            "check-config",
            "decode",
        ] {
            let help = cli
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(!help.contains("[default: ]"), "{sub}: {help}");
            assert!(!help.contains("=]"), "{sub}: {help}");
            assert!(help.contains("--log-format"), "{sub}: {help}");
        }
    }

    #[test]
    fn unknown_flags_are_refused() {
        assert!(Cli::try_parse_from(["anpx", "gateway", "--listne", "x"]).is_err());
    }
}
