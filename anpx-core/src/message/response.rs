//! The response head and its `resp_meta` JSON.

use serde::de::Error as _;
use serde::{Deserialize, Serialize};

use super::headers::{ordered_pairs, FlatHeaders, HeaderList};
use super::pyjson::to_python_json;

/// Status, reason phrase and headers of an HTTP response.
///
/// On the wire: the reference's `resp_meta` (`{"status", "reason",
/// "headers"}`) plus `anpx_headers` when repeated headers (such as
/// `set-cookie`) would otherwise be merged.
///
/// ```
/// use anpx_core::ResponseHead;
/// let head = ResponseHead::new(200)
///     .with_header("set-cookie", "a=1")
///     .with_header("set-cookie", "b=2");
/// let back = ResponseHead::from_meta_json(&head.to_meta_json()).unwrap();
/// assert_eq!(back.headers.get_all("set-cookie").count(), 2);
/// assert_eq!(back.reason, "OK");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code, 100..=999.
    pub status: u16,
    /// Reason phrase; may be empty.
    pub reason: String,
    /// Header fields, in order, repeats kept.
    pub headers: HeaderList,
}

#[derive(Serialize)]
struct WireOut<'a> {
    status: u16,
    reason: &'a str,
    headers: FlatHeaders<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anpx_headers: Option<&'a [(String, String)]>,
}

#[derive(Deserialize)]
struct WireIn {
    status: u16,
    #[serde(default)]
    reason: String,
    #[serde(default, deserialize_with = "ordered_pairs")]
    headers: Vec<(String, String)>,
    #[serde(default)]
    anpx_headers: Option<Vec<(String, String)>>,
}

impl ResponseHead {
    /// A head with the status's canonical reason phrase and no headers.
    pub fn new(status: u16) -> Self {
        ResponseHead {
            status,
            reason: canonical_reason(status).to_owned(),
            headers: HeaderList::new(),
        }
    }

    /// Appends a header field.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// The `resp_meta` JSON, byte-identical to the reference's when no
    /// header repeats.
    pub fn to_meta_json(&self) -> Vec<u8> {
        to_python_json(&WireOut {
            status: self.status,
            reason: &self.reason,
            headers: FlatHeaders(&self.headers),
            anpx_headers: self.headers.has_repeats().then(|| self.headers.as_pairs()),
        })
    }

    /// Parses `resp_meta` JSON; unknown keys are ignored, `headers` may be absent.
    pub fn from_meta_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let wire: WireIn = serde_json::from_slice(json)?;
        if !(100..=999).contains(&wire.status) {
            return Err(serde_json::Error::custom(format_args!(
                "status {} is not a three-digit HTTP status",
                wire.status
            )));
        }
        Ok(ResponseHead {
            status: wire.status,
            reason: wire.reason,
            headers: HeaderList::from_lowercased_pairs(wire.anpx_headers.unwrap_or(wire.headers)),
        })
    }
}

/// The standard reason phrase of a status code, or `""` for an unregistered one.
pub fn canonical_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("")
}
