//! How a public request's body reaches the gateway machine, decided from
//! what its head declared: the same rule in every shell, whatever its HTTP
//! library calls a declared length.

use super::{EdgeLimits, EdgeRefusal};

/// How the shell takes a public request's body and what it tells the
/// machine ([`RequestBody`](crate::RequestBody)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body: `RequestBody::Empty`.
    Empty,
    /// A body of this declared length that fits one chunk: read it whole,
    /// within the upload timeout ([`Failure::upload_timed_out`] past it),
    /// before the request starts, so a trickled small body cannot hold a
    /// connection past that timeout; `RequestBody::Full`. Fewer bytes than
    /// declared is a cut, never a request ([`Failure::body_cut_short`]).
    ///
    /// [`Failure::upload_timed_out`]: crate::Failure::upload_timed_out
    /// [`Failure::body_cut_short`]: crate::Failure::body_cut_short
    Whole(u64),
    /// A larger body of declared length, streamed: `RequestBody::Sized`.
    Sized(u64),
    /// A body of unknown length (chunked): `RequestBody::Streaming`.
    Streaming,
    /// A WebSocket upgrade: the client's bytes come after the 101, read
    /// from the upgraded connection, not as this request's body;
    /// `RequestBody::Streaming`.
    AfterUpgrade,
}

impl BodyPlan {
    /// The plan for a request whose head declared `length` (its
    /// `Content-Length`; `None` when chunked or unknown); `upgrade` when
    /// it asks for a WebSocket. `Err` refuses a declared length over the
    /// limit (413) before a byte of the body is read.
    ///
    /// ```
    /// use anpx_core::edge::{BodyPlan, EdgeLimits, EdgeRefusal};
    /// let limits = EdgeLimits { max_body_bytes: 1000, ..EdgeLimits::default() };
    /// let plan = |length, upgrade| BodyPlan::of(length, upgrade, 64, &limits);
    /// assert_eq!(plan(Some(0), false), Ok(BodyPlan::Empty));
    /// assert_eq!(plan(Some(64), false), Ok(BodyPlan::Whole(64)));
    /// assert_eq!(plan(Some(65), false), Ok(BodyPlan::Sized(65)));
    /// assert_eq!(plan(None, false), Ok(BodyPlan::Streaming));
    /// assert_eq!(plan(Some(0), true), Ok(BodyPlan::AfterUpgrade));
    /// assert_eq!(plan(Some(1001), true), Err(EdgeRefusal::BodyTooLarge));
    /// ```
    pub fn of(
        length: Option<u64>,
        upgrade: bool,
        chunk_size: usize,
        limits: &EdgeLimits,
    ) -> Result<BodyPlan, EdgeRefusal> {
        limits.check_declared_body(length)?;
        Ok(match length {
            _ if upgrade => BodyPlan::AfterUpgrade,
            Some(0) => BodyPlan::Empty,
            Some(n) if n <= chunk_size as u64 => BodyPlan::Whole(n),
            Some(n) => BodyPlan::Sized(n),
            None => BodyPlan::Streaming,
        })
    }
}
