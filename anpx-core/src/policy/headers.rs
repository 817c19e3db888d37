//! Security headers the gateway adds to responses, for services that do
//! not set their own.

/// Headers added to every proxied response when security headers are on;
/// a header the service set itself is left as it is.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-xss-protection", "0"),
];

/// Added as well when the gateway serves HTTPS: browsers then refuse plain
/// HTTP to the host for a year.
pub const HSTS: (&str, &str) = (
    "strict-transport-security",
    "max-age=31536000; includeSubDomains",
);

/// The security headers for a gateway serving `https` or not.
///
/// ```
/// use anpx_core::policy::security_headers;
/// assert!(security_headers(true).iter().any(|(n, _)| *n == "strict-transport-security"));
/// assert!(!security_headers(false).iter().any(|(n, _)| *n == "strict-transport-security"));
/// ```
pub fn security_headers(https: bool) -> Vec<(&'static str, &'static str)> {
    let mut all = SECURITY_HEADERS.to_vec();
    if https {
        all.push(HSTS);
    }
    all
}
