//! The bus failures a seed may draw beside the bus's loss, and the
//! production reactions to them the simulation drives into the machines:
//! publishes that fail (`forward_start_failed` for a forwarded request's
//! start, `served_publish_failed` for a served request's answer, nothing
//! for the rest, as the shell does), a gateway whose reply or serving
//! subscription ends (`forward_replies_ended`, `served_origins_ended`;
//! what is published to those inboxes afterwards reaches nobody), and a
//! gateway that leaves the cluster with requests in flight
//! (`leave_cluster`; it hears no announcement and takes no start any
//! more, as the shell's `Cluster::leave` stops both, and keeps its
//! requests going either way).
//!
//! The faults come from a random stream of their own, so a seed that draws
//! none runs exactly as it did before they existed, and a seed that draws
//! one keeps the rest of its scenario.
//!
//! Checked as each reaction is made: a request whose start could not be
//! published fails 502 at once (no timeout waited for); once a reply
//! subscription ended, no forwarded request is left in that machine and
//! each one's client failed 502 at that instant; once a serving
//! subscription ended, no served request is left; once an answer could
//! not be published, the served request's local request is gone; the
//! route book of a gateway that left stays as it was.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anpx_core::RequestId;

use super::bus::Side;
use super::{ClusterInjection, Ev, World};

/// Which of a gateway's subscriptions end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The one taking every forwarded request's replies.
    Replies,
    /// The one taking the forwarding gateways' messages for every served
    /// request.
    Origins,
    /// Both: the bus connection is gone.
    Both,
}

/// A seed's bus failures and what they did so far.
#[derive(Debug)]
pub struct Faults {
    rng: fastrand::Rng,
    /// Chance in a thousand that a publish fails, and how many did.
    publish_failures: u32,
    failed: u64,
    /// A gateway whose subscriptions end, and when.
    ending: Option<(usize, Instant, Ending)>,
    /// A gateway that leaves the cluster, and when.
    leaving: Option<(usize, Instant)>,
    /// Inboxes whose subscription ended.
    closed: BTreeSet<(usize, Side)>,
    /// The route book of each gateway that left, as it was then.
    frozen: Vec<(usize, Vec<String>)>,
    /// Served requests whose answer failed to publish, to be held against
    /// their machine once it settled.
    unpublished: Vec<(usize, RequestId)>,
}

impl Faults {
    /// The faults of `seed` for `nodes` gateways whose clients arrive
    /// from `start` on.
    pub fn new(seed: u64, nodes: usize, start: Instant) -> Faults {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x6275_735f_6661_756c);
        let at = |rng: &mut fastrand::Rng| start + Duration::from_millis(rng.u64(1500..30_000));
        // One seed in three draws one fault, so that most keep the checks
        // only a bus that delivers everything allows.
        let kind = rng.u8(0..9);
        let publish_failures = if kind == 0 { rng.u32(20..=80) } else { 0 };
        let ending = (kind == 1).then(|| {
            let which = match rng.u8(0..3) {
                0 => Ending::Replies,
                1 => Ending::Origins,
                _ => Ending::Both,
            };
            (rng.usize(0..nodes), at(&mut rng), which)
        });
        let leaving = (kind == 2).then(|| (rng.usize(0..nodes), at(&mut rng)));
        Faults {
            rng,
            publish_failures,
            failed: 0,
            ending,
            leaving,
            closed: BTreeSet::new(),
            frozen: Vec::new(),
            unpublished: Vec::new(),
        }
    }

    /// Whether every message published so far reached its subscriber: no
    /// publish failed and no subscription ended yet (a gateway leaving
    /// loses nothing). Asked when a request ends, so a fault to come later
    /// in the run takes no check away from it.
    pub fn delivered_all(&self) -> bool {
        self.failed == 0 && self.closed.is_empty()
    }

    /// Whether the next publish fails.
    pub fn publish_fails(&mut self) -> bool {
        let fails = self.publish_failures > 0 && self.rng.u32(0..1000) < self.publish_failures;
        self.failed += u64::from(fails);
        fails
    }

    /// Whether `side`'s subscription of gateway `node` ended: what comes
    /// for it reaches nobody.
    pub fn closed(&self, node: usize, side: Side) -> bool {
        self.closed.contains(&(node, side))
    }
}

impl World {
    /// Puts the seed's subscription ending and leave on the schedule.
    pub(super) fn schedule_faults(&mut self) {
        if let Some((i, at, which)) = self.faults.ending {
            self.schedule(at, Ev::SubscriptionsEnd(i, which));
        }
        if let Some((i, at)) = self.faults.leaving {
            self.schedule(at, Ev::Leave(i));
        }
    }

    /// The gateway a fault drawn for gateway `drawn` meets: the first live
    /// one from `drawn` on with requests in flight (forwarded, served, or
    /// either), so that it meets some; `None` when none has any yet and
    /// the fault waits a little, no longer than clients arrive.
    fn busy_node(&mut self, drawn: usize, forwarded: bool, served: bool, ev: Ev) -> Option<usize> {
        let n = self.nodes.len();
        let busy = (0..n).map(|k| (drawn + k) % n).find(|&i| {
            let (f, s) = self.nodes[i].backend.cluster_in_flight();
            self.nodes[i].alive && ((forwarded && f > 0) || (served && s > 0))
        });
        if busy.is_some() || self.now >= self.arrivals_end {
            return busy.or(Some(drawn)).filter(|&i| self.nodes[i].alive);
        }
        self.schedule(self.now + Duration::from_millis(250), ev);
        None
    }

    /// A gateway's subscriptions end, as the shell's `take_replies` and
    /// `take_origins` see it.
    pub(super) fn subscriptions_end(&mut self, drawn: usize, which: Ending) -> Result<(), String> {
        let forwarded = matches!(which, Ending::Replies | Ending::Both);
        let served = matches!(which, Ending::Origins | Ending::Both);
        let ev = Ev::SubscriptionsEnd(drawn, which);
        let Some(i) = self.busy_node(drawn, forwarded, served, ev) else {
            return Ok(());
        };
        let now = self.now;
        if matches!(which, Ending::Replies | Ending::Both) {
            self.faults.closed.insert((i, Side::Forwarding));
            let waiting: Vec<usize> = self.nodes[i]
                .public
                .values()
                .copied()
                .filter(|c| self.clients[*c].forwarded)
                .collect();
            self.counters.replies_ended += 1;
            self.counters.replies_ended_failed += waiting.len() as u64;
            self.nodes[i].backend.forward_replies_ended(now);
            self.settle()?;
            let (forwarded, _) = self.nodes[i].backend.cluster_in_flight();
            if forwarded > 0 {
                return Err(format!(
                    "{} still holds {forwarded} forwarded requests after its reply subscription ended",
                    self.nodes[i].name
                ));
            }
            for c in waiting {
                let client = &self.clients[c];
                if !client.ended || client.failed != Some(502) {
                    return Err(format!(
                        "client {c}'s forwarded request did not fail 502 when {}'s reply subscription ended (ended: {}, failed: {:?})",
                        self.nodes[i].name, client.ended, client.failed
                    ));
                }
            }
        }
        if matches!(which, Ending::Origins | Ending::Both) {
            self.faults.closed.insert((i, Side::Serving));
            let (_, served) = self.nodes[i].backend.cluster_in_flight();
            self.counters.origins_ended += 1;
            self.counters.origins_ended_cancelled += served as u64;
            if self.injection != ClusterInjection::ForgetOriginsEnded {
                self.nodes[i].backend.served_origins_ended(now);
            }
            self.settle()?;
            let (_, served) = self.nodes[i].backend.cluster_in_flight();
            if served > 0 {
                return Err(format!(
                    "{} still serves {served} requests after its serving subscription ended",
                    self.nodes[i].name
                ));
            }
        }
        Ok(())
    }

    /// A gateway leaves the cluster, as the shell's `Cluster::leave`
    /// does: it stops hearing announcements and taking starts, and its
    /// machine withdraws it.
    pub(super) fn leave(&mut self, drawn: usize) {
        let Some(i) = self.busy_node(drawn, true, true, Ev::Leave(drawn)) else {
            return;
        };
        let node = &mut self.nodes[i];
        node.left = true;
        node.joined.clear();
        let (forwarded, served) = node.backend.cluster_in_flight();
        self.counters.leaves += 1;
        self.counters.leave_in_flight += (forwarded + served) as u64;
        node.backend.leave_cluster(self.now);
        let book = node.backend.book_nodes();
        self.faults.frozen.push((i, book));
    }

    /// Publishing forwarded request `request`'s start from gateway `i`
    /// failed: the shell tells the machine.
    pub(super) fn start_unpublished(&mut self, i: usize, request: &RequestId) {
        self.counters.start_failed += 1;
        if let Some(&c) = self.nodes[i].public.get(request) {
            self.clients[c].start_failed_at = Some(self.now);
        }
        if self.injection != ClusterInjection::ForgetStartFailed {
            self.nodes[i]
                .backend
                .forward_start_failed(self.now, request, "publish failed");
        }
    }

    /// Publishing an answer of served request `request` from gateway `i`
    /// failed: the shell tells the machine.
    pub(super) fn answer_unpublished(&mut self, i: usize, request: &RequestId) {
        self.counters.answer_failed += 1;
        self.nodes[i]
            .backend
            .served_publish_failed(self.now, request);
        self.faults.unpublished.push((i, request.clone()));
    }

    /// What must hold once the machines settled after a fault.
    pub(super) fn check_faults_settled(&mut self) -> Result<(), String> {
        for (i, request) in std::mem::take(&mut self.faults.unpublished) {
            let node = &self.nodes[i];
            if node.alive && node.backend.upload_queued(&request).is_some() {
                return Err(format!(
                    "{} still runs served request {request} after its answer could not be published",
                    node.name
                ));
            }
        }
        Ok(())
    }

    /// A client whose start could not be published fails 502 at once.
    pub(super) fn check_start_failure(&self, c: usize, status: u16) -> Result<(), String> {
        match self.clients[c].start_failed_at {
            Some(at) if status != 502 || at != self.now => Err(format!(
                "client {c}'s start could not be published {:?} ago, yet it failed {status} only now (a start that could not be published fails 502 at once)",
                self.now - at
            )),
            _ => Ok(()),
        }
    }

    /// The route book of every gateway that left is as it was then.
    pub(super) fn check_frozen_books(&self) -> Result<(), String> {
        for (i, book) in &self.faults.frozen {
            let node = &self.nodes[*i];
            let now = node.backend.book_nodes();
            if node.alive && &now != book {
                return Err(format!(
                    "{} left the cluster knowing {book:?}; its book now knows {now:?}",
                    node.name
                ));
            }
        }
        Ok(())
    }
}
