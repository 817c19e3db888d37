//! The messages of one forwarded request, as NATS payloads.
//!
//! Each payload is a 4-byte big-endian length, that many bytes of JSON
//! metadata (`{"t": kind, ...}`), then raw body bytes for the kinds that
//! carry a body. Heads travel as the same lossless head JSON the ANPX
//! frames use.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::gateway::{Failure, FailureKind};
use crate::message::{RequestHead, ResponseHead};

/// Largest metadata part accepted.
const MAX_META: usize = 1024 * 1024;

/// How the body of a forwarded request comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyMode {
    /// No body.
    Empty,
    /// The whole body is the start message's payload.
    Full,
    /// The body follows as [`WireMessage::Data`] pieces.
    Stream,
}

/// One message of a forwarded request, either way.
///
/// ```
/// use anpx_core::cluster::WireMessage;
/// use anpx_core::ResponseHead;
///
/// let m = WireMessage::Head(ResponseHead::new(200).with_header("content-type", "text/plain"));
/// assert_eq!(WireMessage::decode(m.encode()).unwrap(), m);
/// let d = WireMessage::Data { seq: 3, last: true, data: "tail".into() };
/// assert_eq!(WireMessage::decode(d.encode()).unwrap(), d);
/// assert!(WireMessage::decode(bytes::Bytes::from_static(b"\0\0\0\x09{\"t\":\"?\"}")).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    /// Forwarding gateway → serving gateway (on the service subject, with
    /// a reply inbox): start this request.
    Start {
        /// The Host it was sent to, port allowed.
        host: String,
        /// The request head, as the receiver will get it.
        head: RequestHead,
        /// How the body comes.
        body: BodyMode,
        /// The body, with [`BodyMode::Full`].
        payload: Bytes,
    },
    /// Serving → forwarding: the request was routed; send body pieces,
    /// credits and a cancel to `inbox`.
    Accepted {
        /// The serving gateway's node name.
        node: String,
        /// Its inbox for this request.
        inbox: String,
    },
    /// Serving → forwarding: the response head.
    Head(ResponseHead),
    /// A body piece (request body one way, response body the other).
    Data {
        /// Position in the body, from 0.
        seq: u64,
        /// The body ends with this piece.
        last: bool,
        /// The bytes, at most 64 KiB (the largest piece either side sends).
        data: Bytes,
    },
    /// Serving → forwarding: the request failed (before or after the head),
    /// with the status a local request would have got.
    Failed(Failure),
    /// The reader allows pieces numbered below `upto`.
    Credit {
        /// Exclusive upper bound.
        upto: u64,
    },
    /// Forwarding → serving: the client went away.
    Cancel,
}

/// Why a payload is not a cluster message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Shorter than its length prefix says.
    #[error("truncated cluster message")]
    Truncated,
    /// The metadata is larger than allowed.
    #[error("cluster message metadata of {0} bytes (at most {MAX_META})")]
    MetaTooLarge(usize),
    /// The metadata is not what we expect.
    #[error("bad cluster message: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the kind needs is missing.
    #[error("cluster message without its {0:?} field")]
    Missing(&'static str),
    /// A kind without a body carried one.
    #[error("a {0} message carries no body")]
    UnexpectedBody(&'static str),
}

/// The kinds of [`WireMessage`], as the `t` field of the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Start,
    Accepted,
    Head,
    Data,
    Failed,
    Credit,
    Cancel,
}

/// The metadata as one flat object (an internally tagged enum cannot
/// hold the heads' raw JSON); which fields a kind needs is checked on
/// reading.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    t: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<BodyMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<FailureKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upto: Option<u64>,
}

impl Meta {
    fn new(t: Kind) -> Meta {
        Meta {
            t,
            host: None,
            body: None,
            head: None,
            node: None,
            inbox: None,
            seq: None,
            last: None,
            kind: None,
            status: None,
            error: None,
            upto: None,
        }
    }
}

fn need<T>(field: Option<T>, name: &'static str) -> Result<T, WireError> {
    field.ok_or(WireError::Missing(name))
}

fn raw(json: Vec<u8>) -> Box<RawValue> {
    // The heads' own serializers always write valid JSON.
    String::from_utf8(json)
        .ok()
        .and_then(|s| RawValue::from_string(s).ok())
        .unwrap_or_else(|| RawValue::from_string("{}".into()).unwrap_or_default())
}

impl WireMessage {
    /// The NATS payload.
    pub fn encode(&self) -> Bytes {
        let mut body = Bytes::new();
        let meta = match self {
            WireMessage::Start {
                host,
                head,
                body: mode,
                payload,
            } => {
                body = payload.clone();
                Meta {
                    host: Some(host.clone()),
                    body: Some(*mode),
                    head: Some(raw(head.to_meta_json())),
                    ..Meta::new(Kind::Start)
                }
            }
            WireMessage::Accepted { node, inbox } => Meta {
                node: Some(node.clone()),
                inbox: Some(inbox.clone()),
                ..Meta::new(Kind::Accepted)
            },
            WireMessage::Head(head) => Meta {
                head: Some(raw(head.to_meta_json())),
                ..Meta::new(Kind::Head)
            },
            WireMessage::Data { seq, last, data } => {
                body = data.clone();
                Meta {
                    seq: Some(*seq),
                    last: Some(*last),
                    ..Meta::new(Kind::Data)
                }
            }
            WireMessage::Failed(f) => Meta {
                kind: Some(f.kind),
                status: Some(f.status),
                error: Some(f.error.clone()),
                ..Meta::new(Kind::Failed)
            },
            WireMessage::Credit { upto } => Meta {
                upto: Some(*upto),
                ..Meta::new(Kind::Credit)
            },
            WireMessage::Cancel => Meta::new(Kind::Cancel),
        };
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        let mut out = BytesMut::with_capacity(4 + json.len() + body.len());
        out.put_u32(json.len() as u32);
        out.put_slice(&json);
        out.put_slice(&body);
        out.freeze()
    }

    /// Reads a NATS payload.
    pub fn decode(payload: Bytes) -> Result<WireMessage, WireError> {
        if payload.len() < 4 {
            return Err(WireError::Truncated);
        }
        let len = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        if len > MAX_META {
            return Err(WireError::MetaTooLarge(len));
        }
        if payload.len() < 4 + len {
            return Err(WireError::Truncated);
        }
        let meta: Meta = serde_json::from_slice(&payload[4..4 + len])?;
        let body = payload.slice(4 + len..);
        let no_body = |kind: &'static str, m: WireMessage| {
            if body.is_empty() {
                Ok(m)
            } else {
                Err(WireError::UnexpectedBody(kind))
            }
        };
        match meta.t {
            Kind::Start => {
                let head = need(meta.head, "head")?;
                let head = RequestHead::from_meta_json(head.get().as_bytes())?;
                let mode = need(meta.body, "body")?;
                if mode != BodyMode::Full && !body.is_empty() {
                    return Err(WireError::UnexpectedBody("start without a full body"));
                }
                Ok(WireMessage::Start {
                    host: need(meta.host, "host")?,
                    head,
                    body: mode,
                    payload: body,
                })
            }
            Kind::Accepted => no_body(
                "accepted",
                WireMessage::Accepted {
                    node: need(meta.node, "node")?,
                    inbox: need(meta.inbox, "inbox")?,
                },
            ),
            Kind::Head => {
                let head = need(meta.head, "head")?;
                no_body(
                    "head",
                    WireMessage::Head(ResponseHead::from_meta_json(head.get().as_bytes())?),
                )
            }
            Kind::Data => Ok(WireMessage::Data {
                seq: need(meta.seq, "seq")?,
                last: need(meta.last, "last")?,
                data: body,
            }),
            Kind::Failed => no_body(
                "failed",
                WireMessage::Failed(Failure::new(
                    need(meta.kind, "kind")?,
                    need(meta.status, "status")?,
                    need(meta.error, "error")?,
                )),
            ),
            Kind::Credit => no_body(
                "credit",
                WireMessage::Credit {
                    upto: need(meta.upto, "upto")?,
                },
            ),
            Kind::Cancel => no_body("cancel", WireMessage::Cancel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let head = RequestHead::new("POST", "/a/b")
            .with_query("x=1&x=2")
            .with_header("X-Dup", "1")
            .with_header("x-dup", "2");
        let all = [
            WireMessage::Start {
                host: "api.example.com:8080".into(),
                head: head.clone(),
                body: BodyMode::Full,
                payload: Bytes::from_static(b"\0binary\xff"),
            },
            WireMessage::Start {
                host: "h".into(),
                head,
                body: BodyMode::Stream,
                payload: Bytes::new(),
            },
            WireMessage::Accepted {
                node: "gw-2".into(),
                inbox: "_INBOX.abc".into(),
            },
            WireMessage::Head(ResponseHead::new(404)),
            WireMessage::Data {
                seq: 0,
                last: false,
                data: Bytes::new(),
            },
            WireMessage::Failed(Failure::new(
                FailureKind::HeadTimeout,
                504,
                "Receiver did not respond in time",
            )),
            WireMessage::Credit { upto: 99 },
            WireMessage::Cancel,
        ];
        for m in all {
            assert_eq!(WireMessage::decode(m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let with_meta = |json: &str, body: &[u8]| {
            let mut b = BytesMut::new();
            b.put_u32(json.len() as u32);
            b.put_slice(json.as_bytes());
            b.put_slice(body);
            b.freeze()
        };
        assert!(matches!(
            WireMessage::decode(Bytes::from_static(b"\0\0")),
            Err(WireError::Truncated)
        ));
        assert!(matches!(
            WireMessage::decode(Bytes::from_static(b"\0\0\0\x10{}")),
            Err(WireError::Truncated)
        ));
        assert!(matches!(
            WireMessage::decode(Bytes::from_static(b"\xff\xff\xff\xff")),
            Err(WireError::MetaTooLarge(_))
        ));
        assert!(matches!(
            WireMessage::decode(with_meta(r#"{"t":"cancel"}"#, b"x")),
            Err(WireError::UnexpectedBody("cancel"))
        ));
        assert!(matches!(
            WireMessage::decode(with_meta(r#"{"t":"credit","upto":1,"extra":2}"#, b"")),
            Err(WireError::Json(_))
        ));
        assert!(matches!(
            WireMessage::decode(with_meta(r#"{"t":"credit"}"#, b"")),
            Err(WireError::Missing("upto"))
        ));
        assert!(matches!(
            WireMessage::decode(with_meta(
                r#"{"t":"start","host":"h","body":"empty","head":{"method":"GET","path":"/"}}"#,
                b"x"
            )),
            Err(WireError::UnexpectedBody(_))
        ));
        assert!(matches!(
            WireMessage::decode(with_meta(r#"{"t":"head","head":{"status":"x"}}"#, b"")),
            Err(WireError::Json(_))
        ));
    }
}
