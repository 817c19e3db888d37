//! A deterministic simulation of anpx: one gateway, one to four receivers
//! that disconnect, stall and reconnect, their upstream services, and many
//! public clients, all driven by one seeded RNG in virtual time.
//!
//! Every connection comes in through the gateway's receiver admissions
//! (`anpx_core::handshake::Admissions`): handshake slots capped in all and
//! per address (receivers may share one), a scripted verifier that answers
//! after milliseconds or seconds, refuses, or grants something else, DID
//! logins whose documents go through the core's `DocumentFetches` (a
//! small pool shared by document hosts, fetches that fail or never answer
//! and are given up at their deadline, failed hosts remembered, cached
//! documents reused), offers
//! with untidy, absent or garbled header values, handshakes that go away
//! before the answer, and a reconnect after every refusal. Each decision is
//! held against an oracle written from the documented rules, every
//! handshake ends exactly once, and no slot is left at the end.
//!
//! A seed fixes the scenario (timeouts, in-flight caps, chunk sizes, who
//! serves which service URL, link latencies, fault rates) and every choice
//! after it, so a failing seed replays exactly. After every step the
//! gateway's accounting is compared with what the clients and upstreams
//! saw, and every event a client gets is checked as it arrives: order,
//! exactly one ending, bytes identical to what the upstream sent, failures
//! with a cause the simulation can point to. At the end the run is drained
//! and every table must be empty.
//!
//! Run one seed: [`run`]. Environment knobs used by the test driver:
//! `ANPX_SIM_SEEDS` (seed count), `ANPX_SIM_FIRST_SEED`, `ANPX_SIM_SEED`
//! (the seed to replay) and `ANPX_SIM_TOLERATE` (names of [`KnownBugs`] to
//! tolerate).

mod body;
mod client;
pub mod cluster;
pub mod invariants;
mod network;
mod outcome;
mod routes;
mod scenario;
mod trace;
mod upstream;
mod world;

pub use invariants::{KnownBugs, Ledger, UpstreamRecord, Violation};
pub use outcome::{Counters, Injection, Options, Report, SimFailure};
pub use trace::TraceMode;
pub use world::run;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(e) => panic!("{name}={value:?}: {e}"),
    }
}

/// How many seeds to run: `ANPX_SIM_SEEDS`, else `default`.
pub fn seed_count(default: u64) -> u64 {
    env_u64("ANPX_SIM_SEEDS").unwrap_or(default)
}

/// The first seed of a batch: `ANPX_SIM_FIRST_SEED`, else 0.
pub fn first_seed() -> u64 {
    env_u64("ANPX_SIM_FIRST_SEED").unwrap_or(0)
}

/// The seed to replay, from `ANPX_SIM_SEED`.
pub fn replay_seed() -> Option<u64> {
    env_u64("ANPX_SIM_SEED")
}

/// Default options, tolerating the known core bugs `ANPX_SIM_TOLERATE`
/// names (comma-separated [`KnownBugs`] fields, or `all`), for running the
/// simulation against a core without their fixes.
pub fn options_from_env() -> Options {
    let tolerate = std::env::var("ANPX_SIM_TOLERATE").unwrap_or_default();
    Options {
        known_bugs: KnownBugs::default().tolerating(&tolerate),
        ..Options::default()
    }
}
