//! The memory receivers can make the gateway hold: bodies waiting for a
//! head that comes last and bodies their clients have not read yet are
//! counted per connection and for the whole gateway; a connection that
//! would pass a budget is closed (1008, `over_budget`), and the other
//! connections keep working. A flow-controlled receiver is never closed
//! for the total: its response that does not fit is cut instead, and credit
//! it was granted and has not used takes no room from anyone.

use std::time::Instant;

use anpx_core::frame::{ChunkInfo, Frame, MessageKind, Meta};
use anpx_core::{
    BufferBudget, Gateway, GatewayConfig, Identity, LinkFault, LinkId, Output, Reject, RequestBody,
    ResponseEvent,
};
use anpx_core::{Feature, Features};
use anpx_core::{RequestHead, RequestId, ResponseHead};
use anpx_core::{WsMessage, CLOSE_POLICY_VIOLATION};
use bytes::Bytes;

const HOST: &str = "api.agent.com";
const PER_LINK: u64 = 100_000;
const TOTAL: u64 = 250_000;

struct Bench {
    now: Instant,
    gw: Gateway,
    links: Vec<LinkId>,
}

impl Bench {
    /// Three receivers, serving `/r0`, `/r1` and `/r2`.
    fn new() -> Self {
        let config = GatewayConfig {
            buffers: BufferBudget {
                per_link: PER_LINK,
                total: TOTAL,
            },
            ..GatewayConfig::default()
        };
        let now = Instant::now();
        let mut gw = Gateway::new(config, 5);
        let links = (0..3)
            .map(|i| {
                gw.admit(
                    now,
                    Identity::Anonymous,
                    vec![format!("{HOST}/r{i}").parse().unwrap()],
                    Features::empty(),
                )
            })
            .collect();
        Bench { now, gw, links }
    }

    fn start(&mut self, receiver: usize) -> RequestId {
        let id = self
            .gw
            .start_request(
                self.now,
                HOST,
                RequestHead::new("GET", format!("/r{receiver}/x")),
                RequestBody::Empty,
            )
            .unwrap();
        self.drain();
        id
    }

    /// Feeds one message from receiver `i`, checks the budgets held, and
    /// returns what came out.
    fn feed(&mut self, i: usize, message: WsMessage) -> Vec<Output> {
        self.gw.handle_message(self.now, self.links[i], message);
        let out = self.drain();
        assert!(self.gw.buffered() <= TOTAL, "{} held", self.gw.buffered());
        for link in &self.links {
            let held = self.gw.link_buffered(*link).unwrap_or(0);
            assert!(held <= PER_LINK, "{link} holds {held}");
        }
        out
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.gw.poll_output()).collect()
    }

    fn over_budget(&self) -> u64 {
        self.gw
            .stats(self.now)
            .totals
            .receiver_faults
            .get(LinkFault::OverBudget.label())
            .copied()
            .unwrap_or(0)
    }

    fn alive(&self, i: usize) -> bool {
        self.gw.link_buffered(self.links[i]).is_some()
    }

    /// Receiver `i` answers a fresh request with `size` bytes whole; the
    /// answer is checked to have come through.
    fn answered(&mut self, i: usize, size: usize) -> RequestId {
        let id = self.start(i);
        let out = self.feed(i, whole(&id, size));
        assert!(
            matches!(
                events(&out, &id)[..],
                [ResponseEvent::Head(_), ResponseEvent::Body(b), ResponseEvent::End] if b.len() == size
            ),
            "{out:?}"
        );
        id
    }
}

/// A whole response in one message, as a reference receiver sends it.
fn whole(id: &RequestId, size: usize) -> WsMessage {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk: None,
        meta: Some(Meta::Response(ResponseHead::new(200))),
        body: Some(Bytes::from(vec![b'x'; size])),
    };
    WsMessage::Binary(frame.encode().unwrap())
}

/// The first chunk of a response whose head comes last.
fn headless_chunk(id: &RequestId, size: usize) -> WsMessage {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk: Some(ChunkInfo {
            index: 0,
            total: Some(2),
            final_marker: None,
        }),
        meta: None,
        body: Some(Bytes::from(vec![b'y'; size])),
    };
    WsMessage::Binary(frame.encode().unwrap())
}

fn events<'a>(out: &'a [Output], id: &RequestId) -> Vec<&'a ResponseEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Response { request, event } if request == id => Some(event),
            _ => None,
        })
        .collect()
}

fn closes(out: &[Output]) -> Vec<(LinkId, u16, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close {
                link, code, reason, ..
            } => Some((*link, *code, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn bodies_waiting_for_late_heads_past_the_budget_close_that_connection_only() {
    let mut b = Bench::new();
    let healthy = b.start(1);
    let mut out = Vec::new();
    let mut ids = Vec::new();
    // Twenty bodies of 10 kB, each under every per-message limit, whose
    // heads never come: 200 kB on one connection.
    for _ in 0..20 {
        let id = b.start(0);
        out.extend(b.feed(0, headless_chunk(&id, 10_000)));
        ids.push(id);
        if !b.alive(0) {
            break;
        }
    }
    let closed = closes(&out);
    assert_eq!(closed.len(), 1, "{closed:?}");
    let (link, code, reason) = &closed[0];
    assert_eq!((*link, *code), (b.links[0], CLOSE_POLICY_VIOLATION));
    assert!(reason.starts_with("over_budget"), "{reason}");
    assert!(
        reason.contains("max_buffered_per_receiver_bytes"),
        "{reason}"
    );
    assert_eq!(b.over_budget(), 1);
    // Its requests fail; nothing of theirs reached a client.
    for id in &ids {
        assert!(
            matches!(events(&out, id)[..], [ResponseEvent::Failed(f)] if f.status == 502),
            "{:?}",
            events(&out, id)
        );
    }
    assert_eq!(b.gw.buffered(), 0);
    // The other receiver's request in flight completes.
    let out = b.feed(1, whole(&healthy, 500));
    assert!(events(&out, &healthy).contains(&&ResponseEvent::End));
    assert!(closes(&out).is_empty());
}

#[test]
fn bodies_a_client_has_not_read_count_until_it_reads_them() {
    let mut b = Bench::new();
    // Answers its clients take as they come never add up.
    for _ in 0..50 {
        let id = b.answered(0, 30_000);
        b.gw.body_read(b.now, &id, 30_000);
    }
    assert_eq!(b.gw.link_buffered(b.links[0]), Some(0));
    // Answers nobody reads do, after their responses ended.
    let unread: Vec<RequestId> = (0..3).map(|_| b.answered(0, 30_000)).collect();
    assert_eq!(b.gw.link_buffered(b.links[0]), Some(90_000));
    // A client taking part of its body makes room for exactly that much.
    b.gw.body_read(b.now, &unread[0], 20_000);
    b.answered(0, 30_000);
    assert_eq!(b.gw.link_buffered(b.links[0]), Some(100_000));
    // A client that leaves frees what it never read.
    b.gw.cancel(b.now, &unread[1]);
    assert_eq!(b.gw.link_buffered(b.links[0]), Some(70_000));
    // One byte past the budget closes the connection.
    let id = b.start(0);
    let other = b.start(2);
    let out = b.feed(0, whole(&id, 30_001));
    let closed = closes(&out);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, b.links[0]);
    assert!(closed[0].2.starts_with("over_budget"), "{}", closed[0].2);
    assert!(
        matches!(events(&out, &id)[..], [ResponseEvent::Failed(f)] if f.status == 502),
        "the body past the budget was passed on: {out:?}"
    );
    assert_eq!(b.over_budget(), 1);
    // Another receiver is untouched.
    let out = b.feed(2, whole(&other, 30_000));
    assert!(events(&out, &other).contains(&&ResponseEvent::End));
    assert!(b.alive(1) && b.alive(2));
}

#[test]
fn past_the_gateways_budget_the_connection_holding_the_most_is_closed() {
    let mut b = Bench::new();
    // 90 kB held on receiver 0 (bodies waiting for heads), 80 kB unread on
    // receiver 1, then receiver 2 brings the total past 250 kB.
    for _ in 0..9 {
        let id = b.start(0);
        b.feed(0, headless_chunk(&id, 10_000));
    }
    for _ in 0..8 {
        b.answered(1, 10_000);
    }
    for _ in 0..7 {
        b.answered(2, 10_000);
    }
    assert_eq!(b.gw.buffered(), 240_000);
    assert_eq!(b.over_budget(), 0);
    let id = b.start(2);
    let out = b.feed(2, whole(&id, 15_000));
    let closed = closes(&out);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, b.links[0]);
    assert!(
        closed[0].2.contains("max_buffered_bytes"),
        "{}",
        closed[0].2
    );
    // The sender's answer went through, receiver 1 is untouched.
    assert!(events(&out, &id).contains(&&ResponseEvent::End));
    assert!(!b.alive(0) && b.alive(1) && b.alive(2));
    assert_eq!(b.gw.buffered(), 165_000);
    assert_eq!(b.over_budget(), 1);
}

#[test]
fn a_closed_connections_unread_bodies_count_until_their_clients_take_them() {
    let mut b = Bench::new();
    let id = b.answered(0, 50_000);
    let gone = b.answered(0, 30_000);
    b.gw.close_link(b.now, b.links[0]);
    // The bodies are still in memory on their way to slow clients.
    assert_eq!(b.gw.buffered(), 80_000);
    assert_eq!(b.gw.stats(b.now).buffered_bytes, 80_000);
    assert!(b
        .gw
        .stats(b.now)
        .to_prometheus()
        .contains("\nanpx_buffered_bytes 80000\n"));
    // They leave room in the total for others only as they are freed.
    let id2 = b.start(1);
    let out = b.feed(1, whole(&id2, 90_000));
    assert!(events(&out, &id2).contains(&&ResponseEvent::End));
    assert_eq!(b.gw.buffered(), 170_000);
    let id3 = b.start(2);
    let out = b.feed(2, whole(&id3, 90_000));
    // 260 kB would pass the 250 kB total: the largest holder connected is
    // closed (receiver 2 itself, bringing 90 kB over 1's 90 kB).
    assert_eq!(closes(&out).len(), 1, "{out:?}");
    // Reads and departures of the closed connection's clients free it all.
    b.gw.body_read(b.now, &id, 50_000);
    b.gw.cancel(b.now, &gone);
    assert_eq!(b.gw.buffered(), 90_000);
    b.gw.body_read(b.now, &id, 50_000);
    assert_eq!(b.gw.buffered(), 90_000);
}

/// A receiver that negotiated `flow-control`, with many slow downloads.
fn flow_bench(per_link: u64, total: u64) -> (Instant, Gateway, LinkId) {
    let config = GatewayConfig {
        buffers: BufferBudget { per_link, total },
        ..GatewayConfig::default()
    };
    let now = Instant::now();
    let mut gw = Gateway::new(config, 9);
    let features: Features = [Feature::Streaming, Feature::FlowControl]
        .into_iter()
        .collect();
    let link = gw.admit(
        now,
        Identity::Anonymous,
        vec![format!("{HOST}/f").parse().unwrap()],
        features,
    );
    (now, gw, link)
}

const WINDOW: usize = 1 << 20;

/// Starts a request on the flow-controlled receiver and answers it with
/// a full window (head and 1 MiB in one message), which nobody reads.
fn fill_window(now: Instant, gw: &mut Gateway, link: LinkId) -> Result<RequestId, Reject> {
    let id = gw.start_request(
        now,
        HOST,
        RequestHead::new("GET", "/f/download"),
        RequestBody::Empty,
    )?;
    gw.handle_message(now, link, window_chunk(&id, WINDOW));
    Ok(id)
}

/// The head and `size` body bytes of `id`'s response, in one chunk that
/// does not end it.
fn window_chunk(id: &RequestId, size: usize) -> WsMessage {
    let frame = Frame {
        kind: MessageKind::Response,
        request_id: id.clone(),
        chunk: Some(ChunkInfo {
            index: 0,
            total: None,
            final_marker: None,
        }),
        meta: Some(Meta::Response(ResponseHead::new(200))),
        body: Some(Bytes::from(vec![b'w'; size])),
    };
    WsMessage::Binary(frame.encode().unwrap())
}

#[test]
fn flow_controlled_bytes_within_their_windows_never_close_the_receiver() {
    // 4 MiB per receiver, 256 MiB in all: forty slow downloads with their
    // windows full hold 40 MiB on one connection.
    let (now, mut gw, link) = flow_bench(4 << 20, 256 << 20);
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(fill_window(now, &mut gw, link).unwrap());
    }
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert!(closes(&out).is_empty(), "{:?}", closes(&out));
    for id in &ids {
        assert!(
            matches!(events(&out, id)[..], [ResponseEvent::Head(_), ResponseEvent::Body(b)] if b.len() == WINDOW),
            "{:?}",
            events(&out, id)
        );
    }
    assert_eq!(gw.link_buffered(link), Some(40 * WINDOW as u64));
    // What it holds and may still send never passes its limit: a window
    // for each request it may have in flight.
    assert!(gw.link_charged(link).unwrap() <= gw.link_limit(link).unwrap());
    // A byte past a window is still a fault that closes it.
    let over = Frame {
        kind: MessageKind::Response,
        request_id: ids[0].clone(),
        chunk: Some(ChunkInfo {
            index: 1,
            total: None,
            final_marker: None,
        }),
        meta: None,
        body: Some(Bytes::from_static(b"!")),
    };
    gw.handle_message(now, link, WsMessage::Binary(over.encode().unwrap()));
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert_eq!(closes(&out).len(), 1, "{out:?}");
}

#[test]
fn past_the_total_flow_controlled_requests_wait_for_room_instead_of_closing_anyone() {
    // Room for eight windows in the whole gateway.
    let (now, mut gw, link) = flow_bench(32 << 20, 8 << 20);
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(fill_window(now, &mut gw, link).unwrap());
    }
    // Eight unread windows fill the total: a ninth request would not fit,
    // refused like a full route (503), nobody closed.
    let refused = fill_window(now, &mut gw, link).unwrap_err();
    assert_eq!(refused.failure().status, 503);
    // Named for the limit that refused it, not the route's in-flight cap.
    assert!(
        matches!(refused, anpx_core::Reject::BuffersFull { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.label(), "buffers_full");
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert!(closes(&out).is_empty(), "{:?}", closes(&out));
    assert!(gw.charged() <= 8 << 20);
    // A client taking its body makes room again.
    gw.body_read(now, &ids[0], WINDOW);
    gw.cancel(now, &ids[0]);
    fill_window(now, &mut gw, link).unwrap();
    assert!(gw.charged() <= 8 << 20);
    assert_eq!(gw.link_count(), 1);
}

/// What the shell reports of messages still arriving is charged like a held
/// body: past the connection's budget it is closed, past the total the
/// connection holding the most goes, and a whole message ends the charge.
#[test]
fn messages_still_arriving_are_charged_against_both_budgets() {
    let mut b = Bench::new();
    b.gw.message_arriving(b.now, b.links[0], 90_000);
    b.gw.message_arriving(b.now, b.links[1], 80_000);
    assert_eq!(b.gw.arriving(), 170_000);
    assert_eq!(b.gw.charged(), 170_000);
    assert_eq!(b.gw.link_charged(b.links[0]), Some(90_000));
    // A whole message ends what was arriving on that connection.
    b.answered(1, 10_000);
    assert_eq!(b.gw.arriving(), 90_000);
    b.gw.message_arriving(b.now, b.links[1], 80_000);
    // Past its own budget (100 kB) a connection is closed.
    b.gw.message_arriving(b.now, b.links[2], 100_001);
    let closed = closes(&b.drain());
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, b.links[2]);
    assert!(!b.alive(2));
    assert_eq!(b.over_budget(), 1);
    // Past the total (250 kB) the one holding the most goes: receiver 0.
    let mut b2 = Bench::new();
    b2.gw.message_arriving(b2.now, b2.links[0], 95_000);
    b2.answered(1, 10_000);
    b2.gw.message_arriving(b2.now, b2.links[1], 80_000);
    b2.gw.message_arriving(b2.now, b2.links[2], 60_000);
    assert_eq!(b2.gw.charged(), 245_000);
    b2.gw.message_arriving(b2.now, b2.links[2], 90_000);
    let closed = closes(&b2.drain());
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, b2.links[0]);
    assert!(
        closed[0].2.contains("max_buffered_bytes"),
        "{}",
        closed[0].2
    );
    assert!(b2.alive(1) && b2.alive(2));
    assert_eq!(b2.gw.arriving(), 170_000);
    assert!(b2.gw.charged() <= TOTAL);
}

/// Admits another flow-controlled receiver on `gw`, serving `{HOST}{prefix}`.
fn admit_flow(now: Instant, gw: &mut Gateway, prefix: &str) -> LinkId {
    let features: Features = [Feature::Streaming, Feature::FlowControl, Feature::Cancel]
        .into_iter()
        .collect();
    gw.admit(
        now,
        Identity::Anonymous,
        vec![format!("{HOST}{prefix}").parse().unwrap()],
        features,
    )
}

#[test]
fn requests_held_without_an_answer_take_no_room_from_other_receivers() {
    // Room for eight windows in the whole gateway. A receiver that takes
    // requests and never answers holds no bytes: it fills its in-flight
    // cap (100) and nothing else.
    let (now, mut gw, silent) = flow_bench(32 << 20, 8 << 20);
    for i in 0..100 {
        gw.start_request(
            now,
            HOST,
            RequestHead::new("GET", format!("/f/held-{i}")),
            RequestBody::Empty,
        )
        .unwrap_or_else(|r| panic!("request {i} on the silent receiver: {r:?}"));
    }
    assert_eq!(gw.charged(), 0);
    // Another receiver's requests all start and are answered in full.
    let other = admit_flow(now, &mut gw, "/g");
    let mut answered = Vec::new();
    for i in 0..20 {
        let id = gw
            .start_request(
                now,
                HOST,
                RequestHead::new("GET", format!("/g/{i}")),
                RequestBody::Empty,
            )
            .unwrap_or_else(|r| panic!("request {i} on the other receiver: {r:?}"));
        gw.handle_message(now, other, whole(&id, 1000));
        answered.push(id);
    }
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert!(closes(&out).is_empty(), "{:?}", closes(&out));
    for id in &answered {
        assert!(
            matches!(events(&out, id)[..], [ResponseEvent::Head(_), ResponseEvent::Body(b), ResponseEvent::End] if b.len() == 1000),
            "{id}"
        );
    }
    assert_eq!(gw.link_count(), 2);
    assert_eq!(gw.link_buffered(silent), Some(0));
}

#[test]
fn past_the_total_a_flow_controlled_response_is_cut_and_its_receiver_stays() {
    // Room for four and a half windows; six downloads started, nobody
    // reading.
    let (now, mut gw, _) = flow_bench(32 << 20, (9 << 20) / 2);
    let link = admit_flow(now, &mut gw, "/c");
    // A receiver without flow-control that holds nothing is no culprit.
    let plain = gw.admit(
        now,
        Identity::Anonymous,
        vec![format!("{HOST}/plain").parse().unwrap()],
        Features::empty(),
    );
    let ids: Vec<RequestId> = (0..6)
        .map(|i| {
            gw.start_request(
                now,
                HOST,
                RequestHead::new("GET", format!("/c/{i}")),
                RequestBody::Empty,
            )
            .unwrap()
        })
        .collect();
    for id in &ids[..4] {
        gw.handle_message(now, link, window_chunk(id, WINDOW));
    }
    assert_eq!(gw.charged(), 4 * WINDOW as u64);
    let held: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    // The fifth window does not fit: that response is cut with 503 (its
    // head had not gone out) and the receiver told to stop it.
    gw.handle_message(now, link, window_chunk(&ids[4], WINDOW));
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert!(closes(&out).is_empty(), "{:?}", closes(&out));
    match &events(&out, &ids[4])[..] {
        [ResponseEvent::Failed(f)] => {
            assert_eq!(f.status, 503, "{f:?}");
            assert_eq!(f.kind, anpx_core::FailureKind::BuffersFull);
            assert!(f.error.contains("max_buffered_bytes"), "{}", f.error);
        }
        other => panic!("{other:?}"),
    }
    let cancels = out
        .iter()
        .filter(|o| matches!(o, Output::Transmit { link: l, .. } if *l == link))
        .count();
    assert_eq!(cancels, 1, "one cancel frame for the cut response");
    assert!(gw.charged() <= (9 << 20) / 2);
    let stats = gw.stats(now);
    assert_eq!(stats.totals.buffers_cut, 1);
    assert_eq!(stats.totals.bad_gateway, 0);
    assert!(stats
        .to_prometheus()
        .contains("anpx_requests_failed_total{status=\"503\"} 1\n"));
    // The four held ones are intact, and once a client reads, the sixth
    // gets its window through on the same connection.
    for id in &ids[..4] {
        assert!(
            matches!(events(&held, id)[..], [ResponseEvent::Head(_), ResponseEvent::Body(b)] if b.len() == WINDOW),
            "{id}"
        );
        assert!(events(&out, id).is_empty(), "{id}");
    }
    gw.body_read(now, &ids[0], WINDOW);
    gw.handle_message(now, link, window_chunk(&ids[5], WINDOW));
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert!(
        matches!(events(&out, &ids[5])[..], [ResponseEvent::Head(_), ResponseEvent::Body(b)] if b.len() == WINDOW),
        "{} events for the sixth",
        events(&out, &ids[5]).len()
    );
    assert_eq!(gw.link_count(), 3);
    assert_eq!(gw.link_buffered(plain), Some(0));
}

#[test]
fn messages_arriving_from_flow_controlled_receivers_may_pass_the_total_only_by_the_slack() {
    // 16 MiB in all, so 1 MiB of slack for messages still arriving.
    let total: u64 = 16 << 20;
    let (now, mut gw, _) = flow_bench(32 << 20, total);
    let links: Vec<LinkId> = (0..4)
        .map(|i| admit_flow(now, &mut gw, &format!("/a{i}")))
        .collect();
    // Slow clients hold 15.5 MiB.
    for i in 0..16 {
        let id = gw
            .start_request(
                now,
                HOST,
                RequestHead::new("GET", format!("/a{}/{i}", i % 4)),
                RequestBody::Empty,
            )
            .unwrap();
        let size = if i == 15 { WINDOW / 2 } else { WINDOW };
        gw.handle_message(now, links[i % 4], window_chunk(&id, size));
    }
    assert_eq!(gw.charged(), total - (WINDOW as u64) / 2);
    // Three messages arriving take the total past by 3/4 MiB: within the
    // slack, nobody closed.
    for l in &links[..3] {
        gw.message_arriving(now, *l, 400 << 10);
    }
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    assert!(closes(&out).is_empty(), "{:?}", closes(&out));
    assert_eq!(gw.arriving(), 1200 << 10);
    // A fourth would pass the slack: that connection is closed.
    gw.message_arriving(now, links[3], 400 << 10);
    let out: Vec<Output> = std::iter::from_fn(|| gw.poll_output()).collect();
    let closed = closes(&out);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, links[3]);
    assert!(closed[0].2.contains("over_budget"), "{}", closed[0].2);
    assert!(gw.charged() <= total + BufferBudget { per_link: 0, total }.arriving_slack());
}
