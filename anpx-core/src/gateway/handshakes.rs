//! Receivers' handshakes, decided by the gateway that admits them: the
//! machine owns its [`Admissions`] (the handshake slots, the connections
//! per address and in all, the refusals by reason), so one lock, one
//! owner and one snapshot cover both a receiver's way in and what it does
//! once admitted.

use std::net::IpAddr;
use std::time::Instant;

use crate::edge::EdgeLimits;
use crate::features::Features;
use crate::handshake::{
    Acceptance, Admissions, Admitted, AuthRefusal, HandshakeId, Offer, Refusal,
};
use crate::route::ServiceUrl;

use super::{Gateway, Identity, LinkId};

impl Gateway {
    /// This gateway, deciding on handshakes with `admissions` (what it
    /// implements and its handshake limits) instead of the default ones
    /// (every extension, [`EdgeLimits::default`]).
    pub fn with_admissions(mut self, admissions: Admissions) -> Self {
        self.admissions = admissions;
        self
    }

    /// The default admissions of [`Gateway::new`].
    pub(super) fn default_admissions() -> Admissions {
        Admissions::new(Features::all(), &EdgeLimits::default())
    }

    /// The handshakes and receiver connections held, and the refusals so
    /// far (for `/stats`, `/metrics` and draining).
    pub fn admissions(&self) -> &Admissions {
        &self.admissions
    }

    /// A receiver's handshake from `peer` offering `offer` arrives:
    /// [`Admissions::begin`]. A slot refused is also the public edge's
    /// refusal (`anpx_edge_refused_total`).
    pub fn begin_handshake(
        &mut self,
        now: Instant,
        peer: IpAddr,
        offer: &Offer<'_>,
    ) -> Result<HandshakeId, Refusal> {
        let began = self.admissions.begin(now, peer, offer);
        if let Err(Refusal::Slots(refusal)) = &began {
            self.edge_refused(*refusal);
        }
        began
    }

    /// Authentication said `auth` on handshake `id`:
    /// [`Admissions::decide`]. A refusal gives its slot back.
    pub fn decide_handshake(
        &mut self,
        now: Instant,
        id: HandshakeId,
        offer: &Offer<'_>,
        auth: Result<Admitted, AuthRefusal>,
    ) -> Result<Acceptance, Refusal> {
        self.admissions.decide(now, id, offer, auth)
    }

    /// The receiver accepted on handshake `id` is admitted: its routes are
    /// live from now on ([`Gateway::admit`]) and its handshake counts as
    /// a connection of its address until [`end_handshake`](Self::end_handshake).
    pub fn admit_handshake(
        &mut self,
        now: Instant,
        id: HandshakeId,
        identity: Identity,
        grants: Vec<ServiceUrl>,
        features: Features,
    ) -> LinkId {
        self.admissions.upgraded(id);
        let peer = self.admissions.peer(id);
        let link = self.admit(now, identity, grants, features);
        if let Some(l) = self.links.get_mut(&link) {
            l.peer = peer;
        }
        link
    }

    /// Handshake `id` ends: abandoned before it was admitted, its
    /// connection's socket closed after ([`Admissions::end`]). Ending one
    /// that already ended does nothing.
    pub fn end_handshake(&mut self, now: Instant, id: HandshakeId) {
        self.admissions.end(now, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::EdgeRefusal;
    use crate::GatewayConfig;

    #[test]
    fn a_handshake_admitted_holds_its_place_until_it_ends() {
        let now = Instant::now();
        let limits = EdgeLimits {
            max_receivers_per_ip: 1,
            ..EdgeLimits::default()
        };
        let mut gw = Gateway::new(GatewayConfig::default(), 1)
            .with_admissions(Admissions::new(Features::all(), &limits));
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let offer = Offer {
            websocket_key: true,
            services: Some(b"api.agent.com/a"),
            features: None,
        };
        let id = gw.begin_handshake(now, peer, &offer).unwrap();
        let open = Admitted {
            identity: Identity::Anonymous,
            allowed: None,
        };
        let accepted = gw.decide_handshake(now, id, &offer, Ok(open)).unwrap();
        let link = gw.admit_handshake(
            now,
            id,
            accepted.identity,
            accepted.grants,
            accepted.features,
        );
        assert_eq!(gw.admissions().connections(), 1);
        let links = gw.stats(now).links;
        assert_eq!(links.len(), 1, "{link} admitted");
        assert_eq!(
            links[0].address,
            Some(peer),
            "the stats say where it came from"
        );
        // The address holds its one place: another is refused.
        let refused = gw.begin_handshake(now, peer, &offer).unwrap_err();
        assert_eq!(refused.status(), 429);
        // A slot refused is the edge's refusal too; a missing key is not.
        let no_key = Offer {
            websocket_key: false,
            ..offer
        };
        assert_eq!(
            gw.begin_handshake(now, peer, &no_key).unwrap_err().status(),
            400
        );
        let edge = gw.stats(now).edge_refused;
        assert_eq!(edge.get(EdgeRefusal::TooManyFromIp), 1);
        let total: u64 = EdgeRefusal::ALL.iter().map(|r| edge.get(*r)).sum();
        assert_eq!(total, 1);
        gw.close_link(now, link);
        assert_eq!(gw.admissions().open(), 1, "the socket is not closed yet");
        gw.end_handshake(now, id);
        assert_eq!(gw.admissions().open(), 0);
        assert!(gw.begin_handshake(now, peer, &offer).is_ok());
    }
}
