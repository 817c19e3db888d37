//! A service's response relayed through [`anpx_core::ResponseRelay`] into
//! the receiver machine and out of the gateway machine: what the client
//! gets for a body sent whole, one streamed, and one that is not the
//! length its service announced.

mod support;

use support::Pair;

use anpx_core::chunk::DEFAULT_CHUNK_SIZE;
use anpx_core::upstream_failure::{UpstreamCause, UpstreamFailure};
use anpx_core::HeaderList;
use anpx_core::{Feature, Features, GatewayConfig, RequestBody, ResponseEvent};
use anpx_core::{RelayMode, RequestEvent, RequestHead, RequestId, ResponseRelay};
use bytes::Bytes;

fn pair() -> Pair {
    let features: Features = [Feature::Streaming, Feature::UpstreamFailure]
        .into_iter()
        .collect();
    Pair::back_to_back("api.agent.com/svc", features, GatewayConfig::default())
}

/// Starts a request; the gateway's id and the receiver's.
fn start(p: &mut Pair) -> (RequestId, RequestId) {
    let id =
        p.gw.start_request(
            p.now,
            "api.agent.com",
            RequestHead::new("GET", "/svc/x"),
            RequestBody::Empty,
        )
        .unwrap();
    p.pump();
    let Some(RequestEvent::Head { request, .. }) = p.requests.first().cloned() else {
        panic!("the receiver got the request");
    };
    (id, request)
}

/// Relays `pieces` and then the end of the service's body, as a shell
/// does: each step the relay gives goes into the receiver machine.
fn relay(p: &mut Pair, request: &RequestId, mut relay: ResponseRelay, pieces: &[&[u8]]) {
    let mut steps: Vec<_> = relay.start().into_iter().collect();
    for piece in pieces {
        steps.extend(relay.piece(Bytes::copy_from_slice(piece)));
    }
    steps.extend(relay.end());
    for step in steps {
        p.rx.respond_step(p.now, request, step).unwrap();
    }
    p.pump();
}

fn events(p: &Pair, id: &RequestId) -> Vec<ResponseEvent> {
    p.responses
        .iter()
        .filter(|(r, _)| r == id)
        .map(|(_, e)| e.clone())
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderList {
    pairs.iter().copied().collect()
}

/// What a client gets for a service's `200` with `service_headers`,
/// `announced` length and body `pieces`; the pair after it, and how many
/// frames the receiver sent for it.
fn serve(
    service_headers: &[(&str, &str)],
    announced: Option<u64>,
    pieces: &[&[u8]],
) -> (Pair, Vec<ResponseEvent>, usize) {
    let mut p = pair();
    let (id, request) = start(&mut p);
    let sent_before = p.rx_sent.len();
    let response =
        p.rx.relay_policy()
            .response(200, headers(service_headers), announced);
    relay(&mut p, &request, response, pieces);
    let frames = p.rx_sent.len() - sent_before;
    let events = events(&p, &id);
    (p, events, frames)
}

fn mode(announced: Option<u64>) -> RelayMode {
    pair()
        .rx
        .relay_policy()
        .response(200, headers(&[]), announced)
        .mode()
}

/// The body bytes among `events`.
fn body_len(events: &[ResponseEvent]) -> usize {
    events
        .iter()
        .map(|e| match e {
            ResponseEvent::Body(b) => b.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_body_that_fits_one_chunk_leaves_in_one_frame() {
    assert_eq!(mode(Some(DEFAULT_CHUNK_SIZE as u64)), RelayMode::Whole);
    let (_, e, frames) = serve(&[("x", "1")], Some(5), &[b"hel", b"lo"]);
    assert_eq!(frames, 1, "head and body in one frame");
    assert!(
        matches!(&e[0], ResponseEvent::Head(h) if h.status == 200 && h.headers.get("x") == Some("1"))
    );
    assert_eq!(
        e[1..],
        [ResponseEvent::Body("hello".into()), ResponseEvent::End]
    );
}

#[test]
fn a_body_longer_than_a_chunk_streams_piece_by_piece() {
    let announced = DEFAULT_CHUNK_SIZE as u64 + 1;
    assert_eq!(mode(Some(announced)), RelayMode::Stream);
    assert_eq!(mode(None), RelayMode::Stream, "no length: streamed");
    let (_, e, frames) = serve(&[], Some(announced), &[&[b'a'; DEFAULT_CHUNK_SIZE + 1]]);
    assert!(frames > 1, "a head frame, then the body's");
    assert_eq!(body_len(&e), DEFAULT_CHUNK_SIZE + 1);
    assert_eq!(e.last(), Some(&ResponseEvent::End));
}

#[test]
fn hop_by_hop_headers_never_reach_the_gateway() {
    let service = [
        ("connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "1"),
        ("content-type", "text/plain"),
    ];
    let (_, e, _) = serve(&service, Some(2), &[b"ok"]);
    let Some(ResponseEvent::Head(head)) = e.first() else {
        panic!("a head");
    };
    for name in ["connection", "keep-alive", "x-hop"] {
        assert_eq!(head.headers.get(name), None, "{name}");
    }
    assert_eq!(head.headers.get("content-type"), Some("text/plain"));
}

#[test]
fn a_whole_body_cut_short_is_the_receivers_502_naming_it() {
    let (_, e, _) = serve(&[], Some(5), &[b"hel"]);
    let Some(ResponseEvent::Head(mut head)) = e.first().cloned() else {
        panic!("a head");
    };
    assert_eq!(head.status, 502);
    assert_eq!(
        UpstreamFailure::take(&mut head),
        Some(UpstreamFailure::new(
            UpstreamCause::Cut,
            "Upstream body ended after 3 of 5 bytes"
        ))
    );
}

#[test]
fn a_streamed_body_cut_short_is_cut_at_the_client_too() {
    let (p, e, _) = serve(&[], Some(1 << 20), &[b"partial"]);
    assert!(
        matches!(
            e[..],
            [
                ResponseEvent::Head(_),
                ResponseEvent::Body(_),
                ResponseEvent::Failed(_)
            ]
        ),
        "{e:?}"
    );
    assert_eq!((p.gw.in_flight(), p.rx.in_flight()), (0, 0));
}

#[test]
fn a_streamed_body_past_its_length_is_cut() {
    let announced = DEFAULT_CHUNK_SIZE as u64 + 1;
    let (_, e, _) = serve(&[], Some(announced), &[&[b'a'; DEFAULT_CHUNK_SIZE + 2]]);
    assert!(matches!(e.last(), Some(ResponseEvent::Failed(_))), "{e:?}");
}

#[test]
fn a_streamed_body_of_its_exact_length_completes() {
    let announced = DEFAULT_CHUNK_SIZE as u64 + 3;
    let pieces: [&[u8]; 3] = [&[b'a'; DEFAULT_CHUNK_SIZE], b"", b"xyz"];
    let (p, e, _) = serve(&[], Some(announced), &pieces);
    assert_eq!(e.last(), Some(&ResponseEvent::End));
    assert_eq!(body_len(&e), DEFAULT_CHUNK_SIZE + 3);
    assert_eq!((p.gw.in_flight(), p.rx.in_flight()), (0, 0));
}
