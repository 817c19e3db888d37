//! Receivers' handshakes through the core's admissions, in virtual time:
//! a handshake slot, a scripted verifier that answers after a while (or
//! refuses, or grants something else), offers with bad header values,
//! handshakes that go away, and the reconnects after every refusal. Each
//! decision is held against an oracle written here from the documented
//! rules, and every handshake must end exactly once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anpx_core::handshake::{
    self, Admitted, AuthRefusal, DocumentStep, FetchLimits, FetchTicket, HandshakeId, Offer,
    DOCUMENT_TTL, FETCH_TIMEOUT,
};
use anpx_core::{Feature, Features, Identity, Receiver, ServiceUrl};

use super::{Conn, Task, World};
use crate::sim::invariants::{bail, Violation};
use crate::sim::network::Wire;
use crate::sim::outcome::Injection;

/// What a handshake offers in its header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OfferKind {
    /// The receiver's own headers, as `offer_headers` writes them.
    Plain,
    /// Features in another case and spacing, with a token from a newer
    /// version.
    Untidy,
    /// No features header: a reference receiver.
    NoFeatures,
    /// A features value that is not text.
    GarbledFeatures,
    /// No services header: asks for everything it is allowed.
    NoServices,
    /// A services value that is not text.
    BadServices,
    /// No `Sec-WebSocket-Key`.
    NoKey,
}

/// What the scripted verifier says, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Admit,
    Refuse,
    Elsewhere,
    /// The handshake goes away before the verifier answers.
    Abandon,
}

/// How a DID document fetch the script started ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FetchPlan {
    Document,
    BadStatus,
    /// Never answers: the shell gives up at the ticket's deadline.
    Silent,
}

/// The simulation's own account of the document fetch rules: what the
/// next lookup must say.
#[derive(Debug, Default)]
pub(super) struct FetchModel {
    in_flight: BTreeMap<String, usize>,
    failed_until: BTreeMap<String, Duration>,
    cached_at: BTreeMap<String, Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Cached,
    Fetch,
    Refused,
}

impl FetchModel {
    fn expect(&self, now: Duration, url: &str, host: &str, limits: &FetchLimits) -> Lookup {
        if self
            .cached_at
            .get(url)
            .is_some_and(|at| now - *at < DOCUMENT_TTL)
        {
            return Lookup::Cached;
        }
        let busy = self.in_flight.get(host).copied().unwrap_or(0);
        if self
            .failed_until
            .get(host)
            .is_some_and(|until| now < *until)
            || self.total() >= limits.max_in_flight
            || busy >= limits.per_host
        {
            return Lookup::Refused;
        }
        Lookup::Fetch
    }

    fn total(&self) -> usize {
        self.in_flight.values().sum()
    }

    fn begin(&mut self, host: &str) {
        *self.in_flight.entry(host.to_owned()).or_default() += 1;
    }

    fn end(&mut self, host: &str) {
        if let Some(n) = self.in_flight.get_mut(host) {
            *n -= 1;
        }
    }
}

/// A handshake in progress for a node.
#[derive(Debug)]
pub(super) struct Attempt {
    pub number: u64,
    pub id: HandshakeId,
    kind: OfferKind,
    services: Option<Vec<u8>>,
    features: Option<Vec<u8>>,
    verdict: Verdict,
    /// Its DID document fetch in flight, and how it will end.
    fetch: Option<(FetchTicket, FetchPlan)>,
    /// Refused before the verdict: the document fetch could not start.
    refused: Option<AuthRefusal>,
}

impl Attempt {
    fn offer(&self) -> Offer<'_> {
        Offer {
            websocket_key: self.kind != OfferKind::NoKey,
            services: self.services.as_deref(),
            features: self.features.as_deref(),
        }
    }
}

/// The simulation's own record of a handshake the admissions hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub node: usize,
    pub peer: IpAddr,
    pub upgraded: bool,
}

/// The features a gateway supporting everything agrees to for `offered`:
/// what both list, streaming only with flow-control.
fn agreed(offered: Features) -> Features {
    let mut f = offered;
    if !f.contains(Feature::FlowControl) {
        f.remove(Feature::Streaming);
    }
    f
}

fn dedup(urls: &[ServiceUrl]) -> Vec<ServiceUrl> {
    let mut out: Vec<ServiceUrl> = Vec::new();
    for u in urls {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

impl World {
    fn roll_handshake(&mut self, per_mille: u32) -> bool {
        self.rng.u32(..1000) < per_mille
    }

    /// Node `i` opens a handshake; refused at once, it tries again later.
    pub(super) fn connect(&mut self, i: usize) -> Result<(), Violation> {
        let at = self.at();
        let hs = self.sc.handshakes;
        let spec = self.nodes[i].spec.clone();
        let open_mode = spec.identity == Identity::Anonymous;
        let kind = if self.roll_handshake(hs.bad_offer) {
            let kinds = [
                OfferKind::GarbledFeatures,
                OfferKind::BadServices,
                OfferKind::NoKey,
            ];
            kinds[self.rng.usize(..kinds.len())]
        } else {
            let mut kinds = vec![OfferKind::Plain, OfferKind::Untidy, OfferKind::NoFeatures];
            if !open_mode {
                // In open mode declaring nothing asks for every host.
                kinds.push(OfferKind::NoServices);
            }
            kinds[self.rng.usize(..kinds.len())]
        };
        let urls = self.nodes[i].urls.clone();
        let (mut features, mut services) = (None, None);
        for (name, value) in handshake::offer_headers(spec.features, &urls) {
            if name == handshake::FEATURES_HEADER {
                features = Some(value.into_bytes());
            } else {
                services = Some(value.into_bytes());
            }
        }
        match kind {
            OfferKind::Untidy => {
                let mut tokens: Vec<String> = spec
                    .features
                    .iter()
                    .map(|f| format!(" {} ", f.token().to_uppercase()))
                    .collect();
                tokens.push("teleport;v=2".into());
                tokens.reverse();
                features = Some(tokens.join(",").into_bytes());
            }
            OfferKind::NoFeatures => features = None,
            OfferKind::GarbledFeatures => {
                let mut v = features.unwrap_or_default();
                v.extend_from_slice(b",\x00\xff");
                features = Some(v);
            }
            OfferKind::NoServices => services = None,
            OfferKind::BadServices => {
                let mut v = services.unwrap_or_default();
                v.extend_from_slice(b", api.agent.com/\xc3\xa9");
                services = Some(v);
            }
            OfferKind::Plain | OfferKind::NoKey => {}
        }
        let verdict = if self.roll_handshake(hs.abandoned) {
            Verdict::Abandon
        } else if self.roll_handshake(hs.auth_refused) {
            Verdict::Refuse
        } else if kind != OfferKind::NoServices && self.roll_handshake(hs.granted_elsewhere) {
            Verdict::Elsewhere
        } else {
            Verdict::Admit
        };
        self.nodes[i].generation += 1;
        let number = self.nodes[i].generation;
        let peer = spec.peer;
        // The oracle: the key, then the handshakes in progress, the
        // connections in all, then the address's.
        let pending = self.held.values().filter(|h| !h.upgraded).count();
        let of_peer = self.held.values().filter(|h| h.peer == peer).count();
        let expected = if kind == OfferKind::NoKey {
            Some(400)
        } else if pending >= hs.max_pending || self.held.len() >= hs.total {
            Some(503)
        } else if of_peer >= hs.per_ip {
            Some(429)
        } else {
            None
        };
        let offer = Offer {
            websocket_key: kind != OfferKind::NoKey,
            services: services.as_deref(),
            features: features.as_deref(),
        };
        self.counters.handshakes += 1;
        let began = self.gw.begin_handshake(at, peer, &offer);
        match (began, expected) {
            (Ok(id), None) => {
                if self.held.contains_key(&id) {
                    bail!("the admissions handed out {id} again");
                }
                self.held.insert(
                    id,
                    Held {
                        node: i,
                        peer,
                        upgraded: false,
                    },
                );
                let mut attempt = Attempt {
                    number,
                    id,
                    kind,
                    services,
                    features,
                    verdict,
                    fetch: None,
                    refused: None,
                };
                log!(self, "node {i} begins {id} from {peer} ({kind:?}, {verdict:?})");
                let mut delay = if self.roll_handshake(hs.slow) {
                    Duration::from_millis(self.rng.u64(1_000..=5_000))
                } else if self.rng.bool() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(self.rng.u64(1..=300))
                };
                if spec.identity != Identity::Anonymous {
                    delay = self.look_up_document(i, &mut attempt, delay)?;
                }
                self.nodes[i].attempt = Some(attempt);
                if delay.is_zero() {
                    self.authenticated(i, number)
                } else {
                    self.schedule(
                        self.now + delay,
                        Task::Authenticated { node: i, number },
                    );
                    Ok(())
                }
            }
            (Err(refusal), Some(status)) if refusal.status() == status => {
                log!(self, "node {i} refused at once: {} {refusal}", refusal.status());
                self.count_refusal(status)?;
                self.retry_later(i);
                Ok(())
            }
            (began, expected) => bail!(
                "a handshake of node {i} from {peer} ({kind:?}) began as {:?}; the oracle expected {expected:?} ({pending} pending of {}, {} held of {}, {of_peer} held by the address of {})",
                began.map_err(|r| (r.status(), r.to_string())),
                hs.max_pending,
                self.held.len(),
                hs.total,
                hs.per_ip
            ),
        }
    }

    /// A DID login needs node `i`'s document: cached, fetched (the
    /// verifier then answers when the fetch ends), or refused at once.
    /// Returns when the verifier answers.
    fn look_up_document(
        &mut self,
        i: usize,
        attempt: &mut Attempt,
        delay: Duration,
    ) -> Result<Duration, Violation> {
        let at = self.at();
        let hs = self.sc.handshakes;
        let host = self.nodes[i].spec.document_host;
        let url = format!("https://{host}/n{i}/did.json");
        let want = self.fetches.expect(self.now, &url, host, &hs.fetch_limits);
        match (self.documents.lookup(at, &url, host), want) {
            (Ok(DocumentStep::Cached(_)), Lookup::Cached) => {
                self.counters.cached_documents += 1;
                Ok(delay)
            }
            (Ok(DocumentStep::Fetch(ticket)), Lookup::Fetch) => {
                if ticket.deadline != at + FETCH_TIMEOUT || ticket.url != url {
                    bail!("the fetch of {url} was allowed until {:?}", ticket.deadline);
                }
                self.fetches.begin(host);
                self.counters.document_fetches += 1;
                let plan = if self.roll_handshake(hs.fetch_silent) {
                    FetchPlan::Silent
                } else if self.roll_handshake(hs.fetch_failed) {
                    FetchPlan::BadStatus
                } else {
                    FetchPlan::Document
                };
                let took = match plan {
                    FetchPlan::Silent => FETCH_TIMEOUT,
                    _ => Duration::from_millis(self.rng.u64(1..=1_500)),
                };
                log!(self, "{} fetches {url} ({plan:?}, {took:?})", attempt.id);
                attempt.fetch = Some((ticket, plan));
                Ok(took)
            }
            (Err(refusal), Lookup::Refused) if refusal.label == "document_fetch_refused" => {
                log!(self, "{} may not fetch {url}: {refusal}", attempt.id);
                self.counters.fetch_refused += 1;
                attempt.refused = Some(refusal);
                Ok(Duration::ZERO)
            }
            (got, want) => bail!(
                "the document lookup for {url} said {got:?}; the oracle expected {want:?} ({:?})",
                self.fetches
            ),
        }
    }

    /// The document fetch of `attempt` ends, or is dropped with its
    /// handshake; `Err` refuses the login.
    fn end_fetch(&mut self, attempt: &mut Attempt, dropped: bool) -> Result<(), AuthRefusal> {
        let Some((ticket, plan)) = attempt.fetch.take() else {
            return Ok(());
        };
        let at = self.at();
        let host = ticket.host.clone();
        self.fetches.end(&host);
        if dropped {
            self.documents.abandoned(at, ticket);
            return Ok(());
        }
        let url = ticket.url.clone();
        let result = match plan {
            FetchPlan::Document => Ok(bytes::Bytes::from_static(b"{}")),
            FetchPlan::BadStatus => Err("status 404".to_owned()),
            FetchPlan::Silent => Err(format!("timed out after {FETCH_TIMEOUT:?}")),
        };
        match self.documents.fetched(at, ticket, result) {
            Ok(_) => {
                self.fetches.cached_at.insert(url, self.now);
                Ok(())
            }
            Err(refusal) => {
                self.fetches.failed_until.insert(
                    host,
                    self.now + self.sc.handshakes.fetch_limits.failed_host_memory,
                );
                self.counters.fetch_failed += 1;
                Err(refusal)
            }
        }
    }

    fn count_refusal(&mut self, status: u16) -> Result<(), Violation> {
        let c = &mut self.counters;
        match status {
            400 => c.handshake_400 += 1,
            401 => c.handshake_401 += 1,
            403 => c.handshake_403 += 1,
            429 => c.handshake_429 += 1,
            503 => c.handshake_503 += 1,
            s => bail!("a handshake refused with status {s}"),
        }
        Ok(())
    }

    fn retry_later(&mut self, i: usize) {
        if !self.closing {
            let backoff = Duration::from_millis(self.rng.u64(20..=2_000));
            self.schedule(self.now + backoff, Task::Reconnect { node: i });
        }
    }

    /// Handshake `id` ends in the admissions and in the simulation's
    /// record, exactly once.
    pub(super) fn end_handshake(&mut self, id: HandshakeId) -> Result<(), Violation> {
        if self.held.remove(&id).is_none() {
            bail!("{id} ended twice");
        }
        if self.options.inject == Some(Injection::LeakedSlot) && !self.injected {
            self.injected = true;
            return Ok(());
        }
        let at = self.at();
        self.gw.end_handshake(at, id);
        Ok(())
    }

    /// The scripted verifier answers attempt `number` of node `i`.
    pub(super) fn authenticated(&mut self, i: usize, number: u64) -> Result<(), Violation> {
        let Some(mut attempt) = self.nodes[i].attempt.take_if(|a| a.number == number) else {
            return Ok(());
        };
        let at = self.at();
        let id = attempt.id;
        let spec = self.nodes[i].spec.clone();
        let urls = self.nodes[i].urls.clone();
        let dropped = attempt.verdict == Verdict::Abandon;
        let document = self.end_fetch(&mut attempt, dropped);
        let document = match attempt.refused.take() {
            Some(refused) => Err(refused),
            None => document,
        };
        let auth = match (attempt.verdict, document) {
            (Verdict::Abandon, _) => {
                log!(self, "node {i} goes away during {id}");
                self.counters.handshakes_abandoned += 1;
                self.end_handshake(id)?;
                self.retry_later(i);
                return Ok(());
            }
            (_, Err(refusal)) => {
                if !matches!(
                    refusal.label,
                    "document_fetch_refused" | "document_unavailable"
                ) {
                    bail!("{id}'s document refused it as {}", refusal.label);
                }
                Err(refusal)
            }
            (Verdict::Refuse, Ok(())) => {
                Err(AuthRefusal::new("scripted_refusal", "the script says no"))
            }
            (Verdict::Elsewhere, Ok(())) => Ok(Admitted {
                identity: spec.identity.clone(),
                allowed: Some(vec!["elsewhere.example/x".parse().expect("a service URL")]),
            }),
            (Verdict::Admit, Ok(())) => Ok(Admitted {
                identity: spec.identity.clone(),
                allowed: (spec.identity != Identity::Anonymous).then(|| urls.clone()),
            }),
        };
        let expected = match (&auth, attempt.verdict, attempt.kind) {
            (Err(_), _, _) => Some(401),
            (_, _, OfferKind::BadServices) => Some(400),
            (_, Verdict::Elsewhere, _) => Some(403),
            _ => None,
        };
        if auth.is_err() {
            self.auth_refused += 1;
        }
        let decided = self.gw.decide_handshake(at, id, &attempt.offer(), auth);
        let accepted = match (decided, expected) {
            (Ok(accepted), None) => accepted,
            (Err(refusal), Some(status)) if refusal.status() == status => {
                log!(self, "node {i} refused after {id}: {status} {refusal}");
                // A refusal ends the handshake in the admissions.
                self.held.remove(&id);
                self.count_refusal(status)?;
                self.retry_later(i);
                return Ok(());
            }
            (decided, expected) => bail!(
                "{id} of node {i} ({:?}, {:?}) was decided {:?}; the oracle expected {expected:?}",
                attempt.kind,
                attempt.verdict,
                decided.map_err(|r| (r.status(), r.to_string()))
            ),
        };
        // What is granted and agreed, by the documented rules.
        let want_features = match attempt.kind {
            OfferKind::NoFeatures | OfferKind::GarbledFeatures => Features::empty(),
            _ => agreed(spec.features),
        };
        if accepted.features != want_features || accepted.grants != dedup(&urls) {
            bail!(
                "{id} of node {i} ({:?}) agreed {} and granted {:?}; the oracle expected {want_features} and {:?}",
                attempt.kind,
                accepted.features,
                accepted.grants,
                dedup(&urls)
            );
        }
        if attempt.kind == OfferKind::GarbledFeatures {
            self.counters.garbled_features += 1;
        }
        // The receiver reads the 101's headers.
        let headers = accepted.headers();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        };
        let (features, granted) = handshake::answered(
            spec.features,
            value(handshake::FEATURES_HEADER),
            value(handshake::GRANTED_HEADER),
        );
        let granted_urls: Vec<String> = accepted.grants.iter().map(|g| g.to_string()).collect();
        if features != accepted.features || granted != granted_urls {
            bail!(
                "node {i} read {features} and {granted:?} from the 101 that agreed {} and granted {granted_urls:?}",
                accepted.features
            );
        }
        // The gateway admits the link before the 101 goes out.
        let link = self.gw.admit_handshake(
            at,
            id,
            accepted.identity,
            accepted.grants,
            accepted.features,
        );
        if self.closed_links.contains(&link)
            || self
                .nodes
                .iter()
                .any(|n| n.conn.as_ref().is_some_and(|c| c.link == link))
        {
            bail!("admit handed out {link} again");
        }
        if let Some(held) = self.held.get_mut(&id) {
            held.upgraded = true;
        }
        self.counters.handshakes_accepted += 1;
        self.link_nodes.insert(link, i);
        let rx = Receiver::new(spec.config.clone(), features, at);
        self.nodes[i].conn = Some(Conn {
            generation: number,
            link,
            rx,
            features,
            handshake: id,
            wire: Wire::new(spec.latency),
            served: Default::default(),
            reply_waits: Default::default(),
            heads: 0,
            aborts: 0,
        });
        log!(
            self,
            "node {i} connects as {link} after {id}, features {features}"
        );
        self.drain_gateway()
    }

    /// The admissions agree with the simulation's record and hold their
    /// caps.
    pub(super) fn check_admissions(&self) -> Result<(), Violation> {
        let a = self.gw.admissions();
        let pending = self.held.values().filter(|h| !h.upgraded).count();
        let live = self.nodes.iter().filter(|n| n.conn.is_some()).count();
        let upgraded = self.held.values().filter(|h| h.upgraded).count();
        if (a.open(), a.pending(), a.connections()) != (self.held.len(), pending, upgraded)
            || upgraded != live
        {
            bail!(
                "admissions hold (open, pending, connections) = {:?}; the simulation has {:?} with {live} connections live",
                (a.open(), a.pending(), a.connections()),
                (self.held.len(), pending, upgraded)
            );
        }
        if self.held.len() > self.sc.handshakes.total {
            bail!(
                "{} receivers held, over the cap of {}",
                self.held.len(),
                self.sc.handshakes.total
            );
        }
        if pending > self.sc.handshakes.max_pending {
            bail!("{pending} handshakes pending, over the cap");
        }
        for node in &self.nodes {
            let of_peer = self
                .held
                .values()
                .filter(|h| h.peer == node.spec.peer)
                .count();
            if a.held_by(node.spec.peer) != of_peer || of_peer > self.sc.handshakes.per_ip {
                bail!(
                    "admissions count {} for {}; the simulation {of_peer} (cap {})",
                    a.held_by(node.spec.peer),
                    node.spec.peer,
                    self.sc.handshakes.per_ip
                );
            }
        }
        if let Some((id, h)) = self.held.iter().find(|(id, h)| {
            h.upgraded
                && self.nodes[h.node]
                    .conn
                    .as_ref()
                    .is_none_or(|c| c.handshake != **id)
        }) {
            bail!("{id} is held as node {}'s connection, which is not", h.node);
        }
        if self.documents.in_flight() != self.fetches.total() {
            bail!(
                "{} document fetches in flight; the simulation started {}",
                self.documents.in_flight(),
                self.fetches.total()
            );
        }
        let refused: u64 = a.auth_refusals().map(|(_, n)| n).sum();
        if refused != self.auth_refused {
            bail!(
                "admissions counted {refused} authentication refusals; the script made {}",
                self.auth_refused
            );
        }
        Ok(())
    }

    /// At the end: handshakes still in progress go away, and nothing is
    /// left.
    pub(super) fn end_admissions(&mut self) -> Result<(), Violation> {
        for i in 0..self.nodes.len() {
            if let Some(mut attempt) = self.nodes[i].attempt.take() {
                self.counters.handshakes_abandoned += 1;
                let _ = self.end_fetch(&mut attempt, true);
                self.end_handshake(attempt.id)?;
            }
        }
        self.check_admissions()?;
        if self.gw.admissions().open() != 0
            || !self.held.is_empty()
            || self.documents.in_flight() != 0
        {
            bail!(
                "handshake slots leak: {} open in the admissions, {} in the simulation",
                self.gw.admissions().open(),
                self.held.len()
            );
        }
        Ok(())
    }
}
