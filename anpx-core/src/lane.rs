//! Lanes: the threads a shell runs its connections on, each with its own
//! tasks, so that a request accepted on one is served there end to end.
//!
//! The machine does no threading of its own; it only keeps which lane each
//! receiver connection is served on and, when a request says which lane it
//! came in on, prefers a receiver connection of the same lane
//! ([`Gateway::start_request_on`](crate::Gateway::start_request_on)). A
//! request handed to a connection on another lane wakes that lane's thread
//! for each of its frames, where one on its own lane runs without a
//! hand-off between threads.

use std::fmt;

/// One of a shell's lanes, numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lane(pub u16);

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lane-{}", self.0)
    }
}

/// How many more requests in flight a receiver connection on the
/// request's own lane may hold than the least loaded one elsewhere and
/// still be chosen. Preferring the own lane outright would pin each lane's
/// traffic to one receiver however slow it answers; with no preference,
/// every other request would cross lanes. Eight keeps a request on its
/// lane through the ordinary ups and downs of a loaded route (tens of
/// requests in flight), and moves it once its own receiver falls clearly
/// behind.
pub const LANE_SLACK: usize = 8;

/// How [`Gateway`](crate::Gateway) ranks a receiver connection for a
/// request, lowest first: its requests in flight, plus [`LANE_SLACK`]
/// when it is served on a lane other than the request's; on a tie, the
/// one on the request's lane. A request or a connection with no lane is
/// on every lane.
pub fn rank(in_flight: usize, link: Option<Lane>, request: Option<Lane>) -> (usize, bool) {
    match (link, request) {
        (Some(l), Some(r)) if l != r => (in_flight.saturating_add(LANE_SLACK), true),
        _ => (in_flight, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_lane_costs_the_slack() {
        assert_eq!(
            rank(3, Some(Lane(0)), Some(Lane(1))),
            (3 + LANE_SLACK, true)
        );
        assert_eq!(rank(3, Some(Lane(1)), Some(Lane(1))), (3, false));
        // The same load on the own lane ranks first.
        // LANE_SLACK in flight on the own lane ties an idle connection
        // elsewhere, and the own lane wins the tie.
        let own = rank(LANE_SLACK, Some(Lane(1)), Some(Lane(1)));
        let idle_elsewhere = rank(0, Some(Lane(0)), Some(Lane(1)));
        assert_eq!(own.0, idle_elsewhere.0);
        assert!(own < idle_elsewhere);
    }

    #[test]
    fn no_lane_is_every_lane() {
        assert_eq!(rank(3, None, Some(Lane(1))), (3, false));
        assert_eq!(rank(3, Some(Lane(1)), None), (3, false));
        assert_eq!(rank(usize::MAX, Some(Lane(0)), Some(Lane(1))).0, usize::MAX);
    }
}
