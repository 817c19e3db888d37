//! A Prometheus histogram of durations in seconds, kept by the gateway
//! machine: the machine reads no clock, so each duration comes in already
//! measured by the shell.

use std::fmt::Write as _;
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from a loopback round trip to
/// a request that waited out the default 30 s timeout.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Counts of durations by bucket, their sum and their number.
///
/// ```
/// use std::time::Duration;
/// use anpx_core::DurationHistogram;
///
/// let mut h = DurationHistogram::default();
/// h.observe(Duration::from_millis(3));
/// h.observe(Duration::from_secs(60));
/// assert_eq!(h.count(), 2);
/// assert!(h.series("t", "").contains("t_bucket{le=\"0.005\"} 1\n"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Observations at or under each bound of `BUCKETS` and over the one
    /// before (not cumulative; summed when written out).
    buckets: [u64; BUCKETS.len()],
    /// Observations over the last bound.
    over: u64,
    /// Sum of every observation, in microseconds.
    sum_micros: u64,
}

impl DurationHistogram {
    /// Upper bounds of the buckets, in seconds: from a loopback round trip
    /// to a request that waited out the default 30 s timeout.
    pub const BUCKETS: [f64; 14] = BUCKETS;

    /// Records one duration.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|&b| secs <= b) {
            Some(i) => self.buckets[i] += 1,
            None => self.over += 1,
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.over
    }

    /// The sum of every duration recorded, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    /// Cumulative counts by upper bound, as Prometheus lists them: one per
    /// bound of [`BUCKETS`](Self::BUCKETS), then the `+Inf` bucket ([`None`]), which is
    /// [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<f64>, u64)> + '_ {
        let mut total = 0;
        let bounded = BUCKETS.iter().zip(&self.buckets).map(move |(&bound, &n)| {
            total += n;
            (Some(bound), total)
        });
        bounded.chain(std::iter::once((None, self.count())))
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
        for (bound, n) in self.cumulative() {
            let _ = match bound {
                Some(bound) => writeln!(out, "{name}_bucket{{{lead}le=\"{bound}\"}} {n}"),
                None => writeln!(out, "{name}_bucket{{{lead}le=\"+Inf\"}} {n}"),
            };
        }
        let _ = writeln!(out, "{name}_sum{only} {}", self.sum_secs());
        let _ = writeln!(out, "{name}_count{only} {}", self.count());
        out
    }
}

impl serde::Serialize for DurationHistogram {
    /// `{"buckets": {"0.001": n, ..., "+Inf": n}, "sum_secs": s, "count": n}`,
    /// the buckets cumulative as in the Prometheus text.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Buckets<'a>(&'a DurationHistogram);
        impl serde::Serialize for Buckets<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(BUCKETS.len() + 1))?;
                for (bound, n) in self.0.cumulative() {
                    match bound {
                        Some(bound) => m.serialize_entry(&bound.to_string(), &n)?,
                        None => m.serialize_entry("+Inf", &n)?,
                    }
                }
                m.end()
            }
        }
        let mut st = s.serialize_struct("DurationHistogram", 3)?;
        st.serialize_field("buckets", &Buckets(self))?;
        st.serialize_field("sum_secs", &self.sum_secs())?;
        st.serialize_field("count", &self.count())?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_every_observation() {
        let mut h = DurationHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(40));
        let text = h.series("t", "");
        assert!(text.contains("t_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.025\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"30\"} 2\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("t_sum 40.0205\n"), "{text}");
        assert!(text.contains("t_count 3\n"), "{text}");
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn labels_go_before_le_and_on_sum_and_count() {
        let mut h = DurationHistogram::default();
        h.observe(Duration::from_millis(3));
        let text = h.series("t", "route=\"a\"");
        assert!(
            text.contains("t_bucket{route=\"a\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_bucket{route=\"a\",le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("t_sum{route=\"a\"} 0.003\n"), "{text}");
        assert!(text.contains("t_count{route=\"a\"} 1\n"), "{text}");
    }

    #[test]
    fn a_duration_too_long_for_microseconds_saturates_the_sum() {
        let mut h = DurationHistogram::default();
        h.observe(Duration::MAX);
        h.observe(Duration::from_secs(1));
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum_micros, u64::MAX);
    }

    #[test]
    fn the_json_form_is_cumulative_too() {
        let mut h = DurationHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_secs(40));
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["buckets"]["0.001"], 1);
        assert_eq!(v["buckets"]["30"], 1);
        assert_eq!(v["buckets"]["+Inf"], 2);
        assert_eq!(v["count"], 2);
    }
}
