//! The one log line and counter increment every public request ends with
//! (`anpx_requests_ended_total{ending="…"}`), shared by both shells.

use std::sync::atomic::{AtomicU64, Ordering};

use anpx_core::Ending;

/// How many public requests ended each way.
#[derive(Debug, Default)]
pub struct Endings {
    counts: [AtomicU64; Ending::ALL.len()],
}

impl Endings {
    /// Counts one request that ended as `ending`.
    pub fn count(&self, ending: Ending) {
        self.counts[ending.index()].fetch_add(1, Ordering::Relaxed);
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
}

/// Logs `line` with its `ending` and counts it: the single place a public
/// request's end is reported.
pub fn report(endings: &Endings, ending: Ending, line: &EndLine<'_>) {
    endings.count(ending);
    tracing::info!(
        request = line.request,
        method = line.method,
        path = line.path,
        status = line.status,
        duration_ms = line.duration.as_secs_f64() * 1e3,
        receiver = line.receiver,
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
}
