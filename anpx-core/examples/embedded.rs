//! The core embedded in a transport of its own: a gateway and a receiver
//! joined by an in-memory byte pipe instead of a WebSocket, driven in
//! virtual time by one loop. This file is the whole "shell": it frames
//! messages, does the handshake, feeds inputs with `now`, drains outputs and
//! jumps to the next deadline, through flow credit, a timeout, a
//! cancellation and a close (`docs/EMBEDDING.md` explains each part).
//!
//! ```text
//! cargo run -p anpx-core --example embedded
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anpx_core::handshake::{format_services, Admitted, Offer};
use anpx_core::{
    Features, Gateway, GatewayConfig, Identity, Output, Receiver, ReceiverConfig, ReceiverOutput,
    RequestBody, RequestEvent, RequestHead, RequestId, ResponseBody, ResponseEvent, ResponseHead,
    WsMessage,
};

/// One direction of the byte pipe: records of `[kind][len: u32][payload]`
/// in pieces of at most `PIECE` bytes, so a record may arrive split.
#[derive(Default)]
struct Pipe {
    bytes: VecDeque<u8>,
    arrived: Vec<u8>,
}
const PIECE: usize = 10_000;
const HELLO: u8 = 9;
const CLOSE: u8 = 8;

impl Pipe {
    fn send(&mut self, kind: u8, payload: &[u8]) {
        self.bytes.push_back(kind);
        self.bytes.extend((payload.len() as u32).to_be_bytes());
        self.bytes.extend(payload);
    }
    fn send_ws(&mut self, m: &WsMessage) {
        match m {
            WsMessage::Binary(b) => self.send(0, b),
            WsMessage::Text(t) => self.send(1, t.as_bytes()),
            WsMessage::Ping(b) => self.send(2, b),
            WsMessage::Pong(b) => self.send(3, b),
        }
    }
    /// A handshake line, sent and read at once (the pipe is empty then).
    fn hello(&mut self, line: String) -> String {
        self.send(HELLO, line.as_bytes());
        String::from_utf8(self.deliver().remove(0).1).unwrap()
    }
    /// Moves one piece across; returns the records now whole.
    fn deliver(&mut self) -> Vec<(u8, Vec<u8>)> {
        self.arrived
            .extend(self.bytes.drain(..self.bytes.len().min(PIECE)));
        let mut records = Vec::new();
        while self.arrived.len() >= 5 {
            let len = u32::from_be_bytes(self.arrived[1..5].try_into().unwrap()) as usize;
            if self.arrived.len() < 5 + len {
                break;
            }
            let record: Vec<u8> = self.arrived.drain(..5 + len).collect();
            records.push((record[0], record[5..].to_vec()));
        }
        records
    }
}

fn ws(kind: u8, payload: Vec<u8>) -> WsMessage {
    match kind {
        0 => WsMessage::Binary(payload.into()),
        1 => WsMessage::Text(String::from_utf8_lossy(&payload).into_owned()),
        2 => WsMessage::Ping(payload.into()),
        _ => WsMessage::Pong(payload.into()),
    }
}

/// What happened, for the test to check: the features both sides agreed;
/// `/big`'s status and length (2 MiB streamed), and how much reached its
/// client while it read nothing; `/slow`'s status (never answered); whether
/// the receiver saw `/cancel` aborted after its client left; `/last`'s status
/// (in flight when the uplink is cut), whether the receiver aborted it when
/// the close reached it; the close code the silent receiver was given.
#[derive(Debug, Default)]
pub struct Outcome {
    pub agreed: Features,
    pub big: (u16, usize),
    pub big_before_reading: usize,
    pub slow: u16,
    pub cancel_aborted: bool,
    pub last: u16,
    pub last_aborted: bool,
    pub close: Option<u16>,
}

pub fn run() -> Outcome {
    const MIB: usize = 1 << 20;
    let start = Instant::now(); // virtual: moved only by this loop
    let mut now = start;
    let config = GatewayConfig {
        request_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(1), // silent for 2 s: closed
        ..Default::default()
    };
    let mut gw = Gateway::new(config, 7);
    let (mut down, mut up) = (Pipe::default(), Pipe::default()); // gateway→receiver, back
    let mut out = Outcome::default();
    // Handshake: the receiver declares services and features; the gateway takes a slot,
    // grants, negotiates, admits and answers. Authentication is yours, between `begin` and `decide`.
    let ours = Features::all().to_header_value();
    let hello = up.hello(format!("api.agent.com\n{ours}"));
    let (services, features) = hello.split_once('\n').unwrap();
    let offer = Offer {
        websocket_key: true,
        services: Some(services.as_bytes()),
        features: Some(features.as_bytes()),
    };
    let peer = IpAddr::from([192, 0, 2, 1]);
    let handshake = gw.begin_handshake(now, peer, &offer).unwrap();
    let open = Ok(Admitted {
        identity: Identity::Anonymous,
        allowed: None, // open mode
    });
    let ok = gw.decide_handshake(now, handshake, &offer, open).unwrap();
    let theirs = format!("{}\n{}", format_services(&ok.grants), ok.features);
    let link = gw.admit_handshake(now, handshake, ok.identity, ok.grants, ok.features);
    out.agreed = Features::parse_header(down.hello(theirs).split_once('\n').unwrap().1);
    let mut rx = Receiver::new(ReceiverConfig::default(), out.agreed, now);
    // Public requests, all at once; `/last` comes later.
    let get = |gw: &mut Gateway, now, path| {
        let head = RequestHead::new("GET", path);
        let id = gw.start_request(now, "api.agent.com", head, RequestBody::Empty);
        (id.unwrap(), path)
    };
    let mut ids: HashMap<RequestId, &str> = ["/big", "/slow", "/cancel"]
        .map(|p| get(&mut gw, now, p))
        .into();
    // The /big client reads from `read_from` on; `big_unread` it has not read yet.
    let (read_from, mut big_unread) = (start + Duration::from_secs(1), 0);
    // The service: each request's path, what is left of its answer, whether it may send.
    let mut serving: HashMap<RequestId, (String, usize, bool)> = HashMap::new();
    let mut uplink_cut = false;

    loop {
        // Gateway side: inputs from the pipe, then drain its outputs.
        let mut busy = false;
        for (kind, payload) in up.deliver().into_iter().filter(|_| !uplink_cut) {
            gw.handle_message(now, link, ws(kind, payload));
            busy = true;
        }
        while let Some(o) = gw.poll_output() {
            busy = true;
            match o {
                Output::Transmit { message, .. } => down.send_ws(&message),
                Output::Writable { .. } => {} // an upload may read on; none here waits
                Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. } => {} // only in a cluster
                Output::Close { code, .. } => {
                    out.close = Some(code);
                    down.send(CLOSE, &code.to_be_bytes());
                    gw.end_handshake(now, handshake); // its slot is free again
                }
                Output::Response { request, event } => match (ids[&request], event) {
                    ("/big", ResponseEvent::Head(h)) => out.big.0 = h.status,
                    ("/big", ResponseEvent::Body(b)) => big_unread += b.len(),
                    ("/cancel", ResponseEvent::Body(_)) => gw.cancel(now, &request), // client left
                    ("/slow", ResponseEvent::Failed(f)) => out.slow = f.status,
                    ("/last", ResponseEvent::Failed(f)) => out.last = f.status,
                    _ => {}
                },
            }
        }
        // The /big client: reading is what returns credit to the receiver.
        if now < read_from {
            out.big_before_reading = big_unread;
        } else if big_unread > 0 {
            let id = ids.iter().find(|(_, p)| **p == "/big").unwrap().0.clone();
            gw.body_read(now, &id, big_unread);
            (out.big.1, big_unread, busy) = (out.big.1 + big_unread, 0, true);
        }
        // Receiver side: the same, with the service behind it.
        for (kind, payload) in down.deliver() {
            busy = true;
            match kind {
                CLOSE => rx.handle_close(now),
                2 => up.send(3, &payload), // a WebSocket library answers pings itself
                _ => rx.handle_message(now, ws(kind, payload)),
            }
        }
        while let Some(o) = rx.poll_output() {
            busy = true;
            match o {
                ReceiverOutput::Transmit(m) => up.send_ws(&m),
                // The service answers /big and /cancel at once, 2 MiB
                // streamed, and never answers the others.
                ReceiverOutput::Event(RequestEvent::Head { request, head }) => {
                    let streamed = ["/big", "/cancel"].contains(&head.path.as_str());
                    if streamed {
                        let (answer, body) = (ResponseHead::new(200), ResponseBody::Streaming);
                        rx.respond(now, &request, answer, body).unwrap();
                    }
                    let left = if streamed { 2 * MIB } else { 0 };
                    serving.insert(request, (head.path, left, true));
                }
                ReceiverOutput::Event(RequestEvent::Aborted { request, .. }) => {
                    let path = serving.remove(&request).map(|s| s.0);
                    out.cancel_aborted |= path.as_deref() == Some("/cancel");
                    out.last_aborted |= path.as_deref() == Some("/last");
                }
                // The gateway's credit sent what waited: read on.
                ReceiverOutput::Writable { request } => serving.get_mut(&request).unwrap().2 = true,
                ReceiverOutput::Event(_) | ReceiverOutput::Close { .. } => {}
            }
        }
        // The service streams a piece whenever the receiver takes one: a piece that
        // leaves bytes unsent waits for `Writable`. That is its backpressure.
        for (id, (_, left, ready)) in serving.iter_mut().filter(|(_, s)| s.1 > 0 && s.2) {
            let n = (*left).min(64 * 1024);
            *left -= n;
            let piece = vec![b'x'; n].into();
            rx.respond_body(now, id, piece, *left == 0).unwrap();
            (*ready, busy) = (rx.unsent(id) == Some(0), true);
        }
        // Bytes still on their way count as work: a record may be split.
        if busy || !down.bytes.is_empty() || (!uplink_cut && !up.bytes.is_empty()) {
            continue;
        }
        // Idle: once /big and /slow are done, start /last and cut the receiver's uplink.
        if out.big.1 == 2 * MIB && out.slow != 0 && !uplink_cut {
            ids.extend([get(&mut gw, now, "/last")]);
            uplink_cut = true;
            continue;
        }
        if out.close.is_some() && rx.poll_timeout().is_none() {
            assert_eq!(gw.admissions().open(), 0, "its place is given back");
            return out; // both sides closed
        }
        // Sleep until the earliest deadline: the machines' or the client's.
        let app = (now < read_from).then_some(read_from);
        let deadlines = [gw.poll_timeout(), rx.poll_timeout(), app];
        let next = deadlines.into_iter().flatten().min();
        now = next.expect("a deadline while anything is open").max(now);
        gw.handle_timeout(now);
        rx.handle_timeout(now);
    }
}

fn main() {
    println!("{:#?}", run());
}
