//! The gateway's optional middlewares, decided here once for every shell:
//! rate limits per client address and per route, answers to cross-origin
//! requests, security response headers, and a blocklist of path patterns.
//! All are off by default so the tunnel stays transparent.
//!
//! A shell asks [`Policy::screen`] about each public request before it is
//! routed, and either answers with the [`Refusal`] or forwards the request
//! and adds the [`Decoration`]s to the response.
//!
//! ```
//! use std::time::Instant;
//! use anpx_core::policy::{Policy, PolicyConfig, PublicHead, Screen, RateConfig};
//!
//! let config = PolicyConfig {
//!     per_ip: Some(RateConfig { per_sec: 1, burst: 1 }),
//!     block_probes: true,
//!     ..PolicyConfig::default()
//! };
//! let mut policy = Policy::new(&config, false);
//! let head = |path| PublicHead { method: "GET", path, query: None, host: "a.example", origin: None,
//!     request_method: None, request_headers: None, ip: "192.0.2.1".parse().unwrap() };
//! let now = Instant::now();
//! assert!(matches!(policy.screen(&head("/"), now), Screen::Forward(_)));
//! let Screen::Refuse(r) = policy.screen(&head("/"), now) else { panic!() };
//! assert_eq!((r.status, r.retry_after_secs), (429, Some(1)));
//! ```

mod blocklist;
mod cors;
mod headers;
mod rate;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use blocklist::{Blocklist, PROBE_PATTERNS};
pub use cors::{CorsConfig, CorsVerdict, ALLOWED_METHODS};
pub use headers::{security_headers, HSTS, SECURITY_HEADERS};
pub use rate::{RateLimit, RateTable};

use crate::edge::ip_key;

/// A rate as configured: requests a second and the burst allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Sustained requests a second.
    pub per_sec: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// Default number of client addresses (and of routes) whose buckets are
/// kept; a bucket costs about 50 bytes.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Which middlewares are on, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Limit per client address (IPv6: per /64); `None` is off.
    pub per_ip: Option<RateConfig>,
    /// Limit per route (a host and the first segment of the path, e.g.
    /// `api.example.com/agents`), all clients together; `None` is off.
    pub per_route: Option<RateConfig>,
    /// Most buckets held for each limit.
    pub max_tracked: usize,
    /// Cross-origin answering.
    pub cors: CorsConfig,
    /// Add [`SECURITY_HEADERS`] (and [`HSTS`] over HTTPS) to responses.
    pub security_headers: bool,
    /// Block [`PROBE_PATTERNS`].
    pub block_probes: bool,
    /// More patterns to block (case-insensitive substrings of the decoded
    /// path or query).
    pub blocked_paths: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            per_ip: None,
            per_route: None,
            max_tracked: DEFAULT_MAX_TRACKED,
            cors: CorsConfig::default(),
            security_headers: false,
            block_probes: false,
            blocked_paths: Vec::new(),
        }
    }
}

impl PolicyConfig {
    /// Whether any middleware is on.
    pub fn enabled(&self) -> bool {
        self.per_ip.is_some()
            || self.per_route.is_some()
            || self.cors.enabled()
            || self.security_headers
            || self.block_probes
            || self.blocked_paths.iter().any(|p| !p.trim().is_empty())
    }
}

/// What the middlewares look at in a public request.
#[derive(Debug, Clone, Copy)]
pub struct PublicHead<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, percent-encoded as received.
    pub path: &'a str,
    /// The query, as received.
    pub query: Option<&'a str>,
    /// The host the request is for, without a port.
    pub host: &'a str,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Access-Control-Request-Method` header.
    pub request_method: Option<&'a str>,
    /// The `Access-Control-Request-Headers` header.
    pub request_headers: Option<&'a str>,
    /// The client's address.
    pub ip: IpAddr,
}

/// Why a request was answered by the gateway instead of forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusalReason {
    /// The client's address spent its rate (429).
    RateLimitedIp,
    /// The route spent its rate (429).
    RateLimitedRoute,
    /// The path matched the blocklist (403).
    Blocked,
    /// A preflight from an origin not allowed (403).
    CorsOrigin,
    /// A preflight from an allowed origin, answered (204): not a refusal
    /// of the request, but answered here all the same.
    Preflight,
}

impl RefusalReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [RefusalReason; 5] = [
        RefusalReason::RateLimitedIp,
        RefusalReason::RateLimitedRoute,
        RefusalReason::Blocked,
        RefusalReason::CorsOrigin,
        RefusalReason::Preflight,
    ];

    /// The label in `anpx_policy_answered_total{reason="..."}`.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::RateLimitedIp => "rate_limited_ip",
            RefusalReason::RateLimitedRoute => "rate_limited_route",
            RefusalReason::Blocked => "blocked_path",
            RefusalReason::CorsOrigin => "cors_origin_refused",
            RefusalReason::Preflight => "cors_preflight",
        }
    }

    fn index(self) -> usize {
        match self {
            RefusalReason::RateLimitedIp => 0,
            RefusalReason::RateLimitedRoute => 1,
            RefusalReason::Blocked => 2,
            RefusalReason::CorsOrigin => 3,
            RefusalReason::Preflight => 4,
        }
    }
}

/// The gateway's own answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// The status: 429, 403 or 204.
    pub status: u16,
    /// Whole seconds the client should wait (`Retry-After`), for 429.
    pub retry_after_secs: Option<u64>,
    /// Headers of the answer besides the content type (`Retry-After`,
    /// `Access-Control-*`, security headers).
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body; empty for 204.
    pub body: String,
}

/// A header to add to a forwarded request's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoration {
    /// The header name, lower case.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// Replace what the service sent (CORS, which the gateway answers for)
    /// or only fill in what it left out (security headers).
    pub replace: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Forward it; add these headers to its response.
    Forward(Vec<Decoration>),
    /// Answer it with this.
    Refuse(Refusal),
}

/// The middlewares' state: the rate tables and counts of what they answered.
#[derive(Debug, Clone)]
pub struct Policy {
    per_ip: Option<RateTable<IpAddr>>,
    per_route: Option<RateTable<String>>,
    cors: CorsConfig,
    security: Vec<(&'static str, &'static str)>,
    blocklist: Blocklist,
    answered: [u64; RefusalReason::ALL.len()],
}

fn table<K: std::hash::Hash + Eq + Clone>(
    rate: Option<RateConfig>,
    max: usize,
) -> Option<RateTable<K>> {
    rate.and_then(|r| RateLimit::new(r.per_sec, r.burst))
        .map(|limit| RateTable::new(limit, max))
}

impl Policy {
    /// The middlewares of `config`, for a gateway serving `https` or not.
    pub fn new(config: &PolicyConfig, https: bool) -> Self {
        Policy {
            per_ip: table(config.per_ip, config.max_tracked),
            per_route: table(config.per_route, config.max_tracked),
            cors: config.cors.clone(),
            security: if config.security_headers {
                security_headers(https)
            } else {
                Vec::new()
            },
            blocklist: Blocklist::new(config.block_probes, &config.blocked_paths),
            answered: [0; RefusalReason::ALL.len()],
        }
    }

    /// Decides on a request at `now`: per-address rate, blocklist, CORS
    /// preflight, per-route rate, in that order, so that a client over its
    /// rate learns nothing more and a blocked probe costs no route tokens.
    pub fn screen(&mut self, head: &PublicHead<'_>, now: Instant) -> Screen {
        if let Some(t) = self.per_ip.as_mut() {
            if let Err(wait) = t.check(ip_key(head.ip), now) {
                return self.refuse_rate(RefusalReason::RateLimitedIp, wait);
            }
        }
        if let Some(pattern) = self.blocklist.matches(head.path, head.query) {
            let body = serde_json::json!({ "error": "Forbidden", "reason": format!("path matches the blocked pattern {pattern:?}") });
            return self.refuse(
                RefusalReason::Blocked,
                403,
                None,
                Vec::new(),
                body.to_string(),
            );
        }
        let cors = self.cors.verdict(
            head.method,
            head.origin,
            head.request_method,
            head.request_headers,
        );
        let cors_headers = match cors {
            CorsVerdict::Preflight(headers) => {
                return self.refuse(RefusalReason::Preflight, 204, None, headers, String::new())
            }
            CorsVerdict::PreflightRefused => {
                let body =
                    serde_json::json!({ "error": "Forbidden", "reason": "origin not allowed" });
                return self.refuse(
                    RefusalReason::CorsOrigin,
                    403,
                    None,
                    Vec::new(),
                    body.to_string(),
                );
            }
            CorsVerdict::Allowed(headers) => headers,
            CorsVerdict::NotCors | CorsVerdict::NotAllowed => Vec::new(),
        };
        if let Some(t) = self.per_route.as_mut() {
            // The normalized path, so that other spellings of a route share
            // its bucket; one that does not normalize is refused later.
            let path = crate::forward::normalize_path(head.path);
            let path = path.as_deref().unwrap_or(head.path);
            if let Err(wait) = t.check(route_key(head.host, path), now) {
                return self.refuse_rate(RefusalReason::RateLimitedRoute, wait);
            }
        }
        let mut decorations: Vec<Decoration> = cors_headers
            .into_iter()
            .map(|(name, value)| Decoration {
                name,
                value,
                replace: true,
            })
            .collect();
        decorations.extend(self.security_decorations());
        Screen::Forward(decorations)
    }

    /// Requests answered so far, by reason.
    pub fn answered(&self) -> impl Iterator<Item = (RefusalReason, u64)> + '_ {
        RefusalReason::ALL
            .iter()
            .map(|r| (*r, self.answered[r.index()]))
    }

    fn security_decorations(&self) -> impl Iterator<Item = Decoration> + '_ {
        self.security.iter().map(|(name, value)| Decoration {
            name,
            value: (*value).to_owned(),
            replace: false,
        })
    }

    fn refuse_rate(&mut self, reason: RefusalReason, wait: Duration) -> Screen {
        // Whole seconds, rounded up, and at least 1: `Retry-After: 0`
        // would invite an immediate retry.
        let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64;
        let body = serde_json::json!({
            "error": "Too many requests",
            "reason": if reason == RefusalReason::RateLimitedIp { "rate limit of this client address" } else { "rate limit of this route" },
            "retry_after": secs,
        });
        let headers = vec![("retry-after", secs.to_string())];
        self.refuse(reason, 429, Some(secs), headers, body.to_string())
    }

    fn refuse(
        &mut self,
        reason: RefusalReason,
        status: u16,
        retry_after_secs: Option<u64>,
        mut headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Screen {
        self.answered[reason.index()] += 1;
        headers.extend(self.security_decorations().map(|d| (d.name, d.value)));
        Screen::Refuse(Refusal {
            reason,
            status,
            retry_after_secs,
            headers,
            body,
        })
    }
}

/// The key a per-route limit counts under: the host, lower case and
/// without a port, and the path's first segment.
///
/// ```
/// use anpx_core::policy::route_key;
/// assert_eq!(route_key("API.example.com:8080", "/agents/a/b"), "api.example.com/agents");
/// assert_eq!(route_key("a.example", "/"), "a.example/");
/// assert_eq!(route_key("[::1]:80", "/x"), "[::1]/x");
/// ```
pub fn route_key(host: &str, path: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => name,
        _ => host,
    };
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    format!("{}/{}", host.to_ascii_lowercase(), first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(ip: &'a str, host: &'a str, path: &'a str) -> PublicHead<'a> {
        PublicHead {
            method: "GET",
            path,
            query: None,
            host,
            origin: None,
            request_method: None,
            request_headers: None,
            ip: ip.parse().unwrap(),
        }
    }

    fn is_forward(s: &Screen) -> bool {
        matches!(s, Screen::Forward(_))
    }

    #[test]
    fn off_by_default_forwards_everything_undecorated() {
        let config = PolicyConfig::default();
        assert!(!config.enabled());
        let mut p = Policy::new(&config, true);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(
                p.screen(&head("192.0.2.1", "a", "/wp-admin/"), now),
                Screen::Forward(Vec::new())
            );
        }
        assert!(p.answered().all(|(_, n)| n == 0));
    }

    #[test]
    fn per_ip_limit_with_retry_after_in_virtual_time() {
        let config = PolicyConfig {
            per_ip: Some(RateConfig {
                per_sec: 2,
                burst: 3,
            }),
            ..PolicyConfig::default()
        };
        let mut p = Policy::new(&config, false);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(is_forward(&p.screen(&head("192.0.2.1", "a", "/"), t0)));
        }
        let Screen::Refuse(r) = p.screen(&head("192.0.2.1", "a", "/"), t0) else {
            panic!("expected 429");
        };
        assert_eq!(r.status, 429);
        assert_eq!(r.reason, RefusalReason::RateLimitedIp);
        assert_eq!(r.retry_after_secs, Some(1));
        assert!(r.headers.contains(&("retry-after", "1".into())));
        assert!(r.body.contains("retry_after"));
        // Another address is not affected; the same /64 is.
        assert!(is_forward(&p.screen(&head("192.0.2.2", "a", "/"), t0)));
        let v6 = |s| head(s, "a", "/");
        for _ in 0..3 {
            assert!(is_forward(&p.screen(&v6("2001:db8::1"), t0)));
        }
        assert!(!is_forward(&p.screen(&v6("2001:db8::2"), t0)));
        // After 500 ms one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(is_forward(&p.screen(&head("192.0.2.1", "a", "/"), t1)));
        assert!(!is_forward(&p.screen(&head("192.0.2.1", "a", "/"), t1)));
        assert_eq!(
            p.answered()
                .find(|(r, _)| *r == RefusalReason::RateLimitedIp)
                .map(|(_, n)| n),
            Some(3)
        );
        // Through the gateway that owns it, the counts reach /metrics.
        let mut gw = crate::Gateway::new(crate::GatewayConfig::default(), 1).with_policy(p);
        assert!(!is_forward(&gw.screen(t1, &head("192.0.2.1", "a", "/"))));
        assert!(gw
            .stats(t1)
            .to_prometheus()
            .contains("anpx_policy_answered_total{reason=\"rate_limited_ip\"} 4\n"));
    }

    #[test]
    fn per_route_limit_counts_all_clients_together() {
        let config = PolicyConfig {
            per_route: Some(RateConfig {
                per_sec: 1,
                burst: 2,
            }),
            ..PolicyConfig::default()
        };
        let mut p = Policy::new(&config, false);
        let t0 = Instant::now();
        assert!(is_forward(
            &p.screen(&head("192.0.2.1", "a.example", "/x/1"), t0)
        ));
        assert!(is_forward(
            &p.screen(&head("192.0.2.2", "A.example", "/x/2"), t0)
        ));
        let Screen::Refuse(r) = p.screen(&head("192.0.2.3", "a.example", "/x"), t0) else {
            panic!("expected 429");
        };
        assert_eq!((r.status, r.reason), (429, RefusalReason::RateLimitedRoute));
        // Other routes have their own budget.
        assert!(is_forward(
            &p.screen(&head("192.0.2.3", "a.example", "/y"), t0)
        ));
        assert!(is_forward(
            &p.screen(&head("192.0.2.3", "b.example", "/x"), t0)
        ));
    }

    #[test]
    fn blocklist_before_cors_and_route_limits() {
        let config = PolicyConfig {
            per_route: Some(RateConfig {
                per_sec: 1,
                burst: 1,
            }),
            block_probes: true,
            blocked_paths: vec!["/private/".into()],
            ..PolicyConfig::default()
        };
        let mut p = Policy::new(&config, false);
        let now = Instant::now();
        for path in ["/x/wp-admin/", "/x/phpmyadmin/", "/x/private/y"] {
            let Screen::Refuse(r) = p.screen(&head("192.0.2.1", "a", path), now) else {
                panic!("{path} not blocked");
            };
            assert_eq!((r.status, r.reason), (403, RefusalReason::Blocked));
        }
        // Blocked probes spent none of the route's budget of 1.
        assert!(is_forward(&p.screen(&head("192.0.2.1", "a", "/x/ok"), now)));
        assert!(!is_forward(
            &p.screen(&head("192.0.2.1", "a", "/x/ok"), now)
        ));
    }

    #[test]
    fn cors_and_security_headers() {
        let config = PolicyConfig {
            cors: CorsConfig {
                origins: vec!["https://app.example".into()],
                max_age: Duration::from_secs(5),
            },
            security_headers: true,
            ..PolicyConfig::default()
        };
        let mut p = Policy::new(&config, true);
        let now = Instant::now();
        let mut h = head("192.0.2.1", "a", "/api");
        h.origin = Some("https://app.example");
        let Screen::Forward(d) = p.screen(&h, now) else {
            panic!("expected forward");
        };
        assert!(d.iter().any(|d| d.name == "access-control-allow-origin"
            && d.value == "https://app.example"
            && d.replace));
        assert!(d
            .iter()
            .any(|d| d.name == "x-content-type-options" && !d.replace));
        assert!(d.iter().any(|d| d.name == "strict-transport-security"));
        h.method = "OPTIONS";
        h.request_method = Some("POST");
        let Screen::Refuse(r) = p.screen(&h, now) else {
            panic!("expected the preflight answer");
        };
        assert_eq!((r.status, r.reason), (204, RefusalReason::Preflight));
        assert!(r.headers.contains(&("access-control-max-age", "5".into())));
        assert!(r.headers.iter().any(|(n, _)| *n == "x-frame-options"));
        h.origin = Some("https://evil.example");
        let Screen::Refuse(r) = p.screen(&h, now) else {
            panic!("expected 403");
        };
        assert_eq!((r.status, r.reason), (403, RefusalReason::CorsOrigin));
        // Without TLS there is no HSTS.
        let mut plain = Policy::new(&config, false);
        let Screen::Forward(d) = plain.screen(&head("192.0.2.1", "a", "/"), now) else {
            panic!("expected forward");
        };
        assert!(!d.iter().any(|d| d.name == "strict-transport-security"));
        assert!(d.iter().any(|d| d.name == "x-frame-options"));
    }
}
