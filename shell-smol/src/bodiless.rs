//! A request without a body, written to the service straight from the
//! gateway's head: the bytes async-h1's client would write for it, without
//! building an http-types `Request` (its URL parsed, every header name
//! parsed and hashed into a map) only to encode it again.

use std::borrow::Cow;

use anpx_core::RequestHead;
use http_types::Method;
use shell_common::receiver::upstream_request_parts;
use shell_common::request_bytes::request_head;

use crate::head_edit::HeadEdit;
use crate::response::Encoded;

/// The request as async-h1 would encode it from the `Request` that
/// `Dispatch` builds: the prefix in front of the path, a `host` first (the
/// head's, else `host_header`), the other headers sorted by name,
/// `content-length: 0`. `None` when the request needs that `Request`
/// after all: a method http-types does not know (answered 400 there) or a
/// target that parsing it as a URL would change (percent-encoding, dot
/// segments, backslashes).
pub(crate) fn encode(head: &RequestHead, prefix: &str, host_header: &str) -> Option<Encoded> {
    let method: Method = head.method.parse().ok()?;
    if method == Method::Connect {
        return None;
    }
    let (target, headers) = upstream_request_parts(head);
    if !unchanged_as_url(&target) || !unchanged_as_url(prefix) {
        return None;
    }
    let mut lines: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(headers.len() + 2);
    // Every name is a token and every value fit for an HTTP/1 head (the
    // core refuses a head with any other). Names with a value async-h1
    // cannot hold go last, as the generic path's edit writes them.
    let mut edit = HeadEdit::default();
    let fields = headers
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
    for (name, value) in edit.split_fields(fields) {
        // http-types lowercases every name; the gateway's usually are.
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        lines.push((name, value));
    }
    if !lines.iter().any(|(name, _)| name == "host") {
        lines.push((Cow::Borrowed("host"), host_header));
    }
    lines.push((Cow::Borrowed("content-length"), "0"));
    // async-h1 writes `host` first and the rest by name; values of one name
    // keep their order (a stable sort).
    fn key(name: &str) -> &str {
        if name == "host" {
            "0"
        } else {
            name
        }
    }
    lines.sort_by(|(a, _), (b, _)| key(a).cmp(key(b)));
    lines.extend(
        edit.extra
            .iter()
            .map(|(name, value)| (Cow::Borrowed(name.as_str()), value.as_str())),
    );
    let bytes = request_head(method.as_ref(), prefix, &target, &lines);
    Some(Encoded::from_bytes(bytes, method == Method::Head))
}

/// Whether `target` (a path and query) comes out of URL parsing as it went
/// in: visible ASCII that no URL component percent-encodes, no backslash,
/// no dot segment (`.`, `..`, or either percent-encoded).
fn unchanged_as_url(target: &str) -> bool {
    let plain = target.bytes().all(|b| {
        (0x21..0x7f).contains(&b)
            && !matches!(
                b,
                b'"' | b'#'
                    | b'<'
                    | b'>'
                    | b'`'
                    | b'{'
                    | b'}'
                    | b'\\'
                    | b'\''
                    | b'^'
                    | b'|'
                    | b'['
                    | b']'
            )
    });
    let path = target.split('?').next().unwrap_or_default();
    plain
        && !path.split('/').any(|segment| {
            let s = segment.to_ascii_lowercase();
            matches!(s.as_str(), "." | ".." | "%2e" | ".%2e" | "%2e." | "%2e%2e")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{build_request, HttpUpstream};
    use smol::block_on;

    /// What async-h1 writes for the `Request` the generic path builds
    /// and `HttpUpstream::call` aims at the service.
    fn async_h1(head: &RequestHead, http: &HttpUpstream) -> Vec<u8> {
        let empty = futures_util::stream::empty();
        let mut request = build_request(head, empty, Some(0)).expect("built");
        http.aim(&mut request);
        block_on(Encoded::new(request)).unwrap().bytes().to_vec()
    }

    fn ours(head: &RequestHead, http: &HttpUpstream) -> Vec<u8> {
        http.encode_bodiless(head)
            .expect("written directly")
            .bytes()
            .to_vec()
    }

    fn service(url: &str) -> HttpUpstream {
        HttpUpstream::new(url).expect("a service url")
    }

    #[test]
    fn the_bytes_are_those_async_h1_writes() {
        let heads = [
            RequestHead::new("GET", "/small"),
            RequestHead::new("GET", "/agents/hello")
                .with_query("name=anpx&x=1")
                .with_header("Host", "api.agent.com")
                .with_header("X-Forwarded-For", "192.0.2.1")
                .with_header("accept", "*/*")
                .with_header("Accept", "text/plain")
                .with_header("user-agent", "wrk"),
            RequestHead::new("HEAD", "/a/b%20c").with_header("connection", "close"),
            // Escaped on the way (`forward::upstream_target`) before either
            // path sees them.
            RequestHead::new("GET", "/a\\b c/\u{e9}{x}\"").with_query("q=1%202"),
            RequestHead::new("DELETE", "/items/7")
                .with_header("content-length", "0")
                .with_header("x-tab", "a\tb"),
        ];
        for head in &heads {
            for url in ["http://127.0.0.1:8000", "http://127.0.0.1:8000/base"] {
                let http = service(url);
                let want = async_h1(head, &http);
                let got = ours(head, &http);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{head:?} to {url}"
                );
            }
        }
    }

    #[test]
    fn a_header_async_h1_cannot_hold_is_written_as_there() {
        let head = RequestHead::new("GET", "/")
            .with_header("X-Name", "a")
            .with_header("x-name", "caf\u{e9}")
            .with_header("x-kept", "yes")
            .with_header("x-trip", "\u{65c5}");
        let http = service("http://svc");
        let got = String::from_utf8(ours(&head, &http)).unwrap();
        assert!(
            got.ends_with(
                "x-kept: yes\r\nx-name: a\r\nx-name: caf\u{e9}\r\nx-trip: \u{65c5}\r\n\r\n"
            ),
            "{got}"
        );
        assert_eq!(
            String::from_utf8_lossy(&async_h1(&head, &http)),
            got,
            "the generic path"
        );
    }

    #[test]
    fn what_url_parsing_would_change_goes_the_generic_way() {
        for path in ["/a/../b", "/a/./b", "/a/%2E%2e/b", "/a/.."] {
            let head = RequestHead::new("GET", path);
            assert!(encode(&head, "", "svc").is_none(), "{path:?}");
        }
        let head = RequestHead::new("GET", "/").with_query("a='1'");
        assert!(encode(&head, "", "svc").is_none());
        let unknown = RequestHead::new("BREW", "/pot");
        assert!(
            encode(&unknown, "", "svc").is_none(),
            "400 comes from there"
        );
    }
}
