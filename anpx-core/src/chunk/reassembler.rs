//! Frames → message parts, streaming where the layout allows it.

use crate::id_map::IdMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::ChunkError;
use crate::frame::{Frame, MessageKind, Meta};
use crate::message::{Head, RequestId};

/// Default of [`ReassemblyLimits::max_headless_bytes`]: what a peer that
/// only sends whole messages (meta in the last chunk, as the reference's
/// receiver does) may make the reassembler hold, in bytes.
pub const DEFAULT_MAX_HELD_BYTES: u64 = 64 * 1024 * 1024;

/// Bounds on what the reassembler holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Largest body one message may have, in bytes; `u64::MAX` (the
    /// default) sets none. A body released as it comes costs no memory
    /// here, so this is a policy bound, not a buffer bound.
    pub max_message_size: u64,
    /// Largest body held while waiting for a head that comes last (the
    /// reference's response layout), in bytes: the one part of a message
    /// the reassembler buffers.
    pub max_headless_bytes: u64,
    /// Most chunked messages in progress at once.
    pub max_partials: usize,
    /// A partial message with no new chunk for this long is dropped.
    pub stale_after: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_message_size: u64::MAX,
            max_headless_bytes: DEFAULT_MAX_HELD_BYTES,
            max_partials: 1024,
            stale_after: Duration::from_secs(60),
        }
    }
}

/// What one frame contributed to its message, ready to hand on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The message.
    pub request_id: RequestId,
    /// The head, the first time it is known.
    pub head: Option<Head>,
    /// Body pieces now deliverable, in order (pieces held while the head was
    /// unknown come out together with it).
    pub body: Vec<Bytes>,
    /// The message is complete; nothing more will come for it.
    pub end: bool,
}

#[derive(Debug)]
struct Partial {
    kind: MessageKind,
    next_index: u32,
    total: Option<u32>,
    head_sent: bool,
    /// Body held until the head arrives.
    held: Vec<Bytes>,
    held_bytes: u64,
    body_bytes: u64,
    last_seen: Instant,
}

/// Groups chunks by request id and releases heads and body pieces as soon as
/// their order allows.
///
/// Accepts every layout the reference sends: unchunked frames; request meta
/// in chunk 0; response meta in the last chunk; `final_chunk` as 1 or 4
/// bytes; `chunk_tot` present or absent. Chunks must arrive in index order
/// (a WebSocket delivers in order), so a gap, a duplicate or an index out of
/// range is an error, and so is exceeding a [`ReassemblyLimits`] bound; each
/// error drops the message's partial state.
///
/// ```
/// use std::time::Instant;
/// use anpx_core::chunk::{Chunker, Reassembler, ReassemblyLimits};
/// use anpx_core::frame::{Frame, FrameLimits};
/// use anpx_core::{Head, Message, RequestHead, RequestId};
///
/// let msg = Message {
///     request_id: RequestId::from("r-1"),
///     head: Head::Request(RequestHead::new("POST", "/upload")),
///     body: vec![1u8; 5000].into(),
/// };
/// let mut r = Reassembler::new(ReassemblyLimits::default());
/// let now = Instant::now();
/// let mut body = Vec::new();
/// for wire in Chunker::new(1024).frames(&msg).unwrap() {
///     let out = r.push(now, Frame::decode(wire, &FrameLimits::default()).unwrap()).unwrap();
///     body.extend(out.body.iter().flat_map(|b| b.iter().copied()));
///     if out.end { break; }
/// }
/// assert_eq!(body, msg.body);
/// assert_eq!(r.in_progress(), 0);
/// ```
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    partials: IdMap<RequestId, Partial>,
    /// Body bytes held across every partial message, kept as they change
    /// so that a memory budget can read it on every frame.
    held: u64,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            partials: IdMap::default(),
            held: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ReassemblyLimits {
        &self.limits
    }

    /// Number of chunked messages in progress.
    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }

    /// Body bytes held while their heads are awaited, over every message in
    /// progress: the memory the reassembler's peer pins.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// True when `id` has a chunked message in progress.
    pub fn is_in_progress(&self, id: &RequestId) -> bool {
        self.partials.contains_key(id)
    }

    /// Forgets `id`'s partial message, if any (its request was cancelled).
    pub fn discard(&mut self, id: &RequestId) -> bool {
        match self.partials.remove(id) {
            Some(p) => {
                self.held -= p.held_bytes;
                true
            }
            None => false,
        }
    }

    /// Counts `id`'s partial message, if any, as seen at `now`: a message
    /// that is quiet by nature (a WebSocket's bytes, which come when the
    /// client has something to say) is not dropped as stale.
    pub fn touch(&mut self, id: &RequestId, now: Instant) {
        if let Some(p) = self.partials.get_mut(id) {
            p.last_seen = now;
        }
    }

    /// Takes one decoded frame.
    pub fn push(&mut self, now: Instant, frame: Frame) -> Result<Assembled, ChunkError> {
        let id = frame.request_id;
        let head = frame.meta.map(|m| match m {
            Meta::Request(h) => Head::Request(h),
            Meta::Response(h) => Head::Response(h),
        });
        let Some(chunk) = frame.chunk else {
            if self.partials.contains_key(&id) {
                self.partials.remove(&id);
                return Err(ChunkError::Interleaved { request_id: id });
            }
            let size = frame.body.as_ref().map_or(0, |b| b.len() as u64);
            if size > self.limits.max_message_size {
                return Err(ChunkError::TooLarge {
                    request_id: id,
                    size,
                    max: self.limits.max_message_size,
                });
            }
            // Decoding guarantees an unchunked request/response has its meta.
            let head = head.unwrap_or(Head::Error);
            return Ok(Assembled {
                request_id: id,
                head: Some(head),
                body: frame.body.into_iter().collect(),
                end: true,
            });
        };

        let mut partial = match self.partials.remove(&id) {
            // Out of the map, its bytes are uncounted until it goes back in
            // (every early return below drops it).
            Some(p) => {
                self.held -= p.held_bytes;
                p
            }
            None => {
                if self.partials.len() >= self.limits.max_partials {
                    return Err(ChunkError::TooManyPartials {
                        request_id: id,
                        max: self.limits.max_partials,
                    });
                }
                Partial {
                    kind: frame.kind,
                    next_index: 0,
                    total: None,
                    head_sent: false,
                    held: Vec::new(),
                    held_bytes: 0,
                    body_bytes: 0,
                    last_seen: now,
                }
            }
        };
        // On any error below `partial` is dropped with the id's state.
        let err = |e: fn(RequestId) -> ChunkError| Err(e(id.clone()));

        if partial.kind != frame.kind {
            return err(|request_id| ChunkError::KindChanged { request_id });
        }
        if chunk.index < partial.next_index {
            return Err(ChunkError::Duplicate {
                request_id: id,
                index: chunk.index,
            });
        }
        if chunk.index > partial.next_index {
            return Err(ChunkError::Gap {
                request_id: id,
                expected: partial.next_index,
                got: chunk.index,
            });
        }
        match (partial.total, chunk.total) {
            (Some(was), Some(now)) if was != now => {
                return Err(ChunkError::TotalChanged {
                    request_id: id,
                    was,
                    now,
                });
            }
            (None, Some(t)) => partial.total = Some(t),
            _ => {}
        }
        // u64: an index of u32::MAX must not overflow.
        let count_so_far = u64::from(chunk.index) + 1;
        if let Some(total) = partial.total {
            let early_final = chunk.is_final() && count_so_far != u64::from(total);
            if chunk.index >= total || early_final {
                return Err(ChunkError::OutOfRange {
                    request_id: id,
                    index: chunk.index,
                    total,
                });
            }
        }
        let end = chunk.is_final() || partial.total.map(u64::from) == Some(count_so_far);

        let size = frame.body.as_ref().map_or(0, |b| b.len() as u64);
        partial.body_bytes += size;
        if partial.body_bytes > self.limits.max_message_size {
            return Err(ChunkError::TooLarge {
                request_id: id,
                size: partial.body_bytes,
                max: self.limits.max_message_size,
            });
        }

        let mut out = Assembled {
            request_id: id.clone(),
            head: None,
            body: Vec::new(),
            end,
        };
        let head = match (head, frame.kind) {
            (None, MessageKind::Error) if !partial.head_sent => Some(Head::Error),
            (h, _) => h,
        };
        if let Some(head) = head {
            if partial.head_sent {
                return err(|request_id| ChunkError::DuplicateMeta { request_id });
            }
            partial.head_sent = true;
            out.head = Some(head);
            out.body = std::mem::take(&mut partial.held);
            partial.held_bytes = 0;
        }
        match frame.body {
            Some(piece) if !piece.is_empty() && partial.head_sent => out.body.push(piece),
            Some(piece) if !piece.is_empty() => {
                partial.held_bytes += size;
                if partial.held_bytes > self.limits.max_headless_bytes {
                    return Err(ChunkError::TooLarge {
                        request_id: id,
                        size: partial.held_bytes,
                        max: self.limits.max_headless_bytes,
                    });
                }
                partial.held.push(piece);
            }
            _ => {}
        }
        if end {
            if !partial.head_sent {
                return err(|request_id| ChunkError::MissingMeta { request_id });
            }
            return Ok(out);
        }
        // No index can follow u32::MAX: a message must end there.
        let Some(next) = partial.next_index.checked_add(1) else {
            return Err(ChunkError::OutOfRange {
                request_id: id,
                index: chunk.index,
                total: u32::MAX,
            });
        };
        partial.next_index = next;
        partial.last_seen = now;
        self.held += partial.held_bytes;
        self.partials.insert(id, partial);
        Ok(out)
    }

    /// Forgets every partial message (the connection is gone).
    pub fn clear(&mut self) {
        self.partials.clear();
        self.held = 0;
    }

    /// When the oldest partial message goes stale, if any is in progress.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.partials
            .values()
            .map(|p| p.last_seen + self.limits.stale_after)
            .min()
    }

    /// Drops every partial message stale at `now` and returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<RequestId> {
        let stale_after = self.limits.stale_after;
        let mut gone = Vec::new();
        let mut freed = 0;
        self.partials.retain(|id, p| {
            let keep = now < p.last_seen + stale_after;
            if !keep {
                gone.push(id.clone());
                freed += p.held_bytes;
            }
            keep
        });
        self.held -= freed;
        // A fixed order, so that what callers do with the ids (abort
        // events, error frames) does not depend on hash-map iteration.
        gone.sort_unstable();
        gone
    }
}
