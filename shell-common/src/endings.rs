//! The one log line and the counters every public request ends with
//! (`anpx_requests_ended_total{ending="…"}`, and by route the duration
//! histogram, responses by status class, body bytes; refusals by reason),
//! shared by both shells.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anpx_core::{label_value, Ending};

use crate::duration_histogram::DurationHistogram;

/// The status classes `anpx_responses_total` counts by; `none` is a
/// request that ended before any status was sent.
const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The route label of a request no granted route took (refused before
/// routing, or no route matched). The parentheses keep it apart from any
/// service URL, which starts with a host name or `*`.
pub const UNROUTED: &str = "(unrouted)";

/// What the requests of one route added up to.
#[derive(Debug, Default)]
struct RouteSeries {
    classes: [AtomicU64; CLASSES.len()],
    durations: DurationHistogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// How many public requests ended each way and, by route, how long they
/// took, what status class they got and how many body bytes they carried;
/// how many were refused, by reason.
#[derive(Debug, Default)]
pub struct Endings {
    counts: [AtomicU64; Ending::ALL.len()],
    /// By route label: only granted service URLs and [`UNROUTED`], so the
    /// label's values are bounded by the grant table.
    routes: RwLock<BTreeMap<String, Arc<RouteSeries>>>,
    /// Refused requests by reason label; the labels are a fixed set of
    /// words ([`RefusedLine::reason`]).
    refused: RwLock<BTreeMap<&'static str, u64>>,
}

impl Endings {
    /// Counts one request that ended as `ending`.
    pub fn count(&self, ending: Ending) {
        self.counts[ending.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn route(&self, route: &str) -> Arc<RouteSeries> {
        let label = if route.is_empty() { UNROUTED } else { route };
        if let Some(s) = self.routes.read().ok().and_then(|m| m.get(label).cloned()) {
            return s;
        }
        match self.routes.write() {
            Ok(mut m) => m.entry(label.to_owned()).or_default().clone(),
            // A panic mid-insert leaves a usable map; counting into a
            // detached series loses one request's figures, not the process.
            Err(_) => Arc::default(),
        }
    }

    /// Adds `line`'s status class, duration and bytes under its route.
    fn measure(&self, line: &EndLine<'_>) {
        let class = match line.status {
            100..=599 => usize::from(line.status / 100),
            _ => 0,
        };
        let s = self.route(line.route);
        s.classes[class].fetch_add(1, Ordering::Relaxed);
        s.durations.observe(line.duration);
        s.bytes_in.fetch_add(line.bytes_in, Ordering::Relaxed);
        s.bytes_out.fetch_add(line.bytes_out, Ordering::Relaxed);
    }

    /// How many requests ended as `ending`.
    pub fn ended(&self, ending: Ending) -> u64 {
        self.counts[ending.index()].load(Ordering::Relaxed)
    }

    /// How many requests were refused for `reason`.
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused
            .read()
            .ok()
            .and_then(|m| m.get(reason).copied())
            .unwrap_or(0)
    }

    fn count_refusal(&self, reason: &'static str) {
        if let Ok(mut m) = self.refused.write() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// `anpx_requests_ended_total` (every ending listed even at zero), the
    /// per-route series and `anpx_requests_refused_total`.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write as _;
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
        let routes: Vec<(String, Arc<RouteSeries>)> = match self.routes.read() {
            Ok(m) => m.iter().map(|(k, v)| (label_value(k), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        out.push_str(
            "# HELP anpx_responses_total Public requests by route and by the class of the status their client got (none: ended before one was sent).\n# TYPE anpx_responses_total counter\n",
        );
        for (route, s) in &routes {
            for (class, n) in CLASSES.iter().zip(&s.classes) {
                let n = n.load(Ordering::Relaxed);
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
                (|s: &RouteSeries| &s.bytes_in) as fn(&RouteSeries) -> &AtomicU64,
            ),
            (
                "anpx_response_body_bytes_total",
                "Response body bytes relayed from receivers to public clients, by route.",
                |s: &RouteSeries| &s.bytes_out,
            ),
        ] {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
            for (route, s) in &routes {
                let n = pick(s).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{route=\"{route}\"}} {n}");
            }
        }
        out.push_str("# HELP anpx_requests_refused_total Public requests the gateway refused itself, by reason (each also logged with the client's address).\n# TYPE anpx_requests_refused_total counter\n");
        if let Ok(m) = self.refused.read() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "anpx_requests_refused_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        out
    }
}

/// One request's end, as logged.
pub struct EndLine<'a> {
    /// The request's id.
    pub request: &'a str,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The granted service URL that routed it; empty when none did.
    pub route: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Its path.
    pub path: &'a str,
    /// The status the client got (0 when none was sent).
    pub status: u16,
    /// How long it took.
    pub duration: std::time::Duration,
    /// The receiver that served it, if one did.
    pub receiver: &'a str,
    /// Why it failed, when it did.
    pub error: Option<&'a str>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes relayed to the client from a receiver.
    pub bytes_out: u64,
}

/// Logs `line` with its `ending` and counts it: the single place a public
/// request's end is reported. `refusal` names why the gateway refused it
/// itself, counted in `anpx_requests_refused_total{reason}` and logged as
/// `reason`.
pub fn report(
    endings: &Endings,
    ending: Ending,
    line: &EndLine<'_>,
    refusal: Option<&'static str>,
) {
    endings.count(ending);
    endings.measure(line);
    if let Some(reason) = refusal {
        endings.count_refusal(reason);
    }
    let client = line.client.map(|c| c.to_string());
    tracing::info!(
        request = line.request,
        client = client.as_deref().unwrap_or(""),
        route = if line.route.is_empty() {
            UNROUTED
        } else {
            line.route
        },
        method = line.method,
        path = line.path,
        status = line.status,
        duration_ms = line.duration.as_secs_f64() * 1e3,
        receiver = line.receiver,
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        outcome = ending.label(),
        reason = refusal.unwrap_or(""),
        error = line.error.unwrap_or(""),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_prometheus_text() {
        let e = Endings::default();
        e.count(Ending::Completed);
        e.count(Ending::Completed);
        e.count(Ending::ClientLeft);
        let text = e.prometheus();
        assert!(text.contains("anpx_requests_ended_total{ending=\"completed\"} 2\n"));
        assert!(text.contains("anpx_requests_ended_total{ending=\"client_left\"} 1\n"));
        assert!(text.contains("anpx_requests_ended_total{ending=\"timed_out\"} 0\n"));
    }

    #[test]
    fn reports_add_status_classes_durations_and_bytes() {
        let e = Endings::default();
        let line = |status, bytes_out| EndLine {
            bytes_in: 2 * bytes_out,
            client: None,
            route: if status == 404 { "" } else { "a.example/x" },
            request: "r",
            method: "GET",
            path: "/",
            status,
            duration: std::time::Duration::from_millis(3),
            receiver: "",
            error: None,
            bytes_out,
        };
        report(&e, Ending::Completed, &line(200, 10), None);
        report(&e, Ending::Completed, &line(204, 0), None);
        report(&e, Ending::Refused, &line(404, 0), Some("no_route"));
        report(&e, Ending::ClientLeft, &line(0, 5), None);
        let text = e.prometheus();
        assert!(
            text.contains("anpx_responses_total{route=\"a.example/x\",class=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_responses_total{route=\"(unrouted)\",class=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_responses_total{route=\"a.example/x\",class=\"none\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_responses_total{route=\"a.example/x\",class=\"5xx\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_request_duration_seconds_count{route=\"a.example/x\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "anpx_request_duration_seconds_bucket{route=\"(unrouted)\",le=\"0.005\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("anpx_response_body_bytes_total{route=\"a.example/x\"} 15\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_requests_refused_total{reason=\"no_route\"} 1\n"),
            "{text}"
        );
        assert_eq!(e.refused("no_route"), 1);
    }
}
