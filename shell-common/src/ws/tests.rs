//! The frame path against tungstenite, the library that reads and writes
//! the other side for most peers (the Python reference uses `websockets`,
//! which the interop tests cover), and against hostile bytes.

use std::io::Cursor;

use anpx_core::WsMessage;
use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::protocol::{Role as TRole, WebSocket};
use async_tungstenite::tungstenite::Message;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

/// A client's masking key in these tests (the shells draw one per frame).
const CLIENT: Option<[u8; 4]> = Some([0x3c, 0xa1, 0x07, 0xe5]);

/// Everything `decoder` makes of `bytes`, read in pieces of `step` bytes
/// at most.
fn decode_all(
    decoder: &mut Decoder,
    bytes: &[u8],
    step: usize,
) -> Result<Vec<Incoming>, FrameError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        while let Some(incoming) = decoder.decode()? {
            out.push(incoming);
        }
        if rest.is_empty() {
            return Ok(out);
        }
        let target = decoder.read_target();
        let n = target.len().min(rest.len()).min(step);
        target[..n].copy_from_slice(&rest[..n]);
        decoder.filled(n);
        rest = &rest[n..];
    }
}

/// Bytes for tungstenite to read, and a sink for what it writes: it
/// answers pings as it reads, and over one `Cursor` its pongs would
/// overwrite the frames it has still to read.
struct Peer {
    wire: Cursor<Vec<u8>>,
}

impl std::io::Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.wire.read(buf)
    }
}

impl std::io::Write for Peer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// tungstenite reading `wire` as `role`.
fn tungstenite(wire: &[u8], role: TRole) -> WebSocket<Peer> {
    let peer = Peer {
        wire: Cursor::new(wire.to_vec()),
    };
    WebSocket::from_raw_socket(peer, role, None)
}

fn ws_message() -> impl Strategy<Value = WsMessage> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from);
    prop_oneof![
        // Sizes on both sides of the 125 / 65 535 length forms and of
        // the read buffer.
        bytes(20_000).prop_map(WsMessage::Binary),
        prop_oneof![bytes(200), bytes(70_000)].prop_map(WsMessage::Binary),
        ".{0,300}".prop_map(WsMessage::Text),
        bytes(126).prop_map(WsMessage::Ping),
        bytes(126).prop_map(WsMessage::Pong),
    ]
}

/// What tungstenite makes of a core message.
fn to_tungstenite(m: &WsMessage) -> Message {
    match m {
        WsMessage::Binary(b) => Message::Binary(b.clone()),
        WsMessage::Text(t) => Message::Text(t.clone().into()),
        WsMessage::Ping(b) => Message::Ping(b.slice(..b.len().min(125))),
        WsMessage::Pong(b) => Message::Pong(b.slice(..b.len().min(125))),
    }
}

fn truncated(m: WsMessage) -> WsMessage {
    match m {
        WsMessage::Ping(b) => WsMessage::Ping(b.slice(..b.len().min(125))),
        WsMessage::Pong(b) => WsMessage::Pong(b.slice(..b.len().min(125))),
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A receiver's frames (masked) as tungstenite's server reads them,
    /// and as ours does, in any read sizes.
    #[test]
    fn client_frames_read_the_same_by_tungstenite_and_by_us(
        messages in proptest::collection::vec(ws_message(), 1..6),
        step in 1usize..20_000,
    ) {
        let mut wire = BytesMut::new();
        for m in &messages {
            encode::message(&mut wire, m.clone(), CLIENT);
        }
        let mut theirs = tungstenite(&wire, TRole::Server);
        let mut ours = Decoder::new(Role::Server, 1 << 20);
        let decoded = decode_all(&mut ours, &wire, step).unwrap();
        prop_assert_eq!(decoded.len(), messages.len());
        for (m, d) in messages.into_iter().zip(decoded) {
            prop_assert_eq!(theirs.read().unwrap(), to_tungstenite(&m));
            prop_assert_eq!(d, Incoming::Message(truncated(m)));
        }
        prop_assert_eq!(ours.arriving(), 0);
    }

    /// A gateway's frames (unmasked) as tungstenite writes them, fragmented
    /// in any way, with pings between the fragments, read by ours.
    #[test]
    fn tungstenite_fragments_read_whole(
        payload in proptest::collection::vec(any::<u8>(), 0..40_000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        text in any::<bool>(),
        step in 1usize..20_000,
    ) {
        let payload = if text {
            String::from_utf8_lossy(&payload).into_owned().into_bytes()
        } else {
            payload
        };
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([payload.len()]) {
            pieces.push(&payload[from..to.max(from)]);
            from = to.max(from);
        }
        let mut wire = Vec::new();
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = match (i, text) {
                (0, true) => OpCode::Data(Data::Text),
                (0, false) => OpCode::Data(Data::Binary),
                _ => OpCode::Data(Data::Continue),
            };
            Frame::message(piece.to_vec(), opcode, i == last).format(&mut wire).unwrap();
            Frame::ping(vec![7]).format(&mut wire).unwrap();
        }
        let mut ours = Decoder::new(Role::Client, 1 << 20);
        let decoded = decode_all(&mut ours, &wire, step).unwrap();
        let whole = if text {
            WsMessage::Text(String::from_utf8(payload).unwrap())
        } else {
            WsMessage::Binary(Bytes::from(payload))
        };
        let messages: Vec<_> = decoded
            .into_iter()
            .filter(|d| !matches!(d, Incoming::Message(WsMessage::Ping(_))))
            .collect();
        prop_assert_eq!(messages, vec![Incoming::Message(whole)]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a peer sends, read in whatever pieces: no panic, and the
    /// same messages, or the same error after them, however it was read.
    #[test]
    fn any_bytes_decode_the_same_in_any_read_sizes(
        bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(0x82u8), Just(0x80u8), Just(0x00u8), Just(0x7Eu8)],
            0..400,
        ),
        step in 1usize..64,
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let outcome = |step| {
            let mut decoder = Decoder::new(role, 300);
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            let end = loop {
                match decoder.decode() {
                    Ok(Some(incoming)) => {
                        got.push(incoming);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => break Some(e),
                }
                if rest.is_empty() {
                    break None;
                }
                let target = decoder.read_target();
                assert!(!target.is_empty());
                let n = target.len().min(rest.len()).min(step);
                target[..n].copy_from_slice(&rest[..n]);
                decoder.filled(n);
                rest = &rest[n..];
                assert!(decoder.arriving() <= bytes.len() as u64);
            };
            (got, end)
        };
        prop_assert_eq!(outcome(step), outcome(usize::MAX));
    }
}

/// One client frame, masked, with `first` as its first byte.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode::message(
        &mut out,
        WsMessage::Binary(Bytes::copy_from_slice(payload)),
        CLIENT,
    );
    out[0] = first;
    out.to_vec()
}

fn decode_error(role: Role, max: usize, bytes: &[u8]) -> FrameError {
    decode_all(&mut Decoder::new(role, max), bytes, usize::MAX).unwrap_err()
}

#[test]
fn hostile_frames_are_refused_with_the_reason() {
    let protocol = |bytes: &[u8]| match decode_error(Role::Server, 1 << 20, bytes) {
        FrameError::Protocol(why) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        protocol(&client_frame(0xC2, b"x")),
        "reserved bits set without an extension"
    );
    assert_eq!(protocol(&client_frame(0x83, b"x")), "reserved opcode");
    assert_eq!(
        protocol(&client_frame(0x80, b"x")),
        "a continuation frame without a message"
    );
    assert_eq!(
        protocol(&client_frame(0x09, b"x")),
        "control frame fragmented or over 125 bytes"
    );
    assert_eq!(
        protocol(&client_frame(0x81, &[0xFF, 0xFE])),
        "a text message that is not UTF-8"
    );
    assert_eq!(
        protocol(&client_frame(0x88, &[0x03, 0xE8, 0xFF])),
        "a close reason that is not UTF-8"
    );
    assert_eq!(
        protocol(&client_frame(0x88, &[0x03, 0xEC])),
        "a close code that may not be sent"
    );
    assert_eq!(
        protocol(&client_frame(0x88, &[0x03])),
        "a close frame of one byte"
    );
    let mut two_starts = client_frame(0x02, b"a");
    two_starts.extend(client_frame(0x82, b"b"));
    assert_eq!(
        protocol(&two_starts),
        "a new message before the fragmented one ended"
    );
    // Unmasked to a gateway, masked to a receiver.
    assert_eq!(
        protocol(&[0x82, 0x01, b'x']),
        "unmasked frame from a client"
    );
    let masked = client_frame(0x82, b"x");
    assert!(matches!(
        decode_error(Role::Client, 1 << 20, &masked),
        FrameError::Protocol("masked frame from a server")
    ));
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header_alone() {
    // Only the header: a 2^40-byte frame, nothing of it sent.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        decode_error(Role::Server, 1000, &header),
        FrameError::TooBig {
            size: 1 << 40,
            max: 1000
        }
    );
    // Fragments that pass the limit together.
    let mut fragments = client_frame(0x02, &[0; 600]);
    fragments.extend(client_frame(0x80, &[0; 600]));
    assert_eq!(
        decode_error(Role::Server, 1000, &fragments),
        FrameError::TooBig {
            size: 1200,
            max: 1000
        }
    );
}

#[test]
fn what_a_large_frame_holds_so_far_is_arriving() {
    // Three times the step a large frame's buffer is zero-filled by.
    let payload: Vec<u8> = (0..750_000u32).map(|i| i as u8).collect();
    let mut wire = BytesMut::new();
    encode::message(&mut wire, WsMessage::Binary(payload.clone().into()), CLIENT);
    let mut decoder = Decoder::new(Role::Server, 1 << 20);
    let half = wire.len() / 2;
    assert!(decode_all(&mut decoder, &wire[..half], 4096)
        .unwrap()
        .is_empty());
    // The first half but the header (2 bytes, 8 of length, 4 of mask), and
    // what is zero-filled ahead of it: less than a step.
    let arrived = (half - 14) as u64;
    let held = decoder.arriving();
    assert!(
        held >= arrived && held < arrived + 256 * 1024,
        "{held} for {arrived}"
    );
    let rest = decode_all(&mut decoder, &wire[half..], 4096).unwrap();
    assert_eq!(
        rest,
        vec![Incoming::Message(WsMessage::Binary(payload.into()))]
    );
    assert_eq!(decoder.arriving(), 0);
}

#[test]
fn a_frame_announced_large_and_not_sent_holds_little() {
    // A 1 MiB frame's header and ten bytes of it.
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&(1u64 << 20).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    wire.extend_from_slice(&[0; 10]);
    let mut decoder = Decoder::new(Role::Server, 1 << 20);
    assert!(decode_all(&mut decoder, &wire, usize::MAX)
        .unwrap()
        .is_empty());
    // The next read may fill a step past what arrived; no more is held,
    // and all of it is reported.
    assert_eq!(decoder.read_target().len(), 256 * 1024);
    assert_eq!(decoder.arriving(), 256 * 1024 + 10);
}

#[test]
fn a_close_carries_its_code_and_reason() {
    let mut wire = BytesMut::new();
    encode::close(&mut wire, 4003, &"é".repeat(100), None);
    let decoded = decode_all(&mut Decoder::new(Role::Client, 1000), &wire, 7).unwrap();
    // Cut to 123 bytes at a character boundary: 61 two-byte characters.
    assert_eq!(
        decoded,
        vec![Incoming::Close(Some(CloseFrame {
            code: 4003,
            reason: "é".repeat(61)
        }))]
    );
    let mut theirs = tungstenite(&wire, TRole::Client);
    match theirs.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4003),
        other => panic!("{other:?}"),
    }
}

#[test]
fn frames_read_with_the_handshake_come_first() {
    let mut wire = BytesMut::new();
    encode::message(&mut wire, WsMessage::Text("first".into()), None);
    encode::message(&mut wire, WsMessage::Text("second".into()), None);
    let split = wire.len() - 3;
    let mut decoder = Decoder::with_read_ahead(Role::Client, 1000, &wire[..split]);
    let decoded = decode_all(&mut decoder, &wire[split..], 1).unwrap();
    assert_eq!(
        decoded,
        vec![
            Incoming::Message(WsMessage::Text("first".into())),
            Incoming::Message(WsMessage::Text("second".into()))
        ]
    );
}

/// A stream that takes at most `per_write` bytes a write (no vectored
/// writes of its own: the default writes the first slice) and has nothing
/// to read.
struct Trickle {
    written: Vec<u8>,
    per_write: usize,
}

impl futures_util::io::AsyncRead for Trickle {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Pending
    }
}

impl futures_util::io::AsyncWrite for Trickle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.per_write);
        self.written.extend_from_slice(&buf[..n]);
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Small frames and large payloads (written from their own bytes) leave
    /// in the order queued, whatever the socket takes a write, and a
    /// payload shared elsewhere is not masked where the other holder sees it.
    #[test]
    fn queued_messages_leave_whole_and_in_order(
        messages in proptest::collection::vec(ws_message(), 1..8),
        per_write in prop_oneof![1usize..64, 1000usize..100_000],
        client in any::<bool>(),
    ) {
        use futures_util::FutureExt;
        let role = if client { Role::Client } else { Role::Server };
        let mut ws = WsSocket::new(Trickle { written: Vec::new(), per_write }, role, 1 << 20, &[]);
        // Payloads in bytes of their own, which nothing else holds.
        let own = |m: &WsMessage| match m {
            WsMessage::Binary(b) => WsMessage::Binary(Bytes::copy_from_slice(b)),
            WsMessage::Ping(b) => WsMessage::Ping(Bytes::copy_from_slice(b)),
            WsMessage::Pong(b) => WsMessage::Pong(Bytes::copy_from_slice(b)),
            WsMessage::Text(t) => WsMessage::Text(t.clone()),
        };
        let before: Vec<WsMessage> = messages.iter().map(own).collect();
        for (i, m) in messages.iter().enumerate() {
            // Every other one shares its bytes with `messages`.
            ws.feed(if i % 2 == 0 { own(m) } else { m.clone() });
        }
        ws.flush().now_or_never().unwrap().unwrap();
        // What the caller still holds is as it was.
        prop_assert_eq!(&before, &messages);
        let written = ws.into_inner().written;
        let (their_role, our_role) = if client {
            (TRole::Server, Role::Server)
        } else {
            (TRole::Client, Role::Client)
        };
        let mut theirs = tungstenite(&written, their_role);
        let decoded = decode_all(&mut Decoder::new(our_role, 1 << 20), &written, usize::MAX).unwrap();
        prop_assert_eq!(decoded.len(), messages.len());
        for (m, d) in messages.into_iter().zip(decoded) {
            prop_assert_eq!(theirs.read().unwrap(), to_tungstenite(&m));
            prop_assert_eq!(d, Incoming::Message(truncated(m)));
        }
    }
}

/// A peer that sends pings and never reads.
struct PingsNoReads {
    wire: Cursor<Vec<u8>>,
}

impl futures_util::io::AsyncRead for PingsNoReads {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(std::io::Read::read(&mut self.wire, buf))
    }
}

impl futures_util::io::AsyncWrite for PingsNoReads {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Pending
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

#[test]
fn pings_from_a_peer_that_does_not_read_queue_a_batch_of_pongs_at_most() {
    let mut wire = BytesMut::new();
    let pings = 10_000;
    for _ in 0..pings {
        encode::message(
            &mut wire,
            WsMessage::Ping(Bytes::from_static(&[7; 100])),
            None,
        );
    }
    let peer = PingsNoReads {
        wire: Cursor::new(wire.to_vec()),
    };
    let mut ws = WsSocket::new(peer, Role::Client, 1 << 20, &[]);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut seen = 0;
    while let std::task::Poll::Ready(Some(Ok(_))) = ws.poll_next(&mut cx) {
        seen += 1;
    }
    assert_eq!(seen, pings);
    // Each pong is 100 bytes and a 6-byte header (masked); 10 000 would be
    // over 1 MB.
    assert!(
        ws.unsent() >= WRITE_BATCH,
        "pongs were queued: {}",
        ws.unsent()
    );
    assert!(ws.unsent() < WRITE_BATCH + 200, "{}", ws.unsent());
}
