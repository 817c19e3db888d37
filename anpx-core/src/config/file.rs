//! The TOML file: reading it key by key, and writing the effective
//! configuration back.
//!
//! The file is parsed into a plain table and walked against the key table,
//! rather than deserialized into the section structs, so that every refusal
//! names the full dotted key (serde's errors only name the innermost field)
//! and so that the file, flags and environment share one parser per key.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::error::{ConfigError, ValueError};
use super::keys::{self, is_section, keys};
use super::value::{self, Input};
use super::Config;

/// Defaults overlaid with the file's keys; no checks across keys yet.
pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string().trim_end().to_owned()))?;
    let mut config = Config::default();
    walk(&mut config, "", &table)?;
    Ok(config)
}

fn walk(config: &mut Config, prefix: &str, table: &Table) -> Result<(), ConfigError> {
    for (name, value) in table {
        // A quoted key holding a dot (`"gateway.listen" = ...`) is one key
        // of that name, not a path, so it must not match the nested key.
        let path = match (prefix, name.contains('.')) {
            (_, true) => return Err(unknown(join(prefix, &format!("{name:?}")))),
            ("", false) => name.clone(),
            (_, false) => join(prefix, name),
        };
        if let Some(info) = keys::find_key(&path) {
            info.apply(config, Input::Toml(value))?;
        } else if is_section(&path) {
            match value {
                Value::Table(inner) => walk(config, &path, inner)?,
                other => {
                    return Err(ValueError::Expected {
                        expected: "a table",
                        got: value::describe(other),
                    }
                    .at(path))
                }
            }
        } else {
            return Err(unknown(path));
        }
    }
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// An unknown key, with the nearest key or section as a suggestion.
pub(crate) fn unknown(key: String) -> ConfigError {
    let sections = keys()
        .iter()
        .flat_map(|k| k.key.match_indices('.').map(|(end, _)| &k.key[..end]));
    let candidates = keys().iter().map(|k| k.key).chain(sections);
    let suggestion = keys::nearest(&key, candidates).map(str::to_owned);
    ConfigError::UnknownKey { key, suggestion }
}

/// The configuration as TOML: every key, with its help as a comment, and
/// unset keys as comments.
pub(crate) fn write(config: &Config) -> String {
    let mut out = String::new();
    let mut section = "";
    for info in keys() {
        let (table, name) = info.key.rsplit_once('.').unwrap_or(("", info.key));
        let value = info.render(config);
        // Arrays of tables get a header per entry instead of a key.
        if let Some(Value::Array(entries)) = &value {
            if entries.iter().any(Value::is_table) {
                write_tables(&mut out, info.key, info.help, entries);
                section = "";
                continue;
            }
        }
        if table != section {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "[{table}]");
            section = table;
        }
        let _ = writeln!(out, "# {}", info.help);
        match value {
            Some(v) => {
                let _ = writeln!(out, "{name} = {v}");
            }
            None => {
                let _ = writeln!(out, "# {name} is unset");
            }
        }
    }
    out
}

fn write_tables(out: &mut String, key: &str, help: &str, entries: &[Value]) {
    let _ = writeln!(out, "\n# {help}");
    for entry in entries {
        let _ = writeln!(out, "[[{key}]]");
        if let Value::Table(fields) = entry {
            for (name, v) in fields {
                let _ = writeln!(out, "{name} = {v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_dotted_keys_are_not_paths() {
        let e = parse("\"gateway.listen\" = \"127.0.0.1:1\"").unwrap_err();
        assert_eq!(
            e,
            ConfigError::UnknownKey {
                key: "\"gateway.listen\"".to_owned(),
                suggestion: Some("gateway.listen".to_owned()),
            }
        );
        let e = parse("[gateway]\n\"tls.cert\" = \"x\"").unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { key, .. } if key == "gateway.\"tls.cert\""));
    }

    #[test]
    fn dotted_keys_are_paths() {
        let c = parse("gateway.tls.cert = \"c.pem\"\ngateway.tls.key = \"k.pem\"").unwrap();
        assert!(c.gateway.tls.enabled());
    }

    #[test]
    fn a_section_given_a_value_is_named() {
        let e = parse("gateway = 1").unwrap_err();
        assert_eq!(e.to_string(), "gateway: expected a table, got 1");
        let e = parse("[gateway]\ntls = \"x\"").unwrap_err();
        assert_eq!(e.to_string(), "gateway.tls: expected a table, got \"x\"");
    }

    #[test]
    fn a_key_given_a_table_is_named() {
        let e = parse("[gateway.listen]\nx = 1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "gateway.listen: expected an IP address and port such as 127.0.0.1:8080 (or localhost:8080), got a table"
        );
    }
}
