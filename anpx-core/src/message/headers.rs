//! HTTP header fields as an ordered list, and the flat JSON object the
//! reference puts on the wire.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::Deserializer;

use super::pyjson::PyJson;

/// Header fields in the order they arrived, names lower-cased, repeats kept
/// (two `set-cookie` fields stay two entries).
///
/// ```
/// use anpx_core::HeaderList;
/// let mut h = HeaderList::new();
/// h.push("Set-Cookie", "a=1");
/// h.push("set-cookie", "b=2");
/// assert_eq!(h.get_all("SET-COOKIE").collect::<Vec<_>>(), ["a=1", "b=2"]);
/// assert_eq!(h.get("set-cookie"), Some("a=1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(Vec<(String, String)>);

impl HeaderList {
    /// An empty list.
    pub const fn new() -> Self {
        HeaderList(Vec::new())
    }

    /// Appends a field; the name is lower-cased.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.0.push((name, value.into()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Removes every field named `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before - self.0.len()
    }

    /// Keeps only the fields for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.0.retain(|(n, v)| keep(n, v));
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when some name occurs more than once, i.e. when the flat JSON
    /// object of the reference would lose information.
    pub(crate) fn has_repeats(&self) -> bool {
        let names = &self.0;
        if names.len() <= PAIRWISE_MAX {
            // Every head is asked this when it is encoded: a few dozen
            // comparisons of short names cost less than hashing each one.
            return names
                .iter()
                .enumerate()
                .any(|(i, (n, _))| names[i + 1..].iter().any(|(m, _)| m == n));
        }
        // Linear: a receiver may send thousands of fields.
        let mut seen = std::collections::HashSet::with_capacity(names.len());
        names.iter().any(|(n, _)| !seen.insert(n.as_str()))
    }

    pub(crate) fn as_pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub(crate) fn from_lowercased_pairs(mut pairs: Vec<(String, String)>) -> Self {
        for (n, _) in &mut pairs {
            n.make_ascii_lowercase();
        }
        HeaderList(pairs)
    }
}

/// Up to this many fields, repeats are found by comparing every pair;
/// beyond it, by a set.
const PAIRWISE_MAX: usize = 24;

/// The `(name, value)` pairs in order, moved out: a shell building its HTTP
/// library's header map takes the strings without copying them.
impl IntoIterator for HeaderList {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut list = HeaderList::new();
        for (n, v) in iter {
            list.push(n, v);
        }
        list
    }
}

/// Writes a header list as the reference's flat object: one key per name
/// in order of first appearance, repeated values joined with `", "` (what
/// the reference's own HTTP client does when it flattens headers).
/// Returns whether a name repeats, i.e. whether the flat object lost
/// something and the pairs must travel too.
#[must_use]
pub(crate) fn write_flat(w: &mut PyJson, headers: &HeaderList) -> bool {
    let repeats = headers.has_repeats();
    w.begin_object();
    // Without a repeated name the pairs already are the flat object;
    // `flat_entries` would look back over every earlier name for each.
    if repeats {
        for (name, value) in flat_entries(headers.as_pairs()) {
            w.entry(name, &value);
        }
    } else {
        for (name, value) in headers.iter() {
            w.entry(name, value);
        }
    }
    w.end_object();
    repeats
}

/// One `(name, value)` per name, in order of first appearance, the values
/// of a repeated name joined with `", "`.
fn flat_entries(pairs: &[(String, String)]) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    pairs.iter().enumerate().filter_map(|(i, (name, value))| {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return None;
        }
        let mut repeats = pairs[i + 1..].iter().filter(|(n, _)| n == name).peekable();
        if repeats.peek().is_none() {
            return Some((name.as_str(), Cow::Borrowed(value.as_str())));
        }
        let mut joined = value.clone();
        for (_, v) in repeats {
            joined.push_str(", ");
            joined.push_str(v);
        }
        Some((name.as_str(), Cow::Owned(joined)))
    })
}

/// The serde rendering of [`write_flat`], for the oracle tests.
#[cfg(test)]
pub(crate) struct FlatHeaders<'a>(pub &'a HeaderList);

#[cfg(test)]
impl serde::Serialize for FlatHeaders<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (name, value) in flat_entries(self.0.as_pairs()) {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

/// Deserializes a JSON object of string values into its pairs, in document
/// order (serde_json's own map would sort the keys).
pub(crate) fn ordered_pairs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct PairsVisitor;
    impl<'de> Visitor<'de> for PairsVisitor {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // The hint comes from the wire; cap it so it cannot size an allocation.
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some(pair) = map.next_entry::<String, String>()? {
                out.push(pair);
            }
            Ok(out)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(PairsVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_form_joins_repeats_in_first_appearance_order() {
        let h: HeaderList = [("B", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
        assert!(h.has_repeats());
        let mut w = PyJson::new();
        assert!(write_flat(&mut w, &h));
        assert_eq!(w.finish(), br#"{"b": "1, 3", "a": "2"}"#);
        let json = serde_json::to_string(&FlatHeaders(&h)).unwrap();
        assert_eq!(json, r#"{"b":"1, 3","a":"2"}"#);
    }

    #[test]
    fn repeats_are_found_on_both_sides_of_the_pairwise_bound() {
        for len in [PAIRWISE_MAX - 1, PAIRWISE_MAX, PAIRWISE_MAX + 1, 300] {
            let distinct: HeaderList = (0..len).map(|i| (format!("x-{i}"), "v")).collect();
            assert!(!distinct.has_repeats(), "{len} distinct names");
            for (first, second) in [(0, len - 1), (len / 2, len / 2 + 1), (len - 2, len - 1)] {
                let mut pairs: Vec<(String, String)> = distinct.as_pairs().to_vec();
                pairs[second].0 = pairs[first].0.clone();
                let repeated = HeaderList::from_lowercased_pairs(pairs);
                assert!(repeated.has_repeats(), "{len} names, {first} = {second}");
            }
        }
    }

    #[test]
    fn no_repeats_detected_on_distinct_names() {
        let h: HeaderList = [("a", "1"), ("b", "2")].into_iter().collect();
        assert!(!h.has_repeats());
    }
}
