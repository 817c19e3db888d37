//! A request head as HTTP/1.1 bytes, for the receivers that write their
//! service's request themselves: a WebSocket upgrade (both shells) and
//! anpx-smol's requests without a body. Every field is written as it is:
//! the core refuses a head whose fields an HTTP/1 head cannot carry
//! ([`anpx_core::edge::field`]) before a shell sees it.

/// The request line (`prefix`, the service URL's path, in front of
/// `target`), each of `fields` on a line, and the empty line.
///
/// ```
/// use shell_common::request_bytes::request_head;
///
/// let bytes = request_head("GET", "/base", "/x?a=1", &[("host", "svc"), ("accept", "*/*")]);
/// assert_eq!(bytes, b"GET /base/x?a=1 HTTP/1.1\r\nhost: svc\r\naccept: */*\r\n\r\n");
/// ```
pub fn request_head<N: AsRef<str>, V: AsRef<str>>(
    method: &str,
    prefix: &str,
    target: &str,
    fields: &[(N, V)],
) -> Vec<u8> {
    const VERSION: &[u8] = b" HTTP/1.1\r\n";
    let lines: usize = fields
        .iter()
        .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 4)
        .sum();
    let mut out = Vec::with_capacity(
        method.len() + 1 + prefix.len() + target.len() + VERSION.len() + lines + 2,
    );
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(VERSION);
    for (name, value) in fields {
        out.extend_from_slice(name.as_ref().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_ref().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}
