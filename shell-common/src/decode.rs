//! `anpx decode`: turns ANPX frames read from stdin into JSON lines, one per
//! frame, so captured traffic and test vectors can be inspected with `jq`.
//!
//! Output lines, one JSON object each:
//! - a decoded frame: `{"frame", "type", "flags", "request_id", "chunk",
//!   "meta", "body_len", "body_sha256", "body_text"?}`;
//! - a decoded extension frame (docs/PROTOCOL.md): `{"frame", "type":
//!   "window_update", "flags", "request_id", "window_increment"}` or
//!   `{"frame", "type": "cancel", "flags", "request_id", "reason"}`;
//! - a frame that did not decode: `{"frame", "line" | "offset", "error",
//!   "message"}`, where `error` is a stable snake_case kind;
//! - with `--reassemble`, `{"message": {...}}` when a chunked message
//!   completes and `{"reassembly_error": {...}}` when its chunks are wrong
//!   or the input ends before it completes.
//!
//! Frames are numbered from 1 in input order, bad ones included.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use anpx_core::chunk::{ChunkError, MessageCollector, ReassemblyLimits};
use anpx_core::frame::{ChunkInfo, ExtFrame, Frame, FrameError, FrameLimits, Meta, HEADER_LEN};
use anpx_core::{Head, HeaderList, Message, RequestHead, RequestId, ResponseHead};
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use anpx_core::cli::DecodeArgs;

/// Exit status when some frame (or, with `--reassemble`, some message) was bad.
const EXIT_BAD_INPUT: u8 = 1;
/// Exit status when stdin or stdout failed: a runtime failure too (2 is
/// for usage errors, see [`crate::process::EXIT_USAGE`]).
const EXIT_IO: u8 = crate::process::EXIT_FAILURE;

/// Bytes of a header up to and including `total_len`: enough to find where
/// the next frame of a binary stream starts.
const LEN_PREFIX: usize = 12;

/// Runs `anpx decode` on the process's stdin and stdout.
pub fn main(args: &DecodeArgs) -> ExitCode {
    match run(args, io::stdin().lock(), io::stdout().lock()) {
        Ok(summary) if summary.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_BAD_INPUT),
        // The reader of our output went away (`anpx decode | head`): there is
        // nobody left to tell, but the output is incomplete all the same.
        Err(DecodeError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_IO)
        }
        Err(e) => {
            eprintln!("anpx decode: {}", error_chain(&e));
            ExitCode::from(EXIT_IO)
        }
    }
}

/// Decodes every frame of `input` and writes the JSON lines to `output`.
///
/// Bad frames are reported in the output and counted in the [`Summary`];
/// only a failure to read or write is an `Err`.
pub fn run(
    args: &DecodeArgs,
    mut input: impl BufRead,
    output: impl Write,
) -> Result<Summary, DecodeError> {
    let mut decoder = Decoder {
        out: BufWriter::new(output),
        limits: FrameLimits {
            max_frame_len: args.max_frame_len,
        },
        summary: Summary::default(),
        reassembly: args.reassemble.then(Reassembly::default),
    };
    if args.binary {
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

fn error_chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::chunk::Chunker;
    use anpx_core::frame::MessageKind;
    use anpx_core::frame::DEFAULT_MAX_FRAME_LEN;
    use serde_json::Value;

    fn args(binary: bool, reassemble: bool) -> DecodeArgs {
        DecodeArgs {
            binary,
            reassemble,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }

    fn decode(args: &DecodeArgs, input: &[u8]) -> (Summary, Vec<Value>) {
        let mut out = Vec::new();
        let summary = run(args, input, &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (summary, lines)
    }

    fn response(body: &[u8]) -> Bytes {
        Frame {
            kind: MessageKind::Response,
            request_id: RequestId::from("r-1"),
            chunk: None,
            meta: Some(Meta::Response(
                ResponseHead::new(200)
                    .with_header("set-cookie", "a=1")
                    .with_header("set-cookie", "b=2"),
            )),
            body: Some(Bytes::copy_from_slice(body)),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn hex_line_prints_typed_meta_and_body() {
        let input = format!("# a comment\n\n  {}  \r\n", hex::encode(response(b"hi")));
        let (summary, lines) = decode(&args(false, false), input.as_bytes());
        assert!(summary.is_clean());
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["frame"], 1);
        assert_eq!(l["type"], "http_response");
        assert_eq!(l["flags"], 0);
        assert_eq!(l["chunk"], Value::Null);
        assert_eq!(l["meta"]["status"], 200);
        assert_eq!(
            l["meta"]["headers"],
            serde_json::json!([["set-cookie", "a=1"], ["set-cookie", "b=2"]])
        );
        assert_eq!(l["body_len"], 2);
        assert_eq!(l["body_text"], "hi");
        assert_eq!(l["body_sha256"], hex::encode(Sha256::digest(b"hi")));
    }

    #[test]
    fn extension_frames_are_named() {
        let update = ExtFrame::WindowUpdate {
            request_id: RequestId::from("r-1"),
            increment: 0x0102_0304,
        };
        let cancel = ExtFrame::Cancel {
            request_id: RequestId::from("r-2"),
            reason: "the client went away".into(),
        };
        let mut bad = update.encode().to_vec();
        bad[6] = 1; // a flag bit, which extension frames may not set
        let input = [update.encode().to_vec(), cancel.encode().to_vec(), bad]
            .map(hex::encode)
            .join("\n");
        let (summary, lines) = decode(&args(false, true), input.as_bytes());
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["type"], "window_update");
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["window_increment"], 0x0102_0304);
        assert_eq!(lines[1]["type"], "cancel");
        assert_eq!(lines[1]["request_id"], "r-2");
        assert_eq!(lines[1]["reason"], "the client went away");
        assert!(lines[2]["error"].is_string(), "{}", lines[2]);
        assert_ne!(lines[2]["error"], "unknown_message_type");
        // Only the broken one counts as bad; nothing is left to reassemble.
        assert_eq!(summary.bad_frames, 1);
        assert_eq!(summary.reassembly_errors, 0);
    }

    #[test]
    fn binary_body_has_no_text() {
        let input = hex::encode(response(&[0xff, 0xfe]));
        let (_, lines) = decode(&args(false, false), input.as_bytes());
        assert!(lines[0].get("body_text").is_none());
    }

    #[test]
    fn bad_hex_is_reported_with_its_line() {
        let input = format!("zz\n{}\n", hex::encode(response(b"")));
        let (summary, lines) = decode(&args(false, false), input.as_bytes());
        assert_eq!(summary.bad_frames, 1);
        assert_eq!(summary.frames, 2);
        assert_eq!(lines[0]["error"], "bad_hex");
        assert_eq!(lines[0]["line"], 1);
        assert_eq!(lines[1]["type"], "http_response");
    }

    #[test]
    fn short_total_len_stops_binary_splitting() {
        let mut input = response(b"x").to_vec();
        input[8..12].copy_from_slice(&5u32.to_be_bytes());
        let (summary, lines) = decode(&args(true, false), &input);
        assert_eq!(summary.bad_frames, 1);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["error"], "bad_total_len");
        assert_eq!(lines[0]["offset"], 0);
    }

    #[test]
    fn oversized_binary_frame_is_skipped() {
        let big = response(&[7; 4000]);
        let small = response(b"ok");
        let input = [&big[..], &small[..]].concat();
        let a = DecodeArgs {
            max_frame_len: 1000,
            ..args(true, false)
        };
        let (summary, lines) = decode(&a, &input);
        assert_eq!((summary.frames, summary.bad_frames), (2, 1));
        assert_eq!(lines[0]["error"], "too_large");
        assert_eq!(lines[1]["body_text"], "ok");
        assert_eq!(lines[1]["offset"], Value::Null);
    }

    #[test]
    fn unfinished_chunked_message_is_reported_at_end() {
        let msg = Message {
            request_id: RequestId::from("r-2"),
            head: Head::Request(RequestHead::new("POST", "/up")),
            body: vec![1u8; 3000].into(),
        };
        let frames = Chunker::new(1024).frames(&msg).unwrap();
        assert!(frames.len() > 2);
        let input: String = frames[..2].iter().map(|f| hex::encode(f) + "\n").collect();
        let (summary, lines) = decode(&args(false, true), input.as_bytes());
        assert_eq!(summary.bad_frames, 0);
        assert_eq!(summary.reassembly_errors, 1);
        let last = &lines.last().unwrap()["reassembly_error"];
        assert_eq!(last["error"], "incomplete");
        assert_eq!(last["request_id"], "r-2");
    }

    #[test]
    fn gap_is_a_reassembly_error() {
        let msg = Message {
            request_id: RequestId::from("r-3"),
            head: Head::Request(RequestHead::new("POST", "/up")),
            body: vec![1u8; 3000].into(),
        };
        let frames = Chunker::new(1024).frames(&msg).unwrap();
        let input = [&frames[0][..], &frames[2][..]].concat();
        let (summary, lines) = decode(&args(true, true), &input);
        assert_eq!(summary.reassembly_errors, 1);
        assert_eq!(lines[2]["reassembly_error"]["error"], "gap");
        assert_eq!(lines[2]["reassembly_error"]["frame"], 2);
    }

    #[test]
    fn read_error_carries_position() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = run(&args(true, false), io::BufReader::new(Failing), Vec::new()).unwrap_err();
        assert_eq!(
            error_chain(&err),
            "cannot read stdin at byte offset 0: disk on fire"
        );
    }
}
