//! A future polled again at once when its own poll woke it.
//!
//! A task that polls several futures itself often wakes itself: the
//! receiver's connection loop reads, in the same poll, the reply a call it
//! polls has just sent it, and `FuturesUnordered` wakes its parent whenever
//! the only future it holds stays pending (its rule against starving other
//! tasks). A runtime takes a task woken while it runs for a task that
//! yields: tokio queues it behind the others and unparks another worker to
//! take it, which costs a futex or eventfd write, two context switches and
//! an empty poll on another core; smol's executor likewise notifies a
//! sleeping thread. At one request at a time that was one or two such
//! wake-ups per request in the receiver.
//!
//! Inside [`Repoll`], a wake-up that comes while the future is being polled
//! is noted and the future is polled again before the poll returns; only
//! wake-ups that come while it waits reach the runtime. A future that keeps
//! waking itself is polled at most [`REPOLLS`] more times in one poll, then
//! yields to the runtime as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// How many times one poll may poll the future again for wake-ups of its
/// own before it yields to the runtime.
pub const REPOLLS: usize = 4;

/// Polls `F`, and polls it again at once when that poll woke it.
pub struct Repoll<F> {
    future: Pin<Box<F>>,
    flag: Arc<Flag>,
    /// The waker the future sees: [`Flag`] behind it.
    waker: Waker,
}

struct Flag {
    /// The future is being polled: a wake-up is only noted.
    running: AtomicBool,
    /// A wake-up came while it was polled.
    woken: AtomicBool,
    /// The task's own waker, for wake-ups while it waits.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.running.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

impl<F: Future> Repoll<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        let flag = Arc::new(Flag {
            running: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        Repoll {
            future: Box::pin(future),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.flag.task.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..=REPOLLS {
            this.flag.woken.store(false, Ordering::SeqCst);
            this.flag.running.store(true, Ordering::SeqCst);
            let polled = this.future.as_mut().poll(&mut inner);
            this.flag.running.store(false, Ordering::SeqCst);
            if polled.is_ready() {
                return polled;
            }
            // A wake-up after `running` was cleared went to the task itself.
            if !this.flag.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the runtime run the others first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::{counting_waker, WakeCount};
    use std::sync::atomic::AtomicUsize;

    /// Wakes itself on its first `n` polls, then is ready.
    struct WakesItself {
        left: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for WakesItself {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn task() -> (Arc<WakeCount>, Waker) {
        counting_waker()
    }

    #[test]
    fn a_wake_up_during_the_poll_polls_again_instead_of_waking_the_task() {
        let (woken, waker) = task();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = Repoll::new(WakesItself {
            left: 2,
            polls: polls.clone(),
        });
        let mut cx = Context::from_waker(&waker);
        assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Ready(()));
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        assert_eq!(woken.get(), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_to_the_runtime() {
        let (woken, waker) = task();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = Repoll::new(WakesItself {
            left: usize::MAX,
            polls: polls.clone(),
        });
        let mut cx = Context::from_waker(&waker);
        assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Pending);
        assert_eq!(polls.load(Ordering::SeqCst), REPOLLS + 1);
        assert_eq!(woken.get(), 1);
    }

    #[test]
    fn a_wake_up_while_waiting_reaches_the_task() {
        let (woken, waker) = task();
        let (tx, rx) = futures_channel::oneshot::channel::<u8>();
        let mut f = Repoll::new(rx);
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(woken.get(), 0);
        tx.send(7).unwrap();
        assert_eq!(woken.get(), 1);
        assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Ready(Ok(7)));
    }
}
