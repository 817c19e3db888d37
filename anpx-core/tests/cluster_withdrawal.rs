//! A gateway that leaves the cluster withdraws its routes but finishes the
//! requests it serves, so the gateways that forwarded them must not fail
//! them for its withdrawal; one that falls silent is gone, and theirs
//! fail.

mod support;

use std::time::{Duration, Instant};

use anpx_core::cluster::{Announcement, Reply, WireMessage};
use anpx_core::{
    Gateway, GatewayConfig, Output, RequestBody, RequestHead, RequestId, ResponseEvent,
    ResponseHead, ServiceUrl,
};
use bytes::Bytes;

const SECOND: Duration = Duration::from_secs(1);

fn url(s: &str) -> ServiceUrl {
    s.parse().expect("a service URL")
}

/// Gateway `gw-a`, with no receiver, joined at `t0`, knowing `gw-b`
/// serves `api.com`, with one request forwarded there that `gw-b`
/// accepted and has been seen alive since.
fn forwarded(t0: Instant) -> (Gateway, RequestId) {
    let mut gw = Gateway::new(GatewayConfig::default(), 1);
    support::join_as_gw_a(&mut gw, t0);
    gw.handle_announcement(t0, Announcement::new("gw-b", vec![url("api.com")]));
    let id = gw.start_forwarded(
        t0,
        "api.com",
        url("api.com"),
        RequestHead::new("GET", "/x"),
        RequestBody::Empty,
    );
    let accepted = WireMessage::Accepted {
        node: "gw-b".into(),
        inbox: "_S.b.1".into(),
    };
    gw.forward_reply(t0, &id, Reply::Message(accepted.encode()));
    gw.handle_timeout(t0 + SECOND / 2);
    drain(&mut gw);
    (gw, id)
}

fn drain(gw: &mut Gateway) -> Vec<ResponseEvent> {
    std::iter::from_fn(|| gw.poll_output())
        .filter_map(|o| match o {
            Output::Response { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_held_by_a_gateway_that_left_goes_on() {
    let t0 = Instant::now();
    let (mut gw, id) = forwarded(t0);
    gw.handle_announcement(t0 + SECOND, Announcement::new("gw-b", Vec::new()));
    for k in 2..6 {
        let now = t0 + k * SECOND;
        gw.handle_announcement(now, Announcement::new("gw-c", vec![url("other.com")]));
        gw.handle_timeout(now);
        assert_eq!(drain(&mut gw), [], "gw-b left; its request goes on");
    }
    assert_eq!(gw.forwarded_in_flight(), 1);

    let now = t0 + 6 * SECOND;
    let head = WireMessage::Head(ResponseHead::new(200));
    let body = WireMessage::Data {
        seq: 0,
        last: true,
        data: Bytes::from_static(b"done"),
    };
    gw.forward_reply(now, &id, Reply::Message(head.encode()));
    gw.forward_reply(now, &id, Reply::Message(body.encode()));
    let events = drain(&mut gw);
    assert!(
        matches!(events.last(), Some(ResponseEvent::End)),
        "the response gw-b still sent completes: {events:?}"
    );
    assert_eq!(gw.forwarded_in_flight(), 0);
}

#[test]
fn a_request_held_by_a_silent_gateway_fails() {
    let t0 = Instant::now();
    let (mut gw, _) = forwarded(t0);
    // No announcement from gw-b: past its time to live it is forgotten.
    let failed = (1..8).find_map(|k| {
        gw.handle_timeout(t0 + k * SECOND / 2 + SECOND);
        drain(&mut gw).into_iter().find_map(|e| match e {
            ResponseEvent::Failed(f) => Some(f),
            _ => None,
        })
    });
    let failed = failed.expect("the request fails once gw-b is forgotten");
    assert_eq!(failed.status, 502, "{failed:?}");
    assert!(failed.error.contains("left the cluster"), "{failed:?}");
}

#[test]
fn a_gateway_that_comes_back_is_watched_again() {
    let t0 = Instant::now();
    let (mut gw, _) = forwarded(t0);
    gw.handle_announcement(t0 + SECOND, Announcement::new("gw-b", Vec::new()));
    gw.handle_announcement(t0 + SECOND, Announcement::new("gw-b", vec![url("api.com")]));
    // Back, then silent: forgotten after its time to live, its request
    // fails as any silent gateway's.
    let failed = (3..12).any(|k| {
        gw.handle_timeout(t0 + k * SECOND / 2);
        drain(&mut gw)
            .iter()
            .any(|e| matches!(e, ResponseEvent::Failed(f) if f.status == 502))
    });
    assert!(failed);
}
