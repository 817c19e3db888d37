//! [`Frame`](super::Frame) parts → bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::EncodeError;
use super::header::{FixedHeader, MessageKind, FLAG_CHUNKED, HEADER_LEN};
use super::tlv::{tag, TLV_HEADER_LEN};
use super::{ChunkInfo, FinalMarker};

/// A frame with its meta already serialized, so a chunker can write the
/// same JSON into a frame without producing it again.
pub(crate) struct RawFrame<'a> {
    pub kind: MessageKind,
    pub request_id: &'a str,
    pub chunk: Option<ChunkInfo>,
    /// `(tag, json)`.
    pub meta: Option<(u8, &'a [u8])>,
    pub body: Option<&'a [u8]>,
}

impl RawFrame<'_> {
    /// Frame size in bytes, computed without writing it.
    pub(crate) fn encoded_len(&self) -> u64 {
        let tlv = |len: usize| (TLV_HEADER_LEN + len) as u64;
        let mut len = HEADER_LEN as u64 + tlv(self.request_id.len());
        if let Some(c) = self.chunk {
            len += tlv(4);
            len += c.total.map_or(0, |_| tlv(4));
            len += match c.final_marker {
                None => 0,
                Some(FinalMarker::Byte) => tlv(1),
                Some(FinalMarker::Word) => tlv(4),
            };
        }
        len += self.meta.map_or(0, |(_, json)| tlv(json.len()));
        len += self.body.map_or(0, |b| tlv(b.len()));
        len
    }
}

/// Copies and checksums in blocks small enough to stay in L1 between the two.
const CRC_BLOCK: usize = 16 * 1024;

struct BodyWriter {
    buf: BytesMut,
    crc: crc32fast::Hasher,
}

impl BodyWriter {
    fn tlv(&mut self, t: u8, value: &[u8]) {
        let mut head = [0u8; TLV_HEADER_LEN];
        head[0] = t;
        head[1..].copy_from_slice(&(value.len() as u32).to_be_bytes());
        self.put(&head);
        for block in value.chunks(CRC_BLOCK) {
            self.put(block);
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
        self.crc.update(bytes);
    }
}

/// Writes a frame in the reference's TLV order: request_id, chunk_idx,
/// chunk_tot, meta, body, final_chunk.
pub(crate) fn encode_raw(f: &RawFrame<'_>, max_len: u64) -> Result<Bytes, EncodeError> {
    let len = f.encoded_len();
    let max = max_len.min(u64::from(u32::MAX));
    if len > max {
        return Err(EncodeError::TooLarge { len, max });
    }
    let mut w = BodyWriter {
        buf: BytesMut::with_capacity(len as usize),
        crc: crc32fast::Hasher::new(),
    };
    w.buf.put_bytes(0, HEADER_LEN);
    w.tlv(tag::REQUEST_ID, f.request_id.as_bytes());
    if let Some(c) = f.chunk {
        w.tlv(tag::CHUNK_IDX, &c.index.to_be_bytes());
        if let Some(total) = c.total {
            w.tlv(tag::CHUNK_TOT, &total.to_be_bytes());
        }
    }
    if let Some((t, json)) = f.meta {
        w.tlv(t, json);
    }
    if let Some(body) = f.body {
        w.tlv(tag::HTTP_BODY, body);
    }
    match f.chunk.and_then(|c| c.final_marker) {
        None => {}
        Some(FinalMarker::Byte) => w.tlv(tag::FINAL_CHUNK, &[1]),
        Some(FinalMarker::Word) => w.tlv(tag::FINAL_CHUNK, &[0, 0, 0, 1]),
    }
    let header = FixedHeader {
        kind: f.kind,
        flags: if f.chunk.is_some() { FLAG_CHUNKED } else { 0 },
        total_len: len as u32,
        body_crc: w.crc.finalize(),
    };
    let mut head = [0u8; HEADER_LEN];
    header.write(&mut head);
    w.buf[..HEADER_LEN].copy_from_slice(&head);
    Ok(w.buf.freeze())
}
