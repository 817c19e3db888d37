//! A one-shot flag that many tasks can wait on: the stop order of a
//! receiver and the status changes it reports.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner<T> {
    value: T,
    version: u64,
    wakers: Vec<Waker>,
}

/// A value that tasks can read and wait on for changes, like a watch
/// channel without a runtime.
pub struct Watch<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

impl<T> Clone for Watch<T> {
    fn clone(&self) -> Self {
        Watch {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone> Watch<T> {
    /// A watch holding `value`.
    pub fn new(value: T) -> Self {
        Watch {
            inner: Arc::new(Mutex::new(Inner {
                value,
                version: 0,
                wakers: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic while holding the lock leaves a plain value behind, still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current value.
    pub fn get(&self) -> T {
        self.lock().value.clone()
    }

    /// The current value and its version, for [`Watch::changed`].
    pub fn get_versioned(&self) -> (T, u64) {
        let g = self.lock();
        (g.value.clone(), g.version)
    }

    /// Replaces the value and wakes every waiter.
    pub fn set(&self, value: T) {
        let wakers = {
            let mut g = self.lock();
            g.value = value;
            g.version += 1;
            std::mem::take(&mut g.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Ready once the version differs from `seen`.
    pub fn poll_changed(&self, cx: &mut Context<'_>, seen: u64) -> Poll<()> {
        let mut g = self.lock();
        if g.version != seen {
            return Poll::Ready(());
        }
        if !g.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            g.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until the version differs from `seen`.
    pub async fn changed(&self, seen: u64) {
        poll_fn(|cx| self.poll_changed(cx, seen)).await
    }
}

/// A stop order: fired once, seen by every clone.
pub type Stop = Watch<bool>;
