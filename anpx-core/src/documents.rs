//! DID document fetches as decisions: which fetch may start (a bounded
//! pool, a per-host share, a short memory of hosts that failed), its
//! deadline, how long a fetched document is reused, and what a fetch's
//! outcome means for the login that needed it. The fetch itself is the
//! shell's I/O; everything around it is decided here, with `now` passed in.
//!
//! A login whose document must be fetched holds its handshake slot for as
//! long as the fetch takes. Without these limits, handshakes naming
//! documents on a host that never answers take every slot for the fetch
//! timeout, and genuine logins (whose documents are cached or local) are
//! refused meanwhile. With them, such handshakes are refused at once: the
//! host already has its share of fetches in flight, the pool is full, or
//! the host failed a moment ago.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use anpx_core::handshake::{FetchGate, FetchLimits, FetchRefusal};
//!
//! let limits = FetchLimits { max_in_flight: 8, per_host: 1, failed_host_memory: Duration::from_secs(5) };
//! let mut gate = FetchGate::new(limits);
//! let t = Instant::now();
//! gate.begin("slow.example", t).unwrap();
//! assert_eq!(gate.begin("slow.example", t), Err(FetchRefusal::HostBusy));
//! gate.end("slow.example", false, t);
//! assert_eq!(gate.begin("slow.example", t), Err(FetchRefusal::HostFailedRecently));
//! assert!(gate.begin("slow.example", t + Duration::from_secs(6)).is_ok());
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::handshake::AuthRefusal;

/// How long a fetched DID document is reused.
pub const DOCUMENT_TTL: Duration = Duration::from_secs(300);
/// How long a document fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits on DID document fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Fetches in flight at once, all hosts together.
    pub max_in_flight: usize,
    /// Fetches in flight at once to one host.
    pub per_host: usize,
    /// How long a host whose fetch failed (error, timeout, bad status) is
    /// not asked again.
    pub failed_host_memory: Duration,
}

impl Default for FetchLimits {
    /// 64 fetches in all (a quarter of the default 256 handshake slots),
    /// 4 per host, failed hosts left alone for 10 seconds.
    fn default() -> Self {
        FetchLimits {
            max_in_flight: 64,
            per_host: 4,
            failed_host_memory: Duration::from_secs(10),
        }
    }
}

/// Why a fetch may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchRefusal {
    /// `max_in_flight` fetches are in flight.
    #[error("too many DID document fetches in progress")]
    PoolFull,
    /// `per_host` fetches to this host are in flight.
    #[error("too many DID document fetches to this host in progress")]
    HostBusy,
    /// A fetch from this host failed less than `failed_host_memory` ago.
    #[error("this host's DID document fetch failed moments ago")]
    HostFailedRecently,
}

/// The fetches in flight and the hosts that failed lately.
#[derive(Debug)]
pub struct FetchGate {
    limits: FetchLimits,
    in_flight: usize,
    per_host: HashMap<String, usize>,
    /// When each failed host may be asked again. At most one entry per
    /// host whose fetch started, so no more than fetches were allowed;
    /// expired entries are swept when a failure is recorded.
    failed_until: HashMap<String, Instant>,
}

/// The most failed hosts remembered; past it the oldest memory is dropped
/// first (it only makes a host be asked again sooner).
const MAX_FAILED_HOSTS: usize = 4096;

impl FetchGate {
    /// A gate with nothing in flight.
    pub fn new(limits: FetchLimits) -> Self {
        FetchGate {
            limits,
            in_flight: 0,
            per_host: HashMap::new(),
            failed_until: HashMap::new(),
        }
    }

    /// Takes a place for a fetch from `host` at `now`, or says why not.
    /// Every place taken is given back with [`end`](Self::end).
    pub fn begin(&mut self, host: &str, now: Instant) -> Result<(), FetchRefusal> {
        if let Some(until) = self.failed_until.get(host) {
            if now < *until {
                return Err(FetchRefusal::HostFailedRecently);
            }
            self.failed_until.remove(host);
        }
        if self.in_flight >= self.limits.max_in_flight {
            return Err(FetchRefusal::PoolFull);
        }
        let on_host = self.per_host.get(host).copied().unwrap_or(0);
        if on_host >= self.limits.per_host {
            return Err(FetchRefusal::HostBusy);
        }
        self.in_flight += 1;
        *self.per_host.entry(host.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Gives back a place taken for `host`; `ok`: the fetch gave a
    /// document, else the host is left alone for a while.
    pub fn end(&mut self, host: &str, ok: bool, now: Instant) {
        if let Some(n) = self.per_host.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(host);
            }
            self.in_flight -= 1;
        }
        if !ok {
            self.failed_until.retain(|_, until| now < *until);
            if self.failed_until.len() >= MAX_FAILED_HOSTS {
                if let Some(oldest) = self
                    .failed_until
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(h, _)| h.clone())
                {
                    self.failed_until.remove(&oldest);
                }
            }
            self.failed_until
                .insert(host.to_owned(), now + self.limits.failed_host_memory);
        }
    }

    /// Fetches in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// What to do for a document: use the one at hand, or fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentStep {
    /// Fetched less than [`DOCUMENT_TTL`] ago: use it.
    Cached(Bytes),
    /// Fetch it: the fetch holds a place until
    /// [`DocumentFetches::fetched`] or [`DocumentFetches::abandoned`] is
    /// given the ticket.
    Fetch(FetchTicket),
}

/// A fetch allowed to start: its place in the [`FetchGate`] and when the
/// shell must give up on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a fetch's place is given back with `fetched` or `abandoned`"]
pub struct FetchTicket {
    /// The URL to fetch.
    pub url: String,
    /// The host its place is counted against.
    pub host: String,
    /// When the shell gives up on the fetch ([`FETCH_TIMEOUT`] after it
    /// was allowed).
    pub deadline: Instant,
}

/// The document fetches of one gateway: the [`FetchGate`] and the short
/// cache of fetched documents. One value serves receiver logins and
/// callers alike, so both share the cache and the pool.
///
/// ```
/// use std::time::{Duration, Instant};
/// use anpx_core::handshake::{DocumentFetches, DocumentStep, FetchLimits};
///
/// let mut docs = DocumentFetches::new(FetchLimits::default());
/// let t = Instant::now();
/// let url = "https://agents.example/a/did.json";
/// let DocumentStep::Fetch(ticket) = docs.lookup(t, url, "agents.example").unwrap() else { panic!() };
/// assert_eq!(ticket.deadline, t + Duration::from_secs(5));
/// let doc = docs.fetched(t, ticket, Ok::<_, String>("{}".into())).unwrap();
/// // Reused for five minutes, then fetched again.
/// assert_eq!(docs.lookup(t, url, "agents.example").unwrap(), DocumentStep::Cached(doc));
/// assert!(matches!(docs.lookup(t + Duration::from_secs(300), url, "agents.example"), Ok(DocumentStep::Fetch(_))));
/// ```
#[derive(Debug)]
pub struct DocumentFetches {
    gate: FetchGate,
    cache: HashMap<String, (Instant, Bytes)>,
}

impl DocumentFetches {
    /// Nothing cached, nothing in flight.
    pub fn new(limits: FetchLimits) -> Self {
        DocumentFetches {
            gate: FetchGate::new(limits),
            cache: HashMap::new(),
        }
    }

    /// What to do for the document at `url` (counted against `host`, its
    /// authority in lower case): the cached copy, a fetch, or the refusal
    /// of the login that needed it (`document_fetch_refused`).
    pub fn lookup(
        &mut self,
        now: Instant,
        url: &str,
        host: &str,
    ) -> Result<DocumentStep, AuthRefusal> {
        if let Some((at, doc)) = self.cache.get(url) {
            if now.saturating_duration_since(*at) < DOCUMENT_TTL {
                return Ok(DocumentStep::Cached(doc.clone()));
            }
        }
        // A host that is slow or failing gets only its share of fetches,
        // so logins needing no fetch are never left without a handshake
        // slot behind it.
        self.gate.begin(host, now).map_err(|e| {
            AuthRefusal::new("document_fetch_refused", format!("DID document {url}: {e}"))
        })?;
        Ok(DocumentStep::Fetch(FetchTicket {
            url: url.to_owned(),
            host: host.to_owned(),
            deadline: now + FETCH_TIMEOUT,
        }))
    }

    /// A fetch ended with `result` (the document, or why not, for the
    /// refusal): its place is given back, a failure marks its host, a
    /// document is cached. `Err` is the refusal of the login
    /// (`document_unavailable`).
    pub fn fetched<E: std::fmt::Display>(
        &mut self,
        now: Instant,
        ticket: FetchTicket,
        result: Result<Bytes, E>,
    ) -> Result<Bytes, AuthRefusal> {
        self.gate.end(&ticket.host, result.is_ok(), now);
        let doc = result.map_err(|e| {
            AuthRefusal::new(
                "document_unavailable",
                format!("DID document {}: {e}", ticket.url),
            )
        })?;
        // Bounded: drop expired entries before they can pile up.
        self.cache
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < DOCUMENT_TTL);
        self.cache.insert(ticket.url, (now, doc.clone()));
        Ok(doc)
    }

    /// A fetch was dropped before it ended (its handshake went away): its
    /// place is given back, and the host is not marked, since that says
    /// nothing about it.
    pub fn abandoned(&mut self, now: Instant, ticket: FetchTicket) {
        self.gate.end(&ticket.host, true, now);
    }

    /// Fetches in flight now.
    pub fn in_flight(&self) -> usize {
        self.gate.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FetchLimits {
        FetchLimits {
            max_in_flight: 3,
            per_host: 2,
            failed_host_memory: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_slow_host_takes_only_its_share_of_the_pool() {
        let mut g = FetchGate::new(limits());
        let t = Instant::now();
        g.begin("slow", t).unwrap();
        g.begin("slow", t).unwrap();
        assert_eq!(g.begin("slow", t), Err(FetchRefusal::HostBusy));
        // Another host still gets a fetch.
        g.begin("genuine", t).unwrap();
        assert_eq!(g.begin("other", t), Err(FetchRefusal::PoolFull));
        g.end("genuine", true, t);
        assert_eq!(g.in_flight(), 2);
        g.begin("other", t).unwrap();
    }

    #[test]
    fn a_failed_host_is_left_alone_for_a_while() {
        let mut g = FetchGate::new(limits());
        let t = Instant::now();
        g.begin("dead", t).unwrap();
        g.begin("dead", t).unwrap();
        g.end("dead", false, t + Duration::from_secs(5));
        // The fetch still in flight gives its place back; the memory is
        // counted from the failure.
        g.end("dead", false, t + Duration::from_secs(5));
        assert_eq!(g.in_flight(), 0);
        for later in [5, 9] {
            assert_eq!(
                g.begin("dead", t + Duration::from_secs(later)),
                Err(FetchRefusal::HostFailedRecently)
            );
        }
        g.begin("dead", t + Duration::from_secs(10)).unwrap();
        // A host that answered is not remembered.
        g.end("dead", true, t + Duration::from_secs(10));
        g.begin("dead", t + Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn the_memory_of_failed_hosts_is_bounded() {
        let mut g = FetchGate::new(FetchLimits {
            max_in_flight: 1,
            per_host: 1,
            failed_host_memory: Duration::from_secs(60),
        });
        let t = Instant::now();
        for i in 0..MAX_FAILED_HOSTS + 10 {
            let host = format!("h{i}");
            g.begin(&host, t).unwrap();
            g.end(&host, false, t);
        }
        assert_eq!(g.failed_until.len(), MAX_FAILED_HOSTS);
        assert!(g.per_host.is_empty());
        // Expired memories are swept at the next failure.
        g.begin("last", t + Duration::from_secs(61)).unwrap();
        g.end("last", false, t + Duration::from_secs(61));
        assert_eq!(g.failed_until.len(), 1);
    }

    #[test]
    fn fetch_outcomes_decide_the_login_and_the_host() {
        let mut d = DocumentFetches::new(limits());
        let t = Instant::now();
        let url = "https://h.example/did.json";
        let fetch = |d: &mut DocumentFetches, at| match d.lookup(at, url, "h.example") {
            Ok(DocumentStep::Fetch(ticket)) => Ok(ticket),
            other => Err(other),
        };
        // A failure refuses the login and marks the host.
        let ticket = fetch(&mut d, t).unwrap();
        let refused = d.fetched(t, ticket, Err("status 404")).unwrap_err();
        assert_eq!(refused.label, "document_unavailable");
        assert_eq!(refused.reason, format!("DID document {url}: status 404"));
        let again = fetch(&mut d, t).unwrap_err().unwrap_err();
        assert_eq!(again.label, "document_fetch_refused");
        assert_eq!(d.in_flight(), 0);
        // Abandoned fetches give their places back without marking.
        let later = t + Duration::from_secs(5);
        let a = fetch(&mut d, later).unwrap();
        let b = fetch(&mut d, later).unwrap();
        assert_eq!(d.in_flight(), 2);
        d.abandoned(later, a);
        d.abandoned(later, b);
        assert_eq!(d.in_flight(), 0);
        let c = fetch(&mut d, later).unwrap();
        d.fetched(later, c, Ok::<_, &str>(Bytes::from_static(b"{}")))
            .unwrap();
        assert!(matches!(
            d.lookup(later, url, "h.example"),
            Ok(DocumentStep::Cached(_))
        ));
    }
}
