//! The public clients: starting, uploading, cancelling, and what they get.

use std::net::{IpAddr, Ipv4Addr};

use anpx_core::RequestId;
use anpx_core::{LinkId, Output, Reject, ResponseEvent};
use bytes::Bytes;

use super::World;
use crate::sim::client::{BodyKind, ClientRequest};
use crate::sim::invariants::{bail, CheckContext, Violation};
use crate::sim::routes::{self, Grant};
use crate::sim::trace::short;

/// Where public requests come from: a few addresses, and none.
const CLIENT_ADDRESSES: [Option<IpAddr>; 4] = [
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3))),
    None,
];

impl World {
    pub(super) fn client_actions(&mut self) -> Result<(), Violation> {
        let n = self.rng.usize(..=self.sc.max_new_per_step);
        for _ in 0..n {
            self.start_request()?;
        }
        let uploading: Vec<RequestId> = self.uploading.iter().cloned().collect();
        for id in uploading {
            // A client told to wait reads nothing more of its body.
            if self.rng.u32(..10) < 6 && !self.upload_waits.contains(&id) {
                self.push_piece(&id, false)?;
            }
        }
        if self.roll(self.sc.rates.cancel) {
            self.cancel_one()?;
        }
        Ok(())
    }

    /// The route the gateway must pick for `host` and `path`, and the load
    /// of each connection serving it.
    pub(super) fn expected_route(
        &self,
        host: &str,
        path: &str,
    ) -> Option<(String, Vec<(LinkId, usize)>)> {
        let mut served: Vec<(&Grant, LinkId)> = Vec::new();
        for node in &self.nodes {
            if let Some(conn) = &node.conn {
                served.extend(node.grants.iter().map(|g| (g, conn.link)));
            }
        }
        let grants: Vec<&Grant> = served.iter().map(|(g, _)| *g).collect();
        let best = routes::best(&grants, host, path)?;
        let links = served
            .iter()
            .filter(|(g, _)| *g == best)
            .map(|(_, link)| (*link, self.ledger.open_on(*link)))
            .collect();
        Some((best.canonical(), links))
    }

    pub(super) fn start_request(&mut self) -> Result<(), Violation> {
        self.serial += 1;
        let client = ClientRequest::random(&mut self.rng, self.serial, &self.all_grants);
        let expected = client
            .normalized
            .as_deref()
            .and_then(|path| self.expected_route(&client.host, path));
        let cap = self.sc.gateway.max_inflight_per_link;
        // Clients come from a few addresses (or none, as a request another
        // gateway forwarded); each address is held to its share of a
        // route's in-flight cap.
        let from = CLIENT_ADDRESSES[self.rng.usize(..CLIENT_ADDRESSES.len())];
        let share = expected.as_ref().map(|(route, links)| {
            let whole = links.len() * cap;
            let share = self.sc.gateway.client_share(links.len());
            let held = from.map_or(0, |ip| {
                self.client_from
                    .iter()
                    .filter(|(id, (r, a))| r == route && *a == ip && self.ledger.is_open(id))
                    .count()
            });
            (held, share, whole)
        });
        let over_share = from.is_some()
            && self.sc.gateway.max_inflight_percent_per_client < 100
            && share.is_some_and(|(held, share, whole)| held >= share && share < whole);
        let at = self.at();
        let result = self.gw.start_request_from(
            at,
            from,
            &client.host,
            client.head(),
            client.initial_body(),
        );
        let what = format!(
            "#{} {} {}{} body {:?}({})",
            client.serial,
            client.method,
            client.host,
            client.path,
            client.kind,
            client.body.len()
        );
        let id = match result {
            Err(reject) => {
                let fits = match (&reject, &expected) {
                    (Reject::BadPath { .. }, None) => client.normalized.is_none(),
                    (Reject::NoRoute { path }, None) => client.normalized.as_ref() == Some(path),
                    (Reject::ClientShare { route, .. }, Some((want, _))) => {
                        route == want && over_share
                    }
                    (Reject::AtCapacity { route }, Some((want, links))) => {
                        route == want && !over_share && links.iter().all(|(_, load)| *load >= cap)
                    }
                    _ => false,
                };
                if !fits {
                    bail!("start {what} from {from:?} refused with {reject:?}; the oracle expected {expected:?} (cap {cap}, held/share/whole {share:?})");
                }
                match reject.failure().status {
                    400 => self.counters.refused_400 += 1,
                    404 => self.counters.refused_404 += 1,
                    429 => self.counters.refused_429 += 1,
                    503 => self.counters.refused_503 += 1,
                    s => bail!("start {what} refused with status {s}"),
                }
                log!(self, "start {what} refused {}", reject.failure().status);
                if let Some(out) = self.gw.poll_output() {
                    bail!("a refused request produced output {out:?}");
                }
                return Ok(());
            }
            Ok(id) => id,
        };
        // The first output says which connection the request went to.
        let first = self.gw.poll_output();
        let link = match &first {
            Some(Output::Transmit { link, .. }) => Some(*link),
            _ => None,
        };
        match (&expected, link) {
            (Some((_, links)), Some(link)) if !over_share && links.iter().any(|(l, load)| *l == link && *load < cap) => {}
            _ => bail!("start {what} from {from:?} accepted as {id} on {link:?}; the oracle expected {expected:?} (cap {cap}, held/share/whole {share:?})"),
        }
        if let (Some(ip), Some((route, _))) = (from, &expected) {
            self.client_from.insert(id.clone(), (route.clone(), ip));
        }
        log!(
            self,
            "start {what} -> {} on {}",
            short(&id),
            link.map_or("none".to_owned(), |l| l.to_string())
        );
        self.counters.started += 1;
        self.ledger.start(&id, link, self.now)?;
        if client.kind == BodyKind::Streaming {
            self.uploading.insert(id.clone());
        }
        self.clients.insert(id, client);
        if let Some(out) = first {
            self.gateway_output(out)?;
        }
        self.drain_gateway()
    }

    pub(super) fn push_piece(&mut self, id: &RequestId, finish: bool) -> Result<(), Violation> {
        if !self.ledger.is_open(id) {
            self.uploading.remove(id);
            return Ok(());
        }
        let at = self.at();
        let Some(client) = self.clients.get_mut(id) else {
            bail!("uploading {id}, which no client started");
        };
        let (piece, last) = client.next_piece(&mut self.rng, finish);
        let len = piece.len();
        if last {
            self.uploading.remove(id);
        }
        self.counters.upload_pieces += 1;
        log!(
            self,
            "client pushes {len} bytes of {} (last: {last})",
            short(id)
        );
        let pushed = self.gw.push_body(at, id, piece, last);
        self.drain_gateway()?;
        if let Err(gone) = pushed {
            if self.ledger.is_open(id) {
                bail!("push_body refused ({gone}) for a request that is still open");
            }
        }
        if self.gw.upload_waits(id) == Some(true) {
            log!(self, "upload of {} waits for credit", short(id));
            self.upload_waits.insert(id.clone());
        }
        Ok(())
    }

    pub(super) fn cancel_one(&mut self) -> Result<(), Violation> {
        if self.clients.is_empty() {
            return Ok(());
        }
        let open: Vec<RequestId> = self
            .ledger
            .ids()
            .filter(|(_, e)| e.phase.is_open())
            .map(|(id, _)| id.clone())
            .collect();
        // Mostly open requests; sometimes one long finished, which must be a no-op.
        let id = if !open.is_empty() && self.rng.u32(..10) < 8 {
            open[self.rng.usize(..open.len())].clone()
        } else {
            let n = self.rng.usize(..self.clients.len());
            match self.clients.keys().nth(n) {
                Some(id) => id.clone(),
                None => return Ok(()),
            }
        };
        let was_open = self.ledger.cancel(&id);
        self.counters.cancelled += u64::from(was_open);
        let was_uploading = self.uploading.remove(&id);
        log!(self, "client cancels {} (was open: {was_open})", short(&id));
        let at = self.at();
        self.gw.cancel(at, &id);
        self.drain_gateway()?;
        if was_uploading {
            // A shell may still hold a piece read before the client left.
            if self
                .gw
                .push_body(at, &id, Bytes::from_static(b"late"), true)
                .is_ok()
            {
                bail!("push_body accepted a piece for cancelled request {id}");
            }
            if let Some(out) = self.gw.poll_output() {
                bail!("a piece for cancelled request {id} produced output {out:?}");
            }
        }
        Ok(())
    }

    pub(super) fn client_event(
        &mut self,
        id: &RequestId,
        event: &ResponseEvent,
    ) -> Result<(), Violation> {
        log!(self, "client of {} gets {}", short(id), event_line(event));
        let cx = CheckContext {
            now: self.now,
            request_timeout: self.sc.gateway.request_timeout,
            closed_links: &self.closed_links,
            response_limit: self.sc.gateway.reassembly.max_message_size,
            // Only failures need it, and it costs a few lookups.
            request_over_limit: match event {
                ResponseEvent::Failed(_) => self.request_over_limit(id),
                _ => None,
            },
            known_bugs: self.options.known_bugs,
        };
        self.ledger.observe(id, event, self.records.get(id), &cx)?;
        if let ResponseEvent::Body(b) = event {
            // The client reads each piece at once (`flow-control`).
            let at = self.at();
            self.gw.body_read(at, id, b.len());
        }
        match event {
            ResponseEvent::End => self.counters.completed += 1,
            ResponseEvent::Failed(f) if f.status == 504 => self.counters.failed_504 += 1,
            ResponseEvent::Failed(f) if f.status == 408 => self.counters.failed_408 += 1,
            ResponseEvent::Failed(f) if f.error.starts_with("Invalid response from receiver") => {
                self.counters.failed_502 += 1;
                self.counters.invalid_responses += 1;
            }
            ResponseEvent::Failed(f) if f.error.contains("max_response_bytes") => {
                self.counters.failed_502 += 1;
                self.counters.over_limit += 1;
            }
            ResponseEvent::Failed(_) => self.counters.failed_502 += 1,
            _ => {}
        }
        if !self.ledger.is_open(id) {
            self.uploading.remove(id);
        }
        Ok(())
    }

    /// The request limit of the receiver `id` went to, if its body is over it.
    pub(super) fn request_over_limit(&self, id: &RequestId) -> Option<u64> {
        let link = self.ledger.entry(id)?.link?;
        let node = &self.nodes[*self.link_nodes.get(&link)?];
        let limit = node.spec.config.reassembly.max_message_size;
        let len = self.clients.get(id)?.body.len() as u64;
        (len > limit).then_some(limit)
    }
}

fn event_line(event: &ResponseEvent) -> String {
    match event {
        ResponseEvent::Head(h) => format!("head {}", h.status),
        ResponseEvent::Body(b) => format!("body({})", b.len()),
        ResponseEvent::End => "end".to_owned(),
        ResponseEvent::Failed(f) => format!("failed {} {:?}", f.status, f.error),
    }
}
