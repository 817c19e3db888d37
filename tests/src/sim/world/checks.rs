//! The rules checked between steps, and the drain that ends a run.

use std::collections::BTreeSet;
use std::time::Duration;

use anpx_core::LinkId;
use anpx_core::RequestId;

use super::{Closer, Stage, World, MAX_EVENTS_PER_INSTANT};
use crate::sim::invariants::{bail, Violation};
use crate::sim::routes::Grant;

impl World {
    /// The rules that hold between any two events.
    pub(super) fn check_state(&self) -> Result<(), Violation> {
        let in_flight = self.gw.in_flight();
        if in_flight != self.ledger.open_count() {
            bail!(
                "gateway has {in_flight} requests in flight; clients have {} open",
                self.ledger.open_count()
            );
        }
        let cap = self.sc.gateway.max_inflight_per_link;
        let stats = self.gw.stats(self.at());
        if stats.in_flight != in_flight {
            bail!(
                "stats say {} in flight, in_flight() says {in_flight}",
                stats.in_flight
            );
        }
        if stats.totals.protocol_errors != 0 {
            bail!(
                "{} protocol errors between correct peers",
                stats.totals.protocol_errors
            );
        }
        let live: Vec<LinkId> = self
            .nodes
            .iter()
            .filter_map(|n| n.conn.as_ref().map(|c| c.link))
            .collect();
        let mut stat_links: Vec<LinkId> = stats.links.iter().map(|l| l.id).collect();
        let mut want = live.clone();
        stat_links.sort();
        want.sort();
        if stat_links != want {
            bail!("gateway links {stat_links:?}, connections {want:?}");
        }
        for l in &stats.links {
            if l.in_flight > cap {
                bail!(
                    "{} has {} requests in flight, over the cap of {cap}",
                    l.id,
                    l.in_flight
                );
            }
            if l.in_flight != self.ledger.open_on(l.id) {
                bail!(
                    "{} has {} requests in flight; clients have {} open on it",
                    l.id,
                    l.in_flight,
                    self.ledger.open_on(l.id)
                );
            }
        }
        if let Some(link) = self.ledger.links_with_open().find(|l| !live.contains(l)) {
            bail!("requests are open on {link}, which is closed");
        }
        let routes: BTreeSet<&Grant> = self
            .nodes
            .iter()
            .filter(|n| n.conn.is_some())
            .flat_map(|n| &n.grants)
            .collect();
        let (links, requests, partials, route_count, _timers) = self.gw.table_sizes();
        if (links, requests, route_count) != (live.len(), in_flight, routes.len()) {
            bail!(
                "gateway tables hold {links} links, {requests} requests, {route_count} routes; expected {}, {in_flight}, {}",
                live.len(),
                routes.len()
            );
        }
        if partials > requests {
            bail!("gateway holds {partials} partial responses for {requests} requests");
        }
        // The gateway's counters must tell the story the clients saw.
        let t = &stats.totals;
        let c = &self.counters;
        let counted = [
            ("started", t.started, c.started),
            ("completed", t.completed, c.completed),
            ("bad_request", t.bad_request, c.refused_400),
            ("not_found", t.not_found, c.refused_404),
            ("unavailable", t.unavailable, c.refused_503),
            (
                "client_share_refused",
                t.client_share_refused,
                c.refused_429,
            ),
            ("bad_gateway", t.bad_gateway, c.failed_502),
            ("timed_out", t.timed_out, c.failed_504),
            ("upload_timed_out", t.upload_timed_out, c.failed_408),
            ("cancelled", t.cancelled, c.cancelled),
            ("links_silent", t.links_silent, c.gateway_closes),
            (
                "links_admitted",
                t.links_admitted,
                self.link_nodes.len() as u64,
            ),
        ];
        if let Some((what, theirs, ours)) = counted.iter().find(|(_, theirs, ours)| theirs != ours)
        {
            bail!("gateway totals say {what} = {theirs}; the simulation counted {ours}");
        }
        // Correct peers commit no faults; a response over the gateway's
        // limit is the only one the scenarios provoke.
        let faults: Vec<(&str, u64)> = t
            .receiver_faults
            .iter()
            .map(|(k, v)| (*k, *v))
            .filter(|(_, v)| *v > 0)
            .collect();
        let provoked: Vec<(&str, u64)> = Some(("invalid_response", c.invalid_responses))
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .collect();
        if faults != provoked {
            bail!(
                "gateway counted receiver faults {faults:?}; the simulation provoked {provoked:?}"
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(conn) = &node.conn else { continue };
            let totals = conn.rx.totals();
            if (totals.requests, totals.aborted) != (conn.heads, conn.aborts) {
                bail!(
                    "node {i} counts {} requests and {} aborts; its upstream was told of {} and {}",
                    totals.requests,
                    totals.aborted,
                    conn.heads,
                    conn.aborts
                );
            }
            let (held, partial) = (conn.rx.in_flight(), conn.rx.partial_requests());
            let active = conn.served.values().filter(|s| !s.reply_done).count();
            if partial > held {
                bail!("node {i} holds {partial} partial requests but only {held} in flight");
            }
            if held < active || held > conn.served.len() {
                bail!(
                    "node {i} has {held} requests in flight; its upstream holds {} ({active} unanswered)",
                    conn.served.len()
                );
            }
        }
        self.check_admissions()
    }

    pub(super) fn quiescent(&self) -> bool {
        self.gw.in_flight() == 0
            && self.ledger.open_count() == 0
            && self.uploading.is_empty()
            && self
                .nodes
                .iter()
                .filter_map(|n| n.conn.as_ref())
                .all(|c| c.rx.in_flight() == 0 && c.rx.partial_requests() == 0)
    }

    /// Stops new work and lets everything in flight finish.
    pub(super) fn drain(&mut self) -> Result<(), Violation> {
        self.stage = Stage::Drain;
        self.draining = true;
        log!(
            self,
            "drain: no new requests, uploads finish, silent upstreams time out"
        );
        for node in &mut self.nodes {
            node.frozen_until = None;
        }
        let uploading: Vec<RequestId> = self.uploading.iter().cloned().collect();
        for id in uploading {
            self.push_piece(&id, true)?;
        }
        let longest_rx = self
            .nodes
            .iter()
            .map(|n| (n.spec.config.ping_interval * 2).max(n.spec.config.reassembly.stale_after))
            .max()
            .unwrap_or_default();
        let horizon = 2 * self
            .sc
            .gateway
            .request_timeout
            .max(self.sc.gateway.liveness_timeout())
            .max(longest_rx)
            + Duration::from_secs(5);
        // Small slices, so that a quiet world is noticed without running
        // idle pings for a whole horizon.
        let slice = Duration::from_millis(500);
        let give_up = self.now + 30 * horizon;
        loop {
            self.wake_ignoring_upstreams();
            self.run_until(self.now + slice)?;
            if self.quiescent() {
                break;
            }
            if self.now >= give_up {
                let held: Vec<(usize, usize)> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.conn.as_ref())
                    .map(|c| (c.rx.in_flight(), c.rx.partial_requests()))
                    .collect();
                bail!(
                    "still busy after the drain: gateway {} in flight, clients {} open, receivers (in flight, partial) {held:?}",
                    self.gw.in_flight(),
                    self.ledger.open_count()
                );
            }
        }
        self.check_state()?;
        self.ledger.check_all_ended()
    }

    pub(super) fn wake_ignoring_upstreams(&mut self) {
        let mut wake = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(conn) = &node.conn {
                wake.extend(
                    conn.served
                        .iter()
                        .filter(|(_, s)| s.ignoring())
                        .map(|(id, _)| (i, conn.generation, id.clone())),
                );
            }
        }
        for (i, generation, id) in wake {
            self.schedule_upstream(i, generation, id);
        }
    }

    /// Closes every connection, lets the gateway's timers run out, and
    /// checks that nothing was left behind.
    pub(super) fn close_everything(&mut self) -> Result<(), Violation> {
        self.stage = Stage::Final;
        self.closing = true;
        for i in 0..self.nodes.len() {
            self.close_conn(i, Closer::Network)?;
        }
        let mut rounds = 0;
        while let Some(t) = self.gw.poll_timeout() {
            self.now = self.now.max(self.offset(t));
            let at = self.at();
            self.gw.handle_timeout(at);
            self.drain_gateway()?;
            rounds += 1;
            if rounds > MAX_EVENTS_PER_INSTANT {
                bail!("the gateway's timers never run out");
            }
        }
        let sizes = self.gw.table_sizes();
        if sizes != (0, 0, 0, 0, 0) {
            bail!("gateway tables not empty after every link closed: (links, requests, partials, routes, timers) = {sizes:?}");
        }
        self.ledger.check_all_ended()?;
        self.end_admissions()?;
        log!(self, "done: {:?}", self.counters);
        Ok(())
    }
}
