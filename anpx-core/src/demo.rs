//! The built-in echo agent of `anpx demo` and `--demo`: what it answers,
//! written once for every shell.

use bytes::Bytes;

use crate::message::{RequestHead, ResponseHead};

/// The demo agent's answer: a JSON description of the request it got.
///
/// ```
/// use anpx_core::{demo, RequestHead};
/// let (head, body) = demo::respond(&RequestHead::new("POST", "/hello").with_query("x=1"), b"hi");
/// assert_eq!(head.status, 200);
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["method"], "POST");
/// assert_eq!(v["body"], "hi");
/// ```
pub fn respond(request: &RequestHead, body: &[u8]) -> (ResponseHead, Bytes) {
    let headers: Vec<[&str; 2]> = request.headers.iter().map(|(n, v)| [n, v]).collect();
    let json = serde_json::json!({
        "agent": "anpx demo echo agent",
        "message": "Hello through the anpx tunnel!",
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": headers,
        "body": String::from_utf8_lossy(body),
        "body_len": body.len(),
    });
    let head = ResponseHead::new(200).with_header("content-type", "application/json");
    (head, Bytes::from(json.to_string()))
}
