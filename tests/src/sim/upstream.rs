//! The upstream service behind a receiver: for each request, a plan for
//! how (and whether) it answers, carried out one action at a time.

use std::time::{Duration, Instant};

use anpx_core::{Receiver, RespondError, ResponseBody};
use anpx_core::{RequestId, ResponseHead};
use bytes::Bytes;

use super::body;
use super::invariants::{bail, UpstreamRecord, Violation};
use super::trace::short;

/// How the upstream answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The whole response at once.
    Whole { status: u16, len: usize },
    /// A streamed response in `pieces` pieces.
    Stream {
        status: u16,
        len: usize,
        pieces: u32,
    },
    /// The upstream fails before any response.
    FailEarly,
    /// A streamed response that fails after `pieces` pieces.
    FailMidway {
        status: u16,
        len: usize,
        pieces: u32,
    },
    /// No answer at all (until the drain, where the shell's upstream
    /// timeout would fire).
    Never,
}

impl Plan {
    fn random(rng: &mut fastrand::Rng) -> Plan {
        let status = super::scenario::pick(rng, &[200, 200, 200, 201, 404, 418, 500]);
        let len = body::random_len(rng);
        match rng.u32(..100) {
            0..=39 => Plan::Whole { status, len },
            40..=72 => Plan::Stream {
                status,
                len,
                pieces: rng.u32(1..=6),
            },
            73..=82 => Plan::FailEarly,
            83..=93 => Plan::FailMidway {
                status,
                len,
                pieces: rng.u32(..=3),
            },
            _ => Plan::Never,
        }
    }
}

/// One request as the upstream sees it.
#[derive(Debug)]
pub struct Served {
    pub plan: Plan,
    /// Answer only once the whole request body is in.
    pub wait_for_end: bool,
    /// An action is on the agenda.
    pub scheduled: bool,
    /// Request body bytes seen.
    pub seen: usize,
    /// The request body ended.
    pub ended: bool,
    /// The upstream has nothing more to send.
    pub reply_done: bool,
    /// Actions taken so far.
    stage: u32,
    /// The link negotiated streaming, so a streamed head goes out at once.
    streaming: bool,
}

/// What an action led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Another action follows after a delay.
    Again,
    /// The plan is finished (or waits for nothing more).
    Done,
}

impl Served {
    pub fn new(rng: &mut fastrand::Rng, streaming: bool) -> Served {
        Served {
            plan: Plan::random(rng),
            wait_for_end: rng.bool(),
            scheduled: false,
            seen: 0,
            ended: false,
            reply_done: false,
            stage: 0,
            streaming,
        }
    }

    /// The planned response body, fixed by the request id.
    pub fn planned_body(&self, id: &RequestId) -> Bytes {
        match self.plan {
            Plan::Whole { len, .. } | Plan::Stream { len, .. } | Plan::FailMidway { len, .. } => {
                body::response_body(id, len)
            }
            Plan::FailEarly | Plan::Never => Bytes::new(),
        }
    }

    /// Whether the first action may be scheduled now.
    pub fn ready(&self) -> bool {
        self.stage == 0 && self.waiting()
    }

    /// An upstream that decided never to answer, with nothing scheduled:
    /// at the drain it is woken so that the shell's upstream timeout fires.
    pub fn ignoring(&self) -> bool {
        self.plan == Plan::Never && self.waiting()
    }

    fn waiting(&self) -> bool {
        !self.scheduled && !self.reply_done && (self.ended || !self.wait_for_end)
    }

    /// Takes the next action of the plan on `rx`, recording what was sent
    /// in `record`. `draining`: the run is ending, so an upstream that
    /// never answers times out now. Returns a description for the log.
    pub fn act(
        &mut self,
        at: Instant,
        id: &RequestId,
        rx: &mut Receiver,
        record: &mut UpstreamRecord,
        rng: &mut fastrand::Rng,
        draining: bool,
    ) -> Result<(Next, String), Violation> {
        let stage = self.stage;
        self.stage += 1;
        let fail_message = format!("upstream failed for {}", short(id));
        match (self.plan, stage) {
            (Plan::Whole { status, len }, 0) => {
                let body = record.body.clone();
                let payload = if len == 0 {
                    ResponseBody::Empty
                } else {
                    ResponseBody::Full(body)
                };
                record.status = Some(status);
                record.head_on_wire = true;
                record.sent = len;
                record.finished = true;
                self.reply_done = true;
                checked(id, rx.respond(at, id, head(status, id), payload))?;
                Ok((Next::Done, format!("respond {status} whole({len})")))
            }
            (Plan::Stream { status, .. } | Plan::FailMidway { status, .. }, 0) => {
                record.status = Some(status);
                record.head_on_wire = self.streaming;
                checked(
                    id,
                    rx.respond(at, id, head(status, id), ResponseBody::Streaming),
                )?;
                Ok((Next::Again, format!("respond {status} streaming")))
            }
            (Plan::FailMidway { pieces, .. }, k) if k > pieces => {
                self.fail(at, id, rx, record, fail_message)
            }
            (Plan::Stream { pieces, .. } | Plan::FailMidway { pieces, .. }, k) => {
                let left = record.body.len() - record.sent;
                let last = matches!(self.plan, Plan::Stream { .. }) && k >= pieces;
                let take = if last { left } else { rng.usize(..=left) };
                let piece = record.body.slice(record.sent..record.sent + take);
                match rx.respond_body(at, id, piece, last) {
                    Ok(()) => {
                        record.sent += take;
                        record.finished = last;
                        self.reply_done = last;
                        let next = if last { Next::Done } else { Next::Again };
                        Ok((next, format!("respond_body({take}, last: {last})")))
                    }
                    // The receiver may refuse to buffer a large response for
                    // a link without streaming; it then answers 502 itself.
                    Err(RespondError::Failed { reason, .. }) if !record.head_on_wire => {
                        record.error = Some(reason.clone());
                        self.reply_done = true;
                        Ok((
                            Next::Done,
                            format!("respond_body({take}) refused: {reason}"),
                        ))
                    }
                    Err(e) => {
                        bail!("respond_body for request {id} that the upstream holds open: {e}")
                    }
                }
            }
            (Plan::FailEarly, _) => self.fail(at, id, rx, record, fail_message),
            (Plan::Never, _) if draining => {
                self.fail(at, id, rx, record, "upstream timed out".to_owned())
            }
            (Plan::Never, _) => Ok((Next::Done, "ignores it".to_owned())),
            (Plan::Whole { .. }, _) => bail!("request {id}: action after a whole response"),
        }
    }

    fn fail(
        &mut self,
        at: Instant,
        id: &RequestId,
        rx: &mut Receiver,
        record: &mut UpstreamRecord,
        message: String,
    ) -> Result<(Next, String), Violation> {
        record.error = Some(message.clone());
        record.error_cut = record.head_on_wire;
        self.reply_done = true;
        checked(id, rx.respond_error(at, id, &message))?;
        Ok((Next::Done, format!("respond_error({message:?})")))
    }
}

fn head(status: u16, id: &RequestId) -> ResponseHead {
    ResponseHead::new(status).with_header("x-sim-request", id.as_str())
}

/// The upstream only calls the receiver for requests it holds open, so any
/// refusal means the receiver lost track of one.
fn checked(id: &RequestId, result: Result<(), RespondError>) -> Result<(), Violation> {
    result.map_err(|e| {
        Violation(format!(
            "receiver refused a response for open request {id}: {e}"
        ))
    })
}

/// How long the upstream takes before its next action: mostly quick,
/// sometimes slower than the gateway waits.
pub fn think_time(rng: &mut fastrand::Rng, request_timeout: Duration) -> Duration {
    match rng.u32(..100) {
        0..=79 => Duration::from_millis(rng.u64(..=200)),
        80..=94 => request_timeout.mul_f64(rng.f64()),
        _ => request_timeout.mul_f64(1.0 + rng.f64()),
    }
}
