//! Bytes → [`Frame`].

use bytes::Bytes;

use super::error::FrameError;
use super::header::{be_u32, FixedHeader, MessageKind, FLAG_CHUNKED, HEADER_LEN};
use super::tlv::{tag, TlvReader};
use super::{ChunkInfo, FinalMarker, Frame, FrameLimits, Meta};
use crate::message::{RequestHead, RequestId, ResponseHead};

/// The TLVs of one frame, before their values are interpreted.
#[derive(Default)]
struct Fields {
    request_id: Option<Bytes>,
    http_meta: Option<Bytes>,
    resp_meta: Option<Bytes>,
    body: Option<Bytes>,
    chunk_idx: Option<Bytes>,
    chunk_tot: Option<Bytes>,
    final_chunk: Option<Bytes>,
}

fn set_once(slot: &mut Option<Bytes>, tag: u8, value: Bytes) -> Result<(), FrameError> {
    if slot.replace(value).is_some() {
        return Err(FrameError::DuplicateTlv(tag));
    }
    Ok(())
}

pub(super) fn decode(wire: Bytes, limits: &FrameLimits) -> Result<Frame, FrameError> {
    let header = FixedHeader::parse(&wire, limits.max_frame_len)?;
    let body = wire.slice(HEADER_LEN..);
    let actual = crc32fast::hash(&body);
    if actual != header.body_crc {
        return Err(FrameError::BodyCrc {
            declared: header.body_crc,
            actual,
        });
    }

    let mut f = Fields::default();
    for tlv in TlvReader::new(body) {
        let (t, value, _offset) = tlv?;
        let slot = match t {
            tag::REQUEST_ID => &mut f.request_id,
            tag::HTTP_META => &mut f.http_meta,
            tag::RESP_META => &mut f.resp_meta,
            tag::HTTP_BODY => &mut f.body,
            tag::CHUNK_IDX => &mut f.chunk_idx,
            tag::CHUNK_TOT => &mut f.chunk_tot,
            tag::FINAL_CHUNK => &mut f.final_chunk,
            // The spec says unknown tags are skipped (the reference's own
            // decoder rejects them; we follow the spec).
            _ => continue,
        };
        set_once(slot, t, value)?;
    }

    let kind = header.kind;
    let request_id = match f.request_id {
        None => return Err(FrameError::MissingRequestId),
        Some(raw) if raw.is_empty() => return Err(invalid("request_id", "empty")),
        Some(raw) => RequestId::from_utf8(raw).map_err(|e| invalid("request_id", e.to_string()))?,
    };
    let chunk = chunk_info(header.flags, f.chunk_idx, f.chunk_tot, f.final_chunk)?;
    let meta = meta(kind, f.http_meta, f.resp_meta)?;
    if chunk.is_none() && meta.is_none() {
        match kind {
            MessageKind::Request => return Err(FrameError::MissingMeta("http_meta")),
            MessageKind::Response => return Err(FrameError::MissingMeta("resp_meta")),
            MessageKind::Error => {}
        }
    }
    Ok(Frame {
        kind,
        request_id,
        chunk,
        meta,
        body: f.body,
    })
}

fn invalid(field: &'static str, reason: impl Into<String>) -> FrameError {
    FrameError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn u32_field(field: &'static str, value: &[u8]) -> Result<u32, FrameError> {
    if value.len() != 4 {
        return Err(invalid(field, format!("{} bytes, expected 4", value.len())));
    }
    Ok(be_u32(value))
}

fn chunk_info(
    flags: u8,
    idx: Option<Bytes>,
    tot: Option<Bytes>,
    fin: Option<Bytes>,
) -> Result<Option<ChunkInfo>, FrameError> {
    if flags & FLAG_CHUNKED == 0 {
        if idx.is_some() || tot.is_some() || fin.is_some() {
            return Err(FrameError::UnexpectedChunkFields);
        }
        return Ok(None);
    }
    let index = u32_field("chunk_idx", &idx.ok_or(FrameError::MissingChunkIndex)?)?;
    let total = tot.map(|t| u32_field("chunk_tot", &t)).transpose()?;
    if total == Some(0) {
        return Err(invalid("chunk_tot", "zero chunks"));
    }
    let final_marker = match fin.as_deref() {
        None => None,
        Some([1]) => Some(FinalMarker::Byte),
        Some([0, 0, 0, 1]) => Some(FinalMarker::Word),
        Some(other) => {
            return Err(invalid(
                "final_chunk",
                format!("{other:02x?}, expected 01 or 00000001"),
            ))
        }
    };
    Ok(Some(ChunkInfo {
        index,
        total,
        final_marker,
    }))
}

fn meta(
    kind: MessageKind,
    http_meta: Option<Bytes>,
    resp_meta: Option<Bytes>,
) -> Result<Option<Meta>, FrameError> {
    let misplaced = |field| FrameError::MisplacedField {
        field,
        kind: kind.name(),
    };
    match kind {
        MessageKind::Request if resp_meta.is_some() => Err(misplaced("resp_meta")),
        MessageKind::Response if http_meta.is_some() => Err(misplaced("http_meta")),
        MessageKind::Error if http_meta.is_some() => Err(misplaced("http_meta")),
        MessageKind::Error if resp_meta.is_some() => Err(misplaced("resp_meta")),
        MessageKind::Request => http_meta
            .map(|json| {
                RequestHead::from_meta_json(&json)
                    .map(Meta::Request)
                    .map_err(|source| FrameError::BadMeta {
                        field: "http_meta",
                        source,
                    })
            })
            .transpose(),
        MessageKind::Response => resp_meta
            .map(|json| {
                ResponseHead::from_meta_json(&json)
                    .map(Meta::Response)
                    .map_err(|source| FrameError::BadMeta {
                        field: "resp_meta",
                        source,
                    })
            })
            .transpose(),
        MessageKind::Error => Ok(None),
    }
}
