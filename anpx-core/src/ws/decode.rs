//! Reading WebSocket frames (RFC 6455 §5) out of the bytes a socket gave,
//! without doing the reading: [`Decoder::read_target`] says where the next
//! read goes, [`Decoder::filled`] how much it put there, and
//! [`Decoder::decode`] hands out what is whole.
//!
//! Small frames are read into one buffer that is zero-filled once, when
//! it is made, and copied out of it. A frame larger than what is left of
//! that buffer gets a buffer reserved for its length, zero-filled a step
//! at a time as it arrives, which the socket then reads into directly, as
//! much as it has per read (up to a step), and which becomes the
//! message's bytes without a copy.

use bytes::Bytes;

use super::encode::apply_mask;
use super::{
    CloseFrame, Incoming, Role, WsMessage, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE,
    OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, READ_BUFFER_SIZE,
};

/// Why a peer's bytes are not WebSocket frames this side accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame or a message (its fragments together) over the limit.
    #[error("a WebSocket message of {size} bytes or more is over the limit of {max}")]
    TooBig {
        /// The size declared or reached.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// Bytes that break RFC 6455.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
}

/// A frame's first bytes, parsed.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
}

/// The frame header at the start of `bytes` and its length, `None` while
/// it is incomplete.
fn parse_header(bytes: &[u8], role: Role) -> Result<Option<(Header, usize)>, FrameError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set without an extension",
        ));
    }
    let masked = second & 0x80 != 0;
    match role {
        Role::Server if !masked => {
            return Err(FrameError::Protocol("unmasked frame from a client"))
        }
        Role::Client if masked => return Err(FrameError::Protocol("masked frame from a server")),
        _ => {}
    }
    let (len, mut at) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(b) => {
                let len = u64::from_be_bytes(b.try_into().expect("eight bytes"));
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("frame length with its top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let Some(m) = bytes.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    let header = Header {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        mask,
        len,
    };
    Ok(Some((header, at)))
}

/// A frame whose payload is read into a buffer of its own. The buffer is
/// reserved for the whole payload but zero-filled (so touched) only
/// [`LARGE_STEP`] ahead of what arrived, and what is zero-filled is what
/// [`Decoder::arriving`] reports: a peer that announces a large frame and
/// sends little of it makes this side hold little.
struct Large {
    header: Header,
    /// Zero-filled so far; `payload[..filled]` arrived.
    payload: Vec<u8>,
    filled: usize,
    len: usize,
}

/// How far ahead of what arrived a large frame's buffer is zero-filled:
/// the most one read takes into it.
pub const LARGE_STEP: usize = 256 * 1024;

/// A fragmented message still arriving: its opcode and what came so far.
struct Fragments {
    opcode: u8,
    bytes: Vec<u8>,
}

/// WebSocket frames out of bytes read, for one side of one connection.
///
/// ```
/// use anpx_core::ws::{encode, Decoder, Incoming, Role};
/// use anpx_core::WsMessage;
/// use bytes::BytesMut;
///
/// // What a receiver (a client, so masked) writes...
/// let mut wire = BytesMut::new();
/// encode::message(&mut wire, WsMessage::Text("hello".into()), Some([1, 2, 3, 4]));
///
/// // ...read by the gateway, however the socket cuts it.
/// let mut decoder = Decoder::new(Role::Server, 1 << 20);
/// for piece in wire.chunks(3) {
///     let target = decoder.read_target();
///     target[..piece.len()].copy_from_slice(piece);
///     decoder.filled(piece.len());
/// }
/// assert_eq!(
///     decoder.decode().unwrap(),
///     Some(Incoming::Message(WsMessage::Text("hello".into())))
/// );
/// assert_eq!(decoder.decode().unwrap(), None);
/// ```
pub struct Decoder {
    role: Role,
    max_message: usize,
    /// Read buffer; empty until the first read. Holds `start..end`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    large: Option<Large>,
    fragments: Option<Fragments>,
}

impl Decoder {
    /// A decoder for the `role` this side plays, accepting messages of up
    /// to `max_message` bytes (fragments together).
    pub fn new(role: Role, max_message: usize) -> Self {
        Decoder {
            role,
            max_message,
            buf: Box::default(),
            start: 0,
            end: 0,
            large: None,
            fragments: None,
        }
    }

    /// A decoder that starts with `read_ahead`, bytes read from the socket
    /// with the handshake.
    pub fn with_read_ahead(role: Role, max_message: usize, read_ahead: &[u8]) -> Self {
        let mut decoder = Decoder::new(role, max_message);
        if !read_ahead.is_empty() {
            let mut buf = vec![0; READ_BUFFER_SIZE.max(read_ahead.len())];
            buf[..read_ahead.len()].copy_from_slice(read_ahead);
            decoder.buf = buf.into_boxed_slice();
            decoder.end = read_ahead.len();
        }
        decoder
    }

    /// Where the next read from the socket should go; never empty.
    #[inline]
    pub fn read_target(&mut self) -> &mut [u8] {
        if self.large.as_ref().is_some_and(|l| l.filled < l.len) {
            let large = self.large.as_mut().expect("checked");
            if large.filled == large.payload.len() {
                let more = (large.len - large.filled).min(LARGE_STEP);
                large.payload.resize(large.filled + more, 0);
            }
            return &mut large.payload[large.filled..];
        }
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUFFER_SIZE].into_boxed_slice();
        }
        if self.end == self.buf.len() {
            self.compact();
        }
        &mut self.buf[self.end..]
    }

    /// The last read put `n` bytes at [`read_target`](Self::read_target).
    #[inline]
    pub fn filled(&mut self, n: usize) {
        match &mut self.large {
            Some(large) if large.filled < large.len => large.filled += n,
            _ => self.end += n,
        }
    }

    /// Bytes held of a message that is not whole yet: what is buffered,
    /// the large frame's buffer as far as it is zero-filled, and earlier
    /// fragments. The gateway's budgets charge these as they grow.
    #[inline]
    pub fn arriving(&self) -> u64 {
        let large = self.large.as_ref().map_or(0, |l| l.payload.len());
        let fragments = self.fragments.as_ref().map_or(0, |f| f.bytes.len());
        (self.end - self.start + large + fragments) as u64
    }

    /// The next whole message or close, `None` until more is read.
    pub fn decode(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let (header, payload) = match self.large.take() {
                Some(large) if large.filled == large.len => {
                    let mut payload = large.payload;
                    if let Some(mask) = large.header.mask {
                        apply_mask(&mut payload, mask);
                    }
                    (large.header, Payload::Owned(payload))
                }
                Some(large) => {
                    self.large = Some(large);
                    return Ok(None);
                }
                None => {
                    let buffered = &self.buf[self.start..self.end];
                    let Some((header, header_len)) = parse_header(buffered, self.role)? else {
                        return Ok(None);
                    };
                    self.check(&header)?;
                    let len = usize::try_from(header.len).expect("checked against max_message");
                    if buffered.len() - header_len >= len {
                        let from = self.start + header_len;
                        self.start = from + len;
                        let payload = &mut self.buf[from..from + len];
                        if let Some(mask) = header.mask {
                            apply_mask(payload, mask);
                        }
                        (header, Payload::Buffered(from..from + len))
                    } else if header_len + len <= self.buf.len() {
                        // Fits in the buffer once what is before it is moved.
                        return Ok(None);
                    } else {
                        let mut payload = Vec::with_capacity(len);
                        payload.extend_from_slice(&buffered[header_len..]);
                        self.start = 0;
                        self.end = 0;
                        self.large = Some(Large {
                            header,
                            filled: payload.len(),
                            payload,
                            len,
                        });
                        continue;
                    }
                }
            };
            if let Some(incoming) = self.frame(header, payload)? {
                return Ok(Some(incoming));
            }
        }
    }

    /// Limits known from the header alone.
    fn check(&self, header: &Header) -> Result<(), FrameError> {
        let is_control = header.opcode & 0x8 != 0;
        if is_control && (!header.fin || header.len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(FrameError::Protocol(
                "control frame fragmented or over 125 bytes",
            ));
        }
        let before = self.fragments.as_ref().map_or(0, |f| f.bytes.len()) as u64;
        let size = if header.opcode == OP_CONTINUATION {
            before.saturating_add(header.len)
        } else {
            header.len
        };
        if size > self.max_message as u64 {
            return Err(FrameError::TooBig {
                size,
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// One frame's part in a message: the message if it is whole.
    fn frame(&mut self, header: Header, payload: Payload) -> Result<Option<Incoming>, FrameError> {
        let opcode = header.opcode;
        match opcode {
            OP_TEXT | OP_BINARY if self.fragments.is_some() => Err(FrameError::Protocol(
                "a new message before the fragmented one ended",
            )),
            OP_TEXT | OP_BINARY if header.fin => {
                message(opcode, self.bytes(payload)).map(|m| Some(Incoming::Message(m)))
            }
            OP_TEXT | OP_BINARY => {
                let bytes = self.slice(&payload).to_vec();
                self.fragments = Some(Fragments { opcode, bytes });
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some(mut fragments) = self.fragments.take() else {
                    return Err(FrameError::Protocol(
                        "a continuation frame without a message",
                    ));
                };
                fragments.bytes.extend_from_slice(self.slice(&payload));
                if !header.fin {
                    self.fragments = Some(fragments);
                    return Ok(None);
                }
                message(fragments.opcode, Bytes::from(fragments.bytes))
                    .map(|m| Some(Incoming::Message(m)))
            }
            OP_PING => Ok(Some(Incoming::Message(WsMessage::Ping(
                self.bytes(payload),
            )))),
            OP_PONG => Ok(Some(Incoming::Message(WsMessage::Pong(
                self.bytes(payload),
            )))),
            OP_CLOSE => close(self.slice(&payload)).map(|c| Some(Incoming::Close(c))),
            _ => Err(FrameError::Protocol("reserved opcode")),
        }
    }

    fn slice<'a>(&'a self, payload: &'a Payload) -> &'a [u8] {
        match payload {
            Payload::Buffered(range) => &self.buf[range.clone()],
            Payload::Owned(bytes) => bytes,
        }
    }

    fn bytes(&self, payload: Payload) -> Bytes {
        match payload {
            Payload::Buffered(range) => Bytes::copy_from_slice(&self.buf[range]),
            Payload::Owned(bytes) => Bytes::from(bytes),
        }
    }

    /// Moves what is buffered to the front.
    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

/// Where a frame's payload is.
enum Payload {
    Buffered(std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// A whole data message.
fn message(opcode: u8, bytes: Bytes) -> Result<WsMessage, FrameError> {
    if opcode == OP_BINARY {
        return Ok(WsMessage::Binary(bytes));
    }
    match String::from_utf8(bytes.into()) {
        Ok(text) => Ok(WsMessage::Text(text)),
        Err(_) => Err(FrameError::Protocol("a text message that is not UTF-8")),
    }
}

/// A close frame's code and reason (§5.5.1, §7.4).
fn close(payload: &[u8]) -> Result<Option<CloseFrame>, FrameError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(FrameError::Protocol("a close frame of one byte")),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 1012..=1014 | 3000..=4999);
    if !allowed {
        return Err(FrameError::Protocol("a close code that may not be sent"));
    }
    let Ok(reason) = std::str::from_utf8(reason) else {
        return Err(FrameError::Protocol("a close reason that is not UTF-8"));
    };
    Ok(Some(CloseFrame {
        code,
        reason: reason.to_owned(),
    }))
}
