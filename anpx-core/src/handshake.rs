//! What the receiver and gateway tell each other in the WebSocket
//! handshake's HTTP headers, and how the gateway decides what to grant.

use crate::route::{ServiceUrl, ServiceUrlError};

pub use crate::features::HEADER as FEATURES_HEADER;
pub use crate::features::{negotiate, negotiate_gateway};

/// Request header: the service URLs the receiver wants to serve now.
pub const SERVICES_HEADER: &str = "x-anpx-services";
/// Response header: the service URLs the gateway granted.
pub const GRANTED_HEADER: &str = "x-anpx-granted";

/// Parses a comma-separated list of service URLs.
///
/// ```
/// use anpx_core::handshake::parse_services;
/// let s = parse_services("api.agent.com/a, *").unwrap();
/// assert_eq!(s.len(), 2);
/// assert!(parse_services("").unwrap().is_empty());
/// ```
pub fn parse_services(value: &str) -> Result<Vec<ServiceUrl>, ServiceUrlError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// Writes a list of service URLs as a header value.
pub fn format_services(services: &[ServiceUrl]) -> String {
    services
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when `inner` is `outer` or lies under it: same host (or `outer`'s
/// host is the wildcard) and `outer`'s path a segment prefix of `inner`'s.
pub fn covers(outer: &ServiceUrl, inner: &ServiceUrl) -> bool {
    let host_ok = match (outer.host(), inner.host()) {
        (None, _) => true,
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
    };
    host_ok && inner.segments().starts_with(outer.segments())
}

/// What a receiver is granted.
///
/// `allowed` is what its identity may serve (from the registry), or `None`
/// in open mode, where anything declared is taken as declared. Declaring
/// nothing asks for everything allowed; in open mode, for every host and path.
///
/// ```
/// use anpx_core::handshake::grant;
/// use anpx_core::ServiceUrl;
/// let u = |s: &str| s.parse::<ServiceUrl>().unwrap();
/// let allowed = [u("api.agent.com/a")];
/// assert_eq!(grant(&[u("api.agent.com/a/b"), u("other.com")], Some(&allowed)), [u("api.agent.com/a/b")]);
/// assert_eq!(grant(&[], Some(&allowed)), allowed);
/// assert_eq!(grant(&[], None), [u("*")]);
/// ```
pub fn grant(declared: &[ServiceUrl], allowed: Option<&[ServiceUrl]>) -> Vec<ServiceUrl> {
    match (declared.is_empty(), allowed) {
        // `*` always parses; the iterator form avoids a panic path all the same.
        (true, None) => "*".parse::<ServiceUrl>().into_iter().collect(),
        (false, None) => dedup(declared.to_vec()),
        (true, Some(allowed)) => dedup(allowed.to_vec()),
        (false, Some(allowed)) => dedup(
            declared
                .iter()
                .filter(|d| allowed.iter().any(|a| covers(a, d)))
                .cloned()
                .collect(),
        ),
    }
}

fn dedup(mut v: Vec<ServiceUrl>) -> Vec<ServiceUrl> {
    let mut seen = Vec::with_capacity(v.len());
    v.retain(|u| {
        if seen.contains(u) {
            false
        } else {
            seen.push(u.clone());
            true
        }
    });
    v
}
