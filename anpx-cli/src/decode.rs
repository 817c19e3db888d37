//! `anpx decode`: turns ANPX frames read from stdin into JSON lines, one per
//! frame, so captured traffic and test vectors can be inspected with `jq`.
//! The decoder, and what each line holds, is [`shell_common::decode`]; this
//! is the command around it: its flags, stdin and stdout, its exit status.

use std::error::Error;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anpx_core::cli::DecodeArgs;
use shell_common::decode::{DecodeError, DecodeOptions, Summary};

/// Exit status when some frame (or, with `--reassemble`, some message) was bad.
const EXIT_BAD_INPUT: u8 = 1;
/// Exit status when stdin or stdout failed: a runtime failure too (2 is
/// for usage errors, see [`crate::process::EXIT_USAGE`]).
const EXIT_IO: u8 = crate::process::EXIT_FAILURE;

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

/// Decodes every frame of `input` as `args` ask and writes the JSON lines
/// to `output` (see [`shell_common::decode::run`]).
pub fn run(
    args: &DecodeArgs,
    input: impl BufRead,
    output: impl Write,
) -> Result<Summary, DecodeError> {
    shell_common::decode::run(&options(args), input, output)
}

/// The decoder's options from the command's flags.
pub fn options(args: &DecodeArgs) -> DecodeOptions {
    DecodeOptions {
        binary: args.binary,
        reassemble: args.reassemble,
        max_frame_len: args.max_frame_len,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::chunk::Chunker;
    use anpx_core::frame::MessageKind;
    use anpx_core::frame::DEFAULT_MAX_FRAME_LEN;
    use anpx_core::frame::{ExtFrame, Frame, Meta};
    use anpx_core::{Head, Message, RequestHead, RequestId, ResponseHead};
    use bytes::Bytes;
    use serde_json::Value;
    use sha2::{Digest, Sha256};
    use std::io::Read;

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
