//! The client's view of every request and the rules it must follow. The
//! checker only returns errors, so that a test can feed it a broken view
//! and see it object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use anpx_core::RequestId;
use anpx_core::{Failure, LinkId, ResponseEvent};
use bytes::Bytes;

/// A broken rule, described for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

/// Returns a [`Violation`] from the enclosing function.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::sim::invariants::Violation(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Core bugs the checker can be told to tolerate, each by name and each
/// only in the exact shape it was diagnosed in, so that a core without the
/// fix can still run the rest of the checks. Both are fixed; the default
/// tolerates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownBugs {
    /// A receiver error frame sent while a chunked (streamed) response is
    /// in progress is unchunked, so the gateway's reassembler rejected it as
    /// interleaved: the client got "Invalid response from receiver" in
    /// place of the receiver's message (the response was still cut).
    pub error_frame_mid_stream: bool,
    /// A receiver's sweep of stalled uploads aborted them in hash-map
    /// order, which changes from run to run: the same inputs gave the same
    /// events in another order, so two runs of one seed could part there.
    pub unordered_stall_sweep: bool,
}

impl KnownBugs {
    /// Every known bug tolerated.
    pub fn all() -> KnownBugs {
        KnownBugs {
            error_frame_mid_stream: true,
            unordered_stall_sweep: true,
        }
    }

    /// These, plus the bugs `names` lists (comma-separated field names, or
    /// `all`).
    pub fn tolerating(mut self, names: &str) -> KnownBugs {
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => return KnownBugs::all(),
                "error_frame_mid_stream" => self.error_frame_mid_stream = true,
                "unordered_stall_sweep" => self.unordered_stall_sweep = true,
                other => panic!("no known bug is called {other:?}"),
            }
        }
        self
    }

    /// Whether a tolerated bug explains why two runs of one seed part at
    /// trace lines `a` and `b` (the first that differ).
    pub fn explain_divergence(&self, a: &str, b: &str) -> Option<&'static str> {
        let stamp = |line: &str| line.split_once("] ").map(|(stamp, _)| stamp.to_owned());
        let stalled = |line: &str| line.contains(" is aborted: request body stalled");
        let same_sweep = stamp(a).is_some() && stamp(a) == stamp(b) && stalled(a) && stalled(b);
        (self.unordered_stall_sweep && same_sweep).then_some("unordered_stall_sweep")
    }
}

/// What an upstream handed its receiver for one request: the oracle the
/// client's view is checked against.
#[derive(Debug, Clone, Default)]
pub struct UpstreamRecord {
    /// The status given to `respond`.
    pub status: Option<u16>,
    /// The head is on the wire (a streamed response on a streaming link),
    /// so a later error cuts the response instead of replacing it.
    pub head_on_wire: bool,
    /// The whole body the upstream means to send.
    pub body: Bytes,
    /// How much of it has been handed over.
    pub sent: usize,
    /// The last piece has been handed over.
    pub finished: bool,
    /// The upstream failed (or the receiver refused its response), with this
    /// message.
    pub error: Option<String>,
    /// That failure came after the head was on the wire.
    pub error_cut: bool,
    /// The receiver aborted the request, for this reason.
    pub aborted: Option<String>,
}

impl UpstreamRecord {
    /// A response sent whole, for tests of the checker.
    pub fn complete(status: u16, body: Bytes) -> UpstreamRecord {
        UpstreamRecord {
            status: Some(status),
            head_on_wire: true,
            sent: body.len(),
            body,
            finished: true,
            ..UpstreamRecord::default()
        }
    }

    /// The receiver answers with its own 502 in place of the response.
    pub fn replaced_by_502(&self) -> bool {
        self.error.is_some() && !self.error_cut
    }
}

/// Where a request stands for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    AwaitingHead,
    Receiving,
    Ended,
    Failed(u16),
    Cancelled,
}

impl Phase {
    pub fn is_open(self) -> bool {
        matches!(self, Phase::AwaitingHead | Phase::Receiving)
    }
}

/// One request the gateway accepted.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The connection it was sent on (none when it failed at once).
    pub link: Option<LinkId>,
    pub started_at: Duration,
    pub phase: Phase,
    pub received: usize,
    /// The head was the receiver's own 502 rather than the upstream's.
    replaced: bool,
    /// The body of that 502, checked when it ends.
    error_body: Vec<u8>,
}

/// What the checker needs to know about the world when an event comes.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    pub now: Duration,
    pub request_timeout: Duration,
    /// Connections that have been closed so far.
    pub closed_links: &'a BTreeSet<LinkId>,
    /// The gateway's limit on a response body.
    pub response_limit: u64,
    /// The request body exceeds the limit of the receiver it went to: that
    /// limit.
    pub request_over_limit: Option<u64>,
    pub known_bugs: KnownBugs,
}

/// Every request the gateway accepted, and what its client has seen.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: BTreeMap<RequestId, Entry>,
    open: usize,
    open_per_link: BTreeMap<LinkId, usize>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// The gateway accepted `id` and sent it on `link`.
    pub fn start(
        &mut self,
        id: &RequestId,
        link: Option<LinkId>,
        now: Duration,
    ) -> Result<(), Violation> {
        let entry = Entry {
            link,
            started_at: now,
            phase: Phase::AwaitingHead,
            received: 0,
            replaced: false,
            error_body: Vec::new(),
        };
        if self.entries.insert(id.clone(), entry).is_some() {
            bail!("request id {id} was handed out twice");
        }
        self.open += 1;
        if let Some(link) = link {
            *self.open_per_link.entry(link).or_default() += 1;
        }
        Ok(())
    }

    /// The client gave up on `id`; returns whether it was still open.
    pub fn cancel(&mut self, id: &RequestId) -> bool {
        let open = self.entries.get(id).is_some_and(|e| e.phase.is_open());
        if open {
            self.close(id, Phase::Cancelled);
        }
        open
    }

    fn close(&mut self, id: &RequestId, phase: Phase) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if !e.phase.is_open() {
            return;
        }
        e.phase = phase;
        self.open -= 1;
        if let Some(link) = e.link {
            if let Some(n) = self.open_per_link.get_mut(&link) {
                *n -= 1;
                if *n == 0 {
                    self.open_per_link.remove(&link);
                }
            }
        }
    }

    pub fn entry(&self, id: &RequestId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn is_open(&self, id: &RequestId) -> bool {
        self.entries.get(id).is_some_and(|e| e.phase.is_open())
    }

    /// Requests started and not yet ended, failed or cancelled.
    pub fn open_count(&self) -> usize {
        self.open
    }

    pub fn open_on(&self, link: LinkId) -> usize {
        self.open_per_link.get(&link).copied().unwrap_or(0)
    }

    /// Connections that have open requests.
    pub fn links_with_open(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.open_per_link.keys().copied()
    }

    pub fn ids(&self) -> impl Iterator<Item = (&RequestId, &Entry)> {
        self.entries.iter()
    }

    /// Every request ended exactly once (or was cancelled).
    pub fn check_all_ended(&self) -> Result<(), Violation> {
        if let Some((id, e)) = self.entries.iter().find(|(_, e)| e.phase.is_open()) {
            bail!(
                "request {id} never ended: still {:?} after the drain",
                e.phase
            );
        }
        Ok(())
    }

    /// Takes one event the gateway emitted for the client of `id`.
    /// `record` is what the upstream has sent for it so far.
    pub fn observe(
        &mut self,
        id: &RequestId,
        event: &ResponseEvent,
        record: Option<&UpstreamRecord>,
        cx: &CheckContext<'_>,
    ) -> Result<(), Violation> {
        let what = event_name(event);
        let Some(e) = self.entries.get_mut(id) else {
            bail!("{what} for request {id}, which was never started");
        };
        match e.phase {
            Phase::Ended | Phase::Failed(_) => bail!(
                "{what} for request {id} after it already ended ({:?})",
                e.phase
            ),
            Phase::Cancelled => bail!("{what} for request {id} after its client cancelled it"),
            Phase::AwaitingHead | Phase::Receiving => {}
        }
        let closing = match event {
            ResponseEvent::Head(head) => {
                if e.phase != Phase::AwaitingHead {
                    bail!("second head for request {id}");
                }
                let Some(r) = record else {
                    bail!("head for request {id}, which no upstream has seen");
                };
                if r.replaced_by_502() {
                    if head.status != 502 {
                        bail!("request {id}: the upstream failed before its head, yet the client got {}", head.status);
                    }
                } else {
                    if r.status != Some(head.status) {
                        bail!(
                            "request {id}: client got status {}, upstream sent {:?}",
                            head.status,
                            r.status
                        );
                    }
                    if head.headers.get("x-sim-request") != Some(id.as_str()) {
                        bail!(
                            "request {id}: got the head of another request ({:?})",
                            head.headers.get("x-sim-request")
                        );
                    }
                }
                e.replaced = r.replaced_by_502();
                e.phase = Phase::Receiving;
                None
            }
            ResponseEvent::Body(piece) => {
                if e.phase == Phase::AwaitingHead {
                    bail!("body for request {id} before its head");
                }
                if e.replaced {
                    e.error_body.extend_from_slice(piece);
                } else {
                    let Some(r) = record else {
                        bail!("body for request {id}, which no upstream has seen");
                    };
                    let end = e.received + piece.len();
                    if end > r.sent {
                        bail!(
                            "request {id}: client has {end} body bytes, upstream sent only {}",
                            r.sent
                        );
                    }
                    if r.body[e.received..end] != piece[..] {
                        bail!(
                            "request {id}: body bytes {}..{end} differ from what the upstream sent",
                            e.received
                        );
                    }
                }
                e.received += piece.len();
                None
            }
            ResponseEvent::End => {
                if e.phase == Phase::AwaitingHead {
                    bail!("end for request {id} before its head");
                }
                let Some(r) = record else {
                    bail!("end for request {id}, which no upstream has seen");
                };
                if e.replaced {
                    let json: serde_json::Value =
                        serde_json::from_slice(&e.error_body).map_err(|err| {
                            Violation(format!(
                                "request {id}: the receiver's 502 body is not JSON: {err}"
                            ))
                        })?;
                    if json["error"].as_str() != r.error.as_deref() {
                        bail!("request {id}: 502 body {json} does not carry the upstream's error {:?}", r.error);
                    }
                } else if !r.finished || e.received != r.body.len() {
                    bail!(
                        "request {id} ended after {} body bytes; upstream sent {} of {} (finished: {})",
                        e.received,
                        r.sent,
                        r.body.len(),
                        r.finished
                    );
                }
                Some(Phase::Ended)
            }
            ResponseEvent::Failed(f) => {
                check_failure(id, e, f, record, cx)?;
                Some(Phase::Failed(f.status))
            }
        };
        if let Some(phase) = closing {
            self.close(id, phase);
        }
        Ok(())
    }
}

/// A failure must have a cause the simulation can point to.
fn check_failure(
    id: &RequestId,
    e: &Entry,
    f: &Failure,
    record: Option<&UpstreamRecord>,
    cx: &CheckContext<'_>,
) -> Result<(), Violation> {
    match f.status {
        504 => {
            let waited = cx.now.saturating_sub(e.started_at);
            if waited < cx.request_timeout {
                bail!(
                    "request {id} got 504 after {waited:?}, before the {:?} timeout",
                    cx.request_timeout
                );
            }
        }
        502 => {
            let over = |limit: u64| f.error.ends_with(&format!(" exceeds the limit of {limit}"));
            if let Some(why) = f.error.strip_prefix("Receiver error: ") {
                let raised = record.is_some_and(|r| {
                    r.error.as_deref() == Some(why) || r.aborted.as_deref() == Some(why)
                });
                // A request refused on its first frame never reaches the upstream.
                let refused = why.starts_with("bad request chunks: ")
                    && cx.request_over_limit.is_some_and(over);
                if !raised && !refused {
                    bail!(
                        "request {id}: 502 {:?} names nothing its upstream or receiver raised",
                        f.error
                    );
                }
            } else if f.error.ends_with(&format!(
                "is over the gateway's max_response_bytes ({})",
                cx.response_limit
            )) {
                let exceeded = matches!(record, Some(r) if r.sent as u64 > cx.response_limit);
                if !exceeded {
                    bail!(
                        "request {id}: 502 {:?}, yet its upstream sent no more than the limit",
                        f.error
                    );
                }
            } else if f.error.starts_with("Receiver connection lost") {
                if !e.link.is_some_and(|l| cx.closed_links.contains(&l)) {
                    bail!(
                        "request {id}: 502 {:?} while its link {:?} is up",
                        f.error,
                        e.link
                    );
                }
            } else if cx.known_bugs.error_frame_mid_stream
                && f.error.starts_with("Invalid response from receiver")
                && f.error
                    .contains("unchunked frame while a chunked message is in progress")
                && record.is_some_and(|r| {
                    r.head_on_wire && !r.finished && (r.error_cut || r.aborted.is_some())
                })
            {
                // KnownBugs::error_frame_mid_stream, in exactly its shape.
            } else {
                bail!("request {id}: unexpected 502 {:?}", f.error);
            }
        }
        // The client's upload is the one late (RFC 9110 §15.5.9): it went
        // quiet for the request timeout or outlived the upload timeout,
        // either way no sooner than the request timeout after the start.
        408 => {
            let waited = cx.now.saturating_sub(e.started_at);
            if !f.error.starts_with("Request body") {
                bail!(
                    "request {id}: 408 {:?} does not name the request body",
                    f.error
                );
            }
            if waited < cx.request_timeout {
                bail!(
                    "request {id} got 408 after {waited:?}, before the {:?} timeout",
                    cx.request_timeout
                );
            }
        }
        status => {
            bail!(
                "request {id} failed with {status}: only 408, 502 and 504 may come after the start"
            )
        }
    }
    Ok(())
}

fn event_name(event: &ResponseEvent) -> String {
    match event {
        ResponseEvent::Head(h) => format!("head {}", h.status),
        ResponseEvent::Body(b) => format!("body({})", b.len()),
        ResponseEvent::End => "end".to_owned(),
        ResponseEvent::Failed(f) => format!("failed {} {:?}", f.status, f.error),
    }
}
