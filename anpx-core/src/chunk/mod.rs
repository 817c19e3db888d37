//! Splitting messages into chunk frames and putting them back together.

mod chunker;
mod collector;
mod error;
mod reassembler;
mod stream;

pub use chunker::{Chunker, DEFAULT_CHUNK_SIZE, STREAMING_CHUNK_SIZE};
pub use collector::MessageCollector;
pub use error::ChunkError;
pub use reassembler::{Assembled, Reassembler, ReassemblyLimits, DEFAULT_MAX_HELD_BYTES};
pub use stream::ChunkStream;

use bytes::{Bytes, BytesMut};

/// Joins body pieces, without copying when there is only one.
pub(crate) fn concat(mut pieces: Vec<Bytes>) -> Bytes {
    match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
            for p in pieces {
                buf.extend_from_slice(&p);
            }
            buf.freeze()
        }
    }
}
