//! The one log line and the counters every public request ends with
//! (`anpx_requests_ended_total{ending="…"}`, the duration histogram,
//! responses by status class, response body bytes), shared by both
//! shells.

use std::sync::atomic::{AtomicU64, Ordering};

use anpx_core::Ending;

use crate::duration_histogram::DurationHistogram;

/// The status classes `anpx_responses_total` counts by; `none` is a
/// request that ended before any status was sent.
const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// How many public requests ended each way, how long they took, what
/// status class they got and how many body bytes they sent back.
#[derive(Debug, Default)]
pub struct Endings {
    counts: [AtomicU64; Ending::ALL.len()],
    classes: [AtomicU64; CLASSES.len()],
    durations: DurationHistogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Endings {
    /// Counts one request that ended as `ending`.
    pub fn count(&self, ending: Ending) {
        self.counts[ending.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `line`'s status class, duration and bytes.
    fn measure(&self, line: &EndLine<'_>) {
        let class = match line.status {
            100..=599 => usize::from(line.status / 100),
            _ => 0,
        };
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.durations.observe(line.duration);
        self.bytes_in.fetch_add(line.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(line.bytes_out, Ordering::Relaxed);
    }

    /// How many requests ended as `ending`.
    pub fn ended(&self, ending: Ending) -> u64 {
        self.counts[ending.index()].load(Ordering::Relaxed)
    }

    /// `anpx_requests_ended_total`, every ending listed even at zero.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP anpx_requests_ended_total Public requests by how they ended.\n# TYPE anpx_requests_ended_total counter\n",
        );
        for e in Ending::ALL {
            out.push_str(&format!(
                "anpx_requests_ended_total{{ending=\"{}\"}} {}\n",
                e.label(),
                self.ended(e)
            ));
        }
        out.push_str(
            "# HELP anpx_responses_total Public requests by the class of the status their client got (none: ended before one was sent).\n# TYPE anpx_responses_total counter\n",
        );
        for (class, n) in CLASSES.iter().zip(&self.classes) {
            let n = n.load(Ordering::Relaxed);
            out.push_str(&format!("anpx_responses_total{{class=\"{class}\"}} {n}\n"));
        }
        out.push_str(&self.durations.prometheus(
            "anpx_request_duration_seconds",
            "Public requests from their head to their end, in seconds.",
        ));
        out.push_str(&format!(
            "# HELP anpx_request_body_bytes_total Request body bytes read from public clients, counted when each request ends.\n# TYPE anpx_request_body_bytes_total counter\nanpx_request_body_bytes_total {}\n",
            self.bytes_in.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP anpx_response_body_bytes_total Response body bytes relayed from receivers to public clients.\n# TYPE anpx_response_body_bytes_total counter\nanpx_response_body_bytes_total {}\n",
            self.bytes_out.load(Ordering::Relaxed)
        ));
        out
    }
}

/// One request's end, as logged.
pub struct EndLine<'a> {
    /// The request's id.
    pub request: &'a str,
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
/// request's end is reported.
pub fn report(endings: &Endings, ending: Ending, line: &EndLine<'_>) {
    endings.count(ending);
    endings.measure(line);
    tracing::info!(
        request = line.request,
        method = line.method,
        path = line.path,
        status = line.status,
        duration_ms = line.duration.as_secs_f64() * 1e3,
        receiver = line.receiver,
        bytes_in = line.bytes_in,
        bytes_out = line.bytes_out,
        outcome = ending.label(),
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
            request: "r",
            method: "GET",
            path: "/",
            status,
            duration: std::time::Duration::from_millis(3),
            receiver: "",
            error: None,
            bytes_out,
        };
        report(&e, Ending::Completed, &line(200, 10));
        report(&e, Ending::Completed, &line(204, 0));
        report(&e, Ending::Refused, &line(404, 0));
        report(&e, Ending::ClientLeft, &line(0, 5));
        let text = e.prometheus();
        assert!(
            text.contains("anpx_responses_total{class=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_responses_total{class=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_responses_total{class=\"none\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_responses_total{class=\"5xx\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_request_duration_seconds_count 4\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_request_duration_seconds_bucket{le=\"0.005\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("anpx_response_body_bytes_total 15\n"),
            "{text}"
        );
    }
}
