//! The reference implementation's golden frames
//! (`testdata/anpx-vectors/frames.json`) played over real WebSockets against
//! both shells: this suite stands in for the reference gateway in front of
//! a real receiver, and for the reference receiver behind a real gateway,
//! each scenario once per shell.
//! The codec is checked frame by frame in `anpx-core/tests/vectors.rs`; here
//! the question is whether whole exchanges in the reference's exact layouts
//! go through.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anpx_core::chunk::{MessageCollector, ReassemblyLimits};
use anpx_core::frame::{tag, Frame, FrameLimits, MessageKind, Meta, FLAG_CHUNKED, HEADER_LEN};
use anpx_core::{Head, Message, RequestId};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;
use shell_common::Status;
use support::pairs::{Gw, Rx, Shell};
use support::*;
use tokio::net::TcpListener;

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/anpx-vectors/frames.json"
));

const HOST: &str = "api.agent.com";

/// Longest wait for anything on loopback; a hang fails instead of stalling CI.
const PATIENCE: Duration = Duration::from_secs(10);

/// The receiver's default largest frame: a response that fits must go out
/// whole, as the reference's receiver sends it.
const CHUNK_SIZE: usize = 64 * 1024;

struct Case {
    name: String,
    frames: Vec<Bytes>,
    expect: Value,
}

fn cases() -> Vec<Case> {
    let doc: Value = serde_json::from_str(VECTORS).expect("frames.json parses");
    doc["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            frames: c["frames_hex"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| Bytes::from(hex::decode(h.as_str().unwrap()).unwrap()))
                .collect(),
            expect: c["expect"].clone(),
        })
        .collect()
}

/// The valid cases of one message type, checked against the names this suite
/// was written for so that a vector file losing a case cannot go unnoticed.
fn cases_of(types: &[&str], expected_names: &[&str]) -> Vec<Case> {
    let picked: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            c.expect["type"]
                .as_str()
                .is_some_and(|t| types.contains(&t))
        })
        .collect();
    let names: Vec<&str> = picked.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names, expected_names,
        "the vector file's {types:?} cases changed"
    );
    picked
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The TLVs of a frame's body in wire order, read by hand rather than with
/// the codec under test.
fn tlvs(frame: &[u8]) -> Vec<(u8, &[u8])> {
    let mut body = &frame[HEADER_LEN..];
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], &body[5..5 + len]));
        body = &body[5 + len..];
    }
    out
}

/// A frame assembled by hand from the layout in the facts file, TLVs in the
/// order given; the codec under test plays no part in it.
fn hand_frame(kind: u8, flags: u8, fields: &[(u8, &[u8])]) -> Bytes {
    let mut body = Vec::new();
    for (t, value) in fields {
        body.push(*t);
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(b"ANPX");
    frame.extend_from_slice(&[0x01, kind, flags, 0]);
    frame.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
    let header_crc = crc32fast::hash(&frame[..12]);
    frame.extend_from_slice(&header_crc.to_be_bytes());
    frame.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&body);
    Bytes::from(frame)
}

/// A reference frame with another request id, every other byte of its
/// layout (TLV order, the 4-byte `final_chunk`) kept as the reference wrote it.
fn with_request_id_verbatim(frame: &Bytes, id: &RequestId) -> Bytes {
    let fields: Vec<(u8, &[u8])> = tlvs(frame)
        .into_iter()
        .map(|(t, v)| {
            if t == tag::REQUEST_ID {
                (t, id.as_str().as_bytes())
            } else {
                (t, v)
            }
        })
        .collect();
    hand_frame(frame[5], frame[6], &fields)
}

/// Gives a vector frame the request id the gateway chose.
type Rewrite = fn(&Bytes, &RequestId) -> Bytes;

/// A reference frame with another request id, written by our encoder.
fn with_request_id_reencoded(frame: &Bytes, id: &RequestId) -> Bytes {
    let mut f =
        Frame::decode(frame.clone(), &FrameLimits::default()).expect("vector frame decodes");
    f.request_id = id.clone();
    f.encode().expect("re-encodes")
}

/// The tags ANPX v1 defines; anything else would break a reference peer,
/// whose decoder refuses unknown tags.
fn is_v1_tag(t: u8) -> bool {
    matches!(
        t,
        tag::REQUEST_ID
            | tag::HTTP_META
            | tag::HTTP_BODY
            | tag::RESP_META
            | tag::CHUNK_IDX
            | tag::CHUNK_TOT
            | tag::FINAL_CHUNK
    )
}

/// Asserts `frame` is something a reference peer can read: version 1, the
/// expected type, no flag but "chunked", only v1 tags.
fn assert_plain_v1(frame: &[u8], kind: u8, context: &str) {
    assert_eq!(&frame[..5], b"ANPX\x01", "{context}: magic and version");
    assert_eq!(frame[5], kind, "{context}: frame type");
    assert_eq!(
        frame[6] & !FLAG_CHUNKED,
        0,
        "{context}: flags {:#04x}",
        frame[6]
    );
    let tags: Vec<u8> = tlvs(frame).iter().map(|(t, _)| *t).collect();
    assert!(
        tags.iter().all(|&t| is_v1_tag(t)),
        "{context}: tags {tags:02x?}"
    );
}

/// The next binary message, skipping WebSocket pings and JSON control
/// messages, which either side may send at any time.
async fn next_binary<S>(ws: &mut S, context: &str) -> Bytes
where
    S: Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{context}: no frame in time"))
            .unwrap_or_else(|| panic!("{context}: the WebSocket ended"))
            .unwrap_or_else(|e| panic!("{context}: WebSocket error {e}"));
        match msg {
            WsMessage::Binary(b) => return b,
            WsMessage::Close(c) => panic!("{context}: closed by the peer: {c:?}"),
            _ => continue,
        }
    }
}

async fn next_text<S>(ws: &mut S, context: &str) -> String
where
    S: Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{context}: no text in time"))
            .unwrap_or_else(|| panic!("{context}: the WebSocket ended"))
            .unwrap_or_else(|e| panic!("{context}: WebSocket error {e}"));
        match msg {
            WsMessage::Text(t) => return t.as_str().to_owned(),
            WsMessage::Close(c) => panic!("{context}: closed by the peer: {c:?}"),
            _ => continue,
        }
    }
}

/// Reads frames until one whole message is in; returns it with its frames.
async fn read_message<S>(ws: &mut S, context: &str) -> (Message, Vec<Bytes>)
where
    S: Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    let mut collector = MessageCollector::new(ReassemblyLimits::default());
    let mut frames = Vec::new();
    loop {
        let wire = next_binary(ws, context).await;
        frames.push(wire.clone());
        let frame = Frame::decode(wire, &FrameLimits::default())
            .unwrap_or_else(|e| panic!("{context}: undecodable frame: {e}"));
        if let Some(msg) = collector
            .push(Instant::now(), frame)
            .unwrap_or_else(|e| panic!("{context}: bad chunks: {e}"))
        {
            return (msg, frames);
        }
    }
}

async fn send_all<S>(ws: &mut S, frames: impl IntoIterator<Item = Bytes>)
where
    S: Sink<WsMessage, Error = WsError> + Unpin,
{
    for f in frames {
        ws.feed(WsMessage::Binary(f)).await.expect("frame sent");
    }
    ws.flush().await.expect("frames flushed");
}

/// `%XX` escapes back to bytes; the path and query reach the backend
/// percent-encoded however the receiver spells them on the request line.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(
                    u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape in {s:?}")),
                );
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("{s:?} is not UTF-8 once decoded: {e}"))
}

fn query_map(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// A receiver of `shell` serving `backend`, and its connection to the
/// bare listener it dialed, before any WebSocket handshake: the test plays
/// the gateway.
async fn dialed_by_receiver(
    shell: Shell,
    backend: std::net::SocketAddr,
) -> (Rx, tokio::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Rx::spawn(shell, addr, backend, &[HOST], None);
    let (tcp, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the receiver dials in time")
        .unwrap();
    (receiver, tcp)
}

async fn the_receiver_serves_every_request_layout_of_the_reference(shell: Shell) {
    let backend = start_backend().await;
    let (receiver, tcp) = dialed_by_receiver(shell, backend).await;
    let handshake = Arc::new(Mutex::new(None));
    let seen = handshake.clone();
    // Answer like the reference gateway: a bare upgrade, no anpx headers.
    // The callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &WsRequest, resp: WsResponse| {
        *seen.lock().unwrap() = Some((req.uri().path().to_owned(), req.headers().clone()));
        Ok(resp)
    };
    let mut ws = async_tungstenite::tokio::accept_hdr_async(tcp, callback)
        .await
        .expect("WebSocket handshake");
    let (path, headers) = handshake.lock().unwrap().take().expect("handshake seen");
    assert_eq!(path, "/ws");
    assert!(
        headers.contains_key("x-anpx-features"),
        "the receiver offers its extensions: {headers:?}"
    );
    match tokio::time::timeout(PATIENCE, receiver.wait_ready())
        .await
        .unwrap()
    {
        Status::Connected { features, .. } => assert!(
            features.is_empty(),
            "a gateway that offered nothing must get plain v1, not {features}"
        ),
        other => panic!("receiver not connected: {other:?}"),
    }

    let cases = cases_of(
        &["http_request"],
        &[
            "request_get_no_body",
            "request_post_json",
            "request_utf8_path_and_headers",
            "request_chunked_small",
            "request_chunked_large",
            "unknown_tag_skipped",
        ],
    );
    for case in cases {
        let name = case.name.as_str();
        let expect = &case.expect;
        let meta = &expect["http_meta"];
        send_all(&mut ws, case.frames.iter().cloned()).await;
        let (msg, frames) = read_message(&mut ws, name).await;

        assert_eq!(
            msg.request_id.as_str(),
            expect["request_id"].as_str().unwrap(),
            "{name}"
        );
        let Head::Response(head) = &msg.head else {
            panic!(
                "{name}: not a response: {:?} {:?}",
                msg.head,
                String::from_utf8_lossy(&msg.body)
            )
        };
        let header = |n: &str| head.headers.get(n).unwrap_or("").to_owned();
        assert_eq!(
            head.status,
            200,
            "{name}: {:?} {:?}",
            head,
            String::from_utf8_lossy(&msg.body)
        );
        assert_eq!(
            header("x-method"),
            meta["method"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            percent_decode(&header("x-path"), false),
            meta["path"].as_str().unwrap(),
            "{name}: backend saw {:?}",
            header("x-path")
        );
        assert_eq!(
            query_map(&header("x-query")),
            string_map(&meta["query"]),
            "{name}"
        );
        let body_sha256 = expect["body_sha256"].as_str().unwrap();
        assert_eq!(
            header("x-body-sha256"),
            body_sha256,
            "{name}: the backend saw another body"
        );
        assert_eq!(
            sha256(&msg.body),
            body_sha256,
            "{name}: the echo came back altered"
        );

        for (i, f) in frames.iter().enumerate() {
            assert_plain_v1(f, 0x02, &format!("{name} frame {i}"));
        }
        // The vectors' bodies are either far below the chunk size or far
        // above it, so which side each falls on is not a matter of overhead.
        if msg.body.len() <= CHUNK_SIZE / 2 {
            assert_eq!(
                frames.len(),
                1,
                "{name}: a response that fits goes as one frame"
            );
            assert_eq!(frames[0][6], 0, "{name}: and unchunked");
        } else {
            // Too big for one frame. A gateway that did not offer streaming
            // gets the response buffered and then chunked with `chunk_tot` in
            // every chunk, as the reference chunks; a streamed response could
            // not know its total in advance.
            let heads = frames
                .iter()
                .filter(|f| tlvs(f).iter().any(|(t, _)| *t == tag::RESP_META))
                .count();
            assert_eq!(heads, 1, "{name}");
            let total = (frames.len() as u32).to_be_bytes();
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(f[6], FLAG_CHUNKED, "{name} frame {i}");
                assert!(f.len() <= CHUNK_SIZE, "{name} frame {i}: {} bytes", f.len());
                let field = |wanted: u8| {
                    tlvs(f)
                        .into_iter()
                        .find(|(t, _)| *t == wanted)
                        .map(|(_, v)| v.to_vec())
                };
                assert_eq!(
                    field(tag::CHUNK_IDX),
                    Some((i as u32).to_be_bytes().to_vec()),
                    "{name} frame {i}"
                );
                assert_eq!(
                    field(tag::CHUNK_TOT),
                    Some(total.to_vec()),
                    "{name} frame {i}"
                );
            }
        }
        // The reference reads `resp_meta` as status, reason and a flat header
        // object; extra keys are ignored there, missing ones are not.
        let meta_json = frames
            .iter()
            .flat_map(|f| tlvs(f))
            .find(|(t, _)| *t == tag::RESP_META)
            .map(|(_, v)| serde_json::from_slice::<Value>(v).unwrap())
            .unwrap();
        assert_eq!(meta_json["status"], 200, "{name}: {meta_json}");
        assert_eq!(meta_json["reason"], "OK", "{name}: {meta_json}");
        assert!(
            meta_json["headers"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string),
            "{name}: {meta_json}"
        );
    }
    receiver.shutdown().await;
}

type RawReceiver = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

/// Connects to `gateway` the way the reference receiver does: no extension
/// offered, so the gateway must speak plain v1 to it.
async fn raw_receiver(gateway: &Gw) -> RawReceiver {
    let mut request = format!("ws://{}/ws", gateway.addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-anpx-services", HeaderValue::from_static(HOST));
    let (ws, response) =
        tokio::time::timeout(PATIENCE, async_tungstenite::tokio::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("gateway accepts the receiver");
    let features = response
        .headers()
        .get("x-anpx-features")
        .map(|v| v.to_str().unwrap().trim().to_owned())
        .unwrap_or_default();
    assert_eq!(
        features, "",
        "nothing was offered, so nothing may be agreed"
    );
    gateway.wait_for_receivers(1).await;
    ws
}

/// Sends `path` through the gateway, reads the request the raw receiver
/// gets, answers it with `answer(request_id)`, and returns what the HTTP
/// client saw.
async fn exchange(
    gateway: &Gw,
    ws: &mut RawReceiver,
    path: &str,
    answer: impl FnOnce(&RequestId) -> Vec<Bytes>,
) -> Reply {
    let addr = gateway.addr();
    let owned = path.to_owned();
    let client = tokio::spawn(async move { send(addr, "GET", HOST, &owned, "").await });
    let (request, frames) = read_message(ws, path).await;
    for (i, f) in frames.iter().enumerate() {
        assert_plain_v1(f, 0x01, &format!("request for {path}, frame {i}"));
    }
    let Head::Request(head) = &request.head else {
        panic!("{path}: the gateway sent {:?}", request.head)
    };
    assert_eq!((head.method.as_str(), head.path.as_str()), ("GET", path));
    assert_eq!(head.headers.get("host"), Some(HOST));
    send_all(ws, answer(&request.request_id)).await;
    tokio::time::timeout(PATIENCE, client)
        .await
        .expect("client answered in time")
        .expect("client task")
}

fn assert_reply_matches(reply: &Reply, case: &Case, variant: &str) {
    let name = &case.name;
    let meta = &case.expect["resp_meta"];
    assert_eq!(
        reply.status as u64,
        meta["status"].as_u64().unwrap(),
        "{name} ({variant}): {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    for (k, v) in string_map(&meta["headers"]) {
        assert_eq!(reply.header(&k), v, "{name} ({variant}): header {k}");
    }
    assert_eq!(
        reply.body.len() as u64,
        case.expect["body_len"].as_u64().unwrap(),
        "{name} ({variant})"
    );
    assert_eq!(
        sha256(&reply.body),
        case.expect["body_sha256"].as_str().unwrap(),
        "{name} ({variant})"
    );
}

async fn the_gateway_takes_every_response_layout_of_the_reference(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let mut ws = raw_receiver(&gw).await;
    let cases = cases_of(
        &["http_response", "error"],
        &[
            "response_200_json",
            "response_204_empty",
            "response_chunked",
            "error_frame",
        ],
    );

    for case in &cases {
        // Our hand encoder must reproduce the reference's bytes exactly, or
        // the "verbatim" variant below would prove nothing.
        let original = RequestId::from(case.expect["request_id"].as_str().unwrap());
        for (i, f) in case.frames.iter().enumerate() {
            assert_eq!(
                with_request_id_verbatim(f, &original),
                f,
                "{} frame {i}",
                case.name
            );
        }
    }
    let chunked = cases.iter().find(|c| c.name == "response_chunked").unwrap();
    let last = chunked.frames.last().unwrap();
    let order: Vec<u8> = tlvs(last).iter().map(|(t, _)| *t).collect();
    assert_eq!(
        order,
        [
            tag::REQUEST_ID,
            tag::CHUNK_IDX,
            tag::CHUNK_TOT,
            tag::RESP_META,
            tag::FINAL_CHUNK,
            tag::HTTP_BODY
        ],
        "the reference puts meta and final_chunk before the body in its last chunk"
    );

    for case in &cases {
        let variants: [(&str, Rewrite); 2] = [
            ("our encoder", with_request_id_reencoded),
            ("reference bytes", with_request_id_verbatim),
        ];
        for (variant, rewrite) in variants {
            let path = format!("/vectors/{}/{}", case.name, variant.replace(' ', "-"));
            let reply = exchange(&gw, &mut ws, &path, |id| {
                case.frames.iter().map(|f| rewrite(f, id)).collect()
            })
            .await;
            if case.expect["type"] == "error" {
                let message = String::from_utf8(
                    hex::decode(case.expect["body_hex"].as_str().unwrap()).unwrap(),
                )
                .unwrap();
                assert_eq!(reply.status, 502, "{} ({variant})", case.name);
                let error = reply.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    error.contains(&message),
                    "{} ({variant}): {error:?}",
                    case.name
                );
            } else {
                assert_reply_matches(&reply, case, variant);
            }
        }
    }

    // The gateway is still serving on the same link after all of that.
    let stats = gw.stats().await;
    assert_eq!(stats.links.len(), 1);
    assert_eq!(stats.in_flight, 0);
}

async fn a_reference_json_ping_gets_the_reference_pong(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let mut ws = raw_receiver(&gw).await;
    ws.send(WsMessage::text(
        r#"{"type":"ping","timestamp":1732240542.25}"#,
    ))
    .await
    .unwrap();
    let pong = next_text(&mut ws, "pong").await;
    assert_eq!(pong, r#"{"type": "pong", "timestamp": 1732240542.25}"#);
}

/// Both rewrites change the request id and nothing else a decoder sees, so
/// what the gateway is fed is the reference's message.
#[test]
fn rewritten_frames_keep_the_reference_head_and_body() {
    let id = RequestId::from("00000000-0000-4000-8000-000000000000");
    for case in cases_of(
        &["http_response", "error"],
        &[
            "response_200_json",
            "response_204_empty",
            "response_chunked",
            "error_frame",
        ],
    ) {
        for (i, f) in case.frames.iter().enumerate() {
            let original = Frame::decode(f.clone(), &FrameLimits::default()).unwrap();
            for rewritten in [
                with_request_id_reencoded(f, &id),
                with_request_id_verbatim(f, &id),
            ] {
                let back = Frame::decode(rewritten, &FrameLimits::default()).unwrap();
                assert_eq!(back.request_id, id, "{} frame {i}", case.name);
                assert_eq!(back.kind, original.kind);
                assert_eq!(back.chunk, original.chunk);
                assert_eq!(back.body, original.body);
                match (&back.meta, &original.meta) {
                    (Some(Meta::Response(a)), Some(Meta::Response(b))) => assert_eq!(a, b),
                    (None, None) => {}
                    other => panic!("{} frame {i}: meta changed: {other:?}", case.name),
                }
                assert!(matches!(
                    back.kind,
                    MessageKind::Response | MessageKind::Error
                ));
            }
        }
    }
}

/// A gateway without flow control (the reference's kind) may send a
/// request body as fast as it likes. Towards a service that reads none of
/// it, the receiver holds no more than `UNREAD_UPLOAD_LIMIT` unread: it
/// cuts the upload and answers the request 502 instead of filling its
/// memory (without the cut, no answer would ever come: the service never
/// responds).
async fn a_body_sent_faster_than_the_service_reads_is_cut(shell: Shell) {
    // A service that takes the connection and reads nothing.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = silent.accept().await {
            keep.lock().unwrap().push(tcp);
        }
    });
    let (receiver, tcp) = dialed_by_receiver(shell, backend).await;
    let mut ws = async_tungstenite::tokio::accept_async(tcp)
        .await
        .expect("WebSocket handshake");
    match tokio::time::timeout(PATIENCE, receiver.wait_ready())
        .await
        .unwrap()
    {
        Status::Connected { features, .. } => assert!(features.is_empty(), "{features}"),
        other => panic!("receiver not connected: {other:?}"),
    }

    let limit = shell_common::receiver::UNREAD_UPLOAD_LIMIT as usize;
    // Past the limit by more than the loopback socket buffers can hide.
    let body = Bytes::from(vec![b'x'; limit + 32 * 1024 * 1024]);
    let head = anpx_core::RequestHead::new("POST", "/upload")
        .with_header("host", HOST)
        .with_header("content-length", body.len().to_string());
    let msg = Message {
        request_id: RequestId::from("cut-upload"),
        head: Head::Request(head),
        body,
    };
    let frames = anpx_core::chunk::Chunker::new(CHUNK_SIZE)
        .frames(&msg)
        .expect("encodable");
    send_all(&mut ws, frames).await;
    let (reply, _) = read_message(&mut ws, "the cut upload's answer").await;
    assert_eq!(reply.request_id.as_str(), "cut-upload");
    let Head::Response(head) = &reply.head else {
        panic!("not a response: {:?}", reply.head)
    };
    let why = String::from_utf8_lossy(&reply.body);
    assert_eq!(head.status, 502, "{why}");
    assert!(why.contains("request body cut"), "{why}");
    drop(held);
}

for_every_receiver!(the_receiver_serves_every_request_layout_of_the_reference);
for_every_receiver!(a_body_sent_faster_than_the_service_reads_is_cut);

for_every_gateway!(
    the_gateway_takes_every_response_layout_of_the_reference,
    a_reference_json_ping_gets_the_reference_pong,
);
