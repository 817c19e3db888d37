//! What the gateway and the receivers ask for, and the upstreams behind
//! the receivers.

use std::time::Duration;

use anpx_core::Feature;
use anpx_core::{Output, ResponseEvent};
use anpx_core::{ReceiverOutput, RequestEvent, RespondError, ResponseBody};
use anpx_core::{RequestId, ResponseHead};
use anpx_core::{CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR};

use super::{Closer, Task, World};
use crate::sim::invariants::{bail, UpstreamRecord, Violation};
use crate::sim::network::{describe, Dir};
use crate::sim::outcome::Injection;
use crate::sim::trace::short;
use crate::sim::upstream::{think_time, Next, Served};

impl World {
    // ----- gateway side -----

    pub(super) fn drain_gateway(&mut self) -> Result<(), Violation> {
        while let Some(out) = self.gw.poll_output() {
            self.gateway_output(out)?;
        }
        // No upload is left waiting once its credit came.
        let mut ended = Vec::new();
        for id in &self.upload_waits {
            match self.gw.upload_queued(id) {
                Some(0) => bail!("the upload of {id} was sent on and never told it may go on"),
                Some(_) => {}
                None => ended.push(id.clone()),
            }
        }
        for id in ended {
            self.upload_waits.remove(&id);
        }
        Ok(())
    }

    pub(super) fn gateway_output(&mut self, out: Output) -> Result<(), Violation> {
        match out {
            Output::Transmit { link, message } => {
                let Some(i) = self.node_of(link) else {
                    bail!(
                        "the gateway sends {} on {link}, which is closed",
                        describe(&message)
                    );
                };
                let now = self.now;
                if let Some(conn) = self.nodes[i].conn.as_mut() {
                    let delay = conn.wire.latency.sample(&mut self.rng);
                    conn.wire.send(Dir::Down, now, delay, message);
                }
                Ok(())
            }
            Output::Writable { request } => {
                if !self.upload_waits.remove(&request) {
                    bail!("the gateway said the upload of {request} may go on; it was not waiting");
                }
                if !self.ledger.is_open(&request) {
                    bail!("the gateway said the upload of {request} may go on after it ended");
                }
                if self.gw.upload_queued(&request) != Some(0) {
                    bail!("the gateway said the upload of {request} may go on with bytes waiting");
                }
                log!(self, "upload of {} may go on", short(&request));
                Ok(())
            }
            Output::Response { request, event } => {
                self.client_event(&request, &event)?;
                if self.options.inject == Some(Injection::DuplicateEnd)
                    && event == ResponseEvent::End
                    && !self.injected
                {
                    self.injected = true;
                    self.client_event(&request, &event)?;
                }
                Ok(())
            }
            Output::Close {
                link, code, reason, ..
            } => {
                if code != CLOSE_GOING_AWAY {
                    bail!("the gateway closed {link} with code {code}: {reason}");
                }
                let Some(i) = self.node_of(link) else {
                    bail!("the gateway closed {link}, which was already closed");
                };
                self.counters.gateway_closes += 1;
                log!(self, "gateway closes {link}: {reason}");
                self.close_conn(i, Closer::Gateway)
            }
            out @ (Output::Cluster(_) | Output::Publish { .. } | Output::Answer { .. }) => {
                bail!("a gateway outside any cluster asked the bus for {out:?}")
            }
        }
    }

    // ----- receiver side -----

    pub(super) fn drain_receiver(&mut self, i: usize) -> Result<(), Violation> {
        loop {
            let now = self.now;
            let Some(conn) = self.nodes[i].conn.as_mut() else {
                return Ok(());
            };
            let Some(out) = conn.rx.poll_output() else {
                // No response is left waiting once its credit came.
                let mut ended = Vec::new();
                for id in &conn.reply_waits {
                    let open = conn.served.get(id).is_some_and(|s| !s.reply_done);
                    match conn.rx.unsent(id) {
                        Some(0) if open => bail!(
                            "node {i} sent the response to {id} on and never told it may go on"
                        ),
                        Some(_) if open => {}
                        _ => ended.push(id.clone()),
                    }
                }
                for id in ended {
                    conn.reply_waits.remove(&id);
                }
                return Ok(());
            };
            match out {
                ReceiverOutput::Transmit(message) => {
                    let delay = conn.wire.latency.sample(&mut self.rng);
                    conn.wire.send(Dir::Up, now, delay, message);
                }
                ReceiverOutput::Event(event) => self.request_event(i, event)?,
                ReceiverOutput::Writable { request } => {
                    if !conn.reply_waits.remove(&request) {
                        bail!(
                            "node {i} said the response to {request} may go on; it was not waiting"
                        );
                    }
                    if conn.rx.unsent(&request) != Some(0)
                        || conn.served.get(&request).is_none_or(|s| s.reply_done)
                    {
                        bail!("node {i} said the response to {request} may go on, which is not open or not all sent");
                    }
                    log!(self, "response to {} may go on", short(&request));
                }
                ReceiverOutput::Close { code, reason } => {
                    if code == CLOSE_PROTOCOL_ERROR {
                        bail!("node {i} closed its connection for a protocol error: {reason}");
                    }
                    self.counters.receiver_closes += 1;
                    log!(self, "node {i} closes: {reason}");
                    self.close_conn(i, Closer::Receiver)?;
                }
            }
        }
    }

    /// The upstream behind node `i` gets a request event.
    pub(super) fn request_event(&mut self, i: usize, event: RequestEvent) -> Result<(), Violation> {
        let Some(conn) = self.nodes[i].conn.as_mut() else {
            bail!("node {i} raised {event:?} with no connection");
        };
        let streaming = conn.features.contains(Feature::Streaming);
        let link = conn.link;
        let generation = conn.generation;
        match event {
            RequestEvent::Head { request, head } => {
                let Some(client) = self.clients.get(&request) else {
                    bail!("{link} got request {request}, which no client started");
                };
                if head.method != client.method
                    || client.normalized.as_ref() != Some(&head.path)
                    || head.query != client.query
                {
                    bail!(
                        "{link} got {} {}?{} for request {request}, which asked for {} {}?{} (normal form {:?})",
                        head.method,
                        head.path,
                        head.query,
                        client.method,
                        client.path,
                        client.query,
                        client.normalized
                    );
                }
                if head.headers.get("x-sim-serial") != Some(client.serial.to_string().as_str()) {
                    bail!(
                        "{link} got request {request} with the headers of another: {:?}",
                        head.headers
                    );
                }
                let routed = self.ledger.entry(&request).and_then(|e| e.link);
                if routed != Some(link) {
                    bail!("request {request} was sent on {routed:?} but arrived on {link}");
                }
                if conn.served.contains_key(&request) || self.records.contains_key(&request) {
                    bail!("request {request} reached an upstream twice");
                }
                let served = Served::new(&mut self.rng, streaming);
                let record = UpstreamRecord {
                    body: served.planned_body(&request),
                    ..UpstreamRecord::default()
                };
                let ready = served.ready();
                log!(
                    self,
                    "upstream {i} gets head of {} (plan {:?})",
                    short(&request),
                    served.plan
                );
                self.records.insert(request.clone(), record);
                if let Some(conn) = self.nodes[i].conn.as_mut() {
                    conn.served.insert(request.clone(), served);
                    conn.heads += 1;
                }
                if ready {
                    self.schedule_upstream(i, generation, request);
                }
            }
            RequestEvent::Body { request, data } => {
                let Some(served) = conn.served.get_mut(&request) else {
                    bail!("{link} passed on body for request {request}, which its upstream does not hold");
                };
                if served.ended || served.reply_done {
                    bail!(
                        "{link} passed on body for request {request} after its end or its response"
                    );
                }
                let Some(client) = self.clients.get(&request) else {
                    bail!("body for request {request}, which no client started");
                };
                let end = served.seen + data.len();
                if end > client.pushed {
                    bail!(
                        "upstream has {end} body bytes of request {request}; its client pushed {}",
                        client.pushed
                    );
                }
                if client.body[served.seen..end] != data[..] {
                    bail!(
                        "request {request}: body bytes {}..{end} differ from what the client sent",
                        served.seen
                    );
                }
                served.seen = end;
                // The upstream takes what it is given at once: that reopens
                // the gateway's window (`flow-control`).
                let n = data.len();
                let at = self.at();
                if let Some(conn) = self.nodes[i].conn.as_mut() {
                    conn.rx.request_body_read(at, &request, n);
                }
            }
            RequestEvent::End { request } => {
                let Some(served) = conn.served.get_mut(&request) else {
                    bail!("{link} passed on the end of request {request}, which its upstream does not hold");
                };
                if served.ended || served.reply_done {
                    bail!("{link} passed on a second end, or one after the response, for request {request}");
                }
                let Some(client) = self.clients.get(&request) else {
                    bail!("end of request {request}, which no client started");
                };
                if !client.finished || served.seen != client.body.len() {
                    bail!(
                        "request {request} ended upstream after {} of {} body bytes (client finished: {})",
                        served.seen,
                        client.body.len(),
                        client.finished
                    );
                }
                served.ended = true;
                log!(
                    self,
                    "upstream {i} gets the end of {} ({} body bytes)",
                    short(&request),
                    client.body.len()
                );
                let Some(served) = self.nodes[i]
                    .conn
                    .as_mut()
                    .and_then(|c| c.served.get_mut(&request))
                else {
                    return Ok(());
                };
                if served.ready() {
                    self.schedule_upstream(i, generation, request);
                }
            }
            RequestEvent::Aborted { request, reason } => {
                if conn.served.remove(&request).is_none() {
                    bail!("{link} aborted request {request}, which its upstream does not hold");
                }
                conn.aborts += 1;
                let limit = self.nodes[i].spec.config.reassembly.max_message_size;
                let over = self
                    .clients
                    .get(&request)
                    .is_some_and(|c| c.body.len() as u64 > limit);
                let expected = match reason.as_str() {
                    "connection to the gateway closed"
                    | "request body stalled"
                    | "gateway silent past its liveness deadline" => true,
                    r if r.starts_with("bad request chunks: ") => {
                        over && r.ends_with(&format!(" exceeds the limit of {limit}"))
                    }
                    _ => false,
                };
                if !expected {
                    bail!("{link} aborted request {request} for no cause the simulation made: {reason}");
                }
                self.counters.receiver_aborts += 1;
                log!(
                    self,
                    "upstream {i} told {} is aborted: {reason}",
                    short(&request)
                );
                if let Some(record) = self.records.get_mut(&request) {
                    record.aborted = Some(reason);
                }
                if self.rng.u32(..5) == 0 {
                    // A shell may answer just before it sees the abort.
                    let at = self.at();
                    if let Some(conn) = self.nodes[i].conn.as_mut() {
                        let late = conn.rx.respond(
                            at,
                            &request,
                            ResponseHead::new(200),
                            ResponseBody::Empty,
                        );
                        if !matches!(late, Err(RespondError::UnknownRequest(_))) {
                            bail!("respond after the abort of {request} gave {late:?}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn schedule_upstream(&mut self, i: usize, generation: u64, request: RequestId) {
        // At the drain the upstreams hurry, so that the run ends soon after
        // the last deadline rather than after the slowest upstream.
        let delay = if self.draining {
            Duration::from_millis(self.rng.u64(..=100))
        } else {
            think_time(&mut self.rng, self.sc.gateway.request_timeout)
        };
        if let Some(served) = self.nodes[i]
            .conn
            .as_mut()
            .and_then(|c| c.served.get_mut(&request))
        {
            served.scheduled = true;
        }
        self.schedule(
            self.now + delay,
            Task::Upstream {
                node: i,
                generation,
                request,
            },
        );
    }

    pub(super) fn upstream_act(
        &mut self,
        i: usize,
        generation: u64,
        request: &RequestId,
    ) -> Result<(), Violation> {
        let at = self.at();
        let draining = self.draining;
        let Some(conn) = self.nodes[i]
            .conn
            .as_mut()
            .filter(|c| c.generation == generation)
        else {
            // The connection went, and its requests were aborted with it.
            return Ok(());
        };
        let Some(served) = conn.served.get_mut(request) else {
            return Ok(());
        };
        served.scheduled = false;
        let Some(record) = self.records.get_mut(request) else {
            bail!("upstream holds request {request} with no record");
        };
        let (next, what) =
            served.act(at, request, &mut conn.rx, record, &mut self.rng, draining)?;
        if !served.reply_done && conn.rx.unsent(request) > Some(0) {
            conn.reply_waits.insert(request.clone());
        }
        if record.error.is_some() {
            self.counters.upstream_errors += 1;
        }
        if served.reply_done && served.ended {
            conn.served.remove(request);
        }
        log!(self, "upstream {i} for {}: {what}", short(request));
        if next == Next::Again {
            self.schedule_upstream(i, generation, request.clone());
        }
        self.drain_receiver(i)
    }
}
