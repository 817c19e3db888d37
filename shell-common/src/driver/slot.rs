//! A receiver connection's place in the machine's admissions, from its
//! handshake until its socket closes: the machine decides
//! ([`anpx_core::Gateway::begin_handshake`] and the calls after it), the
//! slot only carries the handshake's id and gives the place back when
//! dropped, however the connection ends.

use std::net::IpAddr;
use std::sync::Arc;

use anpx_core::handshake::{Acceptance, Admitted, AuthRefusal, HandshakeId, Offer, Refusal};
use anpx_core::{Features, Identity, LinkId, ServiceUrl};

use super::{lock, Attached, Driver, DriverGone, Outbox};

impl Driver {
    /// A receiver's handshake from `peer` offering `offer` arrives: the
    /// machine's checks before authentication (a WebSocket key, a slot).
    /// The outer `Err` is a gateway shutting down.
    pub fn begin_handshake(
        &self,
        peer: IpAddr,
        offer: &Offer<'_>,
    ) -> Result<Result<ReceiverSlot, Refusal>, DriverGone> {
        let began = self.with(|st, now| st.core.begin_handshake(now, peer, offer))?;
        Ok(began.map(|id| ReceiverSlot {
            driver: self.clone(),
            id,
        }))
    }

    /// Whether any receiver connection (or handshake) still holds its
    /// place: also read after shutdown, while the sockets close.
    pub fn receivers_open(&self) -> bool {
        lock(&self.inner).core.admissions().open() > 0
    }
}

/// A receiver connection's place in the gateway's admissions. Dropping it
/// ends it: as an abandoned handshake before [`admit`](Self::admit), as a
/// closed connection after.
pub struct ReceiverSlot {
    driver: Driver,
    id: HandshakeId,
}

impl std::fmt::Debug for ReceiverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReceiverSlot").field(&self.id).finish()
    }
}

impl ReceiverSlot {
    /// The machine's decision once authentication said `auth`: the
    /// acceptance (grants, features, the 101's headers) or the refusal,
    /// after which the slot is already given back.
    pub fn decide(
        &mut self,
        offer: &Offer<'_>,
        auth: Result<Admitted, AuthRefusal>,
    ) -> Result<Result<Acceptance, Refusal>, DriverGone> {
        let id = self.id;
        self.driver
            .with(|st, now| st.core.decide_handshake(now, id, offer, auth))
    }

    /// Admits the accepted receiver from `peer` before its 101 goes out,
    /// so its routes are live when it reads it; what is sent to it waits
    /// in `outbox` for its writer.
    pub fn admit(
        &mut self,
        peer: IpAddr,
        identity: Identity,
        grants: Vec<ServiceUrl>,
        features: Features,
        outbox: Arc<Outbox>,
    ) -> Result<LinkId, DriverGone> {
        let id = self.id;
        self.driver.with(|st, now| {
            let link = st.core.admit_handshake(now, id, identity, grants, features);
            // The shell serves the connection on the lane its handshake
            // came in on.
            if let Some(lane) = crate::lanes::current() {
                st.core.set_link_lane(link, lane);
            }
            st.links.insert(
                link,
                Attached {
                    outbox,
                    peer,
                    backlogged: false,
                },
            );
            link
        })
    }
}

impl Drop for ReceiverSlot {
    fn drop(&mut self) {
        // Also after shutdown: the place is given back as the socket
        // closes, which is what draining waits for.
        let mut st = lock(&self.driver.inner);
        st.core.end_handshake(std::time::Instant::now(), self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::edge::EdgeLimits;
    use anpx_core::handshake::Admissions;
    use anpx_core::{Gateway, GatewayConfig};

    fn driver(limits: EdgeLimits) -> Driver {
        let core = Gateway::new(GatewayConfig::default(), 7)
            .with_admissions(Admissions::new(Features::all(), &limits));
        Driver::new(core, |_| std::future::pending()).0
    }

    const OFFER: Offer<'static> = Offer {
        websocket_key: true,
        services: Some(b"api.agent.com"),
        features: None,
    };

    fn open() -> Result<Admitted, AuthRefusal> {
        Ok(Admitted {
            identity: Identity::Anonymous,
            allowed: None,
        })
    }

    #[test]
    fn places_are_given_back_when_slots_drop_even_after_shutdown() {
        let driver = driver(EdgeLimits {
            max_pending_handshakes: 1,
            max_receivers_per_ip: 1,
            ..EdgeLimits::default()
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let begin = || driver.begin_handshake(ip, &OFFER).expect("running");
        let mut slot = begin().expect("a slot");
        assert_eq!(begin().unwrap_err().label(), "handshakes_pending");
        let accepted = slot.decide(&OFFER, open()).unwrap().unwrap();
        let link = slot
            .admit(
                ip,
                accepted.identity,
                accepted.grants,
                accepted.features,
                Arc::default(),
            )
            .unwrap();
        assert_eq!(begin().unwrap_err().label(), "receivers_per_ip");
        // Both are the public edge's refusals too, in the same snapshot.
        let stats = futures_util::FutureExt::now_or_never(driver.stats())
            .expect("at once")
            .expect("running");
        let text = stats.to_prometheus();
        for reason in ["handshakes_pending", "receivers_per_ip"] {
            let series = format!("anpx_edge_refused_total{{reason=\"{reason}\"}} 1\n");
            assert!(text.contains(&series), "{series} not in\n{text}");
        }
        // The machine closing the link does not free the place: the
        // socket is still open until the slot drops.
        driver.closed(link);
        assert!(driver.receivers_open());
        drop(slot);
        assert!(!driver.receivers_open());
        // A refused login gives its place back at once.
        let mut refused = begin().expect("a slot");
        let auth = Err(AuthRefusal::new("bad_signature", "no"));
        let refusal = refused.decide(&OFFER, auth).unwrap().unwrap_err();
        assert_eq!(refusal.status(), 401);
        assert!(!driver.receivers_open());
        drop(refused);
        // A connection still open at shutdown gives its place back when
        // its socket closes, which is what draining waits for.
        let kept = begin().expect("a slot");
        driver.shutdown();
        assert!(driver.begin_handshake(ip, &OFFER).is_err());
        assert!(driver.receivers_open());
        drop(kept);
        assert!(!driver.receivers_open());
    }

    #[test]
    fn refusals_are_in_the_stats_and_metrics() {
        let driver = driver(EdgeLimits::default());
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        let no_key = Offer {
            websocket_key: false,
            ..OFFER
        };
        assert!(driver.begin_handshake(ip, &no_key).unwrap().is_err());
        let mut slot = driver.begin_handshake(ip, &OFFER).unwrap().unwrap();
        let auth = Err(AuthRefusal::new("bad_signature", "no"));
        assert!(slot.decide(&OFFER, auth).unwrap().is_err());
        let stats = futures_util::FutureExt::now_or_never(driver.stats())
            .expect("at once")
            .expect("running");
        assert_eq!(
            stats.handshakes.refused,
            [
                ("bad_signature".to_owned(), 1),
                ("missing_key".to_owned(), 1)
            ]
        );
        let text = stats.to_prometheus();
        assert!(
            text.contains("anpx_receiver_auth_refused_total{reason=\"bad_signature\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_receiver_handshakes_pending 0\n"),
            "{text}"
        );
    }
}
