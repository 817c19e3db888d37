//! A deadline queue for the state machines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines ordered by time, earliest first.
///
/// Entries are never removed early: when the thing a deadline belongs to is
/// gone or its deadline moved, the entry is simply found stale when it comes
/// due. That keeps every arm O(log n) and lets activity push a deadline out
/// by updating a field instead of touching the queue.
#[derive(Debug)]
pub(crate) struct TimerQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord> TimerQueue<K> {
    pub(crate) fn arm(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline, possibly a stale one: waking early is harmless.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(entry)| entry)
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(t + Duration::from_secs(3), 3);
        q.arm(t + Duration::from_secs(1), 1);
        q.arm(t + Duration::from_secs(2), 2);
        assert_eq!(q.next(), Some(t + Duration::from_secs(1)));
        assert!(q.pop_due(t).is_none());
        let due: Vec<_> = std::iter::from_fn(|| q.pop_due(t + Duration::from_secs(2)))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(q.len(), 1);
    }
}
