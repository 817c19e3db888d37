//! `anpx decode` run as a process on the golden vectors of
//! `testdata/anpx-vectors/frames.json`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/anpx-vectors/frames.json"
);

struct Case {
    name: String,
    frames: Vec<Vec<u8>>,
    expect: Value,
}

impl Case {
    fn error(&self) -> Option<&str> {
        self.expect.get("error").and_then(Value::as_str)
    }

    fn chunked(&self) -> bool {
        self.expect["chunked"] == Value::Bool(true)
    }

    fn hex_input(&self) -> String {
        self.frames.iter().map(|f| hex::encode(f) + "\n").collect()
    }
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(VECTORS).expect("read frames.json");
    let doc: Value = serde_json::from_str(&text).expect("parse frames.json");
    let cases: Vec<Case> = doc["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_owned(),
            frames: c["frames_hex"]
                .as_array()
                .expect("frames_hex array")
                .iter()
                .map(|h| hex::decode(h.as_str().expect("hex string")).expect("valid hex"))
                .collect(),
            expect: c["expect"].clone(),
        })
        .collect();
    assert!(cases.len() >= 20, "expected the full vector set");
    cases
}

/// The kind `anpx decode` must print for each `expect.error` of the vectors.
fn expected_kind(vector_error: &str) -> &'static str {
    match vector_error {
        "magic" => "bad_magic",
        "version" => "unsupported_version",
        "header crc" => "header_crc",
        "body crc" => "body_crc",
        "truncated header" => "truncated_header",
        "length" => "length_mismatch",
        "truncated tlv" => "truncated_tlv",
        "message type" => "unknown_message_type",
        "http_meta" => "bad_meta",
        "missing http_meta" => "missing_meta",
        "missing request_id" => "missing_request_id",
        other => panic!("no kind mapped for vector error {other:?}"),
    }
}

struct Run {
    code: i32,
    lines: Vec<Value>,
    stderr: String,
}

fn anpx(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anpx"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn anpx");
    // Write from another thread: the child may fill its stdout pipe before
    // it has read all of a large stdin.
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().expect("wait for anpx");
    writer.join().expect("writer thread").expect("write stdin");
    parse(out)
}

fn parse(out: Output) -> Run {
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    Run {
        code: out.status.code().expect("exit code"),
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Headers printed as `[[name, value], ...]`, as the vector's flat object.
fn header_object(pairs: &Value) -> Value {
    let mut map = serde_json::Map::new();
    for pair in pairs.as_array().expect("headers list") {
        let name = pair[0].as_str().expect("name").to_owned();
        assert!(
            map.insert(name, pair[1].clone()).is_none(),
            "repeat in {pairs}"
        );
    }
    Value::Object(map)
}

fn check_meta(case: &Case, meta: &Value) {
    if let Some(want) = case.expect.get("http_meta") {
        assert_eq!(meta["method"], want["method"], "{}", case.name);
        assert_eq!(meta["path"], want["path"], "{}", case.name);
        assert_eq!(
            header_object(&meta["headers"]),
            want["headers"],
            "{}",
            case.name
        );
    }
    if let Some(want) = case.expect.get("resp_meta") {
        assert_eq!(meta["status"], want["status"], "{}", case.name);
        assert_eq!(meta["reason"], want["reason"], "{}", case.name);
        assert_eq!(
            header_object(&meta["headers"]),
            want["headers"],
            "{}",
            case.name
        );
    }
}

fn check_frame_line(case: &Case, line: &Value) {
    assert_eq!(line["type"], case.expect["type"], "{}: {line}", case.name);
    assert_eq!(
        line["request_id"], case.expect["request_id"],
        "{}",
        case.name
    );
    assert!(line.get("error").is_none(), "{}: {line}", case.name);
}

#[test]
fn every_vector_decodes_as_expected() {
    for case in cases() {
        let run = anpx(&["decode"], case.hex_input().as_bytes());
        assert_eq!(
            run.lines.len(),
            case.frames.len(),
            "{}: {:?}",
            case.name,
            run.lines
        );
        for (i, line) in run.lines.iter().enumerate() {
            assert_eq!(line["frame"], i + 1, "{}", case.name);
        }
        match case.error() {
            Some(err) => {
                assert_eq!(run.code, 1, "{}: bad frame must exit 1", case.name);
                let line = &run.lines[0];
                assert_eq!(line["error"], expected_kind(err), "{}: {line}", case.name);
                assert!(
                    !line["message"].as_str().unwrap_or("").is_empty(),
                    "{}: {line}",
                    case.name
                );
                assert!(line.get("type").is_none(), "{}: {line}", case.name);
            }
            None if case.chunked() => {
                assert_eq!(run.code, 0, "{}: {}", case.name, run.stderr);
                let n = case.frames.len();
                for (i, line) in run.lines.iter().enumerate() {
                    check_frame_line(&case, line);
                    assert_eq!(line["flags"], 1, "{}", case.name);
                    assert_eq!(line["chunk"]["index"], i, "{}", case.name);
                    assert_eq!(line["chunk"]["final"], i + 1 == n, "{}", case.name);
                    if !line["meta"].is_null() {
                        check_meta(&case, &line["meta"]);
                    }
                }
                let body_len: u64 = run
                    .lines
                    .iter()
                    .map(|l| l["body_len"].as_u64().unwrap())
                    .sum();
                assert_eq!(
                    Some(body_len),
                    case.expect["body_len"].as_u64(),
                    "{}",
                    case.name
                );
            }
            None => {
                assert_eq!(run.code, 0, "{}: {}", case.name, run.stderr);
                let line = &run.lines[0];
                check_frame_line(&case, line);
                assert_eq!(line["flags"], 0, "{}", case.name);
                assert!(line["chunk"].is_null(), "{}", case.name);
                assert_eq!(
                    line["body_sha256"], case.expect["body_sha256"],
                    "{}",
                    case.name
                );
                assert_eq!(line["body_len"], case.expect["body_len"], "{}", case.name);
                match case.expect["type"].as_str() {
                    Some("error") => assert!(line["meta"].is_null()),
                    _ => check_meta(&case, &line["meta"]),
                }
                if let Some(body_hex) = case.expect.get("body_hex").and_then(Value::as_str) {
                    let body = hex::decode(body_hex).unwrap();
                    match std::str::from_utf8(&body) {
                        Ok(text) => assert_eq!(line["body_text"], text, "{}", case.name),
                        Err(_) => assert!(line.get("body_text").is_none(), "{}", case.name),
                    }
                }
            }
        }
    }
}

#[test]
fn error_frame_text_is_shown() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "error_frame")
        .unwrap();
    let run = anpx(&["decode"], case.hex_input().as_bytes());
    assert_eq!(run.lines[0]["body_text"], "No receiver available");
}

#[test]
fn mixed_good_and_bad_lines_keep_going() {
    let cases = cases();
    let mut input = String::from("# every vector, bad ones in between\n\n");
    let mut expected = Vec::new();
    for case in &cases {
        input.push_str(&format!("   # {}\n", case.name));
        for frame in &case.frames {
            input.push_str(&format!("  {}\t\r\n", hex::encode(frame)));
            expected.push(case.error().map(expected_kind));
        }
    }
    input.push_str("not hex at all\n");
    expected.push(Some("bad_hex"));
    input.push_str(&hex::encode(&cases[0].frames[0]));
    expected.push(None);

    let run = anpx(&["decode"], input.as_bytes());
    assert_eq!(run.code, 1);
    assert_eq!(run.lines.len(), expected.len(), "{:?}", run.lines);
    for (i, (line, want)) in run.lines.iter().zip(&expected).enumerate() {
        assert_eq!(line["frame"], i + 1);
        match want {
            Some(kind) => assert_eq!(line["error"], *kind, "{line}"),
            None => assert!(line["type"].is_string(), "{line}"),
        }
    }
    let bad_hex = &run.lines[expected.len() - 2];
    assert!(bad_hex["line"].as_u64().unwrap() > 1, "{bad_hex}");
}

#[test]
fn all_good_input_exits_zero() {
    let input: String = cases()
        .iter()
        .filter(|c| c.error().is_none())
        .map(Case::hex_input)
        .collect();
    let run = anpx(&["decode"], input.as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.lines.iter().all(|l| l.get("error").is_none()));
}

#[test]
fn binary_input_matches_hex_input() {
    let good: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.error().is_none())
        .collect();
    let hex_input: String = good.iter().map(Case::hex_input).collect();
    let binary: Vec<u8> = good.iter().flat_map(|c| c.frames.concat()).collect();
    let from_hex = anpx(&["decode"], hex_input.as_bytes());
    let from_binary = anpx(&["decode", "--binary"], &binary);
    assert_eq!(from_binary.code, 0, "{}", from_binary.stderr);
    assert_eq!(from_binary.lines, from_hex.lines);
    assert_eq!(
        from_binary.lines.len(),
        good.iter().map(|c| c.frames.len()).sum::<usize>()
    );
}

#[test]
fn binary_input_reports_bad_frames_and_truncated_tail() {
    let cases = cases();
    let good = &cases
        .iter()
        .find(|c| c.name == "response_200_json")
        .unwrap()
        .frames[0];
    let bad = &cases
        .iter()
        .find(|c| c.name == "bad_body_crc")
        .unwrap()
        .frames[0];
    let mut input = [&good[..], &bad[..], &good[..]].concat();
    input.extend_from_slice(&good[..good.len() - 3]);

    let run = anpx(&["decode", "--binary"], &input);
    assert_eq!(run.code, 1);
    assert_eq!(run.lines.len(), 4, "{:?}", run.lines);
    assert_eq!(run.lines[0]["type"], "http_response");
    assert_eq!(run.lines[1]["error"], "body_crc");
    assert_eq!(run.lines[1]["offset"], good.len());
    assert_eq!(run.lines[2]["type"], "http_response");
    let tail = &run.lines[3];
    assert_eq!(tail["error"], "truncated_frame", "{tail}");
    assert_eq!(tail["frame"], 4);
    assert_eq!(tail["offset"], good.len() * 2 + bad.len());
    assert!(tail["message"].as_str().unwrap().contains("truncated"));
}

#[test]
fn binary_tail_shorter_than_length_field_is_reported() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "response_204_empty")
        .unwrap();
    let mut input = case.frames[0].clone();
    input.extend_from_slice(b"ANPX\x01");
    let run = anpx(&["decode", "--binary"], &input);
    assert_eq!(run.code, 1);
    assert_eq!(run.lines.len(), 2);
    assert_eq!(run.lines[1]["error"], "truncated_frame");
}

#[test]
fn reassemble_chunked_vectors() {
    let chunked: Vec<Case> = cases().into_iter().filter(Case::chunked).collect();
    assert!(chunked.len() >= 3, "vectors lost their chunked cases");
    for case in &chunked {
        for mode in [
            &["decode", "--reassemble"][..],
            &["decode", "--reassemble", "--binary"],
        ] {
            let input = if mode.contains(&"--binary") {
                case.frames.concat()
            } else {
                case.hex_input().into_bytes()
            };
            let run = anpx(mode, &input);
            assert_eq!(run.code, 0, "{}: {}", case.name, run.stderr);
            let messages: Vec<&Value> = run.lines.iter().filter_map(|l| l.get("message")).collect();
            assert_eq!(messages.len(), 1, "{}: {:?}", case.name, run.lines);
            let m = messages[0];
            assert_eq!(m["request_id"], case.expect["request_id"], "{}", case.name);
            assert_eq!(m["type"], case.expect["type"], "{}", case.name);
            assert_eq!(m["body_len"], case.expect["body_len"], "{}", case.name);
            assert_eq!(
                m["body_sha256"], case.expect["body_sha256"],
                "{}",
                case.name
            );
            check_meta(case, &m["meta"]);
            // The message line comes right after its last chunk.
            assert!(run.lines.last().unwrap().get("message").is_some());
        }
    }
}

#[test]
fn reassemble_reports_broken_and_unfinished_sequences() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "request_chunked_small")
        .unwrap();
    // Chunk 2 missing: a gap at chunk 3, and its successors start no new message.
    let mut input = String::new();
    for (i, frame) in case.frames.iter().enumerate() {
        if i != 2 {
            input.push_str(&(hex::encode(frame) + "\n"));
        }
    }
    let run = anpx(&["decode", "--reassemble"], input.as_bytes());
    assert_eq!(run.code, 1, "a broken sequence fails the run");
    let errors: Vec<&Value> = run
        .lines
        .iter()
        .filter_map(|l| l.get("reassembly_error"))
        .collect();
    assert!(!errors.is_empty(), "{:?}", run.lines);
    assert_eq!(errors[0]["error"], "gap");
    assert_eq!(errors[0]["request_id"], case.expect["request_id"]);
    assert!(run.lines.iter().all(|l| l.get("message").is_none()));

    // Only the first two chunks: reported as incomplete at end of input.
    let input: String = case.frames[..2]
        .iter()
        .map(|f| hex::encode(f) + "\n")
        .collect();
    let run = anpx(&["decode", "--reassemble"], input.as_bytes());
    assert_eq!(run.code, 1);
    let last = &run.lines.last().unwrap()["reassembly_error"];
    assert_eq!(last["error"], "incomplete", "{:?}", run.lines);
    assert_eq!(last["request_id"], case.expect["request_id"]);

    // Without --reassemble the same frames are all fine.
    assert_eq!(anpx(&["decode"], input.as_bytes()).code, 0);
}

#[test]
fn unreadable_stdin_exits_one_with_context() {
    let dir = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).expect("open a directory");
    let out = Command::new(env!("CARGO_BIN_EXE_anpx"))
        .arg("decode")
        .stdin(Stdio::from(dir))
        .output()
        .expect("run anpx");
    let run = parse(out);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot read stdin"), "{}", run.stderr);
}
