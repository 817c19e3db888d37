//! The receiver handshake: what the receiver and gateway tell each other
//! in the WebSocket handshake's HTTP headers, and every decision the
//! gateway takes on it.
//!
//! A gateway keeps one [`Admissions`]: the handshake slots (in progress,
//! connections in all and per address), the refusals by reason, and the
//! decision itself. The shell hands it the header values it read
//! ([`Offer`]) with the peer's address and `now`, runs the authentication
//! I/O the decision asks for (an [`Admitted`] or an [`AuthRefusal`]; DID
//! documents go through [`DocumentFetches`], which decides which fetch
//! may start, its deadline and what its outcome means), and gets back an
//! [`Acceptance`] (negotiated features, granted service URLs, the headers
//! of the 101) or a typed [`Refusal`] (status, reason, body). Only the
//! WebSocket mechanics (`Sec-WebSocket-Accept`, the upgrade) stay with
//! the shell.
//!
//! ```
//! use std::time::Instant;
//! use anpx_core::edge::EdgeLimits;
//! use anpx_core::handshake::{Admissions, Admitted, Offer, Refusal};
//! use anpx_core::{Feature, Features, Identity};
//!
//! let now = Instant::now(); // virtual: time is an argument
//! let limits = EdgeLimits { max_pending_handshakes: 1, ..EdgeLimits::default() };
//! let mut admissions = Admissions::new(Features::all(), &limits);
//! let peer = "192.0.2.7".parse().unwrap();
//! let offer = Offer {
//!     websocket_key: true,
//!     services: Some(b"api.agent.com/a"),
//!     features: Some(b"flow-control,streaming,cancel"),
//! };
//! let id = admissions.begin(now, peer, &offer).unwrap();
//! // The one slot is taken: a second handshake is refused with 503.
//! let refused = admissions.begin(now, peer, &offer).unwrap_err();
//! assert_eq!(refused.status(), 503);
//! // Authentication (open mode here) admits it: grants and features.
//! let open = Admitted { identity: Identity::Anonymous, allowed: None };
//! let accepted = admissions.decide(now, id, &offer, Ok(open)).unwrap();
//! assert_eq!(accepted.grants, ["api.agent.com/a".parse().unwrap()]);
//! assert!(accepted.features.contains(Feature::Streaming));
//! admissions.upgraded(id);
//! assert_eq!((admissions.pending(), admissions.connections()), (0, 1));
//! admissions.end(now, id);
//! assert_eq!(admissions.open(), 0);
//! # let _: Refusal = refused;
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::edge::{EdgeLimits, EdgeRefusal, HandshakeSlots};
use crate::gateway::Identity;
use crate::route::{ServiceUrl, ServiceUrlError};
use crate::Features;

pub use crate::documents::{
    DocumentFetches, DocumentStep, FetchGate, FetchLimits, FetchRefusal, FetchTicket, DOCUMENT_TTL,
    FETCH_TIMEOUT,
};
pub use crate::features::HEADER as FEATURES_HEADER;
pub use crate::features::{negotiate, negotiate_gateway};

/// Request header: the service URLs the receiver wants to serve now.
pub const SERVICES_HEADER: &str = "x-anpx-services";
/// Response header: the service URLs the gateway granted.
pub const GRANTED_HEADER: &str = "x-anpx-granted";

/// Parses a comma-separated list of service URLs.
///
/// ```
/// use anpx_core::handshake::parse_services;
/// let s = parse_services("api.agent.com/a, *").unwrap();
/// assert_eq!(s.len(), 2);
/// assert!(parse_services("").unwrap().is_empty());
/// ```
pub fn parse_services(value: &str) -> Result<Vec<ServiceUrl>, ServiceUrlError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// Writes a list of service URLs as a header value.
pub fn format_services(services: &[ServiceUrl]) -> String {
    services
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when `inner` is `outer` or lies under it: same host (or `outer`'s
/// host is the wildcard) and `outer`'s path a segment prefix of `inner`'s.
pub fn covers(outer: &ServiceUrl, inner: &ServiceUrl) -> bool {
    let host_ok = match (outer.host(), inner.host()) {
        (None, _) => true,
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
    };
    host_ok && inner.segments().starts_with(outer.segments())
}

/// What a receiver is granted.
///
/// `allowed` is what its identity may serve (from the registry), or `None`
/// in open mode, where anything declared is taken as declared. Declaring
/// nothing asks for everything allowed; in open mode, for every host and path.
///
/// ```
/// use anpx_core::handshake::grant;
/// use anpx_core::ServiceUrl;
/// let u = |s: &str| s.parse::<ServiceUrl>().unwrap();
/// let allowed = [u("api.agent.com/a")];
/// assert_eq!(grant(&[u("api.agent.com/a/b"), u("other.com")], Some(&allowed)), [u("api.agent.com/a/b")]);
/// assert_eq!(grant(&[], Some(&allowed)), allowed);
/// assert_eq!(grant(&[], None), [u("*")]);
/// ```
pub fn grant(declared: &[ServiceUrl], allowed: Option<&[ServiceUrl]>) -> Vec<ServiceUrl> {
    match (declared.is_empty(), allowed) {
        // `*` always parses; the iterator form avoids a panic path all the same.
        (true, None) => "*".parse::<ServiceUrl>().into_iter().collect(),
        (false, None) => dedup(declared.to_vec()),
        (true, Some(allowed)) => dedup(allowed.to_vec()),
        (false, Some(allowed)) => dedup(
            declared
                .iter()
                .filter(|d| allowed.iter().any(|a| covers(a, d)))
                .cloned()
                .collect(),
        ),
    }
}

fn dedup(mut v: Vec<ServiceUrl>) -> Vec<ServiceUrl> {
    let mut seen = Vec::with_capacity(v.len());
    v.retain(|u| {
        if seen.contains(u) {
            false
        } else {
            seen.push(u.clone());
            true
        }
    });
    v
}

/// The header values of a receiver's handshake request that the gateway
/// decides on, as raw bytes (`None`: the header is absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offer<'a> {
    /// Whether the request carries `Sec-WebSocket-Key`.
    pub websocket_key: bool,
    /// [`SERVICES_HEADER`]: the service URLs it asks to serve.
    pub services: Option<&'a [u8]>,
    /// [`FEATURES_HEADER`]: the extensions it supports.
    pub features: Option<&'a [u8]>,
}

/// What authentication said about a receiver it let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Who the receiver proved to be.
    pub identity: Identity,
    /// What it may serve; `None` in open mode (anything it declares).
    pub allowed: Option<Vec<ServiceUrl>>,
}

/// Why authentication refused a receiver (or a caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AuthRefusal {
    /// A short, stable label for metrics, e.g. `bad_signature`.
    pub label: &'static str,
    /// The reason, for the log and the 401 body.
    pub reason: String,
}

impl AuthRefusal {
    /// A refusal labelled `label`.
    pub fn new(label: &'static str, reason: impl Into<String>) -> Self {
        AuthRefusal {
            label,
            reason: reason.into(),
        }
    }
}

/// Why a receiver's handshake was refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Sec-WebSocket-Key`: not a WebSocket handshake (400).
    #[error("missing sec-websocket-key")]
    MissingKey,
    /// A handshake slot was not to be had (503 for all of them taken,
    /// 429 for the address's share).
    #[error("{0}")]
    Slots(EdgeRefusal),
    /// Authentication refused it (401).
    #[error("{0}")]
    Auth(AuthRefusal),
    /// [`SERVICES_HEADER`] is not text or not a list of service URLs (400).
    #[error("bad {SERVICES_HEADER}: {0}")]
    BadServices(String),
    /// Nothing it declared is granted to its identity (403).
    #[error("None of the declared service URLs is granted to this identity")]
    NothingGranted,
}

impl Refusal {
    /// The HTTP status answered instead of 101.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MissingKey | Refusal::BadServices(_) => 400,
            Refusal::Slots(r) => r.status().unwrap_or(503),
            Refusal::Auth(_) => 401,
            Refusal::NothingGranted => 403,
        }
    }

    /// A short, stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_key",
            Refusal::Slots(r) => r.label(),
            Refusal::Auth(a) => a.label,
            Refusal::BadServices(_) => "bad_services",
            Refusal::NothingGranted => "nothing_granted",
        }
    }

    /// The answer's content type.
    pub fn content_type(&self) -> &'static str {
        match self {
            Refusal::MissingKey => "text/plain; charset=utf-8",
            _ => "application/json",
        }
    }

    /// The answer's body.
    ///
    /// ```
    /// use anpx_core::handshake::{AuthRefusal, Refusal};
    /// let r = Refusal::Auth(AuthRefusal::new("bad_signature", "signature does not verify"));
    /// assert_eq!((r.status(), r.body()), (401, r#"{"error":"Authentication failed","reason":"signature does not verify"}"#.to_owned()));
    /// assert_eq!(Refusal::MissingKey.body(), "missing sec-websocket-key\n");
    /// ```
    pub fn body(&self) -> String {
        let json = match self {
            Refusal::MissingKey => return format!("{self}\n"),
            Refusal::Auth(a) => {
                serde_json::json!({ "error": "Authentication failed", "reason": a.reason })
            }
            _ => serde_json::json!({ "error": self.to_string() }),
        };
        json.to_string()
    }
}

/// An accepted handshake: what the 101 says and what the link is served
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    /// Who the receiver is.
    pub identity: Identity,
    /// What it may serve.
    pub grants: Vec<ServiceUrl>,
    /// What it asked to serve (empty: everything it is allowed), which
    /// later registry changes are granted against ([`grant`]).
    pub declared: Vec<ServiceUrl>,
    /// Extensions in use on the link.
    pub features: Features,
}

impl Acceptance {
    /// The headers the 101 carries beside the WebSocket ones: the agreed
    /// extensions and the granted service URLs.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (FEATURES_HEADER, self.features.to_header_value()),
            (GRANTED_HEADER, format_services(&self.grants)),
        ]
    }
}

/// One handshake's place in an [`Admissions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandshakeId(u64);

impl std::fmt::Display for HandshakeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handshake-{}", self.0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Place {
    peer: IpAddr,
    since: Instant,
    upgraded: bool,
}

/// Header bytes as text, as an HTTP library reads them (visible ASCII and
/// tabs), with its words for a value that is not.
pub(crate) fn header_text(value: &[u8]) -> Result<&str, String> {
    if value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(value).map_err(|e| e.to_string())
    } else {
        Err("failed to convert header to a str".to_owned())
    }
}

/// The gateway's receiver admissions: the handshake slots, every
/// handshake from its arrival until its connection ends, the
/// authentication refusals by reason, and the decisions in between.
///
/// Each handshake [`begin`](Self::begin)s, then either is refused (by
/// [`decide`](Self::decide), which gives its slot back) or accepted, and
/// then [`end`](Self::end)s exactly once: before [`upgraded`](Self::upgraded)
/// as an abandoned handshake, after it as a closed connection.
#[derive(Debug)]
pub struct Admissions {
    ours: Features,
    slots: HandshakeSlots,
    handshakes: BTreeMap<HandshakeId, Place>,
    next: u64,
    auth_refused: BTreeMap<&'static str, u64>,
    /// Every refusal, by [`Refusal::label`].
    refused: BTreeMap<&'static str, u64>,
}

impl Admissions {
    /// Admissions for a gateway supporting `ours`, with the handshake
    /// limits of `limits`.
    pub fn new(ours: Features, limits: &EdgeLimits) -> Self {
        Admissions {
            ours,
            slots: HandshakeSlots::from_limits(limits),
            handshakes: BTreeMap::new(),
            next: 0,
            auth_refused: BTreeMap::new(),
            refused: BTreeMap::new(),
        }
    }

    /// A handshake from `peer` arrives at `now`: the checks that cost
    /// nothing (a WebSocket key, a handshake slot) run before
    /// authentication may cost anything. `Ok` holds a slot until
    /// [`decide`](Self::decide) refuses it or [`end`](Self::end).
    pub fn begin(
        &mut self,
        now: Instant,
        peer: IpAddr,
        offer: &Offer<'_>,
    ) -> Result<HandshakeId, Refusal> {
        let slot = if offer.websocket_key {
            self.slots.begin(peer).map_err(Refusal::Slots)
        } else {
            Err(Refusal::MissingKey)
        };
        if let Err(refusal) = slot {
            return Err(self.count(refusal));
        }
        let id = HandshakeId(self.next);
        self.next += 1;
        self.handshakes.insert(
            id,
            Place {
                peer,
                since: now,
                upgraded: false,
            },
        );
        Ok(id)
    }

    /// Decides handshake `id` once authentication said `auth`: an
    /// authentication refusal (counted by its label), then the declared
    /// services, the grants and the extensions. A refusal ends the
    /// handshake; an acceptance keeps its slot until
    /// [`upgraded`](Self::upgraded) or [`end`](Self::end).
    pub fn decide(
        &mut self,
        now: Instant,
        id: HandshakeId,
        offer: &Offer<'_>,
        auth: Result<Admitted, AuthRefusal>,
    ) -> Result<Acceptance, Refusal> {
        let decided = self.decision(offer, auth);
        if decided.is_err() {
            self.end(now, id);
        }
        decided.map_err(|refusal| self.count(refusal))
    }

    /// Counts `refusal` by its label and gives it back.
    fn count(&mut self, refusal: Refusal) -> Refusal {
        *self.refused.entry(refusal.label()).or_default() += 1;
        refusal
    }

    fn decision(
        &mut self,
        offer: &Offer<'_>,
        auth: Result<Admitted, AuthRefusal>,
    ) -> Result<Acceptance, Refusal> {
        let admitted = auth.map_err(|refusal| {
            *self.auth_refused.entry(refusal.label).or_default() += 1;
            Refusal::Auth(refusal)
        })?;
        let declared = match offer.services {
            None => Vec::new(),
            Some(value) => header_text(value)
                .and_then(|s| parse_services(s).map_err(|e| e.to_string()))
                .map_err(Refusal::BadServices)?,
        };
        let grants = grant(&declared, admitted.allowed.as_deref());
        if grants.is_empty() {
            return Err(Refusal::NothingGranted);
        }
        // A features value that is not text is no list: plain ANPX v1.
        let theirs = offer.features.and_then(|v| header_text(v).ok());
        Ok(Acceptance {
            identity: admitted.identity,
            grants,
            declared,
            features: negotiate_gateway(self.ours, theirs),
        })
    }

    /// The accepted receiver of handshake `id` is admitted to the gateway
    /// machine: no longer a pending handshake, still a connection of its
    /// address until [`end`](Self::end).
    pub fn upgraded(&mut self, id: HandshakeId) {
        if let Some(place) = self.handshakes.get_mut(&id) {
            if !place.upgraded {
                place.upgraded = true;
                self.slots.upgraded(place.peer);
            }
        }
    }

    /// The address handshake `id` came from, while it holds its place.
    pub fn peer(&self, id: HandshakeId) -> Option<IpAddr> {
        self.handshakes.get(&id).map(|place| place.peer)
    }

    /// Handshake `id` ends: abandoned before [`upgraded`](Self::upgraded),
    /// its connection closed after. Ending one that already ended does
    /// nothing.
    pub fn end(&mut self, _now: Instant, id: HandshakeId) {
        if let Some(place) = self.handshakes.remove(&id) {
            if place.upgraded {
                self.slots.closed(place.peer);
            } else {
                self.slots.abandoned(place.peer);
            }
        }
    }

    /// Handshakes in progress (begun, not yet upgraded or ended).
    pub fn pending(&self) -> usize {
        self.slots.pending()
    }

    /// Upgraded connections not yet ended.
    pub fn connections(&self) -> usize {
        self.handshakes.values().filter(|p| p.upgraded).count()
    }

    /// Handshakes and connections not yet ended; zero once everything
    /// closed.
    pub fn open(&self) -> usize {
        self.handshakes.len()
    }

    /// Handshakes and connections counted for `peer`'s address.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.slots.held_by(peer)
    }

    /// How long the oldest handshake still in progress has been at it.
    pub fn longest_pending(&self, now: Instant) -> Option<Duration> {
        self.handshakes
            .values()
            .filter(|p| !p.upgraded)
            .map(|p| now.saturating_duration_since(p.since))
            .max()
    }

    /// Authentication refusals so far, by label.
    pub fn auth_refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.auth_refused.iter().map(|(l, n)| (*l, *n))
    }

    /// Every refusal so far (no key, slots, authentication, services,
    /// grants), by label.
    pub fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.refused.iter().map(|(l, n)| (*l, *n))
    }

    /// A snapshot: what is held and what was refused.
    pub fn stats(&self) -> HandshakeStats {
        HandshakeStats {
            pending: self.pending(),
            connections: self.connections(),
            refused: self.refusals().map(|(l, n)| (l.to_owned(), n)).collect(),
            auth_refused: self
                .auth_refusals()
                .map(|(l, n)| (l.to_owned(), n))
                .collect(),
        }
    }

    /// `anpx_receiver_auth_refused_total` and
    /// `anpx_receiver_handshakes_refused_total`, by reason.
    pub fn prometheus(&self) -> String {
        self.stats().to_prometheus()
    }
}

/// The receivers' handshakes at one point in time
/// ([`Admissions::stats`]), part of the gateway's `/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HandshakeStats {
    /// Handshakes in progress.
    pub pending: usize,
    /// Receiver connections admitted whose socket is still open.
    pub connections: usize,
    /// Every refusal so far, by reason.
    pub refused: Vec<(String, u64)>,
    /// Authentication refusals so far, by reason.
    pub auth_refused: Vec<(String, u64)>,
}

impl HandshakeStats {
    /// `anpx_receiver_auth_refused_total`,
    /// `anpx_receiver_handshakes_refused_total` (by reason) and
    /// `anpx_receiver_handshakes_pending`.
    pub fn to_prometheus(&self) -> String {
        let mut text = String::from(
            "# HELP anpx_receiver_auth_refused_total Receiver handshakes refused, by reason.\n# TYPE anpx_receiver_auth_refused_total counter\n",
        );
        for (label, n) in &self.auth_refused {
            text.push_str(&format!(
                "anpx_receiver_auth_refused_total{{reason=\"{label}\"}} {n}\n"
            ));
        }
        text.push_str(
            "# HELP anpx_receiver_handshakes_refused_total Receiver handshakes refused for any reason (no key, slots, authentication, services, grants), by reason.\n# TYPE anpx_receiver_handshakes_refused_total counter\n",
        );
        for (label, n) in &self.refused {
            text.push_str(&format!(
                "anpx_receiver_handshakes_refused_total{{reason=\"{label}\"}} {n}\n"
            ));
        }
        text.push_str(&format!(
            "# HELP anpx_receiver_handshakes_pending Receiver handshakes in progress.\n# TYPE anpx_receiver_handshakes_pending gauge\nanpx_receiver_handshakes_pending {}\n",
            self.pending
        ));
        text
    }
}

/// The headers a receiver sends in its handshake request beside the
/// WebSocket ones: the extensions it supports and, unless it asks for
/// everything it is allowed, the service URLs it wants to serve.
pub fn offer_headers(ours: Features, services: &[ServiceUrl]) -> Vec<(&'static str, String)> {
    let mut headers = vec![(FEATURES_HEADER, ours.to_header_value())];
    if !services.is_empty() {
        headers.push((SERVICES_HEADER, format_services(services)));
    }
    headers
}

/// What a receiver reads from the gateway's 101: the extensions in use
/// ([`negotiate`] with the gateway's [`FEATURES_HEADER`]) and the granted
/// service URLs as the gateway wrote them ([`GRANTED_HEADER`]). Values
/// that are not text count as absent.
///
/// ```
/// use anpx_core::handshake::answered;
/// use anpx_core::{Feature, Features};
/// let (features, granted) = answered(Features::all(), Some(b"cancel"), Some(b"a.com/x, b.com"));
/// assert_eq!(features, Features::from(Feature::Cancel));
/// assert_eq!(granted, ["a.com/x", "b.com"]);
/// // A reference gateway says neither: plain ANPX v1.
/// assert_eq!(answered(Features::all(), None, None), (Features::empty(), vec![]));
/// ```
pub fn answered(
    ours: Features,
    features: Option<&[u8]>,
    granted: Option<&[u8]>,
) -> (Features, Vec<String>) {
    fn text(v: Option<&[u8]>) -> Option<&str> {
        v.and_then(|v| header_text(v).ok())
    }
    let granted = text(granted)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    (negotiate(ours, text(features)), granted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Feature;

    fn u(s: &str) -> ServiceUrl {
        s.parse().unwrap()
    }

    fn limits(pending: usize, per_ip: usize) -> EdgeLimits {
        EdgeLimits {
            max_pending_handshakes: pending,
            max_receivers_per_ip: per_ip,
            ..EdgeLimits::default()
        }
    }

    fn capped(pending: usize, total: usize, per_ip: usize) -> EdgeLimits {
        EdgeLimits {
            max_receivers: total,
            ..limits(pending, per_ip)
        }
    }

    const OFFER: Offer<'static> = Offer {
        websocket_key: true,
        services: None,
        features: None,
    };

    fn open() -> Result<Admitted, AuthRefusal> {
        Ok(Admitted {
            identity: Identity::Anonymous,
            allowed: None,
        })
    }

    #[test]
    fn the_checks_run_in_order_and_refusals_give_slots_back() {
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = Admissions::new(Features::all(), &limits(2, 8));
        let no_key = Offer {
            websocket_key: false,
            ..OFFER
        };
        assert_eq!(a.begin(t, ip, &no_key), Err(Refusal::MissingKey));
        assert_eq!(a.open(), 0);
        // Authentication is decided before the services, so a refused
        // login with a bad list is a 401, and counted.
        let bad = Offer {
            services: Some(b"not a url/\xff"),
            ..OFFER
        };
        let id = a.begin(t, ip, &bad).unwrap();
        let refused = a
            .decide(t, id, &bad, Err(AuthRefusal::new("bad_signature", "no")))
            .unwrap_err();
        assert_eq!((refused.status(), refused.label()), (401, "bad_signature"));
        assert_eq!(
            a.auth_refusals().collect::<Vec<_>>(),
            [("bad_signature", 1)]
        );
        let id = a.begin(t, ip, &bad).unwrap();
        let refused = a.decide(t, id, &bad, open()).unwrap_err();
        assert_eq!(
            refused,
            Refusal::BadServices("failed to convert header to a str".into())
        );
        assert_eq!(
            refused.body(),
            r#"{"error":"bad x-anpx-services: failed to convert header to a str"}"#
        );
        // Nothing granted: 403.
        let other = Offer {
            services: Some(b"other.com"),
            ..OFFER
        };
        let id = a.begin(t, ip, &other).unwrap();
        let allowed = Ok(Admitted {
            identity: Identity::Did("did:wba:x".into()),
            allowed: Some(vec![u("api.agent.com")]),
        });
        assert_eq!(a.decide(t, id, &other, allowed).unwrap_err().status(), 403);
        assert_eq!((a.open(), a.pending(), a.held_by(ip)), (0, 0, 0));
        // Every refusal is counted, not only authentication's.
        assert_eq!(
            a.refusals().collect::<Vec<_>>(),
            [
                ("bad_services", 1),
                ("bad_signature", 1),
                ("missing_key", 1),
                ("nothing_granted", 1)
            ]
        );
        let text = a.prometheus();
        assert!(
            text.contains("anpx_receiver_handshakes_refused_total{reason=\"nothing_granted\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn slots_cap_handshakes_in_all_and_per_address() {
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut a = Admissions::new(Features::all(), &limits(1, 1));
        let first = a.begin(t, ip, &OFFER).unwrap();
        let full = a.begin(t, other, &OFFER).unwrap_err();
        assert_eq!((full.status(), full.label()), (503, "handshakes_pending"));
        a.decide(t, first, &OFFER, open()).unwrap();
        a.upgraded(first);
        a.upgraded(first);
        assert_eq!((a.pending(), a.connections()), (0, 1));
        // The address holds its one connection: 429; another address is in.
        assert_eq!(a.begin(t, ip, &OFFER).unwrap_err().status(), 429);
        let second = a.begin(t, other, &OFFER).unwrap();
        assert_eq!(
            a.longest_pending(t + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        // An accepted handshake that never upgraded is abandoned.
        a.decide(t, second, &OFFER, open()).unwrap();
        a.end(t, second);
        a.end(t, first);
        a.end(t, first);
        assert_eq!((a.open(), a.pending(), a.held_by(ip)), (0, 0, 0));
        assert!(a.begin(t, ip, &OFFER).is_ok());
    }

    #[test]
    fn receivers_in_all_are_capped_until_one_ends() {
        let t = Instant::now();
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let mut a = Admissions::new(Features::all(), &capped(8, 3, 8));
        let mut ids = Vec::new();
        for n in 1..=3 {
            let id = a.begin(t, ip(n), &OFFER).unwrap();
            a.decide(t, id, &OFFER, open()).unwrap();
            a.upgraded(id);
            ids.push(id);
        }
        // The fourth, from any address, is refused with 503 and counted.
        let refused = a.begin(t, ip(4), &OFFER).unwrap_err();
        assert_eq!((refused.status(), refused.label()), (503, "receivers"));
        assert_eq!(refused, Refusal::Slots(EdgeRefusal::TooManyReceivers));
        assert_eq!(a.refusals().collect::<Vec<_>>(), [("receivers", 1)]);
        assert!(a
            .prometheus()
            .contains("anpx_receiver_handshakes_refused_total{reason=\"receivers\"} 1\n"));
        // A connection that ends frees its place; the others stay.
        a.end(t, ids[1]);
        assert_eq!((a.connections(), a.held_by(ip(1))), (2, 1));
        let id = a.begin(t, ip(4), &OFFER).unwrap();
        assert_eq!(a.begin(t, ip(5), &OFFER).unwrap_err().label(), "receivers");
        // A refused login frees it too.
        let auth = Err(AuthRefusal::new("bad_signature", "no"));
        assert_eq!(a.decide(t, id, &OFFER, auth).unwrap_err().status(), 401);
        assert!(a.begin(t, ip(5), &OFFER).is_ok());
    }

    #[test]
    fn features_are_negotiated_from_the_offered_values() {
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = Admissions::new(Features::all(), &limits(8, 8));
        let mut agree = |features: Option<&[u8]>| {
            let offer = Offer {
                features,
                services: Some(b"api.agent.com/a, api.agent.com/a"),
                ..OFFER
            };
            let id = a.begin(t, ip, &offer).unwrap();
            let accepted = a.decide(t, id, &offer, open()).unwrap();
            a.end(t, id);
            assert_eq!(accepted.grants, [u("api.agent.com/a")]);
            accepted
        };
        // Absent or not text: plain v1. Unknown tokens are ignored, and
        // streaming comes only with flow-control.
        assert_eq!(agree(None).features, Features::empty());
        assert_eq!(agree(Some(b"cancel\x01")).features, Features::empty());
        assert_eq!(
            agree(Some(b"streaming, Cancel, teleport")).features,
            Features::from(Feature::Cancel)
        );
        let all = agree(Some(b"streaming,flow-control,cancel"));
        assert_eq!(
            all.headers(),
            [
                (FEATURES_HEADER, "streaming,flow-control,cancel".to_owned()),
                (GRANTED_HEADER, "api.agent.com/a".to_owned()),
            ]
        );
        assert_eq!(a.open(), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            Begin(u8),
            Accept(usize),
            Refuse(usize),
            Upgrade(usize),
            End(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0u8..3).prop_map(Step::Begin),
                any::<usize>().prop_map(Step::Accept),
                any::<usize>().prop_map(Step::Refuse),
                any::<usize>().prop_map(Step::Upgrade),
                any::<usize>().prop_map(Step::End),
            ]
        }

        proptest! {
            /// Whatever the order of calls (stale and repeated ones
            /// included), the caps hold, refusals give their slot back,
            /// and ending everything leaves nothing.
            #[test]
            fn admissions_hold_their_caps_and_never_leak(steps in prop::collection::vec(step(), 0..200)) {
                let t = Instant::now();
                let mut a = Admissions::new(Features::all(), &capped(3, 5, 2));
                // (id, address, upgraded) for every handshake not ended.
                let mut live: Vec<(HandshakeId, IpAddr, bool)> = Vec::new();
                let mut ended: Vec<HandshakeId> = Vec::new();
                for st in steps {
                    let pick = |n: usize, live: &Vec<(HandshakeId, IpAddr, bool)>| (!live.is_empty()).then(|| n % live.len());
                    match st {
                        Step::Begin(n) => {
                            let ip = IpAddr::from([10, 0, 0, n]);
                            let pending = live.iter().filter(|h| !h.2).count();
                            let held = live.iter().filter(|h| h.1 == ip).count();
                            match a.begin(t, ip, &OFFER) {
                                Ok(id) => live.push((id, ip, false)),
                                Err(Refusal::Slots(EdgeRefusal::TooManyHandshakes)) => prop_assert_eq!(pending, 3),
                                Err(Refusal::Slots(EdgeRefusal::TooManyReceivers)) => prop_assert_eq!(live.len(), 5),
                                Err(Refusal::Slots(EdgeRefusal::TooManyFromIp)) => prop_assert_eq!(held, 2),
                                Err(e) => prop_assert!(false, "{e:?}"),
                            }
                        }
                        Step::Accept(n) => if let Some(i) = pick(n, &live) {
                            prop_assert!(a.decide(t, live[i].0, &OFFER, open()).is_ok());
                        },
                        Step::Refuse(n) => if let Some(i) = pick(n, &live) {
                            let auth = Err(AuthRefusal::new("no", "no"));
                            prop_assert_eq!(a.decide(t, live[i].0, &OFFER, auth).unwrap_err().status(), 401);
                            ended.push(live.remove(i).0);
                        },
                        Step::Upgrade(n) => if let Some(i) = pick(n, &live) {
                            a.upgraded(live[i].0);
                            live[i].2 = true;
                        },
                        Step::End(n) => {
                            // Now and then a stale id: ending it again does nothing.
                            if n % 5 == 0 && !ended.is_empty() {
                                a.end(t, ended[n % ended.len()]);
                            } else if let Some(i) = pick(n, &live) {
                                a.end(t, live[i].0);
                                ended.push(live.remove(i).0);
                            }
                        }
                    }
                    let pending = live.iter().filter(|h| !h.2).count();
                    prop_assert_eq!((a.open(), a.pending()), (live.len(), pending));
                    prop_assert!(a.pending() <= 3);
                    prop_assert!(a.open() <= 5);
                    for n in 0..3u8 {
                        let ip = IpAddr::from([10, 0, 0, n]);
                        prop_assert_eq!(a.held_by(ip), live.iter().filter(|h| h.1 == ip).count());
                        prop_assert!(a.held_by(ip) <= 2);
                    }
                }
                for (id, _, _) in live.drain(..) {
                    a.end(t, id);
                }
                prop_assert_eq!((a.open(), a.pending(), a.connections()), (0, 0, 0));
            }
        }
    }

    #[test]
    fn the_receiver_offers_and_reads_the_answer() {
        let ours = Features::all();
        assert_eq!(offer_headers(ours, &[]).len(), 1);
        let h = offer_headers(ours, &[u("a.com/x"), u("*")]);
        assert_eq!(h[1], (SERVICES_HEADER, "a.com/x, *".to_owned()));
        let (f, g) = answered(ours, Some(b"cancel\xff"), Some(b" , a.com ,"));
        assert_eq!((f, g), (Features::empty(), vec!["a.com".to_owned()]));
    }
}
