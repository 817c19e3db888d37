//! The public edge's middlewares (rate limits, blocklist, CORS, security
//! headers), owned by the gateway machine like everything else a request
//! meets before a receiver: one lock and one snapshot for all of it.

use std::time::Instant;

use crate::policy::{Policy, PublicHead, Screen};

use super::Gateway;

impl Gateway {
    /// This gateway, screening public requests with `policy` before they
    /// are routed (none by default).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The middlewares' verdict at `now` on a public request, before it
    /// is routed: forward it (with headers to add to its response) or
    /// answer it here. A gateway without a policy forwards everything.
    ///
    /// ```
    /// use std::time::Instant;
    /// use anpx_core::policy::{Policy, PolicyConfig, PublicHead, Screen};
    /// use anpx_core::{Gateway, GatewayConfig};
    ///
    /// let config = PolicyConfig { block_probes: true, ..PolicyConfig::default() };
    /// let mut gw = Gateway::new(GatewayConfig::default(), 1).with_policy(Policy::new(&config, false));
    /// let head = |path| PublicHead {
    ///     method: "GET", path, query: None, host: "api.agent.com", origin: None,
    ///     request_method: None, request_headers: None, ip: "192.0.2.1".parse().unwrap(),
    /// };
    /// let now = Instant::now();
    /// assert!(matches!(gw.screen(now, &head("/hello")), Screen::Forward(_)));
    /// let Screen::Refuse(r) = gw.screen(now, &head("/.env")) else { panic!("a probe") };
    /// assert_eq!(r.status, 403);
    /// ```
    pub fn screen(&mut self, now: Instant, head: &PublicHead<'_>) -> Screen {
        match self.policy.as_mut() {
            Some(policy) => policy.screen(head, now),
            None => Screen::Forward(Vec::new()),
        }
    }

    /// What the middlewares answered themselves, by reason; `None` with
    /// no policy.
    pub(super) fn policy_answered(&self) -> Option<Vec<(String, u64)>> {
        self.policy.as_ref().map(|p| {
            p.answered()
                .map(|(reason, n)| (reason.label().to_owned(), n))
                .collect()
        })
    }
}
