//! The rules for forwarding HTTP through the tunnel, shared by every shell:
//! which headers stop at each hop, and the `X-Forwarded-*` headers the
//! gateway adds.

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
    let named: Vec<String> = headers
        .get_all("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    headers.retain(|name, _| !is_hop_by_hop(name) && !named.iter().any(|n| n == name));
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
pub fn request_head<'h>(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
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
    chain.push_str(&client.ip.to_string());
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

/// The response head as it goes to the public client: hop-by-hop removed.
pub fn response_head_for_client(mut head: ResponseHead) -> ResponseHead {
    strip_hop_by_hop(&mut head.headers);
    head
}

/// The `Host` a request is routed by: the `host` header, else the URI's
/// authority (HTTP/2 `:authority`).
pub fn routing_host<'a>(host_header: Option<&'a str>, authority: Option<&'a str>) -> &'a str {
    host_header.or(authority).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

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
