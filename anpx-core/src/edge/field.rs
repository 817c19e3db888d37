//! The syntax of a header field (RFC 9110 §5), which every head written
//! into an HTTP/1 message must keep: a name that is a token and a value
//! without control characters. A head from a peer that breaks it is
//! refused here, once for every shell, rather than left to whichever HTTP
//! library a shell writes with (one refuses it, another drops the header,
//! a third writes it as it is).

/// Why a header cannot be written into an HTTP/1 head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadField {
    /// The name is not a `token`: empty, or with a byte such as a space,
    /// a colon, a line break or a non-ASCII character.
    #[error("header name {0:?} is not a token")]
    Name(String),
    /// The value of the named header has a control character (a line
    /// break, NUL, DEL, ...).
    #[error("header {0:?} has a control character in its value")]
    Value(String),
}

/// Checks one header: `Err` names what is wrong with it.
///
/// ```
/// use anpx_core::edge::field::{check, BadField};
///
/// assert_eq!(check("x-request-id", "42"), Ok(()));
/// assert_eq!(check("x-a", "caf\u{e9}"), Ok(()));
/// assert_eq!(check("x-a\r\nx-injected", "1"), Err(BadField::Name("x-a\r\nx-injected".into())));
/// assert_eq!(check("x-a", "1\r\nx-injected: 1"), Err(BadField::Value("x-a".into())));
/// ```
pub fn check(name: &str, value: &str) -> Result<(), BadField> {
    if !is_field_name(name) {
        return Err(BadField::Name(name.to_owned()));
    }
    if !is_field_value(value) {
        return Err(BadField::Value(name.to_owned()));
    }
    Ok(())
}

/// Whether `name` is a header field name (RFC 9110 §5.5: a `token`).
/// Anything else, written into an HTTP/1 head, could end the line early
/// and start a header of the sender's choosing.
///
/// ```
/// use anpx_core::edge::field::is_field_name;
///
/// assert!(is_field_name("x-request-id"));
/// assert!(!is_field_name("x-a\r\nx-injected"));
/// assert!(!is_field_name("caf\u{e9}"));
/// assert!(!is_field_name(""));
/// ```
pub fn is_field_name(name: &str) -> bool {
    // A fold without an early exit, over a table: every header of every
    // request and response passes here, and this is the form the compiler
    // turns into few instructions a byte.
    !name.is_empty() && name.bytes().fold(true, |ok, b| ok & TCHAR[usize::from(b)])
}

/// Whether `value` is a header field value: visible ASCII, space, tab,
/// and `obs-text` (non-ASCII, here UTF-8); no control character.
///
/// ```
/// use anpx_core::edge::field::is_field_value;
///
/// assert!(is_field_value("text/plain; charset=utf-8"));
/// assert!(is_field_value(""));
/// assert!(!is_field_value("a\nb"));
/// assert!(!is_field_value("a\0b"));
/// ```
pub fn is_field_value(value: &str) -> bool {
    value
        .bytes()
        .fold(true, |ok, b| ok & ((b >= b' ' && b != 0x7f) | (b == b'\t')))
}

/// RFC 9110 §5.6.2 `tchar`, by byte.
static TCHAR: [bool; 256] = tchar_table();

const fn tchar_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The rule is `http`'s, which the tokio shell writes with: what
        /// passes here, `http` accepts, and what `http` refuses is refused
        /// here (`http` alone also refuses uppercase names, which HTTP
        /// allows and the shells lowercase).
        #[test]
        fn agrees_with_the_http_crate(name in "[ -~\u{80}-\u{ff}\r\n\t]{0,6}", value in "[\0- -~\u{7f}-\u{ff}]{0,6}") {
            let lower = name.to_ascii_lowercase();
            prop_assert_eq!(is_field_name(&lower), http::HeaderName::from_bytes(lower.as_bytes()).is_ok());
            prop_assert_eq!(is_field_value(&value), http::HeaderValue::from_str(&value).is_ok());
        }
    }
}
