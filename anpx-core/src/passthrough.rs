//! WebSocket passthrough (the `websocket` extension): the header rules for
//! carrying a public client's WebSocket to a service behind a receiver.
//!
//! An upgrade request travels as an ordinary streamed request whose head
//! keeps `connection: upgrade` and `upgrade: websocket` (every other
//! request loses them, being hop-by-hop). When the service answers `101`,
//! the request id becomes a byte stream in each direction: what the client
//! sends goes on as request body, what the service sends as response body,
//! both under the `flow-control` windows. The bytes are relayed as they
//! are (WebSocket frames, close handshake and all), so nothing in the
//! tunnel parses WebSocket. The rules are in docs/PROTOCOL.md.
//!
//! ```
//! use anpx_core::passthrough;
//! use anpx_core::{RequestHead, ResponseHead};
//!
//! let mut head = RequestHead::new("GET", "/chat")
//!     .with_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
//!     .with_header("sec-websocket-version", "13");
//! assert!(!passthrough::is_upgrade(&head));
//! passthrough::mark_upgrade(&mut head.headers);
//! assert!(passthrough::is_upgrade(&head));
//!
//! // A 101 keeps the headers that make it one once hop-by-hop ones go.
//! let mut answer = ResponseHead::new(101).with_header("Upgrade", "websocket");
//! anpx_core::forward::strip_hop_by_hop(&mut answer.headers);
//! passthrough::mark_upgrade(&mut answer.headers);
//! assert_eq!(answer.headers.get("upgrade"), Some("websocket"));
//! assert_eq!(answer.headers.get("connection"), Some("upgrade"));
//! ```

use crate::features::{Feature, Features};
use crate::message::{HeaderList, RequestHead, ResponseHead};

/// The status of an accepted upgrade.
pub const SWITCHING_PROTOCOLS: u16 = 101;

/// What a link needs besides `websocket` itself to carry a WebSocket:
/// `streaming` (the `101` goes out before the service's bytes),
/// `flow-control` (a stream without end must not pile up in memory) and
/// `cancel` (the gateway must be able to end a stream the receiver would
/// otherwise keep open).
pub const REQUIRES: [Feature; 3] = [Feature::Streaming, Feature::FlowControl, Feature::Cancel];

/// True when a link with `features` carries WebSockets: `websocket` and
/// everything it [`REQUIRES`].
pub fn carries(features: Features) -> bool {
    features.contains(Feature::WebSocket) && REQUIRES.into_iter().all(|f| features.contains(f))
}

/// True when a comma-separated header value lists `token`
/// (case-insensitive).
fn lists(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// True for a WebSocket handshake (RFC 6455 §4.1): `GET` with
/// `upgrade: websocket`, `connection: upgrade` and a `sec-websocket-key`.
pub fn is_upgrade_request<'a>(
    method: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    if !method.eq_ignore_ascii_case("GET") {
        return false;
    }
    let (mut upgrade, mut connection, mut key) = (false, false, false);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= lists(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= lists(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = true;
        }
    }
    upgrade && connection && key
}

/// True when a head in the tunnel asks for a WebSocket upgrade, which a
/// gateway sends only on a link that [`carries`] WebSockets.
pub fn is_upgrade(head: &RequestHead) -> bool {
    is_upgrade_request(&head.method, head.headers.iter())
}

/// Puts back the two hop-by-hop headers an upgrade needs (after
/// [`strip_hop_by_hop`](crate::forward::strip_hop_by_hop) took them with
/// the rest): `connection: upgrade` and `upgrade: websocket`.
pub fn mark_upgrade(headers: &mut HeaderList) {
    headers.remove("connection");
    headers.remove("upgrade");
    headers.push("connection", "upgrade");
    headers.push("upgrade", "websocket");
}

/// True when a response accepts a WebSocket upgrade.
pub fn is_switch(head: &ResponseHead) -> bool {
    head.status == SWITCHING_PROTOCOLS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Host", "chat.example"),
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]
    }

    #[test]
    fn recognises_handshakes_only() {
        assert!(is_upgrade_request("GET", handshake()));
        assert!(is_upgrade_request("get", handshake()));
        assert!(!is_upgrade_request("POST", handshake()));
        for missing in ["Upgrade", "Connection", "Sec-WebSocket-Key"] {
            let h: Vec<_> = handshake()
                .into_iter()
                .filter(|(n, _)| *n != missing)
                .collect();
            assert!(!is_upgrade_request("GET", h), "without {missing}");
        }
        let mut h = handshake();
        h[1] = ("Upgrade", "h2c");
        assert!(!is_upgrade_request("GET", h));
        let mut h = handshake();
        h[2] = ("Connection", "upgraded");
        assert!(!is_upgrade_request("GET", h));
    }

    #[test]
    fn marking_replaces_connection_headers() {
        let mut headers: HeaderList = handshake().into_iter().collect();
        headers.push("connection", "close");
        mark_upgrade(&mut headers);
        assert_eq!(
            headers.get_all("connection").collect::<Vec<_>>(),
            ["upgrade"]
        );
        assert_eq!(
            headers.get_all("upgrade").collect::<Vec<_>>(),
            ["websocket"]
        );
        assert_eq!(
            headers.get("sec-websocket-key"),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
    }

    #[test]
    fn needs_streaming_flow_control_and_cancel() {
        let mut all: Features = REQUIRES.into_iter().collect();
        assert!(!carries(all));
        all.insert(Feature::WebSocket);
        assert!(carries(all));
        assert!(carries(Features::all()));
        for f in all {
            let mut less = all;
            less.remove(f);
            assert!(!carries(less), "without {f}");
        }
    }
}
