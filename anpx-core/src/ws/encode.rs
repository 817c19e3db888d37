//! Writing WebSocket frames (RFC 6455 §5.2): every message goes out as one
//! frame. A client masks what it sends with a key the caller draws for
//! each frame: RFC 6455 §10.3 wants it unpredictable, so it comes from a
//! cryptographically secure generator, which the core does not hold
//! (`mask` below: `Some(key)` on a client, `None` on a server).

use bytes::{BufMut, Bytes, BytesMut};

use super::{WsMessage, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Masks or unmasks `bytes` in place (§5.3): XOR with the key, repeated.
#[inline]
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

/// A message's opcode and payload (a ping's or pong's cut to the 125
/// bytes a control frame may carry).
#[inline]
pub fn parts(message: WsMessage) -> (u8, Bytes) {
    match message {
        WsMessage::Binary(b) => (OP_BINARY, b),
        WsMessage::Text(t) => (OP_TEXT, Bytes::from(t)),
        WsMessage::Ping(b) => (OP_PING, b.slice(..b.len().min(MAX_CONTROL_PAYLOAD))),
        WsMessage::Pong(b) => (OP_PONG, b.slice(..b.len().min(MAX_CONTROL_PAYLOAD))),
    }
}

/// Appends the header of a final frame with `opcode`, a payload of `len`
/// bytes and the masking key `mask`, with which the payload must then be
/// masked.
#[inline]
pub fn header(out: &mut BytesMut, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
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
    if let Some(key) = mask {
        out.put_slice(&key);
    }
}

/// Appends a whole frame, its payload copied (and masked with `mask`).
#[inline]
pub fn frame(out: &mut BytesMut, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.reserve(14 + payload.len());
    header(out, opcode, payload.len(), mask);
    let start = out.len();
    out.put_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
}

/// `payload` masked with `key`: in place when nothing else holds its
/// bytes, else a masked copy.
#[inline]
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
#[inline]
pub fn message(out: &mut BytesMut, message: WsMessage, mask: Option<[u8; 4]>) {
    let (opcode, payload) = parts(message);
    frame(out, opcode, &payload, mask);
}

/// Appends a close frame; the reason is cut to the 123 bytes a close
/// frame has room for, at a character boundary.
pub fn close(out: &mut BytesMut, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(out, OP_CLOSE, &payload, mask);
}

/// Appends a close frame without a code, the reply to one.
pub fn close_without_code(out: &mut BytesMut, mask: Option<[u8; 4]>) {
    frame(out, OP_CLOSE, &[], mask);
}
