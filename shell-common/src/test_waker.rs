//! A waker that counts its wake-ups, for unit tests that poll futures by
//! hand and check whether (and how often) they asked to be polled again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// Wake-ups of the waker made by [`counting_waker`].
pub(crate) struct WakeCount(AtomicUsize);

impl WakeCount {
    /// How many times the waker was woken.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker and the count of its wake-ups.
pub(crate) fn counting_waker() -> (Arc<WakeCount>, Waker) {
    let count = Arc::new(WakeCount(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}
