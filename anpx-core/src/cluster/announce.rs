//! What a gateway tells the others about itself.

use serde::{Deserialize, Serialize};

use crate::route::{ServiceUrl, ServiceUrlError};

/// Longest node name accepted.
pub const MAX_NODE_NAME: usize = 128;
/// Most service URLs one announcement may list.
pub const MAX_SERVICES: usize = 10_000;

/// A gateway's routes: "node `node` has receivers for `services`". Sent
/// periodically; an empty list withdraws the node at once (a gateway
/// shutting down says so rather than waiting to be forgotten).
///
/// ```
/// use anpx_core::cluster::Announcement;
///
/// let a = Announcement::new("gw-1", vec!["api.example.com/travel".parse().unwrap()]);
/// let bytes = a.to_json();
/// assert_eq!(bytes, br#"{"node":"gw-1","services":["api.example.com/travel"]}"#);
/// assert_eq!(Announcement::from_json(&bytes).unwrap(), a);
/// assert!(Announcement::from_json(b"{}").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The announcing gateway's node name.
    pub node: String,
    /// The service URLs its receivers serve.
    pub services: Vec<ServiceUrl>,
}

/// Why an announcement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AnnouncementError {
    /// Not the expected JSON.
    #[error("bad announcement JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The node name is empty or too long.
    #[error("bad node name (1 to {MAX_NODE_NAME} bytes): {0:?}")]
    NodeName(String),
    /// Too many service URLs.
    #[error("{0} service URLs in one announcement (at most {MAX_SERVICES})")]
    TooMany(usize),
    /// A service URL does not parse.
    #[error("bad service URL {url:?}: {source}")]
    Service {
        /// The text.
        url: String,
        /// Why.
        source: ServiceUrlError,
    },
}

#[derive(Serialize)]
struct Out<'a> {
    node: &'a str,
    services: Vec<String>,
}

#[derive(Deserialize)]
struct In {
    node: String,
    services: Vec<String>,
}

impl Announcement {
    /// An announcement of `services` by `node`.
    pub fn new(node: impl Into<String>, services: Vec<ServiceUrl>) -> Self {
        Announcement {
            node: node.into(),
            services,
        }
    }

    /// The JSON sent on the routes subject.
    pub fn to_json(&self) -> Vec<u8> {
        let out = Out {
            node: &self.node,
            services: self.services.iter().map(ToString::to_string).collect(),
        };
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// Reads an announcement; every field is checked.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AnnouncementError> {
        let raw: In = serde_json::from_slice(bytes)?;
        check_node_name(&raw.node)?;
        if raw.services.len() > MAX_SERVICES {
            return Err(AnnouncementError::TooMany(raw.services.len()));
        }
        let services = raw
            .services
            .into_iter()
            .map(|url| {
                url.parse()
                    .map_err(|source| AnnouncementError::Service { url, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Announcement {
            node: raw.node,
            services,
        })
    }
}

/// Checks a node name: 1 to [`MAX_NODE_NAME`] bytes, no control characters.
pub fn check_node_name(name: &str) -> Result<(), AnnouncementError> {
    if name.is_empty() || name.len() > MAX_NODE_NAME || name.chars().any(char::is_control) {
        return Err(AnnouncementError::NodeName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        let cases: [&[u8]; 5] = [
            b"not json",
            br#"{"node":"","services":[]}"#,
            br#"{"node":"a\u0001","services":[]}"#,
            br#"{"node":"a","services":["a.com/x?y"]}"#,
            br#"{"node":"a"}"#,
        ];
        for c in cases {
            assert!(
                Announcement::from_json(c).is_err(),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
        let many = format!(
            r#"{{"node":"a","services":[{}]}}"#,
            vec!["\"a.com\""; MAX_SERVICES + 1].join(",")
        );
        assert!(matches!(
            Announcement::from_json(many.as_bytes()),
            Err(AnnouncementError::TooMany(_))
        ));
    }

    #[test]
    fn empty_list_round_trips() {
        let a = Announcement::new("n", vec![]);
        assert_eq!(Announcement::from_json(&a.to_json()).unwrap(), a);
    }
}
