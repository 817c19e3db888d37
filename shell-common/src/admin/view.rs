//! The inspector's entries as the dashboard's JSON: a summary for the
//! table and the live feed, the details of one with credentials redacted
//! and the ANPX frames it became, decoded as `anpx decode` prints them.

use std::time::UNIX_EPOCH;

use anpx_core::chunk::Chunker;
use anpx_core::RequestId;
use anpx_core::{Head, Message};
use bytes::Bytes;
use serde_json::{json, Value};

use super::capture::Entry;
use crate::decode::DecodeOptions;

/// Headers whose values are credentials: shown as `[redacted]` unless
/// `gateway.inspector.show_secrets` is on.
pub const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// What redacted values are replaced with.
pub const REDACTED: &str = "[redacted]";

/// The table row of an entry.
pub fn summary(e: &Entry) -> Value {
    let millis = e
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "id": e.id,
        "time_ms": millis,
        "client": e.client.map(|c| c.to_string()),
        "method": e.method,
        "host": e.host,
        "path": e.path,
        "query": e.query,
        "status": e.status,
        "duration_ms": e.duration.map(|d| d.as_secs_f64() * 1e3),
        "request_bytes": e.request_bytes,
        "response_bytes": e.response_bytes,
        "receiver": e.receiver,
        "ending": e.ending,
        "error": e.error,
        "replay_of": e.replay_of,
        "request_id": e.request_id,
    })
}

fn headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, show_secrets: bool) -> Value {
    pairs
        .map(|(n, v)| {
            let secret = SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s));
            let v = if secret && !show_secrets { REDACTED } else { v };
            json!([n, v])
        })
        .collect()
}

fn body(b: &[u8], total: u64, captured: bool) -> Value {
    if !captured {
        return Value::Null;
    }
    json!({
        "text": String::from_utf8_lossy(b),
        "shown": b.len(),
        "total": total,
    })
}

/// The details of an entry; `bodies` says whether bodies were captured,
/// `chunk_size` is the gateway's frame size (for re-encoding the frames).
pub fn detail(e: &Entry, show_secrets: bool, bodies: bool, chunk_size: usize) -> Value {
    let mut v = summary(e);
    let id = RequestId::from(e.request_id.as_str());
    let sent = e.sent_head.as_ref().map(|h| {
        json!({
            "method": h.method,
            "path": h.path,
            "query": h.query,
            "headers": headers(h.headers.iter(), show_secrets),
        })
    });
    let received = e.response_head.as_ref().map(|h| {
        json!({
            "status": h.status,
            "reason": h.reason,
            "headers": headers(h.headers.iter(), show_secrets),
        })
    });
    let frames_out = e.sent_head.as_ref().map(|h| {
        frames(
            &Message {
                request_id: id.clone(),
                head: Head::Request(redacted_request(h, show_secrets)),
                body: e.request_body.clone(),
            },
            chunk_size,
        )
    });
    let frames_in = e.response_head.as_ref().map(|h| {
        let mut h = h.clone();
        if !show_secrets {
            redact_list(&mut h.headers);
        }
        frames(
            &Message {
                request_id: id.clone(),
                head: Head::Response(h),
                body: Bytes::from(e.response_body.clone()),
            },
            chunk_size,
        )
    });
    let extra = json!({
        "local": e.local.map(|l| l.to_string()),
        "request_headers": headers(e.request_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), show_secrets),
        "sent_head": sent,
        "response_head": received,
        "request_body": body(&e.request_body, e.request_bytes, bodies),
        "response_body": body(&e.response_body, e.response_bytes, bodies),
        "frames_to_receiver": frames_out,
        "frames_from_receiver": frames_in,
        "bodies_captured": bodies,
        "replayable": replayable(e).is_ok(),
        "trimmed": e.trimmed,
    });
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

fn redact_list(list: &mut anpx_core::HeaderList) {
    let pairs: Vec<(String, String)> = list
        .iter()
        .map(|(n, v)| {
            let secret = SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s));
            (
                n.to_owned(),
                if secret {
                    REDACTED.to_owned()
                } else {
                    v.to_owned()
                },
            )
        })
        .collect();
    let mut fresh = anpx_core::HeaderList::default();
    for (n, v) in pairs {
        fresh.push(n, v);
    }
    *list = fresh;
}

fn redacted_request(h: &anpx_core::RequestHead, show_secrets: bool) -> anpx_core::RequestHead {
    let mut h = h.clone();
    if !show_secrets {
        redact_list(&mut h.headers);
    }
    h
}

/// Why an entry cannot be replayed, if it cannot.
pub fn replayable(e: &Entry) -> Result<(), &'static str> {
    if e.trimmed {
        return Err(
            "its headers were dropped to keep the inspector within gateway.inspector.max_bytes",
        );
    }
    if !e.request_body_whole {
        return Err("its request body was not captured whole (gateway.inspector.bodies keeps the first KiB)");
    }
    Ok(())
}

/// The frames `msg` is sent as (a message over `chunk_size` in chunks),
/// decoded: one JSON object per frame, as `anpx decode` prints them. The
/// body is the captured part only.
pub fn frames(msg: &Message, chunk_size: usize) -> Value {
    let wire = match Chunker::new(chunk_size).frames(msg) {
        Ok(frames) => frames,
        Err(e) => return json!([{ "error": e.to_string() }]),
    };
    let input: Vec<u8> = wire.iter().flat_map(|f| f.iter().copied()).collect();
    let options = DecodeOptions {
        binary: true,
        reassemble: false,
        max_frame_len: anpx_core::frame::DEFAULT_MAX_FRAME_LEN.max(chunk_size),
    };
    let mut out = Vec::new();
    if let Err(e) = crate::decode::run(&options, &input[..], &mut out) {
        return json!([{ "error": e.to_string() }]);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}
