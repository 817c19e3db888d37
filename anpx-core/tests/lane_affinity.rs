//! A request that says which lane of the shell it came in on goes to a
//! receiver connection served on the same lane, unless that one holds
//! `LANE_SLACK` more requests than the least loaded elsewhere; a request
//! without a lane, or a connection without one, is routed by load alone.

use std::time::Instant;

use anpx_core::lane::{Lane, LANE_SLACK};
use anpx_core::{Features, Gateway, GatewayConfig, Identity, LinkId, RequestBody, RequestHead};

const HOST: &str = "api.agent.com";

/// A gateway with two connections serving the same route, the first on
/// lane 0 and the second on lane 1 (when `lanes`).
fn gateway(lanes: bool) -> (Instant, Gateway, [LinkId; 2]) {
    let now = Instant::now();
    let mut gw = Gateway::new(GatewayConfig::default(), 9);
    let links = [0, 1].map(|i| {
        let link = gw.admit(
            now,
            Identity::Anonymous,
            vec![format!("{HOST}/svc").parse().unwrap()],
            Features::empty(),
        );
        if lanes {
            gw.set_link_lane(link, Lane(i));
        }
        link
    });
    (now, gw, links)
}

/// Starts a request from `lane` and says which connection took it.
fn start(gw: &mut Gateway, now: Instant, lane: Option<Lane>) -> LinkId {
    let id = gw
        .start_request_on(
            now,
            None,
            lane,
            HOST,
            RequestHead::new("GET", "/svc/x"),
            RequestBody::Empty,
        )
        .expect("routed");
    while gw.poll_output().is_some() {}
    gw.request_link(&id).expect("in flight")
}

#[test]
fn a_request_stays_on_its_lane_within_the_slack() {
    let (now, mut gw, [zero, one]) = gateway(true);
    // Lane 1's connection takes lane 1's requests while it holds no more
    // than LANE_SLACK beyond the other's (which holds none).
    for _ in 0..=LANE_SLACK {
        assert_eq!(start(&mut gw, now, Some(Lane(1))), one);
    }
    // One more would put it past the slack: the idle connection takes it.
    assert_eq!(start(&mut gw, now, Some(Lane(1))), zero);
    // Lane 0's requests go to lane 0's connection meanwhile.
    assert_eq!(start(&mut gw, now, Some(Lane(0))), zero);
}

#[test]
fn without_a_lane_the_least_loaded_connection_takes_it() {
    let (now, mut gw, [zero, one]) = gateway(true);
    let taken: Vec<LinkId> = (0..4).map(|_| start(&mut gw, now, None)).collect();
    assert_eq!(taken, [zero, one, zero, one]);
}

#[test]
fn connections_without_a_lane_are_on_every_lane() {
    let (now, mut gw, [zero, one]) = gateway(false);
    let taken: Vec<LinkId> = (0..4).map(|_| start(&mut gw, now, Some(Lane(1)))).collect();
    assert_eq!(taken, [zero, one, zero, one]);
}
