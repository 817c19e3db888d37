//! Extension frames: message types beyond v1's request, response and error,
//! sent only to a peer that negotiated them (`flow-control`, `cancel`; see
//! docs/PROTOCOL.md). They share v1's 24-byte header and TLV body, so every
//! check of a v1 frame (magic, version, CRCs, lengths) applies to them too.
//!
//! ```
//! use anpx_core::frame::{ExtFrame, FrameLimits};
//! use anpx_core::RequestId;
//!
//! let update = ExtFrame::WindowUpdate { request_id: RequestId::from("r-1"), increment: 65536 };
//! let wire = update.encode();
//! assert_eq!(wire[5], 0x10);
//! assert_eq!(ExtFrame::peek(&wire), Some(0x10));
//! assert_eq!(ExtFrame::decode(wire, &FrameLimits::default()).unwrap(), update);
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::error::FrameError;
use super::header::{be_u32, check_lengths, check_prefix, HEADER_LEN, MAGIC, VERSION};
use super::tlv::{tag, TlvReader, TLV_HEADER_LEN};
use crate::message::RequestId;

/// Type byte of a window update (`flow-control`).
pub const TYPE_WINDOW_UPDATE: u8 = 0x10;
/// Type byte of a cancel (`cancel`).
pub const TYPE_CANCEL: u8 = 0x11;
/// TLV tag of a window update's increment: u32, big-endian.
pub const TAG_WINDOW_INCREMENT: u8 = 0xF0;
/// Largest window a peer may have open for one message, as in HTTP/2.
pub const MAX_WINDOW: u64 = (1 << 31) - 1;

/// A decoded extension frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtFrame {
    /// The sender may take `increment` more body bytes of `request_id`'s
    /// message flowing towards it.
    WindowUpdate {
        /// The request.
        request_id: RequestId,
        /// Bytes added to the window, `1..=2^31-1`.
        increment: u32,
    },
    /// Gateway → receiver: abandon the request (the public client went
    /// away, or the gateway gave up on it).
    Cancel {
        /// The request.
        request_id: RequestId,
        /// Why, for logs; may be empty.
        reason: String,
    },
}

impl ExtFrame {
    /// The extension type byte of a message, when it is one (a frame whose
    /// header is otherwise unchecked); `None` for v1 types and non-frames.
    pub fn peek(wire: &[u8]) -> Option<u8> {
        match wire.get(5) {
            Some(&t @ (TYPE_WINDOW_UPDATE | TYPE_CANCEL)) if wire.starts_with(&MAGIC) => Some(t),
            _ => None,
        }
    }

    /// The request the frame is about.
    pub fn request_id(&self) -> &RequestId {
        match self {
            ExtFrame::WindowUpdate { request_id, .. } | ExtFrame::Cancel { request_id, .. } => {
                request_id
            }
        }
    }

    /// Decodes one WebSocket binary message holding an extension frame.
    pub fn decode(wire: Bytes, limits: &super::FrameLimits) -> Result<ExtFrame, FrameError> {
        check_prefix(&wire, limits.max_frame_len)?;
        let kind = wire[5];
        if kind != TYPE_WINDOW_UPDATE && kind != TYPE_CANCEL {
            return Err(FrameError::UnknownMessageType(kind));
        }
        let (flags, _, body_crc) = check_lengths(&wire)?;
        if flags != 0 {
            return Err(FrameError::InvalidField {
                field: "flags",
                reason: format!("{flags:#04x} in an extension frame, expected 0"),
            });
        }
        let body = wire.slice(HEADER_LEN..);
        let actual = crc32fast::hash(&body);
        if actual != body_crc {
            return Err(FrameError::BodyCrc {
                declared: body_crc,
                actual,
            });
        }
        let (mut id, mut increment, mut reason) = (None, None, None);
        for tlv in TlvReader::new(body) {
            let (t, value, _) = tlv?;
            let slot = match t {
                tag::REQUEST_ID => &mut id,
                TAG_WINDOW_INCREMENT if kind == TYPE_WINDOW_UPDATE => &mut increment,
                tag::HTTP_BODY if kind == TYPE_CANCEL => &mut reason,
                // Unknown tags are skipped, as in v1 frames.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(FrameError::DuplicateTlv(t));
            }
        }
        let request_id = match id {
            None => return Err(FrameError::MissingRequestId),
            Some(raw) if raw.is_empty() => return Err(invalid("request_id", "empty".into())),
            Some(raw) => {
                RequestId::from_utf8(raw).map_err(|e| invalid("request_id", e.to_string()))?
            }
        };
        if kind == TYPE_CANCEL {
            let reason = reason
                .map(|r| String::from_utf8_lossy(&r).into_owned())
                .unwrap_or_default();
            return Ok(ExtFrame::Cancel { request_id, reason });
        }
        let raw = increment.ok_or_else(|| invalid("window_increment", "missing".into()))?;
        if raw.len() != 4 {
            return Err(invalid(
                "window_increment",
                format!("{} bytes, expected 4", raw.len()),
            ));
        }
        let increment = be_u32(&raw);
        if increment == 0 || u64::from(increment) > MAX_WINDOW {
            return Err(invalid(
                "window_increment",
                format!("{increment}, expected 1..=2147483647"),
            ));
        }
        Ok(ExtFrame::WindowUpdate {
            request_id,
            increment,
        })
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Bytes {
        let mut tlvs: Vec<(u8, &[u8])> =
            vec![(tag::REQUEST_ID, self.request_id().as_str().as_bytes())];
        let increment;
        let kind = match self {
            ExtFrame::WindowUpdate { increment: n, .. } => {
                increment = n.to_be_bytes();
                tlvs.push((TAG_WINDOW_INCREMENT, &increment));
                TYPE_WINDOW_UPDATE
            }
            ExtFrame::Cancel { reason, .. } => {
                if !reason.is_empty() {
                    tlvs.push((tag::HTTP_BODY, reason.as_bytes()));
                }
                TYPE_CANCEL
            }
        };
        let len = HEADER_LEN
            + tlvs
                .iter()
                .map(|(_, v)| TLV_HEADER_LEN + v.len())
                .sum::<usize>();
        let mut buf = BytesMut::with_capacity(len);
        buf.put_slice(&MAGIC);
        buf.put_u8(VERSION);
        buf.put_u8(kind);
        buf.put_u8(0);
        buf.put_u8(0);
        buf.put_u32(len as u32);
        let header_crc = crc32fast::hash(&buf[..12]);
        buf.put_u32(header_crc);
        buf.put_u32(0); // body CRC, filled below
        buf.put_u32(0);
        for (t, v) in &tlvs {
            buf.put_u8(*t);
            buf.put_u32(v.len() as u32);
            buf.put_slice(v);
        }
        let body_crc = crc32fast::hash(&buf[HEADER_LEN..]);
        buf[16..20].copy_from_slice(&body_crc.to_be_bytes());
        buf.freeze()
    }
}

fn invalid(field: &'static str, reason: String) -> FrameError {
    FrameError::InvalidField { field, reason }
}

/// Bytes of `http_body` in an encoded frame this crate produced (0 when it
/// has none): what the frame costs against a flow-control window.
pub(crate) fn body_len(wire: &[u8]) -> u64 {
    let mut pos = HEADER_LEN;
    while pos + TLV_HEADER_LEN <= wire.len() {
        let len = be_u32(&wire[pos + 1..pos + TLV_HEADER_LEN]) as usize;
        if wire[pos] == tag::HTTP_BODY {
            return len as u64;
        }
        pos += TLV_HEADER_LEN + len;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, FrameLimits};

    fn limits() -> FrameLimits {
        FrameLimits::default()
    }

    #[test]
    fn round_trips() {
        for f in [
            ExtFrame::WindowUpdate {
                request_id: "r-1".into(),
                increment: 1,
            },
            ExtFrame::WindowUpdate {
                request_id: "r-2".into(),
                increment: MAX_WINDOW as u32,
            },
            ExtFrame::Cancel {
                request_id: "r-3".into(),
                reason: String::new(),
            },
            ExtFrame::Cancel {
                request_id: "r-4".into(),
                reason: "client went away".into(),
            },
        ] {
            let wire = f.encode();
            assert_eq!(ExtFrame::peek(&wire), Some(wire[5]));
            assert_eq!(ExtFrame::decode(wire.clone(), &limits()).unwrap(), f);
            // A v1 decoder refuses them: they must never reach a reference peer.
            assert!(matches!(
                Frame::decode(wire, &limits()),
                Err(FrameError::UnknownMessageType(0x10 | 0x11))
            ));
        }
    }

    #[test]
    fn exact_bytes_of_a_window_update() {
        let wire = ExtFrame::WindowUpdate {
            request_id: "ab".into(),
            increment: 0x0102_0304,
        }
        .encode();
        assert_eq!(&wire[..12], b"ANPX\x01\x10\x00\x00\x00\x00\x00\x28");
        assert_eq!(
            &wire[24..],
            &[1, 0, 0, 0, 2, b'a', b'b', 0xF0, 0, 0, 0, 4, 1, 2, 3, 4]
        );
        assert_eq!(&wire[20..24], &[0; 4]);
        assert_eq!(
            u32::from_be_bytes(wire[16..20].try_into().unwrap()),
            crc32fast::hash(&wire[24..])
        );
    }

    /// Re-encodes `tlvs` under a valid header of type `kind` and `flags`.
    fn raw(kind: u8, flags: u8, tlvs: &[(u8, &[u8])]) -> Bytes {
        let mut body = Vec::new();
        for (t, v) in tlvs {
            body.push(*t);
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
        }
        let mut w = Vec::new();
        w.extend_from_slice(b"ANPX\x01");
        w.extend_from_slice(&[kind, flags, 0]);
        w.extend_from_slice(&((24 + body.len()) as u32).to_be_bytes());
        let hcrc = crc32fast::hash(&w[..12]);
        w.extend_from_slice(&hcrc.to_be_bytes());
        w.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        w.extend_from_slice(&[0; 4]);
        w.extend_from_slice(&body);
        w.into()
    }

    #[test]
    fn refuses_malformed_ones() {
        let id: (u8, &[u8]) = (1, b"r");
        let cases: Vec<(Bytes, &str)> = vec![
            (raw(0x10, 0, &[id]), "window_increment: missing"),
            (
                raw(0x10, 0, &[id, (0xF0, &[0, 0, 0, 0])]),
                "window_increment: 0",
            ),
            (raw(0x10, 0, &[id, (0xF0, &[0x80, 0, 0, 0])]), "2147483648"),
            (raw(0x10, 0, &[id, (0xF0, &[0, 1])]), "2 bytes"),
            (raw(0x10, 0, &[(0xF0, &[0, 0, 0, 1])]), "missing request_id"),
            (raw(0x10, 0, &[(1, b""), (0xF0, &[0, 0, 0, 1])]), "empty"),
            (raw(0x10, 1, &[id, (0xF0, &[0, 0, 0, 1])]), "flags"),
            (raw(0x11, 0, &[id, id]), "duplicate"),
            (raw(0x12, 0, &[id]), "unknown message type"),
        ];
        for (wire, want) in cases {
            let err = ExtFrame::decode(wire, &limits()).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        // Unknown tags are skipped.
        let ok = raw(0x11, 0, &[id, (0xF7, b"future")]);
        assert_eq!(
            ExtFrame::decode(ok, &limits()).unwrap(),
            ExtFrame::Cancel {
                request_id: "r".into(),
                reason: String::new()
            }
        );
        let mut bad_crc = raw(0x11, 0, &[id]).to_vec();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(matches!(
            ExtFrame::decode(bad_crc.into(), &limits()),
            Err(FrameError::BodyCrc { .. })
        ));
        assert_eq!(ExtFrame::peek(b"ANPX\x01\x01"), None);
        assert_eq!(ExtFrame::peek(b"XNPX\x01\x10"), None);
    }

    #[test]
    fn body_len_counts_http_body_only() {
        let f = Frame {
            kind: crate::frame::MessageKind::Error,
            request_id: "r".into(),
            chunk: None,
            meta: None,
            body: Some(Bytes::from_static(b"12345")),
        };
        assert_eq!(body_len(&f.encode().unwrap()), 5);
        let none = ExtFrame::Cancel {
            request_id: "r".into(),
            reason: String::new(),
        };
        assert_eq!(body_len(&none.encode()), 0);
    }
}
