//! The core embedded in a custom transport: a gateway and a receiver state
//! machine on two threads, joined by an in-memory duplex (two channels)
//! instead of a WebSocket. No sockets, no async runtime: this file is the
//! whole "shell" — it moves messages and time between the two cores.
//!
//! ```text
//! cargo run -p anpx-core --example in_memory
//! ```

use std::sync::mpsc::{channel, Receiver as Rx, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anpx_core::features::Features;
use anpx_core::gateway::{Gateway, GatewayConfig, Identity, Output, RequestBody, ResponseEvent};
use anpx_core::receiver::{Receiver, ReceiverConfig, ReceiverOutput, RequestEvent, ResponseBody};
use anpx_core::ws::WsMessage;
use anpx_core::{demo, RequestHead};

/// One request through the pair; returns the status and body the public
/// client would see.
pub fn round_trip(path: &str, body: &str) -> (u16, String) {
    let (to_receiver, from_gateway) = channel::<WsMessage>();
    let (to_gateway, from_receiver) = channel::<WsMessage>();
    let receiver = thread::spawn(move || serve_receiver(from_gateway, to_gateway));

    let mut gw = Gateway::new(GatewayConfig::default(), 42);
    let link = gw.admit(
        Instant::now(),
        Identity::Anonymous,
        vec!["*".parse().expect("wildcard route")],
        Features::empty(),
    );
    let head = RequestHead::new("POST", path).with_header("host", "agent.local");
    let id = gw
        .start_request(
            Instant::now(),
            "agent.local",
            head,
            RequestBody::Full(body.to_owned().into()),
        )
        .expect("the wildcard route matches");

    let (mut status, mut answer) = (0, Vec::new());
    'run: loop {
        while let Some(out) = gw.poll_output() {
            match out {
                Output::Transmit { message, .. } => {
                    if to_receiver.send(message).is_err() {
                        break 'run;
                    }
                }
                Output::Response { request, event } if request == id => match event {
                    ResponseEvent::Head(h) => status = h.status,
                    ResponseEvent::Body(b) => answer.extend_from_slice(&b),
                    ResponseEvent::End => break 'run,
                    ResponseEvent::Failed(f) => {
                        status = f.status;
                        answer = f.body_json().into_bytes();
                        break 'run;
                    }
                },
                Output::Response { .. } | Output::Close { .. } => {}
            }
        }
        // Wait for the receiver, or for the gateway's next deadline.
        let wait = gw.poll_timeout().map_or(Duration::from_secs(1), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match from_receiver.recv_timeout(wait) {
            Ok(message) => gw.handle_message(Instant::now(), link, message),
            Err(RecvTimeoutError::Timeout) => gw.handle_timeout(Instant::now()),
            Err(RecvTimeoutError::Disconnected) => gw.close_link(Instant::now(), link),
        }
    }
    drop(to_receiver);
    let _ = receiver.join();
    (status, String::from_utf8_lossy(&answer).into_owned())
}

/// The receiver side: answers every request with the demo echo agent.
fn serve_receiver(inbox: Rx<WsMessage>, outbox: Sender<WsMessage>) {
    let mut rx = Receiver::new(ReceiverConfig::default(), Features::empty(), Instant::now());
    let mut bodies = std::collections::HashMap::new();
    let mut heads = std::collections::HashMap::new();
    while let Ok(message) = inbox.recv() {
        rx.handle_message(Instant::now(), message);
        while let Some(out) = rx.poll_output() {
            match out {
                ReceiverOutput::Transmit(m) => {
                    if outbox.send(m).is_err() {
                        return;
                    }
                }
                ReceiverOutput::Event(RequestEvent::Head { request, head }) => {
                    heads.insert(request, head);
                }
                ReceiverOutput::Event(RequestEvent::Body { request, data }) => {
                    bodies
                        .entry(request)
                        .or_insert_with(Vec::new)
                        .extend_from_slice(&data);
                }
                ReceiverOutput::Event(RequestEvent::End { request }) => {
                    let body = bodies.remove(&request).unwrap_or_default();
                    if let Some(head) = heads.remove(&request) {
                        let (rhead, rbody) = demo::respond(&head, &body);
                        let _ =
                            rx.respond(Instant::now(), &request, rhead, ResponseBody::Full(rbody));
                    }
                }
                ReceiverOutput::Event(RequestEvent::Aborted { request, .. }) => {
                    heads.remove(&request);
                    bodies.remove(&request);
                }
                ReceiverOutput::Close { .. } => return,
            }
        }
    }
}

fn main() {
    let (status, body) = round_trip("/agents/hello", "hi from an in-memory client");
    println!("status {status}\n{body}");
}
