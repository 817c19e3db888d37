//! The fixed 24-byte ANPX v1 frame header.

use super::error::FrameError;

/// ASCII `ANPX`, the first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"ANPX";
/// The only protocol version this codec speaks.
pub const VERSION: u8 = 0x01;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// Flag bit 0: the frame is one chunk of a larger message.
pub const FLAG_CHUNKED: u8 = 0x01;

/// What a frame carries. The type byte at offset 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `0x01`: an HTTP request, gateway → receiver.
    Request,
    /// `0x02`: an HTTP response, receiver → gateway.
    Response,
    /// `0xFF`: an error about a request, either way.
    Error,
}

impl MessageKind {
    /// The wire value of this kind.
    pub const fn to_byte(self) -> u8 {
        match self {
            MessageKind::Request => 0x01,
            MessageKind::Response => 0x02,
            MessageKind::Error => 0xFF,
        }
    }

    /// Parses the wire value; unknown values are refused rather than guessed.
    pub const fn from_byte(b: u8) -> Result<Self, FrameError> {
        match b {
            0x01 => Ok(MessageKind::Request),
            0x02 => Ok(MessageKind::Response),
            0xFF => Ok(MessageKind::Error),
            other => Err(FrameError::UnknownMessageType(other)),
        }
    }

    /// Lower-case name, as the `anpx decode` inspector prints it.
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Request => "http_request",
            MessageKind::Response => "http_response",
            MessageKind::Error => "error",
        }
    }
}

/// The header fields that carry information; magic, version, CRCs and
/// padding are checked on decode and recomputed on encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub kind: MessageKind,
    pub flags: u8,
    pub total_len: u32,
    pub body_crc: u32,
}

impl FixedHeader {
    /// Validates the header of `frame` (the whole WebSocket message).
    ///
    /// Checks run cheapest-first and before anything is sized by a length
    /// from the wire, so a hostile peer cannot make us allocate or hash much.
    pub(crate) fn parse(frame: &[u8], max_frame_len: usize) -> Result<Self, FrameError> {
        check_prefix(frame, max_frame_len)?;
        let kind = MessageKind::from_byte(frame[5])?;
        let (flags, total_len, body_crc) = check_lengths(frame)?;
        Ok(FixedHeader {
            kind,
            flags,
            total_len,
            body_crc,
        })
    }

    /// Writes the 24 header bytes for a body whose CRC is already known.
    pub(crate) fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.kind.to_byte();
        out[6] = self.flags;
        out[7] = 0;
        out[8..12].copy_from_slice(&self.total_len.to_be_bytes());
        let header_crc = crc32fast::hash(&out[0..12]);
        out[12..16].copy_from_slice(&header_crc.to_be_bytes());
        out[16..20].copy_from_slice(&self.body_crc.to_be_bytes());
        out[20..24].copy_from_slice(&[0; 4]);
    }
}

/// The checks before the type byte, cheapest first and before anything is
/// sized by a length from the wire: size, magic, header CRC, version.
pub(crate) fn check_prefix(frame: &[u8], max_frame_len: usize) -> Result<(), FrameError> {
    if frame.len() < HEADER_LEN {
        return Err(FrameError::TruncatedHeader { len: frame.len() });
    }
    if frame.len() > max_frame_len {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            max: max_frame_len,
        });
    }
    if frame[0..4] != MAGIC {
        return Err(FrameError::BadMagic([
            frame[0], frame[1], frame[2], frame[3],
        ]));
    }
    let declared_header_crc = be_u32(&frame[12..16]);
    let actual_header_crc = crc32fast::hash(&frame[0..12]);
    if declared_header_crc != actual_header_crc {
        return Err(FrameError::HeaderCrc {
            declared: declared_header_crc,
            actual: actual_header_crc,
        });
    }
    if frame[4] != VERSION {
        return Err(FrameError::UnsupportedVersion(frame[4]));
    }
    Ok(())
}

/// The checks after the type byte, shared with extension frames: flags,
/// `total_len` against the message length, and the declared body CRC.
pub(crate) fn check_lengths(frame: &[u8]) -> Result<(u8, u32, u32), FrameError> {
    let total_len = be_u32(&frame[8..12]);
    if total_len as usize != frame.len() {
        return Err(FrameError::LengthMismatch {
            declared: total_len,
            actual: frame.len(),
        });
    }
    Ok((frame[6], total_len, be_u32(&frame[16..20])))
}

pub(crate) fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
