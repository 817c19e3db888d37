//! The service URL: the key a route is registered under.

use std::fmt;
use std::str::FromStr;

/// Longest text [`ServiceUrl::from_str`] accepts. The reference keeps service
/// URLs in a `VARCHAR(512)` column; the bound is generous but keeps tries
/// shallow, since dropping and walking a trie recurses once per segment.
pub const MAX_LEN: usize = 2048;

/// Schemes tolerated (and discarded) in front of a service URL, because
/// operators paste full URLs into configuration.
const SCHEMES: [&str; 4] = ["https://", "http://", "wss://", "ws://"];

/// Why a text is not a service URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceUrlError {
    /// Nothing before the first `/` (or nothing at all).
    #[error("service URL has an empty host")]
    EmptyHost,
    /// Longer than [`MAX_LEN`] bytes.
    #[error("service URL is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// Length of the text.
        len: usize,
        /// [`MAX_LEN`].
        max: usize,
    },
    /// Whitespace or a control character anywhere in the text.
    #[error("service URL contains whitespace or a control character ({0:?})")]
    SpaceOrControl(char),
    /// `scheme://` with a scheme other than http, https, ws or wss.
    #[error(
        "service URL has unsupported scheme {0:?} (only http, https, ws and wss are tolerated)"
    )]
    UnsupportedScheme(String),
    /// A `?` or `#` in the path: a route is a path prefix, not a query.
    #[error("service URL path contains {0:?}; a route is a plain path prefix")]
    QueryOrFragment(char),
    /// A `.` or `..` segment, which HTTP clients resolve away before sending.
    #[error("service URL path contains a {0:?} segment")]
    DotSegment(String),
    /// The part after `:` in the host is not a port number.
    #[error("service URL host has an invalid port {0:?}")]
    InvalidPort(String),
    /// A host character outside `[a-z0-9._-]` (after lower-casing), or a `*`
    /// that is not the whole host.
    #[error("service URL host {0:?} is not a DNS name ([a-z0-9._-]) nor the lone wildcard \"*\"")]
    InvalidHost(String),
}

/// A route key: a host (or the wildcard host `*`) and a path prefix made of
/// whole segments, normalized once when parsed.
///
/// Normalization: a leading `http://`, `https://`, `ws://` or `wss://` is
/// dropped, the host is lower-cased and loses any `:port` and trailing `.`,
/// and empty path segments (from `//` or a trailing `/`) are dropped. Path
/// segments are kept byte for byte: paths are case-sensitive and no
/// percent-decoding is done, so routes match the request target as sent.
/// Nothing else is stripped: deriving a prefix from the reference's
/// `did_proxy_path` (which drops a trailing `/ad.json`) is the caller's job.
///
/// ```
/// use anpx_core::ServiceUrl;
///
/// let url: ServiceUrl = "https://API.Agent.com:8080/anpproxy1//v2/".parse().unwrap();
/// assert_eq!(url.host(), Some("api.agent.com"));
/// assert_eq!(url.segments(), ["anpproxy1", "v2"]);
/// assert_eq!(url.to_string(), "api.agent.com/anpproxy1/v2");
///
/// let any: ServiceUrl = "*/tools".parse().unwrap();
/// assert!(any.is_wildcard());
/// assert_eq!(any.to_string(), "*/tools");
///
/// assert!("api.agent.com/a?b=1".parse::<ServiceUrl>().is_err());
/// ```
///
/// Service URLs are ordered by host (the wildcard first), then path, so
/// that sets of them list the same way every time.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ServiceUrl {
    /// `None` is the wildcard host.
    host: Option<String>,
    segments: Vec<String>,
}

impl ServiceUrl {
    /// The host, lower-cased and without port; `None` for the wildcard host.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The path prefix as segments; empty for the root prefix `/`.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether this route applies to any host that has no route of its own.
    pub fn is_wildcard(&self) -> bool {
        self.host.is_none()
    }
}

impl FromStr for ServiceUrl {
    type Err = ServiceUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_LEN {
            return Err(ServiceUrlError::TooLong {
                len: s.len(),
                max: MAX_LEN,
            });
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ServiceUrlError::SpaceOrControl(c));
        }
        let rest = strip_scheme(s)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let host = parse_host(authority)?;
        if let Some(c) = path.chars().find(|&c| c == '?' || c == '#') {
            return Err(ServiceUrlError::QueryOrFragment(c));
        }
        let mut segments = Vec::new();
        for seg in path.split('/').filter(|seg| !seg.is_empty()) {
            if seg == "." || seg == ".." {
                return Err(ServiceUrlError::DotSegment(seg.to_owned()));
            }
            segments.push(seg.to_owned());
        }
        Ok(ServiceUrl { host, segments })
    }
}

fn strip_scheme(s: &str) -> Result<&str, ServiceUrlError> {
    for scheme in SCHEMES {
        // `get` rather than slicing: the cut may fall inside a multi-byte
        // character, which must not panic.
        if s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            return Ok(&s[scheme.len()..]);
        }
    }
    // Only a `://` inside the authority is a scheme; one later in the path is
    // just path text.
    let authority_end = s.find('/').unwrap_or(s.len());
    match s.find("://") {
        Some(i) if i < authority_end => Err(ServiceUrlError::UnsupportedScheme(s[..i].to_owned())),
        _ => Ok(s),
    }
}

/// `None` for the wildcard host.
fn parse_host(authority: &str) -> Result<Option<String>, ServiceUrlError> {
    let name = match authority.rfind(':') {
        Some(i) => {
            let port = &authority[i + 1..];
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ServiceUrlError::InvalidPort(port.to_owned()));
            }
            &authority[..i]
        }
        None => authority,
    };
    // A fully qualified `host.` names the same host as `host`.
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(ServiceUrlError::EmptyHost);
    }
    if name == "*" {
        return Ok(None);
    }
    let name = name.to_ascii_lowercase();
    if !name.bytes().all(is_host_byte) {
        return Err(ServiceUrlError::InvalidHost(name));
    }
    Ok(Some(name))
}

/// Host characters after lower-casing. `_` is not valid in DNS host names,
/// but agent deployments use it in internal names.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'_'
}

impl fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host.as_deref().unwrap_or("*"))?;
        for seg in &self.segments {
            write!(f, "/{seg}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for ServiceUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ServiceUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Owned, so that strings with escapes (which cannot be borrowed) work.
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ServiceUrl {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn a_multibyte_character_where_a_scheme_could_end_is_refused_not_a_panic() {
        assert!("h/¡𐀀".parse::<ServiceUrl>().is_ok());
        assert!("ht¡p://x".parse::<ServiceUrl>().is_err());
    }

    #[test]
    fn accepts_and_normalizes() {
        let cases = [
            (
                "api.agent.com/anpproxy1",
                Some("api.agent.com"),
                &["anpproxy1"][..],
                "api.agent.com/anpproxy1",
            ),
            ("api.agent.com", Some("api.agent.com"), &[], "api.agent.com"),
            (
                "api.agent.com/",
                Some("api.agent.com"),
                &[],
                "api.agent.com",
            ),
            (
                "API.Agent.com:8080/a/b/",
                Some("api.agent.com"),
                &["a", "b"],
                "api.agent.com/a/b",
            ),
            (
                "api.agent.com//a///b",
                Some("api.agent.com"),
                &["a", "b"],
                "api.agent.com/a/b",
            ),
            ("*/tools", None, &["tools"], "*/tools"),
            ("*", None, &[], "*"),
            ("*:443/x", None, &["x"], "*/x"),
            (
                "https://api.agent.com/x",
                Some("api.agent.com"),
                &["x"],
                "api.agent.com/x",
            ),
            (
                "HTTP://api.agent.com",
                Some("api.agent.com"),
                &[],
                "api.agent.com",
            ),
            ("ws://h/x", Some("h"), &["x"], "h/x"),
            ("wss://h:9/x", Some("h"), &["x"], "h/x"),
            (
                "my_agent.internal/A/B",
                Some("my_agent.internal"),
                &["A", "B"],
                "my_agent.internal/A/B",
            ),
            (
                "api.agent.com./x",
                Some("api.agent.com"),
                &["x"],
                "api.agent.com/x",
            ),
            (
                "h/a/http://x",
                Some("h"),
                &["a", "http:", "x"],
                "h/a/http:/x",
            ),
            ("10.0.0.1:80/p", Some("10.0.0.1"), &["p"], "10.0.0.1/p"),
        ];
        for (input, host, segs, canonical) in cases {
            let url = parse(input);
            assert_eq!(url.host(), host, "{input}");
            assert_eq!(url.is_wildcard(), host.is_none(), "{input}");
            assert_eq!(url.segments(), segs, "{input}");
            assert_eq!(url.to_string(), canonical, "{input}");
            // The canonical form is a fixed point.
            assert_eq!(parse(canonical), url, "{input}");
        }
    }

    #[test]
    fn equal_after_normalization() {
        assert_eq!(
            parse("API.agent.com:1/a/"),
            parse("https://api.agent.com/a")
        );
        assert_ne!(parse("h/a"), parse("h/A"), "paths are case-sensitive");
        assert_ne!(parse("*/a"), parse("h/a"));
    }

    #[test]
    fn rejects() {
        use ServiceUrlError as E;
        let cases: [(&str, E); 19] = [
            ("", E::EmptyHost),
            ("/a", E::EmptyHost),
            (":80/a", E::EmptyHost),
            ("https://", E::EmptyHost),
            ("https:///x", E::EmptyHost),
            ("api.agent.com/a b", E::SpaceOrControl(' ')),
            (" api.agent.com", E::SpaceOrControl(' ')),
            ("h/a\tb", E::SpaceOrControl('\t')),
            ("h/a\u{7f}", E::SpaceOrControl('\u{7f}')),
            ("h/a?x=1", E::QueryOrFragment('?')),
            ("h/a#frag", E::QueryOrFragment('#')),
            ("h/a/../b", E::DotSegment("..".into())),
            ("h/./b", E::DotSegment(".".into())),
            ("h:/a", E::InvalidPort("".into())),
            ("h:80x/a", E::InvalidPort("80x".into())),
            ("h:123456", E::InvalidPort("123456".into())),
            ("ftp://h/a", E::UnsupportedScheme("ftp".into())),
            ("*.agent.com/a", E::InvalidHost("*.agent.com".into())),
            ("user@h/a", E::InvalidHost("user@h".into())),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ServiceUrl>(), Err(want), "{input:?}");
        }
        assert!(matches!(
            "[::1]:80/a".parse::<ServiceUrl>(),
            Err(E::InvalidHost(_))
        ));
        assert!(matches!(
            "hé.com".parse::<ServiceUrl>(),
            Err(E::InvalidHost(_))
        ));
        let long = format!("h/{}", "a".repeat(MAX_LEN));
        assert!(matches!(long.parse::<ServiceUrl>(), Err(E::TooLong { .. })));
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = "h/a?x".parse::<ServiceUrl>().unwrap_err().to_string();
        assert!(e.contains("'?'"), "{e}");
        let e = "ftp://h".parse::<ServiceUrl>().unwrap_err().to_string();
        assert!(e.contains("\"ftp\""), "{e}");
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let url = parse("HTTPS://Api.Agent.com:443/a/b/");
        let json = serde_json::to_string(&url).unwrap();
        assert_eq!(json, r#""api.agent.com/a/b""#);
        assert_eq!(serde_json::from_str::<ServiceUrl>(&json).unwrap(), url);
        assert_eq!(
            serde_json::from_str::<ServiceUrl>(r#""*\/x""#).unwrap(),
            parse("*/x")
        );
        let err = serde_json::from_str::<ServiceUrl>(r#""h/a?b""#).unwrap_err();
        assert!(err.to_string().contains("plain path prefix"), "{err}");
    }
}
