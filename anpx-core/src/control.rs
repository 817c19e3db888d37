//! JSON control messages, sent as WebSocket text messages.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A control message received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `{"type":"ping","timestamp":T}`: answer with a pong echoing `T`.
    Ping {
        /// The timestamp exactly as sent, so the echo is byte-identical.
        timestamp: Option<String>,
    },
    /// `{"type":"pong","timestamp":T}`.
    Pong,
    /// `{"type":"heartbeat"}`: a sign of life, no answer.
    Heartbeat,
    /// `{"type":"authentication",...}`. The reference's newer gateway takes a
    /// bare DID from this message without any signature; anpx never does.
    Authentication,
    /// `{"type":"draining"}`, from a receiver that negotiated `drain`: it
    /// is shutting down; route new requests elsewhere.
    Draining,
    /// `{"type":"draining-ack"}`, the gateway's answer to
    /// [`Control::Draining`]: no request is routed to the receiver after it.
    DrainingAck,
    /// Valid JSON with a type we do not know.
    Unknown(String),
}

/// A text message that is not a JSON object with a string `type`.
#[derive(Debug, thiserror::Error)]
#[error("bad control message: {0}")]
pub struct ControlError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
}

impl Control {
    /// Parses a text message: `{"type":"ping","timestamp":1732240542.5}`
    /// is a `Ping` carrying `1732240542.5`, digit for digit.
    pub fn parse(text: &str) -> Result<Control, ControlError> {
        let wire: Wire<'_> = serde_json::from_str(text)?;
        Ok(match wire.kind.as_ref() {
            "ping" => Control::Ping {
                timestamp: wire.timestamp.map(|t| t.get().to_owned()),
            },
            "pong" => Control::Pong,
            "heartbeat" => Control::Heartbeat,
            "authentication" => Control::Authentication,
            "draining" => Control::Draining,
            "draining-ack" => Control::DrainingAck,
            other => Control::Unknown(other.to_owned()),
        })
    }
}

/// The answer to a ping, echoing its timestamp as the reference gateway does.
pub fn pong(timestamp: Option<&str>) -> String {
    match timestamp {
        Some(t) => format!(r#"{{"type": "pong", "timestamp": {t}}}"#),
        None => r#"{"type": "pong"}"#.to_owned(),
    }
}

/// The receiver's keep-alive ping. `seconds` need not be wall-clock time:
/// the gateway only echoes it.
pub fn ping(seconds: f64) -> String {
    format!(r#"{{"type": "ping", "timestamp": {seconds:.3}}}"#)
}

/// What a receiver that negotiated `drain` sends when it starts draining:
/// the gateway stops routing new requests to it and answers with
/// [`draining_ack`]. Never sent to a peer without `drain`.
pub fn draining() -> String {
    r#"{"type": "draining"}"#.to_owned()
}

/// The gateway's answer to [`draining`]: WebSocket messages keep their
/// order, so every request routed to the receiver before it arrives
/// before it too, and none comes after.
pub fn draining_ack() -> String {
    r#"{"type": "draining-ack"}"#.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_keeps_its_timestamp_as_written() {
        let c = Control::parse(r#"{"type":"ping","timestamp":1732240542.5}"#).unwrap();
        assert_eq!(
            c,
            Control::Ping {
                timestamp: Some("1732240542.5".into())
            }
        );
    }

    #[test]
    fn pong_echoes_the_raw_timestamp() {
        let Control::Ping { timestamp } =
            Control::parse(r#"{"type": "ping", "timestamp": 1.0e3}"#).unwrap()
        else {
            panic!("not a ping")
        };
        assert_eq!(
            pong(timestamp.as_deref()),
            r#"{"type": "pong", "timestamp": 1.0e3}"#
        );
    }

    #[test]
    fn other_types_and_garbage() {
        assert_eq!(
            Control::parse(r#"{"type":"heartbeat"}"#).unwrap(),
            Control::Heartbeat
        );
        assert_eq!(
            Control::parse(r#"{"type":"authentication","data":{"did_token":"did:wba:x"}}"#)
                .unwrap(),
            Control::Authentication
        );
        assert_eq!(
            Control::parse(r#"{"type":"x"}"#).unwrap(),
            Control::Unknown("x".into())
        );
        assert_eq!(Control::parse(&draining()).unwrap(), Control::Draining);
        assert_eq!(
            Control::parse(&draining_ack()).unwrap(),
            Control::DrainingAck
        );
        assert!(Control::parse("not json").is_err());
        assert!(Control::parse(r#"{"type": 5}"#).is_err());
        assert!(
            matches!(Control::parse(&ping(12.5)).unwrap(), Control::Ping { timestamp: Some(t) } if t == "12.500")
        );
    }
}
