//! Arbitrary bytes as one received WebSocket message.
//!
//! Decoding must never panic, and whatever it accepts must survive a
//! re-encode: the gateway re-encodes frames it relays, so a frame whose
//! re-encoding decodes differently (or not at all) would be altered in transit.

#![no_main]

use anpx_core::frame::{Frame, FrameLimits};
use anpx_fuzz::with_fixed_checksums;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn decode_and_round_trip(wire: Bytes) {
    let frame = match Frame::decode(wire, &FrameLimits::default()) {
        Ok(frame) => frame,
        Err(e) => {
            // Gateways log the reason; formatting it must not panic either.
            let _ = e.to_string();
            return;
        }
    };
    let wire = frame
        .encode()
        .unwrap_or_else(|e| panic!("decoded frame does not re-encode: {e}\n{frame:#?}"));
    // Meta JSON is re-serialized with every non-ASCII character escaped, so
    // the re-encoding may outgrow the default limit the input fitted in.
    let unlimited = FrameLimits {
        max_frame_len: usize::MAX,
    };
    let again = Frame::decode(wire.clone(), &unlimited).unwrap_or_else(|e| {
        panic!("re-encoded frame does not decode: {e}\n{frame:#?}\n{wire:02x?}")
    });
    assert_eq!(again, frame, "re-encoded frame decodes differently");
}

fuzz_target!(|data: &[u8]| {
    decode_and_round_trip(Bytes::copy_from_slice(data));
    if let Some(fixed) = with_fixed_checksums(data) {
        decode_and_round_trip(Bytes::from(fixed));
    }
});
