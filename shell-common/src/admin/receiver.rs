//! The receiver's admin plane (`receiver.admin_listen`): its status as
//! JSON, `/metrics`, and the inspector of the requests it replayed to its
//! upstream, with the gateway's capture buffer and inspector routes.
//!
//! Routes:
//! - `GET /health` `{"status":"ok"}`;
//! - `GET /status` gateway connections, identity, services, requests in
//!   flight, bytes each way, uptime;
//! - `GET /metrics` the same counters as Prometheus text;
//! - `GET /api/requests`, `GET /api/requests/N`, `GET /api/events` the
//!   inspector, as on the gateway's admin plane (no replay: a receiver has
//!   no client to replay for).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anpx_core::config::InspectorSection;
use anpx_core::{RequestHead, ResponseHead};
use serde_json::json;

use super::{inspector_api, AdminReply, Arrival, Capture, Inspector};
use crate::gateway::Answer;

/// How a request the receiver served ended, as its inspector and
/// `anpx_receiver_requests_ended_total{ending}` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverEnding {
    /// The whole response went to the gateway.
    Completed,
    /// The upstream could not be reached or failed mid-answer; the
    /// gateway was told why.
    UpstreamFailed,
    /// The gateway cancelled it (its client left, or it timed out).
    Cancelled,
    /// The connection to the gateway ended while it was open.
    ConnectionLost,
}

impl ReceiverEnding {
    /// Every ending, in the order metrics list them.
    pub const ALL: [ReceiverEnding; 4] = [
        ReceiverEnding::Completed,
        ReceiverEnding::UpstreamFailed,
        ReceiverEnding::Cancelled,
        ReceiverEnding::ConnectionLost,
    ];

    /// The label in the inspector and the metrics.
    pub fn label(self) -> &'static str {
        match self {
            ReceiverEnding::Completed => "completed",
            ReceiverEnding::UpstreamFailed => "upstream_failed",
            ReceiverEnding::Cancelled => "cancelled",
            ReceiverEnding::ConnectionLost => "connection_lost",
        }
    }
}

/// One gateway connection as the status shows it.
#[derive(Debug, Clone, Default)]
struct GatewayView {
    connected: bool,
    /// Since when it is connected, or since when it tries.
    since: Option<Instant>,
    features: String,
    granted: Vec<String>,
    /// Why the last connection or attempt ended.
    last_error: Option<String>,
    connects: u64,
}

/// What the receiver's admin plane reports: kept up to date by the
/// connection loops of [`receiver`](crate::receiver), read by the admin
/// listener. Counting costs a few relaxed atomic additions per request.
pub struct ReceiverMonitor {
    started: Instant,
    started_at: SystemTime,
    identity: OnceLock<String>,
    /// The binary serving it (`anpx_build_info{shell}`), set when its
    /// admin listener starts.
    pub shell: OnceLock<&'static str>,
    /// The declared services and the upstream, replaced by a SIGHUP that
    /// changes them.
    services: Mutex<Vec<String>>,
    upstream: Mutex<Option<String>>,
    chunk_size: usize,
    inspector: Arc<Inspector>,
    gateways: Mutex<BTreeMap<String, GatewayView>>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    ended: [AtomicU64; ReceiverEnding::ALL.len()],
}

/// A request being served, as the monitor follows it.
pub struct Tracked {
    capture: Option<Capture>,
    status: u16,
}

impl Tracked {
    /// A piece of the request body came from the gateway.
    pub fn request_piece(&mut self, monitor: &ReceiverMonitor, piece: &[u8]) {
        monitor
            .request_bytes
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        if let Some(c) = &mut self.capture {
            c.request_piece(piece);
        }
    }

    /// The upstream answered with `status`; `head` is the whole head, when
    /// the inspector keeps it.
    pub fn head(&mut self, status: u16, head: Option<&ResponseHead>) {
        self.status = status;
        if let (Some(c), Some(head)) = (&self.capture, head) {
            c.head(head, status);
        }
    }

    /// A piece of the response body went to the gateway.
    pub fn response_piece(&mut self, monitor: &ReceiverMonitor, piece: &[u8]) {
        monitor
            .response_bytes
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        if let Some(c) = &mut self.capture {
            c.response_piece(piece);
        }
    }
}

impl ReceiverMonitor {
    /// A monitor for a receiver serving `services` (empty: whatever the
    /// gateway grants), capturing as `inspector` says, sending frames of
    /// `chunk_size` bytes.
    pub fn new(services: Vec<String>, inspector: InspectorSection, chunk_size: usize) -> Self {
        ReceiverMonitor {
            started: Instant::now(),
            started_at: SystemTime::now(),
            identity: OnceLock::new(),
            shell: OnceLock::new(),
            services: Mutex::new(services),
            upstream: Mutex::new(None),
            chunk_size,
            inspector: Inspector::new(inspector),
            gateways: Mutex::default(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            ended: Default::default(),
        }
    }

    /// The DID this receiver signs its handshakes with; without one it
    /// shows as anonymous. Set once.
    pub fn set_identity(&self, did: &str) {
        let _ = self.identity.set(did.to_owned());
    }

    /// Where requests are replayed to, for the status.
    pub fn set_upstream(&self, url: &str) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.to_owned());
    }

    /// The services this receiver declares, for the status.
    pub fn set_services(&self, services: Vec<String>) {
        *self.services.lock().unwrap_or_else(|e| e.into_inner()) = services;
    }

    /// The inspector.
    pub fn inspector(&self) -> &Arc<Inspector> {
        &self.inspector
    }

    fn gateway(&self, url: &str, change: impl FnOnce(&mut GatewayView)) {
        let mut g = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        change(g.entry(url.to_owned()).or_default());
    }

    /// The loop for `url` is dialing.
    pub fn connecting(&self, url: &str) {
        self.gateway(url, |g| {
            if g.connected || g.since.is_none() {
                g.since = Some(Instant::now());
            }
            g.connected = false;
        });
    }

    /// The connection to `url` is up.
    pub fn connected(&self, url: &str, features: &str, granted: &[String]) {
        self.gateway(url, |g| {
            g.connected = true;
            g.since = Some(Instant::now());
            g.features = features.to_owned();
            g.granted = granted.to_vec();
            g.connects += 1;
        });
    }

    /// The connection to `url` ended, or an attempt failed, because of
    /// `why`.
    pub fn disconnected(&self, url: &str, why: &str) {
        self.gateway(url, |g| {
            if g.connected {
                g.since = Some(Instant::now());
            }
            g.connected = false;
            g.granted.clear();
            g.last_error = Some(why.to_owned());
        });
    }

    /// A request from `gateway` starts: counted, and captured when the
    /// inspector is on.
    pub fn request(&self, gateway: &str, id: &str, head: &RequestHead) -> Tracked {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let capture = if self.inspector.enabled() {
            let headers: Vec<(String, String)> = head
                .headers
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            let host = head.headers.get("host").unwrap_or_default();
            let query = (!head.query.is_empty()).then_some(head.query.as_str());
            let capture = self.inspector.arrive(Arrival {
                client: None,
                local: None,
                method: &head.method,
                host,
                path: &head.path,
                query,
                headers: &headers,
                body: None,
                replay_of: None,
            });
            if let Some(c) = &capture {
                c.started(id, gateway, head.clone());
            }
            capture
        } else {
            None
        };
        Tracked { capture, status: 0 }
    }

    /// A request ended as `ending`, for `error` when it failed.
    pub fn ended(&self, tracked: Tracked, ending: ReceiverEnding, error: Option<&str>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.ended[ending as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(c) = tracked.capture {
            let status = match ending {
                ReceiverEnding::UpstreamFailed if tracked.status == 0 => 502,
                _ => tracked.status,
            };
            c.end(status, ending.label(), error);
        }
    }

    /// Requests that ended as `ending`.
    pub fn ended_count(&self, ending: ReceiverEnding) -> u64 {
        self.ended[ending as usize].load(Ordering::Relaxed)
    }

    /// Answers a request on the receiver's admin listener; `headers` are
    /// the request's.
    pub fn admin(&self, method: &str, path: &str, headers: &http::HeaderMap) -> AdminReply {
        let _ = headers;
        let get = method == "GET" || method == "HEAD";
        let reply = AdminReply::Answer;
        match path {
            "/health" if get => reply(Answer::json(200, &json!({ "status": "ok" }))),
            "/status" if get => reply(Answer::json(200, &self.status())),
            "/metrics" if get => reply(Answer::new(
                200,
                "text/plain; version=0.0.4",
                self.prometheus(),
            )),
            "/" if get => reply(Answer::text(
                200,
                "anpx receiver admin plane: GET /status, /metrics, /health, /api/requests, /api/requests/N, /api/events\n",
            )),
            _ => match inspector_api(&self.inspector, "receiver", method, path, self.chunk_size) {
                Some(r) => r,
                None if get => reply(Answer::text(
                    404,
                    "not found on the receiver's admin listener\n",
                )),
                None => reply(Answer::text(405, "method not allowed\n")),
            },
        }
    }

    /// `GET /status`.
    pub fn status(&self) -> serde_json::Value {
        let gateways: Vec<_> = self
            .gateways
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(url, g)| {
                json!({
                    "url": url,
                    "connected": g.connected,
                    "since_secs": g.since.map(|s| s.elapsed().as_secs()),
                    "features": g.features,
                    "granted": g.granted,
                    "connects": g.connects,
                    "last_error": g.last_error,
                })
            })
            .collect();
        json!({
            "identity": self.identity.get().map_or("anonymous", String::as_str),
            "upstream": self.upstream.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "services": self.services.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "gateways": gateways,
            "uptime_secs": self.started.elapsed().as_secs(),
            "started_unix": self.started_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "requests": self.requests.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "request_bytes": self.request_bytes.load(Ordering::Relaxed),
            "response_bytes": self.response_bytes.load(Ordering::Relaxed),
            "ended": ReceiverEnding::ALL
                .iter()
                .map(|e| (e.label().to_owned(), json!(self.ended_count(*e))))
                .collect::<serde_json::Map<_, _>>(),
            "inspector": self.inspector.overview(),
        })
    }

    /// `GET /metrics`.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        metric(
            "anpx_receiver_uptime_seconds",
            "gauge",
            "Seconds since the receiver started.",
            &[(String::new(), self.started.elapsed().as_secs())],
        );
        let gateways: Vec<(String, u64)> = self
            .gateways
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(url, g)| {
                (
                    format!("{{gateway=\"{}\"}}", escape_label(url)),
                    u64::from(g.connected),
                )
            })
            .collect();
        metric(
            "anpx_receiver_gateway_connected",
            "gauge",
            "1 while the connection to this gateway is up.",
            &gateways,
        );
        metric(
            "anpx_receiver_requests_total",
            "counter",
            "Requests received from gateways.",
            &[(String::new(), load(&self.requests))],
        );
        metric(
            "anpx_receiver_requests_in_flight",
            "gauge",
            "Requests being served.",
            &[(String::new(), load(&self.in_flight))],
        );
        metric(
            "anpx_receiver_request_bytes_total",
            "counter",
            "Request body bytes received from gateways.",
            &[(String::new(), load(&self.request_bytes))],
        );
        metric(
            "anpx_receiver_response_bytes_total",
            "counter",
            "Response body bytes sent to gateways.",
            &[(String::new(), load(&self.response_bytes))],
        );
        let ended: Vec<(String, u64)> = ReceiverEnding::ALL
            .iter()
            .map(|e| {
                (
                    format!("{{ending=\"{}\"}}", e.label()),
                    self.ended_count(*e),
                )
            })
            .collect();
        metric(
            "anpx_receiver_requests_ended_total",
            "counter",
            "Requests by how they ended.",
            &ended,
        );
        let shell = self.shell.get().copied().unwrap_or("");
        out.push_str(&crate::process_metrics::prometheus(shell));
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> RequestHead {
        let mut h = RequestHead::new("POST", "/x");
        h.headers.push("host", "a.test");
        h
    }

    #[test]
    fn counts_and_captures_what_it_served() {
        let m = ReceiverMonitor::new(Vec::new(), InspectorSection::default(), 65536);
        m.connected("ws://gw.test/ws", "streaming", &["a.test".to_owned()]);
        let mut t = m.request("ws://gw.test/ws", "r1", &head());
        t.request_piece(&m, b"hello");
        t.head(201, Some(&ResponseHead::new(201)));
        t.response_piece(&m, b"created!");
        m.ended(t, ReceiverEnding::Completed, None);
        let t = m.request("ws://gw.test/ws", "r2", &head());
        m.ended(
            t,
            ReceiverEnding::UpstreamFailed,
            Some("connection refused"),
        );

        let s = m.status();
        assert_eq!(s["requests"], 2);
        assert_eq!(s["in_flight"], 0);
        assert_eq!(s["request_bytes"], 5);
        assert_eq!(s["response_bytes"], 8);
        assert_eq!(s["identity"], "anonymous");
        assert_eq!(s["gateways"][0]["connected"], true);
        assert_eq!(s["gateways"][0]["granted"][0], "a.test");
        let e = m.inspector().entries();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].status, e[0].host.as_str()), (Some(201), "a.test"));
        assert_eq!(e[1].status, Some(502));
        assert_eq!(e[1].error.as_deref(), Some("connection refused"));

        let text = m.prometheus();
        assert!(text.contains("anpx_receiver_requests_total 2\n"), "{text}");
        assert!(text.contains("anpx_receiver_requests_ended_total{ending=\"upstream_failed\"} 1\n"));
        assert!(text.contains("anpx_receiver_gateway_connected{gateway=\"ws://gw.test/ws\"} 1\n"));
        m.disconnected("ws://gw.test/ws", "closed");
        assert!(m
            .prometheus()
            .contains("anpx_receiver_gateway_connected{gateway=\"ws://gw.test/ws\"} 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
