//! Chunk extensions removed from a chunked request body as it streams.
//!
//! RFC 9112 §7.1.1 lets a chunk-size line carry extensions
//! (`5;name=value`) and a recipient must ignore the ones it does not
//! understand. Some HTTP/1 servers' chunked decoders refuse them instead;
//! a shell in front of such a decoder passes the body through
//! [`ChunkExtStrip`], which drops every extension and leaves the rest of
//! the stream byte for byte as it came. The output is never longer than
//! the input, so a shell can rewrite a read buffer in place.
//!
//! ```
//! use anpx_core::edge::chunk_ext::ChunkExtStrip;
//!
//! let mut strip = ChunkExtStrip::new();
//! let mut buf = b"5;a=b\r\nhello\r\n0;last\r\n\r\nGET".to_vec();
//! let n = strip.strip_in_place(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"5\r\nhello\r\n0\r\n\r\nGET");
//! assert!(strip.is_done());
//! ```

use thiserror::Error;

/// The longest extension list one chunk-size line may carry, in bytes.
/// Extensions are dropped, not stored, so this bounds only how long a
/// client may spend sending bytes that are thrown away.
pub const MAX_EXTENSION_BYTES: usize = 4096;

/// A chunk-size line the stripper cannot pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ChunkLineError {
    /// Its extensions run past [`MAX_EXTENSION_BYTES`].
    #[error("chunk extensions longer than {MAX_EXTENSION_BYTES} bytes")]
    ExtensionTooLong,
    /// Whitespace after the size is followed by neither `;` nor the line
    /// end.
    #[error("invalid chunk size line")]
    BadSizeLine,
}

/// Where the stripper is in the chunked stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line, before any `;`: the size so far (saturating;
    /// the decoder behind judges an overflow).
    Size { size: u64 },
    /// Whitespace after the size (RFC 9112's `BWS` before `;`), dropped:
    /// some decoders refuse it.
    SizeWs { size: u64 },
    /// In a chunk-size line's extensions, this many bytes so far; `size`
    /// as above, for what follows the line.
    Extension { size: u64, len: usize },
    /// At the `\n` ending a chunk-size line.
    SizeLf { size: u64 },
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data: its line break, passed as is.
    DataCrlf,
    /// After the last chunk: the trailer lines; `empty` while the current
    /// line has had no byte but `\r`.
    Trailers { empty: bool },
    /// The body ended: what follows is not the body's and passes as is.
    Done,
}

/// Drops the extensions of a chunked body's size lines, streaming.
///
/// Bytes the framing does not allow are passed on unchanged, for the
/// decoder behind to refuse; the stripper only ever removes extensions.
#[derive(Debug, Clone)]
pub struct ChunkExtStrip {
    state: State,
}

impl Default for ChunkExtStrip {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkExtStrip {
    /// A stripper at the start of a chunked body.
    pub fn new() -> Self {
        ChunkExtStrip {
            state: State::Size { size: 0 },
        }
    }

    /// Whether the body's last chunk and trailers have gone through.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Rewrites `buf` with the extensions dropped and returns how many of
    /// its first bytes are the output. Bytes after the body's end are kept.
    pub fn strip_in_place(&mut self, buf: &mut [u8]) -> Result<usize, ChunkLineError> {
        let mut out = 0;
        let mut i = 0;
        while i < buf.len() {
            if let State::Data(left) = self.state {
                // Chunk data goes through in one move, not byte by byte.
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - i);
                buf.copy_within(i..i + n, out);
                out += n;
                i += n;
                let left = left - n as u64;
                if left == 0 {
                    self.state = State::DataCrlf;
                } else {
                    self.state = State::Data(left);
                }
                continue;
            }
            if self.state == State::Done {
                buf.copy_within(i.., out);
                out += buf.len() - i;
                break;
            }
            let byte = buf[i];
            i += 1;
            if self.step(byte)? {
                buf[out] = byte;
                out += 1;
            }
        }
        Ok(out)
    }

    /// Moves past one byte outside chunk data; whether it is kept.
    fn step(&mut self, byte: u8) -> Result<bool, ChunkLineError> {
        let (next, keep) = match self.state {
            State::Size { size } => match byte {
                b';' => (State::Extension { size, len: 0 }, false),
                b'\r' => (State::SizeLf { size }, true),
                b'\n' => (after_size_line(size), true),
                b' ' | b'\t' => (State::SizeWs { size }, false),
                _ => {
                    let size = match (byte as char).to_digit(16) {
                        Some(d) => size.saturating_mul(16).saturating_add(u64::from(d)),
                        None => size,
                    };
                    (State::Size { size }, true)
                }
            },
            State::SizeWs { size } => match byte {
                b';' => (State::Extension { size, len: 0 }, false),
                b'\r' => (State::SizeLf { size }, true),
                b'\n' => (after_size_line(size), true),
                b' ' | b'\t' => (State::SizeWs { size }, false),
                _ => return Err(ChunkLineError::BadSizeLine),
            },
            State::Extension { size, len } => match byte {
                b'\r' => (State::SizeLf { size }, true),
                b'\n' => (after_size_line(size), true),
                _ if len >= MAX_EXTENSION_BYTES => return Err(ChunkLineError::ExtensionTooLong),
                _ => (State::Extension { size, len: len + 1 }, false),
            },
            State::SizeLf { size } => match byte {
                b'\n' => (after_size_line(size), true),
                // Not a line end: the decoder behind refuses the line.
                _ => (State::Size { size }, true),
            },
            State::DataCrlf => match byte {
                b'\n' => (State::Size { size: 0 }, true),
                _ => (State::DataCrlf, true),
            },
            State::Trailers { empty } => match byte {
                b'\n' if empty => (State::Done, true),
                b'\n' => (State::Trailers { empty: true }, true),
                b'\r' => (State::Trailers { empty }, true),
                _ => (State::Trailers { empty: false }, true),
            },
            // Handled by the caller; kept here so the match is whole.
            State::Data(_) | State::Done => (self.state, true),
        };
        self.state = next;
        Ok(keep)
    }
}

/// Where a chunk-size line of `size` leads: data, or the trailers after
/// the last chunk.
fn after_size_line(size: u64) -> State {
    if size == 0 {
        State::Trailers { empty: true }
    } else {
        State::Data(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strip_all(input: &[u8]) -> Result<Vec<u8>, ChunkLineError> {
        let mut s = ChunkExtStrip::new();
        let mut buf = input.to_vec();
        let n = s.strip_in_place(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn extensions_are_dropped_and_the_rest_kept() {
        assert_eq!(
            strip_all(b"5;a=b\r\nhello\r\n0\r\n\r\n").unwrap(),
            b"5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(
            strip_all(b"3;q=\"x;y\"\r\nabc\r\n0;z\r\nT: v\r\n\r\n").unwrap(),
            b"3\r\nabc\r\n0\r\nT: v\r\n\r\n"
        );
        // Data that looks like an extension is data.
        assert_eq!(
            strip_all(b"4\r\n;a;b\r\n0\r\n\r\n").unwrap(),
            b"4\r\n;a;b\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn bytes_after_the_body_pass_unchanged() {
        let mut s = ChunkExtStrip::new();
        let mut buf = b"0;e\r\n\r\nPOST / HTTP/1.1\r\n\r\n1;x\r\n".to_vec();
        let n = s.strip_in_place(&mut buf).unwrap();
        assert!(s.is_done());
        assert_eq!(&buf[..n], b"0\r\n\r\nPOST / HTTP/1.1\r\n\r\n1;x\r\n");
    }

    #[test]
    fn an_endless_extension_is_refused() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES + 1));
        assert_eq!(strip_all(&line), Err(ChunkLineError::ExtensionTooLong));
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES));
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(strip_all(&line).unwrap(), b"1\r\nx\r\n0\r\n\r\n");
    }

    #[test]
    fn malformed_framing_is_left_for_the_decoder() {
        // Not hex, no line break: passed on as is.
        assert_eq!(strip_all(b"zz\rq").unwrap(), b"zz\rq");
        // Whitespace before `;` or the line end is dropped; inside the
        // size it is refused, never joined into another size.
        assert_eq!(
            strip_all(b"5 \t;a\r\nhello\r\n0 \r\n\r\n").unwrap(),
            b"5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(strip_all(b"5 5\r\n"), Err(ChunkLineError::BadSizeLine));
    }

    proptest! {
        /// Any split of the stream into reads gives the same output as one
        /// read.
        #[test]
        fn splits_do_not_change_the_output(
            chunks in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), proptest::option::of("[a-z=;\"]{0,12}")),
                0..6,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for (data, ext) in &chunks {
                if data.is_empty() {
                    continue;
                }
                input.extend_from_slice(format!("{:x}", data.len()).as_bytes());
                expected.extend_from_slice(format!("{:x}", data.len()).as_bytes());
                if let Some(e) = ext {
                    input.push(b';');
                    input.extend_from_slice(e.as_bytes());
                }
                for out in [&mut input, &mut expected] {
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
            }
            input.extend_from_slice(b"0;end\r\n\r\nNEXT");
            expected.extend_from_slice(b"0\r\n\r\nNEXT");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut s = ChunkExtStrip::new();
            let mut out = Vec::new();
            let mut from = 0;
            for to in cuts.into_iter().chain([input.len()]) {
                let mut piece = input[from..to].to_vec();
                let n = s.strip_in_place(&mut piece).unwrap();
                out.extend_from_slice(&piece[..n]);
                from = to;
            }
            prop_assert!(s.is_done());
            prop_assert_eq!(out, expected);
        }
    }
}
