//! hyper's timer for the public HTTP/1 connections: one runtime timer for
//! all of them instead of one per request.
//!
//! hyper's HTTP/1 server arms a new sleep for every request head it waits
//! for (`header_read_timeout`) and drops it once the head is in. With
//! tokio's timer each is an entry in the runtime's timer wheel; and since
//! the entry is gone while the request is served, the runtime parks with a
//! later wake-up than the next request's sleep, so registering that sleep
//! unparks the runtime's driver: an eventfd write, and a worker woken for
//! nothing, on every request. Here the connections' sleeps wait in one
//! queue, and one task sleeps until the earliest deadline. That task is
//! never moved to a later deadline when sleeps go away, so the next
//! request's sleep (later than the last one's) only joins the queue; the
//! task wakes once per `header_read_timeout` at worst, finds nothing due,
//! and sleeps until the earliest deadline left.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

#[derive(Default)]
struct Queue {
    /// Waiting sleeps by deadline, each with its task's waker.
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// The deadline the firing task sleeps until; `None` while it has
    /// nothing to wait for.
    armed: Option<Instant>,
    /// The firing task's waker, to make it sleep until an earlier deadline.
    firing: Option<Waker>,
}

type Shared = Arc<Mutex<Queue>>;

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sleeps of every public connection, fired by one task
/// ([`HeadTimer::fire`]).
#[derive(Clone, Default)]
pub(crate) struct HeadTimer(Shared);

impl HeadTimer {
    /// The task that wakes due sleeps; it ends when every handle to the
    /// timer is gone.
    pub(crate) fn fire(&self) -> impl Future<Output = ()> + Send + 'static {
        run(Arc::downgrade(&self.0))
    }

    /// Sleeps waiting now, for tests.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.0).waiting.len()
    }
}

async fn run(queue: Weak<Mutex<Queue>>) {
    loop {
        let at = {
            let Some(queue) = queue.upgrade() else {
                return;
            };
            let mut q = lock(&queue);
            let now = Instant::now();
            // Due sleeps are forgotten and woken (after the lock is let
            // go); each finds its deadline passed when polled.
            let mut due = Vec::new();
            while let Some(entry) = q.waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            q.armed = q.waiting.keys().next().map(|(at, _)| *at);
            let at = q.armed;
            drop(q);
            due.into_iter().for_each(Waker::wake);
            at
        };
        let mut nap = pin!(async {
            match at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        });
        poll_fn(|cx| {
            if nap.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let Some(queue) = queue.upgrade() else {
                return Poll::Ready(());
            };
            let mut q = lock(&queue);
            if q.armed != at {
                // A sleep with an earlier deadline came.
                return Poll::Ready(());
            }
            q.firing = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep {
            queue: self.0.clone(),
            deadline,
            key: None,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        if let Some(mut sleep) = sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            sleep.leave();
            sleep.deadline = new_deadline;
        }
    }
}

/// One connection's sleep.
struct HeadSleep {
    queue: Shared,
    deadline: Instant,
    /// Its place in the queue while it waits.
    key: Option<(Instant, u64)>,
}

impl HeadSleep {
    fn leave(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.queue).waiting.remove(&key);
        }
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.leave();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let (key, firing) = {
            let mut q = lock(&self.queue);
            let key = match self.key {
                Some(key) => key,
                None => {
                    q.next_id += 1;
                    (deadline, q.next_id)
                }
            };
            q.waiting.insert(key, cx.waker().clone());
            // Only a deadline earlier than the one the firing task sleeps
            // until moves it.
            let firing = if q.armed.is_none_or(|armed| deadline < armed) {
                q.armed = Some(deadline);
                q.firing.take()
            } else {
                None
            };
            (key, firing)
        };
        self.key = Some(key);
        if let Some(w) = firing {
            w.wake();
        }
        Poll::Pending
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_ends_at_its_deadline_and_leaves_the_queue() {
        let timer = HeadTimer::default();
        tokio::spawn(timer.fire());
        let deadline = Instant::now() + Duration::from_millis(30);
        timer.sleep_until(deadline).await;
        assert!(Instant::now() >= deadline);
        assert_eq!(timer.waiting(), 0);
    }

    #[tokio::test]
    async fn an_earlier_sleep_is_not_held_up_by_a_later_one() {
        let timer = HeadTimer::default();
        tokio::spawn(timer.fire());
        let mut late = timer.sleep(Duration::from_secs(3600));
        assert!(futures_util::poll!(late.as_mut()).is_pending());
        let soon = timer.sleep(Duration::from_millis(20));
        // Generous: the sleep fires after 20 ms unless it waits for the
        // hour-long one.
        let fired = tokio::time::timeout(Duration::from_secs(30), soon).await;
        assert!(fired.is_ok(), "the earlier sleep waited for the later one");
        assert_eq!(timer.waiting(), 1);
        drop(late);
        assert_eq!(timer.waiting(), 0);
    }

    #[tokio::test]
    async fn a_reset_sleep_waits_for_its_new_deadline() {
        let timer = HeadTimer::default();
        tokio::spawn(timer.fire());
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        let deadline = Instant::now() + Duration::from_millis(20);
        timer.reset(&mut sleep, deadline);
        assert_eq!(timer.waiting(), 0);
        let fired = tokio::time::timeout(Duration::from_secs(30), sleep).await;
        assert!(fired.is_ok(), "the reset sleep kept its old deadline");
        assert!(Instant::now() >= deadline);
    }
}
