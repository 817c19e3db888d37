//! How public requests ended, kept by the gateway machine: how many ended
//! each way and, by route, their status classes, durations and body
//! bytes; how many the gateway refused, by reason. The shell measures each
//! request (the machine reads no clock) and hands its end in with
//! [`Gateway::request_ended`](super::Gateway::request_ended); `/stats` and
//! `/metrics` read them from the same snapshot as the rest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::route::ServiceUrl;

use super::duration_histogram::DurationHistogram;
use super::stats::label_value;
use super::{Ending, Gateway};

/// The route label of a request no granted route took (refused before
/// routing, or no route matched). The parentheses keep it apart from any
/// service URL, which starts with a host name or `*`.
pub const UNROUTED: &str = "(unrouted)";

/// The route label of a request handed to another gateway of the cluster.
pub const CLUSTER_ROUTE: &str = "cluster";

/// The status classes `anpx_responses_total` counts by; `none` is a
/// request that ended before any status was sent.
const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// One public request's end, as the shell measured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEnd {
    /// How it ended.
    pub ending: Ending,
    /// The granted service URL that routed it (as the machine named it
    /// when it started or refused the request), [`CLUSTER_ROUTE`], or
    /// empty when none did.
    pub route: String,
    /// The status the client got (0 when none was sent).
    pub status: u16,
    /// From its head to its end.
    pub duration: Duration,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes relayed to the client from a receiver.
    pub bytes_out: u64,
    /// Why the gateway refused it itself, when it did: the label in
    /// `anpx_requests_refused_total{reason}`. A static word, so the
    /// label's values are bounded by the program.
    pub refusal: Option<&'static str>,
}

/// What the requests of one route added up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSeries {
    classes: [u64; CLASSES.len()],
    durations: DurationHistogram,
    bytes_in: u64,
    bytes_out: u64,
}

impl RouteSeries {
    /// How many of its requests got a status of `class` (`"2xx"`, ...,
    /// or `"none"`); 0 for a class that is none of these.
    pub fn responses(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| self.classes[i])
    }

    /// How long its requests took.
    pub fn durations(&self) -> &DurationHistogram {
        &self.durations
    }

    /// Request body bytes read from its clients.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Response body bytes relayed to its clients.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    fn add(&mut self, end: &RequestEnd) {
        let class = match end.status {
            100..=599 => usize::from(end.status / 100),
            _ => 0,
        };
        self.classes[class] += 1;
        self.durations.observe(end.duration);
        self.bytes_in = self.bytes_in.saturating_add(end.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(end.bytes_out);
    }
}

impl Serialize for RouteSeries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("RouteSeries", 4)?;
        st.serialize_field(
            "responses",
            &ByLabel(CLASSES.iter().copied().zip(self.classes)),
        )?;
        st.serialize_field("duration_seconds", &self.durations)?;
        st.serialize_field("request_body_bytes", &self.bytes_in)?;
        st.serialize_field("response_body_bytes", &self.bytes_out)?;
        st.end()
    }
}

/// How many public requests ended each way and, by route, how long they
/// took, what status class they got and how many body bytes they carried;
/// how many the gateway refused, by reason.
///
/// ```
/// use std::time::{Duration, Instant};
/// use anpx_core::{Ending, Gateway, GatewayConfig, RequestEnd};
///
/// let mut gw = Gateway::new(GatewayConfig::default(), 1);
/// gw.request_ended(RequestEnd {
///     ending: Ending::Refused,
///     route: String::new(),
///     status: 404,
///     duration: Duration::from_millis(2),
///     bytes_in: 0,
///     bytes_out: 0,
///     refusal: Some("no_route"),
/// });
/// let endings = gw.stats(Instant::now()).endings;
/// assert_eq!(endings.ended(Ending::Refused), 1);
/// assert_eq!(endings.refused("no_route"), 1);
/// assert_eq!(endings.route("(unrouted)").unwrap().responses("4xx"), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEndings {
    ended: [u64; Ending::ALL.len()],
    /// By route label: only service URLs the machine granted,
    /// [`CLUSTER_ROUTE`] and [`UNROUTED`], so the label's values are
    /// bounded by the grants.
    routes: BTreeMap<String, RouteSeries>,
    /// Refused requests by reason label.
    refused: BTreeMap<&'static str, u64>,
}

impl RequestEndings {
    /// How many requests ended as `ending`.
    pub fn ended(&self, ending: Ending) -> u64 {
        self.ended[ending.index()]
    }

    /// How many requests were refused for `reason`.
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused.get(reason).copied().unwrap_or(0)
    }

    /// What the requests under route label `route` added up to, once one
    /// ended there.
    pub fn route(&self, route: &str) -> Option<&RouteSeries> {
        self.routes.get(route)
    }

    /// Every route label a request ended under, in order, with its series.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &RouteSeries)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Counts `end`. Its route counts as itself when `granted` says the
    /// machine handed that label out (or it is already known), and as
    /// [`UNROUTED`] otherwise: a label from anywhere else would make the
    /// series unbounded.
    pub(super) fn record(&mut self, end: RequestEnd, granted: impl FnOnce(&str) -> bool) {
        self.ended[end.ending.index()] += 1;
        if let Some(reason) = end.refusal {
            *self.refused.entry(reason).or_default() += 1;
        }
        // The common case, a route already seen, costs one lookup and no
        // allocation.
        if let Some(series) = self.routes.get_mut(end.route.as_str()) {
            series.add(&end);
            return;
        }
        let own = !end.route.is_empty() && (end.route == CLUSTER_ROUTE || granted(&end.route));
        let label = if own { end.route.as_str() } else { UNROUTED };
        match self.routes.get_mut(label) {
            Some(series) => series.add(&end),
            None => {
                let mut series = RouteSeries::default();
                series.add(&end);
                self.routes.insert(label.to_owned(), series);
            }
        }
    }

    /// `anpx_requests_ended_total` (every ending listed even at zero), the
    /// per-route series (`anpx_responses_total`,
    /// `anpx_request_duration_seconds`, `anpx_request_body_bytes_total`,
    /// `anpx_response_body_bytes_total`) and `anpx_requests_refused_total`.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP anpx_requests_ended_total Public requests by how they ended.\n# TYPE anpx_requests_ended_total counter\n",
        );
        for e in Ending::ALL {
            let _ = writeln!(
                out,
                "anpx_requests_ended_total{{ending=\"{}\"}} {}",
                e.label(),
                self.ended(e)
            );
        }
        let routes: Vec<(String, &RouteSeries)> = self
            .routes
            .iter()
            .map(|(k, v)| (label_value(k), v))
            .collect();
        out.push_str(
            "# HELP anpx_responses_total Public requests by route and by the class of the status their client got (none: ended before one was sent).\n# TYPE anpx_responses_total counter\n",
        );
        for (route, s) in &routes {
            for (class, n) in CLASSES.iter().zip(s.classes) {
                let _ = writeln!(
                    out,
                    "anpx_responses_total{{route=\"{route}\",class=\"{class}\"}} {n}"
                );
            }
        }
        let name = "anpx_request_duration_seconds";
        let _ = write!(out, "# HELP {name} Public requests from their head to their end, in seconds, by route.\n# TYPE {name} histogram\n");
        for (route, s) in &routes {
            out.push_str(&s.durations.series(name, &format!("route=\"{route}\"")));
        }
        for (name, help, pick) in [
            (
                "anpx_request_body_bytes_total",
                "Request body bytes read from public clients, counted when each request ends, by route.",
                RouteSeries::bytes_in as fn(&RouteSeries) -> u64,
            ),
            (
                "anpx_response_body_bytes_total",
                "Response body bytes relayed from receivers to public clients, by route.",
                RouteSeries::bytes_out,
            ),
        ] {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
            for (route, s) in &routes {
                let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", pick(s));
            }
        }
        out.push_str("# HELP anpx_requests_refused_total Public requests the gateway refused itself, by reason (each also logged with the client's address).\n# TYPE anpx_requests_refused_total counter\n");
        for (reason, n) in &self.refused {
            let _ = writeln!(
                out,
                "anpx_requests_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out
    }
}

impl Serialize for RequestEndings {
    /// `{"ended": {"completed": n, ...}, "routes": {route: series},
    /// "refused": {reason: n}}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ended = ByLabel(Ending::ALL.iter().map(|e| e.label()).zip(self.ended));
        let mut st = s.serialize_struct("RequestEndings", 3)?;
        st.serialize_field("ended", &ended)?;
        st.serialize_field("routes", &self.routes)?;
        st.serialize_field("refused", &self.refused)?;
        st.end()
    }
}

impl Gateway {
    /// A public request ended as `end` says: counted by how it ended, by
    /// route (status class, duration, body bytes) and, when the gateway
    /// refused it, by reason. A route label the machine never granted
    /// counts as [`UNROUTED`].
    pub fn request_ended(&mut self, end: RequestEnd) {
        let granted = &self.granted;
        self.endings.record(end, |label| {
            // A label is a granted URL only in the exact form the machine
            // writes it: a parse that normalizes would let variants in.
            label
                .parse::<ServiceUrl>()
                .is_ok_and(|url| granted.contains(&url) && url.to_string() == label)
        });
    }

    /// Remembers `url` as granted: a route label requests may end under.
    pub(super) fn remember_grant(&mut self, url: &ServiceUrl) {
        if !self.granted.contains(url) {
            self.granted.insert(url.clone());
        }
    }
}

/// Counts by label as a JSON object, in the order given.
pub(super) struct ByLabel<I>(pub(super) I);

impl<I> Serialize for ByLabel<I>
where
    I: Iterator<Item = (&'static str, u64)> + Clone,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (label, n) in self.0.clone() {
            m.serialize_entry(label, &n)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(ending: Ending, route: &str, status: u16, bytes_out: u64) -> RequestEnd {
        RequestEnd {
            ending,
            route: route.to_owned(),
            status,
            duration: Duration::from_millis(3),
            bytes_in: 2 * bytes_out,
            bytes_out,
            refusal: None,
        }
    }

    fn granted(route: &str) -> bool {
        route == "a.example/x"
    }

    #[test]
    fn counts_show_in_prometheus_text() {
        let mut e = RequestEndings::default();
        e.record(end(Ending::Completed, "", 200, 0), granted);
        e.record(end(Ending::Completed, "", 200, 0), granted);
        e.record(end(Ending::ClientLeft, "", 0, 0), granted);
        let text = e.to_prometheus();
        assert!(text.contains("anpx_requests_ended_total{ending=\"completed\"} 2\n"));
        assert!(text.contains("anpx_requests_ended_total{ending=\"client_left\"} 1\n"));
        assert!(text.contains("anpx_requests_ended_total{ending=\"timed_out\"} 0\n"));
        assert_eq!(e.ended(Ending::Completed), 2);
    }

    #[test]
    fn endings_add_status_classes_durations_and_bytes() {
        let mut e = RequestEndings::default();
        e.record(end(Ending::Completed, "a.example/x", 200, 10), granted);
        e.record(end(Ending::Completed, "a.example/x", 204, 0), granted);
        let mut refused = end(Ending::Refused, "", 404, 0);
        refused.refusal = Some("no_route");
        e.record(refused, granted);
        e.record(end(Ending::ClientLeft, "a.example/x", 0, 5), granted);
        let text = e.to_prometheus();
        for series in [
            "anpx_responses_total{route=\"a.example/x\",class=\"2xx\"} 2\n",
            "anpx_responses_total{route=\"(unrouted)\",class=\"4xx\"} 1\n",
            "anpx_responses_total{route=\"a.example/x\",class=\"none\"} 1\n",
            "anpx_responses_total{route=\"a.example/x\",class=\"5xx\"} 0\n",
            "anpx_request_duration_seconds_count{route=\"a.example/x\"} 3\n",
            "anpx_request_duration_seconds_bucket{route=\"(unrouted)\",le=\"0.005\"} 1\n",
            "anpx_response_body_bytes_total{route=\"a.example/x\"} 15\n",
            "anpx_request_body_bytes_total{route=\"a.example/x\"} 30\n",
            "anpx_requests_refused_total{reason=\"no_route\"} 1\n",
        ] {
            assert!(text.contains(series), "{series} not in\n{text}");
        }
        assert_eq!(e.refused("no_route"), 1);
        assert_eq!(e.refused("at_capacity"), 0);
        let x = e.route("a.example/x").unwrap();
        assert_eq!((x.responses("2xx"), x.responses("none")), (2, 1));
        assert_eq!((x.bytes_in(), x.bytes_out()), (30, 15));
        assert_eq!(x.durations().count(), 3);
    }

    #[test]
    fn every_family_has_its_help_and_type_once() {
        let mut e = RequestEndings::default();
        e.record(end(Ending::Completed, "a.example/x", 200, 1), granted);
        e.record(end(Ending::Refused, "", 404, 0), granted);
        let text = e.to_prometheus();
        for (name, kind) in [
            ("anpx_requests_ended_total", "counter"),
            ("anpx_responses_total", "counter"),
            ("anpx_request_duration_seconds", "histogram"),
            ("anpx_request_body_bytes_total", "counter"),
            ("anpx_response_body_bytes_total", "counter"),
            ("anpx_requests_refused_total", "counter"),
        ] {
            let help = format!("# HELP {name} ");
            let kind = format!("# TYPE {name} {kind}\n");
            assert_eq!(text.matches(&help).count(), 1, "{name} in\n{text}");
            assert_eq!(text.matches(&kind).count(), 1, "{name} in\n{text}");
        }
        // Routes are listed in label order, (unrouted) before host names.
        let unrouted = text.find("route=\"(unrouted)\"").unwrap();
        let x = text.find("route=\"a.example/x\"").unwrap();
        assert!(unrouted < x, "{text}");
    }

    #[test]
    fn a_route_the_machine_never_granted_counts_as_unrouted() {
        let mut e = RequestEndings::default();
        e.record(end(Ending::Completed, "evil.example/x", 200, 0), granted);
        e.record(end(Ending::Completed, "a.example/x", 200, 0), granted);
        e.record(end(Ending::Completed, CLUSTER_ROUTE, 200, 0), granted);
        let labels: Vec<&str> = e.routes().map(|(r, _)| r).collect();
        assert_eq!(labels, [UNROUTED, "a.example/x", CLUSTER_ROUTE]);
        // Once known, a route is not asked about again: it may have been
        // granted away while its last requests ran.
        e.record(end(Ending::Completed, "a.example/x", 200, 0), |_| false);
        assert_eq!(e.route("a.example/x").unwrap().responses("2xx"), 2);
    }

    #[test]
    fn the_machine_takes_only_routes_it_granted_into_its_snapshot() {
        use crate::edge::EdgeRefusal;
        use crate::{Features, GatewayConfig, Identity};
        let now = std::time::Instant::now();
        let mut gw = Gateway::new(GatewayConfig::default(), 1);
        let url: ServiceUrl = "api.agent.com/svc".parse().unwrap();
        let link = gw.admit(now, Identity::Anonymous, vec![url], Features::empty());
        // Granted away while its request ran: still its own route.
        gw.regrant(now, link, &[]);
        gw.request_ended(end(Ending::Completed, "api.agent.com/svc", 200, 7));
        // Not the form the machine writes, and never granted.
        gw.request_ended(end(Ending::Completed, "API.agent.com/svc", 200, 0));
        gw.request_ended(end(Ending::Completed, "other.example", 200, 0));
        gw.edge_refused(EdgeRefusal::Malformed);
        let stats = gw.stats(now);
        let text = stats.to_prometheus();
        for series in [
            "anpx_response_body_bytes_total{route=\"api.agent.com/svc\"} 7\n",
            "anpx_responses_total{route=\"(unrouted)\",class=\"2xx\"} 2\n",
            "anpx_requests_ended_total{ending=\"completed\"} 3\n",
            "anpx_edge_refused_total{reason=\"malformed\"} 1\n",
            "anpx_edge_refused_total{reason=\"head_timeout\"} 0\n",
        ] {
            assert!(text.contains(series), "{series} not in\n{text}");
        }
        assert_eq!(stats.endings.routes().count(), 2);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["endings"]["ended"]["completed"], 3);
        assert_eq!(json["edge_refused"]["malformed"], 1);
    }

    #[test]
    fn route_labels_are_escaped() {
        let mut e = RequestEndings::default();
        e.record(end(Ending::Completed, "a\"b", 200, 0), |_| true);
        let text = e.to_prometheus();
        assert!(
            text.contains("anpx_responses_total{route=\"a\\\"b\",class=\"2xx\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_json_form_names_endings_classes_and_reasons() {
        let mut e = RequestEndings::default();
        let mut refused = end(Ending::Refused, "", 429, 0);
        refused.refusal = Some("client_share");
        e.record(refused, granted);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["ended"]["refused"], 1);
        assert_eq!(v["ended"]["completed"], 0);
        assert_eq!(v["routes"]["(unrouted)"]["responses"]["4xx"], 1);
        assert_eq!(v["routes"]["(unrouted)"]["duration_seconds"]["count"], 1);
        assert_eq!(v["refused"]["client_share"], 1);
    }
}
