//! The two timers of a proxied response, gateway and receiver state
//! machines back to back in virtual time: `request_timeout` bounds the wait
//! for the response head only; once the head is out, `body_idle_timeout`
//! bounds each gap between body parts, so a quiet event stream outlives
//! the request timeout and a stalled one is still cut.

mod support;

use std::time::Duration;
use support::Pair;

use anpx_core::ResponseBody;
use anpx_core::{Feature, Features};
use anpx_core::{GatewayConfig, RequestBody, ResponseEvent};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use bytes::Bytes;

fn pair(features: Features, config: GatewayConfig) -> Pair {
    Pair::back_to_back("sse.example/", features, config)
}

fn start(p: &mut Pair) -> RequestId {
    let id =
        p.gw.start_request(
            p.now,
            "sse.example",
            RequestHead::new("GET", "/events"),
            RequestBody::Empty,
        )
        .unwrap();
    p.pump();
    id
}

/// Lets `by` pass in steps of 100 ms, running both sides' timers.
fn advance(p: &mut Pair, by: Duration) {
    let end = p.now + by;
    while p.now < end {
        p.now = (p.now + Duration::from_millis(100)).min(end);
        p.gw.handle_timeout(p.now);
        p.rx.handle_timeout(p.now);
        p.pump();
    }
}

fn failures(p: &Pair, id: &RequestId) -> Vec<(u16, String)> {
    p.responses
        .iter()
        .filter(|(r, _)| r == id)
        .filter_map(|(_, e)| match e {
            ResponseEvent::Failed(f) => Some((f.status, f.error.clone())),
            _ => None,
        })
        .collect()
}

fn event(p: &mut Pair, id: &RequestId, text: &'static str) {
    p.rx.respond_body(p.now, id, Bytes::from_static(text.as_bytes()), false)
        .unwrap();
    p.pump();
}

fn config(request: u64, body_idle: u64) -> GatewayConfig {
    GatewayConfig {
        request_timeout: Duration::from_secs(request),
        body_idle_timeout: Duration::from_secs(body_idle),
        ..GatewayConfig::default()
    }
}

/// A response streams to a gateway that negotiated `streaming`, with and
/// without the other extensions (to a plain-v1 gateway the receiver sends
/// the response whole, so its head waits for its end).
fn for_each_layout(test: impl Fn(Features)) {
    let mut streaming = Features::empty();
    streaming.insert(Feature::Streaming);
    test(streaming);
    test(Features::all());
}

#[test]
fn gaps_longer_than_the_request_timeout_pass_while_shorter_than_the_body_idle_timeout() {
    for_each_layout(|features| {
        let mut p = pair(features, config(1, 3));
        let id = start(&mut p);
        p.rx.respond(p.now, &id, ResponseHead::new(200), ResponseBody::Streaming)
            .unwrap();
        p.pump();
        for _ in 0..5 {
            // 2.9 s of silence: almost three request timeouts.
            advance(&mut p, Duration::from_millis(2900));
            event(&mut p, &id, "data: tick\n\n");
        }
        assert!(failures(&p, &id).is_empty(), "{:?}", failures(&p, &id));
        p.rx.respond_body(p.now, &id, Bytes::new(), true).unwrap();
        p.pump();
        assert!(p
            .responses
            .iter()
            .any(|(r, e)| r == &id && *e == ResponseEvent::End));
        assert_eq!(p.gw.in_flight(), 0);
    });
}

#[test]
fn a_gap_past_the_body_idle_timeout_cuts_the_response_with_its_reason() {
    for_each_layout(|features| {
        let mut p = pair(features, config(1, 3));
        let id = start(&mut p);
        p.rx.respond(p.now, &id, ResponseHead::new(200), ResponseBody::Streaming)
            .unwrap();
        p.pump();
        event(&mut p, &id, "data: first\n\n");
        advance(&mut p, Duration::from_millis(2900));
        assert!(failures(&p, &id).is_empty());
        advance(&mut p, Duration::from_millis(200));
        let failed = failures(&p, &id);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, 504);
        assert!(failed[0].1.contains("body_idle_timeout_secs"), "{failed:?}");
        assert_eq!(p.gw.in_flight(), 0);
        assert_eq!(p.gw.stats(p.now).totals.timed_out, 1);
    });
}

#[test]
fn the_head_still_has_only_the_request_timeout() {
    let mut p = pair(Features::all(), config(1, 300));
    let id = start(&mut p);
    advance(&mut p, Duration::from_millis(900));
    assert!(failures(&p, &id).is_empty());
    advance(&mut p, Duration::from_millis(200));
    let failed = failures(&p, &id);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, 504);
    assert!(failed[0].1.contains("did not respond"), "{failed:?}");
}

#[test]
fn a_body_idle_timeout_shorter_than_the_request_timeout_fires_on_time() {
    let mut p = pair(Features::all(), config(30, 2));
    let id = start(&mut p);
    p.rx.respond(p.now, &id, ResponseHead::new(200), ResponseBody::Streaming)
        .unwrap();
    p.pump();
    advance(&mut p, Duration::from_millis(2100));
    assert_eq!(failures(&p, &id).len(), 1, "cut 2 s after the head, not 30");
}

#[cfg(feature = "config")]
#[test]
fn the_default_body_idle_timeout_is_at_least_five_minutes() {
    let c = GatewayConfig::default();
    assert!(c.body_idle_timeout >= Duration::from_secs(300));
    assert_eq!(
        anpx_core::config::Config::default()
            .gateway
            .core_config()
            .body_idle_timeout,
        c.body_idle_timeout
    );
}
