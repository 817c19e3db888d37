//! A message sent as chunks while its body is still arriving.

use bytes::{Bytes, BytesMut};

use super::chunker::{counted_final_marker, Layout};
use crate::frame::{
    encode_raw, ChunkInfo, EncodeError, FinalMarker, MessageKind, RawFrame, HEADER_LEN,
    TLV_HEADER_LEN,
};
use crate::message::RequestId;

/// Encodes one message as a chunk sequence while its body arrives, in one
/// of the two layouts the reference's reassembler completes (it completes a
/// message on a 1-byte `final_chunk`, or when as many chunks arrived as
/// `chunk_tot` says, and never on a 4-byte marker alone):
///
/// - [`ChunkStream::new`], length unknown: head in chunk 0, each piece sent
///   as it comes, no `chunk_tot`, the 1-byte `final_chunk` on the last.
/// - [`ChunkStream::sized`], length known: exactly the frames
///   [`Chunker`](super::Chunker) makes of the whole message (`chunk_tot` on
///   every chunk, full chunks), holding at most one chunk's worth of body
///   until it is full.
///
/// ```
/// use anpx_core::chunk::ChunkStream;
/// use anpx_core::frame::{tag, MessageKind};
/// use anpx_core::RequestHead;
///
/// let head = RequestHead::new("PUT", "/upload").to_meta_json();
/// let mut s = ChunkStream::sized(MessageKind::Request, "r-1".into(), 1024, 3000);
/// let mut frames = Vec::new();
/// s.write(Some((tag::HTTP_META, &head)), &[7; 1000], false, &mut frames)
///     .unwrap();
/// s.write(None, &[7; 2000], true, &mut frames).unwrap();
/// assert!(s.is_finished());
/// assert!(frames.len() >= 3 && frames.iter().all(|f| f.len() <= 1024));
/// ```
#[derive(Debug)]
pub struct ChunkStream {
    kind: MessageKind,
    request_id: RequestId,
    max_frame_len: usize,
    next_index: u32,
    finished: bool,
    sized: Option<Sized>,
}

/// State of a stream whose body length was announced.
#[derive(Debug)]
struct Sized {
    declared: u64,
    received: u64,
    /// Known once the head (whose size shapes chunk 0) was written.
    layout: Option<Layout>,
    meta: Option<(u8, Vec<u8>)>,
    held: BytesMut,
}

impl ChunkStream {
    /// A stream for one message of unknown length; frames are at most
    /// `max_frame_len` bytes.
    pub fn new(kind: MessageKind, request_id: RequestId, max_frame_len: usize) -> Self {
        ChunkStream {
            kind,
            request_id,
            max_frame_len,
            next_index: 0,
            finished: false,
            sized: None,
        }
    }

    /// A stream for one message whose body is exactly `body_len` bytes;
    /// its last chunk goes out when [`write`](Self::write) is told `last`,
    /// and a body that ends short of `body_len` or runs past it is an error.
    pub fn sized(
        kind: MessageKind,
        request_id: RequestId,
        max_frame_len: usize,
        body_len: u64,
    ) -> Self {
        ChunkStream {
            sized: Some(Sized {
                declared: body_len,
                received: 0,
                layout: None,
                meta: None,
                held: BytesMut::new(),
            }),
            ..ChunkStream::new(kind, request_id, max_frame_len)
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
        if self.sized.is_some() {
            return self.write_sized(meta, body, last, out);
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
                    // Without `chunk_tot` only the 1-byte form ends a
                    // message at the reference.
                    final_marker: is_last.then_some(FinalMarker::Byte),
                }),
                meta: meta.take(),
                body: (!piece.is_empty()).then_some(piece),
            };
            out.extend([encode_raw(&frame, self.max_frame_len as u64)?]);
            self.next_index = next(self.next_index)?;
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

    fn write_sized(
        &mut self,
        meta: Option<(u8, &[u8])>,
        body: &[u8],
        last: bool,
        out: &mut impl Extend<Bytes>,
    ) -> Result<(), EncodeError> {
        let Some(s) = self.sized.as_mut() else {
            return Ok(());
        };
        if let Some((tag, json)) = meta {
            s.meta = Some((tag, json.to_vec()));
        }
        let layout = match s.layout {
            Some(l) => l,
            None => {
                let l = Layout::new(
                    self.max_frame_len,
                    self.request_id.as_str().len(),
                    s.meta.as_ref().map(|(_, json)| json.len()),
                    s.declared,
                )?;
                s.layout = Some(l);
                l
            }
        };
        s.received += body.len() as u64;
        let mismatch = EncodeError::LengthMismatch {
            declared: s.declared,
            got: s.received,
        };
        if s.received > s.declared || (last && s.received != s.declared) {
            self.finished = true;
            return Err(mismatch);
        }
        s.held.extend_from_slice(body);
        loop {
            let Some(s) = self.sized.as_mut() else {
                return Ok(());
            };
            let index = self.next_index;
            let is_last = index + 1 >= layout.total;
            let take = if is_last {
                if !last {
                    return Ok(());
                }
                s.held.len()
            } else {
                let room = layout.room(index);
                if s.held.len() < room {
                    return Ok(());
                }
                room
            };
            let piece = s.held.split_to(take);
            let meta = s.meta.take();
            let frame = RawFrame {
                kind: self.kind,
                request_id: self.request_id.as_str(),
                chunk: Some(ChunkInfo {
                    index,
                    total: Some(layout.total),
                    final_marker: is_last.then_some(counted_final_marker(self.kind)),
                }),
                meta: meta.as_ref().map(|(tag, json)| (*tag, json.as_slice())),
                body: (!piece.is_empty()).then_some(&piece[..]),
            };
            out.extend([encode_raw(&frame, self.max_frame_len as u64)?]);
            self.next_index = next(self.next_index)?;
            if is_last {
                self.finished = true;
                self.sized = None;
                return Ok(());
            }
        }
    }
}

/// The index after `index`; no chunk can follow index `u32::MAX`.
fn next(index: u32) -> Result<u32, EncodeError> {
    index.checked_add(1).ok_or(EncodeError::TooLarge {
        len: u64::from(u32::MAX) + 1,
        max: u64::from(u32::MAX),
    })
}
