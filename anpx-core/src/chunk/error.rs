//! Why a chunk sequence was refused.

use crate::message::RequestId;

/// A chunk broke the sequence rules or a bound. The partial message of
/// `request_id` has been dropped when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// An index past the next expected one: a chunk is missing.
    #[error("request {request_id}: chunk {got} arrived where {expected} was expected (gap)")]
    Gap {
        /// The message.
        request_id: RequestId,
        /// Next index expected.
        expected: u32,
        /// Index received.
        got: u32,
    },
    /// An index already received.
    #[error("request {request_id}: chunk {index} received twice")]
    Duplicate {
        /// The message.
        request_id: RequestId,
        /// Index received again.
        index: u32,
    },
    /// An index at or past `chunk_tot`, or a final chunk before the last index.
    #[error("request {request_id}: chunk {index} is out of range for {total} chunks")]
    OutOfRange {
        /// The message.
        request_id: RequestId,
        /// Index received.
        index: u32,
        /// Declared total.
        total: u32,
    },
    /// `chunk_tot` differs between chunks of one message.
    #[error("request {request_id}: chunk_tot changed from {was} to {now}")]
    TotalChanged {
        /// The message.
        request_id: RequestId,
        /// Earlier value.
        was: u32,
        /// New value.
        now: u32,
    },
    /// Chunks of one request id with different message types.
    #[error("request {request_id}: chunk of another message type mid-message")]
    KindChanged {
        /// The message.
        request_id: RequestId,
    },
    /// An unchunked frame for an id that has a chunked message in progress.
    #[error("request {request_id}: unchunked frame while a chunked message is in progress")]
    Interleaved {
        /// The message.
        request_id: RequestId,
    },
    /// The message completed without its meta.
    #[error("request {request_id}: message ended without its meta")]
    MissingMeta {
        /// The message.
        request_id: RequestId,
    },
    /// Two chunks carried meta.
    #[error("request {request_id}: meta received twice")]
    DuplicateMeta {
        /// The message.
        request_id: RequestId,
    },
    /// The body grew past the maximum message size, or past what may be held
    /// while waiting for a meta-last head.
    #[error("request {request_id}: message body of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The message.
        request_id: RequestId,
        /// Size reached.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// Too many messages are partially received at once.
    #[error("request {request_id}: {max} partial messages already in progress")]
    TooManyPartials {
        /// The message refused.
        request_id: RequestId,
        /// Limit.
        max: usize,
    },
}

impl ChunkError {
    /// The request whose partial state was dropped.
    pub fn request_id(&self) -> &RequestId {
        match self {
            ChunkError::Gap { request_id, .. }
            | ChunkError::Duplicate { request_id, .. }
            | ChunkError::OutOfRange { request_id, .. }
            | ChunkError::TotalChanged { request_id, .. }
            | ChunkError::KindChanged { request_id }
            | ChunkError::Interleaved { request_id }
            | ChunkError::MissingMeta { request_id }
            | ChunkError::DuplicateMeta { request_id }
            | ChunkError::TooLarge { request_id, .. }
            | ChunkError::TooManyPartials { request_id, .. } => request_id,
        }
    }
}
