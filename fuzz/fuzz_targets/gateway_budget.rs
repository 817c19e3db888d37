//! Drives the gateway state machine with arbitrary receiver input (well-
//! and ill-formed response frames, raw binary and text messages, pings,
//! window updates, closes) next to client requests, reads, cancels, upload
//! pieces and the passing of time, and holds it to its buffer budgets: what
//! one receiver connection makes the gateway hold never passes its limit,
//! what is held in all never passes the total (messages still arriving from
//! flow-controlled receivers may add at most the budget's arriving slack),
//! the total is at least the sum over the
//! connections (bodies of closed ones count until their clients take
//! them), and nothing panics (the fuzz profile turns integer overflow into
//! a crash). Inputs of odd length run with room in the total for two
//! flow-control windows, so flow-controlled receivers get requests too.
//! WebSocket messages still arriving (what the shell reports of a message
//! read in part) are charged in the same budgets. Requests come from a few
//! client addresses, and no address ever has more than its share of a
//! route's in-flight cap.
//!
//! Input: a sequence of operations, three bytes each, `[op, a, b]`;
//! `a` picks a receiver or request, `b` a size, flag or delay.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anpx_core::frame::{ChunkInfo, ExtFrame, FinalMarker, Frame, MessageKind, Meta};
use anpx_core::WsMessage;
use anpx_core::INITIAL_WINDOW;
use anpx_core::{BufferBudget, Gateway, GatewayConfig, Identity, LinkId, Output, RequestBody};
use anpx_core::{Feature, Features};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const HOST: &str = "api.agent.com";
const RECEIVERS: usize = 3;
/// In flight per connection, and an address's share of it: small enough
/// that a few requests reach the share.
const MAX_INFLIGHT: usize = 8;
const CLIENT_PERCENT: u8 = 25;
// Small enough that a few frames reach each budget.
const PER_LINK: u64 = 20_000;
const TOTAL: u64 = 45_000;
/// The total of odd-length inputs: two flow-control windows more.
const ROOMY_TOTAL: u64 = TOTAL + 2 * INITIAL_WINDOW;

struct World {
    now: Instant,
    gw: Gateway,
    links: [LinkId; RECEIVERS],
    requests: Vec<RequestId>,
    /// Requests started from an address: the receiver (route) and address.
    from: Vec<(RequestId, usize, IpAddr)>,
    total: u64,
}

fn client(b: u8) -> Option<IpAddr> {
    match (b >> 1) % 3 {
        2 => None,
        n => Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))),
    }
}

fn admit(gw: &mut Gateway, now: Instant, receiver: usize, flags: u8) -> LinkId {
    let mut features = Features::empty();
    if flags & 1 != 0 {
        features.insert(Feature::Streaming);
    }
    if flags & 2 != 0 {
        features.insert(Feature::FlowControl);
    }
    if flags & 4 != 0 {
        features.insert(Feature::Cancel);
    }
    gw.admit(
        now,
        Identity::Anonymous,
        vec![format!("{HOST}/r{receiver}").parse().unwrap()],
        features,
    )
}

impl World {
    fn request(&self, a: u8) -> RequestId {
        match self.requests.len() {
            // An id never sent: a stray frame.
            0 => RequestId::from("never-sent"),
            n => self.requests[usize::from(a) % n].clone(),
        }
    }

    fn check(&mut self) {
        while let Some(out) = self.gw.poll_output() {
            if let Output::Close { link, .. } = out {
                assert!(
                    self.gw.link_buffered(link).is_none(),
                    "{link} closed but still counted"
                );
            }
        }
        let mut sum = 0;
        for link in self.links {
            if let Some(held) = self.gw.link_buffered(link) {
                let charged = self.gw.link_charged(link).unwrap();
                let limit = self.gw.link_limit(link).unwrap();
                assert!(charged <= limit, "{link} charged {charged} > {limit}");
                assert!(held <= charged, "{link} holds {held} > charged {charged}");
                sum += held;
            }
        }
        // Each route has one connection: an address's share is of its cap.
        let share = self.gw.config().client_share(1);
        for receiver in 0..RECEIVERS {
            for n in 0..2 {
                let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, n));
                let held = self
                    .from
                    .iter()
                    .filter(|(id, r, a)| {
                        *r == receiver && *a == ip && self.gw.request_link(id).is_some()
                    })
                    .count();
                assert!(
                    held <= share,
                    "{ip} has {held} in flight on r{receiver}, share {share}"
                );
            }
        }
        let total = self.gw.buffered();
        let charged = self.gw.charged();
        assert!(
            total <= self.total,
            "receivers hold {total} > {}",
            self.total
        );
        let slack = self.gw.config().buffers.arriving_slack();
        assert!(
            charged <= self.total + slack,
            "receivers hold {total} and {} arriving > {} + {slack}",
            self.gw.arriving(),
            self.total
        );
        assert!(
            total >= sum,
            "the total {total} is under the connections' {sum}"
        );
    }
}

fn response(id: RequestId, a: u8, b: u8) -> Option<WsMessage> {
    let size = usize::from(b) * 40;
    let chunk = match a % 4 {
        0 => None,
        n => Some(ChunkInfo {
            index: u32::from(a >> 3),
            total: (n == 2).then_some(u32::from(a >> 5) + 1),
            final_marker: (n == 3).then_some(if b & 1 == 0 {
                FinalMarker::Byte
            } else {
                FinalMarker::Word
            }),
        }),
    };
    let kind = if a & 4 != 0 && b & 2 != 0 {
        MessageKind::Error
    } else {
        MessageKind::Response
    };
    let head = chunk.is_none() || a & 4 != 0;
    let frame = Frame {
        kind,
        request_id: id,
        chunk,
        meta: (kind == MessageKind::Response && head)
            .then(|| Meta::Response(ResponseHead::new(200 + u16::from(b % 4)))),
        body: (size > 0).then(|| Bytes::from(vec![b'z'; size])),
    };
    frame.encode().ok().map(WsMessage::Binary)
}

fuzz_target!(|data: &[u8]| {
    let total = if data.len() % 2 == 1 {
        ROOMY_TOTAL
    } else {
        TOTAL
    };
    let config = GatewayConfig {
        buffers: BufferBudget {
            per_link: PER_LINK,
            total,
        },
        max_inflight_per_link: MAX_INFLIGHT,
        max_inflight_percent_per_client: CLIENT_PERCENT,
        ..GatewayConfig::default()
    };
    let now = Instant::now();
    let mut gw = Gateway::new(config, 11);
    let links = std::array::from_fn(|r| admit(&mut gw, now, r, r as u8 * 3));
    let mut w = World {
        now,
        gw,
        links,
        requests: Vec::new(),
        from: Vec::new(),
        total,
    };
    for op in data.chunks_exact(3) {
        let (a, b) = (op[1], op[2]);
        let receiver = usize::from(a) % RECEIVERS;
        let link = w.links[receiver];
        match op[0] % 12 {
            0 => {
                let body = if b & 1 == 0 {
                    RequestBody::Empty
                } else {
                    RequestBody::Streaming
                };
                let head = RequestHead::new("GET", format!("/r{receiver}/x"));
                let from = client(b);
                if let Ok(id) = w.gw.start_request_from(w.now, from, HOST, head, body) {
                    if let Some(ip) = from {
                        w.from.push((id.clone(), receiver, ip));
                    }
                    w.requests.push(id);
                }
            }
            1 | 2 => {
                let id = w.request(a);
                if let Some(message) = response(id, a, b) {
                    w.gw.handle_message(w.now, link, message);
                }
            }
            3 => {
                let raw: Bytes = op.iter().copied().cycle().take(usize::from(b)).collect();
                w.gw.handle_message(w.now, link, WsMessage::Binary(raw));
            }
            4 => {
                let text = match b % 3 {
                    0 => r#"{"type":"ping","timestamp":1}"#,
                    1 => r#"{"type":"heartbeat"}"#,
                    _ => "not json",
                };
                w.gw.handle_message(w.now, link, WsMessage::Text(text.into()));
            }
            5 => {
                w.gw.handle_message(w.now, link, WsMessage::Ping(Bytes::new()))
            }
            6 => {
                let update = ExtFrame::WindowUpdate {
                    request_id: w.request(a),
                    increment: u32::from(b) << 12,
                };
                w.gw.handle_message(w.now, link, WsMessage::Binary(update.encode()));
            }
            7 => {
                // The receiver's connection goes; another takes its routes.
                w.gw.close_link(w.now, link);
                w.links[receiver] = admit(&mut w.gw, w.now, receiver, b);
            }
            8 => {
                let id = w.request(a);
                w.gw.body_read(w.now, &id, usize::from(b) * 100);
            }
            9 => {
                let id = w.request(a);
                if b & 1 == 0 {
                    w.gw.cancel(w.now, &id);
                } else {
                    let piece = Bytes::from(vec![b'u'; usize::from(b)]);
                    let _ = w.gw.push_body(w.now, &id, piece, b & 2 != 0);
                }
            }
            11 => {
                // Part of a message read from the connection, not yet whole.
                w.gw.message_arriving(w.now, link, u64::from(b) * 200);
            }
            _ => {
                w.now += Duration::from_secs(u64::from(b));
                w.gw.handle_timeout(w.now);
            }
        }
        w.check();
    }
});
