//! The gateway and receiver state machines driven back to back, in virtual
//! time: what each scenario must produce for the public client.

use std::time::{Duration, Instant};

use anpx_core::WsMessage;
use anpx_core::{
    Failure, Gateway, GatewayConfig, Identity, LinkId, Output, RequestBody, ResponseEvent,
};
use anpx_core::{Feature, Features};
use anpx_core::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent, ResponseBody};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use bytes::Bytes;

struct Pair {
    now: Instant,
    gw: Gateway,
    link: LinkId,
    rx: Receiver,
    /// Events the receiver raised, for the test to serve.
    requests: Vec<RequestEvent>,
    /// What the public client saw, per request.
    responses: Vec<(RequestId, ResponseEvent)>,
    closes: Vec<(LinkId, u16)>,
}

impl Pair {
    fn new(features: Features, gw_config: GatewayConfig) -> Self {
        let now = Instant::now();
        let mut gw = Gateway::new(gw_config, 1);
        let link = gw.admit(
            now,
            Identity::Anonymous,
            vec!["api.agent.com/svc".parse().unwrap()],
            features,
        );
        let rx = Receiver::new(ReceiverConfig::default(), features, now);
        Pair {
            now,
            gw,
            link,
            rx,
            requests: Vec::new(),
            responses: Vec::new(),
            closes: Vec::new(),
        }
    }

    /// Moves every queued message across until both sides are quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = self.gw.poll_output() {
                moved = true;
                match out {
                    Output::Transmit { link, message } => {
                        assert_eq!(link, self.link);
                        self.rx.handle_message(self.now, message);
                    }
                    Output::Response { request, event } => self.responses.push((request, event)),
                    Output::Writable { .. } => {}
                    Output::Close { link, code, .. } => self.closes.push((link, code)),
                    o @ (Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. }) => {
                        panic!("no cluster was joined, yet the bus got {o:?}")
                    }
                }
            }
            while let Some(out) = self.rx.poll_output() {
                moved = true;
                match out {
                    ReceiverOutput::Transmit(message) => {
                        self.gw.handle_message(self.now, self.link, message)
                    }
                    ReceiverOutput::Event(e) => self.requests.push(e),
                    ReceiverOutput::Writable { .. } | ReceiverOutput::Close { .. } => {}
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = [self.gw.poll_timeout(), self.rx.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.gw.handle_timeout(self.now);
            self.rx.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
    }

    /// The requests the receiver raised a head for, in order.
    fn heads(&self) -> Vec<RequestId> {
        self.requests
            .iter()
            .filter_map(|e| match e {
                RequestEvent::Head { request, .. } => Some(request.clone()),
                _ => None,
            })
            .collect()
    }

    /// Answers the first request the receiver saw, 200 with `body`.
    fn answer_first(&mut self, body: &'static [u8]) {
        let RequestEvent::Head { request, .. } = self.requests[0].clone() else {
            panic!("{:?}", self.requests)
        };
        self.rx
            .respond(
                self.now,
                &request,
                ResponseHead::new(200),
                ResponseBody::Full(Bytes::from_static(body)),
            )
            .unwrap();
        self.pump();
    }

    fn body_of(&self, id: &RequestId) -> Vec<u8> {
        self.responses
            .iter()
            .filter(|(r, _)| r == id)
            .filter_map(|(_, e)| match e {
                ResponseEvent::Body(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn events_of(&self, id: &RequestId) -> Vec<&ResponseEvent> {
        self.responses
            .iter()
            .filter(|(r, _)| r == id)
            .map(|(_, e)| e)
            .collect()
    }
}

fn get(path: &str) -> RequestHead {
    RequestHead::new("GET", path).with_header("host", "api.agent.com")
}

#[test]
fn a_small_request_round_trips() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let id =
        p.gw.start_request(
            p.now,
            "api.agent.com",
            get("/svc/hello").with_query("a=1&a=2"),
            RequestBody::Empty,
        )
        .unwrap();
    p.pump();
    let RequestEvent::Head { request, head } = &p.requests[0] else {
        panic!("{:?}", p.requests)
    };
    assert_eq!((&head.path[..], &head.query[..]), ("/svc/hello", "a=1&a=2"));
    assert!(matches!(&p.requests[1], RequestEvent::End { .. }));
    let request = request.clone();
    let head = ResponseHead::new(200)
        .with_header("set-cookie", "a=1")
        .with_header("set-cookie", "b=2");
    p.rx.respond(
        p.now,
        &request,
        head,
        ResponseBody::Full(Bytes::from_static(b"hello")),
    )
    .unwrap();
    p.pump();
    let events = p.events_of(&id);
    let ResponseEvent::Head(h) = events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        h.headers.get_all("set-cookie").collect::<Vec<_>>(),
        ["a=1", "b=2"]
    );
    assert_eq!(p.body_of(&id), b"hello");
    assert_eq!(events.last(), Some(&&ResponseEvent::End));
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.rx.in_flight(), 0);
}

#[test]
fn large_bodies_stream_both_ways_in_chunks() {
    for features in [Features::empty(), Features::from(Feature::Streaming)] {
        let mut p = Pair::new(features, GatewayConfig::default());
        let upload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let id =
            p.gw.start_request(
                p.now,
                "api.agent.com",
                RequestHead::new("POST", "/svc/up"),
                RequestBody::Streaming,
            )
            .unwrap();
        for piece in upload.chunks(100_000) {
            p.gw.push_body(p.now, &id, Bytes::copy_from_slice(piece), false)
                .unwrap();
        }
        p.gw.push_body(p.now, &id, Bytes::new(), true).unwrap();
        p.pump();
        let received: Vec<u8> = p
            .requests
            .iter()
            .filter_map(|e| match e {
                RequestEvent::Body { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(received, upload);
        let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
            panic!()
        };
        assert!(matches!(p.requests.last(), Some(RequestEvent::End { .. })));

        p.rx.respond(
            p.now,
            &request,
            ResponseHead::new(200),
            ResponseBody::Streaming,
        )
        .unwrap();
        for piece in upload.chunks(70_000) {
            p.rx.respond_body(p.now, &request, Bytes::copy_from_slice(piece), false)
                .unwrap();
        }
        p.rx.respond_body(p.now, &request, Bytes::new(), true)
            .unwrap();
        p.pump();
        assert_eq!(p.body_of(&id), upload, "features {features}");
        assert_eq!(p.events_of(&id).last(), Some(&&ResponseEvent::End));
        assert_eq!(
            (p.gw.in_flight(), p.rx.in_flight(), p.rx.partial_requests()),
            (0, 0, 0)
        );
    }
}

#[test]
fn streaming_response_head_arrives_before_the_body_when_negotiated() {
    let mut p = Pair::new(Features::from(Feature::Streaming), GatewayConfig::default());
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/sse"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!()
    };
    p.rx.respond(
        p.now,
        &request,
        ResponseHead::new(200).with_header("content-type", "text/event-stream"),
        ResponseBody::Streaming,
    )
    .unwrap();
    p.pump();
    assert!(matches!(p.events_of(&id)[..], [ResponseEvent::Head(_)]));
    p.rx.respond_body(p.now, &request, Bytes::from_static(b"data: 1\n\n"), false)
        .unwrap();
    p.pump();
    assert_eq!(p.body_of(&id), b"data: 1\n\n");
}

#[test]
fn without_streaming_the_response_is_buffered_into_reference_frames() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/x"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!()
    };
    p.rx.respond(
        p.now,
        &request,
        ResponseHead::new(200),
        ResponseBody::Streaming,
    )
    .unwrap();
    p.rx.respond_body(p.now, &request, Bytes::from_static(b"ab"), false)
        .unwrap();
    p.pump();
    assert!(
        p.events_of(&id).is_empty(),
        "nothing before the end for a reference gateway"
    );
    p.rx.respond_body(p.now, &request, Bytes::from_static(b"cd"), true)
        .unwrap();
    p.pump();
    assert_eq!(p.body_of(&id), b"abcd");
}

#[test]
fn no_route_is_404_and_capacity_is_503() {
    let config = GatewayConfig {
        max_inflight_per_link: 1,
        ..GatewayConfig::default()
    };
    let mut p = Pair::new(Features::empty(), config);
    let e =
        p.gw.start_request(
            p.now,
            "api.agent.com",
            get("/elsewhere"),
            RequestBody::Empty,
        )
        .unwrap_err();
    assert_eq!(e.failure().status, 404);
    assert_eq!(
        e.failure().body_json(),
        r#"{"error":"No route found","path":"/elsewhere"}"#
    );
    p.gw.start_request(p.now, "api.agent.com", get("/svc/1"), RequestBody::Empty)
        .unwrap();
    let e =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/2"), RequestBody::Empty)
            .unwrap_err();
    assert_eq!(e.failure().status, 503);
    let totals = p.gw.stats(p.now).totals;
    assert_eq!(
        (totals.not_found, totals.unavailable, totals.started),
        (1, 1, 1)
    );
}

#[test]
fn a_slow_receiver_gets_504_and_its_late_answer_is_dropped() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/slow"), RequestBody::Empty)
            .unwrap();
    p.pump();
    p.advance(Duration::from_secs(29));
    assert!(p.events_of(&id).is_empty());
    p.advance(Duration::from_secs(2));
    assert!(matches!(
        p.events_of(&id)[..],
        [ResponseEvent::Failed(Failure { status: 504, .. })]
    ));
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!()
    };
    p.rx.respond(p.now, &request, ResponseHead::new(200), ResponseBody::Empty)
        .unwrap();
    p.pump();
    assert_eq!(
        p.events_of(&id).len(),
        1,
        "late response must not reach the client"
    );
    assert_eq!(p.gw.stats(p.now).totals.stray_frames, 1);
}

#[test]
fn closing_the_link_fails_in_flight_requests_with_502_and_removes_routes() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let a =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/a"), RequestBody::Empty)
            .unwrap();
    let b =
        p.gw.start_request(
            p.now,
            "api.agent.com",
            get("/svc/b"),
            RequestBody::Streaming,
        )
        .unwrap();
    p.pump();
    p.gw.close_link(p.now, p.link);
    p.pump();
    for id in [&a, &b] {
        assert!(matches!(
            p.events_of(id)[..],
            [ResponseEvent::Failed(Failure { status: 502, .. })]
        ));
    }
    assert!(p
        .gw
        .push_body(p.now, &b, Bytes::from_static(b"x"), true)
        .is_err());
    assert_eq!(
        p.gw.start_request(p.now, "api.agent.com", get("/svc/a"), RequestBody::Empty)
            .unwrap_err()
            .failure()
            .status,
        404
    );
    p.advance(Duration::from_secs(120));
    let (links, requests, partials, routes, timers) = p.gw.table_sizes();
    assert_eq!((links, requests, partials, routes, timers), (0, 0, 0, 0, 0));
}

#[test]
fn a_silent_receiver_is_dropped_after_two_ping_intervals() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    // Only the gateway's clock runs; the receiver never answers.
    let t = p.now;
    p.gw.handle_timeout(t + Duration::from_secs(59));
    assert!(p.gw.link_count() == 1);
    p.gw.handle_timeout(t + Duration::from_secs(60));
    let closes: Vec<_> = std::iter::from_fn(|| p.gw.poll_output())
        .filter(|o| matches!(o, Output::Close { .. }))
        .collect();
    assert_eq!(closes.len(), 1);
    assert_eq!(p.gw.link_count(), 0);
}

#[test]
fn receiver_pings_keep_the_link_alive() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    p.advance(Duration::from_secs(600));
    assert_eq!(p.gw.link_count(), 1);
    assert!(p.closes.is_empty());
}

#[test]
fn garbage_from_a_receiver_closes_only_that_link() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let other = p.gw.admit(
        p.now,
        Identity::Anonymous,
        vec!["api.agent.com/svc".parse().unwrap()],
        Features::empty(),
    );
    p.gw.handle_message(
        p.now,
        p.link,
        WsMessage::Binary(Bytes::from_static(b"garbage")),
    );
    p.pump();
    assert_eq!(p.closes, vec![(p.link, 1002)]);
    assert_eq!(p.gw.link_count(), 1);
    assert!(p.gw.link_features(other).is_some());
    assert_eq!(p.gw.stats(p.now).totals.protocol_errors, 1);
}

#[test]
fn unsigned_authentication_messages_grant_nothing() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let text = r#"{"type":"authentication","data":{"did_token":"did:wba:evil.example"}}"#;
    p.gw.handle_message(p.now, p.link, WsMessage::Text(text.into()));
    let stats = p.gw.stats(p.now);
    assert_eq!(stats.links[0].identity, Identity::Anonymous);
    assert_eq!(stats.totals.unsigned_auth_ignored, 1);
}

#[test]
fn json_ping_is_answered_with_the_same_timestamp() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    p.gw.handle_message(
        p.now,
        p.link,
        WsMessage::Text(r#"{"type":"ping","timestamp":1732240542.123456}"#.into()),
    );
    assert_eq!(
        p.gw.poll_output(),
        Some(Output::Transmit {
            link: p.link,
            message: WsMessage::Text(r#"{"type": "pong", "timestamp": 1732240542.123456}"#.into())
        })
    );
}

#[test]
fn upstream_failure_before_head_is_a_502_with_the_message() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/x"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!()
    };
    p.rx.respond_error(p.now, &request, "upstream refused the connection")
        .unwrap();
    p.pump();
    let ResponseEvent::Head(h) = p.events_of(&id)[0] else {
        panic!()
    };
    assert_eq!(h.status, 502);
    assert!(String::from_utf8(p.body_of(&id))
        .unwrap()
        .contains("upstream refused the connection"));
}

/// With `upstream-failure` negotiated, the receiver's own 502 carries its
/// cause to the gateway (for the shell to log and take off); without it,
/// nothing is marked, and a service's header of that name never passes.
#[test]
fn upstream_failure_is_marked_only_between_peers_that_negotiated_it() {
    use anpx_core::upstream_failure::{UpstreamCause, UpstreamFailure, HEADER};
    let refused = UpstreamFailure::new(UpstreamCause::Unreachable, "connection refused");
    let run = |features: Features, service_marks: bool| {
        let mut p = Pair::new(features, GatewayConfig::default());
        let id =
            p.gw.start_request(p.now, "api.agent.com", get("/svc/x"), RequestBody::Empty)
                .unwrap();
        p.pump();
        let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
            panic!()
        };
        if service_marks {
            let head = ResponseHead::new(502).with_header(HEADER, "unreachable; forged");
            p.rx.respond(p.now, &request, head, ResponseBody::Empty)
                .unwrap();
        } else {
            p.rx.respond_upstream_failure(p.now, &request, &refused)
                .unwrap();
        }
        p.pump();
        let ResponseEvent::Head(mut h) = p.events_of(&id)[0].clone() else {
            panic!()
        };
        assert_eq!(h.status, 502);
        UpstreamFailure::take(&mut h)
    };
    assert_eq!(
        run(Features::from(Feature::UpstreamFailure), false),
        Some(refused.clone())
    );
    assert_eq!(run(Features::empty(), false), None, "plain v1: no marker");
    assert_eq!(
        run(Features::from(Feature::UpstreamFailure), true),
        None,
        "the receiver drops a service's marker"
    );
    // A link that did not negotiate it cannot mark a response either: a
    // receiver sending the header anyway has it dropped by the gateway.
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    p.rx = Receiver::new(
        ReceiverConfig::default(),
        Features::from(Feature::UpstreamFailure),
        p.now,
    );
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/x"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!()
    };
    p.rx.respond_upstream_failure(p.now, &request, &refused)
        .unwrap();
    p.pump();
    let ResponseEvent::Head(h) = p.events_of(&id)[0].clone() else {
        panic!()
    };
    assert_eq!(h.status, 502);
    assert_eq!(h.headers.get(HEADER), None);
}

#[test]
fn upstream_failure_mid_body_makes_the_gateway_cut_the_response() {
    let mut p = Pair::new(Features::from(Feature::Streaming), GatewayConfig::default());
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/x"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!()
    };
    p.rx.respond(
        p.now,
        &request,
        ResponseHead::new(200),
        ResponseBody::Streaming,
    )
    .unwrap();
    p.rx.respond_body(p.now, &request, Bytes::from_static(b"partial"), false)
        .unwrap();
    p.rx.respond_error(p.now, &request, "upstream reset")
        .unwrap();
    p.pump();
    let events = p.events_of(&id);
    assert!(
        matches!(
            events[..],
            [
                ResponseEvent::Head(_),
                ResponseEvent::Body(_),
                ResponseEvent::Failed(Failure { status: 502, .. })
            ]
        ),
        "{events:?}"
    );
    assert_eq!((p.gw.in_flight(), p.rx.in_flight()), (0, 0));
}

/// Finished requests must leave nothing behind in the gateway, its timer
/// queue included: a deadline left to expire on its own keeps a request
/// timeout's worth of entries (and their ids) alive at any request rate,
/// which is what made the soak's memory grow with the rate.
#[test]
fn finished_requests_leave_no_timer_entries_behind() {
    let mut p = Pair::new(Features::all(), GatewayConfig::default());
    let (_, _, _, _, idle_timers) = p.gw.table_sizes();
    for i in 0..300 {
        let streaming = i % 3 != 0;
        let body = if streaming {
            RequestBody::Streaming
        } else {
            RequestBody::Empty
        };
        let id =
            p.gw.start_request(p.now, "api.agent.com", get(&format!("/svc/{i}")), body)
                .unwrap();
        if streaming {
            p.gw.push_body(p.now, &id, Bytes::from_static(b"part"), i % 3 == 1)
                .unwrap();
        }
        p.pump();
        let request = p
            .requests
            .iter()
            .rev()
            .find_map(|e| match e {
                RequestEvent::Head { request, .. } => Some(request.clone()),
                _ => None,
            })
            .unwrap();
        if i % 5 == 4 {
            // The public client goes away instead.
            p.gw.cancel(p.now, &id);
        } else {
            // Every third request is answered before its upload ends.
            let _ = p.rx.respond(
                p.now,
                &request,
                ResponseHead::new(200),
                ResponseBody::Full(Bytes::from_static(b"ok")),
            );
        }
        p.pump();
        p.advance(Duration::from_millis(10));
        let (links, requests, _, _, timers) = p.gw.table_sizes();
        assert_eq!((links, requests), (1, 0), "request {i} still in flight");
        assert_eq!(
            timers,
            idle_timers,
            "after {} finished requests the timer queue holds {timers} entries",
            i + 1
        );
    }
    assert_eq!(p.rx.in_flight(), 0);
    assert_eq!(p.gw.stats(p.now).totals.timed_out, 0);
}

/// The sizes of the frames a 1 MiB streamed response goes out in; the
/// gateway must get the body whole.
fn streamed_frame_sizes(features: Features, config: ReceiverConfig) -> Vec<usize> {
    let mut p = Pair::new(features, GatewayConfig::default());
    p.rx = Receiver::new(config, features, p.now);
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/big"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p.requests[0].clone() else {
        panic!("no request reached the receiver")
    };
    let body: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    p.rx.respond(
        p.now,
        &request,
        ResponseHead::new(200),
        ResponseBody::Streaming,
    )
    .unwrap();
    p.rx.respond_body(p.now, &request, Bytes::from(body.clone()), true)
        .unwrap();
    // Frames are taken off the receiver, measured, and handed to the
    // gateway, whose credit (with flow control) lets the rest go.
    let mut sizes = Vec::new();
    loop {
        let mut moved = false;
        while let Some(out) = p.rx.poll_output() {
            moved = true;
            if let ReceiverOutput::Transmit(message) = out {
                if let WsMessage::Binary(b) = &message {
                    sizes.push(b.len());
                }
                p.gw.handle_message(p.now, p.link, message);
            }
        }
        let mut read = Vec::new();
        while let Some(out) = p.gw.poll_output() {
            moved = true;
            match out {
                Output::Transmit { message, .. } => p.rx.handle_message(p.now, message),
                Output::Response { request, event } => {
                    if let ResponseEvent::Body(b) = &event {
                        read.push((request.clone(), b.len()));
                    }
                    p.responses.push((request, event))
                }
                Output::Writable { .. } => {}
                Output::Close { .. } => panic!("the link was closed"),
                o @ (Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. }) => {
                    panic!("no cluster was joined, yet the bus got {o:?}")
                }
            }
        }
        // The client reads everything at once, which returns credit.
        for (request, n) in read {
            p.gw.body_read(p.now, &request, n);
        }
        if !moved {
            break;
        }
    }
    assert_eq!(p.body_of(&id), body, "features {features}");
    assert_eq!(p.events_of(&id).last(), Some(&&ResponseEvent::End));
    sizes
}

#[test]
fn streamed_responses_use_bigger_frames_only_toward_streaming_gateways() {
    use anpx_core::chunk::{DEFAULT_CHUNK_SIZE, STREAMING_CHUNK_SIZE};
    // An anpx gateway (streaming): frames up to 256 KiB, so a MiB takes
    // five (the head's frame, then the body less each frame's header).
    let streaming = Features::from(Feature::Streaming);
    let sizes = streamed_frame_sizes(streaming, ReceiverConfig::default());
    assert!(
        sizes.iter().all(|&n| n <= STREAMING_CHUNK_SIZE),
        "{sizes:?}"
    );
    assert!(sizes.iter().any(|&n| n > DEFAULT_CHUNK_SIZE), "{sizes:?}");
    assert!(sizes.len() <= 6, "{sizes:?}");
    // A reference gateway (no streaming): the reference's 64 KiB chunks.
    let sizes = streamed_frame_sizes(Features::empty(), ReceiverConfig::default());
    assert!(sizes.iter().all(|&n| n <= DEFAULT_CHUNK_SIZE), "{sizes:?}");
    assert!(sizes.len() >= 16, "{sizes:?}");
    // A configured chunk size above the streaming one is kept.
    let config = ReceiverConfig {
        chunk_size: 512 * 1024,
        ..ReceiverConfig::default()
    };
    let sizes = streamed_frame_sizes(streaming, config);
    assert!(sizes.iter().any(|&n| n > STREAMING_CHUNK_SIZE), "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 512 * 1024), "{sizes:?}");
    // With flow control no frame outgrows the window, or it could never
    // be sent.
    let window = anpx_core::INITIAL_WINDOW as usize;
    let config = ReceiverConfig {
        streaming_chunk_size: 4 * window,
        ..ReceiverConfig::default()
    };
    let with_flow: Features = [Feature::Streaming, Feature::FlowControl]
        .into_iter()
        .collect();
    let sizes = streamed_frame_sizes(with_flow, config);
    assert!(sizes.iter().all(|&n| n <= window), "{sizes:?}");
}

/// The registry took a route away from a connected receiver: the request
/// already on it finishes, new ones find no route; granting it back
/// routes them again, on the same connection.
#[test]
fn a_regrant_stops_new_requests_and_lets_in_flight_ones_finish() {
    use anpx_core::Reject;
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let svc: anpx_core::ServiceUrl = "api.agent.com/svc".parse().unwrap();
    let other: anpx_core::ServiceUrl = "api.agent.com/other".parse().unwrap();
    let in_flight =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/slow"), RequestBody::Empty)
            .unwrap();
    p.pump();

    let change = p.gw.regrant(p.now, p.link, std::slice::from_ref(&other));
    assert_eq!(
        (change.added, change.removed),
        (vec![other], vec![svc.clone()])
    );
    let refused =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/new"), RequestBody::Empty);
    assert!(
        matches!(refused, Err(Reject::NoRoute { .. })),
        "{refused:?}"
    );
    assert!(p
        .gw
        .start_request(p.now, "api.agent.com", get("/other/x"), RequestBody::Empty)
        .is_ok());

    let RequestEvent::Head { request, .. } = &p.requests[0] else {
        panic!("{:?}", p.requests)
    };
    let request = request.clone();
    p.rx.respond(
        p.now,
        &request,
        ResponseHead::new(200),
        ResponseBody::Full(Bytes::from_static(b"done")),
    )
    .unwrap();
    p.pump();
    assert_eq!(p.body_of(&in_flight), b"done");
    assert_eq!(p.events_of(&in_flight).last(), Some(&&ResponseEvent::End));

    assert_eq!(
        p.gw.regrant(p.now, p.link, std::slice::from_ref(&svc))
            .added,
        [svc]
    );
    assert!(p
        .gw
        .start_request(
            p.now,
            "api.agent.com",
            get("/svc/again"),
            RequestBody::Empty
        )
        .is_ok());
    assert!(
        p.closes.is_empty(),
        "the connection stays up: {:?}",
        p.closes
    );
}

/// A gateway with receivers `rxs` of one route, moving messages across
/// until all are quiet. Each head a receiver gets is recorded with its
/// link and whether that receiver had the gateway's drain answer by then.
struct Many {
    now: Instant,
    gw: Gateway,
    rxs: Vec<(LinkId, Receiver)>,
    heads: Vec<(LinkId, RequestId, bool)>,
    responses: Vec<(RequestId, ResponseEvent)>,
}

impl Many {
    fn new(n: usize, features: Features) -> Self {
        let now = Instant::now();
        let mut gw = Gateway::new(GatewayConfig::default(), 1);
        let rxs = (0..n)
            .map(|_| {
                let link = gw.admit(
                    now,
                    Identity::Anonymous,
                    vec!["api.agent.com/svc".parse().unwrap()],
                    features,
                );
                (
                    link,
                    Receiver::new(ReceiverConfig::default(), features, now),
                )
            })
            .collect();
        Many {
            now,
            gw,
            rxs,
            heads: Vec::new(),
            responses: Vec::new(),
        }
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = self.gw.poll_output() {
                moved = true;
                match out {
                    Output::Transmit { link, message } => {
                        let (_, rx) = self.rxs.iter_mut().find(|(l, _)| *l == link).unwrap();
                        rx.handle_message(self.now, message);
                    }
                    Output::Response { request, event } => self.responses.push((request, event)),
                    Output::Writable { .. } | Output::Close { .. } => {}
                    o @ (Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. }) => {
                        panic!("no cluster was joined, yet the bus got {o:?}")
                    }
                }
            }
            for (link, rx) in &mut self.rxs {
                while let Some(out) = rx.poll_output() {
                    moved = true;
                    match out {
                        ReceiverOutput::Transmit(message) => {
                            self.gw.handle_message(self.now, *link, message)
                        }
                        ReceiverOutput::Event(RequestEvent::Head { request, .. }) => {
                            self.heads.push((*link, request, rx.drain_acknowledged()))
                        }
                        ReceiverOutput::Event(_)
                        | ReceiverOutput::Writable { .. }
                        | ReceiverOutput::Close { .. } => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn start(&mut self, path: &str) -> Result<RequestId, anpx_core::Reject> {
        self.gw
            .start_request(self.now, "api.agent.com", get(path), RequestBody::Empty)
    }

    fn answer(&mut self, i: usize, id: &RequestId) {
        let now = self.now;
        self.rxs[i]
            .1
            .respond(
                now,
                id,
                ResponseHead::new(200),
                ResponseBody::Full("ok".into()),
            )
            .unwrap();
        self.pump();
    }
}

/// Two receivers of one route; one drains with a request in flight. A
/// request routed before the gateway heard still reaches it, ahead of the
/// gateway's answer; after that, new requests go to the other one (even
/// when it is the busier), the drainer's own finish, and with both
/// draining a new request is refused with 503.
#[test]
fn a_draining_receiver_gets_no_new_requests_and_finishes_its_own() {
    let mut m = Many::new(2, Feature::Drain.into());
    let (a, b) = (m.rxs[0].0, m.rxs[1].0);
    let held = m.start("/svc/held").unwrap();
    assert_eq!(m.gw.request_link(&held), Some(a));
    m.pump();

    // Said, not yet heard: a request still goes to `a`, and arrives
    // before the answer.
    let now = m.now;
    assert!(m.rxs[0].1.start_drain(now));
    assert!(!m.rxs[0].1.start_drain(now), "said once");
    let early = m.start("/svc/early").unwrap();
    assert_eq!(m.gw.request_link(&early), Some(b), "the less busy one");
    let early2 = m.start("/svc/early2").unwrap();
    assert_eq!(m.gw.request_link(&early2), Some(a), "tie: the first link");
    m.pump();
    assert!(
        m.heads.contains(&(a, early2.clone(), false)),
        "{:?}",
        m.heads
    );
    assert!(m.rxs[0].1.drain_acknowledged());
    assert_eq!(m.gw.link_draining(a), Some(true));
    assert_eq!(m.gw.link_draining(b), Some(false));

    // `a` holds two, `b` one: without the drain the second of these would
    // go to `a` (a tie goes to the first link).
    for path in ["/svc/n1", "/svc/n2", "/svc/n3"] {
        let id = m.start(path).unwrap();
        assert_eq!(m.gw.request_link(&id), Some(b), "{path} skips the drainer");
    }
    m.pump();
    m.answer(0, &held);
    m.answer(0, &early2);
    for id in [&held, &early2] {
        assert!(
            m.responses
                .iter()
                .any(|(r, e)| r == id && matches!(e, ResponseEvent::Head(h) if h.status == 200)),
            "{id} finishes on the draining receiver"
        );
    }

    let now = m.now;
    assert!(m.rxs[1].1.start_drain(now));
    m.pump();
    let e = m.start("/svc/late").unwrap_err();
    assert!(matches!(e, anpx_core::Reject::Draining { .. }), "{e:?}");
    assert_eq!(e.failure().status, 503);
}

/// Without `drain` negotiated the receiver says nothing, and a
/// `draining` message from such a link is counted as a bad control
/// message and changes no routing.
#[test]
fn draining_needs_the_extension() {
    let mut m = Many::new(2, Features::empty());
    let a = m.rxs[0].0;
    let now = m.now;
    assert!(!m.rxs[0].1.start_drain(now));
    m.gw.handle_message(now, a, WsMessage::Text(r#"{"type": "draining"}"#.into()));
    assert_eq!(m.gw.link_draining(a), Some(false));
    assert_eq!(m.gw.stats(now).totals.bad_control, 1);
    let id = m.start("/svc/x").unwrap();
    assert_eq!(m.gw.request_link(&id), Some(a));
}

/// A head with a header no HTTP/1 request can carry (a name that is not a
/// token, a value with a line break) is answered 400 by the receiver
/// itself, its upload dropped, so every shell gives the same answer and
/// none writes the line break into the service's request.
#[test]
fn a_head_no_http1_request_can_carry_is_answered_400() {
    let bad = [
        ("x-a\r\nx-injected", "1", "is not a token"),
        ("caf\u{e9}", "1", "is not a token"),
        ("x-a", "1\r\nx-injected: 1", "control character"),
        ("x-a", "nul\0", "control character"),
    ];
    for (name, value, why) in bad {
        let mut p = Pair::new(Features::all(), GatewayConfig::default());
        let id =
            p.gw.start_request(
                p.now,
                "api.agent.com",
                RequestHead::new("POST", "/svc/x")
                    .with_header("host", "api.agent.com")
                    .with_header(name, value),
                RequestBody::Streaming,
            )
            .unwrap();
        p.gw.push_body(p.now, &id, Bytes::from_static(b"more"), false)
            .unwrap();
        p.pump();
        assert!(p.requests.is_empty(), "{name:?}: {:?}", p.requests);
        let events = p.events_of(&id);
        let ResponseEvent::Head(h) = events[0] else {
            panic!("{name:?}: {events:?}")
        };
        assert_eq!(h.status, 400, "{name:?}");
        let body = String::from_utf8(p.body_of(&id)).unwrap();
        assert!(
            body.contains("Bad request from gateway") && body.contains(why),
            "{body}"
        );
        assert_eq!(events.last(), Some(&&ResponseEvent::End));
        assert_eq!(p.rx.totals().refused_malformed, 1);
        assert_eq!(p.rx.in_flight(), 0);
        assert_eq!(p.gw.stats(p.now).totals.stray_frames, 0);

        // The link goes on serving.
        p.gw.start_request(p.now, "api.agent.com", get("/svc/ok"), RequestBody::Empty)
            .unwrap();
        p.pump();
        assert_eq!(p.heads().len(), 1, "{name:?}: {:?}", p.requests);
    }
}

/// A gateway sends more requests at once than the receiver serves on one
/// connection: the one past `max_in_flight` is answered 503 at once,
/// without reaching the service, its streamed upload dropped; once a
/// request ends, the next one is served again.
#[test]
fn a_request_past_the_receivers_in_flight_cap_is_answered_503() {
    for features in [
        Features::empty(),
        [Feature::Streaming, Feature::FlowControl]
            .into_iter()
            .collect(),
    ] {
        let mut p = Pair::new(features, GatewayConfig::default());
        let config = ReceiverConfig {
            max_in_flight: 2,
            ..ReceiverConfig::default()
        };
        p.rx = Receiver::new(config, features, p.now);
        let first =
            p.gw.start_request(p.now, "api.agent.com", get("/svc/1"), RequestBody::Empty)
                .unwrap();
        p.gw.start_request(p.now, "api.agent.com", get("/svc/2"), RequestBody::Empty)
            .unwrap();
        let busy =
            p.gw.start_request(
                p.now,
                "api.agent.com",
                RequestHead::new("POST", "/svc/3").with_header("host", "api.agent.com"),
                RequestBody::Streaming,
            )
            .unwrap();
        // More of the upload is on its way when the refusal comes.
        p.gw.push_body(p.now, &busy, Bytes::from_static(b"more"), false)
            .unwrap();
        p.pump();
        assert_eq!(
            p.gw.stats(p.now).totals.stray_frames,
            0,
            "features {features}: the refused upload's frames are dropped quietly, not refused one by one"
        );

        let heads = p.heads();
        assert_eq!(heads.len(), 2, "features {features}: {:?}", p.requests);
        assert!(
            !p.requests
                .iter()
                .any(|e| matches!(e, RequestEvent::Body { .. })),
            "features {features}: the refused upload reached the service"
        );
        let events = p.events_of(&busy);
        let ResponseEvent::Head(h) = events[0] else {
            panic!("features {features}: {events:?}")
        };
        assert_eq!(h.status, 503, "features {features}");
        assert_eq!(h.headers.get("retry-after"), Some("1"));
        let body = String::from_utf8(p.body_of(&busy)).unwrap();
        assert!(body.contains("receiver busy"), "{body}");
        assert_eq!(events.last(), Some(&&ResponseEvent::End));
        assert_eq!(p.rx.totals().refused_busy, 1);
        assert_eq!(p.rx.in_flight(), 2);

        // One ends: the next request is served.
        p.answer_first(b"one");
        assert_eq!(p.body_of(&first), b"one");
        p.gw.start_request(p.now, "api.agent.com", get("/svc/4"), RequestBody::Empty)
            .unwrap();
        p.pump();
        let served = p
            .requests
            .iter()
            .filter(|e| matches!(e, RequestEvent::Head { head, .. } if head.path == "/svc/4"))
            .count();
        assert_eq!(served, 1, "features {features}");
        assert_eq!(p.rx.totals().refused_busy, 1);
    }
}

/// A request's head is in its first chunk. A gateway that sends body
/// chunks first gets the request refused with an error frame, and the
/// receiver holds none of those bytes waiting for a head.
#[test]
fn request_chunks_before_their_head_are_refused_not_held() {
    use anpx_core::frame::{ChunkInfo, Frame, MessageKind};
    let now = Instant::now();
    let mut rx = Receiver::new(ReceiverConfig::default(), Features::empty(), now);
    for i in 0..100 {
        let frame = Frame {
            kind: MessageKind::Request,
            request_id: RequestId::from(format!("headless-{i}")),
            chunk: Some(ChunkInfo {
                index: 0,
                total: Some(2),
                final_marker: None,
            }),
            meta: None,
            body: Some(Bytes::from(vec![b'x'; 60_000])),
        };
        rx.handle_message(now, WsMessage::Binary(frame.encode().unwrap()));
    }
    assert_eq!(rx.partial_requests(), 0, "nothing is held for a head");
    let mut errors = 0;
    while let Some(out) = rx.poll_output() {
        match out {
            ReceiverOutput::Transmit(WsMessage::Binary(b)) => {
                let f = Frame::decode(b, &Default::default()).unwrap();
                assert_eq!(f.kind, MessageKind::Error);
                errors += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(errors, 100, "each refused request is told to the gateway");
}

/// Towards a gateway without `streaming`, responses are held whole. What
/// they hold together on one connection is bounded too: the response that
/// would pass `max_buffered_total` fails with 502, the others go on, and
/// what each held is given back when it ends, however it ends.
#[test]
fn responses_held_for_a_gateway_without_streaming_share_one_total() {
    let mut p = Pair::new(Features::empty(), GatewayConfig::default());
    let config = ReceiverConfig {
        max_buffered_response: 1000,
        max_buffered_total: 1500,
        ..ReceiverConfig::default()
    };
    p.rx = Receiver::new(config, Features::empty(), p.now);
    let ids: Vec<RequestId> = (0..3)
        .map(|i| {
            p.gw.start_request(
                p.now,
                "api.agent.com",
                get(&format!("/svc/{i}")),
                RequestBody::Empty,
            )
            .unwrap()
        })
        .collect();
    p.pump();
    let served = p.heads();
    for r in &served {
        p.rx.respond(p.now, r, ResponseHead::new(200), ResponseBody::Streaming)
            .unwrap();
    }
    let piece = Bytes::from(vec![b'a'; 600]);
    p.rx.respond_body(p.now, &served[0], piece.clone(), false)
        .unwrap();
    p.rx.respond_body(p.now, &served[1], piece.clone(), false)
        .unwrap();
    assert_eq!(p.rx.buffered_response_bytes(), 1200);
    // 1200 + 600 would pass the total of 1500.
    let over = p.rx.respond_body(p.now, &served[2], piece.clone(), false);
    assert!(over.is_err(), "{over:?}");
    assert_eq!(p.rx.buffered_response_bytes(), 1200);
    // The first ends whole; the second fails upstream: both give back.
    p.rx.respond_body(p.now, &served[0], Bytes::new(), true)
        .unwrap();
    p.rx.respond_error(p.now, &served[1], "cut").unwrap();
    assert_eq!(p.rx.buffered_response_bytes(), 0);
    p.pump();

    let status = |id: &RequestId| match p.events_of(id)[0] {
        ResponseEvent::Head(h) => h.status,
        other => panic!("{other:?}"),
    };
    assert_eq!(status(&ids[0]), 200);
    assert_eq!(p.body_of(&ids[0]), piece.to_vec());
    assert_eq!(status(&ids[1]), 502);
    assert_eq!(status(&ids[2]), 502);
    let why = String::from_utf8(p.body_of(&ids[2])).unwrap();
    assert!(why.contains("on this connection"), "{why}");

    // A request aborted while it holds a response gives it back too.
    let id =
        p.gw.start_request(p.now, "api.agent.com", get("/svc/3"), RequestBody::Empty)
            .unwrap();
    p.pump();
    let RequestEvent::Head { request, .. } = p
        .requests
        .iter()
        .rev()
        .find(|e| matches!(e, RequestEvent::Head { .. }))
        .unwrap()
        .clone()
    else {
        unreachable!()
    };
    p.rx.respond(
        p.now,
        &request,
        ResponseHead::new(200),
        ResponseBody::Streaming,
    )
    .unwrap();
    p.rx.respond_body(p.now, &request, piece, false).unwrap();
    assert_eq!(p.rx.buffered_response_bytes(), 600);
    p.rx.handle_close(p.now);
    assert_eq!(p.rx.buffered_response_bytes(), 0);
    let _ = id;
}

/// Upload bytes held for the services: the reference's kind of gateway
/// gets the fixed budget; one with flow control a full window more per
/// request the receiver may serve at once, so keeping to its windows
/// never gets an upload cut.
#[test]
fn the_upload_budget_leaves_room_for_every_credit_window() {
    let now = Instant::now();
    let config = ReceiverConfig {
        max_in_flight: 10,
        ..ReceiverConfig::default()
    };
    let plain = Receiver::new(config.clone(), Features::empty(), now);
    assert_eq!(plain.upload_budget(), anpx_core::DEFAULT_MAX_UNREAD_UPLOAD);
    let flow = Receiver::new(config, Features::from(Feature::FlowControl), now);
    assert_eq!(
        flow.upload_budget(),
        anpx_core::DEFAULT_MAX_UNREAD_UPLOAD + 10 * anpx_core::INITIAL_WINDOW
    );
}
