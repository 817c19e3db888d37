//! JSON written the way Python's `json.dumps` writes it by default, so that
//! meta we encode is byte-identical to the reference implementation's:
//! `", "` and `": "` separators, and every character outside printable
//! ASCII escaped as lower-case `\uXXXX` (UTF-16 surrogate pairs above the BMP).
//!
//! Written directly rather than through serde_json: every request and
//! response head is encoded once, and serde_json's string escaping plus a
//! second scan for what Python escapes beyond it made two thirds of the
//! cost of a head (`benches/instructions.sh`, docs/BENCHMARKS.md). The
//! serde path stays in the tests as the oracle this writer is checked
//! against.

/// A JSON document being written into a byte buffer. Objects nest; the
/// caller writes keys and values in order, as `json.dumps` would.
pub(crate) struct PyJson {
    out: Vec<u8>,
    /// No member written yet in the innermost open object or array.
    first: bool,
}

impl PyJson {
    pub(crate) fn new() -> Self {
        PyJson {
            out: Vec::with_capacity(256),
            first: true,
        }
    }

    pub(crate) fn begin_object(&mut self) {
        self.out.push(b'{');
        self.first = true;
    }

    /// Ends the innermost object. Its parent has written a key or element
    /// before it, so the parent is past its first member.
    pub(crate) fn end_object(&mut self) {
        self.out.push(b'}');
        self.first = false;
    }

    /// A member's key, with the separator before it when it is not the first.
    pub(crate) fn key(&mut self, key: &str) {
        self.separate();
        self.string(key);
        self.out.extend_from_slice(b": ");
    }

    /// `key: value` for a string value.
    pub(crate) fn entry(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    pub(crate) fn number(&mut self, n: u16) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// `[["name", "value"], ...]`: pairs as arrays of two strings.
    pub(crate) fn pairs(&mut self, pairs: &[(String, String)]) {
        self.out.push(b'[');
        for (i, (name, value)) in pairs.iter().enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b", ");
            }
            self.out.push(b'[');
            self.string(name);
            self.out.extend_from_slice(b", ");
            self.string(value);
            self.out.push(b']');
        }
        self.out.push(b']');
        self.first = false;
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.extend_from_slice(b", ");
        }
        self.first = false;
    }

    /// A quoted string: runs of printable ASCII are copied as they are,
    /// everything else escaped as `json.dumps` escapes it.
    fn string(&mut self, s: &str) {
        let bytes = s.as_bytes();
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        if bytes.iter().fold(true, |plain, &b| plain & is_plain(b)) {
            // Almost every name and value: one check the compiler does
            // many bytes at a time (no early exit), one copy.
            self.out.extend_from_slice(bytes);
            self.out.push(b'"');
            return;
        }
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if is_plain(b) {
                i += 1;
                continue;
            }
            self.out.extend_from_slice(&bytes[start..i]);
            if b.is_ascii() {
                self.ascii_escape(b);
                i += 1;
            } else {
                // `i` starts a UTF-8 sequence: `s` is a str and every byte
                // before it was ASCII or a whole character.
                let ch = s[i..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    self.unicode_escape(*unit);
                }
                i += ch.len_utf8();
            }
            start = i;
        }
        self.out.extend_from_slice(&bytes[start..]);
        self.out.push(b'"');
    }

    fn ascii_escape(&mut self, b: u8) {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => return self.unicode_escape(u16::from(b)),
        };
        self.out.extend_from_slice(&[b'\\', short]);
    }

    fn unicode_escape(&mut self, unit: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.out.extend_from_slice(&[
            b'\\',
            b'u',
            HEX[usize::from(unit >> 12)],
            HEX[usize::from((unit >> 8) & 0xf)],
            HEX[usize::from((unit >> 4) & 0xf)],
            HEX[usize::from(unit & 0xf)],
        ]);
    }
}

/// Printable ASCII other than the quote and the backslash: written as it is.
fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
}

/// The serde_json rendering the writer above replaced, with Python's
/// separators and escapes: the oracle the writer is tested against.
#[cfg(test)]
pub(crate) mod oracle {
    use std::io;

    use serde::Serialize;
    use serde_json::ser::Formatter;

    struct PythonFormatter;

    impl Formatter for PythonFormatter {
        fn begin_array_value<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            separate(w, first)
        }

        fn begin_object_key<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            separate(w, first)
        }

        fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            w.write_all(b": ")
        }

        // serde_json already escapes `"`, `\` and control characters the
        // way Python does; what is left is DEL and everything non-ASCII.
        fn write_string_fragment<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> io::Result<()> {
            let bytes = fragment.as_bytes();
            let mut start = 0;
            for (i, ch) in fragment.char_indices() {
                if ch.is_ascii() && ch != '\x7f' {
                    continue;
                }
                w.write_all(&bytes[start..i])?;
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
                start = i + ch.len_utf8();
            }
            w.write_all(&bytes[start..])
        }
    }

    /// `", "` before every member but the first.
    fn separate<W: ?Sized + io::Write>(w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    /// Serializes `value` as Python's `json.dumps(value)` would.
    pub(crate) fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
        value.serialize(&mut ser).expect("meta serializes");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_dumps() {
        // json.dumps({"a": "x", "b": "旅\x7f\n😀\"\\\x01\x08\x0c\t\r", "c": {}, "d": 404})
        let mut w = PyJson::new();
        w.begin_object();
        w.entry("a", "x");
        w.entry("b", "旅\u{7f}\n😀\"\\\u{1}\u{8}\u{c}\t\r");
        w.key("c");
        w.begin_object();
        w.end_object();
        w.key("d");
        w.number(404);
        w.end_object();
        assert_eq!(
            String::from_utf8(w.finish()).unwrap(),
            r#"{"a": "x", "b": "\u65c5\u007f\n\ud83d\ude00\"\\\u0001\b\f\t\r", "c": {}, "d": 404}"#
        );
    }

    #[test]
    fn the_oracle_matches_python_dumps_too() {
        let v = serde_json::json!({"a": ["x", 1], "b": "旅\u{7f}\n😀\"", "c": {}});
        assert_eq!(
            String::from_utf8(oracle::to_python_json(&v)).unwrap(),
            r#"{"a": ["x", 1], "b": "\u65c5\u007f\n\ud83d\ude00\"", "c": {}}"#
        );
    }

    #[test]
    fn numbers_and_pairs() {
        for n in [0u16, 7, 10, 200, 999, 65535] {
            let mut w = PyJson::new();
            w.number(n);
            assert_eq!(w.finish(), n.to_string().into_bytes());
        }
        let mut w = PyJson::new();
        w.pairs(&[("a".into(), "1".into()), ("a".into(), "é".into())]);
        assert_eq!(w.finish(), br#"[["a", "1"], ["a", "\u00e9"]]"#);
        let mut w = PyJson::new();
        w.pairs(&[]);
        assert_eq!(w.finish(), b"[]");
    }
}
