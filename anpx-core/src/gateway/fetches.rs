//! DID document fetches, kept by the gateway machine: one pool and one
//! cache ([`DocumentFetches`]) for receiver logins and callers alike. The
//! shell fetches; which fetch may start, and what its outcome means, is
//! decided here under the machine's lock, with `now` passed in.

use std::time::Instant;

use bytes::Bytes;

use crate::handshake::{AuthRefusal, DocumentFetches, DocumentStep, FetchLimits, FetchTicket};

use super::Gateway;

impl Gateway {
    /// This gateway, bounding document fetches with `limits` instead of
    /// [`FetchLimits::default`]. Nothing is in flight or cached yet.
    pub fn with_fetch_limits(mut self, limits: FetchLimits) -> Self {
        self.documents = DocumentFetches::new(limits);
        self
    }

    /// [`DocumentFetches::lookup`]: the cached document at `url`, a fetch
    /// (counted against `host`), or the refusal of the login or call.
    pub fn document_lookup(
        &mut self,
        now: Instant,
        url: &str,
        host: &str,
    ) -> Result<DocumentStep, AuthRefusal> {
        self.documents.lookup(now, url, host)
    }

    /// [`DocumentFetches::fetched`]: a fetch ended with `result`.
    pub fn document_fetched<E: std::fmt::Display>(
        &mut self,
        now: Instant,
        ticket: FetchTicket,
        result: Result<Bytes, E>,
    ) -> Result<Bytes, AuthRefusal> {
        self.documents.fetched(now, ticket, result)
    }

    /// [`DocumentFetches::abandoned`]: a fetch was dropped before it ended.
    pub fn document_abandoned(&mut self, now: Instant, ticket: FetchTicket) {
        self.documents.abandoned(now, ticket);
    }

    /// Document fetches in flight now.
    pub fn document_fetches_in_flight(&self) -> usize {
        self.documents.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GatewayConfig;
    use std::time::Duration;

    #[test]
    fn fetch_slots_are_bounded_and_given_back() {
        let limits = FetchLimits {
            max_in_flight: 2,
            per_host: 1,
            failed_host_memory: Duration::from_secs(10),
        };
        let mut gw = Gateway::new(GatewayConfig::default(), 1).with_fetch_limits(limits);
        let t = Instant::now();
        let fetch = |gw: &mut Gateway, url: &str, host: &str| match gw.document_lookup(t, url, host)
        {
            Ok(DocumentStep::Fetch(ticket)) => Ok(ticket),
            Ok(DocumentStep::Cached(_)) => panic!("nothing cached yet"),
            Err(refused) => Err(refused.label),
        };
        let a = fetch(&mut gw, "https://a.example/1", "a.example").unwrap();
        // The host has its one place.
        assert_eq!(
            fetch(&mut gw, "https://a.example/2", "a.example"),
            Err("document_fetch_refused")
        );
        let b = fetch(&mut gw, "https://b.example/1", "b.example").unwrap();
        // The pool is full.
        assert_eq!(
            fetch(&mut gw, "https://c.example/1", "c.example"),
            Err("document_fetch_refused")
        );
        assert_eq!(gw.document_fetches_in_flight(), 2);
        // Dropped and ended fetches give their places back.
        gw.document_abandoned(t, a);
        let doc = gw
            .document_fetched(t, b, Ok::<_, &str>(Bytes::from_static(b"{}")))
            .unwrap();
        assert_eq!(gw.document_fetches_in_flight(), 0);
        let a = fetch(&mut gw, "https://a.example/2", "a.example").unwrap();
        let c = fetch(&mut gw, "https://c.example/1", "c.example").unwrap();
        assert_eq!(
            (a.host.as_str(), c.host.as_str()),
            ("a.example", "c.example")
        );
        // A fetched document is the machine's to hand out again.
        assert_eq!(
            gw.document_lookup(t, "https://b.example/1", "b.example"),
            Ok(DocumentStep::Cached(doc))
        );
    }
}
