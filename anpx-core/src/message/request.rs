//! The request head and its `http_meta` JSON.

use serde::Deserialize;

use super::headers::{self, ordered_pairs, HeaderList};
use super::meta_scan::{once, Scan};
use super::pyjson::PyJson;
use super::query::{self, encode_pairs, flat_form_is_lossy};

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

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
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
        let mut w = PyJson::new();
        w.begin_object();
        w.entry("method", &self.method);
        w.entry("path", &self.path);
        w.key("headers");
        let repeats = headers::write_flat(&mut w, &self.headers);
        w.key("query");
        query::write_flat(&mut w, &self.query);
        if repeats {
            w.key("anpx_headers");
            w.pairs(self.headers.as_pairs());
        }
        if flat_form_is_lossy(&self.query) {
            w.entry("anpx_query", &self.query);
        }
        w.end_object();
        w.finish()
    }

    /// Parses `http_meta` JSON; unknown keys are ignored, as the reference does.
    pub fn from_meta_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let wire: WireIn = super::parse_meta(json, scan)?;
        Ok(RequestHead {
            method: wire.method,
            path: wire.path,
            query: wire.anpx_query.unwrap_or_else(|| encode_pairs(&wire.query)),
            headers: HeaderList::from_lowercased_pairs(wire.anpx_headers.unwrap_or(wire.headers)),
        })
    }
}

/// `http_meta` as both ends write it, without serde_json: `None` when it
/// is not that shape (`meta_scan`).
fn scan(text: &str) -> Option<WireIn> {
    let (mut method, mut path, mut headers, mut query) = (None, None, None, None);
    Scan::document(text, |scan, key| match key {
        "method" => once(&mut method, || scan.string()),
        "path" => once(&mut path, || scan.string()),
        "headers" => once(&mut headers, || scan.pairs()),
        "query" => once(&mut query, || scan.pairs()),
        _ => None,
    })?;
    Some(WireIn {
        method: method?,
        path: path?,
        headers: headers.unwrap_or_default(),
        query: query.unwrap_or_default(),
        anpx_headers: None,
        anpx_query: None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::super::headers::FlatHeaders;
    use super::super::pyjson::oracle::to_python_json;
    use super::super::query::FlatQuery;
    use super::*;

    /// The serde rendering `to_meta_json` replaced.
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

    fn oracle(head: &RequestHead) -> Vec<u8> {
        to_python_json(&WireOut {
            method: &head.method,
            path: &head.path,
            headers: FlatHeaders(&head.headers),
            query: FlatQuery(&head.query),
            anpx_headers: head.headers.has_repeats().then(|| head.headers.as_pairs()),
            anpx_query: flat_form_is_lossy(&head.query).then_some(head.query.as_str()),
        })
    }

    /// Text with what JSON and Python escape: quotes, backslashes, control
    /// characters, DEL, non-ASCII and characters above the BMP.
    fn text() -> impl Strategy<Value = String> {
        "[a-c\\\"\x00-\x1f\x7f é旅😀=&%+ ]{0,12}"
    }

    #[test]
    fn meta_that_is_not_utf8_is_refused_with_the_reason() {
        let json = b"{\"method\": \"GET\", \"path\": \"/\xff\"}";
        let e = RequestHead::from_meta_json(json).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let json = b"{\"method\": \"GET\", \"path\": \"/\xc3\xa9\"}";
        assert_eq!(RequestHead::from_meta_json(json).unwrap().path, "/\u{e9}");
    }

    fn http_meta() -> impl Strategy<Value = (String, bool)> {
        use super::super::meta_scan::texts::*;
        let extras = prop_oneof![
            member("method", string_value()),
            member("query", pairs_value()),
            member("anpx_query", string_value()),
            member("anpx_headers", Just(("[[\"a\", \"b\"]]".to_owned(), false))),
            member("query", Just(("null".to_owned(), false))),
            member("other", pairs_value()),
        ];
        document(
            vec![
                prop_oneof![9 => member("method", string_value()), 1 => missing()].boxed(),
                member("path", string_value()),
                optional("headers", pairs_value()),
                optional("query", pairs_value()),
            ],
            extras.boxed(),
        )
    }

    super::super::meta_scan::texts::scan_properties!(http_meta(), scan);

    proptest! {
        #[test]
        fn meta_json_is_the_serde_rendering_byte_for_byte(
            method in text(),
            path in text(),
            query in text(),
            fields in proptest::collection::vec(("[a-c]{1,2}", text()), 0..8),
        ) {
            let mut head = RequestHead::new(method, path).with_query(query);
            for (name, value) in fields {
                head = head.with_header(name, value);
            }
            let json = head.to_meta_json();
            let expected = oracle(&head);
            prop_assert_eq!(String::from_utf8_lossy(&json), String::from_utf8_lossy(&expected));
            prop_assert_eq!(RequestHead::from_meta_json(&json).unwrap(), head);
        }
    }
}
