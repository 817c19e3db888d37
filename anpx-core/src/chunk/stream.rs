//! A message sent as chunks while its body is still arriving.

use bytes::Bytes;

use crate::frame::{
    encode_raw, ChunkInfo, EncodeError, FinalMarker, MessageKind, RawFrame, HEADER_LEN,
    TLV_HEADER_LEN,
};
use crate::message::RequestId;

/// Encodes one message as a chunk sequence without knowing its length up
/// front: head in chunk 0, no `chunk_tot`, `final_chunk` on the last. The
/// reference's reassembler accepts this layout (it completes on
/// `final_chunk` and looks for the meta in any chunk).
#[derive(Debug)]
pub struct ChunkStream {
    kind: MessageKind,
    request_id: RequestId,
    max_frame_len: usize,
    next_index: u32,
    finished: bool,
}

impl ChunkStream {
    /// A stream for one message; frames are at most `max_frame_len` bytes.
    pub fn new(kind: MessageKind, request_id: RequestId, max_frame_len: usize) -> Self {
        ChunkStream {
            kind,
            request_id,
            max_frame_len,
            next_index: 0,
            finished: false,
        }
    }

    /// True once the final chunk was written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Writes `meta` (serialized, with its tag; only before any other chunk)
    /// and `body`, split over as many frames as needed; the last one is
    /// marked final when `last`. Appends the frames to `out`.
    pub fn write(
        &mut self,
        meta: Option<(u8, &[u8])>,
        body: &[u8],
        last: bool,
        out: &mut impl Extend<Bytes>,
    ) -> Result<(), EncodeError> {
        if self.finished {
            return Ok(());
        }
        let id = self.request_id.as_str();
        let tlv = |len: usize| TLV_HEADER_LEN + len;
        // Room for the final marker is kept in every frame so that any frame
        // may turn out to be the last without exceeding the limit.
        let overhead = HEADER_LEN + tlv(id.len()) + tlv(4) + tlv(4) + TLV_HEADER_LEN;
        let meta_len = meta.map_or(0, |(_, json)| tlv(json.len()));
        let too_small = || EncodeError::FrameSizeTooSmall {
            max: self.max_frame_len,
            overhead: overhead + meta_len,
        };
        let per_chunk = self
            .max_frame_len
            .checked_sub(overhead)
            .filter(|&n| n > 0)
            .ok_or_else(too_small)?;
        let mut meta = meta;
        let mut rest = body;
        loop {
            let room = per_chunk
                .checked_sub(meta.map_or(0, |(_, j)| tlv(j.len())))
                .ok_or_else(too_small)?;
            let take = rest.len().min(room);
            let (piece, after) = rest.split_at(take);
            let is_last = last && after.is_empty();
            if piece.is_empty() && meta.is_none() && !is_last {
                return Ok(());
            }
            let frame = RawFrame {
                kind: self.kind,
                request_id: id,
                chunk: Some(ChunkInfo {
                    index: self.next_index,
                    total: None,
                    final_marker: is_last.then_some(match self.kind {
                        MessageKind::Request => FinalMarker::Word,
                        _ => FinalMarker::Byte,
                    }),
                }),
                meta: meta.take(),
                body: (!piece.is_empty()).then_some(piece),
            };
            out.extend([encode_raw(&frame, self.max_frame_len as u64)?]);
            self.next_index = self
                .next_index
                .checked_add(1)
                .ok_or(EncodeError::TooLarge {
                    len: u64::from(u32::MAX) + 1,
                    max: u64::from(u32::MAX),
                })?;
            rest = after;
            if is_last {
                self.finished = true;
                return Ok(());
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}
