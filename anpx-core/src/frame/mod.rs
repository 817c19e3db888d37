//! One ANPX v1 frame: the 24-byte header and the TLV body, decoded without
//! copying the body and encoded byte-identically to the reference.

mod decode;
mod encode;
mod error;
mod ext;
mod header;
mod tlv;

pub use error::{EncodeError, FrameError};
pub(crate) use ext::body_len;
pub use ext::{ExtFrame, MAX_WINDOW, TAG_WINDOW_INCREMENT, TYPE_CANCEL, TYPE_WINDOW_UPDATE};
pub use header::{MessageKind, FLAG_CHUNKED, HEADER_LEN, MAGIC, VERSION};
pub use tlv::{tag, TLV_HEADER_LEN};

pub(crate) use encode::{encode_raw, RawFrame};

use bytes::Bytes;

use crate::message::{RequestHead, RequestId, ResponseHead};

/// Default largest frame accepted: the reference's receiver answers with one
/// unchunked frame whatever the size, so this is generous.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame accepted, header included.
    pub max_frame_len: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// How a last chunk was marked: the reference writes 4 bytes in requests and
/// 1 byte in responses; both mean the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalMarker {
    /// `final_chunk` = `01`.
    Byte,
    /// `final_chunk` = `00 00 00 01`.
    Word,
}

/// Where a chunk sits in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// 0-based index.
    pub index: u32,
    /// Total number of chunks, when the sender knew it.
    pub total: Option<u32>,
    /// Present on the last chunk.
    pub final_marker: Option<FinalMarker>,
}

impl ChunkInfo {
    /// True on the chunk that carries `final_chunk`.
    pub fn is_final(&self) -> bool {
        self.final_marker.is_some()
    }
}

/// The meta a frame may carry; it always matches the frame's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    /// `http_meta`, in a request frame.
    Request(RequestHead),
    /// `resp_meta`, in a response frame.
    Response(ResponseHead),
}

/// A decoded frame.
///
/// Decoding checks magic, version, both CRCs, lengths and every TLV, and
/// parses the meta JSON; the body is a slice of the received buffer.
///
/// ```
/// use anpx_core::frame::{Frame, FrameLimits, Meta, MessageKind};
/// use anpx_core::{RequestHead, RequestId};
///
/// let frame = Frame {
///     kind: MessageKind::Request,
///     request_id: RequestId::from("r-1"),
///     chunk: None,
///     meta: Some(Meta::Request(RequestHead::new("GET", "/hello"))),
///     body: None,
/// };
/// let wire = frame.encode().unwrap();
/// assert_eq!(&wire[..4], b"ANPX");
/// assert_eq!(Frame::decode(wire, &FrameLimits::default()).unwrap(), frame);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request, response or error.
    pub kind: MessageKind,
    /// The request this frame belongs to.
    pub request_id: RequestId,
    /// Set when the frame is one chunk of a larger message.
    pub chunk: Option<ChunkInfo>,
    /// The head, when this frame carries it.
    pub meta: Option<Meta>,
    /// The body bytes this frame carries; `None` when it has no `http_body` TLV.
    pub body: Option<Bytes>,
}

impl Frame {
    /// Decodes one WebSocket binary message.
    pub fn decode(wire: Bytes, limits: &FrameLimits) -> Result<Frame, FrameError> {
        decode::decode(wire, limits)
    }

    /// Encodes the frame, meta JSON written as the reference writes it.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let meta_json = match &self.meta {
            None => None,
            Some(Meta::Request(h)) => Some((tag::HTTP_META, h.to_meta_json())),
            Some(Meta::Response(h)) => Some((tag::RESP_META, h.to_meta_json())),
        };
        let meta_kind = match &self.meta {
            None => None,
            Some(Meta::Request(_)) => Some(MessageKind::Request),
            Some(Meta::Response(_)) => Some(MessageKind::Response),
        };
        if meta_kind.is_some_and(|k| k != self.kind) {
            return Err(EncodeError::MetaMismatch(self.kind.name()));
        }
        if self.chunk.is_none() && self.meta.is_none() && self.kind != MessageKind::Error {
            return Err(EncodeError::MissingMeta(self.kind.name()));
        }
        encode_raw(
            &RawFrame {
                kind: self.kind,
                request_id: self.request_id.as_str(),
                chunk: self.chunk,
                meta: meta_json.as_ref().map(|(t, j)| (*t, j.as_slice())),
                body: self.body.as_deref(),
            },
            u32::MAX as u64,
        )
    }
}
