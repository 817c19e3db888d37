//! Writing WebSocket frames (RFC 6455 §5.2): every message goes out as one
//! frame, masked when this side is the client.

use anpx_core::WsMessage;

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

/// Appends a frame with `opcode` and `payload` to `out`.
fn frame(out: &mut Vec<u8>, role: Role, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    let mask_bit = if role == Role::Client { 0x80 } else { 0 };
    out.reserve(14 + len);
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = out.len();
    if role == Role::Client {
        let key = masking_key();
        out.extend_from_slice(&key);
        out.extend_from_slice(payload);
        apply_mask(&mut out[start + 4..], key);
    } else {
        out.extend_from_slice(payload);
    }
}

/// Appends `message` as one frame.
pub fn message(out: &mut Vec<u8>, role: Role, message: &WsMessage) {
    match message {
        WsMessage::Binary(b) => frame(out, role, 0x2, b),
        WsMessage::Text(t) => frame(out, role, 0x1, t.as_bytes()),
        WsMessage::Ping(b) => frame(out, role, 0x9, &b[..b.len().min(125)]),
        WsMessage::Pong(b) => frame(out, role, 0xA, &b[..b.len().min(125)]),
    }
}

/// Appends a close frame; the reason is cut to the 123 bytes a close
/// frame has room for, at a character boundary.
pub fn close(out: &mut Vec<u8>, role: Role, code: u16, reason: &str) {
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
pub fn close_without_code(out: &mut Vec<u8>, role: Role) {
    frame(out, role, 0x8, &[]);
}
