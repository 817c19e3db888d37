//! A request another gateway forwarded here, served by the gateway machine
//! itself: its local response goes to its `Serving` (never out as a
//! client's response) and back as answers under the forwarding gateway's
//! credit; its upload is credited back only once the local request took
//! it, receiver credit and connection room alike.

mod support;

use anpx_core::cluster::{BodyMode, WireMessage};
use anpx_core::{Feature, Features, GatewayConfig, RequestEvent, RequestHead, RequestId};
use anpx_core::{ResponseBody, ResponseHead};
use bytes::Bytes;
use support::Pair;

const ORIGIN: &str = "origin.inbox";

fn start(body: BodyMode) -> WireMessage {
    WireMessage::Start {
        host: "api.agent.com".into(),
        head: RequestHead::new("POST", "/svc/x"),
        body,
        payload: Bytes::new(),
    }
}

fn pair() -> Pair {
    let features: Features = [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
        .into_iter()
        .collect();
    Pair::back_to_back("api.agent.com/svc", features, GatewayConfig::default())
}

/// A request served to `ORIGIN` whose receiver, without flow control,
/// answered 3 MiB whole at once: its local request has ended while most of
/// the answers wait for the origin's credit.
fn served_whole_answer_of_3_mib() -> (Pair, RequestId) {
    let mut p = Pair::back_to_back(
        "api.agent.com/svc",
        [Feature::Streaming].into_iter().collect(),
        GatewayConfig::default(),
    );
    let now = p.now;
    let id =
        p.gw.serve_forwarded(now, start(BodyMode::Empty), ORIGIN.into(), "_S.b")
            .expect("started");
    p.pump();
    // What answered the start is not what these tests look at.
    answers(&mut p);
    let body = Bytes::from(vec![b'x'; 3 << 20]);
    p.rx.respond(now, &id, ResponseHead::new(200), ResponseBody::Full(body))
        .unwrap();
    p.pump();
    (p, id)
}

/// The answers so far, taken.
fn answers(p: &mut Pair) -> Vec<WireMessage> {
    p.answers
        .drain(..)
        .map(|(_, to, m)| {
            assert_eq!(to, ORIGIN, "every answer goes to the forwarding gateway");
            m
        })
        .collect()
}

fn data(seq: u64, last: bool, bytes: &'static [u8]) -> Bytes {
    WireMessage::Data {
        seq,
        last,
        data: Bytes::from_static(bytes),
    }
    .encode()
}

fn credits(of: &[WireMessage]) -> Vec<u64> {
    of.iter()
        .filter_map(|m| match m {
            WireMessage::Credit { upto } => Some(*upto),
            _ => None,
        })
        .collect()
}

#[test]
fn a_served_request_answers_its_origin_and_never_a_client() {
    let mut p = pair();
    let now = p.now;
    let id: RequestId =
        p.gw.serve_forwarded(now, start(BodyMode::Stream), ORIGIN.into(), "_S.b")
            .expect("started");
    p.pump();
    let first = answers(&mut p);
    assert!(
        matches!(&first[..], [WireMessage::Accepted { inbox, .. }] if *inbox == format!("_S.b.{}", id.as_str())),
        "{first:?}"
    );
    assert!(matches!(p.requests[..], [RequestEvent::Head { .. }]));

    // The upload: each piece reaches the receiver, and its credit goes back.
    p.gw.served_origin(now, &id, Some(data(0, false, b"hello ")))
        .unwrap();
    p.gw.served_origin(now, &id, Some(data(1, true, b"world")))
        .unwrap();
    p.pump();
    assert_eq!(p.upload_bytes(), b"hello world");
    assert!(p
        .requests
        .iter()
        .any(|e| matches!(e, RequestEvent::End { .. })));

    // The response goes back as answers, not as a client's events.
    p.rx.respond(now, &id, ResponseHead::new(200), ResponseBody::Streaming)
        .unwrap();
    p.rx.respond_body(now, &id, Bytes::from_static(b"ok"), true)
        .unwrap();
    p.pump();
    assert!(
        p.responses.is_empty(),
        "no client response: {:?}",
        p.responses
    );
    let back = answers(&mut p);
    assert!(
        matches!(&back[0], WireMessage::Head(h) if h.status == 200),
        "{back:?}"
    );
    assert!(
        back.iter()
            .any(|m| matches!(m, WireMessage::Data { last: true, .. })),
        "{back:?}"
    );
    assert_eq!(p.gw.served_in_flight(), 0, "finished and let go");
    assert_eq!(p.gw.in_flight(), 0);
}

#[test]
fn an_upload_piece_is_credited_only_once_the_connection_has_room() {
    let mut p = pair();
    let now = p.now;
    let id =
        p.gw.serve_forwarded(now, start(BodyMode::Stream), ORIGIN.into(), "_S.b")
            .expect("started");
    p.pump();
    answers(&mut p);
    // The receiver connection's queue is full: pieces wait there, and no
    // credit goes back for them.
    p.gw.link_backlog(now, p.link, true);
    let mut seq = 0;
    let mut sent = 0;
    while credits(&answers(&mut p)).is_empty() && seq < 64 {
        p.gw.served_origin(now, &id, Some(data(seq, false, b"piece")))
            .unwrap();
        p.pump();
        seq += 1;
        sent += 1;
    }
    assert_eq!(sent, 64, "no credit while the connection is backlogged");
    // Room again: the piece waiting is taken and the credit it earned goes.
    p.gw.link_backlog(now, p.link, false);
    p.pump();
    assert!(
        !credits(&answers(&mut p)).is_empty(),
        "the credit goes once there is room"
    );
}

#[test]
fn the_origin_going_away_cancels_the_local_request() {
    let mut p = pair();
    let now = p.now;
    let id =
        p.gw.serve_forwarded(now, start(BodyMode::Empty), ORIGIN.into(), "_S.b")
            .expect("started");
    p.pump();
    assert_eq!(p.gw.in_flight(), 1);
    p.gw.served_origin(now, &id, Some(WireMessage::Cancel.encode()))
        .unwrap();
    p.pump();
    assert_eq!(p.gw.in_flight(), 0, "the local request ended");
    assert_eq!(p.gw.served_in_flight(), 0);
    assert!(
        p.requests
            .iter()
            .any(|e| matches!(e, RequestEvent::Aborted { .. })),
        "the receiver was told: {:?}",
        p.requests
    );
}

#[test]
fn a_start_no_receiver_serves_is_refused_to_its_origin() {
    let mut p = pair();
    let now = p.now;
    let mut other = start(BodyMode::Empty);
    if let WireMessage::Start { host, .. } = &mut other {
        *host = "nobody.example".into();
    }
    assert!(p
        .gw
        .serve_forwarded(now, other, ORIGIN.into(), "_S.b")
        .is_none());
    p.pump();
    let back = answers(&mut p);
    assert!(
        matches!(&back[..], [WireMessage::Failed(f)] if f.status == 404),
        "{back:?}"
    );
}

#[test]
fn a_served_request_counts_in_flight_until_its_answers_are_out() {
    let (mut p, id) = served_whole_answer_of_3_mib();
    let now = p.now;
    assert!(!answers(&mut p).is_empty(), "the first answers went");
    assert_eq!(p.gw.served_in_flight(), 1, "answers still wait for credit");
    assert_eq!(p.gw.in_flight(), 1);
    assert_eq!(p.gw.stats(now).in_flight, 1, "/stats counts it too");

    p.gw.served_origin(
        now,
        &id,
        Some(WireMessage::Credit { upto: 1 << 20 }.encode()),
    )
    .unwrap();
    p.pump();
    let rest = answers(&mut p);
    assert!(
        rest.iter()
            .any(|m| matches!(m, WireMessage::Data { last: true, .. })),
        "the last answer went"
    );
    assert_eq!(p.gw.served_in_flight(), 0);
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.gw.stats(now).in_flight, 0);
}

#[test]
fn a_served_request_without_credit_for_a_request_timeout_is_given_up_and_counted() {
    let (mut p, _) = served_whole_answer_of_3_mib();
    let now = p.now;
    assert_eq!(p.gw.served_in_flight(), 1);
    assert_eq!(p.gw.stats(now).totals.served_stalled, 0);

    // The origin never grants more credit.
    let mut at = now;
    for _ in 0..64 {
        let Some(next) = p.gw.poll_timeout() else {
            break;
        };
        at = next.max(at);
        p.gw.handle_timeout(at);
        p.pump();
    }
    assert_eq!(p.gw.served_in_flight(), 0, "given up");
    assert_eq!(p.gw.in_flight(), 0);
    let stats = p.gw.stats(at);
    assert_eq!(stats.totals.served_stalled, 1);
    assert!(stats
        .to_prometheus()
        .contains("anpx_cluster_served_stalled_total 1"));
    assert!(
        at - now >= p.config.request_timeout,
        "not before a request timeout"
    );
}
