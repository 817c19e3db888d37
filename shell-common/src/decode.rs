//! The frame decoder behind `anpx decode` and the admin plane's request
//! inspector: turns ANPX frames (hex lines or a binary stream) into JSON
//! lines, one per frame, so captured traffic and test vectors can be
//! inspected with `jq`.
//!
//! Output lines, one JSON object each:
//! - a decoded frame: `{"frame", "type", "flags", "request_id", "chunk",
//!   "meta", "body_len", "body_sha256", "body_text"?}`;
//! - a decoded extension frame (docs/PROTOCOL.md): `{"frame", "type":
//!   "window_update", "flags", "request_id", "window_increment"}` or
//!   `{"frame", "type": "cancel", "flags", "request_id", "reason"}`;
//! - a frame that did not decode: `{"frame", "line" | "offset", "error",
//!   "message"}`, where `error` is a stable snake_case kind;
//! - with [`DecodeOptions::reassemble`] (`--reassemble`), `{"message":
//!   {...}}` when a chunked message completes and `{"reassembly_error":
//!   {...}}` when its chunks are wrong or the input ends before it
//!   completes.
//!
//! Frames are numbered from 1 in input order, bad ones included.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::time::Instant;

use anpx_core::chunk::{ChunkError, MessageCollector, ReassemblyLimits};
use anpx_core::frame::{ChunkInfo, ExtFrame, Frame, FrameError, FrameLimits, Meta, HEADER_LEN};
use anpx_core::{Head, HeaderList, Message, RequestHead, RequestId, ResponseHead};
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How to read the input and what to print (the flags of `anpx decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Raw binary frames back to back, split by each header's total_len,
    /// instead of hex lines.
    pub binary: bool,
    /// Also reassemble chunked messages and print a `message` line when
    /// one completes (or a `reassembly_error` line when the chunks are
    /// wrong).
    pub reassemble: bool,
    /// Largest frame accepted, header included, in bytes.
    pub max_frame_len: usize,
}

/// Bytes of a header up to and including `total_len`: enough to find where
/// the next frame of a binary stream starts.
const LEN_PREFIX: usize = 12;

/// Decodes every frame of `input` and writes the JSON lines to `output`.
///
/// Bad frames are reported in the output and counted in the [`Summary`];
/// only a failure to read or write is an `Err`.
pub fn run(
    options: &DecodeOptions,
    mut input: impl BufRead,
    output: impl Write,
) -> Result<Summary, DecodeError> {
    let mut decoder = Decoder {
        out: BufWriter::new(output),
        limits: FrameLimits {
            max_frame_len: options.max_frame_len,
        },
        summary: Summary::default(),
        reassembly: options.reassemble.then(Reassembly::default),
    };
    if options.binary {
        read_binary(&mut input, &mut decoder)?;
    } else {
        read_hex(&mut input, &mut decoder)?;
    }
    decoder.finish()
}

/// What a run found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames seen, bad ones included.
    pub frames: u64,
    /// Frames that did not decode (bad hex, truncated, or a [`FrameError`]).
    pub bad_frames: u64,
    /// Chunk sequences the reassembler refused, or left incomplete at the end.
    pub reassembly_errors: u64,
}

impl Summary {
    /// True when nothing was wrong with the input.
    pub fn is_clean(&self) -> bool {
        self.bad_frames == 0 && self.reassembly_errors == 0
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Reading the input failed.
    #[error("cannot read stdin at {at}")]
    Read {
        /// How far the input had been read.
        at: Position,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write stdout")]
    Write(#[source] io::Error),
}

/// Where in the input something was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A 1-based line number of hex input.
    Line(u64),
    /// A byte offset into binary input.
    Offset(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Offset(n) => write!(f, "byte offset {n}"),
        }
    }
}

/// Input that could not even be handed to the frame decoder.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A hex line that is not hex.
    #[error("not a hex frame: {0}")]
    BadHex(hex::FromHexError),
    /// Binary input ends inside a frame's first 12 bytes.
    #[error(
        "truncated frame: input ends {available} bytes into a frame header, before its total_len"
    )]
    TruncatedPrefix {
        /// Bytes that were left.
        available: usize,
    },
    /// Binary input ends before a frame's declared length.
    #[error("truncated frame: header says {declared} bytes, input ends after {available}")]
    Truncated {
        /// `total_len` from the header.
        declared: u32,
        /// Bytes that were left.
        available: usize,
    },
    /// A `total_len` shorter than the header itself: the frame boundaries of
    /// the rest of the input are lost.
    #[error("header total_len {0} is less than the 24-byte header, so the next frame cannot be found; rest of input ignored")]
    ShortTotalLen(u32),
    /// A binary frame larger than `--max-frame-len`; it is skipped unread.
    #[error("frame of {declared} bytes exceeds the maximum of {max}; skipped")]
    TooLarge {
        /// `total_len` from the header.
        declared: u32,
        /// The limit.
        max: usize,
    },
}

impl InputError {
    /// Short stable name for the `error` field.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::BadHex(_) => "bad_hex",
            InputError::TruncatedPrefix { .. } | InputError::Truncated { .. } => "truncated_frame",
            InputError::ShortTotalLen(_) => "bad_total_len",
            InputError::TooLarge { .. } => "too_large",
        }
    }
}

/// Short stable name of a frame error for the `error` field.
pub fn frame_error_kind(e: &FrameError) -> &'static str {
    match e {
        FrameError::TruncatedHeader { .. } => "truncated_header",
        FrameError::TooLarge { .. } => "too_large",
        FrameError::BadMagic(_) => "bad_magic",
        FrameError::UnsupportedVersion(_) => "unsupported_version",
        FrameError::HeaderCrc { .. } => "header_crc",
        FrameError::BodyCrc { .. } => "body_crc",
        FrameError::LengthMismatch { .. } => "length_mismatch",
        FrameError::UnknownMessageType(_) => "unknown_message_type",
        FrameError::TruncatedTlv { .. } => "truncated_tlv",
        FrameError::DuplicateTlv(_) => "duplicate_tlv",
        FrameError::InvalidField { .. } => "invalid_field",
        FrameError::MisplacedField { .. } => "misplaced_field",
        FrameError::BadMeta { .. } => "bad_meta",
        FrameError::MissingRequestId => "missing_request_id",
        FrameError::MissingMeta(_) => "missing_meta",
        FrameError::MissingChunkIndex => "missing_chunk_index",
        FrameError::UnexpectedChunkFields => "unexpected_chunk_fields",
        _ => "other",
    }
}

/// Short stable name of a reassembly error for the `error` field.
pub fn chunk_error_kind(e: &ChunkError) -> &'static str {
    match e {
        ChunkError::Gap { .. } => "gap",
        ChunkError::Duplicate { .. } => "duplicate",
        ChunkError::OutOfRange { .. } => "out_of_range",
        ChunkError::TotalChanged { .. } => "total_changed",
        ChunkError::KindChanged { .. } => "kind_changed",
        ChunkError::Interleaved { .. } => "interleaved",
        ChunkError::MissingMeta { .. } => "missing_meta",
        ChunkError::DuplicateMeta { .. } => "duplicate_meta",
        ChunkError::TooLarge { .. } => "too_large",
        ChunkError::TooManyPartials { .. } => "too_many_partials",
        _ => "other",
    }
}

fn read_hex(
    input: &mut impl BufRead,
    decoder: &mut Decoder<impl Write>,
) -> Result<(), DecodeError> {
    // Bytes rather than `String` lines: a stray non-UTF-8 line is bad input
    // to report and move past, not a reason to stop reading.
    let mut line = Vec::new();
    let mut line_no = 0;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|source| DecodeError::Read {
                at: Position::Line(line_no + 1),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() || text.starts_with(b"#") {
            continue;
        }
        let wire = hex::decode(text)
            .map(Bytes::from)
            .map_err(InputError::BadHex);
        decoder.item(Position::Line(line_no), wire)?;
    }
}

fn read_binary(
    input: &mut impl Read,
    decoder: &mut Decoder<impl Write>,
) -> Result<(), DecodeError> {
    let mut offset = 0u64;
    loop {
        let start = Position::Offset(offset);
        let read_err = |source| DecodeError::Read { at: start, source };
        let mut wire = Vec::with_capacity(LEN_PREFIX);
        let got = read_up_to(input, LEN_PREFIX as u64, &mut wire).map_err(read_err)?;
        if got == 0 {
            return Ok(());
        }
        if got < LEN_PREFIX {
            return decoder.item(start, Err(InputError::TruncatedPrefix { available: got }));
        }
        let declared = u32::from_be_bytes([wire[8], wire[9], wire[10], wire[11]]);
        let total = declared as usize;
        if total < HEADER_LEN {
            return decoder.item(start, Err(InputError::ShortTotalLen(declared)));
        }
        let rest = (total - LEN_PREFIX) as u64;
        if total > decoder.limits.max_frame_len {
            // Skip without buffering: the limit exists so that a length
            // from the input cannot size an allocation.
            let skipped = io::copy(&mut input.take(rest), &mut io::sink()).map_err(read_err)?;
            offset += LEN_PREFIX as u64 + skipped;
            let max = decoder.limits.max_frame_len;
            decoder.item(start, Err(InputError::TooLarge { declared, max }))?;
            if skipped < rest {
                return Ok(());
            }
            continue;
        }
        wire.reserve_exact(total - LEN_PREFIX);
        let got = read_up_to(input, rest, &mut wire).map_err(read_err)?;
        offset += (LEN_PREFIX + got) as u64;
        if wire.len() < total {
            let available = wire.len();
            return decoder.item(
                start,
                Err(InputError::Truncated {
                    declared,
                    available,
                }),
            );
        }
        decoder.item(start, Ok(Bytes::from(wire)))?;
    }
}

/// Appends up to `limit` bytes to `buf`, fewer only at the end of the input.
fn read_up_to(input: &mut impl Read, limit: u64, buf: &mut Vec<u8>) -> io::Result<usize> {
    input.take(limit).read_to_end(buf)
}

/// Chunked messages being put back together for `--reassemble`.
struct Reassembly {
    limits: ReassemblyLimits,
    collector: MessageCollector,
    /// Ids with chunks received and no end yet, to report at end of input.
    open: BTreeSet<RequestId>,
}

impl Default for Reassembly {
    fn default() -> Self {
        let limits = ReassemblyLimits::default();
        Reassembly {
            limits,
            collector: MessageCollector::new(limits),
            open: BTreeSet::new(),
        }
    }
}

struct Decoder<W: Write> {
    out: BufWriter<W>,
    limits: FrameLimits,
    summary: Summary,
    reassembly: Option<Reassembly>,
}

impl<W: Write> Decoder<W> {
    /// Reports one frame, or why there is none where one was expected.
    fn item(&mut self, at: Position, wire: Result<Bytes, InputError>) -> Result<(), DecodeError> {
        self.summary.frames += 1;
        let frame_no = self.summary.frames;
        let decoded = wire
            .map_err(|e| (e.kind(), e.to_string()))
            .and_then(|wire| {
                let frame = if ExtFrame::peek(&wire).is_some() {
                    ExtFrame::decode(wire.clone(), &self.limits).map(Decoded::Ext)
                } else {
                    Frame::decode(wire.clone(), &self.limits).map(Decoded::V1)
                };
                frame
                    .map(|frame| (frame, wire))
                    .map_err(|e| (frame_error_kind(&e), e.to_string()))
            });
        match decoded {
            Ok((Decoded::V1(frame), wire)) => {
                // The frame keeps only the chunk bit; show every flag bit as sent.
                let flags = wire[6];
                emit(&mut self.out, &FrameLine::new(frame_no, flags, &frame))?;
                self.reassemble(frame_no, frame)?;
            }
            // Extension frames carry no message part: nothing to reassemble.
            Ok((Decoded::Ext(frame), wire)) => {
                emit(&mut self.out, &ExtFrameLine::new(frame_no, wire[6], &frame))?;
            }
            Err((kind, message)) => {
                self.summary.bad_frames += 1;
                let (line, offset) = match at {
                    Position::Line(n) => (Some(n), None),
                    Position::Offset(n) => (None, Some(n)),
                };
                emit(
                    &mut self.out,
                    &ErrorLine {
                        frame: frame_no,
                        line,
                        offset,
                        error: kind,
                        message,
                    },
                )?;
            }
        }
        // One record at a time, so a live pipe shows each frame as it comes.
        self.out.flush().map_err(DecodeError::Write)
    }

    fn reassemble(&mut self, frame_no: u64, frame: Frame) -> Result<(), DecodeError> {
        let Some(r) = &mut self.reassembly else {
            return Ok(());
        };
        // The core never reads the clock; the shell hands it the time.
        let now = Instant::now();
        for id in r.collector.expire(now) {
            r.open.remove(&id);
            self.summary.reassembly_errors += 1;
            let message = format!(
                "no chunk for {} ms; partial message dropped",
                r.limits.stale_after.as_millis()
            );
            let err = ReassemblyError::new(Some(frame_no), &id, "stale", message);
            emit(&mut self.out, &err)?;
        }
        let chunked = frame.chunk.is_some();
        let id = frame.request_id.clone();
        match r.collector.push(now, frame) {
            Ok(None) => {
                r.open.insert(id);
            }
            Ok(Some(msg)) => {
                r.open.remove(&msg.request_id);
                // Unchunked messages are already on their frame's line.
                if chunked {
                    emit(&mut self.out, &MessageLine::new(&msg))?;
                }
            }
            Err(e) => {
                r.open.remove(e.request_id());
                self.summary.reassembly_errors += 1;
                let err = ReassemblyError::new(
                    Some(frame_no),
                    e.request_id(),
                    chunk_error_kind(&e),
                    e.to_string(),
                );
                emit(&mut self.out, &err)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Summary, DecodeError> {
        if let Some(r) = self.reassembly.take() {
            for id in &r.open {
                self.summary.reassembly_errors += 1;
                let message = "input ended before the message completed".to_owned();
                emit(
                    &mut self.out,
                    &ReassemblyError::new(None, id, "incomplete", message),
                )?;
            }
        }
        self.out.flush().map_err(DecodeError::Write)?;
        Ok(self.summary)
    }
}

fn emit(out: &mut impl Write, value: &impl Serialize) -> Result<(), DecodeError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(DecodeError::Write)
}

/// A frame of either family.
enum Decoded {
    V1(Frame),
    Ext(ExtFrame),
}

/// An extension frame (window update, cancel), named by its type.
#[derive(Serialize)]
struct ExtFrameLine<'a> {
    frame: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    flags: u8,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_increment: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl<'a> ExtFrameLine<'a> {
    fn new(frame_no: u64, flags: u8, frame: &'a ExtFrame) -> Self {
        let (kind, window_increment, reason) = match frame {
            ExtFrame::WindowUpdate { increment, .. } => ("window_update", Some(*increment), None),
            ExtFrame::Cancel { reason, .. } => ("cancel", None, Some(reason.as_str())),
        };
        ExtFrameLine {
            frame: frame_no,
            kind,
            flags,
            request_id: frame.request_id().as_str(),
            window_increment,
            reason,
        }
    }
}

#[derive(Serialize)]
struct FrameLine<'a> {
    frame: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    flags: u8,
    request_id: &'a str,
    chunk: Option<ChunkJson>,
    meta: Option<MetaJson<'a>>,
    #[serde(flatten)]
    body: BodyJson<'a>,
}

impl<'a> FrameLine<'a> {
    fn new(frame_no: u64, flags: u8, frame: &'a Frame) -> Self {
        FrameLine {
            frame: frame_no,
            kind: frame.kind.name(),
            flags,
            request_id: frame.request_id.as_str(),
            chunk: frame.chunk.map(ChunkJson::from),
            meta: frame.meta.as_ref().map(|m| match m {
                Meta::Request(h) => MetaJson::request(h),
                Meta::Response(h) => MetaJson::response(h),
            }),
            body: BodyJson::new(frame.body.as_deref().unwrap_or_default(), true),
        }
    }
}

#[derive(Serialize)]
struct ChunkJson {
    index: u32,
    total: Option<u32>,
    #[serde(rename = "final")]
    is_final: bool,
}

impl From<ChunkInfo> for ChunkJson {
    fn from(c: ChunkInfo) -> Self {
        ChunkJson {
            index: c.index,
            total: c.total,
            is_final: c.is_final(),
        }
    }
}

/// The typed head, not the wire JSON: the query stays one raw string and
/// headers stay a list, so repeats are visible.
#[derive(Serialize)]
#[serde(untagged)]
enum MetaJson<'a> {
    Request {
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: Vec<(&'a str, &'a str)>,
    },
    Response {
        status: u16,
        reason: &'a str,
        headers: Vec<(&'a str, &'a str)>,
    },
}

impl<'a> MetaJson<'a> {
    fn request(h: &'a RequestHead) -> Self {
        MetaJson::Request {
            method: &h.method,
            path: &h.path,
            query: &h.query,
            headers: pairs(&h.headers),
        }
    }

    fn response(h: &'a ResponseHead) -> Self {
        MetaJson::Response {
            status: h.status,
            reason: &h.reason,
            headers: pairs(&h.headers),
        }
    }

    fn from_head(head: &'a Head) -> Option<Self> {
        match head {
            Head::Request(h) => Some(MetaJson::request(h)),
            Head::Response(h) => Some(MetaJson::response(h)),
            Head::Error => None,
        }
    }
}

fn pairs(headers: &HeaderList) -> Vec<(&str, &str)> {
    headers.iter().collect()
}

#[derive(Serialize)]
struct BodyJson<'a> {
    body_len: usize,
    body_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_text: Option<&'a str>,
}

impl<'a> BodyJson<'a> {
    fn new(body: &'a [u8], with_text: bool) -> Self {
        BodyJson {
            body_len: body.len(),
            body_sha256: hex::encode(Sha256::digest(body)),
            body_text: if with_text {
                std::str::from_utf8(body).ok()
            } else {
                None
            },
        }
    }
}

#[derive(Serialize)]
struct ErrorLine {
    frame: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    error: &'static str,
    message: String,
}

#[derive(Serialize)]
struct MessageLine<'a> {
    message: MessageJson<'a>,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    request_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    meta: Option<MetaJson<'a>>,
    #[serde(flatten)]
    body: BodyJson<'a>,
}

impl<'a> MessageLine<'a> {
    fn new(msg: &'a Message) -> Self {
        MessageLine {
            message: MessageJson {
                request_id: msg.request_id.as_str(),
                kind: msg.head.kind().name(),
                meta: MetaJson::from_head(&msg.head),
                body: BodyJson::new(&msg.body, false),
            },
        }
    }
}

#[derive(Serialize)]
struct ReassemblyError<'a> {
    reassembly_error: ReassemblyErrorJson<'a>,
}

#[derive(Serialize)]
struct ReassemblyErrorJson<'a> {
    /// The frame that broke the sequence; absent for end-of-input reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<u64>,
    request_id: &'a str,
    error: &'static str,
    message: String,
}

impl<'a> ReassemblyError<'a> {
    fn new(frame: Option<u64>, id: &'a RequestId, error: &'static str, message: String) -> Self {
        ReassemblyError {
            reassembly_error: ReassemblyErrorJson {
                frame,
                request_id: id.as_str(),
                error,
                message,
            },
        }
    }
}
