//! Runs a script of frames, clock ticks and expiries through a `Reassembler`
//! and a `MessageCollector` side by side, with limits small enough for the
//! fuzzer to hit, and checks them against a model of what is in progress.
//!
//! Input: a sequence of records, each starting with an op byte (`op % 4`):
//!
//! - `0` WIRE: a big-endian `u16` length, then that many bytes decoded as one
//!   frame with the default limits after its length and CRCs are recomputed
//!   (pushed only if it decodes);
//! - `1` SYNTH: 6 bytes describing a frame, see [`synth`];
//! - `2` TICK: a big-endian `u16` of milliseconds added to the virtual clock;
//! - `3` EXPIRE: `expire(now)` on both.
//!
//! A truncated last record ends the script. `fuzz/make-seeds.py` writes
//! seeds in this format.

#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anpx_core::chunk::{ChunkError, MessageCollector, Reassembler, ReassemblyLimits};
use anpx_core::frame::{ChunkInfo, FinalMarker, Frame, FrameLimits, MessageKind, Meta};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use anpx_fuzz::with_fixed_checksums;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

// One more id than `max_partials`, so the partials bound is reachable.
const IDS: [&str; 5] = ["id-0", "id-1", "id-2", "id-3", "id-4"];

const LIMITS: ReassemblyLimits = ReassemblyLimits {
    max_message_size: 4096,
    max_headless_bytes: 2048,
    max_partials: 4,
    stale_after: Duration::from_secs(1),
};

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

/// What the harness expects of one message in progress.
#[derive(Default)]
struct Progress {
    next_index: u32,
    head_released: bool,
    released: Vec<u8>,
}

struct Harness {
    reassembler: Reassembler,
    collector: MessageCollector,
    /// Exactly the messages the reassembler should have in progress.
    model: HashMap<RequestId, Progress>,
    now: Instant,
}

/// Builds a frame from 6 bytes `a b c d len_hi len_lo`:
///
/// - `a` bits 0-1: kind (request, response, error, error);
///   bits 2-4: request id (`IDS[n % 5]`); bit 5: carries meta (request and
///   response only); bit 6: chunked; bit 7: use the index the model expects
///   next for this id instead of `b`, so that in-order runs are one bit away;
/// - `b`: chunk index, `0xff` meaning `u32::MAX`;
/// - `c`: chunk total, `0` absent, `0xff` meaning `u32::MAX`;
/// - `d` bits 0-1: final marker (none, 1 byte, 4 bytes, none);
///   bit 2: has a body;
/// - `len & 0x1fff`: body length; each body is filled with `fill`, so the
///   collector's output shows whether pieces kept their order.
fn synth(fields: &[u8], model: &HashMap<RequestId, Progress>, fill: u8) -> Frame {
    let [a, b, c, d, len_hi, len_lo] = fields else {
        unreachable!("synth takes exactly 6 bytes")
    };
    let kind = match a & 0b11 {
        0 => MessageKind::Request,
        1 => MessageKind::Response,
        _ => MessageKind::Error,
    };
    let request_id = RequestId::from(IDS[usize::from((a >> 2) & 0b111) % IDS.len()]);
    let meta = match kind {
        _ if a & 0x20 == 0 => None,
        MessageKind::Request => Some(Meta::Request(
            RequestHead::new("POST", "/upload")
                .with_header("content-type", "application/octet-stream"),
        )),
        MessageKind::Response => Some(Meta::Response(ResponseHead::new(200))),
        MessageKind::Error => None,
    };
    let index = if a & 0x80 != 0 {
        model.get(&request_id).map_or(0, |p| p.next_index)
    } else if *b == 0xff {
        u32::MAX
    } else {
        u32::from(*b)
    };
    let total = match c {
        0 => None,
        0xff => Some(u32::MAX),
        n => Some(u32::from(*n)),
    };
    let final_marker = match d & 0b11 {
        1 => Some(FinalMarker::Byte),
        2 => Some(FinalMarker::Word),
        _ => None,
    };
    let chunk = (a & 0x40 != 0).then_some(ChunkInfo {
        index,
        total,
        final_marker,
    });
    let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]) & 0x1fff);
    let body = (d & 0b100 != 0).then(|| Bytes::from(vec![fill; len]));
    Frame {
        kind,
        request_id,
        chunk,
        meta,
        body,
    }
}

impl Harness {
    fn push(&mut self, frame: Frame) {
        let id = frame.request_id.clone();
        let kind = frame.kind;
        let chunk = frame.chunk;
        let assembled = self.reassembler.push(self.now, frame.clone());
        let collected = self.collector.push(self.now, frame);
        match assembled {
            Err(e) => {
                assert_eq!(e.request_id(), &id, "error names another request: {e}");
                assert!(
                    !self.reassembler.is_in_progress(&id),
                    "{id} still in progress after: {e}"
                );
                let collector_err: ChunkError =
                    collected.expect_err("collector accepted what the reassembler refused");
                assert_eq!(collector_err, e);
                self.model.remove(&id);
            }
            Ok(out) => {
                assert_eq!(out.request_id, id);
                let p = self.model.entry(id.clone()).or_default();
                if let Some(head) = &out.head {
                    assert!(!p.head_released, "{id}: head released twice");
                    assert_eq!(head.kind(), kind, "{id}: head of another kind");
                    p.head_released = true;
                }
                for piece in &out.body {
                    assert!(
                        p.head_released || piece.is_empty(),
                        "{id}: body released before the head"
                    );
                    p.released.extend_from_slice(piece);
                }
                assert!(
                    p.released.len() as u64 <= LIMITS.max_message_size,
                    "{id}: {} body bytes released, limit {}",
                    p.released.len(),
                    LIMITS.max_message_size
                );
                let collected = collected.expect("collector refused what the reassembler accepted");
                if out.end {
                    assert!(
                        !self.reassembler.is_in_progress(&id),
                        "{id} still in progress after its end"
                    );
                    let msg = collected
                        .expect("reassembler ended a message the collector did not complete");
                    assert_eq!(msg.request_id, id);
                    assert_eq!(msg.head.kind(), kind);
                    assert_eq!(
                        msg.body, p.released,
                        "{id}: collected body differs from the released pieces"
                    );
                    self.model.remove(&id);
                } else {
                    let chunk = chunk.expect("an unchunked frame always ends its message");
                    assert!(
                        self.reassembler.is_in_progress(&id),
                        "{id} not in progress mid-message"
                    );
                    assert!(
                        collected.is_none(),
                        "{id}: collector completed a message early"
                    );
                    p.next_index = chunk.index + 1;
                }
            }
        }
    }

    fn expire(&mut self) {
        let due = self
            .reassembler
            .next_expiry()
            .is_some_and(|t| t <= self.now);
        let mut gone = self.reassembler.expire(self.now);
        let mut collector_gone = self.collector.expire(self.now);
        assert_eq!(due, !gone.is_empty(), "next_expiry disagrees with expire");
        gone.sort();
        collector_gone.sort();
        assert_eq!(gone, collector_gone);
        for id in &gone {
            assert!(
                self.model.remove(id).is_some(),
                "{id} expired but was not in progress"
            );
        }
        if let Some(t) = self.reassembler.next_expiry() {
            assert!(t > self.now, "a partial is still stale after expire");
        }
    }

    fn check(&self) {
        assert!(self.reassembler.in_progress() <= LIMITS.max_partials);
        assert_eq!(self.reassembler.in_progress(), self.model.len());
        assert_eq!(self.collector.in_progress(), self.model.len());
        for id in self.model.keys() {
            assert!(self.reassembler.is_in_progress(id), "{id} dropped silently");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness {
        reassembler: Reassembler::new(LIMITS),
        collector: MessageCollector::new(LIMITS),
        model: HashMap::new(),
        now: Instant::now(),
    };
    let mut input = Cursor(data);
    let mut step = 0u8;
    while let Some(op) = input.u8() {
        step = step.wrapping_add(1);
        match op % 4 {
            0 => {
                let Some(wire) = input.u16().and_then(|len| input.take(usize::from(len))) else {
                    break;
                };
                let wire = with_fixed_checksums(wire).unwrap_or_else(|| wire.to_vec());
                if let Ok(frame) = Frame::decode(Bytes::from(wire), &FrameLimits::default()) {
                    h.push(frame);
                }
            }
            1 => {
                let Some(fields) = input.take(6) else {
                    break;
                };
                let frame = synth(fields, &h.model, step);
                // Only frames a peer could send: the decoder's checks (meta
                // required when unchunked, nonzero total) come with the round trip.
                let Ok(wire) = frame.encode() else {
                    continue;
                };
                let Ok(decoded) = Frame::decode(wire, &FrameLimits::default()) else {
                    continue;
                };
                assert_eq!(decoded, frame, "synthesized frame changed in a round trip");
                h.push(decoded);
            }
            2 => {
                let Some(ms) = input.u16() else {
                    break;
                };
                h.now += Duration::from_millis(u64::from(ms));
            }
            _ => h.expire(),
        }
        h.check();
    }
});
