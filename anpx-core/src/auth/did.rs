//! `did:wba` DIDs and where their documents live.

use std::fmt;
use std::str::FromStr;

use super::AuthError;

/// Longest DID accepted.
pub const MAX_DID_LEN: usize = 2048;

const PREFIX: &str = "did:wba:";

/// A parsed `did:wba` DID: `did:wba:host[%3Aport][:segment]*`.
///
/// Parsing is strict where the DID becomes a URL: the host must be a DNS
/// name (or IPv4 literal), the only percent-escape allowed in it is `%3A`
/// before a port, and path segments use only DID `idchar`s and may not
/// escape to `/`, `\` or dot-segments, so a DID cannot make the resolver
/// fetch another path or host than the one it names.
///
/// ```
/// use anpx_core::auth::Did;
/// let did: Did = "did:wba:didhost.cc%3A8443:user:alice".parse().unwrap();
/// assert_eq!(did.host(), "didhost.cc");
/// assert_eq!(did.port(), Some(8443));
/// assert_eq!(did.document_url(None), "https://didhost.cc:8443/user/alice/did.json");
/// assert_eq!(
///     did.document_url(Some("http://127.0.0.1:8080/")),
///     "http://127.0.0.1:8080/user/alice/did.json",
/// );
/// let did: Did = "did:wba:didhost.cc".parse().unwrap();
/// assert_eq!(did.document_url(None), "https://didhost.cc/.well-known/did.json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Did {
    text: String,
    host: String,
    port: Option<u16>,
    path: Vec<String>,
}

impl Did {
    /// Parses and checks a DID.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let bad = |reason| AuthError::MalformedDid {
            did: s.to_owned(),
            reason,
        };
        if s.len() > MAX_DID_LEN {
            return Err(bad("too long"));
        }
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("not a did:wba DID"))?;
        let mut parts = rest.split(':');
        let authority = parts.next().unwrap_or_default();
        let (host, port) = match split_port(authority) {
            Some((host, port)) => {
                let port = parse_port(port).ok_or_else(|| bad("bad port"))?;
                (host, Some(port))
            }
            None => (authority, None),
        };
        check_host(host).map_err(bad)?;
        let path = parts
            .map(|seg| check_segment(seg).map(|()| seg.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(Self {
            text: s.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// Builds the DID of a host, optional port and path segments, checking
    /// each part as [`Did::parse`] would.
    pub fn from_parts(host: &str, port: Option<u16>, path: &[&str]) -> Result<Self, AuthError> {
        let mut text = format!("{PREFIX}{host}");
        if let Some(port) = port {
            text.push_str(&format!("%3A{port}"));
        }
        for seg in path {
            text.push(':');
            text.push_str(seg);
        }
        Self::parse(&text)
    }

    /// The DID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host the DID document is served from.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when the DID names one (`%3A` in the DID).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path segments after the host, as written (percent-escapes kept).
    pub fn path_segments(&self) -> &[String] {
        &self.path
    }

    /// Where the DID document is fetched from: `https://host[:port]/a/b/did.json`,
    /// or `https://host[:port]/.well-known/did.json` without path segments.
    /// A `resolver_base` such as `http://resolver.local:8080` replaces
    /// `https://host[:port]` (a trailing `/` on it is ignored).
    pub fn document_url(&self, resolver_base: Option<&str>) -> String {
        let mut url = match resolver_base {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => match self.port {
                Some(port) => format!("https://{}:{port}", self.host),
                None => format!("https://{}", self.host),
            },
        };
        if self.path.is_empty() {
            url.push_str("/.well-known/did.json");
        } else {
            for seg in &self.path {
                url.push('/');
                url.push_str(seg);
            }
            url.push_str("/did.json");
        }
        url
    }
}

impl FromStr for Did {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `host%3Aport` (either case of the escape).
fn split_port(authority: &str) -> Option<(&str, &str)> {
    let i = authority
        .as_bytes()
        .windows(3)
        .position(|w| w[0] == b'%' && w[1] == b'3' && w[2].eq_ignore_ascii_case(&b'a'))?;
    Some((&authority[..i], &authority[i + 3..]))
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty host");
    }
    if host.len() > 253 {
        return Err("host too long");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("bad host name");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("bad character in host");
        }
    }
    Ok(())
}

fn check_segment(seg: &str) -> Result<(), &'static str> {
    if seg.is_empty() {
        return Err("empty path segment");
    }
    let b = seg.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).and_then(|&c| hex_val(c));
                let lo = b.get(i + 2).and_then(|&c| hex_val(c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err("bad percent-escape in path");
                };
                let c = hi << 4 | lo;
                if matches!(c, b'/' | b'\\') || c.is_ascii_control() {
                    return Err("escaped separator in path");
                }
                decoded.push(c);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                decoded.push(c);
                i += 1;
            }
            _ => return Err("bad character in path"),
        }
    }
    if decoded == b"." || decoded == b".." {
        return Err("dot segment in path");
    }
    Ok(())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(did: &str) -> String {
        Did::parse(did).unwrap().document_url(None)
    }

    #[test]
    fn document_urls() {
        assert_eq!(
            url("did:wba:didhost.cc:anpproxy1"),
            "https://didhost.cc/anpproxy1/did.json"
        );
        assert_eq!(
            url("did:wba:example.com:user:alice"),
            "https://example.com/user/alice/did.json"
        );
        assert_eq!(
            url("did:wba:example.com"),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            url("did:wba:example.com%3A3000"),
            "https://example.com:3000/.well-known/did.json"
        );
        assert_eq!(
            url("did:wba:example.com%3a3000:a:b"),
            "https://example.com:3000/a/b/did.json"
        );
        assert_eq!(
            url("did:wba:example.com:caf%C3%A9"),
            "https://example.com/caf%C3%A9/did.json"
        );
        let did = Did::parse("did:wba:example.com%3A3000:a").unwrap();
        assert_eq!(
            did.document_url(Some("http://127.0.0.1:9000")),
            "http://127.0.0.1:9000/a/did.json"
        );
        assert_eq!(
            did.document_url(Some("http://127.0.0.1:9000//")),
            "http://127.0.0.1:9000/a/did.json"
        );
    }

    #[test]
    fn from_parts_matches_parse() {
        let a = Did::from_parts("didhost.cc", Some(8443), &["a", "b"]).unwrap();
        assert_eq!(a.as_str(), "did:wba:didhost.cc%3A8443:a:b");
        assert_eq!(a, Did::parse("did:wba:didhost.cc%3A8443:a:b").unwrap());
        assert!(Did::from_parts("didhost.cc", None, &["a/b"]).is_err());
    }

    #[test]
    fn refusals() {
        for s in [
            "",
            "did:web:example.com",
            "DID:WBA:example.com",
            "did:wba:",
            "did:wba::a",
            "did:wba:example.com:",
            "did:wba:example.com::a",
            "did:wba:exa mple.com",
            "did:wba:user@evil.com",
            "did:wba:evil.com%2Fx",
            "did:wba:evil.com%40x",
            "did:wba:example.com/x",
            "did:wba:example.com%3A",
            "did:wba:example.com%3A0",
            "did:wba:example.com%3A65536",
            "did:wba:example.com%3A80x",
            "did:wba:example.com%3A80%3A81",
            "did:wba:example..com",
            "did:wba:[::1]",
            "did:wba:example.com:..",
            "did:wba:example.com:.",
            "did:wba:example.com:%2e%2E",
            "did:wba:example.com:a%2Fb",
            "did:wba:example.com:a%5cb",
            "did:wba:example.com:a%0ab",
            "did:wba:example.com:a%zz",
            "did:wba:example.com:a%4",
            "did:wba:example.com:a/b",
            "did:wba:example.com:a?x",
            "did:wba:example.com:a#key-1",
            "did:wba:example.com:é",
        ] {
            assert!(
                matches!(Did::parse(s), Err(AuthError::MalformedDid { .. })),
                "{s:?} accepted"
            );
        }
        let long = format!("did:wba:example.com:{}", "a".repeat(MAX_DID_LEN));
        assert!(Did::parse(&long).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "did:wba:\\PC{0,40}") {
            if let Ok(did) = Did::parse(&s) {
                // Whatever parses makes a URL on the DID's own host.
                let u = did.document_url(None);
                let prefix = format!("https://{}", did.host());
                proptest::prop_assert!(u.starts_with(&prefix));
                proptest::prop_assert!(!u.split('/').any(|seg| seg == "." || seg == ".."));
            }
        }
    }
}
