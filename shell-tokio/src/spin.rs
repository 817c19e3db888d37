//! Spinning before a lane sleeps ([`shell_common::spin`]) on tokio.
//!
//! tokio's current-thread scheduler calls the runtime's park hook when it
//! has no ready task, and skips the sleep when the hook made a task ready:
//! it then polls its sockets without blocking and runs what they woke. So
//! a lane spins by waking [`Spinner`], a task that does nothing, from the
//! park hook ([`spins`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use shell_common::spin;

thread_local! {
    /// The waker of this lane's [`Spinner`].
    static SPINNER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// For the runtime's `on_thread_park` hook: true when the lane polls again
/// instead of sleeping (its spinner was woken, so tokio does not sleep);
/// the hook's other work waits for a real sleep.
pub fn spins() -> bool {
    spin::should_spin(Instant::now())
        && SPINNER.with_borrow(|waker| waker.as_ref().map(Waker::wake_by_ref).is_some())
}

/// The task a lane wakes to keep its thread from sleeping: each poll only
/// keeps its waker for [`spins`]. Spawn one on each lane's runtime.
pub struct Spinner;

impl Future for Spinner {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        SPINNER.with_borrow_mut(|waker| match waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        });
        Poll::Pending
    }
}
