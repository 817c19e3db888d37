//! tokio's half of the shared loops: spawning and timers.

use std::time::Instant;

use shell_common::receiver::{BoxFuture, Runtime};

/// Tasks and timers on the current tokio runtime.
pub(crate) struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(at.into()))
    }
}
