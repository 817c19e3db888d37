//! Which kind of store a registry URL names.

use std::fmt;

use super::RegistryError;

/// The database a `gateway.registry.url` names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `sqlite:path`, `sqlite://path?mode=rwc`, `sqlite::memory:`.
    Sqlite,
    /// `mysql://` or `mariadb://` (the reference's own store).
    MySql,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl BackendKind {
    /// The backend for `url`, by its scheme (case-insensitive).
    ///
    /// ```
    /// use anpx_core::registry::BackendKind;
    /// assert_eq!(BackendKind::from_url("sqlite://registry.db?mode=rwc"), Ok(BackendKind::Sqlite));
    /// assert_eq!(BackendKind::from_url("mysql://root@127.0.0.1/anp"), Ok(BackendKind::MySql));
    /// assert!(BackendKind::from_url("https://registry.example.com").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<BackendKind, RegistryError> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        let kind = match scheme.as_deref() {
            Some("sqlite") => BackendKind::Sqlite,
            Some("mysql" | "mariadb") => BackendKind::MySql,
            Some("postgres" | "postgresql") => BackendKind::Postgres,
            _ => return Err(RegistryError::UnsupportedUrl(url.to_owned())),
        };
        // A network database needs a host to talk to.
        let needs_host = kind != BackendKind::Sqlite;
        let rest = &url[url.find(':').map_or(0, |i| i + 1)..];
        if needs_host && !rest.starts_with("//") {
            return Err(RegistryError::UnsupportedUrl(url.to_owned()));
        }
        Ok(kind)
    }

    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "SQLite",
            BackendKind::MySql => "MySQL",
            BackendKind::Postgres => "PostgreSQL",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        for (url, kind) in [
            ("sqlite:registry.db", BackendKind::Sqlite),
            ("sqlite://./r.db?mode=rwc", BackendKind::Sqlite),
            ("sqlite::memory:", BackendKind::Sqlite),
            ("SQLite:///var/lib/anpx/r.db", BackendKind::Sqlite),
            ("mysql://root@127.0.0.1:3306/test", BackendKind::MySql),
            ("mariadb://u:p@db/anp", BackendKind::MySql),
            (
                "postgres://postgres@127.0.0.1:5432/test",
                BackendKind::Postgres,
            ),
            ("postgresql://h/db", BackendKind::Postgres),
        ] {
            assert_eq!(BackendKind::from_url(url), Ok(kind), "{url}");
        }
        for url in [
            "",
            "registry.db",
            "https://r.example/grants",
            "mysql:db",
            "redis://h",
        ] {
            assert_eq!(
                BackendKind::from_url(url),
                Err(RegistryError::UnsupportedUrl(url.to_owned())),
                "{url}"
            );
        }
    }
}
