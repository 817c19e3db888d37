//! Every chunk sequence we send must complete at the reference's decoder,
//! whose rule is narrower than ours: a chunked message is complete when a
//! chunk carries a `final_chunk` whose value is the single byte `01`, or
//! when as many chunks arrived as the `chunk_tot` of the chunk just added.
//! `RefDecoder` below is a line-by-line port of the reference's
//! `ANPXDecoder.decode_message` and `ChunkAssembler` (protocol/decoder.py,
//! chunking.py, message.py), working on the bytes as the reference does,
//! not through our own decoder.

mod support;

use std::collections::HashMap;
use std::time::Instant;

use anpx_core::RequestEvent;
use anpx_core::{Feature, Features};
use anpx_core::{GatewayConfig, RequestBody, ResponseEvent};
use support::Pair;

use anpx_core::chunk::{ChunkStream, Chunker, Reassembler, ReassemblyLimits};
use anpx_core::frame::{tag, EncodeError, Frame, FrameLimits, MessageKind};
use anpx_core::{Head, Message, RequestHead, RequestId, ResponseHead};
use bytes::Bytes;
use serde_json::Value;

const CHUNK: usize = 64 * 1024;

/// One decoded frame: its type, flags and TLVs in wire order.
#[derive(Debug, Clone)]
struct RefMessage {
    kind: u8,
    chunked: bool,
    fields: Vec<(u8, Vec<u8>)>,
}

impl RefMessage {
    fn parse(data: &[u8]) -> RefMessage {
        assert!(data.len() >= 24, "short frame");
        assert_eq!(&data[..4], b"ANPX");
        let total = u32::from_be_bytes(data[8..12].try_into().unwrap()) as usize;
        assert_eq!(total, data.len(), "total_len");
        let mut fields = Vec::new();
        let mut at = 24;
        while at < data.len() {
            let t = data[at];
            let len = u32::from_be_bytes(data[at + 1..at + 5].try_into().unwrap()) as usize;
            fields.push((t, data[at + 5..at + 5 + len].to_vec()));
            at += 5 + len;
        }
        RefMessage {
            kind: data[5],
            chunked: data[6] & 1 == 1,
            fields,
        }
    }

    /// `get_tlv_field`: the first field with the tag.
    fn field(&self, t: u8) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(ft, _)| *ft == t)
            .map(|(_, v)| v.as_slice())
    }

    /// `get_tlv_value_int`: only a 4-byte value is a number.
    fn int(&self, t: u8) -> Option<u32> {
        self.field(t)
            .filter(|v| v.len() == 4)
            .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
    }

    /// `get_chunk_info`.
    fn chunk_info(&self) -> (Option<u32>, Option<u32>, bool) {
        let is_final = self.field(tag::FINAL_CHUNK) == Some(&[1u8][..]);
        (self.int(tag::CHUNK_IDX), self.int(tag::CHUNK_TOT), is_final)
    }
}

/// What the reference's decoder made of a frame.
#[derive(Debug, PartialEq)]
enum Decoded {
    /// `None`: a chunk of a message not complete yet.
    Pending,
    Complete {
        kind: u8,
        meta: Value,
        body: Vec<u8>,
    },
    Error(String),
}

#[derive(Default)]
struct RefDecoder {
    chunks: HashMap<String, Vec<RefMessage>>,
}

impl RefDecoder {
    fn decode_message(&mut self, data: &[u8]) -> Decoded {
        let message = RefMessage::parse(data);
        if !message.chunked {
            return whole(&message, std::slice::from_ref(&message));
        }
        let Some(id) = message.field(tag::REQUEST_ID) else {
            return Decoded::Error("Chunked message missing request_id".into());
        };
        let id = String::from_utf8(id.to_vec()).unwrap();
        self.add_chunk(id, message)
    }

    fn add_chunk(&mut self, id: String, chunk: RefMessage) -> Decoded {
        let list = self.chunks.entry(id.clone()).or_default();
        let (idx, tot, is_final) = chunk.chunk_info();
        let Some(idx) = idx else {
            return Decoded::Error("Chunk missing chunk_idx".into());
        };
        if list.iter().any(|c| c.chunk_info().0 == Some(idx)) {
            return Decoded::Error(format!("Duplicate chunk index {idx}"));
        }
        list.push(chunk);
        if is_final || tot.is_some_and(|t| list.len() == t as usize) {
            let mut chunks = self.chunks.remove(&id).unwrap_or_default();
            chunks.sort_by_key(|c| c.chunk_info().0.unwrap_or(0));
            let indices: Vec<_> = chunks.iter().map(|c| c.chunk_info().0).collect();
            let expected: Vec<_> = (0..chunks.len() as u32).map(Some).collect();
            if indices != expected {
                return Decoded::Error(format!("Missing or invalid chunk indices {indices:?}"));
            }
            return whole(&chunks[0], &chunks);
        }
        Decoded::Pending
    }
}

/// `_assemble_request_chunks` / `_assemble_response_chunks`: request meta
/// from the first chunk, response meta from any, body joined from all.
fn whole(first: &RefMessage, chunks: &[RefMessage]) -> Decoded {
    let meta = match first.kind {
        0x01 => first.field(tag::HTTP_META),
        0x02 => chunks.iter().rev().find_map(|c| c.field(tag::RESP_META)),
        _ => return Decoded::Error("Cannot assemble this message type".into()),
    };
    let Some(meta) = meta else {
        return Decoded::Error("No chunk contains the metadata".into());
    };
    let body = chunks
        .iter()
        .filter_map(|c| c.field(tag::HTTP_BODY))
        .flatten()
        .copied()
        .collect();
    Decoded::Complete {
        kind: first.kind,
        meta: serde_json::from_slice(meta).unwrap(),
        body,
    }
}

/// The frame type byte.
fn wire_type(kind: MessageKind) -> u8 {
    match kind {
        MessageKind::Request => 0x01,
        MessageKind::Response => 0x02,
        _ => 0xFF,
    }
}

fn body_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn head_of(kind: MessageKind) -> Head {
    match kind {
        MessageKind::Request => {
            let mut h = RequestHead::new("PUT", "/upload/file");
            h.headers.push("content-type", "application/octet-stream");
            Head::Request(h)
        }
        _ => Head::Response(ResponseHead::new(201)),
    }
}

fn meta_of(kind: MessageKind) -> (u8, Vec<u8>) {
    match head_of(kind) {
        Head::Request(h) => (tag::HTTP_META, h.to_meta_json()),
        Head::Response(h) => (tag::RESP_META, h.to_meta_json()),
        Head::Error => unreachable!("only requests and responses here"),
    }
}

/// The frames a stream makes of `body`, written the way the shells write:
/// the head alone first, then the body in pieces of `piece` bytes, then an
/// empty last write.
fn stream_frames(
    mut stream: ChunkStream,
    kind: MessageKind,
    body: &[u8],
    piece: usize,
) -> Vec<Bytes> {
    let (t, json) = meta_of(kind);
    let mut out = Vec::new();
    stream
        .write(Some((t, &json)), &[], false, &mut out)
        .unwrap();
    for p in body.chunks(piece.max(1)) {
        stream.write(None, p, false, &mut out).unwrap();
    }
    stream.write(None, &[], true, &mut out).unwrap();
    assert!(stream.is_finished());
    out
}

const SIZES: [usize; 9] = [
    0,
    1,
    CHUNK - 200,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    3 * CHUNK + 17,
    300_000,
    2_000_000,
];

/// Feeds `frames` to the ported reference decoder and to our reassembler;
/// both must complete on the last frame, not before, with `body`.
fn assert_completes(frames: &[Bytes], kind: MessageKind, body: &[u8], context: &str) {
    let (_, json) = meta_of(kind);
    let meta: Value = serde_json::from_slice(&json).unwrap();
    let mut reference = RefDecoder::default();
    let mut ours = Reassembler::new(ReassemblyLimits::default());
    let mut our_body = Vec::new();
    let now = Instant::now();
    for (i, wire) in frames.iter().enumerate() {
        assert!(
            wire.len() <= CHUNK,
            "{context}: frame {i} over the chunk size"
        );
        let got = reference.decode_message(wire);
        let out = ours
            .push(
                now,
                Frame::decode(wire.clone(), &FrameLimits::default()).unwrap(),
            )
            .unwrap();
        our_body.extend(out.body.iter().flat_map(|b| b.iter().copied()));
        if i + 1 < frames.len() {
            assert_eq!(
                got,
                Decoded::Pending,
                "{context}: frame {i} of {}",
                frames.len()
            );
            assert!(!out.end, "{context}: we ended early at frame {i}");
        } else {
            // Compared by parts, not to print megabytes on failure.
            match &got {
                Decoded::Complete {
                    kind: k,
                    meta: m,
                    body: b,
                } => {
                    assert_eq!((k, m), (&wire_type(kind), &meta), "{context}");
                    assert!(b == body, "{context}: body of {} bytes differs", b.len());
                }
                other => panic!(
                    "{context}: the reference decoder says {other:?} on the last of {} frames",
                    frames.len()
                ),
            }
            assert!(out.end, "{context}: our reassembler did not end");
        }
    }
    assert!(
        our_body == body,
        "{context}: our reassembler's body differs"
    );
    assert!(
        reference.chunks.is_empty(),
        "{context}: reference state left"
    );
}

#[test]
fn streamed_chunks_complete_under_the_reference_rule() {
    for kind in [MessageKind::Request, MessageKind::Response] {
        for len in SIZES {
            let body = body_of(len);
            for piece in [len.max(1), 1000, CHUNK + 4321] {
                let id = RequestId::from("550e8400-e29b-41d4-a716-446655440000");
                let open_ended = ChunkStream::new(kind, id.clone(), CHUNK);
                let frames = stream_frames(open_ended, kind, &body, piece);
                assert_completes(
                    &frames,
                    kind,
                    &body,
                    &format!("{kind:?} {len} B in {piece} B pieces, length unknown"),
                );
                let sized = ChunkStream::sized(kind, id, CHUNK, len as u64);
                let frames = stream_frames(sized, kind, &body, piece);
                assert_completes(
                    &frames,
                    kind,
                    &body,
                    &format!("{kind:?} {len} B in {piece} B pieces, length known"),
                );
            }
        }
    }
}

#[test]
fn whole_messages_complete_under_the_reference_rule() {
    for kind in [MessageKind::Request, MessageKind::Response] {
        for len in SIZES {
            let body = body_of(len);
            let head = head_of(kind);
            let msg = Message {
                request_id: RequestId::from("r-whole"),
                head,
                body: Bytes::from(body.clone()),
            };
            let frames = Chunker::new(CHUNK).frames(&msg).unwrap();
            assert_completes(&frames, kind, &body, &format!("whole {kind:?} of {len} B"));
        }
    }
}

/// With its length known, a stream sends what the chunker makes of the
/// whole message, whatever pieces the body came in: the reference's own
/// layout (full chunks, `chunk_tot` on each, the request's 4-byte marker).
#[test]
fn a_sized_stream_sends_the_chunkers_frames() {
    for kind in [MessageKind::Request, MessageKind::Response] {
        for len in [CHUNK + 1, 3 * CHUNK + 17, 300_000] {
            let body = body_of(len);
            let head = head_of(kind);
            let id = RequestId::from("r-sized");
            let msg = Message {
                request_id: id.clone(),
                head,
                body: Bytes::from(body.clone()),
            };
            let whole = Chunker::new(CHUNK).frames(&msg).unwrap();
            for piece in [1, 999, CHUNK, len] {
                let s = ChunkStream::sized(kind, id.clone(), CHUNK, len as u64);
                let streamed = stream_frames(s, kind, &body, piece);
                assert_eq!(streamed.len(), whole.len(), "{kind:?} {len} in {piece}");
                for (i, (a, b)) in streamed.iter().zip(&whole).enumerate() {
                    assert!(a == b, "{kind:?} {len} in {piece}: frame {i} differs");
                }
            }
        }
    }
}

#[test]
fn a_sized_stream_refuses_a_body_of_another_length() {
    let (t, json) = meta_of(MessageKind::Request);
    let id = RequestId::from("r-len");
    // Short: the last write comes before the announced length.
    let mut s = ChunkStream::sized(MessageKind::Request, id.clone(), CHUNK, 200_000);
    let mut out = Vec::new();
    s.write(Some((t, &json)), &body_of(150_000), false, &mut out)
        .unwrap();
    let err = s.write(None, &[], true, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::LengthMismatch {
                declared: 200_000,
                got: 150_000
            }
        ),
        "{err}"
    );
    // No final chunk went out: the peer never sees a short body as complete.
    let mut reference = RefDecoder::default();
    assert!(out
        .iter()
        .all(|f| reference.decode_message(f) == Decoded::Pending));

    // Long: more than announced.
    let mut s = ChunkStream::sized(MessageKind::Request, id, CHUNK, 1000);
    let mut out = Vec::new();
    s.write(Some((t, &json)), &body_of(600), false, &mut out)
        .unwrap();
    let err = s.write(None, &body_of(600), false, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::LengthMismatch {
                declared: 1000,
                got: 1200
            }
        ),
        "{err}"
    );
    assert!(out.is_empty(), "nothing of a 1000-byte body was due yet");
}

/// The port agrees with the reference's own frames (they complete on their
/// last frame) and with the rule's edge: a 4-byte marker without
/// `chunk_tot` never completes a message there.
#[test]
fn the_port_follows_the_reference() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/anpx-vectors/frames.json"
    ))
    .unwrap();
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for case in vectors["cases"].as_array().unwrap() {
        let frames: Vec<Vec<u8>> = case["frames_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
            .collect();
        if frames.len() < 2 {
            continue;
        }
        let mut reference = RefDecoder::default();
        for (i, f) in frames.iter().enumerate() {
            let got = reference.decode_message(f);
            if i + 1 < frames.len() {
                assert_eq!(got, Decoded::Pending, "{} frame {i}", case["name"]);
            } else {
                let Decoded::Complete { body, .. } = got else {
                    panic!("{}: {got:?}", case["name"]);
                };
                assert_eq!(
                    body.len() as u64,
                    case["expect"]["body_len"].as_u64().unwrap()
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "chunked vectors");

    // The layout sent before this rule was followed: no chunk_tot, a
    // 4-byte final marker. The reference waits for ever.
    use anpx_core::frame::{ChunkInfo, FinalMarker, Meta};
    let mut reference = RefDecoder::default();
    for index in 0..3u32 {
        let frame = Frame {
            kind: MessageKind::Request,
            request_id: RequestId::from("r-old"),
            chunk: Some(ChunkInfo {
                index,
                total: None,
                final_marker: (index == 2).then_some(FinalMarker::Word),
            }),
            meta: (index == 0).then(|| Meta::Request(RequestHead::new("POST", "/x"))),
            body: Some(Bytes::from_static(b"abc")),
        };
        assert_eq!(
            reference.decode_message(&frame.encode().unwrap()),
            Decoded::Pending
        );
    }
}

/// The gateway's uploads, as a plain-v1 receiver (the reference) and an
/// anpx receiver get them: complete under the reference's rule either way,
/// in the reference's own layout when the length is known.
#[test]
fn gateway_uploads_complete_under_the_reference_rule() {
    let plain = Features::empty();
    let anpx: Features = [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
        .into_iter()
        .collect();
    for (features, peer) in [(plain, "plain v1"), (anpx, "anpx")] {
        for len in [CHUNK + 1, 300_000] {
            for sized in [false, true] {
                let context = format!("{peer} receiver, {len} B, length known: {sized}");
                let mut p =
                    Pair::back_to_back("api.agent.com/svc", features, GatewayConfig::default());
                let body = body_of(len);
                let kind = if sized {
                    RequestBody::Sized(len as u64)
                } else {
                    RequestBody::Streaming
                };
                let id =
                    p.gw.start_request(
                        p.now,
                        "api.agent.com",
                        RequestHead::new("PUT", "/svc/up"),
                        kind,
                    )
                    .unwrap();
                for piece in body.chunks(10_000) {
                    p.gw.push_body(p.now, &id, Bytes::copy_from_slice(piece), false)
                        .unwrap();
                    p.pump();
                }
                p.gw.push_body(p.now, &id, Bytes::new(), true).unwrap();
                p.pump();

                let mut reference = RefDecoder::default();
                let n = p.gw_sent.len();
                for (i, f) in p.gw_sent.iter().enumerate() {
                    let got = reference.decode_message(f);
                    match got {
                        Decoded::Complete { body: b, .. } if i + 1 == n => {
                            assert!(b == body, "{context}: body differs");
                        }
                        Decoded::Pending if i + 1 < n => {}
                        other => panic!("{context}: frame {i} of {n}: {other:?}"),
                    }
                }
                let counted = p
                    .gw_sent
                    .iter()
                    .all(|f| RefMessage::parse(f).int(tag::CHUNK_TOT).is_some());
                assert_eq!(
                    counted,
                    sized && features.is_empty(),
                    "{context}: chunk_tot"
                );
                let uploaded: usize = p
                    .requests
                    .iter()
                    .map(|e| match e {
                        RequestEvent::Body { data, .. } => data.len(),
                        _ => 0,
                    })
                    .sum();
                assert_eq!(uploaded, len, "{context}: our receiver got");
                assert!(p
                    .requests
                    .iter()
                    .any(|e| matches!(e, RequestEvent::End { .. })));
            }
        }
    }
}

/// A body that ends short of its Content-Length fails the request instead
/// of reaching the receiver as a complete, truncated body.
#[test]
fn a_short_sized_upload_fails_and_never_completes() {
    let mut p = Pair::back_to_back(
        "api.agent.com/svc",
        Features::empty(),
        GatewayConfig::default(),
    );
    let id =
        p.gw.start_request(
            p.now,
            "api.agent.com",
            RequestHead::new("PUT", "/svc/up"),
            RequestBody::Sized(200_000),
        )
        .unwrap();
    p.gw.push_body(p.now, &id, Bytes::from(body_of(150_000)), false)
        .unwrap();
    assert!(p.gw.push_body(p.now, &id, Bytes::new(), true).is_err());
    p.pump();
    let mut reference = RefDecoder::default();
    assert!(p
        .gw_sent
        .iter()
        .all(|f| reference.decode_message(f) == Decoded::Pending));
    assert!(!p
        .requests
        .iter()
        .any(|e| matches!(e, RequestEvent::End { .. })));
    let failed = p.responses.iter().find_map(|(_, e)| match e {
        ResponseEvent::Failed(f) => Some(f.status),
        _ => None,
    });
    assert_eq!(failed, Some(502));
}

/// The reference gateway drops the body of a DELETE (GET, HEAD) but keeps
/// the client's `content-length`; the receiver hands its service the length
/// of what came, else the service waits for bytes that never come.
#[test]
fn a_whole_request_reaches_the_service_with_its_own_length() {
    use anpx_core::ReceiverOutput;
    use anpx_core::WsMessage;
    for (declared, body) in [("20", ""), ("3", "abcde"), ("5", "abcde")] {
        let mut p = Pair::back_to_back(
            "api.agent.com/svc",
            Features::empty(),
            GatewayConfig::default(),
        );
        let mut head = RequestHead::new("DELETE", "/svc/x");
        head.headers.push("content-length", declared);
        let msg = Message {
            request_id: RequestId::from("r-del"),
            head: Head::Request(head),
            body: Bytes::from(body),
        };
        for f in Chunker::new(CHUNK).frames(&msg).unwrap() {
            p.rx.handle_message(p.now, WsMessage::Binary(f));
        }
        let mut got = None;
        while let Some(o) = p.rx.poll_output() {
            if let ReceiverOutput::Event(RequestEvent::Head { head, .. }) = o {
                got = Some(
                    head.headers
                        .get_all("content-length")
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                );
            }
        }
        assert_eq!(
            got,
            Some(vec![body.len().to_string()]),
            "declared {declared}, body {body:?}"
        );
    }
}
