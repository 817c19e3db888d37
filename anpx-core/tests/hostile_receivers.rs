//! The gateway state machine against receivers that break the rules: each
//! fault is counted, the connections that commit it are closed, and the
//! requests of other connections are left alone. Also the path rules of
//! `start_request`.

use std::time::{Duration, Instant};

use anpx_core::frame::{ChunkInfo, FinalMarker, Frame, MessageKind, Meta};
use anpx_core::Features;
use anpx_core::{
    Gateway, GatewayConfig, Identity, LinkFault, LinkId, MessageBudget, Output, Reject,
    RequestBody, ResponseEvent,
};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use anpx_core::{WsMessage, CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG};
use bytes::Bytes;

const HOST: &str = "api.agent.com";

struct Bench {
    now: Instant,
    gw: Gateway,
    good: LinkId,
    evil: LinkId,
}

impl Bench {
    fn new(config: GatewayConfig) -> Self {
        let now = Instant::now();
        let mut gw = Gateway::new(config, 3);
        let good = gw.admit(
            now,
            Identity::Anonymous,
            vec!["api.agent.com/good".parse().unwrap()],
            Features::empty(),
        );
        let evil = gw.admit(
            now,
            Identity::Anonymous,
            vec!["api.agent.com/evil".parse().unwrap()],
            Features::empty(),
        );
        Bench {
            now,
            gw,
            good,
            evil,
        }
    }

    /// Starts a request and returns its id and the request frames sent.
    fn start(&mut self, path: &str) -> (RequestId, Vec<Output>) {
        let id = self
            .gw
            .start_request(
                self.now,
                HOST,
                RequestHead::new("GET", path),
                RequestBody::Empty,
            )
            .unwrap();
        (id, self.drain())
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.gw.poll_output()).collect()
    }

    fn faults(&self, fault: LinkFault) -> u64 {
        self.gw
            .stats(self.now)
            .totals
            .receiver_faults
            .get(fault.label())
            .copied()
            .unwrap_or(0)
    }

    fn links(&self) -> Vec<LinkId> {
        self.gw.stats(self.now).links.iter().map(|l| l.id).collect()
    }
}

fn response(id: &RequestId, chunk: Option<ChunkInfo>, head: bool, body: &[u8]) -> WsMessage {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk,
        meta: head.then(|| Meta::Response(ResponseHead::new(200))),
        body: (!body.is_empty()).then(|| Bytes::copy_from_slice(body)),
    };
    WsMessage::Binary(frame.encode().unwrap())
}

fn chunk(index: u32, last: bool) -> Option<ChunkInfo> {
    Some(ChunkInfo {
        index,
        total: None,
        final_marker: last.then_some(FinalMarker::Byte),
    })
}

fn closes(outputs: &[Output]) -> Vec<(LinkId, u16)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Close { link, code, .. } => Some((*link, *code)),
            _ => None,
        })
        .collect()
}

fn events_for<'a>(outputs: &'a [Output], id: &RequestId) -> Vec<&'a ResponseEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Response { request, event } if request == id => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn a_frame_for_another_connections_request_closes_the_sender_only() {
    let mut b = Bench::new(GatewayConfig::default());
    let (victim, _) = b.start("/good/x");
    let (evil, e) = b.start("/evil/x");
    assert!(!e.is_empty());
    b.gw.handle_message(b.now, b.evil, response(&victim, None, true, b"forged"));
    let out = b.drain();
    assert_eq!(closes(&out), [(b.evil, CLOSE_PROTOCOL_ERROR)]);
    assert!(
        events_for(&out, &victim).is_empty(),
        "the forged answer reached the victim: {out:?}"
    );
    assert!(matches!(
        events_for(&out, &evil)[..],
        [ResponseEvent::Failed(f)] if f.status == 502
    ));
    assert_eq!(b.faults(LinkFault::ForeignRequest), 1);
    assert_eq!(b.links(), [b.good]);
    // The victim's own receiver still answers it.
    b.gw.handle_message(b.now, b.good, response(&victim, None, true, b"real"));
    let out = b.drain();
    assert!(matches!(
        events_for(&out, &victim)[..],
        [ResponseEvent::Head(_), ResponseEvent::Body(body), ResponseEvent::End] if body == "real"
    ));
}

#[test]
fn frames_for_unknown_ids_are_dropped_without_closing() {
    let mut b = Bench::new(GatewayConfig::default());
    for i in 0..5000 {
        let id = RequestId::from(format!("never-sent-{i}").as_str());
        b.gw.handle_message(b.now, b.evil, response(&id, None, true, b"x"));
    }
    assert!(b.drain().is_empty());
    assert_eq!(b.gw.stats(b.now).totals.stray_frames, 5000);
    assert_eq!(b.links().len(), 2);
}

#[test]
fn garbage_and_request_frames_close_with_a_protocol_error() {
    let mut b = Bench::new(GatewayConfig::default());
    b.gw.handle_message(
        b.now,
        b.evil,
        WsMessage::Binary(Bytes::from_static(b"garbage")),
    );
    assert_eq!(closes(&b.drain()), [(b.evil, CLOSE_PROTOCOL_ERROR)]);
    assert_eq!(b.faults(LinkFault::BadFrame), 1);

    let mut b = Bench::new(GatewayConfig::default());
    let req = Frame {
        kind: MessageKind::Request,
        request_id: RequestId::from("r"),
        chunk: None,
        meta: Some(Meta::Request(RequestHead::new("GET", "/"))),
        body: None,
    };
    b.gw.handle_message(b.now, b.evil, WsMessage::Binary(req.encode().unwrap()));
    assert_eq!(closes(&b.drain()), [(b.evil, CLOSE_PROTOCOL_ERROR)]);
    assert_eq!(b.faults(LinkFault::RequestFrame), 1);
    assert_eq!(b.gw.stats(b.now).totals.protocol_errors, 1);
}

#[test]
fn the_shell_reports_oversized_messages() {
    let mut b = Bench::new(GatewayConfig::default());
    let (id, _) = b.start("/evil/x");
    b.gw.link_fault(b.now, b.evil, LinkFault::TooBig, "message of 2 MiB");
    let out = b.drain();
    assert_eq!(closes(&out), [(b.evil, CLOSE_TOO_BIG)]);
    assert!(matches!(events_for(&out, &id)[..], [ResponseEvent::Failed(f)] if f.status == 502));
    assert_eq!(b.faults(LinkFault::TooBig), 1);
    // A second report for the closed connection counts nothing.
    b.gw.link_fault(b.now, b.evil, LinkFault::TooBig, "again");
    assert!(b.drain().is_empty());
    assert_eq!(b.faults(LinkFault::TooBig), 1);
}

fn tight() -> GatewayConfig {
    GatewayConfig {
        chatter: MessageBudget {
            burst: 50,
            per_second: 10,
        },
        ..GatewayConfig::default()
    }
}

#[test]
fn a_ping_flood_closes_the_connection() {
    let mut b = Bench::new(tight());
    let ping = r#"{"type":"ping","timestamp":1}"#;
    let mut pongs = 0;
    for _ in 0..200 {
        b.gw.handle_message(b.now, b.evil, WsMessage::Text(ping.into()));
        b.gw.handle_message(b.now, b.evil, WsMessage::Ping(Bytes::new()));
        pongs += b
            .drain()
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Transmit {
                        message: WsMessage::Text(_),
                        ..
                    }
                )
            })
            .count();
    }
    assert!(pongs <= 50, "{pongs} pongs queued for a flooder");
    assert_eq!(b.faults(LinkFault::Flood), 1);
    assert_eq!(b.links(), [b.good]);
}

#[test]
fn pings_at_a_sane_rate_are_fine_forever() {
    let mut b = Bench::new(tight());
    for _ in 0..10_000 {
        // Two messages every 250 ms: 8 a second, under the 10 allowed.
        b.now += Duration::from_millis(250);
        b.gw.handle_message(
            b.now,
            b.evil,
            WsMessage::Text(r#"{"type":"heartbeat"}"#.into()),
        );
        b.gw.handle_message(b.now, b.evil, WsMessage::Pong(Bytes::new()));
    }
    assert_eq!(b.faults(LinkFault::Flood), 0);
    assert_eq!(b.links().len(), 2);
}

#[test]
fn an_endless_stream_of_empty_chunks_closes_the_connection() {
    let mut b = Bench::new(tight());
    let (id, _) = b.start("/evil/x");
    b.gw.handle_message(b.now, b.evil, response(&id, chunk(0, false), true, b""));
    let mut out = b.drain();
    for i in 1..1000 {
        b.gw.handle_message(b.now, b.evil, response(&id, chunk(i, false), false, b""));
        out.extend(b.drain());
    }
    assert_eq!(closes(&out), [(b.evil, CLOSE_POLICY_VIOLATION)]);
    assert!(matches!(
        events_for(&out, &id)[..],
        [ResponseEvent::Head(_), ResponseEvent::Failed(f)] if f.status == 502
    ));
    assert_eq!(b.faults(LinkFault::Flood), 1);
}

#[test]
fn chunks_past_the_message_limit_fail_that_request_only() {
    let mut config = GatewayConfig::default();
    config.reassembly.max_message_size = 1000;
    let mut b = Bench::new(config);
    let (id, _) = b.start("/evil/x");
    let (other, _) = b.start("/evil/y");
    let mut out = Vec::new();
    for i in 0..20 {
        b.gw.handle_message(
            b.now,
            b.evil,
            response(&id, chunk(i, false), i == 0, &[7; 100]),
        );
        out.extend(b.drain());
    }
    let events = events_for(&out, &id);
    assert!(
        matches!(events.last(), Some(ResponseEvent::Failed(f)) if f.status == 502),
        "{events:?}"
    );
    let delivered: usize = events
        .iter()
        .map(|e| match e {
            ResponseEvent::Body(b) => b.len(),
            _ => 0,
        })
        .sum();
    assert!(delivered <= 1000, "{delivered} bytes passed the limit");
    // A configured limit, not a fault of the receiver.
    assert_eq!(b.faults(LinkFault::InvalidResponse), 0);
    assert!(closes(&out).is_empty());
    // The same connection's other request is untouched.
    b.gw.handle_message(b.now, b.evil, response(&other, None, true, b"ok"));
    assert!(events_for(&b.drain(), &other).contains(&&ResponseEvent::End));
}

#[test]
fn paths_are_routed_and_forwarded_normalized() {
    let mut b = Bench::new(GatewayConfig::default());
    // `/evil/../good/x` is a request for the good receiver, and it gets the
    // resolved path, never the dots.
    let (_, out) = b.start("/evil/%2e%2e//good/./x");
    let Some(Output::Transmit {
        link,
        message: WsMessage::Binary(wire),
    }) = out.first()
    else {
        panic!("{out:?}")
    };
    assert_eq!(*link, b.good);
    let frame = Frame::decode(wire.clone(), &Default::default()).unwrap();
    let Some(Meta::Request(head)) = frame.meta else {
        panic!()
    };
    assert_eq!(head.path, "/good/x");

    for bad in [
        "/good/..%2f..%2fevil",
        "/good/../../evil",
        "/good/%00",
        "/good/..;/evil",
    ] {
        let err =
            b.gw.start_request(
                b.now,
                HOST,
                RequestHead::new("GET", bad),
                RequestBody::Empty,
            )
            .unwrap_err();
        assert!(matches!(err, Reject::BadPath { .. }), "{bad}: {err:?}");
        assert_eq!(err.failure().status, 400, "{bad}");
        assert!(b.drain().is_empty(), "{bad} reached a receiver");
    }
    let totals = b.gw.stats(b.now).totals;
    assert_eq!(totals.bad_request, 4);
    assert!(b
        .gw
        .stats(b.now)
        .to_prometheus()
        .contains("anpx_requests_failed_total{status=\"400\"} 4\n"));
}
