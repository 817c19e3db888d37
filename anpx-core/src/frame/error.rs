//! Why a frame could not be decoded or encoded.

/// A received frame is malformed. Each variant names what is wrong, so a
/// gateway can log and count the reason before it drops the frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than 24 bytes: not even a header.
    #[error("truncated header: frame is {len} bytes, the header alone is 24")]
    TruncatedHeader {
        /// Bytes received.
        len: usize,
    },
    /// Larger than the configured maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The first four bytes are not `ANPX`.
    #[error("bad magic {0:02x?}, expected \"ANPX\"")]
    BadMagic([u8; 4]),
    /// A version other than 1.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The header CRC does not match bytes 0..12.
    #[error("header crc mismatch: declared {declared:#010x}, computed {actual:#010x}")]
    HeaderCrc {
        /// CRC carried by the frame.
        declared: u32,
        /// CRC of what arrived.
        actual: u32,
    },
    /// The body CRC does not match the TLV body.
    #[error("body crc mismatch: declared {declared:#010x}, computed {actual:#010x}")]
    BodyCrc {
        /// CRC carried by the frame.
        declared: u32,
        /// CRC of what arrived.
        actual: u32,
    },
    /// `total_len` differs from the WebSocket message length.
    #[error("length mismatch: header says {declared} bytes, message has {actual}")]
    LengthMismatch {
        /// `total_len` from the header.
        declared: u32,
        /// Bytes received.
        actual: usize,
    },
    /// A type byte other than 0x01, 0x02, 0xFF.
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// A TLV runs past the end of the body.
    #[error("truncated tlv at body offset {offset}: needs {needed} bytes, {available} left")]
    TruncatedTlv {
        /// Offset of the TLV within the body.
        offset: usize,
        /// Bytes the TLV claims to need.
        needed: u64,
        /// Bytes left in the body.
        available: usize,
    },
    /// The same tag appears twice where only one makes sense.
    #[error("duplicate tlv tag {0:#04x}")]
    DuplicateTlv(u8),
    /// A known tag whose value has the wrong size or content.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field name, e.g. `chunk_idx`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A meta TLV in a frame of the wrong type, e.g. `resp_meta` in a request.
    #[error("{field} is not allowed in a {kind} frame")]
    MisplacedField {
        /// Field name.
        field: &'static str,
        /// Frame type name.
        kind: &'static str,
    },
    /// Meta JSON that does not parse or has the wrong shape.
    #[error("bad {field} json: {source}")]
    BadMeta {
        /// `http_meta` or `resp_meta`.
        field: &'static str,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// No `request_id` TLV.
    #[error("missing request_id")]
    MissingRequestId,
    /// An unchunked request without `http_meta`, or response without `resp_meta`.
    #[error("missing {0}")]
    MissingMeta(&'static str),
    /// Flags say chunked but `chunk_idx` is absent.
    #[error("chunked frame without chunk_idx")]
    MissingChunkIndex,
    /// Chunk TLVs in a frame whose chunk flag is clear.
    #[error("chunk fields in a frame without the chunk flag")]
    UnexpectedChunkFields,
}

/// A message could not be turned into frames.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame would exceed the 4 GiB that `total_len` can express, or the
    /// configured maximum.
    #[error("encoded frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Size the frame would have.
        len: u64,
        /// The limit it exceeds.
        max: u64,
    },
    /// An unchunked request or response without its meta.
    #[error("an unchunked {0} frame needs its meta")]
    MissingMeta(&'static str),
    /// A meta of one message type in a frame of another.
    #[error("the meta does not match the {0} frame type")]
    MetaMismatch(&'static str),
    /// A body sent with its length announced (a Content-Length) ended before
    /// that length or ran past it.
    #[error("body of {got} bytes does not match its declared length of {declared}")]
    LengthMismatch {
        /// The announced length.
        declared: u64,
        /// Bytes received when the mismatch showed.
        got: u64,
    },
    /// The frame size limit leaves no room for a single body byte.
    #[error("max frame size {max} leaves no room for a body after {overhead} bytes of header and fields")]
    FrameSizeTooSmall {
        /// The configured frame size.
        max: usize,
        /// Bytes of header and fields a chunk needs.
        overhead: usize,
    },
}
