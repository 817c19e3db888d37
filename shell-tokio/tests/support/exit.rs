//! Waiting a bounded time for a child process to exit, for the tests of
//! what makes a binary stop (and of what must not let it start).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The process's exit status, once it exits within `limit`; `None` when it
/// is still running then.
pub fn exits_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
