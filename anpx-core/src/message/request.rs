//! The request head and its `http_meta` JSON.

use serde::{Deserialize, Serialize};

use super::headers::{ordered_pairs, FlatHeaders, HeaderList};
use super::pyjson::to_python_json;
use super::query::{encode_pairs, flat_form_is_lossy, FlatQuery};

/// Method, path, query and headers of an HTTP request.
///
/// On the wire this is the reference's `http_meta` object
/// (`{"method", "path", "headers", "query"}`) plus two keys the reference
/// ignores, written only when its flat objects would lose something:
/// `anpx_headers` (every header pair in order) and `anpx_query` (the raw
/// query string). See `docs/PROTOCOL.md`.
///
/// ```
/// use anpx_core::RequestHead;
/// let head = RequestHead::new("GET", "/search").with_query("tag=a&tag=b");
/// let json = head.to_meta_json();
/// let back = RequestHead::from_meta_json(&json).unwrap();
/// assert_eq!(back, head);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The raw query string, without the `?`; empty when there is none.
    pub query: String,
    /// Header fields, in order, repeats kept.
    pub headers: HeaderList,
}

#[derive(Serialize)]
struct WireOut<'a> {
    method: &'a str,
    path: &'a str,
    headers: FlatHeaders<'a>,
    query: FlatQuery<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anpx_headers: Option<&'a [(String, String)]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anpx_query: Option<&'a str>,
}

#[derive(Deserialize)]
struct WireIn {
    method: String,
    path: String,
    #[serde(default, deserialize_with = "ordered_pairs")]
    headers: Vec<(String, String)>,
    #[serde(default, deserialize_with = "ordered_pairs")]
    query: Vec<(String, String)>,
    #[serde(default)]
    anpx_headers: Option<Vec<(String, String)>>,
    #[serde(default)]
    anpx_query: Option<String>,
}

impl RequestHead {
    /// A head with no query and no headers.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        RequestHead {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: HeaderList::new(),
        }
    }

    /// Sets the raw query string (without `?`).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// Appends a header field.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// `path?query`, or just the path when the query is empty.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The `http_meta` JSON, byte-identical to the reference's when nothing
    /// needs the lossless extras.
    pub fn to_meta_json(&self) -> Vec<u8> {
        to_python_json(&WireOut {
            method: &self.method,
            path: &self.path,
            headers: FlatHeaders(&self.headers),
            query: FlatQuery(&self.query),
            anpx_headers: self.headers.has_repeats().then(|| self.headers.as_pairs()),
            anpx_query: flat_form_is_lossy(&self.query).then_some(self.query.as_str()),
        })
    }

    /// Parses `http_meta` JSON; unknown keys are ignored, as the reference does.
    pub fn from_meta_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let wire: WireIn = serde_json::from_slice(json)?;
        Ok(RequestHead {
            method: wire.method,
            path: wire.path,
            query: wire.anpx_query.unwrap_or_else(|| encode_pairs(&wire.query)),
            headers: HeaderList::from_lowercased_pairs(wire.anpx_headers.unwrap_or(wire.headers)),
        })
    }
}
