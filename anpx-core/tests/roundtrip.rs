//! Property tests: any message survives chunking at any size, and any
//! legal chunk layout (the reference's and ours) reassembles to the same
//! message.

use std::time::Instant;

use anpx_core::chunk::{Chunker, MessageCollector, ReassemblyLimits};
use anpx_core::frame::{ChunkInfo, FinalMarker, Frame, FrameLimits, Meta};
use anpx_core::{Head, HeaderList, Message, RequestHead, RequestId, ResponseHead};
use bytes::Bytes;
use proptest::prelude::*;

fn header_list() -> impl Strategy<Value = HeaderList> {
    // Few distinct names so that repeats (set-cookie style) are common.
    let name = prop::sample::select(vec![
        "set-cookie",
        "x-a",
        "Accept",
        "X-Trace-Id",
        "content-type",
    ]);
    prop::collection::vec((name, any::<String>()), 0..6)
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        // Arbitrary raw strings, including ones the flat form cannot express.
        "[a-z0-9=&%+. ]{0,40}",
        prop::collection::vec(("[a-z]{1,3}", any::<String>()), 1..5).prop_map(|pairs| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        }),
    ]
}

fn head() -> impl Strategy<Value = Head> {
    let request = ("[A-Z]{3,7}", "/[\\PC]{0,30}", query(), header_list()).prop_map(
        |(method, path, query, headers)| {
            Head::Request(RequestHead {
                method,
                path,
                query,
                headers,
            })
        },
    );
    let response =
        (100u16..=999, any::<String>(), header_list()).prop_map(|(status, reason, headers)| {
            Head::Response(ResponseHead {
                status,
                reason,
                headers,
            })
        });
    prop_oneof![request, response, Just(Head::Error)]
}

fn message() -> impl Strategy<Value = Message> {
    (
        head(),
        "[0-9a-f-]{1,40}",
        prop::collection::vec(any::<u8>(), 0..20_000),
    )
        .prop_map(|(head, id, body)| Message {
            request_id: RequestId::from(id),
            head,
            body: Bytes::from(body),
        })
}

fn collect(frames: impl IntoIterator<Item = Bytes>) -> Message {
    let mut collector = MessageCollector::new(ReassemblyLimits::default());
    let now = Instant::now();
    let mut out = None;
    for wire in frames {
        let frame = Frame::decode(wire, &FrameLimits::default()).expect("our own frame decodes");
        if let Some(m) = collector
            .push(now, frame)
            .expect("our own chunks reassemble")
        {
            assert!(out.replace(m).is_none(), "completed twice");
        }
    }
    assert_eq!(collector.in_progress(), 0, "state left behind");
    out.expect("message completed")
}

/// The body split at the given cut points.
fn split(body: &Bytes, cuts: &[usize]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([body.len()]) {
        pieces.push(body.slice(start..p));
        start = p;
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_message_survives_any_chunk_size(msg in message(), max in 200usize..6000) {
        match Chunker::new(max).frames(&msg) {
            Ok(frames) => {
                prop_assert!(frames.iter().all(|f| f.len() <= max));
                prop_assert_eq!(collect(frames), msg);
            }
            // Only a head too large for one frame may be refused.
            Err(e) => prop_assert!(matches!(e, anpx_core::frame::EncodeError::FrameSizeTooSmall { .. }), "{e}"),
        }
    }

    /// Hand-built layouts: the head in any chunk (first, as we send it; last,
    /// as the reference sends responses), either final marker, with or
    /// without chunk_tot, empty pieces allowed.
    #[test]
    fn any_chunk_layout_reassembles(
        msg in message(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        head_at in any::<prop::sample::Index>(),
        word_marker in any::<bool>(),
        with_total in any::<bool>(),
        mark_final in any::<bool>(),
    ) {
        let pieces = split(&msg.body, &cuts);
        let n = pieces.len();
        let head_index = head_at.index(n);
        let kind = msg.head.kind();
        let meta = match &msg.head {
            Head::Request(h) => Some(Meta::Request(h.clone())),
            Head::Response(h) => Some(Meta::Response(h.clone())),
            Head::Error => None,
        };
        // Without chunk_tot, only final_chunk can end the message.
        let mark_final = mark_final || !with_total;
        let frames = pieces.into_iter().enumerate().map(|(i, piece)| {
            let last = i + 1 == n;
            Frame {
                kind,
                request_id: msg.request_id.clone(),
                chunk: Some(ChunkInfo {
                    index: i as u32,
                    total: with_total.then_some(n as u32),
                    final_marker: (last && mark_final).then_some(if word_marker { FinalMarker::Word } else { FinalMarker::Byte }),
                }),
                meta: if i == head_index { meta.clone() } else { None },
                body: (!piece.is_empty()).then_some(piece),
            }
            .encode()
            .unwrap()
        });
        prop_assert_eq!(collect(frames), msg);
    }

    #[test]
    fn mutated_frames_never_panic(msg in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let frames = Chunker::new(4096).frames(&msg).unwrap_or_default();
        for wire in frames {
            let mut bytes = wire.to_vec();
            for (at, value) in &flips {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            // Refusal is fine, a panic is not; and the CRCs must catch every
            // change that matters (only the padding bytes are unchecked).
            if let Ok(frame) = Frame::decode(Bytes::from(bytes), &FrameLimits::default()) {
                let original = Frame::decode(wire.clone(), &FrameLimits::default()).unwrap();
                prop_assert_eq!(frame, original);
            }
        }
    }
}
