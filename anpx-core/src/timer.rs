//! A deadline queue for the state machines.

use std::collections::BTreeSet;
use std::time::Instant;

/// Deadlines ordered by time, earliest first.
///
/// An owner whose thing ends before its deadline removes the entry
/// ([`disarm`](Self::disarm)), so the queue holds entries for live things
/// only: at thousands of requests a second, leaving finished requests'
/// deadlines to expire would keep a request timeout's worth of them (and
/// their ids) alive. Activity may still push a deadline out by updating a
/// field instead of touching the queue: the entry is then found early when
/// it comes due and re-armed.
#[derive(Debug)]
pub(crate) struct TimerQueue<K: Ord> {
    entries: BTreeSet<(Instant, K)>,
}

impl<K: Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            entries: BTreeSet::new(),
        }
    }
}

impl<K: Ord> TimerQueue<K> {
    pub(crate) fn arm(&mut self, at: Instant, key: K) {
        self.entries.insert((at, key));
    }

    /// Removes the entry armed at `at` for `key`, if it is still there.
    pub(crate) fn disarm(&mut self, at: Instant, key: K) {
        self.entries.remove(&(at, key));
    }

    /// The earliest deadline, possibly a stale one: waking early is harmless.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.entries.first().map(|(at, _)| *at)
    }

    /// Removes and returns one entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.next()? <= now {
            self.entries.pop_first()
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
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

    #[test]
    fn disarm_removes_only_the_matching_entry() {
        let t = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(t + Duration::from_secs(1), 1);
        q.arm(t + Duration::from_secs(2), 2);
        q.disarm(t + Duration::from_secs(2), 1);
        assert_eq!(q.len(), 2);
        q.disarm(t + Duration::from_secs(1), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(), Some(t + Duration::from_secs(2)));
    }
}
