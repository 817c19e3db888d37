//! Lanes: the threads a shell runs its connections on, each with tasks of
//! its own (`anpx_core::lane`).
//!
//! A shell with more than one lane starts a thread per lane and marks it
//! with [`enter`]; the shared accept loop hands each accepted connection
//! to the next lane in turn ([`Runtime::spawn_owned_on`]), and whatever
//! that connection's task starts stays on its lane. The gateway machine
//! reads [`current`] to know which lane a request came in on and which
//! lane a receiver connection is served on, and keeps a request on its
//! lane where it can: a request that stays on one thread from the
//! client's socket to the receiver connection's needs no hand-off between
//! threads, each of which is a wake-up of a sleeping thread.
//!
//! [`Runtime::spawn_owned_on`]: crate::receiver::Runtime::spawn_owned_on

use std::cell::Cell;

pub use anpx_core::lane::Lane;

thread_local! {
    static CURRENT: Cell<Option<Lane>> = const { Cell::new(None) };
}

/// The lane the calling thread runs, if it runs one.
pub fn current() -> Option<Lane> {
    CURRENT.get()
}

/// Marks the calling thread as the one that runs `lane`.
pub fn enter(lane: Lane) {
    CURRENT.set(Some(lane));
}

/// The lane after `lane`, of `count`, in turn.
pub fn next(lane: Lane, count: u16) -> Lane {
    Lane((lane.0 + 1) % count.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_on_no_lane_until_it_enters_one() {
        std::thread::spawn(|| {
            assert_eq!(current(), None);
            enter(Lane(3));
            assert_eq!(current(), Some(Lane(3)));
        })
        .join()
        .unwrap();
        std::thread::spawn(|| assert_eq!(current(), None))
            .join()
            .unwrap();
    }

    #[test]
    fn lanes_are_taken_in_turn() {
        assert_eq!(next(Lane(0), 2), Lane(1));
        assert_eq!(next(Lane(1), 2), Lane(0));
        assert_eq!(next(Lane(0), 1), Lane(0));
        assert_eq!(next(Lane(0), 0), Lane(0));
    }
}
