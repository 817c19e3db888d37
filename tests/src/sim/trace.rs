//! The event log of a run: folded into a digest (to compare runs) and, when
//! replaying, printed line by line.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::body::fnv1a_extend;

/// What to do with the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceMode {
    /// Nothing: bulk runs skip formatting entirely.
    #[default]
    Off,
    /// Hash every line into the digest.
    Digest,
    /// Hash and print every line.
    Print,
    /// Hash and keep every line, to show where two runs part.
    Keep,
}

/// The log of one run.
#[derive(Debug)]
pub struct Trace {
    mode: TraceMode,
    digest: u64,
    lines: u64,
    buf: String,
    kept: Vec<String>,
}

impl Trace {
    pub fn new(mode: TraceMode) -> Self {
        Trace {
            mode,
            digest: 0xcbf2_9ce4_8422_2325,
            lines: 0,
            buf: String::new(),
            kept: Vec::new(),
        }
    }

    /// Whether lines are wanted at all; callers test this before formatting.
    pub fn on(&self) -> bool {
        self.mode != TraceMode::Off
    }

    pub fn line(&mut self, step: &str, now: Duration, args: fmt::Arguments<'_>) {
        self.buf.clear();
        // Virtual time only: wall-clock instants would make digests differ.
        let _ = write!(
            self.buf,
            "[{step:>5} {:>11.3}ms] {args}",
            now.as_secs_f64() * 1000.0
        );
        self.digest = fnv1a_extend(self.digest, self.buf.as_bytes());
        self.digest = fnv1a_extend(self.digest, b"\n");
        self.lines += 1;
        match self.mode {
            TraceMode::Print => println!("{}", self.buf),
            TraceMode::Keep => self.kept.push(self.buf.clone()),
            TraceMode::Off | TraceMode::Digest => {}
        }
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn take_kept(&mut self) -> Vec<String> {
        std::mem::take(&mut self.kept)
    }
}

/// The first characters of a request id, enough to tell ids apart in a log.
pub fn short(id: &anpx_core::RequestId) -> &str {
    let s = id.as_str();
    &s[..s.len().min(8)]
}
