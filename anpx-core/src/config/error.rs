//! Why a configuration is refused.

use std::time::Duration;

use crate::route::ServiceUrlError;

/// Why a configuration file, variable or flag is refused.
///
/// Every variant names where the problem is: the dotted key
/// (`gateway.request_timeout_secs`), the environment variable, or, for
/// syntax errors, the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not TOML at all.
    #[error("invalid TOML: {0}")]
    Syntax(String),
    /// A key no option has.
    #[error("unknown key {key}{}", did_you_mean(suggestion.as_deref()))]
    UnknownKey {
        /// The dotted key as written.
        key: String,
        /// The nearest existing key, when one is close.
        suggestion: Option<String>,
    },
    /// An `ANPX_` environment variable no option has.
    #[error(
        "unknown environment variable {var}: no configuration key matches it{}",
        did_you_mean(suggestion.as_deref())
    )]
    UnknownEnvVar {
        /// The variable's name.
        var: String,
        /// The nearest existing variable, when one is close.
        suggestion: Option<String>,
    },
    /// A value of a known key is refused.
    #[error("{key}: {error}")]
    Invalid {
        /// The dotted key, with an index for entries of a list of tables
        /// (`gateway.routes.grant[1].did`).
        key: String,
        /// What is wrong with the value.
        #[source]
        error: ValueError,
    },
    /// A value taken from an environment variable is refused.
    #[error("{var}: {error}")]
    Env {
        /// The variable's name.
        var: String,
        /// The error of the key it sets.
        #[source]
        error: Box<ConfigError>,
    },
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value has the wrong type or form.
    #[error("expected {expected}, got {got}")]
    Expected {
        /// What the key takes, in words.
        expected: &'static str,
        /// The value given, quoted when it is text, and shortened.
        got: String,
    },
    /// A number below the key's minimum.
    #[error("expected at least {min}, got {got}")]
    TooSmall {
        /// The minimum.
        min: u64,
        /// The value given.
        got: u64,
    },
    /// A number above the key's maximum.
    #[error("expected at most {max}, got {got}")]
    TooLarge {
        /// The maximum.
        max: u64,
        /// The value given.
        got: u64,
    },
    /// An entry of a list of services is not a service URL.
    #[error("invalid service URL {value:?}: {error}")]
    ServiceUrl {
        /// The entry as given.
        value: String,
        /// Why it was refused.
        #[source]
        error: ServiceUrlError,
    },
    /// A value that must be longer than another key's value is not.
    #[error("{value} must be more than {other} ({limit})")]
    NotLongerThan {
        /// This key's value.
        value: u64,
        /// The other key.
        other: &'static str,
        /// The other key's value.
        limit: u64,
    },
    /// A value that must not exceed another key's value does.
    #[error("{value} is more than {other} ({limit})")]
    Exceeds {
        /// This key's value.
        value: u64,
        /// The other key.
        other: &'static str,
        /// The other key's value.
        limit: u64,
    },
    /// A duration that must be at least another key's is shorter.
    #[error("{value:?} is shorter than {other} ({limit:?})")]
    ShorterThan {
        /// This key's duration.
        value: Duration,
        /// The other key.
        other: &'static str,
        /// The other key's duration.
        limit: Duration,
    },
    /// A key that only makes sense together with another is missing.
    #[error("required when {other} is set")]
    RequiredWith {
        /// The key that is set.
        other: &'static str,
    },
    /// The same value as another key's, where the two must differ.
    #[error("must differ from {other}")]
    SameAs {
        /// The other key.
        other: &'static str,
    },
    /// A DID listed in more than one grant.
    #[error("{did} is already granted by gateway.routes.grant[{first}]")]
    DuplicateDid {
        /// The DID.
        did: String,
        /// Index of the grant that lists it first.
        first: usize,
    },
}

impl ValueError {
    /// Attaches the key the value belongs to.
    pub(crate) fn at(self, key: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            error: self,
        }
    }
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean {s}?)"))
}
