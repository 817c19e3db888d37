//! What async-h1 cannot write itself, put into the heads it writes.
//!
//! http-types holds a header value only when it is visible ASCII, while
//! HTTP/1 carries `obs-text` too (a UTF-8 file name in a header, say), and
//! the tokio shell passes such values on. async-h1 also frames every
//! answer it writes, a 204's and a 304's with `content-length: 0`: RFC 9110
//! §8.6 forbids the first and makes the second a false statement about
//! the representation. So the shell lets async-h1 write a head, takes its
//! bytes before they leave, and writes them again with this edit: the
//! fields async-h1 could not hold added before the empty line, and the
//! `content-length` line as the status needs it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::io::AsyncRead;

/// What becomes of the `content-length` line async-h1 wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum LengthLine {
    /// As async-h1 wrote it: the length of the body that follows.
    #[default]
    Keep,
    /// Left out: a 204, or a 304 whose service gave no length.
    Drop,
    /// This value instead: a 304's length of the representation, as its
    /// service gave it.
    Set(String),
}

/// The changes to one head. Stored in the message's extensions by whoever
/// built it, taken out where async-h1 writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeadEdit {
    /// Fields written after async-h1's, in order, names lowercased:
    /// every value of a name any of whose values async-h1 cannot carry,
    /// so that the values of one name keep their order.
    pub extra: Vec<(String, String)>,
    pub length: LengthLine,
}

impl HeadEdit {
    /// Whether the head stays as async-h1 writes it.
    pub(crate) fn is_noop(&self) -> bool {
        self.extra.is_empty() && self.length == LengthLine::Keep
    }

    /// The fields of `fields` async-h1 can carry; the names with a value
    /// it cannot are kept here instead, as [`HeadEdit::extra`]. Nothing is
    /// allocated when every value is ASCII, as nearly every one is.
    pub(crate) fn split_fields<'a, I>(
        &mut self,
        fields: I,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a, I>
    where
        I: Iterator<Item = (&'a str, &'a str)> + Clone,
    {
        let held_back: Vec<&str> = fields
            .clone()
            .filter(|(_, value)| !carried(value))
            .map(|(name, _)| name)
            .collect();
        let any_held = !held_back.is_empty();
        let held = move |name: &str| held_back.iter().any(|n| n.eq_ignore_ascii_case(name));
        if any_held {
            for (name, value) in fields.clone() {
                if held(name) {
                    // Lowercased, as async-h1 and hyper write every name.
                    self.extra
                        .push((name.to_ascii_lowercase(), value.to_owned()));
                }
            }
        }
        fields.filter(move |(name, _)| !any_held || !held(name))
    }

    /// `head` (a status or request line, its fields, the empty line) with
    /// this edit made.
    pub(crate) fn apply(&self, head: &[u8]) -> Vec<u8> {
        let extra: usize = self.extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(head.len() + extra + 32);
        let body = head.strip_suffix(b"\r\n\r\n").unwrap_or(head);
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if i > 0 && is_length_line(line) {
                match &self.length {
                    LengthLine::Keep => {}
                    LengthLine::Drop => continue,
                    LengthLine::Set(value) => {
                        out.extend_from_slice(b"content-length: ");
                        out.extend_from_slice(value.as_bytes());
                        out.extend_from_slice(b"\r\n");
                        continue;
                    }
                }
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in &self.extra {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Whether async-h1 can carry a header value: http-types takes visible
/// ASCII, spaces and tabs only.
pub(crate) fn carried(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn is_length_line(line: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length:";
    line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME)
}

/// A head gathered from the pieces it is written or read in.
#[derive(Debug, Default)]
pub(crate) struct HeadBytes {
    bytes: Vec<u8>,
}

impl HeadBytes {
    /// Takes the bytes of `buf` that belong to the head: how many, and
    /// whether the head is now whole (its empty line taken).
    pub(crate) fn take(&mut self, buf: &[u8]) -> (usize, bool) {
        let from = self.bytes.len().saturating_sub(3);
        self.bytes.extend_from_slice(buf);
        match self.bytes[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => {
                let end = from + at + 4;
                let taken = buf.len() - (self.bytes.len() - end);
                self.bytes.truncate(end);
                (taken, true)
            }
            None => (buf.len(), false),
        }
    }

    /// The head gathered so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// An encoder's output with its head edited: what async-h1's client
/// encoder reads out, for a request whose fields it could not all hold.
pub(crate) struct Edited<R> {
    inner: R,
    edit: HeadEdit,
    state: EditState,
}

enum EditState {
    Gathering(HeadBytes),
    /// The edited head, and what was read past it, being served.
    Serving(Vec<u8>, usize),
    Through,
}

/// async-h1's encoder of `request`, its head edited with the
/// [`HeadEdit`] the request carries in its extensions, if any.
pub(crate) fn encode_request(
    mut request: http_types::Request,
) -> Edited<async_h1::client::Encoder> {
    let edit: HeadEdit = request.ext_mut().remove().unwrap_or_default();
    Edited::new(async_h1::client::Encoder::new(request), edit)
}

impl<R> Edited<R> {
    pub(crate) fn new(inner: R, edit: HeadEdit) -> Self {
        let state = if edit.is_noop() {
            EditState::Through
        } else {
            EditState::Gathering(HeadBytes::default())
        };
        Edited { inner, edit, state }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Edited<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                EditState::Through => return Pin::new(&mut this.inner).poll_read(cx, buf),
                EditState::Serving(out, at) => {
                    let n = (out.len() - *at).min(buf.len());
                    buf[..n].copy_from_slice(&out[*at..*at + n]);
                    *at += n;
                    if *at == out.len() {
                        this.state = EditState::Through;
                    }
                    return Poll::Ready(Ok(n));
                }
                EditState::Gathering(head) => {
                    let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the encoder ended inside a head",
                        )));
                    }
                    let (taken, whole) = head.take(&buf[..n]);
                    if whole {
                        let mut out = this.edit.apply(head.bytes());
                        out.extend_from_slice(&buf[taken..n]);
                        this.state = EditState::Serving(out, 0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::io::AsyncReadExt;

    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\ndate: x\r\n\r\n";

    #[test]
    fn a_dropped_length_leaves_the_other_lines() {
        let edit = HeadEdit {
            length: LengthLine::Drop,
            ..HeadEdit::default()
        };
        assert_eq!(
            edit.apply(HEAD),
            b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n"
        );
    }

    #[test]
    fn a_set_length_and_extra_fields() {
        let edit = HeadEdit {
            extra: vec![("x-file".into(), "caf\u{e9}".into())],
            length: LengthLine::Set("1234".into()),
        };
        assert_eq!(
            edit.apply(HEAD),
            "HTTP/1.1 204 No Content\r\ncontent-length: 1234\r\ndate: x\r\nx-file: caf\u{e9}\r\n\r\n"
                .as_bytes()
        );
    }

    #[test]
    fn a_name_with_any_value_async_h1_cannot_hold_goes_whole() {
        let mut edit = HeadEdit::default();
        let fields = [
            ("set-cookie", "a=1"),
            ("x-ok", "yes"),
            ("Set-Cookie", "b=caf\u{e9}"),
            ("set-cookie", "c=3"),
        ];
        let kept: Vec<_> = edit.split_fields(fields.into_iter()).collect();
        assert_eq!(kept, [("x-ok", "yes")]);
        let extra: Vec<(&str, &str)> = edit
            .extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            extra,
            [
                ("set-cookie", "a=1"),
                ("set-cookie", "b=caf\u{e9}"),
                ("set-cookie", "c=3")
            ]
        );
        let mut plain = HeadEdit::default();
        let kept: Vec<_> = plain.split_fields([("a", "1")].into_iter()).collect();
        assert_eq!(kept, [("a", "1")]);
        assert!(plain.is_noop());
    }

    #[test]
    fn the_end_of_a_head_is_found_across_every_split() {
        let stream = [HEAD, b"body"].concat();
        for cut in 1..stream.len() {
            let mut head = HeadBytes::default();
            let (a, whole) = head.take(&stream[..cut]);
            let taken = if whole {
                a
            } else {
                let (b, whole) = head.take(&stream[cut..]);
                assert!(whole, "cut at {cut}");
                cut + b
            };
            assert_eq!(taken, HEAD.len(), "cut at {cut}");
            assert_eq!(head.bytes(), HEAD, "cut at {cut}");
        }
    }

    #[test]
    fn an_edited_reader_serves_the_edited_head_then_the_rest() {
        let edit = HeadEdit {
            extra: vec![("x-a".into(), "\u{65c5}".into())],
            length: LengthLine::Keep,
        };
        let input = [HEAD, b"body bytes"].concat();
        let mut out = Vec::new();
        smol::block_on(
            Edited::new(futures_util::io::Cursor::new(input), edit.clone()).read_to_end(&mut out),
        )
        .unwrap();
        assert_eq!(out, [edit.apply(HEAD).as_slice(), b"body bytes"].concat());
        let mut cut = Vec::new();
        let short = futures_util::io::Cursor::new(&HEAD[..10]);
        let e = smol::block_on(Edited::new(short, edit).read_to_end(&mut cut));
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
