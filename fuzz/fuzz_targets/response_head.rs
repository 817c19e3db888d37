//! Feeds arbitrary response heads and body piece sizes from a receiver
//! through the gateway's response checks (`edge::response`) and holds what
//! they let through to the promise that makes response splitting
//! impossible: an accepted head, written as HTTP/1, parses back as exactly
//! one head with the same status and fields, and an accepted body never
//! passes more bytes than its `Content-Length` nor ends short of it
//! unnoticed.
//!
//! Input: byte 0 picks the request (`& 1` HEAD, `& 2` upgrade asked),
//! bytes 1..3 the status (big-endian, so 1xx, 600 and 999 are reachable),
//! byte 3 how many body pieces follow the head; the rest is header text,
//! one `name:value` per `\n`-separated line (so CR, NUL and other control
//! bytes reach names and values), with body piece sizes taken from the
//! last `pieces` pairs of bytes.

#![no_main]

use anpx_core::edge::response::{check_head, Asked, BodyCheck, BodyRule, ResponseLimits};
use anpx_core::ResponseHead;
use libfuzzer_sys::fuzz_target;

// Small enough for the fuzzer to reach both caps.
const LIMITS: ResponseLimits = ResponseLimits {
    max_headers: 16,
    max_header_bytes: 512,
};

fuzz_target!(|data: &[u8]| {
    let [flags, s0, s1, pieces, rest @ ..] = data else {
        return;
    };
    let asked = Asked {
        head: flags & 1 != 0,
        upgrade: flags & 2 != 0,
    };
    let pieces = usize::from(*pieces % 8);
    let split = rest.len().saturating_sub(pieces * 2);
    let (text, sizes) = rest.split_at(split);

    let mut head = ResponseHead::new(u16::from_be_bytes([*s0, *s1]));
    for line in String::from_utf8_lossy(text).split('\n') {
        if let Some((name, value)) = line.split_once(':') {
            head.headers.push(name, value);
        }
    }
    let Ok(rule) = check_head(&mut head, asked, &LIMITS) else {
        return;
    };

    assert!(
        (200..=599).contains(&head.status) || (head.status == 101 && asked.upgrade),
        "status {} accepted",
        head.status
    );
    assert!(head.headers.len() <= LIMITS.max_headers);
    reparse(&head);

    let mut check = BodyCheck::new(rule);
    let mut passed = 0u64;
    for pair in sizes.chunks_exact(2) {
        let n = usize::from(u16::from_be_bytes([pair[0], pair[1]]));
        match check.piece(n) {
            Ok(true) => passed += n as u64,
            Ok(false) => assert_eq!(
                rule,
                BodyRule::None,
                "bytes dropped from a body that has one"
            ),
            Err(_) => {
                assert!(matches!(rule, BodyRule::Length(_)), "an open body overran");
                return;
            }
        }
    }
    match (rule, check.end()) {
        (BodyRule::Length(declared), Ok(())) => assert_eq!(passed, declared),
        (BodyRule::Length(declared), Err(_)) => assert!(passed < declared),
        (BodyRule::None, end) => {
            assert_eq!(passed, 0);
            assert!(end.is_ok());
        }
        (BodyRule::Open, end) => assert!(end.is_ok()),
    }
});

/// Writes `head` as an HTTP/1.1 status line and fields, then parses it
/// back: it must be one complete head, carrying the same status and the
/// same fields in order, ending where the written bytes end.
fn reparse(head: &ResponseHead) {
    let mut wire = format!("HTTP/1.1 {} X\r\n", head.status).into_bytes();
    for (name, value) in head.headers.iter() {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    let mut fields = vec![httparse::EMPTY_HEADER; LIMITS.max_headers + 1];
    let mut parsed = httparse::Response::new(&mut fields);
    match parsed.parse(&wire) {
        Ok(httparse::Status::Complete(len)) => assert_eq!(len, wire.len(), "head ends early"),
        other => panic!("an accepted head does not parse back: {other:?}"),
    }
    assert_eq!(parsed.code, Some(head.status));
    assert_eq!(parsed.headers.len(), head.headers.len());
    for ((name, value), field) in head.headers.iter().zip(parsed.headers.iter()) {
        assert_eq!(field.name, name);
        // httparse trims surrounding whitespace from values.
        assert_eq!(field.value, value.trim_matches([' ', '\t']).as_bytes());
    }
}
