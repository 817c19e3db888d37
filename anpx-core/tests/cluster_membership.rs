//! The gateway machine's part in a cluster: its announcement rounds and
//! service subjects follow its receivers' routes, in its own time, and
//! its route book decides where a public request goes.

mod support;

use std::time::{Duration, Instant};

use anpx_core::cluster::{Announcement, Choice, ClusterOutput};
use anpx_core::{Features, Gateway, GatewayConfig, Identity, Output, RequestHead, ServiceUrl};

const SECOND: Duration = Duration::from_secs(1);

fn url(s: &str) -> ServiceUrl {
    s.parse().expect("a service URL")
}

/// Runs what is due at `now` and returns the bus's share of the outputs.
fn bus_at(gw: &mut Gateway, now: Instant) -> Vec<ClusterOutput> {
    gw.handle_timeout(now);
    std::iter::from_fn(|| gw.poll_output())
        .filter_map(|o| match o {
            Output::Cluster(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn announced(node: &str, services: &[&str]) -> ClusterOutput {
    ClusterOutput::Announce(Announcement::new(
        node,
        services.iter().map(|s| url(s)).collect(),
    ))
}

/// A gateway with one receiver serving `api.com` (its link), joined to a
/// cluster as `gw-a` at `t0`.
fn member(t0: Instant) -> (Gateway, anpx_core::LinkId) {
    let mut gw = Gateway::new(GatewayConfig::default(), 1);
    let link = gw.admit(
        t0,
        Identity::Anonymous,
        vec![url("api.com")],
        Features::default(),
    );
    support::join_as_gw_a(&mut gw, t0);
    (gw, link)
}

#[test]
fn rounds_follow_the_receivers_routes_and_the_book_chooses_where_requests_go() {
    let t0 = Instant::now();
    let head = RequestHead::new("GET", "/travel/x");
    let outside = Gateway::new(GatewayConfig::default(), 1);
    assert_eq!(
        outside.cluster_choice("api.com", &head),
        Choice::Local { fallback: false },
        "outside a cluster every request is served here"
    );
    let (mut gw, link) = member(t0);
    assert!(
        gw.poll_timeout().is_some_and(|at| at <= t0),
        "the first round is due at once"
    );
    assert_eq!(
        bus_at(&mut gw, t0),
        vec![
            ClusterOutput::Join(url("api.com")),
            announced("gw-a", &["api.com"])
        ]
    );
    assert!(bus_at(&mut gw, t0 + SECOND / 2).is_empty(), "not yet due");

    // gw-b serves a longer prefix: requests under it go there first.
    gw.handle_announcement(t0, Announcement::new("gw-b", vec![url("api.com/travel")]));
    assert_eq!(
        gw.cluster_choice("api.com", &head),
        Choice::Remote(url("api.com/travel"))
    );
    let elsewhere = RequestHead::new("GET", "/other");
    assert_eq!(
        gw.cluster_choice("api.com", &elsewhere),
        Choice::Local { fallback: true }
    );

    // The receiver leaves: the next round leaves its subject; gw-b, silent
    // past its time to live, is forgotten in a later one.
    gw.close_link(t0 + SECOND / 2, link);
    assert_eq!(
        bus_at(&mut gw, t0 + SECOND),
        vec![ClusterOutput::Leave(url("api.com")), announced("gw-a", &[])]
    );
    assert_eq!(
        bus_at(&mut gw, t0 + 2 * SECOND),
        vec![announced("gw-a", &[])]
    );
    assert_eq!(
        bus_at(&mut gw, t0 + 3 * SECOND),
        vec![
            ClusterOutput::Forgotten("gw-b".into()),
            announced("gw-a", &[])
        ]
    );
    assert_eq!(
        gw.cluster_choice("api.com", &head),
        Choice::Local { fallback: true }
    );
}

#[test]
fn leaving_withdraws_at_once_and_ends_the_rounds() {
    let t0 = Instant::now();
    let (mut gw, _) = member(t0);
    bus_at(&mut gw, t0);
    gw.handle_announcement(t0, Announcement::new("gw-b", vec![url("api.com/travel")]));
    gw.leave_cluster(t0);
    let left: Vec<ClusterOutput> = std::iter::from_fn(|| gw.poll_output())
        .filter_map(|o| match o {
            Output::Cluster(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(
        left,
        vec![announced("gw-a", &[]), ClusterOutput::Leave(url("api.com"))]
    );
    for k in 1..5 {
        assert!(
            bus_at(&mut gw, t0 + k * SECOND).is_empty(),
            "no rounds once left"
        );
    }
    let head = RequestHead::new("GET", "/travel/x");
    assert_eq!(
        gw.cluster_choice("api.com", &head),
        Choice::Local { fallback: false }
    );
    assert!(
        gw.route_book().is_some_and(|b| b.is_alive("gw-b")),
        "the book stays for the requests already forwarded"
    );
}
