//! How a service's answer is relayed to the gateway: the headers that go,
//! whether the body goes whole or streams, and whether the body that came
//! is the one the service announced.

use std::fmt;

use bytes::Bytes;

use crate::chunk::concat;
use crate::message::{canonical_reason, ResponseHead};
use crate::upstream_failure::{UpstreamCause, UpstreamFailure};
use crate::{forward, passthrough};

use super::ResponseBody;

/// Which of a service's responses a receiver sends whole, read from the
/// machine with [`Receiver::relay_policy`](super::Receiver::relay_policy).
///
/// A body whose announced length fits one chunk goes whole: one frame,
/// which every gateway (the reference's too) handles best. Anything longer,
/// or of unknown length, streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPolicy {
    whole_up_to: u64,
}

impl RelayPolicy {
    /// Bodies of at most `chunk_size` announced bytes go whole.
    pub fn new(chunk_size: usize) -> Self {
        RelayPolicy {
            whole_up_to: chunk_size as u64,
        }
    }

    /// Starts relaying a response with `status` and the service's
    /// `headers`; `announced` is the body's exact length when the service
    /// said it. Hop-by-hop headers are dropped here.
    pub fn response<N, V>(
        self,
        status: u16,
        headers: impl IntoIterator<Item = (N, V)>,
        announced: Option<u64>,
    ) -> ResponseRelay
    where
        N: Into<String>,
        V: Into<String>,
    {
        let head = relayed_head(status, headers);
        let state = match announced {
            Some(0) => State::Empty(head),
            Some(n) if n <= self.whole_up_to => State::Collecting {
                head,
                body: Vec::new(),
            },
            _ => State::Streaming(Some(head)),
        };
        ResponseRelay {
            state,
            announced,
            relayed: 0,
        }
    }
}

/// The head the gateway gets for a service's `status` and `headers`.
fn relayed_head<N, V>(status: u16, headers: impl IntoIterator<Item = (N, V)>) -> ResponseHead
where
    N: Into<String>,
    V: Into<String>,
{
    let mut head = ResponseHead {
        status,
        reason: canonical_reason(status).to_owned(),
        headers: headers.into_iter().collect(),
    };
    forward::strip_hop_by_hop(&mut head.headers);
    head
}

/// How a response's body goes to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Read to its end first, then sent with its head as one response.
    Whole,
    /// The head at once, then each piece as the service gives it.
    Stream,
}

/// One service response on its way to the gateway: the shell reads the
/// service's body and hands each piece in, and sends on what comes out
/// ([`RelayStep`]) through [`Receiver::respond`](super::Receiver::respond),
/// [`Receiver::respond_body`](super::Receiver::respond_body) and
/// [`Receiver::respond_upstream_failure`](super::Receiver::respond_upstream_failure).
///
/// A body that ends short of or past its announced length was cut (some
/// HTTP clients report that as a normal end): it fails with
/// [`UpstreamCause::Cut`] instead of passing for a whole answer.
///
/// ```
/// use anpx_core::{RelayPolicy, RelayStep, ResponseBody};
///
/// let mut relay = RelayPolicy::new(1024).response(200, [("content-length", "5")], Some(5));
/// assert!(relay.start().is_none(), "a small body is read whole first");
/// assert!(relay.piece("hello".into()).is_none());
/// let Some(RelayStep::Whole { head, body }) = relay.end() else { panic!() };
/// assert_eq!((head.status, body), (200, ResponseBody::Full("hello".into())));
/// ```
#[derive(Debug)]
pub struct ResponseRelay {
    state: State,
    announced: Option<u64>,
    /// Body bytes the service gave so far.
    relayed: u64,
}

#[derive(Debug)]
enum State {
    /// Announced empty: the whole answer is the head.
    Empty(ResponseHead),
    /// A small body, held until its end.
    Collecting {
        head: ResponseHead,
        body: Vec<Bytes>,
    },
    /// The head until [`ResponseRelay::start`] takes it.
    Streaming(Option<ResponseHead>),
    Finished,
}

/// What a [`ResponseRelay`] has for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayStep {
    /// The whole response: for [`Receiver::respond`](super::Receiver::respond).
    /// Nothing follows.
    Whole {
        /// The head to send.
        head: ResponseHead,
        /// Its body.
        body: ResponseBody,
    },
    /// The head of a streamed response: for
    /// [`Receiver::respond`](super::Receiver::respond) with
    /// [`ResponseBody::Streaming`].
    Head(ResponseHead),
    /// A piece of a streamed body: for
    /// [`Receiver::respond_body`](super::Receiver::respond_body), not last.
    Piece(Bytes),
    /// The streamed body ended whole: the last
    /// [`Receiver::respond_body`](super::Receiver::respond_body), empty.
    /// Nothing follows.
    End,
    /// The service's answer cannot be relayed whole: for
    /// [`Receiver::respond_upstream_failure`](super::Receiver::respond_upstream_failure).
    /// Nothing follows.
    Failed(UpstreamFailure),
}

impl RelayStep {
    /// Whether nothing follows this step.
    pub fn is_last(&self) -> bool {
        matches!(
            self,
            RelayStep::Whole { .. } | RelayStep::End | RelayStep::Failed(_)
        )
    }
}

impl ResponseRelay {
    /// Relays the `101` of a WebSocket upgrade the service accepted: its
    /// hop-by-hop headers go except the two an upgrade needs, and what the
    /// service sends after it streams, without a length, as the body.
    pub fn tunnel<N, V>(headers: impl IntoIterator<Item = (N, V)>) -> ResponseRelay
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut head = relayed_head(passthrough::SWITCHING_PROTOCOLS, headers);
        passthrough::mark_upgrade(&mut head.headers);
        ResponseRelay {
            state: State::Streaming(Some(head)),
            announced: None,
            relayed: 0,
        }
    }

    /// Whether the body goes whole or streams.
    pub fn mode(&self) -> RelayMode {
        match self.state {
            State::Empty(_) | State::Collecting { .. } => RelayMode::Whole,
            State::Streaming(_) | State::Finished => RelayMode::Stream,
        }
    }

    /// Whether the response was handed on to its end (whole, ended or
    /// failed): the shell reads no more of the service's body.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// What goes to the gateway before any of the body is read: a
    /// streamed response's head, or the whole of one announced empty
    /// (whose body is then not read at all). `None` for a body read whole
    /// first, and after the first call.
    pub fn start(&mut self) -> Option<RelayStep> {
        // An empty answer is whole at once and the relay is finished;
        // every other state stays as it was.
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Empty(head) => Some(RelayStep::Whole {
                head,
                body: ResponseBody::Empty,
            }),
            State::Streaming(mut head) => {
                let step = head.take().map(RelayStep::Head);
                self.state = State::Streaming(head);
                step
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The service gave `data`: a piece to send on when the body streams,
    /// nothing while a whole body is read (or for an empty piece).
    pub fn piece(&mut self, data: Bytes) -> Option<RelayStep> {
        if data.is_empty() || self.is_finished() {
            return None;
        }
        self.relayed += data.len() as u64;
        match &mut self.state {
            State::Collecting { body, .. } => {
                // Past the announced length the answer fails at its end:
                // what comes beyond it is counted, not kept.
                if self.announced.is_some_and(|n| self.relayed <= n) {
                    body.push(data);
                }
                None
            }
            State::Streaming(_) => Some(RelayStep::Piece(data)),
            State::Empty(_) | State::Finished => None,
        }
    }

    /// The service's body ended: the whole response, or the end of the
    /// streamed one, or a failure when the length is not the one announced.
    /// `None` once finished.
    pub fn end(&mut self) -> Option<RelayStep> {
        if let Some(announced) = self.announced.filter(|n| *n != self.relayed) {
            if self.is_finished() {
                return None;
            }
            self.state = State::Finished;
            return Some(RelayStep::Failed(UpstreamFailure::new(
                UpstreamCause::Cut,
                format!(
                    "Upstream body ended after {} of {announced} bytes",
                    self.relayed
                ),
            )));
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Empty(head) => Some(RelayStep::Whole {
                head,
                body: ResponseBody::Empty,
            }),
            State::Collecting { head, body } => Some(RelayStep::Whole {
                head,
                body: ResponseBody::whole(concat(body)),
            }),
            State::Streaming(_) => Some(RelayStep::End),
            State::Finished => None,
        }
    }

    /// Reading the service's body failed with `error`: the response fails
    /// as cut. `None` once finished.
    pub fn fail(&mut self, error: impl fmt::Display) -> Option<RelayStep> {
        if self.is_finished() {
            return None;
        }
        self.state = State::Finished;
        Some(RelayStep::Failed(UpstreamFailure::new(
            UpstreamCause::Cut,
            format!("Upstream body failed: {error}"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RelayPolicy {
        RelayPolicy::new(8)
    }

    /// Every step a relay gives for `pieces` and then the end.
    fn run(mut relay: ResponseRelay, pieces: &[&'static str]) -> Vec<RelayStep> {
        let mut steps: Vec<RelayStep> = relay.start().into_iter().collect();
        for p in pieces {
            if relay.is_finished() {
                break;
            }
            steps.extend(relay.piece(Bytes::from_static(p.as_bytes())));
        }
        steps.extend(relay.end());
        steps
    }

    fn cut(message: &str) -> RelayStep {
        RelayStep::Failed(UpstreamFailure::new(UpstreamCause::Cut, message))
    }

    #[test]
    fn a_body_that_fits_one_chunk_goes_whole_and_a_longer_one_streams() {
        let small = policy().response(200, [("a", "b")], Some(8));
        assert_eq!(small.mode(), RelayMode::Whole);
        assert_eq!(
            run(small, &["1234", "5678"]),
            vec![RelayStep::Whole {
                head: ResponseHead::new(200).with_header("a", "b"),
                body: ResponseBody::Full("12345678".into()),
            }]
        );
        let large = policy().response(200, [("a", "b")], Some(9));
        assert_eq!(large.mode(), RelayMode::Stream);
        assert_eq!(
            run(large, &["12345", "6789"]),
            vec![
                RelayStep::Head(ResponseHead::new(200).with_header("a", "b")),
                RelayStep::Piece("12345".into()),
                RelayStep::Piece("6789".into()),
                RelayStep::End,
            ]
        );
        let unknown = policy().response(200, Vec::<(String, String)>::new(), None);
        assert_eq!(unknown.mode(), RelayMode::Stream, "no length: streamed");
    }

    #[test]
    fn a_body_announced_empty_goes_whole_before_anything_is_read() {
        let mut relay = policy().response(204, [("x", "y")], Some(0));
        assert_eq!(
            relay.start(),
            Some(RelayStep::Whole {
                head: ResponseHead::new(204).with_header("x", "y"),
                body: ResponseBody::Empty,
            })
        );
        assert!(relay.is_finished());
        assert_eq!(relay.piece("late".into()), None);
        assert_eq!(relay.end(), None);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let headers = [
            ("Connection", "close, x-private"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Private", "secret"),
            ("Content-Type", "text/plain"),
            ("Upgrade", "h2c"),
        ];
        let Some(RelayStep::Head(head)) = policy().response(200, headers, None).start() else {
            panic!("a streamed head");
        };
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type"], "names are kept lowercase");
        assert_eq!(head.reason, "OK");
    }

    #[test]
    fn a_tunnel_keeps_only_the_upgrade_headers_it_needs() {
        let headers = [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Accept", "abc"),
            ("Keep-Alive", "timeout=5"),
        ];
        let mut relay = ResponseRelay::tunnel(headers);
        assert_eq!(relay.mode(), RelayMode::Stream);
        let Some(RelayStep::Head(head)) = relay.start() else {
            panic!("the 101 goes at once");
        };
        assert_eq!(head.status, 101);
        let pairs: Vec<(&str, &str)> = head.headers.iter().collect();
        assert_eq!(
            pairs,
            [
                ("sec-websocket-accept", "abc"),
                ("connection", "upgrade"),
                ("upgrade", "websocket")
            ]
        );
        assert_eq!(
            relay.piece("frame".into()),
            Some(RelayStep::Piece("frame".into()))
        );
        assert_eq!(relay.end(), Some(RelayStep::End), "no length to hold it to");
    }

    #[test]
    fn a_streamed_body_that_ends_short_fails_as_cut() {
        let steps = run(policy().response(200, [("a", "b")], Some(20)), &["12345"]);
        assert_eq!(
            steps.last(),
            Some(&cut("Upstream body ended after 5 of 20 bytes"))
        );
    }

    #[test]
    fn a_streamed_body_that_runs_past_its_length_fails_as_cut() {
        let steps = run(
            policy().response(200, [("a", "b")], Some(10)),
            &["123456", "78901"],
        );
        assert_eq!(
            steps.last(),
            Some(&cut("Upstream body ended after 11 of 10 bytes"))
        );
    }

    #[test]
    fn a_whole_body_of_the_wrong_length_fails_as_cut() {
        let short = run(policy().response(200, [("a", "b")], Some(6)), &["123"]);
        assert_eq!(short, vec![cut("Upstream body ended after 3 of 6 bytes")]);
        let long = run(
            policy().response(200, [("a", "b")], Some(6)),
            &["1234", "5678"],
        );
        assert_eq!(long, vec![cut("Upstream body ended after 8 of 6 bytes")]);
    }

    #[test]
    fn a_body_of_exactly_its_length_completes() {
        let steps = run(
            policy().response(200, [("a", "b")], Some(12)),
            &["12345", "", "6789012"],
        );
        assert_eq!(
            steps,
            vec![
                RelayStep::Head(ResponseHead::new(200).with_header("a", "b")),
                RelayStep::Piece("12345".into()),
                RelayStep::Piece("6789012".into()),
                RelayStep::End,
            ],
            "an empty piece is not sent"
        );
    }

    #[test]
    fn a_failed_read_fails_the_response_as_cut_once() {
        let mut relay = policy().response(200, [("a", "b")], Some(4));
        assert_eq!(relay.piece("12".into()), None);
        assert_eq!(
            relay.fail("connection reset"),
            Some(cut("Upstream body failed: connection reset"))
        );
        assert_eq!(relay.fail("again"), None);
        assert_eq!(relay.end(), None);
    }
}
