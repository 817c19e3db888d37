//! Negotiation of protocol extensions beyond plain ANPX v1.
//!
//! Each side lists the extensions it supports in the [`HEADER`] header of the
//! WebSocket handshake; both then use only those in the intersection. The
//! reference implementation sends no such header, so a peer without it gets
//! exactly the v1 behaviour.

use std::fmt;

/// Handshake header carrying a side's [`Features`].
pub const HEADER: &str = "x-anpx-features";

/// One protocol extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Feature {
    /// Bodies sent as they are produced instead of whole (`streaming`).
    Streaming,
    /// Per-request credit so a slow reader bounds buffering (`flow-control`).
    FlowControl,
    /// Abandoning a request in flight (`cancel`).
    Cancel,
    /// WebSocket upgrades relayed through the tunnel (`websocket`).
    WebSocket,
    /// Message heads carried without the reference's lossy meta encoding
    /// (`lossless-meta`).
    Lossless,
    /// A receiver's own 502 (its service unreachable, cut, timed out)
    /// marked with its cause, which the gateway takes off and logs
    /// (`upstream-failure`; see [`crate::upstream_failure`]).
    UpstreamFailure,
    /// A receiver that is shutting down says so, and the gateway routes new
    /// requests to other receivers while those in flight finish (`drain`:
    /// the receiver sends `{"type": "draining"}`, the gateway answers
    /// `{"type": "draining-ack"}`; see [`crate::Receiver::start_drain`]).
    Drain,
}

impl Feature {
    /// Every feature, in canonical (header) order.
    pub const ALL: [Feature; 7] = [
        Feature::Streaming,
        Feature::FlowControl,
        Feature::Cancel,
        Feature::WebSocket,
        Feature::Lossless,
        Feature::UpstreamFailure,
        Feature::Drain,
    ];

    /// The header token, lower-case.
    pub fn token(self) -> &'static str {
        match self {
            Feature::Streaming => "streaming",
            Feature::FlowControl => "flow-control",
            Feature::Cancel => "cancel",
            Feature::WebSocket => "websocket",
            Feature::Lossless => "lossless-meta",
            Feature::UpstreamFailure => "upstream-failure",
            Feature::Drain => "drain",
        }
    }

    /// The feature named by `token`, compared case-insensitively after
    /// trimming whitespace; `None` for a token this version does not know.
    pub fn from_token(token: &str) -> Option<Feature> {
        let token = token.trim();
        Feature::ALL
            .into_iter()
            .find(|f| f.token().eq_ignore_ascii_case(token))
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A set of [`Feature`]s.
///
/// ```
/// use anpx_core::handshake::negotiate;
/// use anpx_core::{Feature, Features};
///
/// let ours = Features::all();
/// // A newer peer may list tokens this version does not know: ignored.
/// let agreed = negotiate(ours, Some(" Streaming , cancel,quantum-tunnelling"));
/// assert_eq!(agreed.to_header_value(), "streaming,cancel");
/// assert!(agreed.contains(Feature::Cancel));
/// assert!(!agreed.contains(Feature::WebSocket));
///
/// // No header at all: a reference peer, plain ANPX v1.
/// assert_eq!(negotiate(ours, None), Features::empty());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(u8);

impl Features {
    /// No feature.
    pub const fn empty() -> Self {
        Features(0)
    }

    /// Every feature this version knows.
    pub fn all() -> Self {
        Feature::ALL.into_iter().collect()
    }

    /// Whether `feature` is in the set.
    pub fn contains(self, feature: Feature) -> bool {
        self.0 & feature.bit() != 0
    }

    /// Adds `feature`; returns whether it was absent.
    pub fn insert(&mut self, feature: Feature) -> bool {
        let absent = !self.contains(feature);
        self.0 |= feature.bit();
        absent
    }

    /// Removes `feature`; returns whether it was present.
    pub fn remove(&mut self, feature: Feature) -> bool {
        let present = self.contains(feature);
        self.0 &= !feature.bit();
        present
    }

    /// Features in both sets.
    pub fn intersection(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// Features in either set.
    pub fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Whether the set has no feature.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of features in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The features in canonical order.
    pub fn iter(self) -> Iter {
        Iter { set: self, next: 0 }
    }

    /// Parses a [`HEADER`] value: comma-separated tokens, whitespace and case
    /// tolerated, empty and unknown tokens ignored, so a newer peer's list
    /// still yields what the two have in common. Several header lines are
    /// read by joining them with `,` first.
    pub fn parse_header(value: &str) -> Features {
        value.split(',').filter_map(Feature::from_token).collect()
    }

    /// The canonical header value: tokens in canonical order joined by `,`
    /// without spaces; empty for the empty set.
    pub fn to_header_value(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, feature) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(feature.token())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Feature> for Features {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> Self {
        let mut set = Features::empty();
        set.extend(iter);
        set
    }
}

impl Extend<Feature> for Features {
    fn extend<I: IntoIterator<Item = Feature>>(&mut self, iter: I) {
        for feature in iter {
            self.insert(feature);
        }
    }
}

impl IntoIterator for Features {
    type Item = Feature;
    type IntoIter = Iter;

    fn into_iter(self) -> Iter {
        self.iter()
    }
}

/// Iterator over a [`Features`] set in canonical order; see [`Features::iter`].
#[derive(Debug, Clone)]
pub struct Iter {
    set: Features,
    /// Index into [`Feature::ALL`] of the next candidate.
    next: usize,
}

impl Iterator for Iter {
    type Item = Feature;

    fn next(&mut self) -> Option<Feature> {
        while let Some(&feature) = Feature::ALL.get(self.next) {
            self.next += 1;
            if self.set.contains(feature) {
                return Some(feature);
            }
        }
        None
    }
}

impl From<Feature> for Features {
    fn from(feature: Feature) -> Self {
        Features(feature.bit())
    }
}

/// The features both sides may use: `ours` intersected with the peer's
/// [`HEADER`] value. `theirs` is `None` when the header is absent, which
/// means a reference peer, so nothing beyond plain ANPX v1 is used.
pub fn negotiate(ours: Features, theirs: Option<&str>) -> Features {
    match theirs {
        Some(value) => ours.intersection(Features::parse_header(value)),
        None => Features::empty(),
    }
}

/// What a gateway agrees to with a receiver: [`negotiate`], except that
/// `streaming` is granted only together with `flow-control`. A streamed
/// response without credit windows arrives as fast as the receiver sends
/// it, whatever its client reads, so the gateway would have to hold it;
/// without `streaming` the receiver sends whole messages, which the
/// WebSocket message limit bounds.
///
/// ```
/// use anpx_core::handshake::negotiate_gateway;
/// use anpx_core::{Feature, Features};
///
/// let agreed = negotiate_gateway(Features::all(), Some("streaming,cancel"));
/// assert_eq!(agreed.to_header_value(), "cancel");
/// let agreed = negotiate_gateway(Features::all(), Some("streaming,flow-control"));
/// assert!(agreed.contains(Feature::Streaming));
/// ```
pub fn negotiate_gateway(ours: Features, theirs: Option<&str>) -> Features {
    let mut agreed = negotiate(ours, theirs);
    if !agreed.contains(Feature::FlowControl) {
        agreed.remove(Feature::Streaming);
    }
    agreed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for f in Feature::ALL {
            assert_eq!(Feature::from_token(f.token()), Some(f));
            assert_eq!(
                Feature::from_token(&format!(" {} ", f.token().to_uppercase())),
                Some(f)
            );
            assert_eq!(f.to_string(), f.token());
        }
        assert_eq!(Feature::from_token("lossless"), None);
        assert_eq!(Feature::from_token("flow control"), None);
        assert_eq!(Feature::from_token(""), None);
        let tokens: Vec<_> = Feature::ALL.iter().map(|f| f.token()).collect();
        assert_eq!(
            tokens,
            [
                "streaming",
                "flow-control",
                "cancel",
                "websocket",
                "lossless-meta",
                "upstream-failure",
                "drain"
            ]
        );
    }

    #[test]
    fn set_operations() {
        let mut s = Features::empty();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert!(s.insert(Feature::Cancel));
        assert!(!s.insert(Feature::Cancel));
        assert!(s.insert(Feature::Streaming));
        assert!(s.contains(Feature::Cancel) && s.contains(Feature::Streaming));
        assert!(!s.contains(Feature::WebSocket));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Feature::Streaming, Feature::Cancel]
        );
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            [Feature::Streaming, Feature::Cancel]
        );

        let other: Features = [Feature::Cancel, Feature::WebSocket].into_iter().collect();
        assert_eq!(s.intersection(other), Features::from(Feature::Cancel));
        assert_eq!(s.union(other).len(), 3);
        assert!(s.remove(Feature::Cancel));
        assert!(!s.remove(Feature::Cancel));
        assert_eq!(s, Features::from(Feature::Streaming));

        assert_eq!(Features::all().len(), Feature::ALL.len());
        assert_eq!(Features::all().iter().collect::<Vec<_>>(), Feature::ALL);
        assert_eq!(Features::default(), Features::empty());
        assert_eq!(format!("{:?}", s), "{Streaming}");
    }

    #[test]
    fn parse_header_is_tolerant() {
        let cases: [(&str, &[Feature]); 8] = [
            ("", &[]),
            ("streaming", &[Feature::Streaming]),
            (
                "websocket,streaming",
                &[Feature::Streaming, Feature::WebSocket],
            ),
            (
                " Cancel ,\tFLOW-CONTROL ",
                &[Feature::FlowControl, Feature::Cancel],
            ),
            (",,cancel,,", &[Feature::Cancel]),
            ("cancel, cancel", &[Feature::Cancel]),
            (
                "teleport, streaming;v=2, lossless-meta",
                &[Feature::Lossless],
            ),
            ("\u{0}garbage\u{ff}, ,,,", &[]),
        ];
        for (value, want) in cases {
            let got = Features::parse_header(value);
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{value:?}");
        }
    }

    #[test]
    fn header_value_is_canonical() {
        assert_eq!(Features::empty().to_header_value(), "");
        assert_eq!(
            Features::all().to_header_value(),
            "streaming,flow-control,cancel,websocket,lossless-meta,upstream-failure,drain"
        );
        let s = Features::parse_header("LOSSLESS-META , streaming");
        assert_eq!(s.to_header_value(), "streaming,lossless-meta");
        assert_eq!(s.to_string(), s.to_header_value());
        for bits in 0..128u8 {
            let s: Features = Feature::ALL
                .into_iter()
                .filter(|f| bits & f.bit() != 0)
                .collect();
            assert_eq!(Features::parse_header(&s.to_header_value()), s);
        }
        assert_eq!(
            HEADER,
            HEADER.to_ascii_lowercase(),
            "http header names are sent lower-case"
        );
    }

    #[test]
    fn negotiation() {
        let ours: Features = [Feature::Streaming, Feature::Cancel].into_iter().collect();
        assert_eq!(negotiate(ours, None), Features::empty());
        assert_eq!(negotiate(ours, Some("")), Features::empty());
        assert_eq!(
            negotiate(ours, Some("cancel, websocket, future-thing")),
            Features::from(Feature::Cancel)
        );
        assert_eq!(
            negotiate(
                ours,
                Some("streaming,flow-control,cancel,websocket,lossless-meta")
            ),
            ours
        );
        assert_eq!(
            negotiate(Features::empty(), Some("streaming")),
            Features::empty()
        );
    }
}
