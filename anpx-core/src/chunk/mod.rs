//! Splitting messages into chunk frames and putting them back together.

mod chunker;
mod collector;
mod error;
mod reassembler;

pub use chunker::{Chunker, DEFAULT_CHUNK_SIZE};
pub use collector::MessageCollector;
pub use error::ChunkError;
pub use reassembler::{Assembled, Reassembler, ReassemblyLimits};
