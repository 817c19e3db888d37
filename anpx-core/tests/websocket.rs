//! WebSocket passthrough (the `websocket` extension), gateway and receiver
//! state machines back to back: the upgrade goes only to a link that
//! carries it, a `101` turns the request into a byte stream each way under
//! the credit windows, either side can end its direction, and the request
//! timeout no longer applies once the upgrade is through.

mod support;

use std::time::Duration;
use support::Pair;

use anpx_core::frame::ExtFrame;
use anpx_core::passthrough;
use anpx_core::INITIAL_WINDOW;
use anpx_core::{Feature, Features};
use anpx_core::{GatewayConfig, Identity, Reject, RequestBody, ResponseEvent};
use anpx_core::{RequestEvent, ResponseBody};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use bytes::Bytes;

const PIECE: usize = 64 * 1024;

impl Pair {
    fn new(features: Features) -> Self {
        Pair::with_config(features, GatewayConfig::default())
    }

    fn with_config(features: Features, config: GatewayConfig) -> Self {
        Pair::back_to_back("chat.example/", features, config)
    }

    fn all() -> Self {
        Pair::new(Features::all())
    }

    fn start(&mut self, head: RequestHead) -> Result<RequestId, Reject> {
        let id = self
            .gw
            .start_request(self.now, "chat.example", head, RequestBody::Streaming)?;
        self.pump();
        Ok(id)
    }

    /// Opens a WebSocket: the upgrade request, the service's `101`.
    fn open(&mut self) -> RequestId {
        let id = self.start(upgrade_head()).unwrap();
        let head = ResponseHead::new(101)
            .with_header("connection", "upgrade")
            .with_header("upgrade", "websocket")
            .with_header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        self.rx
            .respond(self.now, &id, head, ResponseBody::Streaming)
            .unwrap();
        self.pump();
        id
    }

    /// Bytes the service got from the client for `id`, and whether the
    /// client's direction ended.
    fn upstream_got(&self, id: &RequestId) -> (usize, bool) {
        let mut n = 0;
        let mut end = false;
        for e in &self.requests {
            match e {
                RequestEvent::Body { request, data } if request == id => n += data.len(),
                RequestEvent::End { request } if request == id => end = true,
                _ => {}
            }
        }
        (n, end)
    }

    /// Bytes the client got from the service, and whether that ended.
    fn client_got(&self, id: &RequestId) -> (usize, bool) {
        let mut n = 0;
        let mut end = false;
        for (r, e) in &self.responses {
            if r == id {
                match e {
                    ResponseEvent::Body(b) => n += b.len(),
                    ResponseEvent::End => end = true,
                    _ => {}
                }
            }
        }
        (n, end)
    }

    fn failures(&self, id: &RequestId) -> Vec<u16> {
        self.responses
            .iter()
            .filter(|(r, _)| r == id)
            .filter_map(|(_, e)| match e {
                ResponseEvent::Failed(f) => Some(f.status),
                _ => None,
            })
            .collect()
    }

    fn aborted(&self, id: &RequestId) -> bool {
        self.requests
            .iter()
            .any(|e| matches!(e, RequestEvent::Aborted { request, .. } if request == id))
    }

    fn cancels_sent(&self) -> usize {
        self.gw_sent
            .iter()
            .filter(|b| ExtFrame::peek(b) == Some(anpx_core::frame::TYPE_CANCEL))
            .count()
    }

    /// Lets `by` pass in small steps, so that both sides' pings and
    /// liveness checks run as they would.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now = (self.now + Duration::from_secs(1)).min(end);
            self.gw.handle_timeout(self.now);
            self.rx.handle_timeout(self.now);
            self.pump();
        }
    }
}

fn upgrade_head() -> RequestHead {
    let mut head = RequestHead::new("GET", "/chat")
        .with_header("host", "chat.example")
        .with_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .with_header("sec-websocket-version", "13");
    passthrough::mark_upgrade(&mut head.headers);
    head
}

#[test]
fn the_upgrade_reaches_the_receiver_and_the_101_comes_back() {
    let mut p = Pair::all();
    let id = p.open();
    let head = p.requests.iter().find_map(|e| match e {
        RequestEvent::Head { request, head } if *request == id => Some(head.clone()),
        _ => None,
    });
    let head = head.expect("the receiver got the upgrade request");
    assert!(passthrough::is_upgrade(&head), "{head:?}");
    assert_eq!(head.headers.get("sec-websocket-version"), Some("13"));
    // The client's direction stays open: no end before the client ends it.
    assert_eq!(p.upstream_got(&id), (0, false));
    let status = p.responses.iter().find_map(|(r, e)| match e {
        ResponseEvent::Head(h) if *r == id => Some(h.status),
        _ => None,
    });
    assert_eq!(status, Some(101));
    assert_eq!(p.gw.stats(p.now).totals.websockets, 1);
}

#[test]
fn bytes_flow_both_ways_under_credit() {
    let mut p = Pair::all();
    let id = p.open();
    let total = 4 * INITIAL_WINDOW as usize;

    // Client → service, with the service not reading: at most a window
    // reaches the receiver, the rest waits at the gateway.
    let piece = Bytes::from(vec![7u8; PIECE]);
    for _ in 0..total / PIECE {
        p.gw.push_body(p.now, &id, piece.clone(), false).unwrap();
    }
    p.pump();
    let (got, _) = p.upstream_got(&id);
    assert_eq!(got, INITIAL_WINDOW as usize);
    assert_eq!(
        p.gw.upload_queued(&id),
        Some((total - INITIAL_WINDOW as usize) as u64)
    );
    // The service reads what it got; credit flows back and the rest comes.
    let mut delivered = 0;
    while delivered < total {
        let (got, _) = p.upstream_got(&id);
        assert!(got > delivered, "no progress after {delivered} bytes");
        p.rx.request_body_read(p.now, &id, got - delivered);
        delivered = got;
        p.pump();
    }
    assert_eq!(p.upstream_got(&id), (total, false));

    // Service → client, with the client not reading: the same bound.
    for _ in 0..total / PIECE {
        p.rx.respond_body(p.now, &id, piece.clone(), false).unwrap();
    }
    p.pump();
    assert_eq!(p.client_got(&id), (INITIAL_WINDOW as usize, false));
    assert_eq!(
        p.rx.unsent(&id),
        Some((total - INITIAL_WINDOW as usize) as u64)
    );
    let mut read = 0;
    while read < total {
        let (got, _) = p.client_got(&id);
        assert!(got > read, "no progress after {read} bytes");
        p.gw.body_read(p.now, &id, got - read);
        read = got;
        p.pump();
    }
    assert_eq!(p.client_got(&id), (total, false));
    assert_eq!(p.gw.in_flight(), 1);
}

#[test]
fn the_client_ends_first_then_the_service() {
    let mut p = Pair::all();
    let id = p.open();
    p.gw.push_body(p.now, &id, Bytes::from_static(b"bye"), true)
        .unwrap();
    p.pump();
    assert_eq!(p.upstream_got(&id), (3, true));
    // The service's direction is still open and still carries bytes.
    p.rx.respond_body(p.now, &id, Bytes::from_static(b"ok"), false)
        .unwrap();
    p.rx.respond_body(p.now, &id, Bytes::new(), true).unwrap();
    p.pump();
    assert_eq!(p.client_got(&id), (2, true));
    assert_eq!(p.cancels_sent(), 0, "both ends ended: nothing to cancel");
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.rx.in_flight(), 0);
}

#[test]
fn the_service_ends_first_and_the_receiver_is_told() {
    let mut p = Pair::all();
    let id = p.open();
    p.rx.respond_body(p.now, &id, Bytes::from_static(b"closing"), true)
        .unwrap();
    p.pump();
    assert_eq!(p.client_got(&id), (7, true));
    // The client's direction was still open: the receiver drops it.
    assert_eq!(p.cancels_sent(), 1);
    assert!(p.aborted(&id));
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.rx.in_flight(), 0);
    assert!(p
        .gw
        .push_body(p.now, &id, Bytes::from_static(b"late"), false)
        .is_err());
}

#[test]
fn a_client_that_goes_away_cancels_the_stream() {
    let mut p = Pair::all();
    let id = p.open();
    p.gw.cancel(p.now, &id);
    p.pump();
    assert_eq!(p.cancels_sent(), 1);
    assert!(p.aborted(&id));
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.rx.in_flight(), 0);
}

#[test]
fn a_link_without_websocket_never_gets_the_upgrade() {
    let others: Features = [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
        .into_iter()
        .collect();
    for features in [
        Features::empty(),
        others,
        Features::from(Feature::WebSocket),
    ] {
        let mut p = Pair::new(features);
        let reject = p.start(upgrade_head()).unwrap_err();
        assert!(matches!(reject, Reject::NoWebSocket { .. }), "{reject:?}");
        let failure = reject.failure();
        assert_eq!(failure.status, 501);
        assert!(failure.error.contains("WebSocket"), "{}", failure.error);
        assert!(p.gw_sent.is_empty(), "nothing may reach {features:?}");
        assert_eq!(p.gw.stats(p.now).totals.websockets_refused, 1);
        assert!(p
            .gw
            .stats(p.now)
            .to_prometheus()
            .contains("anpx_requests_failed_total{status=\"501\"} 1"));
        // Plain requests on the same link are served as before.
        assert!(p.start(RequestHead::new("GET", "/plain")).is_ok());
    }
}

#[test]
fn the_upgrade_goes_to_the_receiver_that_carries_it() {
    let mut p = Pair::new(Features::empty());
    let able = p.gw.admit(
        p.now,
        Identity::Anonymous,
        vec!["chat.example/".parse().unwrap()],
        Features::all(),
    );
    for _ in 0..4 {
        let id =
            p.gw.start_request(
                p.now,
                "chat.example",
                upgrade_head(),
                RequestBody::Streaming,
            )
            .unwrap();
        assert_eq!(p.gw.request_link(&id), Some(able));
    }
}

#[test]
fn the_request_timeout_stops_applying_after_the_101() {
    let mut p = Pair::all();
    let config = GatewayConfig::default();
    let id = p.open();
    // Quiet for many request timeouts, but within the idle timeout.
    let step = config.request_timeout;
    let mut quiet = Duration::ZERO;
    while quiet + step < config.websocket_idle_timeout {
        p.advance(step);
        quiet += step;
    }
    assert!(quiet > config.request_timeout * 5);
    assert!(p.failures(&id).is_empty(), "{:?}", p.responses.last());
    // Traffic in either direction restarts the idle clock.
    p.gw.push_body(p.now, &id, Bytes::from_static(b"ping"), false)
        .unwrap();
    p.pump();
    p.advance(config.websocket_idle_timeout - Duration::from_secs(1));
    p.rx.respond_body(p.now, &id, Bytes::from_static(b"pong"), false)
        .unwrap();
    p.pump();
    p.advance(config.websocket_idle_timeout - Duration::from_secs(1));
    assert!(p.failures(&id).is_empty());
    // Then silence past the idle timeout closes it, and the receiver is told.
    p.advance(Duration::from_secs(2));
    assert_eq!(p.failures(&id), [504]);
    assert_eq!(p.cancels_sent(), 1);
    assert!(p.aborted(&id));
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.rx.in_flight(), 0);
}

#[test]
fn an_idle_timeout_shorter_than_the_request_timeout_fires_on_time() {
    let config = GatewayConfig {
        websocket_idle_timeout: Duration::from_secs(2),
        ..GatewayConfig::default()
    };
    assert!(config.websocket_idle_timeout < config.request_timeout);
    let mut p = Pair::with_config(Features::all(), config);
    let id = p.open();
    p.advance(Duration::from_secs(1));
    assert!(p.failures(&id).is_empty());
    p.advance(Duration::from_secs(2));
    assert_eq!(
        p.failures(&id),
        [504],
        "idle for {:?}",
        p.config.websocket_idle_timeout
    );
    assert_eq!(p.gw.in_flight(), 0);
}

#[test]
fn before_the_101_the_request_timeout_still_applies() {
    let mut p = Pair::all();
    let id = p.start(upgrade_head()).unwrap();
    p.advance(GatewayConfig::default().request_timeout + Duration::from_secs(1));
    assert_eq!(p.failures(&id), [504]);
}

#[test]
fn a_refused_upgrade_is_an_ordinary_response() {
    let mut p = Pair::all();
    let id = p.start(upgrade_head()).unwrap();
    p.rx.respond(
        p.now,
        &id,
        ResponseHead::new(403),
        ResponseBody::Full(Bytes::from_static(b"no")),
    )
    .unwrap();
    p.pump();
    assert_eq!(p.client_got(&id), (2, true));
    assert_eq!(p.gw.stats(p.now).totals.websockets, 0);
    assert_eq!(p.gw.in_flight(), 0);
}

#[test]
fn a_101_to_a_plain_request_fails_it() {
    let mut p = Pair::all();
    let id = p.start(RequestHead::new("GET", "/plain")).unwrap();
    p.rx.respond(p.now, &id, ResponseHead::new(101), ResponseBody::Streaming)
        .unwrap();
    p.pump();
    assert_eq!(p.failures(&id), [502]);
    assert_eq!(p.gw.in_flight(), 0);
    assert_eq!(p.rx.in_flight(), 0);
}
