//! Path patterns answered with 403 before anything is forwarded: the
//! probes scanners send to every public address.

use percent_encoding::percent_decode_str;

/// The probes blocked by `gateway.block_probes`: admin pages of software
/// that is commonly attacked, files that should never be served, and PHP
/// stream wrappers used for file inclusion.
pub const PROBE_PATTERNS: [&str; 16] = [
    "/wp-admin",
    "/wp-login.php",
    "/wp-content/",
    "/wp-includes/",
    "/xmlrpc.php",
    "/phpmyadmin",
    "/pma/",
    "/.env",
    "/.git/",
    "/.htaccess",
    "/cgi-bin/",
    "/vendor/phpunit/",
    "php://",
    "phar://",
    "expect://",
    "data://",
];

/// Case-insensitive substrings of the decoded path or query that are
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    patterns: Vec<String>,
}

impl Blocklist {
    /// A list of `patterns`; `probes` adds [`PROBE_PATTERNS`].
    pub fn new(probes: bool, patterns: &[String]) -> Self {
        let mut all: Vec<String> = patterns
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        if probes {
            all.extend(PROBE_PATTERNS.iter().map(|p| p.to_string()));
        }
        all.sort();
        all.dedup();
        Blocklist { patterns: all }
    }

    /// Whether any pattern is set.
    pub fn enabled(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// The pattern a request's raw (percent-encoded) path or query matches.
    /// Both are decoded first, repeatedly, so no encoding hides a pattern.
    ///
    /// ```
    /// use anpx_core::policy::Blocklist;
    /// let b = Blocklist::new(true, &[]);
    /// assert_eq!(b.matches("/WP-Admin/setup.php", None), Some("/wp-admin"));
    /// assert_eq!(b.matches("/%2577p-admin/", None), Some("/wp-admin"));
    /// assert_eq!(b.matches("/index.php", Some("page=php%3A%2F%2Finput")), Some("php://"));
    /// assert_eq!(b.matches("/api/agents", Some("q=admin")), None);
    /// ```
    pub fn matches(&self, path: &str, query: Option<&str>) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        let path = decode_fully(path);
        let collapsed = collapse_slashes(&path);
        let query = query.map(decode_fully).unwrap_or_default();
        self.patterns
            .iter()
            .find(|p| {
                [&path, &collapsed, &query]
                    .iter()
                    .any(|t| t.contains(p.as_str()))
            })
            .map(String::as_str)
    }
}

/// Percent-decodes until nothing changes (a few rounds at most) and
/// lowercases.
fn decode_fully(raw: &str) -> String {
    let mut text = raw.to_owned();
    for _ in 0..4 {
        let next = percent_decode_str(&text).decode_utf8_lossy().into_owned();
        if next == text {
            break;
        }
        text = next;
    }
    text.to_lowercase()
}

/// `//wp-admin` reaches the same place as `/wp-admin` on most servers.
fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_empty() {
        let b = Blocklist::new(false, &[" ".into()]);
        assert!(!b.enabled());
        assert_eq!(b.matches("/wp-admin/", None), None);
    }

    #[test]
    fn probes_and_evasions() {
        let b = Blocklist::new(true, &[]);
        for path in [
            "/wp-admin/",
            "//wp-admin",
            "/blog/wp-login.php",
            "/phpMyAdmin/index.php",
            "/%70hpmyadmin/",
            "/.env",
            "/app/.git/config",
        ] {
            assert!(b.matches(path, None).is_some(), "{path}");
        }
        assert_eq!(
            b.matches("/x", Some("file=PHP://filter/resource=index")),
            Some("php://")
        );
        for path in ["/", "/api/agents", "/environment", "/wp-adminx"] {
            // "/wp-adminx" contains "/wp-admin": substrings are blocked as
            // such; the others are not probes.
            let blocked = b.matches(path, Some("q=1")).is_some();
            assert_eq!(blocked, path == "/wp-adminx", "{path}");
        }
    }

    #[test]
    fn own_patterns() {
        let b = Blocklist::new(false, &["/Internal/".into()]);
        assert_eq!(b.matches("/internal/metrics", None), Some("/internal/"));
        assert_eq!(b.matches("/wp-admin/", None), None);
    }
}
