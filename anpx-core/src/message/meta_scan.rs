//! A reader for the common shape of meta JSON, beside serde_json.
//!
//! Every request and response head is parsed once on its way through the
//! tunnel. serde_json's generic path (a visitor per key, a seed per
//! string, `deserialize_any` for the header objects) made about 13 000
//! instructions of a small request's ~124 000 (`benches/instructions.sh`,
//! docs/BENCHMARKS.md). This reader takes the shape both ends write (an
//! object of known keys whose values are strings, a status number and
//! objects of string values) and gives up, returning `None`, on anything
//! else: an unknown or repeated key, `null`, a number that is not a plain
//! integer, a `\u` escape, a control character, bytes after the object.
//! The caller then parses the same text with serde_json, so what this
//! reader accepts must be exactly what serde_json would make of it; the
//! tests hold it to that on generated documents.

/// A position in a meta document that is valid UTF-8.
pub(crate) struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Scan { text, at: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips JSON whitespace (exactly serde_json's four characters).
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.skip_space();
        let b = *self.bytes().get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes().get(self.at).copied()
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// `text` as one object and nothing after it but whitespace (see
    /// [`object`](Self::object)).
    pub(crate) fn document(
        text: &'a str,
        member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        let mut scan = Scan::new(text);
        scan.object(member)?;
        scan.at_end().then_some(())
    }

    /// An object whose keys have no escapes: `member` reads each value
    /// after its key.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.plain_run()?;
            self.eat(b'"')?;
            self.eat(b':')?;
            member(self, key)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// The characters up to the next `"` or `\`, none of them a control
    /// character, which JSON allows only escaped.
    fn plain_run(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = &self.bytes()[start..];
        let len = plain_len(rest);
        self.at += len;
        match rest.get(len) {
            Some(b'"' | b'\\') => Some(&self.text[start..start + len]),
            _ => None,
        }
    }

    /// A string value. Escapes other than `\uXXXX` are taken; `\u` gives
    /// up (surrogate pairs and lone surrogates are serde_json's to judge).
    pub(crate) fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let first = self.plain_run()?;
        if self.bytes()[self.at] == b'"' {
            self.at += 1;
            return Some(first.to_owned());
        }
        let mut out = String::with_capacity(first.len() + 16);
        out.push_str(first);
        loop {
            // At a backslash.
            let escaped = match *self.bytes().get(self.at + 1)? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                _ => return None,
            };
            out.push(escaped);
            self.at += 2;
            out.push_str(self.plain_run()?);
            if self.bytes()[self.at] == b'"' {
                self.at += 1;
                return Some(out);
            }
        }
    }

    /// A status: digits without a leading zero, sign, fraction or
    /// exponent, that fit a `u16`.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.skip_space();
        let rest = &self.bytes()[self.at..];
        let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 5 || rest[0] == b'0' {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = rest.get(len) {
            return None;
        }
        let n = rest[..len]
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        self.at += len;
        u16::try_from(n).ok()
    }

    /// An object of string values, as pairs in document order (repeated
    /// names kept, as `headers::ordered_pairs` keeps them).
    pub(crate) fn pairs(&mut self) -> Option<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(8);
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(out);
        }
        loop {
            let name = self.string()?;
            self.eat(b':')?;
            out.push((name, self.string()?));
            match self.next()? {
                b',' => {}
                b'}' => return Some(out),
                _ => return None,
            }
        }
    }

    /// Whether nothing but whitespace is left.
    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.at == self.text.len()
    }
}

/// How many bytes of `bytes` come before the first `"`, `\\` or control
/// character (or all of them). Eight bytes at a time, as serde_json
/// scans its strings: a byte at a time, this scan cost more than the
/// serde_json path it replaces.
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte is flagged (its high bit set) where `x` has a byte below
    // `n`; borrows may flag bytes above the first such byte too, never
    // one below it, so the lowest flag is exact.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let flags = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(bytes.len() - at)
}

/// Sets `slot` to what `read` gives, once: a key seen twice gives up
/// (serde_json refuses a repeated field).
pub(crate) fn once<T>(slot: &mut Option<T>, read: impl FnOnce() -> Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(read()?);
    Some(())
}

/// JSON text written every way a peer may write it, for the tests that
/// hold [`Scan`] to serde_json's reading.
#[cfg(test)]
pub(crate) mod texts {
    use proptest::prelude::*;

    /// How a string literal is written.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Style {
        /// Only what must be escaped; control characters as `\u00XX`.
        Plain,
        /// Short escapes where JSON has them (`\n`, `\/`, ...).
        Short,
        /// Everything outside ASCII as `\uXXXX`, as Python writes it.
        Ascii,
    }

    pub(crate) fn literal(s: &str, style: Style) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match (c, style) {
                ('"', _) => out.push_str("\\\""),
                ('\\', _) => out.push_str("\\\\"),
                ('/', Style::Short) => out.push_str("\\/"),
                ('\n', Style::Short) => out.push_str("\\n"),
                ('\r', Style::Short) => out.push_str("\\r"),
                ('\t', Style::Short) => out.push_str("\\t"),
                ('\u{8}', Style::Short) => out.push_str("\\b"),
                ('\u{c}', Style::Short) => out.push_str("\\f"),
                (c, _) if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
                (c, Style::Ascii) if !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                (c, _) => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// Whether `literal(s, style)` holds no `\u` escape.
    pub(crate) fn no_unicode_escape(s: &str, style: Style) -> bool {
        s.chars().all(|c| match style {
            Style::Ascii => c >= ' ' && c.is_ascii(),
            Style::Short => c >= ' ' || matches!(c, '\n' | '\r' | '\t' | '\u{8}' | '\u{c}'),
            Style::Plain => c >= ' ',
        })
    }

    pub(crate) fn style() -> impl Strategy<Value = Style> {
        prop_oneof![Just(Style::Plain), Just(Style::Short), Just(Style::Ascii)]
    }

    /// Short strings rich in what JSON escapes.
    pub(crate) fn text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('/'),
            1 => Just('\n'),
            1 => Just('\u{1}'),
            1 => Just('é'),
            1 => Just('😀'),
            1 => any::<char>(),
        ];
        proptest::collection::vec(c, 0..10).prop_map(|cs| cs.into_iter().collect())
    }

    /// JSON whitespace, or none.
    pub(crate) fn space() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just(""), Just(" "), Just("\n\t"), Just("\r\n  ")]
    }

    /// An object of `members` (key and value text), spaced by `spaces`.
    pub(crate) fn object(members: &[(String, String)], spaces: &[&str]) -> String {
        let mut space = spaces.iter().cycle();
        let mut out = format!("{{{}", space.next().unwrap_or(&""));
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
                out.push_str(space.next().unwrap_or(&""));
            }
            out.push_str(key);
            out.push_str(space.next().unwrap_or(&""));
            out.push(':');
            out.push_str(space.next().unwrap_or(&""));
            out.push_str(value);
            out.push_str(space.next().unwrap_or(&""));
        }
        out.push('}');
        out
    }

    /// A member's key, value text, and whether the scan takes the value.
    pub(crate) type Member = (&'static str, String, bool);

    /// A string value in any style.
    pub(crate) fn string_value() -> impl Strategy<Value = (String, bool)> {
        (text(), style()).prop_map(|(s, style)| (literal(&s, style), no_unicode_escape(&s, style)))
    }

    /// An object of string values, names repeating at times.
    pub(crate) fn pairs_value() -> impl Strategy<Value = (String, bool)> {
        let name = prop_oneof![Just("x-a".to_owned()), text()];
        let pair = (name, style(), text(), style());
        (
            proptest::collection::vec(pair, 0..5),
            proptest::collection::vec(space(), 1..6),
        )
            .prop_map(|(pairs, spaces)| {
                let plain = pairs
                    .iter()
                    .all(|(n, ns, v, vs)| no_unicode_escape(n, *ns) && no_unicode_escape(v, *vs));
                let members: Vec<_> = pairs
                    .iter()
                    .map(|(n, ns, v, vs)| (literal(n, *ns), literal(v, *vs)))
                    .collect();
                (object(&members, &spaces), plain)
            })
    }

    /// `key` with a value of `value`.
    pub(crate) fn member(
        key: &'static str,
        value: impl Strategy<Value = (String, bool)> + 'static,
    ) -> BoxedStrategy<Option<Member>> {
        value
            .prop_map(move |(v, plain)| Some((key, v, plain)))
            .boxed()
    }

    /// `key` with a value of `value`, or no such member.
    pub(crate) fn optional(
        key: &'static str,
        value: impl Strategy<Value = (String, bool)> + 'static,
    ) -> BoxedStrategy<Option<Member>> {
        proptest::option::of(value.prop_map(move |(v, plain)| (key, v, plain))).boxed()
    }

    /// A required member left out: the document has no such key, and the
    /// scan does not take it.
    pub(crate) fn missing() -> BoxedStrategy<Option<Member>> {
        Just(Some(("", String::new(), false))).boxed()
    }

    /// A document of `members` in some order, at times with one of
    /// `extras` (which the scan does not take) and something after it;
    /// and whether the scan should take it.
    pub(crate) fn document(
        members: Vec<BoxedStrategy<Option<Member>>>,
        extras: BoxedStrategy<Option<Member>>,
    ) -> impl Strategy<Value = (String, bool)> {
        let tail = prop_oneof![
            4 => Just(("", true)),
            1 => Just((" \n", true)),
            1 => Just((" x", false)),
            1 => Just(("}", false)),
        ];
        (
            members,
            proptest::option::weighted(0.2, extras),
            proptest::collection::vec(space(), 1..8),
            any::<usize>(),
            tail,
        )
            .prop_map(|(members, extra, spaces, rotate, (tail, tail_ok))| {
                let mut plain = tail_ok && extra.is_none();
                let mut list = Vec::new();
                for (key, value, taken) in members.into_iter().chain(extra).flatten() {
                    plain &= taken;
                    if !key.is_empty() {
                        list.push((format!("\"{key}\""), value));
                    }
                }
                if !list.is_empty() {
                    let by = rotate % list.len();
                    list.rotate_left(by);
                }
                let mut text = object(&list, &spaces);
                text.push_str(tail);
                (text, plain)
            })
    }

    /// Holds `scan` to serde_json on `text`: what it takes, serde_json
    /// reads the same; a `plain` document it takes.
    pub(crate) fn agrees<T>(
        text: &str,
        plain: bool,
        scan: fn(&str) -> Option<T>,
    ) -> Result<(), TestCaseError>
    where
        T: std::fmt::Debug + PartialEq + serde::de::DeserializeOwned,
    {
        let ours = scan(text);
        if let Some(ours) = &ours {
            let theirs = serde_json::from_str::<T>(text);
            prop_assert_eq!(Some(ours), theirs.as_ref().ok(), "{}", text);
        }
        if plain {
            prop_assert!(ours.is_some(), "not taken: {}", text);
        }
        Ok(())
    }

    /// The two properties of a meta's scan, as tests: on the documents of
    /// `$documents` it reads what serde_json reads, and on the same with a
    /// character removed or inserted it reads nothing serde_json reads
    /// otherwise.
    macro_rules! scan_properties {
        ($documents:expr, $scan:expr) => {
            proptest::proptest! {
                #[test]
                fn the_scan_reads_what_serde_json_reads((text, plain) in $documents) {
                    $crate::message::meta_scan::texts::agrees(&text, plain, $scan)?;
                }

                #[test]
                fn the_scan_reads_broken_text_as_serde_json_does(
                    (text, _) in $documents,
                    at in proptest::prelude::any::<usize>(),
                    insert in $crate::message::meta_scan::texts::breaking(),
                ) {
                    let text = $crate::message::meta_scan::texts::mutated(&text, at, insert);
                    $crate::message::meta_scan::texts::agrees(&text, false, $scan)?;
                }
            }
        };
    }
    pub(crate) use scan_properties;

    /// `text` with one character removed or one inserted at `at`.
    pub(crate) fn mutated(text: &str, at: usize, insert: Option<char>) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let at = at % (chars.len() + 1);
        match insert {
            Some(c) => chars.insert(at, c),
            None if at < chars.len() => {
                chars.remove(at);
            }
            None => {}
        }
        chars.into_iter().collect()
    }

    /// What [`mutated`] inserts: JSON's structure and what breaks it.
    pub(crate) fn breaking() -> impl Strategy<Value = Option<char>> {
        proptest::option::of(proptest::sample::select(vec![
            '"', '\\', '{', '}', ',', ':', '0', '9', '-', '.', 'e', 'a', ' ', '\u{1}', 'n',
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(json: &str) -> Option<String> {
        let mut scan = Scan::new(json);
        let s = scan.string()?;
        scan.at_end().then_some(s)
    }

    #[test]
    fn strings_are_what_serde_json_reads_or_nothing() {
        let cases = [
            r#""""#,
            r#""plain""#,
            r#""\"5f3c-28\"""#,
            r#""a\\b\/c\b\f\n\r\t""#,
            "\"é ☃ 😀\"",
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            "\"tab\there\"",
            r#""bad \x escape""#,
            r#""unterminated"#,
            r#""trailing\"#,
        ];
        for json in cases {
            let ours = string(json);
            let theirs = serde_json::from_str::<String>(json).ok();
            if let Some(ours) = &ours {
                assert_eq!(Some(ours), theirs.as_ref(), "{json}");
            }
        }
        // The shapes both ends write are taken here, not by serde_json.
        assert_eq!(string(r#""\"5f3c-28\"""#).as_deref(), Some("\"5f3c-28\""));
        assert_eq!(string("\"é\"").as_deref(), Some("é"));
        assert_eq!(string(r#""\u00e9""#), None);
    }

    proptest::proptest! {
        #[test]
        fn plain_len_stops_where_a_byte_at_a_time_stops(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => 0x20u8..=0xff,
                    1 => proptest::strategy::Just(b'"'),
                    1 => proptest::strategy::Just(b'\\'),
                    1 => 0u8..0x20,
                ],
                0..40,
            )
        ) {
            let slow = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len());
            proptest::prop_assert_eq!(plain_len(&bytes), slow);
        }
    }

    #[test]
    fn statuses_are_plain_integers_that_fit() {
        for (json, expected) in [
            ("200", Some(200)),
            (" 999", Some(999)),
            ("65535", Some(65535)),
            ("65536", None),
            ("0200", None),
            ("0", None),
            ("-1", None),
            ("200.0", None),
            ("2e2", None),
            ("\"200\"", None),
            ("1234567", None),
        ] {
            let mut scan = Scan::new(json);
            let ours = scan.u16().filter(|_| scan.at_end());
            assert_eq!(ours, expected, "{json}");
            if let Some(n) = ours {
                assert_eq!(serde_json::from_str::<u16>(json).ok(), Some(n), "{json}");
            }
        }
    }
}
