//! The reassembler's sequence rules and bounds, one by one. Every refusal
//! must also drop the message's partial state.

use std::time::{Duration, Instant};

use anpx_core::chunk::{ChunkError, Reassembler, ReassemblyLimits};
use anpx_core::frame::{ChunkInfo, FinalMarker, Frame, MessageKind, Meta};
use anpx_core::{Head, RequestHead, RequestId, ResponseHead};
use bytes::Bytes;

fn id(s: &str) -> RequestId {
    RequestId::from(s)
}

fn chunk(
    kind: MessageKind,
    rid: &str,
    index: u32,
    total: Option<u32>,
    last: bool,
    body: &[u8],
) -> Frame {
    Frame {
        kind,
        request_id: id(rid),
        chunk: Some(ChunkInfo {
            index,
            total,
            final_marker: last.then_some(FinalMarker::Byte),
        }),
        meta: None,
        body: (!body.is_empty()).then(|| Bytes::copy_from_slice(body)),
    }
}

fn with_request_meta(mut f: Frame) -> Frame {
    f.meta = Some(Meta::Request(RequestHead::new("POST", "/up")));
    f
}

fn with_response_meta(mut f: Frame) -> Frame {
    f.meta = Some(Meta::Response(ResponseHead::new(200)));
    f
}

fn limits() -> ReassemblyLimits {
    ReassemblyLimits {
        max_message_size: 100,
        max_headless_bytes: 50,
        max_partials: 2,
        stale_after: Duration::from_secs(10),
    }
}

const REQ: MessageKind = MessageKind::Request;
const RESP: MessageKind = MessageKind::Response;

#[test]
fn request_head_in_chunk_zero_streams_at_once() {
    let mut r = Reassembler::new(limits());
    let t = Instant::now();
    let out = r
        .push(t, with_request_meta(chunk(REQ, "a", 0, None, false, b"12")))
        .unwrap();
    assert!(matches!(out.head, Some(Head::Request(_))));
    assert_eq!(out.body, vec![Bytes::from_static(b"12")]);
    assert!(!out.end);
    let out = r.push(t, chunk(REQ, "a", 1, None, true, b"34")).unwrap();
    assert_eq!(
        (out.head, out.body, out.end),
        (None, vec![Bytes::from_static(b"34")], true)
    );
    assert_eq!(r.in_progress(), 0);
}

#[test]
fn response_meta_in_last_chunk_releases_the_held_body_with_it() {
    let mut r = Reassembler::new(limits());
    let t = Instant::now();
    let out = r
        .push(t, chunk(RESP, "a", 0, Some(2), false, b"ab"))
        .unwrap();
    assert!(out.head.is_none() && out.body.is_empty());
    let out = r
        .push(
            t,
            with_response_meta(chunk(RESP, "a", 1, Some(2), true, b"cd")),
        )
        .unwrap();
    assert!(matches!(out.head, Some(Head::Response(_))));
    assert_eq!(
        out.body,
        vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]
    );
    assert!(out.end);
}

#[test]
fn completes_on_chunk_tot_without_final_marker() {
    let mut r = Reassembler::new(limits());
    let t = Instant::now();
    r.push(
        t,
        with_request_meta(chunk(REQ, "a", 0, Some(2), false, b"x")),
    )
    .unwrap();
    assert!(
        r.push(t, chunk(REQ, "a", 1, Some(2), false, b"y"))
            .unwrap()
            .end
    );
    assert_eq!(r.in_progress(), 0);
}

fn refused(r: &mut Reassembler, frames: Vec<Frame>) -> ChunkError {
    let t = Instant::now();
    let n = frames.len();
    for (i, f) in frames.into_iter().enumerate() {
        match r.push(t, f) {
            Ok(_) if i + 1 < n => {}
            Ok(out) => panic!("last frame accepted: {out:?}"),
            Err(e) => {
                assert_eq!(i + 1, n, "refused early: {e}");
                assert!(!r.is_in_progress(e.request_id()), "state kept after {e}");
                return e;
            }
        }
    }
    unreachable!()
}

#[test]
fn a_gap_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, None, false, b"x")),
            chunk(REQ, "a", 2, None, true, b""),
        ],
    );
    assert!(
        matches!(
            e,
            ChunkError::Gap {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_gap_at_the_start_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(&mut r, vec![chunk(REQ, "a", 1, None, false, b"x")]);
    assert!(
        matches!(
            e,
            ChunkError::Gap {
                expected: 0,
                got: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_duplicate_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, None, false, b"x")),
            chunk(REQ, "a", 0, None, false, b"x"),
        ],
    );
    assert!(matches!(e, ChunkError::Duplicate { index: 0, .. }), "{e:?}");
}

#[test]
fn a_chunk_past_chunk_tot_is_refused() {
    let mut r = Reassembler::new(limits());
    let t = Instant::now();
    // Complete by count at index 0 of 1; index 1 then belongs to nothing.
    assert!(
        r.push(
            t,
            with_request_meta(chunk(REQ, "a", 0, Some(1), false, b"x"))
        )
        .unwrap()
        .end
    );
    let e = refused(&mut r, vec![chunk(REQ, "a", 1, Some(1), false, b"y")]);
    assert!(
        matches!(
            e,
            ChunkError::Gap {
                expected: 0,
                got: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_final_chunk_without_meta_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(&mut r, vec![chunk(REQ, "a", 0, Some(1), true, b"x")]);
    assert!(matches!(e, ChunkError::MissingMeta { .. }), "{e:?}");
}

#[test]
fn a_final_marker_before_the_last_index_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![with_request_meta(chunk(REQ, "a", 0, Some(3), true, b"x"))],
    );
    assert!(
        matches!(
            e,
            ChunkError::OutOfRange {
                index: 0,
                total: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_changed_total_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, Some(3), false, b"")),
            chunk(REQ, "a", 1, Some(4), false, b""),
        ],
    );
    assert!(
        matches!(e, ChunkError::TotalChanged { was: 3, now: 4, .. }),
        "{e:?}"
    );
}

#[test]
fn a_changed_kind_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, None, false, b"")),
            chunk(RESP, "a", 1, None, true, b""),
        ],
    );
    assert!(matches!(e, ChunkError::KindChanged { .. }), "{e:?}");
}

#[test]
fn meta_twice_is_refused() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, None, false, b"")),
            with_request_meta(chunk(REQ, "a", 1, None, false, b"")),
        ],
    );
    assert!(matches!(e, ChunkError::DuplicateMeta { .. }), "{e:?}");
}

#[test]
fn an_unchunked_frame_mid_message_is_refused() {
    let mut r = Reassembler::new(limits());
    let mut whole = with_request_meta(chunk(REQ, "a", 0, None, false, b""));
    whole.chunk = None;
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, None, false, b"")),
            whole,
        ],
    );
    assert!(matches!(e, ChunkError::Interleaved { .. }), "{e:?}");
}

#[test]
fn the_message_size_bound_holds() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            with_request_meta(chunk(REQ, "a", 0, None, false, &[0; 60])),
            chunk(REQ, "a", 1, None, false, &[0; 41]),
        ],
    );
    assert!(
        matches!(
            e,
            ChunkError::TooLarge {
                size: 101,
                max: 100,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn the_headless_bound_holds_while_waiting_for_meta_last() {
    let mut r = Reassembler::new(limits());
    let e = refused(
        &mut r,
        vec![
            chunk(RESP, "a", 0, None, false, &[0; 30]),
            chunk(RESP, "a", 1, None, false, &[0; 21]),
        ],
    );
    assert!(
        matches!(
            e,
            ChunkError::TooLarge {
                size: 51,
                max: 50,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn the_partial_count_bound_holds_and_frees_with_completion() {
    let mut r = Reassembler::new(limits());
    let t = Instant::now();
    r.push(t, with_request_meta(chunk(REQ, "a", 0, None, false, b"")))
        .unwrap();
    r.push(t, with_request_meta(chunk(REQ, "b", 0, None, false, b"")))
        .unwrap();
    let e = r
        .push(t, with_request_meta(chunk(REQ, "c", 0, None, false, b"")))
        .unwrap_err();
    assert!(
        matches!(e, ChunkError::TooManyPartials { max: 2, .. }),
        "{e:?}"
    );
    r.push(t, chunk(REQ, "a", 1, None, true, b"")).unwrap();
    r.push(t, with_request_meta(chunk(REQ, "c", 0, None, false, b"")))
        .unwrap();
    assert_eq!(r.in_progress(), 2);
}

#[test]
fn stale_partials_expire_at_their_deadline_not_before() {
    let mut r = Reassembler::new(limits());
    let t0 = Instant::now();
    r.push(t0, with_request_meta(chunk(REQ, "a", 0, None, false, b"")))
        .unwrap();
    r.push(
        t0 + Duration::from_secs(5),
        with_request_meta(chunk(REQ, "b", 0, None, false, b"")),
    )
    .unwrap();
    assert_eq!(r.next_expiry(), Some(t0 + Duration::from_secs(10)));
    assert!(r.expire(t0 + Duration::from_millis(9_999)).is_empty());
    assert_eq!(r.expire(t0 + Duration::from_secs(10)), vec![id("a")]);
    // Activity pushes the deadline out.
    r.push(
        t0 + Duration::from_secs(14),
        chunk(REQ, "b", 1, None, false, b""),
    )
    .unwrap();
    assert!(r.expire(t0 + Duration::from_secs(20)).is_empty());
    assert_eq!(r.expire(t0 + Duration::from_secs(24)), vec![id("b")]);
    assert_eq!(r.in_progress(), 0);
    assert_eq!(r.next_expiry(), None);
}

#[test]
fn the_last_possible_index_ends_the_message_or_is_refused() {
    let mut r = Reassembler::new(limits());
    // Not reachable in order from 0 without 4 billion frames: a gap.
    let e = refused(&mut r, vec![chunk(REQ, "a", u32::MAX, None, false, b"")]);
    assert!(matches!(e, ChunkError::Gap { .. }), "{e:?}");
}
