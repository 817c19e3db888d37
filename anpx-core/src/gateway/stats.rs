//! Counters and a snapshot for `/stats` and `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::features::Features;
use crate::handshake::HandshakeStats;

use super::{CallerAuthCounts, EdgeRefusals, Identity, LinkFault, LinkId, RequestEndings};

/// Totals since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requests started on a receiver.
    pub started: u64,
    /// Responses delivered completely.
    pub completed: u64,
    /// Requests refused: the path does not normalize (400).
    pub bad_request: u64,
    /// Requests refused: no route.
    pub not_found: u64,
    /// Requests refused: every receiver at capacity.
    pub unavailable: u64,
    /// Requests refused (429): their client address had its share of the
    /// route's in-flight cap.
    pub client_share_refused: u64,
    /// Requests failed with 502 (receiver gone, bad response, receiver error).
    pub bad_gateway: u64,
    /// Requests failed with 504.
    pub timed_out: u64,
    /// Requests failed with 408: the client's body did not arrive in time.
    pub upload_timed_out: u64,
    /// Flow-controlled responses ended (503, or a cut body) because their
    /// next bytes did not fit in `gateway.max_buffered_bytes`.
    pub buffers_cut: u64,
    /// Requests the client gave up on.
    pub cancelled: u64,
    /// Cancel frames sent to receivers (`cancel` extension): the client went
    /// away, the request timed out, or the gateway gave up on it.
    pub cancels_sent: u64,
    /// Receiver connections admitted.
    pub links_admitted: u64,
    /// Receiver connections closed for a protocol error (any fault that
    /// closes; see `receiver_faults`).
    pub protocol_errors: u64,
    /// Receiver faults by label ([`LinkFault::label`]).
    pub receiver_faults: BTreeMap<&'static str, u64>,
    /// Receiver connections dropped for silence.
    pub links_silent: u64,
    /// Frames for requests not in flight on that connection (late, or not theirs).
    pub stray_frames: u64,
    /// Text messages that were not valid control messages.
    pub bad_control: u64,
    /// Unsigned `authentication` messages ignored.
    pub unsigned_auth_ignored: u64,
    /// WebSocket upgrades a receiver accepted (`101` passed on).
    pub websockets: u64,
    /// WebSocket upgrades refused because no receiver for the route
    /// carries them (501).
    pub websockets_refused: u64,
    /// Requests served for another gateway and given up because it
    /// granted no credit for a whole request timeout: it is gone or stuck.
    pub served_stalled: u64,
}

/// One receiver connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Its id.
    pub id: LinkId,
    /// Who it authenticated as.
    pub identity: Identity,
    /// The address it connected from (`None` for a connection admitted
    /// without a handshake, [`Gateway::admit`](super::Gateway::admit)).
    pub address: Option<std::net::IpAddr>,
    /// Time since it was admitted; `age_secs` (whole seconds) in JSON.
    #[serde(rename = "age_secs", serialize_with = "whole_secs")]
    pub age: Duration,
    /// Requests in flight on it.
    pub in_flight: usize,
    /// Service URLs it serves.
    pub routes: Vec<String>,
    /// Extensions negotiated with it.
    pub features: String,
}

/// A point-in-time view of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayStats {
    /// Receiver connections.
    pub links: Vec<LinkStats>,
    /// Each service URL and how many connections serve it.
    pub routes: Vec<(String, usize)>,
    /// Requests in flight by the service URL they were routed by, every
    /// route served listed (at 0 too).
    pub route_in_flight: Vec<(String, usize)>,
    /// Requests in flight in all.
    pub in_flight: usize,
    /// Response bytes held because of receivers, including bodies of
    /// closed connections not yet taken by their clients
    /// ([`Gateway::buffered`](super::Gateway::buffered)).
    pub buffered_bytes: u64,
    /// Bytes of WebSocket messages still arriving
    /// ([`Gateway::arriving`](super::Gateway::arriving)).
    pub arriving_bytes: u64,
    /// Counters.
    pub totals: Totals,
    /// Receivers' handshakes: in progress, connections held, refusals.
    pub handshakes: HandshakeStats,
    /// How public requests ended, as the shell reported them
    /// ([`Gateway::request_ended`](super::Gateway::request_ended)).
    pub endings: RequestEndings,
    /// What the public edge refused, by reason: handshake slots and what
    /// the shell reported ([`Gateway::edge_refused`](super::Gateway::edge_refused)).
    pub edge_refused: EdgeRefusals,
    /// Public requests the middlewares answered themselves, by reason;
    /// `None` when the gateway screens nothing.
    pub policy_answered: Option<Vec<(String, u64)>>,
    /// Calls to protected routes let through and refused; `None` when no
    /// route requires a DID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_auth: Option<CallerAuthCounts>,
}

/// A duration as whole seconds: serde's own form is `{secs, nanos}`.
fn whole_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// `value` as a Prometheus label value: backslash, quote and newline
/// escaped.
pub fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn features_label(f: Features) -> String {
    f.to_string()
}

impl GatewayStats {
    /// The Prometheus text exposition of these figures.
    ///
    /// ```
    /// use anpx_core::{Gateway, GatewayConfig};
    /// let gw = Gateway::new(GatewayConfig::default(), 1);
    /// let text = gw.stats(std::time::Instant::now()).to_prometheus();
    /// assert!(text.contains("anpx_receivers 0\n"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let t = &self.totals;
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "anpx_receivers",
            "gauge",
            "Receiver connections.",
            self.links.len() as u64,
        );
        metric(
            "anpx_routes",
            "gauge",
            "Service URLs served.",
            self.routes.len() as u64,
        );
        metric(
            "anpx_requests_in_flight",
            "gauge",
            "Requests in flight.",
            self.in_flight as u64,
        );
        metric(
            "anpx_buffered_bytes",
            "gauge",
            "Response bytes held because of receivers (bodies awaiting their heads or their clients), counted against gateway.max_buffered_bytes.",
            self.buffered_bytes,
        );
        metric(
            "anpx_buffer_arriving_bytes",
            "gauge",
            "Bytes of WebSocket messages from receivers still arriving (read, not yet whole), counted against gateway.max_buffered_bytes.",
            self.arriving_bytes,
        );
        metric(
            "anpx_requests_started_total",
            "counter",
            "Requests sent to a receiver.",
            t.started,
        );
        metric(
            "anpx_requests_completed_total",
            "counter",
            "Responses delivered completely.",
            t.completed,
        );
        metric(
            "anpx_requests_cancelled_total",
            "counter",
            "Requests the client gave up on.",
            t.cancelled,
        );
        metric(
            "anpx_cancels_sent_total",
            "counter",
            "Cancel frames sent to receivers.",
            t.cancels_sent,
        );
        metric(
            "anpx_receivers_admitted_total",
            "counter",
            "Receiver connections admitted.",
            t.links_admitted,
        );
        metric(
            "anpx_receivers_silent_total",
            "counter",
            "Receivers dropped for silence.",
            t.links_silent,
        );
        metric(
            "anpx_protocol_errors_total",
            "counter",
            "Receivers closed for a protocol error.",
            t.protocol_errors,
        );
        metric(
            "anpx_stray_frames_total",
            "counter",
            "Frames for requests not in flight on that connection.",
            t.stray_frames,
        );
        metric(
            "anpx_cluster_served_stalled_total",
            "counter",
            "Requests served for another gateway and given up: it granted no credit for a whole request timeout.",
            t.served_stalled,
        );
        metric(
            "anpx_bad_control_total",
            "counter",
            "Unparseable control messages.",
            t.bad_control,
        );
        metric(
            "anpx_unsigned_auth_ignored_total",
            "counter",
            "Unsigned authentication messages ignored.",
            t.unsigned_auth_ignored,
        );
        metric(
            "anpx_client_share_refused_total",
            "counter",
            "Requests refused with 429: their client address had its share of the route's in-flight cap (gateway.max_inflight_percent_per_client). Kept for compatibility: the same as anpx_requests_refused_total{reason=\"client_share\"}.",
            t.client_share_refused,
        );
        metric(
            "anpx_buffers_cut_total",
            "counter",
            "Flow-controlled responses ended (503, or a cut body) because their next bytes did not fit in gateway.max_buffered_bytes; their receivers kept serving.",
            t.buffers_cut,
        );
        metric(
            "anpx_websockets_total",
            "counter",
            "WebSocket upgrades passed through to a service.",
            t.websockets,
        );
        let _ = write!(
            out,
            "# HELP anpx_requests_failed_total Requests answered by the gateway itself, by status.\n# TYPE anpx_requests_failed_total counter\n"
        );
        for (status, n) in [
            (400, t.bad_request),
            (404, t.not_found),
            (408, t.upload_timed_out),
            (429, t.client_share_refused),
            (501, t.websockets_refused),
            (502, t.bad_gateway),
            (503, t.unavailable + t.buffers_cut),
            (504, t.timed_out),
        ] {
            let _ = writeln!(out, "anpx_requests_failed_total{{status=\"{status}\"}} {n}");
        }
        let _ = write!(
            out,
            "# HELP anpx_receiver_faults_total Receiver misbehaviour, by kind.\n# TYPE anpx_receiver_faults_total counter\n"
        );
        for fault in LinkFault::ALL {
            let n = t.receiver_faults.get(fault.label()).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "anpx_receiver_faults_total{{reason=\"{}\"}} {n}",
                fault.label()
            );
        }
        // By identity, not connection number: a label that outlives
        // reconnects, bounded by the identities granted anything.
        let mut by_receiver: BTreeMap<String, usize> = BTreeMap::new();
        for l in &self.links {
            *by_receiver.entry(l.identity.to_string()).or_default() += l.in_flight;
        }
        let _ = write!(out, "# HELP anpx_receiver_in_flight Requests in flight per receiver identity (a DID, or anonymous), its connections summed.\n# TYPE anpx_receiver_in_flight gauge\n");
        for (receiver, n) in &by_receiver {
            let _ = writeln!(
                out,
                "anpx_receiver_in_flight{{receiver=\"{}\"}} {n}",
                label_value(receiver)
            );
        }
        let _ = write!(out, "# HELP anpx_route_in_flight Requests in flight per granted service URL.\n# TYPE anpx_route_in_flight gauge\n");
        for (route, n) in &self.route_in_flight {
            let _ = writeln!(
                out,
                "anpx_route_in_flight{{route=\"{}\"}} {n}",
                label_value(route)
            );
        }
        out.push_str(&self.handshakes.to_prometheus());
        if let Some(answered) = &self.policy_answered {
            let _ = write!(out, "# HELP anpx_policy_answered_total Public requests the gateway's middlewares answered itself, by reason.\n# TYPE anpx_policy_answered_total counter\n");
            for (reason, n) in answered {
                let _ = writeln!(out, "anpx_policy_answered_total{{reason=\"{reason}\"}} {n}");
            }
        }
        out.push_str(&self.edge_refused.to_prometheus());
        out.push_str(&self.endings.to_prometheus());
        if let Some(callers) = &self.caller_auth {
            out.push_str(&callers.to_prometheus());
        }
        out
    }
}
