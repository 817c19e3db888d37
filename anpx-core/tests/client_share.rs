//! One client address may hold only its share of a route's in-flight cap
//! (`GatewayConfig::max_inflight_percent_per_client`): past it a request is
//! refused with 429 and counted, while other addresses still get through,
//! and each request that ends, however it ends, gives its place back.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anpx_core::Features;
use anpx_core::{Gateway, GatewayConfig, Identity, Output, Reject, RequestBody, ResponseEvent};
use anpx_core::{RequestHead, RequestId};

const HOST: &str = "api.agent.com";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn gateway(cap: usize, percent: u8, links: usize) -> (Instant, Gateway) {
    let now = Instant::now();
    let mut gw = Gateway::new(
        GatewayConfig {
            max_inflight_per_link: cap,
            max_inflight_percent_per_client: percent,
            ..GatewayConfig::default()
        },
        9,
    );
    for _ in 0..links {
        gw.admit(
            now,
            Identity::Anonymous,
            vec![format!("{HOST}/svc").parse().unwrap()],
            Features::empty(),
        );
    }
    (now, gw)
}

fn start(gw: &mut Gateway, now: Instant, client: &str) -> Result<RequestId, Reject> {
    let r = gw.start_request_from(
        now,
        Some(ip(client)),
        HOST,
        RequestHead::new("POST", "/svc/upload"),
        RequestBody::Streaming,
    );
    while gw.poll_output().is_some() {}
    r
}

#[test]
fn one_address_gets_its_share_and_the_others_the_rest() {
    // One connection, 10 places, 50 %: five for any one address.
    let (now, mut gw) = gateway(10, 50, 1);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(start(&mut gw, now, "198.51.100.7").unwrap());
    }
    let refused = start(&mut gw, now, "198.51.100.7").unwrap_err();
    assert!(
        matches!(&refused, Reject::ClientShare { share: 5, .. }),
        "{refused:?}"
    );
    assert_eq!(refused.failure().status, 429);
    assert_eq!(gw.stats(now).totals.client_share_refused, 1);
    assert!(gw
        .stats(now)
        .to_prometheus()
        .contains("anpx_client_share_refused_total 1\n"));
    assert!(gw
        .stats(now)
        .to_prometheus()
        .contains("anpx_requests_failed_total{status=\"429\"} 1\n"));
    // Another address still gets the places left, up to the cap.
    for _ in 0..5 {
        start(&mut gw, now, "203.0.113.9").unwrap();
    }
    assert!(matches!(
        start(&mut gw, now, "192.0.2.1"),
        Err(Reject::AtCapacity { .. })
    ));
    // A request of the first address that ends gives its place back.
    gw.cancel(now, &held[0]);
    start(&mut gw, now, "198.51.100.7").unwrap();
}

#[test]
fn an_ipv6_slash_64_is_one_address() {
    let (now, mut gw) = gateway(4, 50, 1);
    start(&mut gw, now, "2001:db8::1").unwrap();
    start(&mut gw, now, "2001:db8::2").unwrap();
    assert!(matches!(
        start(&mut gw, now, "2001:db8::ffff:3"),
        Err(Reject::ClientShare { share: 2, .. })
    ));
    start(&mut gw, now, "2001:db8:0:1::1").unwrap();
}

#[test]
fn the_share_grows_with_the_route_and_is_never_zero() {
    // Two connections of 3: the route holds 6, a third of it is 2.
    let (now, mut gw) = gateway(3, 34, 2);
    start(&mut gw, now, "198.51.100.7").unwrap();
    start(&mut gw, now, "198.51.100.7").unwrap();
    assert!(start(&mut gw, now, "198.51.100.7").is_err());
    // One place at 1 %: still one request.
    let (now, mut gw) = gateway(1, 1, 1);
    start(&mut gw, now, "198.51.100.7").unwrap();
}

#[test]
fn failures_and_timeouts_give_places_back() {
    let (now, mut gw) = gateway(2, 50, 1);
    let id = start(&mut gw, now, "198.51.100.7").unwrap();
    assert!(start(&mut gw, now, "198.51.100.7").is_err());
    // The upload never comes: 408 at the request timeout.
    let later = now + Duration::from_secs(31);
    gw.handle_timeout(later);
    let failed = std::iter::from_fn(|| gw.poll_output()).any(|o| {
        matches!(o, Output::Response { request, event: ResponseEvent::Failed(f) } if request == id && f.status == 408)
    });
    assert!(failed);
    start(&mut gw, later, "198.51.100.7").unwrap();
}

#[test]
fn requests_without_an_address_and_full_share_are_not_held() {
    let (now, mut gw) = gateway(4, 100, 1);
    for _ in 0..4 {
        start(&mut gw, now, "198.51.100.7").unwrap();
    }
    assert!(matches!(
        start(&mut gw, now, "198.51.100.7"),
        Err(Reject::AtCapacity { .. })
    ));
    let (now, mut gw) = gateway(4, 25, 1);
    for _ in 0..4 {
        gw.start_request(
            now,
            HOST,
            RequestHead::new("GET", "/svc"),
            RequestBody::Empty,
        )
        .unwrap();
    }
}
