//! Writing WebSocket frames (RFC 6455 §5.2): every message goes out as one
//! frame, masked when this side is the client.

use anpx_core::WsMessage;
use bytes::{BufMut, Bytes, BytesMut};

use super::Role;

/// Masks or unmasks `bytes` in place (§5.3): XOR with the key, repeated.
pub fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

/// A client's masking key: unpredictable, as §10.3 asks, from the thread's
/// cryptographically secure generator.
fn masking_key() -> [u8; 4] {
    rand::random()
}

/// A message's opcode and payload (a ping's or pong's cut to the 125
/// bytes a control frame may carry).
pub fn parts(message: WsMessage) -> (u8, Bytes) {
    match message {
        WsMessage::Binary(b) => (0x2, b),
        WsMessage::Text(t) => (0x1, Bytes::from(t)),
        WsMessage::Ping(b) => (0x9, b.slice(..b.len().min(125))),
        WsMessage::Pong(b) => (0xA, b.slice(..b.len().min(125))),
    }
}

/// Appends the header of a final frame with `opcode` and a payload of
/// `len` bytes; the masking key the payload must then be masked with, for
/// a client.
pub fn header(out: &mut BytesMut, role: Role, opcode: u8, len: usize) -> Option<[u8; 4]> {
    let mask_bit = if role == Role::Client { 0x80 } else { 0 };
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(mask_bit | len as u8),
        126..=0xFFFF => {
            out.put_u8(mask_bit | 126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(mask_bit | 127);
            out.put_u64(len as u64);
        }
    }
    (role == Role::Client).then(|| {
        let key = masking_key();
        out.put_slice(&key);
        key
    })
}

/// Appends a whole frame, its payload copied.
pub fn frame(out: &mut BytesMut, role: Role, opcode: u8, payload: &[u8]) {
    out.reserve(14 + payload.len());
    let key = header(out, role, opcode, payload.len());
    let start = out.len();
    out.put_slice(payload);
    if let Some(key) = key {
        apply_mask(&mut out[start..], key);
    }
}

/// `payload` masked with `key`: in place when nothing else holds its
/// bytes, else a masked copy.
pub fn masked(payload: Bytes, key: [u8; 4]) -> Bytes {
    match payload.try_into_mut() {
        Ok(mut own) => {
            apply_mask(&mut own, key);
            own.freeze()
        }
        Err(shared) => {
            let mut copy = shared.to_vec();
            apply_mask(&mut copy, key);
            Bytes::from(copy)
        }
    }
}

/// Appends `message` as one frame, its payload copied.
pub fn message(out: &mut BytesMut, role: Role, message: WsMessage) {
    let (opcode, payload) = parts(message);
    frame(out, role, opcode, &payload);
}

/// Appends a close frame; the reason is cut to the 123 bytes a close
/// frame has room for, at a character boundary.
pub fn close(out: &mut BytesMut, role: Role, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(out, role, 0x8, &payload);
}

/// Appends a close frame without a code, the reply to one.
pub fn close_without_code(out: &mut BytesMut, role: Role) {
    frame(out, role, 0x8, &[]);
}
