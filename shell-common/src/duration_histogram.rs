//! A Prometheus histogram of durations in seconds, lock-free: one atomic
//! counter per bucket, so recording a request's end never waits on a
//! reader of `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from a loopback round trip to
/// a request that waited out the default 30 s timeout.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Counts of durations by bucket, their sum and their number.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Observations at or under each bound (not cumulative; summed when
    /// written out).
    buckets: [AtomicU64; BUCKETS.len()],
    /// Observations over the last bound.
    over: AtomicU64,
    /// Sum of every observation, in microseconds.
    sum_micros: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|&b| secs <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The histogram as Prometheus text under `name`, with `help`.
    pub fn prometheus(&self, name: &str, help: &str) -> String {
        let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        out.push_str(&self.series(name, ""));
        out
    }

    /// The histogram's series (no HELP/TYPE lines) under `name`, each
    /// with `labels` (`key="value",...`, or empty) before `le`.
    pub fn series(&self, name: &str, labels: &str) -> String {
        let mut out = String::new();
        let (lead, only) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{lead}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{lead}le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{only} {sum}");
        let _ = writeln!(out, "{name}_count{only} {cumulative}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_every_observation() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(40));
        let text = h.prometheus("t", "test");
        assert!(text.contains("# TYPE t histogram\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.025\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"30\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("t_sum 40.0205\n"), "{text}");
        assert!(text.contains("t_count 3\n"), "{text}");
    }
}
