//! Header values as text, for the heads both shells hand the core.

/// A header value's bytes as a `String`: as they are when they are UTF-8,
/// as nearly every value is (ASCII), and lossily otherwise (each invalid
/// sequence becomes U+FFFD).
///
/// `String::from_utf8_lossy` gives the same text, but walks valid input
/// in chunks of its own where `str::from_utf8` checks it many bytes at a
/// time; a request passes a dozen values through here.
///
/// ```
/// use shell_common::header_text::header_text;
///
/// assert_eq!(header_text(b"text/plain"), "text/plain");
/// assert_eq!(header_text("caf\u{e9}".as_bytes()), "caf\u{e9}");
/// assert_eq!(header_text(b"caf\xe9"), "caf\u{fffd}");
/// ```
pub fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}
