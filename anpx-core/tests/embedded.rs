//! The in-memory embedding example works: a request crosses the gateway and
//! receiver cores over channels and comes back.

#[path = "../examples/in_memory.rs"]
#[allow(dead_code)]
mod in_memory;

#[test]
fn a_request_crosses_the_in_memory_transport() {
    let (status, body) = in_memory::round_trip("/agents/hello", "ping over channels");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/agents/hello");
    assert_eq!(v["body"], "ping over channels");
}
