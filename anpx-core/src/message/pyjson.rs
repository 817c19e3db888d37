//! JSON written the way Python's `json.dumps` writes it by default, so that
//! meta we encode is byte-identical to the reference implementation's:
//! `", "` and `": "` separators, and every character outside printable
//! ASCII escaped as lower-case `\uXXXX` (UTF-16 surrogate pairs above the BMP).

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
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    // serde_json already escapes `"`, `\` and control characters the way
    // Python does; what is left for us is DEL and everything non-ASCII.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        // Almost all meta is plain ASCII: one scan, one write.
        if bytes.iter().all(|&b| b < 0x7f) {
            return w.write_all(bytes);
        }
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

/// Serializes `value` as Python's `json.dumps(value)` would.
pub(crate) fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Our meta types hold only strings, integers, sequences and maps with
    // string keys, which serialize to a Vec without any failure path.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_dumps() {
        let v = serde_json::json!({"a": ["x", 1], "b": "旅\u{7f}\n😀\"", "c": {}});
        // json.dumps({"a": ["x", 1], "b": "旅\x7f\n😀\"", "c": {}})
        assert_eq!(
            String::from_utf8(to_python_json(&v)).unwrap(),
            r#"{"a": ["x", 1], "b": "\u65c5\u007f\n\ud83d\ude00\"", "c": {}}"#
        );
    }
}
