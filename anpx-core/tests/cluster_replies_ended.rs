//! Once the cluster's reply inboxes are gone, a request forwarded to
//! another gateway could never hear back: those in flight fail with 502,
//! and so does every one started afterwards, at once rather than at its
//! deadline.

mod support;

use std::time::{Duration, Instant};

use anpx_core::cluster::Announcement;
use anpx_core::{
    Gateway, GatewayConfig, Output, RequestBody, RequestHead, RequestId, ResponseEvent, ServiceUrl,
};

const SECOND: Duration = Duration::from_secs(1);

fn url(s: &str) -> ServiceUrl {
    s.parse().expect("a service URL")
}

/// Gateway `gw-a`, with no receiver, knowing `gw-b` serves `api.com`.
fn gateway(t0: Instant) -> Gateway {
    let mut gw = Gateway::new(GatewayConfig::default(), 1);
    support::join_as_gw_a(&mut gw, t0);
    gw.handle_announcement(t0, Announcement::new("gw-b", vec![url("api.com")]));
    gw
}

fn forward(gw: &mut Gateway, now: Instant) -> RequestId {
    gw.start_forwarded(
        now,
        "api.com",
        url("api.com"),
        RequestHead::new("GET", "/x"),
        RequestBody::Empty,
    )
}

/// The status each request failed with, from what the machine has out.
fn failures(gw: &mut Gateway) -> Vec<(RequestId, u16)> {
    std::iter::from_fn(|| gw.poll_output())
        .filter_map(|o| match o {
            Output::Response {
                request,
                event: ResponseEvent::Failed(f),
            } => Some((request, f.status)),
            _ => None,
        })
        .collect()
}

#[test]
fn requests_forwarded_after_the_replies_ended_fail_at_once() {
    let t0 = Instant::now();
    let mut gw = gateway(t0);
    let before = forward(&mut gw, t0);
    assert_eq!(failures(&mut gw), [], "in flight, waiting for gw-b");

    gw.forward_replies_ended(t0 + SECOND);
    assert_eq!(failures(&mut gw), [(before, 502)]);

    let after = forward(&mut gw, t0 + 2 * SECOND);
    assert_eq!(
        failures(&mut gw),
        [(after, 502)],
        "not left to its deadline"
    );
    assert_eq!(gw.forwarded_in_flight(), 0);
}

#[test]
fn without_the_ending_a_forwarded_request_waits_for_its_answer() {
    let t0 = Instant::now();
    let mut gw = gateway(t0);
    forward(&mut gw, t0);
    gw.handle_timeout(t0 + SECOND);
    assert_eq!(failures(&mut gw), []);
    assert_eq!(gw.forwarded_in_flight(), 1);
}
