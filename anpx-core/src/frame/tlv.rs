//! Tag-length-value fields of the frame body: tag (1 byte), length (4 bytes, big-endian), value.

use bytes::Bytes;

use super::error::FrameError;
use super::header::be_u32;

/// Size of a TLV's tag and length.
pub const TLV_HEADER_LEN: usize = 5;

/// The TLV tags of ANPX v1.
pub mod tag {
    /// UTF-8 request id, in every frame.
    pub const REQUEST_ID: u8 = 0x01;
    /// Request meta JSON.
    pub const HTTP_META: u8 = 0x02;
    /// Body bytes (or an error frame's UTF-8 message).
    pub const HTTP_BODY: u8 = 0x03;
    /// Response meta JSON.
    pub const RESP_META: u8 = 0x04;
    /// u32 chunk index, 0-based.
    pub const CHUNK_IDX: u8 = 0x0A;
    /// u32 total number of chunks; optional.
    pub const CHUNK_TOT: u8 = 0x0B;
    /// Marks the last chunk: `01` or `00 00 00 01`.
    pub const FINAL_CHUNK: u8 = 0x0C;
    /// First tag of the user-extension range `0xF0..=0xFF`.
    pub const EXTENSION_FIRST: u8 = 0xF0;
}

/// Walks the TLVs of a body, yielding `(tag, value, offset)` where `offset`
/// is the TLV's position within the body (for error messages).
pub(crate) struct TlvReader {
    body: Bytes,
    pos: usize,
}

impl TlvReader {
    pub(crate) fn new(body: Bytes) -> Self {
        TlvReader { body, pos: 0 }
    }
}

impl Iterator for TlvReader {
    type Item = Result<(u8, Bytes, usize), FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.body.len() - self.pos;
        if rest == 0 {
            return None;
        }
        let offset = self.pos;
        if rest < TLV_HEADER_LEN {
            self.pos = self.body.len();
            return Some(Err(FrameError::TruncatedTlv {
                offset,
                needed: TLV_HEADER_LEN as u64,
                available: rest,
            }));
        }
        let tag = self.body[offset];
        let len = be_u32(&self.body[offset + 1..offset + TLV_HEADER_LEN]) as usize;
        let start = offset + TLV_HEADER_LEN;
        // `len` comes from the wire: compare before slicing, never allocate by it.
        if len > self.body.len() - start {
            self.pos = self.body.len();
            return Some(Err(FrameError::TruncatedTlv {
                offset,
                needed: (TLV_HEADER_LEN + len) as u64,
                available: rest,
            }));
        }
        self.pos = start + len;
        Some(Ok((tag, self.body.slice(start..start + len), offset)))
    }
}
