//! Command-line flags generated from the configuration key table, so a
//! new option needs one table entry, not a hand-written flag per shell.

use std::marker::PhantomData;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};

use crate::config::{keys, KeyInfo};

/// A configuration section whose keys become flags.
pub trait Section: Clone + Send + Sync + 'static {
    /// The section name in the key table.
    const NAME: &'static str;
    /// Whether the section's key `key` is a flag here; all are by default.
    fn takes(key: &str) -> bool {
        let _ = key;
        true
    }
}

/// The `[gateway]` keys.
#[derive(Debug, Clone, Copy)]
pub struct GatewayKeys;
impl Section for GatewayKeys {
    const NAME: &'static str = "gateway";
}

/// The `[receiver]` keys.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverKeys;
impl Section for ReceiverKeys {
    const NAME: &'static str = "receiver";
}

/// The `[receiver]` keys `anpx both` takes, spelled as on `anpx receiver`
/// (the generated flags of one table cannot drift apart): what the
/// in-process receiver serves and how it proves itself to, and trusts,
/// its own gateway. The others either share a flag name with a gateway
/// key (`--log-level`, `--admin-listen`, ...) or mean nothing in one
/// process (`--gateway`).
#[derive(Debug, Clone, Copy)]
pub struct BothReceiverKeys;
impl Section for BothReceiverKeys {
    const NAME: &'static str = "receiver";
    fn takes(key: &str) -> bool {
        BOTH_RECEIVER_KEYS.contains(&key)
    }
}

/// The keys of [`BothReceiverKeys`].
pub const BOTH_RECEIVER_KEYS: [&str; 6] = [
    "receiver.upstream",
    "receiver.services",
    "receiver.did_document",
    "receiver.private_key",
    "receiver.ca_file",
    "receiver.pin_sha256",
];

/// The flags of one section that were given, as `(key, value)` pairs ready
/// for [`Config::load`](crate::config::Config::load).
#[derive(Debug, Clone)]
pub struct SectionFlags<S> {
    /// `(dotted key, value)` in key-table order.
    pub pairs: Vec<(String, String)>,
    section: PhantomData<S>,
}

impl<S> Default for SectionFlags<S> {
    fn default() -> Self {
        SectionFlags {
            pairs: Vec::new(),
            section: PhantomData,
        }
    }
}

fn section_keys<S: Section>() -> impl Iterator<Item = &'static KeyInfo> {
    // Static grants are tables; they belong in the file, not on a flag.
    // The log format is the command line's global `--log-format`.
    keys().iter().filter(|k| {
        k.section() == S::NAME
            && S::takes(k.key)
            && k.key != "gateway.routes.grant"
            && k.key != "gateway.log_format"
    })
}

/// `receiver.services` may be repeated as `--service X --service Y`.
fn is_list(key: &str) -> bool {
    key == "receiver.services"
}

impl<S: Section> Args for SectionFlags<S> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        section_keys::<S>().fold(cmd, |cmd, k| {
            // An option unset by default shows no `[default: ]`.
            let help = if k.default.is_empty() {
                format!("{} [env: {}]", k.help, k.env)
            } else {
                format!("{} [default: {}] [env: {}]", k.help, k.default, k.env)
            };
            let mut arg = Arg::new(k.key)
                .long(k.flag)
                .value_name(k.value_name)
                .help(help)
                .action(ArgAction::Set);
            if is_list(k.key) {
                // `--service`, repeatable, as on `anpx both`; `--services`
                // (a list) is kept as a hidden alias.
                arg = arg
                    .long("service")
                    .value_name("SERVICE_URL")
                    .alias(k.flag)
                    .action(ArgAction::Append);
            }
            // `--keep-retrying` alone reads as `--keep-retrying true`.
            if k.value_name == "BOOL" {
                arg = arg
                    .num_args(0..=1)
                    .require_equals(false)
                    .default_missing_value("true");
            }
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl<S: Section> FromArgMatches for SectionFlags<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let pairs = section_keys::<S>()
            .filter_map(|k| {
                let values: Vec<&String> = matches.get_many::<String>(k.key)?.collect();
                let joined = values
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                Some((k.key.to_owned(), joined))
            })
            .collect();
        Ok(SectionFlags {
            pairs,
            section: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
