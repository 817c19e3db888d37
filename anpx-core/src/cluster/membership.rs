//! A gateway's part in the cluster: what it knows of the others' routes,
//! when it tells them its own, and which service subjects it listens on.
//! The gateway machine owns one ([`Gateway::join_cluster`]), so the route
//! choice, the announcement rounds and the forgetting of silent gateways
//! run in the machine's time, under its one owner, like its other
//! deadlines.
//!
//! [`Gateway::join_cluster`]: crate::Gateway::join_cluster

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::message::RequestHead;
use crate::route::ServiceUrl;

use super::book::{Choice, RouteBook};
use super::Announcement;

/// How a gateway takes part in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// This gateway's node name, unique in the cluster.
    pub node: String,
    /// Time between two announcements of this gateway's routes.
    pub announce_interval: Duration,
    /// Silence after which another gateway is forgotten.
    pub route_ttl: Duration,
}

/// What the cluster side of the shell does for the machine: the bus
/// publishes and subscriptions, and one line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOutput {
    /// Publish this announcement on the routes subject. An empty one
    /// withdraws this gateway (it is leaving).
    Announce(Announcement),
    /// Take requests for this service URL: join its subject's queue group.
    Join(ServiceUrl),
    /// Stop taking requests for this service URL: leave its subject.
    Leave(ServiceUrl),
    /// This gateway fell silent past the time to live; its routes are
    /// forgotten.
    Forgotten(String),
}

/// One gateway's part in the cluster: what it knows of the others' routes,
/// when it tells them its own, and which service subjects it listens on.
/// The gateway machine owns one ([`Gateway::join_cluster`]), so these run in
/// the machine's time, under its one owner, like its other deadlines.
///
/// [`Gateway::join_cluster`]: crate::Gateway::join_cluster
///
/// ```
/// use std::time::{Duration, Instant};
/// use anpx_core::cluster::{ClusterOutput, Membership, MembershipConfig};
///
/// let t0 = Instant::now();
/// let second = Duration::from_secs(1);
/// let config = MembershipConfig {
///     node: "gw-a".into(),
///     announce_interval: second,
///     route_ttl: 3 * second,
/// };
/// let mut m = Membership::new(t0, config);
/// let api: anpx_core::ServiceUrl = "api.example.com".parse().unwrap();
///
/// // The first round is due at once: join the route's subject, announce it.
/// assert_eq!(m.poll_timeout(), Some(t0));
/// let out = m.round(t0, vec![api.clone()]);
/// assert_eq!(out[0], ClusterOutput::Join(api.clone()));
/// assert!(matches!(&out[1], ClusterOutput::Announce(a) if a.services == [api.clone()]));
/// assert_eq!(m.poll_timeout(), Some(t0 + second));
///
/// // The receiver left: the next round leaves the subject too.
/// let out = m.round(t0 + second, Vec::new());
/// assert_eq!(out[0], ClusterOutput::Leave(api));
/// ```
#[derive(Debug)]
pub struct Membership {
    book: RouteBook,
    node: String,
    interval: Duration,
    /// The service URLs whose subjects the shell was told to join.
    joined: BTreeSet<ServiceUrl>,
    next_round: Instant,
    /// Left the cluster: no more rounds and no request goes elsewhere, but
    /// the book stays, frozen, for the requests already forwarded.
    left: bool,
}

impl Membership {
    /// A member whose first round is due at `now`.
    pub fn new(now: Instant, config: MembershipConfig) -> Self {
        Membership {
            book: RouteBook::new(config.node.clone(), config.route_ttl),
            node: config.node,
            interval: config.announce_interval,
            joined: BTreeSet::new(),
            next_round: now,
            left: false,
        }
    }

    /// What this gateway knows of the cluster's routes.
    pub fn book(&self) -> &RouteBook {
        &self.book
    }

    /// Another gateway's announcement, heard at `now`.
    pub fn handle_announcement(&mut self, now: Instant, a: Announcement) {
        self.book.handle_announcement(now, a);
    }

    /// Where a public request for `host` goes first; see
    /// [`RouteBook::choose`].
    /// After [`leave`](Self::leave), always here.
    pub fn choose(&self, host: &str, head: &RequestHead) -> Choice {
        if self.left {
            return Choice::Local { fallback: false };
        }
        self.book.choose(host, head)
    }

    /// When the next round is due; `None` once left.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.left).then_some(self.next_round)
    }

    /// A round, if one is due at `now`, with `local` the routes this
    /// gateway's receivers serve: forgets the gateways that fell silent,
    /// joins the subjects of new local routes and leaves those of routes
    /// gone, and announces `local`. The next round is an interval after
    /// this one was due, or at once when this one came later than that.
    pub fn round(&mut self, now: Instant, local: Vec<ServiceUrl>) -> Vec<ClusterOutput> {
        if self.left || now < self.next_round {
            return Vec::new();
        }
        self.next_round = (self.next_round + self.interval).max(now);
        self.book.set_local(local.clone());
        let mut out: Vec<ClusterOutput> = self
            .book
            .handle_timeout(now)
            .into_iter()
            .map(ClusterOutput::Forgotten)
            .collect();
        let now_local: BTreeSet<ServiceUrl> = local.iter().cloned().collect();
        for gone in self.joined.difference(&now_local) {
            out.push(ClusterOutput::Leave(gone.clone()));
        }
        for new in now_local.difference(&self.joined) {
            out.push(ClusterOutput::Join(new.clone()));
        }
        self.joined = now_local;
        out.push(ClusterOutput::Announce(Announcement::new(
            self.node.clone(),
            local,
        )));
        out
    }

    /// Leaves the cluster: returns the withdrawal to announce and the
    /// subjects to leave; nothing after it, once left.
    pub fn leave(&mut self) -> Vec<ClusterOutput> {
        if std::mem::replace(&mut self.left, true) {
            return Vec::new();
        }
        let mut out = vec![ClusterOutput::Announce(Announcement::new(
            self.node.clone(),
            Vec::new(),
        ))];
        out.extend(
            std::mem::take(&mut self.joined)
                .into_iter()
                .map(ClusterOutput::Leave),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    fn member(t: Instant) -> Membership {
        Membership::new(
            t,
            MembershipConfig {
                node: "me".into(),
                announce_interval: Duration::from_secs(1),
                route_ttl: Duration::from_secs(3),
            },
        )
    }

    #[test]
    fn a_round_not_yet_due_does_nothing_and_a_late_one_does_not_bunch_up() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = member(t);
        assert_eq!(m.round(t, vec![url("a.com")]).len(), 2);
        assert!(m.round(t + s / 2, vec![url("a.com")]).is_empty());
        // Slightly late: the schedule keeps its beat.
        m.round(t + s + s / 10, vec![url("a.com")]);
        assert_eq!(m.poll_timeout(), Some(t + 2 * s));
        // Very late: the next round is due at once, not a burst of them.
        m.round(t + 10 * s, vec![url("a.com")]);
        assert_eq!(m.poll_timeout(), Some(t + 10 * s));
        m.round(t + 10 * s, vec![url("a.com")]);
        assert_eq!(m.poll_timeout(), Some(t + 11 * s));
    }

    #[test]
    fn silent_gateways_are_forgotten_at_a_round_and_said_so() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = member(t);
        m.handle_announcement(t, Announcement::new("other", vec![url("b.com")]));
        assert!(m.book().is_alive("other"));
        let out = m.round(t + 3 * s, Vec::new());
        assert_eq!(out[0], ClusterOutput::Forgotten("other".into()));
        assert!(!m.book().is_alive("other"));
    }

    #[test]
    fn leaving_withdraws_and_leaves_every_subject_joined() {
        let t = Instant::now();
        let mut m = member(t);
        m.handle_announcement(t, Announcement::new("other", vec![url("c.com")]));
        m.round(t, vec![url("a.com"), url("b.com/x")]);
        let out = m.leave();
        assert_eq!(
            out,
            vec![
                ClusterOutput::Announce(Announcement::new("me", Vec::new())),
                ClusterOutput::Leave(url("a.com")),
                ClusterOutput::Leave(url("b.com/x")),
            ]
        );
        assert!(m.leave().is_empty(), "left once");
        assert!(m
            .round(t + Duration::from_secs(5), vec![url("a.com")])
            .is_empty());
        assert_eq!(m.poll_timeout(), None);
        // What the book knew stays for the requests already forwarded, but
        // no new one goes elsewhere.
        assert!(m.book().is_alive("other"));
        let head = RequestHead::new("GET", "/");
        assert_eq!(m.choose("c.com", &head), Choice::Local { fallback: false });
    }
}
