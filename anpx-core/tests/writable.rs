//! The *writable* outputs: a body that waited for the peer's credit is told
//! when it may go on ([`Output::Writable`] at the gateway,
//! [`ReceiverOutput::Writable`] at the receiver), exactly when the credit
//! sent everything that waited, once per wait, and never for a request
//! that ended.

mod support;

use support::Pair;

use anpx_core::{Feature, Features, GatewayConfig, Output, ReceiverOutput, UPDATE_THRESHOLD};
use anpx_core::{RequestBody, RequestEvent, RequestHead, RequestId, ResponseBody, ResponseHead};
use anpx_core::{ResponseEvent, INITIAL_WINDOW};
use bytes::Bytes;

const PIECE: usize = 64 * 1024;

fn pair(features: &[Feature]) -> Pair {
    Pair::back_to_back(
        "api.agent.com/svc",
        features.iter().copied().collect::<Features>(),
        GatewayConfig::default(),
    )
}

fn flow_pair() -> Pair {
    pair(&[Feature::Streaming, Feature::FlowControl, Feature::Cancel])
}

fn start(p: &mut Pair, body: RequestBody) -> RequestId {
    let id =
        p.gw.start_request(
            p.now,
            "api.agent.com",
            RequestHead::new("POST", "/svc/x"),
            body,
        )
        .unwrap();
    p.pump();
    id
}

fn piece() -> Bytes {
    Bytes::from(vec![7u8; PIECE])
}

/// Pushes upload pieces until some wait for the receiver's credit.
fn upload_until_blocked(p: &mut Pair, id: &RequestId) {
    for _ in 0..64 {
        p.gw.push_body(p.now, id, piece(), false).unwrap();
        if p.gw.upload_queued(id) > Some(0) {
            p.pump();
            return;
        }
    }
    panic!("the upload never waited for credit");
}

/// Request body bytes the service has got for `id`.
fn uploaded(p: &Pair, id: &RequestId) -> usize {
    p.requests
        .iter()
        .map(|e| match e {
            RequestEvent::Body { request, data } if request == id => data.len(),
            _ => 0,
        })
        .sum()
}

/// The service reads what arrived, one credit update's worth at a time,
/// until the upload no longer waits; returns how many updates it took.
/// Asserts that `Writable` comes in the very step the wait ends, and not
/// before.
fn read_until_writable(p: &mut Pair, id: &RequestId, read: &mut usize) -> usize {
    let told = p.gw_writable.len();
    for step in 1..=64 {
        let n = (UPDATE_THRESHOLD as usize).min(uploaded(p, id) - *read);
        assert!(n > 0, "nothing more arrived while the upload waits");
        p.rx.request_body_read(p.now, id, n);
        *read += n;
        p.pump();
        if p.gw.upload_queued(id) == Some(0) {
            assert_eq!(
                p.gw_writable[told..],
                *std::slice::from_ref(id),
                "told when credit came"
            );
            return step;
        }
        assert_eq!(p.gw_writable.len(), told, "told before the credit came");
    }
    panic!("the credit never came back");
}

#[test]
fn an_upload_that_waited_is_told_once_when_the_credit_came() {
    let mut p = flow_pair();
    let id = start(&mut p, RequestBody::Streaming);
    // Past the window by more than one update's worth: the first update
    // leaves bytes waiting.
    for _ in 0..(INITIAL_WINDOW as usize + 2 * UPDATE_THRESHOLD as usize) / PIECE {
        p.gw.push_body(p.now, &id, piece(), false).unwrap();
    }
    p.pump();
    assert!(p.gw.upload_queued(&id) > Some(UPDATE_THRESHOLD));
    assert!(p.gw_writable.is_empty(), "told while the bytes wait");
    let mut read = 0;
    let steps = read_until_writable(&mut p, &id, &mut read);
    assert!(steps > 1, "one update was enough: the test proves nothing");

    // More credit with nothing waiting tells nobody.
    let rest = uploaded(&p, &id) - read;
    p.rx.request_body_read(p.now, &id, rest);
    read += rest;
    p.pump();
    assert_eq!(
        p.gw_writable,
        std::slice::from_ref(&id),
        "told twice for one wait"
    );

    // A new wait is told again, once.
    upload_until_blocked(&mut p, &id);
    assert_eq!(p.gw_writable.len(), 1);
    read_until_writable(&mut p, &id, &mut read);
    assert_eq!(p.gw_writable, [id.clone(), id.clone()]);
}

#[test]
fn the_last_piece_waiting_for_credit_is_told_too() {
    let mut p = flow_pair();
    let id = start(&mut p, RequestBody::Streaming);
    upload_until_blocked(&mut p, &id);
    p.gw.push_body(p.now, &id, Bytes::new(), true).unwrap();
    p.pump();
    let mut read = 0;
    read_until_writable(&mut p, &id, &mut read);
    assert_eq!(p.gw_writable, [id]);
}

#[test]
fn an_upload_that_never_waited_is_never_told() {
    // Within the window.
    let mut p = flow_pair();
    let id = start(&mut p, RequestBody::Streaming);
    for _ in 0..INITIAL_WINDOW as usize / PIECE {
        p.gw.push_body(p.now, &id, piece(), false).unwrap();
        assert_eq!(p.gw.upload_queued(&id), Some(0));
    }
    p.gw.push_body(p.now, &id, Bytes::new(), true).unwrap();
    p.pump();
    let got = uploaded(&p, &id);
    assert_eq!(got, INITIAL_WINDOW as usize);
    p.rx.request_body_read(p.now, &id, got);
    p.pump();
    assert!(p.gw_writable.is_empty());

    // Without flow-control nothing waits, however much is sent.
    let mut p = pair(&[Feature::Streaming]);
    let id = start(&mut p, RequestBody::Streaming);
    for _ in 0..3 * INITIAL_WINDOW as usize / PIECE {
        p.gw.push_body(p.now, &id, piece(), false).unwrap();
    }
    p.gw.push_body(p.now, &id, Bytes::new(), true).unwrap();
    p.pump();
    assert_eq!(uploaded(&p, &id), 3 * INITIAL_WINDOW as usize);
    assert!(p.gw_writable.is_empty());
}

/// Blocks an upload, has the service read it all, and hands the gateway
/// the receiver's credit without polling the gateway afterwards: a
/// `Writable` waits in its output queue.
fn credit_waiting_unpolled(p: &mut Pair) -> RequestId {
    let id = start(p, RequestBody::Streaming);
    upload_until_blocked(p, &id);
    let got = uploaded(p, &id);
    p.rx.request_body_read(p.now, &id, got);
    while let Some(out) = p.rx.poll_output() {
        if let ReceiverOutput::Transmit(m) = out {
            p.gw.handle_message(p.now, p.link, m);
        }
    }
    assert_eq!(p.gw.upload_queued(&id), Some(0));
    id
}

fn gateway_outputs(p: &mut Pair) -> Vec<Output> {
    std::iter::from_fn(|| p.gw.poll_output()).collect()
}

#[test]
fn a_request_that_ended_is_never_told() {
    // Checked first: left alone, the Writable is there.
    let mut p = flow_pair();
    let id = credit_waiting_unpolled(&mut p);
    let outs = gateway_outputs(&mut p);
    assert!(outs.contains(&Output::Writable { request: id }));

    // Cancelled by its client before the shell polled.
    let mut p = flow_pair();
    let id = credit_waiting_unpolled(&mut p);
    p.gw.cancel(p.now, &id);
    let outs = gateway_outputs(&mut p);
    assert!(!outs.iter().any(|o| matches!(o, Output::Writable { .. })));

    // Timed out.
    let mut p = flow_pair();
    let id = credit_waiting_unpolled(&mut p);
    p.gw.handle_timeout(p.now + p.config.upload_timeout + p.config.request_timeout);
    let outs = gateway_outputs(&mut p);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Response { request, event: ResponseEvent::Failed(_) } if *request == id
    )));
    assert!(!outs.iter().any(|o| matches!(o, Output::Writable { .. })));

    // Its receiver connection closed.
    let mut p = flow_pair();
    credit_waiting_unpolled(&mut p);
    p.gw.close_link(p.now, p.link);
    let outs = gateway_outputs(&mut p);
    assert!(!outs.iter().any(|o| matches!(o, Output::Writable { .. })));

    // Answered in full, which ends the request before its upload.
    let mut p = flow_pair();
    let id = credit_waiting_unpolled(&mut p);
    p.rx.respond(p.now, &id, ResponseHead::new(204), ResponseBody::Empty)
        .unwrap();
    while let Some(out) = p.rx.poll_output() {
        if let ReceiverOutput::Transmit(m) = out {
            p.gw.handle_message(p.now, p.link, m);
        }
    }
    let outs = gateway_outputs(&mut p);
    assert!(outs.contains(&Output::Response {
        request: id,
        event: ResponseEvent::End
    }));
    assert!(!outs.iter().any(|o| matches!(o, Output::Writable { .. })));
}

// ----- the receiver's side: a streamed response -----

/// Starts a request whose response streams, and sends response pieces
/// until some wait for the gateway's credit (`last` on the one that
/// does).
fn respond_until_blocked(p: &mut Pair, last: bool) -> RequestId {
    let id = start(p, RequestBody::Empty);
    p.rx.respond(p.now, &id, ResponseHead::new(200), ResponseBody::Streaming)
        .unwrap();
    for _ in 0..64 {
        p.rx.respond_body(p.now, &id, piece(), false).unwrap();
        if p.rx.unsent(&id) > Some(0) {
            if last {
                p.rx.respond_body(p.now, &id, Bytes::new(), true).unwrap();
            }
            p.pump();
            return id;
        }
    }
    panic!("the response never waited for credit");
}

/// Response body bytes the public client has got for `id`.
fn received(p: &Pair, id: &RequestId) -> usize {
    p.responses
        .iter()
        .map(|(r, e)| match e {
            ResponseEvent::Body(b) if r == id => b.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_response_that_waited_is_told_once_when_the_credit_came() {
    let mut p = flow_pair();
    let id = respond_until_blocked(&mut p, false);
    // Past the window by more than one update's worth.
    for _ in 0..2 * UPDATE_THRESHOLD as usize / PIECE {
        p.rx.respond_body(p.now, &id, piece(), false).unwrap();
    }
    p.pump();
    assert!(p.rx.unsent(&id) > Some(UPDATE_THRESHOLD));
    assert!(p.rx_writable.is_empty(), "told while the bytes wait");
    let mut read = 0;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 64, "the credit never came back");
        let n = (UPDATE_THRESHOLD as usize).min(received(&p, &id) - read);
        assert!(n > 0, "nothing more arrived while the response waits");
        p.gw.body_read(p.now, &id, n);
        read += n;
        p.pump();
        if p.rx.unsent(&id) == Some(0) {
            break;
        }
        assert!(p.rx_writable.is_empty(), "told before the credit came");
    }
    assert!(steps > 1, "one update was enough: the test proves nothing");
    assert_eq!(p.rx_writable, std::slice::from_ref(&id));

    // More credit with nothing waiting tells nobody.
    let rest = received(&p, &id) - read;
    p.gw.body_read(p.now, &id, rest);
    p.pump();
    assert_eq!(
        p.rx_writable,
        std::slice::from_ref(&id),
        "told twice for one wait"
    );
}

#[test]
fn a_response_whose_last_piece_waited_is_not_told() {
    let mut p = flow_pair();
    let id = respond_until_blocked(&mut p, true);
    for _ in 0..64 {
        let n = received(&p, &id);
        if p.rx.unsent(&id).is_none() {
            break;
        }
        p.gw.body_read(p.now, &id, n);
        p.pump();
    }
    assert_eq!(p.rx.unsent(&id), None, "the response never finished");
    assert!(p.responses.contains(&(id, ResponseEvent::End)));
    assert!(p.rx_writable.is_empty(), "told after its last piece");
}

#[test]
fn a_response_aborted_before_the_shell_polled_is_not_told() {
    for abort in [false, true] {
        let mut p = flow_pair();
        let id = respond_until_blocked(&mut p, false);
        // The client reads everything: the gateway grants credit, handed
        // to the receiver without polling it.
        let n = received(&p, &id);
        p.gw.body_read(p.now, &id, n);
        if abort {
            // Then goes away: the cancel follows the credit.
            p.gw.cancel(p.now, &id);
        }
        while let Some(out) = p.gw.poll_output() {
            if let Output::Transmit { message, .. } = out {
                p.rx.handle_message(p.now, message);
            }
        }
        let outs: Vec<ReceiverOutput> = std::iter::from_fn(|| p.rx.poll_output()).collect();
        let told = outs.contains(&ReceiverOutput::Writable {
            request: id.clone(),
        });
        assert_eq!(told, !abort, "abort: {abort}");
        if abort {
            assert!(outs.iter().any(|o| matches!(
                o,
                ReceiverOutput::Event(RequestEvent::Aborted { request, .. }) if *request == id
            )));
        }
    }
}

// ----- the gateway's side: the receiver connection's write queue -----

#[test]
fn an_upload_on_a_full_connection_waits_until_it_has_room() {
    for features in [
        &[Feature::Streaming][..],
        &[Feature::Streaming, Feature::FlowControl, Feature::Cancel][..],
    ] {
        let mut p = pair(features);
        let id = start(&mut p, RequestBody::Streaming);
        p.gw.push_body(p.now, &id, piece(), false).unwrap();
        p.pump();
        assert_eq!(p.gw.upload_waits(&id), Some(false), "{features:?}");

        // The shell's queue for the connection filled up.
        p.gw.link_backlog(p.now, p.link, true);
        p.gw.push_body(p.now, &id, piece(), false).unwrap();
        p.pump();
        assert_eq!(p.gw.upload_waits(&id), Some(true), "{features:?}");
        assert!(p.gw_writable.is_empty(), "told while the queue is full");

        p.gw.link_backlog(p.now, p.link, false);
        p.pump();
        assert_eq!(
            p.gw_writable,
            std::slice::from_ref(&id),
            "{features:?}: told once"
        );
        assert_eq!(p.gw.upload_waits(&id), Some(false));

        // Room made again with nothing waiting tells nobody.
        p.gw.link_backlog(p.now, p.link, true);
        p.gw.link_backlog(p.now, p.link, false);
        p.pump();
        assert_eq!(p.gw_writable.len(), 1, "{features:?}: told with no wait");
    }
}

#[test]
fn credit_that_comes_while_the_connection_is_full_waits_for_its_room() {
    let mut p = flow_pair();
    let id = start(&mut p, RequestBody::Streaming);
    upload_until_blocked(&mut p, &id);
    assert_eq!(p.gw.upload_waits(&id), Some(true));
    p.gw.link_backlog(p.now, p.link, true);
    let got = uploaded(&p, &id);
    p.rx.request_body_read(p.now, &id, got);
    p.pump();
    assert_eq!(p.gw.upload_queued(&id), Some(0), "the credit came");
    assert!(p.gw_writable.is_empty(), "told while the queue is full");

    p.gw.link_backlog(p.now, p.link, false);
    p.pump();
    assert_eq!(p.gw_writable, [id]);
}

#[test]
fn an_upload_waiting_for_room_is_never_told_once_its_request_ended() {
    let mut p = pair(&[Feature::Streaming, Feature::Cancel]);
    let id = start(&mut p, RequestBody::Streaming);
    p.gw.link_backlog(p.now, p.link, true);
    p.gw.push_body(p.now, &id, piece(), false).unwrap();
    p.pump();
    assert_eq!(p.gw.upload_waits(&id), Some(true));
    p.gw.cancel(p.now, &id);
    assert_eq!(p.gw.upload_waits(&id), None);
    p.gw.link_backlog(p.now, p.link, false);
    p.pump();
    assert!(p.gw_writable.is_empty());
}
