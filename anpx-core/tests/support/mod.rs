//! A gateway and a receiver state machine back to back, with everything
//! that crosses between them recorded: the harness of the extension tests.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::time::Instant;

use anpx_core::cluster::WireMessage;
use anpx_core::Features;
use anpx_core::RequestId;
use anpx_core::WsMessage;
use anpx_core::{Gateway, GatewayConfig, Identity, LinkId, Output, ResponseEvent};
use anpx_core::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent};
use bytes::Bytes;

pub struct Pair {
    pub config: GatewayConfig,
    pub now: Instant,
    pub gw: Gateway,
    pub link: LinkId,
    pub rx: Receiver,
    pub requests: Vec<RequestEvent>,
    pub responses: Vec<(RequestId, ResponseEvent)>,
    /// Close codes the gateway asked for.
    pub gw_closes: Vec<u16>,
    /// Close codes the receiver asked for.
    pub rx_closes: Vec<u16>,
    /// Every binary message the gateway sent.
    pub gw_sent: Vec<Bytes>,
    /// Every binary message the receiver sent.
    pub rx_sent: Vec<Bytes>,
    /// Uploads the gateway said may go on, in order.
    pub gw_writable: Vec<RequestId>,
    /// Responses the receiver said may go on, in order.
    pub rx_writable: Vec<RequestId>,
    /// Answers to forwarding gateways (`Output::Answer`): the served
    /// request, the subject, the message.
    pub answers: Vec<(Option<RequestId>, String, WireMessage)>,
}

impl Pair {
    /// One link serving `route`, both sides offering `features`.
    pub fn back_to_back(route: &str, features: Features, config: GatewayConfig) -> Self {
        let now = Instant::now();
        let mut gw = Gateway::new(config.clone(), 3);
        let link = gw.admit(
            now,
            Identity::Anonymous,
            vec![route.parse().unwrap()],
            features,
        );
        Pair {
            config,
            now,
            gw,
            link,
            rx: Receiver::new(ReceiverConfig::default(), features, now),
            requests: Vec::new(),
            responses: Vec::new(),
            gw_closes: Vec::new(),
            rx_closes: Vec::new(),
            gw_sent: Vec::new(),
            rx_sent: Vec::new(),
            gw_writable: Vec::new(),
            rx_writable: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// The request body bytes the receiver's service was given, in order.
    pub fn upload_bytes(&self) -> Vec<u8> {
        self.requests
            .iter()
            .filter_map(|e| match e {
                RequestEvent::Body { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Moves every output of each side to the other until both are quiet.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = self.gw.poll_output() {
                moved = true;
                match out {
                    Output::Transmit { message, .. } => {
                        if let WsMessage::Binary(b) = &message {
                            self.gw_sent.push(b.clone());
                        }
                        self.rx.handle_message(self.now, message);
                    }
                    Output::Response { request, event } => self.responses.push((request, event)),
                    Output::Writable { request } => self.gw_writable.push(request),
                    Output::Close { code, .. } => self.gw_closes.push(code),
                    Output::Answer {
                        request,
                        to,
                        message,
                    } => self.answers.push((request, to, message)),
                    o @ (Output::Cluster(_) | Output::Publish { .. }) => {
                        panic!("no cluster was joined, yet the bus got {o:?}")
                    }
                }
            }
            while let Some(out) = self.rx.poll_output() {
                moved = true;
                match out {
                    ReceiverOutput::Transmit(message) => {
                        if let WsMessage::Binary(b) = &message {
                            self.rx_sent.push(b.clone());
                        }
                        self.gw.handle_message(self.now, self.link, message)
                    }
                    ReceiverOutput::Event(e) => self.requests.push(e),
                    ReceiverOutput::Writable { request } => self.rx_writable.push(request),
                    ReceiverOutput::Close { code, .. } => self.rx_closes.push(code),
                }
            }
            if !moved {
                return;
            }
        }
    }
}

/// Joins `gw` to a cluster at `t0` as `gw-a`, announcing every second,
/// with routes that live three seconds without an announcement.
pub fn join_as_gw_a(gw: &mut Gateway, t0: Instant) {
    gw.join_cluster(
        t0,
        anpx_core::cluster::MembershipConfig {
            node: "gw-a".into(),
            announce_interval: std::time::Duration::from_secs(1),
            route_ttl: std::time::Duration::from_secs(3),
        },
    );
}
