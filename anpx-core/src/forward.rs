//! The rules for forwarding HTTP through the tunnel, shared by every shell:
//! which headers stop at each hop, and the `X-Forwarded-*` headers the
//! gateway adds.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::message::{HeaderList, RequestHead, ResponseHead};

/// Headers that describe one connection and must not be forwarded
/// (RFC 9110 §7.6.1), plus `host`-independent framing headers the next hop
/// recomputes.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// True when `name` (any case) is hop-by-hop.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderList) {
    // Copied out because `retain` changes the list they borrow from; the
    // usual tokens (`keep-alive`, `upgrade`) are hop-by-hop already and
    // copy nothing.
    let named: Vec<String> = headers
        .get_all("connection")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !is_hop_by_hop(t))
        .map(str::to_owned)
        .collect();
    headers.retain(|name, _| {
        !is_hop_by_hop(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name))
    });
}

/// Where a public request came from, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// `http` or `https`: how the client reached the gateway.
    pub scheme: &'a str,
    /// The port the client connected to.
    pub local_port: u16,
}

/// Builds the head sent to the receiver from a public request: hop-by-hop
/// headers removed, `x-forwarded-for` appended to, `x-forwarded-proto`,
/// `x-forwarded-host` and `x-forwarded-port` (the reference's) set.
///
/// ```
/// use anpx_core::forward::{request_head, ClientInfo};
/// let client = ClientInfo { ip: "203.0.113.9".parse().unwrap(), scheme: "https", local_port: 443 };
/// let head = request_head("GET", "/a", Some("x=1"), [("Host", "api.agent.com"), ("Connection", "close")], &client);
/// assert_eq!(head.headers.get("x-forwarded-for"), Some("203.0.113.9"));
/// assert_eq!(head.headers.get("x-forwarded-host"), Some("api.agent.com"));
/// assert_eq!(head.headers.get("connection"), None);
/// assert_eq!(head.query, "x=1");
/// ```
///
/// Headers given as owned `String`s are moved into the head, not copied.
pub fn request_head<N: Into<String>, V: Into<String>>(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: impl IntoIterator<Item = (N, V)>,
    client: &ClientInfo<'_>,
) -> RequestHead {
    let mut list: HeaderList = headers.into_iter().collect();
    strip_hop_by_hop(&mut list);
    let host = list.get("host").map(str::to_owned);
    let prior_for: Vec<String> = list.get_all("x-forwarded-for").map(str::to_owned).collect();
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
    ] {
        list.remove(name);
    }
    let mut chain = prior_for.join(", ");
    if !chain.is_empty() {
        chain.push_str(", ");
    }
    crate::push_ip(&mut chain, client.ip);
    list.push("x-forwarded-for", chain);
    list.push("x-forwarded-proto", client.scheme);
    if let Some(host) = host {
        list.push("x-forwarded-host", host);
    }
    list.push("x-forwarded-port", client.local_port.to_string());
    RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.unwrap_or_default().to_owned(),
        headers: list,
    }
}

/// Characters that cannot stand in a request-target's path as they are.
/// `%` is left alone: a path from an anpx gateway is still percent-encoded,
/// and re-encoding its escapes would change it.
const PATH_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'\\')
    .add(b'^');

/// The request-target for the upstream: the path with anything a URI cannot
/// carry percent-encoded, then the query. The reference gateway sends the
/// *decoded* path (`/agents/旅行`), so non-ASCII and reserved characters
/// must be encoded again before the request line is written.
///
/// ```
/// use anpx_core::{forward::upstream_target, RequestHead};
/// let head = RequestHead::new("GET", "/agents/旅行 x").with_query("a=1");
/// assert_eq!(upstream_target(&head), "/agents/%E6%97%85%E8%A1%8C%20x?a=1");
/// ```
pub fn upstream_target(head: &RequestHead) -> String {
    let path: std::borrow::Cow<'_, str> =
        percent_encoding::utf8_percent_encode(&head.path, PATH_UNSAFE).into();
    let path = if path.is_empty() { "/".into() } else { path };
    if head.query.is_empty() {
        path.into_owned()
    } else {
        format!("{path}?{}", head.query)
    }
}

/// Why a request path is refused with 400 before routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (`OPTIONS *`, or a relative path).
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape at byte {0}")]
    BadEscape(usize),
    /// `%2F` or `%5C`: a separator the upstream may decode into a segment
    /// boundary the route table never saw.
    #[error("encoded path separator {0}")]
    EncodedSeparator(&'static str),
    /// A NUL byte, raw or as `%00`.
    #[error("NUL in the path")]
    Nul,
    /// A control character, a backslash, or `?`/`#` inside the path itself.
    #[error("forbidden character {0:?} in the path")]
    ForbiddenChar(char),
    /// A `..` segment with nothing left to remove.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// A `.` or `..` segment with `;` parameters, which some servers
    /// (Java servlet containers) resolve as a dot segment.
    #[error("dot segment with parameters {0:?}")]
    DotSegmentWithParams(String),
}

/// The one spelling of a request path that the gateway both routes and
/// forwards, so a request can never reach a service URL other than the one
/// it matched:
///
/// - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
///   decoded, every other escape is kept with upper-case hex digits;
/// - `.` and `..` segments are resolved (RFC 3986 §5.2.4); a `..` that would
///   climb above the root is refused rather than dropped;
/// - empty segments (`//`) are removed, since routing ignores them too;
///   a trailing `/` is kept;
/// - `%2F`, `%5C`, NUL, control characters, a backslash, `?` and `#` are
///   refused, as are dot segments carrying `;` parameters (`..;`);
/// - anything else (non-ASCII text included) is left as sent.
///
/// Normalizing a normalized path changes nothing.
///
/// ```
/// use anpx_core::forward::{normalize_path, PathError};
/// assert_eq!(normalize_path("/a/./b/../c//d/").unwrap(), "/a/c/d/");
/// assert_eq!(normalize_path("/%7euser/%2e%2E/x%2a").unwrap(), "/x%2A");
/// assert_eq!(normalize_path("/a/..%2f..%2fetc"), Err(PathError::EncodedSeparator("%2F")));
/// assert_eq!(normalize_path("/a/../../etc"), Err(PathError::AboveRoot));
/// ```
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Almost every path a gateway sees is already in its one spelling;
    // taken as it is, it costs one pass and no allocation.
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    resolve(raw).map(Cow::Owned)
}

/// True when `raw` (which starts with `/`) is its own normal form, by a
/// rule stricter than [`normalize_path`]'s: printable ASCII without `%`,
/// `\`, `?` or `#`, no empty segment before the last, and no segment that
/// starts with `.`. A path that fails it is resolved the long way.
fn is_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let plain = bytes.iter().fold(true, |ok, &b| {
        ok & (0x21..0x7f).contains(&b) & !matches!(b, b'%' | b'\\' | b'?' | b'#')
    });
    plain
        && !bytes
            .windows(2)
            .any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'))
}

/// [`normalize_path`] for a path that is not already normal.
fn resolve(raw: &str) -> Result<String, PathError> {
    let decoded = decode_unreserved(raw)?;
    let mut kept: Vec<&str> = Vec::new();
    // Whether the result ends with `/`: after a trailing empty segment, or
    // after a final `.` or `..` (RFC 3986 keeps the slash for those).
    let mut trailing = false;
    for seg in decoded.split('/').skip(1) {
        trailing = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => {
                let name = seg.split(';').next().unwrap_or(seg);
                if name == "." || name == ".." {
                    return Err(PathError::DotSegmentWithParams(seg.to_owned()));
                }
                kept.push(seg);
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The path with unreserved escapes decoded, other escapes upper-cased, and
/// the characters [`normalize_path`] refuses refused.
fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '%' => {
                let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(PathError::BadEscape(i));
                };
                // Both digits are ASCII, so skipping two chars skips them.
                chars.next();
                chars.next();
                let value = (hi * 16 + lo) as u8;
                match value {
                    0 => return Err(PathError::Nul),
                    b'/' => return Err(PathError::EncodedSeparator("%2F")),
                    b'\\' => return Err(PathError::EncodedSeparator("%5C")),
                    v if is_unreserved(v) => out.push(v as char),
                    v => {
                        out.push('%');
                        out.push(char::from(HEX_UPPER[usize::from(v >> 4)]));
                        out.push(char::from(HEX_UPPER[usize::from(v & 0xF)]));
                    }
                }
            }
            '\0' => return Err(PathError::Nul),
            '\\' | '?' | '#' => return Err(PathError::ForbiddenChar(c)),
            c if c.is_ascii_control() => return Err(PathError::ForbiddenChar(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The response head as it goes to the public client: hop-by-hop removed.
pub fn response_head_for_client(mut head: ResponseHead) -> ResponseHead {
    strip_hop_by_hop(&mut head.headers);
    head
}

/// The host a request is routed by: the target's authority (an
/// absolute-form target, HTTP/2 `:authority`) when it has one, else the
/// `host` header (RFC 9112 §3.2.2, RFC 9113 §8.3.1).
pub fn routing_host<'a>(host_header: Option<&'a str>, authority: Option<&'a str>) -> &'a str {
    authority.or(host_header).unwrap_or("")
}

/// Why a request's host is refused with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// An HTTP/1.1 (or HTTP/2) request naming no host at all.
    #[error("the request names no host")]
    Missing,
    /// More than one `Host` header.
    #[error("several Host headers")]
    Several,
    /// A host that is not `host[:port]`.
    #[error("{0:?} is not a valid host[:port]")]
    Invalid(String),
}

/// The one host a public request is for, checked: what routing uses and
/// what the receiver gets as `host`. `hosts` are the request's `Host`
/// header values, `authority` the target's (absolute-form, HTTP/2
/// `:authority`), `http10` whether the request is HTTP/1.0 (which may
/// name no host; it then gets `Ok("")`, which no route serves).
///
/// The authority wins over the header; a request with neither (HTTP/1.1
/// and HTTP/2), several `Host` headers, or a host that is not a valid
/// `host[:port]` (RFC 3986 §3.2.2; no user info, a port of at most 65535)
/// is refused.
///
/// ```
/// use anpx_core::forward::{request_host, HostError};
/// assert_eq!(request_host(&["b.example"], Some("a.example"), false), Ok("a.example".into()));
/// assert_eq!(request_host(&["a.example:8080"], None, false), Ok("a.example:8080".into()));
/// assert_eq!(request_host(&[], None, false), Err(HostError::Missing));
/// assert_eq!(request_host(&["a", "b"], None, false), Err(HostError::Several));
/// assert!(request_host(&["a b"], None, false).is_err());
/// ```
pub fn request_host(
    hosts: &[&str],
    authority: Option<&str>,
    http10: bool,
) -> Result<String, HostError> {
    if hosts.len() > 1 {
        return Err(HostError::Several);
    }
    let chosen = match (authority, hosts.first()) {
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) if http10 => return Ok(String::new()),
        (None, None) => return Err(HostError::Missing),
    };
    if !valid_host(chosen) {
        return Err(HostError::Invalid(chosen.to_owned()));
    }
    if let (Some(_), Some(h)) = (authority, hosts.first()) {
        // Ignored for routing, but still never a malformed header.
        if !valid_host(h) {
            return Err(HostError::Invalid((*h).to_owned()));
        }
    }
    Ok(chosen.to_owned())
}

/// `host[:port]`: an IP literal in brackets, or a reg-name (unreserved,
/// sub-delims and percent-escapes); a port of digits up to 65535.
fn valid_host(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        match after {
            "" => (literal, None),
            p => match p.strip_prefix(':') {
                Some(port) => (literal, Some(port)),
                None => return false,
            },
        }
    } else {
        let (host, port) = match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
        if host.is_empty() || !host.bytes().all(reg_name) {
            return false;
        }
        (host, port)
    };
    let _ = host;
    match port {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 65535)
        }
    }
}

/// True for a header name with an underscore. CGI and WSGI origins see
/// `Content_Length` and `Content-Length` as the same variable
/// (`HTTP_CONTENT_LENGTH`), so a client could pass framing or identity
/// headers past the gateway under another spelling; like nginx, the
/// gateway drops them unless told to keep them.
pub fn has_underscore(name: &str) -> bool {
    name.contains('_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_normalize_to_one_spelling() {
        let ok = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("//a///b//", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/%61%62c", "/abc"),
            ("/%7e%2D%5f%2E", "/~-_."),
            ("/x%2a%3b%20", "/x%2A%3B%20"),
            ("/%252F", "/%252F"),
            ("/%E6%97%85", "/%E6%97%85"),
            ("/旅行", "/旅行"),
            ("/a;b/c", "/a;b/c"),
            ("/...", "/..."),
            ("/.../..", "/"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw:?}");
        }
        let refused = [
            ("a/b", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/a%2fb", PathError::EncodedSeparator("%2F")),
            ("/a%2Fb", PathError::EncodedSeparator("%2F")),
            ("/a%5cb", PathError::EncodedSeparator("%5C")),
            ("/a\\b", PathError::ForbiddenChar('\\')),
            ("/a%00", PathError::Nul),
            ("/a\0", PathError::Nul),
            ("/a\n", PathError::ForbiddenChar('\n')),
            ("/a?b", PathError::ForbiddenChar('?')),
            ("/a#b", PathError::ForbiddenChar('#')),
            ("/a%", PathError::BadEscape(2)),
            ("/a%4", PathError::BadEscape(2)),
            ("/a%zz", PathError::BadEscape(2)),
            ("/a%é0", PathError::BadEscape(2)),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            (
                "/a/..;/admin",
                PathError::DotSegmentWithParams("..;".into()),
            ),
            ("/a/.;x/b", PathError::DotSegmentWithParams(".;x".into())),
        ];
        for (raw, want) in refused {
            assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn a_normal_path_is_taken_without_a_copy() {
        for raw in ["/", "/small", "/api/v1/items/", "/a;b/c~d", "/a.b/c..d"] {
            assert!(
                matches!(normalize_path(raw), Ok(Cow::Borrowed(p)) if p == raw),
                "{raw:?}"
            );
        }
        for raw in ["/a//b", "/.well-known/x", "/a/./b", "/%41", "/旅行", "/a b"] {
            assert!(matches!(normalize_path(raw), Ok(Cow::Owned(_))), "{raw:?}");
        }
    }

    /// Path pieces chosen to collide: dot segments spelled every way,
    /// escapes of unreserved and reserved characters, empty segments.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a",
            "b",
            "api",
            "v1",
            "",
            ".",
            "..",
            "%2e",
            "%2E%2e",
            ".%2e",
            "%41",
            "%7e",
            "%2a",
            "%2A",
            "%25",
            "%252e",
            "x;y",
            "é",
            "%E6%97%85",
            "...",
        ])
    }

    fn raw_path() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..8).prop_map(|p| format!("/{}", p.join("/")))
    }

    /// An independent model of "climbs above the root": decode only the
    /// dot escapes, walk the segments with a depth counter.
    fn climbs(raw: &str) -> bool {
        let decoded = raw.replace("%2e", ".").replace("%2E", ".");
        let mut depth = 0i32;
        for seg in decoded.split('/').skip(1) {
            match seg {
                "" | "." => {}
                ".." => {
                    depth -= 1;
                    if depth < 0 {
                        return true;
                    }
                }
                _ => depth += 1,
            }
        }
        false
    }

    proptest! {
        /// The shortcut takes only paths the long way leaves as they are.
        #[test]
        fn a_path_taken_as_normal_is_what_resolving_gives(
            raw in prop_oneof![raw_path(), "/[a-z./;%~?#\\\\ \u{7f}\u{e9}-]{0,12}"],
        ) {
            if is_normal(&raw) {
                prop_assert_eq!(resolve(&raw), Ok(raw.clone()));
            }
        }

        #[test]
        fn normalizing_is_idempotent(raw in raw_path()) {
            if let Ok(once) = normalize_path(&raw) {
                prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
            }
        }

        #[test]
        fn normalized_paths_never_climb_above_the_root(raw in raw_path()) {
            match normalize_path(&raw) {
                Ok(p) => {
                    prop_assert!(!climbs(&raw), "{} became {}", raw, p);
                    prop_assert!(p.starts_with('/'));
                    prop_assert!(!p.contains("//"), "{}", p);
                    for seg in p.split('/') {
                        prop_assert!(seg != "." && seg != "..", "{}", p);
                    }
                }
                Err(PathError::AboveRoot) => prop_assert!(climbs(&raw), "{}", raw),
                Err(_) => {}
            }
        }

        /// Routing sees exactly the segments forwarded: the route chosen
        /// for a normalized path is the longest registered prefix of its
        /// segments, so no request reaches a service it did not match.
        #[test]
        fn normalized_paths_route_by_the_segments_they_forward(
            routes in prop::collection::vec(prop::collection::vec(piece(), 0..4), 1..6),
            raw in raw_path(),
        ) {
            let mut table = crate::route::RouteTable::new();
            let mut registered: Vec<Vec<String>> = Vec::new();
            for (i, segs) in routes.iter().enumerate() {
                let raw_prefix = format!("/{}", segs.join("/"));
                let Ok(prefix) = normalize_path(&raw_prefix) else { continue };
                let Ok(url) = format!("h{prefix}").parse::<crate::route::ServiceUrl>() else { continue };
                table.insert(&url, i);
                registered.push(url.segments().to_vec());
            }
            let Ok(path) = normalize_path(&raw) else { return Ok(()) };
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let is_prefix = |r: &Vec<String>| r.len() <= segs.len() && r.iter().zip(&segs).all(|(a, b)| a == b);
            let longest = registered.iter().filter(|r| is_prefix(r)).map(Vec::len).max();
            let hit = table.lookup("h", &path);
            prop_assert_eq!(hit.map(|m| m.url.segments().len()), longest);
            if let Some(m) = hit {
                prop_assert!(is_prefix(&m.url.segments().to_vec()));
            }
        }
    }

    #[test]
    fn connection_named_headers_are_stripped_too() {
        let mut h: HeaderList = [
            ("Connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("x-kept", "2"),
            ("TE", "trailers"),
        ]
        .into_iter()
        .collect();
        strip_hop_by_hop(&mut h);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("x-kept", "2")]);
    }

    #[test]
    fn connection_tokens_name_headers_in_any_case() {
        let mut h: HeaderList = [
            ("connection", "x-secret, Close"),
            ("X-Secret", "1"),
            ("CLOSE", "odd, but named"),
            ("X-Kept", "2"),
        ]
        .into_iter()
        .collect();
        strip_hop_by_hop(&mut h);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("x-kept", "2")]);
    }

    #[test]
    fn forwarded_for_chain_is_extended_and_spoofed_proto_replaced() {
        let client = ClientInfo {
            ip: "10.0.0.1".parse().unwrap(),
            scheme: "http",
            local_port: 8080,
        };
        let head = request_head(
            "GET",
            "/",
            None,
            [
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-proto", "https"),
                ("host", "h"),
            ],
            &client,
        );
        assert_eq!(
            head.headers.get("x-forwarded-for"),
            Some("1.1.1.1, 10.0.0.1")
        );
        assert_eq!(
            head.headers
                .get_all("x-forwarded-proto")
                .collect::<Vec<_>>(),
            ["http"]
        );
        assert_eq!(head.headers.get("x-forwarded-port"), Some("8080"));
    }
}
