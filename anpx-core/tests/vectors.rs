//! Every case of the reference implementation's golden vectors
//! (`testdata/anpx-vectors/frames.json`): valid frames decode to what the
//! reference meant, single frames re-encode byte-identically, malformed
//! frames are refused with the matching error.

use std::collections::BTreeMap;
use std::time::Instant;

use anpx_core::chunk::{MessageCollector, ReassemblyLimits};
use anpx_core::frame::{Frame, FrameError, FrameLimits, MessageKind};
use anpx_core::{Head, Message};
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/anpx-vectors/frames.json"
));

struct Case {
    name: String,
    frames: Vec<Bytes>,
    expect: Value,
}

fn cases() -> Vec<Case> {
    let doc: Value = serde_json::from_str(VECTORS).expect("frames.json parses");
    let cases = doc["cases"].as_array().expect("cases array");
    assert!(
        cases.len() >= 20,
        "the vector file lost cases: {}",
        cases.len()
    );
    cases
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            frames: c["frames_hex"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| Bytes::from(hex::decode(h.as_str().unwrap()).unwrap()))
                .collect(),
            expect: c["expect"].clone(),
        })
        .collect()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn decode_message(case: &Case) -> Message {
    let mut collector = MessageCollector::new(ReassemblyLimits::default());
    let now = Instant::now();
    let mut done = None;
    for (i, wire) in case.frames.iter().enumerate() {
        let frame = Frame::decode(wire.clone(), &FrameLimits::default())
            .unwrap_or_else(|e| panic!("{}: frame {i} refused: {e}", case.name));
        assert_eq!(
            frame.chunk.is_some(),
            case.expect["chunked"].as_bool().unwrap_or(false),
            "{}",
            case.name
        );
        if let Some(msg) = collector.push(now, frame).unwrap() {
            assert!(done.is_none(), "{}: completed twice", case.name);
            assert_eq!(
                i + 1,
                case.frames.len(),
                "{}: completed before the last frame",
                case.name
            );
            done = Some(msg);
        }
    }
    assert_eq!(collector.in_progress(), 0);
    done.unwrap_or_else(|| panic!("{}: never completed", case.name))
}

#[test]
fn valid_vectors_decode_to_the_expected_message() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.expect.get("error").is_none()) {
        let msg = decode_message(case);
        let e = &case.expect;
        assert_eq!(
            msg.request_id.as_str(),
            e["request_id"].as_str().unwrap(),
            "{}",
            case.name
        );
        let kind = msg.head.kind().name();
        assert_eq!(kind, e["type"].as_str().unwrap(), "{}", case.name);
        match &msg.head {
            Head::Request(h) => {
                let m = &e["http_meta"];
                assert_eq!(h.method, m["method"].as_str().unwrap(), "{}", case.name);
                assert_eq!(h.path, m["path"].as_str().unwrap(), "{}", case.name);
                let headers: BTreeMap<_, _> = h
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect();
                assert_eq!(headers, string_map(&m["headers"]), "{}", case.name);
                let query: BTreeMap<_, _> = form_urlencoded::parse(h.query.as_bytes())
                    .into_owned()
                    .collect();
                assert_eq!(query, string_map(&m["query"]), "{}", case.name);
            }
            Head::Response(h) => {
                let m = &e["resp_meta"];
                assert_eq!(
                    u64::from(h.status),
                    m["status"].as_u64().unwrap(),
                    "{}",
                    case.name
                );
                assert_eq!(h.reason, m["reason"].as_str().unwrap(), "{}", case.name);
                let headers: BTreeMap<_, _> = h
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect();
                assert_eq!(headers, string_map(&m["headers"]), "{}", case.name);
            }
            Head::Error => {}
        }
        assert_eq!(
            msg.body.len() as u64,
            e["body_len"].as_u64().unwrap(),
            "{}",
            case.name
        );
        assert_eq!(
            hex::encode(Sha256::digest(&msg.body)),
            e["body_sha256"].as_str().unwrap(),
            "{}",
            case.name
        );
        if let Some(body_hex) = e.get("body_hex") {
            assert_eq!(
                hex::encode(&msg.body),
                body_hex.as_str().unwrap(),
                "{}",
                case.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 10, "valid cases seen");
}

#[test]
fn reference_frames_reencode_byte_identically() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.expect.get("error").is_none()) {
        // Unknown tags are skipped, not kept, so that frame cannot come back whole.
        if case.name == "unknown_tag_skipped" {
            continue;
        }
        // Single frames, and request chunks (whose TLV order we share with the
        // reference; its last response chunk puts final_chunk before the body).
        let kind_is_request = case.expect["type"] == "http_request";
        if case.frames.len() > 1 && !kind_is_request {
            continue;
        }
        for (i, wire) in case.frames.iter().enumerate() {
            let frame = Frame::decode(wire.clone(), &FrameLimits::default()).unwrap();
            let again = frame.encode().unwrap();
            assert_eq!(
                hex::encode(&again),
                hex::encode(wire),
                "{} frame {i}",
                case.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 17, "frames re-encoded: {checked}");
}

fn error_matches(expected: &str, err: &FrameError) -> bool {
    match expected {
        "magic" => matches!(err, FrameError::BadMagic(_)),
        "version" => matches!(err, FrameError::UnsupportedVersion(2)),
        "header crc" => matches!(err, FrameError::HeaderCrc { .. }),
        "body crc" => matches!(err, FrameError::BodyCrc { .. }),
        "truncated header" => matches!(err, FrameError::TruncatedHeader { .. }),
        "length" => matches!(err, FrameError::LengthMismatch { .. }),
        "truncated tlv" => matches!(err, FrameError::TruncatedTlv { .. }),
        "message type" => matches!(err, FrameError::UnknownMessageType(7)),
        "http_meta" => matches!(
            err,
            FrameError::BadMeta {
                field: "http_meta",
                ..
            }
        ),
        "missing http_meta" => matches!(err, FrameError::MissingMeta("http_meta")),
        "missing request_id" => matches!(err, FrameError::MissingRequestId),
        other => panic!("the vectors name an error this test does not know: {other:?}"),
    }
}

#[test]
fn malformed_vectors_are_refused_with_the_matching_error() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.expect.get("error").is_some()) {
        let expected = case.expect["error"].as_str().unwrap();
        assert_eq!(case.frames.len(), 1, "{}", case.name);
        match Frame::decode(case.frames[0].clone(), &FrameLimits::default()) {
            Ok(f) => panic!("{}: accepted a malformed frame: {f:?}", case.name),
            Err(e) => assert!(
                error_matches(expected, &e),
                "{}: expected {expected:?}, got {e:?} ({e})",
                case.name
            ),
        }
        checked += 1;
    }
    assert_eq!(checked, 12, "malformed cases seen");
}

#[test]
fn frames_over_the_size_limit_are_refused_before_any_checksum() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "request_chunked_large")
        .unwrap();
    let limits = FrameLimits {
        max_frame_len: 1024,
    };
    let err = Frame::decode(case.frames[0].clone(), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::TooLarge {
                len: 65563,
                max: 1024
            }
        ),
        "{err:?}"
    );
}

#[test]
fn error_frame_kind_round_trips() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "error_frame")
        .unwrap();
    let frame = Frame::decode(case.frames[0].clone(), &FrameLimits::default()).unwrap();
    assert_eq!(frame.kind, MessageKind::Error);
    assert_eq!(frame.body.as_deref(), Some(&b"No receiver available"[..]));
}
