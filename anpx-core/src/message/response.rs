//! The response head and its `resp_meta` JSON.

use serde::de::Error as _;
use serde::Deserialize;

use super::headers::{self, ordered_pairs, HeaderList};
use super::meta_scan::{once, Scan};
use super::pyjson::PyJson;

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

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
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
        let mut w = PyJson::new();
        w.begin_object();
        w.key("status");
        w.number(self.status);
        w.entry("reason", &self.reason);
        w.key("headers");
        if headers::write_flat(&mut w, &self.headers) {
            w.key("anpx_headers");
            w.pairs(self.headers.as_pairs());
        }
        w.end_object();
        w.finish()
    }

    /// Parses `resp_meta` JSON; unknown keys are ignored, `headers` may be absent.
    pub fn from_meta_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let wire: WireIn = super::parse_meta(json, scan)?;
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

/// `resp_meta` as both ends write it, without serde_json: `None` when it
/// is not that shape (`meta_scan`).
fn scan(text: &str) -> Option<WireIn> {
    let (mut status, mut reason, mut headers) = (None, None, None);
    Scan::document(text, |scan, key| match key {
        "status" => once(&mut status, || scan.u16()),
        "reason" => once(&mut reason, || scan.string()),
        "headers" => once(&mut headers, || scan.pairs()),
        _ => None,
    })?;
    Some(WireIn {
        status: status?,
        reason: reason.unwrap_or_default(),
        headers: headers.unwrap_or_default(),
        anpx_headers: None,
    })
}

/// The standard reason phrase of a status code, or `""` for an unregistered one.
pub fn canonical_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::super::headers::FlatHeaders;
    use super::super::pyjson::oracle::to_python_json;
    use super::*;

    /// The serde rendering `to_meta_json` replaced.
    #[derive(Serialize)]
    struct WireOut<'a> {
        status: u16,
        reason: &'a str,
        headers: FlatHeaders<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        anpx_headers: Option<&'a [(String, String)]>,
    }

    /// A status as a peer may write it, and whether the scan takes it.
    fn status() -> impl Strategy<Value = (String, bool)> {
        prop_oneof![
            Just(("200", true)),
            Just(("404", true)),
            Just(("999", true)),
            Just(("1000", true)),
            Just(("0200", false)),
            Just(("200.0", false)),
            Just(("2e2", false)),
            Just(("-1", false)),
            Just(("70000", false)),
            Just(("\"200\"", false)),
        ]
        .prop_map(|(s, taken)| (s.to_owned(), taken))
    }

    fn resp_meta() -> impl Strategy<Value = (String, bool)> {
        use super::super::meta_scan::texts::*;
        let extras = prop_oneof![
            member("status", status()),
            member("reason", string_value()),
            member("anpx_headers", Just(("[[\"a\", \"b\"]]".to_owned(), false))),
            member("headers", Just(("null".to_owned(), false))),
            member("other", string_value()),
        ];
        document(
            vec![
                member("status", status()),
                optional("reason", string_value()),
                optional("headers", pairs_value()),
            ],
            extras.boxed(),
        )
    }

    super::super::meta_scan::texts::scan_properties!(resp_meta(), scan);

    proptest! {
        #[test]
        fn meta_json_is_the_serde_rendering_byte_for_byte(
            status in 100u16..=999,
            reason in "[a-z \\\"\x00-\x1f\x7fé😀]{0,10}",
            fields in proptest::collection::vec(("[a-c]{1,2}", "[a-z\\\"\x00-\x1fé旅😀 ,]{0,10}"), 0..8),
        ) {
            let mut head = ResponseHead { status, reason, headers: HeaderList::new() };
            for (name, value) in fields {
                head = head.with_header(name, value);
            }
            let json = head.to_meta_json();
            let oracle = to_python_json(&WireOut {
                status: head.status,
                reason: &head.reason,
                headers: FlatHeaders(&head.headers),
                anpx_headers: head.headers.has_repeats().then(|| head.headers.as_pairs()),
            });
            prop_assert_eq!(String::from_utf8_lossy(&json), String::from_utf8_lossy(&oracle));
            prop_assert_eq!(ResponseHead::from_meta_json(&json).unwrap(), head);
        }
    }
}
