//! Cross-origin requests for chosen origins: the gateway answers browsers'
//! preflight `OPTIONS` itself and labels responses with the
//! `Access-Control-*` headers, so services behind the tunnel need not.

use std::time::Duration;

/// Methods a preflight is told are allowed.
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

/// Which origins may make cross-origin requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins as browsers send them (`https://app.example.com`),
    /// or `*` for any. Empty turns CORS answering off.
    pub origins: Vec<String>,
    /// How long browsers may cache a preflight answer.
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            origins: Vec::new(),
            max_age: Duration::from_secs(600),
        }
    }
}

/// What CORS makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsVerdict {
    /// Not a cross-origin request, or CORS answering is off: nothing to do.
    NotCors,
    /// A preflight from an allowed origin: answer 204 with these headers.
    Preflight(Vec<(&'static str, String)>),
    /// A preflight from an origin not allowed: answer 403.
    PreflightRefused,
    /// A cross-origin request from an allowed origin: forward it and add
    /// these headers to the response.
    Allowed(Vec<(&'static str, String)>),
    /// A cross-origin request from an origin not allowed: forward it
    /// unlabelled, so the browser withholds the response from the page.
    NotAllowed,
}

impl CorsConfig {
    /// Whether CORS answering is on.
    pub fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    fn allows(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The verdict on a request with `method`, its `Origin` header, and its
    /// `Access-Control-Request-Method` and `-Headers` headers.
    ///
    /// ```
    /// use anpx_core::policy::{CorsConfig, CorsVerdict};
    /// let cors = CorsConfig { origins: vec!["https://app.example".into()], ..CorsConfig::default() };
    /// let v = cors.verdict("OPTIONS", Some("https://app.example"), Some("PUT"), Some("x-token"));
    /// let CorsVerdict::Preflight(headers) = v else { panic!() };
    /// assert!(headers.contains(&("access-control-allow-origin", "https://app.example".into())));
    /// assert!(headers.contains(&("access-control-allow-headers", "x-token".into())));
    /// assert_eq!(cors.verdict("OPTIONS", Some("https://evil.example"), Some("PUT"), None), CorsVerdict::PreflightRefused);
    /// assert_eq!(cors.verdict("GET", None, None, None), CorsVerdict::NotCors);
    /// ```
    pub fn verdict(
        &self,
        method: &str,
        origin: Option<&str>,
        request_method: Option<&str>,
        request_headers: Option<&str>,
    ) -> CorsVerdict {
        let Some(origin) = origin.filter(|_| self.enabled()) else {
            return CorsVerdict::NotCors;
        };
        let preflight = method.eq_ignore_ascii_case("OPTIONS") && request_method.is_some();
        if !self.allows(origin) {
            return if preflight {
                CorsVerdict::PreflightRefused
            } else {
                CorsVerdict::NotAllowed
            };
        }
        // The origin is echoed rather than `*` so that a response varies
        // by origin only as `Vary` says.
        let mut headers = vec![
            ("access-control-allow-origin", origin.to_owned()),
            ("vary", "Origin".to_owned()),
        ];
        if preflight {
            headers.push(("access-control-allow-methods", ALLOWED_METHODS.to_owned()));
            if let Some(h) = request_headers.filter(|h| !h.trim().is_empty()) {
                headers.push(("access-control-allow-headers", h.to_owned()));
            }
            headers.push(("access-control-max-age", self.max_age.as_secs().to_string()));
            CorsVerdict::Preflight(headers)
        } else {
            CorsVerdict::Allowed(headers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            origins: origins.iter().map(|s| s.to_string()).collect(),
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn off_by_default() {
        let c = CorsConfig::default();
        assert!(!c.enabled());
        assert_eq!(
            c.verdict("OPTIONS", Some("https://a"), Some("GET"), None),
            CorsVerdict::NotCors
        );
    }

    #[test]
    fn preflight_for_an_allowed_origin() {
        let c = cors(&["https://a.example", "https://b.example"]);
        let CorsVerdict::Preflight(h) =
            c.verdict("OPTIONS", Some("https://B.example"), Some("DELETE"), None)
        else {
            panic!("expected a preflight answer");
        };
        assert_eq!(
            h[0],
            ("access-control-allow-origin", "https://B.example".into())
        );
        assert!(h.contains(&("access-control-max-age", "60".into())));
        assert!(h.contains(&("access-control-allow-methods", ALLOWED_METHODS.into())));
        assert!(!h.iter().any(|(n, _)| *n == "access-control-allow-headers"));
    }

    #[test]
    fn wildcard_and_refusals() {
        let any = cors(&["*"]);
        assert!(matches!(
            any.verdict("POST", Some("https://x"), None, None),
            CorsVerdict::Allowed(_)
        ));
        let one = cors(&["https://a"]);
        assert_eq!(
            one.verdict("POST", Some("https://x"), None, None),
            CorsVerdict::NotAllowed
        );
        // OPTIONS without Access-Control-Request-Method is an ordinary
        // request, forwarded.
        assert!(matches!(
            one.verdict("OPTIONS", Some("https://a"), None, None),
            CorsVerdict::Allowed(_)
        ));
        assert_eq!(one.verdict("GET", None, None, None), CorsVerdict::NotCors);
    }
}
