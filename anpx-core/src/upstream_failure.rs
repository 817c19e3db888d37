//! A receiver's own 502, marked so a gateway can tell it from a service's.
//!
//! When a receiver cannot get an answer from its service (unreachable,
//! refused, cut, timed out), it answers the request itself with a 502 whose
//! JSON body names the cause. To a gateway that is an ordinary response,
//! and it would be logged and counted as completed. With the
//! `upstream-failure` extension negotiated
//! ([`Feature::UpstreamFailure`](crate::Feature::UpstreamFailure)),
//! the receiver adds the [`HEADER`] to that 502, and the gateway takes it
//! off before the client sees the response, logging and counting the
//! request as an upstream failure with its cause.
//!
//! A peer that negotiated nothing never sends or gets the header: a
//! reference gateway sees a plain 502, and a reference receiver's 502 stays
//! a completed response (nothing marks it). The gateway core drops the
//! header from any response on a link without the extension, and an anpx
//! receiver drops it from its services' responses, so a service cannot
//! pass its own answers off as the receiver's.
//!
//! ```
//! use anpx_core::upstream_failure::{UpstreamCause, UpstreamFailure, HEADER};
//! use anpx_core::ResponseHead;
//!
//! let failure = UpstreamFailure::new(UpstreamCause::Unreachable, "connection refused");
//! let mut head = ResponseHead::new(502).with_header(HEADER, failure.to_header_value());
//! assert_eq!(UpstreamFailure::take(&mut head), Some(failure));
//! assert!(head.headers.get(HEADER).is_none());
//! ```

use std::fmt;

use crate::message::ResponseHead;

/// The response header that marks a receiver's own 502: `<cause>; <message>`.
pub const HEADER: &str = "x-anpx-upstream-failure";

/// The longest message the header carries; the body has it whole.
pub const MAX_MESSAGE: usize = 512;

/// Why the service gave no (whole) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpstreamCause {
    /// No connection: refused, no route to it, a name that does not resolve.
    Unreachable,
    /// It took longer than the receiver waits.
    TimedOut,
    /// The connection closed or was reset before the response was whole.
    Cut,
    /// Anything else (a response the receiver could not read, ...).
    Failed,
}

impl UpstreamCause {
    /// Every cause, in the order the labels are listed.
    pub const ALL: [UpstreamCause; 4] = [
        UpstreamCause::Unreachable,
        UpstreamCause::TimedOut,
        UpstreamCause::Cut,
        UpstreamCause::Failed,
    ];

    /// The label in the header and the gateway's log.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamCause::Unreachable => "unreachable",
            UpstreamCause::TimedOut => "timed_out",
            UpstreamCause::Cut => "cut",
            UpstreamCause::Failed => "failed",
        }
    }

    /// The cause labelled `label`; `None` for one this version does not know.
    pub fn from_label(label: &str) -> Option<UpstreamCause> {
        let label = label.trim();
        UpstreamCause::ALL
            .into_iter()
            .find(|c| c.label().eq_ignore_ascii_case(label))
    }

    /// The cause an I/O error kind stands for, when it names one.
    pub fn of_io(kind: std::io::ErrorKind) -> Option<UpstreamCause> {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused
            | K::NotFound
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown => Some(UpstreamCause::Unreachable),
            K::TimedOut => Some(UpstreamCause::TimedOut),
            K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::NotConnected => Some(UpstreamCause::Cut),
            _ => None,
        }
    }
}

impl fmt::Display for UpstreamCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A receiver's account of its service failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// What happened.
    pub cause: UpstreamCause,
    /// In words, as the receiver's 502 body says it.
    pub message: String,
}

impl UpstreamFailure {
    /// A failure with its cause and message.
    pub fn new(cause: UpstreamCause, message: impl Into<String>) -> Self {
        UpstreamFailure {
            cause,
            message: message.into(),
        }
    }

    /// The [`HEADER`] value: `<cause>; <message>`, the message cut to
    /// [`MAX_MESSAGE`] bytes and anything but visible ASCII and spaces
    /// replaced, so the value is always a valid header value.
    pub fn to_header_value(&self) -> String {
        let mut value = format!("{}; ", self.cause.label());
        for c in self.message.chars().take(MAX_MESSAGE) {
            value.push(if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            });
        }
        value
    }

    /// Reads a [`HEADER`] value; `None` when its cause is unknown.
    pub fn parse(value: &str) -> Option<UpstreamFailure> {
        let (cause, message) = value.split_once(';').unwrap_or((value, ""));
        Some(UpstreamFailure {
            cause: UpstreamCause::from_label(cause)?,
            message: message.trim().to_owned(),
        })
    }

    /// Takes every [`HEADER`] off `head`, returning the failure the first
    /// one names.
    pub fn take(head: &mut ResponseHead) -> Option<UpstreamFailure> {
        let found = head.headers.get(HEADER).and_then(UpstreamFailure::parse);
        head.headers.remove(HEADER);
        found
    }
}

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream {}: {}", self.cause, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips_and_stays_a_valid_value() {
        for cause in UpstreamCause::ALL {
            assert_eq!(UpstreamCause::from_label(cause.label()), Some(cause));
            let f = UpstreamFailure::new(cause, "tcp connect error: refused");
            assert_eq!(UpstreamFailure::parse(&f.to_header_value()), Some(f));
        }
        let f = UpstreamFailure::new(UpstreamCause::Cut, "a\r\nb\u{e9}c".repeat(400));
        let v = f.to_header_value();
        assert!(
            v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{v:?}"
        );
        assert!(v.len() <= "cut; ".len() + MAX_MESSAGE);
        assert!(v.starts_with("cut; a??b?c"));
        assert_eq!(UpstreamFailure::parse("teleported; x"), None);
        assert_eq!(
            UpstreamFailure::parse("TIMED_OUT"),
            Some(UpstreamFailure::new(UpstreamCause::TimedOut, ""))
        );
    }

    #[test]
    fn take_removes_every_marker() {
        let mut head = ResponseHead::new(502)
            .with_header(HEADER, "unreachable; refused")
            .with_header("content-type", "application/json")
            .with_header(HEADER, "cut; later");
        let f = UpstreamFailure::take(&mut head).unwrap();
        assert_eq!(f.cause, UpstreamCause::Unreachable);
        assert_eq!(f.message, "refused");
        assert_eq!(head.headers.len(), 1);
        assert_eq!(UpstreamFailure::take(&mut head), None);
    }

    #[test]
    fn io_kinds_name_causes() {
        use std::io::ErrorKind as K;
        assert_eq!(
            UpstreamCause::of_io(K::ConnectionRefused),
            Some(UpstreamCause::Unreachable)
        );
        assert_eq!(
            UpstreamCause::of_io(K::TimedOut),
            Some(UpstreamCause::TimedOut)
        );
        assert_eq!(
            UpstreamCause::of_io(K::ConnectionReset),
            Some(UpstreamCause::Cut)
        );
        assert_eq!(UpstreamCause::of_io(K::InvalidData), None);
    }
}
