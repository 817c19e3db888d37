//! Arbitrary bytes as what a WebSocket peer sends, read by either side.
//!
//! Decoding must never panic or hold more than it reports, must give the
//! same messages (or the same error after them) however the socket cuts
//! the bytes, and what it accepts must read back the same once written
//! again: the gateway and the receiver decode what the other encoded.

#![no_main]

use anpx_core::ws::{encode, Decoder, FrameError, Incoming, Role, LARGE_STEP};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// A message limit small enough that the fuzzer reaches it.
const MAX_MESSAGE: usize = 4096;

/// Everything `decoder` makes of `bytes` read `step` bytes at a time, and
/// the error that ended it, if one did.
fn decode(role: Role, bytes: &[u8], step: usize) -> (Vec<Incoming>, Option<FrameError>) {
    let mut decoder = Decoder::new(role, MAX_MESSAGE);
    let mut got = Vec::new();
    let mut rest = bytes;
    let mut fed = 0u64;
    loop {
        match decoder.decode() {
            Ok(Some(incoming)) => {
                got.push(incoming);
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = e.to_string();
                return (got, Some(e));
            }
        }
        if rest.is_empty() {
            return (got, None);
        }
        let target = decoder.read_target();
        assert!(!target.is_empty(), "a read target is never empty");
        let n = target.len().min(rest.len()).min(step);
        target[..n].copy_from_slice(&rest[..n]);
        decoder.filled(n);
        rest = &rest[n..];
        fed += n as u64;
        assert!(
            decoder.arriving() <= fed + LARGE_STEP as u64,
            "holds {} after {fed} bytes",
            decoder.arriving()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, step, bytes @ ..] = data else {
        return;
    };
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let whole = decode(role, bytes, usize::MAX);
    let cut = decode(role, bytes, usize::from(*step).max(1));
    assert_eq!(whole, cut, "read sizes changed what was decoded");

    // What was accepted, written by the peer's side and read again.
    let peer_mask = (role == Role::Server).then_some([0x5a, 0x01, 0xff, 0x80]);
    let mut wire = BytesMut::new();
    let mut messages = Vec::new();
    for incoming in whole.0 {
        match incoming {
            Incoming::Message(m) => {
                encode::message(&mut wire, m.clone(), peer_mask);
                messages.push(Incoming::Message(m));
            }
            Incoming::Close(_) => break,
        }
    }
    let again = decode(role, &wire, usize::MAX);
    assert_eq!(
        again,
        (messages, None),
        "accepted messages read back differently"
    );
});
