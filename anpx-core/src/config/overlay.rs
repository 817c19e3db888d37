//! Setting keys from flags and environment variables on top of the file.

use super::error::ConfigError;
use super::file;
use super::keys::{self, CONFIG_FILE_ENV, ENV_PREFIX, LANE_SPIN_ENV};
use super::value::{self, Input};
use super::Config;

impl Config {
    /// Sets one key from text, as a flag or environment variable gives it.
    ///
    /// `key` is the dotted file key (`gateway.listen`, `gateway.tls.cert`).
    /// Lists are comma-separated (`receiver.services`), grants are
    /// `DID=service,service` separated by `;`, and an empty value unsets an
    /// optional key. The value is checked on its own; checks across keys
    /// wait for [`Config::validate`], since a later key may settle them.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let info = keys::find_key(key).ok_or_else(|| file::unknown(key.to_owned()))?;
        info.apply(self, Input::Text(value))
    }

    /// One key's value in the text form [`Config::set`] takes; `None` when
    /// the key is unset.
    pub fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let info = keys::find_key(key).ok_or_else(|| file::unknown(key.to_owned()))?;
        Ok(info.render(self).as_ref().map(value::to_text))
    }

    /// Sets keys from `ANPX_` environment variables (`ANPX_GATEWAY_LISTEN`
    /// sets `gateway.listen`, `ANPX_GATEWAY_TLS_CERT` sets
    /// `gateway.tls.cert`).
    ///
    /// Variables without the prefix are ignored, as are `ANPX_CONFIG`
    /// ([`CONFIG_FILE_ENV`]) and `ANPX_LANE_SPIN_US` ([`LANE_SPIN_ENV`]),
    /// which the shells read themselves. Any other `ANPX_`
    /// variable must match a key: a misspelt one is an error rather than a
    /// setting that silently does nothing. Values are read as by
    /// [`Config::set`].
    ///
    /// `std::env::vars()` panics on a variable that is not Unicode;
    /// `std::env::vars_os()` filtered to the Unicode ones does not.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (var, value) in vars {
            if !var.starts_with(ENV_PREFIX) || var == CONFIG_FILE_ENV || var == LANE_SPIN_ENV {
                continue;
            }
            let Some(info) = keys::find_env(&var) else {
                let suggestion =
                    keys::nearest(&var, keys::keys().iter().map(|k| k.env)).map(str::to_owned);
                return Err(ConfigError::UnknownEnvVar { var, suggestion });
            };
            info.apply(self, Input::Text(&value))
                .map_err(|error| ConfigError::Env {
                    var,
                    error: Box::new(error),
                })?;
        }
        Ok(())
    }

    /// The configuration the shells run with: defaults, overlaid by the file
    /// `toml` (empty when there is none), then by the environment, then by
    /// flags as `(key, value)` pairs, then checked as a whole by
    /// [`Config::validate`].
    ///
    /// Checks across keys run once, at the end, so a file that only makes
    /// sense with its flags (a chunk size raised together with the frame
    /// limit) is accepted.
    pub fn load<K, V>(
        toml: &str,
        env: impl IntoIterator<Item = (String, String)>,
        flags: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Config, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = file::parse(toml)?;
        config.apply_env(env)?;
        for (key, value) in flags {
            config.set(key.as_ref(), value.as_ref())?;
        }
        config.validate()?;
        Ok(config)
    }
}
