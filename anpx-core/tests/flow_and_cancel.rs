//! The `flow-control` and `cancel` extensions, gateway and receiver state
//! machines back to back: an unread body holds at most a window and stalls
//! nothing else; cancels reach the receiver; a peer that did not negotiate
//! them never sees an extension frame.

mod support;

use std::time::Duration;
use support::Pair;

use anpx_core::chunk::ChunkStream;
use anpx_core::frame::{tag, ExtFrame, Frame, FrameLimits, MessageKind};
use anpx_core::WsMessage;
use anpx_core::INITIAL_WINDOW;
use anpx_core::{Feature, Features};
use anpx_core::{GatewayConfig, LinkFault, Output, RequestBody, ResponseEvent};
use anpx_core::{RequestEvent, ResponseBody};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use bytes::Bytes;

const MIB: usize = 1 << 20;

impl Pair {
    fn new(features: Features) -> Self {
        Pair::back_to_back("api.agent.com/svc", features, GatewayConfig::default())
    }

    fn all() -> Self {
        Pair::new(
            [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
                .into_iter()
                .collect(),
        )
    }

    fn start(&mut self, path: &str, body: RequestBody) -> RequestId {
        let id = self
            .gw
            .start_request(
                self.now,
                "api.agent.com",
                RequestHead::new("POST", path),
                body,
            )
            .unwrap();
        self.pump();
        id
    }

    /// Response body bytes the public client got for `id`, and whether it ended.
    fn received(&self, id: &RequestId) -> (usize, bool) {
        let mut n = 0;
        let mut end = false;
        for (r, e) in &self.responses {
            if r == id {
                match e {
                    ResponseEvent::Body(b) => n += b.len(),
                    ResponseEvent::End => end = true,
                    _ => {}
                }
            }
        }
        (n, end)
    }

    /// Request body bytes the upstream got for `id`, and whether it ended.
    fn uploaded(&self, id: &RequestId) -> (usize, bool) {
        let mut n = 0;
        let mut end = false;
        for e in &self.requests {
            match e {
                RequestEvent::Body { request, data } if request == id => n += data.len(),
                RequestEvent::End { request } if request == id => end = true,
                _ => {}
            }
        }
        (n, end)
    }

    fn aborted(&self, id: &RequestId) -> Option<&str> {
        self.requests.iter().find_map(|e| match e {
            RequestEvent::Aborted { request, reason } if request == id => Some(reason.as_str()),
            _ => None,
        })
    }
}

#[test]
fn an_unread_download_holds_one_window_and_stalls_nothing_else() {
    let mut p = Pair::all();
    let big = p.start("/svc/big", RequestBody::Empty);
    p.rx.respond(p.now, &big, ResponseHead::new(200), ResponseBody::Streaming)
        .unwrap();
    // The upstream offers 8 MiB in 64 KiB pieces; nobody reads at the gateway.
    let piece = Bytes::from(vec![1u8; 64 * 1024]);
    for _ in 0..128 {
        p.rx.respond_body(p.now, &big, piece.clone(), false)
            .unwrap();
    }
    p.rx.respond_body(p.now, &big, Bytes::new(), true).unwrap();
    p.pump();
    let (got, end) = p.received(&big);
    assert_eq!(got, INITIAL_WINDOW as usize, "exactly one window crossed");
    assert!(!end);
    assert_eq!(p.rx.unsent(&big), Some(8 * MIB as u64 - INITIAL_WINDOW));

    // Other requests on the same connection are not held up by it.
    for i in 0..100 {
        let id = p.start(&format!("/svc/small/{i}"), RequestBody::Empty);
        p.rx.respond(
            p.now,
            &id,
            ResponseHead::new(200),
            ResponseBody::Full(Bytes::from_static(b"small")),
        )
        .unwrap();
        p.pump();
        assert_eq!(p.received(&id), (5, true), "small request {i}");
    }

    // The client reads: each piece it takes reopens the window, until the end.
    let mut read = 0;
    let mut rounds = 0;
    loop {
        let (got, end) = p.received(&big);
        if end {
            break;
        }
        assert!(got - read > 0, "no progress after reading {read} bytes");
        p.gw.body_read(p.now, &big, got - read);
        read = got;
        p.pump();
        rounds += 1;
        assert!(rounds < 100);
    }
    assert_eq!(p.received(&big), (8 * MIB, true));
    assert_eq!(p.rx.in_flight(), 0, "the receiver forgot the request");
    assert!(p.gw_closes.is_empty() && p.rx_closes.is_empty());
}

#[test]
fn an_unread_upload_holds_one_window() {
    let mut p = Pair::all();
    let id = p.start("/svc/upload", RequestBody::Streaming);
    let piece = Bytes::from(vec![2u8; 64 * 1024]);
    for _ in 0..64 {
        p.gw.push_body(p.now, &id, piece.clone(), false).unwrap();
    }
    p.gw.push_body(p.now, &id, Bytes::new(), true).unwrap();
    p.pump();
    assert_eq!(p.uploaded(&id), (INITIAL_WINDOW as usize, false));
    assert_eq!(
        p.gw.upload_queued(&id),
        Some(4 * MIB as u64 - INITIAL_WINDOW)
    );
    let mut read = 0;
    for _ in 0..100 {
        let (got, end) = p.uploaded(&id);
        if end {
            break;
        }
        p.rx.request_body_read(p.now, &id, got - read);
        read = got;
        p.pump();
    }
    assert_eq!(p.uploaded(&id), (4 * MIB, true));
    assert_eq!(p.gw.upload_queued(&id), Some(0));
    p.rx.respond(p.now, &id, ResponseHead::new(204), ResponseBody::Empty)
        .unwrap();
    p.pump();
    assert_eq!(p.received(&id), (0, true));
    assert_eq!(p.gw.upload_queued(&id), None);
}

#[test]
fn a_client_going_away_reaches_the_receiver() {
    let mut p = Pair::all();
    let id = p.start("/svc/hold", RequestBody::Empty);
    assert_eq!(p.rx.in_flight(), 1);
    p.gw.cancel(p.now, &id);
    p.pump();
    let why = p.aborted(&id).expect("the receiver aborts the request");
    assert!(why.contains("cancelled by the gateway"), "{why}");
    assert_eq!(p.rx.in_flight(), 0);
    assert_eq!(p.rx.totals().cancelled, 1);
    assert_eq!(p.gw.stats(p.now).totals.cancels_sent, 1);
    // The upstream's late answer is refused and nothing reaches the client.
    assert!(p
        .rx
        .respond(p.now, &id, ResponseHead::new(200), ResponseBody::Empty)
        .is_err());
    assert!(p.gw_closes.is_empty() && p.rx_closes.is_empty());
}

#[test]
fn a_timeout_cancels_the_upstream_request_too() {
    let mut p = Pair::all();
    let id = p.start("/svc/slow", RequestBody::Empty);
    p.now += Duration::from_secs(31);
    p.gw.handle_timeout(p.now);
    p.pump();
    assert!(p
        .responses
        .iter()
        .any(|(r, e)| r == &id && matches!(e, ResponseEvent::Failed(f) if f.status == 504)));
    assert!(p.aborted(&id).is_some_and(|w| w.contains("timed out")));
    assert_eq!(p.rx.in_flight(), 0);
}

#[test]
fn a_trickled_upload_cannot_hold_a_request_past_the_upload_timeout() {
    let config = GatewayConfig {
        request_timeout: Duration::from_secs(30),
        upload_timeout: Duration::from_secs(60),
        ..GatewayConfig::default()
    };
    let features = [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
        .into_iter()
        .collect();
    let mut p = Pair::back_to_back("api.agent.com/svc", features, config);
    let id = p.start("/svc/upload", RequestBody::Streaming);
    // The client is the one late: 408 with a message of its own.
    let timed_out = |p: &Pair| {
        p.responses.iter().any(|(r, e)| {
            r == &id
                && matches!(e, ResponseEvent::Failed(f) if f.status == 408
                    && f.error.contains("upload_timeout_secs"))
        })
    };
    let trickle = |p: &mut Pair, secs: u32| {
        for _ in 0..secs {
            p.now += Duration::from_secs(1);
            let _ = p.gw.push_body(p.now, &id, Bytes::from_static(b"x"), false);
            p.gw.handle_timeout(p.now);
            p.pump();
        }
    };
    // One byte a second, never a gap as long as the request timeout: the
    // request lives, past its request timeout, up to the upload timeout...
    trickle(&mut p, 59);
    assert!(
        !timed_out(&p),
        "cut before the upload timeout: {:?}",
        p.responses
    );
    // ...and no further, though the bytes keep coming.
    trickle(&mut p, 1);
    assert!(
        timed_out(&p),
        "a trickled upload held the request past 60 s"
    );
}

#[test]
fn an_upload_gone_quiet_is_a_408_and_a_silent_receiver_a_504() {
    let mut p = Pair::all();
    let quiet = p.start("/svc/upload", RequestBody::Streaming);
    p.gw.push_body(p.now, &quiet, Bytes::from_static(b"part"), false)
        .unwrap();
    let done = p.start("/svc/upload", RequestBody::Streaming);
    p.gw.push_body(p.now, &done, Bytes::from_static(b"all"), true)
        .unwrap();
    p.pump();
    p.now += Duration::from_secs(31);
    p.gw.handle_timeout(p.now);
    p.pump();
    let failed = |id: &RequestId| {
        p.responses.iter().find_map(|(r, e)| match e {
            ResponseEvent::Failed(f) if r == id => Some((f.status, f.error.clone())),
            _ => None,
        })
    };
    let (status, why) = failed(&quiet).unwrap();
    assert_eq!(status, 408, "{why}");
    assert!(why.contains("request_timeout_secs"), "{why}");
    // Its whole body sent, the wait is the receiver's.
    assert_eq!(failed(&done).unwrap().0, 504);
    let t = p.gw.stats(p.now).totals;
    assert_eq!((t.upload_timed_out, t.timed_out), (1, 1));
}

#[test]
fn a_response_complete_before_its_upload_ends_the_upload_at_the_receiver() {
    let mut p = Pair::all();
    let id = p.start("/svc/early", RequestBody::Streaming);
    p.gw.push_body(p.now, &id, Bytes::from_static(b"part"), false)
        .unwrap();
    p.pump();
    p.rx.respond(p.now, &id, ResponseHead::new(413), ResponseBody::Empty)
        .unwrap();
    p.pump();
    assert_eq!(p.received(&id), (0, true));
    assert_eq!(p.rx.in_flight(), 0, "no partial request left waiting");
    assert_eq!(p.rx.partial_requests(), 0);
}

#[test]
fn without_the_extensions_the_wire_stays_v1() {
    let mut p = Pair::new(Features::from(Feature::Streaming));
    let big = p.start("/svc/big", RequestBody::Streaming);
    p.gw.push_body(p.now, &big, Bytes::from(vec![3u8; 3 * MIB]), true)
        .unwrap();
    p.pump();
    // No window: everything crosses at once.
    assert_eq!(p.uploaded(&big), (3 * MIB, true));
    p.rx.request_body_read(p.now, &big, 3 * MIB);
    p.rx.respond(p.now, &big, ResponseHead::new(200), ResponseBody::Streaming)
        .unwrap();
    p.rx.respond_body(p.now, &big, Bytes::from(vec![4u8; 3 * MIB]), false)
        .unwrap();
    p.pump();
    assert_eq!(p.received(&big).0, 3 * MIB);
    p.gw.body_read(p.now, &big, 3 * MIB);
    p.gw.cancel(p.now, &big);
    let held = p.start("/svc/hold", RequestBody::Empty);
    p.now += Duration::from_secs(31);
    p.gw.handle_timeout(p.now);
    p.pump();
    // No cancel reached the receiver: it still serves both.
    assert_eq!(p.rx.in_flight(), 2);
    assert!(p.aborted(&held).is_none());
    for wire in p.gw_sent.iter().chain(&p.rx_sent) {
        let frame = Frame::decode(wire.clone(), &FrameLimits::default());
        assert!(frame.is_ok(), "a v1 peer could not decode {:?}", frame);
        assert_eq!(ExtFrame::peek(wire), None);
    }
    assert!(p.gw_sent.len() > 10 && p.rx_sent.len() > 10);
}

#[test]
fn extension_frames_without_negotiation_close_the_connection() {
    let update = ExtFrame::WindowUpdate {
        request_id: "r".into(),
        increment: 5,
    }
    .encode();
    let cancel = ExtFrame::Cancel {
        request_id: "r".into(),
        reason: String::new(),
    }
    .encode();
    // Receiver side.
    for wire in [&update, &cancel] {
        let mut p = Pair::new(Features::from(Feature::Streaming));
        p.rx.handle_message(p.now, WsMessage::Binary(wire.clone()));
        p.pump();
        assert_eq!(p.rx_closes, [1002]);
    }
    // Gateway side: an update without flow-control, and a cancel ever.
    for (features, wire) in [
        (Features::from(Feature::Streaming), &update),
        (
            [Feature::Cancel, Feature::FlowControl]
                .into_iter()
                .collect(),
            &cancel,
        ),
    ] {
        let mut p = Pair::new(features);
        p.gw.handle_message(p.now, p.link, WsMessage::Binary(wire.clone()));
        p.pump();
        assert_eq!(p.gw_closes, [1002]);
        assert_eq!(p.gw.link_count(), 0);
    }
}

#[test]
fn a_receiver_past_its_window_is_closed() {
    let mut p = Pair::all();
    let id = p.start("/svc/x", RequestBody::Empty);
    // A receiver ignoring the window: 1 MiB + 1 of body right away.
    let mut s = ChunkStream::new(MessageKind::Response, id.clone(), 64 * 1024);
    let mut frames = Vec::new();
    let head = ResponseHead::new(200).to_meta_json();
    s.write(
        Some((tag::RESP_META, &head)),
        &vec![0u8; MIB + 1],
        false,
        &mut frames,
    )
    .unwrap();
    for f in frames {
        p.gw.handle_message(p.now, p.link, WsMessage::Binary(f));
    }
    let mut closes = Vec::new();
    while let Some(o) = p.gw.poll_output() {
        if let Output::Close { code, .. } = o {
            closes.push(code);
        }
    }
    assert_eq!(closes, [1002]);
    let totals = p.gw.stats(p.now).totals;
    assert_eq!(
        totals.receiver_faults.get(LinkFault::FlowControl.label()),
        Some(&1)
    );
}

#[test]
fn window_updates_for_requests_gone_are_harmless() {
    let mut p = Pair::all();
    let id = p.start("/svc/x", RequestBody::Empty);
    p.rx.respond(p.now, &id, ResponseHead::new(200), ResponseBody::Empty)
        .unwrap();
    p.pump();
    let late = ExtFrame::WindowUpdate {
        request_id: id.clone(),
        increment: 1000,
    }
    .encode();
    p.gw.handle_message(p.now, p.link, WsMessage::Binary(late.clone()));
    p.rx.handle_message(p.now, WsMessage::Binary(late));
    p.pump();
    assert!(p.gw_closes.is_empty() && p.rx_closes.is_empty());
    assert_eq!(p.gw.link_count(), 1);
}
