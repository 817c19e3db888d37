//! Message → frames of at most N bytes.

use bytes::Bytes;

use crate::frame::{
    encode_raw, tag, ChunkInfo, EncodeError, FinalMarker, MessageKind, RawFrame, HEADER_LEN,
    TLV_HEADER_LEN,
};
use crate::message::{Head, Message};

/// The reference's chunk size.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;

/// Largest frame of a streamed response body from a receiver to a gateway
/// that negotiated `streaming` (an anpx gateway; the reference gets
/// [`DEFAULT_CHUNK_SIZE`]). Each frame costs a header, a WebSocket message
/// and a CRC set-up, so a MiB in four frames is cheaper than in sixteen; a
/// quarter of the flow-control window keeps four frames in flight before
/// the first credit comes back.
pub const STREAMING_CHUNK_SIZE: usize = 256 * 1024;

/// Splits messages into frames no larger than a chosen size.
///
/// A message that fits is sent as one unchunked frame, as the reference
/// does. A larger one becomes chunks with the head in chunk 0, `chunk_tot`
/// set and `final_chunk` on the last, which the reference's reassembler
/// accepts for requests and responses alike.
///
/// ```
/// use anpx_core::chunk::Chunker;
/// use anpx_core::{Head, Message, RequestHead, RequestId};
///
/// let msg = Message {
///     request_id: RequestId::from("r-1"),
///     head: Head::Request(RequestHead::new("POST", "/upload")),
///     body: vec![7u8; 10_000].into(),
/// };
/// let frames = Chunker::new(1024).frames(&msg).unwrap();
/// assert!(frames.len() > 10);
/// assert!(frames.iter().all(|f| f.len() <= 1024));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunker {
    max_frame_len: usize,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker::new(DEFAULT_CHUNK_SIZE)
    }
}

impl Chunker {
    /// A chunker whose frames, header included, are at most `max_frame_len` bytes.
    pub const fn new(max_frame_len: usize) -> Self {
        Chunker { max_frame_len }
    }

    /// The frame size limit.
    pub const fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Encodes `msg` as one frame, or as chunks when it does not fit in one.
    pub fn frames(&self, msg: &Message) -> Result<Vec<Bytes>, EncodeError> {
        let (kind, meta) = match &msg.head {
            Head::Request(h) => (
                MessageKind::Request,
                Some((tag::HTTP_META, h.to_meta_json())),
            ),
            Head::Response(h) => (
                MessageKind::Response,
                Some((tag::RESP_META, h.to_meta_json())),
            ),
            Head::Error => (MessageKind::Error, None),
        };
        let meta = meta.as_ref().map(|(t, json)| (*t, json.as_slice()));
        let body = (!msg.body.is_empty()).then_some(&msg.body[..]);
        let id = msg.request_id.as_str();
        let max = self.max_frame_len as u64;

        let single = RawFrame {
            kind,
            request_id: id,
            chunk: None,
            meta,
            body,
        };
        if single.encoded_len() <= max {
            return Ok(vec![encode_raw(&single, max)?]);
        }

        let layout = Layout::new(
            self.max_frame_len,
            id.len(),
            meta.map(|(_, json)| json.len()),
            msg.body.len() as u64,
        )?;
        let final_marker = counted_final_marker(kind);
        let total = layout.total;
        let body = &msg.body[..];

        let mut frames = Vec::with_capacity(total as usize);
        let mut offset = 0;
        for index in 0..total {
            let room = layout.room(index);
            let end = (offset + room).min(body.len());
            let piece = &body[offset..end];
            offset = end;
            let last = index + 1 == total;
            let frame = RawFrame {
                kind,
                request_id: id,
                chunk: Some(ChunkInfo {
                    index,
                    total: Some(total),
                    final_marker: last.then_some(final_marker),
                }),
                meta: if index == 0 { meta } else { None },
                body: (!piece.is_empty()).then_some(piece),
            };
            frames.push(encode_raw(&frame, max)?);
        }
        Ok(frames)
    }
}

/// The marker on the last chunk of a sequence that also carries
/// `chunk_tot`: the reference writes 4 bytes on requests and 1 on
/// responses, and completes both by count, so either is safe there; doing
/// the same keeps our request chunks laid out like its.
pub(crate) fn counted_final_marker(kind: MessageKind) -> FinalMarker {
    match kind {
        MessageKind::Request => FinalMarker::Word,
        _ => FinalMarker::Byte,
    }
}

/// How a message of known length is cut into chunks that carry
/// `chunk_tot`: the head rides in chunk 0, so chunk 0 holds `first` body
/// bytes and every later one `per_chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) first: usize,
    pub(crate) per_chunk: usize,
    pub(crate) total: u32,
}

impl Layout {
    /// The layout for frames of at most `max_frame_len` bytes, a request id
    /// of `id_len` bytes, a meta JSON of `meta_len` bytes (if any) and
    /// a body of `body_len` bytes.
    pub(crate) fn new(
        max_frame_len: usize,
        id_len: usize,
        meta_len: Option<usize>,
        body_len: u64,
    ) -> Result<Layout, EncodeError> {
        let tlv = |len: usize| TLV_HEADER_LEN + len;
        // Index, total and a 4-byte final marker, whichever chunk is last.
        let overhead = HEADER_LEN + tlv(id_len) + 2 * tlv(4) + tlv(4) + TLV_HEADER_LEN;
        let meta_tlv = meta_len.map_or(0, tlv);
        let too_small = EncodeError::FrameSizeTooSmall {
            max: max_frame_len,
            overhead: overhead + meta_tlv,
        };
        let per_chunk = max_frame_len
            .checked_sub(overhead)
            .filter(|&n| n > 0)
            .ok_or(too_small.clone())?;
        let first = per_chunk.checked_sub(meta_tlv).ok_or(too_small)?;
        let rest = body_len.saturating_sub(first as u64);
        let count = 1 + rest.div_ceil(per_chunk as u64);
        let total = u32::try_from(count).map_err(|_| EncodeError::TooLarge {
            len: body_len,
            max: u64::from(u32::MAX) * per_chunk as u64,
        })?;
        Ok(Layout {
            first,
            per_chunk,
            total,
        })
    }

    /// Body bytes chunk `index` holds unless it is the last.
    pub(crate) fn room(&self, index: u32) -> usize {
        if index == 0 {
            self.first
        } else {
            self.per_chunk
        }
    }
}
