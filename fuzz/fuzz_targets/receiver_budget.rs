//! Drives the receiver state machine as a hostile gateway would (request
//! frames whole, chunked, head-first or not, error frames, window updates,
//! cancels, control messages, garbage) next to its service's answers
//! (whole, streamed, failed, request bytes read) and the passing of time,
//! and holds it to what it may hold: never more requests in flight than
//! its cap, never more response bytes held for a gateway without
//! streaming than its total, never more partial requests than the
//! reassembler's limit, no event for a request it does not serve, and
//! nothing panics (the fuzz profile turns integer overflow into a crash).
//!
//! Input: a sequence of operations, three bytes each, `[op, a, b]`; `a`
//! picks a request, `b` a size, flag or delay. The input's length picks
//! the features the gateway negotiated.

#![no_main]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anpx_core::chunk::ReassemblyLimits;
use anpx_core::frame::{ChunkInfo, ExtFrame, FinalMarker, Frame, MessageKind, Meta};
use anpx_core::{Feature, Features, WsMessage};
use anpx_core::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent, ResponseBody};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Small enough that a few requests and pieces reach every bound.
const MAX_IN_FLIGHT: usize = 4;
const MAX_RESPONSE: u64 = 2_000;
const MAX_HELD: u64 = 5_000;
const MAX_PARTIALS: usize = 6;
/// Request ids the gateway picks from: more than the cap.
const IDS: u8 = 12;

fn id(a: u8) -> RequestId {
    RequestId::from(format!("r{}", a % IDS))
}

/// A request frame as a gateway (well-behaved or not) might send it.
fn request_frame(a: u8, b: u8) -> Option<WsMessage> {
    let size = usize::from(b) * 30;
    let chunk = match (a >> 4) % 4 {
        0 => None,
        n => Some(ChunkInfo {
            index: u32::from(b >> 6),
            total: (n == 2).then_some(u32::from(b >> 6) + 1),
            final_marker: (n == 3).then_some(if b & 1 == 0 {
                FinalMarker::Byte
            } else {
                FinalMarker::Word
            }),
        }),
    };
    let kind = if a & 0x40 != 0 && b & 2 != 0 {
        MessageKind::Error
    } else {
        MessageKind::Request
    };
    let head = chunk.is_none() || a & 0x80 != 0;
    let frame = Frame {
        kind,
        request_id: id(a),
        chunk,
        meta: (kind == MessageKind::Request && head)
            .then(|| Meta::Request(RequestHead::new("POST", "/svc/x"))),
        body: (size > 0).then(|| Bytes::from(vec![b'q'; size])),
    };
    frame.encode().ok().map(WsMessage::Binary)
}

struct World {
    now: Instant,
    rx: Receiver,
    /// Requests the receiver raised a head for and has not aborted: the
    /// ones its service may answer.
    serving: BTreeSet<RequestId>,
    features: Features,
}

impl World {
    /// One of the requests being served, if any.
    fn served(&self, a: u8) -> Option<RequestId> {
        let n = self.serving.len();
        (n > 0).then(|| self.serving.iter().nth(usize::from(a) % n).unwrap().clone())
    }

    fn drain(&mut self) {
        while let Some(out) = self.rx.poll_output() {
            match out {
                ReceiverOutput::Event(RequestEvent::Head { request, .. }) => {
                    assert!(
                        self.serving.insert(request.clone()),
                        "a second head for {request}"
                    );
                }
                ReceiverOutput::Event(RequestEvent::Aborted { request, .. }) => {
                    self.serving.remove(&request);
                }
                ReceiverOutput::Event(
                    RequestEvent::Body { request, .. } | RequestEvent::End { request },
                ) => {
                    assert!(
                        self.serving.contains(&request),
                        "an event for {request}, which is not served"
                    );
                }
                ReceiverOutput::Writable { .. }
                | ReceiverOutput::Transmit(_)
                | ReceiverOutput::Close { .. } => {}
            }
        }
    }

    fn check(&mut self) {
        self.drain();
        let in_flight = self.rx.in_flight();
        assert!(
            in_flight <= MAX_IN_FLIGHT,
            "{in_flight} requests in flight, cap {MAX_IN_FLIGHT}"
        );
        let held = self.rx.buffered_response_bytes();
        assert!(
            held <= MAX_HELD,
            "{held} response bytes held, total {MAX_HELD}"
        );
        if self.features.contains(Feature::Streaming) {
            assert_eq!(held, 0, "nothing is held for a streaming gateway");
        }
        let partial = self.rx.partial_requests();
        assert!(
            partial <= MAX_PARTIALS,
            "{partial} partial requests, limit {MAX_PARTIALS}"
        );
        // A request whose answer and upload both ended is retired without
        // an event; its id may then come again as a new request.
        let rx = &self.rx;
        self.serving.retain(|r| rx.unsent(r).is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let features: Features = match data.len() % 3 {
        0 => Features::empty(),
        1 => [Feature::Streaming, Feature::FlowControl]
            .into_iter()
            .collect(),
        _ => [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
            .into_iter()
            .collect(),
    };
    let config = ReceiverConfig {
        max_in_flight: MAX_IN_FLIGHT,
        max_buffered_response: MAX_RESPONSE,
        max_buffered_total: MAX_HELD,
        streaming_chunk_size: 1_000,
        chunk_size: 1_000,
        reassembly: ReassemblyLimits {
            max_partials: MAX_PARTIALS,
            ..ReceiverConfig::default().reassembly
        },
        ..ReceiverConfig::default()
    };
    let now = Instant::now();
    let mut w = World {
        now,
        rx: Receiver::new(config, features, now),
        serving: BTreeSet::new(),
        features,
    };
    for op in data.chunks_exact(3) {
        let (a, b) = (op[1], op[2]);
        match op[0] % 11 {
            0 | 1 => {
                if let Some(m) = request_frame(a, b) {
                    w.rx.handle_message(w.now, m);
                }
            }
            2 => {
                let update = ExtFrame::WindowUpdate {
                    request_id: id(a),
                    increment: u32::from(b) << 8,
                };
                w.rx.handle_message(w.now, WsMessage::Binary(update.encode()));
            }
            3 => {
                let cancel = ExtFrame::Cancel {
                    request_id: id(a),
                    reason: String::new(),
                };
                w.rx.handle_message(w.now, WsMessage::Binary(cancel.encode()));
            }
            4 => {
                let text = match b % 3 {
                    0 => r#"{"type":"ping","timestamp":1}"#,
                    1 => r#"{"type":"draining-ack"}"#,
                    _ => "not json",
                };
                w.rx.handle_message(w.now, WsMessage::Text(text.into()));
            }
            5 => {
                let raw: Bytes = op.iter().copied().cycle().take(usize::from(b)).collect();
                w.rx.handle_message(w.now, WsMessage::Binary(raw));
            }
            6 => {
                if let Some(r) = w.served(a) {
                    let body = match b % 3 {
                        0 => ResponseBody::Streaming,
                        1 => ResponseBody::Empty,
                        _ => ResponseBody::Full(Bytes::from(vec![b'w'; usize::from(b) * 10])),
                    };
                    let _ = w.rx.respond(w.now, &r, ResponseHead::new(200), body);
                }
            }
            7 => {
                if let Some(r) = w.served(a) {
                    let piece = Bytes::from(vec![b'p'; usize::from(b >> 1) * 20]);
                    let _ = w.rx.respond_body(w.now, &r, piece, b & 1 == 1);
                }
            }
            8 => {
                if let Some(r) = w.served(a) {
                    let _ = w.rx.respond_error(w.now, &r, "the service failed");
                }
            }
            9 => {
                if let Some(r) = w.served(a) {
                    w.rx.request_body_read(w.now, &r, usize::from(b) * 30);
                }
            }
            _ => {
                w.now += Duration::from_millis(u64::from(b) * 500);
                w.rx.handle_timeout(w.now);
            }
        }
        w.check();
    }
    w.rx.handle_close(w.now);
    w.check();
    assert_eq!(w.rx.in_flight(), 0, "requests left after the close");
    assert_eq!(
        w.rx.buffered_response_bytes(),
        0,
        "bytes held after the close"
    );
});
