//! The query string: kept raw (so repeated keys and their order survive) and
//! flattened into the reference's JSON object when put on the wire.

use std::borrow::Cow;

use super::pyjson::PyJson;

/// Decoded `(key, value)` pairs with repeats collapsed the way the
/// reference's web framework does: first-appearance order, last value wins.
fn flat_pairs(raw: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut out: Vec<(Cow<str>, Cow<str>)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match out.iter_mut().find(|(seen, _)| *seen == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// Builds a query string from decoded pairs, form-encoded.
pub(crate) fn encode_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

/// True when the flat object alone cannot reproduce `raw` exactly, so the
/// raw string must travel too.
pub(crate) fn flat_form_is_lossy(raw: &str) -> bool {
    !raw.is_empty() && encode_pairs(&flat_pairs(raw)) != raw
}

/// Writes a raw query string as the reference's flat JSON object.
pub(crate) fn write_flat(w: &mut PyJson, raw: &str) {
    w.begin_object();
    for (k, v) in &flat_pairs(raw) {
        w.entry(k, v);
    }
    w.end_object();
}

/// The serde rendering of [`write_flat`], for the oracle tests.
#[cfg(test)]
pub(crate) struct FlatQuery<'a>(pub &'a str);

#[cfg(test)]
impl serde::Serialize for FlatQuery<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let pairs = flat_pairs(self.0);
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (k, v) in &pairs {
            map.serialize_entry(k.as_ref(), v.as_ref())?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_collapse_last_wins() {
        let mut w = PyJson::new();
        write_flat(&mut w, "a=1&b=x+y&a=2");
        assert_eq!(w.finish(), br#"{"a": "2", "b": "x y"}"#);
        let json = serde_json::to_string(&FlatQuery("a=1&b=x+y&a=2")).unwrap();
        assert_eq!(json, r#"{"a":"2","b":"x y"}"#);
        assert!(flat_form_is_lossy("a=1&b=x+y&a=2"));
    }

    #[test]
    fn canonical_queries_need_no_raw_copy() {
        assert!(!flat_form_is_lossy(""));
        assert!(!flat_form_is_lossy("q=test&empty="));
        assert!(flat_form_is_lossy("q=a%20b"), "%20 re-encodes as +");
        assert!(flat_form_is_lossy("flag"), "a bare key re-encodes as flag=");
    }
}
