//! NATS subject names of the cluster.

use sha2::{Digest, Sha256};

use crate::route::ServiceUrl;

/// The subject prefix used when none is configured.
pub const DEFAULT_SUBJECT_PREFIX: &str = "anpx";

/// A subject prefix that NATS would not take as literal tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a NATS subject prefix: use dot-separated tokens of letters, digits, '-' and '_'"
)]
pub struct SubjectPrefixError(pub String);

/// The subjects of one cluster, all under one prefix so that clusters (or
/// test runs) sharing a NATS server do not hear each other.
///
/// ```
/// use anpx_core::cluster::Subjects;
/// use anpx_core::ServiceUrl;
///
/// let s = Subjects::new("anpx").unwrap();
/// assert_eq!(s.routes(), "anpx.routes");
/// assert_eq!(s.queue_group(), "anpx.gateways");
/// let url: ServiceUrl = "api.example.com/travel".parse().unwrap();
/// let same: ServiceUrl = "https://API.example.com/travel/".parse().unwrap();
/// assert_eq!(s.service(&url), s.service(&same));
/// assert!(s.service(&url).starts_with("anpx.svc."));
/// assert!(Subjects::new("a.*").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects under `prefix`.
    pub fn new(prefix: &str) -> Result<Subjects, SubjectPrefixError> {
        check_prefix(prefix)?;
        Ok(Subjects {
            prefix: prefix.to_owned(),
        })
    }

    /// Where gateways announce their routes.
    pub fn routes(&self) -> String {
        format!("{}.routes", self.prefix)
    }

    /// Where requests for `url` go: the prefix, `svc`, then the first 128
    /// bits of the SHA-256 of the normalized URL in hex. A hash, because a
    /// service URL holds characters (`/`, `*`, `.`) that subjects give
    /// meaning to.
    pub fn service(&self, url: &ServiceUrl) -> String {
        let digest = Sha256::digest(url.to_string().as_bytes());
        format!("{}.svc.{}", self.prefix, hex_prefix(&digest[..16]))
    }

    /// The queue group every gateway joins on service subjects, so that
    /// each request reaches exactly one of the gateways serving it.
    pub fn queue_group(&self) -> String {
        format!("{}.gateways", self.prefix)
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects {
            prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
        }
    }
}

/// Checks a subject prefix: non-empty dot-separated tokens of ASCII
/// letters, digits, `-` and `_` (no wildcards, no spaces, no empty token).
pub fn check_prefix(prefix: &str) -> Result<(), SubjectPrefixError> {
    let ok = prefix.len() <= 128
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(SubjectPrefixError(prefix.to_owned()))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for good in ["anpx", "a.b", "test-1_x.y"] {
            assert!(Subjects::new(good).is_ok(), "{good}");
        }
        for bad in ["", "a..b", ".a", "a.", "a b", "a.>", "*", "é"] {
            assert_eq!(
                Subjects::new(bad),
                Err(SubjectPrefixError(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn service_subjects_differ_per_url_and_prefix() {
        let a: ServiceUrl = "a.com/x".parse().unwrap();
        let b: ServiceUrl = "a.com/y".parse().unwrap();
        let s = Subjects::new("p").unwrap();
        assert_ne!(s.service(&a), s.service(&b));
        assert_ne!(s.service(&a), Subjects::new("q").unwrap().service(&a));
        // One token after `svc`, 32 hex digits.
        let last = s.service(&a).rsplit('.').next().unwrap().to_owned();
        assert_eq!(last.len(), 32);
        assert!(last.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
