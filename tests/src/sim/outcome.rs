//! What a run is asked to do and what it reports.

use std::fmt;
use std::time::Duration;

use super::invariants::{KnownBugs, Violation};
use super::trace::TraceMode;

/// How a run is observed and checked.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub trace: TraceMode,
    /// Core bugs tolerated (in their exact diagnosed shape only).
    pub known_bugs: KnownBugs,
    /// A deliberate fault in the client's view, to prove the checker bites.
    pub inject: Option<Injection>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trace: TraceMode::Off,
            known_bugs: KnownBugs::default(),
            inject: None,
        }
    }
}

/// Faults injected between the gateway and the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// The first `End` the gateway emits is seen twice.
    DuplicateEnd,
    /// The first connection to close keeps its handshake slot, as a
    /// shell that forgot to end it would.
    LeakedSlot,
}

/// What happened in a run, summed over seeds to show what was exercised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub started: u64,
    pub refused_400: u64,
    pub refused_404: u64,
    pub refused_503: u64,
    /// Refused because the client's address had its share of the route.
    pub refused_429: u64,
    pub completed: u64,
    pub failed_502: u64,
    /// Of those, responses the gateway refused as invalid.
    pub invalid_responses: u64,
    /// Of those, responses over the gateway's `max_response_bytes` (a
    /// limit, not a receiver fault: the link stays).
    pub over_limit: u64,
    pub failed_504: u64,
    /// The client's upload was late (408).
    pub failed_408: u64,
    pub cancelled: u64,
    pub upload_pieces: u64,
    pub upstream_errors: u64,
    pub receiver_aborts: u64,
    pub disconnects: u64,
    pub freezes: u64,
    pub cuts: u64,
    pub gateway_closes: u64,
    pub receiver_closes: u64,
    pub reconnects: u64,
    /// Receiver handshakes begun, accepted, and refused by status.
    pub handshakes: u64,
    pub handshakes_accepted: u64,
    pub handshakes_abandoned: u64,
    pub handshake_400: u64,
    pub handshake_401: u64,
    pub handshake_403: u64,
    pub handshake_429: u64,
    pub handshake_503: u64,
    /// Handshakes whose features value was not text (plain v1).
    pub garbled_features: u64,
    /// DID document fetches started, logins served from the cache, and
    /// logins refused because the fetch could not start or failed.
    pub document_fetches: u64,
    pub cached_documents: u64,
    pub fetch_refused: u64,
    pub fetch_failed: u64,
    pub events: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.started += o.started;
        self.refused_400 += o.refused_400;
        self.refused_404 += o.refused_404;
        self.refused_503 += o.refused_503;
        self.refused_429 += o.refused_429;
        self.completed += o.completed;
        self.failed_502 += o.failed_502;
        self.invalid_responses += o.invalid_responses;
        self.over_limit += o.over_limit;
        self.failed_504 += o.failed_504;
        self.failed_408 += o.failed_408;
        self.cancelled += o.cancelled;
        self.upload_pieces += o.upload_pieces;
        self.upstream_errors += o.upstream_errors;
        self.receiver_aborts += o.receiver_aborts;
        self.disconnects += o.disconnects;
        self.freezes += o.freezes;
        self.cuts += o.cuts;
        self.gateway_closes += o.gateway_closes;
        self.receiver_closes += o.receiver_closes;
        self.reconnects += o.reconnects;
        self.handshakes += o.handshakes;
        self.handshakes_accepted += o.handshakes_accepted;
        self.handshakes_abandoned += o.handshakes_abandoned;
        self.handshake_400 += o.handshake_400;
        self.handshake_401 += o.handshake_401;
        self.handshake_403 += o.handshake_403;
        self.handshake_429 += o.handshake_429;
        self.handshake_503 += o.handshake_503;
        self.garbled_features += o.garbled_features;
        self.document_fetches += o.document_fetches;
        self.cached_documents += o.cached_documents;
        self.fetch_refused += o.fetch_refused;
        self.fetch_failed += o.fetch_failed;
        self.events += o.events;
    }
}

/// A run that kept every rule.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    /// Hash of the event log (when tracing was on).
    pub digest: u64,
    pub trace_lines: u64,
    /// The log itself, with [`TraceMode::Keep`].
    pub trace: Vec<String>,
    pub counters: Counters,
    pub virtual_time: Duration,
}

/// A run that broke a rule, and how to see it again.
#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub step: String,
    pub violation: Violation,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation seed {} failed at step {}: {}\nreplay: ANPX_SIM_SEED={} cargo test -p anpx-tests --test simulation replay -- --nocapture",
            self.seed, self.step, self.violation, self.seed
        )
    }
}

impl std::error::Error for SimFailure {}
